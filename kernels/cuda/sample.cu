/* Choosing the next tokens on the GPU, so only token ids cross the bus. The rules are the CPU
 * sampler's (engine/sampler.c), step for step, so both backends draw the same token from the same
 * logits, and both read the parameters through srp_sample_normalize:
 *   a logit that is not finite counts as -inf;
 *   greedy (temperature 0): the largest logit, lowest index among equals (0 when none is finite);
 *   else p_i = exp((l_i - max) / T), exactly 1 for the argmax, 0 for a logit that is not finite;
 *   min-p drops p_i < min_p (never the argmax: min_p <= 1); with top-k or top-p the survivors are
 *   ordered by p descending (index ascending among equals), cut to top_k, then to the shortest
 *   prefix holding top_p of their mass; a uniform draw u(seed, step) picks the first token whose
 *   running mass exceeds u times the total, in that order (index order when neither top-k nor
 *   top-p applies).
 * A row with an allowed-token mask (constrained decoding) reads every banned logit as -inf.
 * Sums run in double, as on the CPU, so a draw lands on the other side of a boundary only when
 * it is within ~1e-16 of it. Rows that need an order are sorted with CUB's segmented sort.
 * tests/gpu/sample_twin.c is this file's selection on the host, sequentially; the fuzz target
 * tests/fuzz/fuzz_sampler.c checks it against the CPU sampler. */
#include <cub/cub.cuh>
#include <stdlib.h>

#include "cuda_ops.h"
extern "C" {
#include "sampler.h" /* srp_sample_normalize */
}

#define SAMPLE_THREADS 1024
#define SAMPLE_GROUP   32 /* rows sorted at once: bounds the scratch memory */

/* engine/sampler.c's counter-based generator, bit for bit */
__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

__device__ __forceinline__ double rng_uniform(uint64_t seed, uint64_t step) {
    uint64_t x = splitmix64(splitmix64(seed) ^ step);
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* Block-wide sum of doubles; every thread gets it. `red` holds 32 doubles. */
__device__ double block_sum_d(double v, double *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x / 32) ? red[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Exclusive prefix over the block of one double per thread (thread order). */
__device__ double block_exclusive_d(double v, double *red) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    double incl = v;
    for (int o = 1; o < 32; o <<= 1) {
        double up = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += up;
    }
    __syncthreads();
    if (lane == 31) red[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        double w = lane < (int)(blockDim.x / 32) ? red[lane] : 0.0, wi = w;
        for (int o = 1; o < 32; o <<= 1) {
            double up = __shfl_up_sync(0xffffffffu, wi, o);
            if (lane >= o) wi += up;
        }
        red[lane] = wi - w; /* exclusive over warps */
    }
    __syncthreads();
    return red[warp] + incl - v;
}

/* The first position in [0, n) of `p` (read through `at`) whose running sum exceeds target; the
 * last position when none does (rounding past the end). Each thread owns a contiguous segment. */
template <typename AT>
__device__ int first_exceeding(AT at, int n, double target, double *red, int *found) {
    const int per = (n + blockDim.x - 1) / blockDim.x;
    const int lo = threadIdx.x * per, hi = min(lo + per, n);
    double seg = 0.0;
    for (int i = lo; i < hi; i++) seg += at(i);
    double before = block_exclusive_d(seg, red);
    if (threadIdx.x == 0) *found = n - 1;
    __syncthreads();
    if (before + seg > target && before <= target) {
        double cum = before;
        for (int i = lo; i < hi; i++) {
            cum += at(i);
            if (target < cum) {
                atomicMin(found, i);
                break;
            }
        }
    }
    __syncthreads();
    return *found;
}

/* Row r's logit i, -inf where its mask (if any) bans i. */
__device__ __forceinline__ float masked_logit(const float *row, int i, const uint32_t *mask) {
    return mask && !(mask[i >> 5] >> (i & 31) & 1u) ? -INFINITY : row[i];
}

__device__ __forceinline__ const uint32_t *row_mask(const uint32_t *masks, const int *slots, int r,
                                                    int vocab) {
    return slots && slots[r] >= 0 ? masks + (int64_t)slots[r] * ((vocab + 31) / 32) : NULL;
}

/* p_i, or -1 for a token min-p drops; values get the token ids (the sort's payload). best holds
 * each row's argmax (argmax_kernel's output). */
__global__ void probs_kernel(const float *logits, int64_t ld, int vocab,
                             const srp_sample_params *sp, const int *rows, const int32_t *best,
                             const uint32_t *masks, const int *slots, float *probs, int32_t *ids) {
    const int r = rows[blockIdx.x];
    const srp_sample_params p = sp[r];
    const float *row = logits + (int64_t)r * ld;
    const uint32_t *mask = row_mask(masks, slots, r, vocab);
    const int b = best[r];
    const float mx = row[b]; /* read only when some logit, hence this one, is finite */
    const double inv_t = 1.0 / p.temperature;
    float *out = probs + (int64_t)blockIdx.x * vocab;
    int32_t *id = ids + (int64_t)blockIdx.x * vocab;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float x = masked_logit(row, i, mask);
        float v = i == b ? 1.0f : isfinite(x) ? (float)exp((double)(x - mx) * inv_t) : 0.0f;
        out[i] = (p.min_p > 0.0f && v < p.min_p) ? -1.0f : v;
        id[i] = i;
    }
}

