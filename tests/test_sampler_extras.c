/* The sampler's logits processors (logit bias, penalties), forced tokens and logprobs. */
#include <float.h>
#include <stdint.h>

#include "gpu/sample_twin.h"
#include "sampler.h"
#include "test.h"

static srp_sample_params greedy(void) {
    srp_sample_params p = { .temperature = 0.0f, .top_p = 1.0f, .seed = 7 };
    return p;
}

TEST(sampler_logit_bias_moves_greedy) {
    float logits[5] = { 0.0f, 3.0f, 1.0f, 2.5f, -1.0f };
    float scratch[5];
    int32_t order[5];
    srp_sample_params p = greedy();
    CHECK(srp_sample_row(logits, 5, &p, scratch, order) == 1);
    int32_t ids[2] = { 1, 4 };
    float bias[2] = { -100.0f, 10.0f };
    p.n_logit_bias = 2;
    p.logit_bias_ids = ids;
    p.logit_bias = bias;
    CHECK(srp_sample_row(logits, 5, &p, scratch, order) == 4);
    CHECK(logits[1] == 3.0f); /* the caller's row is untouched */
}

TEST(sampler_penalties) {
    float logits[4] = { 2.0f, 1.9f, -0.5f, -0.4f };
    float scratch[4];
    int32_t order[4];
    int32_t counts[4] = { 3, 0, 0, 0 };
    srp_sample_params p = greedy();
    p.output_counts = counts;
    p.presence_penalty = 0.05f; /* 1.95 > 1.9 */
    CHECK(srp_sample_row(logits, 4, &p, scratch, order) == 0);
    p.presence_penalty = 0.2f; /* 1.8 < 1.9 */
    CHECK(srp_sample_row(logits, 4, &p, scratch, order) == 1);
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.1f; /* 2.0 - 0.3 = 1.7 < 1.9 */
    CHECK(srp_sample_row(logits, 4, &p, scratch, order) == 1);
    p.frequency_penalty = 0.01f; /* 1.97 > 1.9 */
    CHECK(srp_sample_row(logits, 4, &p, scratch, order) == 0);
    /* repetition: positive logits divided, negative multiplied */
    srp_sample_params q = greedy();
    uint8_t mask[4] = { 1, 0, 0, 0 };
    q.prompt_mask = mask;
    q.repetition_penalty = 1.1f; /* 2.0 / 1.1 = 1.82 < 1.9 */
    CHECK(srp_sample_row(logits, 4, &q, scratch, order) == 1);
    float neg[4] = { -3.0f, -1.0f, -1.05f, -5.0f };
    uint8_t mask2[4] = { 0, 1, 0, 0 };
    q.prompt_mask = mask2; /* -1.0 * 1.1 = -1.1 < -1.05 */
    CHECK(srp_sample_row(neg, 4, &q, scratch, order) == 2);
    q.repetition_penalty = 1.0f; /* off */
    CHECK(srp_sample_row(neg, 4, &q, scratch, order) == 1);
}

TEST(sampler_logprobs_and_forced) {
    float logits[6] = { 1.0f, 4.0f, 2.0f, 4.0f, -2.0f, 0.5f };
    float scratch[6];
    int32_t order[6];
    double sum = 0.0;
    for (int i = 0; i < 6; i++) sum += exp((double)logits[i]);
    float lp = 0.0f, top_lp[3];
    int32_t top[3];
    srp_sample_params p = greedy();
    p.logprob_out = &lp;
    p.top_n = 3;
    p.top_ids = top;
    p.top_logprobs = top_lp;
    int32_t t = srp_sample_row(logits, 6, &p, scratch, order);
    CHECK(t == 1);
    CHECKF(fabs(lp - (4.0 - log(sum))) < 1e-5, "logprob %f", lp);
    CHECK(top[0] == 1 && top[1] == 3 && top[2] == 2); /* equal logits: lower id first */
    CHECKF(fabs(top_lp[2] - (2.0 - log(sum))) < 1e-5, "top logprob %f", top_lp[2]);
    p.force_token = 1;
    p.forced_token = 4;
    CHECK(srp_sample_row(logits, 6, &p, scratch, order) == 4);
    CHECKF(fabs(lp - (-2.0 - log(sum))) < 1e-5, "forced logprob %f", lp);
    /* logprobs are of the raw row even when a bias changes the pick */
    int32_t bid = 4;
    float bv = 50.0f;
    p.force_token = 0;
    p.n_logit_bias = 1;
    p.logit_bias_ids = &bid;
    p.logit_bias = &bv;
    CHECK(srp_sample_row(logits, 6, &p, scratch, order) == 4);
    CHECKF(fabs(lp - (-2.0 - log(sum))) < 1e-5, "biased logprob %f", lp);
}

