/* Built-in functions: the globals (raise_exception, range, strftime_now, namespace), the methods
 * of strings (strip, split, startswith, ...) and of dicts (get, items, keys, values, dictsort),
 * and the stable sort that sort / dictsort share. Argument handling copies the reference's,
 * e.g. strip('\n') ignores its argument and strips all whitespace. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jinja_internal.h"

enum {
    G_RAISE,
    G_RANGE,
    G_STRFTIME,
    G_NAMESPACE,
    M_UPPER,
    M_LOWER,
    M_STRIP,
    M_TITLE,
    M_CAPITALIZE,
    M_RSTRIP,
    M_LSTRIP,
    M_STARTSWITH,
    M_ENDSWITH,
    M_SPLIT,
    M_REPLACE,
    M_FORMAT, /* not in the reference: Python's str.format for {} / {0} / {name} */
    M_JOIN,   /* not in the reference: Python's str.join */
    M_GET,
    M_ITEMS,
    M_KEYS,
    M_VALUES,
    M_DICTSORT,
};

static const struct {
    const char *name;
    int id;
} string_methods[] = {
    { "upper", M_UPPER },   { "lower", M_LOWER },           { "strip", M_STRIP },
    { "title", M_TITLE },   { "capitalize", M_CAPITALIZE }, { "rstrip", M_RSTRIP },
    { "lstrip", M_LSTRIP }, { "startswith", M_STARTSWITH }, { "endswith", M_ENDSWITH },
    { "split", M_SPLIT },   { "replace", M_REPLACE },       { "format", M_FORMAT },
    { "join", M_JOIN },
},
  object_methods[] = {
      { "get", M_GET },       { "items", M_ITEMS },       { "keys", M_KEYS },
      { "values", M_VALUES }, { "dictsort", M_DICTSORT },
  };

static bool name_is(const char *s, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int make_fn(jctx *c, int kind, int id, jv self, jv *out) {
    jfunc *f = jalloc(c, sizeof *f);
    if (!f) return c->e->code;
    f->kind = (uint8_t)kind;
    f->id = id;
    f->self = self;
    *out = (jv){ .k = JV_FUNC, .u.fn = f };
    return 0;
}

bool jinja_builtin_member(jctx *c, jv self, const char *name, size_t nn, jv *out, int *err) {
    *err = 0;
    if (self.k == JV_STR) {
        if (name_is(name, nn, "length")) {
            *out = jv_int((double)ju_utf16_len(self.u.s, self.n));
            return true;
        }
        for (size_t i = 0; i < sizeof string_methods / sizeof string_methods[0]; i++)
            if (name_is(name, nn, string_methods[i].name)) {
                *err = make_fn(c, JF_METHOD, string_methods[i].id, self, out);
                return true;
            }
    } else if (jv_is_arr(self)) {
        if (name_is(name, nn, "length")) {
            *out = jv_int((double)self.u.arr->n);
            return true;
        }
    } else if (jv_is_obj(self)) {
        for (size_t i = 0; i < sizeof object_methods / sizeof object_methods[0]; i++)
            if (name_is(name, nn, object_methods[i].name)) {
                *err = make_fn(c, JF_METHOD, object_methods[i].id, self, out);
                return true;
            }
    }
    return false;
}

/* ---- dicts ---- */

int jinja_object_items(jctx *c, jv obj, jv *out) {
    const jobj *o = obj.u.obj;
    jarr *a = jarr_new(c, o->n);
    if (!a) return c->e->code;
    for (size_t i = 0; i < o->n; i++) {
        jarr *pair = jarr_new(c, 2);
        if (!pair) return c->e->code;
        pair->v[0] = jv_str(o->kp[i], o->kn[i]);
        pair->v[1] = o->v[i];
        a->v[i] = (jv){ .k = JV_ARRAY, .u.arr = pair };
    }
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return 0;
}

jv jinja_attr_path(jv item, const char *path, size_t n) {
    jv v = item;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && path[i] != '.') continue;
        const char *part = path + start;
        size_t pn = i - start;
        start = i + 1;
        if (jv_is_attr(v)) {
            const jv *f = jobj_get(v.u.obj, part, pn);
            v = f ? *f : jv_undef();
        } else if (jv_is_arr(v)) {
            double idx = jnum_parse_int(part, pn); /* parseInt: "1x" is 1 */
            if (isnan(idx) || idx < 0 || idx >= (double)v.u.arr->n) return jv_undef();
            v = v.u.arr->v[(size_t)idx];
        } else {
            return jv_undef();
        }
    }
    return v;
}

