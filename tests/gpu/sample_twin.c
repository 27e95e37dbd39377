#include "sample_twin.h"

#include <math.h>
#include <stdlib.h>

#include "sampler.h"

/* argmax_kernel: the largest finite logit, lowest index among equals, 0 when none is finite */
static int32_t twin_argmax(const float *row, int n) {
    float v = -INFINITY;
    int32_t idx = 0x7fffffff;
    for (int i = 0; i < n; i++)
        if (isfinite(row[i]) && row[i] > v) v = row[i], idx = i;
    return idx == 0x7fffffff ? 0 : idx;
}

/* the kernels' mass of an element: dropped (-1) and zero count nothing */
static double at(const float *v, int i) {
    return v[i] > 0.0f ? (double)v[i] : 0.0;
}

static double mass(const float *v, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += at(v, i);
    return s;
}

/* first_exceeding: the first position whose running mass exceeds target, else n - 1 */
static int first_exceeding(const float *v, int n, double target) {
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += at(v, i);
        if (target < cum) return i;
    }
    return n - 1;
}

/* CUB's StableSortPairsDescending over (probability, id) with ids ascending: merge sort */
static void sort_desc(float *key, int32_t *id, int n, float *tk, int32_t *ti) {
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int a = lo, b = mid, o = lo;
            while (a < mid || b < hi) {
                int take_a = b >= hi || (a < mid && !(key[b] > key[a]));
                int s = take_a ? a++ : b++;
                tk[o] = key[s];
                ti[o++] = id[s];
            }
        }
        for (int i = 0; i < n; i++) key[i] = tk[i], id[i] = ti[i];
    }
}

static int32_t twin_draw(const float *logits, int n, const srp_sample_params *p, float *probs,
                         float *sorted, int32_t *ids, float *tk, int32_t *ti) {
    const int32_t best = twin_argmax(logits, n);
    if (p->temperature == 0.0f) return best;
    /* probs_kernel */
    const float mx = logits[best];
    const double inv_t = 1.0 / p->temperature;
    for (int i = 0; i < n; i++) {
        const float x = logits[i];
        float v = i == best ? 1.0f : isfinite(x) ? (float)exp((double)(x - mx) * inv_t) : 0.0f;
        probs[i] = (p->min_p > 0.0f && v < p->min_p) ? -1.0f : v;
    }
    const double u = srp_rng_uniform(p->seed, p->step);
    if (p->top_k > 0 || p->top_p < 1.0f) {
        for (int i = 0; i < n; i++) sorted[i] = probs[i], ids[i] = i;
        sort_desc(sorted, ids, n, tk, ti);
        /* draw_sorted_kernel: min-p's survivors are the prefix of non-negative values */
        int kept = n;
        for (int i = 0; i < n; i++)
            if (sorted[i] < 0.0f && (i == 0 || sorted[i - 1] >= 0.0f)) kept = i;
        int m = kept;
        if ((p->top_k > 0 && p->top_k < m) || p->top_p < 1.0f) {
            if (p->top_k > 0 && p->top_k < m) m = p->top_k;
            if (p->top_p < 1.0f)
                m = first_exceeding(sorted, m, nextafter(p->top_p * mass(sorted, m), -1.0)) + 1;
            return ids[first_exceeding(sorted, m, u * mass(sorted, m))];
        }
        /* min-p left no more than top_k tokens and top-p is off: index order, as below */
    }
    /* draw_unsorted_kernel; the fallback is the last index min-p kept */
    int pos = first_exceeding(probs, n, u * mass(probs, n));
    while (pos > 0 && probs[pos] < 0.0f) pos--;
    return pos;
}

int32_t sample_twin_row(const float *logits, int n, const srp_sample_params *raw) {
    const srp_sample_params p = srp_sample_normalize(raw, n);
    float *f = malloc((size_t)n * 3 * sizeof *f);
    int32_t *ids = malloc((size_t)n * 2 * sizeof *ids);
    if (!f || !ids) abort();
    int32_t t = twin_draw(logits, n, &p, f, f + n, ids, f + 2 * (size_t)n, ids + n);
    free(f);
    free(ids);
    return t;
}
