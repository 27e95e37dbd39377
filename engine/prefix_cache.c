/* The prefix index (prefix_cache.h): nodes in one array, found through a hash table of chain
 * hashes, kept in one least-recently-used list in which every node is more recent than all of
 * its descendants (a use touches the node, then each ancestor), so the oldest node is a leaf
 * and eviction from the old end takes leaves first. */
#include <stdlib.h>
#include <string.h>

#include "prefix_cache.h"
#include "snapshots.h"

typedef struct node {
    uint64_t hash; /* chain hash (full nodes) */
    int32_t parent, first_child, next_sib, prev_sib;
    int32_t hnext;        /* next in the hash bucket */
    int32_t older, newer; /* the LRU list */
    int32_t block;        /* KV block of a full node, else -1 */
    int32_t snap;         /* snapshot id, or -1 */
    int32_t end;          /* prompt position the node ends at */
    int32_t depth;        /* full blocks from the root through the node */
    int32_t n_children, pins;
    int16_t n_tokens; /* block size, or fewer for a tail */
    uint8_t alive, tail;
    uint8_t spec; /* its snapshot is speculative: taken at a periodic boundary, never used */
} node;

struct srp_prefix_cache {
    srp_engine *eng;
    srp_snap_pool pool;
    int bs, with_kv;
    node *nodes;
    int32_t *tokens; /* [cap * bs] */
    int cap, n_alive;
    int32_t *free_ids;
    int n_free;
    int32_t *buckets;
    uint64_t mask;
    int32_t oldest, newest;
    int32_t *scratch; /* [max blocks per sequence] */
    int n_blocks_held;
    int n_spec; /* speculative snapshots held */
    srp_prefix_stats st;
};

#define ROOT 0

static uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint64_t block_hash(uint64_t prev, const int32_t *t, int n) {
    uint64_t h = fmix64(prev ^ 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)t[i]) * 0x100000001b3ull ^ (h >> 29);
    return fmix64(h ^ (uint64_t)n);
}

void srp_prefix_chain(const int32_t *tokens, int n_blocks, int block_size, uint64_t *out) {
    uint64_t prev = 0;
    for (int i = 0; i < n_blocks; i++)
        out[i] = prev = block_hash(prev, tokens + (size_t)i * block_size, block_size);
}

static int32_t *toks(srp_prefix_cache *pc, int x) {
    return pc->tokens + (size_t)x * pc->bs;
}

/* --- the LRU list --------------------------------------------------------------------------- */
static void lru_unlink(srp_prefix_cache *pc, int x) {
    node *n = &pc->nodes[x];
    if (n->older >= 0)
        pc->nodes[n->older].newer = n->newer;
    else
        pc->oldest = n->newer;
    if (n->newer >= 0)
        pc->nodes[n->newer].older = n->older;
    else
        pc->newest = n->older;
    n->older = n->newer = -1;
}

static void lru_push_newest(srp_prefix_cache *pc, int x) {
    node *n = &pc->nodes[x];
    n->older = pc->newest;
    n->newer = -1;
    if (pc->newest >= 0)
        pc->nodes[pc->newest].newer = x;
    else
        pc->oldest = x;
    pc->newest = x;
}

/* The node, then each ancestor, becomes the most recent: ancestors stay newer. */
static void touch(srp_prefix_cache *pc, int x) {
    for (; x != ROOT; x = pc->nodes[x].parent) {
        lru_unlink(pc, x);
        lru_push_newest(pc, x);
    }
}

/* --- finding children ----------------------------------------------------------------------- */
static int find_full(srp_prefix_cache *pc, int parent, uint64_t h, const int32_t *t) {
    for (int x = pc->buckets[h & pc->mask]; x >= 0; x = pc->nodes[x].hnext) {
        const node *n = &pc->nodes[x];
        if (n->hash == h && n->parent == parent && !n->tail &&
            !memcmp(toks(pc, x), t, (size_t)pc->bs * sizeof *t))
            return x;
    }
    return -1;
}

static int find_tail(srp_prefix_cache *pc, int parent, const int32_t *t, int k) {
    for (int x = pc->nodes[parent].first_child; x >= 0; x = pc->nodes[x].next_sib) {
        const node *n = &pc->nodes[x];
        if (n->tail && n->n_tokens == k && !memcmp(toks(pc, x), t, (size_t)k * sizeof *t)) return x;
    }
    return -1;
}

/* --- removing ------------------------------------------------------------------------------- */
static int is_leaf(const node *n) {
    return n->n_children == 0;
}

