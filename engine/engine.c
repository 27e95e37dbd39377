#include <stdlib.h>
#include <string.h>

#include "mixer.h"
#include "prefix_cache.h"
#include "sampler.h"

void srp_engine_opts_default(srp_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_seqs = 8;
    o->max_batch_tokens = 512;
    o->max_seq_len = 4096;
    o->kv_block_size = 16;
}

static int make_backend(const srp_engine_opts *o, srp_backend **out, srp_err *e) {
    const char *name = o->backend && *o->backend ? o->backend : "auto";
    if (!strcmp(name, "cpu")) return srp_backend_cpu_create(o->n_threads, out, e);
#ifdef SERPENT_HAVE_CUDA
    if (!strcmp(name, "cuda")) return srp_backend_cuda_create(0, out, e);
    if (!strcmp(name, "auto"))
        return srp_cuda_available() ? srp_backend_cuda_create(0, out, e)
                                    : srp_backend_cpu_create(o->n_threads, out, e);
#else
    if (!strcmp(name, "auto")) return srp_backend_cpu_create(o->n_threads, out, e);
    if (!strcmp(name, "cuda"))
        return srp_err_set(
            e, SRP_EUNSUPPORTED,
            "this serpent was built without CUDA (configure with -DSERPENT_CUDA=ON)");
#endif
    return srp_err_set(e, SRP_EINVAL, "unknown backend \"%s\" (cpu, cuda or auto)", name);
}

/* Widths of the projection, conv and mixer-output buffers: the widest any mixer needs. */
static srp_ws_need workspace_widths(const srp_config *c) {
    srp_ws_need n = { 1, 1, 1, 0, 0, 0, 0 };
    int seen[SRP_MIXER_COUNT] = { 0 };
    for (int i = 0; i < c->n_blocks; i++)
        for (int k = 0; k < c->blocks[i].n_mixers; k++) {
            const srp_mixer_kind kind = c->blocks[i].mixer[k];
            if (!seen[kind]) srp_mixer_ops_of(kind)->ws_need(c, &n);
            seen[kind] = 1;
        }
    return n;
}

#define WS_BUFFERS 13

/* The widest norm input of any block. */
static int64_t norm_width(const srp_config *c) {
    int64_t w = c->d_model;
    for (int i = 0; i < c->n_blocks; i++) srp_ws_raise(&w, srp_config_norm_width(c, i));
    return w;
}

/* The activation buffers with their shapes (data not yet allocated), listed once for sizing,
 * allocating and freeing. */
static int workspace_buffers(srp_engine *eng, srp_mat *bufs[WS_BUFFERS]) {
    const srp_config *c = &eng->model.cfg;
    srp_workspace *ws = &eng->ws;
    const int64_t T = eng->opts.max_batch_tokens, L = eng->max_logits;
    const srp_dtype act = eng->be->act_dtype;
    const srp_ws_need w = workspace_widths(c);
    const int64_t T_aux = srp_config_uses_aux(c) ? T : 1, T_wide = srp_config_uses_embed(c) ? T : 1;
    const int64_t moe_i32 =
        w.moe_k ? T * w.moe_k + SRP_MOE_INDEX_INTS(T, w.moe_k, w.moe_experts) : 1;
    const struct {
        srp_mat *m;
        srp_dtype t;
        int64_t rows, cols;
    } shapes[WS_BUFFERS] = {
        { &ws->resid, SRP_F32, T, c->d_model },
        { &ws->normed, act, T, norm_width(c) },
        { &ws->proj, act, T, w.proj },
        { &ws->conv_out, act, T, w.conv },
        { &ws->mix, act, T, w.mix },
        { &ws->head_in, SRP_F32, L, c->d_model },
        { &ws->head_norm, act, L, c->d_model },
        { &ws->logits, SRP_F32, L, c->vocab_size },
        { &ws->aux, SRP_F32, T_aux, c->d_model },
        { &ws->wide, SRP_F32, T_wide, 2 * (int64_t)c->d_model },
        { &ws->moe_f32, SRP_F32, w.moe_k ? T : 1, w.moe_k ? w.moe_f32 : 1 },
        { &ws->moe_i32, SRP_I32, 1, moe_i32 },
        { &ws->moe_rows, act, w.moe_k ? T * w.moe_k : 1, w.moe_k ? w.moe_cols : 1 },
    };
    for (int i = 0; i < WS_BUFFERS; i++) {
        if (!shapes[i].m->data)
            *shapes[i].m =
                (srp_mat){ NULL, shapes[i].t, shapes[i].rows, shapes[i].cols, shapes[i].cols };
        bufs[i] = shapes[i].m;
    }
    return WS_BUFFERS;
}

