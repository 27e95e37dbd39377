/* The CPU backend's attention: causal GQA over a paged KV cache, no position embedding (the
 * hybrids' attention layers are NoPE). */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

static float *kv_row(const srp_kv_layer *kv, void *base, int32_t block, int off, int kv_heads,
                     int head_dim) {
    return (float *)base + (((int64_t)block * kv->block_size + off) * kv_heads) * head_dim;
}

int srp_cpu_attention(srp_backend *be, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                      const srp_kv_layer *kv, srp_mat out, srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    const int H = p->heads, KV = p->kv_heads, D = p->head_dim, bs = kv->block_size;
    if (!b->block_table) return srp_err_set(e, SRP_EINVAL, "attention: batch has no block table");
    if (H % KV) return srp_err_set(e, SRP_EINVAL, "attention: %d heads over %d KV heads", H, KV);
    /* 1. append this step's keys and values to each sequence's pages */
    for (int s = 0; s < b->n_seqs; s++) {
        const int32_t *table = b->block_table + (int64_t)s * b->max_blocks;
        for (int t = b->seq_start[s]; t < b->seq_start[s + 1]; t++) {
            int pos = b->n_past[s] + (t - b->seq_start[s]);
            if (pos / bs >= b->max_blocks)
                return srp_err_set(e, SRP_EINVAL, "attention: position %d beyond the block table",
                                   pos);
            int32_t blk = table[pos / bs];
            memcpy(kv_row(kv, kv->k, blk, pos % bs, KV, D), cpu_row(k, t), (size_t)KV * D * 4);
            memcpy(kv_row(kv, kv->v, blk, pos % bs, KV, D), cpu_row(v, t), (size_t)KV * D * 4);
        }
    }
    /* 2. each query token attends to positions 0 .. its own */
    int max_ctx = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        int n = b->n_past[s] + b->seq_start[s + 1] - b->seq_start[s];
        if (n > max_ctx) max_ctx = n;
    }
    int rc = 0;
    const int64_t work = (int64_t)b->n_tokens * H * D * (max_ctx > 0 ? max_ctx : 1);
#pragma omp parallel if (work > CPU_PAR_MIN)
    {
        float *score = malloc((size_t)(max_ctx > 0 ? max_ctx : 1) * sizeof(float));
        if (!score) {
#pragma omp atomic write
            rc = SRP_ENOMEM;
        } else {
#pragma omp for collapse(2) schedule(dynamic)
            for (int t = 0; t < b->n_tokens; t++) {
                for (int h = 0; h < H; h++) {
                    int s = 0;
                    while (b->seq_start[s + 1] <= t) s++;
                    const int32_t *table = b->block_table + (int64_t)s * b->max_blocks;
                    const int pos = b->n_past[s] + (t - b->seq_start[s]);
                    const int kvh = h / (H / KV);
                    const float *qh = cpu_row(q, t) + (int64_t)h * D;
                    float mx = -INFINITY;
                    for (int j = 0; j <= pos; j++) {
                        const float *kj =
                            kv_row(kv, kv->k, table[j / bs], j % bs, KV, D) + (int64_t)kvh * D;
                        float dot = 0.0f;
                        for (int d = 0; d < D; d++) dot += qh[d] * kj[d];
                        score[j] = dot * p->scale;
                        if (score[j] > mx) mx = score[j];
                    }
                    double sum = 0.0;
                    for (int j = 0; j <= pos; j++) {
                        score[j] = expf(score[j] - mx);
                        sum += score[j];
                    }
                    float *o = cpu_row(out, t) + (int64_t)h * D;
                    memset(o, 0, (size_t)D * sizeof(float));
                    for (int j = 0; j <= pos; j++) {
                        const float *vj =
                            kv_row(kv, kv->v, table[j / bs], j % bs, KV, D) + (int64_t)kvh * D;
                        const float pj = (float)(score[j] / sum);
                        for (int d = 0; d < D; d++) o[d] += pj * vj[d];
                    }
                }
            }
        }
        free(score);
    }
    if (rc) return srp_err_set(e, rc, "attention: out of memory");
    return 0;
}