TEST(sampler_seeded_draws_repeat) {
    float logits[8] = { 0.1f, 0.2f, 0.3f, 0.1f, 0.0f, 0.25f, 0.15f, 0.05f };
    float scratch[8];
    int32_t order[8];
    srp_sample_params p = { .temperature = 1.0f, .top_p = 1.0f, .seed = 1234 };
    int same = 1, differs = 0;
    for (uint64_t step = 0; step < 64; step++) {
        p.step = step;
        int32_t a = srp_sample_row(logits, 8, &p, scratch, order);
        int32_t b = srp_sample_row(logits, 8, &p, scratch, order);
        same &= a == b;
        p.seed = 99;
        differs |= srp_sample_row(logits, 8, &p, scratch, order) != a;
        p.seed = 1234;
    }
    CHECK(same);
    CHECK(differs);
}

/* ---- the sampler is total (issue 11): every row and every parameter value give a token in
 * [0, n); non-finite logits count as -inf; the argmax survives every filter ---- */

static srp_sample_params sampled(float temperature, int top_k, float top_p, float min_p,
                                 uint64_t seed) {
    srp_sample_params p = {
        .temperature = temperature, .top_k = top_k, .top_p = top_p, .min_p = min_p, .seed = seed
    };
    return p;
}

static int32_t row_token(const float *l, int n, const srp_sample_params *p) {
    float *scratch = malloc((size_t)n * sizeof *scratch);
    int32_t *order = malloc((size_t)n * sizeof *order);
    int32_t t = srp_sample_row(l, n, p, scratch, order);
    free(scratch);
    free(order);
    return t;
}

/* The reported crash: {"repetition_penalty": 1e-40, "min_p": 0.5} divided the positive logits
 * of the prompt's tokens past the float range, the probabilities became NaN, min-p kept nothing
 * and the draw read order[-1]. Such a logit now saturates at FLT_MAX: the seen tokens with
 * positive logits are the most likely, and one of them is drawn. */
TEST(sampler_tiny_repetition_penalty_with_min_p) {
    float logits[8] = { 1.5f, -2.0f, 3.0f, 0.25f, 2.0f, -0.5f, 4.0f, 0.0f };
    uint8_t mask[8] = { 1, 1, 0, 1, 0, 1, 0, 0 };
    int32_t counts[8] = { 0, 0, 0, 0, 2, 0, 0, 0 };
    for (uint64_t step = 0; step < 64; step++) {
        srp_sample_params p = sampled(1.0f, 0, 1.0f, 0.5f, 11);
        p.step = step;
        p.repetition_penalty = 1e-40f;
        p.prompt_mask = mask;
        p.output_counts = counts;
        int32_t t = row_token(logits, 8, &p);
        CHECKF(t == 0 || t == 3 || t == 4, "step %d: token %d", (int)step, t);
        p.temperature = 0.0f; /* greedy: the lowest id among the saturated */
        CHECK(row_token(logits, 8, &p) == 0);
        p.temperature = 0.7f, p.top_k = 2, p.top_p = 0.3f;
        t = row_token(logits, 8, &p);
        CHECKF(t == 0 || t == 3, "top-k 2: token %d", t);
    }
}

