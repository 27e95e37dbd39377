#include "sampler.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double srp_rng_uniform(uint64_t seed, uint64_t step) {
    uint64_t x = splitmix64(splitmix64(seed) ^ step);
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

int32_t srp_argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* qsort has no context argument; the probabilities being sorted are passed through this. */
static _Thread_local const float *sort_keys;

static int by_prob_desc(const void *a, const void *b) {
    float x = sort_keys[*(const int32_t *)a], y = sort_keys[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t srp_sample_row(const float *logits, int n, const srp_sample_params *p, float *prob,
                       int32_t *order) {
    if (p->temperature <= 0.0f || p->top_k == 1) return srp_argmax(logits, n);
    int32_t best = srp_argmax(logits, n);
    float maxl = logits[best];
    double inv_t = 1.0 / p->temperature;
    for (int i = 0; i < n; i++) prob[i] = (float)exp((logits[i] - maxl) * inv_t);
    /* min-p keeps tokens at least min_p times as likely as the most likely one */
    int m = 0;
    for (int i = 0; i < n; i++)
        if (p->min_p <= 0.0f || prob[i] >= p->min_p) order[m++] = i;
    int need_sort = (p->top_k > 0 && p->top_k < m) || p->top_p < 1.0f;
    if (need_sort) {
        sort_keys = prob;
        qsort(order, (size_t)m, sizeof *order, by_prob_desc);
        if (p->top_k > 0 && p->top_k < m) m = p->top_k;
        if (p->top_p < 1.0f) {
            double total = 0.0, cum = 0.0;
            for (int i = 0; i < m; i++) total += prob[order[i]];
            int keep = 0;
            while (keep < m) {
                cum += prob[order[keep++]];
                if (cum >= p->top_p * total) break;
            }
            m = keep;
        }
    }
    double total = 0.0;
    for (int i = 0; i < m; i++) total += prob[order[i]];
    double u = srp_rng_uniform(p->seed, p->step) * total, cum = 0.0;
    for (int i = 0; i < m; i++) {
        cum += prob[order[i]];
        if (u < cum) return order[i];
    }
    return order[m - 1];
}
