/* JSON output for tojson and for printing lists and dicts, as the reference writes it: Python's
 * json.dumps layout (", " and ": ", or "," plus newlines when indenting), JSON.stringify's
 * string escapes and number forms, and sort_keys ordered by String.prototype.localeCompare. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

static int put_json_string(jbuf *b, const char *s, size_t n, bool ascii) {
    static const char hex[] = "0123456789abcdef";
    if (jbuf_putc(b, '"')) return -1;
    size_t run = 0; /* bytes copied as they are, flushed in one go */
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[16];
        size_t en = 0, adv = 1;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            en = 2;
        } else if (ch < 0x20) {
            const char *named = ch == '\b'   ? "\\b"
                                : ch == '\f' ? "\\f"
                                : ch == '\n' ? "\\n"
                                : ch == '\r' ? "\\r"
                                : ch == '\t' ? "\\t"
                                             : NULL;
            if (named) {
                memcpy(esc, named, 2);
                en = 2;
            } else {
                en = (size_t)sprintf(esc, "\\u00%c%c", hex[ch >> 4], hex[ch & 15]);
            }
        } else if (ascii && ch >= 0x7F) {
            uint32_t cp = ju_decode(s + i, n - i, &adv);
            /* ensure_ascii escapes UTF-16 units: astral characters become surrogate pairs. */
            uint32_t u[2] = { cp, 0 };
            int k = 1;
            if (cp >= 0x10000) {
                u[0] = 0xD800 + ((cp - 0x10000) >> 10);
                u[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
                k = 2;
            }
            for (int j = 0; j < k; j++)
                en += (size_t)sprintf(esc + en, "\\u%c%c%c%c", hex[u[j] >> 12 & 15],
                                      hex[u[j] >> 8 & 15], hex[u[j] >> 4 & 15], hex[u[j] & 15]);
        } else {
            run++;
            i++;
            continue;
        }
        if (jbuf_put(b, s + i - run, run) || jbuf_put(b, esc, en)) return -1;
        run = 0;
        i += adv;
    }
    if (jbuf_put(b, s + n - run, run)) return -1;
    return jbuf_putc(b, '"');
}

/* ICU's root collation for ASCII, which is what localeCompare uses under the en-US locale:
 * control characters are ignored, then whitespace, punctuation and symbols in this order, then
 * digits, then letters with case ignored; ties go to lower case first. */
static const char collation_order[] = "\t\n\v\f\r _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789"
                                      "abcdefghijklmnopqrstuvwxyz";

static int primary_weight(uint32_t cp) {
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z') cp += 32;
        const char *p = memchr(collation_order, (int)cp, sizeof collation_order - 1);
        return p ? (int)(p - collation_order) + 1 : 0; /* 0: ignorable */
    }
    uint32_t m[3];
    ju_lower(cp, m);
    return 1000 + (int)m[0]; /* outside ASCII: code point order */
}

static bool is_upper_cp(uint32_t cp) {
    uint32_t m[3];
    return ju_lower(cp, m) != 1 || m[0] != cp;
}

static int locale_compare(const char *a, size_t an, const char *b, size_t bn) {
    for (int level = 0; level < 2; level++) {
        size_t i = 0, j = 0;
        for (;;) {
            int wa = 0, wb = 0;
            uint32_t ca = 0, cb = 0;
            while (i < an && wa == 0) {
                size_t k;
                ca = ju_decode(a + i, an - i, &k);
                i += k;
                wa = primary_weight(ca);
            }
            while (j < bn && wb == 0) {
                size_t k;
                cb = ju_decode(b + j, bn - j, &k);
                j += k;
                wb = primary_weight(cb);
            }
            if (wa == 0 || wb == 0) {
                if (wa != wb) return wa == 0 ? -1 : 1;
                break;
            }
            if (level == 0 && wa != wb) return wa < wb ? -1 : 1;
            if (level == 1) {
                bool ua = is_upper_cp(ca), ub = is_upper_cp(cb);
                if (ua != ub) return ua ? 1 : -1;
            }
        }
    }
    return 0;
}

