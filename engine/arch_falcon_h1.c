/* FalconH1ForCausalLM (TII's Falcon-H1; transformers' modeling_falcon_h1.py): every layer is two
 * blocks, attention and the Mamba-2 mixer side by side on one normalised input (their outputs
 * summed into the residual stream), then a SwiGLU MLP. The µP multipliers of the config all
 * become data: the embedding's and the head's, attention's input (a GEMM alpha), key (folded
 * into k_proj's rows) and output, the Mamba mixer's input, output and the five slices of its
 * in_proj output (folded into in_proj's rows), and the MLP's gate (folded into gate_proj) and
 * output. The Mamba mixer is mamba_d_ssm wide (not necessarily expand * hidden), and its norm
 * is optional: grouped RMSNorm of y * silu(z), of y before the gate (mamba_norm_before_gate), or
 * none (mamba_rms_norm false: y * silu(z)). */
#include <math.h>
#include <string.h>

#include "arch.h"

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba2_config *m = &c->mamba2;
    srp_attn_config *a = &c->attn;
    srp_mlp_config *f = &c->mlp;
    int rc = 0, expand = 2, d_ssm = 0, rms_norm = 1, before_gate = 1;
    double lo = 0.0, hi = INFINITY;
    /* Defaults are FalconH1Config's. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 128000, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", NULL, 32, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "rms_norm_eps", NULL, 1e-5, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) rc = srp_cfg_int(r, "num_key_value_heads", NULL, 8, 1, &a->kv_heads);
    if (!rc) {
        const int def_hd = c->d_model / a->heads;
        rc = srp_cfg_int(r, "head_dim", NULL, def_hd > 0 ? def_hd : 1, 1, &a->head_dim);
    }
    if (!rc) rc = srp_cfg_bool(r, "attention_bias", NULL, 0, &a->qkv_bias);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 14336, 1, &f->hidden);
    if (!rc) rc = srp_cfg_bool(r, "mlp_bias", NULL, 0, &f->bias);
    if (!rc) rc = srp_cfg_act(r, "hidden_act", "silu", &f->act);
    if (!rc) rc = srp_cfg_int(r, "mamba_n_heads", NULL, 128, 1, &m->heads);
    if (!rc) rc = srp_cfg_int(r, "mamba_n_groups", NULL, 1, 1, &m->groups);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_state", NULL, 256, 1, &m->state);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_conv", NULL, 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "mamba_expand", NULL, 2, 1, &expand);
    if (!rc) rc = srp_cfg_int(r, "mamba_chunk_size", NULL, 256, 1, &m->chunk_size);
    if (!rc) rc = srp_cfg_bool(r, "mamba_conv_bias", NULL, 1, &m->conv_bias);
    if (!rc) rc = srp_cfg_bool(r, "mamba_proj_bias", NULL, 0, &m->proj_bias);
    if (!rc) rc = srp_cfg_bool(r, "projectors_bias", NULL, 0, &m->out_bias);
    if (!rc) rc = srp_cfg_bool(r, "mamba_rms_norm", NULL, 0, &rms_norm);
    if (!rc) rc = srp_cfg_bool(r, "mamba_norm_before_gate", NULL, 1, &before_gate);
    if (!rc) rc = srp_cfg_range(r, "time_step_limit", NULL, &lo, &hi);
    /* µP multipliers (FalconH1Config defaults: 1) */
    if (!rc) rc = srp_cfg_floatf(r, "embedding_multiplier", NULL, 1.0, &c->embed_mult);
    if (!rc) rc = srp_cfg_floatf(r, "lm_head_multiplier", NULL, 1.0, &c->logits_mult);
    if (!rc) rc = srp_cfg_floatf(r, "attention_in_multiplier", NULL, 1.0, &a->in_mult);
    if (!rc) rc = srp_cfg_floatf(r, "attention_out_multiplier", NULL, 1.0, &a->out_mult);
    if (!rc) rc = srp_cfg_floatf(r, "key_multiplier", NULL, 1.0, &a->key_mult);
    if (!rc) rc = srp_cfg_floatf(r, "ssm_in_multiplier", NULL, 1.0, &m->in_mult);
    if (!rc) rc = srp_cfg_floatf(r, "ssm_out_multiplier", NULL, 1.0, &m->out_mult);
    if (rc) return rc;
    rc = srp_cfg_floats(r, "ssm_multipliers", 5, m->part_mult);
    if (rc < 0) return rc;
    float mlp_mult[2] = { 1.0f, 1.0f };
    rc = srp_cfg_floats(r, "mlp_multipliers", 2, mlp_mult);
    if (rc < 0) return rc;
    f->gate_mult = mlp_mult[0];
    f->out_mult = mlp_mult[1];
    if (c->n_layers > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    const char *s = srp_cfg_string(r, "hidden_act", NULL, "silu", &rc);
    if (rc) return rc;
    if (strcmp(s, "silu") && strcmp(s, "swish")) /* the Mamba mixer's activation too */
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"hidden_act\": only silu is supported, not \"%s\"", r->file,
                           s);
    /* mamba_d_ssm: 1024 when absent, expand * hidden when null (FalconH1Config) */
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(r->root, "mamba_d_ssm");
    if (!ds)
        d_ssm = 1024;
    else if (cJSON_IsNull(ds))
        d_ssm = expand * c->d_model;
    else if ((rc = srp_cfg_int(r, "mamba_d_ssm", NULL, 1, 1, &d_ssm)))
        return rc;
    const int width = d_ssm;
    rc = srp_cfg_int_auto(r, "mamba_d_head", width / m->heads, &m->head_dim);
    if (rc) return rc;
    if (m->heads * m->head_dim != width)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: mamba_n_heads * mamba_d_head (%d * %d) must equal the mixer width "
                           "(mamba_d_ssm or mamba_expand * hidden_size: %d)",
                           r->file, m->heads, m->head_dim, width);
    a->o_bias = a->qkv_bias;
    a->scale = 1.0f / sqrtf((float)a->head_dim);
    rc = srp_cfg_rope(r, a->head_dim, &a->rope);
    if (rc) return rc;
    f->gated = 1;
    m->dt_min = (float)lo;
    m->dt_max = (float)hi;
    rc = srp_cfg_mamba2_derive(m, r);
    if (rc) return rc;
    /* FalconH1RMSNormGated: mamba_n_groups groups, eps rms_norm_eps */
    m->norm_group = m->d_inner / m->groups;
    m->gate_norm = !rms_norm     ? SRP_GATE_NO_NORM
                   : before_gate ? SRP_GATE_NORM_BEFORE
                                 : SRP_GATE_NORM_AFTER;
    for (int i = 0; i < c->n_layers && !rc; i++) {
        rc = srp_cfg_add_block(c, r, i, 2, SRP_MIXER_ATTENTION, SRP_MIXER_MAMBA2);
        if (!rc) rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_MLP, 0);
    }
    return rc;
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const int l = c->blocks[b].layer, mixers = c->blocks[b].n_mixers == 2;
        srp_block *bl = srp_load_block(L, b,
                                       srp_lname(L,
                                                 mixers ? "layers.%d.input_layernorm.weight"
                                                        : "layers.%d.pre_ff_layernorm.weight",
                                                 l),
                                       c->d_model);
        if (!bl) return srp_loader_failed(L);
        if (mixers) {
            rc = srp_load_attn_mixer(L, bl, srp_lname(L, "layers.%d.self_attn.", l));
            if (!rc) rc = srp_load_mamba2_mixer(L, bl, srp_lname(L, "layers.%d.mamba.", l));
        } else {
            rc = srp_load_mlp_mixer(L, bl, srp_lname(L, "layers.%d.feed_forward.", l), NULL);
        }
    }
    static const char *const norms[] = { "final_layernorm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_falcon_h1 = {
    SRP_ARCH_FALCON_H1, { "FalconH1ForCausalLM", "falcon_h1" }, parse, load
};
