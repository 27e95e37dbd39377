/* Regular expressions (guided_regex, JSON Schema `pattern`) and literal choices to GBNF.
 *
 * The subset: literals and escapes (\n \t \r \f \v \0 \xHH \uHHHH, escaped punctuation), `.`
 * (any character but a newline), classes with ranges, negation and \d \w \s \D \W \S, groups
 * (...) (?:...) (?<name>...) (?P<name>...), alternation, * + ? {m} {m,} {m,n} (a lazy `?`
 * after one changes nothing for a whole-string match), and ^ $ only at the very ends. The
 * whole text must match. Backreferences, lookaround, word boundaries, Unicode properties and
 * possessive quantifiers are SRP_EUNSUPPORTED naming them.
 *
 * In JSON-string mode (a schema's pattern) the expression describes the decoded string while
 * the grammar matches its JSON text: '"', '\' and control characters are matched as their
 * escapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

typedef struct rx {
    const char *s;
    size_t n, i;
    int json;
    gtext *out;
    srp_err *e;
    int rc, depth;
    const char *what; /* for messages: "regex" or a schema path */
} rx;

static int rx_err(rx *r, int code, const char *msg) {
    if (!r->rc) r->rc = srp_err_set(r->e, code, "%s: position %zu: %s", r->what, r->i + 1, msg);
    return r->rc;
}

static int peekc(rx *r) {
    return r->i < r->n ? (unsigned char)r->s[r->i] : -1;
}

typedef struct ranges {
    uint32_t *lo, *hi;
    int n, cap;
} ranges;

static int rg_add(ranges *g, uint32_t lo, uint32_t hi) {
    if (g->n + 2 > g->cap) {
        int cap = g->cap ? g->cap * 2 : 16;
        uint32_t *l = realloc(g->lo, sizeof *l * (size_t)cap);
        if (!l) return -1;
        g->lo = l;
        uint32_t *h = realloc(g->hi, sizeof *h * (size_t)cap);
        if (!h) return -1;
        g->hi = h;
        g->cap = cap;
    }
    g->lo[g->n] = lo;
    g->hi[g->n++] = hi;
    return 0;
}

/* Makes g its complement. */
static int rg_negate(ranges *g) {
    g->n = g_ranges_normalize(g->lo, g->hi, g->n);
    uint32_t *l = malloc(sizeof *l * (size_t)(g->n + 1)),
             *h = malloc(sizeof *h * (size_t)(g->n + 1));
    if (g->n < 0 || !l || !h) {
        free(l);
        free(h);
        return -1;
    }
    int m = g_ranges_complement(g->lo, g->hi, g->n, l, h);
    free(g->lo);
    free(g->hi);
    g->lo = l;
    g->hi = h;
    g->n = g->cap = m;
    if (!g->cap) g->cap = 1; /* keep the arrays */
    return 0;
}

/* \d \w \s and their negations into g; 0 when c is none of them. */
static int shorthand(ranges *g, int c, int *err) {
    ranges t = { 0 };
    int neg = c == 'D' || c == 'W' || c == 'S', lc = neg ? c + 32 : c, bad = 0;
    if (lc == 'd')
        bad |= rg_add(&t, '0', '9');
    else if (lc == 'w')
        bad |= rg_add(&t, '0', '9') | rg_add(&t, 'A', 'Z') | rg_add(&t, 'a', 'z') |
               rg_add(&t, '_', '_');
    else if (lc == 's')
        bad |= rg_add(&t, ' ', ' ') | rg_add(&t, '\t', '\r');
    else
        return 0;
    if (neg && !bad) bad |= rg_negate(&t);
    for (int i = 0; i < t.n && !bad; i++) bad |= rg_add(g, t.lo[i], t.hi[i]);
    free(t.lo);
    free(t.hi);
    *err |= bad;
    return 1;
}

/* An escape's error, pointing at its backslash; -1. */
static long esc_err(rx *r, size_t at, int code, const char *msg) {
    r->i = at;
    rx_err(r, code, msg);
    return -1;
}

