/* One HTTP request's generation: n choices per prompt, each an engine request whose token
 * events become text here (incremental detokenization, stop strings held back until they can
 * no longer match, logprobs), and the latency metrics they imply. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <poll.h>
#include <sys/socket.h>

#include "server.h"

static char *token_id_text(int32_t id, size_t *out_len) {
    char buf[32];
    *out_len = (size_t)snprintf(buf, sizeof buf, "token_id:%d", id);
    return strdup(buf);
}

char *srv_gen_token_text(const srv_gen *g, int32_t id, size_t *out_len) {
    return g->opts.tokens_as_ids ? token_id_text(id, out_len) : srv_token_text(g->srv, id, out_len);
}

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
    return token_id_text(id, out_len);
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

int srv_peer_state(int fd) {
    if (fd < 0) return SRV_PEER_OK;
    /* after the peer's FIN, recv reports the end of file even once a reset has come: the
     * reset shows as POLLHUP (both directions shut) */
    struct pollfd p = { fd, POLLIN | POLLRDHUP, 0 };
    if (poll(&p, 1, 0) <= 0) return SRV_PEER_OK;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return SRV_PEER_GONE;
    if (p.revents & POLLRDHUP) return SRV_PEER_EOF;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return SRV_PEER_OK;
    if (n == 0) return SRV_PEER_EOF;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? SRV_PEER_OK : SRV_PEER_GONE;
}

#define SRV_PROBE_WAIT_MS 20

/* Sent on the socket directly, before anything else is: legal for an HTTP/1.1 client (which
 * must skip a 1xx it did not expect), and a gone client's system answers it with a reset. */
static void send_probe(srv_gen *g) {
    static const char probe[] = "HTTP/1.1 100 Continue\r\n\r\n";
    ssize_t n = send(g->peer.fd, probe, sizeof probe - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) atomic_store(&g->peer_gone, 1);
    /* a partial write of 25 bytes into an empty send buffer does not happen; were it to, the
     * reply would be garbled for a client that is already gone or half-closed */
}

int srv_gen_check_peer(srv_gen *g, int on_conn_thread) {
    if (atomic_load(&g->peer_gone)) return 0;
    int st = srv_peer_state(g->peer.fd);
    if (st == SRV_PEER_GONE) {
        atomic_store(&g->peer_gone, 1);
        return 0;
    }
    if (st != SRV_PEER_EOF) return 1;
    int sent = 0;
    pthread_mutex_lock(&g->wmu);
    if (!g->probed) {
        if (g->opts.stream && !g->job_phase) {
            /* headers are out: a comment in the stream is the probe, written by the
             * connection's own thread */
            g->probed = 1;
            atomic_store(&g->want_ping, 1);
            if (!on_conn_thread && g->suspended) {
                g->suspended = 0;
                atomic_fetch_sub(&g->srv->n_suspended, 1);
                MHD_resume_connection(g->mc);
            }
        } else if (!g->opts.stream || g->job_phase) {
            /* nothing written yet, and nobody else writes: the connection is suspended, or
             * this is its thread before the response is queued */
            if ((g->job_phase || g->suspended || on_conn_thread) && g->peer.http11) {
                g->probed = 1;
                send_probe(g);
                sent = 1;
            }
        }
    }
    pthread_mutex_unlock(&g->wmu);
    if (sent && !on_conn_thread) {
        /* the engine asks before it spends work: wait a moment for the verdict (a reset comes
         * back within a round trip; a half-closed client costs this wait once) */
        struct pollfd p = { g->peer.fd, 0, 0 }; /* only a hang-up or an error wakes it */
        if (poll(&p, 1, SRV_PROBE_WAIT_MS) > 0 && (p.revents & (POLLHUP | POLLERR)))
            atomic_store(&g->peer_gone, 1);
    }
    return !atomic_load(&g->peer_gone);
}

static int gen_alive(void *user) {
    return srv_gen_check_peer(user, 0);
}

