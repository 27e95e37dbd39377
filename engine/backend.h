/* The compute backend interface.
 *
 * The layer stack (forward.c) is written once against this table of operations; the CPU backend
 * (kernels/cpu/, fp32, the reference) and the CUDA backend (kernels/cuda/, bf16 activations with
 * fp32 accumulation) implement it. Every operation works on a packed batch of variable-length
 * sequences described by srp_batch, and reads and writes per-sequence recurrent state in place
 * through the sequence's slot id, so nothing is copied when the batch changes.
 *
 * Memory is the backend's: pointers in srp_mat, srp_weight, srp_mamba_state and srp_kv_layer are
 * device pointers on a GPU backend. Every operation returns 0 or a negative SRP_E* code with a
 * message in e; a backend never aborts on bad input. */
#ifndef SRP_BACKEND_H
#define SRP_BACKEND_H

#include <stdint.h>

#include "config.h"
#include "dtype.h"
#include "status.h"

/* A 2-D row-major view: element (r, c) is at data + (r * ld + c) * size(dtype). */
typedef struct srp_mat {
    void *data;
    srp_dtype dtype;
    int64_t rows, cols, ld;
} srp_mat;

static inline srp_mat srp_mat_cols(srp_mat m, int64_t c0, int64_t n) {
    srp_mat v = m;
    v.data = (char *)m.data + c0 * (int64_t)srp_dtype_size(m.dtype);
    v.cols = n;
    return v;
}

static inline srp_mat srp_mat_rows(srp_mat m, int64_t r0, int64_t n) {
    srp_mat v = m;
    v.data = (char *)m.data + r0 * m.ld * (int64_t)srp_dtype_size(m.dtype);
    v.rows = n;
    return v;
}

/* A weight in backend memory. Matrices are [out, in] (torch's Linear layout); vectors have
 * rows = 1. `owned` is 0 when data points into the mapped checkpoint. */
typedef struct srp_weight {
    srp_mat m;
    int owned;
} srp_weight;

/* One forward step's batch: the tokens of all scheduled sequences packed back to back.
 * Sequence i owns tokens [seq_start[i], seq_start[i+1]) at positions n_past[i] + 0, 1, ...
 * A decoding sequence is simply a sequence of length 1. All arrays are host memory. */
typedef struct srp_batch {
    int n_seqs, n_tokens;
    const int32_t *tokens;      /* [n_tokens] */
    const int32_t *seq_start;   /* [n_seqs + 1] */
    const int32_t *n_past;      /* [n_seqs]: tokens already folded into the slot and KV cache */
    const int32_t *slot;        /* [n_seqs]: state slot of each sequence */
    const int32_t *block_table; /* [n_seqs * max_blocks]: KV block ids, NULL if no attention */
    int max_blocks;
    int n_logits;
    const int32_t *logit_rows; /* [n_logits]: token indices whose logits are wanted */
    /* [n_seqs]: the length L dynamic RoPE scales by (srp_rope_params); NULL: n_past + length */
    const int32_t *rope_len;
} srp_batch;

/* Recurrent state of one Mamba-2 layer for every slot:
 * conv [n_slots][conv_dim][kernel-1] (the last raw inputs, oldest first) in conv_dtype,
 * ssm  [n_slots][heads][head_dim][state] in fp32. */
typedef struct srp_mamba_state {
    void *conv;
    srp_dtype conv_dtype;
    float *ssm;
} srp_mamba_state;

/* Paged K and V of one attention layer: [n_blocks][block_size][kv_heads][head_dim] each. */
typedef struct srp_kv_layer {
    void *k, *v;
    srp_dtype dtype;
    int block_size;
} srp_kv_layer;

typedef struct srp_mamba_params {
    int heads, head_dim, groups, state, conv_kernel, chunk;
    float dt_min, dt_max;
    const srp_weight *A_log, *dt_bias, *D; /* [heads] each */
} srp_mamba_params;

/* Mamba-1's selective scan (S6). A = -exp(A_log) has a row per channel; dt_bias and D may be
 * NULL (zero). */
