/* Choosing a token from a row of logits on the host (the CPU backend's sample operation, and the
 * reference the GPU sampler is tested against). */
#ifndef SRP_SAMPLER_H
#define SRP_SAMPLER_H

#include <stdint.h>

#include "backend.h"

/* Uniform double in [0, 1) from a counter-based generator: the same (seed, step) always gives
 * the same number, on any backend and whatever else shares the batch. */
double srp_rng_uniform(uint64_t seed, uint64_t step);

/* Index of the largest logit (the lowest index among equals). */
int32_t srp_argmax(const float *logits, int n);

/* Draws a token from logits[0..n) under p (or takes p->forced_token), and fills p's logprob
 * outputs when asked. scratch must hold n floats and order n int32s. */
int32_t srp_sample_row(const float *logits, int n, const srp_sample_params *p, float *scratch,
                       int32_t *order);

/* log_softmax(logits)[token] into *logprob (when token is in range) and the top_n most likely
 * tokens, descending (equal logits: lower id first), into top_ids / top_logprobs. */
void srp_logprobs_row(const float *logits, int n, int32_t token, int top_n, float *logprob,
                      int32_t *top_ids, float *top_logprobs);

#endif
