/* Lexer: the template's text is first rewritten as transformers renders it (trim_blocks,
 * lstrip_blocks, the transformers-only {% generation %} tag removed), then cut into tokens. Both
 * steps follow the reference lexer rule for rule, including its quirks (text is only recognised
 * after a closing tag, `-` is unary after an operator, `}}` inside a dict literal is two braces),
 * since any difference changes the rendered prompt. Every token keeps the byte offset it had in
 * the original template, so errors can name a line and column there. */
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

void jinja_line_col(const char *src, size_t len, uint32_t pos, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < len && i < pos;) {
        size_t adv;
        uint32_t cp = ju_decode(src + i, len - i, &adv);
        if (cp == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
        i += adv;
    }
}

/* A string with, for each byte, its offset in the original template. */
typedef struct {
    char *s;
    uint32_t *map;
    size_t n;
} mapped;

static void mapped_free(mapped *m) {
    free(m->s);
    free(m->map);
}

static int mapped_alloc(mapped *m, size_t n) {
    m->s = malloc(n + 1);
    m->map = malloc((n + 1) * sizeof *m->map);
    m->n = 0;
    return m->s && m->map ? 0 : -1;
}

static void keep(mapped *out, const mapped *in, size_t i) {
    out->s[out->n] = in->s[i];
    out->map[out->n++] = in->map[i];
}

static bool line_terminator_before(const mapped *m, size_t i) {
    if (i == 0) return true;
    char c = m->s[i - 1];
    if (c == '\n' || c == '\r') return true;
    /* U+2028 and U+2029 end lines for JavaScript's multiline ^ too. */
    return i >= 3 && (unsigned char)m->s[i - 3] == 0xE2 && (unsigned char)m->s[i - 2] == 0x80 &&
           ((unsigned char)c == 0xA8 || (unsigned char)c == 0xA9);
}

/* lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1" */
static void lstrip_blocks(const mapped *in, mapped *out) {
    for (size_t i = 0; i < in->n;) {
        if (line_terminator_before(in, i)) {
            size_t j = i;
            while (j < in->n && (in->s[j] == ' ' || in->s[j] == '\t')) j++;
            if (j + 1 < in->n && in->s[j] == '{' && strchr("#%-", in->s[j + 1]) && in->s[j + 1]) {
                i = j; /* drop the run of blanks */
                keep(out, in, i++);
                keep(out, in, i++);
                continue;
            }
        }
        keep(out, in, i++);
    }
}

/* trim_blocks: /([#%-]})\n/g -> "$1" */
static void trim_blocks(const mapped *in, mapped *out) {
    for (size_t i = 0; i < in->n; i++) {
        if (in->s[i] == '\n' && i >= 2 && in->s[i - 1] == '}' && in->s[i - 2] &&
            strchr("#%-", in->s[i - 2]))
            continue;
        keep(out, in, i);
    }
}

static size_t skip_spaces(const char *s, size_t n, size_t i) {
    size_t k;
    while (i < n && (k = ju_space_at(s + i, n - i)) > 0) i += k;
    return i;
}

/* If a {% generation %} / {% endgeneration %} tag starts at i, returns its end and sets the
 * whitespace-control flags. */
static size_t generation_tag(const char *s, size_t n, size_t i, bool *lstrip, bool *rstrip) {
    if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return 0;
    size_t j = i + 2;
    *lstrip = j < n && s[j] == '-';
    if (*lstrip) j++;
    j = skip_spaces(s, n, j);
    if (n - j >= 3 && memcmp(s + j, "end", 3) == 0) j += 3;
    if (n - j < 10 || memcmp(s + j, "generation", 10) != 0) return 0;
    j = skip_spaces(s, n, j + 10);
    *rstrip = j < n && s[j] == '-';
    if (*rstrip) j++;
    if (n - j < 2 || s[j] != '%' || s[j + 1] != '}') return 0;
    return j + 2;
}

/* /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs: the tag goes, and the whitespace around
 * it too where the tag has a '-' on that side. */
static void strip_generation(const mapped *in, mapped *out) {
    size_t last = 0; /* end of the previous match: a match's leading blanks start after it */
    size_t kept_from = 0;
    for (size_t i = 0; i < in->n; i++) {
        bool ls, rs;
        size_t end = generation_tag(in->s, in->n, i, &ls, &rs);
        if (!end) continue;
        size_t before = i;
        size_t k;
        while (before > last && (k = ju_space_before(in->s + last, before - last)) > 0) before -= k;
        size_t after = skip_spaces(in->s, in->n, end);
        for (size_t p = kept_from; p < (ls ? before : i); p++) keep(out, in, p);
        if (!rs)
            for (size_t p = end; p < after; p++) keep(out, in, p);
        kept_from = after;
        last = after;
        i = after - 1;
    }
    for (size_t p = kept_from; p < in->n; p++) keep(out, in, p);
}

