/* Attention of the CUDA backend: the paged KV-cache write, causal GQA prefill on tensor cores
 * (flash-attention-2 style), split-K decode over the paged cache (flash-decoding) with its
 * combine, and a plain path for head sizes and alignments the tensor-core kernels do not take.
 *
 * Every kernel reads K and V from the pages, after the write kernel has put this step's tokens
 * there: a sequence's own tokens and its past (chunked prefill) take one path, and nothing
 * depends on where a block lives.
 *
 * Numerics (as the CPU reference, up to bf16 rounding): scores and softmax in fp32, with the
 * scale folded into log2(e) so exp2 does the exponent; P is rounded to bf16 for the P.V product
 * on tensor cores (as flash-attention does) while the row sums use the unrounded fp32 P; O is
 * accumulated in fp32 and rounded to bf16 once.
 *
 * Rows of the tensor-core kernels are (token, query head) pairs of one KV head: row p of a
 * sequence is token p / G, head kv_head * G + p % G (G = heads / kv_heads). The G heads that
 * share a KV head therefore share every K/V tile the kernel loads. */
#include <math.h>
#include <stdint.h>

/* The engine headers carry no extern "C" guards of their own. */
extern "C" {
#include "backend.h"
}
#include "cuda_ops.h"

typedef __nv_bfloat16 bf16;

#define ATTN_BN 64 /* keys per K/V tile of the tensor-core kernels */

/* Prefill: warps of 16 rows each; K/V tiles double-buffered. */
#ifndef ATTN_PF_WARPS
#define ATTN_PF_WARPS 8
#endif
#define PF_WARPS   ATTN_PF_WARPS
#define PF_THREADS (32 * PF_WARPS)
#define PF_BM      (16 * PF_WARPS)
#define PF_STAGES  2

/* Decode: one row group of 16 (the G query heads of the token, padded), 4 warps that each take
 * 16 keys of every 64-key tile, 3 tiles in flight per block. */
#define DC_WARPS          4
#define DC_THREADS        (32 * DC_WARPS)
#define DC_STAGES         3
#define DC_KEYS_PER_SPLIT 256 /* below this a split's prologue and combine stop paying off */
#define DC_MAX_SPLITS     64

#define LOG2E 1.4426950408889634f

typedef struct attn_args {
    const bf16 *q;
    bf16 *out;
    int64_t ldq, ldo;
    const bf16 *kc, *vc; /* the caches */
    int bs, H, KV, G, D;
    float scale_log2; /* scale * log2(e) */
    const int32_t *seq_start, *n_past, *block_table, *token_seq, *token_pos;
    int max_blocks, n_seqs, n_tokens;
    int n_splits, n_rg; /* decode: key splits, row groups of 16 per KV head */
    float *ws_o;        /* [n_splits][n_seqs][H][D] unnormalised partial O */
    float *ws_ml;       /* [n_splits][n_seqs][H][2] running max (log2 units) and row sum */
} attn_args;

/* ---- small PTX wrappers -------------------------------------------------------------------- */

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte async copy; src_bytes = 0 fills the destination with zeros (keys past the context). */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

static __device__ __forceinline__ void cp_async_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* The group count is an immediate of the instruction, hence the template. */
template <int N> static __device__ __forceinline__ void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

static __device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t *r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t *r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col) */
static __device__ __forceinline__ void mma_16816(float *c, const uint32_t *a, uint32_t b0,
                                                 uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* Byte offset of 16-byte chunk c of row r in a tile of rows of D bf16. The chunk index is XORed
 * with the row's low 3 bits, so the 8 rows an ldmatrix phase reads at one logical column land in
 * 8 different bank groups (rows are a multiple of 128 bytes apart, which would otherwise put
 * them all in one). Needs D / 8 >= 8 chunks per row, i.e. D in {64, 128}. */
static __device__ __forceinline__ uint32_t swz(int r, int c, int D) {
    return (uint32_t)(r * D + ((c ^ (r & 7)) << 3)) * 2u;
}

static __device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

static __device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* ---- the paged KV write -------------------------------------------------------------------- */

/* One block per token: copies its k and v rows (kv_heads * head_dim elements) to the token's slot
 * in its sequence's pages. vec: rows and bases are 16-byte aligned, so copy 8 elements at a
 * time. */
static __global__ void attn_kv_write_kernel(attn_args a, const bf16 *k, int64_t ldk, const bf16 *v,
                                            int64_t ldv, int vec) {
    const int t = blockIdx.x;
    const int s = a.token_seq[t], pos = a.token_pos[t];
    const int b = pos / a.bs;
    if (b >= a.max_blocks) return; /* rejected on the host when it can see the batch */
    const int64_t blk = a.block_table[(int64_t)s * a.max_blocks + b];
    const int n = a.KV * a.D;
    const int64_t dst = (blk * a.bs + pos % a.bs) * n;
    const bf16 *ks = k + t * ldk, *vs = v + t * ldv;
    if (vec) {
        for (int i = threadIdx.x; i < n / 8; i += blockDim.x) {
            ((uint4 *)(a.kc + dst))[i] = ((const uint4 *)ks)[i];
            ((uint4 *)(a.vc + dst))[i] = ((const uint4 *)vs)[i];
        }
    } else {
        bf16 *kd = (bf16 *)a.kc + dst, *vd = (bf16 *)a.vc + dst;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            kd[i] = ks[i];
            vd[i] = vs[i];
        }
    }
}

