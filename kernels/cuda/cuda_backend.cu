/* The CUDA backend: device memory, weight upload, per-step batch metadata, and the operation
 * table. The operations themselves live in one file per family (gemm.cu, norm.cu, conv1d.cu,
 * ssd.cu, attention.cu, moe.cu, sample.cu). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"

int srp_cuda_check(cudaError_t err, const char *what, srp_err *e) {
    if (err == cudaSuccess) return 0;
    int code = err == cudaErrorMemoryAllocation ? SRP_ENOMEM : SRP_EBACKEND;
    return srp_err_set(e, code, "cuda: %s: %s", what, cudaGetErrorString(err));
}

extern "C" int srp_cuda_available(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static void cuda_destroy(srp_backend *be) {
    cuda_backend *cb = cuda_of(be);
    for (int i = 0; i < cb->n_graphs; i++) cudaGraphExecDestroy(cb->graphs[i].exec);
    srp_cuda_attention_free(cb);
    if (cb->blas) cublasDestroy(cb->blas);
    if (cb->blas_workspace) cudaFree(cb->blas_workspace);
    if (cb->meta_dev) cudaFree(cb->meta_dev);
    if (cb->meta_host) cudaFreeHost(cb->meta_host);
    if (cb->meta_event) cudaEventDestroy(cb->meta_event);
    if (cb->sample_host) cudaFreeHost(cb->sample_host);
    if (cb->moe_host) cudaFreeHost(cb->moe_host);
    if (cb->sample_dev) cudaFree(cb->sample_dev);
    if (cb->sample_params_dev) cudaFree(cb->sample_params_dev);
    if (cb->sample_scratch) cudaFree(cb->sample_scratch);
    if (cb->sample_mask_host) cudaFreeHost(cb->sample_mask_host);
    if (cb->sample_slot_host) cudaFreeHost(cb->sample_slot_host);
    if (cb->sample_mask_dev) cudaFree(cb->sample_mask_dev);
    if (cb->sample_slot_dev) cudaFree(cb->sample_slot_dev);
    free(cb->sample_rows_host);
    free(cb->sample_params_host);
    if (cb->ssd_scratch) cudaFree(cb->ssd_scratch);
    if (cb->stream) cudaStreamDestroy(cb->stream);
    free(cb);
}

static int cuda_alloc(srp_backend *be, size_t bytes, void **out, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    void *p = NULL;
    size_t n = bytes ? bytes : 16;
    cudaError_t err = cudaMalloc(&p, n);
    if (err != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky-free error so later calls are not blamed */
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        return srp_err_set(e, SRP_ENOMEM, "cuda: cannot allocate %.1f MB (%.1f MB free of %.1f MB)",
                           n / 1e6, free_b / 1e6, total / 1e6);
    }
    CUDA_TRY(cudaMemsetAsync(p, 0, n, cb->stream), e);
    CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
    *out = p;
    return 0;
}

static void cuda_free(srp_backend *be, void *p) {
    (void)be;
    cudaFree(p);
}

static int cuda_zero(srp_backend *be, void *p, size_t bytes, srp_err *e) {
    CUDA_TRY(cudaMemsetAsync(p, 0, bytes, cuda_of(be)->stream), e);
    return 0;
}

static int cuda_upload(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cb->stream), e);
    CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
    return 0;
}

static int cuda_download(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cb->stream), e);
    CUDA_TRY(cudaStreamSynchronize(cb->stream), e);
    return 0;
}

/* Device to device on the stream, without waiting: it stays ordered with the steps. */
static int cuda_copy(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e) {
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_of(be)->stream), e);
    return 0;
}

static int64_t cuda_mem_available(srp_backend *be) {
    (void)be;
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) return -1;
    return (int64_t)free_b;
}

static int64_t cuda_mem_total(srp_backend *be) {
    (void)be;
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) return -1;
    return (int64_t)total;
}

/* ---- graphs of decode steps ----------------------------------------------------------------
 * A graph is kept per (engine key, context bucket): the decode attention divides each
 * sequence's keys into splits, and a graph keeps the count it was captured with, so one recorded
 * at a short context would stream a long one through too few blocks. Buckets double from 2K;
 * a capture sizes its splits for its bucket's longest context (srp_cuda_split_ctx). */
