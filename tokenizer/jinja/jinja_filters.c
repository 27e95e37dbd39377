/* Filters (`x | name`, `x | name(args)`) and tests (`x is name`). The reference's filters come
 * first, with its behaviour per operand type (e.g. `int` floors a float but `int(0)` returns it
 * unchanged); after them, marked "extension", filters and tests the reference lacks, with
 * Jinja2's behaviour (d, escape, round, wordcount, sum, min, max, select, reject, map by filter
 * name, tests with arguments such as divisibleby). They only run where the reference would have
 * failed, so they never change an output the reference produces. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "jinja_internal.h"

static bool is_name(const char *s, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static jv kwarg(const jobj *kw, const char *name, jv dflt) {
    const jv *v = kw ? jobj_get(kw, name, strlen(name)) : NULL;
    return v ? *v : dflt;
}

static jv pos_or_kw(jv *args, size_t nargs, size_t i, const jobj *kw, const char *name, jv dflt) {
    return i < nargs ? args[i] : kwarg(kw, name, dflt);
}

/* JavaScript truthiness of a value's underlying JS value (arrays and maps are always true). */
static bool js_truthy(jv v) {
    switch (v.k) {
    case JV_UNDEF:
    case JV_NULL:
        return false;
    case JV_BOOL:
        return v.b;
    case JV_INT:
    case JV_FLOAT:
        return v.u.num != 0 && !isnan(v.u.num);
    case JV_STR:
        return v.n > 0;
    default:
        return true;
    }
}

static int wrap_arr(jctx *c, jv *items, size_t n, jv *out) {
    jarr *a = jalloc(c, sizeof *a);
    if (!a) return c->e->code;
    a->n = n;
    a->v = items;
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return 0;
}

static int copy_arr(jctx *c, jv v, jv *out) {
    size_t n = v.u.arr->n;
    jarr *a = jarr_new(c, n);
    if (!a) return c->e->code;
    if (n) memcpy(a->v, v.u.arr->v, n * sizeof(jv));
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return jcharge(c, n / 4);
}

static int tojson(jctx *c, const jnode *at, jv v, const jjson_opts *o, jv *out) {
    jbuf b = jctx_buf(c);
    int rc = jv_tojson(c, at, v, o, 0, &b);
    if (rc) {
        jbuf_free(&b);
        return rc;
    }
    return jbuf_to_str(c, &b, out);
}

static int tojson_call(jctx *c, const jnode *at, jv v, const jobj *kw, jv *out) {
    jjson_opts o = { .undefined_as_null = true };
    jv indent = kwarg(kw, "indent", jv_null());
    if (indent.k != JV_INT && indent.k != JV_NULL)
        return jerr(c, at, "If set, indent must be a number");
    if (indent.k == JV_INT) {
        double d = indent.u.num;
        o.indent = d > 1e6 ? 1000000 : d < -1e6 ? -1000000 : (int)d;
    }
    jv ea = kwarg(kw, "ensure_ascii", jv_bool(false));
    if (ea.k != JV_BOOL) return jerr(c, at, "If set, ensure_ascii must be a boolean");
    jv sk = kwarg(kw, "sort_keys", jv_bool(false));
    if (sk.k != JV_BOOL) return jerr(c, at, "If set, sort_keys must be a boolean");
    jv sep = kwarg(kw, "separators", jv_null());
    if (jv_is_arr(sep)) {
        if (sep.u.arr->n != 2 || sep.u.arr->v[0].k != JV_STR || sep.u.arr->v[1].k != JV_STR)
            return jerr(c, at, "separators must be a tuple of two strings");
        o.has_separators = true;
        o.item_sep = sep.u.arr->v[0].u.s;
        o.item_sep_n = sep.u.arr->v[0].n;
        o.key_sep = sep.u.arr->v[1].u.s;
        o.key_sep_n = sep.u.arr->v[1].n;
    } else if (sep.k != JV_NULL) {
        return jerr(c, at, "If set, separators must be a tuple of two strings");
    }
    o.ensure_ascii = ea.b;
    o.sort_keys = sk.b;
    return tojson(c, at, v, &o, out);
}

