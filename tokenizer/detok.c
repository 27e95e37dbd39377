/* Incremental decoding for streaming, on top of srp_tokenizer_decode: works the same for every
 * kind of tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* Incremental decoding keeps a window of ids starting at prefix: text of ids[prefix, read) has
 * been emitted; decoding ids[prefix, n) and removing that text yields what is new. Decoding
 * from a token already emitted (not from the start) keeps context-dependent rendering, such as
 * SentencePiece dropping the space of the first piece, out of the output. */
struct srp_detok {
    const srp_tokenizer *t;
    int flags;
    int32_t *ids;
    int n, cap, prefix, read;
    char *out;
};

int srp_detok_new(const srp_tokenizer *t, int flags, srp_detok **out, srp_err *e) {
    srp_detok *d = calloc(1, sizeof *d);
    if (!d) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    d->t = t;
    d->flags = flags;
    *out = d;
    return 0;
}

static int ends_incomplete(const char *s, size_t len) {
    if (len >= 3 && !memcmp(s + len - 3, "\xEF\xBF\xBD", 3)) return 1; /* U+FFFD */
    /* a lead byte whose continuation bytes have not all arrived */
    for (size_t back = 1; back <= 4 && back <= len; back++) {
        unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back;
    }
    return 0;
}

/* Where the new text starts in full: after prev when full extends it, which is the rule. A
 * token can also change how earlier ones read (a byte token completing or breaking a character
 * that decoded as U+FFFD, say); then the new text starts where the two first differ, moved back
 * to a character boundary, so that no piece ever holds part of a character. */
static size_t new_text_start(const char *prev, size_t lp, const char *full, size_t lf) {
    if (lf >= lp && !memcmp(prev, full, lp)) return lp;
    size_t k = 0;
    while (k < lp && k < lf && prev[k] == full[k]) k++;
    while (k > 0 && ((unsigned char)full[k] & 0xC0) == 0x80) k--;
    return k;
}

static int emit(srp_detok *d, int final, const char **text, size_t *len, srp_err *e) {
    if (!d->n) { /* nothing pushed yet (ids is still NULL) */
        *text = "";
        *len = 0;
        return 0;
    }
    char *prev = NULL, *full = NULL;
    size_t lp = 0, lf = 0;
    int rc = srp_tokenizer_decode(d->t, d->ids + d->prefix, d->read - d->prefix, d->flags, &prev,
                                  &lp, e);
    if (!rc)
        rc = srp_tokenizer_decode(d->t, d->ids + d->prefix, d->n - d->prefix, d->flags, &full, &lf,
                                  e);
    *text = "";
    *len = 0;
    size_t from = rc ? 0 : new_text_start(prev, lp, full, lf);
    if (!rc && lf > from && (final || !ends_incomplete(full, lf))) {
        free(d->out);
        d->out = malloc(lf - from + 1);
        if (!d->out) {
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        } else {
            memcpy(d->out, full + from, lf - from);
            d->out[lf - from] = 0;
            *text = d->out;
            *len = lf - from;
            d->prefix = d->read;
            d->read = d->n;
        }
    }
    free(prev);
    free(full);
    return rc;
}

int srp_detok_push(srp_detok *d, int32_t id, const char **text, size_t *len, srp_err *e) {
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 64;
        int32_t *ni = realloc(d->ids, (size_t)cap * sizeof *ni);
        if (!ni) return srp_err_set(e, SRP_ENOMEM, "out of memory");
        d->ids = ni;
        d->cap = cap;
    }
    d->ids[d->n++] = id;
    return emit(d, 0, text, len, e);
}

int srp_detok_flush(srp_detok *d, const char **text, size_t *len, srp_err *e) {
    return emit(d, 1, text, len, e);
}

void srp_detok_free(srp_detok *d) {
    if (!d) return;
    free(d->ids);
    free(d->out);
    free(d);
}
