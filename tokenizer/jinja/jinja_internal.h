/* Shared internals of the chat-template renderer (tokenizer/jinja/jinja_*.c). Not a public header.
 *
 * The reference renderer is JavaScript, so its strings are UTF-16 and its numbers are doubles.
 * Here strings are UTF-8 byte ranges and numbers are doubles with an "integer" flag; where
 * UTF-16 shows through (string length, indexing, case mapping, whitespace) jinja_unicode.c
 * reproduces it. All values of one render live in one arena, freed when the render ends, so no
 * value is ever freed while something still points at it; limits keep the arena bounded. */
#ifndef SRP_JINJA_INTERNAL_H
#define SRP_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat_template.h"

/* Internal status besides 0 / negative SRP_E*: loop control travels up as a return value. */
enum { JR_BREAK = 1, JR_CONTINUE = 2 };

/* Limits on nesting, so that no input can exhaust the C stack. */
#define JINJA_MAX_PARSE_DEPTH 200  /* parser recursion and AST height */
#define JINJA_MAX_CALL_DEPTH  64   /* nested macro / caller calls */
#define JINJA_MAX_EVAL_DEPTH  2000 /* nested evaluation, all calls together (C stack) */
#define JINJA_MAX_DATA_DEPTH  512  /* nesting of values walked by tojson / string conversion */
#define JINJA_MAX_TEMPLATE    (16u << 20)
#define JINJA_MAX_RANGE       (1u << 20) /* elements range() may produce */

/* ---- arena and growable buffers (jinja_arena.c) ---- */
typedef struct jarena_chunk jarena_chunk;
typedef struct jarena {
    jarena_chunk *head;
    size_t total; /* bytes taken from malloc */
    size_t cap;   /* 0 = no cap */
    bool hit_cap; /* an allocation failed because of cap */
} jarena;

void *jarena_alloc(jarena *a, size_t n); /* zeroed, 16-byte aligned; NULL when over cap / OOM */
char *jarena_strdup(jarena *a, const char *s, size_t n); /* NUL-terminated copy */
void jarena_free(jarena *a);

typedef struct jbuf {
    char *p;
    size_t n, cap, limit; /* limit 0 = none */
} jbuf;

int jbuf_put(jbuf *b, const char *s, size_t n); /* 0, or -1 over limit / OOM */
int jbuf_putc(jbuf *b, char c);
void jbuf_free(jbuf *b);

/* ---- unicode as JavaScript sees it (jinja_unicode.c) ---- */
uint32_t ju_decode(const char *p, size_t n, size_t *adv); /* invalid byte: U+FFFD, adv 1 */
size_t ju_encode(uint32_t cp, char *out);                 /* out has room for 4 bytes */
bool ju_is_space(uint32_t cp);                            /* JS \s, String.prototype.trim */
size_t ju_space_at(const char *p, size_t n);              /* bytes of a JS space at p, or 0 */
size_t ju_space_before(const char *p, size_t n);          /* bytes of a JS space ending at p+n */
void ju_trim(const char **p, size_t *n, bool left, bool right);
size_t ju_utf16_len(const char *p, size_t n);
/* Case mapping of one code point; writes up to 3 code points, returns how many. */
int ju_upper(uint32_t cp, uint32_t out[3]);
int ju_lower(uint32_t cp, uint32_t out[3]);
/* Compares by UTF-16 code units, as JS < on strings does. */
int ju_cmp_utf16(const char *a, size_t an, const char *b, size_t bn);

/* ---- tokens (jinja_lex.c) ---- */
enum jtok_type {
    JT_TEXT,
    JT_NUM,
    JT_STR,
    JT_IDENT,
    JT_EQUALS,
    JT_LPAREN,
    JT_RPAREN,
    JT_OPEN_STMT,
    JT_CLOSE_STMT,
    JT_OPEN_EXPR,
    JT_CLOSE_EXPR,
    JT_LBRACKET,
    JT_RBRACKET,
    JT_LBRACE,
    JT_RBRACE,
    JT_COMMA,
    JT_DOT,
    JT_COLON,
    JT_PIPE,
    JT_ADD, /* + - ~ */
    JT_MUL, /* * / // % */
    JT_POW,
    JT_CMP, /* < > <= >= == != */
    JT_UNARY,
    JT_COMMENT,
};

typedef struct jtok {
    uint8_t type;
    const char *s; /* value (escapes resolved for strings); in the compile arena */
    size_t n;
    uint32_t pos; /* byte offset in the original template */
} jtok;

typedef struct jtoks {
    jtok *v;
    size_t n, cap;
} jtoks;

int jinja_lex(const char *src, size_t len, jarena *a, jtoks *out, srp_err *e);
void jinja_line_col(const char *src, size_t len, uint32_t pos, int *line, int *col);

