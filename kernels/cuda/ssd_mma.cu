/* The chunked SSD scan on tensor cores (mma.sync m16n8k16, bf16 operands, fp32 accumulators),
 * for head_dim 64 and state 64 or 128 (every Mamba-2 and Nemotron-H checkpoint we know).
 *
 * One block of 4 warps (or two groups of 4, each with half of the head's state) owns one
 * (sequence, head) and walks the sequence's 64-token chunks in order, the next chunk streaming in
 * (cp.async) while the current one is multiplied. Per chunk, warp w owns token rows i in [16w,
 * 16w+16): CB    = C B^T                  (masked, decayed: M[i][j] = CB exp(cs_i - cs_j) dt_j, j
 * <= i) y     = exp(cs_i) C S^T + M x + D x       (S: the state entering the chunk, bf16 copy) S =
 * exp(cs_last) S + (w x)^T B         (w_j = exp(cs_last - cs_j) dt_j) and a 16-row,
 * N/(4*16/PR)-column block of the state. The state stays in fp32 accumulator registers for the
 * whole sequence; M goes from the CB accumulators straight into the A operand of the next product
 * (the FlashAttention-2 trick), so x, B, C and dt are read from memory once and y is written once.
 */
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

/* Not volatile: a pure register operation the compiler may interleave for latency. */
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
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