/* Array.prototype.join over the elements' JS values: none and undefined become "". */
static int join_values(jctx *c, const jnode *at, jv v, jv sep, jv *out) {
    jbuf b = jctx_buf(c);
    int rc = 0;
    if (v.k == JV_STR) {
        for (size_t i = 0; i < v.n;) {
            size_t adv;
            ju_decode(v.u.s + i, v.n - i, &adv);
            if ((i && jbuf_put(&b, sep.u.s, sep.n)) || jbuf_put(&b, v.u.s + i, adv)) goto full;
            i += adv;
        }
    } else {
        for (size_t i = 0; i < v.u.arr->n; i++) {
            jv x = v.u.arr->v[i];
            if (i && jbuf_put(&b, sep.u.s, sep.n)) goto full;
            if (x.k != JV_UNDEF && x.k != JV_NULL && (rc = jv_rawstring(c, x, &b, 0))) goto fail;
        }
    }
    return jbuf_to_str(c, &b, out);
full:
    rc = jbuf_err(c, at);
fail:
    jbuf_free(&b);
    return rc;
}

static int indent_lines(jctx *c, const jnode *at, jv s, double width, bool first, bool blank,
                        jv *out) {
    if (width < 0) return jerr(c, at, "Invalid count value: %g", width);
    if (c->lim.max_output && width > (double)c->lim.max_output) return jbuf_err(c, at);
    jbuf b = jctx_buf(c);
    size_t w = (size_t)width, start = 0;
    for (size_t i = 0, line = 0; i <= s.n; i++) {
        if (i < s.n && s.u.s[i] != '\n') continue;
        size_t len = i - start;
        if (line > 0 && jbuf_putc(&b, '\n')) goto full;
        if ((first || line > 0) && (blank || len > 0))
            for (size_t k = 0; k < w; k++)
                if (jbuf_putc(&b, ' ')) goto full;
        if (jbuf_put(&b, s.u.s + start, len)) goto full;
        start = i + 1;
        line++;
    }
    return jbuf_to_str(c, &b, out);
full:
    jbuf_free(&b);
    return jbuf_err(c, at);
}

static int html_escape(jctx *c, const jnode *at, jv v, jv *out) {
    int rc = jv_to_str(c, v, false, &v);
    if (rc) return rc;
    jbuf b = jctx_buf(c);
    for (size_t i = 0; i < v.n; i++) {
        const char *r = NULL;
        switch (v.u.s[i]) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '"':
            r = "&#34;";
            break;
        case '\'':
            r = "&#39;";
            break;
        default:
            break;
        }
        if (r ? jbuf_put(&b, r, strlen(r)) : jbuf_putc(&b, v.u.s[i])) {
            jbuf_free(&b);
            return jbuf_err(c, at);
        }
    }
    return jbuf_to_str(c, &b, out);
}

static int unique(jctx *c, jv v, jv *out) {
    size_t n = v.u.arr->n, k = 0;
    jv *items = n ? jalloc(c, n * sizeof *items) : NULL;
    if (n && !items) return c->e->code;
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++) seen = jv_same_value_zero(items[j], v.u.arr->v[i]);
        int rc = jcharge(c, k / 8 + 1);
        if (rc) return rc;
        if (!seen) items[k++] = v.u.arr->v[i];
    }
    return wrap_arr(c, items, k, out);
}

static int codepoints(jctx *c, jv s, jv *out) {
    size_t n = 0;
    for (size_t i = 0; i < s.n; n++) {
        size_t adv;
        ju_decode(s.u.s + i, s.n - i, &adv);
        i += adv;
    }
    jarr *a = jarr_new(c, n);
    if (!a) return c->e->code;
    for (size_t i = 0, k = 0; i < s.n; k++) {
        size_t adv;
        ju_decode(s.u.s + i, s.n - i, &adv);
        a->v[k] = jv_str(s.u.s + i, adv);
        i += adv;
    }
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return jcharge(c, n / 4);
}

static size_t wordcount(jv s) {
    size_t count = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.n;) {
        size_t adv;
        uint32_t cp = ju_decode(s.u.s + i, s.n - i, &adv);
        bool w = (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
                 cp == '_' || (cp >= 0x80 && !ju_is_space(cp));
        if (w && !in_word) count++;
        in_word = w;
        i += adv;
    }
    return count;
}

static int minmax(jctx *c, const jnode *at, jv v, bool max, jv *out) {
    *out = jv_undef();
    for (size_t i = 0; i < v.u.arr->n; i++) {
        int r = 0, rc = 0;
        if (i && (rc = jv_compare(c, at, v.u.arr->v[i], *out, false, &r))) return rc;
        if (i == 0 || (max ? r > 0 : r < 0)) *out = v.u.arr->v[i];
    }
    return 0;
}

