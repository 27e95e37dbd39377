/* The interpreter: statements write into an output buffer, expressions produce values. Scoping,
 * operator semantics and evaluation order follow the reference interpreter: macros see the
 * scope they are called from, a for loop has its own scope, `set` in an `if` is visible after
 * it, and an iteration ended by break/continue contributes no output. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jinja_internal.h"

jenv *jenv_new(jctx *c, jenv *parent) {
    jenv *e = jalloc(c, sizeof *e);
    if (e) e->parent = parent;
    return e;
}

int jenv_set(jctx *c, jenv *e, const char *k, size_t kn, jv v) {
    for (size_t i = 0; i < e->n; i++)
        if (e->kn[i] == kn && memcmp(e->kp[i], k, kn) == 0) {
            e->v[i] = v;
            return 0;
        }
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 4;
        const char **kp = jalloc(c, cap * sizeof *kp);
        size_t *kl = jalloc(c, cap * sizeof *kl);
        jv *vv = jalloc(c, cap * sizeof *vv);
        if (!kp || !kl || !vv) return c->e->code;
        if (e->n) {
            memcpy(kp, e->kp, e->n * sizeof *kp);
            memcpy(kl, e->kn, e->n * sizeof *kl);
            memcpy(vv, e->v, e->n * sizeof *vv);
        }
        e->kp = kp;
        e->kn = kl;
        e->v = vv;
        e->cap = cap;
    }
    e->kp[e->n] = k;
    e->kn[e->n] = kn;
    e->v[e->n++] = v;
    return 0;
}

jv jenv_lookup(const jenv *e, const char *k, size_t kn) {
    for (; e; e = e->parent)
        for (size_t i = 0; i < e->n; i++)
            if (e->kn[i] == kn && memcmp(e->kp[i], k, kn) == 0) return e->v[i];
    return jv_undef();
}

/* ---- arguments and calls ---- */

int jinja_eval_args(jctx *c, jenv *env, jnode *const *args, size_t n, jv **pos, size_t *npos,
                    jobj **kw) {
    /* Positional values first (spreads included), then keyword values, as Python does. */
    size_t cap = 0;
    int rc;
    jv *spreads = NULL;
    for (size_t i = 0; i < n; i++)
        if (args[i]->kind != JN_KWARG && args[i]->kind != JN_KWSPREAD) cap++;
    if (cap) {
        spreads = jalloc(c, cap * sizeof *spreads);
        if (!spreads) return c->e->code;
    }
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        const jnode *a = args[i];
        if (a->kind == JN_KWARG || a->kind == JN_KWSPREAD) continue;
        if ((rc = jinja_eval(c, env, a->kind == JN_SPREAD ? a->a : a, &spreads[k]))) return rc;
        if (a->kind == JN_SPREAD) {
            if (!jv_is_arr(spreads[k]))
                return jerr(c, a, "Cannot unpack non-iterable type: %s", jv_type_name(spreads[k]));
            total += spreads[k].u.arr->n;
        } else {
            total++;
        }
        k++;
    }
    jv *out = total ? jalloc(c, total * sizeof *out) : NULL;
    if (total && !out) return c->e->code;
    size_t o = 0;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        const jnode *a = args[i];
        if (a->kind == JN_KWARG || a->kind == JN_KWSPREAD) continue;
        if (a->kind == JN_SPREAD) {
            memcpy(out + o, spreads[k].u.arr->v, spreads[k].u.arr->n * sizeof *out);
            o += spreads[k].u.arr->n;
        } else {
            out[o++] = spreads[k];
        }
        k++;
    }
    *pos = out;
    *npos = total;
    *kw = NULL;
    for (size_t i = 0; i < n; i++) {
        const jnode *a = args[i];
        if (a->kind != JN_KWARG && a->kind != JN_KWSPREAD) continue;
        if (!*kw && !(*kw = jobj_new(c, 4))) return c->e->code;
        jv v;
        if ((rc = jinja_eval(c, env, a->a, &v))) return rc;
        if (a->kind == JN_KWARG) {
            if (jobj_get(*kw, a->s, a->slen))
                return jerr(c, a, "Got multiple values for keyword argument '%.*s'", (int)a->slen,
                            a->s);
            if ((rc = jobj_set(c, *kw, a->s, a->slen, v))) return rc;
        } else {
            if (!jv_is_obj(v))
                return jerr(c, a, "Argument after ** must be a mapping, not %s", jv_type_name(v));
            for (size_t j = 0; j < v.u.obj->n; j++) {
                if (jobj_get(*kw, v.u.obj->kp[j], v.u.obj->kn[j]))
                    return jerr(c, a, "Got multiple values for keyword argument '%.*s'",
                                (int)v.u.obj->kn[j], v.u.obj->kp[j]);
                if ((rc = jobj_set(c, *kw, v.u.obj->kp[j], v.u.obj->kn[j], v.u.obj->v[j])))
                    return rc;
            }
        }
    }
    return 0;
}