/* Rows without top-k/top-p: the draw walks the vocabulary in index order. */
__global__ void draw_unsorted_kernel(const float *probs, int vocab, const srp_sample_params *sp,
                                     const int *rows, int32_t *tokens) {
    __shared__ double red[32];
    __shared__ int found;
    const int r = rows[blockIdx.x];
    const float *pr = probs + (int64_t)blockIdx.x * vocab;
    auto at = [pr](int i) { return pr[i] > 0.0f ? (double)pr[i] : 0.0; };
    double s = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += at(i);
    const double total = block_sum_d(s, red);
    const double target = rng_uniform(sp[r].seed, sp[r].step) * total;
    /* the CPU's fallback is its last kept token: the last index min-p kept */
    int pos = first_exceeding(at, vocab, target, red, &found);
    if (threadIdx.x == 0) {
        while (pos > 0 && pr[pos] < 0.0f) pos--;
        tokens[r] = pos;
    }
}

/* Rows with top-k and/or top-p, their probabilities sorted descending with token ids (and, in
 * probs, unsorted: when min-p leaves no more than top_k tokens and top-p is off, the CPU sampler
 * walks index order, and so does this). */
__global__ void draw_sorted_kernel(const float *sorted, const int32_t *ids, const float *probs,
                                   int vocab, const srp_sample_params *sp, const int *rows,
                                   int32_t *tokens) {
    __shared__ double red[32];
    __shared__ int found, kept;
    const int r = rows[blockIdx.x];
    const srp_sample_params p = sp[r];
    const float *pr = sorted + (int64_t)blockIdx.x * vocab;
    const int32_t *id = ids + (int64_t)blockIdx.x * vocab;
    /* survivors of min-p are the prefix of non-negative values */
    if (threadIdx.x == 0) kept = vocab;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        if (pr[i] < 0.0f && (i == 0 || pr[i - 1] >= 0.0f)) kept = i;
    __syncthreads();
    int m = kept;
    if (!(p.top_k > 0 && p.top_k < m) && p.top_p >= 1.0f) {
        const float *up = probs + (int64_t)blockIdx.x * vocab;
        auto at_index = [up](int i) { return up[i] > 0.0f ? (double)up[i] : 0.0; };
        double s = 0.0;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += at_index(i);
        const double total = block_sum_d(s, red);
        const double target = rng_uniform(p.seed, p.step) * total;
        int pos = first_exceeding(at_index, vocab, target, red, &found);
        if (threadIdx.x == 0) {
            while (pos > 0 && up[pos] < 0.0f) pos--;
            tokens[r] = pos;
        }
        return;
    }
    if (p.top_k > 0 && p.top_k < m) m = p.top_k;
    auto at = [pr](int i) { return (double)pr[i]; };
    if (p.top_p < 1.0f) {
        double s = 0.0;
        for (int i = threadIdx.x; i < m; i += blockDim.x) s += at(i);
        const double total = block_sum_d(s, red);
        /* shortest prefix whose mass reaches top_p * total: first position where the running
         * sum is >= the bound, i.e. exceeds the largest double below it */
        const double bound = nextafter(p.top_p * total, -1.0);
        m = first_exceeding(at, m, bound, red, &found) + 1;
    }
    double s = 0.0;
    for (int i = threadIdx.x; i < m; i += blockDim.x) s += at(i);
    const double total = block_sum_d(s, red);
    const double target = rng_uniform(p.seed, p.step) * total;
    const int pos = first_exceeding(at, m, target, red, &found);
    if (threadIdx.x == 0) tokens[r] = id[pos];
}