static int apply(jctx *c, jenv *env, const jnode *at, const char *name, size_t nn, jv v, bool call,
                 jv *args, size_t nargs, const jobj *kw, jv *out);

/* Extension: select / reject by a test, map by a filter name. */
static int select_map(jctx *c, jenv *env, const jnode *at, jv v, bool map, bool keep, jv *args,
                      size_t nargs, const jobj *kw, jv *out) {
    size_t n = v.u.arr->n, k = 0;
    jv *items = n ? jalloc(c, n * sizeof *items) : NULL;
    if (n && !items) return c->e->code;
    int rc;
    for (size_t i = 0; i < n; i++) {
        jv x = v.u.arr->v[i];
        if (map) {
            if (nargs < 1 || args[0].k != JV_STR) return jerr(c, at, "map() needs a filter name");
            if ((rc = apply(c, env, at, args[0].u.s, args[0].n, x, nargs > 1 || kw, args + 1,
                            nargs - 1, kw, &items[k++])))
                return rc;
            continue;
        }
        bool r = jv_truthy(x);
        if (nargs > 0) {
            bool known;
            if (args[0].k != JV_STR) return jerr(c, at, "select() needs a test name");
            if ((rc = jinja_test_named(c, at, args[0].u.s, args[0].n, x, args + 1, nargs - 1,
                                       &known, &r)))
                return rc;
            if (!known) return jerr(c, at, "Unknown test: %.*s", (int)args[0].n, args[0].u.s);
        }
        if (r == keep) items[k++] = x;
    }
    return wrap_arr(c, items, k, out);
}

static const char *const test_names[] = {
    "boolean",  "callable",    "odd",       "even",     "false",   "true",     "none",
    "string",   "number",      "integer",   "iterable", "mapping", "sequence", "lower",
    "upper",    "defined",     "undefined", "equalto",  "eq",      "sameas",   "float",
    "escaped",  "divisibleby", "ne",        "lt",       "le",      "gt",       "ge",
    "lessthan", "greaterthan", "in",
};

static bool test_exists(const char *name, size_t nn) {
    for (size_t i = 0; i < sizeof test_names / sizeof test_names[0]; i++)
        if (is_name(name, nn, test_names[i])) return true;
    return false;
}

static int selectattr(jctx *c, const jnode *at, jv v, bool keep, jv *args, size_t nargs, jv *out) {
    size_t n = v.u.arr->n, k = 0;
    for (size_t i = 0; i < n; i++)
        if (!jv_is_attr(v.u.arr->v[i]))
            return jerr(c, at, "`%s` can only be applied to array of objects",
                        keep ? "selectattr" : "rejectattr");
    if (nargs < 1) return jerr(c, at, "selectattr() needs an attribute name");
    /* the test is looked up before any item is */
    if (nargs > 1 && !test_exists(args[1].u.s, args[1].n))
        return jerr(c, at, "Unknown test: %.*s", (int)args[1].n, args[1].u.s);
    jv *items = n ? jalloc(c, n * sizeof *items) : NULL;
    if (n && !items) return c->e->code;
    for (size_t i = 0; i < n; i++) {
        jv item = v.u.arr->v[i];
        const jv *a = jobj_get(item.u.obj, args[0].u.s, args[0].n);
        bool r = false;
        if (a && nargs > 1) {
            bool known;
            int rc = jinja_test_named(c, at, args[1].u.s, args[1].n, *a, args + 2,
                                      nargs > 2 ? 1 : 0, &known, &r);
            if (rc) return rc;
            if (!known) return jerr(c, at, "Unknown test: %.*s", (int)args[1].n, args[1].u.s);
        } else if (a) {
            r = jv_truthy(*a);
        }
        if (r == keep) items[k++] = item;
    }
    return wrap_arr(c, items, k, out);
}

static int map_attribute(jctx *c, const jnode *at, jv v, const jobj *kw, jv *out) {
    jv attr = kwarg(kw, "attribute", jv_undef());
    if (attr.k != JV_STR) return jerr(c, at, "attribute must be a string");
    const jv *dflt = jobj_get(kw, "default", 7);
    jarr *a = jarr_new(c, v.u.arr->n);
    if (!a) return c->e->code;
    for (size_t i = 0; i < v.u.arr->n; i++) {
        jv item = v.u.arr->v[i];
        if (!jv_is_attr(item)) return jerr(c, at, "items in map must be an object");
        jv x = jinja_attr_path(item, attr.u.s, attr.n);
        a->v[i] = x.k == JV_UNDEF ? (dflt ? *dflt : jv_undef()) : x;
    }
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return 0;
}

