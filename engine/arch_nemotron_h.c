/* NemotronHForCausalLM (NVIDIA's Nemotron-H and Nemotron 3; transformers' modeling_nemotron_h.py):
 * every layer one mixer — Mamba-2 ('M'), attention without position embedding ('*'), a
 * non-gated MLP ('-') or a mixture of experts ('E') — chosen by hybrid_override_pattern or the
 * layers_block_type list. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"

static int add_layer(srp_config *c, const srp_cfg_reader *r, char kind, int index) {
    switch (kind) {
    case 'M':
        return srp_cfg_add_block(c, r, index, 1, SRP_MIXER_MAMBA2, 0);
    case '*':
        return srp_cfg_add_block(c, r, index, 1, SRP_MIXER_ATTENTION, 0);
    case '-':
        return srp_cfg_add_block(c, r, index, 1, SRP_MIXER_MLP, 0);
    case 'E':
        return srp_cfg_add_block(c, r, index, 1, SRP_MIXER_MOE, 0);
    default:
        return srp_err_set(r->e, SRP_EFORMAT, "%s: layer %d has unknown type '%c'", r->file, index,
                           kind);
    }
}

/* The layer pattern: the "M-*" string of published checkpoints, or the list that current
 * transformers writes. Megatron's '|' (pipeline boundary) and '/' (MTP) are not layers. */
static int parse_pattern(srp_config *c, const srp_cfg_reader *r) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(r->root, "hybrid_override_pattern");
    const char *list_key = "layers_block_type";
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r->root, list_key);
    if (!list || cJSON_IsNull(list)) {
        list_key = "layer_types";
        list = cJSON_GetObjectItemCaseSensitive(r->root, list_key);
    }
    c->n_layers = 0;
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list))
            return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a list of strings",
                               r->file, list_key);
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            if (!cJSON_IsString(it))
                return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\"[%d] must be a string",
                                   r->file, list_key, i);
            const char *s = it->valuestring;
            char kind = '?';
            if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention") || !strcmp(s, "mamba2"))
                kind = 'M';
            else if (!strcmp(s, "attention") || !strcmp(s, "full_attention"))
                kind = '*';
            else if (!strcmp(s, "mlp"))
                kind = '-';
            else if (!strcmp(s, "moe"))
                kind = 'E';
            else
                return srp_err_set(r->e, SRP_EFORMAT,
                                   "%s: field \"%s\"[%d]: unknown layer type \"%s\"", r->file,
                                   list_key, i, s);
            int rc = add_layer(c, r, kind, i);
            if (rc) return rc;
            i++;
        }
        c->n_layers = i;
    } else if (pat && !cJSON_IsNull(pat)) {
        if (!cJSON_IsString(pat))
            return srp_err_set(r->e, SRP_EFORMAT,
                               "%s: field \"hybrid_override_pattern\" must be a string", r->file);
        int i = 0;
        for (const char *p = pat->valuestring; *p; p++) {
            if (*p == '|' || *p == '/') continue;
            if (i >= SRP_MAX_LAYERS)
                return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                                   SRP_MAX_LAYERS);
            int rc = add_layer(c, r, *p, i++);
            if (rc) return srp_err_prefix(r->e, "field \"hybrid_override_pattern\"");
        }
        c->n_layers = i;
    } else {
        return srp_err_set(
            r->e, SRP_EFORMAT,
            "%s: missing field \"hybrid_override_pattern\" (or \"layers_block_type\")", r->file);
    }
    if (c->n_layers == 0)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: the layer pattern is empty", r->file);
    return 0;
}

/* NemotronHMoE: NemotronHTopkRouter (sigmoid scores, e_score_correction_bias for the choice,
 * grouped top-k), relu2 experts without gates (NemotronHExperts, optionally between the latent
 * projections) and one shared expert of moe_shared_expert_intermediate_size (n_shared_experts is
 * not read by transformers either). */
