#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include "tok_regex.h"
#include "tok_util.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct srp_regex {
    pcre2_code *code;
    int jit;
};

/* Match data, match context and JIT stack are per thread, so that one compiled tokenizer can be
 * used by many threads at once and a call does not pay for creating them; a thread's set is
 * freed when the thread ends. */
typedef struct match_state {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
} match_state;

static pthread_key_t state_key;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;

static void state_free(void *p) {
    match_state *st = p;
    pcre2_match_data_free(st->md);
    pcre2_match_context_free(st->mc);
    pcre2_jit_stack_free(st->js);
    free(st);
}

static void state_key_make(void) {
    pthread_key_create(&state_key, state_free);
}

static match_state *thread_state(void) {
    pthread_once(&state_once, state_key_make);
    match_state *st = pthread_getspecific(state_key);
    if (st) return st;
    if (!(st = calloc(1, sizeof *st))) return NULL;
    st->md = pcre2_match_data_create(1, NULL);
    st->mc = pcre2_match_context_create(NULL);
    /* the JIT's backtracking stack; long whitespace runs under \s+(?!\S) need room */
    st->js = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
    if (!st->md || !st->mc || pthread_setspecific(state_key, st)) {
        state_free(st);
        return NULL;
    }
    if (st->js) pcre2_jit_stack_assign(st->mc, NULL, st->js);
    return st;
}

/* Oniguruma's \s is Unicode's White_Space; PCRE2's also takes U+180E (as \h does), so \s and \S
 * are rewritten to the property. Returns a malloc'ed pattern. */
static char *onig_to_pcre2(const char *p, size_t n, size_t *out_len) {
    char *o = malloc(n * 8 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n) {
            if (p[i + 1] == 's' || p[i + 1] == 'S') {
                k += (size_t)sprintf(o + k, "\\%c{White_Space}", p[i + 1] == 's' ? 'p' : 'P');
            } else {
                o[k++] = p[i];
                o[k++] = p[i + 1];
            }
            i++;
            continue;
        }
        o[k++] = p[i];
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

srp_regex *srp_regex_compile(const char *pattern, size_t len, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE at;
    size_t plen;
    char *pat = onig_to_pcre2(pattern, len, &plen);
    if (!pat) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* UCP makes \s, \w, \d and POSIX classes Unicode-aware, as they are in Oniguruma. */
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, plen, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    free(pat);
    if (!c) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errlen, "bad regular expression at offset %zu: %s", (size_t)at, (char *)msg);
        return NULL;
    }
    srp_regex *re = malloc(sizeof *re);
    if (!re) {
        pcre2_code_free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    re->code = c;
    re->jit = pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) == 0;
    return re;
}

void srp_regex_free(srp_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

static int push(srp_spans *out, size_t a, size_t b) {
    if (srp_grow((void **)&out->p, &out->cap, out->n + 1, sizeof *out->p)) return -1;
    out->p[out->n++] = (srp_span){ a, b };
    return 0;
}

int srp_regex_find_all(const srp_regex *re, const char *s, size_t n, srp_spans *out, char *err,
                       size_t errlen) {
    /* the JIT trusts its subject to be UTF-8 and reads past the end of one that is not */
    if (!srp_utf8_valid(s, n)) {
        snprintf(err, errlen, "text for a regular expression is not valid UTF-8");
        return -1;
    }
    match_state *st = thread_state();
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t pos = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (pos <= n) {
        int rc = re->jit ? pcre2_jit_match(re->code, (PCRE2_SPTR)s, n, pos, 0, st->md, st->mc)
                         : pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, 0, st->md, st->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_JIT, st->md, st->mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            snprintf(err, errlen, "regular expression failed: %s", (char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(st->md);
        size_t a = ov[0], b = ov[1];
        if (b < a) b = a; /* \K can report a start after the end */
        if (push(out, a, b)) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (b > a) {
            pos = b;
        } else { /* empty match: step over one character */
            if (b >= n) break;
            pos = b + 1;
            while (pos < n && (u[pos] & 0xC0) == 0x80) pos++;
        }
    }
    return 0;
}
