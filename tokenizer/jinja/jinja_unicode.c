/* Unicode as the JavaScript reference sees it: its whitespace set (\s, trim), UTF-16 lengths and
 * ordering, and the case mappings of toUpperCase / toLowerCase (tables generated from Node). */
#include <string.h>

#include "jinja_case_table.h"
#include "jinja_internal.h"

uint32_t ju_decode(const char *p, size_t n, size_t *adv) {
    const unsigned char *s = (const unsigned char *)p;
    if (n == 0) {
        *adv = 0;
        return 0;
    }
    unsigned c = s[0];
    if (c < 0x80) {
        *adv = 1;
        return c;
    }
    int len = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (len == 0 || (size_t)len > n) goto bad;
    uint32_t cp = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto bad;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) goto bad;
    *adv = (size_t)len;
    return cp;
bad:
    *adv = 1;
    return 0xFFFD;
}

size_t ju_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        /* A lone surrogate cannot be UTF-8; Node writes U+FFFD for it. */
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

bool ju_is_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

size_t ju_space_at(const char *p, size_t n) {
    size_t adv;
    uint32_t cp = ju_decode(p, n, &adv);
    return n && ju_is_space(cp) ? adv : 0;
}

size_t ju_space_before(const char *p, size_t n) {
    size_t start = n;
    while (start > 0 && n - start < 4) {
        start--;
        if (((unsigned char)p[start] & 0xC0) != 0x80) break;
    }
    if (start == n) return 0;
    size_t adv;
    uint32_t cp = ju_decode(p + start, n - start, &adv);
    return adv == n - start && ju_is_space(cp) ? adv : 0;
}

void ju_trim(const char **p, size_t *n, bool left, bool right) {
    size_t k;
    if (left)
        while ((k = ju_space_at(*p, *n)) > 0) {
            *p += k;
            *n -= k;
        }
    if (right)
        while ((k = ju_space_before(*p, *n)) > 0) *n -= k;
}

size_t ju_utf16_len(const char *p, size_t n) {
    size_t units = 0;
    for (size_t i = 0; i < n;) {
        size_t adv;
        uint32_t cp = ju_decode(p + i, n - i, &adv);
        units += cp >= 0x10000 ? 2 : 1;
        i += adv;
    }
    return units;
}

static int map_case(const jcase_run *runs, size_t nruns, const jcase_multi *multi, size_t nmulti,
                    uint32_t cp, uint32_t out[3]) {
    for (size_t i = 0; i < nmulti; i++)
        if (multi[i].cp == cp) {
            for (int k = 0; k < multi[i].n; k++) out[k] = multi[i].out[k];
            return multi[i].n;
        }
    size_t lo = 0, hi = nruns;
    while (lo < hi) { /* the last run starting at or before cp */
        size_t mid = (lo + hi) / 2;
        if (runs[mid].lo <= cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    out[0] = cp;
    if (lo > 0) {
        const jcase_run *r = &runs[lo - 1];
        if (cp <= r->hi && (cp - r->lo) % r->stride == 0)
            out[0] = (uint32_t)((int32_t)cp + r->delta);
    }
    return 1;
}

int ju_upper(uint32_t cp, uint32_t out[3]) {
    return map_case(upper_runs, sizeof upper_runs / sizeof upper_runs[0], upper_multi,
                    sizeof upper_multi / sizeof upper_multi[0], cp, out);
}

int ju_lower(uint32_t cp, uint32_t out[3]) {
    return map_case(lower_runs, sizeof lower_runs / sizeof lower_runs[0], lower_multi,
                    sizeof lower_multi / sizeof lower_multi[0], cp, out);
}

/* The first UTF-16 unit of a code point, and the second (0 for BMP). */
static void utf16_units(uint32_t cp, uint32_t *u0, uint32_t *u1) {
    if (cp < 0x10000) {
        *u0 = cp;
        *u1 = 0;
    } else {
        *u0 = 0xD800 + ((cp - 0x10000) >> 10);
        *u1 = 0xDC00 + ((cp - 0x10000) & 0x3FF);
    }
}

int ju_cmp_utf16(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        size_t ka, kb;
        uint32_t ca = ju_decode(a + i, an - i, &ka), cb = ju_decode(b + j, bn - j, &kb);
        if (ca != cb) {
            uint32_t a0, a1, b0, b1;
            utf16_units(ca, &a0, &a1);
            utf16_units(cb, &b0, &b1);
            if (a0 != b0) return a0 < b0 ? -1 : 1;
            if (a1 == 0 || b1 == 0) return a1 == 0 ? -1 : 1;
            return a1 < b1 ? -1 : 1;
        }
        i += ka;
        j += kb;
    }
    if (i < an) return 1;
    if (j < bn) return -1;
    return 0;
}