/* ---- syntax tree (jinja_parse.c) ---- */
enum jnode_kind {
    JN_TEXT,
    JN_STR,
    JN_INT,
    JN_FLOAT,
    JN_IDENT,
    JN_ARRAY,
    JN_TUPLE,
    JN_OBJECT, /* list: keys, list2: values */
    JN_MEMBER, /* a object, b property; flag: computed ([...]) */
    JN_SLICE,  /* a start, b stop, c step (each may be NULL) */
    JN_CALL,   /* a callee, list args */
    JN_KWARG,  /* s name, a value */
    JN_SPREAD, /* *a */
    JN_KWSPREAD,
    JN_UNARY,     /* op, a */
    JN_BINARY,    /* op, a, b */
    JN_FILTER,    /* a operand, b filter (JN_IDENT or JN_CALL of an identifier, else invalid) */
    JN_TEST,      /* a operand, s name, flag negate, list args (an extension over the reference) */
    JN_SELECT,    /* a if b (no else) */
    JN_TERNARY,   /* b if a else c */
    JN_IF,        /* a test, list body, list2 else */
    JN_FOR,       /* a target, b iterable, list body, list2 else */
    JN_SET,       /* a target, b value (or NULL: list body) */
    JN_MACRO,     /* s name, list params, list2 body, special */
    JN_CALLBLOCK, /* a call expression, list caller params, list2 body, special */
    JN_FILTERBLOCK, /* a filter, list body */
    JN_BREAK,
    JN_CONTINUE,
    JN_COMMENT,
};

enum jop {
    OP_NONE,
    OP_AND,
    OP_OR,
    OP_NOT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_GT,
    OP_LE,
    OP_GE,
    OP_IN,
    OP_NOTIN,
    OP_ADD,
    OP_SUB,
    OP_CONCAT,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
};

/* Which of the special macro arguments a macro body reads before declaring them. */
enum { JM_KWARGS = 1, JM_VARARGS = 2 };

typedef struct jnode jnode;
struct jnode {
    uint8_t kind, op;
    bool flag;
    uint8_t special;
    uint32_t pos;
    uint32_t height;
    jnode *a, *b, *c;
    jnode **list;
    size_t n;
    jnode **list2;
    size_t n2;
    const char *s;
    size_t slen;
    double num;
};

typedef struct jprogram {
    jnode **body;
    size_t n;
} jprogram;

int jinja_parse(const jtoks *toks, jarena *a, const char *src, size_t srclen, jprogram *out,
                srp_err *e);

struct srp_chat_template {
    jarena arena; /* tokens, nodes, a copy of the source */
    const char *src;
    size_t srclen;
    jprogram prog;
};

/* ---- values (jinja_value.c) ---- */
enum jv_kind {
    JV_UNDEF,
    JV_NULL,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_ARRAY,
    JV_TUPLE,
    JV_OBJECT,
    JV_KWARGS, /* keyword arguments: an object that knows it came from name=value */
    JV_NS,     /* namespace(): mutable, no methods */
    JV_FUNC,
    JV_LOOP, /* a for loop's `loop`, only ever stored in a scope: reading it makes an object */
};

typedef struct jarr jarr;
typedef struct jobj jobj;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    uint8_t k;
    bool b;
    size_t n; /* string length */
    union {
        double num;
        const char *s;
        jarr *arr;
        jobj *obj;
        jfunc *fn;
        jloop *loop;
    } u;
} jv;

struct jarr {
    size_t n;
    jv *v;
};

struct jobj {
    size_t n, cap;
    const char **kp;
    size_t *kn;
    jv *v;
};

struct jloop {
    const jv *items;
    size_t count, i;
};

enum jfn_kind { JF_GLOBAL, JF_METHOD, JF_MACRO, JF_CALLER };

typedef struct jenv jenv;

struct jfunc {
    uint8_t kind;
    int id;            /* which global or method */
    jv self;           /* the receiver of a method */
    const jnode *node; /* macro or call block */
    jenv *env;         /* scope a caller() closes over */
};

struct jenv {
    jenv *parent;
    size_t n, cap;
    const char **kp;
    size_t *kn;
    jv *v;
};

/* One render. */
typedef struct jctx {
    jarena arena;
    srp_chat_limits lim;
    size_t steps;
    int call_depth;
    int eval_depth;
    const srp_chat_template *t;
    srp_err *e;
} jctx;

static inline jv jv_undef(void) {
    return (jv){ .k = JV_UNDEF };
}
static inline jv jv_null(void) {
    return (jv){ .k = JV_NULL };
}
static inline jv jv_bool(bool b) {
    return (jv){ .k = JV_BOOL, .b = b };
}
static inline jv jv_int(double d) {
    return (jv){ .k = JV_INT, .u.num = d };
}
static inline jv jv_float(double d) {
    return (jv){ .k = JV_FLOAT, .u.num = d };
}
static inline jv jv_str(const char *s, size_t n) {
    return (jv){ .k = JV_STR, .n = n, .u.s = s };
}
static inline bool jv_is_arr(jv v) {
    return v.k == JV_ARRAY || v.k == JV_TUPLE;
}
static inline bool jv_is_obj(jv v) {
    return v.k == JV_OBJECT || v.k == JV_KWARGS;
}
static inline bool jv_is_num(jv v) {
    return v.k == JV_INT || v.k == JV_FLOAT;
}
static inline bool jv_is_attr(jv v) {
    return jv_is_obj(v) || v.k == JV_NS;
}

