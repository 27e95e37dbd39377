/* The prefix cache: prompt prefixes computed once and reused by later requests.
 *
 * A prompt is cut into blocks of the KV block size. The index is a tree of those blocks, each
 * node found by a hash of its tokens chained with its parent's (so equal hashes mean equal
 * prefixes; the tokens are compared too). A node of a full block holds that block's KV block
 * (full, hence never written again, and shared by reference count with every request that
 * reuses it); a node may also hold a snapshot of the recurrent state at its end (snapshots.h).
 * A prefix that ends inside a block (the end of a prompt) is a "tail" node: its tokens, a
 * snapshot, and in the snapshot a copy of the partial KV block.
 *
 * A request whose prompt starts with a cached prefix gets its slot filled from the longest
 * snapshot at most `limit` tokens long, shares the KV blocks before it, and prefills the rest.
 * Every leaf of the tree holds a snapshot (a chain of blocks that leads to none could serve no
 * request), and nodes are evicted least recently used first, leaves before the nodes above
 * them, under two budgets: the snapshot pool and the KV blocks admission needs. A node pinned
 * by a lookup is not evicted until released. Private to engine/; the engine thread only. */
#ifndef SRP_PREFIX_CACHE_H
#define SRP_PREFIX_CACHE_H

#include <stdint.h>

#include "engine.h"

typedef struct srp_prefix_cache srp_prefix_cache;

/* The engine's prefix cache (opened with opts.prefix_cache), NULL when it has none. */
srp_prefix_cache *srp_engine_prefix(srp_engine *eng);

/* A cache over the engine's KV blocks with a pool of n_snapshots snapshots. */
int srp_prefix_create(srp_engine *eng, int n_snapshots, srp_prefix_cache **out, srp_err *e);
void srp_prefix_destroy(srp_prefix_cache *pc);

/* The hash chain of the first n_blocks full blocks of tokens: out[i] covers blocks 0..i. */
void srp_prefix_chain(const int32_t *tokens, int n_blocks, int block_size, uint64_t *out);

typedef struct srp_prefix_match {
    int n_tokens; /* prompt tokens a snapshot covers (0: no hit) */
    int n_blocks; /* leading full blocks of the prompt found in the index, snapshot or not */
    int node;     /* the snapshot's node, pinned until srp_prefix_release; -1 when no hit */
} srp_prefix_match;

/* The longest cached prefix of tokens[0, n) that is at most limit tokens long; chain is
 * srp_prefix_chain of the prompt's n / block_size full blocks. */
void srp_prefix_lookup(srp_prefix_cache *pc, const int32_t *tokens, int n, int limit,
                       const uint64_t *chain, srp_prefix_match *m);
/* Unpins a match (a no-op without a hit) and clears it. */
void srp_prefix_release(srp_prefix_cache *pc, srp_prefix_match *m);

/* Gives a freshly opened s the match's full KV blocks (shared); call before reserving the rest
 * of its blocks. */
int srp_prefix_share(srp_prefix_cache *pc, const srp_prefix_match *m, srp_seq *s, srp_err *e);
/* Copies the match's snapshot into s's slot (and its partial KV block into s's block there,
 * which must be reserved) and sets s->n_past to the match's length. */
int srp_prefix_restore(srp_prefix_cache *pc, const srp_prefix_match *m, srp_seq *s, srp_err *e);

/* Records s, whose first s->n_past tokens are tokens[0, n_past), as a cached prefix: its full
 * KV blocks join the index (where their prefix is not there yet) and its state is snapshotted
 * at n_past, evicting a snapshot when the pool is full: the least recently used speculative
 * one (taken only because a prompt was long, and never used since), else the least recently
 * used. chain covers at least n_past / block_size blocks. A prefix that is cached already is
 * only marked used (and no longer speculative unless this save is). */
int srp_prefix_save(srp_prefix_cache *pc, const int32_t *tokens, const uint64_t *chain,
                    const srp_seq *s, int speculative, srp_err *e);

/* Evicts least recently used entries until n KV blocks more are free (or nothing held by the
 * cache alone is left); returns the blocks freed. */
int srp_prefix_evict_blocks(srp_prefix_cache *pc, int n);

/* Drops every entry (not while a lookup is pinned). */
void srp_prefix_reset(srp_prefix_cache *pc);

typedef struct srp_prefix_stats {
    int snapshots_total, snapshots_used;
    int nodes, blocks; /* index entries; KV blocks it holds */
    uint64_t snapshots_taken, snapshot_evictions, block_evictions;
} srp_prefix_stats;

void srp_prefix_get_stats(const srp_prefix_cache *pc, srp_prefix_stats *st);

/* Checks the index's invariants (tree links, hash table, LRU order, leaves with snapshots,
 * block and snapshot ownership); 0 or SRP_EFORMAT naming the first one broken. For tests. */
int srp_prefix_check(const srp_prefix_cache *pc, srp_err *e);

#endif
