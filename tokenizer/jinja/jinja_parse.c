/* Parser: tokens to a syntax tree, with the reference parser's grammar and precedence (lowest
 * first): a if b else c; or; and; not; comparisons and `in` (one level, left to right); + - ~;
 * * / // %; ** (left-associative, as in Jinja); `is` tests; `|` filters; unary signs; calls,
 * attributes and subscripts; primaries. One extension: tests may take arguments
 * (`is divisibleby(3)`, `is equalto 2`), which the reference rejects.
 *
 * Recursion is bounded (JINJA_MAX_PARSE_DEPTH) and so is the height of the tree, since the
 * evaluator recurses over it. */
#include <stdio.h>
#include <string.h>

#include "jinja_internal.h"

#define MAX_TREE_HEIGHT 1000

typedef struct parser {
    const jtok *t;
    size_t n, cur;
    jarena *a;
    const char *src;
    size_t srclen;
    int depth;
    int rc;
    srp_err *e;
} parser;

static jnode *parse_expression(parser *P);
static jnode *parse_primary(parser *P);
static jnode *parse_any(parser *P);
static jnode *parse_call_expression(parser *P, jnode *callee);
static jnode *parse_member_expression(parser *P, jnode *object);

static jnode *fail(parser *P, const char *fmt, const char *arg) {
    if (P->rc) return NULL;
    int line, col;
    uint32_t pos = P->cur < P->n ? P->t[P->cur].pos : (uint32_t)P->srclen;
    jinja_line_col(P->src, P->srclen, pos, &line, &col);
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    P->rc = srp_err_set(P->e, SRP_EFORMAT, "chat template: line %d, column %d: %s", line, col, msg);
    return NULL;
}

static jnode *oom(parser *P) {
    if (!P->rc) P->rc = srp_err_set(P->e, SRP_ENOMEM, "chat template: out of memory");
    return NULL;
}

static const jtok *peek(const parser *P, size_t k) {
    return P->cur + k < P->n ? &P->t[P->cur + k] : NULL;
}

static bool is(const parser *P, int type) {
    const jtok *t = peek(P, 0);
    return t && t->type == type;
}

static bool tok_is(const jtok *t, const char *s) {
    size_t n = strlen(s);
    return t && t->n == n && memcmp(t->s, s, n) == 0;
}

static bool is_ident(const parser *P, const char *name) {
    const jtok *t = peek(P, 0);
    return t && t->type == JT_IDENT && tok_is(t, name);
}

static bool is_statement(const parser *P, const char *const *names) {
    const jtok *a = peek(P, 0), *b = peek(P, 1);
    if (!a || a->type != JT_OPEN_STMT || !b || b->type != JT_IDENT) return false;
    for (; *names; names++)
        if (tok_is(b, *names)) return true;
    return false;
}

static bool expect(parser *P, int type, const char *what) {
    if (is(P, type)) {
        P->cur++;
        return true;
    }
    fail(P, "expected %s", what);
    return false;
}

static bool expect_ident(parser *P, const char *name) {
    if (is_ident(P, name)) {
        P->cur++;
        return true;
    }
    fail(P, "expected %s", name);
    return false;
}

static jnode *mk(parser *P, int kind, uint32_t pos) {
    jnode *n = jarena_alloc(P->a, sizeof *n);
    if (!n) return oom(P);
    n->kind = (uint8_t)kind;
    n->pos = pos;
    return n;
}

static uint32_t here(const parser *P) {
    return P->cur < P->n ? P->t[P->cur].pos : (uint32_t)P->srclen;
}

/* Records the node's height and refuses trees the evaluator could not walk safely. */
static jnode *done(parser *P, jnode *n) {
    if (!n) return NULL;
    uint32_t h = 0;
    const jnode *kids[3] = { n->a, n->b, n->c };
    for (int i = 0; i < 3; i++)
        if (kids[i] && kids[i]->height > h) h = kids[i]->height;
    for (size_t i = 0; i < n->n; i++)
        if (n->list[i] && n->list[i]->height > h) h = n->list[i]->height;
    for (size_t i = 0; i < n->n2; i++)
        if (n->list2[i] && n->list2[i]->height > h) h = n->list2[i]->height;
    n->height = h + 1;
    if (n->height > MAX_TREE_HEIGHT) return fail(P, "template nested too deeply", NULL);
    return n;
}