/* 2^x in one instruction (MUFU.EX2); the running sums are kept in base-2 units for it. */
__device__ __forceinline__ float exp2_fast(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

#define LOG2E 1.4426950408889634f

__device__ __forceinline__ float softplus_f(float v) {
    return v > 20.0f ? v : log1pf(__expf(v));
}

/* One chunk's inputs. Two of these alternate: the next chunk streams in while the current one
 * is multiplied. PR columns of x (this block's state rows). */
template <int N, int PB> struct ssd_stage {
    __nv_bfloat16 x[Q][PB + PAD];
    __nv_bfloat16 B[Q][N + PAD];
    __nv_bfloat16 C[Q][N + PAD];
    float dt[Q], cs[Q]; /* clamped time steps; log2(e) times their running sum of dt * A */
};

template <int N, int PB> struct ssd_smem {
    ssd_stage<N, PB> stage[2];
    __nv_bfloat16 S[PB][N + PAD]; /* bf16 copy of the state entering the chunk */
};

/* 16 bytes global -> shared without passing through registers; src_bytes < 16 zero-fills. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int PENDING> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
}

/* Starts copying rows [0, len) of a [Q x COLS] bf16 tile; rows len..Q become zeros, so a partial
 * chunk multiplies as zeros. */
template <int COLS>
__device__ __forceinline__ void fetch_tile(__nv_bfloat16 (*dst)[COLS + PAD],
                                           const __nv_bfloat16 *src, int64_t ld, int len) {
    constexpr int VEC = COLS / 8; /* 16-byte pieces per row */
#pragma unroll
    for (int i = threadIdx.x; i < Q * VEC; i += blockDim.x) {
        const int r = i / VEC, c = (i % VEC) * 8;
        cp_async16(&dst[r][c], src + (r < len ? r : 0) * ld + c, r < len ? 16 : 0);
    }
}

/* Starts copying chunk [c0, c0 + len), number `chunk` of the step, into a stage. */
template <int N, int PB>
__device__ __forceinline__ void fetch_chunk(ssd_stage<N, PB> &st, const ssd_args &a,
                                            const float *dtc, const float *cs, int64_t n_chunks,
                                            int chunk, int c0, int len, int h, int g, int p0) {
    fetch_tile<PB>(st.x, a.x + (int64_t)c0 * a.ldx + (int64_t)h * P + p0, a.ldx, len);
    fetch_tile<N>(st.B, a.B + (int64_t)c0 * a.ldb + (int64_t)g * N, a.ldb, len);
    fetch_tile<N>(st.C, a.C + (int64_t)c0 * a.ldc + (int64_t)g * N, a.ldc, len);
    if (threadIdx.x < Q / 2) { /* Q/4 pieces of dt, then Q/4 of cs */
        const int j = 4 * (threadIdx.x % (Q / 4));
        const float *src = (threadIdx.x < Q / 4 ? dtc : cs) + ((int64_t)h * n_chunks + chunk) * Q;
        float *dst = threadIdx.x < Q / 4 ? st.dt : st.cs;
        cp_async16(dst + j, src + j, 16); /* the prepass wrote zeros past the chunk's end */
    }
}

template <int N, int PR, int GR>
__global__ void __launch_bounds__(WARPS * 32 * GR)
    ssd_mma_kernel(ssd_args a, cuda_batch b, const float *dtc, const float *csum) {
    constexpr int PB = PR * GR;          /* state rows (columns of x) of this block */
    constexpr int NK = N / 16;           /* k16 steps across the state */
    constexpr int WP = PR / 16;          /* 16-row state blocks per head slice */
    constexpr int NW = N / (WARPS / WP); /* state columns per warp */
    constexpr int NTW = NW / 8;          /* n8 state tiles per warp */
    constexpr int PT = PR / 8;           /* n8 tiles of y per warp */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    ssd_smem<N, PB> &sm = *reinterpret_cast<ssd_smem<N, PB> *>(smem_raw);
    const int s = b.prefill_seq[blockIdx.x], h = blockIdx.y, g = h / (a.heads / a.groups);
    const int p0 = blockIdx.z * PB;
    /* GR groups of 4 warps; group gr owns rows [lp, lp + PR) of the block's slice of the state,
     * warp wq of a group owns token rows [16 wq, 16 wq + 16) */
    const int gr = threadIdx.x / (32 * WARPS), warp = (threadIdx.x / 32) % WARPS;
    const int lane = threadIdx.x % 32, lp = gr * PR;
    const int gq = lane / 4, tq = lane % 4;                      /* mma fragment coordinates */
    const int sp = lp + 16 * (warp % WP), sn = NW * (warp / WP); /* this warp's state block */
    const float Dh = a.D[h];
    float *gS = a.ssm + ((int64_t)b.slot[s] * a.heads + h) * P * N + (int64_t)p0 * N;
    const int fresh = b.n_past[s] == 0;

    /* state rows sp + gq (+8), columns sn + 8 nt + 2 tq (+1), in accumulator layout */
    float st[NTW][4];
#pragma unroll
    for (int nt = 0; nt < NTW; nt++) {
        const int p = sp + gq, n = sn + 8 * nt + 2 * tq;
        float2 lo = fresh ? make_float2(0.f, 0.f) : *(const float2 *)&gS[p * N + n];
        float2 hi = fresh ? make_float2(0.f, 0.f) : *(const float2 *)&gS[(p + 8) * N + n];
        st[nt][0] = lo.x, st[nt][1] = lo.y, st[nt][2] = hi.x, st[nt][3] = hi.y;
    }

    const int t_begin = b.seq_start[s], t_end = b.seq_start[s + 1];
    const int64_t NC = b.n_chunks;
    int chunk = b.prefill_chunk0[blockIdx.x];
    fetch_chunk<N, PB>(sm.stage[0], a, dtc, csum, NC, chunk, t_begin,
                       t_end - t_begin < Q ? t_end - t_begin : Q, h, g, p0);
    cp_async_commit();
    int cur = 0;
    for (int c0 = t_begin; c0 < t_end; c0 += Q, cur ^= 1, chunk++) {
        const int len = t_end - c0 < Q ? t_end - c0 : Q;
        const int c1 = c0 + Q;
        if (c1 < t_end)
            fetch_chunk<N, PB>(sm.stage[cur ^ 1], a, dtc, csum, NC, chunk + 1, c1,
                               t_end - c1 < Q ? t_end - c1 : Q, h, g, p0);
        cp_async_commit(); /* possibly empty: keeps the group count uniform */
        ssd_stage<N, PB> &sg = sm.stage[cur];
        /* the state entering the chunk, as the bf16 B operand of C S^T */
#pragma unroll
        for (int nt = 0; nt < NTW; nt++) {
            const int p = sp + gq, n = sn + 8 * nt + 2 * tq;
            *(uint32_t *)&sm.S[p][n] = pack_bf16(st[nt][0], st[nt][1]);
            *(uint32_t *)&sm.S[p + 8][n] = pack_bf16(st[nt][2], st[nt][3]);
        }
        cp_async_wait<1>(); /* this chunk has landed; the next may still be in flight */
        __syncthreads();
        const float cs_last = sg.cs[len - 1];
        const int i0 = 16 * warp + gq, i1 = i0 + 8;

        /* C rows of this warp as A fragments, all k16 steps over the state */
        uint32_t ca[NK][4];
#pragma unroll
        for (int k = 0; k < NK; k++)
            ldsm_x4(ca[k][0], ca[k][1], ca[k][2], ca[k][3],
                    &sg.C[16 * warp + (lane % 16)][16 * k + (lane / 16) * 8]);

        /* CB for rows i of this warp, column tiles j <= the warp's last row; k outermost so
         * the independent tiles interleave */
        float cb[Q / 8][4];
#pragma unroll
        for (int jt = 0; jt < Q / 8; jt++) cb[jt][0] = cb[jt][1] = cb[jt][2] = cb[jt][3] = 0.0f;
#pragma unroll
        for (int k = 0; k < NK; k++) {
#pragma unroll
            for (int jt2 = 0; jt2 < Q / 16; jt2++) {
                if (jt2 > warp) break;   /* above the diagonal: masked anyway */
                uint32_t b0, b1, b2, b3; /* two n8 tiles of B (rows j), k16 over the state */
                ldsm_x4(
                    b0, b1, b2, b3,
                    &sg.B[16 * jt2 + (lane % 8) + (lane / 16) * 8][16 * k + ((lane / 8) % 2) * 8]);
                mma16816(cb[2 * jt2], ca[k], b0, b1);
                mma16816(cb[2 * jt2 + 1], ca[k], b2, b3);
            }
        }

        /* y = exp(cs_i) C S^T ... */
        float y[PT][4];
#pragma unroll
        for (int pt = 0; pt < PT; pt++) y[pt][0] = y[pt][1] = y[pt][2] = y[pt][3] = 0.0f;
#pragma unroll
        for (int k = 0; k < NK; k++) {
#pragma unroll
            for (int pt2 = 0; pt2 < PT / 2; pt2++) {
                uint32_t b0, b1, b2, b3; /* S rows p as the [n][k] operand */
                ldsm_x4(b0, b1, b2, b3,
                        &sm.S[lp + 16 * pt2 + (lane % 8) + (lane / 16) * 8]
                             [16 * k + ((lane / 8) % 2) * 8]);
                mma16816(y[2 * pt2], ca[k], b0, b1);
                mma16816(y[2 * pt2 + 1], ca[k], b2, b3);
            }
        }
        const float e0 = exp2_fast(sg.cs[i0]), e1 = exp2_fast(sg.cs[i1]);
#pragma unroll
        for (int pt = 0; pt < PT; pt++)
            y[pt][0] *= e0, y[pt][1] *= e0, y[pt][2] *= e1, y[pt][3] *= e1;

        /* ... + M x: the masked, decayed CB becomes the A operand directly */
        uint32_t ma[Q / 16][4];
        const float ci0 = sg.cs[i0], ci1 = sg.cs[i1];
#pragma unroll
        for (int jt2 = 0; jt2 < Q / 16; jt2++) {
            if (jt2 > warp) break; /* above the diagonal: never used */
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int jt = 2 * jt2 + half, j = 8 * jt + 2 * tq;
                const float d0 = sg.dt[j], d1 = sg.dt[j + 1], c0j = sg.cs[j], c1j = sg.cs[j + 1];
                float m[4];
                m[0] = (j <= i0 && i0 < len) ? cb[jt][0] * exp2_fast(ci0 - c0j) * d0 : 0.0f;
                m[1] = (j + 1 <= i0 && i0 < len) ? cb[jt][1] * exp2_fast(ci0 - c1j) * d1 : 0.0f;
                m[2] = (j <= i1 && i1 < len) ? cb[jt][2] * exp2_fast(ci1 - c0j) * d0 : 0.0f;
                m[3] = (j + 1 <= i1 && i1 < len) ? cb[jt][3] * exp2_fast(ci1 - c1j) * d1 : 0.0f;
                ma[jt2][half * 2 + 0] = pack_bf16(m[0], m[1]);
                ma[jt2][half * 2 + 1] = pack_bf16(m[2], m[3]);
            }
        }
#pragma unroll
        for (int jt2 = 0; jt2 < Q / 16; jt2++) {
            if (jt2 > warp) break;
#pragma unroll
            for (int pt2 = 0; pt2 < PT / 2; pt2++) {
                uint32_t b0, b1, b2, b3; /* x rows j (k) x columns p (n), stored [j][p] */
                ldsm_x4_t(b0, b1, b2, b3,
                          &sg.x[16 * jt2 + (lane % 8) + ((lane / 8) % 2) * 8]
                               [lp + 16 * pt2 + (lane / 16) * 8]);
                mma16816(y[2 * pt2], ma[jt2], b0, b1);
                mma16816(y[2 * pt2 + 1], ma[jt2], b2, b3);
            }
        }
        /* ... + D x, written out */
#pragma unroll
        for (int pt = 0; pt < PT; pt++) {
            const int p = lp + 8 * pt + 2 * tq;
            if (i0 < len) {
                float2 xv = __bfloat1622float2(*(const __nv_bfloat162 *)&sg.x[i0][p]);
                *(uint32_t *)&a.y[(int64_t)(c0 + i0) * a.ldy + (int64_t)h * P + p0 + p] =
                    pack_bf16(y[pt][0] + Dh * xv.x, y[pt][1] + Dh * xv.y);
            }
            if (i1 < len) {
                float2 xv = __bfloat1622float2(*(const __nv_bfloat162 *)&sg.x[i1][p]);
                *(uint32_t *)&a.y[(int64_t)(c0 + i1) * a.ldy + (int64_t)h * P + p0 + p] =
                    pack_bf16(y[pt][2] + Dh * xv.x, y[pt][3] + Dh * xv.y);
            }
        }

        /* S = exp(cs_last) S + (w x)^T B for this warp's state block */
        const float decay = exp2_fast(cs_last);
#pragma unroll
        for (int nt = 0; nt < NTW; nt++)
            st[nt][0] *= decay, st[nt][1] *= decay, st[nt][2] *= decay, st[nt][3] *= decay;
#pragma unroll
        for (int jt2 = 0; jt2 < Q / 16; jt2++) {
            uint32_t xa[4]; /* A(p, j) = x[j][p] w_j, from x stored [j][p] */
            ldsm_x4_t(xa[0], xa[1], xa[2], xa[3],
                      &sg.x[16 * jt2 + (lane % 8) + (lane / 16) * 8][sp + ((lane / 8) % 2) * 8]);
            /* w_j = exp(cs_last - cs_j) dt_j; zero past the chunk's end (dt is zero there) */
            const int j = 16 * jt2 + 2 * tq;
            const float w0 = exp2_fast(cs_last - sg.cs[j]) * sg.dt[j];
            const float w1 = exp2_fast(cs_last - sg.cs[j + 1]) * sg.dt[j + 1];
            const float w8 = exp2_fast(cs_last - sg.cs[j + 8]) * sg.dt[j + 8];
            const float w9 = exp2_fast(cs_last - sg.cs[j + 9]) * sg.dt[j + 9];
            float2 v;
            v = unpack_bf16(xa[0]), xa[0] = pack_bf16(v.x * w0, v.y * w1);
            v = unpack_bf16(xa[1]), xa[1] = pack_bf16(v.x * w0, v.y * w1);
            v = unpack_bf16(xa[2]), xa[2] = pack_bf16(v.x * w8, v.y * w9);
            v = unpack_bf16(xa[3]), xa[3] = pack_bf16(v.x * w8, v.y * w9);
#pragma unroll
            for (int nt2 = 0; nt2 < NTW / 2; nt2++) {
                uint32_t b0, b1, b2, b3; /* B rows j (k) x state columns n, stored [j][n] */
                ldsm_x4_t(b0, b1, b2, b3,
                          &sg.B[16 * jt2 + (lane % 8) + ((lane / 8) % 2) * 8]
                               [sn + 16 * nt2 + (lane / 16) * 8]);
                mma16816(st[2 * nt2], xa, b0, b1);
                mma16816(st[2 * nt2 + 1], xa, b2, b3);
            }
        }
        __syncthreads(); /* all warps are done with this stage and with S */
    }
    cp_async_wait<0>();
#pragma unroll
    for (int nt = 0; nt < NTW; nt++) {
        const int p = sp + gq, n = sn + 8 * nt + 2 * tq;
        *(float2 *)&gS[p * N + n] = make_float2(st[nt][0], st[nt][1]);
        *(float2 *)&gS[(p + 8) * N + n] = make_float2(st[nt][2], st[nt][3]);
    }
}