/* ---- tensor-core building blocks ----------------------------------------------------------- */

/* Queues the copy of keys [k0, k0 + ATTN_BN) of one KV head from the pages into a K and a V tile
 * (swizzled rows); keys at or past ctx are zero-filled, so the P.V product never meets whatever
 * lies beyond the context (0 * NaN would poison a row). */
template <int D, int NT>
static __device__ __forceinline__ void load_kv_tile(uint32_t sK, uint32_t sV, const attn_args *a,
                                                    const int32_t *table, int kvh, int k0,
                                                    int ctx) {
    constexpr int CH = D / 8;
    static_assert(NT % CH == 0 && (ATTN_BN * CH) % NT == 0, "tile rows must split evenly");
    const int c = threadIdx.x % CH;
#pragma unroll
    for (int it = 0; it < ATTN_BN * CH / NT; it++) {
        const int r = threadIdx.x / CH + it * (NT / CH), j = k0 + r;
        const bf16 *ks = a->kc, *vs = a->vc;
        int n = 0;
        if (j < ctx) {
            const int64_t row = (int64_t)__ldg(table + j / a->bs) * a->bs + j % a->bs;
            const int64_t off = (row * a->KV + kvh) * D + c * 8;
            ks += off;
            vs += off;
            n = 16;
        }
        cp_async16(sK + swz(r, c, D), ks, n);
        cp_async16(sV + swz(r, c, D), vs, n);
    }
}

/* The A fragments of a warp's 16 query rows (starting at row r0 of a swizzled Q tile). */
template <int D>
static __device__ __forceinline__ void load_q_frags(uint32_t sQ, int r0, uint32_t (*qf)[4]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        ldsm_x4(sQ + swz(r0 + (lane & 15), kk * 2 + (lane >> 4), D), qf[kk]);
}

/* One warp, 16 query rows against NK8 * 8 keys of a K/V tile (tile rows kr0 ..): S = Q K^T,
 * masking (key > row position) when `mask`, the online-softmax update of the running max m, the
 * per-thread partial row sums l and the accumulator o, then O += P V.
 *
 * Register layout (mma.m16n8k16): lane = 4 * g + tg holds rows g and g + 8 of every 16x8 tile,
 * columns 2 tg and 2 tg + 1; pos0 and pos1 are the positions of those two rows. */
template <int D, int NK8>
static __device__ __forceinline__ void
attn_warp_tile(const uint32_t (*qf)[4], uint32_t sK, uint32_t sV, int kr0, int key0, int pos0,
               int pos1, bool mask, float sl2, float *m, float *l, float (*o)[4]) {
    const int lane = threadIdx.x & 31;
    float s[NK8][4];
#pragma unroll
    for (int nt = 0; nt < NK8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;

        /* S = Q K^T: K rows are the B operand's columns, so plain ldmatrix gives B; one x4 load
         * covers two 8-key tiles of one 16-wide k step. */
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
        for (int np = 0; np < NK8 / 2; np++) {
            uint32_t b[4];
            const int r = kr0 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
            ldsm_x4(sK + swz(r, kk * 2 + ((lane >> 3) & 1), D), b);
            mma_16816(s[2 * np], qf[kk], b[0], b[1]);
            mma_16816(s[2 * np + 1], qf[kk], b[2], b[3]);
        }
    }

    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NK8; nt++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int key = key0 + nt * 8 + 2 * (lane & 3) + e;
            float x0 = s[nt][e] * sl2, x1 = s[nt][2 + e] * sl2;
            if (mask) {
                if (key > pos0) x0 = -INFINITY;
                if (key > pos1) x1 = -INFINITY;
            }
            s[nt][e] = x0;
            s[nt][2 + e] = x1;
            mx0 = fmaxf(mx0, x0);
            mx1 = fmaxf(mx1, x1);
        }
    }
    /* the 4 lanes of a quad share a row */
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m[0], mx0), mn1 = fmaxf(m[1], mx1);
    /* a row that has seen only masked keys keeps m = -inf; subtracting 0 instead keeps
     * exp2(-inf - -inf) = NaN out of it */
    const float b0 = mn0 == -INFINITY ? 0.0f : mn0, b1 = mn1 == -INFINITY ? 0.0f : mn1;
    const float al0 = exp2f(m[0] - b0), al1 = exp2f(m[1] - b1);
    m[0] = mn0;
    m[1] = mn1;
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < NK8; nt++) {
        s[nt][0] = exp2f(s[nt][0] - b0);
        s[nt][1] = exp2f(s[nt][1] - b0);
        s[nt][2] = exp2f(s[nt][2] - b1);
        s[nt][3] = exp2f(s[nt][3] - b1);
        rs0 += s[nt][0] + s[nt][1];
        rs1 += s[nt][2] + s[nt][3];
    }
    l[0] = l[0] * al0 + rs0;
    l[1] = l[1] * al1 + rs1;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        o[dt][0] *= al0;
        o[dt][1] *= al0;
        o[dt][2] *= al1;
        o[dt][3] *= al1;
    }

    /* O += P V: the S accumulators of two adjacent 8-key tiles are exactly the A fragment of a
     * 16-key step; V rows are keys, so the transposing ldmatrix gives the B operand. */
