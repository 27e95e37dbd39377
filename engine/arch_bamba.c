/* BambaForCausalLM (IBM's Bamba; transformers' modeling_bamba.py): every layer a Mamba-2 mixer,
 * or attention at attn_layer_indices, followed by a SwiGLU MLP — two blocks per layer, behind
 * input_layernorm and pre_ff_layernorm. The Mamba-2 mixer normalises its gated output over the
 * whole mixer width (no groups); attention is Llama's with RoPE on half of each head. */
#include <math.h>
#include <string.h>

#include "arch.h"

/* attn_layer_indices: a list of layer indices, or absent (no attention). */
static int parse_layers(srp_config *c, const srp_cfg_reader *r) {
    const char *used;
    const cJSON *list = srp_cfg_find(r, "attn_layer_indices", NULL, &used);
    unsigned char is_attn[SRP_MAX_LAYERS] = { 0 };
    if (c->n_layers > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    if (list) {
        if (!cJSON_IsArray(list))
            return srp_err_set(r->e, SRP_EFORMAT,
                               "%s: field \"attn_layer_indices\" must be a list of layer indices",
                               r->file);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
                it->valuedouble < 0 || it->valuedouble >= c->n_layers)
                return srp_err_set(r->e, SRP_EFORMAT,
                                   "%s: field \"attn_layer_indices\": %g is not a layer index "
                                   "below num_hidden_layers (%d)",
                                   r->file, cJSON_IsNumber(it) ? it->valuedouble : -1.0,
                                   c->n_layers);
            is_attn[it->valueint] = 1;
        }
    }
    int rc = 0;
    for (int i = 0; i < c->n_layers && !rc; i++) {
        rc = srp_cfg_add_block(c, r, i, 1, is_attn[i] ? SRP_MIXER_ATTENTION : SRP_MIXER_MAMBA2, 0);
        if (!rc) rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_MLP, 0);
    }
    return rc;
}

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba2_config *m = &c->mamba2;
    srp_attn_config *a = &c->attn;
    srp_mlp_config *f = &c->mlp;
    int rc = 0, expand = 2;
    double lo = 0.0, hi = INFINITY;
    /* Defaults are BambaConfig's. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 128000, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", NULL, 32, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "rms_norm_eps", NULL, 1e-5, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) rc = srp_cfg_int(r, "num_key_value_heads", NULL, 8, 1, &a->kv_heads);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 14336, 1, &f->hidden);
    if (!rc) rc = srp_cfg_act(r, "hidden_act", "silu", &f->act);
    if (!rc) rc = srp_cfg_int(r, "mamba_n_heads", NULL, 128, 1, &m->heads);
    if (!rc) rc = srp_cfg_int(r, "mamba_n_groups", NULL, 1, 1, &m->groups);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_state", NULL, 256, 1, &m->state);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_conv", NULL, 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "mamba_expand", NULL, 2, 1, &expand);
    if (!rc) rc = srp_cfg_int(r, "mamba_chunk_size", NULL, 256, 1, &m->chunk_size);
    if (!rc) rc = srp_cfg_bool(r, "mamba_conv_bias", NULL, 1, &m->conv_bias);
    if (!rc) rc = srp_cfg_bool(r, "mamba_proj_bias", NULL, 0, &m->proj_bias);
    if (!rc) rc = srp_cfg_range(r, "time_step_limit", NULL, &lo, &hi);
    if (rc) return rc;
    const int d_inner = expand * c->d_model;
    rc = srp_cfg_int_auto(r, "mamba_d_head", d_inner / m->heads, &m->head_dim);
    if (rc) return rc;
    if (m->heads * m->head_dim != d_inner)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: mamba_n_heads * mamba_d_head (%d * %d) must equal mamba_expand * "
                           "hidden_size (%d)",
                           r->file, m->heads, m->head_dim, d_inner);
    /* BambaAttention is Llama's: head_dim = hidden / heads, no biases (BambaConfig fixes
     * attention_bias and mlp_bias to false) */
    a->head_dim = c->d_model / a->heads;
    if (a->head_dim <= 0)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: more attention heads than channels", r->file);
    a->scale = 1.0f / sqrtf((float)a->head_dim);
    rc = srp_cfg_rope(r, a->head_dim, &a->rope);
    if (rc) return rc;
    /* transformers' BambaConfig hard-codes partial_rotary_factor = 0.5, whatever the file says */
    a->rope.dim = a->head_dim / 2;
    a->rope.dim -= a->rope.dim % 2;
    if (a->rope.dim <= 0)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: head_dim %d leaves no channel to rotate",
                           r->file, a->head_dim);
    f->gated = 1;
    m->dt_min = (float)lo;
    m->dt_max = (float)hi;
    rc = srp_cfg_mamba2_derive(m, r);
    if (rc) return rc;
    /* BambaRMSNormGated normalises y * silu(z) over the whole mixer width */
    m->norm_group = m->d_inner;
    return parse_layers(c, r);
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const int l = c->blocks[b].layer;
        const srp_mixer_kind kind = c->blocks[b].mixer[0];
        srp_block *bl =
            srp_load_block(L, b,
                           srp_lname(L,
                                     kind == SRP_MIXER_MLP ? "layers.%d.pre_ff_layernorm.weight"
                                                           : "layers.%d.input_layernorm.weight",
                                     l),
                           c->d_model);
        if (!bl) return srp_loader_failed(L);
        if (kind == SRP_MIXER_MAMBA2)
            rc = srp_load_mamba2_mixer(L, bl, srp_lname(L, "layers.%d.mamba.", l));
        else if (kind == SRP_MIXER_ATTENTION)
            rc = srp_load_attn_mixer(L, bl, srp_lname(L, "layers.%d.self_attn.", l));
        else
            rc = srp_load_mlp_mixer(L, bl, srp_lname(L, "layers.%d.feed_forward.", l), NULL);
    }
    static const char *const norms[] = { "final_layernorm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_bamba = {
    SRP_ARCH_BAMBA, { "BambaForCausalLM", "bamba" }, parse, load
};
