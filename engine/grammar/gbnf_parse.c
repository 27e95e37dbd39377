/* GBNF (llama.cpp's grammar format) to the byte-level IR.
 *
 * `name ::= alternatives`, literals "..." and classes [...] / [^...] with the escapes \n \t \r
 * \\ \" \[ \] \- \^ \/ \xHH \uHHHH \UHHHHHHHH (as in llama.cpp an escape names a code point,
 * written as its UTF-8 bytes; raw bytes of a literal are taken as they are), `.` (any code
 * point), groups, `|`, `* + ?`, `{m}` `{m,}` `{m,n}`, comments `#`. At the top level a rule ends
 * at the end of its line unless the next line goes on with `|`; inside groups newlines are
 * free. Repetitions become small rules: x* is `s ::= x s |`, x{0,n} n nested optional rules
 * (never n copies of an alternation). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

typedef struct parser {
    const char *s;
    size_t n, i;
    gbuild *b;
    srp_err *e;
    int rc;
    int depth;
} parser;

__attribute__((format(printf, 3, 4))) static int perr(parser *p, size_t at, const char *fmt, ...) {
    if (p->rc) return p->rc;
    int line = 1, col = 1;
    for (size_t k = 0; k < at && k < p->n; k++) {
        if (p->s[k] == '\n') {
            line++;
            col = 1;
        } else
            col++;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->rc = srp_err_set(p->e, SRP_EFORMAT, "grammar: line %d column %d: %s", line, col, msg);
    return p->rc;
}

static int oom(parser *p) {
    if (!p->rc) p->rc = srp_err_set(p->e, SRP_ENOMEM, "grammar: out of memory or too large");
    return p->rc;
}

static int peek(parser *p) {
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

static void skip_space(parser *p, int newline_ok) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\r' || (newline_ok && c == '\n'))
            p->i++;
        else if (c == '#')
            while (p->i < p->n && p->s[p->i] != '\n') p->i++;
        else
            break;
    }
}

static int is_name(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* After a backslash: the code point it names, or -1 (error set). */
static long parse_escape(parser *p) {
    size_t at = p->i - 1;
    int c = peek(p);
    if (c < 0) return perr(p, at, "a backslash at the end of the grammar"), -1;
    p->i++;
    int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits) {
        unsigned long v = 0;
        for (int k = 0; k < digits; k++) {
            int h = g_hexval(peek(p));
            if (h < 0) return perr(p, at, "\\%c needs %d hex digits", c, digits), -1;
            v = v * 16 + (unsigned)h;
            p->i++;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return perr(p, at, "escape \\%c names no Unicode scalar value", c), -1;
        return (long)v;
    }
    switch (c) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    case '\\':
    case '"':
    case '[':
    case ']':
    case '-':
    case '^':
    case '/':
        return c;
    default:
        return perr(p, at, "unknown escape '\\%c'", c), -1;
    }
}

static int push_byte(parser *p, int rule, unsigned byte) {
    gbytes s = { { 0 } };
    s.bits[byte >> 5] = 1u << (byte & 31);
    int id = gb_set(p->b, &s);
    if (id < 0 || gb_push(p->b, rule, GE_BYTES, id)) return oom(p);
    return 0;
}

static int parse_literal(parser *p, int rule) {
    size_t at = p->i++;
    for (;;) {
        int c = peek(p);
        if (c < 0 || c == '\n') return perr(p, at, "unterminated string literal");
        p->i++;
        if (c == '"') return 0;
        if (c != '\\') {
            if (push_byte(p, rule, (unsigned)c)) return p->rc;
            continue;
        }
        long cp = parse_escape(p);
        if (cp < 0) return p->rc;
        uint8_t u[4];
        int k = g_utf8_encode((uint32_t)cp, u);
        for (int j = 0; j < k; j++)
            if (push_byte(p, rule, u[j])) return p->rc;
    }
}

/* One code point of a class: raw UTF-8 or an escape; -1 on error. */
static long class_char(parser *p) {
    int c = peek(p);
    if (c == '\\') {
        p->i++;
        return parse_escape(p);
    }
    uint32_t cp;
    int k = g_utf8_decode((const uint8_t *)p->s + p->i, p->n - p->i, &cp);
    if (!k) return perr(p, p->i, "invalid UTF-8 in a character class"), -1;
    p->i += (size_t)k;
    return cp;
}