/* ---- tokens ---- */

typedef struct lexer {
    const char *s;
    size_t n, i;
    const uint32_t *map;
    jtoks *out;
    jarena *a;
    int curly;
    const char *orig;
    size_t origlen;
    srp_err *e;
} lexer;

static int lex_error(lexer *L, const char *msg) {
    int line, col;
    uint32_t pos = L->i < L->n ? L->map[L->i] : (uint32_t)L->origlen;
    jinja_line_col(L->orig, L->origlen, pos, &line, &col);
    return srp_err_set(L->e, SRP_EFORMAT, "chat template: line %d, column %d: %s", line, col, msg);
}

static int push(lexer *L, int type, const char *s, size_t n, size_t at) {
    jtoks *t = L->out;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        jtok *v = realloc(t->v, cap * sizeof *v);
        if (!v) return srp_err_set(L->e, SRP_ENOMEM, "chat template: out of memory");
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = (jtok){
        .type = (uint8_t)type, .s = s, .n = n, .pos = at < L->n ? L->map[at] : (uint32_t)L->origlen
    };
    return 0;
}

static int last_type(const lexer *L) {
    return L->out->n ? L->out->v[L->out->n - 1].type : -1;
}

static void strip_trailing_whitespace(lexer *L) {
    jtoks *t = L->out;
    if (!t->n || t->v[t->n - 1].type != JT_TEXT) return;
    jtok *k = &t->v[t->n - 1];
    ju_trim(&k->s, &k->n, false, true);
    if (k->n == 0) t->n--;
}

