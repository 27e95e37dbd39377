/* A loaded model: its config, and its weights in backend memory arranged as the blocks the layer
 * stack runs (llama2.c's Config + TransformerWeights). The checkpoint stays mapped while weights
 * may point into it. */
#ifndef SRP_MODEL_H
#define SRP_MODEL_H

#include "backend.h"
#include "config.h"
#include "safetensors.h"

typedef struct srp_mamba2_weights {
    srp_weight in_proj, in_proj_bias, conv, conv_bias, dt_bias, A_log, D, norm, out_proj,
        out_proj_bias;
} srp_mamba2_weights;

/* Mamba-1: in_proj is [x | z] (2 * d_inner rows), x_proj [dt | B | C], dt_bias is dt_proj's bias,
 * A_log [d_inner, state]; dt_norm, b_norm and c_norm are the learned weights of the dt, B and C
 * norms (empty when the norms have none). */
typedef struct srp_mamba1_weights {
    srp_weight in_proj, in_proj_bias, conv, conv_bias, x_proj, dt_proj, dt_bias, A_log, D, out_proj,
        out_proj_bias, dt_norm, b_norm, c_norm;
} srp_mamba1_weights;

/* q, k and v are one matrix [q | k | v] (one GEMM); inv_freq holds RoPE's frequencies.
 * Optional low-rank adapters (Zamba2: one per use of a shared block, the rest of the struct a
 * copy of the shared weights): adapter_a is [A_q; A_k; A_v] (3 * rank rows), the B's map rank
 * back to q, k and v. */
typedef struct srp_attn_weights {
    srp_weight qkv, qkv_bias, o, o_bias, inv_freq;
    srp_weight adapter_a, adapter_bq, adapter_bk, adapter_bv;
} srp_attn_weights;

/* Gated: up is [gate | up] (2 * hidden rows), else [hidden] rows. Optional: a low-rank adapter
 * added to up's output (adapter_b * adapter_a), and post, a projection of down's output
 * (Zamba2). */
typedef struct srp_mlp_weights {
    srp_weight up, up_bias, down, down_bias;
    srp_weight adapter_a, adapter_b, post;
} srp_mlp_weights;

/* A mixture-of-experts layer: the router [E, d] and its correction bias [E] (empty when none),
 * the routed experts stacked (srp_moe_experts_params), the latent projections (empty when none)
 * and the shared expert (empty when none). */
typedef struct srp_moe_weights {
    srp_weight router, bias, up, down, fc1, fc1_bias, fc2, fc2_bias;
    srp_mlp_weights shared;
} srp_moe_weights;

/* One mixer of a block: its kind, its weights (of the kind's type; several blocks may share
 * them), and the slot-pool state or KV-cache layer it owns. */
typedef struct srp_mixer {
    srp_mixer_kind kind;
    const void *w;
    int state_index; /* recurrent-state layer of a Mamba mixer, else -1 */
    int kv_index;    /* KV-cache layer of an attention mixer, else -1 */
} srp_mixer;

typedef struct srp_block {
    srp_weight norm;
    int n_mixers;
    srp_mixer mixer[SRP_MAX_MIXERS];
} srp_block;

/* The recurrent state one Mamba mixer keeps per slot: the conv window (conv_dim channels x
 * conv_width columns) and ssm_elems fp32 values of SSM state. */
typedef struct srp_state_desc {
    int conv_dim, conv_width;
    int64_t ssm_elems;
} srp_state_desc;

typedef struct srp_model {
    srp_config cfg;
    srp_backend *be; /* not owned */
    srp_ckpt *ckpt;  /* NULL for random weights */
    srp_weight embed, norm_f, lm_head;
    int lm_head_is_embed;
    srp_block *blocks; /* [cfg.n_blocks] */
    int n_mamba, n_attn;
    srp_state_desc *state; /* [n_mamba] */

    /* what the loader allocated, for srp_model_free */
    srp_weight **weights;
    int n_weights, cap_weights;
    void **allocs;
    int n_allocs, cap_allocs;
} srp_model;

/* Called while weights load: done and total in bytes. */
typedef void (*srp_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Loads DIR (config.json + safetensors) onto be. Errors name the file and the tensor or field. */
int srp_model_load(srp_model *m, const char *dir, srp_backend *be, srp_progress_fn progress,
                   void *user, srp_err *e);
void srp_model_free(srp_model *m);

/* A model of DIR/config.json's shape with random weights (for benchmarks; no checkpoint read).
 * Optional tensors (biases) are left out. */
int srp_model_random(srp_model *m, const char *dir, srp_backend *be, uint64_t seed, srp_err *e);

#endif