typedef struct sort_ctx {
    jctx *c;
    const jnode *at;
    bool reverse, case_sensitive, by_attr;
    const char *attr;
    size_t attrn;
    int index; /* >= 0: compare element [index] of pairs (dictsort) */
    int rc;
} sort_ctx;

static int sort_cmp(sort_ctx *s, jv a, jv b) {
    if (s->rc) return 0;
    if (s->by_attr) {
        a = jinja_attr_path(a, s->attr, s->attrn);
        b = jinja_attr_path(b, s->attr, s->attrn);
    } else if (s->index >= 0) {
        a = a.u.arr->v[s->index];
        b = b.u.arr->v[s->index];
    }
    int r = 0;
    s->rc = jv_compare(s->c, s->at, a, b, s->case_sensitive, &r);
    if (!s->rc) s->rc = jcharge(s->c, 1);
    return s->reverse ? -r : r;
}

/* Stable merge sort (Array.prototype.sort is stable). */
static int merge_sort(sort_ctx *s, jv *v, size_t n) {
    if (n < 2) return 0;
    jv *tmp = jalloc(s->c, n * sizeof *tmp);
    if (!tmp) return s->c->e->code;
    for (size_t width = 1; width < n && !s->rc; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n,
                   hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = sort_cmp(s, v[j], v[i]) < 0 ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
    return s->rc;
}

int jinja_sort(jctx *c, const jnode *at, jv *items, size_t n, bool reverse, bool case_sensitive,
               const char *attr, size_t attrn, bool by_attr) {
    sort_ctx s = { c, at, reverse, case_sensitive, by_attr, attr, attrn, -1, 0 };
    return merge_sort(&s, items, n);
}

/* Splits trailing keyword arguments off a method's arguments. */
static const jobj *take_kwargs(jv *args, size_t *nargs) {
    if (*nargs && args[*nargs - 1].k == JV_KWARGS) return args[--*nargs].u.obj;
    return NULL;
}

static jv arg_or(jv *args, size_t nargs, size_t i, const jobj *kw, const char *name, jv dflt) {
    if (i < nargs) return args[i];
    const jv *v = kw ? jobj_get(kw, name, strlen(name)) : NULL;
    return v ? *v : dflt;
}

int jinja_dictsort(jctx *c, const jnode *at, jv obj, jv *args, size_t nargs, jv *out) {
    /* Keyword arguments may sit anywhere among the positional ones here. */
    jv pos[3];
    size_t np = 0;
    const jobj *kw = NULL;
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].k == JV_KWARGS)
            kw = args[i].u.obj;
        else if (np < 3)
            pos[np++] = args[i];
    }
    jv cs = arg_or(pos, np, 0, kw, "case_sensitive", jv_bool(false));
    if (cs.k != JV_BOOL) return jerr(c, at, "case_sensitive must be a boolean");
    jv by = arg_or(pos, np, 1, kw, "by", jv_str("key", 3));
    if (by.k != JV_STR) return jerr(c, at, "by must be a string");
    bool by_value = name_is(by.u.s, by.n, "value");
    if (!by_value && !name_is(by.u.s, by.n, "key"))
        return jerr(c, at, "by must be either 'key' or 'value'");
    jv rev = arg_or(pos, np, 2, kw, "reverse", jv_bool(false));
    if (rev.k != JV_BOOL) return jerr(c, at, "reverse must be a boolean");
    int rc = jinja_object_items(c, obj, out);
    if (rc) return rc;
    sort_ctx s = { c, at, rev.b, cs.b, false, NULL, 0, by_value ? 1 : 0, 0 };
    return merge_sort(&s, out->u.arr->v, out->u.arr->n);
}

