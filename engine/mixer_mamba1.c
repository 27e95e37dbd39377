/* The Mamba-1 mixer: in_proj -> [x | z], causal conv1d over x (continuing from the slot's conv
 * window) -> x_proj -> [dt | B | C] (RMS-normalised for FalconMamba and Jamba) -> dt_proj -> the
 * selective scan (softplus of dt + bias inside; the one-token update for decoding sequences),
 * gated by silu(z) -> out_proj into the block's output.
 *
 * The step's projection buffer holds, side by side: [x | z] (2 d_inner), dt (d_inner), and
 * x_proj's output [dt_rank | B | C]. */
#include "mixer.h"

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_mamba1_config *c = &cfg->mamba1;
    const srp_mamba1_weights *w = mx->w;
    const srp_mamba_state *st = &eng->mamba[mx->state_index];
    const int Di = c->d_inner, N = c->state, R = c->dt_rank;
    srp_mat proj = srp_ws_rows(eng->ws.proj, T);
    srp_mat xz = srp_mat_cols(proj, 0, 2 * Di);
    SRP_TRY(
        be->gemm(be, srp_mixer_in(eng, T), &w->in_proj, srp_opt(&w->in_proj_bias), xz, 1.0f, 0, e));
    /* in_proj output order: [x | z] (modeling_mamba.py: hidden_states, gate = chunk(2)) */
    srp_mat x_in = srp_mat_cols(xz, 0, Di), z = srp_mat_cols(xz, Di, Di);
    srp_mat x = srp_mat_cols(srp_ws_rows(eng->ws.conv_out, T), 0, Di);
    SRP_TRY(be->conv1d(be, x_in, &w->conv, srp_opt(&w->conv_bias), c->conv_kernel, st, x, e));
    srp_mat dt = srp_mat_cols(proj, 2 * Di, Di);
    srp_mat dbc = srp_mat_cols(proj, 3 * Di, R + 2 * N);
    SRP_TRY(be->gemm(be, x, &w->x_proj, NULL, dbc, 1.0f, 0, e));
    srp_mat dt_low = srp_mat_cols(dbc, 0, R), B = srp_mat_cols(dbc, R, N),
            C = srp_mat_cols(dbc, R + N, N);
    if (c->bcdt_norm) {
        SRP_TRY(be->rmsnorm(be, dt_low, srp_opt(&w->dt_norm), c->bcdt_eps, dt_low, e));
        SRP_TRY(be->rmsnorm(be, B, srp_opt(&w->b_norm), c->bcdt_eps, B, e));
        SRP_TRY(be->rmsnorm(be, C, srp_opt(&w->c_norm), c->bcdt_eps, C, e));
    }
    /* dt_proj's bias is added in fp32 inside the scan, before the softplus (mamba_ssm's
     * delta_bias) */
    SRP_TRY(be->gemm(be, dt_low, &w->dt_proj, NULL, dt, 1.0f, 0, e));
    srp_mat y = srp_mat_cols(srp_ws_rows(eng->ws.mix, T), 0, Di);
    const srp_s6_params p = { Di, N, &w->A_log, &w->dt_bias, &w->D };
    SRP_TRY(be->selective_scan(be, &p, x, dt, B, C, z, st, y, e));
    return be->gemm(be, y, &w->out_proj, srp_opt(&w->out_proj_bias), srp_mixer_out(eng, T),
                    cfg->resid_mult, eng->io.acc, e);
}

static void ws_need(const srp_config *c, srp_ws_need *n) {
    const srp_mamba1_config *m = &c->mamba1;
    /* a multiple of 8 columns keeps every row 16-byte aligned for the GPU's vector loads */
    const int64_t w = 3 * (int64_t)m->d_inner + m->dt_rank + 2 * m->state;
    srp_ws_raise(&n->proj, (w + 7) / 8 * 8);
    srp_ws_raise(&n->conv, m->d_inner);
    srp_ws_raise(&n->mix, m->d_inner);
}

const srp_mixer_ops srp_mixer_mamba1_ops = { run, ws_need };
