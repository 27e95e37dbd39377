/* One HTTP request's generation: n choices per prompt, each an engine request whose token
 * events become text here (incremental detokenization, stop strings held back until they can
 * no longer match, logprobs), and the latency metrics they imply. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "server.h"

char *srv_token_text(const srv_server *srv, int32_t id, size_t *out_len) {
    char *raw = NULL, *out = NULL;
    size_t len = 0, olen = 0, cap = 0;
    if (srv->tok && id >= 0 && id < srp_tokenizer_vocab_size(srv->tok) &&
        !srp_tokenizer_decode(srv->tok, &id, 1, 0, &raw, &len, NULL)) {
        srv_buf_append_utf8(&out, &olen, &cap, raw, len);
        free(raw);
        if (out) {
            *out_len = olen;
            return out;
        }
        if (len == 0) {
            *out_len = 0;
            return strdup("");
        }
    }
    char buf[32];
    *out_len = (size_t)snprintf(buf, sizeof buf, "token_id:%d", id);
    return strdup(buf);
}

/* The engine thread's notify: mark work pending and resume the connection if it sleeps. */
static void gen_notify(void *user) {
    srv_gen *g = user;
    pthread_mutex_lock(&g->wmu);
    g->pending = 1;
    if (g->suspended) {
        g->suspended = 0;
        atomic_fetch_sub(&g->srv->n_suspended, 1);
        MHD_resume_connection(g->mc);
    }
    pthread_mutex_unlock(&g->wmu);
}

void srv_gen_free(srv_gen *g) {
    if (!g) return;
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        srp_request_release(c->req); /* no notify after this */
        srp_detok_free(c->detok);
        free(c->text);
        free(c->ids);
        free(c->lps);
    }
    for (int i = 0; i < g->n_prompts; i++) {
        free(g->prompts[i].ids);
        free(g->prompts[i].text);
        free(g->prompts[i].lp);
    }
    free(g->prompts);
    free(g->choices);
    free(g->out);
    srv_gen_opts_free(&g->opts);
    pthread_mutex_destroy(&g->wmu);
    atomic_fetch_sub(&g->srv->n_gens, 1);
    free(g);
}

static uint64_t random_seed(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    static atomic_ulong counter;
    uint64_t x = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 30) ^
                 (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    return x;
}

int srv_gen_start(srv_server *srv, const srv_api *api, srv_prompt *prompts, int n_prompts,
                  srv_gen_opts *opts, srv_gen **out, srv_error *e) {
    srv_gen *g = calloc(1, sizeof *g);
    int n_choices = n_prompts * opts->n;
    if (g) g->choices = calloc((size_t)n_choices, sizeof *g->choices);
    if (!g || !g->choices) {
        free(g);
        for (int i = 0; i < n_prompts; i++) {
            free(prompts[i].ids);
            free(prompts[i].text);
        }
        free(prompts);
        srv_gen_opts_free(opts);
        return srv_fail(e, 500, NULL, "out of memory");
    }
    atomic_fetch_add(&srv->n_gens, 1);
    pthread_mutex_init(&g->wmu, NULL);
    g->srv = srv;
    g->api = api;
    g->opts = *opts;
    memset(opts, 0, sizeof *opts);
    g->prompts = prompts;
    g->n_prompts = n_prompts;
    g->n_choices = n_choices;
    g->created = (long)time(NULL);
    g->t_arrival = srp_sched_now();
    snprintf(g->id, sizeof g->id, "%s-%lx%08lx", api->id_prefix, (unsigned long)g->created,
             (unsigned long)atomic_fetch_add(&srv->next_id, 1));
    const uint64_t base_seed = g->opts.have_seed ? g->opts.seed : random_seed();
    int32_t stop_ids[8];
    int n_stop = 0;
    if (!g->opts.ignore_eos)
        for (int i = 0; i < srv->n_eos && n_stop < 8; i++) stop_ids[n_stop++] = srv->eos_ids[i];
    for (int p = 0; p < n_prompts; p++) {
        for (int j = 0; j < g->opts.n; j++) {
            srv_choice *c = &g->choices[p * g->opts.n + j];
            c->index = p * g->opts.n + j;
            c->prompt_index = p;
            if (srv->tok && srp_detok_new(srv->tok, g->opts.skip_special, &c->detok, NULL)) {
                srv_gen_free(g);
                return srv_fail(e, 500, NULL, "out of memory");
            }
            srp_request_params rp;
            memset(&rp, 0, sizeof rp);
            rp.prompt = prompts[p].ids;
            rp.n_prompt = prompts[p].n;
            rp.max_tokens = g->opts.max_tokens;
            rp.sample = g->opts.sample;
            rp.sample.seed = base_seed + (uint64_t)c->index; /* n choices must differ */
            rp.sample.n_logit_bias = g->opts.n_bias;
            rp.sample.logit_bias_ids = g->opts.bias_ids;
            rp.sample.logit_bias = g->opts.bias;
            rp.stop_ids = stop_ids;
            rp.n_stop_ids = n_stop;
            rp.logprobs = g->opts.logprobs;
            rp.prompt_logprobs =
                g->opts.echo && g->opts.logprobs >= 0 && j == 0 ? g->opts.logprobs : -1;
            rp.notify = gen_notify;
            rp.user = g;
            srp_err se = { 0 };
            int rc = srp_sched_submit(srv->sched, &rp, &c->req, &se);
            if (rc) {
                c->req = NULL;
                srv_gen_free(g);
                if (rc == SRP_EFULL) {
                    e->code = "rate_limit_exceeded";
                    return srv_fail(e, 429, NULL, "the server is busy (%s); retry later", se.msg);
                }
                if (rc == SRP_EUNSUPPORTED) return srv_fail(e, 503, NULL, "%s", se.msg);
                return srv_fail(e, 400, NULL, "%s", se.msg);
            }
        }
    }
    *out = g;
    return 0;
}

