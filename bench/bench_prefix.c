/* Prefix caching measured: two workloads run through the scheduler with the prefix cache off,
 * then on, on random weights of a model's shape (the 8B hybrid by default), token-id prompts.
 *
 *   bench_prefix --config DIR [--backend cuda|cpu] [--json FILE] [--commit SHA]
 *                [--workload chat,doc] [--conversations 64] [--turns 8] [--system 2048]
 *                [--user 96] [--reply 64] [--docs 8] [--doc-tokens 3072] [--questions 16]
 *                [--question-tokens 48] [--answer 32] [--clients 64] [--max-batch-tokens 2048]
 *                [--max-seq-len 4096] [--max-seqs N] [--prefix-cache-gb F]
 *                [--gpu-memory-utilization F] [--seed S]
 *
 * chat: `conversations` users at once, each a closed loop of `turns` turns; every prompt is a
 *   system prompt shared by all users (`system` tokens), then the conversation so far: each
 *   turn adds a user message (`user` tokens) and the model's reply (`reply` tokens, generated,
 *   resent verbatim the next turn, as chat clients do).
 * doc: `docs` documents of `doc-tokens` tokens with `questions` questions each (a question is
 *   `question-tokens` tokens after its document, answered in `answer` tokens), asked in a
 *   shuffled order by `clients` closed-loop clients.
 *
 * It drives the scheduler directly (srp_sched_submit and the request channels) rather than the
 * HTTP server: the server adds tokenization and JSON around the same scheduler, and random
 * weights have no tokenizer; token ids make the shared prefixes exact. Time to first token is
 * from submission to the first token's delivery on the engine thread. Throughput is generated
 * tokens (and requests) per second of the whole run. Both modes run on one engine (the same
 * slots, KV blocks and snapshot pool); the cache is emptied between them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler.h"

static srp_err err;

static void die(const char *what) {
    fprintf(stderr, "bench_prefix: %s: %s\n", what, err.msg);
    exit(1);
}

typedef struct opts {
    const char *config, *backend, *json, *commit, *workloads;
    int conversations, turns, system, user, reply;
    int docs, doc_tokens, questions, question_tokens, answer, clients;
    int max_batch_tokens, max_seq_len, max_seqs;
    float prefix_gb, gpu_util;
    uint64_t seed;
} opts;

static uint64_t rng;
static int32_t draw(uint64_t *state, int vocab) {
    uint64_t x = *state += 0x9e3779b97f4a7c15ull; /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (int32_t)(3 + x % (uint64_t)(vocab - 3)); /* no pad, BOS or EOS */
}
static int32_t rand_token(int vocab) {
    return draw(&rng, vocab);
}

static void sleep_us(int us) {
    struct timespec t = { 0, us * 1000L };
    nanosleep(&t, NULL);
}

/* --- one workload's clients ----------------------------------------------------------------- */
typedef struct client {
    int32_t *tokens; /* the prompt of the current request, then its reply appended */
    int n, cap;
    uint64_t rng;      /* its user messages: the same in both modes whatever the order of turns */
    int step, n_steps; /* chat: turn; doc: index into its list of questions */
    srp_request *req;
    double t_submit, ttft;
    int got_first, n_gen;
    int later; /* a turn after the first, a question after its document's first */
} client;

typedef struct figures {
    const char *workload;
    int cache;
    double seconds;
    int requests;
    int64_t prompt_tokens, cached_tokens, generated, prefilled;
    double *ttft;    /* [requests] */
    int *ttft_hit;   /* 1 when the request restored a cached prefix */
    int *ttft_later; /* what the cache can serve: the same requests in both modes */
    int n_ttft;
    int peak_snapshots;
    uint64_t snapshots_taken, deferred, evictions;
} figures;

static void submit(srp_sched *s, client *c, int max_tokens) {
    srp_request_params rp;
    memset(&rp, 0, sizeof rp);
    rp.prompt = c->tokens;
    rp.n_prompt = c->n;
    rp.max_tokens = max_tokens;
    rp.sample = (srp_sample_params){ .top_p = 1.0f }; /* greedy; no stop token: full replies */
    rp.logprobs = -1;
    rp.prompt_logprobs = -1;
    c->t_submit = srp_sched_now();
    c->got_first = 0;
    c->n_gen = 0;
    if (srp_sched_submit(s, &rp, &c->req, &err)) die("submit");
}

