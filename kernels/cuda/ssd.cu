/* The selective scan of Mamba-2 (research/model-spec.md sections 1.3 and 2).
 *
 * Prefill sequences go through the chunked SSD algorithm: one block per (sequence, head) walks the
 * sequence's chunks in order, keeping the head's [P x N] state on chip, so x, B, C and dt are read
 * once and y written once; each chunk's intra-chunk ("diagonal") part is a small masked
 * attention-like product and the state carries the rest. Single-token sequences take the
 * recurrent update, a pass over their slot's state at memory speed. The tensor-core version of
 * the chunked kernel is in ssd_mma.cu; this file also holds the generic one, for any head_dim and
 * state size. */
#include "cuda_ops.h"
#include "ssd.h"

__device__ __forceinline__ float softplus_f(float v) {
    return v > 20.0f ? v : log1pf(__expf(v));
}

/* softplus(dt + dt_bias) clamped: the time step of one token and head. */
__device__ __forceinline__ float time_step(const __nv_bfloat16 *dt, int64_t ld, int64_t t, int h,
                                           const float *dt_bias, float lo, float hi) {
    float d = softplus_f(__bfloat162float(dt[t * ld + h]) + dt_bias[h]);
    return fminf(fmaxf(d, lo), hi);
}

/* ---- recurrent update: one-token sequences ----------------------------------------------------
 * Block = (decode sequence, head, group of 16 rows of the head's state); each warp owns 4 rows
 * and each lane a strided set of state columns, so the state is streamed once, coalesced. */
#define UPD_ROWS_PER_WARP 4
#define UPD_WARPS         4

__global__ void ssd_update_kernel(ssd_args a, cuda_batch b) {
    extern __shared__ float smem[]; /* B[N], C[N] of the head's group */
    const int s = b.decode_seq[blockIdx.x], h = blockIdx.y;
    const int P = a.head_dim, N = a.state, g = h / (a.heads / a.groups);
    const int64_t t = b.seq_start[s];
    float *Bs = smem, *Cs = smem + N;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        Bs[n] = __bfloat162float(a.B[t * a.ldb + (int64_t)g * N + n]);
        Cs[n] = __bfloat162float(a.C[t * a.ldc + (int64_t)g * N + n]);
    }
    __syncthreads();
    const float dt = time_step(a.dt, a.lddt, t, h, a.dt_bias, a.dt_min, a.dt_max);
    const float dA = __expf(dt * -__expf(a.A_log[h]));
    const int fresh = b.n_past[s] == 0;
    float *S = a.ssm + ((int64_t)b.slot[s] * a.heads + h) * P * N;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int p0 = blockIdx.z * UPD_ROWS_PER_WARP * UPD_WARPS + warp * UPD_ROWS_PER_WARP;
    for (int r = 0; r < UPD_ROWS_PER_WARP; r++) {
        const int p = p0 + r;
        if (p >= P) break;
        const float xp = __bfloat162float(a.x[t * a.ldx + (int64_t)h * P + p]);
        float *Sp = S + (int64_t)p * N, acc = 0.0f;
        for (int n = lane; n < N; n += 32) {
            float sv = fresh ? 0.0f : Sp[n];
            sv = sv * dA + dt * xp * Bs[n];
            Sp[n] = sv;
            acc += sv * Cs[n];
        }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) a.y[t * a.ldy + (int64_t)h * P + p] = __float2bfloat16(acc + a.D[h] * xp);
    }
}

/* The same update for few sequences (batch <= UPD_SMALL_BATCH) and state 128: there the grid is
 * too small to keep enough loads in flight with the loop above, so each lane loads one float4 of
 * each of its warp's rows before using any. At larger batch the simple loop measured faster (88%
 * against 78% of the roofline at batch >= 8 on an H100). */
#define UPD_SMALL_BATCH 4

__global__ void ssd_update_small_kernel(ssd_args a, cuda_batch b) {
    __shared__ float Bs[128], Cs[128];
    const int s = b.decode_seq[blockIdx.x], h = blockIdx.y;
    const int P = a.head_dim, N = 128, g = h / (a.heads / a.groups);
    const int64_t t = b.seq_start[s];
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        Bs[n] = __bfloat162float(a.B[t * a.ldb + (int64_t)g * N + n]);
        Cs[n] = __bfloat162float(a.C[t * a.ldc + (int64_t)g * N + n]);
    }
    __syncthreads();
    const float dt = time_step(a.dt, a.lddt, t, h, a.dt_bias, a.dt_min, a.dt_max);
    const float dA = __expf(dt * -__expf(a.A_log[h]));
    const int fresh = b.n_past[s] == 0;
    float *S = a.ssm + ((int64_t)b.slot[s] * a.heads + h) * P * N;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n0 = lane * 4;
    const int p0 = blockIdx.z * UPD_ROWS_PER_WARP * UPD_WARPS + warp * UPD_ROWS_PER_WARP;
    float4 sv[UPD_ROWS_PER_WARP];
