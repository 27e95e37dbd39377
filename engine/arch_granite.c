/* GraniteMoeHybridForCausalLM (IBM's Granite 4.0-H; transformers' modeling_granitemoehybrid.py).
 * Each layer is two blocks: its mixer (Mamba-2 or attention, after input_layernorm), then the
 * feed-forward after post_attention_layernorm: the top-k softmax mixture of gated experts plus
 * the shared gated MLP, or the shared MLP alone in the dense variants (num_local_experts 0).
 * Every block's output is scaled by residual_multiplier; the embeddings by
 * embedding_multiplier; attention scores by attention_multiplier in place of 1/sqrt(head_dim);
 * the logits are divided by logits_scaling. */
#include <math.h>
#include <string.h>

#include "arch.h"

static int parse_layers(srp_config *c, const srp_cfg_reader *r, int n_layers) {
    const char *key;
    const cJSON *list = srp_cfg_find(r, "layer_types", "layers_block_type", &key);
    if (list && !cJSON_IsArray(list))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a list of strings", r->file,
                           key);
    const int n = list ? cJSON_GetArraySize(list) : n_layers;
    if (n < 1 || n > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: %d layers (serpent takes 1 to %d)", r->file,
                           n, SRP_MAX_LAYERS);
    const srp_mixer_kind ffn = c->moe.n_experts > 0 ? SRP_MIXER_MOE : SRP_MIXER_MLP;
    for (int i = 0; i < n; i++) {
        srp_mixer_kind kind = SRP_MIXER_MAMBA2; /* transformers' default: every layer Mamba */
        if (list) {
            const cJSON *it = cJSON_GetArrayItem(list, i);
            const char *s = cJSON_IsString(it) ? it->valuestring : "";
            if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention"))
                kind = SRP_MIXER_MAMBA2;
            else if (!strcmp(s, "attention") || !strcmp(s, "full_attention"))
                kind = SRP_MIXER_ATTENTION;
            else
                return srp_err_set(r->e, SRP_EFORMAT,
                                   "%s: field \"%s\"[%d]: unknown layer type \"%s\"", r->file, key,
                                   i, s);
        }
        int rc = srp_cfg_add_block(c, r, i, 1, kind, 0);
        if (!rc) rc = srp_cfg_add_block(c, r, i, 1, ffn, 0);
        if (rc) return rc;
    }
    c->n_layers = n;
    return 0;
}