static int sort_call(jctx *c, const jnode *at, jv v, jv *args, size_t nargs, const jobj *kw,
                     jv *out) {
    jv rev = pos_or_kw(args, nargs, 0, kw, "reverse", jv_bool(false));
    if (rev.k != JV_BOOL) return jerr(c, at, "reverse must be a boolean");
    jv cs = pos_or_kw(args, nargs, 1, kw, "case_sensitive", jv_bool(false));
    if (cs.k != JV_BOOL) return jerr(c, at, "case_sensitive must be a boolean");
    jv attr = pos_or_kw(args, nargs, 2, kw, "attribute", jv_null());
    if (attr.k != JV_STR && attr.k != JV_INT && attr.k != JV_NULL)
        return jerr(c, at, "attribute must be a string, integer, or null");
    int rc = copy_arr(c, v, out);
    if (rc) return rc;
    if (attr.k == JV_INT && (rc = jv_to_str(c, attr, true, &attr))) return rc;
    return jinja_sort(c, at, out->u.arr->v, out->u.arr->n, rev.b, cs.b,
                      attr.k == JV_STR ? attr.u.s : NULL, attr.n, attr.k == JV_STR);
}

static int round_num(jctx *c, const jnode *at, jv v, jv *args, size_t nargs, const jobj *kw,
                     jv *out) {
    jv prec = pos_or_kw(args, nargs, 0, kw, "precision", jv_int(0));
    jv method = pos_or_kw(args, nargs, 1, kw, "method", jv_str("common", 6));
    if (prec.k != JV_INT || method.k != JV_STR) return jerr(c, at, "round(): bad arguments");
    double scale = pow(10, prec.u.num), x = v.u.num * scale;
    if (is_name(method.u.s, method.n, "common"))
        x = round(x);
    else if (is_name(method.u.s, method.n, "ceil"))
        x = ceil(x);
    else if (is_name(method.u.s, method.n, "floor"))
        x = floor(x);
    else
        return jerr(c, at, "method must be common, ceil or floor");
    *out = jv_float(x / scale);
    return 0;
}

