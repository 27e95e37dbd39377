/* Mixture-of-experts on the GPU: routing, the grouping of the step's (token, expert) pairs by
 * expert, the experts' two projections and each token's weighted sum.
 *
 * Routing and grouping stay on the device: moe_route runs one warp per token (scores, group
 * mask, top-k, weights), then one block counts the pairs per expert, lays out each expert's rows
 * contiguously (`sorted`, and `inv` back) and cuts them into tiles of MOE_TILE_ROWS rows of one
 * expert. The experts then take one of two paths:
 *  - device (decode-sized steps, and anything recorded into a step graph): a GEMV-like kernel
 *    over a grid of (output columns) x (the most tiles the step can have); a block whose tile
 *    does not exist returns at once, so the experts nobody chose cost nothing and their weights
 *    are never read, and no host synchronisation is needed — the graph replays whatever the
 *    router chooses next time;
 *  - grouped cuBLAS (prefill-sized steps, never inside a graph): the per-expert row counts come
 *    back to the host (one small copy per layer), the rows are gathered, and every expert's rows
 *    go through one GEMM per projection.
 * Each token's sum reads its rows through `inv` in the order of its choices, so the result does
 * not depend on the order the grouping put the rows in. */
#include <limits.h>

#include "activation.cuh"
#include "cuda_ops.h"

#define MOE_TILE_ROWS     8 /* rows of one expert per GEMV block */
#define MOE_COLS_PER_WARP 4 /* MOE_TILE_ROWS * MOE_COLS_PER_WARP = 32: one result per lane */
#define MOE_WARPS         4
#define MOE_ROUTE_WARPS   4
#define MOE_DEVICE_TOKENS 64 /* steps of at most this many tokens take the device path */
#define FULL              0xffffffffu

#define MOE_TRY(call)        \
    do {                     \
        int rc_ = (call);    \
        if (rc_) return rc_; \
    } while (0)

/* The index moe_route lays out in r->index (5 P + 4 E + 8 ints, within SRP_MOE_INDEX_INTS). */
typedef struct moe_index {
    int32_t *off;                       /* [E + 1]: first sorted row of each expert */
    int32_t *n_tiles;                   /* [1] */
    int32_t *sorted;                    /* [P]: the pair (t * top_k + k) of each sorted row */
    int32_t *inv;                       /* [P]: the sorted row of each pair */
    int32_t *tile_e, *tile_r0, *tile_n; /* [P + E]: expert, first sorted row, rows */
} moe_index;

static __host__ __device__ moe_index index_of(int32_t *base, int64_t P, int E) {
    moe_index x;
    x.off = base;
    x.n_tiles = base + E + 1;
    x.sorted = base + E + 8;
    x.inv = x.sorted + P;
    x.tile_e = x.inv + P;
    x.tile_r0 = x.tile_e + P + E;
    x.tile_n = x.tile_r0 + P + E;
    return x;
}

/* ---- routing ------------------------------------------------------------------------------ */

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
    return v;
}

/* The warp's best (value, index): larger value, then lower index. */
static __device__ __forceinline__ void warp_argmax(float &v, int &i) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(FULL, v, o);
        const int oi = __shfl_xor_sync(FULL, i, o);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
}

/* One warp per token, as kernels/cpu/cpu_moe.c's route_row: taken entries become NaN, which no
 * comparison selects; groups left out become -inf. */
