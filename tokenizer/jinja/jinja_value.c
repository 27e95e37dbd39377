/* Runtime values of a render: allocation, conversion from JSON, truth, equality and ordering, all
 * with the semantics of the JavaScript reference (numbers are doubles, == is JS's loose
 * equality, objects keep JS's key order). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

int jerr(jctx *c, const jnode *at, const char *fmt, ...) {
    char msg[sizeof c->e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at) {
        int line, col;
        jinja_line_col(c->t->src, c->t->srclen, at->pos, &line, &col);
        return srp_err_set(c->e, SRP_EINVAL, "chat template: line %d, column %d: %s", line, col,
                           msg);
    }
    return srp_err_set(c->e, SRP_EINVAL, "chat template: %s", msg);
}

int jerr_mem(jctx *c) {
    if (c->arena.hit_cap)
        return srp_err_set(c->e, SRP_EFULL, "chat template: rendering needs more than %zu bytes",
                           c->lim.max_memory);
    return srp_err_set(c->e, SRP_ENOMEM, "chat template: out of memory");
}

int jcharge(jctx *c, size_t steps) {
    c->steps += steps;
    if (c->steps > c->lim.max_steps)
        return srp_err_set(c->e, SRP_EFULL, "chat template: rendering takes more than %zu steps",
                           c->lim.max_steps);
    return 0;
}

void *jalloc(jctx *c, size_t n) {
    void *p = jarena_alloc(&c->arena, n);
    if (!p) jerr_mem(c);
    return p;
}

int jstr_new(jctx *c, const char *s, size_t n, jv *out) {
    if (c->lim.max_output && n > c->lim.max_output)
        return srp_err_set(c->e, SRP_EFULL, "chat template: a string exceeds %zu bytes",
                           c->lim.max_output);
    char *p = jarena_strdup(&c->arena, s, n);
    if (!p) return jerr_mem(c);
    *out = jv_str(p, n);
    return 0;
}

int jstr_cat(jctx *c, const char *a, size_t an, const char *b, size_t bn, jv *out) {
    if (c->lim.max_output && (an > c->lim.max_output || bn > c->lim.max_output - an))
        return srp_err_set(c->e, SRP_EFULL, "chat template: a string exceeds %zu bytes",
                           c->lim.max_output);
    int rc = jcharge(c, (an + bn) / 64);
    if (rc) return rc;
    char *p = jalloc(c, an + bn + 1);
    if (!p) return c->e ? c->e->code : SRP_ENOMEM;
    if (an) memcpy(p, a, an);
    if (bn) memcpy(p + an, b, bn);
    *out = jv_str(p, an + bn);
    return 0;
}

jbuf jctx_buf(const jctx *c) {
    return (jbuf){ .limit = c->lim.max_output };
}

int jbuf_err(jctx *c, const jnode *at) {
    (void)at;
    return srp_err_set(c->e, SRP_EFULL, "chat template: output exceeds %zu bytes",
                       c->lim.max_output);
}

int jbuf_to_str(jctx *c, jbuf *b, jv *out) {
    int rc = jstr_new(c, b->p ? b->p : "", b->n, out);
    jbuf_free(b);
    return rc;
}

jarr *jarr_new(jctx *c, size_t n) {
    jarr *a = jalloc(c, sizeof *a);
    if (!a) return NULL;
    if (n > SIZE_MAX / sizeof(jv)) {
        jerr_mem(c);
        return NULL;
    }
    a->n = n;
    if (n && !(a->v = jalloc(c, n * sizeof(jv)))) return NULL;
    return a;
}

jobj *jobj_new(jctx *c, size_t cap) {
    jobj *o = jalloc(c, sizeof *o);
    if (!o) return NULL;
    if (cap < 4) cap = 4;
    o->cap = cap;
    o->kp = jalloc(c, cap * sizeof *o->kp);
    o->kn = jalloc(c, cap * sizeof *o->kn);
    o->v = jalloc(c, cap * sizeof *o->v);
    return o->kp && o->kn && o->v ? o : NULL;
}

const jv *jobj_get(const jobj *o, const char *k, size_t kn) {
    for (size_t i = 0; i < o->n; i++)
        if (o->kn[i] == kn && memcmp(o->kp[i], k, kn) == 0) return &o->v[i];
    return NULL;
}

int jobj_set(jctx *c, jobj *o, const char *k, size_t kn, jv v) {
    int rc = jcharge(c, o->n / 16 + 1);
    if (rc) return rc;
    for (size_t i = 0; i < o->n; i++)
        if (o->kn[i] == kn && memcmp(o->kp[i], k, kn) == 0) {
            o->v[i] = v;
            return 0;
        }
    if (o->n == o->cap) {
        size_t cap = o->cap * 2;
        const char **kp = jalloc(c, cap * sizeof *kp);
        size_t *kl = jalloc(c, cap * sizeof *kl);
        jv *vv = jalloc(c, cap * sizeof *vv);
        if (!kp || !kl || !vv) return c->e ? c->e->code : SRP_ENOMEM;
        memcpy(kp, o->kp, o->n * sizeof *kp);
        memcpy(kl, o->kn, o->n * sizeof *kl);
        memcpy(vv, o->v, o->n * sizeof *vv);
        o->kp = kp;
        o->kn = kl;
        o->v = vv;
        o->cap = cap;
    }
    o->kp[o->n] = k;
    o->kn[o->n] = kn;
    o->v[o->n] = v;
    o->n++;
    return 0;
}

/* JS orders an object's keys that are array indices ("0", "17", below 2^32 - 1) first, by
 * value, then the others in insertion order. */
