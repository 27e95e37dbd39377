/* The scheduler on the CPU backend with a fixture model: continuous batching gives the same
 * greedy tokens as transformers, cancellation frees slots and blocks, the queue bound holds,
 * seeded samples do not depend on the batch, and prompt logprobs match a scoring pass. */
#include <cjson/cJSON.h>
#include <float.h>
#include <stdatomic.h>
#include <time.h>

#include "json_file.h"
#include "sampler.h"
#include "scheduler.h"
#include "test.h"

#define FIXTURE "fixtures/nemotron_h_pattern"

static srp_engine *open_engine(int max_seqs, int max_batch_tokens) {
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = "cpu";
    o.n_threads = 1;
    o.max_seqs = max_seqs;
    o.max_batch_tokens = max_batch_tokens;
    o.max_seq_len = 256;
    srp_engine *eng = NULL;
    srp_err e = { 0 };
    if (srp_engine_open(srp_test_path(FIXTURE), &o, &eng, &e))
        fprintf(stderr, "engine: %s\n", e.msg);
    return eng;
}

static void sleep_ms(int ms) {
    struct timespec t = { 0, ms * 1000000L };
    nanosleep(&t, NULL);
}

/* Takes events until the request finishes; generated tokens into ids. */
static srp_finish_reason collect(srp_request *r, int32_t *ids, int cap, int *n, float *lps) {
    srp_token_event ev[16];
    srp_request_status st;
    *n = 0;
    for (;;) {
        int k;
        srp_request_take(r, ev, 16, &k, &st);
        for (int i = 0; i < k; i++) {
            if (ev[i].is_prompt) {
                if (lps) lps[ev[i].token] = ev[i].logprob; /* unused for generated */
                continue;
            }
            if (*n < cap) ids[(*n)++] = ev[i].token;
        }
        if (st.finish != SRP_FINISH_NONE) return st.finish;
        if (k == 0) sleep_ms(1);
    }
}

typedef struct prompt {
    int32_t ids[128];
    int n;
    int32_t greedy[64];
    int n_greedy;
} prompt;

static int load_reference(prompt *p, int max) {
    srp_err e = { 0 };
    cJSON *root = srp_json_load_file(srp_test_path(FIXTURE "/reference.json"), &e);
    if (!root) return 0;
    const cJSON *ps = cJSON_GetObjectItem(root, "prompts"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, ps) {
        if (n == max) break;
        const cJSON *v;
        p[n].n = p[n].n_greedy = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(it, "ids")) p[n].ids[p[n].n++] = v->valueint;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(it, "greedy")) p[n].greedy[p[n].n_greedy++] =
            v->valueint;
        n++;
    }
    cJSON_Delete(root);
    return n;
}

static srp_request_params greedy_params(const prompt *p, int max_tokens) {
    srp_request_params rp;
    memset(&rp, 0, sizeof rp);
    rp.prompt = p->ids;
    rp.n_prompt = p->n;
    rp.max_tokens = max_tokens;
    rp.sample = (srp_sample_params){ .top_p = 1.0f };
    rp.logprobs = -1;
    rp.prompt_logprobs = -1;
    return rp;
}