typedef struct srp_s6_params {
    int d_inner, state;
    const srp_weight *A_log;   /* [d_inner, state] fp32 */
    const srp_weight *dt_bias; /* [d_inner] */
    const srp_weight *D;       /* [d_inner] */
} srp_s6_params;

typedef struct srp_attn_params {
    int heads, kv_heads, head_dim;
    float scale;
} srp_attn_params;

/* Rotary position embedding (transformers' rotate_half form): in each head, channel i < dim/2
 * and channel i + dim/2 rotate by angle pos * inv_freq[i]; channels from dim on are untouched.
 * With `dynamic` (NTK-aware scaling), a sequence whose step reaches past max_positions uses the
 * base theta * (factor * L / max_positions - (factor - 1))^(dim / (dim - 2)), L being the
 * batch's rope_len (n_past + length by default), as transformers recomputes it from the largest
 * position of a forward call. */
typedef struct srp_rope_params {
    int heads, kv_heads, head_dim, dim;
    const srp_weight *inv_freq; /* [dim / 2] fp32 */
    int dynamic;
    float theta, factor;
    int max_positions;
} srp_rope_params;

/* Mixture-of-experts routing (engine/config.h's srp_moe_config says what each field means). The
 * correction bias, when given ([n_experts] fp32), is added to the scores for choosing only.
 * Limits every backend keeps: n_experts <= SRP_MOE_MAX_EXPERTS, top_k <= SRP_MOE_MAX_TOP_K,
 * n_group <= SRP_MOE_MAX_GROUPS, each group at least two experts when n_group > 1. */
#define SRP_MOE_MAX_EXPERTS 1024
#define SRP_MOE_MAX_TOP_K   32
#define SRP_MOE_MAX_GROUPS  64
typedef struct srp_moe_route_params {
    int n_experts, top_k;
    srp_moe_score score;
    int n_group, topk_group;
    int norm_topk;
    float scale;
    const srp_weight *bias; /* NULL: none */
} srp_moe_route_params;

/* The routing of a step's T tokens, in backend memory: moe_route writes the chosen experts
 * (ids, I32 [T, top_k], each row's experts distinct) and their weights (F32 [T, top_k]), and
 * lays out whatever the backend wants to keep about the grouping of tokens by expert in `index`
 * (SRP_MOE_INDEX_INTS(T, top_k, n_experts) int32 of scratch), which moe_experts reads. */
#define SRP_MOE_INDEX_INTS(tokens, top_k, experts) \
    (6 * (int64_t)(tokens) * (top_k) + 6 * (int64_t)(experts) + 64)
typedef struct srp_moe_routing {
    srp_mat ids, weights;
    int32_t *index;
} srp_moe_routing;

/* The limits above and the shapes of logits and r, for both backends' moe_route. */
static inline int srp_moe_route_check(const srp_moe_route_params *p, srp_mat logits,
                                      const srp_moe_routing *r, srp_err *e) {
    const int E = p->n_experts, G = p->n_group;
    if (E < 1 || E > SRP_MOE_MAX_EXPERTS || p->top_k < 1 || p->top_k > SRP_MOE_MAX_TOP_K || G < 1 ||
        G > SRP_MOE_MAX_GROUPS || E % G || (G > 1 && E / G < 2) || p->topk_group < 1 ||
        p->topk_group > G || p->top_k > p->topk_group * (E / G))
        return srp_err_set(e, SRP_EINVAL,
                           "moe_route: %d experts, top %d, %d groups keeping %d: unsupported", E,
                           p->top_k, G, p->topk_group);
    if (logits.dtype != SRP_F32 || logits.cols != E || r->ids.dtype != SRP_I32 ||
        r->weights.dtype != SRP_F32 || r->ids.rows != logits.rows ||
        r->weights.rows != logits.rows || r->ids.cols != p->top_k || r->weights.cols != p->top_k ||
        (p->bias && p->bias->m.cols * p->bias->m.rows != E))
        return srp_err_set(e, SRP_EINVAL, "moe_route: shapes or types of the buffers");
    return 0;
}