static int64_t workspace_bytes(srp_engine *eng) {
    srp_mat *bufs[WS_BUFFERS];
    int64_t bytes = 0;
    for (int i = 0, n = workspace_buffers(eng, bufs); i < n; i++)
        bytes += bufs[i]->rows * bufs[i]->cols * (int64_t)srp_dtype_size(bufs[i]->dtype);
    return bytes;
}

/* Bytes of one recurrent-state layer's conv window and SSM state for one slot, and of one
 * attention layer's K (or V) for one block. */
static int64_t conv_slot_bytes(const srp_engine *eng, int l) {
    const srp_state_desc *d = &eng->model.state[l];
    return (int64_t)d->conv_dim * d->conv_width * (int64_t)srp_dtype_size(eng->be->conv_dtype);
}

static int64_t ssm_slot_bytes(const srp_engine *eng, int l) {
    return eng->model.state[l].ssm_elems * (int64_t)sizeof(float);
}

static int64_t kv_block_bytes(const srp_engine *eng) {
    const srp_attn_config *a = &eng->model.cfg.attn;
    return (int64_t)eng->opts.kv_block_size * a->kv_heads * a->head_dim *
           (int64_t)srp_dtype_size(eng->be->kv_dtype);
}

static int64_t slot_bytes(const srp_engine *eng) {
    int64_t n = 0;
    for (int l = 0; l < eng->model.n_mamba; l++)
        n += conv_slot_bytes(eng, l) + ssm_slot_bytes(eng, l);
    return n;
}

static int64_t block_bytes(const srp_engine *eng) {
    return (int64_t)eng->model.n_attn * 2 * kv_block_bytes(eng);
}

/* A snapshot: a slot's state, and the KV block a prefix ending inside a block needs. */
static int64_t snapshot_bytes(const srp_engine *eng) {
    return slot_bytes(eng) + block_bytes(eng);
}

/* The snapshot pool on the CPU (no device budget to share): --prefix-cache-gb, else two
 * snapshots per slot, at most 1 GB (tests and small models; host memory is touched up front). */
static void size_snapshots_host(srp_engine *eng) {
    const srp_engine_opts *o = &eng->opts;
    const int64_t per = snapshot_bytes(eng) > 0 ? snapshot_bytes(eng) : 1;
    int64_t n = o->prefix_cache_bytes > 0 ? o->prefix_cache_bytes / per : 2ll * o->max_seqs;
    if (o->prefix_cache_bytes <= 0 && n * per > (1ll << 30)) n = (1ll << 30) / per;
    eng->n_snapshots = (int)(n > (1 << 20) ? 1 << 20 : n);
}

/* Sizes the state-slot pool and the KV cache from the memory the backend has left after the
 * weights: `gpu_memory_utilization` of all device memory is ours. An explicit max_seqs that
 * does not fit is an error that says how many would. */