TEST(sched_batched_greedy_matches_reference) {
    prompt ps[4];
    int np = load_reference(ps, 4);
    REQUIRE(np == 4);
    /* a 16-token budget forces the 37- and 77-token prompts through chunked prefill while the
     * others decode */
    srp_engine *eng = open_engine(3, 16);
    REQUIRE(eng);
    srp_sched *s = NULL;
    srp_err e = { 0 };
    srp_sched_opts so = { .max_queue = 8 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request *r[8];
    for (int i = 0; i < 8; i++) {
        srp_request_params rp = greedy_params(&ps[i % 4], 24);
        CHECKF(srp_sched_submit(s, &rp, &r[i], &e) == 0, "%s", e.msg);
    }
    for (int i = 0; i < 8; i++) {
        int32_t ids[64];
        int n;
        CHECK(collect(r[i], ids, 64, &n, NULL) == SRP_FINISH_LENGTH);
        CHECK(n == 24);
        CHECKF(n == 24 && !memcmp(ids, ps[i % 4].greedy, 24 * sizeof *ids),
               "request %d differs from transformers' greedy tokens", i);
        srp_request_release(r[i]);
    }
    srp_sched_stats st;
    srp_sched_get_stats(s, &st);
    CHECK(st.finished[SRP_FINISH_LENGTH] == 8);
    CHECK(st.generation_tokens == 8 * 24);
    srp_sched_stop(s);
    CHECK(srp_engine_free_slots(eng) == srp_engine_total_slots(eng));
    CHECK(srp_engine_free_blocks(eng) == srp_engine_total_blocks(eng));
    srp_engine_close(eng);
}

TEST(sched_stop_token_and_cancel_free_resources) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(2, 64);
    REQUIRE(eng);
    srp_sched *s = NULL;
    srp_err e = { 0 };
    srp_sched_opts so = { .max_queue = 4 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    /* the third greedy token as a stop id ends the request there */
    srp_request_params rp = greedy_params(&ps[1], 24);
    int32_t stop = ps[1].greedy[2];
    rp.stop_ids = &stop;
    rp.n_stop_ids = 1;
    srp_request *a;
    REQUIRE(srp_sched_submit(s, &rp, &a, &e) == 0);
    int32_t ids[64];
    int n;
    CHECK(collect(a, ids, 64, &n, NULL) == SRP_FINISH_STOP);
    int first = 0;
    while (ps[1].greedy[first] != stop) first++;
    CHECKF(n == first + 1, "stopped after %d tokens", n);
    srp_request_release(a);
    /* a long request cancelled mid-way */
    srp_request_params lp = greedy_params(&ps[3], 150);
    srp_request *b;
    REQUIRE(srp_sched_submit(s, &lp, &b, &e) == 0);
    srp_token_event ev[4];
    srp_request_status st;
    int k = 0, got = 0;
    while (got < 3) {
        srp_request_take(b, ev, 4, &k, &st);
        got += k;
        if (!k) sleep_ms(1);
    }
    srp_request_cancel(b);
    CHECK(collect(b, ids, 64, &n, NULL) == SRP_FINISH_CANCELLED);
    srp_request_release(b);
    srp_sched_stats ss;
    srp_sched_get_stats(s, &ss);
    CHECK(ss.slots_free == ss.slots_total);
    CHECK(ss.blocks_free == ss.blocks_total);
    CHECK(ss.running == 0 && ss.waiting == 0);
    srp_sched_stop(s);
    srp_engine_close(eng);
}

TEST(sched_queue_bound_and_release_without_waiting) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(1, 64);
    REQUIRE(eng);
    srp_sched *s = NULL;
    srp_err e = { 0 };
    srp_sched_opts so = { .max_queue = 2 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request *r[8];
    int accepted = 0, full = 0;
    for (int i = 0; i < 8; i++) {
        srp_request_params rp = greedy_params(&ps[3], 150);
        int rc = srp_sched_submit(s, &rp, &r[accepted], &e);
        if (rc == 0)
            accepted++;
        else if (rc == SRP_EFULL)
            full++;
    }
    /* one slot plus two queue places */
    CHECKF(accepted == 3 && full == 5, "accepted %d, refused %d", accepted, full);
    for (int i = 0; i < accepted; i++) srp_request_release(r[i]); /* drops them unread */
    srp_sched_stats st;
    for (int tries = 0; tries < 5000; tries++) {
        srp_sched_get_stats(s, &st);
        if (st.running == 0 && st.waiting == 0) break;
        sleep_ms(2);
    }
    CHECK(st.running == 0 && st.waiting == 0);
    CHECK(st.slots_free == st.slots_total && st.blocks_free == st.blocks_total);
    CHECK(st.rejected == 5);
    /* over the length limit: refused outright */
    srp_request_params big = greedy_params(&ps[3], 250);
    CHECK(srp_sched_submit(s, &big, &r[0], &e) == SRP_EINVAL);
    int32_t bad = 100000;
    srp_request_params oov = greedy_params(&ps[0], 4);
    oov.prompt = &bad;
    oov.n_prompt = 1;
    CHECK(srp_sched_submit(s, &oov, &r[0], &e) == SRP_EINVAL);
    srp_sched_stop(s);
    srp_engine_close(eng);
}

TEST(sched_seeded_sampling_independent_of_batch) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(4, 32);
    REQUIRE(eng);
    srp_sched *s = NULL;
    srp_err e = { 0 };
    srp_sched_opts so = { .max_queue = 8 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request_params rp = greedy_params(&ps[1], 20);
    rp.sample.temperature = 1.0f;
    rp.sample.seed = 42;
    srp_request *a;
    int32_t alone[32], batched[32];
    int na, nb;
    REQUIRE(srp_sched_submit(s, &rp, &a, &e) == 0);
    collect(a, alone, 32, &na, NULL);
    srp_request_release(a);
    srp_request *others[3], *b;
    for (int i = 0; i < 3; i++) {
        srp_request_params op = greedy_params(&ps[(i + 2) % 4], 30);
        op.sample.temperature = 0.8f;
        op.sample.seed = 7 + i;
        REQUIRE(srp_sched_submit(s, &op, &others[i], &e) == 0);
    }
    REQUIRE(srp_sched_submit(s, &rp, &b, &e) == 0);
    collect(b, batched, 32, &nb, NULL);
    CHECK(na == 20 && nb == 20);
    CHECK(!memcmp(alone, batched, 20 * sizeof *alone));
    srp_request_release(b);
    for (int i = 0; i < 3; i++) srp_request_release(others[i]);
    srp_sched_stop(s);
    srp_engine_close(eng);
}

static void prompt_logprobs_match_scoring(int backend_extras) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    const prompt *p = &ps[2]; /* 37 tokens: chunks of 16 */
    srp_engine *eng = open_engine(2, 16);
    REQUIRE(eng);
    /* expected: one scoring pass of the same engine */
    const int vocab = srp_engine_config(eng)->vocab_size;
    float *rows = malloc((size_t)p->n * vocab * sizeof *rows);
    srp_seq seq = { .slot = -1 };
    srp_err e = { 0 };
    REQUIRE(srp_seq_open(eng, &seq, &e) == 0);
    for (int i = 0; i < p->n; i += 16) {
        int k = p->n - i < 16 ? p->n - i : 16;
        srp_step_item it = { &seq, p->ids + i, k, SRP_LOGITS_ALL, 0 };
        srp_mat lg;
        REQUIRE(srp_engine_step(eng, &it, 1, &lg, &e) == 0);
        REQUIRE(srp_engine_logits_to_host(eng, lg, 0, k, rows + (size_t)i * vocab, &e) == 0);
    }
    srp_seq_close(eng, &seq);
    /* 0: as on a backend whose sample() lacks the extras; the engine redoes those rows on the
     * host */
    srp_engine_backend(eng)->sample_extras = backend_extras;
    srp_sched *s = NULL;
    srp_sched_opts so = { .max_queue = 2 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request_params rp = greedy_params(p, 3);
    rp.prompt_logprobs = 2;
    rp.logprobs = 1;
    srp_request *r;
    REQUIRE(srp_sched_submit(s, &rp, &r, &e) == 0);
    srp_token_event ev[64];
    srp_request_status st;
    int n = 0, k;
    do {
        srp_request_take(r, ev + n, 64 - n, &k, &st);
        n += k;
        if (!k) sleep_ms(1);
    } while (st.finish == SRP_FINISH_NONE);
    CHECKF(n == p->n - 1 + 3, "%d events", n);
    for (int i = 0; i < p->n - 1 && i < n; i++) {
        CHECK(ev[i].is_prompt && ev[i].token == p->ids[i + 1] && ev[i].n_top == 2);
        float want, top_lp[2];
        int32_t top[2];
        srp_logprobs_row(rows + (size_t)i * vocab, vocab, p->ids[i + 1], 2, &want, top, top_lp);
        CHECKF(fabsf(ev[i].logprob - want) < 1e-4f, "position %d: %f vs %f", i, ev[i].logprob,
               want);
        CHECK(ev[i].top_ids[0] == top[0] && ev[i].top_ids[1] == top[1]);
    }
    for (int i = p->n - 1; i < n; i++) {
        CHECK(!ev[i].is_prompt && ev[i].n_top == 1);
        CHECK(ev[i].token == p->greedy[i - (p->n - 1)]);
        CHECK(ev[i].top_ids[0] == ev[i].token &&
              fabsf(ev[i].top_logprobs[0] - ev[i].logprob) < 1e-6f);
    }
    srp_request_release(r);
    srp_sched_stop(s);
    free(rows);
    srp_engine_close(eng);
}

TEST(sched_prompt_logprobs_match_scoring) {
    prompt_logprobs_match_scoring(1);
}

TEST(sched_logprobs_on_a_backend_without_extras) {
    prompt_logprobs_match_scoring(0);
}

/* Defence in depth for issue 11: parameters no API accepts (the reported repetition_penalty
 * 1e-40 with min_p 0.5, NaN and infinite values, ranges past their ends), submitted straight to
 * the scheduler, still give tokens in [0, vocab) in every request of a shared batch, with finite
 * or -inf logprobs, and every request finishes normally. */
TEST(sched_extreme_sampling_params_give_valid_tokens) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(8, 64);
    REQUIRE(eng);
    const int vocab = srp_engine_config(eng)->vocab_size;
    srp_sched *s = NULL;
    srp_err e = { 0 };
    srp_sched_opts so = { .max_queue = 16 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    int32_t bias_ids[3] = { 1, 2, 3 };
    float bias[3] = { NAN, INFINITY, -INFINITY };
    srp_sample_params sp[8] = {
        { .temperature = 1.0f, .top_p = 1.0f, .min_p = 0.5f, .repetition_penalty = 1e-40f },
        { .temperature = 0.0f, .top_p = 1.0f, .repetition_penalty = 1e-40f },
        { .temperature = NAN, .top_p = NAN, .min_p = NAN, .presence_penalty = NAN },
        { .temperature = INFINITY, .top_k = -3, .top_p = 0.0f, .min_p = 2.0f },
        { .temperature = 1.0f, .top_k = 1 << 30, .top_p = 1e-30f, .frequency_penalty = -FLT_MAX },
        { .temperature = 1e-30f,
          .top_p = 1.0f,
          .frequency_penalty = FLT_MAX,
          .presence_penalty = -INFINITY },
        { .temperature = 2.0f,
          .top_p = 0.5f,
          .min_p = 1.0f,
          .repetition_penalty = INFINITY,
          .n_logit_bias = 3,
          .logit_bias_ids = bias_ids,
          .logit_bias = bias },
        { .temperature = 1.5f,
          .top_p = 1.0f,
          .repetition_penalty = 1e-40f,
          .frequency_penalty = -2.0f,
          .min_p = 0.9f },
    };
    srp_request *r[8];
    for (int i = 0; i < 8; i++) {
        srp_request_params rp = greedy_params(&ps[i % 4], 20);
        rp.sample = sp[i];
        rp.sample.seed = 5u + i;
        rp.logprobs = i % 2 ? 3 : -1;
        CHECKF(srp_sched_submit(s, &rp, &r[i], &e) == 0, "%s", e.msg);
    }
    for (int i = 0; i < 8; i++) {
        srp_token_event ev[16];
        srp_request_status st;
        int n = 0, bad = 0, nan_lp = 0;
        for (;;) {
            int k;
            srp_request_take(r[i], ev, 16, &k, &st);
            for (int j = 0; j < k; j++) {
                n++;
                bad += ev[j].token < 0 || ev[j].token >= vocab;
                if (i % 2) {
                    nan_lp += isnan(ev[j].logprob);
                    for (int t = 0; t < ev[j].n_top; t++)
                        bad += ev[j].top_ids[t] < 0 || ev[j].top_ids[t] >= vocab;
                }
            }
            if (st.finish != SRP_FINISH_NONE) break;
            if (k == 0) sleep_ms(1);
        }
        CHECKF(st.finish == SRP_FINISH_LENGTH && n == 20, "request %d: finish %d after %d", i,
               st.finish, n);
        CHECKF(!bad && !nan_lp, "request %d: %d ids out of range, %d NaN logprobs", i, bad, nan_lp);
        srp_request_release(r[i]);
    }
    srp_sched_stop(s);
    CHECK(srp_engine_free_slots(eng) == srp_engine_total_slots(eng));
    srp_engine_close(eng);
}
/* --- the per-step prefill budget (sched_budget.c), on injected step times ------------------- */

#include "sched_budget.h"

/* A GPU-like step: weights read once (w), each sequence's state (s per sequence), and compute
 * only past the point where the matrix products stop being bound by the weight reads. */
typedef struct step_model {
    double w, s, c;
    int knee;
} step_model;

static double model_time(const step_model *m, int d, int p) {
    int over = d + p - m->knee;
    return m->w + m->s * d + (over > 0 ? m->c * over : 0);
}

/* Runs `steps` steps of d decode tokens beside an endless prompt; returns the last plan and the
 * worst step time over the bound `limit` (after the first `skip` steps). */
static int simulate(srp_budget *b, const step_model *m, int d, int steps, int skip, double limit,
                    double *worst) {
    int p = 0;
    *worst = 0;
    for (int i = 0; i < steps; i++) {
        p = srp_budget_prefill(b, d);
        double t = model_time(m, d, p);
        if (i >= skip && p > 0 && t / limit > *worst) *worst = t / limit;
        srp_budget_observe(b, d, p, t);
    }
    return p;
}

TEST(budget_fills_the_step_when_off_or_nothing_decodes) {
    srp_budget b;
    srp_budget_opts o = { 0, 0, 32 };
    srp_err e = { 0 };
    REQUIRE(srp_budget_init(&b, &o, 64, 8192, &e) == 0);
    CHECK(!srp_budget_active(&b));
    CHECK(srp_budget_prefill(&b, 64) == 8192 - 64);
    srp_budget_observe(&b, 64, 8000, 0.2);
    CHECK(srp_budget_prefill(&b, 1) == 8191);
    srp_budget_free(&b);
    srp_budget_opts_default(&o);
    REQUIRE(srp_budget_init(&b, &o, 64, 8192, &e) == 0);
    CHECK(srp_budget_active(&b));
    CHECK(srp_budget_prefill(&b, 0) == 8192); /* nobody waits for a token */
    srp_budget_free(&b);
    /* bad options are refused with a message */
    o.itl_slowdown = 0.5;
    CHECK(srp_budget_init(&b, &o, 64, 8192, &e) == SRP_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "itl_slowdown");
    srp_budget_opts_default(&o);
    o.min_prefill = 0;
    CHECK(srp_budget_init(&b, &o, 64, 8192, &e) == SRP_EINVAL);
}

TEST(budget_converges_to_the_slowdown_bound) {
    const step_model m = { 3.4e-3, 50e-6, 25e-6, 128 };
    srp_budget b;
    srp_budget_opts o;
    srp_budget_opts_default(&o); /* 2.5 decode-only steps */
    srp_err e = { 0 };
    REQUIRE(srp_budget_init(&b, &o, 256, 16384, &e) == 0);
    const int d = 64;
    const double t_dec = model_time(&m, d, 0), limit = 2.5 * t_dec;
    /* no decode-only time for this batch yet: one decode-only step measures it */
    CHECK(srp_budget_prefill(&b, d) == 0);
    srp_budget_observe(&b, d, 0, t_dec);
    /* then chunks grow from 64, at most doubling, until the step time meets the bound */
    int sizes[6];
    for (int i = 0; i < 6; i++) {
        sizes[i] = srp_budget_prefill(&b, d);
        srp_budget_observe(&b, d, sizes[i], model_time(&m, d, sizes[i]));
    }
    CHECKF(sizes[0] == 64, "first chunk %d", sizes[0]);
    for (int i = 1; i < 6; i++) CHECKF(sizes[i] <= 2 * sizes[i - 1], "chunk %d: %d", i, sizes[i]);
    double worst;
    int p = simulate(&b, &m, d, 40, 0, limit, &worst);
    CHECKF(worst < 1.10, "a step took %.3f times the bound while converging", worst);
    double t = model_time(&m, d, p);
    CHECKF(fabs(t / limit - 1) < 0.02, "converged to %d tokens: %.2f ms against %.2f ms", p,
           t * 1e3, limit * 1e3);
    /* without the budget this step would hold 16K - 64 prompt tokens: ~400 ms */
    CHECK(p > 300 && p < 600);
    CHECK(fabs(b.last_decode_s - t_dec) < 1e-9 && fabs(b.last_target_s - limit) < 1e-9);
    srp_budget_free(&b);
}

TEST(budget_absolute_target_floor_and_room) {
    const step_model m = { 3.4e-3, 50e-6, 25e-6, 128 };
    srp_budget b;
    srp_err e = { 0 };
    /* an absolute target alone, and the tighter of the two when both are set (d = 8: a
     * decode-only step of 3.8 ms) */
    const double cases[3][3] = { { 0, 10e-3, 10e-3 },
                                 { 3.0, 10e-3, 10e-3 },
                                 { 2.0, 10e-3, 7.6e-3 } };
    for (int k = 0; k < 3; k++) {
        srp_budget_opts o = { cases[k][0], cases[k][1], 32 };
        REQUIRE(srp_budget_init(&b, &o, 256, 16384, &e) == 0);
        srp_budget_observe(&b, 8, 0, model_time(&m, 8, 0));
        double worst;
        int p = simulate(&b, &m, 8, 40, 0, 1, &worst);
        CHECKF(fabs(model_time(&m, 8, p) / cases[k][2] - 1) < 0.02, "case %d: %d tokens: %.2f ms",
               k, p, model_time(&m, 8, p) * 1e3);
        srp_budget_free(&b);
    }
    /* a bound no prefill fits under (slowdown 1) still lets min_prefill tokens through */
    srp_budget_opts o = { 1.0, 0, 48 };
    REQUIRE(srp_budget_init(&b, &o, 256, 16384, &e) == 0);
    srp_budget_observe(&b, 32, 0, model_time(&m, 32, 0));
    double worst;
    CHECK(simulate(&b, &m, 32, 20, 0, 1, &worst) == 48);
    srp_budget_free(&b);
    /* never more than the step holds */
    srp_budget_opts_default(&o);
    REQUIRE(srp_budget_init(&b, &o, 256, 300, &e) == 0);
    srp_budget_observe(&b, 250, 0, model_time(&m, 250, 0));
    CHECK(simulate(&b, &m, 250, 20, 0, 1, &worst) == 50);
    CHECK(srp_budget_prefill(&b, 300) == 0);
    srp_budget_free(&b);
}

TEST(budget_survives_outliers_and_batch_changes) {
    const step_model m = { 3.4e-3, 50e-6, 25e-6, 128 };
    srp_budget b;
    srp_budget_opts o;
    srp_budget_opts_default(&o);
    srp_err e = { 0 };
    REQUIRE(srp_budget_init(&b, &o, 256, 16384, &e) == 0);
    srp_budget_observe(&b, 64, 0, model_time(&m, 64, 0));
    double worst, limit64 = 2.5 * model_time(&m, 64, 0);
    simulate(&b, &m, 64, 40, 0, limit64, &worst);
    /* one decode-only step ten times too slow (a graph capture, a preempted thread) moves the
     * bound by a bounded amount, and the next steps bring it back */
    srp_budget_observe(&b, 64, 0, 10 * model_time(&m, 64, 0));
    int p = srp_budget_prefill(&b, 64);
    CHECKF(model_time(&m, 64, p) < 1.35 * limit64, "after an outlier: %.2f ms (bound %.2f)",
           model_time(&m, 64, p) * 1e3, limit64 * 1e3);
    for (int i = 0; i < 12; i++) srp_budget_observe(&b, 64, 0, model_time(&m, 64, 0));
    p = simulate(&b, &m, 64, 20, 0, limit64, &worst);
    CHECK(fabs(model_time(&m, 64, p) / limit64 - 1) < 0.05);
    /* a batch near a measured one borrows its time (from below: the bound stays safe) */
    const double limit70 = 2.5 * model_time(&m, 70, 0);
    simulate(&b, &m, 70, 20, 0, limit70, &worst);
    CHECKF(worst <= 1.0 + 1e-9, "batch 70: %.3f of its bound", worst);
    /* and from above, scaled down */
    const double limit60 = 2.5 * model_time(&m, 60, 0);
    p = srp_budget_prefill(&b, 60);
    CHECKF(p > 0 && model_time(&m, 60, p) <= limit60, "batch 60: %d tokens", p);
    /* one far from any measurement is measured first */
    CHECK(srp_budget_prefill(&b, 8) == 0);
    srp_budget_free(&b);
}

/* The scheduler with the budget on: a long prompt arrives while three requests decode. Step
 * times come from a model of the step (the clock plays no part), so every mixed step must meet
 * the bound up to the convergence allowance, and the decoders' tokens stay transformers'. */
typedef struct fake_steps {
    step_model m;
    double slowdown;
    int mixed, max_mixed_prefill;
    double worst; /* a mixed step's time over its bound */
} fake_steps;

static double fake_step_seconds(void *user, int d, int p) {
    fake_steps *f = user;
    double t = model_time(&f->m, d, p);
    if (d > 0 && p > 0) {
        f->mixed++;
        if (p > f->max_mixed_prefill) f->max_mixed_prefill = p;
        double r = t / (f->slowdown * model_time(&f->m, d, 0));
        if (r > f->worst) f->worst = r;
    }
    return t;
}

static void run_long_prompt_beside_decoders(double slowdown, fake_steps *f) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(4, 256);
    REQUIRE(eng);
    *f = (fake_steps){ { 1e-3, 1e-4, 2e-5, 16 }, slowdown, 0, 0, 0 };
    srp_sched_opts so = { .max_queue = 4, .itl_slowdown = slowdown, .min_prefill = 4 };
    so.step_seconds = fake_step_seconds;
    so.step_seconds_user = f;
    srp_sched *s = NULL;
    srp_err e = { 0 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request *r[3], *lr;
    for (int i = 0; i < 3; i++) {
        srp_request_params rp = greedy_params(&ps[i], 100);
        REQUIRE(srp_sched_submit(s, &rp, &r[i], &e) == 0);
    }
    for (int i = 0; i < 3; i++) { /* all three decoding */
        srp_request_status st;
        for (;;) {
            srp_token_event ev;
            int k;
            srp_request_take(r[i], &ev, 0, &k, &st);
            if (st.n_generated > 0) break;
            sleep_ms(1);
        }
    }
    prompt longp = { .n = 0 };
    int32_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = ps[i % 4].ids[(i / 4) % ps[i % 4].n];
    srp_request_params lp = greedy_params(&longp, 4);
    lp.prompt = ids;
    lp.n_prompt = 200;
    REQUIRE(srp_sched_submit(s, &lp, &lr, &e) == 0);
    int32_t out[128];
    int n;
    CHECK(collect(lr, out, 128, &n, NULL) == SRP_FINISH_LENGTH && n == 4);
    srp_request_release(lr);
    for (int i = 0; i < 3; i++) {
        CHECK(collect(r[i], out, 128, &n, NULL) == SRP_FINISH_LENGTH && n == 100);
        int m = ps[i].n_greedy < n ? ps[i].n_greedy : n;
        CHECKF(!memcmp(out, ps[i].greedy, (size_t)m * sizeof *out),
               "request %d differs from transformers' greedy tokens", i);
        srp_request_release(r[i]);
    }
    srp_sched_stats st;
    srp_sched_get_stats(s, &st);
    CHECK(st.mixed_steps == (uint64_t)f->mixed);
    srp_sched_stop(s);
    srp_engine_close(eng);
}

TEST(sched_budget_bounds_steps_beside_decoders) {
    fake_steps on, off;
    run_long_prompt_beside_decoders(2.0, &on);
    REQUIRE(on.mixed > 0);
    /* d = 3: decode step 1.3 ms, bound 2.6 ms: ~78 prompt tokens a step, first chunk 64 */
    CHECKF(on.max_mixed_prefill <= 90, "a mixed step held %d prompt tokens", on.max_mixed_prefill);
    CHECKF(on.worst < 1.10, "a mixed step took %.3f times its bound", on.worst);
    /* off: the 200-token prompt goes in one step, ~3x over the same bound */
    run_long_prompt_beside_decoders(0.0, &off);
    off.slowdown = 2.0;
    CHECKF(off.max_mixed_prefill == 200, "off: %d", off.max_mixed_prefill);
}
static int alive_calls(void *user) {
    atomic_int *calls = user;
    return atomic_fetch_add(calls, 1) < 0; /* never alive */
}

static int alive_after_first_chunk(void *user) {
    atomic_int *calls = user;
    /* admission and the first chunk pass; the client leaves before the second */
    return atomic_fetch_add(calls, 1) < 2;
}

/* min_tokens holds the stop ids off; a request whose client is gone is dropped before it is
 * admitted, or between prompt chunks, and prefills nothing more. */
TEST(sched_min_tokens_and_alive) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(2, 16);
    REQUIRE(eng);
    srp_sched *s = NULL;
    srp_err e = { 0 };
    srp_sched_opts so = { .max_queue = 4 };
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request_params rp = greedy_params(&ps[1], 24);
    int32_t stop = ps[1].greedy[2];
    rp.stop_ids = &stop;
    rp.n_stop_ids = 1;
    rp.min_tokens = 10;
    srp_request *a;
    REQUIRE(srp_sched_submit(s, &rp, &a, &e) == 0);
    int32_t ids[64];
    int n;
    srp_finish_reason why = collect(a, ids, 64, &n, NULL);
    CHECK(n >= 10);
    for (int i = 0; i < 9 && i < n; i++) CHECKF(ids[i] != stop, "stop id drawn at %d", i);
    CHECK(why == SRP_FINISH_LENGTH || (why == SRP_FINISH_STOP && ids[n - 1] == stop));
    srp_request_release(a);
    srp_sched_stats before, after;
    srp_sched_get_stats(s, &before);
    atomic_int calls = 0;
    srp_request_params gone = greedy_params(&ps[3], 8);
    gone.alive = alive_calls;
    gone.user = &calls;
    srp_request *b;
    REQUIRE(srp_sched_submit(s, &gone, &b, &e) == 0);
    CHECK(collect(b, ids, 64, &n, NULL) == SRP_FINISH_CANCELLED && n == 0);
    srp_request_release(b);
    srp_sched_get_stats(s, &after);
    CHECK(after.prompt_tokens == before.prompt_tokens); /* never prefilled */
    atomic_store(&calls, 0);
    srp_request_params later = greedy_params(&ps[3], 8); /* 77 tokens: 5 chunks of 16 */
    later.alive = alive_after_first_chunk;
    later.user = &calls;
    REQUIRE(srp_sched_submit(s, &later, &b, &e) == 0);
    CHECK(collect(b, ids, 64, &n, NULL) == SRP_FINISH_CANCELLED && n == 0);
    srp_request_release(b);
    srp_sched_get_stats(s, &before);
    CHECKF(before.prompt_tokens - after.prompt_tokens == 16, "prefilled %llu",
           (unsigned long long)(before.prompt_tokens - after.prompt_tokens));
    CHECK(before.slots_free == before.slots_total && before.blocks_free == before.blocks_total);
    srp_sched_stop(s);
    srp_engine_close(eng);
}

