/* Mamba-1's selective scan (S6; Gu & Dao 2023, section 3.3 "hardware-aware algorithm") over
 * packed variable-length sequences; the CPU twin is kernels/cpu/cpu_s6.c.
 *
 * Prefill: one block per (sequence, tile of channels) walks the sequence in chunks of time. The
 * state h [channel][state] never leaves registers: each thread owns S6_NPT states of one channel.
 * A chunk's inputs are read from global memory once (x, dt, B, C while the previous chunk is being
 * scanned, z while this one is), staged in shared memory as fp32 with softplus(dt + bias) and
 * delta * x precomputed, and each thread runs the recurrence over the chunk; the partial sums
 * C . h of a channel's threads meet in shared memory, where the epilogue adds D x, gates with
 * silu(z) and writes y. Time is sequential within a block, so the parallelism is sequences x
 * channels x (state / S6_NPT); the exponentials (one per channel, state and token, on the SFU)
 * bound it, not memory (bench/bench_mamba1.c reports both ceilings).
 *
 * Decode (one-token sequences): the state update at memory speed: a group of threads per
 * channel streams its state row once, coalesced (float4), and reduces C . h with shuffles. */
#include "cuda_ops.h"

#define S6_NPT       4  /* states per thread in prefill */
#define S6_MAX_G     16 /* prefill: up to 64 states */
#define S6_DEC_BLOCK 256
#define LOG2E        1.4426950408889634f

typedef struct s6_args {
    const __nv_bfloat16 *x, *dt, *B, *C, *z;
    int64_t ldx, lddt, ldb, ldc, ldz, ldy;
    __nv_bfloat16 *y;
    const float *A_log;   /* [d_inner][state] */
    const float *dt_bias; /* [d_inner] or NULL */
    const float *D;       /* [d_inner] or NULL */
    float *ssm;           /* [slots][d_inner][state] */
    int d_inner, state;
} s6_args;

__device__ __forceinline__ float s6_ex2(float v) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}

