/* serpent's engine: a loaded model on a backend, with the per-sequence state slots and the paged
 * KV cache that let it run many sequences in one forward step.
 *
 * A caller (the CLI, the scheduler) opens one srp_seq per request, then calls srp_engine_step
 * with the tokens each running sequence contributes this step: a whole or partial prompt
 * (prefill) or one token (decode). The step returns logits for the rows asked for, which
 * srp_engine_sample turns into tokens. All functions return 0 or a negative SRP_E* code with a
 * message in e. An engine is used by one thread at a time. */
#ifndef SRP_ENGINE_H
#define SRP_ENGINE_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "model.h"
#include "status.h"

typedef struct srp_engine_opts {
    const char *backend;  /* "cpu", "cuda", or NULL / "auto" (CUDA when built and present) */
    int n_threads;        /* CPU threads; 0: OMP_NUM_THREADS, else every core */
    int max_seqs;         /* state slots: sequences in flight at once; 0: as many as fit in
                             GPU memory (at most 256), 16 on the CPU */
    int max_batch_tokens; /* tokens in one forward step */
    int max_logits;       /* logits rows in one step; 0: max(max_seqs, 256), at most
                             max_batch_tokens */
    int max_seq_len;      /* longest sequence (prompt + generation) */
    int kv_block_size;    /* tokens per KV cache block; 0: 16 */
    int kv_blocks;        /* 0: enough for max_seqs sequences of max_seq_len */
    float gpu_memory_utilization; /* share of GPU memory to use (0: 0.9) */
    int no_graphs;                /* run decode steps operation by operation */
    int random_weights;           /* config.json's shape with random weights (benchmarks) */
    uint64_t seed;                /* of the random weights */
    srp_progress_fn progress;     /* weight-loading progress, or NULL */
    void *progress_user;
    /* The prefix cache (engine/prefix_cache.h): a pool of recurrent-state snapshots and an index
     * of cached prompt prefixes over shared KV blocks. Off unless prefix_cache is set. */
    int prefix_cache;
    int64_t prefix_cache_bytes; /* the snapshot pool; 0: 10% of the pool budget plus what the
                                   slots and KV cache leave (GPU), 2 per slot up to 1 GB (CPU) */
} srp_engine_opts;

/* Defaults for a small CPU session: 8 sequences, 512-token steps, 4096-token sequences. */
void srp_engine_opts_default(srp_engine_opts *o);

typedef struct srp_engine srp_engine;

int srp_engine_open(const char *model_dir, const srp_engine_opts *o, srp_engine **out, srp_err *e);
void srp_engine_close(srp_engine *eng);

const srp_config *srp_engine_config(const srp_engine *eng);
srp_backend *srp_engine_backend(srp_engine *eng);
int srp_engine_max_batch_tokens(const srp_engine *eng);
int srp_engine_max_seq_len(const srp_engine *eng);
/* Logits rows one step can return. */
int srp_engine_max_logits(const srp_engine *eng);

/* A sequence's claim on engine resources: its state slot, its KV blocks, and how many tokens
 * have been folded into them. srp_seq_open fills it in; a closed one has slot -1. */
typedef struct srp_seq {
    int slot;     /* -1 when closed */
    int n_past;   /* tokens processed so far */
    int n_blocks; /* KV blocks held */
    int cap_blocks;
    int32_t *blocks;
} srp_seq;

/* Takes a free state slot (SRP_EFULL when none is left). */
int srp_seq_open(srp_engine *eng, srp_seq *s, srp_err *e);
/* Returns the slot and the KV blocks; closing a closed seq does nothing. */
void srp_seq_close(srp_engine *eng, srp_seq *s);
/* Makes sure s holds KV blocks for n_tokens tokens in all (SRP_EFULL when the pool is empty). */
int srp_seq_reserve(srp_engine *eng, srp_seq *s, int n_tokens, srp_err *e);
/* Gives a freshly opened s (no blocks yet) the full, immutable KV blocks of a cached prefix:
 * shared, not copied (each block counts its holders and is free when the last one lets go). */