/* Takes c's events; returns 1 when its request finished (reply appended to its tokens). */
static int poll(client *c, figures *f, int keep_reply) {
    srp_token_event ev[64];
    srp_request_status st;
    int k;
    do {
        srp_request_take(c->req, ev, 64, &k, &st);
        for (int i = 0; i < k; i++) {
            if (ev[i].is_prompt) continue;
            if (!c->got_first) {
                c->got_first = 1;
                c->ttft = ev[i].time - c->t_submit;
            }
            if (keep_reply && c->n < c->cap) c->tokens[c->n++] = ev[i].token;
            c->n_gen++;
        }
    } while (k == 64);
    if (st.finish == SRP_FINISH_NONE) return 0;
    if (st.finish == SRP_FINISH_ERROR) {
        fprintf(stderr, "bench_prefix: a request failed: %s\n", st.error);
        exit(1);
    }
    f->ttft[f->n_ttft] = c->ttft;
    f->ttft_later[f->n_ttft] = c->later;
    f->ttft_hit[f->n_ttft++] = st.n_cached > 0;
    f->prompt_tokens += st.n_prompt;
    f->cached_tokens += st.n_cached;
    f->generated += c->n_gen;
    f->requests++;
    srp_request_release(c->req);
    c->req = NULL;
    return 1;
}

static void sample_stats(srp_sched *s, figures *f) {
    srp_sched_stats st;
    srp_sched_get_stats(s, &st);
    if (st.snapshots_used > f->peak_snapshots) f->peak_snapshots = st.snapshots_used;
}

static void run_chat(srp_sched *s, const opts *o, int vocab, figures *f) {
    const int C = o->conversations;
    client *cl = calloc((size_t)C, sizeof *cl);
    int32_t *sys = malloc((size_t)o->system * sizeof *sys);
    for (int i = 0; i < o->system; i++) sys[i] = rand_token(vocab);
    for (int i = 0; i < C; i++) {
        client *c = &cl[i];
        c->cap = o->system + o->turns * (o->user + o->reply);
        c->tokens = malloc((size_t)c->cap * sizeof *c->tokens);
        memcpy(c->tokens, sys, (size_t)o->system * sizeof *sys);
        c->n = o->system;
        c->n_steps = o->turns;
        c->rng = rng ^ (0x632be59bd9b4e019ull * (uint64_t)(i + 1));
    }
    const double t0 = srp_sched_now();
    for (int i = 0; i < C; i++) {
        for (int t = 0; t < o->user; t++) cl[i].tokens[cl[i].n++] = draw(&cl[i].rng, vocab);
        submit(s, &cl[i], o->reply);
    }
    for (int live = C; live > 0;) {
        int progressed = 0;
        for (int i = 0; i < C; i++) {
            client *c = &cl[i];
            if (!c->req || !poll(c, f, 1)) continue;
            progressed = 1;
            if (++c->step == c->n_steps) {
                live--;
                continue;
            }
            for (int t = 0; t < o->user; t++) c->tokens[c->n++] = draw(&c->rng, vocab);
            c->later = 1;
            submit(s, c, o->reply);
        }
        sample_stats(s, f);
        if (!progressed) sleep_us(200);
    }
    f->seconds = srp_sched_now() - t0;
    for (int i = 0; i < C; i++) free(cl[i].tokens);
    free(cl);
    free(sys);
}

