/* The chunked SSD scan on tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulators),
 * for head_dim 64 and state 64 or 128 (every Mamba-2 and Nemotron-H checkpoint we know).
 *
 * One block of 4 warps owns one (sequence, head) and walks its 64-token chunks in order. Per
 * chunk, warp w owns token rows i in [16w, 16w+16) and state rows p in [16w, 16w+16):
 *   CB    = C B^T                  (masked, decayed: M[i][j] = CB exp(cs_i - cs_j) dt_j, j <= i)
 *   y     = exp(cs_i) C S^T + M x + D x       (S: the state entering the chunk, bf16 copy)
 *   S     = exp(cs_last) S + (w x)^T B         (w_j = exp(cs_last - cs_j) dt_j)
 * The state stays in fp32 accumulator registers for the whole sequence; M goes from the CB
 * accumulators straight into the A operand of the next product (the FlashAttention-2 trick), so
 * x, B, C and dt are read from memory once and y is written once. */
#include "ssd.h"

#define Q     64 /* tokens per chunk */
#define P     64 /* head_dim */
#define PAD   8  /* bf16 padding per shared row: breaks ldmatrix bank conflicts */
#define WARPS 4

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                        const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                          const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

__device__ __forceinline__ float2 unpack_bf16(uint32_t v) {
    return __bfloat1622float2(*(__nv_bfloat162 *)&v);
}

__device__ __forceinline__ float softplus_f(float v) {
    return v > 20.0f ? v : log1pf(__expf(v));
}

template <int N> struct ssd_smem {
    __nv_bfloat16 x[Q][P + PAD];
    __nv_bfloat16 B[Q][N + PAD];
    __nv_bfloat16 C[Q][N + PAD];
    __nv_bfloat16 S[P][N + PAD]; /* bf16 copy of the state entering the chunk */
    float dt[Q], cs[Q], w[Q];
};

/* Copies rows [0, len) of a [Q x cols] bf16 tile from global memory (16-byte vectors) and
 * zero-fills rows len..Q, so a partial chunk multiplies as zeros. */
template <int COLS>
__device__ __forceinline__ void load_tile(__nv_bfloat16 (*dst)[COLS + PAD],
                                          const __nv_bfloat16 *src, int64_t ld, int len) {
    constexpr int VEC = COLS / 8; /* uint4 per row */
    for (int i = threadIdx.x; i < Q * VEC; i += WARPS * 32) {
        const int r = i / VEC, c = (i % VEC) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < len) v = *(const uint4 *)(src + r * ld + c);
        *(uint4 *)&dst[r][c] = v;
    }
}

template <int N>
__global__ void __launch_bounds__(WARPS * 32) ssd_mma_kernel(ssd_args a, cuda_batch b) {
    constexpr int NT = N / 8;  /* n8 tiles across the state */
    constexpr int NK = N / 16; /* k16 steps across the state */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ssd_smem<N> &sm = *reinterpret_cast<ssd_smem<N> *>(smem_raw);
    const int s = b.prefill_seq[blockIdx.x], h = blockIdx.y, g = h / (a.heads / a.groups);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int gq = lane / 4, tq = lane % 4; /* mma fragment coordinates */
    const float A = -__expf(a.A_log[h]), Dh = a.D[h], dtb = a.dt_bias[h];
    float *gS = a.ssm + ((int64_t)b.slot[s] * a.heads + h) * P * N;
    const int fresh = b.n_past[s] == 0;

    /* state rows p = 16w + gq (+8), columns n = 8 nt + 2 tq (+1), in accumulator layout */
    float st[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const int p = 16 * warp + gq, n = 8 * nt + 2 * tq;
        float2 lo = fresh ? make_float2(0.f, 0.f) : *(const float2 *)&gS[p * N + n];
        float2 hi = fresh ? make_float2(0.f, 0.f) : *(const float2 *)&gS[(p + 8) * N + n];
        st[nt][0] = lo.x, st[nt][1] = lo.y, st[nt][2] = hi.x, st[nt][3] = hi.y;
    }

    const int t_begin = b.seq_start[s], t_end = b.seq_start[s + 1];
    for (int c0 = t_begin; c0 < t_end; c0 += Q) {
        const int len = t_end - c0 < Q ? t_end - c0 : Q;
        __syncthreads(); /* everyone is done with the previous chunk's tiles */
        load_tile<P>(sm.x, a.x + (int64_t)c0 * a.ldx + (int64_t)h * P, a.ldx, len);
        load_tile<N>(sm.B, a.B + (int64_t)c0 * a.ldb + (int64_t)g * N, a.ldb, len);
        load_tile<N>(sm.C, a.C + (int64_t)c0 * a.ldc + (int64_t)g * N, a.ldc, len);
        /* the state entering the chunk, as the bf16 B operand of C S^T */
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int p = 16 * warp + gq, n = 8 * nt + 2 * tq;
            *(uint32_t *)&sm.S[p][n] = pack_bf16(st[nt][0], st[nt][1]);
            *(uint32_t *)&sm.S[p + 8][n] = pack_bf16(st[nt][2], st[nt][3]);
        }
        /* time steps and their running sum: warp 0, two tokens per lane */
        if (warp == 0) {
            float d[2], run = 0.0f;
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int j = 2 * lane + k;
                float v = 0.0f;
                if (j < len) {
                    v = softplus_f(__bfloat162float(a.dt[(int64_t)(c0 + j) * a.lddt + h]) + dtb);
                    v = fminf(fmaxf(v, a.dt_min), a.dt_max);
                }
                d[k] = v;
                run += v * A;
            }
            float incl = run; /* inclusive scan of the lanes' pair sums */
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                float up = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += up;
            }
            const float base = incl - run;
            sm.dt[2 * lane] = d[0], sm.dt[2 * lane + 1] = d[1];
            sm.cs[2 * lane] = base + d[0] * A;
            sm.cs[2 * lane + 1] = base + d[0] * A + d[1] * A;
        }
        __syncthreads();
        if (threadIdx.x < Q) {
            const int j = threadIdx.x;
            const float last = sm.cs[len - 1];
            sm.w[j] = j < len ? __expf(last - sm.cs[j]) * sm.dt[j] : 0.0f;
        }

        /* C rows of this warp as A fragments, all k16 steps over the state */
        uint32_t ca[NK][4];
