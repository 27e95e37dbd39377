/* JSON Schema's scalar types as GBNF: the fixed rules every schema grammar shares, strings
 * (lengths, pattern, format), integers with exact bounds, numbers.
 *
 * A weak model must still terminate, and each token it spends on layout is one fewer for the
 * value, so whitespace between tokens is at most one space (compact JSON, as xgrammar without
 * any_whitespace: newlines and indentation, which llama.cpp's `space` allows, let a weak model
 * run to max_tokens on layout), integer parts have at most 16 digits, fractions at most 16 and
 * exponents 3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

static const char *prelude =
    "space ::= | \" \"\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
    "string ::= \"\\\"\" char* \"\\\"\" space\n"
    "boolean ::= (\"true\" | \"false\") space\n"
    "null ::= \"null\" space\n"
    "uint ::= [0-9] | [1-9] [0-9]{1,15}\n"
    "frac ::= \".\" [0-9]{1,16}\n"
    "exp ::= [eE] [-+]? [0-9]{1,3}\n"
    "integer ::= \"-\"? uint space\n"
    "number ::= \"-\"? uint frac? exp? space\n"
    "fmt-date ::= [0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | "
    "\"3\" [01])\n"
    "fmt-time ::= ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" "
    "[0-9]{1,6})? "
    "(\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])\n"
    "fmt-date-time ::= fmt-date \"T\" fmt-time\n"
    "fmt-uuid ::= [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} "
    "\"-\" "
    "[0-9a-fA-F]{12}\n"
    "fmt-email-atom ::= [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\n"
    "fmt-label ::= [A-Za-z0-9] ([A-Za-z0-9-]{0,61} [A-Za-z0-9])?\n"
    "fmt-email ::= fmt-email-atom (\".\" fmt-email-atom)* \"@\" fmt-label (\".\" fmt-label)+\n"
    "fmt-octet ::= \"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9]\n"
    "fmt-ipv4 ::= fmt-octet \".\" fmt-octet \".\" fmt-octet \".\" fmt-octet\n";

void js_prelude(jsc *c) {
    gt_puts(&c->out, prelude);
    if (!c->any_used) return;
    /* Any JSON value, nesting bounded: v<d> at depth d; the deepest holds scalars only. */
    gt_puts(&c->out, "value ::= v0\nobject ::= o0\narray ::= a0\n"
                     "scalar ::= string | number | boolean | null\n");
    for (int d = 0; d < JS_MAX_DEPTH; d++) {
        if (d + 1 == JS_MAX_DEPTH) {
            gt_printf(&c->out, "v%d ::= scalar\n", d);
            break;
        }
        gt_printf(&c->out, "v%d ::= o%d | a%d | scalar\n", d, d, d);
        gt_printf(&c->out,
                  "o%d ::= \"{\" space (string \":\" space v%d (\",\" space string \":\" space "
                  "v%d)*)? \"}\" space\n",
                  d, d + 1, d + 1);
        gt_printf(&c->out, "a%d ::= \"[\" space (v%d (\",\" space v%d)*)? \"]\" space\n", d, d + 1,
                  d + 1);
    }
}

static int unsupported(jsc *c, const char *path, const char *what) {
    return srp_err_set(c->e, SRP_EUNSUPPORTED, "%s: %s", path, what);
}

/* A non-negative integer keyword, or -1 when absent; -2 when malformed (error set). */
static long count_kw(jsc *c, const cJSON *s, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!v) return -1;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble > G_MAX_REPEAT) {
        srp_err_set(
            c->e,
            cJSON_IsNumber(v) && v->valuedouble > G_MAX_REPEAT ? SRP_EUNSUPPORTED : SRP_EFORMAT,
            "%s: '%s' must be a non-negative integer (at most %d)", path, key, G_MAX_REPEAT);
        return -2;
    }
    return (long)v->valuedouble;
}

