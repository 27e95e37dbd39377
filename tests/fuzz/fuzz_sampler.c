/* libFuzzer target: the row sampler (srp_sample_row with every extra: logit bias, repetition /
 * presence / frequency penalties with output counts and a prompt mask, forced tokens, logprobs
 * with top_n) and the CUDA sampler's host twin (tests/gpu/sample_twin.c), on rows of arbitrary
 * floats (NaN, +-inf, denormals, the ends of the range, ties) under arbitrary parameters. Aborts
 * unless every draw is a token in [0, n) (-1 for n = 0), the same when drawn again, never a
 * non-finite logit while a finite one exists (unless forced), the argmax for greedy rows; unless
 * logprobs hold no NaN and the top ids are distinct, in range and descending; and unless the
 * twin draws what the CPU sampler draws. ASan catches reads outside the row and the scratch,
 * which are allocated to their exact sizes. Build with -DSERPENT_FUZZ=ON (clang); run:
 *   fuzz_sampler -max_len=8192 tests/fuzz/seeds_sampler */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gpu/sample_twin.h"
#include "sampler.h"

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t byte(reader *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static uint32_t u32(reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)byte(r) << (8 * i);
    return v;
}

static uint64_t u64(reader *r) {
    return (uint64_t)u32(r) | (uint64_t)u32(r) << 32;
}

static const float specials[] = {
    0.0f,      -0.0f,   1.0f,     -1.0f,   0.5f,        2.0f,       NAN,    INFINITY,
    -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, 1e-40f,      -1e-40f,    1e-45f, 1e30f,
    -1e30f,    100.0f,  -100.0f,  1e-5f,   0.99999994f, 1.0000001f, 10.0f,  0.01f,
};
#define N_SPECIALS (int)(sizeof specials / sizeof specials[0])

