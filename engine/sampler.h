/* Choosing a token from a row of logits on the host (the CPU backend's sample operation, and the
 * reference the GPU sampler is tested against). */
#ifndef SRP_SAMPLER_H
#define SRP_SAMPLER_H

#include <stdint.h>

#include "backend.h"

/* Uniform double in [0, 1) from a counter-based generator: the same (seed, step) always gives
 * the same number, on any backend and whatever else shares the batch. */
double srp_rng_uniform(uint64_t seed, uint64_t step);

/* Index of the largest finite logit (the lowest index among equals); 0 when none is finite.
 * Everywhere in the sampler a logit that is not finite (NaN, +-inf) counts as -inf. */
int32_t srp_argmax(const float *logits, int n);

/* The sampling parameters as both backends read them, for a row of n logits, whatever p holds:
 * temperature NaN or <= 0, top_k 1 and top_p <= 0 are greedy, written temperature 0 (and then
 * top_k 0, top_p 1, min_p 0); top_k < 0 or >= n is off (0); top_p NaN or >= 1 is off (1);
 * min_p NaN or <= 0 is off (0) and above 1 is 1; temperature +inf is FLT_MAX. */
srp_sample_params srp_sample_normalize(const srp_sample_params *p, int n);

/* Draws a token from logits[0..n) under p (or takes p->forced_token when it is in [0, n)), and
 * fills p's logprob outputs when asked. scratch must hold n floats and order n int32s. Total:
 * any row and any parameter values give a token in [0, n) (n >= 1; n < 1 gives -1 and reads
 * nothing). The argmax of the processed row survives every filter (min-p, top-k, top-p); a row
 * with no finite logit gives token 0. Logits processors with values that are not finite are
 * ignored; see process_row in sampler.c for how their results are kept finite. */
int32_t srp_sample_row(const float *logits, int n, const srp_sample_params *p, float *scratch,
                       int32_t *order);

/* log_softmax(logits)[token] into *logprob (when token is in range) and the top_n most likely
 * tokens, descending (equal logits: lower id first), into top_ids / top_logprobs. Logits that
 * are not finite count as -inf; a row with no finite logit gives -inf everywhere. */
void srp_logprobs_row(const float *logits, int n, int32_t token, int top_n, float *logprob,
                      int32_t *top_ids, float *top_logprobs);

#endif
