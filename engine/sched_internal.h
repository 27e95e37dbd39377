/* The scheduler's private parts: the request object shared by scheduler.c and request.c. */
#ifndef SRP_SCHED_INTERNAL_H
#define SRP_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "scheduler.h"

struct srp_request {
    atomic_int refs;
    atomic_int cancel;

    /* fixed at submission */
    int32_t *prompt;
    int n_prompt, max_tokens;
    srp_sample_params sample; /* logit bias arrays and penalty counts point into this request */
    int32_t *bias_ids;
    float *bias;
    int32_t *stop_ids;
    int n_stop_ids;
    /* before min_tokens: logit_bias with every stop id at -inf */
    int min_tokens, n_min_bias;
    int32_t *min_bias_ids;
    float *min_bias;
    int logprobs, prompt_logprobs;

    /* the engine thread's */
    srp_matcher *matcher; /* constrained decoding: where the reply is in its grammar */
    uint32_t *mask;       /* [(vocab + 31) / 32]: the tokens it allows next */
    enum {
        GRAMMAR_OPEN,  /* more may follow */
        GRAMMAR_DONE,  /* the grammar took its last byte: the reply ends */
        GRAMMAR_STUCK, /* no token continues it: the reply ends (an error unless it may end) */
    } grammar_end;
    srp_request *next; /* submit queue / waiting list */
    srp_seq seq;
    int n_fed, n_generated;
    int32_t last_token;
    int32_t *out_counts;  /* [vocab] when a penalty needs them */
    uint8_t *prompt_mask; /* [vocab] for the repetition penalty */
    /* the prefix cache (sched_prefix.c) */
    uint64_t *chain;   /* hash chain of the prompt's full blocks, once looked up */
    int n_cached;      /* prompt tokens restored from a snapshot (under mu) */
    int deferred;      /* counted once in prefix_deferred */
    int snap_extra[8]; /* prompt positions to snapshot at besides the policy's, ascending */
    int n_snap_extra;

    /* the output channel, under mu */
    pthread_mutex_t mu;
    srp_token_event *ev;
    int ev_head, ev_n, ev_cap;
    srp_finish_reason finish;
    int n_generated_pub;
    char error[256];
    void (*notify)(void *user);
    int (*alive)(void *user);
    void *user;
};

/* The scheduler's prefix-cache policy (sched_prefix.c). */
struct srp_prefix_cache;
struct srp_prefix_match;
typedef struct srp_sched_prefix {
    struct srp_prefix_cache *pc; /* NULL: off */
    int block_size, interval, min_tokens;
    uint64_t queried, hits, deferred;
} srp_sched_prefix;

void srp_sched_prefix_init(srp_sched_prefix *p, srp_engine *eng, const srp_sched_opts *o);
/* For waiting request r: 1 when it should wait for a running request that is prefilling the
 * same prefix (that one will snapshot where they part), else 0 with r's cache match in m
 * (pinned until srp_sched_prefix_admit). */
int srp_sched_prefix_plan(srp_sched_prefix *p, srp_request *r, srp_request *const *running,
                          int n_running, struct srp_prefix_match *m);
/* Opens r's slot, shares the match's KV blocks, reserves the rest of prompt + max_tokens
 * (evicting cached blocks when short; SRP_EFULL when still short), restores the snapshot and
 * skips r past it. Releases m; on failure r holds nothing. */
int srp_sched_prefix_admit(srp_sched_prefix *p, srp_engine *eng, srp_request *r,
                           struct srp_prefix_match *m, srp_err *e);
/* The most of r's prompt one step may take from k: chunks end where snapshots are taken. */
int srp_sched_prefix_chunk(const srp_sched_prefix *p, const srp_request *r, int k);
/* After a step that fed r's prompt up to r->n_fed: the snapshot there, when one is due. */
void srp_sched_prefix_after_step(srp_sched_prefix *p, srp_request *r);
void srp_sched_prefix_reset(srp_sched_prefix *p);
/* The cache's figures into st. */
void srp_sched_prefix_stats(const srp_sched_prefix *p, srp_engine *eng, srp_sched_stats *st);

int srp_request_new(const srp_request_params *p, int vocab, srp_request **out, srp_err *e);
void srp_request_free(srp_request *r);
void srp_request_unref(srp_request *r);
/* Engine thread: appends an event / sets the finish, and calls notify. */
void srp_request_push(srp_request *r, const srp_token_event *ev);
void srp_request_finish(srp_request *r, srp_finish_reason why, const char *msg);
/* Engine thread: whether the request is still wanted (not cancelled, its alive callback says
 * so); an unwanted one is marked cancelled. */
int srp_request_wanted(srp_request *r);

#endif