/* One block per row: the index of the largest finite logit, lowest index among equals; 0 when
 * none is finite. */
__global__ void argmax_kernel(const float *logits, int64_t ld, int vocab, const uint32_t *masks,
                              const int *slots, int32_t *out) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    const float *row = logits + blockIdx.x * ld;
    const uint32_t *mask = row_mask(masks, slots, blockIdx.x, vocab);
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float x = masked_logit(row, i, mask);
        if (isfinite(x) && x > v) v = x, idx = i; /* strided: a later i never beats an equal one */
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
        if (lane == 0) out[blockIdx.x] = idx == 0x7fffffff ? 0 : idx;
    }
}

/* Scratch for SAMPLE_GROUP rows: probabilities and ids, their sorted copies, segment offsets,
 * CUB's temporary storage. Made at the first sampled (non-greedy) row. */
static int ensure_scratch(cuda_backend *cb, int vocab, srp_err *e) {
    if (cb->sample_scratch) return 0;
    const size_t n = (size_t)SAMPLE_GROUP * vocab;
    size_t cub_bytes = 0;
    cub::DeviceSegmentedSort::StableSortPairsDescending(
        (void *)NULL, cub_bytes, (const float *)NULL, (float *)NULL, (const int32_t *)NULL,
        (int32_t *)NULL, (int)n, SAMPLE_GROUP, (const int *)NULL, (const int *)NULL);
    size_t bytes = n * 4 * 4 + (SAMPLE_GROUP + 1) * sizeof(int) * 2 + cub_bytes + 256;
    CUDA_TRY(cudaMalloc(&cb->sample_scratch, bytes), e);
    cb->sample_cub_bytes = cub_bytes;
    return 0;
}

/* The masks of the rows that have one, packed into the pinned buffer and sent with each row's
 * slot; *slots stays NULL when no row has a mask (nothing is sent). */
static int upload_masks(cuda_backend *cb, const srp_sample_params *params, int n, int vocab,
                        const int **slots, srp_err *e) {
    int any = 0;
    for (int r = 0; r < n && !any; r++) any = params[r].allowed != NULL;
    if (!any) return 0;
    const size_t words = ((size_t)vocab + 31) / 32, rows = (size_t)cb->lim.max_logits;
    /* each on its own: one that failed is tried again at the next step, the others kept */
    if (!cb->sample_mask_host)
        CUDA_TRY(cudaMallocHost((void **)&cb->sample_mask_host, rows * words * 4), e);
    if (!cb->sample_slot_host)
        CUDA_TRY(cudaMallocHost((void **)&cb->sample_slot_host, rows * sizeof(int)), e);
    if (!cb->sample_mask_dev)
        CUDA_TRY(cudaMalloc((void **)&cb->sample_mask_dev, rows * words * 4), e);
    if (!cb->sample_slot_dev)
        CUDA_TRY(cudaMalloc((void **)&cb->sample_slot_dev, rows * sizeof(int)), e);
    /* the previous step's copies read these buffers: it synchronized before returning */
    int k = 0;
    for (int r = 0; r < n; r++) {
        cb->sample_slot_host[r] = params[r].allowed ? k : -1;
        if (params[r].allowed)
            memcpy(cb->sample_mask_host + (size_t)k++ * words, params[r].allowed, words * 4);
    }
    CUDA_TRY(cudaMemcpyAsync(cb->sample_mask_dev, cb->sample_mask_host, (size_t)k * words * 4,
                             cudaMemcpyHostToDevice, cb->stream),
             e);
    CUDA_TRY(cudaMemcpyAsync(cb->sample_slot_dev, cb->sample_slot_host, (size_t)n * sizeof(int),
                             cudaMemcpyHostToDevice, cb->stream),
             e);
    *slots = cb->sample_slot_dev;
    return 0;
}

