/* Keeping what a client wrote as text through the chat template. Before rendering, every
 * special-token text inside the request's strings is wrapped in two noncharacters (U+FDD0 ...
 * U+FDD1, which Unicode reserves for such internal use); after rendering, the marks are taken
 * out and the spans they enclosed are tokenized as text. The template's own markers carry no
 * marks and stay control tokens. A mark the client sent itself reads as U+FFFD. */
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define OPEN     "\xEF\xB7\x90" /* U+FDD0 */
#define CLOSE    "\xEF\xB7\x91" /* U+FDD1 */
#define MARK_LEN 3

static int is_mark(const char *s, size_t left) {
    return left >= MARK_LEN && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xB7 &&
           ((unsigned char)s[2] == 0x90 || (unsigned char)s[2] == 0x91);
}

/* The longest special text starting at s, or -1. */
static int special_at(const char *s, size_t left, const char *const *texts, const size_t *lens,
                      int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (lens[i] <= left && (unsigned char)texts[i][0] == (unsigned char)s[0] &&
            !memcmp(s, texts[i], lens[i]) && (best < 0 || lens[i] > lens[best]))
            best = i;
    return best;
}

/* The string with marks around its special texts, or NULL when there is nothing to change
 * (*failed set when out of memory). */
static char *mark_string(const char *s, const char *const *texts, const size_t *lens, int n,
                         const unsigned char *first, int *failed) {
    size_t len = strlen(s), i = 0;
    for (; i < len; i++)
        if (first[(unsigned char)s[i]] || is_mark(s + i, len - i)) break;
    if (i == len) return NULL;
    char *out = NULL;
    size_t olen = 0, cap = 0;
    if (srv_buf_append_utf8(&out, &olen, &cap, s, i)) goto oom;
    while (i < len) {
        int k = first[(unsigned char)s[i]] ? special_at(s + i, len - i, texts, lens, n) : -1;
        if (k >= 0) {
            if (srv_buf_append_utf8(&out, &olen, &cap, OPEN, MARK_LEN) ||
                srv_buf_append_utf8(&out, &olen, &cap, s + i, lens[k]) ||
                srv_buf_append_utf8(&out, &olen, &cap, CLOSE, MARK_LEN))
                goto oom;
            i += lens[k];
        } else if (is_mark(s + i, len - i)) {
            if (srv_buf_append_utf8(&out, &olen, &cap, "\xEF\xBF\xBD", 3)) goto oom;
            i += MARK_LEN;
        } else {
            if (srv_buf_append_utf8(&out, &olen, &cap, s + i, 1)) goto oom;
            i++;
        }
    }
    return out;
oom:
    free(out);
    *failed = 1;
    return NULL;
}

static int mark_one(cJSON *it, const char *const *texts, const size_t *lens, int n,
                    const unsigned char *first) {
    if (cJSON_IsString(it) && it->valuestring) {
        int failed = 0;
        char *m = mark_string(it->valuestring, texts, lens, n, first, &failed);
        if (failed) return -1;
        if (m) {
            free(it->valuestring); /* cJSON allocates with malloc by default */
            it->valuestring = m;
        }
    }
    for (cJSON *c = it->child; c; c = c->next)
        if (mark_one(c, texts, lens, n, first)) return -1;
    return 0;
}

int srv_mark_specials(cJSON *root, const char *const *texts, const size_t *lens, int n) {
    if (!root || n == 0) return 0;
    unsigned char first[256] = { 0 };
    for (int i = 0; i < n; i++)
        if (lens[i]) first[(unsigned char)texts[i][0]] = 1;
    first[0xEF] = 1; /* a mark the client sent */
    return mark_one(root, texts, lens, n, first);
}

int srv_unmark(char *text, size_t *len, srp_text_span **spans, int *n_spans) {
    size_t w = 0, n = *len;
    int open = 0, count = 0, cap = 0;
    srp_text_span *sp = NULL;
    for (size_t r = 0; r < n;) {
        if (is_mark(text + r, n - r)) {
            int is_open = (unsigned char)text[r + 2] == 0x90;
            if (is_open && !open) {
                if (count == cap) {
                    cap = cap ? cap * 2 : 8;
                    srp_text_span *ns = realloc(sp, (size_t)cap * sizeof *ns);
                    if (!ns) {
                        free(sp);
                        return -1;
                    }
                    sp = ns;
                }
                sp[count].begin = sp[count].end = w;
                open = 1;
            } else if (!is_open && open) {
                sp[count++].end = w;
                open = 0;
            }
            r += MARK_LEN; /* a stray mark (the template cut a string) is dropped */
            continue;
        }
        text[w++] = text[r++];
    }
    if (open) sp[count++].end = w; /* an unclosed span runs to the end */
    /* spans that came out empty (the template dropped the text between) carry nothing */
    int k = 0;
    for (int i = 0; i < count; i++)
        if (sp[i].end > sp[i].begin) sp[k++] = sp[i];
    text[w] = 0;
    *len = w;
    *spans = sp;
    *n_spans = k;
    return 0;
}
