/* What constrained decoding costs a batch: decode throughput of B requests (random prompts,
 * sampled at temperature 1) free, under a JSON Schema and under json_object, through the
 * scheduler, on a random-weight model with a real tokenizer's vocabulary (issue 17: at batch 32
 * the constraint may cost at most 10% of the free rate).
 *
 *   bench_structured [--config DIR] --tokenizer DIR [--backend cuda|cpu] [--batch B]
 *                    [--tokens T] [--replicas R] [--json FILE] [--commit SHA]
 *
 * Masks are computed on the host while the device runs the step (scheduler.c, fill_masks), so
 * the cost is the part of the mask time the forward pass does not hide, plus the masks' upload.
 * Request b takes replica b % R of each grammar (R compiled copies, 8 by default, as the
 * server's cache makes them): one grammar computes one mask at a time.
 * No reply stops early: the schema's strings are long and the model's weights random, so every
 * request decodes T tokens of its grammar (a reply that completes its grammar ends early and
 * is counted as it is). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar.h"
#include "scheduler.h"
#include "tokenizer.h"

static srp_err err;

static void die(const char *what) {
    fprintf(stderr, "bench_structured: %s: %s\n", what, err.msg);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* A function call's arguments: 20 properties of every kind, the shape agents send. */
static const char *const schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\"},\"city\":{\"type\":\"string\",\"maxLength\":200},"
    "\"country\":{\"type\":\"string\"},\"units\":{\"enum\":[\"metric\",\"imperial\"]},"
    "\"days\":{\"type\":\"integer\",\"minimum\":0},\"lat\":{\"type\":\"number\"},"
    "\"lon\":{\"type\":\"number\"},\"hourly\":{\"type\":\"boolean\"},"
    "\"fields\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"lang\":{\"type\":\"string\"},\"limit\":{\"type\":\"integer\"},"
    "\"offset\":{\"type\":\"integer\"},\"sort\":{\"enum\":[\"asc\",\"desc\"]},"
    "\"filter\":{\"type\":\"object\",\"properties\":{\"min\":{\"type\":\"number\"},"
    "\"max\":{\"type\":\"number\"}},\"required\":[\"min\",\"max\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":5},"
    "\"verbose\":{\"type\":\"boolean\"},\"format\":{\"enum\":[\"json\",\"xml\",\"csv\"]},"
    "\"timezone\":{\"type\":\"string\"},\"note\":{\"type\":[\"string\",\"null\"]},"
    "\"id\":{\"type\":\"string\"}},"
    "\"required\":[\"query\",\"city\",\"country\",\"units\",\"days\",\"lat\",\"lon\","
    "\"hourly\",\"fields\",\"lang\",\"limit\",\"offset\",\"sort\",\"filter\",\"tags\","
    "\"verbose\",\"format\",\"timezone\",\"note\",\"id\"],\"additionalProperties\":false}";

/* ids past the tokenizer's (the model's padded rows) have no bytes */
static int token_bytes(const void *tok, int t, uint8_t *buf, int cap) {
    return srp_tokenizer_token_bytes(tok, t, buf, cap);
}

typedef struct run {
    const char *name;
    double seconds, tokens_per_s;
    long tokens;
    int finished_early;
} run;

/* g: n_g replicas of one grammar (NULL: free text); request b takes replica b % n_g. */
static run decode(srp_sched *s, int n_tok, int batch, int tokens, srp_grammar **g, int n_g,
                  const srp_vocab *v, const char *name) {
    srp_request **rq = calloc((size_t)batch, sizeof *rq);
    int32_t prompt[64];
    uint64_t x = 88172645463325252ull;
    const double t0 = now();
    for (int b = 0; b < batch; b++) {
        for (int i = 0; i < 64; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            prompt[i] = (int32_t)(x % (uint64_t)n_tok);
        }
        srp_request_params rp;
        memset(&rp, 0, sizeof rp);
        rp.prompt = prompt;
        rp.n_prompt = 64;
        rp.max_tokens = tokens;
        rp.sample = (srp_sample_params){ .temperature = 1.0f, .top_p = 1.0f, .seed = (uint64_t)b };
        rp.logprobs = rp.prompt_logprobs = -1;
        rp.grammar = g ? g[b % n_g] : NULL;
        rp.grammar_vocab = v;
        if (srp_sched_submit(s, &rp, &rq[b], &err)) die("submit");
    }
    run r = { name, 0, 0, 0, 0 };
    srp_token_event ev[64];
    for (int done = 0; done < batch;) {
        done = 0;
        for (int b = 0; b < batch; b++) {
            srp_request_status st;
            int k;
            do srp_request_take(rq[b], ev, 64, &k, &st), r.tokens += k;
            while (k == 64);
            if (st.finish == SRP_FINISH_NONE) continue;
            if (st.finish == SRP_FINISH_ERROR) {
                snprintf(err.msg, sizeof err.msg, "%s", st.error);
                die(name);
            }
            done++;
        }
        if (done < batch) {
            struct timespec t = { 0, 200000 };
            nanosleep(&t, NULL);
        }
    }
    r.seconds = now() - t0;
    for (int b = 0; b < batch; b++) {
        srp_request_status st;
        int k;
        srp_request_take(rq[b], ev, 0, &k, &st);
        r.finished_early += st.n_generated < tokens;
        srp_request_release(rq[b]);
    }
    r.tokens_per_s = (double)r.tokens / r.seconds;
    free(rq);
    return r;
}