static void hash_unlink(srp_prefix_cache *pc, int x) {
    int32_t *link = &pc->buckets[pc->nodes[x].hash & pc->mask];
    while (*link != x) link = &pc->nodes[*link].hnext;
    *link = pc->nodes[x].hnext;
}

static void set_spec(srp_prefix_cache *pc, node *n, int spec) {
    pc->n_spec += spec - n->spec;
    n->spec = (uint8_t)spec;
}

static void drop_snapshot(srp_prefix_cache *pc, node *n, int evicted) {
    if (n->snap < 0) return;
    srp_snap_release(&pc->pool, n->snap);
    n->snap = -1;
    set_spec(pc, n, 0);
    if (evicted) pc->st.snapshot_evictions++;
}

/* Removes leaf x, then each ancestor left a leaf without a snapshot (it could serve no
 * request). */
static void remove_leaf(srp_prefix_cache *pc, int x, int evicted) {
    while (x != ROOT) {
        node *n = &pc->nodes[x];
        drop_snapshot(pc, n, evicted);
        if (n->block >= 0) {
            if (evicted && pc->eng->block_refs[n->block] == 1) pc->st.block_evictions++;
            srp_engine_block_cache_drop(pc->eng, n->block);
            pc->n_blocks_held--;
        }
        if (!n->tail) hash_unlink(pc, x);
        node *p = &pc->nodes[n->parent];
        if (n->prev_sib >= 0)
            pc->nodes[n->prev_sib].next_sib = n->next_sib;
        else
            p->first_child = n->next_sib;
        if (n->next_sib >= 0) pc->nodes[n->next_sib].prev_sib = n->prev_sib;
        p->n_children--;
        lru_unlink(pc, x);
        n->alive = 0;
        pc->free_ids[pc->n_free++] = x;
        pc->n_alive--;
        x = n->parent;
        if (x == ROOT || !is_leaf(p) || p->snap >= 0 || p->pins > 0) break;
    }
}

/* The least recently used snapshot not pinned, a speculative one first: dropped (with its
 * node when that is a leaf). Two tiers, as in a segmented LRU: snapshots taken only because a
 * prompt was long would otherwise push out the end-of-prompt ones the next chat turns need. */
static int evict_snapshot(srp_prefix_cache *pc) {
    for (int pass = pc->n_spec > 0 ? 0 : 1; pass < 2; pass++)
        for (int x = pc->oldest; x >= 0; x = pc->nodes[x].newer) {
            node *n = &pc->nodes[x];
            if (n->snap < 0 || n->pins > 0 || (pass == 0 && !n->spec)) continue;
            if (is_leaf(n))
                remove_leaf(pc, x, 1);
            else
                drop_snapshot(pc, n, 1);
            return 1;
        }
    return 0;
}

/* Whether removing leaf x would give a KV block back (its own or, up the chain it would take
 * with it, an ancestor's). */
static int frees_block(srp_prefix_cache *pc, int x) {
    const srp_engine *eng = pc->eng;
    for (;;) {
        const node *n = &pc->nodes[x];
        if (n->block >= 0 && eng->block_refs[n->block] == 1) return 1;
        const node *p = &pc->nodes[n->parent];
        if (n->parent == ROOT || p->n_children > 1 || p->snap >= 0 || p->pins > 0) return 0;
        x = n->parent;
    }
}

int srp_prefix_evict_blocks(srp_prefix_cache *pc, int want) {
    int freed = 0;
    srp_engine *eng = pc->eng;
    for (int x = pc->oldest; x >= 0 && freed < want;) {
        int next = pc->nodes[x].newer;
        const node *n = &pc->nodes[x];
        if (is_leaf(n) && n->pins == 0 && frees_block(pc, x)) {
            const int before = eng->n_free_blocks;
            remove_leaf(pc, x, 1);
            freed += eng->n_free_blocks - before;
            if (next >= 0 && !pc->nodes[next].alive) next = pc->oldest;
        }
        x = next;
    }
    return freed;
}