static void run_doc(srp_sched *s, const opts *o, int vocab, figures *f) {
    const int D = o->docs, Q = o->questions, N = D * Q;
    const int len = o->doc_tokens + o->question_tokens;
    int32_t *docs = malloc((size_t)D * o->doc_tokens * sizeof *docs);
    int32_t *qs = malloc((size_t)N * o->question_tokens * sizeof *qs);
    for (int i = 0; i < D * o->doc_tokens; i++) docs[i] = rand_token(vocab);
    for (int i = 0; i < N * o->question_tokens; i++) qs[i] = rand_token(vocab);
    int *order = malloc((size_t)N * sizeof *order);
    for (int i = 0; i < N; i++) order[i] = i;
    for (int i = N - 1; i > 0; i--) { /* Fisher-Yates with the bench's generator */
        int j = (int)((uint32_t)rand_token(1 << 30) % (uint32_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    const int C = o->clients < N ? o->clients : N;
    if (C <= 0) return;
    client *cl = calloc((size_t)C, sizeof *cl);
    int next = 0;
    char *asked = calloc((size_t)D, 1);
    const double t0 = srp_sched_now();
    for (int i = 0; i < C; i++) {
        cl[i].cap = len;
        cl[i].tokens = malloc((size_t)len * sizeof *cl[i].tokens);
    }
    int live = 0;
    for (int i = 0; i < C && next < N; i++, live++) {
        const int q = order[next++], d = q / Q;
        memcpy(cl[i].tokens, docs + (size_t)d * o->doc_tokens, (size_t)o->doc_tokens * 4);
        memcpy(cl[i].tokens + o->doc_tokens, qs + (size_t)q * o->question_tokens,
               (size_t)o->question_tokens * 4);
        cl[i].n = len;
        cl[i].later = asked[d];
        asked[d] = 1;
        submit(s, &cl[i], o->answer);
    }
    while (live > 0) {
        int progressed = 0;
        for (int i = 0; i < C; i++) {
            client *c = &cl[i];
            if (!c->req || !poll(c, f, 0)) continue;
            progressed = 1;
            if (next == N) {
                live--;
                continue;
            }
            const int q = order[next++], d = q / Q;
            memcpy(c->tokens, docs + (size_t)d * o->doc_tokens, (size_t)o->doc_tokens * 4);
            memcpy(c->tokens + o->doc_tokens, qs + (size_t)q * o->question_tokens,
                   (size_t)o->question_tokens * 4);
            c->n = len;
            c->later = asked[d];
            asked[d] = 1;
            submit(s, c, o->answer);
        }
        sample_stats(s, f);
        if (!progressed) sleep_us(200);
    }
    f->seconds = srp_sched_now() - t0;
    for (int i = 0; i < C; i++) free(cl[i].tokens);
    free(cl);
    free(docs);
    free(qs);
    free(order);
    free(asked);
}

/* --- reporting ------------------------------------------------------------------------------ */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct dist {
    int n;
    double mean, p50, p90, p99;
} dist;

/* TTFT distribution of the requests whose flag (hit or later) equals which (-1: all). */
static dist ttft_of(const figures *f, const int *flag, int which) {
    double *v = malloc((size_t)(f->n_ttft ? f->n_ttft : 1) * sizeof *v);
    dist d = { 0 };
    for (int i = 0; i < f->n_ttft; i++)
        if (which < 0 || flag[i] == which) v[d.n++] = f->ttft[i];
    if (d.n) {
        qsort(v, (size_t)d.n, sizeof *v, cmp_double);
        for (int i = 0; i < d.n; i++) d.mean += v[i] / d.n;
        d.p50 = v[d.n / 2];
        d.p90 = v[(int)(d.n * 0.9) < d.n ? (int)(d.n * 0.9) : d.n - 1];
        d.p99 = v[(int)(d.n * 0.99) < d.n ? (int)(d.n * 0.99) : d.n - 1];
    }
    free(v);
    return d;
}

static dist ttft_dist(const figures *f, int which) {
    return ttft_of(f, f->ttft_hit, which);
}

static void print_figures(const figures *f) {
    const dist all = ttft_dist(f, -1), hit = ttft_dist(f, 1);
    printf("%-5s cache %-3s  %6.1f s  %4d requests  %7.1f req/s  %8.0f gen tok/s  "
           "prefilled %8lld of %8lld prompt tokens (%5.1f%% from cache)\n",
           f->workload, f->cache ? "on" : "off", f->seconds, f->requests, f->requests / f->seconds,
           f->generated / f->seconds, (long long)f->prefilled, (long long)f->prompt_tokens,
           f->prompt_tokens ? 100.0 * f->cached_tokens / f->prompt_tokens : 0.0);
    printf("      TTFT all: mean %7.1f ms  p50 %7.1f  p90 %7.1f  p99 %7.1f", all.mean * 1e3,
           all.p50 * 1e3, all.p90 * 1e3, all.p99 * 1e3);
    if (hit.n)
        printf("   cache hits (%d): mean %7.1f ms  p50 %7.1f  p90 %7.1f", hit.n, hit.mean * 1e3,
               hit.p50 * 1e3, hit.p90 * 1e3);
    printf("\n");
    if (f->cache)
        printf("      snapshots: %llu taken, peak %d held, %llu evicted; %llu requests waited "
               "for a shared prefill\n",
               (unsigned long long)f->snapshots_taken, f->peak_snapshots,
               (unsigned long long)f->evictions, (unsigned long long)f->deferred);
}

static void json_figures(FILE *j, const figures *f, int64_t snap_bytes, int last) {
    const dist all = ttft_dist(f, -1), hit = ttft_dist(f, 1), miss = ttft_dist(f, 0);
    const dist later = ttft_of(f, f->ttft_later, 1);
    fprintf(
        j,
        "    {\"workload\": \"%s\", \"prefix_cache\": %s, \"seconds\": %.4f, \"requests\": %d, "
        "\"requests_per_s\": %.4f, \"generated_tokens\": %lld, \"generated_tokens_per_s\": "
        "%.2f, \"prompt_tokens\": %lld, \"cached_tokens\": %lld, \"prefilled_tokens\": %lld,\n"
        "     \"ttft_s\": {\"mean\": %.5f, \"p50\": %.5f, \"p90\": %.5f, \"p99\": %.5f},\n"
        "     \"ttft_hits_s\": {\"n\": %d, \"mean\": %.5f, \"p50\": %.5f, \"p90\": %.5f},\n"
        "     \"ttft_misses_s\": {\"n\": %d, \"mean\": %.5f, \"p50\": %.5f, \"p90\": %.5f},\n"
        "     \"ttft_later_s\": {\"n\": %d, \"mean\": %.5f, \"p50\": %.5f, \"p90\": %.5f},\n"
        "     \"snapshots_taken\": %llu, \"peak_snapshots\": %d, \"peak_snapshot_bytes\": %lld, "
        "\"snapshot_evictions\": %llu, \"deferred\": %llu}%s\n",
        f->workload, f->cache ? "true" : "false", f->seconds, f->requests, f->requests / f->seconds,
        (long long)f->generated, f->generated / f->seconds, (long long)f->prompt_tokens,
        (long long)f->cached_tokens, (long long)f->prefilled, all.mean, all.p50, all.p90, all.p99,
        hit.n, hit.mean, hit.p50, hit.p90, miss.n, miss.mean, miss.p50, miss.p90, later.n,
        later.mean, later.p50, later.p90, (unsigned long long)f->snapshots_taken, f->peak_snapshots,
        (long long)(f->peak_snapshots * snap_bytes), (unsigned long long)f->evictions,
        (unsigned long long)f->deferred, last ? "" : ",");
}

/* --- main ----------------------------------------------------------------------------------- */
static int arg_int(int argc, char **argv, int *i, const char *name, int *v) {
    if (strcmp(argv[*i], name) || *i + 1 >= argc) return 0;
    *v = atoi(argv[++*i]);
    return 1;
}

static int arg_str(int argc, char **argv, int *i, const char *name, const char **v) {
    if (strcmp(argv[*i], name) || *i + 1 >= argc) return 0;
    *v = argv[++*i];
    return 1;
}

static void run_workload(srp_engine *eng, const opts *o, const char *name, int cache, figures *f,
                         int vocab) {
    srp_sched_opts so = { .max_queue = 4096, .prefix_cache = cache };
    srp_sched *s = NULL;
    if (srp_sched_start(eng, &so, &s, &err)) die("starting the scheduler");
    srp_sched_reset_prefix_cache(s);
    srp_sched_stats before, after;
    srp_sched_get_stats(s, &before);
    memset(f, 0, sizeof *f);
    f->workload = name;
    f->cache = cache;
    const int n_max = !strcmp(name, "chat") ? o->conversations * o->turns : o->docs * o->questions;
    f->ttft = calloc((size_t)n_max, sizeof *f->ttft);
    f->ttft_hit = calloc((size_t)n_max, sizeof *f->ttft_hit);
    f->ttft_later = calloc((size_t)n_max, sizeof *f->ttft_later);
    rng = o->seed ^ (uint64_t)(name[0]) * 0x9e3779b97f4a7c15ull; /* same prompts both modes */
    if (!strcmp(name, "chat"))
        run_chat(s, o, vocab, f);
    else
        run_doc(s, o, vocab, f);
    srp_sched_get_stats(s, &after);
    f->prefilled = (int64_t)(after.prompt_tokens - before.prompt_tokens);
    f->snapshots_taken = after.snapshots_taken - before.snapshots_taken;
    f->evictions = after.snapshot_evictions - before.snapshot_evictions;
    f->deferred = after.prefix_deferred - before.prefix_deferred;
    srp_sched_stop(s);
}

int main(int argc, char **argv) {
    opts o = { .config = NULL,
               .backend = "auto",
               .workloads = "chat,doc",
               .conversations = 64,
               .turns = 8,
               .system = 2048,
               .user = 96,
               .reply = 64,
               .docs = 8,
               .doc_tokens = 3072,
               .questions = 16,
               .question_tokens = 48,
               .answer = 32,
               .clients = 64,
               .max_batch_tokens = 2048,
               .max_seq_len = 4096,
               .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *gb = NULL, *util = NULL, *seed = NULL;
        if (arg_str(argc, argv, &i, "--config", &o.config) ||
            arg_str(argc, argv, &i, "--backend", &o.backend) ||
            arg_str(argc, argv, &i, "--json", &o.json) ||
            arg_str(argc, argv, &i, "--commit", &o.commit) ||
            arg_str(argc, argv, &i, "--workload", &o.workloads) ||
            arg_int(argc, argv, &i, "--conversations", &o.conversations) ||
            arg_int(argc, argv, &i, "--turns", &o.turns) ||
            arg_int(argc, argv, &i, "--system", &o.system) ||
            arg_int(argc, argv, &i, "--user", &o.user) ||
            arg_int(argc, argv, &i, "--reply", &o.reply) ||
            arg_int(argc, argv, &i, "--docs", &o.docs) ||
            arg_int(argc, argv, &i, "--doc-tokens", &o.doc_tokens) ||
            arg_int(argc, argv, &i, "--questions", &o.questions) ||
            arg_int(argc, argv, &i, "--question-tokens", &o.question_tokens) ||
            arg_int(argc, argv, &i, "--answer", &o.answer) ||
            arg_int(argc, argv, &i, "--clients", &o.clients) ||
            arg_int(argc, argv, &i, "--max-batch-tokens", &o.max_batch_tokens) ||
            arg_int(argc, argv, &i, "--max-seq-len", &o.max_seq_len) ||
            arg_int(argc, argv, &i, "--max-seqs", &o.max_seqs))
            continue;
        if (arg_str(argc, argv, &i, "--prefix-cache-gb", &gb)) {
            o.prefix_gb = (float)atof(gb);
        } else if (arg_str(argc, argv, &i, "--gpu-memory-utilization", &util)) {
            o.gpu_util = (float)atof(util);
        } else if (arg_str(argc, argv, &i, "--seed", &seed)) {
            o.seed = strtoull(seed, NULL, 10);
        } else {
            fprintf(stderr,
                    "bench_prefix: unknown or incomplete argument '%s' (see the comment at "
                    "the top of bench/bench_prefix.c)\n",
                    argv[i]);
            return 2;
        }
    }
    if (!o.config) {
        fprintf(stderr, "usage: bench_prefix --config DIR [options]\n");
        return 2;
    }
    const int longest_chat = o.system + o.turns * (o.user + o.reply);
    const int longest_doc = o.doc_tokens + o.question_tokens + o.answer;
    if (longest_chat > o.max_seq_len || longest_doc > o.max_seq_len) {
        fprintf(stderr,
                "bench_prefix: a conversation (%d tokens) or a question (%d) exceeds "
                "--max-seq-len %d\n",
                longest_chat, longest_doc, o.max_seq_len);
        return 2;
    }
    srp_engine_opts eo;
    srp_engine_opts_default(&eo);
    eo.backend = o.backend;
    eo.random_weights = 1;
    eo.seed = 7;
    eo.max_seqs = o.max_seqs;
    eo.max_batch_tokens = o.max_batch_tokens;
    eo.max_seq_len = o.max_seq_len;
    eo.gpu_memory_utilization = o.gpu_util;
    eo.prefix_cache = 1;
    eo.prefix_cache_bytes = (int64_t)((double)o.prefix_gb * 1e9);
    const double t_open = srp_sched_now();
    srp_engine *eng = NULL;
    if (srp_engine_open(o.config, &eo, &eng, &err)) die("opening the engine");
    const int vocab = srp_engine_config(eng)->vocab_size;
    const int64_t snap_bytes = srp_engine_snapshot_bytes(eng);
    const int n_snap = srp_engine_total_snapshots(eng);
    printf("model %s (random weights) on %s: %d state slots of %.1f MB, %d KV blocks of %d "
           "tokens (%.1f KB each), %d snapshots of %.1f MB (%.2f GB); opened in %.1f s\n",
           o.config, srp_engine_backend(eng)->name, srp_engine_total_slots(eng),
           srp_engine_slot_bytes(eng) / 1e6, srp_engine_total_blocks(eng),
           srp_engine_block_size(eng), srp_engine_kv_block_bytes(eng) / 1e3, n_snap,
           snap_bytes / 1e6, n_snap * (double)snap_bytes / 1e9, srp_sched_now() - t_open);
    if (o.conversations > srp_engine_total_slots(eng) || o.clients > srp_engine_total_slots(eng))
        printf("note: more users than state slots (%d): some wait for a slot\n",
               srp_engine_total_slots(eng));
    { /* warm-up: first-use allocations, cuBLAS heuristics, graphs of small batches */
        opts w = o;
        w.conversations = 4;
        w.turns = 2;
        w.system = 256;
        w.user = 32;
        w.reply = 8;
        figures f;
        run_workload(eng, &w, "chat", 0, &f, vocab);
        free(f.ttft);
        free(f.ttft_hit);
        free(f.ttft_later);
    }
    figures res[4];
    int n_res = 0;
    const char *names[2] = { "chat", "doc" };
    for (int w = 0; w < 2; w++) {
        if (!strstr(o.workloads, names[w])) continue;
        for (int cache = 0; cache < 2; cache++) {
            run_workload(eng, &o, names[w], cache, &res[n_res], vocab);
            print_figures(&res[n_res]);
            fflush(stdout);
            n_res++;
        }
        const figures *off = &res[n_res - 2], *on = &res[n_res - 1];
        const dist a = ttft_of(off, off->ttft_later, 1), b = ttft_of(on, on->ttft_later, 1);
        const dist h = ttft_dist(on, 1);
        printf("%-5s with the cache: throughput x%.2f; mean TTFT of the %s x%.1f lower (%.1f -> "
               "%.1f ms; of the %d cache hits: %.1f ms)\n\n",
               names[w], (on->generated / on->seconds) / (off->generated / off->seconds),
               w == 0 ? "turns after the first" : "questions after a document's first",
               b.n && b.mean > 0 ? a.mean / b.mean : 0.0, a.mean * 1e3, b.mean * 1e3, h.n,
               h.mean * 1e3);
    }
    if (o.json) {
        FILE *j = fopen(o.json, "w");
        if (!j) {
            fprintf(stderr, "bench_prefix: cannot write %s\n", o.json);
            return 1;
        }
        fprintf(j,
                "{\n  \"bench\": \"prefix_cache\", \"commit\": \"%s\", \"config\": \"%s\", "
                "\"backend\": \"%s\",\n  \"state_slots\": %d, \"slot_bytes\": %lld, "
                "\"kv_blocks\": %d, \"kv_block_bytes\": %lld, \"snapshots\": %d, "
                "\"snapshot_bytes\": %lld, \"snapshot_pool_bytes\": %lld,\n"
                "  \"chat\": {\"conversations\": %d, \"turns\": %d, \"system\": %d, \"user\": %d, "
                "\"reply\": %d},\n  \"doc\": {\"docs\": %d, \"doc_tokens\": %d, \"questions\": %d, "
                "\"question_tokens\": %d, \"answer\": %d, \"clients\": %d},\n"
                "  \"max_batch_tokens\": %d,\n  \"results\": [\n",
                o.commit ? o.commit : "unknown", o.config, srp_engine_backend(eng)->name,
                srp_engine_total_slots(eng), (long long)srp_engine_slot_bytes(eng),
                srp_engine_total_blocks(eng), (long long)srp_engine_kv_block_bytes(eng), n_snap,
                (long long)snap_bytes, (long long)(n_snap * snap_bytes), o.conversations, o.turns,
                o.system, o.user, o.reply, o.docs, o.doc_tokens, o.questions, o.question_tokens,
                o.answer, o.clients, o.max_batch_tokens);
        for (int i = 0; i < n_res; i++) json_figures(j, &res[i], snap_bytes, i == n_res - 1);
        fprintf(j, "  ]\n}\n");
        fclose(j);
    }
    for (int i = 0; i < n_res; i++) {
        free(res[i].ttft);
        free(res[i].ttft_hit);
        free(res[i].ttft_later);
    }
    srp_engine_close(eng);
    return 0;
}