static int size_pools(srp_engine *eng, srp_err *e) {
    srp_engine_opts *o = &eng->opts;
    const int64_t total = eng->be->mem_total ? eng->be->mem_total(eng->be) : -1;
    const int64_t avail = eng->be->mem_available(eng->be);
    const int64_t per_slot = slot_bytes(eng), per_block = block_bytes(eng);
    const int64_t per_seq_kv = per_block * eng->max_blocks_per_seq;
    const int on_gpu = strcmp(eng->be->name, "cpu") != 0;
    eng->pool_budget = -1;
    eng->n_snapshots = 0;
    if (!on_gpu || total <= 0 || avail <= 0) {
        if (o->max_seqs <= 0) o->max_seqs = 16;
        if (eng->model.n_attn == 0)
            o->kv_blocks = 0;
        else if (o->kv_blocks <= 0)
            o->kv_blocks = o->max_seqs * eng->max_blocks_per_seq;
        if (o->prefix_cache) size_snapshots_host(eng);
        return 0;
    }
    const double util = o->gpu_memory_utilization > 0 ? o->gpu_memory_utilization : 0.9;
    /* what other processes use is already missing from avail; we may not take what the
     * utilisation leaves for others, nor the activations, nor ~256 MB for cuBLAS and CUDA */
    const int64_t used = total - avail;
    int64_t budget = (int64_t)(util * (double)total) - used - workspace_bytes(eng) - (256ll << 20);
    eng->pool_budget = budget;
    if (budget <= 0)
        return srp_err_set(e, SRP_ENOMEM,
                           "no GPU memory left for state slots after the weights (%.1f of %.1f GB "
                           "in use; --gpu-memory-utilization %.2f)",
                           used / 1e9, total / 1e9, util);
    /* the snapshot pool first: what --prefix-cache-gb asks, else a tenth, to which whatever
     * the slots and KV cache leave is added below */
    int64_t snap_budget = 0;
    if (o->prefix_cache) {
        snap_budget = o->prefix_cache_bytes > 0 ? o->prefix_cache_bytes : budget / 10;
        if (snap_budget >= budget)
            return srp_err_set(e, SRP_ENOMEM,
                               "--prefix-cache-gb %.2f leaves no GPU memory for state slots (%.2f "
                               "GB free after the weights)",
                               snap_budget / 1e9, budget / 1e9);
        budget -= snap_budget;
    }
    if (o->max_seqs <= 0) {
        int64_t n = budget / (per_slot + per_seq_kv > 0 ? per_slot + per_seq_kv : 1);
        o->max_seqs = (int)(n > 256 ? 256 : n);
        if (o->max_seqs < 1)
            return srp_err_set(e, SRP_ENOMEM,
                               "not enough GPU memory for one sequence: %.2f GB of state and %.2f "
                               "GB of KV cache needed, %.2f GB free",
                               per_slot / 1e9, per_seq_kv / 1e9, budget / 1e9);
        if (o->max_batch_tokens < o->max_seqs) o->max_batch_tokens = o->max_seqs;
    }
    if ((int64_t)o->max_seqs * per_slot > budget)
        return srp_err_set(e, SRP_ENOMEM,
                           "%d sequences need %.2f GB of state slots (%.1f MB each) but %.2f GB is "
                           "free; at most %lld fit (--gpu-memory-utilization %.2f)",
                           o->max_seqs, o->max_seqs * per_slot / 1e9, per_slot / 1e6, budget / 1e9,
                           (long long)(budget / per_slot), util);
    if (eng->model.n_attn == 0) {
        o->kv_blocks = 0;
    } else if (o->kv_blocks <= 0) {
        int64_t fit = (budget - (int64_t)o->max_seqs * per_slot) / per_block;
        int64_t want = (int64_t)o->max_seqs * eng->max_blocks_per_seq;
        o->kv_blocks = (int)(fit < want ? fit : want);
        if (o->kv_blocks < eng->max_blocks_per_seq)
            return srp_err_set(e, SRP_ENOMEM,
                               "the KV cache would hold less than one %d-token sequence; lower "
                               "max_seqs or max_seq_len",
                               o->max_seq_len);
    }
    if (o->prefix_cache) {
        if (o->prefix_cache_bytes <= 0) {
            int64_t left =
                budget - (int64_t)o->max_seqs * per_slot - (int64_t)o->kv_blocks * per_block;
            if (left > 0) snap_budget += left;
        }
        int64_t n = snap_budget / snapshot_bytes(eng);
        eng->n_snapshots = (int)(n > (1 << 20) ? 1 << 20 : n);
    }
    return 0;
}

static int alloc_workspace(srp_engine *eng, srp_err *e) {
    srp_mat *bufs[WS_BUFFERS];
    for (int i = 0, n = workspace_buffers(eng, bufs); i < n; i++) {
        int rc = eng->be->alloc(
            eng->be, (size_t)(bufs[i]->rows * bufs[i]->cols) * srp_dtype_size(bufs[i]->dtype),
            &bufs[i]->data, e);
        if (rc)
            return srp_err_prefix(e, "allocating activations for %d tokens",
                                  eng->opts.max_batch_tokens);
    }
    return 0;
}

