/* Matrix products with few rows (decode at small batch): out[M, N] = alpha * x[M, K] w[N, K]^T
 * (+ bias) (+ out), M <= SRP_GEMV_MAX_ROWS.
 *
 * Such a product is a pass over the weights at memory speed, which cuBLAS's tensor-core kernels
 * do not reach for M = 1..8 (they tile for M >= 64). Here each warp owns GEMV_ROWS rows of w and
 * walks them with 16-byte loads, GEMV_UNROLL steps at a time so that every lane keeps
 * GEMV_ROWS * GEMV_UNROLL loads in flight; x (a few KB) is read through the L1 cache. The
 * accumulation is fp32 in the order (lane, step), then a warp reduction: the same inputs give
 * the same bits on every run, whatever else is in the batch. */
#include "cuda_ops.h"

#define GEMV_UNROLL 4 /* 8-element steps of k in flight per lane */
/* GEMV_ROWS rows of w per warp, GEMV_WARPS warps per block: 2 x 4 for tall matrices; 1 x 2 when
 * there are few rows (out_proj's and down_proj's 4096), where 8-row blocks came out at 3.9 per
 * SM on an H200 and the last wave left a quarter of the SMs idle (75% of the roofline against
 * 86-94% for the tall ones). */
#define GEMV_SMALL_N 16384

__device__ __forceinline__ void bf16x8_to_f32(const uint4 v, float *f) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 p = __bfloat1622float2(h[i]);
        f[2 * i] = p.x;
        f[2 * i + 1] = p.y;
    }
}

template <int M, int GEMV_ROWS, int GEMV_WARPS>
__global__ void __launch_bounds__(32 * GEMV_WARPS)
    gemv_kernel(const __nv_bfloat16 *__restrict__ w, int64_t ldw, int N, int K,
                const __nv_bfloat16 *__restrict__ x, int64_t ldx, void *out, int out_f32,
                int64_t ldo, float alpha, int accumulate, const float *__restrict__ bias) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = (blockIdx.x * GEMV_WARPS + warp) * GEMV_ROWS;
    if (row0 >= N) return;
    float acc[GEMV_ROWS][M];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int m = 0; m < M; m++) acc[r][m] = 0.0f;
    const uint4 *wr[GEMV_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
        const int row = row0 + r < N ? row0 + r : N - 1; /* a tail warp repeats the last row */
        wr[r] = (const uint4 *)(w + (int64_t)row * ldw);
    }
    const int K8 = K / 8; /* 16-byte vectors per row */
    for (int k0 = lane; k0 < K8; k0 += 32 * GEMV_UNROLL) {
        uint4 wv[GEMV_UNROLL][GEMV_ROWS];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++)
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++) {
                const int k = k0 + u * 32;
                wv[u][r] = k < K8 ? __ldcs(wr[r] + k) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int k = k0 + u * 32;
            if (k >= K8) break;
#pragma unroll
            for (int m = 0; m < M; m++) {
                float xf[8];
                bf16x8_to_f32(__ldg((const uint4 *)(x + m * ldx) + k), xf);
#pragma unroll
                for (int r = 0; r < GEMV_ROWS; r++) {
                    float wf[8];
                    bf16x8_to_f32(wv[u][r], wf);
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r][m] = fmaf(wf[i], xf[i], acc[r][m]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
    if (lane != 0) return;
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) {
        const int row = row0 + r;
        if (row >= N) break;
#pragma unroll
        for (int m = 0; m < M; m++) {
            float v = alpha * acc[r][m] + (bias ? bias[row] : 0.0f);
            const int64_t o = (int64_t)m * ldo + row;
            if (out_f32) {
                float *po = (float *)out + o;
                *po = accumulate ? *po + v : v;
            } else {
                __nv_bfloat16 *po = (__nv_bfloat16 *)out + o;
                *po = __float2bfloat16(accumulate ? __bfloat162float(*po) + v : v);
            }
        }
    }
}

static int aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

int srp_cuda_gemv_supported(srp_mat x, const srp_weight *w, srp_mat out) {
    return x.rows >= 1 && x.rows <= SRP_GEMV_MAX_ROWS && x.dtype == SRP_BF16 &&
           w->m.dtype == SRP_BF16 && (out.dtype == SRP_BF16 || out.dtype == SRP_F32) &&
           x.cols % 8 == 0 && x.ld % 8 == 0 && w->m.ld % 8 == 0 && aligned16(x.data) &&
           aligned16(w->m.data);
}

int srp_cuda_gemv(cuda_backend *cb, srp_mat x, const srp_weight *w, const srp_weight *bias,
                  srp_mat out, float alpha, int accumulate, srp_err *e) {
    const int N = (int)w->m.rows, K = (int)x.cols;
    const int small = N < GEMV_SMALL_N, per_block = small ? 2 : 8;
    const unsigned grid = (unsigned)((N + per_block - 1) / per_block);
    const float *bv = bias ? (const float *)bias->m.data : NULL;
    const __nv_bfloat16 *wd = (const __nv_bfloat16 *)w->m.data, *xd = (const __nv_bfloat16 *)x.data;
    const int f32 = out.dtype == SRP_F32;
    const int64_t ldw = w->m.ld;
#define GEMV_CASE(rows_)                                                                \
    case rows_:                                                                         \
        if (small)                                                                      \
            gemv_kernel<rows_, 1, 2><<<grid, 64, 0, cb->stream>>>(                      \
                wd, ldw, N, K, xd, x.ld, out.data, f32, out.ld, alpha, accumulate, bv); \
        else                                                                            \
            gemv_kernel<rows_, 2, 4><<<grid, 128, 0, cb->stream>>>(                     \
                wd, ldw, N, K, xd, x.ld, out.data, f32, out.ld, alpha, accumulate, bv); \
        break
    switch (x.rows) {
        GEMV_CASE(1);
        GEMV_CASE(2);
        GEMV_CASE(3);
        GEMV_CASE(4);
        GEMV_CASE(5);
        GEMV_CASE(6);
        GEMV_CASE(7);
        GEMV_CASE(8);
    default:
        return srp_err_set(e, SRP_EINVAL, "gemv: %lld rows", (long long)x.rows);
    }
#undef GEMV_CASE
    CUDA_LAUNCHED(e);
    return 0;
}