#pragma unroll
    for (int kk = 0; kk < NK8 / 2; kk++) {
        uint32_t pa[4];
        pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            uint32_t b[4];
            const int r = kr0 + kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
            ldsm_x4_t(sV + swz(r, dp * 2 + (lane >> 4), D), b);
            mma_16816(o[2 * dp], pa, b[0], b[1]);
            mma_16816(o[2 * dp + 1], pa, b[2], b[3]);
        }
    }
}

/* ---- prefill --------------------------------------------------------------------------------- */

/* grid (kv_heads, row tiles): blockIdx.y numbers the PF_BM-row tiles of all sequences of length
 * >= 2 in batch order (found by a warp scan over the sequence lengths, so nothing is prepared on
 * the host and a graph stays valid); within a sequence the last (longest-context) tile comes
 * first. Blocks past the last tile return. */
template <int D>
static __global__ void __launch_bounds__(PF_THREADS, 8 / PF_WARPS)
    attn_prefill_kernel(attn_args a) {
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ int sh_seq, sh_local;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kvh = blockIdx.x, G = a.G;

    if (warp == 0) {
        const int target = blockIdx.y;
        int base = 0, fs = -1, fl = 0;
        for (int s0 = 0; s0 < a.n_seqs; s0 += 32) {
            const int s = s0 + lane;
            int nt = 0;
            if (s < a.n_seqs) {
                const int len = a.seq_start[s + 1] - a.seq_start[s];
                if (len >= 2) nt = (len * G + PF_BM - 1) / PF_BM;
            }
            int inc = nt;
            for (int o = 1; o < 32; o <<= 1) {
                const int y = __shfl_up_sync(0xffffffffu, inc, o);
                if (lane >= o) inc += y;
            }
            const int total = __shfl_sync(0xffffffffu, inc, 31);
            if (target < base + total) {
                const unsigned hit = __ballot_sync(0xffffffffu, base + inc > target);
                const int L = __ffs(hit) - 1;
                const int incL = __shfl_sync(0xffffffffu, inc, L);
                const int ntL = __shfl_sync(0xffffffffu, nt, L);
                fs = s0 + L;
                fl = target - (base + incL - ntL);
                break;
            }
            base += total;
        }
        if (lane == 0) {
            sh_seq = fs;
            sh_local = fl;
        }
    }
    __syncthreads();
    const int s = sh_seq;
    if (s < 0) return;

    const int t0 = a.seq_start[s], len = a.seq_start[s + 1] - t0, past = a.n_past[s];
    const int ntile = (len * G + PF_BM - 1) / PF_BM;
    const int p0 = (ntile - 1 - sh_local) * PF_BM; /* first row of this tile */
    const int tok_last = min(len - 1, (p0 + PF_BM - 1) / G);
    const int ctx = past + tok_last + 1; /* keys this tile needs */
    const int n_kt = (ctx + ATTN_BN - 1) / ATTN_BN;
    const int32_t *table = a.block_table + (int64_t)s * a.max_blocks;

    constexpr int CH = D / 8;
    const uint32_t sQ = smem_u32(smem);
    const uint32_t sKV = sQ + PF_BM * D * 2;
    const uint32_t stage_bytes = 2 * ATTN_BN * D * 2;

    for (int i = threadIdx.x; i < PF_BM * CH; i += PF_THREADS) {
        const int r = i / CH, c = i % CH, p = p0 + r, tok = p / G;
        const bf16 *src = a.q;
        int n = 0;
        if (tok < len) {
            src = a.q + (int64_t)(t0 + tok) * a.ldq + (int64_t)(kvh * G + p - tok * G) * D + c * 8;
            n = 16;
        }
        cp_async16(sQ + swz(r, c, D), src, n);
    }
    cp_async_commit();
    load_kv_tile<D, PF_THREADS>(sKV, sKV + ATTN_BN * D * 2, &a, table, kvh, 0, ctx);
    cp_async_commit();

    /* this thread's two rows, and the span of its warp's 16 rows */
    const int rA = warp * 16 + (lane >> 2), rB = rA + 8;
    const int tokA = (p0 + rA) / G, tokB = (p0 + rB) / G;
    const int posA = tokA < len ? past + tokA : -1, posB = tokB < len ? past + tokB : -1;
    const int wtok0 = (p0 + warp * 16) / G;
    const bool wactive = wtok0 < len;
    const int wpos_min = past + wtok0;
    const int wpos_max = past + min(len - 1, (p0 + warp * 16 + 15) / G);

    uint32_t qf[D / 16][4];
    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    for (int kt = 0; kt < n_kt; kt++) {
        cp_async_wait<0>();
        __syncthreads(); /* tile kt has landed, and every warp is done with tile kt - 1 */
        if (kt + 1 < n_kt) {
            const uint32_t st = sKV + ((kt + 1) % PF_STAGES) * stage_bytes;
            load_kv_tile<D, PF_THREADS>(st, st + ATTN_BN * D * 2, &a, table, kvh,
                                        (kt + 1) * ATTN_BN, ctx);
        }
        cp_async_commit();
        if (kt == 0 && wactive) load_q_frags<D>(sQ, warp * 16, qf);
        const int k0 = kt * ATTN_BN;
        /* a warp whose rows all sit before this tile only has masked keys here */
        if (wactive && k0 <= wpos_max) {
            const uint32_t st = sKV + (kt % PF_STAGES) * stage_bytes;
            attn_warp_tile<D, ATTN_BN / 8>(qf, st, st + ATTN_BN * D * 2, 0, k0, posA, posB,
                                           k0 + ATTN_BN - 1 > wpos_min, a.scale_log2, m, l, o);
        }
    }
    cp_async_wait<0>();

    if (!wactive) return;
    float l0 = l[0], l1 = l[1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    const int col = 2 * (lane & 3);
    if (tokA < len) {
        bf16 *dst =
            a.out + (int64_t)(t0 + tokA) * a.ldo + (int64_t)(kvh * G + p0 + rA - tokA * G) * D;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
            *(uint32_t *)(dst + dt * 8 + col) = pack_bf16(o[dt][0] * inv0, o[dt][1] * inv0);
    }
    if (tokB < len) {
        bf16 *dst =
            a.out + (int64_t)(t0 + tokB) * a.ldo + (int64_t)(kvh * G + p0 + rB - tokB * G) * D;
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++)
            *(uint32_t *)(dst + dt * 8 + col) = pack_bf16(o[dt][2] * inv1, o[dt][3] * inv1);
    }
}