__global__ void moe_route_kernel(const float *logits, int64_t ldl, int T, int E, int K, int sigmoid,
                                 int G, int TG, int norm, float scale, const float *bias,
                                 int32_t *ids, int64_t ldi, float *w, int64_t ldw) {
    extern __shared__ float route_smem[];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t = blockIdx.x * MOE_ROUTE_WARPS + warp;
    if (t >= T) return; /* the whole warp */
    float *score = route_smem + (size_t)warp * (2 * E + G), *choice = score + E,
          *group = choice + E;
    const float *l = logits + (int64_t)t * ldl;
    if (sigmoid) {
        for (int i = lane; i < E; i += 32) score[i] = 1.0f / (1.0f + expf(-l[i]));
    } else {
        float m = -INFINITY, s = 0.0f;
        for (int i = lane; i < E; i += 32) m = fmaxf(m, l[i]);
        m = warp_max(m);
        for (int i = lane; i < E; i += 32) s += score[i] = expf(l[i] - m);
        s = warp_sum(s);
        for (int i = lane; i < E; i += 32) score[i] /= s;
    }
    for (int i = lane; i < E; i += 32) choice[i] = score[i] + (bias ? bias[i] : 0.0f);
    __syncwarp();
    if (G > 1) {
        const int per = E / G;
        for (int g = lane; g < G; g += 32) {
            float a = -INFINITY, b = -INFINITY;
            for (int j = 0; j < per; j++) {
                const float v = choice[g * per + j];
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            group[g] = a + b;
        }
        __syncwarp();
        unsigned long long keep = 0;
        for (int q = 0; q < TG; q++) {
            float bv = -INFINITY;
            int bi = INT_MAX;
            for (int g = lane; g < G; g += 32) {
                const float v = group[g];
                if (!((keep >> g) & 1) && v == v && (v > bv || (v == bv && g < bi))) {
                    bv = v;
                    bi = g;
                }
            }
            warp_argmax(bv, bi);
            keep |= 1ull << bi;
        }
        for (int i = lane; i < E; i += 32)
            if (!((keep >> (i / per)) & 1)) choice[i] = -INFINITY;
        __syncwarp();
    }
    int mine = 0;
    for (int k = 0; k < K; k++) {
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int i = lane; i < E; i += 32) {
            const float v = choice[i];
            if (v == v && (v > bv || (v == bv && i < bi))) {
                bv = v;
                bi = i;
            }
        }
        warp_argmax(bv, bi);
        if (lane == k) mine = bi;
        if (lane == (bi & 31)) choice[bi] = NAN; /* the lane that reads it next time */
        __syncwarp();
    }
    float wv = lane < K ? score[mine] : 0.0f;
    const float sum = warp_sum(wv);
    if (lane < K) {
        if (norm) wv /= sum + 1e-20f;
        ids[(int64_t)t * ldi + lane] = mine;
        w[(int64_t)t * ldw + lane] = wv * scale;
    }
}

/* One block of 1024 threads: pairs per expert, each expert's first sorted row and tiles (a
 * block-wide scan, one expert per thread), then every pair's place. */
__global__ void __launch_bounds__(1024)
    moe_align_kernel(const int32_t *ids, int64_t P, int E, int32_t *base) {
    __shared__ int cnt[SRP_MOE_MAX_EXPERTS], cur[SRP_MOE_MAX_EXPERTS], first[SRP_MOE_MAX_EXPERTS];
    __shared__ int sum_rows[32], sum_tiles[32];
    const moe_index ix = index_of(base, P, E);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    for (int e = tid; e < E; e += blockDim.x) cnt[e] = cur[e] = 0;
    __syncthreads();
    for (int64_t p = tid; p < P; p += blockDim.x) atomicAdd(&cnt[ids[p]], 1);
    __syncthreads();
    const int c = tid < E ? cnt[tid] : 0, nt = (c + MOE_TILE_ROWS - 1) / MOE_TILE_ROWS;
    int a = c, b = nt; /* inclusive scans of rows and tiles */
    for (int o = 1; o < 32; o <<= 1) {
        const int x = __shfl_up_sync(FULL, a, o), y = __shfl_up_sync(FULL, b, o);
        if (lane >= o) {
            a += x;
            b += y;
        }
    }
    if (lane == 31) {
        sum_rows[warp] = a;
        sum_tiles[warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        int x = sum_rows[lane], y = sum_tiles[lane];
        for (int o = 1; o < 32; o <<= 1) {
            const int px = __shfl_up_sync(FULL, x, o), py = __shfl_up_sync(FULL, y, o);
            if (lane >= o) {
                x += px;
                y += py;
            }
        }
        sum_rows[lane] = x;
        sum_tiles[lane] = y;
    }
    __syncthreads();
    if (warp > 0) {
        a += sum_rows[warp - 1];
        b += sum_tiles[warp - 1];
    }
    if (tid < E) {
        const int r0 = a - c, t0 = b - nt;
        first[tid] = r0;
        ix.off[tid] = r0;
        for (int j = 0; j < nt; j++) {
            ix.tile_e[t0 + j] = tid;
            ix.tile_r0[t0 + j] = r0 + j * MOE_TILE_ROWS;
            ix.tile_n[t0 + j] = min(MOE_TILE_ROWS, c - j * MOE_TILE_ROWS);
        }
    }
    if (tid == (int)blockDim.x - 1) {
        ix.off[E] = a;
        ix.n_tiles[0] = b;
    }
    __syncthreads();
    for (int64_t p = tid; p < P; p += blockDim.x) {
        const int e = ids[p];
        const int pos = first[e] + atomicAdd(&cur[e], 1);
        ix.sorted[pos] = (int32_t)p;
        ix.inv[p] = pos;
    }
}

/* ---- the device path: tiles of one expert's rows against its weights ----------------------- */

static __device__ __forceinline__ void unpack8(const uint4 &v, float f[8]) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 p = __bfloat1622float2(h[i]);
        f[2 * i] = p.x;
        f[2 * i + 1] = p.y;
    }
}

