/* libFuzzer target: arbitrary text through encode and decode, and arbitrary ids through decode
 * and the incremental decoder, for the tokenizers named in SERPENT_FUZZ_TOKENIZERS (folders
 * separated by ':'; default: the tiny fixture). Decoded text and every streamed piece must be
 * valid UTF-8; ids must be in the vocabulary. Build with -DSERPENT_FUZZ=ON (clang); run:
 *   SERPENT_FUZZ_TOKENIZERS=dir1:dir2 fuzz_tokenizer_encode tests/fuzz/seeds_encode */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static srp_tokenizer *toks[16];
static int n_toks;

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xF5 ? 0 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *env = getenv("SERPENT_FUZZ_TOKENIZERS");
    char *list = strdup(env ? env : FUZZ_DEFAULT_TOKENIZER);
    for (char *save = NULL, *d = strtok_r(list, ":", &save); d && n_toks < 16;
         d = strtok_r(NULL, ":", &save)) {
        srp_err e = { 0 };
        if (srp_tokenizer_load(d, &toks[n_toks], &e)) {
            fprintf(stderr, "fuzz: %s\n", e.msg);
            exit(1);
        }
        n_toks++;
    }
    free(list);
    return 0;
}

static void check_decode(const srp_tokenizer *t, const int32_t *ids, int n, int skip) {
    char *text = NULL;
    size_t len = 0;
    srp_err e = { 0 };
    if (srp_tokenizer_decode(t, ids, n, skip, &text, &len, &e)) return;
    if (!valid_utf8(text, len)) abort();
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || !n_toks) return 0;
    const srp_tokenizer *t = toks[data[0] % n_toks];
    int flags = data[0] / 16;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids = NULL;
    int n = 0;
    srp_err e = { 0 };
    if (srp_tokenizer_encode(t, text, len, flags & 1, &ids, &n, &e)) abort(); /* text never fails */
    int vocab = srp_tokenizer_vocab_size(t);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) abort();
    check_decode(t, ids, n, flags & 2);
    free(ids);
    /* the bytes as ids, some outside the vocabulary, through decode and the streaming decoder */
    int m = (int)(len / 4);
    int32_t *raw = malloc(((size_t)m + 1) * sizeof *raw);
    for (int i = 0; i < m; i++) {
        uint32_t v;
        memcpy(&v, text + 4 * i, 4);
        raw[i] = (int32_t)(v % (uint32_t)(vocab + 8)) - (v & 0x80000000u ? 4 : 0);
    }
    check_decode(t, raw, m, flags & 2);
    srp_detok *d = NULL;
    if (!srp_detok_new(t, flags & 2, &d, &e)) {
        const char *piece;
        size_t plen;
        for (int i = 0; i < m; i++)
            if (!srp_detok_push(d, raw[i], &piece, &plen, &e) && !valid_utf8(piece, plen)) abort();
        if (!srp_detok_flush(d, &piece, &plen, &e) && !valid_utf8(piece, plen)) abort();
        srp_detok_free(d);
    }
    free(raw);
    return 0;
}