#pragma unroll
        for (int k = 0; k < NK; k++)
            ldsm_x4(ca[k][0], ca[k][1], ca[k][2], ca[k][3],
                    &sm.C[16 * warp + (lane % 16)][16 * k + (lane / 16) * 8]);

        /* CB for rows i of this warp, column tiles j <= the warp's last row */
        float cb[Q / 8][4];
#pragma unroll
        for (int jt = 0; jt < Q / 8; jt++) cb[jt][0] = cb[jt][1] = cb[jt][2] = cb[jt][3] = 0.0f;
#pragma unroll
        for (int jt2 = 0; jt2 < Q / 16; jt2++) {
            if (jt2 > warp) break; /* above the diagonal: masked anyway */
#pragma unroll
            for (int k = 0; k < NK; k++) {
                uint32_t b0, b1, b2, b3; /* two n8 tiles of B (rows j), k16 over the state */
                ldsm_x4(
                    b0, b1, b2, b3,
                    &sm.B[16 * jt2 + (lane % 8) + (lane / 16) * 8][16 * k + ((lane / 8) % 2) * 8]);
                mma16816(cb[2 * jt2], ca[k], b0, b1);
                mma16816(cb[2 * jt2 + 1], ca[k], b2, b3);
            }
        }
        __syncthreads(); /* sm.w is ready */

        /* y = exp(cs_i) C S^T ... */
        float y[P / 8][4];
#pragma unroll
        for (int pt = 0; pt < P / 8; pt++) y[pt][0] = y[pt][1] = y[pt][2] = y[pt][3] = 0.0f;
#pragma unroll
        for (int pt2 = 0; pt2 < P / 16; pt2++) {
#pragma unroll
            for (int k = 0; k < NK; k++) {
                uint32_t b0, b1, b2, b3; /* S rows p as the [n][k] operand */
                ldsm_x4(
                    b0, b1, b2, b3,
                    &sm.S[16 * pt2 + (lane % 8) + (lane / 16) * 8][16 * k + ((lane / 8) % 2) * 8]);
                mma16816(y[2 * pt2], ca[k], b0, b1);
                mma16816(y[2 * pt2 + 1], ca[k], b2, b3);
            }
        }
        const int i0 = 16 * warp + gq, i1 = i0 + 8;
        const float e0 = __expf(sm.cs[i0]), e1 = __expf(sm.cs[i1]);
#pragma unroll
        for (int pt = 0; pt < P / 8; pt++)
            y[pt][0] *= e0, y[pt][1] *= e0, y[pt][2] *= e1, y[pt][3] *= e1;

        /* ... + M x: the masked, decayed CB becomes the A operand directly */
        uint32_t ma[Q / 16][4];
#pragma unroll
        for (int jt2 = 0; jt2 < Q / 16; jt2++) {
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int jt = 2 * jt2 + half, j = 8 * jt + 2 * tq;
                float m[4];
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    const int i = r < 2 ? i0 : i1, jj = j + (r & 1);
                    const float ci = r < 2 ? sm.cs[i0] : sm.cs[i1];
                    m[r] = (jj <= i && i < len) ? cb[jt][r] * __expf(ci - sm.cs[jj]) * sm.dt[jj]
                                                : 0.0f;
                }
                ma[jt2][half * 2 + 0] = pack_bf16(m[0], m[1]);
                ma[jt2][half * 2 + 1] = pack_bf16(m[2], m[3]);
            }
        }
