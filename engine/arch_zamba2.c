/* Zamba2ForCausalLM (Zyphra's Zamba2; transformers' modeling_zamba2.py): a Mamba-2 backbone
 * (layers_block_type "mamba", written "linear_attention" by transformers 5) in which "hybrid"
 * layers first run one of num_mem_blocks shared transformer blocks. For hybrid layer l, its u-th
 * use of a shared block (block u % num_mem_blocks):
 *
 *   a = attention(norm_2H([x | e]))   e: the token embeddings; q, k, v from 2H inputs plus the
 *                                     use's low-rank adapters; score scale 1/sqrt(head_dim / 2)
 *   t = linear_l(mlp(norm(a)))        gated MLP on [gate | up] plus the use's adapter, no
 *                                     residual inside the block
 *   x = x + mamba(norm(x + t))        t enters the Mamba block's norm input, not the residual
 *
 * As blocks of the layer stack (engine/config.h): [attention, in [x | e], out aux], [mlp with
 * linear_l as its post projection, in aux, out aux], [mamba2, in x + aux, out x]. A shared
 * block's weights are loaded once and referenced by every use's mixer (a copy of the weight
 * structs, pointing at the same memory, with the use's own adapters); every use has its own
 * KV-cache layer. transformers' files hold a block its uses share under its first use; where a
 * use's own layer holds a shared_transformer of its own (transformers 5 writes every use when it
 * does not tie them, tests/reference/FAMILIES.md), that use takes it, as transformers does. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arch.h"

#define MAX_MEM_BLOCKS 64

/* Appends the three blocks of hybrid layer `layer` (shared block k) and its Mamba block. */
static int add_hybrid(srp_config *c, const srp_cfg_reader *r, int layer, int k) {
    int rc = srp_cfg_add_block(c, r, layer, 1, SRP_MIXER_ATTENTION, 0);
    if (rc) return rc;
    srp_block_desc *a = &c->blocks[c->n_blocks - 1];
    a->in = SRP_IN_CONCAT_EMBED, a->out = SRP_OUT_AUX, a->shared_id = 2 * k + 1;
    rc = srp_cfg_add_block(c, r, layer, 1, SRP_MIXER_MLP, 0);
    if (rc) return rc;
    srp_block_desc *f = &c->blocks[c->n_blocks - 1];
    f->in = SRP_IN_AUX, f->out = SRP_OUT_AUX, f->shared_id = 2 * k + 2;
    rc = srp_cfg_add_block(c, r, layer, 1, SRP_MIXER_MAMBA2, 0);
    if (rc) return rc;
    c->blocks[c->n_blocks - 1].in = SRP_IN_RESID_AUX;
    return 0;
}

