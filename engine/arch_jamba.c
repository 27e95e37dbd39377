/* JambaForCausalLM (AI21's Jamba; transformers' modeling_jamba.py). Each layer is two blocks: its
 * mixer after input_layernorm — attention where i % attn_layer_period == attn_layer_offset, else
 * the Mamba-1 mixer with learned RMS norms of dt, B and C (eps rms_norm_eps) — then the
 * feed-forward after pre_ff_layernorm: a mixture of num_experts gated experts where
 * i % expert_layer_period == expert_layer_offset (and num_experts > 1), else a dense SwiGLU MLP.
 * The router takes the softmax over all experts, then the top k of it as weights, not
 * renormalised. Attention has no position embedding and no biases (GQA, 1/sqrt(head_dim)). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"

/* A period and an offset below it (JambaConfig refuses offset >= period). */
static int parse_period(const srp_cfg_reader *r, const char *what, int def_period, int def_offset,
                        int *period, int *offset) {
    char pk[32], ok[32];
    snprintf(pk, sizeof pk, "%s_layer_period", what);
    snprintf(ok, sizeof ok, "%s_layer_offset", what);
    int rc = srp_cfg_int(r, pk, NULL, def_period, 1, period);
    if (!rc) rc = srp_cfg_int(r, ok, NULL, def_offset, 0, offset);
    if (!rc && *offset >= *period)
        rc = srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" (%d) must be below %s (%d)", r->file,
                         ok, *offset, pk, *period);
    return rc;
}

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba1_config *m = &c->mamba1;
    srp_attn_config *a = &c->attn;
    srp_moe_config *moe = &c->moe;
    int rc = 0, expand = 2, hidden = 14336, ap = 8, ao = 4, ep = 2, eo = 1;
    srp_act act = SRP_ACT_SILU;
    /* Defaults are JambaConfig's (Jamba-v0.1's shape). */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 65536, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", NULL, 32, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 14336, 1, &hidden);
    if (!rc) rc = srp_cfg_floatf(r, "rms_norm_eps", NULL, 1e-6, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_act(r, "hidden_act", "silu", &act);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) {
        /* absent: 8; null: one per query head (JambaConfig's backward compatibility) */
        const cJSON *kv = cJSON_GetObjectItemCaseSensitive(r->root, "num_key_value_heads");
        rc = srp_cfg_int(r, "num_key_value_heads", NULL, cJSON_IsNull(kv) ? a->heads : 8, 1,
                         &a->kv_heads);
    }
    if (!rc) {
        /* LlamaAttention's head size: head_dim when the config has one */
        const int def_hd = c->d_model / a->heads;
        rc = srp_cfg_int(r, "head_dim", NULL, def_hd > 0 ? def_hd : 1, 1, &a->head_dim);
    }
    if (!rc) rc = parse_period(r, "attn", 8, 4, &ap, &ao);
    if (!rc) rc = parse_period(r, "expert", 2, 1, &ep, &eo);
    if (!rc) rc = srp_cfg_int(r, "num_experts", NULL, 16, 0, &moe->n_experts);
    if (!rc) rc = srp_cfg_int(r, "num_experts_per_tok", NULL, 2, 0, &moe->top_k);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_state", NULL, 16, 1, &m->state);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_conv", NULL, 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "mamba_expand", NULL, 2, 1, &expand);
    if (!rc) rc = srp_cfg_int_auto(r, "mamba_dt_rank", (c->d_model + 15) / 16, &m->dt_rank);
    if (!rc) rc = srp_cfg_bool(r, "mamba_conv_bias", NULL, 1, &m->conv_bias);
    if (!rc) rc = srp_cfg_bool(r, "mamba_proj_bias", NULL, 0, &m->proj_bias);
    if (rc) return rc;
    if (c->n_layers > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    /* the Mamba mixers use hidden_act too */
    if (act != SRP_ACT_SILU)
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"hidden_act\": the Mamba layers need silu, not %s", r->file,
                           srp_act_name(act));
    if ((int64_t)expand * c->d_model > (1 << 30))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"mamba_expand\": %d is too large",
                           r->file, expand);
    if (m->conv_kernel > 64)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: field \"mamba_d_conv\": %d (at most 64)",
                           r->file, m->conv_kernel);
    m->d_inner = expand * c->d_model;
    m->bcdt_norm = 2;
    m->bcdt_eps = c->norm_eps;
    a->scale = 1.0f / sqrtf((float)a->head_dim);
    a->rope.kind = SRP_ROPE_NONE;
    /* sliding_window (older configs) is not read: transformers 5's JambaConfig has no such
     * field and every attention layer sees the whole causal prefix (in 4.x only the
     * flash-attention path used it) */
    c->mlp = (srp_mlp_config){ hidden, act, 1, 0, 1.0f, 1.0f, 0, 0 };
    /* a layer has experts when its slot in the period says so and there are at least two */
    int n_moe = 0;
    for (int i = 0; i < c->n_layers; i++) n_moe += moe->n_experts > 1 && i % ep == eo;
    if (n_moe) {
        if (moe->top_k < 1 || moe->top_k > moe->n_experts)
            return srp_err_set(r->e, SRP_EFORMAT,
                               "%s: field \"num_experts_per_tok\": %d (1 to num_experts, %d)",
                               r->file, moe->top_k, moe->n_experts);
        if (moe->n_experts > SRP_MOE_MAX_EXPERTS || moe->top_k > SRP_MOE_MAX_TOP_K)
            return srp_err_set(r->e, SRP_EUNSUPPORTED,
                               "%s: fields \"num_experts\" (%d) and \"num_experts_per_tok\" (%d): "
                               "serpent routes 1 to %d of at most %d experts",
                               r->file, moe->n_experts, moe->top_k, SRP_MOE_MAX_TOP_K,
                               SRP_MOE_MAX_EXPERTS);
        moe->score = SRP_MOE_SOFTMAX;
        moe->norm_topk = 0;
        moe->n_group = moe->topk_group = 1;
        moe->scale = 1.0f;
        moe->hidden = hidden;
        moe->act = act;
        moe->gated = 1;
    } else {
        moe->n_experts = moe->top_k = 0;
    }
    for (int i = 0; i < c->n_layers && !rc; i++) {
        rc =
            srp_cfg_add_block(c, r, i, 1, i % ap == ao ? SRP_MIXER_ATTENTION : SRP_MIXER_MAMBA1, 0);
        if (!rc)
            rc = srp_cfg_add_block(
                c, r, i, 1, moe->n_experts > 1 && i % ep == eo ? SRP_MIXER_MOE : SRP_MIXER_MLP, 0);
    }
    return rc;
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    /* the experts as the Hub's checkpoints store them (one module each) or as transformers 5
     * holds them in memory (stacked, [gate | up] rows) */
    static const srp_moe_names moe = {
        .router = "router.weight",
        .up_stacked = "experts.gate_up_proj",
        .down_stacked = "experts.down_proj",
        .up_expert = "experts.%d.up_proj.weight",
        .down_expert = "experts.%d.down_proj.weight",
        .gate_expert = "experts.%d.gate_proj.weight",
    };
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const int l = c->blocks[b].layer;
        const srp_mixer_kind kind = c->blocks[b].mixer[0];
        const int ffn = kind == SRP_MIXER_MOE || kind == SRP_MIXER_MLP;
        srp_block *bl = srp_load_block(
            L, b,
            srp_lname(L, "layers.%d.%s.weight", l, ffn ? "pre_ff_layernorm" : "input_layernorm"),
            c->d_model);
        if (!bl) return srp_loader_failed(L);
        switch (kind) {
        case SRP_MIXER_MAMBA1:
            rc = srp_load_mamba1_mixer(L, bl, srp_lname(L, "layers.%d.mamba.", l), NULL);
            break;
        case SRP_MIXER_ATTENTION:
            rc = srp_load_attn_mixer(L, bl, srp_lname(L, "layers.%d.self_attn.", l));
            break;
        case SRP_MIXER_MOE:
            rc = srp_load_moe_mixer(L, bl, srp_lname(L, "layers.%d.feed_forward.", l), &moe);
            break;
        case SRP_MIXER_MLP:
            rc = srp_load_mlp_mixer(L, bl, srp_lname(L, "layers.%d.feed_forward.", l), NULL);
            break;
        default:
            rc = srp_err_set(srp_loader_err(L), SRP_EINVAL, "layer %d: unexpected mixer", l);
        }
    }
    static const char *const norms[] = { "final_layernorm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_jamba = {
    SRP_ARCH_JAMBA, { "JambaForCausalLM", "jamba" }, parse, load
};