static int ctx_bucket(int max_ctx) {
    int b = 0;
    while (b < 15 && max_ctx > (2048 << b)) b++;
    return b;
}

int srp_cuda_split_ctx(const cuda_backend *cb) {
    return cb->capturing ? 2048 << ctx_bucket(cb->batch.max_ctx) : cb->batch.max_ctx;
}

static int cuda_graph_replay(srp_backend *be, int key, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    key = key * 16 + ctx_bucket(cb->batch.max_ctx);
    for (int i = 0; i < cb->n_graphs; i++) {
        if (cb->graphs[i].key == key) {
            CUDA_TRY(cudaGraphLaunch(cb->graphs[i].exec, cb->stream), e);
            return 1;
        }
    }
    return 0;
}

static int cuda_graph_begin(srp_backend *be, int key, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    (void)key;
    CUDA_TRY(cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal), e);
    cb->capturing = 1;
    return 0;
}

/* Ends the capture; key < 0 discards it (an operation failed while recording). */
static int cuda_graph_end(srp_backend *be, int key, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    if (key >= 0) key = key * 16 + ctx_bucket(cb->batch.max_ctx);
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamEndCapture(cb->stream, &graph);
    cb->capturing = 0;
    if (key < 0) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        return 0;
    }
    CUDA_TRY(err, e);
    cudaGraphExec_t exec;
    err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_TRY(err, e);
    if (cb->n_graphs == (int)(sizeof cb->graphs / sizeof cb->graphs[0])) {
        /* full: drop the oldest, the batch sizes seen first are the least likely to recur */
        cudaGraphExecDestroy(cb->graphs[0].exec);
        memmove(cb->graphs, cb->graphs + 1, sizeof cb->graphs[0] * (cb->n_graphs - 1));
        cb->n_graphs--;
    }
    cb->graphs[cb->n_graphs].key = key;
    cb->graphs[cb->n_graphs].exec = exec;
    cb->n_graphs++;
    CUDA_TRY(cudaGraphLaunch(exec, cb->stream), e);
    return 0;
}

/* Converts checkpoint data to the device layout on the host, a slice at a time, so the upload
 * needs no full-size host copy. Matrices become bf16; per-channel vectors fp32. */
