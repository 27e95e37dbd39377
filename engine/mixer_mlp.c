/* The feed-forward mixer: down(act(up(x))), or down(act(gate(x)) * up(x)) with gate and up as
 * one GEMM into [gate | up]. Zamba2 adds a low-rank adapter to [gate | up] and a projection
 * after down. */
#include "mixer.h"

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_mlp_config *c = &cfg->mlp;
    const srp_mlp_weights *w = mx->w;
    const int64_t H = c->hidden, up_rows = c->gated ? 2 * H : H;
    srp_mat proj = srp_ws_rows(eng->ws.proj, T), x = srp_mixer_in(eng, T);
    srp_mat h = srp_mat_cols(proj, 0, H), up = srp_mat_cols(proj, 0, up_rows);
    SRP_TRY(be->gemm(be, x, &w->up, srp_opt(&w->up_bias), up, 1.0f, 0, e));
    if (w->adapter_a.m.data) {
        srp_mat mid = srp_mat_cols(proj, up_rows, c->adapter_rank);
        SRP_TRY(be->gemm(be, x, &w->adapter_a, NULL, mid, 1.0f, 0, e));
        SRP_TRY(be->gemm(be, mid, &w->adapter_b, NULL, up, 1.0f, 1, e));
    }
    if (c->gated)
        SRP_TRY(be->activate_gated(be, c->act, h, srp_mat_cols(proj, H, H), h, e));
    else
        SRP_TRY(be->activate(be, c->act, h, e));
    const float alpha = c->out_mult * cfg->resid_mult;
    if (!w->post.m.data)
        return be->gemm(be, h, &w->down, srp_opt(&w->down_bias), srp_mixer_out(eng, T), alpha,
                        eng->io.acc, e);
    srp_mat mid = srp_mat_cols(srp_ws_rows(eng->ws.mix, T), 0, cfg->d_model);
    SRP_TRY(be->gemm(be, h, &w->down, srp_opt(&w->down_bias), mid, 1.0f, 0, e));
    return be->gemm(be, mid, &w->post, NULL, srp_mixer_out(eng, T), alpha, eng->io.acc, e);
}

static void ws_need(const srp_config *c, srp_ws_need *n) {
    srp_ws_raise(&n->proj, (int64_t)c->mlp.hidden * (c->mlp.gated ? 2 : 1) + c->mlp.adapter_rank);
    if (c->mlp.post_proj) srp_ws_raise(&n->mix, c->d_model);
}

const srp_mixer_ops srp_mixer_mlp_ops = { run, ws_need };