TEST(sampler_rows_without_finite_logits_give_token_0) {
    const float nan = NAN, inf = INFINITY;
    float rows[3][5] = { { nan, nan, nan, nan, nan },
                         { -inf, -inf, -inf, -inf, -inf },
                         { inf, nan, -inf, inf, nan } };
    srp_sample_params ps[5] = { sampled(0.0f, 0, 1.0f, 0.0f, 1), sampled(1.0f, 0, 1.0f, 0.0f, 2),
                                sampled(0.8f, 3, 0.9f, 0.1f, 3), sampled(2.0f, 0, 1.0f, 1.0f, 4),
                                sampled(1.0f, 0, 0.5f, 0.0f, 5) };
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 5; k++) {
            float lp = 0.0f, top_lp[3];
            int32_t top[3] = { -1, -1, -1 };
            srp_sample_params p = ps[k];
            p.logprob_out = &lp;
            p.top_n = 3;
            p.top_ids = top;
            p.top_logprobs = top_lp;
            CHECKF(row_token(rows[r], 5, &p) == 0, "row %d params %d", r, k);
            CHECKF(lp == -INFINITY, "row %d: logprob %f", r, lp);
            for (int i = 0; i < 3; i++) CHECK(top[i] == i && top_lp[i] == -INFINITY);
        }
    CHECK(srp_argmax(rows[2], 5) == 0);
}

/* NaN and +-inf logits are never drawn while a finite one exists, greedy or sampled, and the
 * logprobs treat them as -inf (no NaN reaches the output). */
TEST(sampler_nonfinite_logits_are_minus_infinity) {
    float l[6] = { NAN, 1.0f, INFINITY, 0.5f, -INFINITY, 1.0f };
    CHECK(srp_argmax(l, 6) == 1);
    int seen[6] = { 0 };
    for (uint64_t s = 0; s < 200; s++) {
        srp_sample_params p = sampled(1.5f, 0, 1.0f, 0.0f, s);
        int32_t t = row_token(l, 6, &p);
        REQUIRE(t >= 0 && t < 6);
        seen[t]++;
    }
    CHECK(!seen[0] && !seen[2] && !seen[4]);
    CHECK(seen[1] && seen[3] && seen[5]);
    float lp, top_lp[6];
    int32_t top[6];
    srp_sample_params p = sampled(0.0f, 0, 1.0f, 0.0f, 0);
    p.logprob_out = &lp, p.top_n = 6, p.top_ids = top, p.top_logprobs = top_lp;
    CHECK(row_token(l, 6, &p) == 1);
    const double lse = 1.0 + log(2.0 + exp(-0.5));
    CHECKF(fabs(lp - (1.0 - lse)) < 1e-6, "logprob %f", lp);
    CHECK(top[0] == 1 && top[1] == 5 && top[2] == 3);
    CHECK(top[3] == 0 && top[4] == 2 && top[5] == 4); /* the -inf ones, by id */
    for (int i = 3; i < 6; i++) CHECK(top_lp[i] == -INFINITY);
    /* processors leave a non-finite logit at -inf: a +100 bias does not revive it */
    int32_t bid[2] = { 0, 2 };
    float bv[2] = { 100.0f, 100.0f };
    p.n_logit_bias = 2, p.logit_bias_ids = bid, p.logit_bias = bv;
    CHECK(row_token(l, 6, &p) == 1);
}

