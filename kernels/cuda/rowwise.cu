/* Row-wise operations: embedding lookup, RMSNorm, the grouped gated RMSNorm of Mamba-2, MLP
 * activations, bias adds and the gather of the rows whose logits are wanted. Arithmetic is fp32
 * whatever the storage type. */
#include "activation.cuh"
#include "cuda_ops.h"

/* Element access for the two storage types of activations. */
__device__ __forceinline__ float load_el(const void *p, int bf16, int64_t i) {
    return bf16 ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}

__device__ __forceinline__ void store_el(void *p, int bf16, int64_t i, float v) {
    if (bf16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
    else
        ((float *)p)[i] = v;
}

/* Sum over the block; every thread gets the result. `red` holds 32 floats. */
__device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x / 32) ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static int check_act(const char *op, srp_mat m, srp_err *e) {
    if (m.dtype != SRP_BF16 && m.dtype != SRP_F32)
        return srp_err_set(e, SRP_EINVAL, "%s: buffer of type %s", op, srp_dtype_name(m.dtype));
    return 0;
}

__global__ void embed_kernel(const __nv_bfloat16 *table, int64_t ld_table, const int32_t *tokens,
                             float scale, float *out, int64_t ld_out, int d) {
    const int t = blockIdx.x;
    const __nv_bfloat16 *row = table + (int64_t)tokens[t] * ld_table;
    for (int c = threadIdx.x; c < d; c += blockDim.x)
        out[t * ld_out + c] = __bfloat162float(row[c]) * scale;
}

int srp_cuda_embed(cuda_backend *cb, const srp_weight *table, float scale, srp_mat out,
                   srp_err *e) {
    if (out.dtype != SRP_F32 || table->m.dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "embed: table %s into %s", srp_dtype_name(table->m.dtype),
                           srp_dtype_name(out.dtype));
    if (cb->batch.n_tokens == 0) return 0;
    embed_kernel<<<cb->batch.n_tokens, 256, 0, cb->stream>>>(
        (const __nv_bfloat16 *)table->m.data, table->m.ld, cb->batch.tokens, scale,
        (float *)out.data, out.ld, (int)out.cols);
    CUDA_LAUNCHED(e);
    return 0;
}

__global__ void rmsnorm_kernel(const void *x, int x_bf16, int64_t ldx, const float *w, float eps,
                               void *out, int out_bf16, int64_t ldo, int d) {
    __shared__ float red[32];
    const int64_t r = blockIdx.x;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float v = load_el(x, x_bf16, r * ldx + c);
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss, red) / d + eps);
    for (int c = threadIdx.x; c < d; c += blockDim.x)
        store_el(out, out_bf16, r * ldo + c,
                 load_el(x, x_bf16, r * ldx + c) * inv * (w ? w[c] : 1.0f));
}

int srp_cuda_rmsnorm(cuda_backend *cb, srp_mat x, const srp_weight *w, float eps, srp_mat out,
                     srp_err *e) {
    int rc = check_act("rmsnorm", x, e);
    if (!rc) rc = check_act("rmsnorm", out, e);
    if (rc) return rc;
    if (w && (w->m.dtype != SRP_F32 || w->m.cols != x.cols))
        return srp_err_set(e, SRP_EINVAL, "rmsnorm: weight of %lld for rows of %lld",
                           (long long)w->m.cols, (long long)x.cols);
    if (x.rows == 0) return 0;
    /* short rows (FalconMamba's dt, B and C: 16 to a few hundred values) need fewer threads */
    const int threads = x.cols <= 64 ? 32 : x.cols <= 1024 ? 128 : 256;
    rmsnorm_kernel<<<(unsigned)x.rows, threads, 0, cb->stream>>>(
        x.data, x.dtype == SRP_BF16, x.ld, w ? (const float *)w->m.data : NULL, eps, out.data,
        out.dtype == SRP_BF16, out.ld, (int)x.cols);
    CUDA_LAUNCHED(e);
    return 0;
}

/* One block per (row, group): v = y * silu(z), normalised over the group, times w. */
__global__ void gated_rmsnorm_kernel(const __nv_bfloat16 *y, int64_t ldy, const __nv_bfloat16 *z,
                                     int64_t ldz, const float *w, int group, float eps,
                                     __nv_bfloat16 *out, int64_t ldo) {
    __shared__ float red[32];
    const int64_t r = blockIdx.x;
    const int g0 = blockIdx.y * group;
    float ss = 0.0f;
    for (int c = g0 + threadIdx.x; c < g0 + group; c += blockDim.x) {
        float zz = __bfloat162float(z[r * ldz + c]);
        float v = __bfloat162float(y[r * ldy + c]) * zz / (1.0f + __expf(-zz));
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss, red) / group + eps);
    /* recomputing v is cheaper than staging a whole group in shared memory */
    for (int c = g0 + threadIdx.x; c < g0 + group; c += blockDim.x) {
        float zz = __bfloat162float(z[r * ldz + c]);
        float v = __bfloat162float(y[r * ldy + c]) * zz / (1.0f + __expf(-zz));
        out[r * ldo + c] = __float2bfloat16(v * inv * w[c]);
    }
}

