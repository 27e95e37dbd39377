/* libFuzzer target: arbitrary bytes as tokenizer.json. Loading must either fail with a message
 * naming the file or succeed; a tokenizer that loads must encode and decode without crashing.
 * Build with -DSERPENT_FUZZ=ON (clang); run: fuzz_tokenizer_load tests/fuzz/seeds_load */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static const char *const texts[] = {
    "Hello world! 123 4567",
    "  two  spaces\tand\ttabs  ",
    "caf\x65\xcc\x81 \xe4\xb8\xad\xe6\x96\x87",
    "<s> </s> <|endoftext|> <unk> \xe2\x96\x81x",
    "bad \xff\xfe utf8 \xe4\xb8",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    srp_tokenizer *t = NULL;
    srp_err e = { 0 };
    if (srp_tokenizer_load_json_text((const char *)data, size, "tokenizer.json", &t, &e)) {
        if (!strstr(e.msg, "tokenizer.json") && e.code != SRP_ENOMEM) abort();
        return 0;
    }
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids = NULL;
        int n = 0;
        if (!srp_tokenizer_encode(t, texts[i], strlen(texts[i]), (int)(i & 1), &ids, &n, &e)) {
            char *out = NULL;
            size_t len = 0;
            if (!srp_tokenizer_decode(t, ids, n, (int)(i & 2), &out, &len, &e)) free(out);
        }
        free(ids);
    }
    const int vocab = srp_tokenizer_vocab_size(t);
    int32_t some[64];
    int n = 0;
    for (int32_t id = 0; id < vocab && n < 64; id += 1 + vocab / 64) some[n++] = id;
    char *out = NULL;
    size_t len = 0;
    if (!srp_tokenizer_decode(t, some, n, 0, &out, &len, &e)) free(out);
    srp_tokenizer_free(t);
    return 0;
}
