/* Normalizers: Unicode forms through utf8proc, Prepend, Replace, Strip, applied in order. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "hf.h"
#include "hf_chars.h"

static int unicode_form(enum hf_norm_kind kind, const char *s, size_t n, srp_tbuf *out,
                        srp_err *e) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) return srp_tbuf_put(out, s, n) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
    int opt = UTF8PROC_STABLE;
    switch (kind) {
    case HF_NFC:
        opt |= UTF8PROC_COMPOSE;
        break;
    case HF_NFD:
        opt |= UTF8PROC_DECOMPOSE;
        break;
    case HF_NFKC:
        opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        break;
    default:
        opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
        break;
    }
    utf8proc_uint8_t *res = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &res,
                                      (utf8proc_option_t)opt);
    if (k < 0) {
        free(res);
        return srp_err_set(e, SRP_EINVAL, "Unicode normalization failed: %s", utf8proc_errmsg(k));
    }
    int rc = srp_tbuf_put(out, res, (size_t)k);
    free(res);
    return rc ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
}

static int strip(int left, int right, const char *s, size_t n, srp_tbuf *out) {
    size_t a = 0, b = n;
    uint32_t cp;
    int k;
    while (left && a < b && (k = srp_utf8_next((const unsigned char *)s + a, b - a, &cp)) &&
           hf_is_whitespace(cp))
        a += (size_t)k;
    while (right && b > a && hf_is_whitespace(hf_prev_char(s + a, b - a, &k))) b -= (size_t)k;
    return srp_tbuf_put(out, s + a, b - a);
}

static int replace(const hf_normalizer *nz, const char *s, size_t n, srp_tbuf *out, srp_spans *sp,
                   srp_err *e) {
    char why[300];
    sp->n = 0;
    if (hf_split_pattern(&nz->pat, s, n, sp, why, sizeof why))
        return srp_err_set(e, SRP_EINVAL, "Replace normalizer: %s", why);
    size_t at = 0;
    for (size_t i = 0; i < sp->n; i++) {
        if (srp_tbuf_put(out, s + at, sp->p[i].start - at) ||
            srp_tbuf_put(out, nz->text, nz->text_len))
            return srp_err_set(e, SRP_ENOMEM, "out of memory");
        at = sp->p[i].end;
    }
    return srp_tbuf_put(out, s + at, n - at) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
}

int hf_normalize(const srp_hf *h, const char *s, size_t n, srp_tbuf *out, srp_err *e) {
    srp_tbuf a = { 0 }, b = { 0 };
    srp_spans sp = { 0 };
    int rc = srp_tbuf_put(&a, s, n) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
    for (int i = 0; i < h->n_norm && !rc; i++) {
        const hf_normalizer *nz = &h->norm[i];
        b.n = 0;
        switch (nz->kind) {
        case HF_PREPEND:
            if (a.n && (srp_tbuf_put(&b, nz->text, nz->text_len) || srp_tbuf_put(&b, a.p, a.n)))
                rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
            break;
        case HF_REPLACE:
            rc = replace(nz, a.p, a.n, &b, &sp, e);
            break;
        case HF_STRIP:
            if (strip(nz->left, nz->right, a.p, a.n, &b))
                rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
            break;
        default:
            rc = unicode_form(nz->kind, a.p, a.n, &b, e);
            break;
        }
        srp_tbuf t = a;
        a = b;
        b = t;
    }
    if (!rc && srp_tbuf_put(out, a.p, a.n)) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    srp_tbuf_free(&a);
    srp_tbuf_free(&b);
    free(sp.p);
    return rc;
}