static bool array_index(const char *k, double *idx) {
    size_t n = strlen(k);
    if (n == 0 || n > 10 || (n > 1 && k[0] == '0')) return false;
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return false;
        v = v * 10 + (k[i] - '0');
    }
    *idx = v;
    return v < 4294967295.0;
}

int jv_from_json(jctx *c, const cJSON *j, int depth, jv *out) {
    if (depth > JINJA_MAX_DATA_DEPTH) return jerr(c, NULL, "input JSON is nested too deeply");
    int rc = jcharge(c, 1);
    if (rc) return rc;
    if (!j || cJSON_IsNull(j)) {
        *out = jv_null();
    } else if (cJSON_IsBool(j)) {
        *out = jv_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        *out = isfinite(d) && d == floor(d) ? jv_int(d) : jv_float(d);
    } else if (cJSON_IsString(j) || cJSON_IsRaw(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        *out = jv_str(s, strlen(s)); /* the cJSON tree outlives the render */
    } else if (cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j);
        jarr *a = jarr_new(c, n);
        if (!a) return c->e->code;
        size_t i = 0;
        for (const cJSON *it = j->child; it && i < n; it = it->next, i++)
            if ((rc = jv_from_json(c, it, depth + 1, &a->v[i]))) return rc;
        *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    } else if (cJSON_IsObject(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j);
        jobj *o = jobj_new(c, n);
        if (!o) return c->e->code;
        /* Index-like keys first (insertion sort by value: such keys are rare and few). */
        const cJSON **idx = n ? jalloc(c, n * sizeof *idx) : NULL;
        double *val = n ? jalloc(c, n * sizeof *val) : NULL;
        if (n && (!idx || !val)) return c->e->code;
        size_t ni = 0;
        for (const cJSON *it = j->child; it; it = it->next) {
            double v;
            if (!it->string || !array_index(it->string, &v)) continue;
            size_t p = ni++;
            while (p > 0 && val[p - 1] > v) {
                idx[p] = idx[p - 1];
                val[p] = val[p - 1];
                p--;
            }
            idx[p] = it;
            val[p] = v;
            if ((rc = jcharge(c, ni))) return rc;
        }
        for (size_t i = 0; i < ni; i++) {
            jv v;
            if ((rc = jv_from_json(c, idx[i], depth + 1, &v)) ||
                (rc = jobj_set(c, o, idx[i]->string, strlen(idx[i]->string), v)))
                return rc;
        }
        for (const cJSON *it = j->child; it; it = it->next) {
            double d;
            const char *k = it->string ? it->string : "";
            if (array_index(k, &d)) continue;
            jv v;
            if ((rc = jv_from_json(c, it, depth + 1, &v)) || (rc = jobj_set(c, o, k, strlen(k), v)))
                return rc;
        }
        *out = (jv){ .k = JV_OBJECT, .u.obj = o };
    } else {
        *out = jv_undef();
    }
    return 0;
}

