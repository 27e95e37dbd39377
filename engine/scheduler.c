/* The engine thread's step loop: admission, batch building, sampling, delivery. The request
 * objects and their channels are in request.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sched_budget.h"
#include "prefix_cache.h"
#include "sched_internal.h"

double srp_sched_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct srp_sched {
    srp_engine *eng;
    srp_sched_opts opts;
    int vocab, max_seq_len, max_batch_tokens, max_logits, max_seqs;
    srp_budget budget; /* the engine thread's */
    pthread_t thread;
    int thread_started;

    /* shared with submitters, under mu */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    srp_request *in_head, *in_tail; /* the submit queue */
    int n_in;
    int stopping;
    srp_sched_stats stats;
    int reset_asked, reset_done; /* prefix-cache resets asked for and done */
    pthread_cond_t reset_cv;

    /* the engine thread's own */
    srp_request *wait_head, *wait_tail; /* admitted in this order */
    int n_wait;
    srp_request **running; /* [max_seqs], in admission order */
    int n_running;
    /* one step's scratch, sized for max_seqs items and max_logits rows */
    srp_step_item *items;
    srp_request **item_req;
    srp_sample_params *params;
    int32_t *tokens;
    srp_request **row_req;
    uint8_t *row_prompt; /* 1: a prompt-logprob row; 0: a generated token */
    srp_token_event *row_ev;
    int *mask_rows; /* rows of constrained requests */
    srp_sched_prefix prefix;
};

/* The caller has taken r out of the running or waiting list. The stats change before the
 * finish is delivered, so a client that sees its answer also sees its slot free. */
static void finish(srp_sched *s, srp_request *r, srp_finish_reason why, const char *msg) {
    srp_seq_close(s->eng, &r->seq);
    pthread_mutex_lock(&s->mu);
    s->stats.finished[why]++;
    s->stats.running = s->n_running;
    s->stats.waiting = s->n_wait + s->n_in;
    s->stats.slots_free = srp_engine_free_slots(s->eng);
    s->stats.blocks_free = srp_engine_free_blocks(s->eng);
    srp_sched_prefix_stats(&s->prefix, s->eng, &s->stats);
    pthread_mutex_unlock(&s->mu);
    srp_request_finish(r, why, msg);
    srp_request_unref(r);
}

