/* The masks a grammar has computed, keyed by (vocabulary, exact state). States repeat a lot
 * (every character inside the same JSON string, every element of an array of numbers), and
 * since the cache belongs to the grammar, requests sharing a compiled grammar share it too.
 * Bounded: when it holds G_CACHE_BYTES it is emptied and refilled, which keeps the hot states
 * without bookkeeping per entry. Called under the grammar's mutex. */
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

enum { G_CACHE_BYTES = 32 << 20 };

typedef struct centry {
    uint64_t hash, vocab;
    int32_t *state; /* NULL: empty slot */
    uint32_t *mask;
    int n;
} centry;

struct gcache {
    centry *slot;
    int cap, used;
    size_t bytes;
};

static uint64_t state_hash(uint64_t vocab, const int32_t *s, int n) {
    uint64_t h = vocab * 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    for (int i = 0; i < n; i++) {
        h ^= (uint32_t)s[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return h;
}

static void clear(gcache *c) {
    for (int i = 0; i < c->cap; i++) {
        free(c->slot[i].state);
        c->slot[i].state = NULL;
    }
    c->used = 0;
    c->bytes = 0;
}

void g_cache_free(gcache *c) {
    if (!c) return;
    clear(c);
    free(c->slot);
    free(c);
}

static centry *find(gcache *c, uint64_t h, uint64_t vocab, const int32_t *s, int n) {
    for (int i = (int)(h & (uint64_t)(c->cap - 1));; i = (i + 1) & (c->cap - 1)) {
        centry *e = &c->slot[i];
        if (!e->state) return e;
        if (e->hash == h && e->vocab == vocab && e->n == n &&
            !memcmp(e->state, s, sizeof *s * (size_t)n))
            return e;
    }
}

const uint32_t *g_cache_get(srp_grammar *g, uint64_t vocab, const int32_t *state, int n) {
    gcache *c = g->cache;
    if (!c || !c->used) return NULL;
    centry *e = find(c, state_hash(vocab, state, n), vocab, state, n);
    return e->state ? e->mask : NULL;
}

void g_cache_put(srp_grammar *g, uint64_t vocab, const int32_t *state, int n, const uint32_t *mask,
                 int words) {
    if (!g->cache) {
        g->cache = calloc(1, sizeof *g->cache);
        if (!g->cache) return;
    }
    gcache *c = g->cache;
    size_t need = sizeof *state * (size_t)(n + 1) + sizeof *mask * (size_t)words;
    if (c->bytes + need > G_CACHE_BYTES) clear(c);
    if ((c->used + 1) * 2 > c->cap) { /* grow the table, keeping its entries */
        int cap = c->cap ? c->cap * 2 : 256;
        centry *old = c->slot;
        int old_cap = c->cap;
        c->slot = calloc((size_t)cap, sizeof *c->slot);
        if (!c->slot) {
            c->slot = old;
            return;
        }
        c->cap = cap;
        for (int i = 0; i < old_cap; i++)
            if (old[i].state) {
                int k = (int)(old[i].hash & (uint64_t)(cap - 1));
                while (c->slot[k].state) k = (k + 1) & (cap - 1);
                c->slot[k] = old[i];
            }
        free(old);
    }
    uint64_t h = state_hash(vocab, state, n);
    centry *e = find(c, h, vocab, state, n);
    if (e->state) return;
    /* one allocation: the state, then the mask */
    int32_t *block = malloc(need);
    if (!block) return;
    memcpy(block, state, sizeof *state * (size_t)n);
    uint32_t *m = (uint32_t *)(block + n + 1);
    memcpy(m, mask, sizeof *mask * (size_t)words);
    *e = (centry){ .hash = h, .vocab = vocab, .state = block, .mask = m, .n = n };
    c->used++;
    c->bytes += need;
}

size_t g_cache_bytes(const gcache *c) {
    return c ? c->bytes + (size_t)c->cap * sizeof *c->slot : 0;
}
