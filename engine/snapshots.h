/* The snapshot pool: copies of one sequence's recurrent state taken at a prompt boundary, so a
 * later request with the same prefix starts from there instead of from token 0 (a Mamba layer's
 * state cannot be cut back to an earlier token, so this is the only way to reuse it).
 *
 * A snapshot holds, for every recurrent-state layer of the model (whatever shape its
 * srp_state_desc gives: Mamba-2, Mamba-1, ...), the slot's conv window and SSM state, plus one
 * KV block of every attention layer for a prefix that ends inside a block (the full blocks
 * before it are shared from the KV cache, not copied). The pool is allocated once, beside the
 * slot pool, and entries are taken and given back by id. Private to engine/. */
#ifndef SRP_SNAPSHOTS_H
#define SRP_SNAPSHOTS_H

#include "engine_internal.h"

typedef struct srp_snap_pool {
    int n, n_free;
    int32_t *free;      /* [n]: a stack of free ids */
    void **conv, **ssm; /* [n_mamba]: n conv windows, n SSM states */
    void **k, **v;      /* [n_attn]: n KV blocks each */
    int n_mamba, n_attn;
} srp_snap_pool;

/* Allocates n snapshots on the engine's backend. */
int srp_snap_pool_init(srp_snap_pool *p, srp_engine *eng, int n, srp_err *e);
void srp_snap_pool_free(srp_snap_pool *p, srp_engine *eng);

/* A free id, or -1 when the pool is used up. */
int srp_snap_acquire(srp_snap_pool *p);
void srp_snap_release(srp_snap_pool *p, int id);

/* Copies slot's state into snapshot id, and KV block `block` (-1: none) into its KV block. */
int srp_snap_save(srp_snap_pool *p, srp_engine *eng, int id, int slot, int32_t block, srp_err *e);
/* Copies snapshot id into slot, and its KV block into KV block `block` (-1: none). */
int srp_snap_load(srp_snap_pool *p, srp_engine *eng, int id, int slot, int32_t block, srp_err *e);

#endif
