/* Rotary position embedding on the CPU. Angles are float32 products of the float32 frequency
 * and the position, as transformers forms them (inv_freq @ position_ids in float32), so long
 * positions round the same way. */
#include <math.h>
#include <stdlib.h>

#include "cpu_internal.h"

/* transformers' _compute_dynamic_ntk_parameters: the base grows once the sequence is longer
 * than the trained context; every frequency is then base'^(-2i/dim) = inv_freq[i] *
 * ratio^(-2i/dim). */
static double dynamic_ratio(const srp_rope_params *p, int len) {
    if (!p->dynamic || len <= p->max_positions) return 1.0;
    const double f = p->factor;
    return pow(f * len / p->max_positions - (f - 1.0), (double)p->dim / (p->dim - 2));
}

static void rotate(float *head, const float *inv_freq, int half, double pos, double ratio,
                   int dim) {
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        if (ratio != 1.0) f = (float)(f * pow(ratio, -2.0 * i / dim));
        const float ang = f * (float)pos;
        const float c = cosf(ang), s = sinf(ang);
        const float a = head[i], b = head[i + half];
        head[i] = a * c - b * s;
        head[i + half] = b * c + a * s;
    }
}

int srp_cpu_rope(srp_backend *be, const srp_rope_params *p, srp_mat q, srp_mat k, srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    if (p->dim <= 0 || p->dim > p->head_dim || p->dim % 2)
        return srp_err_set(e, SRP_EINVAL, "rope: %d rotated channels of %d", p->dim, p->head_dim);
    if (q.cols != (int64_t)p->heads * p->head_dim || k.cols != (int64_t)p->kv_heads * p->head_dim)
        return srp_err_set(e, SRP_EINVAL, "rope: q or k has the wrong width");
    const float *inv_freq = p->inv_freq->m.data;
    const int half = p->dim / 2;
    for (int s = 0; s < b->n_seqs; s++) {
        const int t0 = b->seq_start[s], t1 = b->seq_start[s + 1];
        const double ratio =
            dynamic_ratio(p, b->rope_len ? b->rope_len[s] : b->n_past[s] + (t1 - t0));
#pragma omp parallel for schedule(static) if ((t1 - t0) * (int64_t)q.cols > CPU_PAR_MIN)
        for (int t = t0; t < t1; t++) {
            const double pos = b->n_past[s] + (t - t0);
            for (int h = 0; h < p->heads; h++)
                rotate(cpu_row(q, t) + (int64_t)h * p->head_dim, inv_freq, half, pos, ratio,
                       p->dim);
            for (int h = 0; h < p->kv_heads; h++)
                rotate(cpu_row(k, t) + (int64_t)h * p->head_dim, inv_freq, half, pos, ratio,
                       p->dim);
        }
    }
    return 0;
}