int srp_seq_share_blocks(srp_engine *eng, srp_seq *s, const int32_t *blocks, int n, srp_err *e);

int srp_engine_free_slots(const srp_engine *eng);
/* KV blocks on the free list; blocks that only the prefix cache holds are not among them (the
 * cache gives them back when admission needs them). */
int srp_engine_free_blocks(const srp_engine *eng);
int srp_engine_total_slots(const srp_engine *eng);
int srp_engine_total_blocks(const srp_engine *eng);
int srp_engine_block_size(const srp_engine *eng);
/* Bytes of one state slot (every recurrent layer's conv window and SSM state) and of one KV
 * block (every attention layer's K and V). */
int64_t srp_engine_slot_bytes(const srp_engine *eng);
int64_t srp_engine_kv_block_bytes(const srp_engine *eng);
/* The prefix cache's snapshot pool: snapshots it holds, bytes of one (a slot's state plus a KV
 * block for a prefix that ends inside one); 0 without the cache. */
int srp_engine_total_snapshots(const srp_engine *eng);
int64_t srp_engine_snapshot_bytes(const srp_engine *eng);
/* Parameters of the matrices one decode step reads in full (every GEMM operand and the head;
 * not the embedding table, of which a step reads only its tokens' rows), and their bytes in
 * backend memory: the weight-read floor of a decode step. */
int64_t srp_engine_matrix_params(const srp_engine *eng);
/* Device bytes the slot pool and the KV cache were sized from (what the weights, activations
 * and --gpu-memory-utilization leave), or -1 where the backend does not say (the CPU). */
int64_t srp_engine_pool_budget(const srp_engine *eng);
int64_t srp_engine_matrix_bytes(const srp_engine *eng);
/* The routed experts of the mixture-of-experts layers (counted in the two above too): their
 * parameters and bytes, and how many experts all the layers hold together. A decode step reads
 * only the experts its tokens are routed to: its weight floor is matrix_bytes - expert_bytes
 * plus expert_bytes / expert_count for each expert used. */
int64_t srp_engine_expert_params(const srp_engine *eng);
int64_t srp_engine_expert_bytes(const srp_engine *eng);
int64_t srp_engine_expert_count(const srp_engine *eng);
/* For benchmarks: while on, steps run without step graphs and count the distinct experts each
 * mixture-of-experts layer routes their tokens to (a device-to-host copy per layer);
 * srp_engine_experts_used gives the sum over the layers for the last step. */
void srp_engine_count_experts(srp_engine *eng, int on);
int64_t srp_engine_experts_used(const srp_engine *eng);

typedef enum { SRP_LOGITS_NONE, SRP_LOGITS_LAST, SRP_LOGITS_ALL } srp_logits_mode;

/* What one sequence contributes to a step. */
typedef struct srp_step_item {
    srp_seq *seq;
    const int32_t *tokens;
    int n_tokens;
    srp_logits_mode logits;
    /* The length of the forward call this chunk belongs to: the prompt's length when a prompt is
     * prefilled over several steps, so dynamic RoPE rotates every chunk as one call would (and
     * the result does not depend on how the scheduler chunked it); 0: this step's own. */
    int call_len;
} srp_step_item;

/* Runs one forward step over the items (at most max_seqs, together at most max_batch_tokens
 * tokens; KV blocks are reserved here). On success every item's seq->n_past has advanced and
 * *logits is a backend view, fp32 [rows x vocab], of the rows asked for, in item order; it stays
 * valid until the next step. A failed check leaves every sequence as it was; a failure inside
 * the forward pass (a backend error) leaves the items' states undefined: close them. */
int srp_engine_step(srp_engine *eng, const srp_step_item *items, int n_items, srp_mat *logits,
                    srp_err *e);

/* One token per logits row (params[i] for row i) into tokens (host). */
int srp_engine_sample(srp_engine *eng, srp_mat logits, const srp_sample_params *params,
                      int32_t *tokens, srp_err *e);

/* Copies logits rows [row0, row0 + n) to host memory. */
int srp_engine_logits_to_host(srp_engine *eng, srp_mat logits, int row0, int n, float *dst,
                              srp_err *e);

#endif
