/* The scheduler: one engine thread that owns an srp_engine and serves many requests at once.
 *
 * Callers on any thread submit requests (token ids plus sampling settings) and read each
 * request's output channel: token events, then one finish. The engine thread runs the step
 * loop: every step it admits waiting requests first come, first served while a state slot and
 * KV blocks for prompt + max_tokens are free (so a running request never runs out), then
 * builds ONE batch from a decode token of every running request plus prefill chunks of new
 * ones within the per-step token budget (continuous batching, chunked prefill), runs it,
 * samples and delivers. A cancelled request leaves the batch and frees its slot and blocks at
 * the start of the next step. With the prefix cache (srp_sched_opts.prefix_cache) a request
 * whose prompt starts with a cached prefix skips it, and one that shares a prefix with a prompt
 * being prefilled waits (letting later requests by) until that prompt has passed it.
 *
 * Threads meet only in srp_sched_submit (the submit queue) and in the request's channel. The
 * scheduler knows nothing of HTTP or JSON. Functions return 0 or a negative SRP_E* code with a
 * message in e. */
#ifndef SRP_SCHEDULER_H
#define SRP_SCHEDULER_H

#include <stdint.h>

#include "engine.h"
#include "grammar/grammar.h"

#define SRP_MAX_TOP_LOGPROBS 20

typedef struct srp_sched srp_sched;
typedef struct srp_request srp_request;

typedef struct srp_sched_opts {
    int max_queue; /* requests waiting beyond those the free slots can take; then SRP_EFULL */
    /* The per-step prefill budget (sched_budget.h): while requests decode, a step that also
     * prefills prompts takes at most itl_slowdown times a decode-only step of that batch
     * (0: unbounded) and at most step_target_s seconds (0: no such bound); it carries at least
     * min_prefill prompt tokens (0: 32). Both bounds 0: prefill fills max_batch_tokens. */
    double itl_slowdown;
    double step_target_s;
    int min_prefill;
    /* Tests: a step's duration from what it held, in place of the clock (NULL: measured). */
    double (*step_seconds)(void *user, int n_decode, int n_prefill);
    void *step_seconds_user;
    /* Prefix caching, when the engine was opened with its prefix cache (engine/prefix_cache.h).
     * While a prompt is prefilled its recurrent state is snapshotted at the end of the prompt,
     * where its prefix is shared with a cached or a running prompt, and every
     * snapshot_interval tokens; a prompt that starts with a cached prefix starts from the
     * longest snapshot of it, and one that shares a prefix with a prompt being prefilled waits
     * until that one has passed the shared part. */
    int prefix_cache;      /* 0: off */
    int snapshot_interval; /* 0: the tokens whose KV takes a snapshot's bytes; < 0: none */
    int min_prefix_tokens; /* no snapshot saves fewer tokens than this; 0: 4 KV blocks */
} srp_sched_opts;

/* max_queue 1024, itl_slowdown 2.5, no step target, min_prefill 32. */
void srp_sched_opts_default(srp_sched_opts *o);

/* Starts the engine thread. The engine must not be used by anyone else until srp_sched_stop. */
int srp_sched_start(srp_engine *eng, const srp_sched_opts *o, srp_sched **out, srp_err *e);
/* Refuses new submissions, cancels every request (each gets its finish event), joins the
 * engine thread and frees the scheduler. Requests not yet released stay valid until their
 * srp_request_release. */
void srp_sched_stop(srp_sched *s);

typedef enum {
    SRP_FINISH_NONE = 0, /* still running */
    SRP_FINISH_STOP,     /* a stop token (EOS) was drawn */
    SRP_FINISH_LENGTH,   /* max_tokens reached, or the sequence reached the engine's length */
    SRP_FINISH_CANCELLED,
    SRP_FINISH_ERROR, /* the engine failed; the message says why */
} srp_finish_reason;