/* ---- decode ---------------------------------------------------------------------------------- */

/* grid (n_splits, kv_heads * n_rg, n_seqs); only sequences of length 1. One block: 16 query
 * heads of one KV head (row group rg of its G heads) against one contiguous share of the
 * context's 64-key tiles. With one split it writes the output; with several, its unnormalised O
 * with the max and sum for attn_combine_kernel. */
template <int D>
static __global__ void __launch_bounds__(DC_THREADS) attn_decode_kernel(attn_args a) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int s = blockIdx.z;
    const int t0 = a.seq_start[s];
    if (a.seq_start[s + 1] - t0 != 1) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kvh = blockIdx.y / a.n_rg, rg = blockIdx.y - kvh * a.n_rg;
    const int pos = a.n_past[s], ctx = pos + 1;
    const int n_kt = (ctx + ATTN_BN - 1) / ATTN_BN;
    const int per = (n_kt + a.n_splits - 1) / a.n_splits;
    const int kt0 = blockIdx.x * per, kt1 = min(n_kt, kt0 + per);
    const int g0 = rg * 16, nrows = min(16, a.G - g0);
    const int head0 = kvh * a.G + g0;
    const int64_t prow = ((int64_t)blockIdx.x * a.n_seqs + s) * a.H + head0;
    if (kt0 >= kt1) { /* a split past this sequence's context: contributes nothing */
        if (threadIdx.x < nrows) {
            a.ws_ml[(prow + threadIdx.x) * 2] = -INFINITY;
            a.ws_ml[(prow + threadIdx.x) * 2 + 1] = 0.0f;
        }
        return;
    }
    const int32_t *table = a.block_table + (int64_t)s * a.max_blocks;

    constexpr int CH = D / 8;
    const uint32_t sQ = smem_u32(smem);
    const uint32_t sKV = sQ + 16 * D * 2;
    const uint32_t stage_bytes = 2 * ATTN_BN * D * 2;

    for (int i = threadIdx.x; i < 16 * CH; i += DC_THREADS) {
        const int r = i / CH, c = i % CH;
        const bf16 *src = a.q;
        int n = 0;
        if (r < nrows) {
            src = a.q + (int64_t)t0 * a.ldq + (int64_t)(head0 + r) * D + c * 8;
            n = 16;
        }
        cp_async16(sQ + swz(r, c, D), src, n);
    }
    cp_async_commit();