/* Errors: every failure of a render goes through these; they return the code. */
int jerr(jctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jerr_mem(jctx *c);
int jcharge(jctx *c, size_t steps); /* counts work; an error once max_steps is passed */

void *jalloc(jctx *c, size_t n); /* jarena_alloc that records SRP_EFULL / SRP_ENOMEM in c */
int jstr_new(jctx *c, const char *s, size_t n, jv *out);
int jstr_cat(jctx *c, const char *a, size_t an, const char *b, size_t bn, jv *out);
int jbuf_to_str(jctx *c, jbuf *b, jv *out); /* copies into the arena and frees b */
jbuf jctx_buf(const jctx *c);               /* an empty buffer with the output limit */
int jbuf_err(jctx *c, const jnode *at);     /* error for a failed jbuf_put */

jarr *jarr_new(jctx *c, size_t n);
jobj *jobj_new(jctx *c, size_t cap);
int jobj_set(jctx *c, jobj *o, const char *k, size_t kn, jv v); /* replaces or appends */
const jv *jobj_get(const jobj *o, const char *k, size_t kn);
int jv_from_json(jctx *c, const cJSON *j, int depth, jv *out);

bool jv_truthy(jv v);
const char *jv_type_name(jv v); /* the reference's type names, for messages */

/* String forms. tostring: what {{ v }} prints (RuntimeValue.toString); raw: String(v.value),
 * which `~`, `+` on strings, join and raise_exception use. */
int jv_tostring(jctx *c, jv v, jbuf *b, int depth);
int jv_rawstring(jctx *c, jv v, jbuf *b, int depth);
int jv_to_str(jctx *c, jv v, bool raw, jv *out);

size_t jnum_format(double d, char *out);          /* Number.prototype.toString; out >= 32 bytes */
double jnum_parse_js(const char *s, size_t n);    /* Number(string) */
double jnum_parse_int(const char *s, size_t n);   /* parseInt(s, 10) */
double jnum_parse_float(const char *s, size_t n); /* parseFloat(s) */

int jv_loose_eq(jctx *c, jv a, jv b, bool *out); /* JS == on the underlying values */
bool jv_strict_eq(jv a, jv b);                   /* JS === */
bool jv_same_value_zero(jv a, jv b);             /* Set membership */
int jv_compare(jctx *c, const jnode *at, jv a, jv b, bool case_sensitive, int *out);
int jstr_case(jctx *c, const char *s, size_t n, bool upper, jv *out); /* toUpper/LowerCase */

/* ---- JSON output (jinja_json.c) ---- */
typedef struct jjson_opts {
    int indent; /* 0: none */
    bool ensure_ascii, sort_keys, undefined_as_null;
    bool has_separators;
    const char *item_sep, *key_sep;
    size_t item_sep_n, key_sep_n;
} jjson_opts;

int jv_tojson(jctx *c, const jnode *at, jv v, const jjson_opts *o, int depth, jbuf *b);

/* ---- scopes and evaluation (jinja_eval.c) ---- */
jenv *jenv_new(jctx *c, jenv *parent);
int jenv_set(jctx *c, jenv *e, const char *k, size_t kn, jv v);
jv jenv_lookup(const jenv *e, const char *k, size_t kn);

int jinja_eval(jctx *c, jenv *env, const jnode *n, jv *out);
int jinja_exec_block(jctx *c, jenv *env, jnode *const *list, size_t n, jbuf *out);
int jinja_call(jctx *c, const jnode *at, jv fn, jv *args, size_t nargs, jenv *env, jv *out);
int jinja_eval_args(jctx *c, jenv *env, jnode *const *args, size_t n, jv **pos, size_t *npos,
                    jobj **kw);

/* ---- filters, tests, methods, globals (jinja_filters.c, jinja_builtins.c) ---- */
int jinja_filter(jctx *c, jenv *env, const jnode *at, jv operand, const jnode *filter, jv *out);
int jinja_test(jctx *c, jenv *env, const jnode *n, jv *out);
int jinja_test_named(jctx *c, const jnode *at, const char *name, size_t nn, jv v, jv *args,
                     size_t nargs, bool *known, bool *result);
/* A property of a string, array or object that is not a key: a bound method or `length`. */
bool jinja_builtin_member(jctx *c, jv self, const char *name, size_t nn, jv *out, int *err);
int jinja_call_builtin(jctx *c, const jnode *at, const jfunc *f, jv *args, size_t nargs, jv *out);
int jinja_setup_globals(jctx *c, jenv *root);
int jinja_object_items(jctx *c, jv obj, jv *out);
int jinja_dictsort(jctx *c, const jnode *at, jv obj, jv *args, size_t nargs, jv *out);
int jinja_sort(jctx *c, const jnode *at, jv *items, size_t n, bool reverse, bool case_sensitive,
               const char *attr, size_t attrn, bool by_attr);
jv jinja_attr_path(jv item, const char *path, size_t n);

#endif