/* "mamba_d_head": a number or "auto" (mamba_expand * hidden_size / mamba_n_heads). */
static int parse_head_dim(const srp_cfg_reader *r, int d_inner, int heads, int *out) {
    const char *key;
    const cJSON *it = srp_cfg_find(r, "mamba_d_head", NULL, &key);
    if (!it || (cJSON_IsString(it) && !strcmp(it->valuestring, "auto"))) {
        *out = d_inner / heads;
        return 0;
    }
    return srp_cfg_int(r, "mamba_d_head", NULL, 1, 1, out);
}

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba2_config *m = &c->mamba2;
    srp_attn_config *a = &c->attn;
    srp_moe_config *moe = &c->moe;
    int rc = 0, err = 0, n_layers = 32, expand = 2, shared = 1024;
    double emb = 1, logits = 1, resid = 1, attn = 1, lo = 0.0, hi = INFINITY;
    /* Defaults are GraniteMoeHybridConfig's. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 32000, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", NULL, 32, 1, &n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "rms_norm_eps", NULL, 1e-6, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_float(r, "embedding_multiplier", NULL, 1.0, &emb);
    if (!rc) rc = srp_cfg_float(r, "logits_scaling", NULL, 1.0, &logits);
    if (!rc) rc = srp_cfg_float(r, "residual_multiplier", NULL, 1.0, &resid);
    if (!rc) rc = srp_cfg_float(r, "attention_multiplier", NULL, 1.0, &attn);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) rc = srp_cfg_int(r, "num_key_value_heads", NULL, a->heads, 1, &a->kv_heads);
    if (!rc) {
        int def_hd = c->d_model / a->heads;
        rc = srp_cfg_int(r, "head_dim", NULL, def_hd > 0 ? def_hd : 1, 1, &a->head_dim);
    }
    if (!rc) rc = srp_cfg_bool(r, "attention_bias", NULL, 0, &a->qkv_bias);
    if (!rc) rc = srp_cfg_int(r, "num_local_experts", NULL, 8, 0, &moe->n_experts);
    if (!rc) rc = srp_cfg_int(r, "num_experts_per_tok", NULL, 2, 0, &moe->top_k);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 11008, 1, &moe->hidden);
    if (!rc) rc = srp_cfg_int(r, "shared_intermediate_size", NULL, 1024, 1, &shared);
    if (!rc) rc = srp_cfg_act(r, "hidden_act", "silu", &moe->act);
    if (!rc) rc = srp_cfg_int(r, "mamba_n_heads", NULL, 128, 1, &m->heads);
    if (!rc) rc = srp_cfg_int(r, "mamba_n_groups", NULL, 1, 1, &m->groups);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_state", NULL, 256, 1, &m->state);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_conv", NULL, 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "mamba_expand", NULL, 2, 1, &expand);
    if (!rc) rc = srp_cfg_int(r, "mamba_chunk_size", NULL, 256, 1, &m->chunk_size);
    if (!rc) rc = srp_cfg_bool(r, "mamba_conv_bias", NULL, 1, &m->conv_bias);
    if (!rc) rc = srp_cfg_bool(r, "mamba_proj_bias", NULL, 0, &m->proj_bias);
    if (!rc) rc = srp_cfg_range(r, "time_step_limit", NULL, &lo, &hi);
    if (!rc) rc = parse_head_dim(r, expand * c->d_model, m->heads, &m->head_dim);
    if (rc) return rc;
    /* the Mamba layers use hidden_act too */
    if (moe->act != SRP_ACT_SILU)
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"hidden_act\": the Mamba layers need silu, not %s", r->file,
                           srp_act_name(moe->act));
    if (m->heads * m->head_dim != expand * c->d_model)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: mamba_n_heads * mamba_d_head (%d * %d) must equal mamba_expand * "
                           "hidden_size (%d)",
                           r->file, m->heads, m->head_dim, expand * c->d_model);
    if (!(logits != 0))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"logits_scaling\" is 0", r->file);
    const char *pe = srp_cfg_string(r, "position_embedding_type", NULL, "nope", &err);
    if (err) return err;
    if (!strcmp(pe, "rope")) {
        rc = srp_cfg_rope(r, a->head_dim, &a->rope);
        if (rc) return rc;
        /* the default rotary embedding of this family turns whole heads, whatever
         * partial_rotary_factor says */
        if (a->rope.kind == SRP_ROPE_DEFAULT) a->rope.dim = a->head_dim - a->head_dim % 2;
    } else if (!strcmp(pe, "nope")) {
        a->rope.kind = SRP_ROPE_NONE;
    } else {
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"position_embedding_type\": \"%s\" (rope or nope)", r->file,
                           pe);
    }
    a->o_bias = a->qkv_bias;
    a->scale = (float)attn;
    c->embed_mult = (float)emb;
    c->resid_mult = (float)resid;
    c->logits_mult = (float)(1.0 / logits);
    m->dt_min = (float)lo;
    m->dt_max = (float)hi;
    rc = srp_cfg_mamba2_derive(m, r);
    if (rc) return rc;
    m->norm_group = m->d_inner; /* GraniteMoeHybridRMSNormGated: one group, whatever n_groups */
    /* the shared MLP: the whole feed-forward of the dense variants, beside the experts otherwise */
    c->mlp = (srp_mlp_config){ shared, moe->act, 1, 0, 1.0f, 1.0f, 0, 0 };
    if (moe->n_experts > 0) {
        if (moe->top_k < 1 || moe->top_k > moe->n_experts || moe->n_experts > SRP_MOE_MAX_EXPERTS ||
            moe->top_k > SRP_MOE_MAX_TOP_K)
            return srp_err_set(r->e, SRP_EUNSUPPORTED,
                               "%s: %d experts, %d per token: serpent routes 1 to %d of at most %d",
                               r->file, moe->n_experts, moe->top_k, SRP_MOE_MAX_TOP_K,
                               SRP_MOE_MAX_EXPERTS);
        moe->score = SRP_MOE_SOFTMAX; /* softmax over the k best logits = renormalised top-k */
        moe->norm_topk = 1;
        moe->n_group = moe->topk_group = 1;
        moe->scale = 1.0f;
        moe->gated = 1;
        moe->shared_hidden = shared;
        moe->shared_act = moe->act;
        moe->shared_gated = 1;
    }
    return parse_layers(c, r, n_layers);
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    static const srp_mlp_names shared = { NULL, NULL, "output_linear.weight",
                                          "input_linear.weight" };
    static const srp_moe_names moe = {
        "block_sparse_moe.router.layer.weight",
        NULL,
        "block_sparse_moe.input_linear.weight",
        "block_sparse_moe.output_linear.weight",
        NULL,
        NULL,
        NULL,
        NULL,
        { NULL, NULL, "shared_mlp.output_linear.weight", "shared_mlp.input_linear.weight" },
        NULL, /* gate_expert */
    };
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const int l = c->blocks[b].layer;
        const srp_mixer_kind kind = c->blocks[b].mixer[0];
        const int ffn = kind == SRP_MIXER_MOE || kind == SRP_MIXER_MLP;
        srp_block *bl =
            srp_load_block(L, b,
                           srp_lname(L, "layers.%d.%s.weight", l,
                                     ffn ? "post_attention_layernorm" : "input_layernorm"),
                           c->d_model);
        if (!bl) return srp_loader_err(L)->code;
        switch (kind) {
        case SRP_MIXER_MAMBA2:
            rc = srp_load_mamba2_mixer(L, bl, srp_lname(L, "layers.%d.mamba.", l));
            break;
        case SRP_MIXER_ATTENTION:
            rc = srp_load_attn_mixer(L, bl, srp_lname(L, "layers.%d.self_attn.", l));
            break;
        case SRP_MIXER_MOE:
            rc = srp_load_moe_mixer(L, bl, srp_lname(L, "layers.%d.", l), &moe);
            break;
        case SRP_MIXER_MLP:
            rc = srp_load_mlp_mixer(L, bl, srp_lname(L, "layers.%d.shared_mlp.", l), &shared);
            break;
        default:
            rc = srp_err_set(srp_loader_err(L), SRP_EINVAL, "layer %d: unexpected mixer", l);
        }
    }
    static const char *const norms[] = { "norm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_granite = {
    SRP_ARCH_GRANITE, { "GraniteMoeHybridForCausalLM", "granitemoehybrid" }, parse, load
};