/* Binds a macro's (or a call block's) parameters in `scope`. */
static int bind_params(jctx *c, const jnode *at, const char *name, size_t namelen,
                       jnode *const *params, size_t np, uint8_t special, jv *args, size_t nargs,
                       jenv *scope) {
    int rc;
    const jobj *kw = NULL;
    if (nargs && args[nargs - 1].k == JV_KWARGS) kw = args[--nargs].u.obj;
    bool *used = kw && kw->n ? jalloc(c, kw->n) : NULL;
    if (kw && kw->n && !used) return c->e->code;
    for (size_t i = 0; i < np; i++) {
        const jnode *p = params[i];
        jv v = jv_undef();
        bool given = i < nargs;
        if (given) v = args[i];
        for (size_t j = 0; !given && kw && j < kw->n; j++)
            if (!used[j] && kw->kn[j] == p->slen && memcmp(kw->kp[j], p->s, p->slen) == 0) {
                used[j] = true;
                v = kw->v[j];
                given = true;
            }
        if ((rc = jenv_set(c, scope, p->s, p->slen, v))) return rc;
    }
    size_t left = 0;
    for (size_t j = 0; kw && j < kw->n; j++) left += !used[j];
    if (special & JM_KWARGS) {
        jobj *rest = jobj_new(c, left);
        if (!rest) return c->e->code;
        for (size_t j = 0; kw && j < kw->n; j++)
            if (!used[j] && (rc = jobj_set(c, rest, kw->kp[j], kw->kn[j], kw->v[j]))) return rc;
        if ((rc = jenv_set(c, scope, "kwargs", 6, (jv){ .k = JV_OBJECT, .u.obj = rest })))
            return rc;
    } else if (left) {
        for (size_t j = 0; j < kw->n; j++)
            if (!used[j])
                return jerr(c, at, "macro %.*s takes no keyword argument '%.*s'", (int)namelen,
                            name, (int)kw->kn[j], kw->kp[j]);
    }
    if (special & JM_VARARGS) {
        size_t extra = nargs > np ? nargs - np : 0;
        jarr *va = jarr_new(c, extra);
        if (!va) return c->e->code;
        if (extra) memcpy(va->v, args + np, extra * sizeof *args);
        if ((rc = jenv_set(c, scope, "varargs", 7, (jv){ .k = JV_ARRAY, .u.arr = va }))) return rc;
    } else if (nargs > np) {
        return jerr(c, at, "macro %.*s takes not more than %zu argument(s)", (int)namelen, name,
                    np);
    }
    /* Defaults are evaluated last, in the macro's scope, so they can use other parameters. */
    for (size_t i = 0; i < np; i++) {
        const jnode *p = params[i];
        if (p->kind != JN_KWARG || i < nargs) continue;
        bool from_kw = false;
        for (size_t j = 0; kw && j < kw->n; j++)
            if (used[j] && kw->kn[j] == p->slen && memcmp(kw->kp[j], p->s, p->slen) == 0)
                from_kw = true;
        if (from_kw) continue;
        jv v;
        if ((rc = jinja_eval(c, scope, p->a, &v)) || (rc = jenv_set(c, scope, p->s, p->slen, v)))
            return rc;
    }
    return 0;
}

int jinja_call(jctx *c, const jnode *at, jv fn, jv *args, size_t nargs, jenv *env, jv *out) {
    if (fn.k != JV_FUNC)
        return jerr(c, at, "Cannot call something that is not a function: got %s",
                    jv_type_name(fn));
    const jfunc *f = fn.u.fn;
    if (f->kind == JF_GLOBAL || f->kind == JF_METHOD)
        return jinja_call_builtin(c, at, f, args, nargs, out);
    if (c->call_depth >= JINJA_MAX_CALL_DEPTH)
        return jerr(c, at, "macro calls nested more than %d deep", JINJA_MAX_CALL_DEPTH);
    const jnode *m = f->node;
    jenv *scope = jenv_new(c, f->kind == JF_MACRO ? env : f->env);
    if (!scope) return c->e->code;
    int rc = f->kind == JF_MACRO
                 ? bind_params(c, at, m->s, m->slen, m->list, m->n, m->special, args, nargs, scope)
                 : bind_params(c, at, "None", 4, m->list, m->n, m->special, args, nargs, scope);
    if (rc) return rc;
    c->call_depth++;
    jbuf b = jctx_buf(c);
    rc = jinja_exec_block(c, scope, m->list2, m->n2, &b);
    c->call_depth--;
    if (rc) {
        jbuf_free(&b);
        return rc;
    }
    return jbuf_to_str(c, &b, out);
}