static __device__ __forceinline__ uint4 load_stream(const __nv_bfloat16 *p) {
    return __ldcs(reinterpret_cast<const uint4 *>(p));
}

/* The dot products of RA staged rows with a warp's G x MOE_COLS_PER_WARP weight rows (lane
 * partial sums). RA is the tile's row count rounded up to a power of two, so a tile of one row
 * (decode at batch 1) costs one multiply-add per weight, not MOE_TILE_ROWS. */
template <int RA, int G, bool VEC>
static __device__ __forceinline__ void
dot_rows(float (&acc)[G][MOE_COLS_PER_WARP][MOE_TILE_ROWS], const __nv_bfloat16 *we,
         const int (&wr)[G][MOE_COLS_PER_WARP], const __nv_bfloat16 *xs, int kpad, int kdim,
         int lane) {
    constexpr int CPW = MOE_COLS_PER_WARP;
    if (VEC) {
#pragma unroll 2
        for (int k = lane * 8; k < kdim; k += 32 * 8) {
            uint4 wv[G][CPW];
#pragma unroll
            for (int g = 0; g < G; g++)
#pragma unroll
                for (int j = 0; j < CPW; j++) wv[g][j] = load_stream(we + wr[g][j] + k);
#pragma unroll
            for (int r = 0; r < RA; r++) {
                float xf[8];
                unpack8(*reinterpret_cast<const uint4 *>(xs + r * kpad + k), xf);
#pragma unroll
                for (int g = 0; g < G; g++)
#pragma unroll
                    for (int j = 0; j < CPW; j++) {
                        float wf[8];
                        unpack8(wv[g][j], wf);
                        float s = acc[g][j][r];
#pragma unroll
                        for (int i = 0; i < 8; i++) s = fmaf(wf[i], xf[i], s);
                        acc[g][j][r] = s;
                    }
            }
        }
    } else {
        for (int k = lane; k < kdim; k += 32) {
            float wf[G][CPW];
#pragma unroll
            for (int g = 0; g < G; g++)
#pragma unroll
                for (int j = 0; j < CPW; j++) wf[g][j] = __bfloat162float(we[wr[g][j] + k]);
#pragma unroll
            for (int r = 0; r < RA; r++) {
                const float xf = __bfloat162float(xs[r * kpad + k]);
#pragma unroll
                for (int g = 0; g < G; g++)
#pragma unroll
                    for (int j = 0; j < CPW; j++) acc[g][j][r] = fmaf(wf[g][j], xf, acc[g][j][r]);
            }
        }
    }
}

