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
