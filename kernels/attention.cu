/* Attention, plain version: writes the step's K/V into the pages, then one block per (token,
 * head) computes scores over the whole context in shared memory, softmax in fp32, and the
 * weighted sum of V. Correct for any head_dim and context that fits in shared memory; the
 * tensor-core flash kernels replace it for speed. */
#include "cuda_internal.h"

__global__ void kv_write_kernel(const __nv_bfloat16 *k, int64_t ldk, const __nv_bfloat16 *v,
                                int64_t ldv, __nv_bfloat16 *kc, __nv_bfloat16 *vc, int bs,
                                int width, cuda_batch b) {
    const int t = blockIdx.x, s = b.token_seq[t], pos = b.token_pos[t];
    const int32_t blk = b.block_table[(int64_t)s * b.max_blocks + pos / bs];
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        kc[((int64_t)blk * bs + pos % bs) * width + c] = k[(int64_t)t * ldk + c];
        vc[((int64_t)blk * bs + pos % bs) * width + c] = v[(int64_t)t * ldv + c];
    }
}

__global__ void attn_naive_kernel(const __nv_bfloat16 *q, int64_t ldq, const __nv_bfloat16 *kc,
                                  const __nv_bfloat16 *vc, int bs, int H, int KV, int D,
                                  float scale, cuda_batch b, __nv_bfloat16 *out, int64_t ldo) {
    extern __shared__ float sh[];
    const int t = blockIdx.x, h = blockIdx.y, s = b.token_seq[t], pos = b.token_pos[t];
    const int kvh = h / (H / KV);
    float *score = sh, *red = sh + pos + 1;
    for (int j = threadIdx.x; j <= pos; j += blockDim.x) {
        const int32_t blk = b.block_table[(int64_t)s * b.max_blocks + j / bs];
        const __nv_bfloat16 *kj = kc + (((int64_t)blk * bs + j % bs) * KV + kvh) * D;
        float d = 0;
        for (int c = 0; c < D; c++)
            d += __bfloat162float(q[(int64_t)t * ldq + h * D + c]) * __bfloat162float(kj[c]);
        score[j] = d * scale;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float mx = -INFINITY, sum = 0;
        for (int j = 0; j <= pos; j++) mx = fmaxf(mx, score[j]);
        for (int j = 0; j <= pos; j++) sum += (score[j] = __expf(score[j] - mx));
        red[0] = sum;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = 0;
        for (int j = 0; j <= pos; j++) {
            const int32_t blk = b.block_table[(int64_t)s * b.max_blocks + j / bs];
            acc +=
                score[j] * __bfloat162float(vc[(((int64_t)blk * bs + j % bs) * KV + kvh) * D + c]);
        }
        out[(int64_t)t * ldo + h * D + c] = __float2bfloat16(acc / red[0]);
    }
}

int srp_cuda_attention(cuda_backend *cb, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                       const srp_kv_layer *kv, srp_mat out, srp_err *e) {
    const cuda_batch *b = &cb->batch;
    if (!b->has_block_table) return srp_err_set(e, SRP_EINVAL, "attention: no block table");
    if ((size_t)(b->max_ctx + 2) * sizeof(float) > 48 * 1024)
        return srp_err_set(e, SRP_EUNSUPPORTED, "attention: context of %d tokens", b->max_ctx);
    if (b->n_tokens == 0) return 0;
    kv_write_kernel<<<b->n_tokens, 128, 0, cb->stream>>>(
        (const __nv_bfloat16 *)k.data, k.ld, (const __nv_bfloat16 *)v.data, v.ld,
        (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v, kv->block_size, p->kv_heads * p->head_dim,
        *b);
    CUDA_LAUNCHED(e);
    dim3 grid(b->n_tokens, p->heads);
    attn_naive_kernel<<<grid, 128, (b->max_ctx + 2) * sizeof(float), cb->stream>>>(
        (const __nv_bfloat16 *)q.data, q.ld, (const __nv_bfloat16 *)kv->k,
        (const __nv_bfloat16 *)kv->v, kv->block_size, p->heads, p->kv_heads, p->head_dim, p->scale,
        *b, (__nv_bfloat16 *)out.data, out.ld);
    CUDA_LAUNCHED(e);
    return 0;
}