int srp_cuda_gated_rmsnorm(cuda_backend *cb, srp_mat y, srp_mat z, const srp_weight *w, int group,
                           float eps, srp_mat out, srp_err *e) {
    if (group <= 0 || y.cols % group)
        return srp_err_set(e, SRP_EINVAL, "gated_rmsnorm: group %d does not divide %lld", group,
                           (long long)y.cols);
    if (y.dtype != SRP_BF16 || z.dtype != SRP_BF16 || out.dtype != SRP_BF16)
        return srp_err_set(e, SRP_EINVAL, "gated_rmsnorm: expects bf16 buffers");
    if (y.rows == 0) return 0;
    dim3 grid((unsigned)y.rows, (unsigned)(y.cols / group));
    gated_rmsnorm_kernel<<<grid, 256, 0, cb->stream>>>(
        (const __nv_bfloat16 *)y.data, y.ld, (const __nv_bfloat16 *)z.data, z.ld,
        (const float *)w->m.data, group, eps, (__nv_bfloat16 *)out.data, out.ld);
    CUDA_LAUNCHED(e);
    return 0;
}

__global__ void activate_kernel(void *x, int bf16, int64_t ld, int64_t rows, int64_t cols,
                                int act) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        store_el(x, bf16, r * ld + c, activate_one(act, load_el(x, bf16, r * ld + c)));
    }
}

static unsigned grid_for(int64_t n, int threads) {
    int64_t g = (n + threads - 1) / threads;
    return (unsigned)(g < 1 ? 1 : g > 65536 ? 65536 : g);
}

int srp_cuda_activate(cuda_backend *cb, srp_act act, srp_mat x, srp_err *e) {
    int rc = check_act("activate", x, e);
    if (rc) return rc;
    if (x.rows == 0) return 0;
    activate_kernel<<<grid_for(x.rows * x.cols, 256), 256, 0, cb->stream>>>(
        x.data, x.dtype == SRP_BF16, x.ld, x.rows, x.cols, (int)act);
    CUDA_LAUNCHED(e);
    return 0;
}

__global__ void activate_gated_kernel(const void *gate, const void *up, void *out, int bf16,
                                      int64_t ldg, int64_t ldu, int64_t ldo, int64_t rows,
                                      int64_t cols, int act) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        const float g = load_el(gate, bf16, r * ldg + c), u = load_el(up, bf16, r * ldu + c);
        store_el(out, bf16, r * ldo + c, activate_one(act, g) * u);
    }
}

int srp_cuda_activate_gated(cuda_backend *cb, srp_act act, srp_mat gate, srp_mat up, srp_mat out,
                            srp_err *e) {
    int rc = check_act("activate_gated", gate, e);
    if (rc) return rc;
    if (up.dtype != gate.dtype || out.dtype != gate.dtype || up.rows != gate.rows ||
        up.cols != gate.cols || out.rows != gate.rows || out.cols != gate.cols)
        return srp_err_set(e, SRP_EINVAL, "activate_gated: shapes or types differ");
    if (gate.rows == 0) return 0;
    activate_gated_kernel<<<grid_for(gate.rows * gate.cols, 256), 256, 0, cb->stream>>>(
        gate.data, up.data, out.data, gate.dtype == SRP_BF16, gate.ld, up.ld, out.ld, gate.rows,
        gate.cols, (int)act);
    CUDA_LAUNCHED(e);
    return 0;
}

__global__ void add_bias_kernel(void *x, int bf16, int64_t ld, int64_t rows, int64_t cols,
                                const float *bias) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        store_el(x, bf16, r * ld + c, load_el(x, bf16, r * ld + c) + bias[c]);
    }
}

int srp_cuda_add_bias(cuda_backend *cb, srp_mat out, const srp_weight *bias, srp_err *e) {
    int rc = check_act("bias", out, e);
    if (rc) return rc;
    if (bias->m.dtype != SRP_F32 || bias->m.cols != out.cols)
        return srp_err_set(e, SRP_EINVAL, "bias: %lld values for %lld columns",
                           (long long)bias->m.cols, (long long)out.cols);
    if (out.rows == 0) return 0;
    add_bias_kernel<<<grid_for(out.rows * out.cols, 256), 256, 0, cb->stream>>>(
        out.data, out.dtype == SRP_BF16, out.ld, out.rows, out.cols, (const float *)bias->m.data);
    CUDA_LAUNCHED(e);
    return 0;
}

__global__ void gather_kernel(const float *x, int64_t ldx, const int32_t *rows, float *out,
                              int64_t ldo, int d) {
    const int i = blockIdx.x;
    const float *src = x + (int64_t)rows[i] * ldx;
    for (int c = threadIdx.x; c < d; c += blockDim.x) out[i * ldo + c] = src[c];
}

int srp_cuda_gather_rows(cuda_backend *cb, srp_mat x, srp_mat out, srp_err *e) {
    if (x.dtype != SRP_F32 || out.dtype != SRP_F32)
        return srp_err_set(e, SRP_EINVAL, "gather_rows: expects fp32 rows");
    for (int i = 0; i < cb->host.n_logits; i++)
        if (cb->host.logit_rows[i] < 0 || cb->host.logit_rows[i] >= x.rows)
            return srp_err_set(e, SRP_EINVAL, "gather_rows: row %d outside [0, %lld)",
                               cb->host.logit_rows[i], (long long)x.rows);
    if (cb->batch.n_logits == 0) return 0;
    gather_kernel<<<cb->batch.n_logits, 256, 0, cb->stream>>>(
        (const float *)x.data, x.ld, cb->batch.logit_rows, (float *)out.data, out.ld, (int)x.cols);
    CUDA_LAUNCHED(e);
    return 0;
}
