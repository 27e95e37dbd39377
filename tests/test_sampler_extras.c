/* The sampler's logits processors (logit bias, penalties), forced tokens and logprobs. */
#include <stdint.h>

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
