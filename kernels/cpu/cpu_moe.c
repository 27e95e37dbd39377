/* Mixture-of-experts on the CPU: the router's choice, row by row as transformers computes it
 * (modeling_nemotron_h.py's NemotronHTopkRouter, granitemoehybrid's top-k softmax, Jamba's
 * softmax then top-k), and the experts: the tokens' rows grouped by expert, one sgemm per expert
 * and projection, then each token's weighted sum. */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* The best not-yet-taken value of v[0..n) (ties: the lower index); taken entries are NaN, which
 * no comparison selects. -1 when every entry is taken. */
static int argmax(const float *v, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (v[i] == v[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

/* One token: scores, the choice among the kept groups, the weights. scratch: 2 * E + G floats. */
static void route_row(const srp_moe_route_params *p, const float *logits, const float *bias,
                      float *scratch, int32_t *ids, float *w) {
    const int E = p->n_experts, K = p->top_k, G = p->n_group;
    float *score = scratch, *choice = scratch + E, *group = scratch + 2 * E;
    if (p->score == SRP_MOE_SIGMOID) {
        for (int i = 0; i < E; i++) score[i] = 1.0f / (1.0f + expf(-logits[i]));
    } else {
        float m = logits[0], sum = 0.0f;
        for (int i = 1; i < E; i++) m = logits[i] > m ? logits[i] : m;
        for (int i = 0; i < E; i++) sum += score[i] = expf(logits[i] - m);
        for (int i = 0; i < E; i++) score[i] /= sum;
    }
    for (int i = 0; i < E; i++) choice[i] = score[i] + (bias ? bias[i] : 0.0f);
    if (G > 1) {
        /* a group's merit is the sum of its two best choice scores; the experts of all but the
         * topk_group best groups are out (-inf, below every score) */
        const int gs = E / G;
        for (int g = 0; g < G; g++) {
            float a = -INFINITY, b = -INFINITY;
            for (int j = 0; j < gs; j++) {
                float v = choice[g * gs + j];
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            group[g] = a + b;
        }
        unsigned char keep[SRP_MOE_MAX_GROUPS] = { 0 };
        for (int k = 0; k < p->topk_group; k++) {
            int g = argmax(group, G);
            keep[g] = 1;
            group[g] = NAN;
        }
        for (int i = 0; i < E; i++)
            if (!keep[i / gs]) choice[i] = -INFINITY;
    }
    float sum = 0.0f;
    for (int k = 0; k < K; k++) {
        int i = argmax(choice, E);
        choice[i] = NAN;
        ids[k] = i;
        w[k] = score[i];
        sum += w[k];
    }
    for (int k = 0; k < K; k++) {
        if (p->norm_topk) w[k] /= sum + 1e-20f;
        w[k] *= p->scale;
    }
}

int srp_cpu_moe_route(srp_backend *be, const srp_moe_route_params *p, srp_mat logits,
                      const srp_moe_routing *r, srp_err *e) {
    (void)be;
    int rc = srp_moe_route_check(p, logits, r, e);
    if (rc) return rc;
    const float *bias = p->bias ? (const float *)p->bias->m.data : NULL;
    const int E = p->n_experts;
#pragma omp parallel if (logits.rows * E > CPU_PAR_MIN)
    {
        float scratch[2 * SRP_MOE_MAX_EXPERTS + SRP_MOE_MAX_GROUPS];
#pragma omp for schedule(static)
        for (int64_t t = 0; t < logits.rows; t++)
            route_row(p, cpu_row(logits, t), bias, scratch, (int32_t *)r->ids.data + t * r->ids.ld,
                      cpu_row(r->weights, t));
    }
    return 0;
}

int srp_cpu_moe_experts(srp_backend *be, const srp_moe_experts_params *p, const srp_moe_routing *r,
                        srp_mat x, srp_mat out, float alpha, int accumulate, srp_err *e) {
    const int E = p->n_experts, K = p->top_k, H = p->hidden;
    const int64_t T = x.rows, P = T * K, in = x.cols, U = p->gated ? 2 * (int64_t)H : H,
                  oc = out.cols;
    srp_mat s = p->scratch;
    if (x.dtype != SRP_F32 || out.dtype != SRP_F32 || s.dtype != SRP_F32 || out.rows != T ||
        p->up->m.rows != E * U || p->up->m.cols != in || p->down->m.rows != E * oc ||
        p->down->m.cols != H || s.rows < P || s.cols < in + U + oc || r->ids.rows != T ||
        r->ids.cols != K || r->weights.rows != T || r->weights.cols != K)
        return srp_err_set(e, SRP_EINVAL,
                           "moe_experts: %d experts of %d into [%lld x %lld] from [%lld x %lld]: "
                           "shapes or types of the weights or buffers",
                           E, H, (long long)T, (long long)oc, (long long)T, (long long)in);
    if (T == 0) return 0;
    int64_t *off = calloc((size_t)E + 1, sizeof *off);
    int64_t *pos = malloc((size_t)P * sizeof *pos), *src = malloc((size_t)P * sizeof *src);
    if (!off || !pos || !src) {
        free(off);
        free(pos);
        free(src);
        return srp_err_set(e, SRP_ENOMEM, "moe_experts: out of memory");
    }
    /* rows grouped by expert, in token order within each (a counting sort of the pairs) */
    const int32_t *ids = r->ids.data;
    int rc = 0;
    for (int64_t q = 0; q < P; q++) {
        int32_t id = ids[(q / K) * r->ids.ld + q % K];
        if (id < 0 || id >= E) {
            rc = srp_err_set(e, SRP_EINVAL, "moe_experts: expert %d of %d", id, E);
            goto done;
        }
        off[id + 1]++;
    }
    for (int i = 0; i < E; i++) off[i + 1] += off[i];
    for (int64_t q = 0; q < P; q++) {
        int32_t id = ids[(q / K) * r->ids.ld + q % K];
        pos[q] = off[id]++;
        src[pos[q]] = q / K;
    }
    for (int i = E; i > 0; i--) off[i] = off[i - 1]; /* back to each expert's first row */
    off[0] = 0;
    srp_mat xg = srp_mat_cols(s, 0, in), h = srp_mat_cols(s, in, U),
            y = srp_mat_cols(s, in + U, oc);
#pragma omp parallel for schedule(static) if (P * in > CPU_PAR_MIN)
    for (int64_t q = 0; q < P; q++)
        memcpy(cpu_row(xg, q), cpu_row(x, src[q]), (size_t)in * sizeof(float));
    srp_sgemm_fn sgemm = cpu_of(be)->sgemm;
    const float *up = p->up->m.data, *down = p->down->m.data;
    for (int i = 0; i < E; i++) {
        const int64_t n = off[i + 1] - off[i];
        if (n == 0) continue;
        sgemm(SRP_CBLAS_ROW_MAJOR, SRP_CBLAS_NO_TRANS, SRP_CBLAS_TRANS, (int)n, (int)U, (int)in,
              1.0f, cpu_row(xg, off[i]), (int)xg.ld, up + (int64_t)i * U * p->up->m.ld,
              (int)p->up->m.ld, 0.0f, cpu_row(h, off[i]), (int)h.ld);
    }
#pragma omp parallel for schedule(static) if (P * H > CPU_PAR_MIN)
    for (int64_t q = 0; q < P; q++) {
        float *hr = cpu_row(h, q);
        for (int c = 0; c < H; c++)
            hr[c] = p->gated ? srp_cpu_act(p->act, hr[c]) * hr[H + c] : srp_cpu_act(p->act, hr[c]);
    }
    for (int i = 0; i < E; i++) {
        const int64_t n = off[i + 1] - off[i];
        if (n == 0) continue;
        sgemm(SRP_CBLAS_ROW_MAJOR, SRP_CBLAS_NO_TRANS, SRP_CBLAS_TRANS, (int)n, (int)oc, H, 1.0f,
              cpu_row(h, off[i]), (int)h.ld, down + (int64_t)i * oc * p->down->m.ld,
              (int)p->down->m.ld, 0.0f, cpu_row(y, off[i]), (int)y.ld);
    }
    /* each token's sum in the order of its choices */
#pragma omp parallel for schedule(static) if (P * oc > CPU_PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        float *o = cpu_row(out, t);
        const float *w = cpu_row(r->weights, t);
        for (int64_t c = 0; c < oc; c++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += w[k] * cpu_row(y, pos[t * K + k])[c];
            o[c] = accumulate ? o[c] + alpha * acc : alpha * acc;
        }
    }
done:
    free(off);
    free(pos);
    free(src);
    return rc;
}
