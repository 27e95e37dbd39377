/* Rotary position embedding, in place on the bf16 q and k of a step (the CPU twin is
 * kernels/cpu/cpu_rope.c). One block per token; threads walk (head, pair) of q then k. Angles
 * are float32 products of frequency and position, as transformers forms them. */
#include "cuda_ops.h"

__global__ void rope_kernel(__nv_bfloat16 *q, int64_t ldq, __nv_bfloat16 *k, int64_t ldk,
                            const float *inv_freq, const int32_t *token_pos,
                            const int32_t *token_seq, const int32_t *rope_len, int heads,
                            int kv_heads, int head_dim, int dim, int dynamic, float factor,
                            int max_positions) {
    const int t = blockIdx.x, half = dim / 2;
    const float pos = (float)token_pos[t];
    float ratio = 1.0f;
    if (dynamic) {
        const int len = rope_len[token_seq[t]];
        if (len > max_positions)
            ratio = (float)pow((double)factor * len / max_positions - (factor - 1.0),
                               (double)dim / (dim - 2));
    }
    const int pairs = (heads + kv_heads) * half;
    for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
        const int h = i / half, j = i % half;
        __nv_bfloat16 *head = h < heads ? q + t * ldq + (int64_t)h * head_dim
                                        : k + t * ldk + (int64_t)(h - heads) * head_dim;
        float f = inv_freq[j];
        if (ratio != 1.0f) f = (float)(f * pow((double)ratio, -2.0 * j / dim));
        float s, c;
        sincosf(f * pos, &s, &c);
        const float a = __bfloat162float(head[j]), b = __bfloat162float(head[j + half]);
        head[j] = __float2bfloat16(a * c - b * s);
        head[j + half] = __float2bfloat16(b * c + a * s);
    }
}

int srp_cuda_rope(cuda_backend *cb, const srp_rope_params *p, srp_mat q, srp_mat k, srp_err *e) {
    if (q.dtype != SRP_BF16 || k.dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "rope: expects bf16 q and k");
    if (p->dim <= 0 || p->dim > p->head_dim || p->dim % 2)
        return srp_err_set(e, SRP_EINVAL, "rope: %d rotated channels of %d", p->dim, p->head_dim);
    if (q.cols != (int64_t)p->heads * p->head_dim || k.cols != (int64_t)p->kv_heads * p->head_dim)
        return srp_err_set(e, SRP_EINVAL, "rope: q or k has the wrong width");
    if (cb->batch.n_tokens == 0) return 0;
    rope_kernel<<<cb->batch.n_tokens, 128, 0, cb->stream>>>(
        (__nv_bfloat16 *)q.data, q.ld, (__nv_bfloat16 *)k.data, k.ld,
        (const float *)p->inv_freq->m.data, cb->batch.token_pos, cb->batch.token_seq,
        cb->batch.rope_len, p->heads, p->kv_heads, p->head_dim, p->dim, p->dynamic, p->factor,
        p->max_positions);
    CUDA_LAUNCHED(e);
    return 0;
}