/* A growable list of nodes, copied into the arena when complete. */
typedef struct nlist {
    jnode **v;
    size_t n, cap;
} nlist;

static bool nl_push(parser *P, nlist *l, jnode *x) {
    if (!x) return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jnode **v = jarena_alloc(P->a, cap * sizeof *v);
        if (!v) return oom(P), false;
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static bool enter(parser *P) {
    if (++P->depth > JINJA_MAX_PARSE_DEPTH) {
        fail(P, "template nested too deeply", NULL);
        return false;
    }
    return true;
}

/* Statements up to one of `stop` (not consumed). */
static bool parse_until(parser *P, const char *const *stop, nlist *out) {
    while (!is_statement(P, stop)) {
        if (P->cur >= P->n) {
            fail(P, "unexpected end of template, expected {%% %s %%}", stop[0]);
            return false;
        }
        if (!nl_push(P, out, parse_any(P))) return false;
    }
    return true;
}

/* ---- expressions ---- */

static jnode *parse_expression_sequence(parser *P, bool primary) {
    uint32_t pos = here(P);
    nlist l = { 0 };
    if (!nl_push(P, &l, primary ? parse_primary(P) : parse_expression(P))) return NULL;
    bool tuple = is(P, JT_COMMA);
    while (tuple) {
        P->cur++;
        if (!nl_push(P, &l, primary ? parse_primary(P) : parse_expression(P))) return NULL;
        if (!is(P, JT_COMMA)) break;
    }
    if (!tuple) return l.v[0];
    jnode *n = mk(P, JN_TUPLE, pos);
    if (!n) return NULL;
    n->list = l.v;
    n->n = l.n;
    return done(P, n);
}

static jnode *parse_args(parser *P, bool params, nlist *out) {
    if (!expect(P, JT_LPAREN, "'(' for an argument list")) return NULL;
    bool saw_keyword = false, saw_spread = false;
    nlist names = { 0 };
    while (!is(P, JT_RPAREN)) {
        if (P->cur >= P->n) return fail(P, "unexpected end of template in an argument list", NULL);
        uint32_t pos = here(P);
        bool kw_spread = is(P, JT_POW);
        bool spread = is(P, JT_MUL) && tok_is(peek(P, 0), "*");
        if (params && (kw_spread || spread))
            return fail(P, "Argument unpacking is not allowed in parameter declarations", NULL);
        if (kw_spread) {
            P->cur++;
            jnode *n = mk(P, JN_KWSPREAD, pos);
            if (!n || !(n->a = parse_expression(P)) || !nl_push(P, out, done(P, n))) return NULL;
            if (is(P, JT_COMMA)) P->cur++;
            if (!is(P, JT_RPAREN))
                return fail(P, "`**` must be applied to the final argument", NULL);
            break;
        }
        jnode *arg;
        if (spread) {
            if (saw_spread) return fail(P, "Only one `*` argument unpacking is allowed", NULL);
            saw_spread = true;
            P->cur++;
            arg = mk(P, JN_SPREAD, pos);
            if (!arg || !(arg->a = parse_expression(P)) || !done(P, arg)) return NULL;
        } else {
            arg = parse_expression(P);
            if (!arg) return NULL;
            if (is(P, JT_EQUALS)) {
                P->cur++;
                if (arg->kind != JN_IDENT)
                    return fail(P, "Expected identifier for %s",
                                params ? "parameter declaration" : "keyword argument");
                jnode *kw = mk(P, JN_KWARG, arg->pos);
                if (!kw) return NULL;
                kw->s = arg->s;
                kw->slen = arg->slen;
                if (!(kw->a = parse_expression(P)) || !done(P, kw)) return NULL;
                arg = kw;
            }
            if (params) {
                if (arg->kind != JN_IDENT && arg->kind != JN_KWARG)
                    return fail(P, "Expected identifier for parameter declaration", NULL);
                for (size_t i = 0; i < names.n; i++)
                    if (names.v[i]->slen == arg->slen && !memcmp(names.v[i]->s, arg->s, arg->slen))
                        return fail(P, "Duplicate parameter name", NULL);
                if (!nl_push(P, &names, arg)) return NULL;
            }
            if (arg->kind == JN_KWARG)
                saw_keyword = true;
            else if (saw_keyword)
                return fail(P, "%s",
                            params ? "Non-default argument follows default argument"
                                   : "Positional arguments must come before keyword arguments");
            else if (saw_spread)
                return fail(P, "Positional arguments must not follow `*` argument unpacking", NULL);
        }
        if (!nl_push(P, out, arg)) return NULL;
        if (is(P, JT_COMMA)) P->cur++;
    }
    if (!expect(P, JT_RPAREN, "')' closing the argument list")) return NULL;
    return (jnode *)P; /* any non-NULL marks success */
}

static jnode *parse_call_expression(parser *P, jnode *callee) {
    if (!enter(P)) return NULL;
    jnode *n = mk(P, JN_CALL, callee->pos);
    nlist args = { 0 };
    if (!n || !parse_args(P, false, &args)) return NULL;
    n->a = callee;
    n->list = args.v;
    n->n = args.n;
    jnode *e = parse_member_expression(P, done(P, n));
    if (e && is(P, JT_LPAREN)) e = parse_call_expression(P, e);
    P->depth--;
    return e;
}

static jnode *parse_subscript(parser *P) {
    /* [expr], or a slice [a:b:c] with any part left out */
    jnode *parts[3] = { 0 };
    size_t k = 0;
    bool slice = false;
    jnode *first = NULL;
    uint32_t pos = here(P);
    while (!is(P, JT_RBRACKET)) {
        if (P->cur >= P->n) return fail(P, "unexpected end of template in a subscript", NULL);
        jnode *x = NULL;
        if (is(P, JT_COLON)) {
            P->cur++;
            slice = true;
        } else {
            if (!(x = parse_expression(P))) return NULL;
            if (is(P, JT_COLON)) {
                P->cur++;
                slice = true;
            }
        }
        if (k == 0) first = x;
        if (k < 3) parts[k] = x;
        k++;
    }
    if (k == 0) return fail(P, "Expected at least one argument for member/slice expression", NULL);
    if (!slice) return first;
    if (k > 3) return fail(P, "Expected 0-3 arguments for slice expression", NULL);
    jnode *n = mk(P, JN_SLICE, pos);
    if (!n) return NULL;
    n->a = parts[0];
    n->b = parts[1];
    n->c = parts[2];
    return done(P, n);
}

static jnode *parse_member_expression(parser *P, jnode *object) {
    while (object && (is(P, JT_DOT) || is(P, JT_LBRACKET))) {
        bool computed = is(P, JT_LBRACKET);
        uint32_t pos = here(P);
        P->cur++;
        jnode *prop;
        if (computed) {
            if (!enter(P)) return NULL;
            prop = parse_subscript(P);
            P->depth--;
            if (!prop || !expect(P, JT_RBRACKET, "']'")) return NULL;
        } else {
            prop = parse_primary(P);
            if (!prop) return NULL;
            if (prop->kind != JN_IDENT && prop->kind != JN_INT)
                return fail(P, "Expected identifier or integer following dot operator", NULL);
        }
        jnode *m = mk(P, JN_MEMBER, pos);
        if (!m) return NULL;
        m->a = object;
        m->b = prop;
        m->flag = computed;
        object = done(P, m);
    }
    return object;
}

static jnode *parse_call_member(parser *P) {
    jnode *m = parse_member_expression(P, parse_primary(P));
    if (m && is(P, JT_LPAREN)) return parse_call_expression(P, m);
    return m;
}

static jnode *parse_unary_sign(parser *P) {
    const jtok *t = peek(P, 0);
    if (t && (t->type == JT_UNARY || t->type == JT_ADD) && (tok_is(t, "-") || tok_is(t, "+"))) {
        if (!enter(P)) return NULL;
        jnode *n = mk(P, JN_UNARY, t->pos);
        if (!n) return NULL;
        n->op = tok_is(t, "-") ? OP_SUB : OP_ADD;
        P->cur++;
        n->a = parse_unary_sign(P);
        P->depth--;
        return n->a ? done(P, n) : NULL;
    }
    return parse_call_member(P);
}

static jnode *parse_filter_expression(parser *P) {
    jnode *operand = parse_unary_sign(P);
    while (operand && is(P, JT_PIPE)) {
        uint32_t pos = here(P);
        P->cur++;
        jnode *f = parse_primary(P);
        if (!f) return NULL;
        if (f->kind != JN_IDENT) return fail(P, "Expected identifier for the filter", NULL);
        if (is(P, JT_LPAREN) && !(f = parse_call_expression(P, f))) return NULL;
        jnode *n = mk(P, JN_FILTER, pos);
        if (!n) return NULL;
        n->a = operand;
        n->b = f;
        operand = done(P, n);
    }
    return operand;
}

/* Tests that take one argument may take it without parentheses (`is divisibleby 3`). */
static bool test_takes_bare_argument(const jnode *name) {
    static const char *const with_arg[] = { "divisibleby", "equalto", "eq", "ne", "sameas",
                                            "lt",          "le",      "gt", "ge", "lessthan",
                                            "greaterthan", "in",      NULL };
    for (const char *const *w = with_arg; *w; w++)
        if (name->slen == strlen(*w) && memcmp(name->s, *w, name->slen) == 0) return true;
    return false;
}

static jnode *parse_test_expression(parser *P) {
    jnode *operand = parse_filter_expression(P);
    while (operand && is_ident(P, "is")) {
        uint32_t pos = here(P);
        P->cur++;
        bool negate = is_ident(P, "not");
        if (negate) P->cur++;
        jnode *name = parse_primary(P);
        if (!name) return NULL;
        if (name->kind != JN_IDENT) return fail(P, "Expected identifier for the test", NULL);
        jnode *n = mk(P, JN_TEST, pos);
        if (!n) return NULL;
        n->a = operand;
        n->s = name->s;
        n->slen = name->slen;
        n->flag = negate;
        nlist args = { 0 };
        const jtok *t = peek(P, 0);
        if (is(P, JT_LPAREN)) {
            if (!parse_args(P, false, &args)) return NULL;
        } else if (t && test_takes_bare_argument(name) &&
                   (t->type == JT_NUM || t->type == JT_STR ||
                    (t->type == JT_IDENT && !tok_is(t, "and") && !tok_is(t, "or") &&
                     !tok_is(t, "else") && !tok_is(t, "if") && !tok_is(t, "not") &&
                     !tok_is(t, "in") && !tok_is(t, "is")))) {
            if (!nl_push(P, &args, parse_member_expression(P, parse_primary(P)))) return NULL;
        }
        n->list = args.v;
        n->n = args.n;
        operand = done(P, n);
    }
    return operand;
}

static jnode *binary(parser *P, int op, uint32_t pos, jnode *l, jnode *r) {
    if (!l || !r) return NULL;
    jnode *n = mk(P, JN_BINARY, pos);
    if (!n) return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return done(P, n);
}

static jnode *parse_power(parser *P) {
    jnode *left = parse_test_expression(P);
    while (left && is(P, JT_POW)) {
        uint32_t pos = here(P);
        P->cur++;
        left = binary(P, OP_POW, pos, left, parse_test_expression(P));
    }
    return left;
}

static jnode *parse_multiplicative(parser *P) {
    jnode *left = parse_power(P);
    while (left && is(P, JT_MUL)) {
        const jtok *t = peek(P, 0);
        int op = tok_is(t, "*")    ? OP_MUL
                 : tok_is(t, "/")  ? OP_DIV
                 : tok_is(t, "//") ? OP_FLOORDIV
                                   : OP_MOD;
        P->cur++;
        left = binary(P, op, t->pos, left, parse_power(P));
    }
    return left;
}

static jnode *parse_additive(parser *P) {
    jnode *left = parse_multiplicative(P);
    while (left && is(P, JT_ADD)) {
        const jtok *t = peek(P, 0);
        int op = tok_is(t, "+") ? OP_ADD : tok_is(t, "-") ? OP_SUB : OP_CONCAT;
        P->cur++;
        left = binary(P, op, t->pos, left, parse_multiplicative(P));
    }
    return left;
}

static jnode *parse_comparison(parser *P) {
    jnode *left = parse_additive(P);
    while (left) {
        const jtok *t = peek(P, 0), *t2 = peek(P, 1);
        int op;
        if (is_ident(P, "not") && t2 && t2->type == JT_IDENT && tok_is(t2, "in")) {
            op = OP_NOTIN;
            P->cur += 2;
        } else if (is_ident(P, "in")) {
            op = OP_IN;
            P->cur++;
        } else if (is(P, JT_CMP)) {
            op = tok_is(t, "==")   ? OP_EQ
                 : tok_is(t, "!=") ? OP_NE
                 : tok_is(t, "<")  ? OP_LT
                 : tok_is(t, ">")  ? OP_GT
                 : tok_is(t, "<=") ? OP_LE
                                   : OP_GE;
            P->cur++;
        } else {
            break;
        }
        left = binary(P, op, t->pos, left, parse_additive(P));
    }
    return left;
}

static jnode *parse_not(parser *P) {
    if (is_ident(P, "not")) {
        if (!enter(P)) return NULL;
        jnode *n = mk(P, JN_UNARY, here(P));
        if (!n) return NULL;
        n->op = OP_NOT;
        P->cur++;
        n->a = parse_not(P);
        P->depth--;
        return n->a ? done(P, n) : NULL;
    }
    return parse_comparison(P);
}

static jnode *parse_and(parser *P) {
    jnode *left = parse_not(P);
    while (left && is_ident(P, "and")) {
        uint32_t pos = here(P);
        P->cur++;
        left = binary(P, OP_AND, pos, left, parse_not(P));
    }
    return left;
}

static jnode *parse_or(parser *P) {
    jnode *left = parse_and(P);
    while (left && is_ident(P, "or")) {
        uint32_t pos = here(P);
        P->cur++;
        left = binary(P, OP_OR, pos, left, parse_and(P));
    }
    return left;
}

static jnode *parse_if_expression(parser *P) {
    jnode *a = parse_or(P);
    if (!a || !is_ident(P, "if")) return a;
    uint32_t pos = here(P);
    P->cur++;
    jnode *test = parse_or(P);
    if (!test) return NULL;
    if (is_ident(P, "else")) {
        P->cur++;
        jnode *n = mk(P, JN_TERNARY, pos);
        if (!n) return NULL;
        n->a = test;
        n->b = a;
        n->c = parse_if_expression(P);
        return n->c ? done(P, n) : NULL;
    }
    jnode *n = mk(P, JN_SELECT, pos);
    if (!n) return NULL;
    n->a = a;
    n->b = test;
    return done(P, n);
}

static jnode *parse_expression(parser *P) {
    if (!enter(P)) return NULL;
    jnode *n = parse_if_expression(P);
    P->depth--;
    return n;
}

static jnode *parse_primary(parser *P) {
    const jtok *t = peek(P, 0);
    if (!t) return fail(P, "unexpected end of template", NULL);
    P->cur++;
    jnode *n;
    switch (t->type) {
    case JT_NUM: {
        bool fl = memchr(t->s, '.', t->n) != NULL;
        if (!(n = mk(P, fl ? JN_FLOAT : JN_INT, t->pos))) return NULL;
        n->num = jnum_parse_js(t->s, t->n);
        return done(P, n);
    }
    case JT_STR: {
        /* Adjacent string literals join: 'a' "b" is "ab". */
        size_t len = t->n, k = P->cur;
        while (k < P->n && P->t[k].type == JT_STR) len += P->t[k++].n;
        if (!(n = mk(P, JN_STR, t->pos))) return NULL;
        char *s = jarena_alloc(P->a, len + 1);
        if (!s) return oom(P);
        memcpy(s, t->s, t->n);
        size_t o = t->n;
        for (; P->cur < k; P->cur++) {
            memcpy(s + o, P->t[P->cur].s, P->t[P->cur].n);
            o += P->t[P->cur].n;
        }
        n->s = s;
        n->slen = len;
        return done(P, n);
    }
    case JT_IDENT:
        if (!(n = mk(P, JN_IDENT, t->pos))) return NULL;
        n->s = t->s;
        n->slen = t->n;
        return done(P, n);
    case JT_LPAREN:
        if (!enter(P)) return NULL;
        n = parse_expression_sequence(P, false);
        P->depth--;
        if (!n || !expect(P, JT_RPAREN, "')'")) return NULL;
        return n;
    case JT_LBRACKET:
    case JT_LBRACE: {
        bool arr = t->type == JT_LBRACKET;
        if (!enter(P) || !(n = mk(P, arr ? JN_ARRAY : JN_OBJECT, t->pos))) return NULL;
        nlist keys = { 0 }, vals = { 0 };
        while (!is(P, arr ? JT_RBRACKET : JT_RBRACE)) {
            if (P->cur >= P->n) return fail(P, "unexpected end of template in a literal", NULL);
            if (!nl_push(P, arr ? &vals : &keys, parse_expression(P))) return NULL;
            if (!arr && (!expect(P, JT_COLON, "':' in a dict literal") ||
                         !nl_push(P, &vals, parse_expression(P))))
                return NULL;
            if (is(P, JT_COMMA)) P->cur++;
        }
        P->cur++;
        P->depth--;
        n->list = arr ? vals.v : keys.v;
        n->n = arr ? vals.n : keys.n;
        if (!arr) {
            n->list2 = vals.v;
            n->n2 = vals.n;
        }
        return done(P, n);
    }
    default:
        P->cur--;
        return fail(P, "unexpected token", NULL);
    }
}

/* ---- which of kwargs / varargs a macro reads (Jinja's visit order) ---- */

typedef struct special_scan {
    int declared, accessed;
} special_scan;

static int special_bit(const char *s, size_t n) {
    if (n == 6 && memcmp(s, "kwargs", 6) == 0) return JM_KWARGS;
    if (n == 7 && memcmp(s, "varargs", 7) == 0) return JM_VARARGS;
    return 0;
}

static void declare_target(special_scan *S, const jnode *t) {
    if (!t) return;
    if (t->kind == JN_IDENT)
        S->declared |= special_bit(t->s, t->slen);
    else if (t->kind == JN_TUPLE)
        for (size_t i = 0; i < t->n; i++) declare_target(S, t->list[i]);
}

static void visit(special_scan *S, const jnode *n);

static void visit_list(special_scan *S, jnode *const *l, size_t n) {
    for (size_t i = 0; i < n; i++) visit(S, l[i]);
}

static void visit_params(special_scan *S, jnode *const *params, size_t n) {
    for (size_t i = 0; i < n; i++) S->declared |= special_bit(params[i]->s, params[i]->slen);
    for (size_t i = 0; i < n; i++)
        if (params[i]->kind == JN_KWARG) visit(S, params[i]->a);
}

static void visit_filter(special_scan *S, const jnode *f) {
    if (f && f->kind == JN_CALL) visit_list(S, f->list, f->n);
}

static void visit(special_scan *S, const jnode *n) {
    if (!n) return;
    switch (n->kind) {
    case JN_FOR:
        declare_target(S, n->a);
        if (n->b && n->b->kind == JN_SELECT) {
            visit(S, n->b->a);
            visit_list(S, n->list, n->n);
            visit_list(S, n->list2, n->n2);
            visit(S, n->b->b);
            return;
        }
        visit(S, n->b);
        visit_list(S, n->list, n->n);
        visit_list(S, n->list2, n->n2);
        return;
    case JN_SET:
        declare_target(S, n->a);
        visit(S, n->b);
        visit_list(S, n->list, n->n);
        return;
    case JN_MACRO:
        visit_params(S, n->list, n->n);
        visit_list(S, n->list2, n->n2);
        return;
    case JN_CALLBLOCK:
        visit(S, n->a);
        visit_params(S, n->list, n->n);
        visit_list(S, n->list2, n->n2);
        return;
    case JN_FILTERBLOCK:
        visit_list(S, n->list, n->n);
        visit_filter(S, n->a);
        return;
    case JN_IDENT: {
        int bit = special_bit(n->s, n->slen);
        if (bit && !(S->declared & bit)) S->accessed |= bit;
        return;
    }
    case JN_MEMBER:
        visit(S, n->a);
        if (n->flag) visit(S, n->b);
        return;
    case JN_FILTER:
        visit(S, n->a);
        visit_filter(S, n->b);
        return;
    case JN_TEST:
        visit(S, n->a);
        return;
    case JN_SELECT:
        visit(S, n->b);
        visit(S, n->a);
        return;
    case JN_KWARG:
        visit(S, n->a);
        return;
    case JN_OBJECT:
        for (size_t i = 0; i < n->n; i++) {
            visit(S, n->list[i]);
            visit(S, n->list2[i]);
        }
        return;
    default:
        visit(S, n->a);
        visit(S, n->b);
        visit(S, n->c);
        visit_list(S, n->list, n->n);
        visit_list(S, n->list2, n->n2);
        return;
    }
}

static uint8_t special_args(jnode *const *params, size_t np, jnode *const *body, size_t nb) {
    special_scan S = { 0, 0 };
    for (size_t i = 0; i < np; i++) S.declared |= special_bit(params[i]->s, params[i]->slen);
    visit_list(&S, body, nb);
    return (uint8_t)S.accessed;
}

/* ---- statements ---- */

static const char *const END_IF[] = { "elif", "else", "endif", NULL };
static const char *const ENDIF[] = { "endif", NULL };
static const char *const END_FOR[] = { "endfor", "else", NULL };
static const char *const ENDFOR[] = { "endfor", NULL };
static const char *const ENDSET[] = { "endset", NULL };
static const char *const ENDMACRO[] = { "endmacro", NULL };
static const char *const ENDCALL[] = { "endcall", NULL };
static const char *const ENDFILTER[] = { "endfilter", NULL };

static jnode *parse_if(parser *P, uint32_t pos) {
    if (!enter(P)) return NULL;
    jnode *n = mk(P, JN_IF, pos);
    nlist body = { 0 }, alt = { 0 };
    if (!n || !(n->a = parse_expression(P)) || !expect(P, JT_CLOSE_STMT, "'%}'") ||
        !parse_until(P, END_IF, &body))
        return NULL;
    if (is_statement(P, (const char *const[]){ "elif", NULL })) {
        uint32_t p2 = here(P);
        P->cur += 2;
        if (!nl_push(P, &alt, parse_if(P, p2))) return NULL;
    } else if (is_statement(P, (const char *const[]){ "else", NULL })) {
        P->cur += 2;
        if (!expect(P, JT_CLOSE_STMT, "'%}'") || !parse_until(P, ENDIF, &alt)) return NULL;
    }
    n->list = body.v;
    n->n = body.n;
    n->list2 = alt.v;
    n->n2 = alt.n;
    P->depth--;
    return done(P, n);
}

static bool parse_end(parser *P, const char *name) {
    return expect(P, JT_OPEN_STMT, "'{%'") && expect_ident(P, name) &&
           expect(P, JT_CLOSE_STMT, "'%}'");
}

static jnode *parse_statement(parser *P) {
    uint32_t pos = here(P);
    if (!expect(P, JT_OPEN_STMT, "'{%'")) return NULL;
    const jtok *t = peek(P, 0);
    if (!t || t->type != JT_IDENT) return fail(P, "unknown statement", NULL);
    P->cur++;
    jnode *n = NULL;
    nlist l1 = { 0 }, l2 = { 0 };
    if (tok_is(t, "set")) {
        if (!(n = mk(P, JN_SET, pos)) || !(n->a = parse_expression_sequence(P, false))) return NULL;
        if (is(P, JT_EQUALS)) {
            P->cur++;
            if (!(n->b = parse_expression_sequence(P, false))) return NULL;
        } else {
            if (!expect(P, JT_CLOSE_STMT, "'%}'") || !parse_until(P, ENDSET, &l1) ||
                !expect(P, JT_OPEN_STMT, "'{%'") || !expect_ident(P, "endset"))
                return NULL;
            n->list = l1.v;
            n->n = l1.n;
        }
        if (!expect(P, JT_CLOSE_STMT, "'%}'")) return NULL;
    } else if (tok_is(t, "if")) {
        if (!(n = parse_if(P, pos)) || !parse_end(P, "endif")) return NULL;
    } else if (tok_is(t, "macro")) {
        jnode *name = parse_primary(P);
        if (!name) return NULL;
        if (name->kind != JN_IDENT)
            return fail(P, "Expected identifier following macro statement", NULL);
        if (!(n = mk(P, JN_MACRO, pos)) || !parse_args(P, true, &l1) ||
            !expect(P, JT_CLOSE_STMT, "'%}'") || !parse_until(P, ENDMACRO, &l2) ||
            !parse_end(P, "endmacro"))
            return NULL;
        n->s = name->s;
        n->slen = name->slen;
        n->list = l1.v;
        n->n = l1.n;
        n->list2 = l2.v;
        n->n2 = l2.n;
        n->special = special_args(l1.v, l1.n, l2.v, l2.n);
    } else if (tok_is(t, "for")) {
        if (!(n = mk(P, JN_FOR, pos)) || !(n->a = parse_expression_sequence(P, true))) return NULL;
        if (n->a->kind != JN_IDENT && n->a->kind != JN_TUPLE)
            return fail(P, "Expected identifier/tuple for the loop variable", NULL);
        if (!is_ident(P, "in"))
            return fail(P, "Expected `in` keyword following loop variable", NULL);
        P->cur++;
        if (!(n->b = parse_expression(P)) || !expect(P, JT_CLOSE_STMT, "'%}'") ||
            !parse_until(P, END_FOR, &l1))
            return NULL;
        if (is_statement(P, (const char *const[]){ "else", NULL })) {
            P->cur += 2;
            if (!expect(P, JT_CLOSE_STMT, "'%}'") || !parse_until(P, ENDFOR, &l2)) return NULL;
        }
        if (!parse_end(P, "endfor")) return NULL;
        n->list = l1.v;
        n->n = l1.n;
        n->list2 = l2.v;
        n->n2 = l2.n;
    } else if (tok_is(t, "call")) {
        if (!(n = mk(P, JN_CALLBLOCK, pos))) return NULL;
        if (is(P, JT_LPAREN) && !parse_args(P, true, &l1)) return NULL;
        jnode *callee = parse_primary(P);
        if (!callee) return NULL;
        if (callee->kind != JN_IDENT)
            return fail(P, "Expected identifier following call statement", NULL);
        jnode *call = mk(P, JN_CALL, callee->pos);
        nlist args = { 0 };
        if (!call || !parse_args(P, false, &args)) return NULL;
        call->a = callee;
        call->list = args.v;
        call->n = args.n;
        if (!(n->a = done(P, call)) || !expect(P, JT_CLOSE_STMT, "'%}'") ||
            !parse_until(P, ENDCALL, &l2) || !parse_end(P, "endcall"))
            return NULL;
        n->list = l1.v;
        n->n = l1.n;
        n->list2 = l2.v;
        n->n2 = l2.n;
        n->special = special_args(l1.v, l1.n, l2.v, l2.n);
    } else if (tok_is(t, "break") || tok_is(t, "continue")) {
        if (!(n = mk(P, tok_is(t, "break") ? JN_BREAK : JN_CONTINUE, pos)) ||
            !expect(P, JT_CLOSE_STMT, "'%}'"))
            return NULL;
    } else if (tok_is(t, "filter")) {
        if (!(n = mk(P, JN_FILTERBLOCK, pos))) return NULL;
        jnode *f = parse_primary(P);
        if (f && f->kind == JN_IDENT && is(P, JT_LPAREN)) f = parse_call_expression(P, f);
        if (!f || !expect(P, JT_CLOSE_STMT, "'%}'") || !parse_until(P, ENDFILTER, &l1) ||
            !parse_end(P, "endfilter"))
            return NULL;
        n->a = f;
        n->list = l1.v;
        n->n = l1.n;
    } else {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(t->n < 60 ? t->n : 60), t->s);
        P->cur--;
        return fail(P, "unknown statement '%s'", name);
    }
    return done(P, n);
}

