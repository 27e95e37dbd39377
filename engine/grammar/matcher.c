/* The pushdown automaton over bytes: interned stack frames, their expansion to terminals, the
 * state after a byte, and the per-request matcher.
 *
 * As in llama.cpp a state is a set of stacks whose tops are terminals. Unlike it, stacks are
 * interned frames (pos, parent) shared by every state of the grammar, so a state is a set of
 * ints, deduplication is a stamp per frame, and the frames after a frame's byte are computed
 * once per grammar (gnode.succ). A reference in tail position does not push a frame, so
 * `s ::= x s |` repeats in constant stack depth. */
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

void g_store_free(gstore *s) {
    free(s->node);
    free(s->hash);
    free(s->succ);
    free(s->mark_x);
    free(s->mark_s);
    free(s->tmp);
    memset(s, 0, sizeof *s);
}

static uint32_t pair_hash(int32_t pos, int32_t parent) {
    uint64_t h = ((uint64_t)(uint32_t)pos << 32 | (uint32_t)parent) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32);
}

static int store_grow(srp_grammar *g) {
    gstore *s = &g->store;
    if (s->n + 1 <= s->cap) return 0;
    if (s->n >= G_MAX_NODES) return -1;
    int cap = s->cap ? s->cap * 2 : 1024;
    gnode *nd = realloc(s->node, sizeof *nd * (size_t)cap);
    if (!nd) return -1;
    s->node = nd;
    uint32_t *mx = realloc(s->mark_x, sizeof *mx * (size_t)cap);
    if (!mx) return -1;
    s->mark_x = mx;
    uint32_t *ms = realloc(s->mark_s, sizeof *ms * (size_t)cap);
    if (!ms) return -1;
    s->mark_s = ms;
    memset(mx + s->cap, 0, sizeof *mx * (size_t)(cap - s->cap));
    memset(ms + s->cap, 0, sizeof *ms * (size_t)(cap - s->cap));
    int32_t *h = malloc(sizeof *h * (size_t)cap * 2);
    if (!h) return -1;
    memset(h, 0xff, sizeof *h * (size_t)cap * 2);
    for (int i = 1; i < s->n; i++) {
        uint32_t k = pair_hash(nd[i].pos, nd[i].parent) & (uint32_t)(cap * 2 - 1);
        while (h[k] >= 0) k = (k + 1) & (uint32_t)(cap * 2 - 1);
        h[k] = i;
    }
    free(s->hash);
    s->hash = h;
    s->hash_cap = cap * 2;
    s->cap = cap;
    return 0;
}

/* Node 0 stands for the end of the sentence. */
static int store_init(srp_grammar *g) {
    gstore *s = &g->store;
    if (s->n) return 0;
    if (store_grow(g)) return -1;
    s->node[0] = (gnode){ .pos = -1, .parent = -1, .set = -1, .succ_off = -1 };
    s->n = 1;
    return 0;
}

/* The frame (pos, parent), made if new; -1 when out of memory or past G_MAX_NODES. */
static int32_t intern(srp_grammar *g, int32_t pos, int32_t parent) {
    gstore *s = &g->store;
    uint32_t k = pair_hash(pos, parent) & (uint32_t)(s->hash_cap - 1);
    for (; s->hash[k] >= 0; k = (k + 1) & (uint32_t)(s->hash_cap - 1)) {
        gnode *nd = &s->node[s->hash[k]];
        if (nd->pos == pos && nd->parent == parent) return s->hash[k];
    }
    if (store_grow(g)) return -1;
    if (s->n + 1 > s->cap) return -1;
    /* store_grow may have rehashed: find the empty slot again */
    k = pair_hash(pos, parent) & (uint32_t)(s->hash_cap - 1);
    while (s->hash[k] >= 0) k = (k + 1) & (uint32_t)(s->hash_cap - 1);
    int32_t id = s->n++;
    s->hash[k] = id;
    gelem el = g->elem[pos];
    s->node[id] = (gnode){ .pos = pos,
                           .parent = parent,
                           .set = el.type == GE_BYTES ? (int32_t)el.val : -1,
                           .succ_off = -1 };
    return id;
}

/* A new generation stamp; at the wrap every mark is cleared, or an old mark could equal a new
 * stamp (a long-running server makes 2^32 steps). */
static uint32_t next_stamp(uint32_t *stamp, uint32_t *marks, int n) {
    if (++*stamp == 0) {
        if (marks) memset(marks, 0, sizeof *marks * (size_t)n);
        *stamp = 1;
    }
    return *stamp;
}

static int tmp_push(gstore *s, int32_t v) {
    if (s->n_tmp == s->cap_tmp) {
        int cap = s->cap_tmp ? s->cap_tmp * 2 : 256;
        int32_t *t = realloc(s->tmp, sizeof *t * (size_t)cap);
        if (!t) return -1;
        s->tmp = t;
        s->cap_tmp = cap;
    }
    s->tmp[s->n_tmp++] = v;
    return 0;
}

