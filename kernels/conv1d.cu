/* Causal depthwise conv1d over packed variable-length sequences, continuing from each sequence's
 * conv state (the last kernel-1 raw inputs, bf16, oldest first) and writing it back; then silu. */
#include "cuda_internal.h"

#define MAX_KERNEL 64

/* One thread per (token, channel). Inputs before the sequence's first token of this step come
 * from the slot's conv state, or are zero for a new sequence. */
__global__ void conv1d_out_kernel(const __nv_bfloat16 *x, int64_t ldx, const float *w,
                                  const float *bias, int kernel, const __nv_bfloat16 *state,
                                  int channels, cuda_batch b, __nv_bfloat16 *out, int64_t ldo) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (c >= channels) return;
    const int s = b.token_seq[t], rel = t - b.seq_start[s], km1 = kernel - 1;
    const __nv_bfloat16 *st = state + ((int64_t)b.slot[s] * channels + c) * km1;
    const int have_state = b.n_past[s] > 0;
    float acc = bias ? bias[c] : 0.0f;
    for (int k = 0; k < kernel; k++) {
        const int src = rel - km1 + k; /* position relative to this step's first token */
        float v;
        if (src >= 0)
            v = __bfloat162float(x[(int64_t)(t - rel + src) * ldx + c]);
        else
            v = have_state ? __bfloat162float(st[km1 + src]) : 0.0f;
        acc += w[c * kernel + k] * v;
    }
    out[(int64_t)t * ldo + c] = __float2bfloat16(acc / (1.0f + __expf(-acc)));
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
    dim3 grid_out((channels + 127) / 128, b->n_tokens);
    conv1d_out_kernel<<<grid_out, 128, 0, cb->stream>>>(
        (const __nv_bfloat16 *)xbc.data, xbc.ld, (const float *)w->m.data,
        bias ? (const float *)bias->m.data : NULL, kernel, (const __nv_bfloat16 *)st->conv,
        channels, *b, (__nv_bfloat16 *)out.data, out.ld);
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