__device__ __forceinline__ float s6_bf(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

/* torch's softplus (threshold 20), with log1p's series where 1 + e would lose e's digits */
__device__ __forceinline__ float s6_softplus(float v) {
    if (v > 20.0f) return v;
    const float e = __expf(v);
    if (e < 0.05f) return e * (1.0f + e * (-0.5f + e * (1.0f / 3.0f - 0.25f * e)));
    return __logf(1.0f + e);
}

__device__ __forceinline__ float s6_silu(float v) {
    return v / (1.0f + __expf(-v));
}

/* ---- decode: one-token sequences --------------------------------------------------------------
 * Block = S6_DEC_BLOCK / tpc channels of one sequence; tpc consecutive lanes share a channel and
 * walk its state row VEC values at a time. */
template <int VEC>
__global__ void __launch_bounds__(S6_DEC_BLOCK) s6_decode_kernel(s6_args a, cuda_batch b, int tpc) {
    const int s = b.decode_seq[blockIdx.y];
    const int sub = threadIdx.x % tpc;
    const int ch = blockIdx.x * (S6_DEC_BLOCK / tpc) + threadIdx.x / tpc;
    const int Di = a.d_inner, N = a.state;
    const int64_t t = b.seq_start[s];
    float acc = 0.0f, xv = 0.0f;
    if (ch < Di) {
        xv = s6_bf(a.x[t * a.ldx + ch]);
        const float d =
            s6_softplus(s6_bf(a.dt[t * a.lddt + ch]) + (a.dt_bias ? a.dt_bias[ch] : 0.0f));
        const int fresh = b.n_past[s] == 0;
        float *S = a.ssm + ((int64_t)b.slot[s] * Di + ch) * N;
        const float *Al = a.A_log + (int64_t)ch * N;
        const __nv_bfloat16 *Bt = a.B + t * a.ldb, *Ct = a.C + t * a.ldc;
        for (int n0 = sub * VEC; n0 < N; n0 += tpc * VEC) {
            float h[VEC], al[VEC];
            if constexpr (VEC == 4) {
                const float4 h4 = fresh ? make_float4(0.f, 0.f, 0.f, 0.f)
                                        : *reinterpret_cast<const float4 *>(S + n0);
                const float4 a4 = *reinterpret_cast<const float4 *>(Al + n0);
                h[0] = h4.x, h[1] = h4.y, h[2] = h4.z, h[3] = h4.w;
                al[0] = a4.x, al[1] = a4.y, al[2] = a4.z, al[3] = a4.w;
            } else {
                h[0] = fresh ? 0.0f : S[n0];
                al[0] = Al[n0];
            }
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                const float dA = s6_ex2(d * (-__expf(al[j]) * LOG2E));
                h[j] = dA * h[j] + d * s6_bf(Bt[n0 + j]) * xv;
                acc += h[j] * s6_bf(Ct[n0 + j]);
            }
            if constexpr (VEC == 4)
                *reinterpret_cast<float4 *>(S + n0) = make_float4(h[0], h[1], h[2], h[3]);
            else
                S[n0] = h[0];
        }
    }
    for (int o = tpc / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (sub == 0 && ch < Di) {
        float v = acc + (a.D ? a.D[ch] * xv : 0.0f);
        if (a.z) v *= s6_silu(s6_bf(a.z[t * a.ldz + ch]));
        a.y[t * a.ldy + ch] = __float2bfloat16(v);
    }
}

/* ---- prefill: sequences of two tokens or more -------------------------------------------------
 * G threads per channel (S6_NPT states each, N <= 4 G; states past N have B = C = 0 and stay 0),
 * CH channels per block, chunks of TC tokens. 16 channels make a block's rows of x, dt, z and y
 * one 32-byte sector each; a step too small to spread such blocks over every SM several times
 * (a single prompt of a narrow model) takes blocks of half as many. TC keeps each thread's
 * share of a chunk's inputs (E of x, dt and z, EB of B and C) within 16 registers each.
 * Shared memory, fp32:
 *   x                     [TC][CH]
 *   (delta, delta * x)    [TC][CH] pairs
 *   B, C                  [TC][4 G] each
 *   partial C . h         [G][TC * CH + pad] (pad spreads a warp's writes over the banks) */
template <int G, int CH_> struct s6_shape {
    static constexpr int CH = CH_;
    static constexpr int THREADS = G * CH;
    static constexpr int TC =
        64 < 16 * G ? (64 < 4 * CH ? 64 : 4 * CH) : (16 * G < 4 * CH ? 16 * G : 4 * CH);
    static constexpr int NP = S6_NPT * G;
    static constexpr int E = TC * CH / THREADS;  /* x, dt, z elements per thread per chunk */
    static constexpr int EB = TC * NP / THREADS; /* B, C elements per thread per chunk */
    static constexpr int PAD = 32 / G;
    static constexpr int YP = TC * CH + PAD;
    static constexpr size_t SMEM = sizeof(float) * (3 * TC * CH + 2 * TC * NP + G * YP);
    static_assert(THREADS % 32 == 0 && E <= 16 && EB <= 16, "s6 prefill tile");
};

template <int G, int CH_>
__global__ void __launch_bounds__(s6_shape<G, CH_>::THREADS)
    s6_prefill_kernel(s6_args a, cuda_batch b) {
    using SH = s6_shape<G, CH_>;
    constexpr int CH = SH::CH, TC = SH::TC, NP = SH::NP, E = SH::E, EB = SH::EB, YP = SH::YP;
    constexpr int THREADS = SH::THREADS;
    extern __shared__ float sm[];
    float *x_s = sm, *B_s = x_s + 3 * TC * CH, *C_s = B_s + TC * NP, *yp_s = C_s + TC * NP;
    float2 *ddx_s = reinterpret_cast<float2 *>(x_s + TC * CH);
    const int Di = a.d_inner, N = a.state, tid = threadIdx.x;
    const int s = b.prefill_seq[blockIdx.y], c0 = blockIdx.x * CH;
    const int c = tid / G, g = tid % G, ch = c0 + c;
    const int t_begin = b.seq_start[s], t_end = b.seq_start[s + 1];
    /* the channel this thread stages and finishes (CH divides THREADS) */
    const int my_ch = c0 + tid % CH;
    const bool my_live = my_ch < Di;
    const float my_bias = my_live && a.dt_bias ? a.dt_bias[my_ch] : 0.0f;
    const float my_D = my_live && a.D ? a.D[my_ch] : 0.0f;

    float h[S6_NPT], A2[S6_NPT];
    float *gS = a.ssm + ((int64_t)b.slot[s] * Di + ch) * N;
    const int fresh = b.n_past[s] == 0;
#pragma unroll
    for (int j = 0; j < S6_NPT; j++) {
        const int n = g * S6_NPT + j;
        const bool ok = ch < Di && n < N;
        h[j] = ok && !fresh ? gS[n] : 0.0f;
        A2[j] = ok ? -expf(a.A_log[(int64_t)ch * N + n]) * LOG2E : 0.0f;
    }

    /* raw inputs of the chunk being fetched */
    __nv_bfloat16 px[E], pdt[E], pz[E], pB[EB], pC[EB];
    const __nv_bfloat16 zero = __float2bfloat16(0.0f);
    auto fetch = [&](int t0) {
        const int len = min(TC, t_end - t0);
#pragma unroll
        for (int k = 0; k < E; k++) {
            const int idx = tid + k * THREADS, tt = idx / CH;
            const bool ok = tt < len && my_live;
            const int64_t row = t0 + tt;
            px[k] = ok ? a.x[row * a.ldx + my_ch] : zero;
            pdt[k] = ok ? a.dt[row * a.lddt + my_ch] : zero;
        }
#pragma unroll
        for (int k = 0; k < EB; k++) {
            const int idx = tid + k * THREADS, tt = idx / NP, n = idx % NP;
            const bool ok = tt < len && n < N;
            const int64_t row = t0 + tt;
            pB[k] = ok ? a.B[row * a.ldb + n] : zero;
            pC[k] = ok ? a.C[row * a.ldc + n] : zero;
        }
    };
    auto stage = [&]() {
#pragma unroll
        for (int k = 0; k < E; k++) {
            const int idx = tid + k * THREADS;
            const float xv = s6_bf(px[k]);
            const float dv = my_live ? s6_softplus(s6_bf(pdt[k]) + my_bias) : 0.0f;
            x_s[idx] = xv;
            ddx_s[idx] = make_float2(dv, dv * xv);
        }
#pragma unroll
        for (int k = 0; k < EB; k++) {
            const int idx = tid + k * THREADS;
            B_s[idx] = s6_bf(pB[k]);
            C_s[idx] = s6_bf(pC[k]);
        }
    };

    fetch(t_begin);
    stage();
    __syncthreads();
    for (int t0 = t_begin; t0 < t_end; t0 += TC) {
        const int len = min(TC, t_end - t0);
        /* z of this chunk for the epilogue, and the next chunk's inputs, load under the scan */
        if (a.z) {
#pragma unroll
            for (int k = 0; k < E; k++) {
                const int tt = (tid + k * THREADS) / CH;
                pz[k] = tt < len && my_live ? a.z[(int64_t)(t0 + tt) * a.ldz + my_ch] : zero;
            }
        }
        if (t0 + TC < t_end) fetch(t0 + TC);
        float *yp = yp_s + g * YP + c;
#pragma unroll 4
        for (int tt = 0; tt < len; tt++) {
            const float2 ddx = ddx_s[tt * CH + c];
            const float d = ddx.x, dx = ddx.y;
            const float4 Bv = *reinterpret_cast<const float4 *>(B_s + tt * NP + g * S6_NPT);
            const float4 Cv = *reinterpret_cast<const float4 *>(C_s + tt * NP + g * S6_NPT);
            h[0] = s6_ex2(d * A2[0]) * h[0] + dx * Bv.x;
            h[1] = s6_ex2(d * A2[1]) * h[1] + dx * Bv.y;
            h[2] = s6_ex2(d * A2[2]) * h[2] + dx * Bv.z;
            h[3] = s6_ex2(d * A2[3]) * h[3] + dx * Bv.w;
            yp[tt * CH] = h[0] * Cv.x + h[1] * Cv.y + h[2] * Cv.z + h[3] * Cv.w;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < E; k++) {
            const int idx = tid + k * THREADS, tt = idx / CH;
            if (tt < len && my_live) {
                float v = 0.0f;
#pragma unroll
                for (int gg = 0; gg < G; gg++) v += yp_s[gg * YP + idx];
                v += my_D * x_s[idx];
                if (a.z) v *= s6_silu(s6_bf(pz[k]));
                a.y[(int64_t)(t0 + tt) * a.ldy + my_ch] = __float2bfloat16(v);
            }
        }
        if (t0 + TC < t_end) {
            __syncthreads(); /* the epilogue and the scan are done with this chunk's tiles */
            stage();
            __syncthreads();
        }
    }
    if (ch < Di) {
#pragma unroll
        for (int j = 0; j < S6_NPT; j++)
            if (g * S6_NPT + j < N) gS[g * S6_NPT + j] = h[j];
    }
}

template <int G, int CH> static int launch_tile(cuda_backend *cb, const s6_args &a, srp_err *e) {
    using SH = s6_shape<G, CH>;
    CUDA_TRY(cudaFuncSetAttribute(s6_prefill_kernel<G, CH>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SH::SMEM),
             e);
    dim3 grid((unsigned)((a.d_inner + CH - 1) / CH), (unsigned)cb->batch.n_prefill);
    s6_prefill_kernel<G, CH><<<grid, SH::THREADS, SH::SMEM, cb->stream>>>(a, cb->batch);
    CUDA_LAUNCHED(e);
    return 0;
}

/* Wide tiles (CH) unless they would give fewer than four blocks per SM. */
template <int G, int CH> static int launch_prefill(cuda_backend *cb, const s6_args &a, srp_err *e) {
    const int64_t blocks = (int64_t)cb->batch.n_prefill * ((a.d_inner + CH - 1) / CH);
    if (blocks < 4 * (int64_t)cb->prop.multiProcessorCount) return launch_tile<G, CH / 2>(cb, a, e);
    return launch_tile<G, CH>(cb, a, e);
}

static int check_bf16(const char *what, srp_mat m, int64_t cols, srp_err *e) {
    if (m.dtype != SRP_BF16 || m.cols != cols)
        return srp_err_set(e, SRP_EINVAL,
                           "selective_scan: %s is %s [.. x %lld], expected bf16 x %lld", what,
                           srp_dtype_name(m.dtype), (long long)m.cols, (long long)cols);
    return 0;
}

int srp_cuda_selective_scan(cuda_backend *cb, const srp_s6_params *p, srp_mat x, srp_mat dt,
                            srp_mat B, srp_mat C, srp_mat z, const srp_mamba_state *st, srp_mat y,
                            srp_err *e) {
    const int Di = p->d_inner, N = p->state;
    if (Di < 1 || N < 1)
        return srp_err_set(e, SRP_EINVAL, "selective_scan: %d channels, state %d", Di, N);
    int rc = check_bf16("x", x, Di, e);
    if (!rc) rc = check_bf16("dt", dt, Di, e);
    if (!rc) rc = check_bf16("B", B, N, e);
    if (!rc) rc = check_bf16("C", C, N, e);
    if (!rc) rc = check_bf16("y", y, Di, e);
    if (!rc && z.data) rc = check_bf16("z", z, Di, e);
    if (rc) return rc;
    if (p->A_log->m.dtype != SRP_F32 || p->A_log->m.rows != Di || p->A_log->m.cols != N ||
        (p->dt_bias && p->dt_bias->m.dtype != SRP_F32) || (p->D && p->D->m.dtype != SRP_F32))
        return srp_err_set(e, SRP_EINVAL, "selective_scan: A_log must be fp32 [%d x %d]", Di, N);
    const cuda_batch *b = &cb->batch;
    if (b->n_tokens == 0) return 0;
    s6_args a;
    a.x = (const __nv_bfloat16 *)x.data, a.ldx = x.ld;
    a.dt = (const __nv_bfloat16 *)dt.data, a.lddt = dt.ld;
    a.B = (const __nv_bfloat16 *)B.data, a.ldb = B.ld;
    a.C = (const __nv_bfloat16 *)C.data, a.ldc = C.ld;
    a.z = (const __nv_bfloat16 *)z.data, a.ldz = z.data ? z.ld : 0;
    a.y = (__nv_bfloat16 *)y.data, a.ldy = y.ld;
    a.A_log = (const float *)p->A_log->m.data;
    a.dt_bias = p->dt_bias ? (const float *)p->dt_bias->m.data : NULL;
    a.D = p->D ? (const float *)p->D->m.data : NULL;
    a.ssm = st->ssm;
    a.d_inner = Di, a.state = N;
    if (b->n_decode > 0) {
        /* float4 rows when the state rows are 16-byte aligned */
        const int vec = N % 4 == 0 ? 4 : 1;
        int tpc = 1;
        while (tpc < 32 && tpc * vec < N) tpc *= 2;
        dim3 grid((unsigned)((Di + S6_DEC_BLOCK / tpc - 1) / (S6_DEC_BLOCK / tpc)),
                  (unsigned)b->n_decode);
        if (vec == 4)
            s6_decode_kernel<4><<<grid, S6_DEC_BLOCK, 0, cb->stream>>>(a, *b, tpc);
        else
            s6_decode_kernel<1><<<grid, S6_DEC_BLOCK, 0, cb->stream>>>(a, *b, tpc);
        CUDA_LAUNCHED(e);
    }
    if (b->n_prefill == 0) return 0;
    if (N <= 8) return launch_prefill<2, 32>(cb, a, e);
    if (N <= 16) return launch_prefill<4, 16>(cb, a, e);
    if (N <= 32) return launch_prefill<8, 16>(cb, a, e);
    if (N <= 4 * S6_MAX_G) return launch_prefill<16, 16>(cb, a, e);
    return srp_err_set(e, SRP_EUNSUPPORTED, "selective_scan: state size %d (at most %d on the GPU)",
                       N, 4 * S6_MAX_G);
}