bool jv_truthy(jv v) {
    switch (v.k) {
    case JV_BOOL:
        return v.b;
    case JV_INT:
    case JV_FLOAT:
        return v.u.num != 0 && !isnan(v.u.num);
    case JV_STR:
        return v.n > 0;
    case JV_ARRAY:
    case JV_TUPLE:
        return v.u.arr->n > 0;
    case JV_OBJECT:
    case JV_KWARGS:
        return v.u.obj->n > 0;
    case JV_NS:
    case JV_FUNC:
        return true;
    default:
        return false;
    }
}

const char *jv_type_name(jv v) {
    static const char *const names[] = {
        "UndefinedValue", "NullValue",     "BooleanValue", "IntegerValue", "FloatValue",
        "StringValue",    "ArrayValue",    "TupleValue",   "ObjectValue",  "KeywordArgumentsValue",
        "NamespaceValue", "FunctionValue", "ObjectValue"
    };
    return v.k < sizeof names / sizeof names[0] ? names[v.k] : "?";
}

/* ---- numbers ---- */

size_t jnum_format(double d, char *out) {
    if (isnan(d)) return (size_t)sprintf(out, "NaN");
    if (isinf(d)) return (size_t)sprintf(out, d < 0 ? "-Infinity" : "Infinity");
    if (d == 0) return (size_t)sprintf(out, "0");
    /* Shortest digits that read back as d, as ECMAScript's Number::toString picks them. */
    char tmp[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    char digits[20];
    int k = 0;
    const char *s = tmp;
    bool neg = *s == '-';
    if (neg) s++;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[k++] = *s;
    int e = atoi(s + 1);
    while (k > 1 && digits[k - 1] == '0') k--;
    int n = e + 1; /* the decimal point sits after n digits */
    char *o = out;
    if (neg) *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = k; i < n; i++) *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++) *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    *o = 0;
    return (size_t)(o - out);
}

static double strtod_n(const char *s, size_t n) {
    char small[64];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return NAN;
    memcpy(buf, s, n);
    buf[n] = 0;
    double d = strtod(buf, NULL);
    if (buf != small) free(buf);
    return d;
}

static size_t digits_at(const char *s, size_t n, size_t i) {
    size_t j = i;
    while (j < n && s[j] >= '0' && s[j] <= '9') j++;
    return j - i;
}

/* Length of the longest StrDecimalLiteral prefix (sign, digits, fraction, exponent), 0 if none;
 * *inf is set for "Infinity". */
static size_t decimal_prefix(const char *s, size_t n, bool *inf) {
    size_t i = 0;
    *inf = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (n - i >= 8 && memcmp(s + i, "Infinity", 8) == 0) {
        *inf = true;
        return i + 8;
    }
    size_t a = digits_at(s, n, i);
    i += a;
    size_t b = 0;
    if (i < n && s[i] == '.') {
        b = digits_at(s, n, i + 1);
        if (a == 0 && b == 0) return 0;
        i += 1 + b;
    } else if (a == 0) {
        return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        size_t d = digits_at(s, n, j);
        if (d) i = j + d;
    }
    return i;
}

double jnum_parse_js(const char *s, size_t n) {
    ju_trim(&s, &n, true, true);
    if (n == 0) return 0;
    if (n > 2 && s[0] == '0' && strchr("xXoObB", s[1])) {
        int base = s[1] == 'x' || s[1] == 'X' ? 16 : s[1] == 'o' || s[1] == 'O' ? 8 : 2;
        double v = 0;
        for (size_t i = 2; i < n; i++) {
            int d = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
                    : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
                    : s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 10
                                                 : 99;
            if (d >= base) return NAN;
            v = v * base + d;
        }
        return v;
    }
    bool inf;
    size_t k = decimal_prefix(s, n, &inf);
    if (k != n) return NAN;
    if (inf) return s[0] == '-' ? -INFINITY : INFINITY;
    return strtod_n(s, n);
}

double jnum_parse_float(const char *s, size_t n) {
    ju_trim(&s, &n, true, false);
    bool inf;
    size_t k = decimal_prefix(s, n, &inf);
    if (k == 0) return NAN;
    if (inf) return s[0] == '-' ? -INFINITY : INFINITY;
    return strtod_n(s, k);
}

double jnum_parse_int(const char *s, size_t n) {
    ju_trim(&s, &n, true, false);
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    size_t d = digits_at(s, n, i);
    if (d == 0) return NAN;
    double v = strtod_n(s + i, d);
    return neg ? -v : v;
}