int js_string(jsc *c, const cJSON *s, const char *path, gtext *x) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(s, "format");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    long lo = count_kw(c, s, "minLength", path), hi = count_kw(c, s, "maxLength", path);
    if (lo == -2 || hi == -2) return c->e ? c->e->code : SRP_EFORMAT;
    int lengths = lo >= 0 || hi >= 0;
    if (fmt) {
        static const char *formats[] = { "date", "time", "date-time", "uuid", "email", "ipv4" };
        if (!cJSON_IsString(fmt))
            return srp_err_set(c->e, SRP_EFORMAT, "%s: 'format' must be a string", path);
        int k = 0;
        while (k < 6 && strcmp(fmt->valuestring, formats[k])) k++;
        if (k == 6) {
            char msg[160];
            snprintf(msg, sizeof msg, "'format' '%.100s' is not supported", fmt->valuestring);
            return unsupported(c, path, msg);
        }
        if (pat || lengths)
            return unsupported(
                c, path, "'format' with 'pattern', 'minLength' or 'maxLength' is not supported");
        gt_printf(x, "\"\\\"\" fmt-%s \"\\\"\" space", formats[k]);
        return 0;
    }
    if (pat) {
        if (!cJSON_IsString(pat))
            return srp_err_set(c->e, SRP_EFORMAT, "%s: 'pattern' must be a string", path);
        if (lengths)
            return unsupported(c, path,
                               "'pattern' with 'minLength' or 'maxLength' is not supported");
        char what[600];
        snprintf(what, sizeof what, "%s: pattern", path);
        gt_puts(x, "\"\\\"\" ");
        int rc = g_regex_gbnf(pat->valuestring, strlen(pat->valuestring), 1, what, x, c->e);
        if (rc) return rc;
        gt_puts(x, " \"\\\"\" space");
        return 0;
    }
    if (!lengths) {
        gt_puts(x, "string");
        return 0;
    }
    if (lo < 0) lo = 0;
    if (hi >= 0 && hi < lo) return unsupported(c, path, "'maxLength' is less than 'minLength'");
    if (hi < 0)
        gt_printf(x, "\"\\\"\" char{%ld,} \"\\\"\" space", lo);
    else
        gt_printf(x, "\"\\\"\" char{%ld,%ld} \"\\\"\" space", lo, hi);
    return 0;
}

/* --- integers with exact bounds -------------------------------------------------------------
 * The decimal strings of [a, b] (a <= b, same length n, leading zeros allowed) as
 * alternatives: split at the first differing digit into the part above a's tail, the full
 * middle and the part below b's tail (the classic numeric-range construction). */
static void digits_alt(gtext *x, int *first, const char *prefix, const char *tail) {
    gt_puts(x, *first ? "" : " | ");
    *first = 0;
    gt_puts(x, prefix);
    gt_puts(x, tail);
}

static void range_same_len(gtext *x, int *first, char *prefix, const char *a, const char *b,
                           int n) {
    size_t pl = strlen(prefix);
    if (n == 0) {
        digits_alt(x, first, prefix, "\"\"");
        return;
    }
    if (a[0] == b[0]) {
        snprintf(prefix + pl, 16, "\"%c\" ", a[0]);
        range_same_len(x, first, prefix, a + 1, b + 1, n - 1);
        prefix[pl] = 0;
        return;
    }
    int a_low = 1, b_high = 1;
    for (int i = 1; i < n; i++) {
        a_low &= a[i] == '0';
        b_high &= b[i] == '9';
    }
    char start = a[0], end = b[0], nines[20], zeros[20], tail[32];
    memset(nines, '9', (size_t)n);
    memset(zeros, '0', (size_t)n);
    if (!a_low) {
        snprintf(prefix + pl, 16, "\"%c\" ", a[0]);
        range_same_len(x, first, prefix, a + 1, nines, n - 1);
        prefix[pl] = 0;
        start++;
    }
    if (!b_high) end--;
    if (start <= end) {
        if (n > 1)
            snprintf(tail, sizeof tail, "[%c-%c] [0-9]{%d}", start, end, n - 1);
        else
            snprintf(tail, sizeof tail, "[%c-%c]", start, end);
        digits_alt(x, first, prefix, tail);
    }
    if (!b_high) {
        snprintf(prefix + pl, 16, "\"%c\" ", b[0]);
        range_same_len(x, first, prefix, zeros, b + 1, n - 1);
        prefix[pl] = 0;
    }
}

