/* A request's immutable settings, its engine-side counters and its output channel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_internal.h"

static void *dup_array(const void *src, size_t n, size_t size) {
    void *d = malloc(n ? n * size : 1);
    if (d && n) memcpy(d, src, n * size);
    return d;
}

int srp_request_new(const srp_request_params *p, int vocab, srp_request **out, srp_err *e) {
    srp_request *r = calloc(1, sizeof *r);
    if (!r) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->seq.slot = -1;
    r->n_prompt = p->n_prompt;
    r->max_tokens = p->max_tokens;
    r->logprobs = p->logprobs;
    r->prompt_logprobs = p->prompt_logprobs;
    r->n_stop_ids = p->n_stop_ids;
    r->notify = p->notify;
    r->alive = p->alive;
    r->user = p->user;
    r->sample = p->sample;
    const srp_sample_params *sp = &p->sample;
    r->prompt = dup_array(p->prompt, (size_t)p->n_prompt, sizeof *r->prompt);
    r->stop_ids = dup_array(p->stop_ids, (size_t)p->n_stop_ids, sizeof *r->stop_ids);
    r->bias_ids = dup_array(sp->logit_bias_ids, (size_t)sp->n_logit_bias, sizeof *r->bias_ids);
    r->bias = dup_array(sp->logit_bias, (size_t)sp->n_logit_bias, sizeof *r->bias);
    int ok = r->prompt && r->stop_ids && r->bias_ids && r->bias;
    r->min_tokens = p->min_tokens;
    if (ok && p->min_tokens > 0 && p->n_stop_ids > 0) {
        size_t nb = (size_t)sp->n_logit_bias, ns = (size_t)p->n_stop_ids;
        r->min_bias_ids = malloc((nb + ns) * sizeof *r->min_bias_ids);
        r->min_bias = malloc((nb + ns) * sizeof *r->min_bias);
        ok = r->min_bias_ids && r->min_bias;
        for (size_t i = 0; ok && i < nb; i++) {
            r->min_bias_ids[i] = sp->logit_bias_ids[i];
            r->min_bias[i] = sp->logit_bias[i];
        }
        for (size_t i = 0; ok && i < ns; i++) {
            r->min_bias_ids[nb + i] = p->stop_ids[i];
            r->min_bias[nb + i] = -INFINITY; /* after any bias on the same id */
        }
        r->n_min_bias = (int)(nb + ns);
    }
    int rep = sp->repetition_penalty > 0.0f && sp->repetition_penalty != 1.0f;
    if (ok && (rep || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f))
        ok = (r->out_counts = calloc((size_t)vocab, sizeof *r->out_counts)) != NULL;
    if (ok && rep) {
        ok = (r->prompt_mask = calloc((size_t)vocab, 1)) != NULL;
        for (int i = 0; ok && i < p->n_prompt; i++)
            if (p->prompt[i] >= 0 && p->prompt[i] < vocab) r->prompt_mask[p->prompt[i]] = 1;
    }
    if (!ok) {
        srp_request_free(r);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    if (p->grammar) {
        int rc = p->grammar_vocab && srp_vocab_size(p->grammar_vocab) == vocab
                     ? srp_matcher_new(p->grammar, p->grammar_vocab, &r->matcher, e)
                     : srp_err_set(e, SRP_EINVAL, "a grammar needs the model's vocabulary");
        if (!rc && !(r->mask = malloc(((size_t)vocab + 31) / 32 * sizeof *r->mask)))
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        if (rc) {
            srp_request_free(r);
            return rc;
        }
    }
    r->sample.logit_bias_ids = r->bias_ids;
    r->sample.logit_bias = r->bias;
    r->sample.output_counts = r->out_counts;
    r->sample.prompt_mask = r->prompt_mask;
    r->sample.logprob_out = NULL;
    r->sample.top_ids = NULL;
    r->sample.top_logprobs = NULL;
    r->sample.force_token = 0;
    *out = r;
    return 0;
}

void srp_request_free(srp_request *r) {
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    free(r->prompt);
    free(r->stop_ids);
    free(r->bias_ids);
    free(r->bias);
    free(r->min_bias_ids);
    free(r->min_bias);
    free(r->out_counts);
    free(r->prompt_mask);
    srp_matcher_free(r->matcher);
    free(r->mask);
    free(r->chain);
    free(r->ev);
    free(r);
}

void srp_request_unref(srp_request *r) {
    if (atomic_fetch_sub(&r->refs, 1) == 1) srp_request_free(r);
}

static void wake_locked(srp_request *r) {
    if (r->notify) r->notify(r->user);
}

void srp_request_push(srp_request *r, const srp_token_event *ev) {
    pthread_mutex_lock(&r->mu);
    if (r->ev_n == r->ev_cap) {
        if (r->ev_head > 0) { /* reuse the space of events already taken */
            memmove(r->ev, r->ev + r->ev_head, (size_t)(r->ev_n - r->ev_head) * sizeof *r->ev);
            r->ev_n -= r->ev_head;
            r->ev_head = 0;
        }
        if (r->ev_n == r->ev_cap) {
            int cap = r->ev_cap ? r->ev_cap * 2 : 16;
            srp_token_event *ne = realloc(r->ev, (size_t)cap * sizeof *ne);
            if (!ne) {
                /* the event is lost; finish the request rather than deliver a gap */
                snprintf(r->error, sizeof r->error, "out of memory in the output channel");
                atomic_store(&r->cancel, 1);
                pthread_mutex_unlock(&r->mu);
                return;
            }
            r->ev = ne;
            r->ev_cap = cap;
        }
    }
    r->ev[r->ev_n++] = *ev;
    if (!ev->is_prompt) r->n_generated_pub++;
    wake_locked(r);
    pthread_mutex_unlock(&r->mu);
}

void srp_request_finish(srp_request *r, srp_finish_reason why, const char *msg) {
    pthread_mutex_lock(&r->mu);
    if (r->error[0] && why == SRP_FINISH_CANCELLED) why = SRP_FINISH_ERROR;
    r->finish = why;
    if (msg) snprintf(r->error, sizeof r->error, "%s", msg);
    wake_locked(r);
    pthread_mutex_unlock(&r->mu);
}

void srp_request_take(srp_request *r, srp_token_event *ev, int cap, int *n,
                      srp_request_status *st) {
    pthread_mutex_lock(&r->mu);
    int k = r->ev_n - r->ev_head;
    if (k > cap) k = cap;
    if (k > 0) memcpy(ev, r->ev + r->ev_head, (size_t)k * sizeof *ev);
    r->ev_head += k;
    if (r->ev_head == r->ev_n) r->ev_head = r->ev_n = 0;
    *n = k;
    st->finish = r->ev_n == 0 ? r->finish : SRP_FINISH_NONE;
    st->n_generated = r->n_generated_pub;
    st->n_prompt = r->n_prompt;
    st->n_cached = r->n_cached;
    snprintf(st->error, sizeof st->error, "%s", st->finish == SRP_FINISH_ERROR ? r->error : "");
    pthread_mutex_unlock(&r->mu);
}

int srp_request_wanted(srp_request *r) {
    if (atomic_load(&r->cancel)) return 0;
    pthread_mutex_lock(&r->mu);
    int ok = !r->alive || r->alive(r->user);
    pthread_mutex_unlock(&r->mu);
    if (!ok) atomic_store(&r->cancel, 1);
    return ok;
}

void srp_request_cancel(srp_request *r) {
    atomic_store(&r->cancel, 1);
}

void srp_request_release(srp_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->notify = NULL;
    r->alive = NULL;
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->cancel, 1);
    srp_request_unref(r);
}
