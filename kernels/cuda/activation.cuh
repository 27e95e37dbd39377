/* The MLP activations on the device, in fp32 (kernels/cuda/rowwise.cu's activations and the
 * experts of kernels/cuda/moe.cu share them). */
#ifndef SRP_CUDA_ACTIVATION_CUH
#define SRP_CUDA_ACTIVATION_CUH

#include "cuda_ops.h"

static __device__ __forceinline__ float activate_one(int act, float v) {
    switch (act) {
    case SRP_ACT_RELU2:
        return v > 0.0f ? v * v : 0.0f;
    case SRP_ACT_RELU:
        return v > 0.0f ? v : 0.0f;
    case SRP_ACT_GELU:
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case SRP_ACT_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    default:
        return v / (1.0f + __expf(-v));
    }
}

#endif