int srp_cuda_sample(cuda_backend *cb, srp_mat logits, const srp_sample_params *params,
                    int32_t *tokens, srp_err *e) {
    if (logits.dtype != SRP_F32) return srp_err_set(e, SRP_EINVAL, "sample: logits must be fp32");
    const int n = (int)logits.rows, vocab = (int)logits.cols;
    if (n == 0) return 0;
    if (n > cb->lim.max_logits) return srp_err_set(e, SRP_EINVAL, "sample: %d rows", n);
    srp_sample_params *norm = cb->sample_params_host;
    for (int r = 0; r < n; r++) norm[r] = srp_sample_normalize(&params[r], vocab);
    const int *slots = NULL;
    int rc = upload_masks(cb, params, n, vocab, &slots, e);
    if (rc) return rc;
    argmax_kernel<<<n, 256, 0, cb->stream>>>((const float *)logits.data, logits.ld, vocab,
                                             cb->sample_mask_dev, slots, cb->sample_dev);
    CUDA_LAUNCHED(e);
    /* rows that sample, in two lists: with an order (top-k / top-p) and without */
    int *sorted_rows = (int *)cb->sample_rows_host, *plain_rows = sorted_rows + n;
    int n_sorted = 0, n_plain = 0;
    for (int r = 0; r < n; r++) {
        const srp_sample_params *p = &norm[r];
        if (p->temperature == 0.0f) continue;
        if (p->top_k > 0 || p->top_p < 1.0f)
            sorted_rows[n_sorted++] = r;
        else
            plain_rows[n_plain++] = r;
    }
    if (n_sorted + n_plain > 0) {
        rc = ensure_scratch(cb, vocab, e);
        if (rc) return rc;
        srp_sample_params *dparams = (srp_sample_params *)cb->sample_params_dev;
        CUDA_TRY(cudaMemcpyAsync(dparams, norm, (size_t)n * sizeof *norm, cudaMemcpyHostToDevice,
                                 cb->stream),
                 e);
        const size_t g = (size_t)SAMPLE_GROUP * vocab;
        float *probs = (float *)cb->sample_scratch, *sorted = probs + g;
        int32_t *ids = (int32_t *)(sorted + g), *sorted_ids = ids + g;
        int *offsets = (int *)(sorted_ids + g), *rows_dev = offsets + SAMPLE_GROUP + 1;
        void *cub_tmp = (void *)(((uintptr_t)(rows_dev + SAMPLE_GROUP) + 255) & ~(uintptr_t)255);
        int *h_off = (int *)cb->sample_rows_host + 2 * n;
        for (int pass = 0; pass < 2; pass++) {
            const int *list = pass ? sorted_rows : plain_rows;
            const int count = pass ? n_sorted : n_plain;
            for (int g0 = 0; g0 < count; g0 += SAMPLE_GROUP) {
                const int k = count - g0 < SAMPLE_GROUP ? count - g0 : SAMPLE_GROUP;
                for (int i = 0; i <= k; i++) h_off[i] = i * vocab;
                CUDA_TRY(cudaMemcpyAsync(rows_dev, list + g0, (size_t)k * sizeof(int),
                                         cudaMemcpyHostToDevice, cb->stream),
                         e);
                probs_kernel<<<k, SAMPLE_THREADS, 0, cb->stream>>>(
                    (const float *)logits.data, logits.ld, vocab, dparams, rows_dev, cb->sample_dev,
                    cb->sample_mask_dev, slots, probs, ids);
                CUDA_LAUNCHED(e);
                if (!pass) {
                    draw_unsorted_kernel<<<k, SAMPLE_THREADS, 0, cb->stream>>>(
                        probs, vocab, dparams, rows_dev, cb->sample_dev);
                    CUDA_LAUNCHED(e);
                } else {
                    CUDA_TRY(cudaMemcpyAsync(offsets, h_off, (size_t)(k + 1) * sizeof(int),
                                             cudaMemcpyHostToDevice, cb->stream),
                             e);
                    size_t tmp_bytes = cb->sample_cub_bytes;
                    CUDA_TRY(cub::DeviceSegmentedSort::StableSortPairsDescending(
                                 cub_tmp, tmp_bytes, probs, sorted, ids, sorted_ids, k * vocab, k,
                                 offsets, offsets + 1, cb->stream),
                             e);
                    draw_sorted_kernel<<<k, SAMPLE_THREADS, 0, cb->stream>>>(
                        sorted, sorted_ids, probs, vocab, dparams, rows_dev, cb->sample_dev);
                    CUDA_LAUNCHED(e);
                }
                /* the host lists and offsets are reused by the next group */
                CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
            }
        }
    }
    CUDA_TRY(cudaMemcpyAsync(cb->sample_host, cb->sample_dev, (size_t)n * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, cb->stream),
             e);
    CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
    memcpy(tokens, cb->sample_host, (size_t)n * sizeof(int32_t));
    return 0;
}
