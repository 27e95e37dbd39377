/* The CUDA backend (kernels/cuda/): its state, its kernel launchers and the layouts they share.
 * The backend's own files use it, and so do the op tests and micro-benchmarks (tests/gpu/, bench/),
 * which call the production launchers directly; the rest of serpent sees only engine/backend.h.
 *
 * Layouts (all row-major, bf16 unless said otherwise):
 *   activations   srp_mat views of bf16 buffers (ld may exceed cols: column slices of a wider
 *                 projection output)
 *   residual      fp32 [tokens, d_model]
 *   weights       bf16 [out, in]; vectors (norm weights, biases, A_log, dt_bias, D, conv
 *                 weights) are stored as fp32 so small per-channel math stays exact
 *   conv state    bf16 [slots][conv_dim][kernel-1]
 *   SSM state     fp32 [slots][heads][head_dim][state]
 *   KV cache      bf16 [blocks][block_size][kv_heads][head_dim], K and V separately
 *
 * Every step's batch metadata is copied once (begin_step) into device arrays at fixed addresses,
 * so a captured CUDA graph of a decode step stays valid from one step to the next. */
#ifndef SRP_CUDA_OPS_H
#define SRP_CUDA_OPS_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"

/* Chunk length of the SSD kernel's own chunking: per-sequence chunks of at most this many tokens
 * (the math does not depend on the model's chunk_size, only rounding does). */
#define SRP_SSD_CHUNK 64

/* Device-side view of the current batch (device pointers; scalars by value). */
typedef struct cuda_batch {
    int n_seqs, n_tokens, max_blocks, n_logits;
    int max_query_len; /* longest sequence in this step */
    int max_ctx;       /* largest n_past + length */
    int n_chunks;      /* SSD chunks of this step (sequences longer than one token) */
    int n_decode;      /* sequences of exactly one token */
    int n_prefill;     /* sequences of more than one token */
    int has_block_table;
    const int32_t *tokens;         /* [n_tokens] */
    const int32_t *seq_start;      /* [n_seqs + 1] */
    const int32_t *n_past;         /* [n_seqs] */
    const int32_t *rope_len;       /* [n_seqs]: dynamic RoPE's L (srp_batch.rope_len) */
    const int32_t *slot;           /* [n_seqs] */
    const int32_t *block_table;    /* [n_seqs * max_blocks] or NULL */
    const int32_t *logit_rows;     /* [n_logits] */
    const int32_t *token_seq;      /* [n_tokens]: sequence index of each token */
    const int32_t *token_pos;      /* [n_tokens]: absolute position (n_past + offset) */
    const int32_t *chunk_seq;      /* [n_chunks]: sequence of each SSD chunk */
    const int32_t *chunk_start;    /* [n_chunks]: first token (batch index) of each chunk */
    const int32_t *chunk_len;      /* [n_chunks] */
    const int32_t *decode_seq;     /* [n_decode]: the one-token sequences */
    const int32_t *prefill_seq;    /* [n_prefill]: the longer ones */
    const int32_t *prefill_chunk0; /* [n_prefill]: index of each one's first SSD chunk */
} cuda_batch;

typedef struct cuda_backend {
    srp_backend base;
    int device;
    cudaDeviceProp prop;
    cudaStream_t stream;
    cublasHandle_t blas;
    float gpu_memory_utilization;
    srp_backend_limits lim;

    srp_batch host;     /* the current batch, host arrays owned by the engine */
    cuda_batch batch;   /* its device copy */
    int32_t *meta_host; /* pinned staging buffer for the metadata */
    int32_t *meta_dev;
    size_t meta_cap; /* int32 elements in each */
    int max_chunks;
    cudaEvent_t meta_event; /* the last metadata transfer */

    void *blas_workspace; /* cuBLAS's, preallocated so GEMMs can be captured in graphs */
    struct {
        int key;
        cudaGraphExec_t exec;
    } graphs[256];
    int n_graphs;
    int capturing;
    int no_gemv;       /* SERPENT_NO_GEMV=1: every product through cuBLAS (for comparisons) */
    void *ssd_scratch; /* the SSD time steps of a prefill step */
    size_t ssd_scratch_bytes;
    int32_t *sample_dev;                   /* [max_logits]: sampled tokens */
    void *sample_params_dev;               /* [max_logits] srp_sample_params */
    srp_sample_params *sample_params_host; /* [max_logits]: the same, normalized, on the host */
    int *sample_rows_host;                 /* row lists and segment offsets */
    /* probabilities, ids, sorted copies, CUB storage (kernels/cuda/sample.cu) */
    void *sample_scratch;
    size_t sample_cub_bytes;
    int32_t *sample_host; /* pinned: the same, coming back */
    /* constrained decoding: the allowed-token bitmasks of the rows that have one, packed, and
     * each row's slot in them (-1: none); made at the first such row */
    uint32_t *sample_mask_host, *sample_mask_dev; /* pinned / device [max_logits][words] */
    int *sample_slot_host, *sample_slot_dev;      /* pinned / device [max_logits] */

    int32_t
        *moe_host; /* pinned [SRP_MOE_MAX_EXPERTS + 1]: expert row offsets (kernels/cuda/moe.cu) */

    /* ---- attention (kernels/cuda/attention.cu) ---- */
    /* Split-K partials of decode attention: SRP_ATTN_WS_BYTES, allocated by the first attention
     * call that wants more than one split outside graph capture (zero until then; a call during
     * capture without it runs unsplit), never resized, so captured graphs stay valid. Freed by
     * srp_cuda_attention_free. */
    float *attn_ws;
    /* ---- end attention ---- */
} cuda_backend;

