/* The vocabulary: every token's bytes and a byte trie over them, and the token mask of a
 * matcher state.
 *
 * The trie is stored in preorder (a node's subtree is the index range up to `end`), built once
 * from the tokens sorted by their bytes. A mask walks it depth first, advancing the state by
 * each child's byte and pruning the subtree when no stack survives, so a state that allows
 * few tokens costs little. A state allowing most of them (inside a JSON string) has many bytes
 * that lead back to the same state (its "loop bytes"); a trie subtree spelled only with those
 * is allowed whole, without walking it: the bigger subtrees keep the set of bytes they use for
 * that test, and their tokens are one range of the sorted order. Masks are cached by the
 * grammar (mask_cache.c), so a state costs this walk once. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

typedef struct tnode {
    int32_t end; /* one past this node's subtree */
    /* the tokens spelled by the path to here, in sorted[]; tok_off is also the first token of
     * the subtree (they are contiguous in the sorted order) */
    int32_t tok_off, tok_n;
    int32_t bytes; /* index into srp_vocab.sub of the bytes of this subtree, or -1 */
    uint8_t byte;
} tnode;

enum { SUBTREE_SET_MIN = 16 }; /* subtrees this big keep their byte set */

struct srp_vocab {
    uint64_t uid; /* names the vocabulary in mask caches (an address may be reused) */
    int n_tokens;
    uint8_t *data;
    int64_t *off; /* token t: data[off[t] .. off[t] + len[t]) */
    int *len;     /* -1: no bytes (never allowed) */
    int32_t *sorted;
    tnode *node;
    int n_nodes, max_depth, n_sorted;
    gbytes *sub; /* byte sets of the big subtrees: the node's byte and all below */
};

static atomic_uint_fast64_t next_uid = 1;

static const srp_vocab *sort_vocab; /* qsort has no context argument in C11 */

