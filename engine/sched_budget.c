/* The per-step prefill budget (see sched_budget.h for the policy). */
#include <stdlib.h>

#include "sched_budget.h"
#include "status.h"

/* Smoothing of the two measured quantities. A new decode-only time counts DECODE_ALPHA and is
 * first clamped to [1/2, 2] times the current value, so one outlier (a CUDA graph captured, the
 * OS taking the core) moves the bound by a bounded step. A higher slope is taken at once (the
 * next chunk shrinks: the safe direction); a lower one counts SLOPE_ALPHA, clamped to a
 * quarter of the current (larger chunks come a step at a time). */
#define DECODE_ALPHA 0.25
#define DECODE_CLAMP 2.0
#define SLOPE_ALPHA  0.3
#define SLOPE_CLAMP  4.0
/* A mixed step at most this share slower than decode alone measures no slope. */
#define FREE_SHARE 0.02
/* A chunk may be at most this many times the largest one measured beside decode tokens. */
#define GROWTH 2
/* The first chunk beside decode tokens, before any slope is known. */
#define FIRST_CHUNK 64
/* A decode-only time older than this many steps is measured again (the context grows). */
#define STALE_STEPS 2000

void srp_budget_opts_default(srp_budget_opts *o) {
    o->itl_slowdown = 2.5;
    o->step_target_s = 0.0;
    o->min_prefill = 32;
}

int srp_budget_init(srp_budget *b, const srp_budget_opts *o, int max_seqs, int max_tokens,
                    srp_err *e) {
    *b = (srp_budget){ 0 };
    if (!(o->itl_slowdown == 0 || o->itl_slowdown >= 1))
        return srp_err_set(e, SRP_EINVAL, "itl_slowdown must be 0 (off) or >= 1, not %g",
                           o->itl_slowdown);
    if (!(o->step_target_s >= 0))
        return srp_err_set(e, SRP_EINVAL, "step_target_s must be >= 0, not %g", o->step_target_s);
    if (o->min_prefill < 1)
        return srp_err_set(e, SRP_EINVAL, "min_prefill must be >= 1, not %d", o->min_prefill);
    if (max_seqs < 1 || max_tokens < 1)
        return srp_err_set(e, SRP_EINVAL, "the budget needs max_seqs and max_tokens >= 1");
    b->opts = *o;
    b->max_seqs = max_seqs;
    b->max_tokens = max_tokens;
    b->decode = calloc((size_t)max_seqs + 1, sizeof *b->decode);
    return b->decode ? 0 : srp_err_set(e, SRP_ENOMEM, "out of memory");
}

void srp_budget_free(srp_budget *b) {
    free(b->decode);
    b->decode = NULL;
}

int srp_budget_active(const srp_budget *b) {
    return b->opts.itl_slowdown > 0 || b->opts.step_target_s > 0;
}

static int fresh(const srp_budget *b, int d) {
    const srp_budget_entry *e = &b->decode[d];
    return e->seconds > 0 && b->n_obs - e->at <= STALE_STEPS;
}

/* The decode-only step time at batch d: measured, else read off measured neighbours within a
 * quarter of d. Off-grid estimates err low (a tighter bound), never high. 0: unknown. */
static double decode_time(const srp_budget *b, int d) {
    if (fresh(b, d)) return b->decode[d].seconds;
    int w = d / 4 > 2 ? d / 4 : 2, lo = 0, hi = 0;
    for (int k = d - 1; k >= 1 && k >= d - w && !lo; k--)
        if (fresh(b, k)) lo = k;
    for (int k = d + 1; k <= b->max_seqs && k <= d + w && !hi; k++)
        if (fresh(b, k)) hi = k;
    const double tl = lo ? b->decode[lo].seconds : 0, th = hi ? b->decode[hi].seconds : 0;
    if (lo && hi) return tl + (th - tl) * (double)(d - lo) / (double)(hi - lo);
    if (lo) return tl;                  /* time grows with the batch: a lower bound */
    if (hi) return th * (double)d / hi; /* time is affine with a positive intercept */
    return 0;
}

int srp_budget_prefill(srp_budget *b, int n_decode) {
    int room = b->max_tokens - n_decode;
    if (room <= 0) return b->last_budget = 0;
    b->last_target_s = b->last_decode_s = 0;
    if (n_decode <= 0 || !srp_budget_active(b) || n_decode > b->max_seqs)
        return b->last_budget = room;
    const double t_dec = decode_time(b, n_decode);
    if (t_dec <= 0) return b->last_budget = 0; /* measure this batch size first */
    double target = b->opts.itl_slowdown > 0 ? b->opts.itl_slowdown * t_dec : 1e30;
    if (b->opts.step_target_s > 0 && b->opts.step_target_s < target) target = b->opts.step_target_s;
    /* no slope yet (chunks so far cost nothing measurable): grow by the cap alone */
    const double cap = b->largest_chunk > 0 ? (double)GROWTH * b->largest_chunk : FIRST_CHUNK;
    double p = b->slope > 0 ? (target - t_dec) / b->slope : cap;
    if (p > cap) p = cap;
    if (p < b->opts.min_prefill) p = b->opts.min_prefill;
    if (p > room) p = room;
    b->last_target_s = target;
    b->last_decode_s = t_dec;
    return b->last_budget = (int)p;
}

static double clamp(double x, double lo, double hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

void srp_budget_observe(srp_budget *b, int n_decode, int n_prefill, double seconds) {
    b->n_obs++;
    if (n_decode <= 0 || n_decode > b->max_seqs || !(seconds > 0)) return;
    if (n_prefill <= 0) {
        srp_budget_entry *e = &b->decode[n_decode];
        if (fresh(b, n_decode)) {
            double x = clamp(seconds, e->seconds / DECODE_CLAMP, e->seconds * DECODE_CLAMP);
            e->seconds += DECODE_ALPHA * (x - e->seconds);
        } else {
            /* a first measurement is held near its neighbours' */
            double ref = decode_time(b, n_decode);
            e->seconds = ref > 0 ? clamp(seconds, ref / DECODE_CLAMP, ref * DECODE_CLAMP) : seconds;
        }
        e->at = b->n_obs;
        return;
    }
    const double t_dec = decode_time(b, n_decode);
    if (t_dec <= 0) return;
    if (n_prefill > b->largest_chunk) b->largest_chunk = n_prefill;
    /* The prefill tokens' share of the step. A step within noise of decode alone (prefill
     * riding on the weight reads) says nothing of the slope: the growth cap alone acts. A high
     * slope is taken at once (it shrinks the next chunk); a low one only a step at a time. */
    const double extra = seconds - t_dec;
    if (extra <= FREE_SHARE * t_dec) return;
    const double c = extra / n_prefill;
    if (b->slope <= 0)
        b->slope = c;
    else if (c > b->slope)
        b->slope = c;
    else
        b->slope += SLOPE_ALPHA * (clamp(c, b->slope / SLOPE_CLAMP, b->slope) - b->slope);
}