#pragma unroll
    for (int r = 0; r < UPD_ROWS_PER_WARP; r++)
        sv[r] = fresh || p0 + r >= P ? make_float4(0.f, 0.f, 0.f, 0.f)
                                     : *(const float4 *)(S + (int64_t)(p0 + r) * N + n0);
    const float4 bn = *(const float4 *)(Bs + n0), cn = *(const float4 *)(Cs + n0);
#pragma unroll
    for (int r = 0; r < UPD_ROWS_PER_WARP; r++) {
        const int p = p0 + r;
        if (p >= P) break;
        const float xp = __bfloat162float(a.x[t * a.ldx + (int64_t)h * P + p]), xdt = dt * xp;
        float4 v = sv[r];
        v.x = v.x * dA + xdt * bn.x;
        v.y = v.y * dA + xdt * bn.y;
        v.z = v.z * dA + xdt * bn.z;
        v.w = v.w * dA + xdt * bn.w;
        *(float4 *)(S + (int64_t)p * N + n0) = v;
        float acc = v.x * cn.x + v.y * cn.y + v.z * cn.z + v.w * cn.w;
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) a.y[t * a.ldy + (int64_t)h * P + p] = __float2bfloat16(acc + a.D[h] * xp);
    }
}

/* ---- generic chunked scan ---------------------------------------------------------------------
 * Shared memory: S[P][N] (fp32 state), x[Q][P], B[Q][N], C[Q][N], M[Q][Q], dt[Q], cs[Q]. */
static size_t generic_smem(int P, int N, int Q) {
    return sizeof(float) * ((size_t)P * N + (size_t)Q * (P + 2 * N) + (size_t)Q * Q + 2 * Q);
}