static int parse_layers(srp_config *c, const srp_cfg_reader *r, int mem_blocks) {
    const char *used;
    const cJSON *list = srp_cfg_find(r, "layers_block_type", NULL, &used);
    if (!list || !cJSON_IsArray(list))
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: field \"layers_block_type\" must be a list of \"mamba\" and "
                           "\"hybrid\"",
                           r->file);
    int i = 0, uses = 0, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        if (i >= SRP_MAX_LAYERS)
            return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                               SRP_MAX_LAYERS);
        const char *s = cJSON_IsString(it) ? it->valuestring : "";
        if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention") || !strcmp(s, "mamba2"))
            rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_MAMBA2, 0);
        else if (!strcmp(s, "hybrid"))
            rc = add_hybrid(c, r, i, uses++ % mem_blocks);
        else
            return srp_err_set(r->e, SRP_EFORMAT,
                               "%s: field \"layers_block_type\"[%d]: unknown layer type \"%s\"",
                               r->file, i, s);
        if (rc) return rc;
        i++;
    }
    if (i != c->n_layers)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: layers_block_type lists %d layers, num_hidden_layers is %d",
                           r->file, i, c->n_layers);
    return 0;
}

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba2_config *m = &c->mamba2;
    srp_attn_config *a = &c->attn;
    srp_mlp_config *f = &c->mlp;
    int rc = 0, expand = 2, mem_blocks = 1, attn_adapter = 0, rank = 128, mem_rope = 0,
        long_ctx = 0, bias = 0;
    /* Defaults are Zamba2Config's. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 32000, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 2560, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", NULL, 54, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "rms_norm_eps", NULL, 1e-5, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 1, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_state", NULL, 64, 1, &m->state);
    if (!rc) rc = srp_cfg_int(r, "mamba_d_conv", NULL, 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "mamba_expand", NULL, 2, 1, &expand);
    if (!rc) rc = srp_cfg_int(r, "mamba_ngroups", NULL, 1, 1, &m->groups);
    if (!rc) rc = srp_cfg_int(r, "n_mamba_heads", NULL, 8, 1, &m->heads);
    if (!rc) rc = srp_cfg_int(r, "chunk_size", NULL, 256, 1, &m->chunk_size);
    if (!rc) rc = srp_cfg_floatf(r, "time_step_min", NULL, 0.001, &m->dt_min);
    if (!rc) rc = srp_cfg_bool(r, "add_bias_linear", NULL, 0, &bias);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 4 * c->d_model, 1, &f->hidden);
    if (!rc) rc = srp_cfg_act(r, "hidden_act", "gelu", &f->act);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) rc = srp_cfg_int(r, "num_key_value_heads", NULL, a->heads, 1, &a->kv_heads);
    if (!rc) rc = srp_cfg_int(r, "num_mem_blocks", NULL, 1, 1, &mem_blocks);
    if (!rc) rc = srp_cfg_bool(r, "use_shared_attention_adapter", NULL, 0, &attn_adapter);
    if (!rc) rc = srp_cfg_int(r, "adapter_rank", NULL, 128, 1, &rank);
    if (!rc) rc = srp_cfg_bool(r, "use_mem_rope", NULL, 0, &mem_rope);
    if (!rc) rc = srp_cfg_bool(r, "use_long_context", NULL, 0, &long_ctx);
    if (rc) return rc;
    if (mem_blocks > MAX_MEM_BLOCKS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d num_mem_blocks", r->file,
                           MAX_MEM_BLOCKS);
    if (mem_rope && long_ctx)
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: use_long_context (a rescaled memory RoPE) is not supported",
                           r->file);
    /* the Mamba mixer: expand * hidden wide, conv bias always (nn.Conv1d(bias=True)), dt
     * clamped below at time_step_min only, its gated norm grouped with eps fixed at 1e-5 */
    const int d_inner = expand * c->d_model;
    rc = srp_cfg_int(r, "mamba_headdim", NULL, d_inner / m->heads, 1, &m->head_dim);
    if (rc) return rc;
    if (m->heads * m->head_dim != d_inner)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: n_mamba_heads * mamba_headdim (%d * %d) must equal mamba_expand * "
                           "hidden_size (%d)",
                           r->file, m->heads, m->head_dim, d_inner);
    m->conv_bias = 1;
    m->proj_bias = bias;
    m->dt_max = INFINITY;
    rc = srp_cfg_mamba2_derive(m, r);
    if (rc) return rc;
    m->norm_group = m->d_inner / m->groups;
    m->norm_eps = 1e-5f;
    /* the shared attention reads [x | e]: 2 * hidden wide, heads of 2 * hidden / heads */
    a->d_in = 2 * c->d_model;
    rc = srp_cfg_int(r, "attention_head_dim", NULL, a->d_in / a->heads, 1, &a->head_dim);
    if (rc) return rc;
    a->scale = 1.0f / sqrtf(a->head_dim / 2.0f);
    a->adapter_rank = attn_adapter ? rank : 0;
    if (attn_adapter && a->kv_heads * a->head_dim != a->d_in)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: the attention adapters need num_key_value_heads * "
                           "attention_head_dim = 2 * hidden_size",
                           r->file);
    a->rope.kind = SRP_ROPE_NONE;
    if (mem_rope) {
        rc = srp_cfg_rope(r, a->head_dim, &a->rope);
        if (rc) return rc;
    }
    f->gated = 1;
    f->bias = bias;
    f->adapter_rank = rank; /* the MLP adapters always exist (transformers 5) */
    f->post_proj = 1;
    return parse_layers(c, r, mem_blocks);
}

/* ---- loading ---------------------------------------------------------------------------- */