/* out[row, c] = act(x_row . w_c) (gated: act(x_row . w_c) * (x_row . w_{ncols + c})) for the
 * rows of one tile (blockIdx.x) and MOE_COLS_PER_WARP columns per warp (blockIdx.y: blocks of
 * MOE_WARPS warps). The tile's rows are staged in shared memory ([rows][kpad] bf16, rows_launch
 * sizes it); each weight row is streamed once per tile. x's row of sorted row r is sorted[r] /
 * top_k when `sorted` is given, else r. act < 0: none. VEC: 16-byte loads (kdim, the row strides
 * and the pointers multiples of 8 elements). */
template <bool GATED, bool VEC>
__global__ void __launch_bounds__(MOE_WARPS * 32, GATED ? 2 : 4)
    moe_rows_kernel(const __nv_bfloat16 *x, int64_t ldx, const int32_t *sorted, int top_k,
                    const __nv_bfloat16 *w, int64_t expert_rows, int kdim, int ncols, int act,
                    __nv_bfloat16 *out, int64_t ldo, const int32_t *tile_e, const int32_t *tile_r0,
                    const int32_t *tile_n, const int32_t *n_tiles) {
    constexpr int R = MOE_TILE_ROWS, CPW = MOE_COLS_PER_WARP, G = GATED ? 2 : 1;
    static_assert(R * CPW == 32, "one result per lane");
    const int tile = blockIdx.x;
    if (tile >= *n_tiles) return;
    const int ex = tile_e[tile], r0 = tile_r0[tile], nr = tile_n[tile];
    extern __shared__ __align__(16) unsigned char rows_smem[];
    __nv_bfloat16 *xs = reinterpret_cast<__nv_bfloat16 *>(rows_smem);
    const int kpad = (kdim + 7) & ~7;
    /* the tile's rows; rows from nr on are never used (their sums are not written) */
    for (int i = threadIdx.x; i < nr * kdim; i += blockDim.x) {
        const int r = i / kdim, k = i - r * kdim;
        const int64_t src = sorted ? sorted[r0 + r] / top_k : r0 + r;
        xs[r * kpad + k] = x[src * ldx + k];
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int c0 = (blockIdx.y * MOE_WARPS + warp) * CPW;
    if (c0 >= ncols) return;
    const __nv_bfloat16 *we = w + (int64_t)ex * expert_rows * kdim;
    int wr[G][CPW]; /* each weight row's offset in the expert's matrix (which is < 2^31) */
#pragma unroll
    for (int j = 0; j < CPW; j++) {
        const int c = min(c0 + j, ncols - 1);
#pragma unroll
        for (int g = 0; g < G; g++) wr[g][j] = (c + g * ncols) * kdim;
    }
    float acc[G][CPW][R];
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int j = 0; j < CPW; j++)
#pragma unroll
            for (int r = 0; r < R; r++) acc[g][j][r] = 0.0f;
    if (nr <= 1)
        dot_rows<1, G, VEC>(acc, we, wr, xs, kpad, kdim, lane);
    else if (nr <= 2)
        dot_rows<2, G, VEC>(acc, we, wr, xs, kpad, kdim, lane);
    else if (nr <= 4)
        dot_rows<4, G, VEC>(acc, we, wr, xs, kpad, kdim, lane);
    else
        dot_rows<R, G, VEC>(acc, we, wr, xs, kpad, kdim, lane);
    float result = 0.0f;
#pragma unroll
    for (int r = 0; r < R; r++) {
        if (r >= nr) break; /* the same for the whole warp */
#pragma unroll
        for (int j = 0; j < CPW; j++) {
            const float v = warp_sum(acc[0][j][r]);
            float u = 1.0f;
            if (GATED) u = warp_sum(acc[G - 1][j][r]);
            if (lane == j * R + r) result = (act < 0 ? v : activate_one(act, v)) * u;
        }
    }
    const int j = lane / R, r = lane % R, c = c0 + j;
    if (r < nr && c < ncols) out[(int64_t)(r0 + r) * ldo + c] = __float2bfloat16(result);
}

/* ---- shared by both paths ------------------------------------------------------------------ */

