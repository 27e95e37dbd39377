/* Unicode as the JavaScript reference sees it: its whitespace set (\s, trim), UTF-16 lengths and
 * ordering, and toUpperCase / toLowerCase for the scripts chat text mostly uses (Latin, Greek,
 * Cyrillic, Armenian, full-width forms). Other code points keep their case. */
#include <string.h>

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

/* Ranges where upper and lower case alternate: even code point upper, odd lower (or the
 * reverse when `odd_upper`). */
typedef struct {
    uint32_t lo, hi;
    bool odd_upper;
} pair_range;

static const pair_range pairs[] = {
    { 0x100, 0x12F, false },   { 0x132, 0x137, false },   { 0x139, 0x148, true },
    { 0x14A, 0x177, false },   { 0x179, 0x17E, true },    { 0x1DE, 0x1EF, false },
    { 0x1F8, 0x233, false },   { 0x460, 0x481, false },   { 0x48A, 0x4BF, false },
    { 0x4C1, 0x4CE, true },    { 0x4D0, 0x52F, false },   { 0x1E00, 0x1E95, false },
    { 0x1EA0, 0x1EFF, false },
};

/* Ranges where lower = upper + delta. */
typedef struct {
    uint32_t lo, hi; /* upper-case range */
    int delta;
} shift_range;

static const shift_range shifts[] = {
    { 'A', 'Z', 32 },        { 0xC0, 0xD6, 32 },      { 0xD8, 0xDE, 32 },
    { 0x388, 0x38A, 37 },    { 0x38E, 0x38F, 63 },    { 0x391, 0x3A1, 32 },
    { 0x3A3, 0x3AB, 32 },    { 0x400, 0x40F, 80 },    { 0x410, 0x42F, 32 },
    { 0x531, 0x556, 48 },    { 0xFF21, 0xFF3A, 32 },
};

static const struct {
    uint32_t upper, lower;
} singles[] = {
    { 0x178, 0xFF }, { 0x386, 0x3AC }, { 0x38C, 0x3CC }, { 0x4C0, 0x4CF }, { 0x39C, 0xB5 },
    { 0x3A3, 0x3C2 }, { 0x49, 0x131 }, { 0x53, 0x17F }, { 0x1E60, 0x1E9B },
};

int ju_lower(uint32_t cp, uint32_t out[3]) {
    out[0] = cp;
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z') out[0] = cp + 32;
        return 1;
    }
    if (cp == 0x130) { /* İ lowercases to i + combining dot */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    if (cp == 0x1E9E) {
        out[0] = 0xDF;
        return 1;
    }
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++)
        if (cp >= shifts[i].lo && cp <= shifts[i].hi) {
            out[0] = cp + (uint32_t)shifts[i].delta;
            return 1;
        }
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (cp >= pairs[i].lo && cp <= pairs[i].hi) {
            if ((cp & 1) == (pairs[i].odd_upper ? 1u : 0u)) out[0] = cp + 1;
            return 1;
        }
    for (size_t i = 0; i < 4; i++)
        if (cp == singles[i].upper) out[0] = singles[i].lower;
    return 1;
}

int ju_upper(uint32_t cp, uint32_t out[3]) {
    out[0] = cp;
    if (cp < 0x80) {
        if (cp >= 'a' && cp <= 'z') out[0] = cp - 32;
        return 1;
    }
    switch (cp) {
    case 0xDF: out[0] = out[1] = 'S'; return 2;
    case 0x149: out[0] = 0x2BC; out[1] = 'N'; return 2;
    case 0x390: out[0] = 0x399; out[1] = 0x308; out[2] = 0x301; return 3;
    case 0x3B0: out[0] = 0x3A5; out[1] = 0x308; out[2] = 0x301; return 3;
    case 0x587: out[0] = 0x535; out[1] = 0x552; return 2;
    case 0xFB00: out[0] = out[1] = 'F'; return 2;
    case 0xFB01: out[0] = 'F'; out[1] = 'I'; return 2;
    case 0xFB02: out[0] = 'F'; out[1] = 'L'; return 2;
    case 0xFB03: out[0] = out[1] = 'F'; out[2] = 'I'; return 3;
    case 0xFB04: out[0] = out[1] = 'F'; out[2] = 'L'; return 3;
    case 0xFB05:
    case 0xFB06: out[0] = 'S'; out[1] = 'T'; return 2;
    default: break;
    }
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++)
        if (cp == singles[i].lower) {
            out[0] = singles[i].upper;
            return 1;
        }
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
        uint32_t d = (uint32_t)shifts[i].delta;
        if (cp >= shifts[i].lo + d && cp <= shifts[i].hi + d) {
            out[0] = cp - d;
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (cp >= pairs[i].lo && cp <= pairs[i].hi) {
            if ((cp & 1) != (pairs[i].odd_upper ? 1u : 0u)) out[0] = cp - 1;
            return 1;
        }
    return 1;
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