static inline cuda_backend *cuda_of(srp_backend *be) {
    return (cuda_backend *)be;
}

/* Turns a CUDA error into an SRP_EBACKEND with the call's text. */
int srp_cuda_check(cudaError_t err, const char *what, srp_err *e);
#define CUDA_TRY(call, e)                             \
    do {                                              \
        int rc_ = srp_cuda_check((call), #call, (e)); \
        if (rc_) return rc_;                          \
    } while (0)
/* After a kernel launch: reports a launch failure (bad configuration, no kernel image). */
#define CUDA_LAUNCHED(e) CUDA_TRY(cudaGetLastError(), e)

/* Launchers, one file each (kernels/cuda/<name>.cu). All run on cb->stream over cb->batch. */
int srp_cuda_embed(cuda_backend *cb, const srp_weight *table, float scale, srp_mat out, srp_err *e);
int srp_cuda_rmsnorm(cuda_backend *cb, srp_mat x, const srp_weight *w, float eps, srp_mat out,
                     srp_err *e);
int srp_cuda_gated_rmsnorm(cuda_backend *cb, srp_mat y, srp_mat z, const srp_weight *w, int group,
                           float eps, srp_mat out, srp_err *e);
/* kernels/cuda/streams.cu: the hybrid families' wiring */
int srp_cuda_rmsnorm_gate(cuda_backend *cb, srp_mat y, srp_mat z, const srp_weight *w, int group,
                          float eps, srp_mat out, srp_err *e);
int srp_cuda_add(cuda_backend *cb, srp_mat x, const srp_mat *y, srp_mat out, srp_err *e);
int srp_cuda_activate(cuda_backend *cb, srp_act act, srp_mat x, srp_err *e);
int srp_cuda_activate_gated(cuda_backend *cb, srp_act act, srp_mat gate, srp_mat up, srp_mat out,
                            srp_err *e);
int srp_cuda_rope(cuda_backend *cb, const srp_rope_params *p, srp_mat q, srp_mat k, srp_err *e);
int srp_cuda_gather_rows(cuda_backend *cb, srp_mat x, srp_mat out, srp_err *e);
int srp_cuda_add_bias(cuda_backend *cb, srp_mat out, const srp_weight *bias, srp_err *e);
int srp_cuda_gemm(cuda_backend *cb, srp_mat x, const srp_weight *w, const srp_weight *bias,
                  srp_mat out, float alpha, int accumulate, srp_err *e);
/* The memory-speed path of srp_cuda_gemm for few rows (gemv.cu). */
#define SRP_GEMV_MAX_ROWS 8
int srp_cuda_gemv_supported(srp_mat x, const srp_weight *w, srp_mat out);
int srp_cuda_gemv(cuda_backend *cb, srp_mat x, const srp_weight *w, const srp_weight *bias,
                  srp_mat out, float alpha, int accumulate, srp_err *e);
int srp_cuda_conv1d(cuda_backend *cb, srp_mat xbc, const srp_weight *w, const srp_weight *bias,
                    int kernel, const srp_mamba_state *st, srp_mat out, srp_err *e);
int srp_cuda_ssd(cuda_backend *cb, const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C,
                 srp_mat dt, const srp_mamba_state *st, srp_mat y, srp_err *e);
int srp_cuda_selective_scan(cuda_backend *cb, const srp_s6_params *p, srp_mat x, srp_mat dt,
                            srp_mat B, srp_mat C, srp_mat z, const srp_mamba_state *st, srp_mat y,
                            srp_err *e);
int srp_cuda_attention(cuda_backend *cb, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                       const srp_kv_layer *kv, srp_mat out, srp_err *e);
/* ---- attention (kernels/cuda/attention.cu) ---- */
#define SRP_ATTN_WS_BYTES ((size_t)32 << 20)
/* Releases cb->attn_ws (call from the backend's destroy). */
void srp_cuda_attention_free(cuda_backend *cb);
/* ---- end attention ---- */
/* The context the decode attention sizes its splits for: the batch's longest, or while a graph
 * records, the longest of the graph's context bucket. */
int srp_cuda_split_ctx(const cuda_backend *cb);
int srp_cuda_moe_route(cuda_backend *cb, const srp_moe_route_params *p, srp_mat logits,
                       const srp_moe_routing *r, srp_err *e);
int srp_cuda_moe_experts(cuda_backend *cb, const srp_moe_experts_params *p,
                         const srp_moe_routing *r, srp_mat x, srp_mat out, float alpha,
                         int accumulate, srp_err *e);
int srp_cuda_sample(cuda_backend *cb, srp_mat logits, const srp_sample_params *params,
                    int32_t *tokens, srp_err *e);

#ifdef __cplusplus
}
#endif

#endif