/* Filters of the reference written without arguments, by operand type. */
static int apply_plain(jctx *c, jenv *env, const jnode *at, const char *name, size_t nn, jv v,
                       jv *out) {
#define IS(lit) is_name(name, nn, lit)
    int rc;
    if (IS("safe")) {
        *out = v;
        return 0;
    }
    if (IS("tojson")) {
        jjson_opts o = { .undefined_as_null = true };
        return tojson(c, at, v, &o, out);
    }
    if (jv_is_arr(v)) {
        size_t n = v.u.arr->n;
        if (IS("list")) {
            *out = v;
            return 0;
        }
        if (IS("first") || IS("last")) {
            *out = n ? v.u.arr->v[IS("first") ? 0 : n - 1] : jv_undef();
            return 0;
        }
        if (IS("length") || IS("count")) {
            *out = jv_int((double)n);
            return 0;
        }
        if (IS("reverse")) {
            if ((rc = copy_arr(c, v, out))) return rc;
            for (size_t i = 0; i < n / 2; i++) {
                jv t = out->u.arr->v[i];
                out->u.arr->v[i] = out->u.arr->v[n - 1 - i];
                out->u.arr->v[n - 1 - i] = t;
            }
            return 0;
        }
        if (IS("sort")) {
            if ((rc = copy_arr(c, v, out))) return rc;
            return jinja_sort(c, at, out->u.arr->v, n, false, false, NULL, 0, false);
        }
        if (IS("join")) return join_values(c, at, v, jv_str("", 0), out);
        if (IS("string")) {
            jjson_opts o = { 0 };
            return tojson(c, at, v, &o, out);
        }
        if (IS("unique")) return unique(c, v, out);
        /* extension */
        if (IS("sum")) {
            double s = 0;
            bool fl = false;
            for (size_t i = 0; i < n; i++) {
                jv x = v.u.arr->v[i];
                if (!jv_is_num(x) && x.k != JV_BOOL) return jerr(c, at, "sum() needs numbers");
                s += x.k == JV_BOOL ? x.b : x.u.num;
                fl |= x.k == JV_FLOAT;
            }
            *out = fl ? jv_float(s) : jv_int(s);
            return 0;
        }
        if (IS("min") || IS("max")) return minmax(c, at, v, IS("max"), out);
        if (IS("select") || IS("reject"))
            return select_map(c, env, at, v, false, IS("select"), NULL, 0, NULL, out);
        return jerr(c, at, "Unknown ArrayValue filter: %.*s", (int)nn, name);
    }
    if (v.k == JV_STR) {
        if (IS("length") || IS("count")) {
            *out = jv_int((double)ju_utf16_len(v.u.s, v.n));
            return 0;
        }
        if (IS("upper") || IS("lower")) return jstr_case(c, v.u.s, v.n, IS("upper"), out);
        if (IS("title") || IS("capitalize")) {
            jv fn;
            if (!jinja_builtin_member(c, v, name, nn, &fn, &rc)) return jerr(c, at, "no %s", name);
            if (rc) return rc;
            return jinja_call_builtin(c, at, fn.u.fn, NULL, 0, out);
        }
        if (IS("trim")) {
            ju_trim(&v.u.s, &v.n, true, true);
            *out = v;
            return 0;
        }
        if (IS("indent")) return indent_lines(c, at, v, 4, false, false, out);
        if (IS("join") || IS("string")) {
            *out = v;
            return 0;
        }
        if (IS("int")) {
            double d = jnum_parse_int(v.u.s, v.n);
            *out = jv_int(isnan(d) ? 0 : d);
            return 0;
        }
        if (IS("float")) {
            double d = jnum_parse_float(v.u.s, v.n);
            *out = jv_float(isnan(d) ? 0 : d);
            return 0;
        }
        /* extension */
        if (IS("first") || IS("last") || IS("list") || IS("reverse")) {
            jv cps;
            if ((rc = codepoints(c, v, &cps))) return rc;
            size_t n = cps.u.arr->n;
            if (IS("list")) {
                *out = cps;
                return 0;
            }
            if (IS("reverse")) {
                jbuf b = jctx_buf(c);
                for (size_t i = n; i-- > 0;)
                    if (jbuf_put(&b, cps.u.arr->v[i].u.s, cps.u.arr->v[i].n)) {
                        jbuf_free(&b);
                        return jbuf_err(c, at);
                    }
                return jbuf_to_str(c, &b, out);
            }
            *out = n ? cps.u.arr->v[IS("first") ? 0 : n - 1] : jv_undef();
            return 0;
        }
        if (IS("wordcount")) {
            *out = jv_int((double)wordcount(v));
            return 0;
        }
        if (IS("e") || IS("escape")) return html_escape(c, at, v, out);
        return jerr(c, at, "Unknown StringValue filter: %.*s", (int)nn, name);
    }
    if (jv_is_num(v)) {
        if (IS("abs")) {
            *out = v;
            out->u.num = fabs(v.u.num);
            return 0;
        }
        if (IS("int")) {
            *out = jv_int(floor(v.u.num));
            return 0;
        }
        if (IS("float")) {
            *out = jv_float(v.u.num);
            return 0;
        }
        if (IS("string")) return jv_to_str(c, v, false, out);
        /* extension */
        if (IS("round")) return round_num(c, at, v, NULL, 0, NULL, out);
        if (IS("e") || IS("escape")) return html_escape(c, at, v, out);
        return jerr(c, at, "Unknown NumericValue filter: %.*s", (int)nn, name);
    }
    if (jv_is_obj(v)) {
        if (IS("items")) return jinja_object_items(c, v, out);
        if (IS("length") || IS("count")) {
            *out = jv_int((double)v.u.obj->n);
            return 0;
        }
        jv fn;
        if (jinja_builtin_member(c, v, name, nn, &fn, &rc)) {
            if (rc) return rc;
            return jinja_call_builtin(c, at, fn.u.fn, NULL, 0, out);
        }
        if (IS("list")) { /* extension: a dict's keys */
            jv keys;
            jinja_builtin_member(c, v, "keys", 4, &keys, &rc);
            if (rc) return rc;
            return jinja_call_builtin(c, at, keys.u.fn, NULL, 0, out);
        }
        return jerr(c, at, "Unknown ObjectValue filter: %.*s", (int)nn, name);
    }
    if (v.k == JV_BOOL) {
        if (IS("bool"))
            *out = v;
        else if (IS("int"))
            *out = jv_int(v.b);
        else if (IS("float"))
            *out = jv_float(v.b);
        else if (IS("string"))
            *out = v.b ? jv_str("true", 4) : jv_str("false", 5);
        else
            return jerr(c, at, "Unknown BooleanValue filter: %.*s", (int)nn, name);
        return 0;
    }
    /* extension: Jinja2's undefined is empty, and str(None) is "None" */
    if (v.k == JV_UNDEF) {
        if (IS("length") || IS("count")) {
            *out = jv_int(0);
            return 0;
        }
        if (IS("string") || IS("trim") || IS("join")) {
            *out = jv_str("", 0);
            return 0;
        }
        if (IS("list") || IS("items")) return wrap_arr(c, NULL, 0, out);
    }
    if (v.k == JV_NULL && IS("string")) {
        *out = jv_str("None", 4);
        return 0;
    }
    return jerr(c, at, "Cannot apply filter \"%.*s\" to type: %s", (int)nn, name, jv_type_name(v));
#undef IS
}