void srv_gen_free(srv_gen *g) {
    if (!g) return;
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        srp_request_release(c->req); /* no notify after this */
        srp_detok_free(c->detok);
        if (c->split) srv_split_free(c->split);
        free(c->split);
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
    if (g->api->free_state) g->api->free_state(g);
    free(g->out);
    cJSON_Delete(g->echo);
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
                  srv_gen_opts *opts, const srv_peer *peer, srv_gen **out, srv_error *e) {
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
    g->peer = peer ? *peer : (srv_peer){ -1, 0 };
    g->job_phase = 1; /* until the connection takes it over (http.c) */
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
    /* the model's ends of sequence (unless ignore_eos) and the request's stop_token_ids */
    int32_t stop_ids[SRV_MAX_EOS + SRV_MAX_STOP_IDS];
    int n_stop = 0;
    if (!g->opts.ignore_eos)
        for (int i = 0; i < srv->n_eos; i++) stop_ids[n_stop++] = srv->eos_ids[i];
    for (int i = 0; i < g->opts.n_stop_ids; i++) stop_ids[n_stop++] = g->opts.stop_ids[i];
    /* replies split into reasoning, content and calls: chat's and the Responses API's. A reply
     * constrained by a grammar is all the grammar's: no reasoning precedes it (the grammar does
     * not allow a <think> block). */
    const srv_reasoning reasoning =
        g->opts.grammar ? SRV_REASONING_NONE : srv->cfg.reasoning_parser;
    const int split =
        api != &srv_api_completions && (g->opts.parse_tools || reasoning != SRV_REASONING_NONE);
    const srv_tool_parser *tools_by = g->opts.forced_tools  ? srv_tool_parser_json_list()
                                      : g->opts.parse_tools ? srv->cfg.tool_parser
                                                            : NULL;
    for (int p = 0; p < n_prompts; p++) {
        for (int j = 0; j < g->opts.n; j++) {
            srv_choice *c = &g->choices[p * g->opts.n + j];
            c->index = p * g->opts.n + j;
            c->prompt_index = p;
            c->stop_string = c->stop_token = -1;
            if (split && (c->split = calloc(1, sizeof *c->split))) {
                c->split->reasoning = reasoning;
                c->split->think_open = !g->opts.grammar && prompts[p].think_open;
                c->split->tools_by = tools_by;
                c->split->tools = g->opts.tools;
                c->split->first_call_only = g->opts.first_call_only;
            }
            if ((split && !c->split) ||
                (srv->tok &&
                 srp_detok_new(srv->tok, srv_decode_flags(&g->opts), &c->detok, NULL))) {
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
            rp.min_tokens = g->opts.min_tokens;
            rp.grammar = g->opts.grammar;
            rp.grammar_vocab = srv->vocab_bytes;
            rp.logprobs = g->opts.logprobs;
            rp.prompt_logprobs =
                g->opts.echo && g->opts.logprobs >= 0 && j == 0 ? g->opts.logprobs : -1;
            rp.notify = gen_notify;
            rp.alive = gen_alive;
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

/* Whether t ends the choice: the model's end of sequence (unless ignore_eos) or one of the
 * request's stop_token_ids (which vLLM reports as the stop_reason). */
static int is_stop_token(const srv_gen *g, srv_choice *c, int32_t t) {
    for (int i = 0; i < g->opts.n_stop_ids; i++)
        if (g->opts.stop_ids[i] == t) {
            c->stop_token = t;
            return 1;
        }
    if (g->opts.ignore_eos) return 0;
    for (int i = 0; i < g->srv->n_eos; i++)
        if (g->srv->eos_ids[i] == t) return 1;
    return 0;
}

/* New text of a choice: look for a stop string ending in it; release all but what could still
 * become one. Before min_tokens tokens no stop string counts (as vLLM), and everything is
 * released. */
static void add_text(srv_gen *g, srv_choice *c, const char *s, size_t n, int final) {
    if (c->stopped_by_string) return;
    const size_t old_len = c->len;
    if (n && srv_buf_append_utf8(&c->text, &c->len, &c->cap, s, n)) {
        snprintf(c->error, sizeof c->error, "out of memory");
        g->failed = 1;
        return;
    }
    const int gated = c->n_ids < g->opts.min_tokens, include = g->opts.include_stop_str;
    if (g->opts.n_stop && !gated && c->len > old_len) {
        size_t maxl = 0, sl = 0;
        for (int i = 0; i < g->opts.n_stop; i++)
            if (strlen(g->opts.stop[i]) > maxl) maxl = strlen(g->opts.stop[i]);
        size_t from = old_len >= maxl ? old_len - maxl + 1 : 0;
        if (!include && from < c->released) from = c->released; /* sent text stays sent */
        int which = -1;
        long at = srv_stop_match(c->text, c->len, from, old_len + 1, g->opts.stop, g->opts.n_stop,
                                 &sl, &which);
        if (at >= 0) {
            c->len = (size_t)at + (include ? sl : 0);
            c->text[c->len] = 0;
            c->released = c->len;
            c->stopped_by_string = 1;
            c->stop_string = which;
            c->finish_reason = "stop";
            /* usage counts the tokens up to the one that completed the stop string, whatever
             * the engine drew after it before the cancel landed */
            c->n_generated = c->n_ids;
            srp_request_cancel(c->req);
            return;
        }
    }
    size_t hold = final || gated || include
                      ? 0
                      : srv_stop_holdback(c->text, c->len, g->opts.stop, g->opts.n_stop);
    if (c->len - hold > c->released) c->released = c->len - hold;
}

int srv_choice_sendable_lps(const srv_choice *c) {
    int m = c->streamed_lps;
    while (m < c->n_lps) {
        size_t off = c->lps[m].offset;
        if (off < c->released || (c->done && (!c->stopped_by_string || off < c->len)))
            m++;
        else
            break;
    }
    return m;
}

cJSON *srv_stop_reason_json(const srv_gen *g, const srv_choice *c) {
    if (c->stop_string >= 0) return cJSON_CreateString(g->opts.stop[c->stop_string]);
    if (c->stop_token >= 0) return cJSON_CreateNumber(c->stop_token);
    return cJSON_CreateNull();
}

srv_split *srv_choice_split(srv_gen *g, srv_choice *c, int *err) {
    (void)g;
    if (!c->split) return NULL;
    if (srv_split_feed(c->split, c->text ? c->text : "", c->done ? c->len : c->released, c->done))
        *err = -1;
    return c->split;
}

static void finish_choice(srv_gen *g, srv_choice *c, const srp_request_status *st) {
    if (c->detok && !c->stopped_by_string) {
        const char *s;
        size_t n;
        if (!srp_detok_flush(c->detok, &s, &n, NULL)) add_text(g, c, s, n, 1);
    }
    add_text(g, c, "", 0, 1);
    if (!c->stopped_by_string) c->n_generated = st->n_generated;
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
    /* a stop token ends the choice; its text shows only with include_stop_str_in_output */
    if (is_stop_token(g, c, ev->token) && !g->opts.include_stop_str) return;
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
        } else if (!c->stopped_by_string) {
            c->n_generated = st.n_generated;
        }
    }
    if (changed && g->opts.stream) emit_chunks(g, srv_gen_done(g));
    return changed;
}
