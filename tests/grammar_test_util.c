/* Helpers of the grammar tests (test_grammar.c, test_grammar_masks.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_test_util.h"
#include "test.h"

srp_vocab *byte_vocab(void) {
    static srp_vocab *v;
    if (!v) {
        static uint8_t b[256];
        const uint8_t *p[256];
        int len[256];
        for (int i = 0; i < 256; i++) {
            b[i] = (uint8_t)i;
            p[i] = &b[i];
            len[i] = 1;
        }
        srp_err e;
        if (srp_vocab_new(256, p, len, &v, &e)) return NULL;
    }
    return v;
}

/* 1 when the grammar accepts s as a whole sentence, 0 when not, -1 on an error. */
int accepts(srp_grammar *g, const char *s) {
    srp_matcher *m;
    srp_err e;
    if (srp_matcher_new(g, byte_vocab(), &m, &e)) return -1;
    int ok = 1;
    for (const char *p = s; *p && ok; p++) ok = srp_matcher_accept(m, (uint8_t)*p) == 0;
    ok = ok && srp_matcher_can_end(m);
    srp_matcher_free(m);
    return ok;
}

srp_grammar *gbnf(const char *src) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    if (srp_grammar_gbnf(src, strlen(src), &g, &e)) fprintf(stderr, "gbnf: %s\n", e.msg);
    return g;
}

srp_tokenizer *load_tok(const char *rel, int in_tests) {
    srp_tokenizer *t = NULL;
    srp_err e = { 0 };
    char path[4096];
    if (in_tests)
        snprintf(path, sizeof path, "%s", srp_test_path(rel));
    else
        snprintf(path, sizeof path, "%s/../%s", srp_test_path("."), rel);
    if (srp_tokenizer_load(path, &t, &e)) fprintf(stderr, "load %s: %s\n", path, e.msg);
    return t;
}

static int token_bytes(const void *t, int id, uint8_t *buf, int cap) {
    return srp_tokenizer_token_bytes(t, id, buf, cap);
}

srp_vocab *tok_vocab(const srp_tokenizer *t) {
    srp_vocab *v = NULL;
    srp_err e;
    if (srp_vocab_from(srp_tokenizer_vocab_size(t), token_bytes, t, &v, &e))
        fprintf(stderr, "%s\n", e.msg);
    return v;
}

srp_matcher *matcher_after(srp_grammar *g, const srp_vocab *v, const int32_t *prefix, int n) {
    srp_matcher *m;
    srp_err e;
    if (srp_matcher_new(g, v, &m, &e)) return NULL;
    for (int i = 0; i < n; i++)
        if (srp_matcher_accept(m, prefix[i])) {
            srp_matcher_free(m);
            return NULL;
        }
    return m;
}

srp_grammar *schema(const char *src) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    if (srp_grammar_json_schema(src, strlen(src), &g, &e)) fprintf(stderr, "schema: %s\n", e.msg);
    return g;
}

int schema_error(const char *src, int code, const char *needle) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    int rc = srp_grammar_json_schema(src, strlen(src), &g, &e);
    srp_grammar_unref(g);
    if (rc != code || !strstr(e.msg, needle)) {
        fprintf(stderr, "schema %s: rc %d, \"%s\" (wanted %d, \"%s\")\n", src, rc, e.msg, code,
                needle);
        return 0;
    }
    return 1;
}