static int apply(jctx *c, jenv *env, const jnode *at, const char *name, size_t nn, jv v, bool call,
                 jv *args, size_t nargs, const jobj *kw, jv *out) {
#define IS(lit) is_name(name, nn, lit)
    int rc = jcharge(c, 1);
    if (rc) return rc;
    /* extension: `d` is `default`, and `default` without arguments works too */
    if (IS("d") || (IS("default") && !call)) {
        if (!call) {
            *out = v.k == JV_UNDEF ? jv_str("", 0) : v;
            return 0;
        }
        name = "default";
        nn = 7;
    }
    if (!call) return apply_plain(c, env, at, name, nn, v, out);
    if (IS("tojson")) return tojson_call(c, at, v, kw, out);
    if (IS("join")) {
        if (!jv_is_arr(v) && v.k != JV_STR)
            return jerr(c, at, "Cannot apply filter \"join\" to type: %s", jv_type_name(v));
        jv sep = pos_or_kw(args, nargs, 0, kw, "separator", jv_str("", 0));
        if (sep.k != JV_STR) return jerr(c, at, "separator must be a string");
        return join_values(c, at, v, sep, out);
    }
    if (IS("int") || IS("float")) {
        bool is_int = IS("int");
        jv dflt = pos_or_kw(args, nargs, 0, kw, "default", is_int ? jv_int(0) : jv_float(0));
        if (v.k == JV_STR) {
            double d = is_int ? jnum_parse_int(v.u.s, v.n) : jnum_parse_float(v.u.s, v.n);
            *out = isnan(d) ? dflt : is_int ? jv_int(d) : jv_float(d);
        } else if (jv_is_num(v)) {
            *out = v;
        } else if (v.k == JV_BOOL) {
            *out = is_int ? jv_int(v.b) : jv_float(v.b);
        } else {
            return jerr(c, at, "Cannot apply filter \"%.*s\" to type: %s", (int)nn, name,
                        jv_type_name(v));
        }
        return 0;
    }
    if (IS("default")) {
        jv dflt = nargs > 0 ? args[0] : jv_str("", 0);
        jv boolean = pos_or_kw(args, nargs, 1, kw, "boolean", jv_bool(false));
        if (boolean.k != JV_BOOL) return jerr(c, at, "`default` filter flag must be a boolean");
        *out = v.k == JV_UNDEF || (boolean.b && !jv_truthy(v)) ? dflt : v;
        return 0;
    }
    if (jv_is_arr(v)) {
        if (IS("sort")) return sort_call(c, at, v, args, nargs, kw, out);
        if (IS("selectattr") || IS("rejectattr"))
            return selectattr(c, at, v, IS("selectattr"), args, nargs, out);
        if (IS("map")) {
            if (kw && jobj_get(kw, "attribute", 9)) return map_attribute(c, at, v, kw, out);
            if (nargs == 0)
                return jerr(c, at,
                            "`map` expressions without `attribute` set are not "
                            "currently supported.");
            return select_map(c, env, at, v, true, true, args, nargs, kw, out); /* extension */
        }
        /* extension */
        if (IS("select") || IS("reject"))
            return select_map(c, env, at, v, false, IS("select"), args, nargs, kw, out);
        if (nargs == 0 && !kw) return apply_plain(c, env, at, name, nn, v, out);
        return jerr(c, at, "Unknown ArrayValue filter: %.*s", (int)nn, name);
    }
    if (v.k == JV_STR) {
        if (IS("indent")) {
            jv width = pos_or_kw(args, nargs, 0, kw, "width", jv_int(4));
            if (width.k != JV_INT) return jerr(c, at, "width must be a number");
            jv first = pos_or_kw(args, nargs, 1, kw, "first", jv_bool(false));
            jv blank = pos_or_kw(args, nargs, 2, kw, "blank", jv_bool(false));
            return indent_lines(c, at, v, width.u.num, js_truthy(first), js_truthy(blank), out);
        }
        if (IS("replace")) {
            jv fn;
            jinja_builtin_member(c, v, "replace", 7, &fn, &rc);
            if (rc) return rc;
            jv *all = jalloc(c, (nargs + 1) * sizeof *all);
            if (!all) return c->e->code;
            if (nargs) memcpy(all, args, nargs * sizeof *all);
            jobj *k = (jobj *)kw;
            if (!k && !(k = jobj_new(c, 0))) return c->e->code;
            all[nargs] = (jv){ .k = JV_KWARGS, .u.obj = k };
            return jinja_call_builtin(c, at, fn.u.fn, all, nargs + 1, out);
        }
        if (nargs == 0 && !kw) return apply_plain(c, env, at, name, nn, v, out); /* extension */
        return jerr(c, at, "Unknown StringValue filter: %.*s", (int)nn, name);
    }
    if (jv_is_obj(v)) {
        jv fn;
        if (jinja_builtin_member(c, v, name, nn, &fn, &rc)) {
            if (rc) return rc;
            if (kw && kw->n) {
                jv *all = jalloc(c, (nargs + 1) * sizeof *all);
                if (!all) return c->e->code;
                if (nargs) memcpy(all, args, nargs * sizeof *all);
                all[nargs++] = (jv){ .k = JV_KWARGS, .u.obj = (jobj *)kw };
                args = all;
            }
            return jinja_call_builtin(c, at, fn.u.fn, args, nargs, out);
        }
        return jerr(c, at, "Unknown ObjectValue filter: %.*s", (int)nn, name);
    }
    if (jv_is_num(v) && IS("round")) return round_num(c, at, v, args, nargs, kw, out);
    if (nargs == 0 && !kw) return apply_plain(c, env, at, name, nn, v, out); /* extension */
    return jerr(c, at, "Cannot apply filter \"%.*s\" to type: %s", (int)nn, name, jv_type_name(v));
#undef IS
}

