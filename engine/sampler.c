#include "sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (isfinite(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
    return best < 0 ? 0 : best;
}

srp_sample_params srp_sample_normalize(const srp_sample_params *p, int n) {
    srp_sample_params q = *p;
    if (!(q.top_k > 0 && q.top_k < n)) q.top_k = 0;
    if (!(q.top_p < 1.0f)) q.top_p = 1.0f; /* NaN too */
    if (!(q.min_p > 0.0f)) q.min_p = 0.0f;
    if (q.min_p > 1.0f) q.min_p = 1.0f;
    if (q.temperature > FLT_MAX) q.temperature = FLT_MAX; /* 1 / T stays > 0: -inf * 0 is NaN */
    if (!(q.temperature > 0.0f) || q.top_k == 1 || !(q.top_p > 0.0f)) {
        q.temperature = 0.0f;
        q.top_k = 0;
        q.top_p = 1.0f;
        q.min_p = 0.0f;
    }
    return q;
}

/* qsort has no context argument; the probabilities being sorted are passed through this. */
static _Thread_local const float *sort_keys;

static int by_prob_desc(const void *a, const void *b) {
    float x = sort_keys[*(const int32_t *)a], y = sort_keys[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* The logits processors of p applied to a copy of the row (into out); returns whether any
 * applies (out untouched otherwise). A processor value that is not finite is ignored. In the
 * copy a raw logit that is not finite is -inf and stays so; a finite one pushed past the float
 * range saturates at FLT_MAX upwards and is -inf downwards, and NaN (-inf - -inf) is -inf. */
static int process_row(const float *logits, int n, const srp_sample_params *p, float *out) {
    const float r = p->repetition_penalty;
    const float pres = isfinite(p->presence_penalty) ? p->presence_penalty : 0.0f;
    const float freq = isfinite(p->frequency_penalty) ? p->frequency_penalty : 0.0f;
    int rep = r > 0.0f && r != 1.0f && isfinite(r) && (p->output_counts || p->prompt_mask);
    int counts = (pres != 0.0f || freq != 0.0f) && p->output_counts;
    if (p->n_logit_bias <= 0 && !rep && !counts && !p->allowed) return 0;
    for (int i = 0; i < n; i++) out[i] = isfinite(logits[i]) ? logits[i] : -INFINITY;
    if (p->allowed)
        for (int i = 0; i < n; i++)
            if (!(p->allowed[i >> 5] >> (i & 31) & 1u)) out[i] = -INFINITY;
    for (int i = 0; i < p->n_logit_bias; i++) {
        int32_t id = p->logit_bias_ids[i];
        if (id < 0 || id >= n) continue;
        /* -inf bans the token (min_tokens holds the stop ids off this way); NaN and +inf are
         * not biases anyone can mean and are ignored */
        if (p->logit_bias[i] == -INFINITY)
            out[id] = -INFINITY;
        else if (isfinite(p->logit_bias[i]))
            out[id] += p->logit_bias[i];
    }
    if (rep) {
        for (int i = 0; i < n; i++) {
            int seen = (p->output_counts && p->output_counts[i] > 0) ||
                       (p->prompt_mask && p->prompt_mask[i]);
            if (seen) out[i] = out[i] > 0.0f ? out[i] / r : out[i] * r;
        }
    }
    if (counts) {
        for (int i = 0; i < n; i++) {
            int32_t c = p->output_counts[i];
            if (c > 0) out[i] -= pres + freq * (float)c;
        }
    }
    for (int i = 0; i < n; i++) {
        if (isnan(out[i])) out[i] = -INFINITY;
        if (out[i] > FLT_MAX) out[i] = FLT_MAX;
    }
    return 1;
}

/* The draw: the argmax of the (processed) row, at probability exactly 1, survives every filter,
 * so at least one token is always kept and the kept mass is at least 1. */
static int32_t draw(const float *logits, int n, const srp_sample_params *raw, float *prob,
                    int32_t *order) {
    if (process_row(logits, n, raw, prob)) logits = prob;
    const srp_sample_params q = srp_sample_normalize(raw, n), *p = &q;
    const int32_t best = srp_argmax(logits, n);
    if (p->temperature == 0.0f) return best;
    const float maxl = logits[best];
    const double inv_t = 1.0 / p->temperature;
    /* in place when logits is prob: element i is read before it is written */
    for (int i = 0; i < n; i++)
        prob[i] = i == best             ? 1.0f
                  : isfinite(logits[i]) ? (float)exp((logits[i] - maxl) * inv_t)
                                        : 0.0f;
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
    return order[m - 1]; /* not reached: u * total < total, and cum ends at total */
}

static float finite_or_ninf(float x) {
    return isfinite(x) ? x : -INFINITY;
}

void srp_logprobs_row(const float *logits, int n, int32_t token, int top_n, float *logprob,
                      int32_t *top_ids, float *top_logprobs) {
    if (n < 1) return;
    const float maxl = finite_or_ninf(logits[srp_argmax(logits, n)]);
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        if (isfinite(logits[i])) sum += exp((double)logits[i] - maxl);
    /* a row without a finite logit gives every token -inf */
    const double lse = isfinite(maxl) ? (double)maxl + log(sum) : INFINITY;
    if (token >= 0 && token < n) *logprob = (float)((double)finite_or_ninf(logits[token]) - lse);
    if (top_n > n) top_n = n;
    int k = 0; /* top_ids[0..k) sorted by logit descending; equal logits keep the lower id */
    for (int i = 0; i < n && top_n > 0; i++) {
        const float x = finite_or_ninf(logits[i]);
        if (k == top_n && !(x > finite_or_ninf(logits[top_ids[k - 1]]))) continue;
        int j = k < top_n ? k++ : k - 1;
        while (j > 0 && x > finite_or_ninf(logits[top_ids[j - 1]])) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = i;
    }
    for (int i = 0; i < k; i++)
        top_logprobs[i] = (float)((double)finite_or_ninf(logits[top_ids[i]]) - lse);
}

int32_t srp_sample_row(const float *logits, int n, const srp_sample_params *p, float *prob,
                       int32_t *order) {
    if (n < 1) return -1;
    int forced = p->force_token && p->forced_token >= 0 && p->forced_token < n;
    int32_t tok = forced ? p->forced_token : draw(logits, n, p, prob, order);
    if (p->logprob_out)
        srp_logprobs_row(logits, n, tok, p->top_n > 0 ? p->top_n : 0, p->logprob_out, p->top_ids,
                         p->top_logprobs);
    return tok;
}