static int eval_call(jctx *c, jenv *env, const jnode *n, jv *out) {
    jv *args;
    size_t nargs;
    jobj *kw;
    int rc = jinja_eval_args(c, env, n->list, n->n, &args, &nargs, &kw);
    if (rc) return rc;
    if (kw && kw->n) {
        jv *more = jalloc(c, (nargs + 1) * sizeof *more);
        if (!more) return c->e->code;
        if (nargs) memcpy(more, args, nargs * sizeof *more);
        more[nargs++] = (jv){ .k = JV_KWARGS, .u.obj = kw };
        args = more;
    }
    jv fn;
    if ((rc = jinja_eval(c, env, n->a, &fn))) return rc;
    return jinja_call(c, n, fn, args, nargs, env, out);
}

/* ---- member access and slices ---- */

/* The UTF-16 unit at index i of a string, as String.prototype.at returns it. */
static int string_at(jctx *c, jv s, double idx, jv *out) {
    size_t units = ju_utf16_len(s.u.s, s.n);
    if (idx < 0) idx += (double)units;
    if (!(idx >= 0 && idx < (double)units)) {
        *out = jv_undef();
        return 0;
    }
    size_t want = (size_t)idx, u = 0;
    for (size_t i = 0; i < s.n;) {
        size_t adv;
        uint32_t cp = ju_decode(s.u.s + i, s.n - i, &adv);
        size_t w = cp >= 0x10000 ? 2 : 1;
        if (want < u + w) {
            if (w == 2) return jstr_new(c, "\xEF\xBF\xBD", 3, out); /* half a surrogate pair */
            return jstr_new(c, s.u.s + i, adv, out);
        }
        u += w;
        i += adv;
    }
    *out = jv_undef();
    return 0;
}