static const char *node_type(const jnode *n) {
    switch (n->kind) {
    case JN_MEMBER:
        return "MemberExpression";
    case JN_CALL:
        return "CallExpression";
    case JN_STR:
        return "StringLiteral";
    default:
        return "Expression";
    }
}

int jinja_filter(jctx *c, jenv *env, const jnode *at, jv operand, const jnode *f, jv *out) {
    if (f->kind == JN_IDENT)
        return apply(c, env, at, f->s, f->slen, operand, false, NULL, 0, NULL, out);
    if (f->kind != JN_CALL) return jerr(c, at, "Unknown filter: %s", node_type(f));
    if (f->a->kind != JN_IDENT) return jerr(c, at, "Unknown filter: %s", node_type(f->a));
    const char *name = f->a->s;
    size_t nn = f->a->slen;
    if (jv_is_arr(operand) && (is_name(name, nn, "selectattr") || is_name(name, nn, "rejectattr")))
        for (size_t i = 0; i < f->n; i++)
            if (f->list[i]->kind != JN_STR)
                return jerr(c, at, "arguments of `%.*s` must be strings", (int)nn, name);
    jv *args;
    size_t nargs;
    jobj *kw;
    int rc = jinja_eval_args(c, env, f->list, f->n, &args, &nargs, &kw);
    if (rc) return rc;
    return apply(c, env, at, name, nn, operand, true, args, nargs, kw, out);
}

/* ---- tests ---- */

