/* The grammar engine measured: compiling a function-call JSON Schema, and the token mask per
 * decoding step for that schema and for json_object.
 *
 *   bench_grammar [--tokenizer DIR] [--vocab N] [--walks N] [--seed S]
 *
 * The vocabulary is a tokenizer's (DIR, through srp_tokenizer_token_bytes) or a synthetic one
 * of N tokens (default 128000) shaped like a byte-level BPE vocabulary: the 256 bytes, then
 * words with and without a leading space, digit runs, punctuation and JSON-ish pieces ("\":",
 * "{\"", "\","), whitespace runs and multi-byte characters. A walk draws seeded random allowed
 * tokens until the grammar may end (a quarter of the time a token that closes a string, an
 * object or an array, so walks end). "first" is a walk on a fresh grammar (empty mask cache:
 * every new state is computed by walking the trie); "steady" replays the same tokens on the
 * same grammar, as the next request with the same schema does (the server caches compiled
 * grammars, and the mask cache belongs to the grammar); "new walk" draws different tokens on
 * the warm grammar (some states new). Times are per srp_matcher_mask call, one thread. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar.h"
#include "tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

typedef struct tokens {
    uint8_t **b;
    int *len, n;
} tokens;

static void add(tokens *t, const char *s, int n) {
    t->b[t->n] = malloc((size_t)n);
    memcpy(t->b[t->n], s, (size_t)n);
    t->len[t->n++] = n;
}

static void synthetic(tokens *t, int n) {
    static const char *pieces[] = {
        "\":",  "{\"",  "\",", "\": \"", "},",  "],",   "\"}",  "\"]",
        "\": ", ", \"", "{\n", "\n}",    "\\n", "\\\"", "null", "true"
    };
    static const char *multi[] = { "\xc3\xa9",         "\xe4\xb8\xad", "\xe6\x96\x87",
                                   "\xf0\x9f\x98\x80", "\xd0\xb4",     "\xc3\xbc" };
    t->b = calloc((size_t)n, sizeof *t->b);
    t->len = calloc((size_t)n, sizeof *t->len);
    for (int i = 0; i < 256 && t->n < n; i++) {
        char c = (char)i;
        add(t, &c, 1);
    }
    for (int i = 0; i < 16; i++) add(t, pieces[i], (int)strlen(pieces[i]));
    char w[32];
    while (t->n < n) {
        int kind = (int)(rnd() % 20), k = 0;
        if (kind < 12) { /* a word, most with a leading space */
            if (kind < 8) w[k++] = ' ';
            if (rnd() % 5 == 0) w[k++] = (char)('A' + rnd() % 26);
            for (int m = 2 + (int)(rnd() % 8); k < m + 1; k++) w[k] = (char)('a' + rnd() % 26);
        } else if (kind < 14) { /* digits */
            for (int m = 1 + (int)(rnd() % 3); k < m; k++) w[k] = (char)('0' + rnd() % 10);
        } else if (kind < 16) { /* punctuation, JSON-ish */
            static const char p[] = "\"{}[]:,.!?;-_()'/\\#*";
            for (int m = 2 + (int)(rnd() % 3); k < m; k++) w[k] = p[rnd() % (sizeof p - 1)];
        } else if (kind < 17) { /* whitespace runs */
            for (int m = 2 + (int)(rnd() % 12); k < m; k++) w[k] = rnd() % 3 ? ' ' : '\n';
        } else { /* multi-byte characters, alone or after a space */
            if (rnd() % 2) w[k++] = ' ';
            for (int m = 1 + (int)(rnd() % 3), j = 0; j < m; j++) {
                const char *c = multi[rnd() % 6];
                memcpy(w + k, c, strlen(c));
                k += (int)strlen(c);
            }
        }
        add(t, w, k);
    }
}

