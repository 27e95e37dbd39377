/* libFuzzer target: arbitrary bytes as a JSON Schema (and, the same bytes, as a regular
 * expression and as GBNF), then a few matcher steps on a small vocabulary. Compiling must
 * either succeed or fail with SRP_EFORMAT / SRP_EUNSUPPORTED / SRP_ENOMEM and a message; a
 * compiled grammar's mask must agree with accept: every masked token is accepted, an unmasked
 * one refused (state unchanged). Build with -DSERPENT_FUZZ=ON (clang); run:
 *   fuzz_json_schema -max_len=4096 tests/fuzz/seeds_json_schema
 * Every build replays the seeds (fuzz.replay.json_schema). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

static const char *const extra[] = { "\":",      "{\"",  "\",", "true", "null", "\xc3\xa9",
                                     "\xe4\xb8", "\xad", " \n", "12",   "\"}" };
#define N_EXTRA (int)(sizeof extra / sizeof extra[0])
#define N_VOCAB (256 + N_EXTRA)

static srp_vocab *vocab(void) {
    static srp_vocab *v;
    if (v) return v;
    static uint8_t bytes[256];
    const uint8_t *p[N_VOCAB];
    int len[N_VOCAB];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (uint8_t)i;
        p[i] = &bytes[i];
        len[i] = 1;
    }
    for (int i = 0; i < N_EXTRA; i++) {
        p[256 + i] = (const uint8_t *)extra[i];
        len[256 + i] = (int)strlen(extra[i]);
    }
    srp_err e;
    if (srp_vocab_new(N_VOCAB, p, len, &v, &e)) abort();
    return v;
}

static void check_error(int rc, const srp_err *e) {
    if (rc != SRP_EFORMAT && rc != SRP_EUNSUPPORTED && rc != SRP_ENOMEM && rc != SRP_EINVAL)
        abort();
    if (!e->msg[0]) abort();
}

static void steps(srp_grammar *g, uint32_t seed) {
    srp_matcher *m;
    srp_err e = { 0 };
    int rc = srp_matcher_new(g, vocab(), &m, &e);
    if (rc) {
        check_error(rc, &e);
        return;
    }
    uint32_t mask[(N_VOCAB + 31) / 32];
    for (int step = 0; step < 24 && !srp_matcher_must_end(m); step++) {
        srp_matcher_mask(m, mask);
        int allowed[N_VOCAB], na = 0, refused = -1;
        for (int t = 0; t < N_VOCAB; t++) {
            if (mask[t >> 5] >> (t & 31) & 1)
                allowed[na++] = t;
            else if (refused < 0 || (seed + (uint32_t)t) % 7 == 0)
                refused = t;
        }
        if (refused >= 0 && srp_matcher_accept(m, refused) != SRP_EINVAL) abort();
        if (!na) break;
        seed = seed * 1103515245u + 12345u;
        if (srp_matcher_accept(m, allowed[(seed >> 8) % (uint32_t)na])) abort();
    }
    srp_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    uint32_t seed = (uint32_t)size;
    for (size_t i = 0; i < size && i < 16; i++) seed = seed * 31 + data[i];
    int (*compile[])(const char *, size_t, srp_grammar **,
                     srp_err *) = { srp_grammar_json_schema, srp_grammar_regex, srp_grammar_gbnf };
    for (int k = 0; k < 3; k++) {
        srp_grammar *g = NULL;
        srp_err e = { 0 };
        int rc = compile[k](s, size, &g, &e);
        if (rc) {
            check_error(rc, &e);
            if (g) abort();
            continue;
        }
        steps(g, seed);
        srp_grammar_unref(g);
    }
    return 0;
}