/* ---- strings ---- */

static int str_title(jctx *c, jv s, jv *out) {
    int rc = jstr_new(c, s.u.s, s.n, out);
    if (rc) return rc;
    char *p = (char *)out->u.s;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)p[i];
        bool word_before = i > 0 && ((p[i - 1] >= 'a' && p[i - 1] <= 'z') ||
                                     (p[i - 1] >= 'A' && p[i - 1] <= 'Z') ||
                                     (p[i - 1] >= '0' && p[i - 1] <= '9') || p[i - 1] == '_');
        if (!word_before && ch >= 'a' && ch <= 'z') p[i] = (char)(ch - 32);
    }
    return 0;
}

static int str_capitalize(jctx *c, jv s, jv *out) {
    if (s.n == 0) {
        *out = s;
        return 0;
    }
    size_t adv;
    uint32_t cp = ju_decode(s.u.s, s.n, &adv), m[3];
    if (cp >= 0x10000) {
        *out = s;
        return 0;
    }
    int k = ju_upper(cp, m);
    char head[12];
    size_t hn = 0;
    for (int i = 0; i < k; i++) hn += ju_encode(m[i], head + hn);
    return jstr_cat(c, head, hn, s.u.s + adv, s.n - adv, out);
}

static int str_affix(jctx *c, const jnode *at, jv s, jv *args, size_t nargs, bool ends, jv *out) {
    const char *fn = ends ? "endswith" : "startswith";
    if (nargs == 0) return jerr(c, at, "%s() requires at least one argument", fn);
    jv p = args[0];
    jv *list = &p;
    size_t n = 1;
    if (jv_is_arr(p)) {
        list = p.u.arr->v;
        n = p.u.arr->n;
    } else if (p.k != JV_STR) {
        return jerr(c, at, "%s() argument must be a string or tuple of strings", fn);
    }
    for (size_t i = 0; i < n; i++) {
        if (list[i].k != JV_STR) return jerr(c, at, "%s() tuple elements must be strings", fn);
        size_t k = list[i].n;
        if (k <= s.n && memcmp(s.u.s + (ends ? s.n - k : 0), list[i].u.s, k) == 0) {
            *out = jv_bool(true);
            return 0;
        }
    }
    *out = jv_bool(false);
    return 0;
}

/* A growable list of values in the arena. */
typedef struct vlist {
    jv *v;
    size_t n, cap;
} vlist;

static int vl_push(jctx *c, vlist *l, jv x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        jv *v = jalloc(c, cap * sizeof *v);
        if (!v) return c->e->code;
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return jcharge(c, 1);
}

static int vl_array(jctx *c, vlist *l, jv *out) {
    jarr *a = jalloc(c, sizeof *a);
    if (!a) return c->e->code;
    a->n = l->n;
    a->v = l->v;
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return 0;
}

