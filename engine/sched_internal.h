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
    srp_request *next; /* submit queue / waiting list */
    srp_seq seq;
    int n_fed, n_generated;
    int32_t last_token;
    int32_t *out_counts;  /* [vocab] when a penalty needs them */
    uint8_t *prompt_mask; /* [vocab] for the repetition penalty */

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
