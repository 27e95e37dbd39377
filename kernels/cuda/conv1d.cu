/* Causal depthwise conv1d over packed variable-length sequences, continuing from each sequence's
 * conv state (the last kernel-1 raw inputs, bf16, oldest first) and writing it back; then silu. */
#include "cuda_ops.h"

#define MAX_KERNEL 64

#define RUN 16 /* consecutive tokens per thread: each input is loaded once */

__device__ __forceinline__ float conv_in(const __nv_bfloat16 *x, int64_t ldx,
                                         const __nv_bfloat16 *st, int km1, int have_state,
                                         int t_first, int src, int c) {
    /* input at position src relative to the sequence's first token of this step */
    if (src >= 0) return __bfloat162float(x[(int64_t)(t_first + src) * ldx + c]);
    return have_state ? __bfloat162float(st[km1 + src]) : 0.0f;
}

/* One thread per (channel, run of RUN tokens), with a sliding window of the last kernel-1 raw
 * inputs; the window restarts where a new sequence begins. Inputs before a sequence's first
 * token of this step come from its slot's conv state, or are zero. KS is the kernel size when
 * known at compile time (the window then lives in registers), 0 for any other size. */
template <int KS>
__global__ void conv1d_out_kernel(const __nv_bfloat16 *x, int64_t ldx, const float *w,
                                  const float *bias, int kernel_rt, const __nv_bfloat16 *state,
                                  int channels, cuda_batch b, __nv_bfloat16 *out, int64_t ldo) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const int kernel = KS > 0 ? KS : kernel_rt;
    const int t_begin = blockIdx.y * RUN;
    const int t_end = min(t_begin + RUN, b.n_tokens);
    const int km1 = kernel - 1;
    float win[KS > 0 ? KS : MAX_KERNEL], wc[KS > 0 ? KS : MAX_KERNEL];
#pragma unroll
    for (int k = 0; k < kernel; k++) wc[k] = w[c * kernel + k];
    const float bc = bias ? bias[c] : 0.0f;
    int seq = -1, first = 0;
    for (int t = t_begin; t < t_end; t++) {
        const int s = b.token_seq[t];
        if (s != seq) { /* (re)fill the window for this sequence */
            seq = s;
            first = b.seq_start[s];
            const int rel = t - first, have = b.n_past[s] > 0;
            const __nv_bfloat16 *st = state + ((int64_t)b.slot[s] * channels + c) * km1;
#pragma unroll
            for (int k = 0; k < km1; k++)
                win[k] = conv_in(x, ldx, st, km1, have, first, rel - km1 + k, c);
        }
        const float xt = __bfloat162float(x[(int64_t)t * ldx + c]);
        float acc = bc + wc[km1] * xt;
#pragma unroll
        for (int k = 0; k < km1; k++) acc += wc[k] * win[k];
#pragma unroll
        for (int k = 0; k + 1 < km1; k++) win[k] = win[k + 1];
        if (km1 > 0) win[km1 - 1] = xt;
        out[(int64_t)t * ldo + c] = __float2bfloat16(acc / (1.0f + __expf(-acc)));
    }
}

/* One thread per (sequence, channel): the new state is the last kernel-1 inputs, which for a
 * step shorter than that still include part of the old state. */
__global__ void conv1d_state_kernel(const __nv_bfloat16 *x, int64_t ldx, int kernel,
                                    __nv_bfloat16 *state, int channels, cuda_batch b) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, s = blockIdx.y;
    if (c >= channels) return;
    const int km1 = kernel - 1, t0 = b.seq_start[s], len = b.seq_start[s + 1] - t0;
    __nv_bfloat16 *st = state + ((int64_t)b.slot[s] * channels + c) * km1;
    __nv_bfloat16 old[MAX_KERNEL];
    for (int k = 0; k < km1; k++) old[k] = b.n_past[s] > 0 ? st[k] : __float2bfloat16(0.0f);
    for (int k = 0; k < km1; k++) {
        const int src = len - km1 + k;
        st[k] = src >= 0 ? x[(int64_t)(t0 + src) * ldx + c] : old[k + len];
    }
}

/* A step of one-token sequences only (decode): one thread per (sequence, channel) reads the
 * window from the state, writes the output and the shifted window back, all in one pass (the
 * two kernels above would read the state twice and cost two launches per layer). */
