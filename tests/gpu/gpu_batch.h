/* For the standalone GPU programs (tests/gpu, bench): a cuda_backend with just what the
 * operation launchers read (device, properties, stream, cb->host and the device batch), filled
 * without the backend's begin_step, so an operation can be checked and timed on its own.
 * Host-only helpers; every function returns 0 or a negative SRP_E* code with a message. */
#ifndef SRP_GPU_BATCH_H
#define SRP_GPU_BATCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"

static inline int gpu_backend_init(cuda_backend *cb, srp_err *e) {
    memset(cb, 0, sizeof *cb);
    CUDA_TRY(cudaSetDevice(0), e);
    CUDA_TRY(cudaGetDeviceProperties(&cb->prop, 0), e);
    CUDA_TRY(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking), e);
    return 0;
}

/* Sets cb->host = *hb and uploads its arrays (plus token_seq, token_pos) into *mem, which it
 * (re)allocates; max_query_len and max_ctx are computed here as begin_step does. */
static inline int gpu_batch_set(cuda_backend *cb, const srp_batch *hb, int32_t **mem, srp_err *e) {
    const int S = hb->n_seqs, T = hb->n_tokens, MB = hb->block_table ? hb->max_blocks : 0;
    const size_t n = (size_t)(S + 1) + S + (size_t)S * MB + 2 * (size_t)T;
    int32_t *h = (int32_t *)malloc(n * sizeof *h);
    if (!h) return srp_err_set(e, SRP_ENOMEM, "gpu_batch_set: out of memory");
    int32_t *seq_start = h, *n_past = h + S + 1, *table = n_past + S,
            *tseq = table + (size_t)S * MB, *tpos = tseq + T;
    memcpy(seq_start, hb->seq_start, (size_t)(S + 1) * 4);
    memcpy(n_past, hb->n_past, (size_t)S * 4);
    if (MB) memcpy(table, hb->block_table, (size_t)S * MB * 4);
    int max_q = 0, max_ctx = 0;
    for (int s = 0; s < S; s++) {
        const int len = hb->seq_start[s + 1] - hb->seq_start[s];
        if (len > max_q) max_q = len;
        if (hb->n_past[s] + len > max_ctx) max_ctx = hb->n_past[s] + len;
        for (int t = hb->seq_start[s]; t < hb->seq_start[s + 1]; t++) {
            tseq[t] = s;
            tpos[t] = hb->n_past[s] + t - hb->seq_start[s];
        }
    }
    if (*mem) cudaFree(*mem);
    *mem = NULL;
    int rc = srp_cuda_check(cudaMalloc((void **)mem, n * sizeof *h), "cudaMalloc(batch)", e);
    if (!rc)
        rc = srp_cuda_check(cudaMemcpy(*mem, h, n * sizeof *h, cudaMemcpyHostToDevice),
                            "cudaMemcpy(batch)", e);
    /* A copy from pageable memory may return before its DMA has landed, and it is ordered only
     * with the legacy stream, not with a non-blocking cb->stream: wait for it. */
    if (!rc) rc = srp_cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize", e);
    free(h);
    if (rc) return rc;
    cuda_batch *b = &cb->batch;
    memset(b, 0, sizeof *b);
    b->n_seqs = S;
    b->n_tokens = T;
    b->max_blocks = hb->max_blocks;
    b->max_query_len = max_q;
    b->max_ctx = max_ctx;
    b->seq_start = *mem;
    b->n_past = *mem + (S + 1);
    b->block_table = MB ? *mem + (S + 1) + S : NULL;
    b->token_seq = *mem + (S + 1) + S + (size_t)S * MB;
    b->token_pos = b->token_seq + T;
    cb->host = *hb;
    return 0;
}

#endif
