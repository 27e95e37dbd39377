/* The feed-forward mixer: down(act(up(x))), or down(act(gate(x)) * up(x)) with gate and up as
 * one GEMM into [gate | up]. */
#include "mixer.h"

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_mlp_config *c = &cfg->mlp;
    const srp_mlp_weights *w = mx->w;
    srp_mat proj = srp_ws_rows(eng->ws.proj, T);
    srp_mat h = srp_mat_cols(proj, 0, c->hidden);
    if (c->gated) {
        SRP_TRY(be->gemm(be, srp_ws_rows(eng->ws.normed, T), &w->up, NULL,
                         srp_mat_cols(proj, 0, 2 * (int64_t)c->hidden), 1.0f, 0, e));
        SRP_TRY(be->activate_gated(be, c->act, h, srp_mat_cols(proj, c->hidden, c->hidden), h, e));
    } else {
        SRP_TRY(be->gemm(be, srp_ws_rows(eng->ws.normed, T), &w->up, srp_opt(&w->up_bias), h, 1.0f,
                         0, e));
        SRP_TRY(be->activate(be, c->act, h, e));
    }
    return be->gemm(be, h, &w->down, srp_opt(&w->down_bias), srp_ws_rows(eng->ws.resid, T),
                    c->out_mult * cfg->resid_mult, 1, e);
}

static void ws_need(const srp_config *c, srp_ws_need *n) {
    srp_ws_raise(&n->proj, (int64_t)c->mlp.hidden * (c->mlp.gated ? 2 : 1));
}

const srp_mixer_ops srp_mixer_mlp_ops = { run, ws_need };