static void range_nonneg(gtext *x, int *first, long long a, long long b) {
    char as[24], bs[24], prefix[400] = "";
    long long p = 1;
    for (int n = 1; n <= 16; n++, p *= 10) {
        long long lo = n == 1 ? 0 : p, hi = p * 10 - 1;
        if (hi < a || lo > b) continue;
        if (lo < a) lo = a;
        if (hi > b) hi = b;
        snprintf(as, sizeof as, "%lld", lo);
        snprintf(bs, sizeof bs, "%lld", hi);
        range_same_len(x, first, prefix, as, bs, n);
    }
}

static int bound(jsc *c, const cJSON *s, const char *key, const char *path, double *v, int *has) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(s, key);
    *has = 0;
    if (!it) return 0;
    if (cJSON_IsBool(it)) /* draft 4's boolean exclusiveMinimum / exclusiveMaximum */
        return unsupported(
            c, path, "boolean 'exclusiveMinimum' / 'exclusiveMaximum' (draft 4) is not supported");
    if (!cJSON_IsNumber(it))
        return srp_err_set(c->e, SRP_EFORMAT, "%s: '%s' must be a number", path, key);
    *v = it->valuedouble;
    *has = 1;
    return 0;
}

int js_integer(jsc *c, const cJSON *s, const char *path, gtext *x) {
    const double lim = 9999999999999999.0; /* 16 digits, as the unbounded rule */
    double mn = 0, mx = 0, emn = 0, emx = 0;
    int hmn, hmx, hemn, hemx, rc;
    if ((rc = bound(c, s, "minimum", path, &mn, &hmn)) ||
        (rc = bound(c, s, "maximum", path, &mx, &hmx)) ||
        (rc = bound(c, s, "exclusiveMinimum", path, &emn, &hemn)) ||
        (rc = bound(c, s, "exclusiveMaximum", path, &emx, &hemx)))
        return rc;
    if (!hmn && !hmx && !hemn && !hemx) {
        gt_puts(x, "integer");
        return 0;
    }
    double lo = -lim, hi = lim;
    if (hmn && ceil(mn) > lo) lo = ceil(mn);
    if (hemn && floor(emn) + 1 > lo) lo = floor(emn) + 1;
    if (hmx && floor(mx) < hi) hi = floor(mx);
    if (hemx && ceil(emx) - 1 < hi) hi = ceil(emx) - 1;
    if (lo > hi)
        return unsupported(c, path, "no integer of at most 16 digits lies within the bounds");
    long long a = (long long)lo, b = (long long)hi;
    int first = 1;
    gt_puts(x, "(");
    if (a < 0) { /* the negative part, as "-" and a positive range */
        long long na = b < 0 ? -b : 1, nb = -a;
        gt_puts(x, "\"-\" (");
        int f2 = 1;
        range_nonneg(x, &f2, na, nb);
        gt_puts(x, ")");
        first = 0;
    }
    if (b >= 0) {
        if (!first) gt_puts(x, " | ");
        first = 1;
        gt_puts(x, "(");
        range_nonneg(x, &first, a > 0 ? a : 0, b);
        gt_puts(x, ")");
    }
    gt_puts(x, ") space");
    return 0;
}

int js_number(jsc *c, const cJSON *s, const char *path, gtext *x) {
    static const char *keys[] = { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum" };
    for (int k = 0; k < 4; k++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(s, keys[k]);
        if (!it) continue;
        if (k == 0 && cJSON_IsNumber(it) && it->valuedouble == 0) continue;
        char msg[160];
        snprintf(
            msg, sizeof msg,
            "'%s' on a number is not supported (only \"minimum\": 0; integers take any bounds)",
            keys[k]);
        return unsupported(c, path, msg);
    }
    if (cJSON_GetObjectItemCaseSensitive(s, "minimum"))
        gt_puts(x, "uint frac? exp? space");
    else
        gt_puts(x, "number");
    return 0;
}