#pragma unroll
    for (int st = 0; st < DC_STAGES - 1; st++) {
        if (kt0 + st < kt1) {
            const uint32_t b = sKV + st * stage_bytes;
            load_kv_tile<D, DC_THREADS>(b, b + ATTN_BN * D * 2, &a, table, kvh,
                                        (kt0 + st) * ATTN_BN, ctx);
        }
        cp_async_commit();
    }

    uint32_t qf[D / 16][4];
    float o[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    for (int kt = kt0; kt < kt1; kt++) {
        const int i = kt - kt0;
        cp_async_wait<DC_STAGES - 2>();
        __syncthreads(); /* tile i has landed; the stage refilled below was last read at i - 1 */
        {
            const int nk = kt + DC_STAGES - 1;
            if (nk < kt1) {
                const uint32_t b = sKV + ((i + DC_STAGES - 1) % DC_STAGES) * stage_bytes;
                load_kv_tile<D, DC_THREADS>(b, b + ATTN_BN * D * 2, &a, table, kvh, nk * ATTN_BN,
                                            ctx);
            }
            cp_async_commit();
        }
        if (i == 0) load_q_frags<D>(sQ, 0, qf);
        const int k0 = kt * ATTN_BN + warp * 16;
        if (k0 <= pos) {
            const uint32_t b = sKV + (i % DC_STAGES) * stage_bytes;
            attn_warp_tile<D, 2>(qf, b, b + ATTN_BN * D * 2, warp * 16, k0, pos, pos, k0 + 15 > pos,
                                 a.scale_log2, m, l, o);
        }
    }
    cp_async_wait<0>();
    __syncthreads(); /* the stages are free: reuse them to merge the 4 warps */

    float *sO = (float *)(smem + 16 * D * 2); /* [warp][16][D] */
    float *sM = sO + DC_WARPS * 16 * D, *sL = sM + DC_WARPS * 16;
    float l0 = l[0], l1 = l[1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const int rA = lane >> 2, col = 2 * (lane & 3);
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        float *pa = sO + (warp * 16 + rA) * D + dt * 8 + col, *pb = pa + 8 * D;
        pa[0] = o[dt][0];
        pa[1] = o[dt][1];
        pb[0] = o[dt][2];
        pb[1] = o[dt][3];
    }
    if ((lane & 3) == 0) {
        sM[warp * 16 + rA] = m[0];
        sM[warp * 16 + rA + 8] = m[1];
        sL[warp * 16 + rA] = l0;
        sL[warp * 16 + rA + 8] = l1;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < nrows * D; idx += DC_THREADS) {
        const int r = idx / D, d = idx - r * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DC_WARPS; w++) M = fmaxf(M, sM[w * 16 + r]);
        /* warp 0's first key is in range, so M is finite */
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int w = 0; w < DC_WARPS; w++) {
            const float wt = exp2f(sM[w * 16 + r] - M);
            L += wt * sL[w * 16 + r];
            O += wt * sO[(w * 16 + r) * D + d];
        }
        if (a.n_splits == 1) {
            a.out[(int64_t)t0 * a.ldo + (int64_t)(head0 + r) * D + d] = __float2bfloat16(O / L);
        } else {
            a.ws_o[(prow + r) * D + d] = O;
            if (d == 0) {
                a.ws_ml[(prow + r) * 2] = M;
                a.ws_ml[(prow + r) * 2 + 1] = L;
            }
        }
    }
}

/* One warp per (sequence, head) of the decode sequences: merges the splits' partial results,
 * O = sum_i 2^(m_i - M) O_i / sum_i 2^(m_i - M) l_i. The lanes first compute 32 splits' weights
 * at once and pass them round by shuffles, so the loop over splits has no dependent load and
 * several splits' rows are in flight (one split at a time took ~1 us each at 64 splits). */
static __global__ void attn_combine_kernel(attn_args a) {
    const int lane = threadIdx.x & 31;
    const int64_t wid = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (wid >= (int64_t)a.n_seqs * a.H) return;
    const int s = (int)(wid / a.H), h = (int)(wid - (int64_t)s * a.H);
    const int t0 = a.seq_start[s];
    if (a.seq_start[s + 1] - t0 != 1) return;
    const int64_t stride = (int64_t)a.n_seqs * a.H; /* rows between splits */
    float M = -INFINITY;
    for (int i = lane; i < a.n_splits; i += 32) M = fmaxf(M, a.ws_ml[(i * stride + wid) * 2]);
    M = warp_max(M);
    float L = 0.0f;
    float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
    for (int i0 = 0; i0 < a.n_splits; i0 += 32) {
        float w = 0.0f;
        if (i0 + lane < a.n_splits) {
            const float *ml = a.ws_ml + ((i0 + lane) * stride + wid) * 2;
            w = exp2f(ml[0] - M); /* 0 for an empty split (m = -inf) */
            L += w * ml[1];
        }
        const int n = min(32, a.n_splits - i0);
#pragma unroll 4
        for (int j = 0; j < n; j++) {
            const float wj = __shfl_sync(0xffffffffu, w, j);
            const float *src = a.ws_o + ((i0 + j) * stride + wid) * a.D;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int d = lane + 32 * k;
                /* an empty split's O was never written: select, not multiply, so its stale
                 * contents (NaN, say) cannot leak in */
                if (d < a.D) acc[k] += wj != 0.0f ? wj * src[d] : 0.0f;
            }
        }
    }
    L = warp_sum(L);
    const float inv = 1.0f / L;
    bf16 *dst = a.out + (int64_t)t0 * a.ldo + (int64_t)h * a.D;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int d = lane + 32 * k;
        if (d < a.D) dst[d] = __float2bfloat16(acc[k] * inv);
    }
}

