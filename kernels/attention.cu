/* Attention, plain version: writes the step's K/V into the pages, then one block per (token,
 * head) walks the token's context in pieces of ATT_PIECE keys with an online softmax (running
 * maximum and sum), accumulating the output in registers. Launch shape and shared memory do not
 * depend on the context length, so a captured decode graph stays valid as contexts grow. */
#include "cuda_internal.h"

#define ATT_PIECE   256
#define ATT_THREADS 128
#define ATT_MAX_DIM 256

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

__global__ void attn_online_kernel(const __nv_bfloat16 *q, int64_t ldq, const __nv_bfloat16 *kc,
                                   const __nv_bfloat16 *vc, int bs, int H, int KV, int D,
                                   float scale, cuda_batch b, __nv_bfloat16 *out, int64_t ldo) {
    __shared__ float score[ATT_PIECE];
    __shared__ float qs[ATT_MAX_DIM];
    __shared__ float stat[2];
    const int t = blockIdx.x, h = blockIdx.y, s = b.token_seq[t], pos = b.token_pos[t];
    const int kvh = h / (H / KV);
    const int32_t *table = b.block_table + (int64_t)s * b.max_blocks;
    for (int c = threadIdx.x; c < D; c += blockDim.x)
        qs[c] = __bfloat162float(q[(int64_t)t * ldq + (int64_t)h * D + c]) * scale;
    float acc[ATT_MAX_DIM / ATT_THREADS] = { 0 };
    float run_max = -INFINITY, run_sum = 0.0f;
    __syncthreads();
    for (int j0 = 0; j0 <= pos; j0 += ATT_PIECE) {
        const int n = min(ATT_PIECE, pos + 1 - j0);
        for (int jj = threadIdx.x; jj < n; jj += blockDim.x) {
            const int j = j0 + jj;
            const __nv_bfloat16 *kj = kc + (((int64_t)table[j / bs] * bs + j % bs) * KV + kvh) * D;
            float d = 0.0f;
            for (int c = 0; c < D; c++) d += qs[c] * __bfloat162float(kj[c]);
            score[jj] = d;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            float mx = run_max;
            for (int jj = 0; jj < n; jj++) mx = fmaxf(mx, score[jj]);
            stat[0] = mx;
            stat[1] = __expf(run_max - mx); /* rescales what was accumulated so far */
        }
        __syncthreads();
        const float mx = stat[0], rescale = stat[1];
        for (int jj = threadIdx.x; jj < n; jj += blockDim.x) score[jj] = __expf(score[jj] - mx);
        __syncthreads();
        float piece_sum = 0.0f;
        for (int jj = 0; jj < n; jj++) piece_sum += score[jj];
        run_sum = run_sum * rescale + piece_sum;
        run_max = mx;
        for (int r = 0; r < ATT_MAX_DIM / ATT_THREADS; r++) {
            const int c = threadIdx.x + r * ATT_THREADS;
            if (c >= D) break;
            float a = acc[r] * rescale;
            for (int jj = 0; jj < n; jj++) {
                const int j = j0 + jj;
                a += score[jj] *
                     __bfloat162float(
                         vc[(((int64_t)table[j / bs] * bs + j % bs) * KV + kvh) * D + c]);
            }
            acc[r] = a;
        }
        __syncthreads(); /* score is reused by the next piece */
    }
    for (int r = 0; r < ATT_MAX_DIM / ATT_THREADS; r++) {
        const int c = threadIdx.x + r * ATT_THREADS;
        if (c < D) out[(int64_t)t * ldo + (int64_t)h * D + c] = __float2bfloat16(acc[r] / run_sum);
    }
}

int srp_cuda_attention(cuda_backend *cb, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                       const srp_kv_layer *kv, srp_mat out, srp_err *e) {
    const cuda_batch *b = &cb->batch;
    if (!b->has_block_table) return srp_err_set(e, SRP_EINVAL, "attention: no block table");
    if (p->head_dim > ATT_MAX_DIM || p->heads % p->kv_heads)
        return srp_err_set(e, SRP_EUNSUPPORTED, "attention: head_dim %d, %d heads over %d",
                           p->head_dim, p->heads, p->kv_heads);
    if (q.dtype != SRP_BF16 || k.dtype != SRP_BF16 || v.dtype != SRP_BF16 ||
        out.dtype != SRP_BF16 || kv->dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "attention: expects bf16 buffers");
    if (b->n_tokens == 0) return 0;
    kv_write_kernel<<<b->n_tokens, 128, 0, cb->stream>>>(
        (const __nv_bfloat16 *)k.data, k.ld, (const __nv_bfloat16 *)v.data, v.ld,
        (__nv_bfloat16 *)kv->k, (__nv_bfloat16 *)kv->v, kv->block_size, p->kv_heads * p->head_dim,
        *b);
    CUDA_LAUNCHED(e);
    dim3 grid(b->n_tokens, p->heads);
    attn_online_kernel<<<grid, ATT_THREADS, 0, cb->stream>>>(
        (const __nv_bfloat16 *)q.data, q.ld, (const __nv_bfloat16 *)kv->k,
        (const __nv_bfloat16 *)kv->v, kv->block_size, p->heads, p->kv_heads, p->head_dim, p->scale,
        *b, (__nv_bfloat16 *)out.data, out.ld);
    CUDA_LAUNCHED(e);
    return 0;
}
