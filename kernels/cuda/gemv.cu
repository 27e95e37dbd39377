/* Matrix products with few rows (decode at small batch): out[M, N] = alpha * x[M, K] w[N, K]^T
 * (+ bias) (+ out), M <= SRP_GEMV_MAX_ROWS.
 *
 * Such a product is a pass over the weights at memory speed, which cuBLAS's tensor-core kernels
 * do not reach for M = 1..8 (they tile for M >= 64). A block owns ROWS rows of w; its WARPS warps
 * split each row's K between them (vector v of a row goes to warp (v / 32) % WARPS), and every
 * lane keeps ROWS * UNROLL 16-byte loads in flight. x (a few KB) is read through the L1 cache.
 *
 * The first loads of weights are issued before pdl_wait(): launched with programmatic dependent
 * launch (pdl.cuh), a GEMV streams its first wave of weights while the norm or activation
 * before it, which produces x, is still running.
 *
 * The accumulation is fp32 in a fixed order (lane, step; then the warps in order), so the same
 * inputs give the same bits on every run, whatever else is in the batch. The tile (ROWS, WARPS,
 * UNROLL) is chosen per shape from H200 measurements (choose_tile); SERPENT_GEMV_TILE=i forces
 * tile i of gemv_tiles for every product, for bench_kernels' sweep. */
#include <stdlib.h>

#include "cuda_ops.h"
#include "pdl.cuh"

typedef struct gemv_args {
    const __nv_bfloat16 *w;
    int64_t ldw;
    int N, K;
    const __nv_bfloat16 *x;
    int64_t ldx;
    void *out;
    int out_f32;
    int64_t ldo;
    float alpha;
    int accumulate;
    const float *bias;
} gemv_args;

__device__ __forceinline__ void bf16x8_to_f32(const uint4 v, float *f) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 p = __bfloat1622float2(h[i]);
        f[2 * i] = p.x;
        f[2 * i + 1] = p.y;
    }
}

template <int ROWS, int UNROLL, int STRIDE>
__device__ __forceinline__ void load_weights(uint4 (&wv)[UNROLL][ROWS], const uint4 *const *wr,
                                             int k0, int K8) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++)
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            const int k = k0 + u * STRIDE;
            wv[u][r] = k < K8 ? __ldcs(wr[r] + k) : make_uint4(0, 0, 0, 0);
        }
}

template <int M, int ROWS, int WARPS, int UNROLL>
__global__ void __launch_bounds__(32 * WARPS) gemv_kernel(const gemv_args a) {
    pdl_launch_dependents();
    constexpr int STRIDE = 32 * WARPS; /* vectors between a lane's consecutive loads of a row */
    __shared__ float red[WARPS][ROWS * M];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row0 = blockIdx.x * ROWS;
    const uint4 *wr[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const int row = row0 + r < a.N ? row0 + r : a.N - 1; /* a tail block repeats the last row */
        wr[r] = (const uint4 *)(a.w + (int64_t)row * a.ldw);
    }
    float acc[ROWS][M];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
        for (int m = 0; m < M; m++) acc[r][m] = 0.0f;
    const int K8 = a.K / 8; /* 16-byte vectors per row */
    uint4 wv[UNROLL][ROWS];
    int k0 = warp * 32 + lane;
    load_weights<ROWS, UNROLL, STRIDE>(wv, wr, k0, K8);
    pdl_wait(); /* x and out are the previous kernels' */
    for (; k0 < K8; k0 += STRIDE * UNROLL) {
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int k = k0 + u * STRIDE;
            if (k >= K8) break;
#pragma unroll
            for (int m = 0; m < M; m++) {
                float xf[8];
                bf16x8_to_f32(__ldg((const uint4 *)(a.x + m * a.ldx) + k), xf);
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
                    float wf[8];
                    bf16x8_to_f32(wv[u][r], wf);
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r][m] = fmaf(wf[i], xf[i], acc[r][m]);
                }
            }
        }
        if (k0 + STRIDE * UNROLL < K8)
            load_weights<ROWS, UNROLL, STRIDE>(wv, wr, k0 + STRIDE * UNROLL, K8);
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
        for (int m = 0; m < M; m++) {
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
            if (lane == 0) red[warp][r * M + m] = acc[r][m];
        }
    __syncthreads();
    if (warp != 0) return;
    for (int t = lane; t < ROWS * M; t += 32) {
        const int row = row0 + t / M, m = t % M;
        if (row >= a.N) break;
        float s = 0.0f;
#pragma unroll
        for (int q = 0; q < WARPS; q++) s += red[q][t];
        const float v = a.alpha * s + (a.bias ? a.bias[row] : 0.0f);
        const int64_t o = (int64_t)m * a.ldo + row;
        if (a.out_f32) {
            float *po = (float *)a.out + o;
            *po = a.accumulate ? *po + v : v;
        } else {
            __nv_bfloat16 *po = (__nv_bfloat16 *)a.out + o;
            *po = __float2bfloat16(a.accumulate ? __bfloat162float(*po) + v : v);
        }
    }
}

