/* The CPU backend's selective scan of Mamba-1 (S6; Gu & Dao 2023, Algorithm 2): parallel over
 * blocks of channels, sequential in time. A block's state rows stay in L1 from the first token of
 * a sequence to the last, and each token's inputs for the block are one cache line. */
#include <string.h>

#include "cpu_internal.h"

#define S6_CB        16  /* channels per block: 16 fp32 = one cache line of x, dt, z and y */
#define S6_MAX_STATE 256 /* the block's state lives on the stack */

static int check(const srp_s6_params *p, srp_mat x, srp_mat dt, srp_mat B, srp_mat C, srp_mat z,
                 srp_mat y, int T, srp_err *e) {
    const int64_t Di = p->d_inner, N = p->state;
    if (Di < 1 || N < 1 || N > S6_MAX_STATE)
        return srp_err_set(e, SRP_EUNSUPPORTED,
                           "selective_scan: %lld channels, state %lld (1 to %d)", (long long)Di,
                           (long long)N, S6_MAX_STATE);
    if (x.cols != Di || dt.cols != Di || y.cols != Di || (z.data && z.cols != Di) || B.cols != N ||
        C.cols != N)
        return srp_err_set(e, SRP_EINVAL,
                           "selective_scan: widths x %lld dt %lld z %lld y %lld B %lld C %lld for "
                           "%lld channels and state %lld",
                           (long long)x.cols, (long long)dt.cols, (long long)z.cols,
                           (long long)y.cols, (long long)B.cols, (long long)C.cols, (long long)Di,
                           (long long)N);
    if (x.rows < T || dt.rows < T || y.rows < T || B.rows < T || C.rows < T ||
        (z.data && z.rows < T))
        return srp_err_set(e, SRP_EINVAL, "selective_scan: fewer rows than the batch's %d tokens",
                           T);
    if (p->A_log->m.rows != Di || p->A_log->m.cols != N ||
        (p->dt_bias && p->dt_bias->m.rows * p->dt_bias->m.cols != Di) ||
        (p->D && p->D->m.rows * p->D->m.cols != Di))
        return srp_err_set(e, SRP_EINVAL, "selective_scan: A_log [%lld x %lld] for [%lld x %lld]",
                           (long long)p->A_log->m.rows, (long long)p->A_log->m.cols, (long long)Di,
                           (long long)N);
    return 0;
}

/* Channels [i0, i0 + nc) of one sequence, tokens [t0, t1); h is their state rows. */
static void scan_block(const srp_s6_params *p, srp_mat x, srp_mat dt, srp_mat B, srp_mat C,
                       srp_mat z, srp_mat y, int i0, int nc, int t0, int t1, float *h) {
    const int N = p->state;
    const float *A_log = (const float *)p->A_log->m.data + (int64_t)i0 * N;
    const float *bias = p->dt_bias ? (const float *)p->dt_bias->m.data + i0 : NULL;
    const float *Dv = p->D ? (const float *)p->D->m.data + i0 : NULL;
    float A[S6_CB * S6_MAX_STATE];
    for (int k = 0; k < nc * N; k++) A[k] = -expf(A_log[k]);
    for (int t = t0; t < t1; t++) {
        const float *xt = cpu_row(x, t) + i0, *dtt = cpu_row(dt, t) + i0;
        const float *Bt = cpu_row(B, t), *Ct = cpu_row(C, t);
        const float *zt = z.data ? cpu_row(z, t) + i0 : NULL;
        float *yt = cpu_row(y, t) + i0;
        for (int c = 0; c < nc; c++) {
            const float d = cpu_softplus(dtt[c] + (bias ? bias[c] : 0.0f)), u = xt[c];
            float *hc = h + (int64_t)c * N;
            const float *Ac = A + (int64_t)c * N;
            float acc = 0.0f;
            /* transformers' order: exp(A * delta) * h + (delta * B) * x */
            for (int n = 0; n < N; n++) {
                const float hn = expf(Ac[n] * d) * hc[n] + d * Bt[n] * u;
                hc[n] = hn;
                acc += hn * Ct[n];
            }
            float v = acc + (Dv ? Dv[c] * u : 0.0f);
            if (zt) v *= cpu_silu(zt[c]);
            yt[c] = v;
        }
    }
}

int srp_cpu_selective_scan(srp_backend *be, const srp_s6_params *p, srp_mat x, srp_mat dt,
                           srp_mat B, srp_mat C, srp_mat z, const srp_mamba_state *st, srp_mat y,
                           srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    int rc = check(p, x, dt, B, C, z, y, b->n_tokens, e);
    if (rc) return rc;
    const int Di = p->d_inner, N = p->state, n_blk = (Di + S6_CB - 1) / S6_CB;
    const int64_t work = (int64_t)b->n_tokens * Di * N * 6;
#pragma omp parallel for collapse(2) schedule(static) if (work > CPU_PAR_MIN)
    for (int s = 0; s < b->n_seqs; s++) {
        for (int k = 0; k < n_blk; k++) {
            const int i0 = k * S6_CB, nc = Di - i0 < S6_CB ? Di - i0 : S6_CB;
            float h[S6_CB * S6_MAX_STATE];
            float *S = st->ssm + ((int64_t)b->slot[s] * Di + i0) * N;
            if (b->n_past[s] > 0)
                memcpy(h, S, sizeof(float) * (size_t)nc * N);
            else
                memset(h, 0, sizeof(float) * (size_t)nc * N);
            scan_block(p, x, dt, B, C, z, y, i0, nc, b->seq_start[s], b->seq_start[s + 1], h);
            memcpy(S, h, sizeof(float) * (size_t)nc * N);
        }
    }
    return 0;
}