static int parse_moe(srp_config *c, const srp_cfg_reader *r) {
    srp_moe_config *m = &c->moe;
    int rc = 0, mtp = 0;
    m->score = SRP_MOE_SIGMOID;
    m->gated = 0;
    m->shared_gated = 0;
    if (!rc) rc = srp_cfg_int(r, "n_routed_experts", "num_local_experts", 8, 1, &m->n_experts);
    if (!rc) rc = srp_cfg_int(r, "num_experts_per_tok", NULL, 2, 1, &m->top_k);
    if (!rc) rc = srp_cfg_int(r, "n_group", NULL, 1, 1, &m->n_group);
    if (!rc) rc = srp_cfg_int(r, "topk_group", NULL, 1, 1, &m->topk_group);
    if (!rc) rc = srp_cfg_bool(r, "norm_topk_prob", NULL, 1, &m->norm_topk);
    if (!rc) rc = srp_cfg_floatf(r, "routed_scaling_factor", NULL, 1.0, &m->scale);
    if (!rc) rc = srp_cfg_int(r, "moe_intermediate_size", NULL, 7688, 1, &m->hidden);
    if (!rc)
        rc =
            srp_cfg_int(r, "moe_shared_expert_intermediate_size", NULL, 7688, 0, &m->shared_hidden);
    if (!rc) rc = srp_cfg_int(r, "moe_latent_size", NULL, 0, 0, &m->latent);
    if (!rc) rc = srp_cfg_int(r, "num_nextn_predict_layers", NULL, 0, 0, &mtp);
    if (rc) return rc;
    m->act = m->shared_act = c->mlp.act;
    m->proj_bias = m->shared_bias = c->mlp.bias;
    if (m->n_experts > SRP_MOE_MAX_EXPERTS || m->top_k > SRP_MOE_MAX_TOP_K ||
        m->n_group > SRP_MOE_MAX_GROUPS || m->n_experts % m->n_group ||
        (m->n_group > 1 && m->n_experts / m->n_group < 2) || m->topk_group > m->n_group ||
        m->top_k > m->topk_group * (m->n_experts / m->n_group))
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: %d routed experts, %d per token, n_group %d, topk_group %d: "
                           "serpent routes at most %d experts, %d per token, in at most %d groups "
                           "of two or more, choosing no more than the kept groups hold",
                           r->file, m->n_experts, m->top_k, m->n_group, m->topk_group,
                           SRP_MOE_MAX_EXPERTS, SRP_MOE_MAX_TOP_K, SRP_MOE_MAX_GROUPS);
    if (mtp > 0)
        snprintf(c->note, sizeof c->note,
                 "the checkpoint's %d multi-token-prediction layer%s (mtp.*) %s not loaded: "
                 "serpent predicts one token per step, as transformers does",
                 mtp, mtp > 1 ? "s" : "", mtp > 1 ? "are" : "is");
    return 0;
}

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba2_config *m = &c->mamba2;
    srp_attn_config *a = &c->attn;
    int rc = 0, err = 0;
    /* Defaults are NemotronHConfig's, as transformers applies them to missing keys. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 131072, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = parse_pattern(c, r);
    if (!rc) rc = srp_cfg_floatf(r, "layer_norm_epsilon", NULL, 1e-5, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "mamba_num_heads", NULL, 128, 1, &m->heads);
    if (!rc) rc = srp_cfg_int(r, "mamba_head_dim", NULL, 64, 1, &m->head_dim);
    if (!rc) rc = srp_cfg_int(r, "ssm_state_size", NULL, 128, 1, &m->state);
    if (!rc) rc = srp_cfg_int(r, "n_groups", "mamba_n_groups", 8, 1, &m->groups);
    if (!rc) rc = srp_cfg_int(r, "conv_kernel", "mamba_d_conv", 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "chunk_size", "mamba_chunk_size", 128, 1, &m->chunk_size);
    if (!rc) rc = srp_cfg_bool(r, "use_conv_bias", "mamba_conv_bias", 1, &m->conv_bias);
    if (!rc) rc = srp_cfg_bool(r, "use_bias", NULL, 0, &m->proj_bias);
    /* transformers' NemotronH mixer clamps softplus(dt + dt_bias) to [time_step_min, inf) and
     * ignores time_step_limit; serpent follows its reference in prefill and decode alike. */
    if (!rc) rc = srp_cfg_floatf(r, "time_step_min", "mamba_dt_min", 0.001, &m->dt_min);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) rc = srp_cfg_int(r, "num_key_value_heads", NULL, a->heads, 1, &a->kv_heads);
    if (!rc) {
        int def_hd = c->d_model / a->heads;
        rc = srp_cfg_int(r, "head_dim", "attention_head_dim", def_hd > 0 ? def_hd : 1, 1,
                         &a->head_dim);
    }
    if (!rc) rc = srp_cfg_bool(r, "attention_bias", NULL, 0, &a->qkv_bias);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 21504, 1, &c->mlp.hidden);
    if (!rc) rc = srp_cfg_bool(r, "mlp_bias", NULL, 0, &c->mlp.bias);
    if (!rc) rc = srp_cfg_act(r, "mlp_hidden_act", "relu2", &c->mlp.act);
    if (rc) return rc;
    const char *s = srp_cfg_string(r, "mamba_hidden_act", NULL, "silu", &err);
    if (err) return err;
    if (strcmp(s, "silu") && strcmp(s, "swish"))
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"mamba_hidden_act\": only silu is supported, not \"%s\"",
                           r->file, s);
    a->o_bias = a->qkv_bias;
    a->scale = 1.0f / sqrtf((float)a->head_dim);
    a->rope.kind = SRP_ROPE_NONE; /* Nemotron-H attention has no position embedding */
    m->dt_max = INFINITY;
    rc = srp_cfg_mamba2_derive(m, r);
    if (rc) return rc;
    /* Zamba2RMSNormGated with group_size = d_inner / n_groups */
    m->norm_group = m->d_inner / m->groups;
    return srp_config_count(c, SRP_MIXER_MOE) ? parse_moe(c, r) : 0;
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    static const srp_mlp_names mlp = { NULL, "up_proj.weight", "down_proj.weight", NULL };
    static const srp_moe_names moe = {
        "gate.weight",
        "gate.e_score_correction_bias",
        "experts.up_proj",
        "experts.down_proj",
        "experts.%d.up_proj.weight",
        "experts.%d.down_proj.weight",
        "fc1_latent_proj",
        "fc2_latent_proj",
        { NULL, "shared_experts.up_proj.weight", "shared_experts.down_proj.weight", NULL },
        NULL, /* gate_expert */
    };
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const int l = c->blocks[b].layer;
        srp_block *bl = srp_load_block(L, b, srp_lname(L, "layers.%d.norm.weight", l), c->d_model);
        if (!bl) return srp_loader_err(L)->code;
        const char *mixer = srp_lname(L, "layers.%d.mixer.", l);
        switch (c->blocks[b].mixer[0]) {
        case SRP_MIXER_MAMBA2:
            rc = srp_load_mamba2_mixer(L, bl, mixer);
            break;
        case SRP_MIXER_ATTENTION:
            rc = srp_load_attn_mixer(L, bl, mixer);
            break;
        case SRP_MIXER_MLP:
            rc = srp_load_mlp_mixer(L, bl, mixer, &mlp);
            break;
        case SRP_MIXER_MOE:
            rc = srp_load_moe_mixer(L, bl, mixer, &moe);
            break;
        default:
            rc = srp_err_set(srp_loader_err(L), SRP_EINVAL, "layer %d: unexpected mixer", l);
        }
    }
    /* transformers' NemotronH never ties; a file without lm_head.weight whose config asks to
     * tie uses the embedding */
    static const char *const norms[] = { "norm_f.weight", "norm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings && !srp_load_has(L, "lm_head.weight"));
    return rc;
}

const srp_arch_desc srp_arch_nemotron_h = {
    SRP_ARCH_NEMOTRON_H, { "NemotronHForCausalLM", "nemotron_h" }, parse, load
};
