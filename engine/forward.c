/* The layer stack, written once over the backend interface: pre-norm residual blocks, each
 * holding one mixer (Mamba-2, attention or MLP), then the final norm and the output head on the
 * rows whose logits are wanted. */
#include <math.h>

#include "engine_internal.h"

#define TRY(call)            \
    do {                     \
        int rc_ = (call);    \
        if (rc_) return rc_; \
    } while (0)

static srp_mat rows(srp_mat m, int n) {
    return srp_mat_rows(m, 0, n);
}

static int mamba_mixer(srp_engine *eng, const srp_layer *ly, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *c = &eng->model.cfg;
    const srp_mamba_weights *w = &ly->mamba;
    const srp_mamba_state *st = &eng->mamba[w->state_index];
    const int Di = c->d_inner, GN = c->ssm_groups * c->ssm_state;
    srp_mat proj = srp_mat_cols(rows(eng->ws.proj, T), 0, c->d_in_proj);
    TRY(be->gemm(be, rows(eng->ws.normed, T), &w->in_proj,
                 w->in_proj_bias.m.data ? &w->in_proj_bias : NULL, proj, 0, e));
    /* in_proj output order: [z | xBC | dt] (mamba2.py "Order: [z, x, B, C, dt]") */
    srp_mat z = srp_mat_cols(proj, 0, Di);
    srp_mat xbc = srp_mat_cols(proj, Di, c->conv_dim);
    srp_mat dt = srp_mat_cols(proj, Di + c->conv_dim, c->ssm_heads);
    srp_mat conv = srp_mat_cols(rows(eng->ws.conv_out, T), 0, c->conv_dim);
    TRY(be->conv1d(be, xbc, &w->conv, w->conv_bias.m.data ? &w->conv_bias : NULL, c->conv_kernel,
                   st, conv, e));
    srp_mat x = srp_mat_cols(conv, 0, Di);
    srp_mat B = srp_mat_cols(conv, Di, GN);
    srp_mat C = srp_mat_cols(conv, Di + GN, GN);
    srp_mat y = srp_mat_cols(rows(eng->ws.mix, T), 0, Di);
    srp_mamba_params p = { c->ssm_heads,   c->ssm_head_dim, c->ssm_groups, c->ssm_state,
                           c->conv_kernel, c->chunk_size,   c->dt_min,     c->dt_max,
                           &w->A_log,      &w->dt_bias,     &w->D };
    TRY(be->ssd(be, &p, x, B, C, dt, st, y, e));
    TRY(be->gated_rmsnorm(be, y, z, &w->norm, c->gated_norm_group, c->norm_eps, y, e));
    return be->gemm(be, y, &w->out_proj, w->out_proj_bias.m.data ? &w->out_proj_bias : NULL,
                    rows(eng->ws.resid, T), 1, e);
}

static int attention_mixer(srp_engine *eng, const srp_layer *ly, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *c = &eng->model.cfg;
    const srp_attn_weights *w = &ly->attn;
    const int qd = c->attn_heads * c->attn_head_dim, kvd = c->attn_kv_heads * c->attn_head_dim;
    srp_mat proj = rows(eng->ws.proj, T), in = rows(eng->ws.normed, T);
    srp_mat q = srp_mat_cols(proj, 0, qd), k = srp_mat_cols(proj, qd, kvd),
            v = srp_mat_cols(proj, qd + kvd, kvd);
    TRY(be->gemm(be, in, &w->q, NULL, q, 0, e));
    TRY(be->gemm(be, in, &w->k, NULL, k, 0, e));
    TRY(be->gemm(be, in, &w->v, NULL, v, 0, e));
    srp_mat out = srp_mat_cols(rows(eng->ws.mix, T), 0, qd);
    srp_attn_params p = { c->attn_heads, c->attn_kv_heads, c->attn_head_dim, 0.0f };
    p.scale = 1.0f / sqrtf((float)c->attn_head_dim);
    TRY(be->attention(be, &p, q, k, v, &eng->kv[w->kv_index], out, e));
    return be->gemm(be, out, &w->o, NULL, rows(eng->ws.resid, T), 1, e);
}