/* Constrained decoding through the scheduler (issue 17): a synthetic vocabulary (token t spells
 * one letter of "abcd", every fifth token two letters, a few none), a regex grammar; greedy and
 * sampled requests batched with a free one all give sentences of the grammar, end with
 * SRP_FINISH_STOP where the grammar must end, and the free request is what it is alone. */
static void spell(int32_t t, char *out) {
    if (t % 97 == 0) { /* no bytes: a special token */
        out[0] = 0;
        return;
    }
    out[0] = (char)('a' + t % 4);
    out[1] = t % 5 == 0 ? (char)('a' + (t / 5) % 4) : 0;
    out[2] = 0;
}

TEST(sched_grammar_constrains_replies) {
    prompt ps[4];
    REQUIRE(load_reference(ps, 4) == 4);
    srp_engine *eng = open_engine(4, 64);
    REQUIRE(eng);
    const int V = srp_engine_config(eng)->vocab_size;
    uint8_t **bytes = calloc((size_t)V, sizeof *bytes);
    int *lens = calloc((size_t)V, sizeof *lens);
    for (int t = 0; t < V; t++) {
        char s[3];
        spell(t, s);
        lens[t] = (int)strlen(s);
        bytes[t] = (uint8_t *)strdup(s);
    }
    srp_vocab *vocab = NULL;
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    REQUIRE(srp_vocab_new(V, (const uint8_t *const *)bytes, lens, &vocab, &e) == 0);
    const char *re = "ab(c|dd)[a-d]{1,6}b";
    REQUIRE(srp_grammar_regex(re, strlen(re), &g, &e) == 0);
    srp_sched *s = NULL;
    srp_sched_opts so;
    srp_sched_opts_default(&so);
    REQUIRE(srp_sched_start(eng, &so, &s, &e) == 0);
    srp_request *rq[4];
    for (int i = 0; i < 4; i++) {
        srp_request_params rp = greedy_params(&ps[i], 40);
        if (i < 3) {
            rp.grammar = g;
            rp.grammar_vocab = vocab;
        }
        if (i == 1)
            rp.sample = (srp_sample_params){ .temperature = 1.5f, .top_p = 1.0f, .seed = 3 };
        REQUIRE(srp_sched_submit(s, &rp, &rq[i], &e) == 0);
    }
    srp_grammar_unref(g); /* the requests hold their own references */
    for (int i = 0; i < 4; i++) {
        int32_t ids[64];
        int n = 0;
        srp_finish_reason why = collect(rq[i], ids, 64, &n, NULL);
        if (i == 3) {
            CHECK(why == SRP_FINISH_LENGTH && n == 40);
            for (int k = 0; k < ps[3].n_greedy && k < n; k++) CHECK(ids[k] == ps[3].greedy[k]);
        } else {
            char text[160] = "";
            for (int k = 0; k < n; k++) {
                char sp[3];
                spell(ids[k], sp);
                strcat(text, sp);
            }
            CHECKF(why == SRP_FINISH_STOP, "request %d finished %d: '%s'", i, why, text);
            size_t L = strlen(text);
            int ok = L >= 5 && !strncmp(text, "ab", 2) && text[L - 1] == 'b';
            const char *rest = text + 2;
            if (ok && rest[0] == 'c')
                rest += 1;
            else if (ok && !strncmp(rest, "dd", 2))
                rest += 2;
            else
                ok = 0;
            size_t mid = ok ? strlen(rest) - 1 : 0;
            ok = ok && mid >= 1 && mid <= 6 && strspn(rest, "abcd") == strlen(rest);
            CHECKF(ok, "request %d: '%s' is not in %s", i, text, re);
        }
        srp_request_release(rq[i]);
    }
    srp_sched_stop(s);
    srp_engine_close(eng);
    srp_vocab_free(vocab);
    for (int t = 0; t < V; t++) free(bytes[t]);
    free(bytes);
    free(lens);
}