/* --- adding --------------------------------------------------------------------------------- */
static int new_node(srp_prefix_cache *pc, int parent, const int32_t *t, int k, int tail,
                    uint64_t h) {
    if (pc->n_free == 0) { /* every node in use: the oldest leaf goes */
        for (int x = pc->oldest; x >= 0; x = pc->nodes[x].newer)
            if (is_leaf(&pc->nodes[x]) && pc->nodes[x].pins == 0) {
                remove_leaf(pc, x, 1);
                break;
            }
        if (pc->n_free == 0) return -1;
    }
    const int x = pc->free_ids[--pc->n_free];
    node *p = &pc->nodes[parent], *n = &pc->nodes[x];
    memset(n, 0, sizeof *n);
    n->hash = h;
    n->parent = parent;
    n->first_child = n->prev_sib = -1;
    n->next_sib = p->first_child;
    if (p->first_child >= 0) pc->nodes[p->first_child].prev_sib = x;
    p->first_child = x;
    p->n_children++;
    n->block = n->snap = -1;
    n->n_tokens = (int16_t)k;
    n->tail = (uint8_t)tail;
    n->end = p->end + k;
    n->depth = p->depth + !tail;
    n->alive = 1;
    memcpy(toks(pc, x), t, (size_t)k * sizeof *t);
    if (!tail) {
        n->hnext = pc->buckets[h & pc->mask];
        pc->buckets[h & pc->mask] = x;
    }
    n->older = n->newer = -1;
    lru_push_newest(pc, x);
    pc->n_alive++;
    return x;
}

int srp_prefix_save(srp_prefix_cache *pc, const int32_t *tokens, const uint64_t *chain,
                    const srp_seq *s, int speculative, srp_err *e) {
    const int b = s->n_past, depth = b / pc->bs, rest = b % pc->bs;
    if (b <= 0) return 0;
    int x = ROOT;
    for (int d = 0; d < depth; d++) {
        int c = find_full(pc, x, chain[d], tokens + (size_t)d * pc->bs);
        if (c < 0) {
            pc->nodes[x].pins++; /* x is a leaf without a snapshot while it has no child */
            c = new_node(pc, x, tokens + (size_t)d * pc->bs, pc->bs, 0, chain[d]);
            pc->nodes[x].pins--;
            if (c < 0) break;
            if (pc->with_kv) {
                pc->nodes[c].block = s->blocks[d];
                srp_engine_block_cache_hold(pc->eng, s->blocks[d]);
                pc->n_blocks_held++;
            }
        }
        x = c;
    }
    int rc = 0;
    if (pc->nodes[x].depth == depth && rest) {
        int t = find_tail(pc, x, tokens + (size_t)depth * pc->bs, rest);
        if (t < 0) {
            pc->nodes[x].pins++;
            t = new_node(pc, x, tokens + (size_t)depth * pc->bs, rest, 1, 0);
            pc->nodes[x].pins--;
        }
        if (t >= 0) x = t;
    }
    if (x > ROOT && pc->nodes[x].end == b && pc->nodes[x].snap < 0) {
        node *n = &pc->nodes[x];
        n->pins++;
        int id = srp_snap_acquire(&pc->pool);
        while (id < 0 && evict_snapshot(pc)) id = srp_snap_acquire(&pc->pool);
        n->pins--;
        if (id >= 0) {
            rc = srp_snap_save(&pc->pool, pc->eng, id, s->slot,
                               n->tail && pc->with_kv ? s->blocks[depth] : -1, e);
            if (rc)
                srp_snap_release(&pc->pool, id);
            else {
                n->snap = id;
                set_spec(pc, n, speculative != 0);
                pc->st.snapshots_taken++;
            }
        }
    } else if (x > ROOT && pc->nodes[x].end == b && !speculative) {
        set_spec(pc, &pc->nodes[x], 0);
    }
    if (x > ROOT) {
        touch(pc, x);
        if (is_leaf(&pc->nodes[x]) && pc->nodes[x].snap < 0 && pc->nodes[x].pins == 0)
            remove_leaf(pc, x, 0);
    }
    return rc;
}

/* --- lookup and reuse ----------------------------------------------------------------------- */
void srp_prefix_lookup(srp_prefix_cache *pc, const int32_t *tokens, int n, int limit,
                       const uint64_t *chain, srp_prefix_match *m) {
    *m = (srp_prefix_match){ 0, 0, -1 };
    int best = -1, x = ROOT;
    for (int d = 0;; d++) {
        const node *xn = &pc->nodes[x];
        if (x != ROOT && xn->snap >= 0 && xn->end <= limit) best = x;
        for (int c = xn->first_child; c >= 0; c = pc->nodes[c].next_sib) {
            const node *cn = &pc->nodes[c];
            if (cn->tail && cn->snap >= 0 && cn->end <= limit && cn->end <= n &&
                (best < 0 || cn->end > pc->nodes[best].end) &&
                !memcmp(toks(pc, c), tokens + xn->end, (size_t)cn->n_tokens * sizeof *tokens))
                best = c;
        }
        if (xn->end + pc->bs > n) break;
        const int c = find_full(pc, x, chain[d], tokens + (size_t)d * pc->bs);
        if (c < 0) break;
        x = c;
        m->n_blocks = d + 1;
    }
    if (best >= 0) {
        pc->nodes[best].pins++;
        m->node = best;
        m->n_tokens = pc->nodes[best].end;
    }
}