/* The state-slot pool and the KV cache. */
static int alloc_state(srp_engine *eng, srp_err *e) {
    srp_backend *be = eng->be;
    const int S = eng->opts.max_seqs;
    int n_mamba = eng->model.n_mamba, n_attn = eng->model.n_attn;
    eng->mamba = calloc((size_t)(n_mamba ? n_mamba : 1), sizeof *eng->mamba);
    eng->kv = calloc((size_t)(n_attn ? n_attn : 1), sizeof *eng->kv);
    eng->free_slots = malloc((size_t)(S > 0 ? S : 1) * sizeof *eng->free_slots);
    const size_t nb = (size_t)(eng->opts.kv_blocks ? eng->opts.kv_blocks : 1);
    eng->free_blocks = malloc(nb * 4);
    eng->block_refs = calloc(nb, sizeof *eng->block_refs);
    eng->block_cached = calloc(nb, 1);
    if (!eng->mamba || !eng->kv || !eng->free_slots || !eng->free_blocks || !eng->block_refs ||
        !eng->block_cached)
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    for (int l = 0; l < n_mamba; l++) {
        srp_mamba_state *st = &eng->mamba[l];
        st->conv_dtype = be->conv_dtype;
        int rc = be->alloc(be, (size_t)S * conv_slot_bytes(eng, l), &st->conv, e);
        if (!rc) rc = be->alloc(be, (size_t)S * ssm_slot_bytes(eng, l), (void **)&st->ssm, e);
        if (rc) return srp_err_prefix(e, "allocating %d state slots", S);
    }
    const int bs = eng->opts.kv_block_size;
    for (int l = 0; l < n_attn; l++) {
        srp_kv_layer *kv = &eng->kv[l];
        kv->dtype = be->kv_dtype;
        kv->block_size = bs;
        size_t bytes = (size_t)eng->opts.kv_blocks * kv_block_bytes(eng);
        int rc = be->alloc(be, bytes, &kv->k, e);
        if (!rc) rc = be->alloc(be, bytes, &kv->v, e);
        if (rc) return srp_err_prefix(e, "allocating %d KV blocks", eng->opts.kv_blocks);
    }
    /* Free lists are stacks; hand out low ids first. */
    eng->n_free_slots = S;
    for (int i = 0; i < S; i++) eng->free_slots[i] = S - 1 - i;
    eng->n_free_blocks = eng->opts.kv_blocks;
    for (int i = 0; i < eng->opts.kv_blocks; i++) eng->free_blocks[i] = eng->opts.kv_blocks - 1 - i;
    if (eng->opts.prefix_cache && eng->n_snapshots > 0)
        return srp_prefix_create(eng, eng->n_snapshots, &eng->prefix, e);
    return 0;
}

static int alloc_host_batch(srp_engine *eng, srp_err *e) {
    const int S = eng->opts.max_seqs, T = eng->opts.max_batch_tokens;
    eng->tokens = malloc((size_t)T * 4);
    eng->seq_start = malloc((size_t)(S + 1) * 4);
    eng->n_past = malloc((size_t)S * 4);
    eng->slot = malloc((size_t)S * 4);
    eng->block_table = malloc((size_t)S * eng->max_blocks_per_seq * 4);
    eng->logit_rows = malloc((size_t)eng->max_logits * 4);
    eng->rope_len = malloc((size_t)S * 4);
    eng->graph_seen = calloc((size_t)S + 1, 1);
    if (!eng->tokens || !eng->seq_start || !eng->n_past || !eng->slot || !eng->block_table ||
        !eng->logit_rows || !eng->rope_len || !eng->graph_seen)
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    return 0;
}

static int check_opts(srp_engine_opts *o, srp_err *e) {
    if (o->kv_block_size <= 0) o->kv_block_size = 16;
    if (o->max_seqs < 0 || o->max_seqs > 65536)
        return srp_err_set(e, SRP_EINVAL, "max_seqs must be in [0, 65536], not %d", o->max_seqs);
    if (o->max_batch_tokens <= 0)
        return srp_err_set(e, SRP_EINVAL, "max_batch_tokens must be positive");
    if (o->max_seq_len <= 0) return srp_err_set(e, SRP_EINVAL, "max_seq_len must be positive");
    if (o->max_batch_tokens < o->max_seqs) o->max_batch_tokens = o->max_seqs;
    return 0;
}