/* The routed experts of one layer, stacked: up is [n_experts * U, in] with U = hidden, or
 * 2 * hidden when gated (each expert's rows [gate | up]); down is [n_experts * out, hidden].
 * scratch: act_dtype [T * top_k, >= in + U + out] for the rows grouped by expert. */
typedef struct srp_moe_experts_params {
    int n_experts, top_k, hidden;
    srp_act act;
    int gated;
    const srp_weight *up, *down;
    srp_mat scratch;
} srp_moe_experts_params;

/* Sampling settings of one logits row. Draws come from a counter-based generator keyed by
 * (seed, step), so a request's samples do not depend on what else is in the batch. */
typedef struct srp_sample_params {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
    uint64_t seed;
    uint64_t step; /* index of the token being drawn within its request */

    /* Everything below is off when zero / NULL, so `{ temperature, top_k, ... }` initialisers
     * keep their meaning. Pointers are host memory owned by the caller for the call.
     *
     * Logits processing, in this order, on a copy of the row (vLLM's order): logit_bias is
     * added; repetition_penalty divides positive and multiplies negative logits of tokens seen
     * in the prompt or the output (HF / CTRL); presence_penalty is subtracted from tokens seen
     * in the output, and frequency_penalty times their count. Greedy picks the argmax of the
     * processed row. */
    int n_logit_bias;
    const int32_t *logit_bias_ids; /* [n_logit_bias], each in [0, vocab) */
    const float *logit_bias;       /* [n_logit_bias] */
    float presence_penalty;        /* 0: off */
    float frequency_penalty;       /* 0: off */
    float repetition_penalty;      /* 0 or 1: off */
    const int32_t *output_counts;  /* [vocab]: occurrences of each token in the output so far */
    const uint8_t *prompt_mask;    /* [vocab]: nonzero for tokens of the prompt (repetition) */

    /* When force_token is set the row is not sampled: forced_token is returned (used to score
     * given text, e.g. prompt logprobs). */
    int force_token;
    int32_t forced_token;

    /* Log-probabilities of the raw (unprocessed) row, log_softmax(logits): the chosen token's
     * into *logprob_out, and the top_n most likely tokens (descending, ties by lower id) into
     * top_ids[top_n] / top_logprobs[top_n]. Skipped when logprob_out is NULL. */
    float *logprob_out;
    int top_n;
    int32_t *top_ids;
    float *top_logprobs;

    /* Constrained decoding (engine/grammar): token t may be drawn only when bit (t & 31) of
     * allowed[t >> 5] is set; the others count as -inf before every processor. A backend applies
     * it where it samples (the GPU's stays on the GPU). NULL: every token. */
    const uint32_t *allowed;
} srp_sample_params;

/* The largest step the engine will run; a backend sizes its per-step buffers from it. */
typedef struct srp_backend_limits {
    int max_tokens, max_seqs, max_blocks_per_seq, max_logits, vocab;
} srp_backend_limits;

typedef struct srp_backend srp_backend;
struct srp_backend {
    const char *name;
    srp_dtype act_dtype;  /* activations between operations */
    srp_dtype conv_dtype; /* conv state */
    srp_dtype kv_dtype;   /* KV cache */
    void (*destroy)(srp_backend *be);

    /* Memory. alloc returns zeroed memory. */
    int (*alloc)(srp_backend *be, size_t bytes, void **out, srp_err *e);
    void (*free)(srp_backend *be, void *p);
    int (*zero)(srp_backend *be, void *p, size_t bytes, srp_err *e);
    int (*upload)(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e);
    int (*download)(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e);
    /* Backend memory to backend memory, in order with the operations queued before and after
     * it (the prefix cache's state snapshots); the ranges do not overlap. */
    int (*copy)(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e);
    /* Free and total bytes of backend memory (for sizing the slot pool), or -1 if unknown. */
    int64_t (*mem_available)(srp_backend *be);
    int64_t (*mem_total)(srp_backend *be);

