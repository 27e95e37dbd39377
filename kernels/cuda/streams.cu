/* The hybrid families' wiring ops (the CPU twins are in kernels/cpu/cpu_streams.c): Falcon-H1's
 * norm-then-gate after the Mamba scan, and the element-wise add of two fp32 streams that Zamba2
 * uses to build its shared blocks' inputs. */
#include "cuda_ops.h"

/* Sum over the block; every thread gets the result. `red` holds 32 floats. */
static __device__ float streams_block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x / 32) ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One block per (row, group): y normalised over the group, times w, times silu(z). */
__global__ void rmsnorm_gate_kernel(const __nv_bfloat16 *y, int64_t ldy, const __nv_bfloat16 *z,
                                    int64_t ldz, const float *w, int group, float eps,
                                    __nv_bfloat16 *out, int64_t ldo) {
    __shared__ float red[32];
    const int64_t r = blockIdx.x;
    const int g0 = blockIdx.y * group;
    float ss = 0.0f;
    for (int c = g0 + threadIdx.x; c < g0 + group; c += blockDim.x) {
        const float v = __bfloat162float(y[r * ldy + c]);
        ss += v * v;
    }
    const float inv = rsqrtf(streams_block_sum(ss, red) / group + eps);
    for (int c = g0 + threadIdx.x; c < g0 + group; c += blockDim.x) {
        const float zz = __bfloat162float(z[r * ldz + c]);
        const float v = __bfloat162float(y[r * ldy + c]) * inv * w[c];
        out[r * ldo + c] = __float2bfloat16(v * zz / (1.0f + __expf(-zz)));
    }
}

int srp_cuda_rmsnorm_gate(cuda_backend *cb, srp_mat y, srp_mat z, const srp_weight *w, int group,
                          float eps, srp_mat out, srp_err *e) {
    if (group <= 0 || y.cols % group)
        return srp_err_set(e, SRP_EINVAL, "rmsnorm_gate: group %d does not divide %lld", group,
                           (long long)y.cols);
    if (y.dtype != SRP_BF16 || z.dtype != SRP_BF16 || out.dtype != SRP_BF16 ||
        w->m.dtype != SRP_F32)
        return srp_err_set(e, SRP_EINVAL, "rmsnorm_gate: expects bf16 buffers and fp32 weights");
    if (z.rows != y.rows || z.cols != y.cols || out.rows != y.rows || out.cols != y.cols ||
        w->m.cols != y.cols)
        return srp_err_set(e, SRP_EINVAL, "rmsnorm_gate: shapes differ");
    if (y.rows == 0) return 0;
    dim3 grid((unsigned)y.rows, (unsigned)(y.cols / group));
    rmsnorm_gate_kernel<<<grid, 256, 0, cb->stream>>>(
        (const __nv_bfloat16 *)y.data, y.ld, (const __nv_bfloat16 *)z.data, z.ld,
        (const float *)w->m.data, group, eps, (__nv_bfloat16 *)out.data, out.ld);
    CUDA_LAUNCHED(e);
    return 0;
}

__global__ void add_kernel(const float *x, int64_t ldx, const float *y, int64_t ldy, float *out,
                           int64_t ldo, int64_t rows, int64_t cols) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, c = i % cols;
        out[r * ldo + c] = x[r * ldx + c] + (y ? y[r * ldy + c] : 0.0f);
    }
}

int srp_cuda_add(cuda_backend *cb, srp_mat x, const srp_mat *y, srp_mat out, srp_err *e) {
    if (x.dtype != SRP_F32 || out.dtype != SRP_F32 || (y && y->dtype != SRP_F32))
        return srp_err_set(e, SRP_EINVAL, "add: expects fp32 streams");
    if (out.rows != x.rows || out.cols != x.cols || (y && (y->rows != x.rows || y->cols != x.cols)))
        return srp_err_set(e, SRP_EINVAL, "add: shapes differ");
    const int64_t n = x.rows * x.cols;
    if (n == 0) return 0;
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65536) blocks = 65536;
    add_kernel<<<(unsigned)blocks, 256, 0, cb->stream>>>(
        (const float *)x.data, x.ld, y ? (const float *)y->data : NULL, y ? y->ld : 0,
        (float *)out.data, out.ld, x.rows, x.cols);
    CUDA_LAUNCHED(e);
    return 0;
}