/* ---- any head size ----------------------------------------------------------------------------
 */

/* One warp per (token, head), for head sizes and alignments the tensor-core kernels do not take
 * (head_dim <= 256): each lane scores one key of a 32-key chunk, then the lanes, each owning
 * dims lane + 32 j, accumulate P V. Scalar loads; correct for any layout, not fast. */
static __global__ void attn_generic_kernel(attn_args a) {
    __shared__ float sq[4][256];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t wid = (int64_t)blockIdx.x * 4 + warp;
    if (wid >= (int64_t)a.n_tokens * a.H) return;
    const int t = (int)(wid / a.H), h = (int)(wid - (int64_t)t * a.H);
    const int s = a.token_seq[t], pos = a.token_pos[t], kvh = h / a.G, D = a.D;
    const int32_t *table = a.block_table + (int64_t)s * a.max_blocks;
    const bf16 *qr = a.q + (int64_t)t * a.ldq + (int64_t)h * D;
    for (int d = lane; d < D; d += 32) sq[warp][d] = __bfloat162float(qr[d]) * a.scale_log2;
    __syncwarp();

    float m = -INFINITY, l = 0.0f;
    float acc[8] = { 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
    for (int j0 = 0; j0 <= pos; j0 += 32) {
        const int j = j0 + lane;
        float sc = -INFINITY;
        int64_t off = 0;
        if (j <= pos) {
            off = (((int64_t)table[j / a.bs] * a.bs + j % a.bs) * a.KV + kvh) * D;
            const bf16 *kr = a.kc + off;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += sq[warp][d] * __bfloat162float(kr[d]);
            sc = dot;
        }
        const float mn = fmaxf(m, warp_max(sc)); /* lane 0's key is always in range */
        const float al = exp2f(m - mn);
        const float p = exp2f(sc - mn);
        l = l * al + warp_sum(p);
        m = mn;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[i] *= al;
        const int nv = min(32, pos + 1 - j0);
        for (int jj = 0; jj < nv; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const int64_t oj = __shfl_sync(0xffffffffu, off, jj);
            const bf16 *vr = a.vc + oj;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const int d = lane + 32 * i;
                if (d < D) acc[i] += pj * __bfloat162float(vr[d]);
            }
        }
    }
    bf16 *dst = a.out + (int64_t)t * a.ldo + (int64_t)h * D;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int d = lane + 32 * i;
        if (d < D) dst[d] = __float2bfloat16(acc[i] * inv);
    }
}

/* ---- host side --------------------------------------------------------------------------------
 */

static int aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

static size_t prefill_smem(int D) {
    return (size_t)(PF_BM * D + PF_STAGES * 2 * ATTN_BN * D) * 2;
}

static size_t decode_smem(int D) {
    return (size_t)(16 * D + DC_STAGES * 2 * ATTN_BN * D) * 2;
}

/* Raises a kernel's dynamic shared-memory limit once (a benign race if two threads do it), and
 * asks for the largest shared-memory carve-out: these kernels live in shared memory, and a
 * smaller carve-out could leave room for fewer resident blocks than the occupancy query (which
 * the decode split count relies on) assumes. */
static int set_smem(const void *fn, size_t bytes, int *done, srp_err *e) {
    if (*done) return 0;
    CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), e);
    CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared),
             e);
    *done = 1;
    return 0;
}

template <int D>
static int launch_prefill(cuda_backend *cb, const attn_args *a, int n_tiles, srp_err *e) {
    static int done;
    const size_t sm = prefill_smem(D);
    int rc = set_smem((const void *)attn_prefill_kernel<D>, sm, &done, e);
    if (rc) return rc;
    attn_prefill_kernel<D><<<dim3(a->KV, n_tiles), PF_THREADS, sm, cb->stream>>>(*a);
    CUDA_LAUNCHED(e);
    return 0;
}

/* Raises the decode kernel's shared-memory limit and reads how many of its blocks fit on one
 * multiprocessor, once per head size. */
template <int D> static int decode_blocks_per_sm(int *out, srp_err *e) {
    static int done, per_sm;
    if (!done) {
        int rc = set_smem((const void *)attn_decode_kernel<D>, decode_smem(D), &done, e);
        if (rc) return rc;
        CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attn_decode_kernel<D>,
                                                               DC_THREADS, decode_smem(D)),
                 e);
    }
    *out = per_sm > 0 ? per_sm : 1;
    return 0;
}

template <int D> static int launch_decode(cuda_backend *cb, const attn_args *a, srp_err *e) {
    attn_decode_kernel<D>
        <<<dim3(a->n_splits, a->KV * a->n_rg, a->n_seqs), DC_THREADS, decode_smem(D), cb->stream>>>(
            *a);
    CUDA_LAUNCHED(e);
    return 0;
}