/* The tiles there are kernels of: rows per block, warps per block (splitting K), loads in flight
 * per lane and row. */
typedef struct gemv_tile {
    int rows, warps, unroll;
} gemv_tile;

#define GEMV_TILES(X) \
    X(0, 2, 1, 4)     \
    X(1, 1, 1, 8)     \
    X(2, 2, 2, 8)     \
    X(3, 1, 4, 8)     \
    X(4, 4, 2, 4)     \
    X(5, 1, 2, 16)    \
    X(6, 2, 4, 4)     \
    X(7, 1, 8, 4)
#define GEMV_N_TILES 8

static const gemv_tile gemv_tiles[GEMV_N_TILES] = {
#define TILE_ENTRY(i, r, w, u) { r, w, u },
    GEMV_TILES(TILE_ENTRY)
#undef TILE_ENTRY
};

typedef void (*gemv_fn)(const gemv_args);

#define TILE_FN(i, r, w, u) gemv_kernel<M_, r, w, u>,
template <int M_> struct gemv_table {
    static constexpr gemv_fn fn[GEMV_N_TILES] = { GEMV_TILES(TILE_FN) };
};
#undef TILE_FN

static gemv_fn gemv_kernel_for(int m, int tile) {
    switch (m) {
    case 1:
        return gemv_table<1>::fn[tile];
    case 2:
        return gemv_table<2>::fn[tile];
    case 3:
        return gemv_table<3>::fn[tile];
    case 4:
        return gemv_table<4>::fn[tile];
    case 5:
        return gemv_table<5>::fn[tile];
    case 6:
        return gemv_table<6>::fn[tile];
    case 7:
        return gemv_table<7>::fn[tile];
    case 8:
        return gemv_table<8>::fn[tile];
    }
    return NULL;
}

/* The tile of an [M, K] x [N, K]^T product: the fastest of bench_kernels --gemv-sweep on an H200
 * (2026-12-03) for the 8B hybrid's decode products, by M and by shape (K = 4096 and N from 6K to
 * 128K: the input projections and the head; K of 8K or 16K onto N = 4096: out_proj and
 * down_proj). At M = 1: in_proj 97%, up 95%, down 88%, out_proj 80%, the head (past the L2) at
 * the copy rate. */
static int choose_tile(int M, int N, int K) {
    const int wide_k = K >= 8192;
    if (M == 1) return wide_k ? 4 : N >= 65536 ? 6 : 3;
    if (M == 2) return wide_k ? 4 : 6;
    if (M <= 4) return N >= 16384 && !wide_k ? 4 : 6;
    return 4;
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

int srp_cuda_gemv_forced_tile(void) {
    const char *t = getenv("SERPENT_GEMV_TILE");
    if (!t || !*t) return -1;
    const int i = atoi(t);
    return i >= 0 && i < GEMV_N_TILES ? i : -1;
}

int srp_cuda_gemv(cuda_backend *cb, srp_mat x, const srp_weight *w, const srp_weight *bias,
                  srp_mat out, float alpha, int accumulate, srp_err *e) {
    const int M = (int)x.rows, N = (int)w->m.rows, K = (int)x.cols;
    const int tile = cb->gemv_tile >= 0 ? cb->gemv_tile : choose_tile(M, N, K);
    const gemv_fn fn = gemv_kernel_for(M, tile);
    if (!fn) return srp_err_set(e, SRP_EINVAL, "gemv: %d rows", M);
    const gemv_tile *t = &gemv_tiles[tile];
    const gemv_args a = { (const __nv_bfloat16 *)w->m.data,
                          w->m.ld,
                          N,
                          K,
                          (const __nv_bfloat16 *)x.data,
                          x.ld,
                          out.data,
                          out.dtype == SRP_F32,
                          out.ld,
                          alpha,
                          accumulate,
                          bias ? (const float *)bias->m.data : NULL };
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((N + t->rows - 1) / t->rows));
    cfg.blockDim = dim3((unsigned)(32 * t->warps));
    cfg.stream = cb->stream;
    cudaLaunchAttribute pdl;
    pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pdl.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &pdl;
    cfg.numAttrs = cb->pdl ? 1 : 0;
    CUDA_TRY(cudaLaunchKernelEx(&cfg, fn, a), e);
    return 0;
}
