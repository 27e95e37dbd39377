/* The scheduler on the CPU backend with a fixture model: continuous batching gives the same
 * greedy tokens as transformers, cancellation frees slots and blocks, the queue bound holds,
 * seeded samples do not depend on the batch, and prompt logprobs match a scoring pass. */
#include <cjson/cJSON.h>
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
        srp_step_item it = { &seq, p->ids + i, k, SRP_LOGITS_ALL };
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