    /* Makes a backend weight from checkpoint data (any of F32, F16, BF16, possibly unaligned)
     * shaped rows x cols. A matrix is a GEMM operand or an embedding table; per-channel
     * parameters (norm weights, biases, conv taps, A_log, dt_bias, D) are not, and a backend may
     * keep them in higher precision. The backend may point into data (owned = 0). */
    int (*weight_load)(srp_backend *be, const void *data, srp_dtype dtype, int64_t rows,
                       int64_t cols, int is_matrix, srp_weight *out, srp_err *e);
    void (*weight_free)(srp_backend *be, srp_weight *w);

    /* Called once, before the first step. */
    int (*configure)(srp_backend *be, const srp_backend_limits *lim, srp_err *e);

    /* Declares the batch the following operations run on (valid until the next call). */
    int (*begin_step)(srp_backend *be, const srp_batch *b, srp_err *e);

    /* out[t] = scale * table[tokens[t]] for every token of the batch; out is fp32
     * [n_tokens, d]. */
    int (*embed)(srp_backend *be, const srp_weight *table, float scale, srp_mat out, srp_err *e);

    /* out = x / sqrt(mean(x^2) + eps) * w, row by row; x fp32 or act_dtype, out in act_dtype
     * (out may be x). w NULL: no weight (FalconMamba's norms of dt, B and C). */
    int (*rmsnorm)(srp_backend *be, srp_mat x, const srp_weight *w, float eps, srp_mat out,
                   srp_err *e);

    /* out = alpha * x * w^T (+ bias) (+ out when accumulate: the fused residual add). alpha
     * carries the models' constant multipliers; the bias is not scaled. */
    int (*gemm)(srp_backend *be, srp_mat x, const srp_weight *w, const srp_weight *bias,
                srp_mat out, float alpha, int accumulate, srp_err *e);

    /* Causal depthwise conv over each sequence's xbc columns, continuing from the conv state of
     * its slot (zeros when n_past = 0), then silu; writes the last kernel-1 raw inputs back. */
    int (*conv1d)(srp_backend *be, srp_mat xbc, const srp_weight *w, const srp_weight *bias,
                  int kernel, const srp_mamba_state *st, srp_mat out, srp_err *e);

    /* The selective scan of every sequence: chunked SSD for prefill, the recurrent update for
     * single tokens; starts from the slot's SSM state (zero when n_past = 0) and writes the final
     * state back. y = scan + D * x. x [T, heads*head_dim], B and C [T, groups*state], dt raw
     * [T, heads] (softplus(dt + dt_bias) clamped to [dt_min, dt_max] inside). */
    int (*ssd)(srp_backend *be, const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C,
               srp_mat dt, const srp_mamba_state *st, srp_mat y, srp_err *e);

    /* Mamba-1's selective scan over every sequence, channel by channel, from the slot's SSM
     * state h [d_inner][state] (zero when n_past = 0), writing the final state back:
     *   delta = softplus(dt + dt_bias),  h = exp(delta A) * h + delta x B,
     *   y = (C . h + D x) * silu(z)       (no gate when z.data is NULL).
     * x, dt, z, y [T, d_inner] (dt raw, before the bias); B, C [T, state]. y may not alias the
     * inputs. One-token sequences are the decode step's state update. */
    int (*selective_scan)(srp_backend *be, const srp_s6_params *p, srp_mat x, srp_mat dt, srp_mat B,
                          srp_mat C, srp_mat z, const srp_mamba_state *st, srp_mat y, srp_err *e);

    /* out = rmsnorm_groups(y * silu(z)) * w with groups of `group` consecutive elements. */
    int (*gated_rmsnorm)(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                         float eps, srp_mat out, srp_err *e);

    /* out = rmsnorm_groups(y) * w * silu(z): the gate after the norm (Falcon-H1's
     * mamba_norm_before_gate); groups and types as gated_rmsnorm. */
    int (*rmsnorm_gate)(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                        float eps, srp_mat out, srp_err *e);