static void remove_running(srp_sched *s, int i) {
    memmove(s->running + i, s->running + i + 1,
            (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

/* Cancelled requests leave before the step is built, so their slots are free for admission. */
static void drop_cancelled(srp_sched *s) {
    for (int i = 0; i < s->n_running;) {
        srp_request *r = s->running[i];
        if (atomic_load(&r->cancel)) {
            remove_running(s, i);
            finish(s, r, SRP_FINISH_CANCELLED, NULL);
        } else {
            i++;
        }
    }
    srp_request **link = &s->wait_head;
    s->wait_tail = NULL;
    while (*link) {
        srp_request *r = *link;
        if (atomic_load(&r->cancel)) {
            *link = r->next;
            s->n_wait--;
            finish(s, r, SRP_FINISH_CANCELLED, NULL);
        } else {
            s->wait_tail = r;
            link = &r->next;
        }
    }
}

/* First come, first served: the first request that does not fit waits, and nobody overtakes
 * it. A request that waits for a running one to prefill the prefix they share (the prefix
 * cache's deferral) is passed over until then. */
static void admit(srp_sched *s) {
    srp_request **link = &s->wait_head, *prev = NULL;
    while (*link && s->n_running < s->max_seqs) {
        srp_request *r = *link;
        if (!srp_request_wanted(r)) { /* its client left while it waited */
            *link = r->next;
            if (s->wait_tail == r) s->wait_tail = prev;
            r->next = NULL;
            s->n_wait--;
            finish(s, r, SRP_FINISH_CANCELLED, NULL);
            continue;
        }
        srp_prefix_match m;
        if (srp_sched_prefix_plan(&s->prefix, r, s->running, s->n_running, &m)) {
            prev = r;
            link = &r->next;
            continue;
        }
        srp_err e = { 0 };
        const int rc = srp_sched_prefix_admit(&s->prefix, s->eng, r, &m, &e);
        if (rc == SRP_EFULL) break;
        *link = r->next;
        if (s->wait_tail == r) s->wait_tail = prev;
        r->next = NULL;
        s->n_wait--;
        if (rc)
            finish(s, r, SRP_FINISH_ERROR, e.msg);
        else
            s->running[s->n_running++] = r;
    }
}

static void publish_stats(srp_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->stats.running = s->n_running;
    s->stats.waiting = s->n_wait + s->n_in;
    s->stats.slots_free = srp_engine_free_slots(s->eng);
    s->stats.blocks_free = srp_engine_free_blocks(s->eng);
    srp_sched_prefix_stats(&s->prefix, s->eng, &s->stats);
    pthread_mutex_unlock(&s->mu);
}

static void add_row(srp_sched *s, int *rows, srp_request *r, int prompt_row, int32_t forced) {
    int i = (*rows)++;
    srp_sample_params *p = &s->params[i];
    srp_token_event *ev = &s->row_ev[i];
    memset(ev, 0, sizeof *ev);
    s->row_req[i] = r;
    s->row_prompt[i] = (uint8_t)prompt_row;
    *p = r->sample;
    int k = prompt_row ? r->prompt_logprobs : r->logprobs;
    if (prompt_row) {
        p->force_token = 1;
        p->forced_token = forced;
    } else {
        p->step = (uint64_t)r->n_generated;
        if (r->n_generated < r->min_tokens && r->n_min_bias) {
            p->n_logit_bias = r->n_min_bias;
            p->logit_bias_ids = r->min_bias_ids;
            p->logit_bias = r->min_bias;
        }
    }
    if (!prompt_row && r->matcher) p->allowed = r->mask; /* filled by fill_masks */
    if (k >= 0) {
        p->logprob_out = &ev->logprob;
        p->top_n = k;
        p->top_ids = ev->top_ids;
        p->top_logprobs = ev->top_logprobs;
        ev->n_top = (uint8_t)k;
    }
}

/* Prompt tokens this step may take beside n_decode decode tokens (sched_budget.c). */
static int prefill_budget(srp_sched *s, int n_decode) {
    int pending = 0;
    for (int i = 0; i < s->n_running && !pending; i++)
        pending = s->running[i]->n_fed < s->running[i]->n_prompt;
    if (!pending) return 0;
    int budget = srp_budget_prefill(&s->budget, n_decode);
    if (budget > s->max_batch_tokens - n_decode) budget = s->max_batch_tokens - n_decode;
    pthread_mutex_lock(&s->mu);
    s->stats.prefill_budget = budget;
    s->stats.decode_step_s = s->budget.last_decode_s;
    s->stats.step_target_s = s->budget.last_target_s;
    pthread_mutex_unlock(&s->mu);
    return budget;
}

/* Lays out one step: a decode token of every request past its prompt, then prompt chunks in
 * admission order while the prefill budget and the logits rows last. Returns the item count. */
static int plan_step(srp_sched *s, int *n_rows, int *n_decode, int *prefill_tokens) {
    int n = 0, rows = 0;
    *prefill_tokens = 0;
    for (int i = 0; i < s->n_running; i++) {
        srp_request *r = s->running[i];
        if (r->n_fed < r->n_prompt) continue;
        s->items[n] = (srp_step_item){ &r->seq, &r->last_token, 1, SRP_LOGITS_LAST, 0 };
        s->item_req[n++] = r;
        add_row(s, &rows, r, 0, 0);
    }
    *n_decode = n;
    int budget = prefill_budget(s, n);
    for (int i = 0; i < s->n_running && budget > 0; i++) {
        srp_request *r = s->running[i];
        if (r->n_fed >= r->n_prompt) continue;
        if (!srp_request_wanted(r)) continue; /* dropped at the next step, unprefilled */
        int left = r->n_prompt - r->n_fed, k = left < budget ? left : budget;
        k = srp_sched_prefix_chunk(&s->prefix, r, k);
        int room = s->max_logits - rows;
        srp_logits_mode mode;
        if (r->prompt_logprobs >= 0) {
            if (k > room) k = room;
            mode = SRP_LOGITS_ALL;
        } else if (k == left && r->max_tokens > 0) {
            if (room == 0) k = left - 1;
            mode = k == left ? SRP_LOGITS_LAST : SRP_LOGITS_NONE;
        } else {
            mode = SRP_LOGITS_NONE;
        }
        if (k <= 0) continue;
        s->items[n] = (srp_step_item){ &r->seq, r->prompt + r->n_fed, k, mode, r->n_prompt };
        s->item_req[n++] = r;
        if (mode == SRP_LOGITS_ALL) {
            for (int t = r->n_fed; t < r->n_fed + k; t++) {
                if (t + 1 < r->n_prompt)
                    add_row(s, &rows, r, 1, r->prompt[t + 1]);
                else if (r->max_tokens > 0)
                    add_row(s, &rows, r, 0, 0);
            }
        } else if (mode == SRP_LOGITS_LAST) {
            add_row(s, &rows, r, 0, 0);
        }
        budget -= k;
        *prefill_tokens += k;
    }
    *n_rows = rows;
    return n;
}

static int is_stop(const srp_request *r, int32_t t) {
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == t) return 1;
    return 0;
}

/* Row i's allowed tokens: the grammar's, and the stop ids where the reply may end. A row whose
 * grammar allows nothing (no token of the vocabulary spells what it needs) draws unmasked; its
 * token is dropped and the reply ends there (GRAMMAR_STUCK). */
static void fill_mask(srp_sched *s, int i) {
    srp_request *r = s->row_req[i];
    const int words = (s->vocab + 31) / 32;
    srp_matcher_mask(r->matcher, r->mask);
    if (srp_matcher_can_end(r->matcher))
        for (int k = 0; k < r->n_stop_ids; k++)
            r->mask[r->stop_ids[k] >> 5] |= 1u << (r->stop_ids[k] & 31);
    uint32_t any = 0;
    for (int w = 0; w < words && !any; w++) any = r->mask[w];
    if (!any) {
        r->grammar_end = GRAMMAR_STUCK;
        s->params[i].allowed = NULL;
    }
}

/* Computing masks costs CPU time per constrained row: they run on OpenMP's threads, while the
 * device still runs the step's forward pass (srp_engine_step returns once it is queued). */
static void fill_masks(srp_sched *s, int n_rows) {
    int n = 0;
    for (int i = 0; i < n_rows; i++)
        if (s->params[i].allowed) s->mask_rows[n++] = i;
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int k = 0; k < n; k++) fill_mask(s, s->mask_rows[k]);
}

/* After row token t of constrained request r: the grammar moves past it (a stop id ends the
 * reply as usual); where no byte may follow, the reply ends. */
static void advance_grammar(srp_request *r, int32_t t) {
    if (r->grammar_end != GRAMMAR_OPEN || is_stop(r, t)) return;
    if (srp_matcher_accept(r->matcher, t))
        r->grammar_end = GRAMMAR_STUCK; /* not reached: the mask allowed t */
    else if (srp_matcher_must_end(r->matcher))
        r->grammar_end = GRAMMAR_DONE;
}

/* Fails every request of a step whose forward pass failed (their states are undefined). */
static void fail_step(srp_sched *s, int n_items, const char *msg) {
    for (int i = 0; i < n_items; i++) {
        srp_request *r = s->item_req[i];
        for (int j = 0; j < s->n_running; j++)
            if (s->running[j] == r) {
                remove_running(s, j);
                break;
            }
        finish(s, r, SRP_FINISH_ERROR, msg);
    }
}

static void run_step(srp_sched *s) {
    int n_rows = 0, n_decode = 0, prefill_tokens = 0;
    int n_items = plan_step(s, &n_rows, &n_decode, &prefill_tokens);
    if (n_items == 0) return;
    srp_err e = { 0 };
    srp_mat logits;
    const double t_start = srp_sched_now();
    if (srp_engine_step(s->eng, s->items, n_items, &logits, &e)) {
        fail_step(s, n_items, e.msg);
        return;
    }
    for (int i = 0; i < n_items; i++) {
        srp_request *r = s->item_req[i];
        if (r->n_fed < r->n_prompt) {
            r->n_fed += s->items[i].n_tokens;
            srp_sched_prefix_after_step(&s->prefix, r);
        }
    }
    fill_masks(s, n_rows);
    if (n_rows && srp_engine_sample(s->eng, logits, s->params, s->tokens, &e)) {
        fail_step(s, n_items, e.msg);
        return;
    }
    const double now = srp_sched_now();
    srp_budget_observe(&s->budget, n_decode, prefill_tokens,
                       s->opts.step_seconds ? s->opts.step_seconds(s->opts.step_seconds_user,
                                                                   n_decode, prefill_tokens)
                                            : now - t_start);
    int generated = 0;
    for (int i = 0; i < n_rows; i++) {
        srp_request *r = s->row_req[i];
        srp_token_event *ev = &s->row_ev[i];
        ev->token = s->tokens[i];
        ev->time = now;
        ev->is_prompt = s->row_prompt[i];
        if (!ev->is_prompt && r->grammar_end == GRAMMAR_STUCK) continue; /* a dropped token */
        if (!ev->is_prompt && r->matcher) advance_grammar(r, ev->token);
        if (!ev->is_prompt) {
            r->n_generated++;
            r->last_token = ev->token;
            if (r->out_counts) r->out_counts[ev->token]++;
            generated++;
        }
        srp_request_push(r, ev);
    }
    pthread_mutex_lock(&s->mu);
    s->stats.prompt_tokens += (uint64_t)prefill_tokens;
    s->stats.generation_tokens += (uint64_t)generated;
    s->stats.steps++;
    s->stats.mixed_steps += n_decode > 0 && prefill_tokens > 0;
    pthread_mutex_unlock(&s->mu);
    /* finishes, in running order */
    for (int i = 0; i < s->n_running;) {
        srp_request *r = s->running[i];
        srp_finish_reason why = SRP_FINISH_NONE;
        const char *msg = NULL;
        if (r->n_fed == r->n_prompt) {
            if (r->grammar_end == GRAMMAR_STUCK && !srp_matcher_can_end(r->matcher)) {
                why = SRP_FINISH_ERROR;
                msg = "constrained decoding: no token of the vocabulary continues the grammar here";
            } else if (r->grammar_end != GRAMMAR_OPEN ||
                       (r->n_generated > 0 && is_stop(r, r->last_token)))
                why = SRP_FINISH_STOP;
            else if (r->n_generated >= r->max_tokens)
                why = SRP_FINISH_LENGTH;
            else if (r->seq.n_past >= s->max_seq_len)
                why = SRP_FINISH_LENGTH;
        }
        if (why != SRP_FINISH_NONE) {
            remove_running(s, i);
            finish(s, r, why, msg);
        } else {
            i++;
        }
    }
}

static void cancel_all(srp_sched *s) {
    while (s->n_running) {
        srp_request *r = s->running[s->n_running - 1];
        s->n_running--;
        finish(s, r, SRP_FINISH_CANCELLED, NULL);
    }
    while (s->wait_head) {
        srp_request *r = s->wait_head;
        s->wait_head = r->next;
        s->n_wait--;
        finish(s, r, SRP_FINISH_CANCELLED, NULL);
    }
    s->wait_tail = NULL;
}

static void *engine_main(void *arg) {
    srp_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && !s->in_head && !s->n_running && !s->wait_head &&
               s->reset_asked == s->reset_done)
            pthread_cond_wait(&s->wake, &s->mu);
        const int reset = s->reset_asked;
        if (s->in_head) {
            if (s->wait_tail)
                s->wait_tail->next = s->in_head;
            else
                s->wait_head = s->in_head;
            s->wait_tail = s->in_tail;
            s->n_wait += s->n_in;
            s->in_head = s->in_tail = NULL;
            s->n_in = 0;
        }
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) {
            cancel_all(s);
            publish_stats(s);
            pthread_mutex_lock(&s->mu);
            s->reset_done = s->reset_asked;
            pthread_cond_broadcast(&s->reset_cv);
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        if (reset != s->reset_done) { /* only this thread writes reset_done */
            srp_sched_prefix_reset(&s->prefix);
            publish_stats(s);
            pthread_mutex_lock(&s->mu);
            s->reset_done = reset;
            pthread_cond_broadcast(&s->reset_cv);
            pthread_mutex_unlock(&s->mu);
        }
        drop_cancelled(s);
        admit(s);
        if (s->n_running) run_step(s);
        publish_stats(s);
    }
}

