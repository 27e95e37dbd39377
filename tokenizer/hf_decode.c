/* tokenizer.json decoding: ids -> token strings -> the decoders, each of which maps a list of
 * strings to a new list (the crate's Decoder::decode_chain), then the list is joined. */
#include <stdlib.h>
#include <string.h>

#include "hf.h"

typedef struct toks {
    srp_tbuf text;
    srp_span *t; /* start, end in text */
    size_t n, cap;
} toks;

static int tok_add(toks *v, const char *s, size_t n) {
    if (srp_grow((void **)&v->t, &v->cap, v->n + 1, sizeof *v->t)) return -1;
    size_t a = v->text.n;
    if (srp_tbuf_put(&v->text, s, n)) return -1;
    v->t[v->n++] = (srp_span){ a, a + n };
    return 0;
}

/* Appends to the newest token. */
static int tok_grow(toks *v, const char *s, size_t n) {
    if (srp_tbuf_put(&v->text, s, n)) return -1;
    v->t[v->n - 1].end = v->text.n;
    return 0;
}

static void toks_free(toks *v) {
    srp_tbuf_free(&v->text);
    free(v->t);
}

#define TOK(v, i)  ((v)->text.p + (v)->t[i].start)
#define TLEN(v, i) ((v)->t[i].end - (v)->t[i].start)

static int byte_level(const toks *in, toks *out) {
    srp_tbuf raw = { 0 };
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = TOK(in, i);
        size_t n = TLEN(in, i), start = raw.n;
        for (size_t j = 0; j < n;) {
            uint32_t cp;
            int k = srp_utf8_next((const unsigned char *)s + j, n - j, &cp);
            int b = k ? hf_char_byte(cp) : -1;
            if (b < 0) { /* not all in the alphabet: the token's own bytes */
                raw.n = start;
                rc = srp_tbuf_put(&raw, s, n);
                break;
            }
            char c = (char)b;
            if ((rc = srp_tbuf_put(&raw, &c, 1))) break;
            j += (size_t)k;
        }
    }
    if (!rc) rc = tok_add(out, "", 0);
    if (!rc) {
        out->text.n = out->t[0].start;
        rc = srp_utf8_append_lossy(&out->text, raw.p ? raw.p : "", raw.n);
        out->t[0].end = out->text.n;
    }
    srp_tbuf_free(&raw);
    return rc;
}

static int flush_bytes(srp_tbuf *bytes, toks *out) {
    if (!bytes->n) return 0;
    int rc = 0;
    if (srp_utf8_valid(bytes->p, bytes->n)) {
        rc = tok_add(out, bytes->p, bytes->n);
    } else { /* the crate writes one U+FFFD per byte of an invalid run */
        for (size_t i = 0; i < bytes->n && !rc; i++) rc = tok_add(out, "\xEF\xBF\xBD", 3);
    }
    bytes->n = 0;
    return rc;
}

static int byte_fallback(const toks *in, toks *out) {
    srp_tbuf bytes = { 0 };
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = TOK(in, i);
        const int b = srp_byte_piece(s, TLEN(in, i));
        if (b >= 0) {
            rc = srp_tbuf_put(&bytes, &(char){ (char)b }, 1);
            continue;
        }
        rc = flush_bytes(&bytes, out);
        if (!rc) rc = tok_add(out, s, TLEN(in, i));
    }
    if (!rc) rc = flush_bytes(&bytes, out);
    srp_tbuf_free(&bytes);
    return rc;
}

static int metaspace(const hf_decoder *d, const toks *in, toks *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t n = TLEN(in, i), r = (size_t)d->rep_len;
        if (tok_add(out, "", 0)) return -1;
        for (size_t j = 0; j < n;) {
            if (j + r <= n && !memcmp(s + j, d->rep, r)) {
                /* the first token loses every replacement character, not only a leading one */
                if (!(i == 0 && d->prepend != HF_PREPEND_NEVER) && tok_grow(out, " ", 1)) return -1;
                j += r;
            } else {
                if (tok_grow(out, s + j, 1)) return -1;
                j++;
            }
        }
    }
    return 0;
}

static int strip(const hf_decoder *d, const toks *in, toks *out) {
    size_t cl = d->content_len;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = TOK(in, i);
        size_t a = 0, b = TLEN(in, i);
        for (int k = 0; k < d->start && a + cl <= b && !memcmp(s + a, d->content, cl); k++) a += cl;
        for (int k = 0; k < d->stop && b >= a + cl && !memcmp(s + b - cl, d->content, cl); k++)
            b -= cl;
        if (tok_add(out, s + a, b - a)) return -1;
    }
    return 0;
}

static int replace(const hf_decoder *d, const toks *in, toks *out, srp_err *e) {
    srp_spans sp = { 0 };
    char why[300];
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const char *s = TOK(in, i);
        size_t n = TLEN(in, i), at = 0;
        sp.n = 0;
        if (hf_split_pattern(&d->pat, s, n, &sp, why, sizeof why)) {
            rc = srp_err_set(e, SRP_EINVAL, "Replace decoder: %s", why);
            break;
        }
        rc = tok_add(out, "", 0);
        for (size_t k = 0; k < sp.n && !rc; k++) {
            if (tok_grow(out, s + at, sp.p[k].start - at) ||
                tok_grow(out, d->content, d->content_len))
                rc = -1;
            at = sp.p[k].end;
        }
        if (!rc) rc = tok_grow(out, s + at, n - at);
    }
    free(sp.p);
    return rc;
}

static int fuse(const toks *in, toks *out) {
    if (tok_add(out, "", 0)) return -1;
    for (size_t i = 0; i < in->n; i++)
        if (tok_grow(out, TOK(in, i), TLEN(in, i))) return -1;
    return 0;
}

int srp_hf_decode(const srp_hf *h, const int32_t *ids, int n, int skip_special, srp_tbuf *out,
                  srp_err *e) {
    toks a = { 0 }, b = { 0 };
    int rc = 0;
    out->n = 0;
    for (int i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= h->n_ids) {
            rc = srp_err_set(e, SRP_EINVAL, "token id %d is outside the vocabulary [0, %d)", id,
                             h->n_ids);
            break;
        }
        /* the crate skips ids it has no token for */
        if (h->token_len[id] < 0 || (skip_special && h->special[id])) continue;
        if (tok_add(&a, h->token_text.p + h->token_off[id], (size_t)h->token_len[id]))
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    for (int i = 0; i < h->n_dec && !rc; i++) {
        const hf_decoder *d = &h->dec[i];
        b.n = 0;
        b.text.n = 0;
        switch (d->kind) {
        case HF_D_BYTELEVEL:
            rc = byte_level(&a, &b);
            break;
        case HF_D_BYTEFALLBACK:
            rc = byte_fallback(&a, &b);
            break;
        case HF_D_METASPACE:
            rc = metaspace(d, &a, &b);
            break;
        case HF_D_STRIP:
            rc = strip(d, &a, &b);
            break;
        case HF_D_FUSE:
            rc = fuse(&a, &b);
            break;
        case HF_D_REPLACE:
            rc = replace(d, &a, &b, e);
            break;
        }
        if (rc == -1) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        toks t = a;
        a = b;
        b = t;
    }
    /* with no decoder the crate joins tokens with spaces */
    for (size_t i = 0; i < a.n && !rc; i++)
        if ((!h->has_decoder && i && srp_tbuf_put(out, " ", 1)) ||
            srp_tbuf_put(out, TOK(&a, i), TLEN(&a, i)))
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (!rc && srp_tbuf_put(out, "", 0)) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    toks_free(&a);
    toks_free(&b);
    return rc;
}