/* Logits at the ends of the float range: l - max overflows to -inf, which is probability 0. */
TEST(sampler_extreme_finite_logits) {
    float l[4] = { -FLT_MAX, FLT_MAX, 0.0f, FLT_MAX };
    for (uint64_t s = 0; s < 50; s++) {
        srp_sample_params p = sampled(2.0f, 0, 1.0f, 0.0f, s);
        int32_t t = row_token(l, 4, &p);
        CHECKF(t == 1 || t == 3, "token %d", t);
        p.min_p = 1.0f;
        t = row_token(l, 4, &p);
        CHECKF(t == 1 || t == 3, "min-p 1: token %d", t);
    }
    /* an overflowing penalty saturates instead of making the logit infinite */
    int32_t counts[4] = { 5, 0, 0, 0 };
    srp_sample_params p = sampled(0.0f, 0, 1.0f, 0.0f, 0);
    p.output_counts = counts;
    p.frequency_penalty = -FLT_MAX; /* -FLT_MAX - 5 * -FLT_MAX: +inf before saturation */
    CHECK(row_token(l, 4, &p) == 0);
    p.temperature = 1.0f; /* FLT_MAX, not inf - inf = NaN: token 0 has all the mass */
    float small[4] = { -1.0f, 2.0f, 0.0f, 1.0f };
    for (uint64_t s = 0; s < 20; s++) {
        p.seed = s;
        CHECK(row_token(small, 4, &p) == 0);
    }
    p.temperature = 0.0f;
    p.frequency_penalty = FLT_MAX; /* l[0] -> -inf: never drawn */
    p.temperature = 1.0f;
    for (uint64_t s = 0; s < 20; s++) {
        p.seed = s;
        CHECK(row_token(l, 4, &p) != 0);
    }
}

/* Parameter values outside the API's ranges are read through srp_sample_normalize: each one
 * gives the documented meaning, and a token in range. */