__global__ void ssd_chunked_generic_kernel(ssd_args a, cuda_batch b, int Q) {
    extern __shared__ float smem[];
    const int P = a.head_dim, N = a.state;
    const int s = b.prefill_seq[blockIdx.x], h = blockIdx.y, g = h / (a.heads / a.groups);
    float *S = smem, *xs = S + P * N, *Bs = xs + Q * P, *Cs = Bs + Q * N, *M = Cs + Q * N;
    float *dtv = M + Q * Q, *cs = dtv + Q;
    float *gS = a.ssm + ((int64_t)b.slot[s] * a.heads + h) * P * N;
    const int fresh = b.n_past[s] == 0;
    for (int i = threadIdx.x; i < P * N; i += blockDim.x) S[i] = fresh ? 0.0f : gS[i];
    const float A = -__expf(a.A_log[h]), Dh = a.D[h];
    const int t_begin = b.seq_start[s], t_end = b.seq_start[s + 1];
    for (int c0 = t_begin; c0 < t_end; c0 += Q) {
        const int len = t_end - c0 < Q ? t_end - c0 : Q;
        __syncthreads(); /* the previous chunk is done with the tiles */
        for (int i = threadIdx.x; i < len * P; i += blockDim.x)
            xs[i] = __bfloat162float(a.x[(int64_t)(c0 + i / P) * a.ldx + (int64_t)h * P + i % P]);
        for (int i = threadIdx.x; i < len * N; i += blockDim.x) {
            int64_t row = (int64_t)(c0 + i / N);
            Bs[i] = __bfloat162float(a.B[row * a.ldb + (int64_t)g * N + i % N]);
            Cs[i] = __bfloat162float(a.C[row * a.ldc + (int64_t)g * N + i % N]);
        }
        for (int i = threadIdx.x; i < len; i += blockDim.x)
            dtv[i] = time_step(a.dt, a.lddt, c0 + i, h, a.dt_bias, a.dt_min, a.dt_max);
        __syncthreads();
        if (threadIdx.x == 0) {
            float run = 0.0f;
            for (int i = 0; i < len; i++) cs[i] = run += dtv[i] * A;
        }
        __syncthreads();
        /* M[i][j] = (C_i . B_j) exp(cs_i - cs_j) dt_j for j <= i: the decayed intra-chunk mixing */
        for (int idx = threadIdx.x; idx < len * len; idx += blockDim.x) {
            const int i = idx / len, j = idx % len;
            float v = 0.0f;
            if (j <= i) {
                for (int n = 0; n < N; n++) v += Cs[i * N + n] * Bs[j * N + n];
                v *= __expf(cs[i] - cs[j]) * dtv[j];
            }
            M[i * Q + j] = v;
        }
        __syncthreads();
        /* y_i = sum_j M[i][j] x_j + exp(cs_i) S C_i + D x_i, with S the state entering the chunk */
        for (int idx = threadIdx.x; idx < len * P; idx += blockDim.x) {
            const int i = idx / P, p = idx % P;
            float diag = 0.0f, off = 0.0f;
            for (int j = 0; j <= i; j++) diag += M[i * Q + j] * xs[j * P + p];
            for (int n = 0; n < N; n++) off += S[p * N + n] * Cs[i * N + n];
            float yv = diag + __expf(cs[i]) * off + Dh * xs[i * P + p];
            a.y[(int64_t)(c0 + i) * a.ldy + (int64_t)h * P + p] = __float2bfloat16(yv);
        }
        __syncthreads();
        /* S <- exp(cs_last) S + sum_j exp(cs_last - cs_j) dt_j x_j B_j^T */
        const float last = cs[len - 1], decay = __expf(last);
        for (int idx = threadIdx.x; idx < P * N; idx += blockDim.x) {
            const int p = idx / N, n = idx % N;
            float acc = S[idx] * decay;
            for (int j = 0; j < len; j++)
                acc += __expf(last - cs[j]) * dtv[j] * xs[j * P + p] * Bs[j * N + n];
            S[idx] = acc;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < P * N; i += blockDim.x) gS[i] = S[i];
}

int srp_cuda_ssd(cuda_backend *cb, const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C,
                 srp_mat dt, const srp_mamba_state *st, srp_mat y, srp_err *e) {
    const cuda_batch *b = &cb->batch;
    if (p->groups <= 0 || p->heads % p->groups)
        return srp_err_set(e, SRP_EINVAL, "ssd: %d heads in %d groups", p->heads, p->groups);
    if (x.dtype != SRP_BF16 || B.dtype != SRP_BF16 || C.dtype != SRP_BF16 || dt.dtype != SRP_BF16 ||
        y.dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "ssd: expects bf16 activations");
    if (x.cols != (int64_t)p->heads * p->head_dim || B.cols != (int64_t)p->groups * p->state ||
        C.cols != B.cols || dt.cols != p->heads || y.cols != x.cols)
        return srp_err_set(e, SRP_EINVAL, "ssd: operand widths do not match the head layout");
    ssd_args a;
    a.x = (const __nv_bfloat16 *)x.data, a.ldx = x.ld;
    a.B = (const __nv_bfloat16 *)B.data, a.ldb = B.ld;
    a.C = (const __nv_bfloat16 *)C.data, a.ldc = C.ld;
    a.dt = (const __nv_bfloat16 *)dt.data, a.lddt = dt.ld;
    a.y = (__nv_bfloat16 *)y.data, a.ldy = y.ld;
    a.A_log = (const float *)p->A_log->m.data;
    a.dt_bias = (const float *)p->dt_bias->m.data;
    a.D = (const float *)p->D->m.data;
    a.ssm = st->ssm;
    a.heads = p->heads, a.head_dim = p->head_dim, a.groups = p->groups, a.state = p->state;
    a.dt_min = p->dt_min, a.dt_max = p->dt_max;
    if (b->n_decode > 0) {
        dim3 grid(b->n_decode, p->heads,
                  (p->head_dim + UPD_ROWS_PER_WARP * UPD_WARPS - 1) /
                      (UPD_ROWS_PER_WARP * UPD_WARPS));
        if (b->n_decode <= UPD_SMALL_BATCH && p->state == 128)
            ssd_update_small_kernel<<<grid, 32 * UPD_WARPS, 0, cb->stream>>>(a, *b);
        else
            ssd_update_kernel<<<grid, 32 * UPD_WARPS, 2 * p->state * sizeof(float), cb->stream>>>(
                a, *b);
        CUDA_LAUNCHED(e);
    }
    if (b->n_prefill == 0) return 0;
    if (srp_cuda_ssd_mma_supported(p)) return srp_cuda_ssd_mma(cb, &a, e);
    /* the generic kernel: the largest chunk whose tiles fit in shared memory */
    size_t limit = cb->prop.sharedMemPerBlockOptin;
    int Q = SRP_SSD_CHUNK;
    while (Q > 4 && generic_smem(p->head_dim, p->state, Q) > limit) Q /= 2;
    size_t bytes = generic_smem(p->head_dim, p->state, Q);
    if (bytes > limit)
        return srp_err_set(e, SRP_EUNSUPPORTED, "ssd: head_dim %d x state %d does not fit on chip",
                           p->head_dim, p->state);
    CUDA_TRY(cudaFuncSetAttribute(ssd_chunked_generic_kernel,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
             e);
    dim3 grid(b->n_prefill, p->heads);
    ssd_chunked_generic_kernel<<<grid, 256, bytes, cb->stream>>>(a, *b, Q);
    CUDA_LAUNCHED(e);
    return 0;
}