/* Any bit pattern, a special value or a small multiple of 1/8 (many ties). */
static float any_float(reader *r) {
    const uint8_t s = byte(r);
    if (s < 48) {
        const uint32_t bits = u32(r);
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    if (s < 128) return specials[s % N_SPECIALS];
    return (float)(int8_t)byte(r) / 8.0f;
}

/* Any int32, or one near 0 or near n. */
static int32_t any_int(reader *r, int n) {
    const uint8_t s = byte(r);
    if (s < 32) return (int32_t)u32(r);
    if (s < 64) {
        static const int32_t edge[] = { INT32_MIN, INT32_MAX, 0, 1, -1, 2 };
        return edge[s % 6];
    }
    if (s < 160) return n - 2 + (int32_t)(byte(r) % 5); /* n-2 .. n+2 */
    return (int32_t)(byte(r) % 40) - 4;
}

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "fuzz_sampler: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader rd = { data, size };
    const int n = (int)((byte(&rd) | (unsigned)byte(&rd) << 8) % 1100);
    srp_sample_params p;
    memset(&p, 0, sizeof p);
    p.temperature = any_float(&rd);
    p.top_k = any_int(&rd, n);
    p.top_p = any_float(&rd);
    p.min_p = any_float(&rd);
    p.seed = u64(&rd);
    p.step = u64(&rd);
    const srp_sample_params basic = p; /* no extras: the GPU sampler's part */
    const uint8_t flags = byte(&rd);
    p.presence_penalty = flags & 1 ? any_float(&rd) : 0.0f;
    p.frequency_penalty = flags & 2 ? any_float(&rd) : 0.0f;
    p.repetition_penalty = flags & 4 ? any_float(&rd) : 0.0f;
    const int n_bias = flags & 8 ? byte(&rd) % 17 : 0;
    int32_t *bias_ids = malloc(sizeof *bias_ids * (size_t)(n_bias ? n_bias : 1));
    float *bias = malloc(sizeof *bias * (size_t)(n_bias ? n_bias : 1));
    for (int i = 0; i < n_bias; i++) {
        bias_ids[i] = any_int(&rd, n);
        bias[i] = any_float(&rd);
    }
    p.n_logit_bias = n_bias;
    p.logit_bias_ids = bias_ids;
    p.logit_bias = bias;
    p.force_token = flags & 16 ? 1 : 0;
    p.forced_token = p.force_token ? any_int(&rd, n) : 0;
    const int want_lp = (flags & 32) != 0;
    const int top_n = want_lp ? (int)(byte(&rd) % 25) - 2 : 0;
    const size_t cells = (size_t)(n ? n : 1);
    int32_t *counts = NULL;
    uint8_t *mask = NULL;
    float *logits = malloc(sizeof *logits * cells);
    if (flags & 64) counts = malloc(sizeof *counts * cells);
    if (flags & 128) mask = malloc(cells);
    for (int i = 0; i < n; i++) {
        logits[i] = any_float(&rd);
        if (counts) {
            const uint8_t c = byte(&rd);
            counts[i] = c < 200 ? c % 4 : c < 250 ? (int32_t)u32(&rd) : INT32_MAX;
        }
        if (mask) mask[i] = byte(&rd) & 1;
    }
    p.output_counts = counts;
    p.prompt_mask = mask;
    float lp = NAN;
    const int k = top_n > 0 ? (top_n < n ? top_n : n) : 0;
    int32_t *top_ids = malloc(sizeof *top_ids * (size_t)(k ? k : 1));
    float *top_lps = malloc(sizeof *top_lps * (size_t)(k ? k : 1));
    if (want_lp) {
        p.logprob_out = &lp;
        p.top_n = top_n;
        p.top_ids = top_ids;
        p.top_logprobs = top_lps;
    }
    float *scratch = malloc(sizeof *scratch * cells);
    int32_t *order = malloc(sizeof *order * cells);

    const int32_t t =
        srp_sample_row(n ? logits : NULL, n, &p, n ? scratch : NULL, n ? order : NULL);
    if (n == 0) {
        check(t == -1, "empty row: not -1");
    } else {
        check(t >= 0 && t < n, "token outside [0, n)");
        check(srp_sample_row(logits, n, &p, scratch, order) == t, "a second draw differs");
        int any_finite = 0;
        for (int i = 0; i < n; i++) any_finite |= isfinite(logits[i]);
        const int forced = p.force_token && p.forced_token >= 0 && p.forced_token < n;
        if (forced)
            check(t == p.forced_token, "forced token not returned");
        else
            check(isfinite(logits[t]) || t == 0, "a non-finite logit drawn");
        if (!any_finite && !forced) check(t == 0, "no finite logit: not token 0");
        if (want_lp) {
            check(!isnan(lp) && lp <= 1e-5f, "logprob NaN or positive");
            for (int i = 0; i < k; i++) {
                check(top_ids[i] >= 0 && top_ids[i] < n, "top id outside [0, n)");
                check(!isnan(top_lps[i]) && top_lps[i] <= 1e-5f, "top logprob NaN or positive");
                if (i) check(top_lps[i] <= top_lps[i - 1], "top logprobs not descending");
                for (int j = 0; j < i; j++) check(top_ids[i] != top_ids[j], "top id repeated");
            }
        }
        /* the GPU sampler's part: its twin against the CPU sampler without extras */
        const int32_t cpu = srp_sample_row(logits, n, &basic, scratch, order);
        check(cpu >= 0 && cpu < n, "basic token outside [0, n)");
        check(sample_twin_row(logits, n, &basic) == cpu, "GPU twin differs from the CPU sampler");
        const srp_sample_params q = srp_sample_normalize(&basic, n);
        if (q.temperature == 0.0f) check(cpu == srp_argmax(logits, n), "greedy is not the argmax");
        check(q.min_p >= 0.0f && q.min_p <= 1.0f && q.top_p > 0.0f && q.top_p <= 1.0f &&
                  q.top_k >= 0 && q.top_k < n && !(q.temperature < 0.0f) && !isnan(q.temperature) &&
                  q.temperature <= FLT_MAX,
              "normalized parameters out of range");
    }
    free(bias_ids), free(bias), free(counts), free(mask), free(logits);
    free(top_ids), free(top_lps), free(scratch), free(order);
    return 0;
}