int srp_engine_open(const char *model_dir, const srp_engine_opts *opts, srp_engine **out,
                    srp_err *e) {
    srp_engine *eng = calloc(1, sizeof *eng);
    if (!eng) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    eng->opts = *opts;
    srp_engine_opts *o = &eng->opts;
    int rc = check_opts(o, e);
    if (!rc) rc = make_backend(o, &eng->be, e);
    if (!rc)
        rc = o->random_weights ? srp_model_random(&eng->model, model_dir, eng->be, o->seed, e)
                               : srp_model_load(&eng->model, model_dir, eng->be, o->progress,
                                                o->progress_user, e);
    if (rc) {
        srp_engine_close(eng);
        return rc;
    }
    eng->use_graphs = !o->no_graphs;
    /* A cached prefix's keys keep the dynamic-RoPE rotation of the prompt that stored them, which
     * a longer prompt sharing the prefix would rotate otherwise: no prefix cache for such models.
     */
    if (eng->model.cfg.attn.rope.kind == SRP_ROPE_DYNAMIC) o->prefix_cache = 0;
    eng->max_blocks_per_seq = (o->max_seq_len + o->kv_block_size - 1) / o->kv_block_size;
    /* logits rows first: the pools get what the activations leave */
    int want_logits = o->max_logits > 0 ? o->max_logits : 256;
    eng->max_logits = want_logits > o->max_batch_tokens ? o->max_batch_tokens : want_logits;
    rc = size_pools(eng, e);
    if (rc) {
        srp_engine_close(eng);
        return rc;
    }
    /* every running sequence may want its next token's logits in one step */
    if (o->max_logits <= 0 && o->max_seqs > eng->max_logits) eng->max_logits = o->max_seqs;
    if (eng->max_logits > o->max_batch_tokens) eng->max_logits = o->max_batch_tokens;
    srp_backend_limits lim = { o->max_batch_tokens, o->max_seqs, eng->max_blocks_per_seq,
                               eng->max_logits, eng->model.cfg.vocab_size };
    rc = eng->be->configure(eng->be, &lim, e);
    if (!rc) rc = alloc_state(eng, e);
    if (!rc) rc = alloc_workspace(eng, e);
    if (!rc) rc = alloc_host_batch(eng, e);
    if (rc) {
        srp_engine_close(eng);
        return rc;
    }
    *out = eng;
    return 0;
}

void srp_engine_close(srp_engine *eng) {
    if (!eng) return;
    srp_backend *be = eng->be;
    srp_prefix_destroy(eng->prefix);
    if (be) {
        srp_mat *bufs[WS_BUFFERS];
        for (int i = 0, n = workspace_buffers(eng, bufs); i < n; i++)
            if (bufs[i]->data) be->free(be, bufs[i]->data);
        for (int l = 0; eng->mamba && l < eng->model.n_mamba; l++) {
            if (eng->mamba[l].conv) be->free(be, eng->mamba[l].conv);
            if (eng->mamba[l].ssm) be->free(be, eng->mamba[l].ssm);
        }
        for (int l = 0; eng->kv && l < eng->model.n_attn; l++) {
            if (eng->kv[l].k) be->free(be, eng->kv[l].k);
            if (eng->kv[l].v) be->free(be, eng->kv[l].v);
        }
        srp_model_free(&eng->model);
        be->destroy(be);
    }
    free(eng->mamba);
    free(eng->kv);
    free(eng->free_slots);
    free(eng->free_blocks);
    free(eng->block_refs);
    free(eng->block_cached);
    free(eng->tokens);
    free(eng->seq_start);
    free(eng->n_past);
    free(eng->slot);
    free(eng->block_table);
    free(eng->logit_rows);
    free(eng->rope_len);
    free(eng->graph_seen);
    free(eng);
}

const srp_config *srp_engine_config(const srp_engine *eng) {
    return &eng->model.cfg;
}
srp_backend *srp_engine_backend(srp_engine *eng) {
    return eng->be;
}
int srp_engine_max_batch_tokens(const srp_engine *eng) {
    return eng->opts.max_batch_tokens;
}
int srp_engine_max_seq_len(const srp_engine *eng) {
    return eng->opts.max_seq_len;
}
int srp_engine_max_logits(const srp_engine *eng) {
    return eng->max_logits;
}
int srp_engine_free_slots(const srp_engine *eng) {
    return eng->n_free_slots;
}
int srp_engine_free_blocks(const srp_engine *eng) {
    return eng->n_free_blocks;
}
int srp_engine_total_slots(const srp_engine *eng) {
    return eng->opts.max_seqs;
}
int srp_engine_total_blocks(const srp_engine *eng) {
    return eng->opts.kv_blocks;
}
static int64_t matrix_sum(const srp_engine *eng, int bytes) {
    const srp_model *m = &eng->model;
    int64_t n = 0;
    for (int i = 0; i < m->n_weights; i++) {
        const srp_weight *w = m->weights[i];
        if (w == &m->embed || w->m.rows <= 1) continue;
        n += w->m.rows * w->m.cols * (bytes ? (int64_t)srp_dtype_size(w->m.dtype) : 1);
    }
    if (m->lm_head_is_embed)
        n += m->embed.m.rows * m->embed.m.cols *
             (bytes ? (int64_t)srp_dtype_size(m->embed.m.dtype) : 1);
    return n;
}
int64_t srp_engine_matrix_params(const srp_engine *eng) {
    return matrix_sum(eng, 0);
}
int64_t srp_engine_matrix_bytes(const srp_engine *eng) {
    return matrix_sum(eng, 1);
}
int64_t srp_engine_pool_budget(const srp_engine *eng) {
    return eng->pool_budget;
}
/* Sums over the routed experts of every mixture-of-experts mixer: parameters, bytes, or
 * experts (what = 0, 1, 2). */