static int str_split(jctx *c, const jnode *at, jv s, jv *args, size_t nargs, jv *out) {
    jv sep = nargs > 0 ? args[0] : jv_null();
    if (sep.k != JV_STR && sep.k != JV_NULL)
        return jerr(c, at, "sep argument must be a string or null");
    jv ms = nargs > 1 ? args[1] : jv_int(-1);
    if (ms.k != JV_INT) return jerr(c, at, "maxsplit argument must be a number");
    double maxsplit = ms.u.num;
    vlist l = { 0 };
    int rc;
    if (sep.k == JV_NULL) {
        /* Runs of whitespace separate; once maxsplit parts are taken the rest is one part. */
        const char *t = s.u.s;
        size_t n = s.n, i = 0, k;
        ju_trim(&t, &n, true, false);
        for (;;) {
            while (i < n && (k = ju_space_at(t + i, n - i)) > 0) i += k;
            if (i >= n) break;
            size_t start = i;
            while (i < n && ju_space_at(t + i, n - i) == 0) {
                size_t adv;
                ju_decode(t + i, n - i, &adv);
                i += adv;
            }
            if (maxsplit != -1 && (double)l.n >= maxsplit) {
                if ((rc = vl_push(c, &l, jv_str(t + start, n - start)))) return rc;
                break;
            }
            if ((rc = vl_push(c, &l, jv_str(t + start, i - start)))) return rc;
        }
        return vl_array(c, &l, out);
    }
    if (sep.n == 0) return jerr(c, at, "empty separator");
    const char *p = s.u.s, *end = s.u.s + s.n;
    for (;;) {
        const char *hit =
            (size_t)(end - p) >= sep.n ? memmem(p, (size_t)(end - p), sep.u.s, sep.n) : NULL;
        if (!hit) break;
        if ((rc = vl_push(c, &l, jv_str(p, (size_t)(hit - p))))) return rc;
        p = hit + sep.n;
    }
    if ((rc = vl_push(c, &l, jv_str(p, (size_t)(end - p))))) return rc;
    if (maxsplit != -1 && (double)l.n > maxsplit) {
        /* result.push(result.splice(maxsplit).join(sep)) */
        double from = maxsplit < 0 ? fmax((double)l.n + maxsplit, 0) : maxsplit;
        size_t f = (size_t)from;
        const char *rest = l.v[f].u.s;
        const char *last_end = l.v[l.n - 1].u.s + l.v[l.n - 1].n;
        l.v[f] = jv_str(rest, (size_t)(last_end - rest)); /* the parts are contiguous in s */
        l.n = f + 1;
    }
    return vl_array(c, &l, out);
}

static int str_replace(jctx *c, const jnode *at, jv s, jv *args, size_t nargs, jv *out) {
    if (nargs < 2) return jerr(c, at, "replace() requires at least two arguments");
    jv old = args[0], nw = args[1];
    if (old.k != JV_STR || nw.k != JV_STR)
        return jerr(c, at, "replace() arguments must be strings");
    jv count = jv_null();
    if (nargs > 2) {
        if (args[2].k == JV_KWARGS) {
            const jv *v = jobj_get(args[2].u.obj, "count", 5);
            count = v ? *v : jv_null();
        } else {
            count = args[2];
        }
    }
    if (count.k != JV_INT && count.k != JV_NULL)
        return jerr(c, at, "replace() count argument must be a number or null");
    if (count.k == JV_INT && count.u.num == 0) {
        *out = s;
        return 0;
    }
    double remaining = count.k == JV_NULL || count.u.num < 0 ? INFINITY : count.u.num;
    jbuf b = jctx_buf(c);
    int rc = jcharge(c, s.n / 16);
    if (rc) return rc;
    size_t i = 0;
    if (old.n == 0) {
        /* An empty pattern matches before every character and at the end. */
        for (;;) {
            if (remaining > 0) {
                remaining--;
                if (jbuf_put(&b, nw.u.s, nw.n)) goto full;
            }
            if (i >= s.n) break;
            size_t adv;
            ju_decode(s.u.s + i, s.n - i, &adv);
            if (jbuf_put(&b, s.u.s + i, adv)) goto full;
            i += adv;
        }
    } else {
        while (i < s.n) {
            const char *hit = remaining > 0 && s.n - i >= old.n
                                  ? memmem(s.u.s + i, s.n - i, old.u.s, old.n)
                                  : NULL;
            if (!hit) break;
            size_t h = (size_t)(hit - s.u.s);
            if (jbuf_put(&b, s.u.s + i, h - i) || jbuf_put(&b, nw.u.s, nw.n)) goto full;
            remaining--;
            i = h + old.n;
        }
        if (jbuf_put(&b, s.u.s + i, s.n - i)) goto full;
    }
    return jbuf_to_str(c, &b, out);
full:
    jbuf_free(&b);
    return jbuf_err(c, at);
}