typedef struct shared_slot {
    int layer; /* where its tensors are stored */
    const srp_block *block;
    const void *w; /* srp_attn_weights or srp_mlp_weights */
} shared_slot;

static int random_mode(srp_loader *L) {
    return srp_loader_model(L)->ckpt == NULL;
}

/* Whether the checkpoint holds a shared_transformer under layer. */
static int has_block(srp_loader *L, int layer) {
    return srp_load_has(L,
                        srp_lname(L, "layers.%d.shared_transformer.input_layernorm.weight", layer));
}

/* The layer whose shared_transformer holds block k's weights: the first of its uses whose
 * checkpoint has them (transformers saves a tied block once, under its first use). */
static int storage_layer(srp_loader *L, const srp_config *c, int id) {
    int first = -1;
    for (int b = 0; b < c->n_blocks; b++) {
        if (c->blocks[b].shared_id != id) continue;
        const int l = c->blocks[b].layer;
        if (first < 0) first = l;
        if (random_mode(L) || has_block(L, l)) return l;
    }
    return first;
}

/* The use's adapter A ([A_q; A_k; A_v] or the MLP's) and B's, when the checkpoint has them. */
static int load_attn_adapters(srp_loader *L, const srp_config *c, srp_attn_weights *w, int s,
                              int use) {
    const srp_attn_config *a = &c->attn;
    const int64_t r = a->adapter_rank, d_in = a->d_in, qd = (int64_t)a->heads * a->head_dim,
                  kvd = (int64_t)a->kv_heads * a->head_dim;
    if (!r) return 0;
    const char *pre = srp_lname(L, "layers.%d.shared_transformer.self_attn.", s);
    char p[256];
    snprintf(p, sizeof p, "%s", pre);
    if (!random_mode(L) &&
        !srp_load_has(L, srp_lname(L, "%slinear_q_adapter_list.%d.0.weight", p, use)))
        return 0; /* an Identity adapter: this use has none */
    const srp_load_part parts[3] = {
        { srp_lname(L, "%slinear_q_adapter_list.%d.0.weight", p, use), r, 0, r, 1.0f },
        { srp_lname(L, "%slinear_k_adapter_list.%d.0.weight", p, use), r, 0, r, 1.0f },
        { srp_lname(L, "%slinear_v_adapter_list.%d.0.weight", p, use), r, 0, r, 1.0f },
    };
    int rc = srp_load_concat(L, &w->adapter_a, d_in, SRP_INIT_MATRIX, 3, parts);
    if (!rc)
        rc = srp_load(L, &w->adapter_bq, qd, r, SRP_INIT_MATRIX,
                      srp_lname(L, "%slinear_q_adapter_list.%d.1.weight", p, use));
    if (!rc)
        rc = srp_load(L, &w->adapter_bk, kvd, r, SRP_INIT_MATRIX,
                      srp_lname(L, "%slinear_k_adapter_list.%d.1.weight", p, use));
    if (!rc)
        rc = srp_load(L, &w->adapter_bv, kvd, r, SRP_INIT_MATRIX,
                      srp_lname(L, "%slinear_v_adapter_list.%d.1.weight", p, use));
    return rc;
}

static int load_mlp_adapter(srp_loader *L, const srp_config *c, srp_mlp_weights *w, int s,
                            int use) {
    const int64_t r = c->mlp.adapter_rank, up = 2 * (int64_t)c->mlp.hidden;
    const char *a = srp_lname(
        L, "layers.%d.shared_transformer.feed_forward.gate_up_proj_adapter_list.%d.0.weight", s,
        use);
    if (!random_mode(L) && !srp_load_has(L, a)) return 0;
    int rc = srp_load(L, &w->adapter_a, r, c->d_model, SRP_INIT_MATRIX, a);
    if (!rc)
        rc = srp_load(
            L, &w->adapter_b, up, r, SRP_INIT_MATRIX,
            srp_lname(L,
                      "layers.%d.shared_transformer.feed_forward.gate_up_proj_adapter_list."
                      "%d.1.weight",
                      s, use));
    return rc;
}

/* Block b of shared group id: its norm and weights, this use's adapters, and its mixer (with its
 * own KV-cache layer for attention). transformers saves a block its uses share once, under the
 * first use; a use whose own layer holds a shared_transformer (checkpoints whose uses were not
 * tied) takes those weights, as transformers does. */