void srp_prefix_release(srp_prefix_cache *pc, srp_prefix_match *m) {
    if (m->node >= 0) pc->nodes[m->node].pins--;
    *m = (srp_prefix_match){ 0, 0, -1 };
}

int srp_prefix_share(srp_prefix_cache *pc, const srp_prefix_match *m, srp_seq *s, srp_err *e) {
    if (m->node < 0 || !pc->with_kv) return 0;
    const node *n = &pc->nodes[m->node];
    int y = n->tail ? n->parent : m->node;
    for (int i = n->depth - 1; i >= 0; i--, y = pc->nodes[y].parent)
        pc->scratch[i] = pc->nodes[y].block;
    return srp_seq_share_blocks(pc->eng, s, pc->scratch, n->depth, e);
}

int srp_prefix_restore(srp_prefix_cache *pc, const srp_prefix_match *m, srp_seq *s, srp_err *e) {
    if (m->node < 0) return 0;
    const node *n = &pc->nodes[m->node];
    int32_t block = -1;
    if (n->tail && pc->with_kv) {
        if (s->n_blocks <= n->depth)
            return srp_err_set(e, SRP_EINVAL,
                               "prefix cache: the block after the prefix is not "
                               "reserved");
        block = s->blocks[n->depth];
    }
    int rc = srp_snap_load(&pc->pool, pc->eng, n->snap, s->slot, block, e);
    if (rc) return rc;
    set_spec(pc, &pc->nodes[m->node], 0); /* it served a request */
    s->n_past = n->end;
    touch(pc, m->node);
    return 0;
}

/* --- life ----------------------------------------------------------------------------------- */
static void clear(srp_prefix_cache *pc) {
    memset(&pc->nodes[ROOT], 0, sizeof pc->nodes[ROOT]);
    node *r = &pc->nodes[ROOT];
    r->parent = r->first_child = r->next_sib = r->prev_sib = r->hnext = -1;
    r->older = r->newer = r->block = r->snap = -1;
    r->alive = 1;
    pc->n_alive = 0;
    pc->n_free = 0;
    for (int i = pc->cap - 1; i >= 1; i--) {
        pc->nodes[i].alive = 0;
        pc->free_ids[pc->n_free++] = i;
    }
    for (uint64_t i = 0; i <= pc->mask; i++) pc->buckets[i] = -1;
    pc->oldest = pc->newest = -1;
    pc->n_blocks_held = 0;
    pc->n_spec = 0;
}

void srp_prefix_reset(srp_prefix_cache *pc) {
    for (int x = 1; x < pc->cap; x++) {
        node *n = &pc->nodes[x];
        if (!n->alive) continue;
        drop_snapshot(pc, n, 0);
        if (n->block >= 0) srp_engine_block_cache_drop(pc->eng, n->block);
    }
    clear(pc);
}

int srp_prefix_create(srp_engine *eng, int n_snapshots, srp_prefix_cache **out, srp_err *e) {
    srp_prefix_cache *pc = calloc(1, sizeof *pc);
    if (!pc) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    pc->eng = eng;
    pc->bs = eng->opts.kv_block_size;
    pc->with_kv = eng->model.n_attn > 0;
    /* a full node per KV block, a tail per snapshot; without attention, chains as long as a
     * sequence for every snapshot */
    int64_t cap = (pc->with_kv ? (int64_t)eng->opts.kv_blocks
                               : (int64_t)n_snapshots * eng->max_blocks_per_seq) +
                  n_snapshots + 1;
    if (cap > (1 << 24)) cap = 1 << 24;
    pc->cap = (int)cap;
    uint64_t nb = 1;
    while (nb < 2 * (uint64_t)cap) nb <<= 1;
    pc->mask = nb - 1;
    pc->nodes = calloc((size_t)cap, sizeof *pc->nodes);
    pc->tokens = malloc((size_t)cap * pc->bs * sizeof *pc->tokens);
    pc->free_ids = malloc((size_t)cap * sizeof *pc->free_ids);
    pc->buckets = malloc(nb * sizeof *pc->buckets);
    pc->scratch = malloc((size_t)eng->max_blocks_per_seq * sizeof *pc->scratch);
    int rc = 0;
    if (!pc->nodes || !pc->tokens || !pc->free_ids || !pc->buckets || !pc->scratch)
        rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (!rc) rc = srp_snap_pool_init(&pc->pool, eng, n_snapshots, e);
    if (rc) {
        srp_prefix_destroy(pc);
        return rc;
    }
    clear(pc);
    *out = pc;
    return 0;
}