static jnode *parse_any(parser *P) {
    const jtok *t = peek(P, 0);
    if (!t) return fail(P, "unexpected end of template", NULL);
    jnode *n;
    switch (t->type) {
    case JT_COMMENT:
        P->cur++;
        n = mk(P, JN_COMMENT, t->pos);
        return n ? done(P, n) : NULL;
    case JT_TEXT:
        P->cur++;
        if (!(n = mk(P, JN_TEXT, t->pos))) return NULL;
        n->s = t->s;
        n->slen = t->n;
        return done(P, n);
    case JT_OPEN_STMT:
        if (!enter(P)) return NULL;
        n = parse_statement(P);
        P->depth--;
        return n;
    case JT_OPEN_EXPR:
        P->cur++;
        n = parse_expression(P);
        if (!n || !expect(P, JT_CLOSE_EXPR, "'}}'")) return NULL;
        return n;
    default:
        return fail(P, "unexpected token", NULL);
    }
}

int jinja_parse(const jtoks *toks, jarena *a, const char *src, size_t srclen, jprogram *out,
                srp_err *e) {
    parser P = { .t = toks->v, .n = toks->n, .a = a, .src = src, .srclen = srclen, .e = e };
    nlist body = { 0 };
    while (P.cur < P.n)
        if (!nl_push(&P, &body, parse_any(&P))) return P.rc ? P.rc : SRP_EFORMAT;
    out->body = body.v;
    out->n = body.n;
    return 0;
}
