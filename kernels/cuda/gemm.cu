/* Matrix products through cuBLAS: bf16 operands, fp32 accumulation, and an output in bf16 (the
 * next layer's activations) or fp32 (the residual stream, accumulated in place with beta = 1,
 * which fuses the residual add into the GEMM). */
#include "cuda_ops.h"

static cudaDataType_t cuda_type(srp_dtype t) {
    return t == SRP_BF16 ? CUDA_R_16BF : t == SRP_F16 ? CUDA_R_16F : CUDA_R_32F;
}

int srp_cuda_gemm(cuda_backend *cb, srp_mat x, const srp_weight *w, const srp_weight *bias,
                  srp_mat out, float alpha, int accumulate, srp_err *e) {
    if (x.cols != w->m.cols || out.cols != w->m.rows || out.rows != x.rows)
        return srp_err_set(e, SRP_EINVAL,
                           "gemm: [%lld x %lld] * [%lld x %lld]^T into [%lld x %lld]",
                           (long long)x.rows, (long long)x.cols, (long long)w->m.rows,
                           (long long)w->m.cols, (long long)out.rows, (long long)out.cols);
    if (x.dtype != SRP_BF16 || w->m.dtype != SRP_BF16 ||
        (out.dtype != SRP_BF16 && out.dtype != SRP_F32))
        return srp_err_set(e, SRP_EINVAL, "gemm: %s x %s into %s", srp_dtype_name(x.dtype),
                           srp_dtype_name(w->m.dtype), srp_dtype_name(out.dtype));
    if (x.rows == 0) return 0;
    if (!cb->no_gemv && srp_cuda_gemv_supported(x, w, out))
        return srp_cuda_gemv(cb, x, w, bias, out, alpha, accumulate, e);
    /* Row-major out[T, N] = x[T, K] w[N, K]^T is column-major out^T = w^T(op T) x^T(op N). */
    const float beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t st = cublasGemmEx(
        cb->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->m.rows, (int)x.rows, (int)x.cols, &alpha,
        w->m.data, CUDA_R_16BF, (int)w->m.ld, x.data, CUDA_R_16BF, (int)x.ld, &beta, out.data,
        cuda_type(out.dtype), (int)out.ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return srp_err_set(e, SRP_EBACKEND, "gemm: cuBLAS status %d for [%lld x %lld x %lld]",
                           (int)st, (long long)x.rows, (long long)w->m.rows, (long long)x.cols);
    if (bias) return srp_cuda_add_bias(cb, out, bias, e);
    return 0;
}