static int64_t expert_sum(const srp_engine *eng, int what) {
    const srp_model *m = &eng->model;
    int64_t n = 0;
    for (int b = 0; b < m->cfg.n_blocks; b++)
        for (int k = 0; k < m->blocks[b].n_mixers; k++) {
            const srp_mixer *mx = &m->blocks[b].mixer[k];
            if (mx->kind != SRP_MIXER_MOE) continue;
            const srp_moe_weights *w = mx->w;
            const srp_weight *ws[2] = { &w->up, &w->down };
            if (what == 2) n += m->cfg.moe.n_experts;
            for (int i = 0; what < 2 && i < 2; i++)
                n += ws[i]->m.rows * ws[i]->m.cols *
                     (what ? (int64_t)srp_dtype_size(ws[i]->m.dtype) : 1);
        }
    return n;
}
int64_t srp_engine_expert_params(const srp_engine *eng) {
    return expert_sum(eng, 0);
}
int64_t srp_engine_expert_bytes(const srp_engine *eng) {
    return expert_sum(eng, 1);
}
int64_t srp_engine_expert_count(const srp_engine *eng) {
    return expert_sum(eng, 2);
}
void srp_engine_count_experts(srp_engine *eng, int on) {
    eng->count_experts = on;
}
int64_t srp_engine_experts_used(const srp_engine *eng) {
    return eng->experts_used;
}
int64_t srp_engine_slot_bytes(const srp_engine *eng) {
    return slot_bytes(eng);
}
int64_t srp_engine_kv_block_bytes(const srp_engine *eng) {
    return block_bytes(eng);
}
int srp_engine_total_snapshots(const srp_engine *eng) {
    return eng->prefix ? eng->n_snapshots : 0;
}
int64_t srp_engine_snapshot_bytes(const srp_engine *eng) {
    return eng->prefix ? snapshot_bytes(eng) : 0;
}
int64_t srp_engine_conv_bytes(const srp_engine *eng, int l) {
    return conv_slot_bytes(eng, l);
}
int64_t srp_engine_ssm_bytes(const srp_engine *eng, int l) {
    return ssm_slot_bytes(eng, l);
}
int64_t srp_engine_kv_layer_bytes(const srp_engine *eng) {
    return kv_block_bytes(eng);
}
srp_prefix_cache *srp_engine_prefix(srp_engine *eng) {
    return eng->prefix;
}
int srp_engine_block_size(const srp_engine *eng) {
    return eng->opts.kv_block_size;
}

int srp_seq_open(srp_engine *eng, srp_seq *s, srp_err *e) {
    if (eng->n_free_slots == 0)
        return srp_err_set(e, SRP_EFULL, "all %d state slots are in use", eng->opts.max_seqs);
    memset(s, 0, sizeof *s);
    s->slot = eng->free_slots[--eng->n_free_slots];
    return 0;
}

/* Blocks count their holders; the cache-only count follows every change. */
static int cache_only(const srp_engine *eng, int32_t b) {
    return eng->block_cached[b] && eng->block_refs[b] == 1;
}

static void block_ref(srp_engine *eng, int32_t b) {
    const int was = cache_only(eng, b);
    eng->block_refs[b]++;
    eng->n_cache_only += cache_only(eng, b) - was;
}

static void block_unref(srp_engine *eng, int32_t b) {
    const int was = cache_only(eng, b);
    if (--eng->block_refs[b] == 0) eng->free_blocks[eng->n_free_blocks++] = b;
    eng->n_cache_only += cache_only(eng, b) - was;
}

void srp_engine_block_cache_hold(srp_engine *eng, int32_t b) {
    const int was = cache_only(eng, b);
    eng->block_cached[b] = 1;
    eng->block_refs[b]++;
    eng->n_cache_only += cache_only(eng, b) - was;
}

void srp_engine_block_cache_drop(srp_engine *eng, int32_t b) {
    const int was = cache_only(eng, b);
    eng->block_cached[b] = 0;
    eng->n_cache_only -= was;
    if (--eng->block_refs[b] == 0) eng->free_blocks[eng->n_free_blocks++] = b;
}