static int cuda_weight_load(srp_backend *be, const void *data, srp_dtype dtype, int64_t rows,
                            int64_t cols, int is_matrix, srp_weight *out, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    memset(out, 0, sizeof *out);
    if (dtype != SRP_F32 && dtype != SRP_F16 && dtype != SRP_BF16)
        return srp_err_set(e, SRP_EUNSUPPORTED, "cuda: weights of type %s", srp_dtype_name(dtype));
    srp_dtype dt = is_matrix ? SRP_BF16 : SRP_F32;
    size_t n = (size_t)(rows * cols), es = srp_dtype_size(dt), in_es = srp_dtype_size(dtype);
    int rc = cuda_alloc(be, n * es, &out->m.data, e);
    if (rc) return rc;
    out->m.dtype = dt;
    out->m.rows = rows;
    out->m.cols = cols;
    out->m.ld = cols;
    out->owned = 1;
    const size_t slice = 1 << 22; /* elements per staging slice */
    float *tmp = (float *)malloc(slice * sizeof(float));
    uint16_t *half = (uint16_t *)malloc(slice * sizeof(uint16_t));
    if (!tmp || !half) {
        free(tmp);
        free(half);
        cudaFree(out->m.data);
        out->m.data = NULL;
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i += slice) {
        size_t k = n - i < slice ? n - i : slice;
        const void *src = (const char *)data + i * in_es;
        const void *up = NULL;
        if (dt == SRP_BF16 && dtype == SRP_BF16) {
            memcpy(half, src, k * 2);
            up = half;
        } else {
            srp_convert_to_f32(tmp, src, dtype, k);
            if (dt == SRP_BF16) {
                for (size_t j = 0; j < k; j++) half[j] = srp_f32_to_bf16(tmp[j]);
                up = half;
            } else {
                up = tmp;
            }
        }
        rc = srp_cuda_check(
            cudaMemcpy((char *)out->m.data + i * es, up, k * es, cudaMemcpyHostToDevice),
            "weight upload", e);
    }
    free(tmp);
    free(half);
    (void)cb;
    if (rc) {
        cudaFree(out->m.data);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

static void cuda_weight_free(srp_backend *be, srp_weight *w) {
    if (w->owned) cuda_free(be, w->m.data);
    memset(w, 0, sizeof *w);
}

/* Offsets (in int32 elements) of each metadata array inside the staging buffers. Fixed by the
 * limits, not the batch, so device pointers never move between steps. */
typedef struct meta_layout {
    size_t tokens, seq_start, n_past, rope_len, slot, block_table, logit_rows, token_seq, token_pos,
        chunk_seq, chunk_start, chunk_len, decode_seq, prefill_seq, prefill_chunk0, total;
    int max_chunks;
} meta_layout;

static meta_layout layout_for(const srp_backend_limits *l) {
    meta_layout m;
    size_t o = 0;
    m.max_chunks = l->max_tokens / SRP_SSD_CHUNK + l->max_seqs + 1;
    m.tokens = o, o += (size_t)l->max_tokens;
    m.seq_start = o, o += (size_t)l->max_seqs + 1;
    m.n_past = o, o += (size_t)l->max_seqs;
    m.rope_len = o, o += (size_t)l->max_seqs;
    m.slot = o, o += (size_t)l->max_seqs;
    m.block_table = o,
    o += (size_t)l->max_seqs * (l->max_blocks_per_seq > 0 ? l->max_blocks_per_seq : 1);
    m.logit_rows = o, o += (size_t)l->max_logits;
    m.token_seq = o, o += (size_t)l->max_tokens;
    m.token_pos = o, o += (size_t)l->max_tokens;
    m.chunk_seq = o, o += (size_t)m.max_chunks;
    m.chunk_start = o, o += (size_t)m.max_chunks;
    m.chunk_len = o, o += (size_t)m.max_chunks;
    m.decode_seq = o, o += (size_t)l->max_seqs;
    m.prefill_seq = o, o += (size_t)l->max_seqs;
    m.prefill_chunk0 = o, o += (size_t)l->max_seqs;
    m.total = o;
    return m;
}

static int cuda_configure(srp_backend *be, const srp_backend_limits *lim, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    cb->lim = *lim;
    /* the decode attention's split partials, allocated now: an allocation cannot happen inside
     * a graph capture, and a graph captured without them would never split */
    if (!cb->attn_ws) CUDA_TRY(cudaMalloc((void **)&cb->attn_ws, SRP_ATTN_WS_BYTES), e);
    meta_layout m = layout_for(lim);
    if (cb->meta_dev) cudaFree(cb->meta_dev);
    if (cb->meta_host) cudaFreeHost(cb->meta_host);
    cb->meta_dev = NULL;
    cb->meta_host = NULL;
    CUDA_TRY(cudaMalloc((void **)&cb->meta_dev, m.total * sizeof(int32_t)), e);
    CUDA_TRY(cudaMallocHost((void **)&cb->meta_host, m.total * sizeof(int32_t)), e);
    cb->meta_cap = m.total;
    cb->max_chunks = m.max_chunks;
    const int32_t *d = cb->meta_dev;
    cuda_batch *b = &cb->batch;
    b->tokens = d + m.tokens;
    b->seq_start = d + m.seq_start;
    b->n_past = d + m.n_past;
    b->rope_len = d + m.rope_len;
    b->slot = d + m.slot;
    b->block_table = d + m.block_table;
    b->logit_rows = d + m.logit_rows;
    b->token_seq = d + m.token_seq;
    b->token_pos = d + m.token_pos;
    b->chunk_seq = d + m.chunk_seq;
    b->chunk_start = d + m.chunk_start;
    b->chunk_len = d + m.chunk_len;
    b->decode_seq = d + m.decode_seq;
    b->prefill_seq = d + m.prefill_seq;
    b->prefill_chunk0 = d + m.prefill_chunk0;
    if (cb->sample_host) cudaFreeHost(cb->sample_host);
    if (cb->sample_dev) cudaFree(cb->sample_dev);
    cb->sample_host = NULL;
    cb->sample_dev = NULL;
    CUDA_TRY(cudaMallocHost((void **)&cb->sample_host, (size_t)lim->max_logits * sizeof(int32_t)),
             e);
    CUDA_TRY(cudaMalloc((void **)&cb->sample_dev, (size_t)lim->max_logits * sizeof(int32_t)), e);
    if (cb->sample_params_dev) cudaFree(cb->sample_params_dev);
    cb->sample_params_dev = NULL;
    CUDA_TRY(
        cudaMalloc(&cb->sample_params_dev, (size_t)lim->max_logits * sizeof(srp_sample_params)), e);
    free(cb->sample_rows_host);
    cb->sample_rows_host = (int *)malloc(((size_t)lim->max_logits * 2 + 64) * sizeof(int));
    free(cb->sample_params_host);
    cb->sample_params_host =
        (srp_sample_params *)malloc((size_t)lim->max_logits * sizeof(srp_sample_params));
    if (!cb->sample_rows_host || !cb->sample_params_host)
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    return 0;
}

/* Lays the batch out in the pinned staging buffer, derives the per-token and per-chunk arrays the
 * kernels index by, and copies everything to the device with one transfer. */
static int cuda_begin_step(srp_backend *be, const srp_batch *b, srp_err *e) {
    cuda_backend *cb = cuda_of(be);
    const srp_backend_limits *l = &cb->lim;
    if (!cb->meta_host) return srp_err_set(e, SRP_EINVAL, "cuda: begin_step before configure");
    if (b->n_tokens > l->max_tokens || b->n_seqs > l->max_seqs || b->n_logits > l->max_logits ||
        (b->block_table && b->max_blocks > l->max_blocks_per_seq))
        return srp_err_set(e, SRP_EINVAL, "cuda: step larger than the configured limits");
    /* the previous step's transfer must have left the staging buffer */
    CUDA_TRY(cudaEventSynchronize(cb->meta_event), e);
    meta_layout m = layout_for(l);
    int32_t *h = cb->meta_host;
    memcpy(h + m.tokens, b->tokens, (size_t)b->n_tokens * 4);
    memcpy(h + m.seq_start, b->seq_start, (size_t)(b->n_seqs + 1) * 4);
    memcpy(h + m.n_past, b->n_past, (size_t)b->n_seqs * 4);
    for (int s = 0; s < b->n_seqs; s++)
        h[m.rope_len + s] =
            b->rope_len ? b->rope_len[s] : b->n_past[s] + b->seq_start[s + 1] - b->seq_start[s];
    memcpy(h + m.slot, b->slot, (size_t)b->n_seqs * 4);
    if (b->block_table)
        memcpy(h + m.block_table, b->block_table, (size_t)b->n_seqs * b->max_blocks * 4);
    memcpy(h + m.logit_rows, b->logit_rows, (size_t)b->n_logits * 4);
    int n_chunks = 0, n_decode = 0, n_prefill = 0, max_q = 0, max_ctx = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        int t0 = b->seq_start[s], len = b->seq_start[s + 1] - t0;
        for (int i = 0; i < len; i++) {
            h[m.token_seq + t0 + i] = s;
            h[m.token_pos + t0 + i] = b->n_past[s] + i;
        }
        if (len > max_q) max_q = len;
        if (b->n_past[s] + len > max_ctx) max_ctx = b->n_past[s] + len;
        if (len == 1) {
            h[m.decode_seq + n_decode++] = s;
            continue;
        }
        h[m.prefill_chunk0 + n_prefill] = n_chunks;
        h[m.prefill_seq + n_prefill++] = s;
        /* SSD chunks start at the sequence's own first token: no chunk spans two sequences */
        for (int c = 0; c < len; c += SRP_SSD_CHUNK) {
            h[m.chunk_seq + n_chunks] = s;
            h[m.chunk_start + n_chunks] = t0 + c;
            h[m.chunk_len + n_chunks] = len - c < SRP_SSD_CHUNK ? len - c : SRP_SSD_CHUNK;
            n_chunks++;
        }
    }
    cuda_batch *d = &cb->batch;
    d->n_seqs = b->n_seqs;
    d->n_tokens = b->n_tokens;
    d->max_blocks = b->max_blocks;
    d->n_logits = b->n_logits;
    d->max_query_len = max_q;
    d->max_ctx = max_ctx;
    d->n_chunks = n_chunks;
    d->n_decode = n_decode;
    d->n_prefill = n_prefill;
    d->has_block_table = b->block_table != NULL;
    cb->host = *b;
    CUDA_TRY(cudaMemcpyAsync(cb->meta_dev, h, m.total * sizeof(int32_t), cudaMemcpyHostToDevice,
                             cb->stream),
             e);
    CUDA_TRY(cudaEventRecord(cb->meta_event, cb->stream), e);
    return 0;
}

static int cuda_sync(srp_backend *be, srp_err *e) {
    CUDA_TRY(cudaStreamSynchronize(cuda_of(be)->stream), e);
    return 0;
}

/* Thin adapters from the table's signatures to the launchers. */
static int op_embed(srp_backend *be, const srp_weight *t, float scale, srp_mat out, srp_err *e) {
    return srp_cuda_embed(cuda_of(be), t, scale, out, e);
}
static int op_rmsnorm(srp_backend *be, srp_mat x, const srp_weight *w, float eps, srp_mat out,
                      srp_err *e) {
    return srp_cuda_rmsnorm(cuda_of(be), x, w, eps, out, e);
}
static int op_gemm(srp_backend *be, srp_mat x, const srp_weight *w, const srp_weight *bias,
                   srp_mat out, float alpha, int acc, srp_err *e) {
    return srp_cuda_gemm(cuda_of(be), x, w, bias, out, alpha, acc, e);
}
static int op_conv1d(srp_backend *be, srp_mat xbc, const srp_weight *w, const srp_weight *bias,
                     int kernel, const srp_mamba_state *st, srp_mat out, srp_err *e) {
    return srp_cuda_conv1d(cuda_of(be), xbc, w, bias, kernel, st, out, e);
}
static int op_ssd(srp_backend *be, const srp_mamba_params *p, srp_mat x, srp_mat B, srp_mat C,
                  srp_mat dt, const srp_mamba_state *st, srp_mat y, srp_err *e) {
    return srp_cuda_ssd(cuda_of(be), p, x, B, C, dt, st, y, e);
}
static int op_selective_scan(srp_backend *be, const srp_s6_params *p, srp_mat x, srp_mat dt,
                             srp_mat B, srp_mat C, srp_mat z, const srp_mamba_state *st, srp_mat y,
                             srp_err *e) {
    return srp_cuda_selective_scan(cuda_of(be), p, x, dt, B, C, z, st, y, e);
}
static int op_gated(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                    float eps, srp_mat out, srp_err *e) {
    return srp_cuda_gated_rmsnorm(cuda_of(be), y, z, w, group, eps, out, e);
}
static int op_rmsnorm_gate(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                           float eps, srp_mat out, srp_err *e) {
    return srp_cuda_rmsnorm_gate(cuda_of(be), y, z, w, group, eps, out, e);
}
static int op_add(srp_backend *be, srp_mat x, const srp_mat *y, srp_mat out, srp_err *e) {
    return srp_cuda_add(cuda_of(be), x, y, out, e);
}
static int op_attention(srp_backend *be, const srp_attn_params *p, srp_mat q, srp_mat k, srp_mat v,
                        const srp_kv_layer *kv, srp_mat out, srp_err *e) {
    return srp_cuda_attention(cuda_of(be), p, q, k, v, kv, out, e);
}
static int op_activate(srp_backend *be, srp_act act, srp_mat x, srp_err *e) {
    return srp_cuda_activate(cuda_of(be), act, x, e);
}
static int op_activate_gated(srp_backend *be, srp_act act, srp_mat gate, srp_mat up, srp_mat out,
                             srp_err *e) {
    return srp_cuda_activate_gated(cuda_of(be), act, gate, up, out, e);
}
static int op_rope(srp_backend *be, const srp_rope_params *p, srp_mat q, srp_mat k, srp_err *e) {
    return srp_cuda_rope(cuda_of(be), p, q, k, e);
}
static int op_moe_route(srp_backend *be, const srp_moe_route_params *p, srp_mat logits,
                        const srp_moe_routing *r, srp_err *e) {
    return srp_cuda_moe_route(cuda_of(be), p, logits, r, e);
}
static int op_moe_experts(srp_backend *be, const srp_moe_experts_params *p,
                          const srp_moe_routing *r, srp_mat x, srp_mat out, float alpha, int acc,
                          srp_err *e) {
    return srp_cuda_moe_experts(cuda_of(be), p, r, x, out, alpha, acc, e);
}
static int op_gather(srp_backend *be, srp_mat x, srp_mat out, srp_err *e) {
    return srp_cuda_gather_rows(cuda_of(be), x, out, e);
}
static int op_sample(srp_backend *be, srp_mat logits, const srp_sample_params *params,
                     int32_t *tokens, srp_err *e) {
    return srp_cuda_sample(cuda_of(be), logits, params, tokens, e);
}

extern "C" int srp_backend_cuda_create(int device, srp_backend **out, srp_err *e) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return srp_err_set(e, SRP_EUNSUPPORTED, "cuda: no GPU is visible");
    }
    if (device < 0 || device >= n)
        return srp_err_set(e, SRP_EINVAL, "cuda: no device %d (%d visible)", device, n);
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int rc = 0;
    cb->device = device;
    const char *ng = getenv("SERPENT_NO_GEMV");
    cb->no_gemv = ng && *ng && strcmp(ng, "0") != 0;
    rc = srp_cuda_check(cudaSetDevice(device), "cudaSetDevice", e);
    if (!rc) rc = srp_cuda_check(cudaGetDeviceProperties(&cb->prop, device), "properties", e);
    if (!rc && cb->prop.major < 8)
        rc = srp_err_set(e, SRP_EUNSUPPORTED, "cuda: %s (sm_%d%d) is older than Ampere",
                         cb->prop.name, cb->prop.major, cb->prop.minor);
    if (!rc)
        rc = srp_cuda_check(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking), "stream",
                            e);
    if (!rc)
        rc = srp_cuda_check(cudaEventCreateWithFlags(&cb->meta_event, cudaEventDisableTiming),
                            "event", e);
    if (!rc && cublasCreate(&cb->blas) != CUBLAS_STATUS_SUCCESS)
        rc = srp_err_set(e, SRP_EBACKEND, "cuda: cannot create a cuBLAS handle");
    if (!rc) cublasSetStream(cb->blas, cb->stream);
    const size_t blas_ws = 32u << 20;
    if (!rc) rc = srp_cuda_check(cudaMalloc(&cb->blas_workspace, blas_ws), "cuBLAS workspace", e);
    if (!rc && cublasSetWorkspace(cb->blas, cb->blas_workspace, blas_ws) != CUBLAS_STATUS_SUCCESS)
        rc = srp_err_set(e, SRP_EBACKEND, "cuda: cannot give cuBLAS its workspace");
    if (rc) {
        cuda_destroy(&cb->base);
        return rc;
    }
    srp_backend *b = &cb->base;
    b->name = "cuda";
    b->act_dtype = SRP_BF16;
    b->conv_dtype = SRP_BF16;
    b->kv_dtype = SRP_BF16;
    b->destroy = cuda_destroy;
    b->alloc = cuda_alloc;
    b->free = cuda_free;
    b->zero = cuda_zero;
    b->upload = cuda_upload;
    b->download = cuda_download;
    b->copy = cuda_copy;
    b->mem_available = cuda_mem_available;
    b->mem_total = cuda_mem_total;
    b->graph_replay = cuda_graph_replay;
    b->graph_begin = cuda_graph_begin;
    b->graph_end = cuda_graph_end;
    b->weight_load = cuda_weight_load;
    b->weight_free = cuda_weight_free;
    b->configure = cuda_configure;
    b->begin_step = cuda_begin_step;
    b->embed = op_embed;
    b->rmsnorm = op_rmsnorm;
    b->gemm = op_gemm;
    b->conv1d = op_conv1d;
    b->ssd = op_ssd;
    b->selective_scan = op_selective_scan;
    b->gated_rmsnorm = op_gated;
    b->rmsnorm_gate = op_rmsnorm_gate;
    b->attention = op_attention;
    b->activate = op_activate;
    b->activate_gated = op_activate_gated;
    b->rope = op_rope;
    b->moe_route = op_moe_route;
    b->moe_experts = op_moe_experts;
    b->gather_rows = op_gather;
    b->add = op_add;
    b->sample = op_sample;
    b->sync = cuda_sync;
    *out = b;
    return 0;
}