/* Python's str.format for the simple fields chat templates use: {}, {0}, {name}. */
static int str_format(jctx *c, const jnode *at, jv s, jv *args, size_t nargs, jv *out) {
    const jobj *kw = take_kwargs(args, &nargs);
    jbuf b = jctx_buf(c);
    size_t auto_idx = 0;
    int rc = 0;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.u.s[i];
        if ((ch == '{' || ch == '}') && i + 1 < s.n && s.u.s[i + 1] == ch) {
            if (jbuf_putc(&b, ch)) goto full;
            i++;
            continue;
        }
        if (ch == '}') {
            rc = jerr(c, at, "Single '}' encountered in format string");
            goto fail;
        }
        if (ch != '{') {
            if (jbuf_putc(&b, ch)) goto full;
            continue;
        }
        const char *close = memchr(s.u.s + i, '}', s.n - i);
        if (!close) {
            rc = jerr(c, at, "Single '{' encountered in format string");
            goto fail;
        }
        const char *f = s.u.s + i + 1;
        size_t fn = (size_t)(close - f);
        const char *colon = memchr(f, ':', fn); /* format specs are not supported: ignored */
        if (colon) fn = (size_t)(colon - f);
        jv v;
        if (fn == 0) {
            if (auto_idx >= nargs) goto range;
            v = args[auto_idx++];
        } else if (f[0] >= '0' && f[0] <= '9') {
            double idx = jnum_parse_int(f, fn);
            if (idx >= (double)nargs) goto range;
            v = args[(size_t)idx];
        } else {
            const jv *kv = kw ? jobj_get(kw, f, fn) : NULL;
            if (!kv) {
                rc = jerr(c, at, "format(): no argument named '%.*s'", (int)fn, f);
                goto fail;
            }
            v = *kv;
        }
        if ((rc = jv_tostring(c, v, &b, 0))) goto fail;
        i = (size_t)(close - s.u.s);
    }
    return jbuf_to_str(c, &b, out);
range:
    rc = jerr(c, at, "Replacement index out of range for format()");
    goto fail;
full:
    rc = jbuf_err(c, at);
fail:
    jbuf_free(&b);
    return rc;
}

static int str_join(jctx *c, const jnode *at, jv sep, jv *args, size_t nargs, jv *out) {
    if (nargs < 1 || !jv_is_arr(args[0])) return jerr(c, at, "join() expects a list");
    const jarr *a = args[0].u.arr;
    jbuf b = jctx_buf(c);
    for (size_t i = 0; i < a->n; i++) {
        int rc;
        if (i && jbuf_put(&b, sep.u.s, sep.n)) goto full;
        if ((rc = jv_tostring(c, a->v[i], &b, 0))) {
            jbuf_free(&b);
            return rc;
        }
    }
    return jbuf_to_str(c, &b, out);
full:
    jbuf_free(&b);
    return jbuf_err(c, at);
}

/* ---- globals ---- */

static double to_number(jv v) {
    switch (v.k) {
    case JV_INT:
    case JV_FLOAT:
        return v.u.num;
    case JV_BOOL:
        return v.b;
    case JV_NULL:
        return 0;
    case JV_STR:
        return jnum_parse_js(v.u.s, v.n);
    default:
        return NAN;
    }
}

static int g_range(jctx *c, const jnode *at, jv *args, size_t nargs, jv *out) {
    /* range(stop) / range(start, stop[, step]); an undefined argument counts as left out. */
    double start = nargs > 0 ? to_number(args[0]) : NAN, stop, step = 1;
    bool has_stop = nargs > 1 && args[1].k != JV_UNDEF;
    if (!has_stop) {
        stop = start;
        start = 0;
    } else {
        stop = to_number(args[1]);
    }
    if (nargs > 2 && args[2].k != JV_UNDEF) step = to_number(args[2]);
    if (step == 0) return jerr(c, at, "range() step must not be zero");
    /* Count first: the list is allocated once, and refused when too long. */
    double span = step > 0 ? stop - start : start - stop;
    double count = span > 0 ? ceil(span / fabs(step)) : 0;
    if (isnan(count)) count = 0;
    if (count > JINJA_MAX_RANGE)
        return srp_err_set(c->e, SRP_EFULL, "chat template: range() longer than %u",
                           JINJA_MAX_RANGE);
    int rc = jcharge(c, (size_t)count / 4);
    if (rc) return rc;
    jarr *a = jarr_new(c, (size_t)count + 1); /* float steps may fit one more */
    if (!a) return c->e->code;
    size_t k = 0;
    /* The same additions as the reference's loop, so float steps land on the same values. */
    for (double i = start; k < a->n && (step > 0 ? i < stop : i > stop); i += step)
        a->v[k++] = isfinite(i) && i == floor(i) ? jv_int(i) : jv_float(i);
    a->n = k;
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return 0;
}

