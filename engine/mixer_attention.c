/* Self-attention: one GEMM into [q | k | v] (plus the use's low-rank adapters, Zamba2), RoPE when
 * the model has it, causal GQA attention over the paged KV cache, o_proj. */
#include "mixer.h"

/* q, k, v += B_q A_q x, B_k A_k x, B_v A_v x: one GEMM into the three rank-r middles (A stacked
 * as [A_q; A_k; A_v]), then one per output, accumulated onto the projection. */
static int add_adapters(srp_engine *eng, const srp_attn_weights *w, srp_mat x, srp_mat proj, int r,
                        const int64_t width[3], srp_err *e) {
    srp_backend *be = eng->be;
    const int64_t qkv = width[0] + width[1] + width[2];
    srp_mat mid = srp_mat_cols(proj, qkv, 3 * (int64_t)r);
    SRP_TRY(be->gemm(be, x, &w->adapter_a, NULL, mid, eng->model.cfg.attn.in_mult, 0, e));
    const srp_weight *bw[3] = { &w->adapter_bq, &w->adapter_bk, &w->adapter_bv };
    for (int i = 0, c0 = 0; i < 3; c0 += (int)width[i], i++)
        SRP_TRY(be->gemm(be, srp_mat_cols(mid, (int64_t)i * r, r), bw[i], NULL,
                         srp_mat_cols(proj, c0, width[i]), 1.0f, 1, e));
    return 0;
}

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_attn_config *c = &cfg->attn;
    const srp_attn_weights *w = mx->w;
    const int qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    srp_mat proj = srp_ws_rows(eng->ws.proj, T), x = srp_mixer_in(eng, T);
    SRP_TRY(be->gemm(be, x, &w->qkv, srp_opt(&w->qkv_bias), srp_mat_cols(proj, 0, qd + 2 * kvd),
                     c->in_mult, 0, e));
    if (w->adapter_a.m.data) {
        const int64_t width[3] = { qd, kvd, kvd };
        SRP_TRY(add_adapters(eng, w, x, proj, c->adapter_rank, width, e));
    }
    srp_mat q = srp_mat_cols(proj, 0, qd), k = srp_mat_cols(proj, qd, kvd),
            v = srp_mat_cols(proj, qd + kvd, kvd);
    if (c->rope.kind != SRP_ROPE_NONE) {
        srp_rope_params rp = { c->heads,      c->kv_heads,    c->head_dim,
                               c->rope.dim,   &w->inv_freq,   c->rope.kind == SRP_ROPE_DYNAMIC,
                               c->rope.theta, c->rope.factor, c->rope.max_positions };
        SRP_TRY(be->rope(be, &rp, q, k, e));
    }
    srp_mat out = srp_mat_cols(srp_ws_rows(eng->ws.mix, T), 0, qd);
    srp_attn_params p = { c->heads, c->kv_heads, c->head_dim, c->scale };
    SRP_TRY(be->attention(be, &p, q, k, v, &eng->kv[mx->kv_index], out, e));
    return be->gemm(be, out, &w->o, srp_opt(&w->o_bias), srp_mixer_out(eng, T),
                    c->out_mult * cfg->resid_mult, eng->io.acc, e);
}

static void ws_need(const srp_config *c, srp_ws_need *n) {
    const srp_attn_config *a = &c->attn;
    srp_ws_raise(&n->proj,
                 (int64_t)(a->heads + 2 * a->kv_heads) * a->head_dim + 3 * a->adapter_rank);
    srp_ws_raise(&n->mix, (int64_t)a->heads * a->head_dim);
}

const srp_mixer_ops srp_mixer_attention_ops = { run, ws_need };
