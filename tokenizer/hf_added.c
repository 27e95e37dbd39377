/* Finding added tokens in text: leftmost-longest matching over a byte trie, then the
 * single_word / lstrip / rstrip rules of the crate's AddedVocabulary::find_matches. */
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "hf_chars.h"

static int32_t new_node(hf_trie *t, unsigned char byte) {
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 256;
        struct hf_trie_node *p = realloc(t->node, (size_t)cap * sizeof *p);
        if (!p) return -1;
        t->node = p;
        t->cap = cap;
    }
    t->node[t->n] = (struct hf_trie_node){ -1, -1, -1, byte };
    return t->n++;
}

int hf_trie_add(hf_trie *t, const char *s, size_t n, int32_t token) {
    const unsigned char *u = (const unsigned char *)s;
    int32_t cur = t->root[u[0]];
    if (cur < 0) {
        if ((cur = new_node(t, u[0])) < 0) return -1;
        t->root[u[0]] = cur;
    }
    for (size_t i = 1; i < n; i++) {
        int32_t c = t->node[cur].first_child;
        while (c >= 0 && t->node[c].byte != u[i]) c = t->node[c].next_sibling;
        if (c < 0) {
            if ((c = new_node(t, u[i])) < 0) return -1;
            t->node[c].next_sibling = t->node[cur].first_child;
            t->node[cur].first_child = c;
        }
        cur = c;
    }
    t->node[cur].token = token; /* a repeated content keeps the last token, as the id map does */
    return 0;
}

void hf_trie_free(hf_trie *t) {
    free(t->node);
    t->node = NULL;
    t->n = t->cap = 0;
}

/* The longest token starting at s[0]: its index into added[] and length, or -1. */
static int32_t longest(const hf_trie *t, const unsigned char *s, size_t n, size_t *len) {
    int32_t cur = t->root[s[0]], best = -1;
    size_t i = 1;
    while (cur >= 0) {
        if (t->node[cur].token >= 0) {
            best = t->node[cur].token;
            *len = i;
        }
        if (i == n) break;
        int32_t c = t->node[cur].first_child;
        while (c >= 0 && t->node[c].byte != s[i]) c = t->node[c].next_sibling;
        cur = c;
        i++;
    }
    return best;
}

static int ends_with_word(const char *s, size_t n) {
    if (!n) return 0;
    int k;
    return hf_is_word(hf_prev_char(s, n, &k));
}

static int starts_with_word(const char *s, size_t n) {
    uint32_t cp;
    return n && srp_utf8_next((const unsigned char *)s, n, &cp) && hf_is_word(cp);
}

/* Cuts one text piece; pieces are offsets into buf. */
static int split_one(const srp_hf *h, const hf_trie *t, const char *base, hf_piece pc,
                     hf_pieces *out) {
    const char *s = base + pc.off;
    const unsigned char *u = (const unsigned char *)s;
    size_t n = pc.len, start_offset = 0, pos = 0;
    while (pos < n) {
        size_t mlen = 0;
        int32_t k = t->root[u[pos]] >= 0 ? longest(t, u + pos, n - pos, &mlen) : -1;
        if (k >= 0 && pc.plain && h->added[k].special) k = -1; /* text, not the token */
        if (k < 0) {
            pos++;
            continue;
        }
        const hf_added *a = &h->added[k];
        size_t start = pos, stop = pos + mlen;
        pos = stop; /* matches do not overlap, even a discarded one */
        if (a->single_word && ((start > 0 && ends_with_word(s, start)) ||
                               (stop < n && starts_with_word(s + stop, n - stop))))
            continue;
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                int l;
                if (!hf_is_whitespace(hf_prev_char(s, ns, &l))) break;
                ns -= (size_t)l;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            uint32_t cp;
            int l;
            while (stop < n && (l = srp_utf8_next(u + stop, n - stop, &cp)) && hf_is_whitespace(cp))
                stop += (size_t)l;
        }
        if (start < start_offset) start = start_offset;
        if (start_offset < start &&
            hf_pieces_push(out, (hf_piece){ pc.off + start_offset, start - start_offset, -1,
                                            pc.at_start && start_offset == 0, pc.plain }))
            return -1;
        if (hf_pieces_push(out, (hf_piece){ pc.off + start, stop - start, a->id, 0, 0 })) return -1;
        start_offset = stop;
        if (pos < stop) pos = stop;
    }
    if (start_offset < n &&
        hf_pieces_push(out, (hf_piece){ pc.off + start_offset, n - start_offset, -1,
                                        pc.at_start && start_offset == 0, pc.plain }))
        return -1;
    return 0;
}

int hf_split_added(const srp_hf *h, const hf_trie *trie, const srp_tbuf *buf, const hf_pieces *in,
                   hf_pieces *out) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        hf_piece pc = in->p[i];
        if (pc.id >= 0 || !trie->n) {
            if (hf_pieces_push(out, pc)) return -1;
            continue;
        }
        if (split_one(h, trie, buf->p, pc, out)) return -1;
    }
    return 0;
}
