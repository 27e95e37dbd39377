/* kernels/cuda/sample.cu's selection of a token, on the host and in sequence: the argmax kernel,
 * the probability kernel, the stable descending sort of every token with min-p's drops at -1,
 * the min-p prefix, the top-k / top-p cuts and the first position whose running mass exceeds the
 * draw (the last when none does), with the kernels' fallbacks. The kernels reduce in parallel,
 * so a draw within ~1e-16 of a boundary may land on its other side there; otherwise the CUDA
 * sampler, this twin and the CPU sampler (srp_sample_row without extras) give the same token.
 * tests/gpu/test_cuda_ops.c compares the three; tests/fuzz/fuzz_sampler.c the last two. */
#ifndef SRP_SAMPLE_TWIN_H
#define SRP_SAMPLE_TWIN_H

#include <stdint.h>

#include "backend.h"

/* The token the CUDA sampler draws from logits[0..n) (n >= 1) under p's basic parameters
 * (temperature, top_k, top_p, min_p, seed, step; the extras are the host's). */
int32_t sample_twin_row(const float *logits, int n, const srp_sample_params *p);

#endif
