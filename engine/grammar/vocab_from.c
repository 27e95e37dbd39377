/* A vocabulary from a function that spells each token (a tokenizer's, through a small adapter),
 * so that callers do not each gather the byte arrays srp_vocab_new takes. */
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

int srp_vocab_from(int n_tokens, int (*token_bytes)(const void *ctx, int t, uint8_t *buf, int cap),
                   const void *ctx, srp_vocab **out, srp_err *e) {
    *out = NULL;
    uint8_t **bytes = calloc((size_t)n_tokens + 1, sizeof *bytes);
    int *lens = calloc((size_t)n_tokens + 1, sizeof *lens);
    int rc = bytes && lens ? 0 : srp_err_set(e, SRP_ENOMEM, "vocab: out of memory");
    int cap = 256;
    uint8_t *buf = rc ? NULL : malloc((size_t)cap);
    if (!rc && !buf) rc = srp_err_set(e, SRP_ENOMEM, "vocab: out of memory");
    for (int t = 0; t < n_tokens && !rc; t++) {
        int len = token_bytes(ctx, t, buf, cap);
        if (len > cap) { /* a long token: once more with room for it */
            uint8_t *b = realloc(buf, (size_t)len);
            if (!b) {
                rc = srp_err_set(e, SRP_ENOMEM, "vocab: out of memory");
                break;
            }
            buf = b;
            cap = len;
            len = token_bytes(ctx, t, buf, cap);
        }
        if (len <= 0 || len > cap) continue;
        if (!(bytes[t] = malloc((size_t)len))) {
            rc = srp_err_set(e, SRP_ENOMEM, "vocab: out of memory");
            break;
        }
        memcpy(bytes[t], buf, (size_t)len);
        lens[t] = len;
    }
    if (!rc) rc = srp_vocab_new(n_tokens, (const uint8_t *const *)bytes, lens, out, e);
    for (int t = 0; bytes && t < n_tokens; t++) free(bytes[t]);
    free(bytes);
    free(lens);
    free(buf);
    return rc;
}
