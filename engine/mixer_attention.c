/* Self-attention: one GEMM into [q | k | v], RoPE when the model has it, causal GQA attention
 * over the paged KV cache, o_proj. */
#include "mixer.h"

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_attn_config *c = &cfg->attn;
    const srp_attn_weights *w = mx->w;
    const int qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
    srp_mat proj = srp_ws_rows(eng->ws.proj, T);
    SRP_TRY(be->gemm(be, srp_ws_rows(eng->ws.normed, T), &w->qkv, srp_opt(&w->qkv_bias),
                     srp_mat_cols(proj, 0, qd + 2 * kvd), c->in_mult, 0, e));
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
    return be->gemm(be, out, &w->o, srp_opt(&w->o_bias), srp_ws_rows(eng->ws.resid, T),
                    c->out_mult * cfg->resid_mult, 1, e);
}

static void ws_need(const srp_config *c, srp_ws_need *n) {
    const srp_attn_config *a = &c->attn;
    srp_ws_raise(&n->proj, (int64_t)(a->heads + 2 * a->kv_heads) * a->head_dim);
    srp_ws_raise(&n->mix, (int64_t)a->heads * a->head_dim);
}

const srp_mixer_ops srp_mixer_attention_ops = { run, ws_need };