int srp_engine_blocks_cache_only(const srp_engine *eng) {
    return eng->n_cache_only;
}

void srp_seq_close(srp_engine *eng, srp_seq *s) {
    if (s->slot >= 0) {
        for (int i = 0; i < s->n_blocks; i++) block_unref(eng, s->blocks[i]);
        eng->free_slots[eng->n_free_slots++] = s->slot;
    }
    free(s->blocks);
    memset(s, 0, sizeof *s);
    s->slot = -1;
}

int srp_seq_reserve(srp_engine *eng, srp_seq *s, int n_tokens, srp_err *e) {
    if (eng->model.n_attn == 0) return 0;
    if (n_tokens > eng->opts.max_seq_len)
        return srp_err_set(e, SRP_EINVAL, "sequence of %d tokens exceeds max_seq_len %d", n_tokens,
                           eng->opts.max_seq_len);
    const int need = (n_tokens + eng->opts.kv_block_size - 1) / eng->opts.kv_block_size;
    if (need <= s->n_blocks) return 0;
    if (need - s->n_blocks > eng->n_free_blocks)
        return srp_err_set(e, SRP_EFULL, "KV cache full: %d blocks needed, %d free",
                           need - s->n_blocks, eng->n_free_blocks);
    if (need > s->cap_blocks) {
        int32_t *nb = realloc(s->blocks, (size_t)eng->max_blocks_per_seq * sizeof *nb);
        if (!nb) return srp_err_set(e, SRP_ENOMEM, "out of memory");
        s->blocks = nb;
        s->cap_blocks = eng->max_blocks_per_seq;
    }
    while (s->n_blocks < need) {
        const int32_t b = eng->free_blocks[--eng->n_free_blocks];
        eng->block_refs[b] = 1;
        s->blocks[s->n_blocks++] = b;
    }
    return 0;
}

int srp_seq_share_blocks(srp_engine *eng, srp_seq *s, const int32_t *blocks, int n, srp_err *e) {
    if (eng->model.n_attn == 0 || n == 0) return 0;
    if (s->slot < 0 || s->n_blocks != 0 || n > eng->max_blocks_per_seq)
        return srp_err_set(e, SRP_EINVAL, "sharing %d KV blocks: the sequence is not fresh", n);
    if (!s->blocks) {
        s->blocks = malloc((size_t)eng->max_blocks_per_seq * sizeof *s->blocks);
        if (!s->blocks) return srp_err_set(e, SRP_ENOMEM, "out of memory");
        s->cap_blocks = eng->max_blocks_per_seq;
    }
    for (int i = 0; i < n; i++) {
        block_ref(eng, blocks[i]);
        s->blocks[s->n_blocks++] = blocks[i];
    }
    return 0;
}

/* Checks the items and lays them out as the step's batch in the engine's host arrays. */
static int build_batch(srp_engine *eng, const srp_step_item *items, int n, srp_batch *b,
                       srp_err *e) {
    const int vocab = eng->model.cfg.vocab_size;
    if (n <= 0 || n > eng->opts.max_seqs)
        return srp_err_set(e, SRP_EINVAL, "a step holds 1 to %d sequences, not %d",
                           eng->opts.max_seqs, n);
    int T = 0, L = 0;
    for (int i = 0; i < n; i++) {
        const srp_step_item *it = &items[i];
        if (!it->seq || it->seq->slot < 0)
            return srp_err_set(e, SRP_EINVAL, "step item %d: sequence is not open", i);
        for (int j = 0; j < i; j++)
            if (items[j].seq == it->seq)
                return srp_err_set(e, SRP_EINVAL, "step items %d and %d are the same sequence", j,
                                   i);
        if (it->n_tokens <= 0) return srp_err_set(e, SRP_EINVAL, "step item %d: no tokens", i);
        if (it->n_tokens > eng->opts.max_batch_tokens - T)
            return srp_err_set(e, SRP_EINVAL, "step holds more than %d tokens",
                               eng->opts.max_batch_tokens);
        if (it->seq->n_past + it->n_tokens > eng->opts.max_seq_len)
            return srp_err_set(e, SRP_EINVAL, "step item %d: sequence would exceed %d tokens", i,
                               eng->opts.max_seq_len);
        int rows = it->logits == SRP_LOGITS_ALL ? it->n_tokens : it->logits == SRP_LOGITS_LAST;
        if (rows > eng->max_logits - L)
            return srp_err_set(e, SRP_EINVAL, "step asks for more than %d logits rows",
                               eng->max_logits);
        for (int t = 0; t < it->n_tokens; t++) {
            if (it->tokens[t] < 0 || it->tokens[t] >= vocab)
                return srp_err_set(e, SRP_EINVAL, "token id %d is outside the vocabulary [0, %d)",
                                   it->tokens[t], vocab);
        }
        int rc = srp_seq_reserve(eng, it->seq, it->seq->n_past + it->n_tokens, e);
        if (rc) return rc;
        eng->seq_start[i] = T;
        eng->n_past[i] = it->seq->n_past;
        eng->rope_len[i] = it->seq->n_past + it->n_tokens;
        if (it->call_len > eng->rope_len[i]) eng->rope_len[i] = it->call_len;
        eng->slot[i] = it->seq->slot;
        memcpy(eng->tokens + T, it->tokens, (size_t)it->n_tokens * 4);
        if (eng->model.n_attn)
            memcpy(eng->block_table + (size_t)i * eng->max_blocks_per_seq, it->seq->blocks,
                   (size_t)it->seq->n_blocks * 4);
        if (it->logits == SRP_LOGITS_ALL)
            for (int t = 0; t < it->n_tokens; t++) eng->logit_rows[L++] = T + t;
        else if (it->logits == SRP_LOGITS_LAST)
            eng->logit_rows[L++] = T + it->n_tokens - 1;
        T += it->n_tokens;
    }
    eng->seq_start[n] = T;
    *b = (srp_batch){ n,
                      T,
                      eng->tokens,
                      eng->seq_start,
                      eng->n_past,
                      eng->slot,
                      eng->model.n_attn ? eng->block_table : NULL,
                      eng->max_blocks_per_seq,
                      L,
                      eng->logit_rows,
                      eng->rope_len };
    return 0;
}

