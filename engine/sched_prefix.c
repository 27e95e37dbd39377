/* The scheduler's prefix-cache policy: where a prefill snapshots, what admission restores, and
 * when a request waits for another to compute the prefix they share.
 *
 * Snapshots are taken at
 *  - the end of every prompt (at least min_tokens long): a chat turn resends the previous
 *    turn's whole prompt, so this is the snapshot the next turn starts from;
 *  - a branch point: where the prompt leaves a chain the index holds further than its
 *    snapshots reach (a shared document or system prompt, seen the second time), or where it
 *    leaves a prompt being prefilled now (seen twice at once, e.g. n > 1 or a burst of users
 *    with one system prompt: the later ones wait until the first has passed that point);
 *  - every `interval` tokens of a long prompt, interval being the tokens whose KV takes as many
 *    bytes as a snapshot (~6K tokens on the 8B hybrid), so these speculative snapshots never
 *    cost more memory than the KV they make reusable; until one serves a request it is the
 *    first to go when the pool is full.
 * A prefill chunk ends exactly at the next of these (the state is only there between steps). */
#include <stdlib.h>

#include "engine_internal.h"
#include "prefix_cache.h"
#include "sched_internal.h"

void srp_sched_prefix_init(srp_sched_prefix *p, srp_engine *eng, const srp_sched_opts *o) {
    memset(p, 0, sizeof *p);
    p->pc = o->prefix_cache ? srp_engine_prefix(eng) : NULL;
    if (!p->pc) return;
    const int bs = srp_engine_block_size(eng);
    p->block_size = bs;
    p->min_tokens = o->min_prefix_tokens > 0 ? o->min_prefix_tokens : 4 * bs;
    const int64_t kv_per_token = srp_engine_kv_block_bytes(eng) / bs;
    int64_t n = 0;
    if (o->snapshot_interval > 0)
        n = o->snapshot_interval;
    else if (o->snapshot_interval == 0 && kv_per_token > 0)
        n = (srp_engine_slot_bytes(eng) + kv_per_token - 1) / kv_per_token;
    n = (n + bs - 1) / bs * bs;
    p->interval = n > srp_engine_max_seq_len(eng) ? 0 : (int)n;
}

static int add_boundary(srp_request *r, int at) {
    int i = 0;
    while (i < r->n_snap_extra && r->snap_extra[i] < at) i++;
    if (i < r->n_snap_extra && r->snap_extra[i] == at) return 1;
    /* drop the positions already passed first */
    int k = 0;
    for (int j = 0; j < r->n_snap_extra; j++)
        if (r->snap_extra[j] > r->n_fed) r->snap_extra[k++] = r->snap_extra[j];
    r->n_snap_extra = k;
    if (k == (int)(sizeof r->snap_extra / sizeof r->snap_extra[0])) return 0;
    i = 0;
    while (i < k && r->snap_extra[i] < at) i++;
    memmove(r->snap_extra + i + 1, r->snap_extra + i, (size_t)(k - i) * sizeof *r->snap_extra);
    r->snap_extra[i] = at;
    r->n_snap_extra++;
    return 1;
}

/* The next prompt position after n_fed to snapshot at; n_prompt + 1 when there is none. */
static int next_boundary(const srp_sched_prefix *p, const srp_request *r) {
    int b = r->n_prompt >= p->min_tokens ? r->n_prompt : r->n_prompt + 1;
    if (p->interval > 0) {
        int nb = (r->n_fed / p->interval + 1) * p->interval;
        if (nb < b) b = nb;
    }
    for (int i = 0; i < r->n_snap_extra; i++)
        if (r->snap_extra[i] > r->n_fed && r->snap_extra[i] < b) b = r->snap_extra[i];
    return b;
}

