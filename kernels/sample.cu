/* Choosing the next tokens. Greedy rows are reduced on the GPU so only their ids cross the bus;
 * rows that sample come to the host in small groups and go through the same sampler as the CPU
 * backend (engine/sampler.c), so both backends draw identical tokens from identical logits. */
#include <stdlib.h>

#include "cuda_internal.h"

extern "C" {
#include "sampler.h"
}

/* One block per row: the index of the largest logit, lowest index among equals. */
__global__ void argmax_kernel(const float *logits, int64_t ld, int vocab, int32_t *out) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    const float *row = logits + blockIdx.x * ld;
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float x = row[i];
        if (x > v) v = x, idx = i; /* strided: a later i never beats an equal earlier one */
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) best_v[warp] = v, best_i[warp] = idx;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x / 32) ? best_v[lane] : -INFINITY;
        idx = lane < (int)(blockDim.x / 32) ? best_i[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, o);
            int oi = __shfl_xor_sync(0xffffffffu, idx, o);
            if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
        }
        if (lane == 0) out[blockIdx.x] = idx;
    }
}

int srp_cuda_sample(cuda_backend *cb, srp_mat logits, const srp_sample_params *params,
                    int32_t *tokens, srp_err *e) {
    if (logits.dtype != SRP_F32) return srp_err_set(e, SRP_EINVAL, "sample: logits must be fp32");
    const int n = (int)logits.rows, vocab = (int)logits.cols;
    if (n == 0) return 0;
    if (n > cb->lim.max_logits) return srp_err_set(e, SRP_EINVAL, "sample: %d rows", n);
    argmax_kernel<<<n, 256, 0, cb->stream>>>((const float *)logits.data, logits.ld, vocab,
                                             cb->sample_dev);
    CUDA_LAUNCHED(e);
    CUDA_TRY(cudaMemcpyAsync(cb->sample_host, cb->sample_dev, (size_t)n * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, cb->stream),
             e);
    CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
    int rc = 0;
    float *row = NULL, *scratch = NULL;
    int32_t *order = NULL;
    for (int r = 0; r < n && !rc; r++) {
        const srp_sample_params *p = &params[r];
        if (p->temperature <= 0.0f || p->top_k == 1) {
            tokens[r] = cb->sample_host[r];
            continue;
        }
        if (!row) {
            row = (float *)malloc((size_t)vocab * sizeof(float));
            scratch = (float *)malloc((size_t)vocab * sizeof(float));
            order = (int32_t *)malloc((size_t)vocab * sizeof(int32_t));
            if (!row || !scratch || !order) {
                rc = srp_err_set(e, SRP_ENOMEM, "sample: out of memory");
                break;
            }
        }
        rc = srp_cuda_check(cudaMemcpy(row, (const float *)logits.data + (int64_t)r * logits.ld,
                                       (size_t)vocab * sizeof(float), cudaMemcpyDeviceToHost),
                            "sample: logits row", e);
        if (!rc) tokens[r] = srp_sample_row(row, vocab, p, scratch, order);
    }
    free(row);
    free(scratch);
    free(order);
    return rc;
}