/* The time steps of every chunk, ahead of the scan: dt = clamp(softplus(dt_raw + dt_bias)) and
 * its running sum within the chunk, stored [heads][tokens] so a chunk's values are contiguous.
 * One warp per (chunk, head), two tokens per lane. */
__global__ void ssd_dt_kernel(ssd_args a, cuda_batch b, float *dtc, float *csum) {
    const int c = blockIdx.x, h = blockIdx.y * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (h >= a.heads) return;
    const int t0 = b.chunk_start[c], len = b.chunk_len[c];
    /* A in base-2 units: the scan evaluates exp(sum dt A) as exp2(sum dt A log2(e)) */
    const float A = -__expf(a.A_log[h]) * LOG2E, bias = a.dt_bias[h];
    float *dst_dt = dtc + ((int64_t)h * b.n_chunks + c) * SRP_SSD_CHUNK;
    float *dst_cs = csum + ((int64_t)h * b.n_chunks + c) * SRP_SSD_CHUNK;
    float d[2], run = 0.0f;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const int j = 2 * lane + k;
        float v = 0.0f;
        if (j < len) {
            v = softplus_f(__bfloat162float(a.dt[(int64_t)(t0 + j) * a.lddt + h]) + bias);
            v = fminf(fmaxf(v, a.dt_min), a.dt_max);
        }
        d[k] = v;
        run += v * A;
    }
    float incl = run;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        float up = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += up;
    }
    const float base = incl - run;
    /* past the chunk's end: dt 0 (no contribution) and cs 0 (finite, never used) */
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const int j = 2 * lane + k;
        dst_dt[j] = d[k];
        dst_cs[j] = j < len ? base + d[0] * A + (k ? d[1] * A : 0.0f) : 0.0f;
    }
}

