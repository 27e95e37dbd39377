/* The BPE model: a word becomes one symbol per character (or per byte in byte-level mode),
 * then the lowest-ranked merge among adjacent pairs is applied until none is left. A binary
 * heap ordered by (rank, position) holds the candidate pairs; entries made stale by an earlier
 * merge are skipped when popped, as in the crate's Word::merge_all. A small cache keeps the ids
 * of recent short words. */
#include <stdlib.h>
#include <string.h>

#include "hf.h"

typedef struct sym {
    int32_t id, prev, next;
    int alive;
} sym;

typedef struct cand {
    int32_t rank, pos, merged;
} cand;

static int less(cand a, cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(cand *h, int *n, cand c) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!less(c, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, int *n) {
    cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        cand best = last;
        if (l < *n && less(h[l], best)) {
            m = l;
            best = h[l];
        }
        if (r < *n && less(h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

#define SMALL_WORD 64 /* symbols and candidates of shorter words live on the stack */

typedef struct symbols {
    sym *s;
    int n, cap;
    int32_t unk; /* a pending unknown symbol (fuse_unk gathers a run), -1 if none */
    sym small[SMALL_WORD];
} symbols;

static int sym_add(symbols *v, int32_t id) {
    if (v->n == v->cap) {
        int cap = v->cap * 2;
        sym *p = malloc((size_t)cap * sizeof *p);
        if (!p) return -1;
        memcpy(p, v->s, (size_t)v->n * sizeof *p);
        if (v->s != v->small) free(v->s);
        v->s = p;
        v->cap = cap;
    }
    v->s[v->n] = (sym){ id, v->n - 1, v->n + 1, 1 };
    v->n++;
    return 0;
}

/* One character c (bytes of the model's alphabet) that is not in the vocabulary: its bytes as
 * <0xHH> tokens when byte_fallback has them all, else the unknown token. */
static int unknown_char(const hf_bpe *m, symbols *v, const unsigned char *c, size_t n, srp_err *e) {
    if (m->byte_fallback) {
        size_t k = 0;
        while (k < n && m->byte_token[c[k]] >= 0) k++;
        if (k == n) {
            /* a pending unknown stays pending, as in the crate: it comes after these bytes */
            for (k = 0; k < n; k++)
                if (sym_add(v, m->byte_token[c[k]]))
                    return srp_err_set(e, SRP_ENOMEM, "out of memory");
            return 0;
        }
    }
    if (m->unk_named)
        return srp_err_set(e, SRP_EINVAL, "the unknown token is not in the vocabulary");
    if (m->unk < 0) return 0; /* without an unknown token the character is dropped */
    if (v->unk >= 0 && !m->fuse_unk && sym_add(v, v->unk))
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    v->unk = m->unk;
    return 0;
}

static int known(symbols *v, int32_t id) {
    if (v->unk >= 0) {
        if (sym_add(v, v->unk)) return -1;
        v->unk = -1;
    }
    return sym_add(v, id);
}

static int initial_symbols(const hf_bpe *m, const char *w, size_t n, symbols *v, srp_err *e) {
    const unsigned char *u = (const unsigned char *)w;
    char stack[256];
    for (size_t i = 0; i < n;) {
        if (m->raw) {
            int32_t id = m->raw_byte[u[i]];
            if (id >= 0) {
                if (known(v, id)) return srp_err_set(e, SRP_ENOMEM, "out of memory");
            } else {
                /* the crate looks up the alphabet character, whose UTF-8 is what falls back */
                char ch[4];
                int k = srp_utf8_put(hf_byte_char(u[i]), ch);
                if (unknown_char(m, v, (unsigned char *)ch, (size_t)k, e)) return -1;
            }
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = (size_t)srp_utf8_next(u + i, n - i, &cp);
        if (!k) k = 1; /* cannot happen: text is valid UTF-8 by now */
        const char *s = w + i;
        size_t len = k;
        if (m->prefix || m->suffix) {
            size_t need = k + (i ? m->prefix_len : 0) + (i + k == n ? m->suffix_len : 0);
            if (need > sizeof stack) return srp_err_set(e, SRP_EINVAL, "subword affix too long");
            len = 0;
            if (i && m->prefix) memcpy(stack, m->prefix, m->prefix_len), len = m->prefix_len;
            memcpy(stack + len, w + i, k);
            len += k;
            if (i + k == n && m->suffix)
                memcpy(stack + len, m->suffix, m->suffix_len), len += m->suffix_len;
            s = stack;
        }
        int32_t id = srp_strmap_get(&m->vocab, s, len);
        if (id >= 0) {
            if (known(v, id)) return srp_err_set(e, SRP_ENOMEM, "out of memory");
        } else if (unknown_char(m, v, (const unsigned char *)s, len, e)) {
            return -1;
        }
        i += k;
    }
    if (v->unk >= 0 && sym_add(v, v->unk)) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    v->unk = -1;
    return 0;
}

static int merge_all(const hf_bpe *m, symbols *v, srp_err *e) {
    int n = v->n, nh = 0;
    if (n < 2) return 0;
    v->s[n - 1].next = -1;
    /* each merge adds at most two candidates */
    cand small[3 * SMALL_WORD];
    cand *h = n <= SMALL_WORD ? small : malloc((size_t)(3 * n) * sizeof *h);
    if (!h) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int32_t rank, merged;
    for (int i = 0; i + 1 < n; i++)
        if (srp_pairmap_get(&m->merges, v->s[i].id, v->s[i + 1].id, &rank, &merged))
            heap_push(h, &nh, (cand){ rank, i, merged });
    while (nh) {
        cand c = heap_pop(h, &nh);
        sym *a = &v->s[c.pos];
        if (!a->alive || a->next < 0) continue;
        sym *b = &v->s[a->next];
        if (!srp_pairmap_get(&m->merges, a->id, b->id, &rank, &merged) || merged != c.merged)
            continue; /* stale: a or b changed since this candidate was queued */
        a->id = c.merged;
        b->alive = 0;
        a->next = b->next;
        if (a->next >= 0) v->s[a->next].prev = c.pos;
        if (a->prev >= 0 && srp_pairmap_get(&m->merges, v->s[a->prev].id, a->id, &rank, &merged))
            heap_push(h, &nh, (cand){ rank, a->prev, merged });
        if (a->next >= 0 && srp_pairmap_get(&m->merges, a->id, v->s[a->next].id, &rank, &merged))
            heap_push(h, &nh, (cand){ rank, c.pos, merged });
    }
    if (h != small) free(h);
    return 0;
}

static int cache_get(const hf_bpe *m, const char *w, size_t n, uint64_t hash, srp_tids *out) {
    hf_bpe *mm = (hf_bpe *)m; /* the cache is the only state an encode changes */
    if (pthread_mutex_trylock(&mm->cache_lock)) return 0;
    hf_cache_entry *c = &mm->cache[hash % HF_CACHE_SLOTS];
    int hit = c->key && c->hash == hash && c->key_len == n && !memcmp(c->key, w, n);
    if (hit && srp_tids_append(out, c->ids, c->n_ids)) hit = -1;
    pthread_mutex_unlock(&mm->cache_lock);
    return hit;
}

static void cache_put(const hf_bpe *m, const char *w, size_t n, uint64_t hash, const int32_t *ids,
                      size_t k) {
    hf_bpe *mm = (hf_bpe *)m;
    char *key = malloc(n + k * sizeof *ids);
    if (!key) return; /* the cache is an optimization only */
    memcpy(key, w, n);
    if (k) memcpy(key + n, ids, k * sizeof *ids);
    if (pthread_mutex_trylock(&mm->cache_lock)) {
        free(key);
        return;
    }
    hf_cache_entry *c = &mm->cache[hash % HF_CACHE_SLOTS];
    free(c->key);
    *c = (hf_cache_entry){ hash, key, (uint32_t)n, (uint32_t)k, (int32_t *)(void *)(key + n) };
    pthread_mutex_unlock(&mm->cache_lock);
}

int hf_bpe_word(const hf_bpe *m, const char *w, size_t n, srp_tids *out, srp_err *e) {
    if (!n) return 0;
    uint64_t hash = 0;
    int cacheable = n <= HF_CACHE_MAX_WORD && m->cache;
    if (cacheable) {
        hash = srp_hash_bytes(w, n);
        int hit = cache_get(m, w, n, hash, out);
        if (hit) return hit < 0 ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
    }
    if (m->ignore_merges) {
        int32_t id = srp_strmap_get(&m->vocab, w, n);
        if (id >= 0)
            return srp_tids_push(out, id) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
    }
    symbols v;
    v.s = v.small;
    v.n = 0;
    v.cap = SMALL_WORD;
    v.unk = -1;
    size_t first = out->n;
    int rc = initial_symbols(m, w, n, &v, e);
    if (!rc) rc = merge_all(m, &v, e);
    for (int i = 0; i < v.n && !rc; i = v.s[i].next) {
        if (srp_tids_push(out, v.s[i].id)) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        if (v.s[i].next < 0) break;
    }
    if (v.s != v.small) free(v.s);
    if (!rc && cacheable) /* a word can give no ids: unknown characters without an unk token */
        cache_put(m, w, n, hash, out->n > first ? out->p + first : NULL, out->n - first);
    return rc;
}

void hf_bpe_free(hf_bpe *m) {
    srp_strmap_free(&m->vocab);
    srp_pairmap_free(&m->merges);
    free(m->prefix);
    free(m->suffix);
    if (m->cache) {
        for (int i = 0; i < HF_CACHE_SLOTS; i++) free(m->cache[i].key);
        free(m->cache);
    }
    pthread_mutex_destroy(&m->cache_lock);
}