int srp_sched_prefix_plan(srp_sched_prefix *p, srp_request *r, srp_request *const *running,
                          int n_running, srp_prefix_match *m) {
    *m = (srp_prefix_match){ 0, 0, -1 };
    if (!p->pc) return 0;
    const int bs = p->block_size, n_chain = r->n_prompt / bs;
    if (!r->chain) {
        r->chain = malloc((size_t)(n_chain > 0 ? n_chain : 1) * sizeof *r->chain);
        if (!r->chain) return 0; /* no cache for this one */
        srp_prefix_chain(r->prompt, n_chain, bs, r->chain);
    }
    /* prompt logprobs need the logits of every prompt token: computed, not restored */
    if (r->prompt_logprobs >= 0) return 0;
    srp_prefix_lookup(p->pc, r->prompt, r->n_prompt, r->n_prompt - 1, r->chain, m);
    const int limit = (r->n_prompt - 1) / bs; /* a prefix must leave a token to compute */
    int best_q = 0;
    srp_request *best = NULL;
    for (int i = 0; i < n_running; i++) {
        srp_request *f = running[i];
        if (f->n_fed >= f->n_prompt || !f->chain) continue;
        int lim = f->n_prompt / bs < limit ? f->n_prompt / bs : limit, q = 0;
        while (q < lim && f->chain[q] == r->chain[q]) q++;
        if (q * bs > f->n_fed && q > best_q) {
            best_q = q;
            best = f;
        }
    }
    if (best && best_q * bs >= m->n_tokens + p->min_tokens && add_boundary(best, best_q * bs)) {
        srp_prefix_release(p->pc, m);
        if (!r->deferred) p->deferred++;
        r->deferred = 1;
        return 1;
    }
    const int q = (m->n_blocks < limit ? m->n_blocks : limit) * bs;
    if (q >= m->n_tokens + p->min_tokens) add_boundary(r, q);
    return 0;
}

int srp_sched_prefix_admit(srp_sched_prefix *p, srp_engine *eng, srp_request *r,
                           srp_prefix_match *m, srp_err *e) {
    const int total = r->n_prompt + r->max_tokens;
    int rc = srp_seq_open(eng, &r->seq, e);
    if (!rc && p->pc) rc = srp_prefix_share(p->pc, m, &r->seq, e);
    if (!rc) rc = srp_seq_reserve(eng, &r->seq, total, e);
    if (rc == SRP_EFULL && p->pc) {
        const int bs = srp_engine_block_size(eng);
        const int short_by = (total + bs - 1) / bs - r->seq.n_blocks - srp_engine_free_blocks(eng);
        if (srp_prefix_evict_blocks(p->pc, short_by) >= short_by)
            rc = srp_seq_reserve(eng, &r->seq, total, e);
    }
    if (!rc && m->node >= 0) rc = srp_prefix_restore(p->pc, m, &r->seq, e);
    if (!rc && p->pc) {
        pthread_mutex_lock(&r->mu);
        r->n_cached = m->n_tokens;
        pthread_mutex_unlock(&r->mu);
        r->n_fed = m->n_tokens;
        if (r->prompt_logprobs < 0) p->queried += (uint64_t)r->n_prompt;
        p->hits += (uint64_t)m->n_tokens;
    }
    if (p->pc) srp_prefix_release(p->pc, m);
    if (rc) {
        srp_seq_close(eng, &r->seq);
        r->n_fed = 0;
    }
    return rc;
}

int srp_sched_prefix_chunk(const srp_sched_prefix *p, const srp_request *r, int k) {
    if (!p->pc) return k;
    const int room = next_boundary(p, r) - r->n_fed;
    return room < k ? room : k;
}

void srp_sched_prefix_after_step(srp_sched_prefix *p, srp_request *r) {
    if (!p->pc || !r->chain) return;
    const int at = r->n_fed;
    int due = at == r->n_prompt && at >= p->min_tokens;
    for (int i = 0; i < r->n_snap_extra; i++) due |= r->snap_extra[i] == at;
    const int periodic = p->interval > 0 && at % p->interval == 0;
    if ((!due && !periodic) || r->seq.n_past != at) return;
    srp_err e = { 0 };
    /* a failed copy is the backend's failure, which the next step reports; the cache is only
     * left without this entry */
    srp_prefix_save(p->pc, r->prompt, r->chain, &r->seq, !due, &e);
}

void srp_sched_prefix_reset(srp_sched_prefix *p) {
    if (p->pc) srp_prefix_reset(p->pc);
}

void srp_sched_prefix_stats(const srp_sched_prefix *p, srp_engine *eng, srp_sched_stats *st) {
    st->prefix_queried_tokens = p->queried;
    st->prefix_hit_tokens = p->hits;
    st->prefix_deferred = p->deferred;
    srp_prefix_cache *pc = srp_engine_prefix(eng);
    if (!pc) return;
    srp_prefix_stats ps;
    srp_prefix_get_stats(pc, &ps);
    st->snapshots_taken = ps.snapshots_taken;
    st->snapshot_evictions = ps.snapshot_evictions;
    st->block_evictions = ps.block_evictions;
    st->snapshots_total = ps.snapshots_total;
    st->snapshots_used = ps.snapshots_used;
    st->snapshot_bytes = srp_engine_snapshot_bytes(eng);
    st->blocks_cached = ps.blocks;
    st->blocks_cache_only = srp_engine_blocks_cache_only(eng);
}
