/* UTF-8 checks and stop-string matching on byte strings. */
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Length of the valid UTF-8 character at s (at most n bytes), or 0 if invalid. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp, min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

int srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char(p + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static int reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb) return -1;
    *buf = nb;
    *cap = c;
    return 0;
}

int srv_buf_append_utf8(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    /* worst case every byte becomes a 3-byte U+FFFD; +1 for the terminator */
    if (reserve(buf, cap, *len + 3 * n + 1)) return -1;
    const unsigned char *p = (const unsigned char *)s;
    char *o = *buf + *len;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char(p + i, n - i);
        if (k) {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *len = (size_t)(o - *buf);
    (*buf)[*len] = 0;
    return 0;
}

size_t srv_stop_holdback(const char *s, size_t n, char *const *stops, int n_stops) {
    size_t best = 0;
    for (int i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t k = sl - 1; k > best; k--) /* proper prefixes, longest first */
            if (k <= n && !memcmp(s + n - k, stops[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

long srv_stop_find(const char *s, size_t n, size_t from, char *const *stops, int n_stops) {
    long best = -1;
    for (int i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t p = from; p + sl <= n; p++) {
            if (best >= 0 && (long)p >= best) break;
            if (!memcmp(s + p, stops[i], sl)) {
                best = (long)p;
                break;
            }
        }
    }
    return best;
}

long srv_stop_match(const char *s, size_t n, size_t from, size_t min_end, char *const *stops,
                    int n_stops, size_t *len, int *which) {
    long best = -1;
    for (int i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        size_t p = from;
        if (min_end > sl && p < min_end - sl) p = min_end - sl;
        for (; p + sl <= n; p++) {
            if (best >= 0 && (long)p >= best) break;
            if (!memcmp(s + p, stops[i], sl)) {
                best = (long)p;
                *len = sl;
                *which = i;
                break;
            }
        }
    }
    return best;
}

typedef struct member {
    cJSON *item;
    size_t pos;
} member;

static int by_key_then_pos(const void *a, const void *b) {
    const member *x = a, *y = b;
    int c = strcmp(x->item->string, y->item->string);
    if (c) return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int dedupe_object(cJSON *obj) {
    size_t n = 0;
    for (cJSON *it = obj->child; it; it = it->next) n++;
    if (n < 2) return 0;
    if (n <= 16) { /* small objects: a quadratic scan costs less than sorting */
        for (cJSON *it = obj->child, *next; it; it = next) {
            next = it->next;
            for (cJSON *later = next; later; later = later->next)
                if (!strcmp(later->string, it->string)) {
                    cJSON_Delete(cJSON_DetachItemViaPointer(obj, it));
                    break;
                }
        }
        return 0;
    }
    member *m = malloc(n * sizeof *m);
    if (!m) return -1;
    size_t k = 0;
    for (cJSON *it = obj->child; it; it = it->next) m[k] = (member){ it, k }, k++;
    qsort(m, n, sizeof *m, by_key_then_pos);
    for (size_t i = 0; i + 1 < n; i++)
        if (!strcmp(m[i].item->string, m[i + 1].item->string))
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, m[i].item));
    free(m);
    return 0;
}

int srv_json_dedupe(cJSON *root) {
    if (!root) return 0;
    if (cJSON_IsObject(root) && dedupe_object(root)) return -1;
    for (cJSON *it = root->child; it; it = it->next)
        if ((cJSON_IsObject(it) || cJSON_IsArray(it)) && srv_json_dedupe(it)) return -1;
    return 0;
}

size_t srv_utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

int srv_json_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (reserve(buf, cap, *len + 6 * n + 3)) return -1;
    char *o = *buf + *len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c < 0x20 || c == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *len = (size_t)(o - *buf);
    (*buf)[*len] = 0;
    return 0;
}

cJSON *srv_json_text(const char *s, size_t n) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (srv_json_quote(&buf, &len, &cap, s ? s : "", s ? n : 0)) return cJSON_CreateString("");
    cJSON *r = cJSON_CreateRaw(buf);
    free(buf);
    return r;
}