static int from_tokenizer(tokens *t, const char *dir) {
    srp_tokenizer *tok;
    srp_err e;
    if (srp_tokenizer_load(dir, &tok, &e)) {
        fprintf(stderr, "bench_grammar: %s\n", e.msg);
        return -1;
    }
    int n = srp_tokenizer_vocab_size(tok);
    t->b = calloc((size_t)n, sizeof *t->b);
    t->len = calloc((size_t)n, sizeof *t->len);
    for (int id = 0; id < n; id++) {
        uint8_t buf[4096];
        int len = srp_tokenizer_token_bytes(tok, id, buf, sizeof buf);
        if (len > (int)sizeof buf) len = -1;
        if (len > 0)
            add(t, (const char *)buf, len);
        else
            t->len[t->n++] = -1;
    }
    srp_tokenizer_free(tok);
    return 0;
}

/* A function call's arguments: 20 properties of the usual kinds, half of them required. */
static const char *schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\",\"description\":\"what to search\"},"
    "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100},"
    "\"offset\":{\"type\":\"integer\",\"minimum\":0},"
    "\"sort\":{\"enum\":[\"relevance\",\"date\",\"price\"]},"
    "\"ascending\":{\"type\":\"boolean\"},"
    "\"from\":{\"type\":\"string\",\"format\":\"date\"},"
    "\"to\":{\"type\":\"string\",\"format\":\"date-time\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8},"
    "\"price_min\":{\"type\":\"number\",\"minimum\":0},"
    "\"price_max\":{\"type\":\"number\"},"
    "\"currency\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}$\"},"
    "\"user_id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"lang\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":5},"
    "\"location\":{\"type\":\"object\",\"properties\":{\"lat\":{\"type\":\"number\"},"
    "\"lon\":{\"type\":\"number\"}},\"required\":[\"lat\",\"lon\"]},"
    "\"radius_km\":{\"type\":\"number\",\"minimum\":0},"
    "\"include\":{\"type\":\"array\",\"items\":{\"enum\":[\"reviews\",\"images\",\"stock\"]}},"
    "\"note\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]},"
    "\"page_token\":{\"type\":[\"string\",\"null\"]},"
    "\"verbose\":{\"type\":\"boolean\"}},"
    "\"required\":[\"query\",\"limit\",\"sort\",\"ascending\",\"from\",\"tags\",\"currency\","
    "\"lang\",\"location\",\"note\"]}";

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, int n) {
    if (!n) return;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += t[i];
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    printf("  %-22s %6d masks  mean %8.1f us  p50 %8.1f  p90 %8.1f  p99 %8.1f  max %9.1f\n", what,
           n, sum / n * 1e6, t[n / 2] * 1e6, t[n * 9 / 10] * 1e6, t[n * 99 / 100] * 1e6,
           t[n - 1] * 1e6);
}

static int closes(const tokens *v, int id) {
    for (int j = 0; j < v->len[id]; j++)
        if (v->b[id][j] == '"' || v->b[id][j] == '}' || v->b[id][j] == ']') return 1;
    return 0;
}

/* One walk: picks tokens (or replays path[0..*n) when replay), timing each mask. */
static int walk(srp_grammar *g, const srp_vocab *v, const tokens *tk, int32_t *path, int *n,
                int replay, double *times, int max) {
    srp_matcher *m;
    srp_err e;
    if (srp_matcher_new(g, v, &m, &e)) return -1;
    int words = (tk->n + 31) / 32, steps = 0;
    uint32_t *mask = malloc(sizeof *mask * (size_t)words);
    int32_t *allowed = malloc(sizeof *allowed * (size_t)tk->n);
    for (; steps < max; steps++) {
        if (replay ? steps == *n
                   : srp_matcher_can_end(m) && (srp_matcher_must_end(m) || rnd() % 4 == 0))
            break;
        double t0 = now();
        srp_matcher_mask(m, mask);
        times[steps] = now() - t0;
        int pick;
        if (replay)
            pick = path[steps];
        else {
            int na = 0, nc = 0;
            for (int i = 0; i < tk->n; i++)
                if (mask[i >> 5] >> (i & 31) & 1) allowed[na++] = i;
            if (!na) break;
            pick = allowed[rnd() % (unsigned)na];
            if (rnd() % 4 == 0)
                for (int i = 0; i < na; i++)
                    if (closes(tk, allowed[i]) && rnd() % (unsigned)++nc == 0) pick = allowed[i];
            path[steps] = pick;
        }
        if (srp_matcher_accept(m, pick)) {
            fprintf(stderr, "bench_grammar: a masked token was refused\n");
            break;
        }
    }
    if (!replay) *n = steps;
    free(mask);
    free(allowed);
    srp_matcher_free(m);
    return steps;
}