/* ---- string forms ---- */

static int put_num(jbuf *b, double d) {
    char tmp[400];
    size_t n = jnum_format(d, tmp);
    return jbuf_put(b, tmp, n);
}

int jv_tostring(jctx *c, jv v, jbuf *b, int depth) {
    int rc = 0;
    switch (v.k) {
    case JV_UNDEF:
        rc = jbuf_put(b, "undefined", 9);
        break;
    case JV_NULL:
        rc = jbuf_put(b, "null", 4);
        break;
    case JV_BOOL:
        rc = v.b ? jbuf_put(b, "true", 4) : jbuf_put(b, "false", 5);
        break;
    case JV_INT:
        rc = put_num(b, v.u.num);
        break;
    case JV_FLOAT: {
        double d = v.u.num;
        if (d == 0 && signbit(d)) {
            rc = jbuf_put(b, "-0.0", 4);
        } else if (isfinite(d) && d == floor(d) && fabs(d) < 1e21) {
            char tmp[400]; /* toFixed(1) prints the exact integer */
            int n = snprintf(tmp, sizeof tmp, "%.1f", d);
            rc = jbuf_put(b, tmp, (size_t)n);
        } else {
            rc = put_num(b, d);
        }
        break;
    }
    case JV_STR:
        rc = jbuf_put(b, v.u.s, v.n);
        break;
    case JV_FUNC:
        break; /* the reference prints a JavaScript function's source here */
    default: {
        jjson_opts o = { 0 };
        return jv_tojson(c, NULL, v, &o, depth, b);
    }
    }
    return rc ? jbuf_err(c, NULL) : 0;
}

int jv_rawstring(jctx *c, jv v, jbuf *b, int depth) {
    int rc = 0;
    switch (v.k) {
    case JV_INT:
    case JV_FLOAT:
        rc = put_num(b, v.u.num);
        break;
    case JV_ARRAY:
    case JV_TUPLE: /* Array.prototype.toString: elements joined by commas */
        if (depth > JINJA_MAX_DATA_DEPTH) return jerr(c, NULL, "value nested too deeply");
        for (size_t i = 0; i < v.u.arr->n; i++) {
            if (i && jbuf_putc(b, ',')) return jbuf_err(c, NULL);
            int r = jv_tostring(c, v.u.arr->v[i], b, depth + 1);
            if (r) return r;
        }
        return 0;
    case JV_OBJECT:
    case JV_KWARGS:
    case JV_NS:
        rc = jbuf_put(b, "[object Map]", 12);
        break;
    default:
        return jv_tostring(c, v, b, depth);
    }
    return rc ? jbuf_err(c, NULL) : 0;
}

int jv_to_str(jctx *c, jv v, bool raw, jv *out) {
    if (v.k == JV_STR) {
        *out = v;
        return 0;
    }
    jbuf b = jctx_buf(c);
    int rc = raw ? jv_rawstring(c, v, &b, 0) : jv_tostring(c, v, &b, 0);
    if (rc) {
        jbuf_free(&b);
        return rc;
    }
    return jbuf_to_str(c, &b, out);
}

/* ---- equality and ordering ---- */

static bool same_object(jv a, jv b) {
    if (jv_is_arr(a) && jv_is_arr(b)) return a.u.arr == b.u.arr;
    if ((jv_is_attr(a)) && jv_is_attr(b)) return a.u.obj == b.u.obj;
    if (a.k == JV_FUNC && b.k == JV_FUNC) return a.u.fn == b.u.fn;
    return false;
}

static bool is_jsobject(jv v) {
    return v.k >= JV_ARRAY;
}

int jv_loose_eq(jctx *c, jv a, jv b, bool *out) {
    bool anil = a.k == JV_UNDEF || a.k == JV_NULL, bnil = b.k == JV_UNDEF || b.k == JV_NULL;
    if (anil || bnil) {
        *out = anil && bnil;
        return 0;
    }
    if (a.k == JV_BOOL) a = jv_int(a.b);
    if (b.k == JV_BOOL) b = jv_int(b.b);
    if (is_jsobject(a) && is_jsobject(b)) {
        *out = same_object(a, b);
        return 0;
    }
    /* An object against a primitive is compared through its string form. */
    if (is_jsobject(a) || is_jsobject(b)) {
        jv *o = is_jsobject(a) ? &a : &b;
        if (o->k == JV_FUNC) {
            *out = false;
            return 0;
        }
        int rc = jv_to_str(c, *o, true, o);
        if (rc) return rc;
    }
    if (a.k == JV_STR && b.k == JV_STR) {
        *out = a.n == b.n && memcmp(a.u.s, b.u.s, a.n) == 0;
        return 0;
    }
    double x = a.k == JV_STR ? jnum_parse_js(a.u.s, a.n) : a.u.num;
    double y = b.k == JV_STR ? jnum_parse_js(b.u.s, b.n) : b.u.num;
    *out = x == y;
    return 0;
}