/* The terminal frames reachable from (pos, parent) without a byte, appended to store.tmp
 * (node 0 when the sentence may end). Iterative: reference chains can be as long as a
 * repetition count. The left-recursion check at compile time makes it terminate. */
static int expand(srp_grammar *g, int32_t pos0, int32_t parent0) {
    gstore *s = &g->store;
    if (store_init(g)) return -1;
    uint32_t stamp = next_stamp(&s->stamp_x, s->mark_x, s->cap);
    int32_t *work = NULL;
    int nw = 0, cw = 0, rc = 0;
#define PUSHW(a, b)                                               \
    do {                                                          \
        if (nw + 2 > cw) {                                        \
            cw = cw ? cw * 2 : 64;                                \
            int32_t *w2 = realloc(work, sizeof *w2 * (size_t)cw); \
            if (!w2) {                                            \
                rc = -1;                                          \
                goto out;                                         \
            }                                                     \
            work = w2;                                            \
        }                                                         \
        work[nw++] = (a);                                         \
        work[nw++] = (b);                                         \
    } while (0)
    PUSHW(pos0, parent0);
    while (nw) {
        int32_t parent = work[--nw], pos = work[--nw];
        gelem el = g->elem[pos];
        if (el.type == GE_END || el.type == GE_ALT) { /* return to the parent frame */
            if (parent == 0) {
                if (s->mark_x[0] == stamp) continue;
                s->mark_x[0] = stamp;
                if (tmp_push(s, 0)) rc = -1;
                if (rc) goto out;
                continue;
            }
            PUSHW(s->node[parent].pos, s->node[parent].parent);
            continue;
        }
        int32_t id = intern(g, pos, parent);
        if (id < 0) {
            rc = -1;
            goto out;
        }
        if (s->mark_x[id] == stamp) continue;
        s->mark_x[id] = stamp;
        if (el.type == GE_BYTES) {
            if (tmp_push(s, id)) {
                rc = -1;
                goto out;
            }
            continue;
        }
        gelem nx = g->elem[pos + 1];
        int32_t cont = parent;
        if (nx.type != GE_END && nx.type != GE_ALT) {
            cont = intern(g, pos + 1, parent);
            if (cont < 0) {
                rc = -1;
                goto out;
            }
        }
        int r = (int)el.val;
        for (int a = g->alt_off[r + 1] - 1; a >= g->alt_off[r]; a--) PUSHW(g->alt[a], cont);
    }
#undef PUSHW
out:
    free(work);
    return rc;
}

/* The frames after a byte matched frame id's terminal, computed once. */
static int ensure_succ(srp_grammar *g, int32_t id) {
    gstore *s = &g->store;
    if (s->node[id].succ_off >= 0) return 0;
    s->n_tmp = 0;
    if (expand(g, s->node[id].pos + 1, s->node[id].parent)) return -1;
    if (s->n_succ + s->n_tmp > s->cap_succ) {
        long cap = s->cap_succ ? s->cap_succ : 1024;
        while (cap < s->n_succ + s->n_tmp) cap *= 2;
        int32_t *p = realloc(s->succ, sizeof *p * (size_t)cap);
        if (!p) return -1;
        s->succ = p;
        s->cap_succ = cap;
    }
    memcpy(s->succ + s->n_succ, s->tmp, sizeof *s->tmp * (size_t)s->n_tmp);
    s->node[id].succ_off = (int32_t)s->n_succ;
    s->node[id].succ_n = s->n_tmp;
    s->n_succ += s->n_tmp;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static int out_reserve(int32_t **out, int *cap, int need) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    int32_t *p = realloc(*out, sizeof *p * (size_t)c);
    if (!p) return -1;
    *out = p;
    *cap = c;
    return 0;
}

int g_initial(srp_grammar *g, int32_t **out, int *n, int *cap) {
    gstore *s = &g->store;
    s->n_tmp = 0;
    int r = g->root;
    for (int a = g->alt_off[r]; a < g->alt_off[r + 1]; a++)
        if (expand(g, g->alt[a], 0)) return -1;
    /* alternatives expanded separately may share frames */
    qsort(s->tmp, (size_t)s->n_tmp, sizeof *s->tmp, cmp_i32);
    int m = 0;
    for (int i = 0; i < s->n_tmp; i++)
        if (!m || s->tmp[i] != s->tmp[m - 1]) s->tmp[m++] = s->tmp[i];
    if (m > G_MAX_STACKS || out_reserve(out, cap, m)) return -1;
    memcpy(*out, s->tmp, sizeof **out * (size_t)m);
    *n = m;
    return 0;
}