/* out[t] (+)= alpha * sum_k w[t, k] * y[inv[t * K + k]] */
__global__ void moe_combine_kernel(const __nv_bfloat16 *y, int64_t ldy, const int32_t *inv,
                                   const float *w, int64_t ldw, int K, int cols, float alpha,
                                   void *out, int out_bf16, int64_t ldo, int accumulate) {
    __shared__ float ws[SRP_MOE_MAX_TOP_K];
    __shared__ int64_t rs[SRP_MOE_MAX_TOP_K];
    const int64_t t = blockIdx.x;
    if (threadIdx.x < K) {
        ws[threadIdx.x] = w[t * ldw + threadIdx.x];
        rs[threadIdx.x] = inv[t * K + threadIdx.x];
    }
    __syncthreads();
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += ws[k] * __bfloat162float(y[rs[k] * ldy + c]);
        s *= alpha;
        if (out_bf16) {
            __nv_bfloat16 *o = (__nv_bfloat16 *)out + t * ldo + c;
            *o = __float2bfloat16(accumulate ? __bfloat162float(*o) + s : s);
        } else {
            float *o = (float *)out + t * ldo + c;
            *o = accumulate ? *o + s : s;
        }
    }
}

/* The grouped-GEMM path's input: xg[r] = x[sorted[r] / K]. */
__global__ void moe_gather_kernel(const __nv_bfloat16 *x, int64_t ldx, const int32_t *sorted, int K,
                                  __nv_bfloat16 *xg, int64_t ldg, int cols) {
    const int64_t r = blockIdx.x, src = sorted[r] / K;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) xg[r * ldg + c] = x[src * ldx + c];
}

/* ---- launchers ------------------------------------------------------------------------------ */

int srp_cuda_moe_route(cuda_backend *cb, const srp_moe_route_params *p, srp_mat logits,
                       const srp_moe_routing *r, srp_err *e) {
    int rc = srp_moe_route_check(p, logits, r, e);
    if (rc) return rc;
    if (r->ids.ld != p->top_k || !r->index)
        return srp_err_set(e, SRP_EINVAL, "moe_route: ids must be dense [T, top_k] with an index");
    const int T = (int)logits.rows, E = p->n_experts;
    if (T == 0) return 0;
    if (p->bias && p->bias->m.dtype != SRP_F32)
        return srp_err_set(e, SRP_EINVAL, "moe_route: the correction bias must be fp32");
    const size_t smem = (size_t)MOE_ROUTE_WARPS * (2 * E + p->n_group) * sizeof(float);
    moe_route_kernel<<<(T + MOE_ROUTE_WARPS - 1) / MOE_ROUTE_WARPS, MOE_ROUTE_WARPS * 32, smem,
                       cb->stream>>>(
        (const float *)logits.data, logits.ld, T, E, p->top_k, p->score == SRP_MOE_SIGMOID,
        p->n_group, p->topk_group, p->norm_topk, p->scale,
        p->bias ? (const float *)p->bias->m.data : NULL, (int32_t *)r->ids.data, r->ids.ld,
        (float *)r->weights.data, r->weights.ld);
    CUDA_LAUNCHED(e);
    moe_align_kernel<<<1, 1024, 0, cb->stream>>>((const int32_t *)r->ids.data,
                                                 (int64_t)T * p->top_k, E, r->index);
    CUDA_LAUNCHED(e);
    return 0;
}

static int aligned8(const void *p, int64_t ld, int64_t cols) {
    return ((uintptr_t)p % 16) == 0 && ld % 8 == 0 && cols % 8 == 0;
}