/* Key splits for the decode kernel. Decode is a stream over the cache, so what matters is that
 * enough blocks run at once to keep memory busy, and that none waits for a second wave: split
 * only as far as one wave of resident blocks holds (no split shorter than DC_KEYS_PER_SPLIT keys,
 * no more partials than the workspace holds). Run 1 (H100, batch 32 at 4K): 5 splits, 4.9 waves
 * of short blocks, took 84% of the roofline; the stream of one long block per (sequence, KV
 * head) avoids both the waves' fixed costs and the combine. The count never changes what is
 * computed, only how it is divided, so a graph captured with one count stays correct as contexts
 * grow. */
static int choose_splits(cuda_backend *cb, int n_dec, int n_rg, int per_sm,
                         const srp_attn_params *p, srp_err *e) {
    const cuda_batch *b = &cb->batch;
    const int sms = cb->prop.multiProcessorCount > 0 ? cb->prop.multiProcessorCount : 132;
    const int64_t blocks = (int64_t)n_dec * p->kv_heads * n_rg;
    int64_t n = (int64_t)sms * per_sm / blocks;
    const int64_t by_len = (srp_cuda_split_ctx(cb) + DC_KEYS_PER_SPLIT - 1) / DC_KEYS_PER_SPLIT;
    if (n > by_len) n = by_len;
    if (n > DC_MAX_SPLITS) n = DC_MAX_SPLITS;
    const int64_t row_floats = (int64_t)b->n_seqs * p->heads * (p->head_dim + 2);
    const int64_t cap = (int64_t)(SRP_ATTN_WS_BYTES / sizeof(float)) / row_floats;
    if (n > cap) n = cap;
    if (n <= 1) return 1;
    if (!cb->attn_ws) {
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        CUDA_TRY(cudaStreamIsCapturing(cb->stream, &cs), e);
        if (cs != cudaStreamCaptureStatusNone) return 1; /* no allocation inside a capture */
        CUDA_TRY(cudaMalloc((void **)&cb->attn_ws, SRP_ATTN_WS_BYTES), e);
    }
    return (int)n;
}

static int check_mat(const char *name, srp_mat m, int64_t rows, int64_t cols, srp_err *e) {
    if (m.dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "attention: %s is %s, expected BF16", name,
                           srp_dtype_name(m.dtype));
    if (!m.data) return srp_err_set(e, SRP_EINVAL, "attention: %s has no data", name);
    if (m.cols != cols || m.rows < rows || m.ld < m.cols)
        return srp_err_set(e, SRP_EINVAL,
                           "attention: %s is %lld x %lld (ld %lld), expected %lld x %lld", name,
                           (long long)m.rows, (long long)m.cols, (long long)m.ld, (long long)rows,
                           (long long)cols);
    return 0;
}