int srp_engine_step(srp_engine *eng, const srp_step_item *items, int n_items, srp_mat *logits,
                    srp_err *e) {
    srp_batch b;
    int rc = build_batch(eng, items, n_items, &b, e);
    if (rc) return rc;
    rc = srp_forward(eng, &b, logits, e);
    if (rc) return rc;
    for (int i = 0; i < n_items; i++) items[i].seq->n_past += items[i].n_tokens;
    return 0;
}

static int uses_extras(const srp_sample_params *p) {
    return p->n_logit_bias > 0 || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f ||
           (p->repetition_penalty > 0.0f && p->repetition_penalty != 1.0f) || p->force_token ||
           p->logprob_out;
}

int srp_engine_sample(srp_engine *eng, srp_mat logits, const srp_sample_params *params,
                      int32_t *tokens, srp_err *e) {
    srp_backend *be = eng->be;
    int rc = be->sample(be, logits, params, tokens, e);
    if (rc || be->sample_extras) return rc;
    /* a backend without the extras: redo the rows that need them on the host */
    const int n = (int)logits.cols;
    float *row = NULL, *scratch = NULL;
    int32_t *order = NULL;
    for (int64_t r = 0; r < logits.rows && !rc; r++) {
        if (!uses_extras(&params[r])) continue;
        if (!row) {
            row = malloc((size_t)n * sizeof *row);
            scratch = malloc((size_t)n * sizeof *scratch);
            order = malloc((size_t)n * sizeof *order);
            if (!row || !scratch || !order) {
                rc = srp_err_set(e, SRP_ENOMEM, "sample: out of memory");
                break;
            }
        }
        rc = srp_engine_logits_to_host(eng, logits, (int)r, 1, row, e);
        if (!rc) tokens[r] = srp_sample_row(row, n, &params[r], scratch, order);
    }
    free(row);
    free(scratch);
    free(order);
    return rc;
}

int srp_engine_logits_to_host(srp_engine *eng, srp_mat logits, int row0, int n, float *dst,
                              srp_err *e) {
    if (row0 < 0 || n < 0 || row0 + n > logits.rows)
        return srp_err_set(e, SRP_EINVAL, "logits rows [%d, %d) of %lld", row0, row0 + n,
                           (long long)logits.rows);
    srp_mat r = srp_mat_rows(logits, row0, n);
    if (logits.ld == logits.cols)
        return eng->be->download(eng->be, dst, r.data, (size_t)(n * logits.cols) * 4, e);
    for (int i = 0; i < n; i++) {
        int rc = eng->be->download(eng->be, dst + (size_t)i * logits.cols,
                                   srp_mat_rows(r, i, 1).data, (size_t)logits.cols * 4, e);
        if (rc) return rc;
    }
    return 0;
}