/* One projection of every tile: out = act(x . W_e^T) for the rows of expert e. */
static int rows_launch(cuda_backend *cb, int gated, const __nv_bfloat16 *x, int64_t ldx,
                       const int32_t *sorted, int top_k, const srp_weight *w, int64_t expert_rows,
                       int kdim, int ncols, int act, srp_mat out, const moe_index *ix,
                       int max_tiles, int64_t tokens, srp_err *e) {
    const int vec = aligned8(x, ldx, kdim) && aligned8(w->m.data, kdim, kdim);
    /* an expert gets each token once at most: no tile has more rows than the step has tokens;
     * the kernel reads its tile's row count rounded up to a power of two */
    int rows = 1;
    while (rows < tokens && rows < MOE_TILE_ROWS) rows *= 2;
    const size_t smem = (size_t)rows * ((kdim + 7) & ~7) * sizeof(__nv_bfloat16);
    void (*kern)(const __nv_bfloat16 *, int64_t, const int32_t *, int, const __nv_bfloat16 *,
                 int64_t, int, int, int, __nv_bfloat16 *, int64_t, const int32_t *, const int32_t *,
                 const int32_t *, const int32_t *) =
        gated ? (vec ? moe_rows_kernel<true, true> : moe_rows_kernel<true, false>)
              : (vec ? moe_rows_kernel<false, true> : moe_rows_kernel<false, false>);
    if (smem > 48u * 1024) {
        if (smem > (size_t)cb->prop.sharedMemPerBlockOptin)
            return srp_err_set(e, SRP_EUNSUPPORTED,
                               "moe: rows of %d elements do not fit in shared memory", kdim);
        /* set outside graph capture: the first step of every batch size runs eagerly */
        if (!cb->capturing)
            CUDA_TRY(cudaFuncSetAttribute((const void *)kern,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                     e);
    }
    const int per_block = MOE_WARPS * MOE_COLS_PER_WARP;
    const dim3 grid((unsigned)max_tiles, (unsigned)((ncols + per_block - 1) / per_block));
    kern<<<grid, MOE_WARPS * 32, smem, cb->stream>>>(
        x, ldx, sorted, top_k, (const __nv_bfloat16 *)w->m.data, expert_rows, kdim, ncols, act,
        (__nv_bfloat16 *)out.data, out.ld, ix->tile_e, ix->tile_r0, ix->tile_n, ix->n_tiles);
    CUDA_LAUNCHED(e);
    return 0;
}

/* Rows [off, off + n) of expert i's matrices (a view into the stacked weight). */
static srp_weight expert_view(const srp_weight *w, int i, int64_t rows) {
    srp_weight v = *w;
    v.m.data = (char *)w->m.data + (size_t)i * rows * w->m.ld * sizeof(__nv_bfloat16);
    v.m.rows = rows;
    v.owned = 0;
    return v;
}

/* The grouped-GEMM path: per-expert row counts to the host, then one cuBLAS GEMM per expert and
 * projection over its gathered rows. */
static int grouped_gemm(cuda_backend *cb, const srp_moe_experts_params *p, srp_mat x,
                        const moe_index *ix, int64_t P, srp_mat xg, srp_mat h, srp_mat y,
                        srp_err *e) {
    const int E = p->n_experts, H = p->hidden;
    const int64_t U = p->gated ? 2 * (int64_t)H : H;
    if (!cb->moe_host)
        CUDA_TRY(
            cudaMallocHost((void **)&cb->moe_host, (SRP_MOE_MAX_EXPERTS + 1) * sizeof(int32_t)), e);
    CUDA_TRY(cudaMemcpyAsync(cb->moe_host, ix->off, (size_t)(E + 1) * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, cb->stream),
             e);
    moe_gather_kernel<<<(unsigned)P, 256, 0, cb->stream>>>(
        (const __nv_bfloat16 *)x.data, x.ld, ix->sorted, p->top_k, (__nv_bfloat16 *)xg.data, xg.ld,
        (int)x.cols);
    CUDA_LAUNCHED(e);
    CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
    const int32_t *off = cb->moe_host;
    for (int i = 0; i < E; i++) {
        const int64_t n = off[i + 1] - off[i];
        if (n <= 0) continue;
        const srp_weight wu = expert_view(p->up, i, U);
        MOE_TRY(srp_cuda_gemm(cb, srp_mat_rows(xg, off[i], n), &wu, NULL,
                              srp_mat_rows(h, off[i], n), 1.0f, 0, e));
    }
    srp_mat act = srp_mat_rows(srp_mat_cols(h, 0, H), 0, P);
    if (p->gated)
        MOE_TRY(srp_cuda_activate_gated(cb, p->act, act, srp_mat_rows(srp_mat_cols(h, H, H), 0, P),
                                        act, e));
    else
        MOE_TRY(srp_cuda_activate(cb, p->act, act, e));
    for (int i = 0; i < E; i++) {
        const int64_t n = off[i + 1] - off[i];
        if (n <= 0) continue;
        const srp_weight wd = expert_view(p->down, i, y.cols);
        MOE_TRY(srp_cuda_gemm(cb, srp_mat_rows(act, off[i], n), &wd, NULL,
                              srp_mat_rows(y, off[i], n), 1.0f, 0, e));
    }
    return 0;
}

int srp_cuda_moe_experts(cuda_backend *cb, const srp_moe_experts_params *p,
                         const srp_moe_routing *r, srp_mat x, srp_mat out, float alpha,
                         int accumulate, srp_err *e) {
    const int E = p->n_experts, K = p->top_k, H = p->hidden;
    const int64_t T = x.rows, P = T * K, in = x.cols, U = p->gated ? 2 * (int64_t)H : H,
                  oc = out.cols;
    const srp_mat s = p->scratch;
    if (x.dtype != SRP_BF16 || (out.dtype != SRP_BF16 && out.dtype != SRP_F32) ||
        s.dtype != SRP_BF16 || p->up->m.dtype != SRP_BF16 || p->down->m.dtype != SRP_BF16 ||
        out.rows != T || p->up->m.rows != E * U || p->up->m.cols != in ||
        p->down->m.rows != E * oc || p->down->m.cols != H || s.rows < P || s.cols < in + U + oc ||
        r->ids.rows != T || r->ids.cols != K || r->ids.ld != K || r->weights.rows != T ||
        r->weights.cols != K || !r->index || K > SRP_MOE_MAX_TOP_K || E > SRP_MOE_MAX_EXPERTS)
        return srp_err_set(e, SRP_EINVAL,
                           "moe_experts: %d experts of %d into [%lld x %lld] from [%lld x %lld]: "
                           "shapes or types of the weights or buffers",
                           E, H, (long long)T, (long long)oc, (long long)T, (long long)in);
    if (T == 0) return 0;
    const moe_index ix = index_of(r->index, P, E);
    const srp_mat xg = srp_mat_rows(srp_mat_cols(s, 0, in), 0, P),
                  h = srp_mat_rows(srp_mat_cols(s, in, U), 0, P),
                  y = srp_mat_rows(srp_mat_cols(s, in + U, oc), 0, P);
    const cuda_batch *b = &cb->batch;
    const int decode_step = b->n_decode == b->n_seqs && T == b->n_seqs;
    if (cb->capturing || T <= MOE_DEVICE_TOKENS || decode_step) {
        const int max_tiles = (int)(P / MOE_TILE_ROWS + (P < E ? P : E));
        MOE_TRY(rows_launch(cb, p->gated, (const __nv_bfloat16 *)x.data, x.ld, ix.sorted, K, p->up,
                            U, (int)in, H, (int)p->act, h, &ix, max_tiles, T, e));
        MOE_TRY(rows_launch(cb, 0, (const __nv_bfloat16 *)h.data, h.ld, NULL, K, p->down, oc, H,
                            (int)oc, -1, y, &ix, max_tiles, T, e));
    } else {
        MOE_TRY(grouped_gemm(cb, p, x, &ix, P, xg, h, y, e));
    }
    moe_combine_kernel<<<(unsigned)T, 256, 0, cb->stream>>>(
        (const __nv_bfloat16 *)y.data, y.ld, ix.inv, (const float *)r->weights.data, r->weights.ld,
        K, (int)oc, alpha, out.data, out.dtype == SRP_BF16, out.ld, accumulate);
    CUDA_LAUNCHED(e);
    return 0;
}
