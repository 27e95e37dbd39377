/* The SSD kernels' shared argument block (private to kernels/cuda/). */
#ifndef SRP_SSD_H
#define SRP_SSD_H

#include "cuda_ops.h"

typedef struct ssd_args {
    const __nv_bfloat16 *x, *B, *C, *dt;
    int64_t ldx, ldb, ldc, lddt, ldy;
    __nv_bfloat16 *y;
    const float *A_log, *dt_bias, *D; /* [heads] */
    float *ssm;                       /* [slots][heads][head_dim][state] */
    int heads, head_dim, groups, state;
    float dt_min, dt_max;
} ssd_args;

/* The tensor-core chunked scan (ssd_mma.cu) handles these shapes. */
int srp_cuda_ssd_mma_supported(const srp_mamba_params *p);
int srp_cuda_ssd_mma(cuda_backend *cb, const ssd_args *a, srp_err *e);

#endif
