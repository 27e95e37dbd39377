/* The engine's private parts, shared by engine.c and forward.c. */
#ifndef SRP_ENGINE_INTERNAL_H
#define SRP_ENGINE_INTERNAL_H

#include "engine.h"

/* Activation buffers of one step, sized for max_batch_tokens tokens and max_logits rows. */
typedef struct srp_workspace {
    srp_mat resid;     /* fp32 [T, d]: the residual stream */
    srp_mat normed;    /* act [T, widest norm input: d, or 2d for a concatenation] */
    srp_mat proj;      /* act [T, widest input projection] */
    srp_mat conv_out;  /* act [T, conv_dim] */
    srp_mat mix;       /* act [T, max(d_inner, heads * head_dim)]: scan or attention output */
    srp_mat head_in;   /* fp32 [L, d] */
    srp_mat head_norm; /* act [L, d] */
    srp_mat logits;    /* fp32 [L, vocab] */
    /* Only for models whose blocks use them (Zamba2), else one row: */
    srp_mat aux;      /* fp32 [T, d]: the auxiliary stream (engine/config.h srp_block_out) */
    srp_mat wide;     /* fp32 [T, 2d]: [x | e], e the step's token embeddings */
    srp_mat moe_f32;  /* fp32 [T, experts + top_k]: router logits, routing weights */
    srp_mat moe_i32;  /* int32 [1, T * top_k + SRP_MOE_INDEX_INTS]: chosen experts, index */
    srp_mat moe_rows; /* act [T * top_k, in + hidden + out]: the experts' rows */
} srp_workspace;

/* The block being run (set by forward.c for each of its mixers): the normalised input the
 * mixers read, and where each puts its output — added to what is there when acc, else written
 * (the first mixer of a block that writes the auxiliary stream). */
typedef struct srp_block_io {
    srp_mat in, out;
    int acc;
} srp_block_io;

struct srp_engine {
    srp_model model;
    srp_backend *be;
    srp_engine_opts opts;
    int max_logits;
    int64_t pool_budget; /* bytes the slot pool and KV cache were sized from; -1 on the CPU */
    int max_blocks_per_seq;
    int use_graphs;
    unsigned char *graph_seen; /* [max_seqs + 1]: decode batch sizes run once eagerly */

    srp_mamba_state *mamba; /* [n_mamba] */
    srp_kv_layer *kv;       /* [n_attn] */
    int *free_slots, n_free_slots;
    int32_t *free_blocks;
    int n_free_blocks;
    int32_t *block_refs;   /* [kv_blocks]: holders of each block (sequences, the prefix cache) */
    uint8_t *block_cached; /* [kv_blocks]: 1 while the prefix cache holds the block */
    int n_cache_only;      /* blocks held by the prefix cache alone */
    int n_snapshots;       /* the snapshot pool's size, from size_pools */
    struct srp_prefix_cache *prefix; /* NULL without the prefix cache */
    srp_workspace ws;
    srp_block_io io;
    /* benchmarks: while count_experts is set, steps run without graphs and experts_used sums
     * the distinct experts each mixture-of-experts layer routed the step's tokens to */
    int count_experts;
    int64_t experts_used;

    /* host arrays of the batch being built */
    int32_t *tokens, *seq_start, *n_past, *slot, *block_table, *logit_rows, *rope_len;
};

int srp_forward(srp_engine *eng, const srp_batch *b, srp_mat *logits, srp_err *e);

/* Bytes of recurrent-state layer l's conv window and SSM state for one slot, and of one
 * attention layer's K (or V) for one block: the units the snapshot pool copies. */
int64_t srp_engine_conv_bytes(const srp_engine *eng, int l);
int64_t srp_engine_ssm_bytes(const srp_engine *eng, int l);
int64_t srp_engine_kv_layer_bytes(const srp_engine *eng);

/* The prefix cache's hold on KV block b: taking it adds a holder, dropping it removes one (the
 * block is free once nobody holds it). */
void srp_engine_block_cache_hold(srp_engine *eng, int32_t b);
void srp_engine_block_cache_drop(srp_engine *eng, int32_t b);
/* KV blocks the prefix cache alone holds. */
int srp_engine_blocks_cache_only(const srp_engine *eng);

#endif