static void skip_leading_whitespace(lexer *L) {
    L->i = skip_spaces(L->s, L->n, L->i);
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
static bool is_word(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* consumeWhile for digits and words: the reference fails when a token runs into the end. */
static int consume_class(lexer *L, bool word, size_t *start) {
    *start = L->i;
    while (L->i < L->n && (word ? is_word(L->s[L->i]) : is_digit(L->s[L->i]))) {
        L->i++;
        if (L->i >= L->n) return lex_error(L, "Unexpected end of input");
    }
    return 0;
}

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int lex_string(lexer *L, size_t at) {
    char quote = L->s[L->i++];
    jbuf b = { 0 };
    int rc = 0;
    for (;;) {
        if (L->i >= L->n) {
            rc = lex_error(L, "Unexpected end of input");
            goto out;
        }
        char ch = L->s[L->i];
        if (ch == quote) break;
        if (ch == '\\') {
            if (++L->i >= L->n) {
                rc = lex_error(L, "Unexpected end of input");
                goto out;
            }
            char esc = L->s[L->i++];
            if (esc == 'x' || esc == 'u') {
                int len = esc == 'x' ? 2 : 4;
                uint32_t cp = 0;
                for (int k = 0; k < len; k++) {
                    int h = L->i + (size_t)k < L->n ? hexval(L->s[L->i + (size_t)k]) : -1;
                    if (h < 0) {
                        rc = lex_error(L, "Invalid hexadecimal escape sequence");
                        goto out;
                    }
                    cp = cp << 4 | (uint32_t)h;
                }
                L->i += (size_t)len;
                /* "\ud83d\ude00" is one character in a JavaScript string. */
                if (cp >= 0xD800 && cp < 0xDC00 && L->n - L->i >= 6 && L->s[L->i] == '\\' &&
                    L->s[L->i + 1] == 'u') {
                    uint32_t lo = 0;
                    int k;
                    for (k = 0; k < 4; k++) {
                        int h = hexval(L->s[L->i + 2 + (size_t)k]);
                        if (h < 0) break;
                        lo = lo << 4 | (uint32_t)h;
                    }
                    if (k == 4 && lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        L->i += 6;
                    }
                }
                char enc[4];
                if (jbuf_put(&b, enc, ju_encode(cp, enc))) goto oom;
                continue;
            }
            const char *from = "ntrbfv'\"\\", *to = "\n\t\r\b\f\v'\"\\";
            const char *p = strchr(from, esc);
            if (!p || !esc) {
                rc = lex_error(L, "Unexpected escaped character");
                goto out;
            }
            if (jbuf_putc(&b, to[p - from])) goto oom;
            continue;
        }
        if (jbuf_putc(&b, ch)) goto oom;
        L->i++;
        if (L->i >= L->n) {
            rc = lex_error(L, "Unexpected end of input");
            goto out;
        }
    }
    L->i++; /* closing quote */
    {
        char *s = jarena_strdup(L->a, b.p ? b.p : "", b.n);
        if (!s) goto oom;
        rc = push(L, JT_STR, s, b.n, at);
    }
    goto out;
oom:
    rc = srp_err_set(L->e, SRP_ENOMEM, "chat template: out of memory");
out:
    jbuf_free(&b);
    return rc;
}

static const struct {
    const char *seq;
    uint8_t len, type;
} table[] = {
    { "{%", 2, JT_OPEN_STMT },  { "%}", 2, JT_CLOSE_STMT }, { "{{", 2, JT_OPEN_EXPR },
    { "}}", 2, JT_CLOSE_EXPR }, { "(", 1, JT_LPAREN },      { ")", 1, JT_RPAREN },
    { "{", 1, JT_LBRACE },      { "}", 1, JT_RBRACE },      { "[", 1, JT_LBRACKET },
    { "]", 1, JT_RBRACKET },    { ",", 1, JT_COMMA },       { ".", 1, JT_DOT },
    { ":", 1, JT_COLON },       { "|", 1, JT_PIPE },        { "<=", 2, JT_CMP },
    { ">=", 2, JT_CMP },        { "==", 2, JT_CMP },        { "!=", 2, JT_CMP },
    { "<", 1, JT_CMP },         { ">", 1, JT_CMP },         { "+", 1, JT_ADD },
    { "-", 1, JT_ADD },         { "~", 1, JT_ADD },         { "**", 2, JT_POW },
    { "*", 1, JT_MUL },         { "//", 2, JT_MUL },        { "/", 1, JT_MUL },
    { "%", 1, JT_MUL },         { "=", 1, JT_EQUALS },
};

static bool at(const lexer *L, const char *seq) {
    size_t k = strlen(seq);
    return L->n - L->i >= k && memcmp(L->s + L->i, seq, k) == 0;
}

static int lex_tokens(lexer *L) {
    int rc;
    while (L->i < L->n) {
        int lt = last_type(L);
        if (lt < 0 || lt == JT_CLOSE_STMT || lt == JT_CLOSE_EXPR || lt == JT_COMMENT) {
            size_t start = L->i;
            while (L->i < L->n && !(L->s[L->i] == '{' && L->i + 1 < L->n &&
                                    strchr("%{#", L->s[L->i + 1]) && L->s[L->i + 1]))
                L->i++;
            if (L->i > start) {
                if ((rc = push(L, JT_TEXT, L->s + start, L->i - start, start))) return rc;
                continue;
            }
        }
        if (at(L, "{#")) {
            size_t start = L->i;
            L->i += 2;
            bool strip_before = L->i < L->n && L->s[L->i] == '-';
            if (strip_before) L->i++;
            size_t cstart = L->i;
            while (!(L->i + 1 < L->n && L->s[L->i] == '#' && L->s[L->i + 1] == '}')) {
                if (L->i + 2 >= L->n) return lex_error(L, "Missing end of comment tag");
                L->i++;
            }
            size_t clen = L->i - cstart;
            bool strip_after = clen > 0 && L->s[cstart + clen - 1] == '-';
            if (strip_after) clen--;
            if (strip_before) strip_trailing_whitespace(L);
            if ((rc = push(L, JT_COMMENT, L->s + cstart, clen, start))) return rc;
            L->i += 2;
            if (strip_after) skip_leading_whitespace(L);
            continue;
        }
        if (at(L, "{%-") || at(L, "{{-")) {
            bool stmt = L->s[L->i + 1] == '%';
            strip_trailing_whitespace(L);
            if ((rc = push(L, stmt ? JT_OPEN_STMT : JT_OPEN_EXPR, stmt ? "{%" : "{{", 2, L->i)))
                return rc;
            if (!stmt) L->curly = 0;
            L->i += 3;
            continue;
        }
        size_t k;
        while (L->i < L->n && (k = ju_space_at(L->s + L->i, L->n - L->i)) > 0) {
            L->i += k;
            if (L->i >= L->n) return lex_error(L, "Unexpected end of input");
        }
        if (at(L, "-%}") || at(L, "-}}")) {
            bool stmt = L->s[L->i + 1] == '%';
            if ((rc = push(L, stmt ? JT_CLOSE_STMT : JT_CLOSE_EXPR, stmt ? "%}" : "}}", 2, L->i)))
                return rc;
            L->i += 3;
            skip_leading_whitespace(L);
            continue;
        }
        size_t start = L->i;
        char ch = L->s[L->i];
        if (ch == '-' || ch == '+') {
            lt = last_type(L);
            if (lt == JT_TEXT || lt < 0) return lex_error(L, "Unexpected character");
            if (!(lt == JT_IDENT || lt == JT_NUM || lt == JT_STR || lt == JT_RPAREN ||
                  lt == JT_RBRACKET)) {
                /* A sign: glued to a following number, else a unary operator. */
                L->i++;
                size_t d0;
                if ((rc = consume_class(L, false, &d0))) return rc;
                if (L->i > d0 && L->i + 1 < L->n && L->s[L->i] == '.' && is_digit(L->s[L->i + 1])) {
                    L->i++;
                    size_t f0;
                    if ((rc = consume_class(L, false, &f0))) return rc;
                }
                bool num = L->i > d0;
                if ((rc = push(L, num ? JT_NUM : JT_UNARY, L->s + start, L->i - start, start)))
                    return rc;
                continue;
            }
        }
        bool matched = false;
        for (size_t t = 0; t < sizeof table / sizeof table[0]; t++) {
            if (table[t].type == JT_CLOSE_EXPR && L->curly > 0) continue;
            if (!at(L, table[t].seq)) continue;
            if ((rc = push(L, table[t].type, L->s + L->i, table[t].len, start))) return rc;
            if (table[t].type == JT_OPEN_EXPR)
                L->curly = 0;
            else if (table[t].type == JT_LBRACE)
                L->curly++;
            else if (table[t].type == JT_RBRACE)
                L->curly--;
            L->i += table[t].len;
            matched = true;
            break;
        }
        if (matched) continue;
        if (ch == '\'' || ch == '"') {
            if ((rc = lex_string(L, start))) return rc;
            continue;
        }
        if (is_digit(ch)) {
            size_t d0;
            if ((rc = consume_class(L, false, &d0))) return rc;
            if (last_type(L) != JT_DOT && L->i + 1 < L->n && L->s[L->i] == '.' &&
                is_digit(L->s[L->i + 1])) {
                L->i++;
                size_t f0;
                if ((rc = consume_class(L, false, &f0))) return rc;
            }
            if ((rc = push(L, JT_NUM, L->s + start, L->i - start, start))) return rc;
            continue;
        }
        if (is_word(ch)) {
            size_t w0;
            if ((rc = consume_class(L, true, &w0))) return rc;
            if ((rc = push(L, JT_IDENT, L->s + start, L->i - start, start))) return rc;
            continue;
        }
        return lex_error(L, "Unexpected character");
    }
    return 0;
}

int jinja_lex(const char *src, size_t len, jarena *a, jtoks *out, srp_err *e) {
    if (len > JINJA_MAX_TEMPLATE)
        return srp_err_set(e, SRP_EFORMAT, "chat template: longer than %u bytes",
                           JINJA_MAX_TEMPLATE);
    mapped m[2] = { { 0 }, { 0 } };
    int rc = 0;
    if (mapped_alloc(&m[0], len) || mapped_alloc(&m[1], len)) {
        rc = srp_err_set(e, SRP_ENOMEM, "chat template: out of memory");
        goto out;
    }
    /* Jinja drops a single trailing newline. */
    size_t n = len && src[len - 1] == '\n' ? len - 1 : len;
    memcpy(m[0].s, src, n);
    for (size_t i = 0; i < n; i++) m[0].map[i] = (uint32_t)i;
    m[0].n = n;
    lstrip_blocks(&m[0], &m[1]);
    m[0].n = 0;
    trim_blocks(&m[1], &m[0]);
    m[1].n = 0;
    strip_generation(&m[0], &m[1]);
    /* The tokens point into this text, so it lives in the template's arena. */
    char *text = jarena_strdup(a, m[1].s, m[1].n);
    if (!text) {
        rc = srp_err_set(e, SRP_ENOMEM, "chat template: out of memory");
        goto out;
    }
    lexer L = { .s = text,
                .n = m[1].n,
                .map = m[1].map,
                .out = out,
                .a = a,
                .orig = src,
                .origlen = len,
                .e = e };
    rc = lex_tokens(&L);
out:
    mapped_free(&m[0]);
    mapped_free(&m[1]);
    return rc;
}