static int choice_grow(srv_choice *c) {
    if (c->n_ids == c->cap_ids) {
        int cap = c->cap_ids ? c->cap_ids * 2 : 64;
        int32_t *ni = realloc(c->ids, (size_t)cap * sizeof *ni);
        if (!ni) return -1;
        c->ids = ni;
        c->cap_ids = cap;
    }
    if (c->n_lps == c->cap_lps) {
        int cap = c->cap_lps ? c->cap_lps * 2 : 16;
        srv_tok_lp *nl = realloc(c->lps, (size_t)cap * sizeof *nl);
        if (!nl) return -1;
        c->lps = nl;
        c->cap_lps = cap;
    }
    return 0;
}

static int is_eos(const srv_gen *g, int32_t t) {
    if (g->opts.ignore_eos) return 0;
    for (int i = 0; i < g->srv->n_eos; i++)
        if (g->srv->eos_ids[i] == t) return 1;
    return 0;
}

/* New text of a choice: look for a stop string in what is not released yet; release all but
 * what could still become one. */
static void add_text(srv_gen *g, srv_choice *c, const char *s, size_t n, int final) {
    if (c->stopped_by_string) return;
    if (n && srv_buf_append_utf8(&c->text, &c->len, &c->cap, s, n)) {
        snprintf(c->error, sizeof c->error, "out of memory");
        g->failed = 1;
        return;
    }
    if (g->opts.n_stop) {
        long at = srv_stop_find(c->text, c->len, c->released, g->opts.stop, g->opts.n_stop);
        if (at >= 0) {
            c->len = (size_t)at;
            c->text[c->len] = 0;
            c->released = c->len;
            c->stopped_by_string = 1;
            c->finish_reason = "stop";
            srp_request_cancel(c->req);
            return;
        }
    }
    size_t hold = final ? 0 : srv_stop_holdback(c->text, c->len, g->opts.stop, g->opts.n_stop);
    if (c->len - hold > c->released) c->released = c->len - hold;
}

static void finish_choice(srv_gen *g, srv_choice *c, const srp_request_status *st) {
    if (c->detok && !c->stopped_by_string) {
        const char *s;
        size_t n;
        if (!srp_detok_flush(c->detok, &s, &n, NULL)) add_text(g, c, s, n, 1);
    }
    add_text(g, c, "", 0, 1);
    c->n_generated = st->n_generated;
    c->n_cached = st->n_cached;
    if (!c->finish_reason) {
        switch (st->finish) {
        case SRP_FINISH_STOP:
            c->finish_reason = "stop";
            break;
        case SRP_FINISH_LENGTH:
            c->finish_reason = "length";
            break;
        case SRP_FINISH_ERROR:
            c->finish_reason = "error";
            snprintf(c->error, sizeof c->error, "%s", st->error);
            g->failed = 1;
            break;
        default:
            c->finish_reason = "abort";
            g->cancelled = 1;
            break;
        }
    }
    c->done = 1;
    g->n_done++;
    srv_metrics *m = &g->srv->metrics;
    if (c->finish_reason[0] == 's' || c->finish_reason[0] == 'l')
        srv_metrics_observe(m, &m->e2e, srp_sched_now() - g->t_arrival);
}

static void on_event(srv_gen *g, srv_choice *c, const srp_token_event *ev) {
    if (ev->is_prompt) {
        srv_prompt *p = &g->prompts[c->prompt_index];
        if (!p->lp) p->lp = calloc((size_t)(p->n > 1 ? p->n - 1 : 1), sizeof *p->lp);
        if (p->lp && p->n_lp < p->n - 1) p->lp[p->n_lp++] = *ev;
        return;
    }
    srv_metrics *m = &g->srv->metrics;
    if (c->n_ids == 0)
        srv_metrics_observe(m, &m->ttft, ev->time - g->t_arrival);
    else
        srv_metrics_observe(m, &m->itl, ev->time - c->t_last);
    c->t_last = ev->time;
    if (c->stopped_by_string) return;
    if (choice_grow(c)) {
        g->failed = 1;
        return;
    }
    c->ids[c->n_ids++] = ev->token;
    if (is_eos(g, ev->token)) return; /* the end, not text */
    if (g->opts.logprobs >= 0) c->lps[c->n_lps++] = (srv_tok_lp){ *ev, c->len };
    if (!c->detok) return;
    const char *s;
    size_t n;
    if (srp_detok_push(c->detok, ev->token, &s, &n, NULL)) return;
    add_text(g, c, s, n, 0);
}

static void emit_chunks(srv_gen *g, int final) {
    g->api->chunks(g, final);
}

int srv_gen_poll(srv_gen *g) {
    int changed = 0;
    srp_token_event ev[32];
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        if (c->done) continue;
        srp_request_status st;
        int k;
        do {
            srp_request_take(c->req, ev, 32, &k, &st);
            for (int j = 0; j < k; j++) {
                on_event(g, c, &ev[j]);
                if (g->opts.stream) emit_chunks(g, 0); /* a chunk per token, not per wake-up */
            }
            changed |= k > 0;
        } while (k == 32);
        if (st.finish != SRP_FINISH_NONE) {
            finish_choice(g, c, &st);
            changed = 1;
        } else {
            c->n_generated = st.n_generated;
        }
    }
    if (changed && g->opts.stream) emit_chunks(g, srv_gen_done(g));
    return changed;
}
