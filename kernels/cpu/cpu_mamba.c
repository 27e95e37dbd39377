/* The CPU backend's Mamba-2 operations: the causal depthwise conv and the selective scan
 * (research/model-spec.md, sections 1 and 2). */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

int srp_cpu_conv1d(srp_backend *be, srp_mat xbc, const srp_weight *w, const srp_weight *bias,
                   int kernel, const srp_mamba_state *st, srp_mat out, srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    const int64_t dim = xbc.cols;
    const int km1 = kernel - 1;
    if (w->m.rows != dim || w->m.cols != kernel)
        return srp_err_set(e, SRP_EINVAL,
                           "conv1d: weight [%lld x %lld] for %lld channels, kernel %d",
                           (long long)w->m.rows, (long long)w->m.cols, (long long)dim, kernel);
    if (kernel > 64) return srp_err_set(e, SRP_EUNSUPPORTED, "conv1d: kernel %d > 64", kernel);
    float *conv = st->conv;
    const float *wt = w->m.data, *bv = bias ? bias->m.data : NULL;
#pragma omp parallel for collapse(2) schedule(static) if (b->n_tokens * dim * kernel > CPU_PAR_MIN)
    for (int s = 0; s < b->n_seqs; s++) {
        for (int64_t ch = 0; ch < dim; ch++) {
            /* win holds the previous kernel-1 raw inputs, oldest first */
            float win[64];
            float *state = conv + ((int64_t)b->slot[s] * dim + ch) * km1;
            if (b->n_past[s] > 0)
                memcpy(win, state, (size_t)km1 * sizeof(float));
            else
                memset(win, 0, (size_t)km1 * sizeof(float));
            const float *wc = wt + ch * kernel;
            for (int t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) {
                float xt = cpu_row(xbc, t)[ch];
                float acc = bv ? bv[ch] : 0.0f;
                for (int k = 0; k < km1; k++) acc += wc[k] * win[k];
                acc += wc[km1] * xt;
                cpu_row(out, t)[ch] = cpu_silu(acc);
                for (int k = 0; k + 1 < km1; k++) win[k] = win[k + 1];
                if (km1 > 0) win[km1 - 1] = xt;
            }
            memcpy(state, win, (size_t)km1 * sizeof(float));
        }
    }
    return 0;
}

/* Scan of one head of one sequence over tokens [t0, t1), chunk by chunk. S is the head's
 * [P][N] state, updated in place. Work buffers: cb [Q*Q], acum and dtv [Q]. */
static void scan_head(const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C, srp_mat dt,
                      srp_mat y, int h, int t0, int t1, float *S, float *cb, float *acum,
                      float *dtv) {
    const int P = p->head_dim, N = p->state, Q = p->chunk;
    const int g = h / (p->heads / p->groups);
    const float A = -expf(((const float *)p->A_log->m.data)[h]);
    const float dtb = ((const float *)p->dt_bias->m.data)[h];
    const float Dh = ((const float *)p->D->m.data)[h];
    for (int c0 = t0; c0 < t1; c0 += Q) {
        const int q = t1 - c0 < Q ? t1 - c0 : Q;
        float run = 0.0f;
        for (int i = 0; i < q; i++) {
            float d = cpu_softplus(cpu_row(dt, c0 + i)[h] + dtb);
            d = fminf(fmaxf(d, p->dt_min), p->dt_max);
            dtv[i] = d;
            run += d * A;
            acum[i] = run;
        }
        /* cb[i][j] = C_i . B_j * exp(acum_i - acum_j) * dt_j for j <= i (the decayed "attention")
         */
        for (int i = 0; i < q; i++) {
            const float *Ci = cpu_row(C, c0 + i) + (int64_t)g * N;
            for (int j = 0; j <= i; j++) {
                const float *Bj = cpu_row(B, c0 + j) + (int64_t)g * N;
                float dot = 0.0f;
                for (int n = 0; n < N; n++) dot += Ci[n] * Bj[n];
                cb[i * Q + j] = dot * expf(acum[i] - acum[j]) * dtv[j];
            }
        }
        for (int i = 0; i < q; i++) {
            const float *Ci = cpu_row(C, c0 + i) + (int64_t)g * N;
            const float *xi = cpu_row(x, c0 + i) + (int64_t)h * P;
            float *yi = cpu_row(y, c0 + i) + (int64_t)h * P;
            const float decay = expf(acum[i]);
            for (int pp = 0; pp < P; pp++) {
                const float *Sp = S + (int64_t)pp * N;
                float off = 0.0f;
                for (int n = 0; n < N; n++) off += Sp[n] * Ci[n];
                float diag = 0.0f;
                for (int j = 0; j <= i; j++) diag += cb[i * Q + j] * cpu_row(x, c0 + j)[h * P + pp];
                yi[pp] = decay * off + diag + Dh * xi[pp];
            }
        }
        /* S <- exp(acum_last) S + sum_j exp(acum_last - acum_j) dt_j x_j B_j^T */
        const float last = acum[q - 1], chunk_decay = expf(last);
        for (int64_t k = 0; k < (int64_t)P * N; k++) S[k] *= chunk_decay;
        for (int j = 0; j < q; j++) {
            const float wj = expf(last - acum[j]) * dtv[j];
            const float *xj = cpu_row(x, c0 + j) + (int64_t)h * P;
            const float *Bj = cpu_row(B, c0 + j) + (int64_t)g * N;
            for (int pp = 0; pp < P; pp++) {
                float *Sp = S + (int64_t)pp * N;
                const float a = wj * xj[pp];
                for (int n = 0; n < N; n++) Sp[n] += a * Bj[n];
            }
        }
    }
}

int srp_cpu_ssd(srp_backend *be, const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C,
                srp_mat dt, const srp_mamba_state *st, srp_mat y, srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    if (p->groups <= 0 || p->heads % p->groups || p->chunk <= 0)
        return srp_err_set(e, SRP_EINVAL, "ssd: %d heads in %d groups, chunk %d", p->heads,
                           p->groups, p->chunk);
    const int64_t state_elems = (int64_t)p->head_dim * p->state;
    const int Q = p->chunk;
    int rc = 0;
    /* per token and head: the state's P x N update and readout */
    const int64_t work = (int64_t)b->n_tokens * p->heads * state_elems * 2;
#pragma omp parallel if (work > CPU_PAR_MIN)
    {
        float *cb = malloc((size_t)Q * Q * sizeof(float));
        float *acum = malloc((size_t)Q * sizeof(float) * 2);
        if (!cb || !acum) {
#pragma omp atomic write
            rc = SRP_ENOMEM;
        } else {
#pragma omp for collapse(2) schedule(dynamic)
            for (int s = 0; s < b->n_seqs; s++) {
                for (int h = 0; h < p->heads; h++) {
                    float *S = st->ssm + ((int64_t)b->slot[s] * p->heads + h) * state_elems;
                    if (b->n_past[s] == 0) memset(S, 0, (size_t)state_elems * sizeof(float));
                    scan_head(p, x, B, C, dt, y, h, b->seq_start[s], b->seq_start[s + 1], S, cb,
                              acum, acum + Q);
                }
            }
        }
        free(cb);
        free(acum);
    }
    if (rc) return srp_err_set(e, rc, "ssd: out of memory");
    return 0;
}
