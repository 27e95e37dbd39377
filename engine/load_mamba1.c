/* Loading the Mamba-1 mixer under transformers' tensor names (MambaMixer, FalconMambaMixer, and
 * JambaMambaMixer with its dt/B/C norm weights). */
#include <stdio.h>

#include "model_load.h"

int srp_load_mamba1_mixer(srp_loader *L, srp_block *bl, const char *prefix_in,
                          const srp_mamba1_names *n) {
    char prefix[256]; /* prefix_in may be a srp_lname buffer, which later calls reuse */
    snprintf(prefix, sizeof prefix, "%s", prefix_in);
    static const srp_mamba1_names jamba = { "dt_layernorm.weight", "b_layernorm.weight",
                                            "c_layernorm.weight" };
    if (!n) n = &jamba;
    const srp_config *cfg = &srp_loader_model(L)->cfg;
    const srp_mamba1_config *c = &cfg->mamba1;
    const int64_t d = cfg->d_model, Di = c->d_inner, N = c->state, R = c->dt_rank;
    srp_mamba1_weights *w = srp_load_alloc(L, sizeof *w);
    if (!w) return SRP_ENOMEM;
    int rc = srp_load(L, &w->in_proj, 2 * Di, d, SRP_INIT_MATRIX,
                      srp_lname(L, "%sin_proj.weight", prefix));
    if (!rc && c->proj_bias)
        rc = srp_load(L, &w->in_proj_bias, 1, 2 * Di, SRP_INIT_BIAS,
                      srp_lname(L, "%sin_proj.bias", prefix));
    if (!rc)
        rc = srp_load(L, &w->conv, Di, c->conv_kernel, SRP_INIT_CONV,
                      srp_lname(L, "%sconv1d.weight", prefix));
    if (!rc && c->conv_bias)
        rc =
            srp_load(L, &w->conv_bias, 1, Di, SRP_INIT_BIAS, srp_lname(L, "%sconv1d.bias", prefix));
    if (!rc)
        rc = srp_load(L, &w->x_proj, R + 2 * N, Di, SRP_INIT_MATRIX,
                      srp_lname(L, "%sx_proj.weight", prefix));
    if (!rc)
        rc = srp_load(L, &w->dt_proj, Di, R, SRP_INIT_MATRIX,
                      srp_lname(L, "%sdt_proj.weight", prefix));
    if (!rc)
        rc = srp_load(L, &w->dt_bias, 1, Di, SRP_INIT_DT_BIAS,
                      srp_lname(L, "%sdt_proj.bias", prefix));
    if (!rc) rc = srp_load(L, &w->A_log, Di, N, SRP_INIT_A_LOG, srp_lname(L, "%sA_log", prefix));
    if (!rc) rc = srp_load(L, &w->D, 1, Di, SRP_INIT_D, srp_lname(L, "%sD", prefix));
    if (!rc && c->bcdt_norm == 2) {
        rc =
            srp_load(L, &w->dt_norm, 1, R, SRP_INIT_NORM, srp_lname(L, "%s%s", prefix, n->dt_norm));
        if (!rc)
            rc = srp_load(L, &w->b_norm, 1, N, SRP_INIT_NORM,
                          srp_lname(L, "%s%s", prefix, n->b_norm));
        if (!rc)
            rc = srp_load(L, &w->c_norm, 1, N, SRP_INIT_NORM,
                          srp_lname(L, "%s%s", prefix, n->c_norm));
    }
    if (!rc)
        rc = srp_load(L, &w->out_proj, d, Di, SRP_INIT_MATRIX,
                      srp_lname(L, "%sout_proj.weight", prefix));
    if (!rc && c->proj_bias) {
        /* the block's multiplier scales the product in the GEMM but not the bias */
        const srp_load_part b = { srp_lname(L, "%sout_proj.bias", prefix), d, 0, d,
                                  cfg->resid_mult };
        rc = srp_load_concat(L, &w->out_proj_bias, 1, SRP_INIT_BIAS, 1, &b);
    }
    if (rc) return rc;
    /* per slot: the conv window [d_inner][kernel-1] and the SSM state [d_inner][state] */
    const srp_state_desc st = { (int)Di, c->conv_kernel - 1 > 0 ? c->conv_kernel - 1 : 1, Di * N };
    return srp_block_add_mixer(L, bl, SRP_MIXER_MAMBA1, w, &st, 0) ? 0 : SRP_EINVAL;
}