/* After a backslash, a single code point: its value, or -1 (error set). */
static long escape_char(rx *r) {
    size_t at = r->i - 1; /* messages point at the backslash */
    int c = peekc(r);
    if (c < 0) return esc_err(r, at, SRP_EFORMAT, "a backslash at the end");
    r->i++;
    switch (c) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case '0':
        return 0;
    case 'x':
    case 'u': {
        int digits = c == 'x' ? 2 : 4;
        long v = 0;
        for (int k = 0; k < digits; k++) {
            int h = g_hexval(peekc(r));
            if (h < 0) return esc_err(r, at, SRP_EFORMAT, "a \\x or \\u escape needs hex digits");
            v = v * 16 + h;
            r->i++;
        }
        if (v >= 0xD800 && v <= 0xDFFF)
            return esc_err(r, at, SRP_EUNSUPPORTED, "surrogate escapes are not supported");
        return v;
    }
    }
    if (c >= '1' && c <= '9')
        return esc_err(r, at, SRP_EUNSUPPORTED, "backreferences are not supported");
    if (c == 'b' || c == 'B' || c == 'A' || c == 'Z' || c == 'z' || c == 'G')
        return esc_err(r, at, SRP_EUNSUPPORTED,
                       "anchors and word boundaries (\\b \\B \\A \\Z) are not supported");
    if (c == 'p' || c == 'P')
        return esc_err(r, at, SRP_EUNSUPPORTED, "Unicode properties (\\p) are not supported");
    if (c == 'k') return esc_err(r, at, SRP_EUNSUPPORTED, "named backreferences are not supported");
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return esc_err(r, at, SRP_EUNSUPPORTED, "this escape is not supported");
    if (c >= 0x80) return esc_err(r, at, SRP_EFORMAT, "a backslash before a non-ASCII byte");
    return c; /* escaped punctuation */
}

static long raw_char(rx *r) {
    uint32_t cp;
    int k = g_utf8_decode((const uint8_t *)r->s + r->i, r->n - r->i, &cp);
    if (!k) return rx_err(r, SRP_EFORMAT, "invalid UTF-8"), -1;
    r->i += (size_t)k;
    return cp;
}

static const char *json_escape(uint32_t c, char buf[8]) {
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\t':
        return "\\t";
    case '\r':
        return "\\r";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    }
    snprintf(buf, 8, "\\u%04x", (unsigned)c);
    return buf;
}

/* Emits a match of one code point of g (sorted or not). */
static void emit_ranges(rx *r, ranges *g) {
    g->n = g_ranges_normalize(g->lo, g->hi, g->n);
    gtext *t = r->out;
    if (r->json) gt_puts(t, "(");
    gt_puts(t, "[");
    for (int i = 0; i < g->n; i++) {
        uint32_t lo = g->lo[i], hi = g->hi[i];
        /* JSON mode: the characters a JSON string must escape go as their escapes below */
        for (uint32_t a = lo; a <= hi;) {
            if (r->json && (a < 0x20 || a == '"' || a == '\\')) {
                a++;
                continue;
            }
            uint32_t z = a;
            while (z < hi && !(r->json && (z + 1 < 0x20 || z + 1 == '"' || z + 1 == '\\'))) z++;
            gt_class_char(t, a);
            if (z > a) {
                gt_puts(t, "-");
                gt_class_char(t, z);
            }
            if (z == hi) break;
            a = z + 1;
        }
    }
    gt_puts(t, "]");
    if (!r->json) return;
    for (int i = 0; i < g->n; i++)
        for (uint32_t c = g->lo[i]; c <= g->hi[i] && c < 0x80; c++)
            if (c < 0x20 || c == '"' || c == '\\') {
                char buf[8];
                const char *esc = json_escape(c, buf);
                gt_puts(t, " | ");
                gt_literal(t, esc, strlen(esc));
            }
    gt_puts(t, ")");
}

static void emit_char(rx *r, uint32_t c) {
    if (r->json && (c < 0x20 || c == '"' || c == '\\')) {
        char buf[8];
        const char *esc = json_escape(c, buf);
        gt_literal(r->out, esc, strlen(esc));
        return;
    }
    uint8_t u[4];
    int k = g_utf8_encode(c, u);
    gt_literal(r->out, (const char *)u, (size_t)k);
}

