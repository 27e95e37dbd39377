/* Loading a mixture-of-experts mixer: router, routed experts stacked into one matrix per
 * projection, latent projections and the shared expert. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_load.h"

/* "x.weight" -> "x.bias" (names of the family's biases follow their weights'). */
static const char *bias_of(srp_loader *L, const char *prefix, const char *weight) {
    const size_t n = strlen(weight);
    if (n >= 6 && !strcmp(weight + n - 6, "weight"))
        return srp_lname(L, "%s%.*sbias", prefix, (int)(n - 6), weight);
    return srp_lname(L, "%s%s.bias", prefix, weight);
}

/* The experts' matrices of one projection as [E * rows, cols]: the stacked tensor when the
 * checkpoint has it, else one tensor per expert; with `gate` (a format like per_expert) each
 * expert's rows are its gate tensor's then per_expert's, half of rows each. */
static int load_experts(srp_loader *L, srp_weight *out, int E, int64_t rows, int64_t cols,
                        const char *prefix, const char *stacked, const char *per_expert,
                        const char *gate) {
    if (stacked && (srp_load_has(L, srp_lname(L, "%s%s", prefix, stacked)) || !per_expert))
        return srp_load_stacked(L, out, E, rows, cols, SRP_INIT_MATRIX,
                                srp_lname(L, "%s%s", prefix, stacked));
    if (!srp_load_has(L, srp_lname(L, "%s%s", prefix, per_expert)) && !srp_loader_model(L)->ckpt)
        return srp_load(L, out, E * rows, cols, SRP_INIT_MATRIX,
                        srp_lname(L, "%s%s", prefix, per_expert));
    const int per = gate ? 2 : 1, n = E * per;
    const int64_t part_rows = rows / per;
    /* the loader's name buffers are few: these parts keep their own */
    char(*names)[256] = malloc((size_t)n * sizeof *names);
    srp_load_part *parts = malloc((size_t)n * sizeof *parts);
    int rc = 0;
    if (!names || !parts) {
        rc = srp_err_set(srp_loader_err(L), SRP_ENOMEM, "out of memory");
    } else {
        for (int i = 0; i < n; i++) {
            const char *fmt = gate && i % per == 0 ? gate : per_expert;
            int k = snprintf(names[i], sizeof names[i], "%s", prefix);
            snprintf(names[i] + k, sizeof names[i] - (size_t)k, fmt, i / per);
            parts[i] = (srp_load_part){ names[i], part_rows, 0, part_rows, 1.0f };
        }
        rc = srp_load_concat(L, out, cols, SRP_INIT_MATRIX, n, parts);
    }
    free(names);
    free(parts);
    return rc;
}

/* An MLP of width H and the config's shared-expert kind under prefix. */
static int load_shared(srp_loader *L, srp_mlp_weights *w, const char *prefix,
                       const srp_mlp_names *n, int64_t d, int64_t H, int gated, int bias) {
    int rc;
    if (!gated) {
        rc = srp_load(L, &w->up, H, d, SRP_INIT_MATRIX, srp_lname(L, "%s%s", prefix, n->up));
    } else if (n->gate_up) {
        const char *gu = srp_lname(L, "%s%s", prefix, n->gate_up);
        const srp_load_part p[2] = { { gu, 2 * H, 0, H, 1.0f }, { gu, 2 * H, H, H, 1.0f } };
        rc = srp_load_concat(L, &w->up, d, SRP_INIT_MATRIX, 2, p);
    } else {
        const srp_load_part p[2] = { { srp_lname(L, "%s%s", prefix, n->gate), H, 0, H, 1.0f },
                                     { srp_lname(L, "%s%s", prefix, n->up), H, 0, H, 1.0f } };
        rc = srp_load_concat(L, &w->up, d, SRP_INIT_MATRIX, 2, p);
    }
    if (!rc && bias && gated)
        return srp_err_set(srp_loader_err(L), SRP_EUNSUPPORTED,
                           "%s: gated shared experts with biases are not supported",
                           srp_loader_dir(L));
    if (!rc && bias) rc = srp_load(L, &w->up_bias, 1, H, SRP_INIT_BIAS, bias_of(L, prefix, n->up));
    if (!rc)
        rc = srp_load(L, &w->down, d, H, SRP_INIT_MATRIX, srp_lname(L, "%s%s", prefix, n->down));
    if (!rc && bias) {
        const srp_load_part b = { bias_of(L, prefix, n->down), d, 0, d,
                                  srp_loader_model(L)->cfg.resid_mult };
        rc = srp_load_concat(L, &w->down_bias, 1, SRP_INIT_BIAS, 1, &b);
    }
    return rc;
}

int srp_load_moe_mixer(srp_loader *L, srp_block *bl, const char *prefix_in,
                       const srp_moe_names *n) {
    char prefix[256]; /* prefix_in may be a srp_lname buffer, which later calls reuse */
    snprintf(prefix, sizeof prefix, "%s", prefix_in);
    const srp_config *cfg = &srp_loader_model(L)->cfg;
    const srp_moe_config *c = &cfg->moe;
    const int E = c->n_experts;
    const int64_t d = cfg->d_model, in = c->latent ? c->latent : d,
                  U = (int64_t)c->hidden * (c->gated ? 2 : 1);
    srp_moe_weights *w = srp_load_alloc(L, sizeof *w);
    if (!w) return SRP_ENOMEM;
    int rc =
        srp_load(L, &w->router, E, d, SRP_INIT_MATRIX, srp_lname(L, "%s%s", prefix, n->router));
    if (!rc && n->bias)
        rc = srp_load_opt(L, &w->bias, 1, E, SRP_INIT_BIAS, srp_lname(L, "%s%s", prefix, n->bias));
    if (!rc)
        rc = load_experts(L, &w->up, E, U, in, prefix, n->up_stacked, n->up_expert,
                          c->gated ? n->gate_expert : NULL);
    if (!rc)
        rc = load_experts(L, &w->down, E, in, c->hidden, prefix, n->down_stacked, n->down_expert,
                          NULL);
    if (!rc && c->latent) {
        rc = srp_load(L, &w->fc1, c->latent, d, SRP_INIT_MATRIX,
                      srp_lname(L, "%s%s.weight", prefix, n->fc1));
        if (!rc && c->proj_bias)
            rc = srp_load(L, &w->fc1_bias, 1, c->latent, SRP_INIT_BIAS,
                          srp_lname(L, "%s%s.bias", prefix, n->fc1));
        if (!rc)
            rc = srp_load(L, &w->fc2, d, c->latent, SRP_INIT_MATRIX,
                          srp_lname(L, "%s%s.weight", prefix, n->fc2));
        if (!rc && c->proj_bias) {
            const srp_load_part b = { srp_lname(L, "%s%s.bias", prefix, n->fc2), d, 0, d,
                                      cfg->resid_mult };
            rc = srp_load_concat(L, &w->fc2_bias, 1, SRP_INIT_BIAS, 1, &b);
        }
    }
    if (!rc && c->shared_hidden)
        rc = load_shared(L, &w->shared, prefix, &n->shared, d, c->shared_hidden, c->shared_gated,
                         c->shared_bias);
    if (rc) return rc;
    return srp_block_add_mixer(L, bl, SRP_MIXER_MOE, w, NULL, 0) ? 0 : SRP_EINVAL;
}