static int mlp_mixer(srp_engine *eng, const srp_layer *ly, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *c = &eng->model.cfg;
    const srp_mlp_weights *w = &ly->mlp;
    srp_mat h = srp_mat_cols(rows(eng->ws.proj, T), 0, c->mlp_hidden);
    TRY(be->gemm(be, rows(eng->ws.normed, T), &w->up, w->up_bias.m.data ? &w->up_bias : NULL, h, 0,
                 e));
    TRY(be->activate(be, c->mlp_act, h, e));
    return be->gemm(be, h, &w->down, w->down_bias.m.data ? &w->down_bias : NULL,
                    rows(eng->ws.resid, T), 1, e);
}

/* Everything after begin_step: embedding, layers, head. */
static int run_layers(srp_engine *eng, const srp_batch *b, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_model *m = &eng->model;
    const int T = b->n_tokens;
    srp_mat resid = rows(eng->ws.resid, T);
    TRY(be->embed(be, &m->embed, resid, e));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const srp_layer *ly = &m->layers[l];
        TRY(be->rmsnorm(be, resid, &ly->norm, m->cfg.norm_eps, rows(eng->ws.normed, T), e));
        int rc = 0;
        switch (ly->kind) {
        case SRP_LAYER_MAMBA2:
            rc = mamba_mixer(eng, ly, T, e);
            break;
        case SRP_LAYER_ATTENTION:
            rc = attention_mixer(eng, ly, T, e);
            break;
        case SRP_LAYER_MLP:
            rc = mlp_mixer(eng, ly, T, e);
            break;
        }
        if (rc) return srp_err_prefix(e, "layer %d (%s)", l, srp_layer_kind_name(ly->kind));
    }
    if (b->n_logits == 0) return 0;
    srp_mat head_in = rows(eng->ws.head_in, b->n_logits);
    srp_mat head_norm = rows(eng->ws.head_norm, b->n_logits);
    TRY(be->gather_rows(be, resid, head_in, e));
    TRY(be->rmsnorm(be, head_in, &m->norm_f, m->cfg.norm_eps, head_norm, e));
    return be->gemm(be, head_norm, &m->lm_head, NULL, rows(eng->ws.logits, b->n_logits), 0, e);
}

/* A decode-only step (every sequence one token, every one wanting logits) has the same shape
 * every time for a given batch size, so the backend can replay it as one graph: the launch
 * overhead of the ~8 operations per layer would otherwise rival the step itself. */
static int graph_key(srp_engine *eng, const srp_batch *b) {
    if (!eng->use_graphs || !eng->be->graph_replay) return -1;
    if (b->n_tokens != b->n_seqs || b->n_logits != b->n_seqs) return -1;
    for (int i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] != i) return -1;
    /* The first step of a batch size runs eagerly: operations allocate their lazily made
     * buffers there (no allocation may happen while a graph records). */
    if (!eng->graph_seen[b->n_seqs]) {
        eng->graph_seen[b->n_seqs] = 1;
        return -1;
    }
    return b->n_seqs;
}

int srp_forward(srp_engine *eng, const srp_batch *b, srp_mat *logits, srp_err *e) {
    srp_backend *be = eng->be;
    TRY(be->begin_step(be, b, e));
    *logits = rows(eng->ws.logits, b->n_logits);
    const int key = graph_key(eng, b);
    if (key < 0) return run_layers(eng, b, e);
    int rc = be->graph_replay(be, key, e);
    if (rc != 0) return rc < 0 ? rc : 0;
    TRY(be->graph_begin(be, key, e));
    rc = run_layers(eng, b, e);
    if (rc) {
        srp_err ignored;
        be->graph_end(be, -1, &ignored);
        return rc;
    }
    return be->graph_end(be, key, e);
}