static void sched_free(srp_sched *s) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->reset_cv);
    free(s->running);
    free(s->items);
    free(s->item_req);
    free(s->params);
    free(s->tokens);
    free(s->row_req);
    free(s->row_prompt);
    free(s->row_ev);
    free(s->mask_rows);
    srp_budget_free(&s->budget);
    free(s);
}

void srp_sched_opts_default(srp_sched_opts *o) {
    *o = (srp_sched_opts){ 0 };
    o->max_queue = 1024;
    srp_budget_opts b;
    srp_budget_opts_default(&b);
    o->itl_slowdown = b.itl_slowdown;
    o->step_target_s = b.step_target_s;
    o->min_prefill = b.min_prefill;
}

int srp_sched_start(srp_engine *eng, const srp_sched_opts *o, srp_sched **out, srp_err *e) {
    if (o->max_queue < 0) return srp_err_set(e, SRP_EINVAL, "max_queue must be >= 0");
    srp_sched *s = calloc(1, sizeof *s);
    if (!s) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    s->eng = eng;
    s->opts = *o;
    s->vocab = srp_engine_config(eng)->vocab_size;
    s->max_seq_len = srp_engine_max_seq_len(eng);
    s->max_batch_tokens = srp_engine_max_batch_tokens(eng);
    s->max_logits = srp_engine_max_logits(eng);
    s->max_seqs = srp_engine_total_slots(eng);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->reset_cv, NULL);
    srp_sched_prefix_init(&s->prefix, eng, o);
    const size_t S = (size_t)s->max_seqs, L = (size_t)s->max_logits;
    s->running = calloc(S, sizeof *s->running);
    s->items = calloc(S, sizeof *s->items);
    s->item_req = calloc(S, sizeof *s->item_req);
    s->params = calloc(L, sizeof *s->params);
    s->tokens = calloc(L, sizeof *s->tokens);
    s->row_req = calloc(L, sizeof *s->row_req);
    s->row_prompt = calloc(L, 1);
    s->row_ev = calloc(L, sizeof *s->row_ev);
    s->mask_rows = calloc(L, sizeof *s->mask_rows);
    if (!s->running || !s->items || !s->item_req || !s->params || !s->tokens || !s->row_req ||
        !s->row_prompt || !s->row_ev || !s->mask_rows) {
        sched_free(s);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    srp_budget_opts bo;
    srp_budget_opts_default(&bo);
    bo.itl_slowdown = o->itl_slowdown;
    bo.step_target_s = o->step_target_s;
    if (o->min_prefill > 0) bo.min_prefill = o->min_prefill;
    int rc = srp_budget_init(&s->budget, &bo, s->max_seqs, s->max_batch_tokens, e);
    if (rc) {
        sched_free(s);
        return rc;
    }
    s->stats.slots_total = s->stats.slots_free = s->max_seqs;
    s->stats.blocks_total = srp_engine_total_blocks(eng);
    s->stats.blocks_free = srp_engine_free_blocks(eng);
    srp_sched_prefix_stats(&s->prefix, eng, &s->stats);
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        sched_free(s);
        return srp_err_set(e, SRP_ENOMEM, "cannot start the engine thread");
    }
    *out = s;
    return 0;
}