typedef struct srp_request_params {
    const int32_t *prompt; /* copied; each id must be in [0, vocab) */
    int n_prompt;          /* >= 1 */
    int max_tokens;        /* >= 0; prompt + max_tokens <= the engine's max_seq_len */
    /* Sampling of each generated token. step is set by the scheduler; the penalty count arrays
     * and the logprob outputs are the scheduler's: leave them NULL. logit_bias arrays are
     * copied. */
    srp_sample_params sample;
    const int32_t *stop_ids; /* drawing one of these finishes with SRP_FINISH_STOP; copied */
    int n_stop_ids;
    int min_tokens; /* the stop ids cannot be drawn before this many tokens (vLLM's) */
    /* Constrained decoding: the reply is a sentence of this grammar (NULL: free text), over
     * vocab's token bytes. Each draw is masked to the tokens the grammar allows next, the stop
     * ids included only where it may end; where it must end the reply finishes with
     * SRP_FINISH_STOP. The request holds its own reference. */
    srp_grammar *grammar;
    const srp_vocab *grammar_vocab;
    int logprobs;        /* -1: none; k >= 0: the chosen token's logprob and the top k */
    int prompt_logprobs; /* -1: none; k >= 0: logprob of each prompt token after the first */
    /* Called on the engine thread, with the request's lock held, after every event and the
     * finish are added to the channel. Must be quick and must not call into the request (it
     * may take the caller's own lock to wake a waiter). */
    void (*notify)(void *user);
    /* Called on the engine thread, with the request's lock held, before the request is
     * admitted and before each of its prompt chunks; returning 0 cancels it there (its client
     * is gone: no slot, no prefill for nobody). NULL: always wanted. Must be quick. */
    int (*alive)(void *user);
    void *user;
} srp_request_params;

/* Queues a request. SRP_EFULL when the queue is full (answer 429), SRP_EINVAL for a request the
 * engine can never run (a message says why), SRP_EUNSUPPORTED after srp_sched_stop began.
 * *out holds a reference the caller must give back with srp_request_release. */
int srp_sched_submit(srp_sched *s, const srp_request_params *p, srp_request **out, srp_err *e);

/* One token of the output channel. Prompt events (is_prompt) come first when prompt_logprobs
 * was asked: one per prompt token after the first. */
typedef struct srp_token_event {
    int32_t token;
    uint8_t is_prompt;
    uint8_t n_top;
    float logprob; /* when logprobs / prompt_logprobs was asked */
    double time;   /* srp_sched_now() when it was delivered */
    int32_t top_ids[SRP_MAX_TOP_LOGPROBS];
    float top_logprobs[SRP_MAX_TOP_LOGPROBS];
} srp_token_event;

typedef struct srp_request_status {
    srp_finish_reason finish; /* SRP_FINISH_NONE while running */
    int n_generated;          /* tokens drawn so far (the stop token included) */
    int n_prompt;
    int n_cached;    /* prompt tokens taken from the prefix cache instead of prefilled */
    char error[256]; /* for SRP_FINISH_ERROR */
} srp_request_status;

/* Moves up to cap pending events into ev (*n of them) and reports the status. The finish is
 * reported only once every event before it has been taken. */
void srp_request_take(srp_request *r, srp_token_event *ev, int cap, int *n, srp_request_status *st);

/* Asks the engine to drop the request: it finishes with SRP_FINISH_CANCELLED (unless it
 * finished already) and its slot and blocks are free within one step. */
void srp_request_cancel(srp_request *r);

/* Cancels the request if it is still running, stops its notifications (none comes after this
 * returns) and gives back the caller's reference. */
void srp_request_release(srp_request *r);

typedef struct srp_sched_stats {
    int running, waiting;
    int slots_total, slots_free;
    int blocks_total, blocks_free;
    uint64_t prompt_tokens;                  /* prompt tokens prefilled, all time */
    uint64_t generation_tokens;              /* tokens drawn, all time */
    uint64_t finished[SRP_FINISH_ERROR + 1]; /* requests by finish reason */
    uint64_t rejected;                       /* submissions refused with SRP_EFULL */
    uint64_t steps;
    uint64_t mixed_steps; /* steps that held decode and prefill tokens */
    int prefill_budget;   /* prompt tokens the last step with prompts pending could take */
    double decode_step_s; /* the decode-only step time that bounded it (0: not bounded) */
    double step_target_s; /* the step time it aimed at (0: not bounded) */
    /* the prefix cache (zeros when off) */
    uint64_t prefix_queried_tokens; /* prompt tokens of requests admitted with the cache on */
    uint64_t prefix_hit_tokens;     /* of those, restored from snapshots instead of prefilled */
    uint64_t prefix_deferred;       /* requests held back to share a prompt being prefilled */
    uint64_t snapshots_taken, snapshot_evictions, block_evictions;
    int snapshots_total, snapshots_used;
    int64_t snapshot_bytes; /* of one snapshot */
    int blocks_cached;      /* KV blocks the prefix index holds (requests may share them) */
    int blocks_cache_only;  /* of those, held by no request: admission takes them back */
} srp_sched_stats;

void srp_sched_get_stats(srp_sched *s, srp_sched_stats *st);

/* Empties the prefix cache (every snapshot and cached KV block not in use goes back); returns
 * once the engine thread has done it. */
void srp_sched_reset_prefix_cache(srp_sched *s);

/* The clock of event times: seconds, monotonic. */
double srp_sched_now(void);

#endif