static int parse_class(rx *r) {
    ranges g = { 0 };
    int neg = 0, err = 0, first = 1;
    r->i++;
    if (peekc(r) == '^') {
        neg = 1;
        r->i++;
    }
    for (;;) {
        int c = peekc(r);
        if (c < 0) {
            rx_err(r, SRP_EFORMAT, "unterminated character class");
            goto out;
        }
        if (c == ']' && !first) {
            r->i++;
            break;
        }
        first = 0;
        if (c == '[' && r->i + 1 < r->n && r->s[r->i + 1] == ':') {
            rx_err(r, SRP_EUNSUPPORTED, "POSIX classes [:name:] are not supported");
            goto out;
        }
        long a;
        if (c == '\\') {
            r->i++;
            if (shorthand(&g, peekc(r), &err)) {
                r->i++;
                continue;
            }
            if (peekc(r) == 'b') { /* a backspace inside a class */
                r->i++;
                a = '\b';
            } else
                a = escape_char(r);
        } else
            a = raw_char(r);
        if (a < 0) goto out;
        long z = a;
        if (peekc(r) == '-' && r->i + 1 < r->n && r->s[r->i + 1] != ']') {
            r->i++;
            if (peekc(r) == '\\') {
                r->i++;
                z = escape_char(r);
            } else
                z = raw_char(r);
            if (z < 0) goto out;
            if (z < a) {
                rx_err(r, SRP_EFORMAT, "a reversed range in a character class");
                goto out;
            }
        }
        err |= rg_add(&g, (uint32_t)a, (uint32_t)z);
    }
    if (neg) err |= rg_negate(&g);
    if (err) {
        rx_err(r, SRP_ENOMEM, "out of memory");
        goto out;
    }
    emit_ranges(r, &g);
out:
    free(g.lo);
    free(g.hi);
    return r->rc;
}

static int parse_alt(rx *r);

static int parse_count(rx *r, long *v) {
    long x = 0;
    int any = 0;
    while (peekc(r) >= '0' && peekc(r) <= '9') {
        x = x * 10 + (peekc(r) - '0');
        if (x > G_MAX_REPEAT) x = G_MAX_REPEAT + 1;
        r->i++;
        any = 1;
    }
    *v = x;
    return any;
}

/* A quantifier after an atom, copied into GBNF; a '{' that starts none is a literal. */
static int parse_quant(rx *r) {
    int c = peekc(r);
    if (c == '*' || c == '+' || c == '?') {
        r->i++;
        char q = (char)c;
        gt_put(r->out, &q, 1);
    } else if (c == '{') {
        size_t save = r->i++;
        long m, n = -1;
        if (!parse_count(r, &m)) {
            r->i = save;
            return 0;
        }
        if (peekc(r) == ',') {
            r->i++;
            if (!parse_count(r, &n)) n = -2;
        } else
            n = m;
        if (peekc(r) != '}') {
            r->i = save;
            return 0;
        }
        r->i++;
        if (m > G_MAX_REPEAT || n > G_MAX_REPEAT)
            return rx_err(r, SRP_EUNSUPPORTED, "a repetition count is too large");
        if (n >= 0 && n < m) return rx_err(r, SRP_EFORMAT, "a repetition {m,n} with n < m");
        if (n == -2)
            gt_printf(r->out, "{%ld,}", m);
        else
            gt_printf(r->out, "{%ld,%ld}", m, n);
    } else
        return 0;
    if (peekc(r) == '?')
        r->i++; /* lazy: the same strings */
    else if (peekc(r) == '+')
        return rx_err(r, SRP_EUNSUPPORTED, "possessive quantifiers are not supported");
    if (peekc(r) == '*' || peekc(r) == '+' || peekc(r) == '?' || peekc(r) == '{')
        return rx_err(r, SRP_EUNSUPPORTED, "a quantifier after a quantifier is not supported");
    return 0;
}