int srp_cuda_ssd_mma_supported(const srp_mamba_params *p) {
    return p->head_dim == P && (p->state == 64 || p->state == 128);
}

template <int N, int PR, int GR>
static int launch_scan(cuda_backend *cb, const ssd_args *a, dim3 grid, const float *dtc,
                       const float *csum, srp_err *e) {
    const size_t bytes = sizeof(ssd_smem<N, PR * GR>);
    CUDA_TRY(cudaFuncSetAttribute(ssd_mma_kernel<N, PR, GR>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
             e);
    ssd_mma_kernel<N, PR, GR>
        <<<grid, WARPS * 32 * GR, bytes, cb->stream>>>(*a, cb->batch, dtc, csum);
    CUDA_LAUNCHED(e);
    return 0;
}

static int aligned16(const void *ptr, int64_t ld) {
    return ((uintptr_t)ptr % 16) == 0 && ld % 8 == 0;
}

int srp_cuda_ssd_mma(cuda_backend *cb, const ssd_args *a, srp_err *e) {
    if (!aligned16(a->x, a->ldx) || !aligned16(a->B, a->ldb) || !aligned16(a->C, a->ldc))
        return srp_err_set(e, SRP_EINVAL, "ssd: operands are not 16-byte aligned");
    /* scratch for the time steps: [heads][chunks][Q], twice */
    const size_t per = (size_t)a->heads * cb->batch.n_chunks * Q;
    if (2 * per * sizeof(float) > cb->ssd_scratch_bytes) {
        if (cb->ssd_scratch) cudaFree(cb->ssd_scratch);
        cb->ssd_scratch = NULL;
        cb->ssd_scratch_bytes = 0;
        size_t cap = 2 * (size_t)a->heads * cb->max_chunks * Q * sizeof(float);
        CUDA_TRY(cudaMalloc(&cb->ssd_scratch, cap), e);
        cb->ssd_scratch_bytes = cap;
    }
    float *dtc = (float *)cb->ssd_scratch, *csum = dtc + per;
    dim3 gdt(cb->batch.n_chunks, (a->heads + 3) / 4);
    ssd_dt_kernel<<<gdt, 128, 0, cb->stream>>>(*a, cb->batch, dtc, csum);
    CUDA_LAUNCHED(e);
    /* With too few (sequence, head) pairs to give every multiprocessor two blocks, each block
     * runs two groups of 4 warps, each group half of the head's state (CB is computed twice,
     * but twice as many warps hide the latencies of the chunk loop). */
    const int split = cb->batch.n_prefill * a->heads < 2 * cb->prop.multiProcessorCount;
    dim3 grid(cb->batch.n_prefill, a->heads, 1);
    if (a->state == 128)
        return split ? launch_scan<128, 32, 2>(cb, a, grid, dtc, csum, e)
                     : launch_scan<128, 64, 1>(cb, a, grid, dtc, csum, e);
    return split ? launch_scan<64, 32, 2>(cb, a, grid, dtc, csum, e)
                 : launch_scan<64, 64, 1>(cb, a, grid, dtc, csum, e);
}