extern "C" int srp_cuda_attention(cuda_backend *cb, const srp_attn_params *p, srp_mat q, srp_mat k,
                                  srp_mat v, const srp_kv_layer *kv, srp_mat out, srp_err *e) {
    const cuda_batch *b = &cb->batch;
    const int H = p->heads, KV = p->kv_heads, D = p->head_dim;
    if (H <= 0 || KV <= 0 || H % KV)
        return srp_err_set(e, SRP_EINVAL, "attention: %d heads over %d KV heads", H, KV);
    if (D <= 0) return srp_err_set(e, SRP_EINVAL, "attention: head_dim %d", D);
    if (D > 256) return srp_err_set(e, SRP_EUNSUPPORTED, "attention: head_dim %d (at most 256)", D);
    int rc;
    if ((rc = check_mat("q", q, b->n_tokens, (int64_t)H * D, e)) ||
        (rc = check_mat("k", k, b->n_tokens, (int64_t)KV * D, e)) ||
        (rc = check_mat("v", v, b->n_tokens, (int64_t)KV * D, e)) ||
        (rc = check_mat("out", out, b->n_tokens, (int64_t)H * D, e)))
        return rc;
    if (kv->dtype != SRP_BF16)
        return srp_err_set(e, SRP_EUNSUPPORTED, "attention: KV cache of type %s (BF16 only)",
                           srp_dtype_name(kv->dtype));
    if (!kv->k || !kv->v || kv->block_size <= 0)
        return srp_err_set(e, SRP_EINVAL, "attention: KV cache without pages (block size %d)",
                           kv->block_size);
    /* cb->host is the engine's batch (host arrays) when begin_step keeps it; the device table
     * pointer may be a fixed array that is set even when this batch has no table. */
    const srp_batch *hb = &cb->host;
    const int have_host = hb->seq_start && hb->n_past && hb->n_seqs == b->n_seqs;
    if (!b->block_table || (have_host && !hb->block_table) || b->max_blocks <= 0)
        return srp_err_set(e, SRP_EINVAL, "attention: batch has no block table");
    if (b->n_tokens == 0) return 0;

    /* With the host copy of the batch, reject positions past the block table (the CPU backend's
     * check) and count the work of each kind, so no kernel is launched for nothing. */
    int n_dec = b->n_seqs, n_pf_tiles = -1;
    const int G = H / KV;
    if (have_host) {
        n_dec = 0;
        n_pf_tiles = 0;
        for (int s = 0; s < hb->n_seqs; s++) {
            const int len = hb->seq_start[s + 1] - hb->seq_start[s];
            if (len <= 0) continue;
            const int last = hb->n_past[s] + len - 1;
            if (last / kv->block_size >= b->max_blocks)
                return srp_err_set(e, SRP_EINVAL,
                                   "attention: position %d of sequence %d beyond the block table "
                                   "(%d blocks of %d)",
                                   last, s, b->max_blocks, kv->block_size);
            if (len == 1)
                n_dec++;
            else
                n_pf_tiles += (int)(((int64_t)len * G + PF_BM - 1) / PF_BM);
        }
    } else if (b->max_query_len >= 2) {
        const int64_t bound = ((int64_t)b->n_tokens * G + PF_BM - 1) / PF_BM + b->n_seqs;
        n_pf_tiles = bound > INT32_MAX ? INT32_MAX : (int)bound;
    } else {
        n_pf_tiles = 0;
    }

    attn_args a;
    a.q = (const bf16 *)q.data;
    a.out = (bf16 *)out.data;
    a.ldq = q.ld;
    a.ldo = out.ld;
    a.kc = (const bf16 *)kv->k;
    a.vc = (const bf16 *)kv->v;
    a.bs = kv->block_size;
    a.H = H;
    a.KV = KV;
    a.G = G;
    a.D = D;
    a.scale_log2 = p->scale * LOG2E;
    a.seq_start = b->seq_start;
    a.n_past = b->n_past;
    a.block_table = b->block_table;
    a.token_seq = b->token_seq;
    a.token_pos = b->token_pos;
    a.max_blocks = b->max_blocks;
    a.n_seqs = b->n_seqs;
    a.n_tokens = b->n_tokens;
    a.n_splits = 1;
    a.n_rg = (G + 15) / 16;
    a.ws_o = a.ws_ml = NULL;

    /* 1. this step's keys and values into the pages */
    const int vec = (KV * D) % 8 == 0 && k.ld % 8 == 0 && v.ld % 8 == 0 && aligned16(k.data) &&
                    aligned16(v.data) && aligned16(kv->k) && aligned16(kv->v);
    attn_kv_write_kernel<<<b->n_tokens, 128, 0, cb->stream>>>(a, (const bf16 *)k.data, k.ld,
                                                              (const bf16 *)v.data, v.ld, vec);
    CUDA_LAUNCHED(e);

    /* 2. attention over the pages */
    const int fast = (D == 64 || D == 128) && aligned16(q.data) && aligned16(out.data) &&
                     q.ld % 8 == 0 && out.ld % 2 == 0 && aligned16(kv->k) && aligned16(kv->v);
    if (!fast) {
        const int64_t warps = (int64_t)b->n_tokens * H;
        attn_generic_kernel<<<(unsigned)((warps + 3) / 4), 128, 0, cb->stream>>>(a);
        CUDA_LAUNCHED(e);
        return 0;
    }
    if (n_pf_tiles > 0) {
        if (n_pf_tiles > 65535)
            return srp_err_set(e, SRP_EUNSUPPORTED,
                               "attention: %d query tiles in one step (at most 65535)", n_pf_tiles);
        rc = D == 64 ? launch_prefill<64>(cb, &a, n_pf_tiles, e)
                     : launch_prefill<128>(cb, &a, n_pf_tiles, e);
        if (rc) return rc;
    }
    if (n_dec > 0) {
        if (b->n_seqs > 65535)
            return srp_err_set(e, SRP_EUNSUPPORTED, "attention: %d sequences (at most 65535)",
                               b->n_seqs);
        int per_sm = 1;
        rc = D == 64 ? decode_blocks_per_sm<64>(&per_sm, e) : decode_blocks_per_sm<128>(&per_sm, e);
        if (rc) return rc;
        a.n_splits = choose_splits(cb, n_dec, a.n_rg, per_sm, p, e);
        if (a.n_splits < 0) return a.n_splits;
        if (a.n_splits > 1) {
            a.ws_o = cb->attn_ws;
            a.ws_ml = cb->attn_ws + (int64_t)a.n_splits * b->n_seqs * H * D;
        }
        rc = D == 64 ? launch_decode<64>(cb, &a, e) : launch_decode<128>(cb, &a, e);
        if (rc) return rc;
        if (a.n_splits > 1) {
            const int64_t warps = (int64_t)b->n_seqs * H;
            attn_combine_kernel<<<(unsigned)((warps + 3) / 4), 128, 0, cb->stream>>>(a);
            CUDA_LAUNCHED(e);
        }
    }
    return 0;
}

extern "C" void srp_cuda_attention_free(cuda_backend *cb) {
    if (cb->attn_ws) cudaFree(cb->attn_ws);
    cb->attn_ws = NULL;
}