bool jv_strict_eq(jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b)) return a.u.num == b.u.num;
    if (a.k != b.k) {
        if (is_jsobject(a) && is_jsobject(b)) return same_object(a, b);
        return false;
    }
    switch (a.k) {
    case JV_UNDEF:
    case JV_NULL:
        return true;
    case JV_BOOL:
        return a.b == b.b;
    case JV_STR:
        return a.n == b.n && memcmp(a.u.s, b.u.s, a.n) == 0;
    default:
        return same_object(a, b);
    }
}

bool jv_same_value_zero(jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b) && isnan(a.u.num) && isnan(b.u.num)) return true;
    return jv_strict_eq(a, b);
}

int jstr_case(jctx *c, const char *s, size_t n, bool upper, jv *out) {
    jbuf b = jctx_buf(c);
    int rc = jcharge(c, n / 16);
    if (rc) return rc;
    uint32_t prev = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = ju_decode(s + i, n - i, &adv), m[3];
        int k;
        if (!upper && cp == 0x3A3) {
            /* Final sigma: a capital sigma that ends a word lowercases to ς. */
            uint32_t t[3], next = 0;
            size_t a2;
            if (i + adv < n) next = ju_decode(s + i + adv, n - i - adv, &a2);
            bool prev_cased = prev && (ju_lower(prev, t) != 1 || t[0] != prev ||
                                       ju_upper(prev, t) != 1 || t[0] != prev);
            bool next_cased = next && (ju_lower(next, t) != 1 || t[0] != next ||
                                       ju_upper(next, t) != 1 || t[0] != next);
            m[0] = prev_cased && !next_cased ? 0x3C2 : 0x3C3;
            k = 1;
        } else {
            k = upper ? ju_upper(cp, m) : ju_lower(cp, m);
        }
        if (k == 1 && m[0] == cp) {
            if (jbuf_put(&b, s + i, adv)) goto full;
        } else {
            for (int j = 0; j < k; j++) {
                char e[4];
                if (jbuf_put(&b, e, ju_encode(m[j], e))) goto full;
            }
        }
        prev = cp;
        i += adv;
    }
    return jbuf_to_str(c, &b, out);
full:
    jbuf_free(&b);
    return jbuf_err(c, NULL);
}

static bool numeric_like(jv v) {
    return v.k == JV_INT || v.k == JV_FLOAT || v.k == JV_BOOL;
}

int jv_compare(jctx *c, const jnode *at, jv a, jv b, bool case_sensitive, int *out) {
    if (a.k == JV_NULL || b.k == JV_NULL || a.k == JV_UNDEF || b.k == JV_UNDEF) {
        if (a.k == b.k) {
            *out = 0;
            return 0;
        }
        return jerr(c, at, "Cannot compare %s with %s", jv_type_name(a), jv_type_name(b));
    }
    if (numeric_like(a) && numeric_like(b)) {
        double x = a.k == JV_BOOL ? a.b : a.u.num, y = b.k == JV_BOOL ? b.b : b.u.num;
        *out = x < y ? -1 : x > y ? 1 : 0;
        return 0;
    }
    if (a.k != b.k)
        return jerr(c, at, "Cannot compare different types: %s and %s", jv_type_name(a),
                    jv_type_name(b));
    if (a.k != JV_STR) return jerr(c, at, "Cannot compare type: %s", jv_type_name(a));
    if (!case_sensitive) {
        int rc = jstr_case(c, a.u.s, a.n, false, &a);
        if (rc || (rc = jstr_case(c, b.u.s, b.n, false, &b))) return rc;
    }
    *out = ju_cmp_utf16(a.u.s, a.n, b.u.s, b.n);
    return 0;
}