static double clampd(double v, double lo, double hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Python-style slicing as the reference implements it (an explicit stop of -1 with a negative
 * step means "through the first element", unlike Python). */
static int slice_indices(double len, bool has_start, double start, bool has_stop, double stop,
                         double step, double *from, double *to) {
    if (step >= 0) {
        start = has_start ? start : 0;
        stop = has_stop ? stop : len;
        *from = start < 0 ? fmax(len + start, 0) : fmin(start, len);
        *to = stop < 0 ? fmax(len + stop, 0) : fmin(stop, len);
    } else {
        start = has_start ? start : len - 1;
        stop = has_stop ? stop : -1;
        *from = start < 0 ? fmax(len + start, -1) : fmin(start, len - 1);
        *to = stop < -1 ? fmax(len + stop, -1) : fmin(stop, len - 1);
    }
    return 0;
}

static int eval_slice(jctx *c, jenv *env, jv obj, const jnode *s, jv *out) {
    if (!jv_is_arr(obj) && obj.k != JV_STR)
        return jerr(c, s, "Slice object must be an array or string");
    jv part[3];
    const jnode *nodes[3] = { s->a, s->b, s->c };
    static const char *const names[3] = { "start", "stop", "step" };
    for (int i = 0; i < 3; i++) {
        part[i] = jv_undef();
        int rc = nodes[i] ? jinja_eval(c, env, nodes[i], &part[i]) : 0;
        if (rc) return rc;
        if (part[i].k != JV_INT && part[i].k != JV_UNDEF)
            return jerr(c, s, "Slice %s must be numeric or undefined", names[i]);
    }
    double step = part[2].k == JV_INT ? part[2].u.num : 1;
    /* Code points of a string, elements of an array. */
    size_t len = 0;
    const char **cps = NULL;
    size_t *cpn = NULL;
    if (obj.k == JV_STR) {
        for (size_t i = 0; i < obj.n; len++) {
            size_t adv;
            ju_decode(obj.u.s + i, obj.n - i, &adv);
            i += adv;
        }
        cps = jalloc(c, (len + 1) * sizeof *cps);
        cpn = jalloc(c, (len + 1) * sizeof *cpn);
        if (!cps || !cpn) return c->e->code;
        size_t k = 0;
        for (size_t i = 0; i < obj.n; k++) {
            size_t adv;
            ju_decode(obj.u.s + i, obj.n - i, &adv);
            cps[k] = obj.u.s + i;
            cpn[k] = adv;
            i += adv;
        }
    } else {
        len = obj.u.arr->n;
    }
    double from, to, L = (double)len;
    slice_indices(L, part[0].k == JV_INT, clampd(part[0].u.num, -4 * L - 4, 4 * L + 4),
                  part[1].k == JV_INT, clampd(part[1].u.num, -4 * L - 4, 4 * L + 4), step, &from,
                  &to);
    double dir = step > 0 ? 1 : step < 0 ? -1 : 0;
    size_t count = 0;
    if (dir != 0 && dir * from < dir * to) count = (size_t)ceil(fabs(to - from) / fabs(step));
    int rc = jcharge(c, count / 4 + 1);
    if (rc) return rc;
    if (obj.k == JV_STR) {
        jbuf b = jctx_buf(c);
        double i = from;
        for (size_t k = 0; k < count; k++, i += step)
            if (jbuf_put(&b, cps[(size_t)i], cpn[(size_t)i])) {
                jbuf_free(&b);
                return jbuf_err(c, s);
            }
        return jbuf_to_str(c, &b, out);
    }
    jarr *a = jarr_new(c, count);
    if (!a) return c->e->code;
    double i = from;
    for (size_t k = 0; k < count; k++, i += step) a->v[k] = obj.u.arr->v[(size_t)i];
    *out = (jv){ .k = JV_ARRAY, .u.arr = a };
    return 0;
}

/* ---- the loop variable ---- */

static const char *const loop_keys[] = { "index", "index0", "revindex", "revindex0", "first",
                                         "last",  "length", "previtem", "nextitem" };
static size_t loop_key_len[9] = { 5, 6, 8, 9, 5, 4, 6, 8, 8 };

static jv loop_value(const jloop *L, int field) {
    double len = (double)L->count, idx = (double)L->i;
    switch (field) {
    case 0:
        return jv_int(idx + 1);
    case 1:
        return jv_int(idx);
    case 2:
        return jv_int(len - idx);
    case 3:
        return jv_int(len - idx - 1);
    case 4:
        return jv_bool(L->i == 0);
    case 5:
        return jv_bool(L->i + 1 == L->count);
    case 6:
        return jv_int(len);
    case 7:
        return L->i > 0 ? L->items[L->i - 1] : jv_undef();
    default:
        return L->i + 1 < L->count ? L->items[L->i + 1] : jv_undef();
    }
}

/* `loop` read as a value: a fresh object, as the reference makes one per iteration. Reading
 * `loop.index` does not need one, which keeps long loops from allocating per iteration. */
static int loop_object(jctx *c, const jloop *L, jv *out) {
    jobj *o = jalloc(c, sizeof *o);
    jv *vals = jalloc(c, 9 * sizeof *vals);
    if (!o || !vals) return c->e->code;
    for (int i = 0; i < 9; i++) vals[i] = loop_value(L, i);
    /* The keys are shared and never written: only namespaces are mutable. */
    o->kp = (const char **)loop_keys;
    o->kn = loop_key_len;
    o->v = vals;
    o->n = o->cap = 9;
    *out = (jv){ .k = JV_OBJECT, .u.obj = o };
    return 0;
}

static bool loop_field(jv v, jv prop, jv *out) {
    if (v.k != JV_LOOP || prop.k != JV_STR) return false;
    for (int i = 0; i < 9; i++)
        if (prop.n == loop_key_len[i] && memcmp(prop.u.s, loop_keys[i], prop.n) == 0) {
            *out = loop_value(v.u.loop, i);
            return true;
        }
    return false;
}

static int eval_member(jctx *c, jenv *env, const jnode *n, jv *out) {
    jv obj, prop;
    int rc;
    if (n->a->kind == JN_IDENT) {
        obj = jenv_lookup(env, n->a->s, n->a->slen);
        if (obj.k == JV_LOOP) {
            if (!n->flag && n->b->kind == JN_IDENT &&
                loop_field(obj, jv_str(n->b->s, n->b->slen), out))
                return 0;
            if ((rc = loop_object(c, obj.u.loop, &obj))) return rc;
        }
    } else if ((rc = jinja_eval(c, env, n->a, &obj))) {
        return rc;
    }
    if (n->flag) {
        if (n->b->kind == JN_SLICE) return eval_slice(c, env, obj, n->b, out);
        if ((rc = jinja_eval(c, env, n->b, &prop))) return rc;
    } else if (n->b->kind == JN_INT) {
        prop = jv_int(n->b->num);
    } else {
        prop = jv_str(n->b->s, n->b->slen);
    }
    *out = jv_undef();
    if (jv_is_attr(obj)) {
        if (prop.k != JV_STR)
            return jerr(c, n, "Cannot access property with non-string: got %s", jv_type_name(prop));
        const jv *v = jobj_get(obj.u.obj, prop.u.s, prop.n);
        if (v)
            *out = *v;
        else if (obj.k != JV_NS && jinja_builtin_member(c, obj, prop.u.s, prop.n, out, &rc))
            return rc;
        return 0;
    }
    if (jv_is_arr(obj) || obj.k == JV_STR) {
        if (prop.k == JV_INT) {
            if (obj.k == JV_STR) return string_at(c, obj, prop.u.num, out);
            double i = prop.u.num, len = (double)obj.u.arr->n;
            if (i < 0) i += len;
            if (i >= 0 && i < len) *out = obj.u.arr->v[(size_t)i];
            return 0;
        }
        if (prop.k != JV_STR)
            return jerr(c, n, "Cannot access property with non-string/non-number: got %s",
                        jv_type_name(prop));
        if (jinja_builtin_member(c, obj, prop.u.s, prop.n, out, &rc)) return rc;
        return 0;
    }
    if (prop.k != JV_STR)
        return jerr(c, n, "Cannot access property with non-string: got %s", jv_type_name(prop));
    return 0; /* numbers, booleans, none, undefined and functions have no attributes */
}

/* ---- operators ---- */

static double js_pow(double a, double b) {
    if (isnan(b)) return NAN;
    if (b == 0) return 1;
    if ((a == 1 || a == -1) && isinf(b)) return NAN;
    return pow(a, b);
}

static int eval_binary(jctx *c, jenv *env, const jnode *n, jv *out) {
    jv l, r;
    int rc = jinja_eval(c, env, n->a, &l);
    if (rc) return rc;
    int op = n->op;
    if (op == OP_AND || op == OP_OR) {
        if (jv_truthy(l) == (op == OP_OR)) {
            *out = l;
            return 0;
        }
        return jinja_eval(c, env, n->b, out);
    }
    if ((rc = jinja_eval(c, env, n->b, &r))) return rc;
    if (op == OP_EQ || op == OP_NE) {
        bool eq;
        if ((rc = jv_loose_eq(c, l, r, &eq))) return rc;
        *out = jv_bool(eq == (op == OP_EQ));
        return 0;
    }
    static const char *const opnames[] = { "",  "and", "or", "not", "==",     "!=", "<",
                                           ">", "<=",  ">=", "in",  "not in", "+",  "-",
                                           "~", "*",   "/",  "//",  "%",      "**" };
    if (l.k == JV_UNDEF || r.k == JV_UNDEF) {
        if (r.k == JV_UNDEF && (op == OP_IN || op == OP_NOTIN)) {
            *out = jv_bool(op == OP_NOTIN);
            return 0;
        }
        return jerr(c, n, "Cannot perform operation %s on undefined values", opnames[op]);
    }
    if (l.k == JV_NULL || r.k == JV_NULL)
        return jerr(c, n, "Cannot perform operation on null values");
    if (op == OP_CONCAT) {
        jv a, b;
        if ((rc = jv_to_str(c, l, true, &a)) || (rc = jv_to_str(c, r, true, &b))) return rc;
        return jstr_cat(c, a.u.s, a.n, b.u.s, b.n, out);
    }
    bool lnum = jv_is_num(l) || l.k == JV_BOOL, rnum = jv_is_num(r) || r.k == JV_BOOL;
    if (op == OP_POW && lnum && rnum) {
        double a = l.k == JV_BOOL ? l.b : l.u.num, b = r.k == JV_BOOL ? r.b : r.u.num;
        if (a == 0 && b < 0) return jerr(c, n, "0.0 cannot be raised to a negative power");
        double res = js_pow(a, b);
        if (!isfinite(res)) return jerr(c, n, "Exponentiation result is not a finite real number");
        bool fl = l.k == JV_FLOAT || r.k == JV_FLOAT || b < 0;
        *out = fl ? jv_float(res) : jv_int(res);
        return 0;
    }
    if (jv_is_num(l) && jv_is_num(r)) {
        double a = l.u.num, b = r.u.num, res;
        bool fl = l.k == JV_FLOAT || r.k == JV_FLOAT;
        switch (op) {
        case OP_ADD:
            res = a + b;
            break;
        case OP_SUB:
            res = a - b;
            break;
        case OP_MUL:
            res = a * b;
            break;
        case OP_DIV:
            *out = jv_float(a / b);
            return 0;
        case OP_FLOORDIV:
            res = floor(a / b);
            break;
        case OP_MOD:
            res = fmod(a, b);
            break;
        case OP_LT:
            *out = jv_bool(a < b);
            return 0;
        case OP_GT:
            *out = jv_bool(a > b);
            return 0;
        case OP_LE:
            *out = jv_bool(a <= b);
            return 0;
        case OP_GE:
            *out = jv_bool(a >= b);
            return 0;
        default:
            goto unknown;
        }
        *out = fl ? jv_float(res) : jv_int(res);
        return 0;
    }
    if (jv_is_arr(l) && jv_is_arr(r)) {
        if (op == OP_ADD) {
            size_t ln = l.u.arr->n, rn = r.u.arr->n;
            if ((rc = jcharge(c, (ln + rn) / 4))) return rc;
            jarr *a = jarr_new(c, ln + rn);
            if (!a) return c->e->code;
            if (ln) memcpy(a->v, l.u.arr->v, ln * sizeof(jv));
            if (rn) memcpy(a->v + ln, r.u.arr->v, rn * sizeof(jv));
            *out = (jv){ .k = JV_ARRAY, .u.arr = a };
            return 0;
        }
    } else if (jv_is_arr(r)) {
        if (op == OP_IN || op == OP_NOTIN) {
            bool found = false;
            if ((rc = jcharge(c, r.u.arr->n / 4))) return rc;
            for (size_t i = 0; i < r.u.arr->n && !found; i++)
                found = jv_strict_eq(r.u.arr->v[i], l);
            *out = jv_bool(found == (op == OP_IN));
            return 0;
        }
    }
    if ((l.k == JV_STR || r.k == JV_STR) && op == OP_ADD) {
        jv a, b;
        if ((rc = jv_to_str(c, l, true, &a)) || (rc = jv_to_str(c, r, true, &b))) return rc;
        return jstr_cat(c, a.u.s, a.n, b.u.s, b.n, out);
    }
    if (l.k == JV_STR && r.k == JV_STR && (op == OP_IN || op == OP_NOTIN)) {
        if ((rc = jcharge(c, r.n / 64))) return rc;
        bool found = l.n == 0 || (l.n <= r.n && memmem(r.u.s, r.n, l.u.s, l.n) != NULL);
        *out = jv_bool(found == (op == OP_IN));
        return 0;
    }
    if (l.k == JV_STR && jv_is_obj(r) && (op == OP_IN || op == OP_NOTIN)) {
        bool found = jobj_get(r.u.obj, l.u.s, l.n) != NULL;
        *out = jv_bool(found == (op == OP_IN));
        return 0;
    }
unknown:
    return jerr(c, n, "Unknown operator \"%s\" between %s and %s", opnames[op], jv_type_name(l),
                jv_type_name(r));
}

static int eval_unary(jctx *c, jenv *env, const jnode *n, jv *out) {
    jv v;
    int rc = jinja_eval(c, env, n->a, &v);
    if (rc) return rc;
    if (n->op == OP_NOT) {
        *out = jv_bool(!jv_truthy(v));
        return 0;
    }
    if (!jv_is_num(v) && v.k != JV_BOOL)
        return jerr(c, n, "Unknown operator \"%s\" for %s", n->op == OP_SUB ? "-" : "+",
                    jv_type_name(v));
    double x = v.k == JV_BOOL ? v.b : v.u.num;
    if (n->op == OP_SUB) x = -x;
    *out = v.k == JV_FLOAT ? jv_float(x) : jv_int(x);
    return 0;
}

static int eval_node(jctx *c, jenv *env, const jnode *n, jv *out);
static int exec_block(jctx *c, jenv *env, jnode *const *list, size_t n, jbuf *out);

/* Macros recurse and trees are tall: together they are bounded so the C stack is. */
static int enter(jctx *c, const jnode *at) {
    if (++c->eval_depth > JINJA_MAX_EVAL_DEPTH) {
        c->eval_depth--;
        return jerr(c, at, "template evaluation nested more than %d deep", JINJA_MAX_EVAL_DEPTH);
    }
    return 0;
}

int jinja_eval(jctx *c, jenv *env, const jnode *n, jv *out) {
    int rc = enter(c, n);
    if (rc) return rc;
    rc = eval_node(c, env, n, out);
    c->eval_depth--;
    return rc;
}

int jinja_exec_block(jctx *c, jenv *env, jnode *const *list, size_t n, jbuf *out) {
    int rc = enter(c, n ? list[0] : NULL);
    if (rc) return rc;
    rc = exec_block(c, env, list, n, out);
    c->eval_depth--;
    return rc;
}

static int eval_node(jctx *c, jenv *env, const jnode *n, jv *out) {
    int rc = jcharge(c, 1);
    if (rc) return rc;
    switch (n->kind) {
    case JN_INT:
        *out = jv_int(n->num);
        return 0;
    case JN_FLOAT:
        *out = jv_float(n->num);
        return 0;
    case JN_STR:
    case JN_TEXT:
        *out = jv_str(n->s, n->slen);
        return 0;
    case JN_IDENT:
        *out = jenv_lookup(env, n->s, n->slen);
        return out->k == JV_LOOP ? loop_object(c, out->u.loop, out) : 0;
    case JN_ARRAY:
    case JN_TUPLE: {
        jarr *a = jarr_new(c, n->n);
        if (!a) return c->e->code;
        for (size_t i = 0; i < n->n; i++)
            if ((rc = jinja_eval(c, env, n->list[i], &a->v[i]))) return rc;
        *out = (jv){ .k = n->kind == JN_ARRAY ? JV_ARRAY : JV_TUPLE, .u.arr = a };
        return 0;
    }
    case JN_OBJECT: {
        jobj *o = jobj_new(c, n->n);
        if (!o) return c->e->code;
        for (size_t i = 0; i < n->n; i++) {
            jv k, v;
            if ((rc = jinja_eval(c, env, n->list[i], &k))) return rc;
            if (k.k != JV_STR)
                return jerr(c, n->list[i], "Object keys must be strings: got %s", jv_type_name(k));
            if ((rc = jinja_eval(c, env, n->list2[i], &v)) || (rc = jobj_set(c, o, k.u.s, k.n, v)))
                return rc;
        }
        *out = (jv){ .k = JV_OBJECT, .u.obj = o };
        return 0;
    }
    case JN_MEMBER:
        return eval_member(c, env, n, out);
    case JN_CALL:
        return eval_call(c, env, n, out);
    case JN_UNARY:
        return eval_unary(c, env, n, out);
    case JN_BINARY:
        return eval_binary(c, env, n, out);
    case JN_FILTER: {
        jv v;
        if ((rc = jinja_eval(c, env, n->a, &v))) return rc;
        return jinja_filter(c, env, n, v, n->b, out);
    }
    case JN_TEST:
        return jinja_test(c, env, n, out);
    case JN_SELECT: {
        jv t;
        if ((rc = jinja_eval(c, env, n->b, &t))) return rc;
        if (!jv_truthy(t)) {
            *out = jv_undef();
            return 0;
        }
        return jinja_eval(c, env, n->a, out);
    }
    case JN_TERNARY: {
        jv t;
        if ((rc = jinja_eval(c, env, n->a, &t))) return rc;
        return jinja_eval(c, env, jv_truthy(t) ? n->b : n->c, out);
    }
    case JN_COMMENT:
        *out = jv_null();
        return 0;
    default:
        return jerr(c, n, "this construct cannot be used as a value");
    }
}

/* ---- statements ---- */

static int assign_loop_target(jctx *c, const jnode *target, jv item, jenv *scope) {
    if (target->kind == JN_IDENT) return jenv_set(c, scope, target->s, target->slen, item);
    for (size_t j = 0; j < target->n; j++) {
        const jnode *t = target->list[j];
        if (t->kind != JN_IDENT) return jerr(c, t, "Cannot unpack non-identifier type");
        int rc = jenv_set(c, scope, t->s, t->slen, item.u.arr->v[j]);
        if (rc) return rc;
    }
    return 0;
}

static int exec_for(jctx *c, jenv *env, const jnode *n, jbuf *out) {
    jenv *scope = jenv_new(c, env);
    if (!scope) return c->e->code;
    const jnode *test = NULL;
    jv it;
    int rc;
    if (n->b->kind == JN_SELECT) {
        test = n->b->b;
        rc = jinja_eval(c, scope, n->b->a, &it);
    } else {
        rc = jinja_eval(c, scope, n->b, &it);
    }
    if (rc) return rc;
    if (!jv_is_arr(it) && !jv_is_obj(it))
        return jerr(c, n->b, "Expected iterable or object type in for loop: got %s",
                    jv_type_name(it));
    size_t total = jv_is_arr(it) ? it.u.arr->n : it.u.obj->n;
    jv *items = total ? jalloc(c, total * sizeof *items) : NULL;
    if (total && !items) return c->e->code;
    size_t count = 0;
    for (size_t i = 0; i < total; i++) {
        jv cur = jv_is_arr(it) ? it.u.arr->v[i]
                               : jv_str(it.u.obj->kp[i], it.u.obj->kn[i]); /* a dict's keys */
        if ((rc = jcharge(c, 1))) return rc;
        if (n->a->kind == JN_TUPLE) {
            if (cur.k != JV_ARRAY)
                return jerr(c, n->a, "Cannot unpack non-iterable type: %s", jv_type_name(cur));
            if (cur.u.arr->n != n->a->n)
                return jerr(c, n->a, "Too %s items to unpack",
                            n->a->n > cur.u.arr->n ? "few" : "many");
        }
        if (test) {
            jenv *ls = jenv_new(c, scope);
            jv t;
            if (!ls) return c->e->code;
            if ((rc = assign_loop_target(c, n->a, cur, ls)) || (rc = jinja_eval(c, ls, test, &t)))
                return rc;
            if (!jv_truthy(t)) continue;
        }
        items[count++] = cur;
    }
    bool none = true;
    jloop *L = jalloc(c, sizeof *L);
    if (!L) return c->e->code;
    L->items = items;
    L->count = count;
    for (size_t i = 0; i < count; i++) {
        L->i = i;
        if ((rc = jenv_set(c, scope, "loop", 4, (jv){ .k = JV_LOOP, .u.loop = L })) ||
            (rc = assign_loop_target(c, n->a, items[i], scope)))
            return rc;
        size_t mark = out->n;
        rc = jinja_exec_block(c, scope, n->list, n->n, out);
        if (rc == JR_CONTINUE || rc == JR_BREAK) {
            /* The reference drops the output of an iteration left early. */
            out->n = mark;
            if (out->p) out->p[mark] = 0;
            if (rc == JR_BREAK) break;
            continue;
        }
        if (rc) return rc;
        none = false;
    }
    if (none) return jinja_exec_block(c, scope, n->list2, n->n2, out);
    return 0;
}

static int exec_set(jctx *c, jenv *env, const jnode *n) {
    jv v;
    int rc;
    if (n->b) {
        rc = jinja_eval(c, env, n->b, &v);
    } else {
        jbuf b = jctx_buf(c);
        rc = jinja_exec_block(c, env, n->list, n->n, &b);
        if (rc) {
            jbuf_free(&b);
            return rc;
        }
        rc = jbuf_to_str(c, &b, &v);
    }
    if (rc) return rc;
    const jnode *t = n->a;
    if (t->kind == JN_IDENT) return jenv_set(c, env, t->s, t->slen, v);
    if (t->kind == JN_TUPLE) {
        if (!jv_is_arr(v))
            return jerr(c, n, "Cannot unpack non-iterable type in set: %s", jv_type_name(v));
        if (v.u.arr->n != t->n)
            return jerr(c, n, "Too %s items to unpack in set", t->n > v.u.arr->n ? "few" : "many");
        for (size_t i = 0; i < t->n; i++) {
            if (t->list[i]->kind != JN_IDENT)
                return jerr(c, t->list[i], "Cannot unpack to non-identifier in set");
            if ((rc = jenv_set(c, env, t->list[i]->s, t->list[i]->slen, v.u.arr->v[i]))) return rc;
        }
        return 0;
    }
    if (t->kind == JN_MEMBER) {
        jv obj;
        if ((rc = jinja_eval(c, env, t->a, &obj))) return rc;
        if (obj.k != JV_NS) return jerr(c, n, "cannot assign attribute on non-namespace object");
        if (t->b->kind != JN_IDENT)
            return jerr(c, n, "Cannot assign to member with non-identifier property");
        return jobj_set(c, obj.u.obj, t->b->s, t->b->slen, v);
    }
    return jerr(c, n, "Invalid left-hand side of an assignment");
}

static int exec_callblock(jctx *c, jenv *env, const jnode *n, jv *out) {
    jfunc *caller = jalloc(c, sizeof *caller);
    if (!caller) return c->e->code;
    caller->kind = JF_CALLER;
    caller->node = n;
    caller->env = env;
    const jnode *call = n->a;
    jv *args;
    size_t nargs;
    jobj *kw;
    int rc = jinja_eval_args(c, env, call->list, call->n, &args, &nargs, &kw);
    if (rc) return rc;
    if (!kw && !(kw = jobj_new(c, 0))) return c->e->code;
    jv *all = jalloc(c, (nargs + 1) * sizeof *all);
    if (!all) return c->e->code;
    if (nargs) memcpy(all, args, nargs * sizeof *all);
    all[nargs] = (jv){ .k = JV_KWARGS, .u.obj = kw };
    jv fn;
    if ((rc = jinja_eval(c, env, call->a, &fn))) return rc;
    if (fn.k != JV_FUNC)
        return jerr(c, call, "Cannot call something that is not a function: got %s",
                    jv_type_name(fn));
    jenv *inner = jenv_new(c, env);
    if (!inner) return c->e->code;
    if ((rc = jenv_set(c, inner, "caller", 6, (jv){ .k = JV_FUNC, .u.fn = caller }))) return rc;
    return jinja_call(c, call, fn, all, nargs + 1, inner, out);
}

static int put_value(jctx *c, jv v, jbuf *out) {
    if (v.k == JV_NULL || v.k == JV_UNDEF) return 0;
    return jv_tostring(c, v, out, 0);
}

static int exec_block(jctx *c, jenv *env, jnode *const *list, size_t n, jbuf *out) {
    int rc;
    for (size_t i = 0; i < n; i++) {
        const jnode *s = list[i];
        if ((rc = jcharge(c, 1))) return rc;
        jv v;
        switch (s->kind) {
        case JN_TEXT:
            if (jbuf_put(out, s->s, s->slen)) return jbuf_err(c, s);
            break;
        case JN_COMMENT:
            break;
        case JN_IF: {
            jv t;
            if ((rc = jinja_eval(c, env, s->a, &t))) return rc;
            rc = jv_truthy(t) ? jinja_exec_block(c, env, s->list, s->n, out)
                              : jinja_exec_block(c, env, s->list2, s->n2, out);
            if (rc) return rc;
            break;
        }
        case JN_FOR:
            if ((rc = exec_for(c, env, s, out))) return rc;
            break;
        case JN_SET:
            if ((rc = exec_set(c, env, s))) return rc;
            break;
        case JN_MACRO: {
            jfunc *f = jalloc(c, sizeof *f);
            if (!f) return c->e->code;
            f->kind = JF_MACRO;
            f->node = s;
            if ((rc = jenv_set(c, env, s->s, s->slen, (jv){ .k = JV_FUNC, .u.fn = f }))) return rc;
            break;
        }
        case JN_CALLBLOCK:
            if ((rc = exec_callblock(c, env, s, &v)) || (rc = put_value(c, v, out))) return rc;
            break;
        case JN_FILTERBLOCK: {
            jbuf b = jctx_buf(c);
            jv body;
            rc = jinja_exec_block(c, env, s->list, s->n, &b);
            if (rc) {
                jbuf_free(&b);
                return rc;
            }
            if ((rc = jbuf_to_str(c, &b, &body)) ||
                (rc = jinja_filter(c, env, s, body, s->a, &v)) || (rc = put_value(c, v, out)))
                return rc;
            break;
        }
        case JN_BREAK:
            return JR_BREAK;
        case JN_CONTINUE:
            return JR_CONTINUE;
        default:
            if ((rc = jinja_eval(c, env, s, &v)) || (rc = put_value(c, v, out))) return rc;
            break;
        }
    }
    return 0;
}
