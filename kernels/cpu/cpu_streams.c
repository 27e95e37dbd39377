/* The CPU backend's operations for the hybrid families' wiring: the norm-then-gate of Falcon-H1's
 * Mamba mixer and the element-wise add of two fp32 streams (Zamba2). */
#include <string.h>

#include "cpu_internal.h"

int srp_cpu_rmsnorm_gate(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                         float eps, srp_mat out, srp_err *e) {
    (void)be;
    if (group <= 0 || y.cols % group)
        return srp_err_set(e, SRP_EINVAL, "rmsnorm_gate: group %d does not divide %lld", group,
                           (long long)y.cols);
    if (z.rows != y.rows || z.cols != y.cols || out.rows != y.rows || out.cols != y.cols ||
        w->m.cols != y.cols)
        return srp_err_set(e, SRP_EINVAL, "rmsnorm_gate: shapes differ");
    const float *wt = w->m.data;
#pragma omp parallel for schedule(static) if (y.rows * y.cols > CPU_PAR_MIN)
    for (int64_t r = 0; r < y.rows; r++) {
        const float *yr = cpu_row(y, r), *zr = cpu_row(z, r);
        float *o = cpu_row(out, r);
        for (int64_t g0 = 0; g0 < y.cols; g0 += group) {
            double ss = 0.0;
            for (int64_t c = g0; c < g0 + group; c++) ss += (double)yr[c] * yr[c];
            const float inv = (float)(1.0 / sqrt(ss / group + eps));
            for (int64_t c = g0; c < g0 + group; c++) o[c] = yr[c] * inv * wt[c] * cpu_silu(zr[c]);
        }
    }
    return 0;
}

int srp_cpu_add(srp_backend *be, srp_mat x, const srp_mat *y, srp_mat out, srp_err *e) {
    (void)be;
    int rc = srp_cpu_check_f32("add", x, e);
    if (!rc) rc = srp_cpu_check_f32("add", out, e);
    if (!rc && y) rc = srp_cpu_check_f32("add", *y, e);
    if (rc) return rc;
    if (out.rows != x.rows || out.cols != x.cols || (y && (y->rows != x.rows || y->cols != x.cols)))
        return srp_err_set(e, SRP_EINVAL, "add: shapes differ");
#pragma omp parallel for schedule(static) if (x.rows * x.cols > CPU_PAR_MIN)
    for (int64_t r = 0; r < x.rows; r++) {
        const float *a = cpu_row(x, r);
        float *o = cpu_row(out, r);
        if (!y) {
            memmove(o, a, (size_t)x.cols * sizeof *o);
            continue;
        }
        const float *b = cpu_row(*y, r);
        for (int64_t c = 0; c < x.cols; c++) o[c] = a[c] + b[c];
    }
    return 0;
}