static int load_shared(srp_loader *L, const srp_config *c, int b, int use, shared_slot *slot) {
    const srp_block_desc *bd = &c->blocks[b];
    const int attn = bd->mixer[0] == SRP_MIXER_ATTENTION;
    const int own = !random_mode(L) && has_block(L, bd->layer);
    srp_block *bl;
    shared_slot mine = { 0 }, *src = slot;
    if (own && slot->block) src = &mine; /* this use's own weights, the group's stay */
    if (!src->block) {
        src->layer = own ? bd->layer : storage_layer(L, c, bd->shared_id);
        const int s = src->layer;
        bl = srp_load_block(L, b,
                            srp_lname(L,
                                      attn ? "layers.%d.shared_transformer.input_layernorm.weight"
                                           : "layers.%d.shared_transformer.pre_ff_layernorm.weight",
                                      s),
                            srp_config_norm_width(c, b));
        if (!bl) return srp_loader_failed(L);
        static const srp_mlp_names names = { NULL, NULL, "down_proj.weight",
                                             "gate_up_proj.weight" };
        src->w =
            attn ? (const void *)srp_load_attn_weights(
                       L, srp_lname(L, "layers.%d.shared_transformer.self_attn.", s))
                 : (const void *)srp_load_mlp_weights(
                       L, srp_lname(L, "layers.%d.shared_transformer.feed_forward.", s), &names);
        if (!src->w) return srp_loader_failed(L);
        src->block = bl;
    } else {
        /* the struct copy shares the backend memory; the loader frees the original once */
        bl = &srp_loader_model(L)->blocks[b];
        bl->norm = src->block->norm;
    }
    slot = src;
    int rc;
    if (attn) {
        srp_attn_weights *w = srp_load_alloc(L, sizeof *w);
        if (!w) return SRP_ENOMEM;
        *w = *(const srp_attn_weights *)slot->w;
        rc = load_attn_adapters(L, c, w, slot->layer, use);
        if (!rc && !srp_block_add_mixer(L, bl, SRP_MIXER_ATTENTION, w, NULL, 1))
            rc = srp_loader_failed(L);
    } else {
        srp_mlp_weights *w = srp_load_alloc(L, sizeof *w);
        if (!w) return SRP_ENOMEM;
        *w = *(const srp_mlp_weights *)slot->w;
        rc = load_mlp_adapter(L, c, w, slot->layer, use);
        if (!rc)
            rc = srp_load(L, &w->post, c->d_model, c->d_model, SRP_INIT_MATRIX,
                          srp_lname(L, "layers.%d.linear.weight", bd->layer));
        if (!rc && !srp_block_add_mixer(L, bl, SRP_MIXER_MLP, w, NULL, 0))
            rc = srp_loader_failed(L);
    }
    return rc;
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    shared_slot slots[2 * MAX_MEM_BLOCKS + 1];
    memset(slots, 0, sizeof slots);
    int rc = srp_load_embedding(L), use = -1;
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const srp_block_desc *bd = &c->blocks[b];
        const int l = bd->layer;
        if (bd->shared_id > 0) {
            if (bd->in == SRP_IN_CONCAT_EMBED) use++;
            rc = load_shared(L, c, b, use, &slots[bd->shared_id]);
            continue;
        }
        /* a Mamba block: its own layer's, or the Mamba decoder of a hybrid layer */
        const int hybrid = bd->in == SRP_IN_RESID_AUX;
        srp_block *bl =
            srp_load_block(L, b,
                           srp_lname(L,
                                     hybrid ? "layers.%d.mamba_decoder.input_layernorm.weight"
                                            : "layers.%d.input_layernorm.weight",
                                     l),
                           c->d_model);
        if (!bl) return srp_loader_failed(L);
        rc = srp_load_mamba2_mixer(
            L, bl, srp_lname(L, hybrid ? "layers.%d.mamba_decoder.mamba." : "layers.%d.mamba.", l));
    }
    static const char *const norms[] = { "final_layernorm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_zamba2 = {
    SRP_ARCH_ZAMBA2, { "Zamba2ForCausalLM", "zamba2" }, parse, load
};