static int g_strftime(jctx *c, const jnode *at, jv *args, size_t nargs, jv *out) {
    if (nargs < 1 || args[0].k != JV_STR)
        return jerr(c, at, "strftime_now() expects a format string");
    static const char *const months[] = { "January",   "February", "March",    "April",
                                          "May",       "June",     "July",     "August",
                                          "September", "October",  "November", "December" };
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    jv f = args[0];
    jbuf b = jctx_buf(c);
    for (size_t i = 0; i < f.n; i++) {
        char tmp[32];
        int n = -1;
        if (f.u.s[i] == '%' && i + 1 < f.n) {
            switch (f.u.s[i + 1]) {
            case 'Y':
                n = snprintf(tmp, sizeof tmp, "%d", tm.tm_year + 1900);
                break;
            case 'm':
                n = snprintf(tmp, sizeof tmp, "%02d", tm.tm_mon + 1);
                break;
            case 'd':
                n = snprintf(tmp, sizeof tmp, "%02d", tm.tm_mday);
                break;
            case 'H':
                n = snprintf(tmp, sizeof tmp, "%02d", tm.tm_hour);
                break;
            case 'M':
                n = snprintf(tmp, sizeof tmp, "%02d", tm.tm_min);
                break;
            case 'b':
                n = snprintf(tmp, sizeof tmp, "%.3s", months[tm.tm_mon]);
                break;
            case 'B':
                n = snprintf(tmp, sizeof tmp, "%s", months[tm.tm_mon]);
                break;
            case '%':
                n = snprintf(tmp, sizeof tmp, "%%");
                break;
            default:
                break;
            }
        }
        if (n >= 0) {
            if (jbuf_put(&b, tmp, (size_t)n)) goto full;
            i++;
        } else if (jbuf_putc(&b, f.u.s[i])) {
            goto full;
        }
    }
    return jbuf_to_str(c, &b, out);
full:
    jbuf_free(&b);
    return jbuf_err(c, at);
}

static int g_namespace(jctx *c, const jnode *at, jv *args, size_t nargs, jv *out) {
    const jobj *kw = take_kwargs(args, &nargs);
    if (nargs > 1) return jerr(c, at, "namespace expected at most 1 argument, got %zu", nargs);
    jobj *ns = jobj_new(c, 4);
    if (!ns) return c->e->code;
    int rc;
    if (nargs == 1) {
        jv src = args[0];
        if (jv_is_obj(src)) {
            for (size_t i = 0; i < src.u.obj->n; i++)
                if ((rc = jobj_set(c, ns, src.u.obj->kp[i], src.u.obj->kn[i], src.u.obj->v[i])))
                    return rc;
        } else if (jv_is_arr(src)) {
            for (size_t i = 0; i < src.u.arr->n; i++) {
                jv pair = src.u.arr->v[i], k, v;
                if (jv_is_arr(pair) && pair.u.arr->n == 2) {
                    k = pair.u.arr->v[0];
                    v = pair.u.arr->v[1];
                } else if (pair.k == JV_STR) {
                    /* A two-character string is a (key, value) pair of characters. */
                    size_t a1, a2;
                    ju_decode(pair.u.s, pair.n, &a1);
                    ju_decode(pair.u.s + a1, pair.n - a1, &a2);
                    if (pair.n == 0 || a1 + a2 != pair.n || a2 == 0) goto bad_pair;
                    k = jv_str(pair.u.s, a1);
                    v = jv_str(pair.u.s + a1, a2);
                } else {
                    goto bad_pair;
                }
                if (k.k != JV_STR) return jerr(c, at, "namespace keys must be strings");
                if ((rc = jobj_set(c, ns, k.u.s, k.n, v))) return rc;
            }
        } else {
            return jerr(c, at, "'%s' object is not iterable", jv_type_name(src));
        }
    }
    for (size_t i = 0; kw && i < kw->n; i++)
        if ((rc = jobj_set(c, ns, kw->kp[i], kw->kn[i], kw->v[i]))) return rc;
    *out = (jv){ .k = JV_NS, .u.obj = ns };
    return 0;
bad_pair:
    return jerr(c, at, "namespace expected an object or an iterable of [key, value] pairs");
}

