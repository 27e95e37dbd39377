/* The vocabulary: every token's bytes and a byte trie over them, and the token mask of a
 * matcher state.
 *
 * The trie is stored in preorder (a node's subtree is the index range up to `end`), built once
 * from the tokens sorted by their bytes. A mask walks it depth first, advancing the state by
 * each child's byte and pruning the subtree when no stack survives, so a state that allows
 * few tokens costs little; a state allowing most of them (inside a JSON string) is served from
 * the grammar's mask cache after the first time. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

typedef struct tnode {
    int32_t end;            /* one past this node's subtree */
    int32_t tok_off, tok_n; /* the tokens spelled by the path to here, in sorted[] */
    uint8_t byte;
} tnode;

struct srp_vocab {
    uint64_t uid; /* names the vocabulary in mask caches (an address may be reused) */
    int n_tokens;
    uint8_t *data;
    int64_t *off; /* token t: data[off[t] .. off[t] + len[t]) */
    int *len;     /* -1: no bytes (never allowed) */
    int32_t *sorted;
    tnode *node;
    int n_nodes, max_depth;
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
    v->node[0] = (tnode){ .tok_off = 0, .tok_n = 0 };
    path[0] = 0;
    const uint8_t *prev = NULL;
    for (int i = 0; i < n; i++) {
        int t = v->sorted[i], len = v->len[t];
        const uint8_t *w = v->data + v->off[t];
        int l = 0;
        while (prev && l < depth && l < len && prev[l] == w[l]) l++;
        for (; depth > l; depth--) v->node[path[depth]].end = nn;
        for (; depth < len; depth++) {
            v->node[nn] = (tnode){ .byte = w[depth], .tok_off = i, .tok_n = 0 };
            path[depth + 1] = nn++;
        }
        tnode *leaf = &v->node[path[len]];
        if (!leaf->tok_n) leaf->tok_off = i;
        leaf->tok_n++;
        prev = w;
    }
    for (; depth >= 0; depth--) v->node[path[depth]].end = nn;
    v->n_nodes = nn;
    free(path);
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

/* The children of trie node `at`, from the state g->lvl[depth][0..n). */
static void walk(srp_grammar *g, const srp_vocab *v, int at, int depth, int n, uint32_t *mask) {
    gbytes any = { { 0 } }; /* every byte some stack accepts: most children fail this test */
    for (int i = 0; i < n; i++) {
        int s = g->store.node[g->lvl[depth][i]].set;
        if (s < 0) continue;
        for (int k = 0; k < 8; k++) any.bits[k] |= g->sets[s].bits[k];
    }
    if (lvl_reserve(g, depth + 1)) return;
    for (int c = at + 1; c < v->node[at].end; c = v->node[c].end) {
        const tnode *ch = &v->node[c];
        if (!gbytes_has(&any, ch->byte)) continue;
        int m =
            g_advance(g, g->lvl[depth], n, ch->byte, &g->lvl[depth + 1], &g->lvl_cap[depth + 1]);
        if (m <= 0) continue;
        for (int k = 0; k < ch->tok_n; k++) {
            int t = v->sorted[ch->tok_off + k];
            mask[t >> 5] |= 1u << (t & 31);
        }
        if (ch->end > c + 1) walk(g, v, c, depth + 1, m, mask);
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
    if (lvl_reserve(g, 0) || (n && !g->store.node)) return;
    if (n > g->lvl_cap[0]) {
        int32_t *p = realloc(g->lvl[0], sizeof *p * (size_t)n);
        if (!p) return;
        g->lvl[0] = p;
        g->lvl_cap[0] = n;
    }
    memcpy(g->lvl[0], state, sizeof *state * (size_t)n);
    walk(g, v, 0, 0, n, mask);
    g_cache_put(g, v->uid, state, n, mask, words);
}
