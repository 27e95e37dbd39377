/* The per-step prefill budget: how many prompt tokens a step may carry beside the decode
 * tokens of the running requests, so that the time between their tokens stays bounded while
 * long prompts prefill (the scheduler's private policy; scheduler.c asks and reports).
 *
 * Decode goes first: every running request's next token is in every step. A step that also
 * prefills may take at most `itl_slowdown` times a decode-only step of the same batch (and at
 * most `step_target_s` when that is set). Both sides are measured: the decode-only step time
 * per batch size (a smoothed table, fed by steps without prefill), and the marginal cost of a
 * prefill token beside that batch (the slope from the decode-only point to each measured mixed
 * step, smoothed). The budget is then (target - decode step) / slope, never more than twice the
 * largest chunk already measured (so a slope measured on small chunks, where prefill rides for
 * free on the weight reads, cannot send one huge step), never less than `min_prefill` (prompts
 * always progress). A batch size with no decode-only measurement near it gets one decode-only
 * step first. With no decode tokens in the step, or the policy off, the budget is all of
 * max_tokens. The policy only sizes chunks; it never changes what is computed. */
#ifndef SRP_SCHED_BUDGET_H
#define SRP_SCHED_BUDGET_H

#include <stdint.h>

#include "status.h"

typedef struct srp_budget_opts {
    double itl_slowdown;  /* a mixed step may take this many decode-only steps; 0: no such bound */
    double step_target_s; /* and at most this many seconds; 0: no such bound */
    int min_prefill;      /* prefill tokens a step is always allowed */
} srp_budget_opts;

/* Defaults: itl_slowdown 2.5, no absolute target, min_prefill 32. */
void srp_budget_opts_default(srp_budget_opts *o);

typedef struct srp_budget_entry {
    double seconds; /* smoothed decode-only step time; 0: never measured */
    uint64_t at;    /* the observation count at its last update */
} srp_budget_entry;

typedef struct srp_budget {
    srp_budget_opts opts;
    int max_seqs, max_tokens;
    srp_budget_entry *decode; /* [max_seqs + 1], by decode batch size */
    double slope;             /* seconds per prefill token beside a decode batch; 0: unknown */
    int largest_chunk;        /* most prefill tokens of a measured mixed step */
    uint64_t n_obs;
    /* the last plan, for stats */
    int last_budget;
    double last_target_s, last_decode_s;
} srp_budget;

/* max_tokens: the engine's tokens per step. Returns 0, SRP_EINVAL (a message names the bad
 * option) or SRP_ENOMEM. */
int srp_budget_init(srp_budget *b, const srp_budget_opts *o, int max_seqs, int max_tokens,
                    srp_err *e);
void srp_budget_free(srp_budget *b);

/* 1 when the policy bounds anything (itl_slowdown or step_target_s set). */
int srp_budget_active(const srp_budget *b);

/* Prefill tokens the next step may carry beside n_decode decode tokens (at most
 * max_tokens - n_decode; 0 asks for a decode-only step to measure this batch size). */
int srp_budget_prefill(srp_budget *b, int n_decode);

/* Reports what a step held and how long it took (forward pass and sampling). */
void srp_budget_observe(srp_budget *b, int n_decode, int n_prefill, double seconds);

#endif
