/* libFuzzer target: arbitrary bytes as tokenizer.json. Loading must either fail with a message
 * naming the file or succeed; a tokenizer that loads must encode and decode without crashing.
 * Build with -DSERPENT_FUZZ=ON (clang); run: fuzz_tokenizer_load tests/fuzz/seeds_load */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"

static const char *const texts[] = {
    "Hello world! 123 4567",
    "  two  spaces\tand\ttabs  ",
    "caf\x65\xcc\x81 \xe4\xb8\xad\xe6\x96\x87",
    "<s> </s> <|endoftext|> <unk> \xe2\x96\x81x",
    "bad \xff\xfe utf8 \xe4\xb8",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    srp_hf *h = NULL;
    srp_err e = { 0 };
    if (srp_hf_load_text((const char *)data, size, "tokenizer.json", &h, &e)) {
        if (!strstr(e.msg, "tokenizer.json") && e.code != SRP_ENOMEM) abort();
        return 0;
    }
    srp_tids ids = { 0 };
    srp_tbuf out = { 0 };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (!srp_hf_encode(h, texts[i], strlen(texts[i]), (int)(i & 1), &ids, &e))
            srp_hf_decode(h, ids.p, (int)ids.n, (int)(i & 2), &out, &e);
    }
    int32_t some[64];
    int n = 0;
    for (int32_t id = 0; id < h->n_ids && n < 64; id += 1 + h->n_ids / 64) some[n++] = id;
    srp_hf_decode(h, some, n, 0, &out, &e);
    srp_tids_free(&ids);
    srp_tbuf_free(&out);
    srp_hf_free(h);
    return 0;
}