int jv_tojson(jctx *c, const jnode *at, jv v, const jjson_opts *o, int depth, jbuf *b) {
    if (depth > JINJA_MAX_DATA_DEPTH) return jerr(c, at, "value nested too deeply for JSON");
    int rc = jcharge(c, 1);
    if (rc) return rc;
    const char *isep = ", ", *ksep = ": ";
    size_t isn = 2, ksn = 2;
    if (o->has_separators) {
        isep = o->item_sep;
        isn = o->item_sep_n;
        ksep = o->key_sep;
        ksn = o->key_sep_n;
    } else if (o->indent) {
        isep = ",";
        isn = 1;
    }
    char num[400];
    switch (v.k) {
    case JV_NULL:
        return jbuf_put(b, "null", 4) ? jbuf_err(c, at) : 0;
    case JV_UNDEF:
        rc = o->undefined_as_null ? jbuf_put(b, "null", 4) : jbuf_put(b, "undefined", 9);
        return rc ? jbuf_err(c, at) : 0;
    case JV_BOOL:
        return (v.b ? jbuf_put(b, "true", 4) : jbuf_put(b, "false", 5)) ? jbuf_err(c, at) : 0;
    case JV_INT:
    case JV_FLOAT:
        if (!isfinite(v.u.num)) return jbuf_put(b, "null", 4) ? jbuf_err(c, at) : 0;
        return jbuf_put(b, num, jnum_format(v.u.num, num)) ? jbuf_err(c, at) : 0;
    case JV_STR:
        if ((rc = jcharge(c, v.n / 64))) return rc;
        return put_json_string(b, v.u.s, v.n, o->ensure_ascii) ? jbuf_err(c, at) : 0;
    case JV_ARRAY:
    case JV_OBJECT:
    case JV_NS:
        break;
    default:
        return jerr(c, at, "Cannot convert to JSON: %s", jv_type_name(v));
    }
    /* Newline plus indent * depth spaces before the closing bracket, one level more inside. */
    size_t pad = o->indent > 0 ? (size_t)o->indent : 0;
    if (o->indent < 0) return jerr(c, at, "Invalid count value: %d", o->indent);
    size_t base = 1 + pad * (size_t)depth;
    char *padding = NULL;
    if (pad) {
        if (c->lim.max_output && base + pad > c->lim.max_output) return jbuf_err(c, at);
        padding = malloc(base + pad);
        if (!padding) return jerr_mem(c);
        padding[0] = '\n';
        memset(padding + 1, ' ', base + pad - 1);
    }
    bool is_arr = v.k == JV_ARRAY;
    size_t n = is_arr ? v.u.arr->n : v.u.obj->n;
    size_t *order = NULL;
    if (!is_arr && o->sort_keys && n > 1) {
        /* Stable insertion sort of key positions (Array.prototype.sort is stable). */
        order = malloc(n * sizeof *order);
        if (!order) {
            free(padding);
            return jerr_mem(c);
        }
        const jobj *ob = v.u.obj;
        for (size_t i = 0; i < n; i++) {
            size_t p = i;
            while (p > 0 && locale_compare(ob->kp[order[p - 1]], ob->kn[order[p - 1]], ob->kp[i],
                                           ob->kn[i]) > 0) {
                order[p] = order[p - 1];
                p--;
            }
            order[p] = i;
            if ((rc = jcharge(c, i - p + 1))) goto out;
        }
    }
    if (jbuf_putc(b, is_arr ? '[' : '{')) goto full;
    for (size_t i = 0; i < n; i++) {
        if (i && jbuf_put(b, isep, isn)) goto full;
        if (pad && jbuf_put(b, padding, base + pad)) goto full;
        jv item;
        if (is_arr) {
            item = v.u.arr->v[i];
        } else {
            size_t k = order ? order[i] : i;
            const jobj *ob = v.u.obj;
            if (put_json_string(b, ob->kp[k], ob->kn[k], o->ensure_ascii) || jbuf_put(b, ksep, ksn))
                goto full;
            item = ob->v[k];
        }
        if ((rc = jv_tojson(c, at, item, o, depth + 1, b))) goto out;
    }
    if (pad && n && jbuf_put(b, padding, base)) goto full;
    if (jbuf_putc(b, is_arr ? ']' : '}')) goto full;
    rc = 0;
    goto out;
full:
    rc = jbuf_err(c, at);
out:
    free(order);
    free(padding);
    return rc;
}