TEST(sampler_parameters_out_of_range) {
    float l[6] = { 0.3f, 2.0f, 1.9f, -1.0f, 2.0f, 0.0f };
    const int32_t argmax = 1;
    struct {
        srp_sample_params p;
        int greedy; /* the result must be the argmax */
    } cases[] = {
        { sampled(NAN, 0, 1.0f, 0.0f, 1), 1 },
        { sampled(-1.0f, 0, 1.0f, 0.0f, 1), 1 },
        { sampled(-INFINITY, 0, 1.0f, 0.0f, 1), 1 },
        { sampled(1.0f, 1, 1.0f, 0.0f, 1), 1 },
        { sampled(1.0f, 0, 0.0f, 0.0f, 1), 1 },
        { sampled(1.0f, 0, -3.0f, 0.0f, 1), 1 },
        { sampled(1.0f, 0, -INFINITY, 0.0f, 1), 1 },
        { sampled(1e-30f, 0, 1.0f, 0.0f, 1), 0 }, /* ties between 1 and 4 */
        { sampled(1e-45f, 0, 1.0f, 0.0f, 1), 0 },
        { sampled(FLT_MAX, 0, 1.0f, 0.0f, 1), 0 },
        { sampled(INFINITY, 0, 1.0f, 0.0f, 1), 0 },
        { sampled(1.0f, -7, 1.0f, 0.0f, 1), 0 },
        { sampled(1.0f, 6, 1.0f, 0.0f, 1), 0 },
        { sampled(1.0f, 2147483647, 1.0f, 0.0f, 1), 0 },
        { sampled(1.0f, 0, NAN, 0.0f, 1), 0 },
        { sampled(1.0f, 0, 1e-45f, 0.0f, 1), 0 },
        { sampled(1.0f, 0, INFINITY, 0.0f, 1), 0 },
        { sampled(1.0f, 0, 1.0f, NAN, 1), 0 },
        { sampled(1.0f, 0, 1.0f, -1.0f, 1), 0 },
        { sampled(1.0f, 0, 1.0f, 1.5f, 1), 0 },
        { sampled(1.0f, 0, 1.0f, INFINITY, 1), 0 },
        { sampled(1.0f, 3, 0.5f, 1.0f, 1), 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (uint64_t s = 0; s < 40; s++) {
            srp_sample_params p = cases[c].p;
            p.seed = s;
            int32_t t = row_token(l, 6, &p);
            CHECKF(t >= 0 && t < 6, "case %d: token %d", (int)c, t);
            if (cases[c].greedy) CHECKF(t == argmax, "case %d: token %d", (int)c, t);
        }
    /* min_p above 1 and tiny temperatures keep only the tied maxima */
    for (uint64_t s = 0; s < 40; s++) {
        srp_sample_params p = sampled(1.0f, 0, 1.0f, 1.5f, s);
        int32_t t = row_token(l, 6, &p);
        CHECK(t == 1 || t == 4);
        p = sampled(1e-30f, 0, 1.0f, 0.0f, s);
        t = row_token(l, 6, &p);
        CHECK(t == 1 || t == 4);
    }
    /* the normalized form */
    srp_sample_params q = sampled(NAN, 9, 0.5f, 0.5f, 0);
    srp_sample_params n = srp_sample_normalize(&q, 6);
    CHECK(n.temperature == 0.0f && n.top_k == 0 && n.top_p == 1.0f && n.min_p == 0.0f);
    q = sampled(INFINITY, 6, NAN, 3.0f, 0);
    n = srp_sample_normalize(&q, 6);
    CHECK(n.temperature == FLT_MAX && n.top_k == 0 && n.top_p == 1.0f && n.min_p == 1.0f);
}

/* Processor values that are not finite are ignored; penalties that would push a logit past
 * the float range saturate. */
TEST(sampler_nonfinite_processor_values_ignored) {
    float l[4] = { 1.0f, 3.0f, 2.0f, 0.0f };
    int32_t counts[4] = { 0, 1, 0, 0 };
    uint8_t mask[4] = { 0, 1, 0, 0 };
    int32_t bid[2] = { 0, 2 };
    float bv[2] = { NAN, INFINITY };
    srp_sample_params p = sampled(0.0f, 0, 1.0f, 0.0f, 0);
    p.n_logit_bias = 2, p.logit_bias_ids = bid, p.logit_bias = bv;
    p.output_counts = counts, p.prompt_mask = mask;
    const float bad[] = { NAN, INFINITY, -INFINITY };
    for (int i = 0; i < 3; i++) {
        p.presence_penalty = bad[i];
        p.frequency_penalty = bad[(i + 1) % 3];
        p.repetition_penalty = bad[(i + 2) % 3];
        CHECKF(row_token(l, 4, &p) == 1, "case %d", i);
    }
    /* an out-of-range bias id is skipped */
    int32_t far[2] = { -5, 4 };
    float big[2] = { 100.0f, 100.0f };
    p = sampled(0.0f, 0, 1.0f, 0.0f, 0);
    p.n_logit_bias = 2, p.logit_bias_ids = far, p.logit_bias = big;
    CHECK(row_token(l, 4, &p) == 1);
    /* -inf bans a token (min_tokens uses it on the stop ids) */
    int32_t ban[1] = { 1 };
    float minus_inf[1] = { -INFINITY };
    p = sampled(0.0f, 0, 1.0f, 0.0f, 0);
    p.n_logit_bias = 1, p.logit_bias_ids = ban, p.logit_bias = minus_inf;
    CHECK(row_token(l, 4, &p) == 2);
}

TEST(sampler_forced_token_outside_the_row_is_drawn) {
    float l[4] = { 1.0f, 3.0f, 2.0f, 0.0f };
    srp_sample_params p = sampled(0.0f, 0, 1.0f, 0.0f, 0);
    p.force_token = 1;
    const int32_t outside[] = { -1, 4, 2147483647, -2147483647 - 1 };
    for (int i = 0; i < 4; i++) {
        p.forced_token = outside[i];
        CHECK(row_token(l, 4, &p) == 1);
    }
    p.forced_token = 3;
    CHECK(row_token(l, 4, &p) == 3);
    float lp = 0.0f;
    p.logprob_out = &lp;
    p.forced_token = 9;
    CHECK(row_token(l, 4, &p) == 1 && lp > -1.0f && lp < 0.0f);
}

TEST(sampler_empty_row) {
    srp_sample_params p = sampled(1.0f, 0, 1.0f, 0.0f, 0);
    float lp = 5.0f;
    p.logprob_out = &lp;
    CHECK(srp_sample_row(NULL, 0, &p, NULL, NULL) == -1);
    CHECK(lp == 5.0f);
}

/* The CUDA sampler's host twin (tests/gpu/sample_twin.c) draws what the CPU sampler draws, on
 * random rows with ties and non-finite logits, under ordinary and out-of-range parameters. */
TEST(sampler_gpu_twin_matches_cpu) {
    uint64_t x = 0x2545f4914f6cdd1dull;
    const float temps[] = { 0.0f, 0.7f, 1.0f, 1.6f, 1e-30f, INFINITY, NAN };
    const int topk[] = { 0, 1, 3, 40, -4, 100000 };
    const float topp[] = { 1.0f, 0.9f, 0.5f, 1e-30f, 0.0f, NAN };
    const float minp[] = { 0.0f, 0.05f, 0.5f, 1.0f, 2.0f, NAN };
    const float specials[] = { NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 0.0f };
    int same = 0, rows = 0;
    for (int r = 0; r < 3000; r++) {
        const int n = 1 + (int)(x % 300);
        float *l = malloc((size_t)n * sizeof *l);
        for (int i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            const int kind = (int)(x % 64);
            l[i] = kind < 2 ? specials[(x >> 8) % 6]
                            : (float)((int)((x >> 20) % 64) - 32) / (r % 3 ? 4.0f : 0.5f);
        }
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        srp_sample_params p = sampled(temps[x % 7], topk[(x >> 8) % 6], topp[(x >> 16) % 6],
                                      minp[(x >> 24) % 6], x >> 32);
        p.step = (uint64_t)r;
        const int32_t cpu = row_token(l, n, &p), twin = sample_twin_row(l, n, &p);
        CHECKF(cpu == twin, "row %d (n %d, T %g k %d p %g min-p %g): cpu %d twin %d", r, n,
               p.temperature, p.top_k, p.top_p, p.min_p, cpu, twin);
        CHECK(cpu >= 0 && cpu < n);
        same += cpu == twin;
        rows++;
        free(l);
    }
    fprintf(stderr, "  twin: %d of %d rows identical\n", same, rows);
}

/* Constrained decoding's mask (srp_sample_params.allowed): greedy takes the best allowed token,
 * a draw never lands on a banned one, and the logprobs stay those of the raw row. */
TEST(sampler_allowed_mask) {
    enum { N = 70 };
    float logits[N], scratch[N], lp = 0.0f, top_lp[1];
    int32_t order[N], top_id[1];
    for (int i = 0; i < N; i++) logits[i] = (float)((i * 37) % N) / 7.0f;
    uint32_t allowed[3] = { 0 };
    const int ok[] = { 3, 40, 69 };
    for (int k = 0; k < 3; k++) allowed[ok[k] >> 5] |= 1u << (ok[k] & 31);
    srp_sample_params p = greedy();
    const int32_t free_best = srp_sample_row(logits, N, &p, scratch, order);
    p.allowed = allowed;
    int32_t best = ok[0];
    for (int k = 1; k < 3; k++)
        if (logits[ok[k]] > logits[best]) best = ok[k];
    CHECK(free_best != best);
    CHECK(srp_sample_row(logits, N, &p, scratch, order) == best);
    p.logprob_out = &lp;
    p.top_n = 1;
    p.top_ids = top_id;
    p.top_logprobs = top_lp;
    srp_sample_row(logits, N, &p, scratch, order);
    CHECK(top_id[0] == free_best); /* raw row: the banned argmax is still the most likely */
    srp_sample_params s = sampled(1.5f, 0, 1.0f, 0.0f, 99);
    s.allowed = allowed;
    for (uint64_t step = 0; step < 300; step++) {
        s.step = step;
        const int32_t t = srp_sample_row(logits, N, &s, scratch, order);
        CHECKF(t == 3 || t == 40 || t == 69, "step %llu drew banned token %d",
               (unsigned long long)step, t);
    }
}