int main(int argc, char **argv) {
    const char *config = "bench/configs/hybrid-8b", *tok_dir = NULL, *backend = "cuda";
    const char *json = NULL, *commit = "unknown";
    int batch = 32, tokens = 256, replicas = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config"))
            config = argv[i + 1];
        else if (!strcmp(argv[i], "--tokenizer"))
            tok_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--backend"))
            backend = argv[i + 1];
        else if (!strcmp(argv[i], "--batch"))
            batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens"))
            tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--replicas"))
            replicas = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json = argv[i + 1];
        else if (!strcmp(argv[i], "--commit"))
            commit = argv[i + 1];
    }
    if (!tok_dir || batch < 1 || tokens < 1 || replicas < 1 || replicas > 64) {
        fprintf(stderr, "usage: bench_structured [--config DIR] --tokenizer DIR [--backend B] "
                        "[--batch B] [--tokens T] [--replicas R] [--json FILE] [--commit SHA]\n");
        return 2;
    }
    srp_tokenizer *tok = NULL;
    if (srp_tokenizer_load(tok_dir, &tok, &err)) die("tokenizer");
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = backend;
    o.random_weights = 1;
    o.seed = 1;
    o.max_seqs = batch;
    o.max_logits = batch;
    o.max_seq_len = 64 + tokens + 8;
    srp_engine *eng = NULL;
    if (srp_engine_open(config, &o, &eng, &err)) die("open");
    const int vocab = srp_engine_config(eng)->vocab_size;
    const int n_tok = srp_tokenizer_vocab_size(tok) < vocab ? srp_tokenizer_vocab_size(tok) : vocab;
    srp_vocab *v = NULL;
    double t0 = now();
    if (srp_vocab_from(vocab, token_bytes, tok, &v, &err)) die("vocab");
    const double vocab_s = now() - t0;
    /* as the server does (structured.c): a few replicas of each grammar compute masks at once */
    srp_grammar *gs[64] = { 0 }, *go[64] = { 0 };
    t0 = now();
    if (srp_grammar_json_schema(schema, strlen(schema), &gs[0], &err)) die("schema");
    const double compile_s = now() - t0;
    for (int r = 1; r < replicas; r++)
        if (srp_grammar_json_schema(schema, strlen(schema), &gs[r], &err)) die("schema");
    for (int r = 0; r < replicas; r++)
        if (srp_grammar_json_object(&go[r], &err)) die("json_object");
    srp_sched *s = NULL;
    srp_sched_opts so;
    srp_sched_opts_default(&so);
    if (srp_sched_start(eng, &so, &s, &err)) die("scheduler");
    printf("%s on %s, vocab %d (%d tokens with bytes, trie built in %.1f ms), batch %d, %d "
           "tokens each; schema compiled in %.2f ms; %d grammar replicas\n",
           config, backend, vocab, n_tok, vocab_s * 1e3, batch, tokens, compile_s * 1e3, replicas);
    decode(s, n_tok, batch, 8, NULL, 0, NULL, "warm-up");
    run runs[3];
    runs[0] = decode(s, n_tok, batch, tokens, NULL, 0, NULL, "free");
    runs[1] = decode(s, n_tok, batch, tokens, gs, replicas, v, "json_schema");
    runs[2] = decode(s, n_tok, batch, tokens, go, replicas, v, "json_object");
    for (int i = 0; i < 3; i++)
        printf("  %-12s %8.1f tok/s (%ld tokens in %.3f s, %d replies ended early)  %+.1f%%\n",
               runs[i].name, runs[i].tokens_per_s, runs[i].tokens, runs[i].seconds,
               runs[i].finished_early, 100.0 * (runs[i].tokens_per_s / runs[0].tokens_per_s - 1.0));
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) return 1;
        fprintf(f,
                "{\"commit\":\"%s\",\"config\":\"%s\",\"backend\":\"%s\",\"batch\":%d,"
                "\"tokens\":%d,\"replicas\":%d,\"schema_compile_ms\":%.3f,\"runs\":[",
                commit, config, backend, batch, tokens, replicas, compile_s * 1e3);
        for (int i = 0; i < 3; i++)
            fprintf(f, "%s{\"name\":\"%s\",\"tokens_per_s\":%.2f,\"tokens\":%ld,\"seconds\":%.4f}",
                    i ? "," : "", runs[i].name, runs[i].tokens_per_s, runs[i].tokens,
                    runs[i].seconds);
        fprintf(f, "]}\n");
        fclose(f);
    }
    srp_sched_stop(s);
    for (int r = 0; r < replicas; r++) {
        srp_grammar_unref(gs[r]);
        srp_grammar_unref(go[r]);
    }
    srp_vocab_free(v);
    srp_engine_close(eng);
    srp_tokenizer_free(tok);
    return 0;
}