void srp_prefix_destroy(srp_prefix_cache *pc) {
    if (!pc) return;
    if (pc->nodes && pc->buckets) srp_prefix_reset(pc);
    srp_snap_pool_free(&pc->pool, pc->eng);
    free(pc->nodes);
    free(pc->tokens);
    free(pc->free_ids);
    free(pc->buckets);
    free(pc->scratch);
    free(pc);
}

void srp_prefix_get_stats(const srp_prefix_cache *pc, srp_prefix_stats *st) {
    *st = pc->st;
    st->snapshots_total = pc->pool.n;
    st->snapshots_used = pc->pool.n - pc->pool.n_free;
    st->nodes = pc->n_alive;
    st->blocks = pc->n_blocks_held;
}

/* --- invariants (tests) --------------------------------------------------------------------- */
int srp_prefix_check(const srp_prefix_cache *pc, srp_err *e) {
    srp_prefix_cache *p = (srp_prefix_cache *)pc;
    const srp_engine *eng = pc->eng;
    int alive = 0, snaps = 0, blocks = 0, spec = 0, rc = 0;
    int *order = calloc((size_t)pc->cap, sizeof *order);
    uint8_t *snap_seen = calloc((size_t)(pc->pool.n > 0 ? pc->pool.n : 1), 1);
    if (!order || !snap_seen) {
        free(order);
        free(snap_seen);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    int rank = 1, prev = -1;
    for (int x = pc->oldest; x >= 0 && !rc; prev = x, x = pc->nodes[x].newer) {
        if (!pc->nodes[x].alive || pc->nodes[x].older != prev || order[x])
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: LRU list broken at node %d", x);
        order[x] = rank++;
    }
    if (!rc && prev != pc->newest)
        rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: LRU list does not end at its newest");
    for (int x = 1; x < pc->cap && !rc; x++) {
        const node *n = &pc->nodes[x];
        if (!n->alive) continue;
        alive++;
        const node *par = &pc->nodes[n->parent];
        int kids = 0, found = 0;
        for (int c = n->first_child; c >= 0; c = pc->nodes[c].next_sib) kids++;
        for (int c = par->first_child; c >= 0; c = pc->nodes[c].next_sib) found |= c == x;
        if (!order[x])
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d is not in the LRU list", x);
        else if (!par->alive || !found)
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d is not its parent's child", x);
        else if (kids != n->n_children)
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d counts %d children, has %d", x,
                             n->n_children, kids);
        else if (n->parent != ROOT && order[n->parent] < order[x])
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d is newer than its parent", x);
        else if (kids == 0 && n->snap < 0 && n->pins == 0)
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: leaf %d has no snapshot", x);
        else if (n->pins != 0)
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d is still pinned", x);
        else if (n->end != par->end + n->n_tokens || (n->tail && kids))
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d has a wrong extent", x);
        else if (!n->tail && find_full(p, n->parent, n->hash, toks(p, x)) != x)
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d is not found by its hash", x);
        else if (!n->tail && pc->with_kv &&
                 (n->block < 0 || !eng->block_cached[n->block] || eng->block_refs[n->block] < 1))
            rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: node %d does not hold its block", x);
        if (n->snap >= 0) {
            if (n->snap >= pc->pool.n || snap_seen[n->snap])
                rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: snapshot %d held twice", n->snap);
            else
                snap_seen[n->snap] = 1;
            snaps++;
        }
        blocks += n->block >= 0;
        spec += n->spec;
        if (!rc && n->spec && n->snap < 0)
            rc = srp_err_set(e, SRP_EFORMAT,
                             "prefix cache: node %d is speculative without a snapshot", x);
    }
    if (!rc && spec != pc->n_spec)
        rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: %d speculative snapshots, %d counted", spec,
                         pc->n_spec);
    if (!rc && alive != pc->n_alive)
        rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: %d nodes alive, %d counted", alive,
                         pc->n_alive);
    if (!rc && snaps != pc->pool.n - pc->pool.n_free)
        rc = srp_err_set(e, SRP_EFORMAT, "prefix cache: %d snapshots held, %d taken from the pool",
                         snaps, pc->pool.n - pc->pool.n_free);
    int cached = 0;
    for (int b = 0; b < eng->opts.kv_blocks; b++) cached += eng->block_cached[b];
    if (!rc && (blocks != pc->n_blocks_held || cached != blocks))
        rc = srp_err_set(e, SRP_EFORMAT,
                         "prefix cache: %d blocks on nodes, %d counted, %d marked cached", blocks,
                         pc->n_blocks_held, cached);
    free(order);
    free(snap_seen);
    return rc;
}