#pragma unroll
        for (int pt2 = 0; pt2 < P / 16; pt2++) {
#pragma unroll
            for (int jt2 = 0; jt2 < Q / 16; jt2++) {
                if (jt2 > warp) break;
                uint32_t b0, b1, b2, b3; /* x rows j (k) x columns p (n), stored [j][p] */
                ldsm_x4_t(b0, b1, b2, b3,
                          &sm.x[16 * jt2 + (lane % 8) + ((lane / 8) % 2) * 8]
                               [16 * pt2 + (lane / 16) * 8]);
                const uint32_t a4[4] = { ma[jt2][0], ma[jt2][1], ma[jt2][2], ma[jt2][3] };
                mma16816(y[2 * pt2], a4, b0, b1);
                mma16816(y[2 * pt2 + 1], a4, b2, b3);
            }
        }
        /* ... + D x, written out */
#pragma unroll
        for (int pt = 0; pt < P / 8; pt++) {
            const int p = 8 * pt + 2 * tq;
            if (i0 < len) {
                float2 xv = __bfloat1622float2(*(const __nv_bfloat162 *)&sm.x[i0][p]);
                *(uint32_t *)&a.y[(int64_t)(c0 + i0) * a.ldy + (int64_t)h * P + p] =
                    pack_bf16(y[pt][0] + Dh * xv.x, y[pt][1] + Dh * xv.y);
            }
            if (i1 < len) {
                float2 xv = __bfloat1622float2(*(const __nv_bfloat162 *)&sm.x[i1][p]);
                *(uint32_t *)&a.y[(int64_t)(c0 + i1) * a.ldy + (int64_t)h * P + p] =
                    pack_bf16(y[pt][2] + Dh * xv.x, y[pt][3] + Dh * xv.y);
            }
        }

        /* S = exp(cs_last) S + (w x)^T B for state rows p of this warp */
        const float decay = __expf(sm.cs[len - 1]);
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
            st[nt][0] *= decay, st[nt][1] *= decay, st[nt][2] *= decay, st[nt][3] *= decay;
#pragma unroll
        for (int jt2 = 0; jt2 < Q / 16; jt2++) {
            uint32_t xa[4]; /* A(p, j) = x[j][p] w_j, from x stored [j][p] */
            ldsm_x4_t(
                xa[0], xa[1], xa[2], xa[3],
                &sm.x[16 * jt2 + (lane % 8) + (lane / 16) * 8][16 * warp + ((lane / 8) % 2) * 8]);
            const int j = 16 * jt2 + 2 * tq;
            const float w0 = sm.w[j], w1 = sm.w[j + 1], w8 = sm.w[j + 8], w9 = sm.w[j + 9];
            float2 v;
            v = unpack_bf16(xa[0]), xa[0] = pack_bf16(v.x * w0, v.y * w1);
            v = unpack_bf16(xa[1]), xa[1] = pack_bf16(v.x * w0, v.y * w1);
            v = unpack_bf16(xa[2]), xa[2] = pack_bf16(v.x * w8, v.y * w9);
            v = unpack_bf16(xa[3]), xa[3] = pack_bf16(v.x * w8, v.y * w9);
#pragma unroll
            for (int nt2 = 0; nt2 < N / 16; nt2++) {
                uint32_t b0, b1, b2, b3; /* B rows j (k) x state columns n, stored [j][n] */
                ldsm_x4_t(b0, b1, b2, b3,
                          &sm.B[16 * jt2 + (lane % 8) + ((lane / 8) % 2) * 8]
                               [16 * nt2 + (lane / 16) * 8]);
                mma16816(st[2 * nt2], xa, b0, b1);
                mma16816(st[2 * nt2 + 1], xa, b2, b3);
            }
        }
    }
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const int p = 16 * warp + gq, n = 8 * nt + 2 * tq;
        *(float2 *)&gS[p * N + n] = make_float2(st[nt][0], st[nt][1]);
        *(float2 *)&gS[(p + 8) * N + n] = make_float2(st[nt][2], st[nt][3]);
    }
}

int srp_cuda_ssd_mma_supported(const srp_mamba_params *p) {
    return p->head_dim == P && (p->state == 64 || p->state == 128);
}

static int aligned16(const void *ptr, int64_t ld) {
    return ((uintptr_t)ptr % 16) == 0 && ld % 8 == 0;
}

int srp_cuda_ssd_mma(cuda_backend *cb, const ssd_args *a, srp_err *e) {
    if (!aligned16(a->x, a->ldx) || !aligned16(a->B, a->ldb) || !aligned16(a->C, a->ldc))
        return srp_err_set(e, SRP_EINVAL, "ssd: operands are not 16-byte aligned");
    dim3 grid(cb->batch.n_prefill, a->heads);
    if (a->state == 128) {
        size_t bytes = sizeof(ssd_smem<128>);
        CUDA_TRY(cudaFuncSetAttribute(ssd_mma_kernel<128>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                 e);
        ssd_mma_kernel<128><<<grid, WARPS * 32, bytes, cb->stream>>>(*a, cb->batch);
    } else {
        size_t bytes = sizeof(ssd_smem<64>);
        CUDA_TRY(cudaFuncSetAttribute(ssd_mma_kernel<64>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                 e);
        ssd_mma_kernel<64><<<grid, WARPS * 32, bytes, cb->stream>>>(*a, cb->batch);
    }
    CUDA_LAUNCHED(e);
    return 0;
}