int g_advance(srp_grammar *g, const int32_t *in, int n, unsigned b, int32_t **out, int *cap) {
    gstore *s = &g->store;
    uint32_t stamp = next_stamp(&s->stamp_s, s->mark_s, s->cap);
    int m = 0;
    for (int i = 0; i < n; i++) {
        int32_t id = in[i];
        const gnode *nd = &s->node[id];
        if (nd->set < 0 || !gbytes_has(&g->sets[nd->set], b)) continue;
        if (nd->succ_off < 0 && ensure_succ(g, id)) return -1;
        nd = &s->node[id]; /* ensure_succ may move the nodes */
        if (out_reserve(out, cap, m + nd->succ_n)) return -1;
        const int32_t *su = s->succ + nd->succ_off;
        for (int k = 0; k < nd->succ_n; k++) {
            int32_t t = su[k];
            if (s->mark_s[t] == stamp) continue;
            s->mark_s[t] = stamp;
            (*out)[m++] = t;
        }
    }
    return m > G_MAX_STACKS ? -1 : m;
}

/* --- the per-request matcher ---------------------------------------------------------------- */

struct srp_matcher {
    srp_grammar *g;
    const srp_vocab *v;
    int32_t *state, *next;
    int n, cap, cap_next;
};

/* Under g->mu, after what may have grown the store or the cache: their bytes, for
 * srp_grammar_memory, which must not wait for the lock while a mask is being computed. */
static void note_growth(srp_grammar *g) {
    const gstore *s = &g->store;
    atomic_store(&g->grown, (size_t)s->cap * (sizeof *s->node + 2 * sizeof *s->mark_x) +
                                (size_t)s->hash_cap * sizeof *s->hash +
                                (size_t)s->cap_succ * sizeof *s->succ +
                                (size_t)s->cap_tmp * sizeof *s->tmp + g_cache_bytes(g->cache));
}

int srp_matcher_new(srp_grammar *g, const srp_vocab *v, srp_matcher **out, srp_err *e) {
    *out = NULL;
    if (!g || !v) return srp_err_set(e, SRP_EINVAL, "matcher: grammar and vocabulary needed");
    srp_matcher *m = calloc(1, sizeof *m);
    if (!m) return srp_err_set(e, SRP_ENOMEM, "matcher: out of memory");
    m->g = srp_grammar_ref(g);
    m->v = v;
    pthread_mutex_lock(&g->mu);
    int rc = g_initial(g, &m->state, &m->n, &m->cap);
    note_growth(g);
    pthread_mutex_unlock(&g->mu);
    if (rc) {
        srp_matcher_free(m);
        return srp_err_set(e, SRP_EUNSUPPORTED,
                           "matcher: the grammar's start needs more than %d stacks", G_MAX_STACKS);
    }
    *out = m;
    return 0;
}

void srp_matcher_free(srp_matcher *m) {
    if (!m) return;
    srp_grammar_unref(m->g);
    free(m->state);
    free(m->next);
    free(m);
}

int srp_matcher_can_end(const srp_matcher *m) {
    return m->n > 0 && m->state[0] == 0;
}

int srp_matcher_must_end(const srp_matcher *m) {
    return m->n == 1 && m->state[0] == 0;
}

/* Hooks for vocab_trie.c, which owns the token bytes. */
int g_vocab_token(const srp_vocab *v, int t, const uint8_t **bytes);

int srp_matcher_accept(srp_matcher *m, int32_t t) {
    const uint8_t *bytes;
    int len = g_vocab_token(m->v, t, &bytes);
    if (len <= 0) return SRP_EINVAL;
    srp_grammar *g = m->g;
    /* advance a copy, so that a refused token leaves the state as it was */
    int32_t *cur = NULL, *nxt = m->next;
    int cap_cur = 0, cap_nxt = m->cap_next, n = m->n, rc = SRP_EINVAL;
    pthread_mutex_lock(&g->mu);
    if (out_reserve(&cur, &cap_cur, n > 0 ? n : 1)) goto out;
    memcpy(cur, m->state, sizeof *cur * (size_t)n);
    for (int i = 0; i < len; i++) {
        n = g_advance(g, cur, n, bytes[i], &nxt, &cap_nxt);
        if (n <= 0) goto out;
        int32_t *p = cur;
        int c = cap_cur;
        cur = nxt;
        cap_cur = cap_nxt;
        nxt = p;
        cap_nxt = c;
    }
    qsort(cur, (size_t)n, sizeof *cur, cmp_i32);
    int32_t *old = m->state;
    int old_cap = m->cap;
    m->state = cur;
    m->cap = cap_cur;
    m->n = n;
    cur = old;
    cap_cur = old_cap;
    rc = 0;
out:
    note_growth(g);
    pthread_mutex_unlock(&g->mu);
    free(cur);
    m->next = nxt;
    m->cap_next = cap_nxt;
    return rc;
}

size_t srp_grammar_memory(srp_grammar *g) {
    return atomic_load(&g->grown) + (size_t)g->n_elem * sizeof *g->elem;
}

void srp_matcher_mask(srp_matcher *m, uint32_t *mask) {
    pthread_mutex_lock(&m->g->mu);
    g_mask_compute(m->g, m->v, m->state, m->n, mask);
    note_growth(m->g);
    pthread_mutex_unlock(&m->g->mu);
}