void srp_sched_stop(srp_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    sched_free(s);
}

/* Checks what can be checked without the engine thread, so the engine never sees a request it
 * cannot run. */
static int check_params(const srp_sched *s, const srp_request_params *p, srp_err *e) {
    if (p->n_prompt < 1) return srp_err_set(e, SRP_EINVAL, "the prompt is empty");
    if (p->max_tokens < 0) return srp_err_set(e, SRP_EINVAL, "max_tokens must be >= 0");
    if ((int64_t)p->n_prompt + p->max_tokens > s->max_seq_len)
        return srp_err_set(e, SRP_EINVAL,
                           "%d prompt tokens + %d max_tokens exceed the maximum length %d",
                           p->n_prompt, p->max_tokens, s->max_seq_len);
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= s->vocab)
            return srp_err_set(e, SRP_EINVAL, "token id %d is outside the vocabulary [0, %d)",
                               p->prompt[i], s->vocab);
    for (int i = 0; i < p->sample.n_logit_bias; i++)
        if (p->sample.logit_bias_ids[i] < 0 || p->sample.logit_bias_ids[i] >= s->vocab)
            return srp_err_set(e, SRP_EINVAL, "logit_bias token id %d is outside [0, %d)",
                               p->sample.logit_bias_ids[i], s->vocab);
    if (p->logprobs > SRP_MAX_TOP_LOGPROBS || p->prompt_logprobs > SRP_MAX_TOP_LOGPROBS)
        return srp_err_set(e, SRP_EINVAL, "at most %d top logprobs", SRP_MAX_TOP_LOGPROBS);
    if (p->prompt_logprobs >= 0 && s->max_logits < 2)
        return srp_err_set(e, SRP_EINVAL, "prompt logprobs need 2 logits rows per step");
    int bs = srp_engine_block_size(s->eng), total = srp_engine_total_blocks(s->eng);
    if (total > 0 && (p->n_prompt + p->max_tokens + bs - 1) / bs > total)
        return srp_err_set(e, SRP_EINVAL, "the request needs more KV blocks than the cache has");
    return 0;
}