static void bench_masks(const char *name, srp_grammar *(*make)(void), const srp_vocab *v,
                        const tokens *tk, int walks) {
    enum { MAX = 4096 };
    double *first = malloc(sizeof(double) * MAX * walks),
           *steady = malloc(sizeof(double) * MAX * walks),
           *fresh = malloc(sizeof(double) * MAX * walks), *t = malloc(sizeof(double) * MAX);
    int32_t *path = malloc(sizeof *path * MAX);
    int nf = 0, ns = 0, nn = 0;
    printf("%s:\n", name);
    for (int w = 0; w < walks; w++) {
        srp_grammar *g = make();
        int n = 0, k = walk(g, v, tk, path, &n, 0, t, MAX);
        memcpy(first + nf, t, sizeof *t * (size_t)k);
        nf += k;
        k = walk(g, v, tk, path, &n, 1, t, MAX);
        memcpy(steady + ns, t, sizeof *t * (size_t)k);
        ns += k;
        k = walk(g, v, tk, path, &n, 0, t, MAX);
        memcpy(fresh + nn, t, sizeof *t * (size_t)k);
        nn += k;
        srp_grammar_unref(g);
    }
    report("first (cold cache)", first, nf);
    report("steady (same walk)", steady, ns);
    report("new walk, warm", fresh, nn);
    free(first);
    free(steady);
    free(fresh);
    free(t);
    free(path);
}

static srp_grammar *make_schema(void) {
    srp_grammar *g;
    srp_err e;
    if (srp_grammar_json_schema(schema, strlen(schema), &g, &e)) {
        fprintf(stderr, "bench_grammar: %s\n", e.msg);
        exit(1);
    }
    return g;
}

static srp_grammar *make_object(void) {
    srp_grammar *g;
    srp_err e;
    if (srp_grammar_json_object(&g, &e)) {
        fprintf(stderr, "bench_grammar: %s\n", e.msg);
        exit(1);
    }
    return g;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int n_vocab = 128000, walks = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokenizer"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--vocab"))
            n_vocab = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--walks"))
            walks = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            rng = strtoull(argv[i + 1], NULL, 0) | 1;
        else {
            fprintf(stderr,
                    "usage: bench_grammar [--tokenizer DIR] [--vocab N] [--walks N] [--seed S]\n");
            return 2;
        }
    }
    tokens tk = { 0 };
    if (dir ? from_tokenizer(&tk, dir) : (synthetic(&tk, n_vocab), 0)) return 1;
    srp_vocab *v;
    srp_err e;
    double t0 = now();
    if (srp_vocab_new(tk.n, (const uint8_t *const *)tk.b, tk.len, &v, &e)) {
        fprintf(stderr, "bench_grammar: %s\n", e.msg);
        return 1;
    }
    printf("vocabulary: %d tokens (%s), built in %.1f ms\n", tk.n, dir ? dir : "synthetic",
           (now() - t0) * 1e3);
    /* compile: the first (cold caches) and the median of 50 more */
    double c[51];
    for (int i = 0; i < 51; i++) {
        t0 = now();
        srp_grammar_unref(make_schema());
        c[i] = now() - t0;
    }
    double cold = c[0];
    qsort(c + 1, 50, sizeof *c, cmp_d);
    printf("compile 20-property schema: first %.2f ms, then median %.2f ms (max %.2f)\n",
           cold * 1e3, c[25] * 1e3, c[50] * 1e3);
    t0 = now();
    srp_grammar_unref(make_object());
    printf("compile json_object: %.2f ms\n", (now() - t0) * 1e3);
    bench_masks("mask, 20-property schema", make_schema, v, &tk, walks);
    bench_masks("mask, json_object", make_object, v, &tk, walks);
    srp_vocab_free(v);
    for (int i = 0; i < tk.n; i++) free(tk.b[i]);
    free(tk.b);
    free(tk.len);
    return 0;
}