int jinja_test_named(jctx *c, const jnode *at, const char *name, size_t nn, jv v, jv *args,
                     size_t nargs, bool *known, bool *result) {
#define IS(lit) is_name(name, nn, lit)
    *known = true;
    bool r = false;
    int rc;
    if (IS("boolean"))
        r = v.k == JV_BOOL;
    else if (IS("callable"))
        r = v.k == JV_FUNC;
    else if (IS("odd") || IS("even")) {
        if (v.k != JV_INT) return jerr(c, at, "cannot %.*s on %s", (int)nn, name, jv_type_name(v));
        r = (fmod(v.u.num, 2) != 0) == IS("odd");
    } else if (IS("false"))
        r = v.k == JV_BOOL && !v.b;
    else if (IS("true"))
        r = v.k == JV_BOOL && v.b;
    else if (IS("none"))
        r = v.k == JV_NULL;
    else if (IS("string"))
        r = v.k == JV_STR;
    else if (IS("number"))
        r = jv_is_num(v);
    else if (IS("integer"))
        r = v.k == JV_INT;
    else if (IS("iterable"))
        r = v.k == JV_ARRAY || v.k == JV_STR;
    else if (IS("mapping"))
        r = jv_is_obj(v);
    else if (IS("sequence"))
        r = jv_is_arr(v) || jv_is_obj(v) || v.k == JV_STR;
    else if ((IS("lower") || IS("upper")) && v.k != JV_STR)
        r = false;
    else if (IS("lower") || IS("upper")) {
        jv m;
        if ((rc = jstr_case(c, v.u.s, v.n, IS("upper"), &m))) return rc;
        r = m.n == v.n && memcmp(m.u.s, v.u.s, v.n) == 0;
    } else if (IS("defined"))
        r = v.k != JV_UNDEF;
    else if (IS("undefined"))
        r = v.k == JV_UNDEF;
    else if (IS("equalto") || IS("eq") || IS("sameas")) {
        if (nargs < 1) return jerr(c, at, "test %.*s needs an argument", (int)nn, name);
        r = jv_strict_eq(v, args[0]);
    }
    /* extension: Jinja2 tests the reference lacks */
    else if (IS("float"))
        r = v.k == JV_FLOAT;
    else if (IS("escaped"))
        r = false;
    else if (IS("divisibleby")) {
        if (nargs < 1 || !jv_is_num(v) || !jv_is_num(args[0]))
            return jerr(c, at, "divisibleby needs two numbers");
        r = fmod(v.u.num, args[0].u.num) == 0;
    } else if (IS("ne")) {
        if (nargs < 1) return jerr(c, at, "test ne needs an argument");
        r = !jv_strict_eq(v, args[0]);
    } else if (IS("lt") || IS("le") || IS("gt") || IS("ge") || IS("lessthan") ||
               IS("greaterthan")) {
        if (nargs < 1) return jerr(c, at, "test %.*s needs an argument", (int)nn, name);
        int cmp;
        if ((rc = jv_compare(c, at, v, args[0], true, &cmp))) return rc;
        r = IS("lt") || IS("lessthan") ? cmp < 0
            : IS("le")                 ? cmp <= 0
            : IS("ge")                 ? cmp >= 0
                                       : cmp > 0;
    } else if (IS("in")) {
        if (nargs < 1) return jerr(c, at, "test in needs an argument");
        jv s = args[0];
        if (jv_is_arr(s)) {
            for (size_t i = 0; i < s.u.arr->n && !r; i++) r = jv_strict_eq(s.u.arr->v[i], v);
        } else if (s.k == JV_STR && v.k == JV_STR) {
            r = v.n == 0 || (v.n <= s.n && memmem(s.u.s, s.n, v.u.s, v.n));
        } else if (jv_is_attr(s) && v.k == JV_STR) {
            r = jobj_get(s.u.obj, v.u.s, v.n) != NULL;
        } else {
            return jerr(c, at, "test in: %s is not a container", jv_type_name(s));
        }
    } else {
        *known = false;
    }
    *result = r;
    return 0;
#undef IS
}

int jinja_test(jctx *c, jenv *env, const jnode *n, jv *out) {
    jv v;
    int rc = jinja_eval(c, env, n->a, &v);
    if (rc) return rc;
    jv *args = NULL;
    size_t nargs = 0;
    jobj *kw = NULL;
    if (n->n && (rc = jinja_eval_args(c, env, n->list, n->n, &args, &nargs, &kw))) return rc;
    bool known, r;
    if ((rc = jinja_test_named(c, n, n->s, n->slen, v, args, nargs, &known, &r))) return rc;
    if (!known) return jerr(c, n, "Unknown test: %.*s", (int)n->slen, n->s);
    *out = jv_bool(r != n->flag);
    return 0;
}