static int parse_class(parser *p, int rule, const char *base) {
    size_t at = p->i++;
    int neg = peek(p) == '^';
    if (neg) p->i++;
    int n = 0, cap = 16;
    uint32_t *lo = malloc(sizeof *lo * (size_t)(cap + 1)),
             *hi = malloc(sizeof *hi * (size_t)(cap + 1));
    if (!lo || !hi) goto nomem;
    for (;;) {
        int c = peek(p);
        if (c < 0 || c == '\n') {
            perr(p, at, "unterminated character class");
            goto done;
        }
        if (c == ']') {
            p->i++;
            break;
        }
        long a = class_char(p), z = a;
        if (a < 0) goto done;
        if (peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
            p->i++;
            z = class_char(p);
            if (z < 0) goto done;
            if (z < a) {
                perr(p, at, "character class range is reversed");
                goto done;
            }
        }
        if (n == cap) {
            cap *= 2;
            uint32_t *l2 = realloc(lo, sizeof *lo * (size_t)(cap + 1));
            if (l2) lo = l2;
            uint32_t *h2 = realloc(hi, sizeof *hi * (size_t)(cap + 1));
            if (h2) hi = h2;
            if (!l2 || !h2) goto nomem;
        }
        lo[n] = (uint32_t)a;
        hi[n++] = (uint32_t)z;
    }
    n = g_ranges_normalize(lo, hi, n);
    if (n < 0) goto nomem;
    if (neg) {
        uint32_t *cl = malloc(sizeof *cl * (size_t)(n + 1)),
                 *ch = malloc(sizeof *ch * (size_t)(n + 1));
        if (!cl || !ch) {
            free(cl);
            free(ch);
            goto nomem;
        }
        n = g_ranges_complement(lo, hi, n, cl, ch);
        free(lo);
        free(hi);
        lo = cl;
        hi = ch;
    }
    if (gb_push_class(p->b, rule, lo, hi, n, base)) oom(p);
    goto done;
nomem:
    oom(p);
done:
    free(lo);
    free(hi);
    return p->rc;
}

static int parse_alternates(parser *p, int rule, int nested);

static long parse_int(parser *p) {
    long v = 0;
    int any = 0;
    while (peek(p) >= '0' && peek(p) <= '9') {
        v = v * 10 + (peek(p) - '0');
        if (v > G_MAX_REPEAT) v = G_MAX_REPEAT + 1;
        p->i++;
        any = 1;
    }
    return any ? v : -1;
}

/* x repeated: the last item of rule (one element by now) becomes x{min,max}; max -1 is
 * unbounded. */
static int repeat(parser *p, int rule, long min, long max, const char *base) {
    gbuild *b = p->b;
    gelem x = b->rule[rule][--b->rule_n[rule]];
    for (long k = 0; k < min; k++)
        if (gb_push(b, rule, x.type, x.val)) return oom(p);
    if (max < 0) {
        int s = gb_fresh(b, base);
        if (s < 0 || gb_push(b, s, x.type, x.val) || gb_push(b, s, GE_REF, s) ||
            gb_push(b, s, GE_ALT, 0) || gb_push(b, rule, GE_REF, s))
            return oom(p);
        return 0;
    }
    int prev = -1;
    for (long k = min; k < max; k++) { /* o_k ::= x o_(k-1) | */
        int o = gb_fresh(b, base);
        if (o < 0 || gb_push(b, o, x.type, x.val)) return oom(p);
        if (prev >= 0 && gb_push(b, o, GE_REF, prev)) return oom(p);
        if (gb_push(b, o, GE_ALT, 0)) return oom(p);
        prev = o;
    }
    if (prev >= 0 && gb_push(b, rule, GE_REF, prev)) return oom(p);
    return 0;
}

static int postfix(parser *p, int rule, int start, const char *base) {
    gbuild *b = p->b;
    size_t at = p->i;
    int c = peek(p);
    long min = 0, max = -1;
    p->i++;
    if (c == '+')
        min = 1;
    else if (c == '?')
        max = 1;
    else if (c == '{') {
        skip_space(p, 0);
        min = parse_int(p);
        skip_space(p, 0);
        if (min < 0) return perr(p, at, "expected a number after '{'");
        max = min;
        if (peek(p) == ',') {
            p->i++;
            skip_space(p, 0);
            max = peek(p) == '}' ? -1 : parse_int(p);
            skip_space(p, 0);
            if (max == -1 && peek(p) != '}') return perr(p, at, "expected a number after ','");
        }
        if (peek(p) != '}') return perr(p, at, "expected '}'");
        p->i++;
        if (min > G_MAX_REPEAT || max > G_MAX_REPEAT)
            return perr(p, at, "repetition count above %d", G_MAX_REPEAT);
        if (max >= 0 && max < min) return perr(p, at, "repetition {m,n} with n < m");
    }
    if (start < 0) return perr(p, at, "'%c' follows nothing it could repeat", c);
    if (b->rule_n[rule] - start != 1) { /* several elements: make them one rule */
        int sub = gb_fresh(b, base);
        if (sub < 0) return oom(p);
        for (int k = start; k < b->rule_n[rule]; k++)
            if (gb_push(b, sub, b->rule[rule][k].type, b->rule[rule][k].val)) return oom(p);
        b->rule_n[rule] = start;
        if (gb_push(b, rule, GE_REF, sub)) return oom(p);
    }
    return repeat(p, rule, min, max, base);
}