static int parse_seq(rx *r) {
    int items = 0;
    for (;;) {
        int c = peekc(r);
        if (c < 0 || c == '|' || c == ')') break;
        if (items++) gt_puts(r->out, " ");
        if (c == '(') {
            r->i++;
            if (++r->depth > 100) return rx_err(r, SRP_EUNSUPPORTED, "groups nested too deeply");
            if (peekc(r) == '?') {
                r->i++;
                int d = peekc(r);
                if (d == ':')
                    r->i++;
                else if (d == 'P' || d == '<') { /* a named group is a group */
                    if (d == 'P') r->i++;
                    if (peekc(r) != '<' ||
                        (r->i + 1 < r->n && (r->s[r->i + 1] == '=' || r->s[r->i + 1] == '!')))
                        return rx_err(r, SRP_EUNSUPPORTED, "lookbehind is not supported");
                    while (peekc(r) >= 0 && peekc(r) != '>') r->i++;
                    if (peekc(r) != '>')
                        return rx_err(r, SRP_EFORMAT, "an unterminated group name");
                    r->i++;
                } else if (d == '=' || d == '!')
                    return rx_err(r, SRP_EUNSUPPORTED, "lookahead is not supported");
                else
                    return rx_err(r, SRP_EUNSUPPORTED, "this group syntax (?...) is not supported");
            }
            gt_puts(r->out, "(");
            if (parse_alt(r)) return r->rc;
            if (peekc(r) != ')') return rx_err(r, SRP_EFORMAT, "an unclosed '('");
            r->i++;
            r->depth--;
            gt_puts(r->out, ")");
        } else if (c == '[') {
            if (parse_class(r)) return r->rc;
        } else if (c == '.') {
            r->i++;
            ranges g = { 0 };
            if (rg_add(&g, '\n', '\n') || rg_negate(&g))
                return rx_err(r, SRP_ENOMEM, "out of memory");
            emit_ranges(r, &g);
            free(g.lo);
            free(g.hi);
        } else if (c == '\\') {
            r->i++;
            ranges g = { 0 };
            int err = 0;
            if (shorthand(&g, peekc(r), &err)) {
                r->i++;
                if (!err) emit_ranges(r, &g);
                free(g.lo);
                free(g.hi);
                if (err) return rx_err(r, SRP_ENOMEM, "out of memory");
            } else {
                long a = escape_char(r);
                if (a < 0) return r->rc;
                emit_char(r, (uint32_t)a);
            }
        } else if (c == '^' || c == '$') {
            /* accepted only at the very ends, where they say what whole-string matching means */
            if (!(c == '^' && r->i == 0) && !(c == '$' && r->i + 1 == r->n))
                return rx_err(r, SRP_EUNSUPPORTED, "'^' and '$' are supported only at the ends");
            r->i++;
            gt_puts(r->out, "\"\"");
            continue;
        } else if (c == '*' || c == '+' || c == '?') {
            return rx_err(r, SRP_EFORMAT, "a quantifier follows nothing");
        } else {
            long a = raw_char(r);
            if (a < 0) return r->rc;
            emit_char(r, (uint32_t)a);
        }
        if (parse_quant(r)) return r->rc;
    }
    if (!items) gt_puts(r->out, "\"\"");
    return 0;
}

static int parse_alt(rx *r) {
    for (;;) {
        if (parse_seq(r)) return r->rc;
        if (peekc(r) != '|') return 0;
        r->i++;
        gt_puts(r->out, " | ");
    }
}

int g_regex_gbnf(const char *re, size_t len, int json, const char *what, gtext *out, srp_err *e) {
    rx r = { .s = re, .n = len, .json = json, .out = out, .e = e, .what = what };
    gt_puts(out, "(");
    if (parse_alt(&r)) return r.rc;
    if (r.i < r.n) return rx_err(&r, SRP_EFORMAT, "an unmatched ')'");
    gt_puts(out, ")");
    if (out->oom) return srp_err_set(e, SRP_ENOMEM, "%s: out of memory", what);
    return 0;
}

static int compile_text(gtext *t, const char *what, srp_grammar **out, srp_err *e) {
    if (t->oom) {
        free(t->s);
        return srp_err_set(e, SRP_ENOMEM, "%s: out of memory", what);
    }
    int rc = srp_grammar_gbnf(t->s, t->n, out, e);
    if (rc) srp_err_prefix(e, "%s", what);
    free(t->s);
    return rc;
}

int srp_grammar_regex(const char *re, size_t len, srp_grammar **out, srp_err *e) {
    gtext t = { 0 };
    *out = NULL;
    gt_puts(&t, "root ::= ");
    int rc = g_regex_gbnf(re, len, 0, "regex", &t, e);
    if (rc) {
        free(t.s);
        return rc;
    }
    gt_puts(&t, "\n");
    return compile_text(&t, "regex", out, e);
}

int srp_grammar_choice(const char *const *choices, const size_t *lens, int n, srp_grammar **out,
                       srp_err *e) {
    *out = NULL;
    if (n <= 0 || !choices || !lens) return srp_err_set(e, SRP_EINVAL, "choice: no choices");
    gtext t = { 0 };
    gt_puts(&t, "root ::= ");
    for (int i = 0; i < n; i++) {
        if (i) gt_puts(&t, " | ");
        gt_literal(&t, choices[i], lens[i]);
    }
    gt_puts(&t, "\n");
    return compile_text(&t, "choice", out, e);
}