static int cmp_tokens(const void *a, const void *b) {
    const srp_vocab *v = sort_vocab;
    int x = *(const int32_t *)a, y = *(const int32_t *)b;
    int lx = v->len[x], ly = v->len[y];
    int c = memcmp(v->data + v->off[x], v->data + v->off[y], (size_t)(lx < ly ? lx : ly));
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

static int build_trie(srp_vocab *v) {
    int n = 0;
    for (int t = 0; t < v->n_tokens; t++)
        if (v->len[t] > 0) v->sorted[n++] = t;
    pthread_mutex_lock(&sort_mu);
    sort_vocab = v;
    qsort(v->sorted, (size_t)n, sizeof *v->sorted, cmp_tokens);
    pthread_mutex_unlock(&sort_mu);
    long total = 1;
    for (int i = 0; i < n; i++) total += v->len[v->sorted[i]];
    v->node = malloc(sizeof *v->node * (size_t)total);
    int32_t *path = malloc(sizeof *path * (size_t)(v->max_depth + 1));
    if (!v->node || !path) {
        free(path);
        return -1;
    }
    int nn = 1, depth = 0;
    v->node[0] = (tnode){ .tok_off = 0, .tok_n = 0, .bytes = -1 };
    path[0] = 0;
    const uint8_t *prev = NULL;
    for (int i = 0; i < n; i++) {
        int t = v->sorted[i], len = v->len[t];
        const uint8_t *w = v->data + v->off[t];
        int l = 0;
        while (prev && l < depth && l < len && prev[l] == w[l]) l++;
        for (; depth > l; depth--) v->node[path[depth]].end = nn;
        for (; depth < len; depth++) {
            v->node[nn] = (tnode){ .byte = w[depth], .tok_off = i, .tok_n = 0, .bytes = -1 };
            path[depth + 1] = nn++;
        }
        tnode *leaf = &v->node[path[len]];
        if (!leaf->tok_n) leaf->tok_off = i;
        leaf->tok_n++;
        prev = w;
    }
    for (; depth >= 0; depth--) v->node[path[depth]].end = nn;
    v->n_nodes = nn;
    v->n_sorted = n;
    free(path);
    /* byte sets bottom up (reverse preorder visits children first), kept for big subtrees */
    gbytes *all = malloc(sizeof *all * (size_t)nn);
    int n_big = 0;
    for (int i = 1; i < nn; i++) n_big += v->node[i].end - i >= SUBTREE_SET_MIN;
    v->sub = malloc(sizeof *v->sub * (size_t)(n_big + 1));
    if (!all || !v->sub) {
        free(all);
        return -1;
    }
    n_big = 0;
    for (int i = nn - 1; i >= 1; i--) {
        gbytes b = { { 0 } };
        b.bits[v->node[i].byte >> 5] |= 1u << (v->node[i].byte & 31);
        for (int c = i + 1; c < v->node[i].end; c = v->node[c].end)
            for (int k = 0; k < 8; k++) b.bits[k] |= all[c].bits[k];
        all[i] = b;
        if (v->node[i].end - i >= SUBTREE_SET_MIN) {
            v->sub[n_big] = b;
            v->node[i].bytes = n_big++;
        }
    }
    free(all);
    return 0;
}

int srp_vocab_new(int n_tokens, const uint8_t *const *bytes, const int *lens, srp_vocab **out,
                  srp_err *e) {
    *out = NULL;
    if (n_tokens < 0 || (n_tokens && (!bytes || !lens)))
        return srp_err_set(e, SRP_EINVAL, "vocab: bad arguments");
    srp_vocab *v = calloc(1, sizeof *v);
    if (!v) return srp_err_set(e, SRP_ENOMEM, "vocab: out of memory");
    v->uid = atomic_fetch_add(&next_uid, 1);
    v->n_tokens = n_tokens;
    int64_t total = 0;
    for (int t = 0; t < n_tokens; t++) total += lens[t] > 0 ? lens[t] : 0;
    v->data = malloc((size_t)total + 1);
    v->off = malloc(sizeof *v->off * (size_t)(n_tokens + 1));
    v->len = malloc(sizeof *v->len * (size_t)(n_tokens + 1));
    v->sorted = malloc(sizeof *v->sorted * (size_t)(n_tokens + 1));
    if (!v->data || !v->off || !v->len || !v->sorted) goto nomem;
    int64_t at = 0;
    for (int t = 0; t < n_tokens; t++) {
        int len = lens[t] > 0 && bytes[t] ? lens[t] : -1;
        v->off[t] = at;
        v->len[t] = len;
        if (len > 0) {
            memcpy(v->data + at, bytes[t], (size_t)len);
            at += len;
            if (len > v->max_depth) v->max_depth = len;
        }
    }
    if (build_trie(v)) goto nomem;
    *out = v;
    return 0;
nomem:
    srp_vocab_free(v);
    return srp_err_set(e, SRP_ENOMEM, "vocab: out of memory (%d tokens)", n_tokens);
}

void srp_vocab_free(srp_vocab *v) {
    if (!v) return;
    free(v->data);
    free(v->off);
    free(v->len);
    free(v->sorted);
    free(v->node);
    free(v->sub);
    free(v);
}

int srp_vocab_size(const srp_vocab *v) {
    return v->n_tokens;
}

uint64_t g_vocab_uid(const srp_vocab *v) {
    return v->uid;
}

int g_vocab_token(const srp_vocab *v, int t, const uint8_t **bytes) {
    if (t < 0 || t >= v->n_tokens || v->len[t] <= 0) return -1;
    *bytes = v->data + v->off[t];
    return v->len[t];
}

static int lvl_reserve(srp_grammar *g, int depth) {
    if (depth < g->n_lvl) return 0;
    int n = depth + 16;
    int32_t **l = realloc(g->lvl, sizeof *l * (size_t)n);
    if (!l) return -1;
    g->lvl = l;
    int *c = realloc(g->lvl_cap, sizeof *c * (size_t)n);
    if (!c) return -1;
    g->lvl_cap = c;
    for (int i = g->n_lvl; i < n; i++) {
        g->lvl[i] = NULL;
        g->lvl_cap[i] = 0;
    }
    g->n_lvl = n;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static void set_range(const srp_vocab *v, int lo, int hi, uint32_t *mask) {
    for (int k = lo; k < hi; k++) {
        int t = v->sorted[k];
        mask[t >> 5] |= 1u << (t & 31);
    }
}

/* The walk over the children of trie node `at` from a state (state[0..n)); `home` says the
 * state is the mask's own, whose loop bytes are in `loop`. */
typedef struct walker {
    srp_grammar *g;
    const srp_vocab *v;
    uint32_t *mask;
    gbytes loop;
    const int32_t *home;
    int n_home;
} walker;

static void walk(walker *w, int at, int depth, const int32_t *state, int n, int home) {
    srp_grammar *g = w->g;
    const srp_vocab *v = w->v;
    gbytes any = { { 0 } }; /* every byte some stack accepts: most children fail this test */
    for (int i = 0; i < n; i++) {
        int s = g->store.node[state[i]].set;
        if (s < 0) continue;
        for (int k = 0; k < 8; k++) any.bits[k] |= g->sets[s].bits[k];
    }
    if (lvl_reserve(g, depth + 1)) return;
    for (int c = at + 1; c < v->node[at].end; c = v->node[c].end) {
        const tnode *ch = &v->node[c];
        if (!gbytes_has(&any, ch->byte)) continue;
        if (home && gbytes_has(&w->loop, ch->byte)) { /* back to the same state */
            if (ch->bytes >= 0) {
                const gbytes *sb = &v->sub[ch->bytes];
                int inside = 1;
                for (int k = 0; k < 8; k++) inside &= (sb->bits[k] & ~w->loop.bits[k]) == 0;
                if (inside) {
                    set_range(v, ch->tok_off,
                              ch->end < v->n_nodes ? v->node[ch->end].tok_off : v->n_sorted,
                              w->mask);
                    continue;
                }
            }
            set_range(v, ch->tok_off, ch->tok_off + ch->tok_n, w->mask);
            if (ch->end > c + 1) walk(w, c, depth + 1, w->home, w->n_home, 1);
            continue;
        }
        int m = g_advance(g, state, n, ch->byte, &g->lvl[depth + 1], &g->lvl_cap[depth + 1]);
        if (m <= 0) continue;
        set_range(v, ch->tok_off, ch->tok_off + ch->tok_n, w->mask);
        if (ch->end > c + 1) walk(w, c, depth + 1, g->lvl[depth + 1], m, 0);
    }
}

/* The bytes after which the state (sorted) is itself again. */
static void loop_bytes(srp_grammar *g, const int32_t *state, int n, gbytes *loop) {
    memset(loop, 0, sizeof *loop);
    gbytes any = { { 0 } };
    for (int i = 0; i < n; i++) {
        int s = g->store.node[state[i]].set;
        if (s >= 0)
            for (int k = 0; k < 8; k++) any.bits[k] |= g->sets[s].bits[k];
    }
    if (lvl_reserve(g, 1)) return;
    for (unsigned b = 0; b < 256; b++) {
        if (!gbytes_has(&any, b)) continue;
        int m = g_advance(g, state, n, b, &g->lvl[0], &g->lvl_cap[0]);
        if (m != n) continue;
        qsort(g->lvl[0], (size_t)m, sizeof *g->lvl[0], cmp_i32);
        if (!memcmp(g->lvl[0], state, sizeof *state * (size_t)n))
            loop->bits[b >> 5] |= 1u << (b & 31);
    }
}

void g_mask_compute(srp_grammar *g, const srp_vocab *v, const int32_t *state, int n,
                    uint32_t *mask) {
    int words = (v->n_tokens + 31) / 32;
    const uint32_t *hit = g_cache_get(g, v->uid, state, n);
    if (hit) {
        memcpy(mask, hit, sizeof *mask * (size_t)words);
        return;
    }
    memset(mask, 0, sizeof *mask * (size_t)words);
    if (lvl_reserve(g, 1) || (n && !g->store.node)) return;
    walker w = { .g = g, .v = v, .mask = mask, .home = state, .n_home = n };
    loop_bytes(g, state, n, &w.loop);
    walk(&w, 0, 0, state, n, 1);
    g_cache_put(g, v->uid, state, n, mask, words);
}
