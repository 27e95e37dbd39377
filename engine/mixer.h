/* The mixers the layer stack runs (private to engine/): one file each (engine/mixer_*.c), each
 * a short sequence of backend operations. A mixer reads the block's normalised input
 * (srp_mixer_in: ws.normed) and adds its output, times the block's multipliers, into the
 * block's output (srp_mixer_out: the residual stream ws.resid unless the block says otherwise;
 * eng->io.acc says whether to add to it or write it). */
#ifndef SRP_MIXER_H
#define SRP_MIXER_H

#include "engine_internal.h"

/* Widths (columns) a mixer needs in the step's activation buffers. */
typedef struct srp_ws_need {
    int64_t proj, conv, mix;
    /* mixture-of-experts scratch: fp32 columns per token (router logits and weights), and
     * top_k rows per token of moe_cols activation columns for the experts; moe_experts sizes
     * the backend's routing index (SRP_MOE_INDEX_INTS) */
    int64_t moe_f32, moe_k, moe_cols, moe_experts;
} srp_ws_need;

typedef struct srp_mixer_ops {
    /* Runs the mixer over the step's first T tokens. */
    int (*run)(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e);
    /* Raises need to what this mixer of config c uses. */
    void (*ws_need)(const srp_config *c, srp_ws_need *need);
} srp_mixer_ops;

const srp_mixer_ops *srp_mixer_ops_of(srp_mixer_kind kind);

extern const srp_mixer_ops srp_mixer_mamba2_ops, srp_mixer_attention_ops, srp_mixer_mlp_ops;
extern const srp_mixer_ops srp_mixer_mamba1_ops;
extern const srp_mixer_ops srp_mixer_moe_ops;

static inline srp_mat srp_ws_rows(srp_mat m, int n) {
    return srp_mat_rows(m, 0, n);
}

/* The block's normalised input and its output, first T rows (engine_internal.h srp_block_io). */
static inline srp_mat srp_mixer_in(const srp_engine *eng, int T) {
    return srp_ws_rows(eng->io.in, T);
}
static inline srp_mat srp_mixer_out(const srp_engine *eng, int T) {
    return srp_ws_rows(eng->io.out, T);
}

static inline const srp_weight *srp_opt(const srp_weight *w) {
    return w->m.data ? w : NULL;
}

static inline void srp_ws_raise(int64_t *have, int64_t want) {
    if (want > *have) *have = want;
}

#define SRP_TRY(call)        \
    do {                     \
        int rc_ = (call);    \
        if (rc_) return rc_; \
    } while (0)

#endif
