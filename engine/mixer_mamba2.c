/* The Mamba-2 mixer: in_proj -> causal conv1d over x, B, C -> SSD scan (or the one-token state
 * update) -> gated RMSNorm (or Falcon-H1's norm-then-gate, or the gate alone) -> out_proj
 * (research/model-spec.md section 1). */
#include "mixer.h"

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_mamba2_config *c = &cfg->mamba2;
    const srp_mamba2_weights *w = mx->w;
    const srp_mamba_state *st = &eng->mamba[mx->state_index];
    const int Di = c->d_inner, GN = c->groups * c->state;
    srp_mat proj = srp_mat_cols(srp_ws_rows(eng->ws.proj, T), 0, c->d_in_proj);
    SRP_TRY(be->gemm(be, srp_mixer_in(eng, T), &w->in_proj, srp_opt(&w->in_proj_bias), proj,
                     c->in_mult, 0, e));
    /* in_proj output order: [z | xBC | dt] (mamba2.py "Order: [z, x, B, C, dt]") */
    srp_mat z = srp_mat_cols(proj, 0, Di);
    srp_mat xbc = srp_mat_cols(proj, Di, c->conv_dim);
    srp_mat dt = srp_mat_cols(proj, Di + c->conv_dim, c->heads);
    srp_mat conv = srp_mat_cols(srp_ws_rows(eng->ws.conv_out, T), 0, c->conv_dim);
    SRP_TRY(be->conv1d(be, xbc, &w->conv, srp_opt(&w->conv_bias), c->conv_kernel, st, conv, e));
    srp_mat x = srp_mat_cols(conv, 0, Di);
    srp_mat B = srp_mat_cols(conv, Di, GN);
    srp_mat C = srp_mat_cols(conv, Di + GN, GN);
    srp_mat y = srp_mat_cols(srp_ws_rows(eng->ws.mix, T), 0, Di);
    srp_mamba_params p = { c->heads,       c->head_dim,   c->groups, c->state,
                           c->conv_kernel, c->chunk_size, c->dt_min, c->dt_max,
                           &w->A_log,      &w->dt_bias,   &w->D };
    SRP_TRY(be->ssd(be, &p, x, B, C, dt, st, y, e));
    switch (c->gate_norm) {
    case SRP_GATE_NORM_AFTER:
        SRP_TRY(be->gated_rmsnorm(be, y, z, &w->norm, c->norm_group, c->norm_eps, y, e));
        break;
    case SRP_GATE_NORM_BEFORE:
        SRP_TRY(be->rmsnorm_gate(be, y, z, &w->norm, c->norm_group, c->norm_eps, y, e));
        break;
    case SRP_GATE_NO_NORM:
        SRP_TRY(be->activate_gated(be, SRP_ACT_SILU, z, y, y, e));
        break;
    }
    return be->gemm(be, y, &w->out_proj, srp_opt(&w->out_proj_bias), srp_mixer_out(eng, T),
                    c->out_mult * cfg->resid_mult, eng->io.acc, e);
}

static void ws_need(const srp_config *c, srp_ws_need *n) {
    srp_ws_raise(&n->proj, c->mamba2.d_in_proj);
    srp_ws_raise(&n->conv, c->mamba2.conv_dim);
    srp_ws_raise(&n->mix, c->mamba2.d_inner);
}

const srp_mixer_ops srp_mixer_mamba2_ops = { run, ws_need };
