/* The snapshot pool (snapshots.h): per-layer arrays of n entries laid out as the slot pool's,
 * so a snapshot is one device-to-device copy per layer. */
#include <stdlib.h>
#include <string.h>

#include "snapshots.h"

#define TRY(call)            \
    do {                     \
        int rc_ = (call);    \
        if (rc_) return rc_; \
    } while (0)

int srp_snap_pool_init(srp_snap_pool *p, srp_engine *eng, int n, srp_err *e) {
    srp_backend *be = eng->be;
    memset(p, 0, sizeof *p);
    p->n_mamba = eng->model.n_mamba;
    p->n_attn = eng->model.n_attn;
    p->free = malloc((size_t)(n > 0 ? n : 1) * sizeof *p->free);
    p->conv = calloc((size_t)(p->n_mamba ? p->n_mamba : 1), sizeof *p->conv);
    p->ssm = calloc((size_t)(p->n_mamba ? p->n_mamba : 1), sizeof *p->ssm);
    p->k = calloc((size_t)(p->n_attn ? p->n_attn : 1), sizeof *p->k);
    p->v = calloc((size_t)(p->n_attn ? p->n_attn : 1), sizeof *p->v);
    if (!p->free || !p->conv || !p->ssm || !p->k || !p->v)
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    for (int l = 0; l < p->n_mamba; l++) {
        int rc = be->alloc(be, (size_t)n * srp_engine_conv_bytes(eng, l), &p->conv[l], e);
        if (!rc) rc = be->alloc(be, (size_t)n * srp_engine_ssm_bytes(eng, l), &p->ssm[l], e);
        if (rc) return srp_err_prefix(e, "allocating %d prefix-cache snapshots", n);
    }
    for (int l = 0; l < p->n_attn; l++) {
        const size_t bytes = (size_t)n * srp_engine_kv_layer_bytes(eng);
        int rc = be->alloc(be, bytes, &p->k[l], e);
        if (!rc) rc = be->alloc(be, bytes, &p->v[l], e);
        if (rc) return srp_err_prefix(e, "allocating %d prefix-cache snapshots", n);
    }
    p->n = p->n_free = n;
    for (int i = 0; i < n; i++) p->free[i] = n - 1 - i;
    return 0;
}

void srp_snap_pool_free(srp_snap_pool *p, srp_engine *eng) {
    srp_backend *be = eng->be;
    for (int l = 0; p->conv && l < p->n_mamba; l++) {
        if (p->conv[l]) be->free(be, p->conv[l]);
        if (p->ssm[l]) be->free(be, p->ssm[l]);
    }
    for (int l = 0; p->k && l < p->n_attn; l++) {
        if (p->k[l]) be->free(be, p->k[l]);
        if (p->v[l]) be->free(be, p->v[l]);
    }
    free(p->free);
    free(p->conv);
    free(p->ssm);
    free(p->k);
    free(p->v);
    memset(p, 0, sizeof *p);
}

int srp_snap_acquire(srp_snap_pool *p) {
    return p->n_free ? p->free[--p->n_free] : -1;
}

void srp_snap_release(srp_snap_pool *p, int id) {
    p->free[p->n_free++] = id;
}

/* save: slot -> snapshot (to_slot = 0); load: snapshot -> slot (to_slot = 1). */
static int copy_state(srp_snap_pool *p, srp_engine *eng, int id, int slot, int32_t block,
                      int to_slot, srp_err *e) {
    srp_backend *be = eng->be;
    for (int l = 0; l < p->n_mamba; l++) {
        const srp_mamba_state *st = &eng->mamba[l];
        const int64_t cb = srp_engine_conv_bytes(eng, l), sb = srp_engine_ssm_bytes(eng, l);
        char *snap_conv = (char *)p->conv[l] + id * cb, *slot_conv = (char *)st->conv + slot * cb;
        char *snap_ssm = (char *)p->ssm[l] + id * sb, *slot_ssm = (char *)st->ssm + slot * sb;
        TRY(be->copy(be, to_slot ? slot_conv : snap_conv, to_slot ? snap_conv : slot_conv,
                     (size_t)cb, e));
        TRY(be->copy(be, to_slot ? slot_ssm : snap_ssm, to_slot ? snap_ssm : slot_ssm, (size_t)sb,
                     e));
    }
    if (block < 0) return 0;
    const int64_t kb = srp_engine_kv_layer_bytes(eng);
    for (int l = 0; l < p->n_attn; l++) {
        const srp_kv_layer *kv = &eng->kv[l];
        char *sk = (char *)p->k[l] + id * kb, *ck = (char *)kv->k + block * kb;
        char *sv = (char *)p->v[l] + id * kb, *cv = (char *)kv->v + block * kb;
        TRY(be->copy(be, to_slot ? ck : sk, to_slot ? sk : ck, (size_t)kb, e));
        TRY(be->copy(be, to_slot ? cv : sv, to_slot ? sv : cv, (size_t)kb, e));
    }
    return 0;
}

int srp_snap_save(srp_snap_pool *p, srp_engine *eng, int id, int slot, int32_t block, srp_err *e) {
    return copy_state(p, eng, id, slot, block, 0, e);
}

int srp_snap_load(srp_snap_pool *p, srp_engine *eng, int id, int slot, int32_t block, srp_err *e) {
    return copy_state(p, eng, id, slot, block, 1, e);
}