int jinja_call_builtin(jctx *c, const jnode *at, const jfunc *f, jv *args, size_t nargs, jv *out) {
    jv s = f->self;
    int rc;
    switch (f->id) {
    case G_RAISE: {
        jv msg = jv_str("", 0);
        if (nargs && args[0].k != JV_UNDEF && (rc = jv_to_str(c, args[0], true, &msg))) return rc;
        return srp_err_set(c->e, SRP_EINVAL, "%.*s", (int)(msg.n < 1000 ? msg.n : 1000), msg.u.s);
    }
    case G_RANGE:
        return g_range(c, at, args, nargs, out);
    case G_STRFTIME:
        return g_strftime(c, at, args, nargs, out);
    case G_NAMESPACE:
        return g_namespace(c, at, args, nargs, out);
    case M_UPPER:
    case M_LOWER:
        return jstr_case(c, s.u.s, s.n, f->id == M_UPPER, out);
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP:
        ju_trim(&s.u.s, &s.n, f->id != M_RSTRIP, f->id != M_LSTRIP);
        *out = s;
        return 0;
    case M_TITLE:
        return str_title(c, s, out);
    case M_CAPITALIZE:
        return str_capitalize(c, s, out);
    case M_STARTSWITH:
    case M_ENDSWITH:
        return str_affix(c, at, s, args, nargs, f->id == M_ENDSWITH, out);
    case M_SPLIT:
        return str_split(c, at, s, args, nargs, out);
    case M_REPLACE:
        return str_replace(c, at, s, args, nargs, out);
    case M_FORMAT:
        return str_format(c, at, s, args, nargs, out);
    case M_JOIN:
        return str_join(c, at, s, args, nargs, out);
    case M_GET: {
        if (nargs < 1 || args[0].k != JV_STR)
            return jerr(c, at, "Object key must be a string: got %s",
                        nargs ? jv_type_name(args[0]) : "undefined");
        const jv *v = jobj_get(s.u.obj, args[0].u.s, args[0].n);
        *out = v ? *v : nargs > 1 ? args[1] : jv_null();
        return 0;
    }
    case M_ITEMS:
        return jinja_object_items(c, s, out);
    case M_KEYS:
    case M_VALUES: {
        const jobj *o = s.u.obj;
        jarr *a = jarr_new(c, o->n);
        if (!a) return c->e->code;
        for (size_t i = 0; i < o->n; i++)
            a->v[i] = f->id == M_KEYS ? jv_str(o->kp[i], o->kn[i]) : o->v[i];
        *out = (jv){ .k = JV_ARRAY, .u.arr = a };
        return 0;
    }
    case M_DICTSORT:
        return jinja_dictsort(c, at, s, args, nargs, out);
    default:
        return jerr(c, at, "unknown built-in function");
    }
}

int jinja_setup_globals(jctx *c, jenv *root) {
    static const struct {
        const char *name;
        int id;
    } fns[] = { { "namespace", G_NAMESPACE },
                { "raise_exception", G_RAISE },
                { "range", G_RANGE },
                { "strftime_now", G_STRFTIME } };
    int rc;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        jv f;
        if ((rc = make_fn(c, JF_GLOBAL, fns[i].id, jv_undef(), &f)) ||
            (rc = jenv_set(c, root, fns[i].name, strlen(fns[i].name), f)))
            return rc;
    }
    static const struct {
        const char *name;
        int v; /* 0 false, 1 true, 2 none */
    } consts[] = { { "false", 0 }, { "true", 1 },  { "none", 2 },
                   { "True", 1 },  { "False", 0 }, { "None", 2 } };
    for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
        jv v = consts[i].v == 2 ? jv_null() : jv_bool(consts[i].v);
        if ((rc = jenv_set(c, root, consts[i].name, strlen(consts[i].name), v))) return rc;
    }
    return 0;
}