int srp_sched_submit(srp_sched *s, const srp_request_params *p, srp_request **out, srp_err *e) {
    int rc = check_params(s, p, e);
    if (rc) return rc;
    srp_request *r = NULL;
    rc = srp_request_new(p, s->vocab, &r, e);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        srp_request_free(r);
        return srp_err_set(e, SRP_EUNSUPPORTED, "the server is shutting down");
    }
    /* a queue place for each request beyond what the free slots take now */
    int waiting = s->stats.waiting;
    if (waiting >= s->opts.max_queue + s->stats.slots_free) {
        s->stats.rejected++;
        pthread_mutex_unlock(&s->mu);
        srp_request_free(r);
        return srp_err_set(e, SRP_EFULL, "%d requests are waiting; the queue holds %d", waiting,
                           s->opts.max_queue);
    }
    r->refs = 2; /* the caller's and the engine thread's */
    if (s->in_tail)
        s->in_tail->next = r;
    else
        s->in_head = r;
    s->in_tail = r;
    s->n_in++;
    s->stats.waiting++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return 0;
}

void srp_sched_reset_prefix_cache(srp_sched *s) {
    pthread_mutex_lock(&s->mu);
    const int ticket = ++s->reset_asked;
    pthread_cond_signal(&s->wake);
    while (s->reset_done < ticket && !s->stopping) pthread_cond_wait(&s->reset_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void srp_sched_get_stats(srp_sched *s, srp_sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->stats;
    pthread_mutex_unlock(&s->mu);
}