static int parse_sequence(parser *p, int rule, int nested) {
    const char *base = p->b->name[rule];
    char basebuf[64];
    snprintf(basebuf, sizeof basebuf, "%s", base);
    int last = -1;
    for (;;) {
        int c = peek(p), start = p->b->rule_n[rule];
        if (c == '"') {
            if (parse_literal(p, rule)) return p->rc;
            last = start;
        } else if (c == '[') {
            if (parse_class(p, rule, basebuf)) return p->rc;
            last = start;
        } else if (c == '.') {
            p->i++;
            uint32_t lo = 0, hi = 0x10FFFF;
            if (gb_push_class(p->b, rule, &lo, &hi, 1, basebuf)) return oom(p);
            last = start;
        } else if (c == '(') {
            size_t at = p->i++;
            if (++p->depth > 200) return perr(p, at, "groups nested too deeply");
            int sub = gb_fresh(p->b, basebuf);
            if (sub < 0) return oom(p);
            skip_space(p, 1);
            if (parse_alternates(p, sub, 1)) return p->rc;
            if (peek(p) != ')') return perr(p, at, "unclosed '('");
            p->i++;
            p->depth--;
            if (gb_push(p->b, rule, GE_REF, sub)) return oom(p);
            last = start;
        } else if (c >= 0 && is_name(c)) {
            size_t at = p->i;
            while (is_name(peek(p))) p->i++;
            int r = gb_rule(p->b, p->s + at, p->i - at);
            if (r < 0) return oom(p);
            if (!p->b->first_line[r]) { /* where to point if it stays undefined */
                int line = 1, col = 1;
                for (size_t k = 0; k < at; k++) {
                    if (p->s[k] == '\n') {
                        line++;
                        col = 1;
                    } else
                        col++;
                }
                p->b->first_line[r] = line;
                p->b->first_col[r] = col;
            }
            if (gb_push(p->b, rule, GE_REF, r)) return oom(p);
            last = start;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (postfix(p, rule, last, basebuf)) return p->rc;
            last = -1; /* x** or x?+ would repeat something that can be empty */
        } else
            break;
        skip_space(p, nested);
    }
    return 0;
}

static int parse_alternates(parser *p, int rule, int nested) {
    for (;;) {
        if (parse_sequence(p, rule, nested)) return p->rc;
        size_t save = p->i;
        if (!nested) skip_space(p, 1); /* a top-level rule may go on with '|' on the next line */
        if (peek(p) != '|') {
            p->i = save;
            return 0;
        }
        p->i++;
        if (gb_push(p->b, rule, GE_ALT, 0)) return oom(p);
        skip_space(p, 1);
    }
}

int srp_grammar_gbnf(const char *src, size_t len, srp_grammar **out, srp_err *e) {
    gbuild b;
    gb_init(&b);
    parser p = { .s = src, .n = len, .b = &b, .e = e };
    *out = NULL;
    skip_space(&p, 1);
    while (p.i < p.n && !p.rc) {
        size_t at = p.i;
        while (is_name(peek(&p))) p.i++;
        if (p.i == at) {
            perr(&p, at, "expected a rule name");
            break;
        }
        int r = gb_rule(&b, src + at, p.i - at);
        if (r < 0) {
            oom(&p);
            break;
        }
        skip_space(&p, 0);
        if (p.i + 3 > p.n || memcmp(src + p.i, "::=", 3)) {
            perr(&p, p.i, "expected '::=' after rule name '%s'", b.name[r]);
            break;
        }
        if (b.defined[r]) {
            perr(&p, at, "rule '%s' is defined twice", b.name[r]);
            break;
        }
        b.defined[r] = 1;
        p.i += 3;
        skip_space(&p, 1);
        if (parse_alternates(&p, r, 0)) break;
        skip_space(&p, 0);
        if (p.i < p.n && src[p.i] != '\n') {
            perr(&p, p.i, "unexpected '%c'", src[p.i]);
            break;
        }
        skip_space(&p, 1);
    }
    if (p.rc) {
        gb_free(&b);
        return p.rc;
    }
    int root = -1;
    for (int r = 0; r < b.n_rules; r++)
        if (!strcmp(b.name[r], "root") && b.defined[r]) root = r;
    if (root < 0) {
        gb_free(&b);
        return srp_err_set(e, SRP_EFORMAT, "grammar: no 'root' rule");
    }
    return gb_finish(&b, root, out, e);
}