template <int KS>
__global__ void conv1d_decode_kernel(const __nv_bfloat16 *x, int64_t ldx, const float *w,
                                     const float *bias, __nv_bfloat16 *state, int channels,
                                     cuda_batch b, __nv_bfloat16 *out, int64_t ldo) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, s = blockIdx.y;
    if (c >= channels) return;
    constexpr int km1 = KS - 1;
    const int64_t t = b.seq_start[s];
    __nv_bfloat16 *st = state + ((int64_t)b.slot[s] * channels + c) * km1;
    const int have = b.n_past[s] > 0;
    float win[KS];
#pragma unroll
    for (int k = 0; k < km1; k++) win[k] = have ? __bfloat162float(st[k]) : 0.0f;
    const __nv_bfloat16 xt = x[t * ldx + c];
    win[km1] = __bfloat162float(xt);
    float acc = bias ? bias[c] : 0.0f;
#pragma unroll
    for (int k = 0; k < KS; k++) acc += w[c * KS + k] * win[k];
    out[t * ldo + c] = __float2bfloat16(acc / (1.0f + __expf(-acc)));
#pragma unroll
    for (int k = 0; k + 1 < km1; k++) st[k] = __float2bfloat16(win[k + 1]);
    st[km1 - 1] = xt;
}

int srp_cuda_conv1d(cuda_backend *cb, srp_mat xbc, const srp_weight *w, const srp_weight *bias,
                    int kernel, const srp_mamba_state *st, srp_mat out, srp_err *e) {
    const int channels = (int)xbc.cols;
    if (w->m.rows != channels || w->m.cols != kernel || w->m.dtype != SRP_F32)
        return srp_err_set(e, SRP_EINVAL, "conv1d: weight [%lld x %lld] for %d channels, kernel %d",
                           (long long)w->m.rows, (long long)w->m.cols, channels, kernel);
    if (kernel < 1 || kernel > MAX_KERNEL)
        return srp_err_set(e, SRP_EUNSUPPORTED, "conv1d: kernel %d (at most %d)", kernel,
                           MAX_KERNEL);
    if (xbc.dtype != SRP_BF16 || out.dtype != SRP_BF16 || st->conv_dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "conv1d: expects bf16 inputs, outputs and state");
    const cuda_batch *b = &cb->batch;
    if (b->n_tokens == 0) return 0;
    const __nv_bfloat16 *xp = (const __nv_bfloat16 *)xbc.data;
    const float *wp = (const float *)w->m.data, *bp = bias ? (const float *)bias->m.data : NULL;
    if (b->n_prefill == 0 && (kernel == 4 || kernel == 3 || kernel == 2)) {
        dim3 grid((channels + 127) / 128, b->n_seqs);
        __nv_bfloat16 *sp = (__nv_bfloat16 *)st->conv, *op = (__nv_bfloat16 *)out.data;
        if (kernel == 4)
            conv1d_decode_kernel<4>
                <<<grid, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, sp, channels, *b, op, out.ld);
        else if (kernel == 3)
            conv1d_decode_kernel<3>
                <<<grid, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, sp, channels, *b, op, out.ld);
        else
            conv1d_decode_kernel<2>
                <<<grid, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, sp, channels, *b, op, out.ld);
        CUDA_LAUNCHED(e);
        return 0;
    }
    dim3 grid_out((channels + 127) / 128, (b->n_tokens + RUN - 1) / RUN);
    const __nv_bfloat16 *sp = (const __nv_bfloat16 *)st->conv;
    __nv_bfloat16 *op = (__nv_bfloat16 *)out.data;
    switch (kernel) {
    case 4:
        conv1d_out_kernel<4><<<grid_out, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, kernel, sp,
                                                               channels, *b, op, out.ld);
        break;
    case 3:
        conv1d_out_kernel<3><<<grid_out, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, kernel, sp,
                                                               channels, *b, op, out.ld);
        break;
    case 2:
        conv1d_out_kernel<2><<<grid_out, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, kernel, sp,
                                                               channels, *b, op, out.ld);
        break;
    default:
        conv1d_out_kernel<0><<<grid_out, 128, 0, cb->stream>>>(xp, xbc.ld, wp, bp, kernel, sp,
                                                               channels, *b, op, out.ld);
    }
    CUDA_LAUNCHED(e);
    if (kernel > 1) {
        dim3 grid_st((channels + 127) / 128, b->n_seqs);
        conv1d_state_kernel<<<grid_st, 128, 0, cb->stream>>>(
            (const __nv_bfloat16 *)xbc.data, xbc.ld, kernel, (__nv_bfloat16 *)st->conv, channels,
            *b);
        CUDA_LAUNCHED(e);
    }
    return 0;
}