    /* Writes k, v of the batch's tokens into the paged cache, then causal GQA attention of q over
     * each sequence's cached keys (positions 0 .. n_past + i). */
    int (*attention)(srp_backend *be, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                     const srp_kv_layer *kv, srp_mat out, srp_err *e);

    /* x = act(x) in place. */
    int (*activate)(srp_backend *be, srp_act act, srp_mat x, srp_err *e);

    /* out = act(gate) * up, element by element (out may be gate). */
    int (*activate_gated)(srp_backend *be, srp_act act, srp_mat gate, srp_mat up, srp_mat out,
                          srp_err *e);

    /* Rotates q [T, heads * head_dim] and k [T, kv_heads * head_dim] in place, token t at
     * position n_past + its offset in its sequence. */
    int (*rope)(srp_backend *be, const srp_rope_params *p, srp_mat q, srp_mat k, srp_err *e);

    /* Routes every token: logits fp32 [T, n_experts] -> r's ids, weights and index. */
    int (*moe_route)(srp_backend *be, const srp_moe_route_params *p, srp_mat logits,
                     const srp_moe_routing *r, srp_err *e);

    /* out[t] = alpha * sum over k of weights[t, k] * expert_{ids[t, k]}(x[t]) (+ out when
     * accumulate), with the routing of the last moe_route over these T tokens. x in act_dtype;
     * out fp32 or act_dtype. */
    int (*moe_experts)(srp_backend *be, const srp_moe_experts_params *p, const srp_moe_routing *r,
                       srp_mat x, srp_mat out, float alpha, int accumulate, srp_err *e);

    /* out[i] = x[logit_rows[i]] (fp32 rows). */
    int (*gather_rows)(srp_backend *be, srp_mat x, srp_mat out, srp_err *e);

    /* out = x + y element by element on fp32 matrices of one shape (y NULL: out = x); out may
     * be x or y. Zamba2's streams: the residual copied into its concatenation with the
     * embeddings, the Mamba block's norm input x + aux. */
    int (*add)(srp_backend *be, srp_mat x, const srp_mat *y, srp_mat out, srp_err *e);

    /* Draws one token per logits row (fp32 [n, vocab]) into tokens (host memory). */
    int (*sample)(srp_backend *be, srp_mat logits, const srp_sample_params *params, int32_t *tokens,
                  srp_err *e);

    /* Waits for queued work. */
    int (*sync)(srp_backend *be, srp_err *e);

    /* Step graphs (NULL where the backend has none): the operations of a step are recorded once
     * per key (the engine uses the batch size of decode-only steps) and replayed afterwards,
     * reading the batch that begin_step copied to fixed addresses. graph_replay returns 1 when
     * it replayed, 0 when no graph exists for key yet; the caller then runs the operations
     * between graph_begin and graph_end, which records, instantiates and launches them. */
    int (*graph_replay)(srp_backend *be, int key, srp_err *e);
    int (*graph_begin)(srp_backend *be, int key, srp_err *e);
    int (*graph_end)(srp_backend *be, int key, srp_err *e);

    /* 1 when sample() implements the extras of srp_sample_params (logit bias, penalties, forced
     * tokens, logprobs). When 0, srp_engine_sample redoes the rows that use them on the host,
     * from downloaded logits, with the CPU sampler (srp_sample_row). */
    int sample_extras;
};

/* The CPU backend: fp32, OpenMP threads, OpenBLAS for matrix products. n_threads <= 0 uses
 * OMP_NUM_THREADS when it is set, else every core. */
int srp_backend_cpu_create(int n_threads, srp_backend **out, srp_err *e);
/* The OpenBLAS kernel set the CPU backend runs (e.g. "SkylakeX"), once one was created. */
const char *srp_backend_cpu_blas_core(void);

/* The CUDA backend on GPU `device` (builds with SERPENT_CUDA only); srp_cuda_available says
 * whether a GPU is visible. */
int srp_backend_cuda_create(int device, srp_backend **out, srp_err *e);
int srp_cuda_available(void);

#endif
