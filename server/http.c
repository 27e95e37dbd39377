/* libmicrohttpd: routing, request bodies, auth, error answers, and the suspend/resume dance
 * that lets a waiting or streaming request hold no thread.
 *
 * What can be refused cheaply is refused when the headers arrive, before any body byte is
 * read: a malformed path, an unknown route or method, a missing key, a body announced larger
 * than the limit or framed ambiguously, and (at the connection cap) everything but /health and
 * /metrics. A body is parsed, rendered and tokenized by the request workers (workers.c) while
 * its connection is suspended, so no HTTP thread ever waits on that work.
 *
 * A connection waiting for tokens is suspended; the engine thread's notify (gen.c) resumes it.
 * A non-stream request is answered once every choice has finished; a stream's content reader
 * hands out SSE chunks as they come and suspends the connection while there are none. */
#include <arpa/inet.h>
#include <strings.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <sys/socket.h>

#include "server.h"

typedef enum {
    R_NONE,
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_COMPLETIONS,
    R_CHAT,
    R_RESPONSES,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_RESET_PREFIX_CACHE,
} route_id;

static const struct {
    const char *path;
    const char *method;
    route_id id;
    int auth;
} routes[] = {
    { "/health", "GET", R_HEALTH, 0 },
    { "/metrics", "GET", R_METRICS, 0 },
    { "/v1/models", "GET", R_MODELS, 1 },
    { "/v1/completions", "POST", R_COMPLETIONS, 1 },
    { "/v1/chat/completions", "POST", R_CHAT, 1 },
    { "/v1/responses", "POST", R_RESPONSES, 1 },
    { "/tokenize", "POST", R_TOKENIZE, 1 },
    { "/detokenize", "POST", R_DETOKENIZE, 1 },
    { "/reset_prefix_cache", "POST", R_RESET_PREFIX_CACHE, 1 }, /* vLLM's */
};

/* A request's place in its life: headers checked, body arriving, with the workers, done
 * there (results to send), handed to the connection. */
typedef enum { JOB_NONE, JOB_QUEUED, JOB_DONE, JOB_TAKEN } job_state;

#define R_MODEL_INDEX (-2) /* GET /v1/models/{id}: no entry in routes[] */

typedef struct conn_ctx {
    srv_server *srv;
    struct MHD_Connection *mc;
    char request_id[80]; /* x-request-id: the client's, or one made here */
    const char *origin;  /* the Origin CORS lets through, or NULL */
    srv_peer peer;
    int route; /* index into routes[] */
    char *body;
    size_t len, cap, discarded;
    int too_large, body_expected;
    int refused; /* refused at the headers: the body is dropped, then refusal is sent */
    srv_error refusal;
    char allow[64];
    pthread_mutex_t jmu; /* job and the suspension it holds */
    job_state job;
    srv_error job_err;
    char *job_body;
    srv_gen *gen;
} conn_ctx;

/* A client's x-request-id is echoed when it is a sane token (printable, no spaces, at most 64
 * bytes); otherwise, or without one, serpent makes one. */
static void set_request_id(conn_ctx *c) {
    const char *h = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = h ? strlen(h) : 0;
    int ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) ok = h[i] > 0x20 && h[i] < 0x7f;
    if (ok) {
        memcpy(c->request_id, h, n + 1);
        return;
    }
    static atomic_ulong counter;
    snprintf(c->request_id, sizeof c->request_id, "srp-%lx-%lx", (unsigned long)c->srv->created,
             (unsigned long)atomic_fetch_add(&counter, 1));
}

/* The Origin to answer with Access-Control-Allow-Origin: "*" when any origin may, the
 * request's own when it is listed, NULL otherwise (or without an Origin header). */
static const char *allowed_origin(const srv_server *srv, const char *origin) {
    if (!origin) return NULL;
    if (srv->cfg.any_origin) return "*";
    for (int i = 0; i < srv->cfg.n_origins; i++)
        if (!strcmp(srv->cfg.origins[i], origin)) return origin;
    return NULL;
}

static void add_common_headers(conn_ctx *c, struct MHD_Response *r) {
    MHD_add_response_header(r, "x-request-id", c->request_id);
    if (c->origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", c->origin);
        MHD_add_response_header(r, "Access-Control-Expose-Headers", "x-request-id");
        if (strcmp(c->origin, "*")) MHD_add_response_header(r, "Vary", "Origin");
    }
}

static enum MHD_Result respond(conn_ctx *c, int status, const char *ctype, char *body,
                               const char *hname, const char *hvalue) {
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    add_common_headers(c, r);
    if (ctype) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname) MHD_add_response_header(r, hname, hvalue);
    srv_metrics_count_status(&c->srv->metrics, status);
    enum MHD_Result rc = MHD_queue_response(c->mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result respond_json(conn_ctx *c, int status, char *body) {
    if (!body) {
        srv_error e = { 0 };
        srv_fail(&e, 500, NULL, "out of memory");
        return respond(c, 500, "application/json", srv_error_body(&e), NULL, NULL);
    }
    return respond(c, status, "application/json", body, NULL, NULL);
}

static enum MHD_Result respond_error(conn_ctx *c, const srv_error *e) {
    const char *hname = NULL, *hvalue = NULL;
    if (e->status == 429 || e->status == 503) hname = "Retry-After", hvalue = "1";
    if (e->status == 401) hname = "WWW-Authenticate", hvalue = "Bearer";
    return respond(c, e->status, "application/json", srv_error_body(e), hname, hvalue);
}

static enum MHD_Result fail(conn_ctx *c, int status, const char *code, const char *param,
                            const char *msg) {
    srv_error e = { 0 };
    e.code = code;
    srv_fail(&e, status, param, "%s", msg);
    return respond_error(c, &e);
}

/* "Authorization: Bearer KEY": the scheme in any case, the key without the whitespace around
 * it (RFC 9110 5.5), compared in constant time. */
static int authorized(const srv_server *srv, struct MHD_Connection *mc) {
    if (!srv->cfg.api_key) return 1;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return 0;
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) || (h[6] != ' ' && h[6] != '\t')) return 0;
    const char *k = h + 6, *want = srv->cfg.api_key;
    while (*k == ' ' || *k == '\t') k++;
    size_t kl = strlen(k), wl = strlen(want);
    while (kl && (k[kl - 1] == ' ' || k[kl - 1] == '\t')) kl--;
    unsigned diff = (unsigned)(kl ^ wl);
    for (size_t i = 0; i < kl; i++) diff |= (unsigned)(k[i] ^ want[i % (wl ? wl : 1)]);
    return diff == 0;
}

/* --- waiting without a thread ------------------------------------------------------------ */

/* Polls the generation until it has output or is done; otherwise suspends the connection
 * (returning 0) so that the engine's next event resumes it. */
static int poll_or_suspend(conn_ctx *c, int (*has_output)(const srv_gen *)) {
    srv_gen *g = c->gen;
    for (;;) {
        pthread_mutex_lock(&g->wmu);
        g->pending = 0;
        pthread_mutex_unlock(&g->wmu);
        srv_gen_poll(g);
        if (srv_gen_done(g) || has_output(g) || atomic_load(&g->want_ping)) return 1;
        pthread_mutex_lock(&g->wmu);
        if (g->pending || atomic_load(&g->want_ping)) {
            pthread_mutex_unlock(&g->wmu);
            continue;
        }
        g->suspended = 1;
        atomic_fetch_add(&c->srv->n_suspended, 1);
        MHD_suspend_connection(c->mc);
        pthread_mutex_unlock(&g->wmu);
        return 0;
    }
}

static int no_output(const srv_gen *g) {
    (void)g;
    return 0;
}

static int stream_output(const srv_gen *g) {
    return g->out_len > g->out_pos;
}

static enum MHD_Result finish_plain(conn_ctx *c) {
    srv_gen *g = c->gen;
    srv_error e = { 0 };
    char *body = NULL;
    if (g->failed) {
        const char *why = "the engine failed";
        for (int i = 0; i < g->n_choices; i++)
            if (g->choices[i].error[0]) why = g->choices[i].error;
        srv_fail(&e, 500, NULL, "%s", why);
    } else if (g->cancelled) {
        srv_fail(&e, 503, NULL, "the server is shutting down; the request was cancelled");
    } else {
        body = g->api->response(g);
    }
    srv_gen_free(g);
    c->gen = NULL;
    return body ? respond_json(c, 200, body) : respond_error(c, &e);
}

/* libmicrohttpd does not watch a suspended connection, so every wake-up asks whether the client
 * is still there: a reset means gone (closing cancels the requests, on_completed); an end of
 * file may be a half-close, which still gets its reply, and is probed once (gen.c). */
static enum MHD_Result progress_plain(conn_ctx *c) {
    if (!srv_gen_check_peer(c->gen, 1)) return MHD_NO;
    if (!poll_or_suspend(c, no_output)) return MHD_YES;
    return finish_plain(c);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn_ctx *c = cls;
    srv_gen *g = c->gen;
    if (!g) return MHD_CONTENT_READER_END_WITH_ERROR;
    for (;;) {
        if (g->out_pos < g->out_len) {
            size_t n = g->out_len - g->out_pos;
            if (n > max) n = max;
            memcpy(buf, g->out + g->out_pos, n);
            g->out_pos += n;
            if (g->out_pos == g->out_len) g->out_pos = g->out_len = 0;
            return (ssize_t)n;
        }
        if (g->stream_ended) return MHD_CONTENT_READER_END_OF_STREAM;
        /* tokens without text write nothing, so a write would not find the client gone */
        if (!srv_gen_check_peer(g, 1)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (atomic_exchange(&g->want_ping, 0)) {
            srv_out_append(g, ": ping\n\n", 8); /* an SSE comment: clients skip it */
            continue;
        }
        if (!poll_or_suspend(c, stream_output)) return 0;
        if (srv_gen_done(g) && !stream_output(g)) {
            if (g->failed || g->cancelled) {
                srv_error e = { 0 };
                srv_fail(&e, g->failed ? 500 : 503, NULL, "%s",
                         g->failed ? "the engine failed" : "the server is shutting down");
                char *body = srv_error_body(&e);
                if (body) {
                    srv_out_append(g, "data: ", 6);
                    srv_out_append(g, body, strlen(body));
                    srv_out_append(g, "\n\n", 2);
                    free(body);
                }
            }
            if (!g->api->no_done) srv_sse_done(g);
            g->stream_ended = 1;
        }
    }
}

static enum MHD_Result start_stream(conn_ctx *c) {
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, c, NULL);
    if (!r) return MHD_NO;
    add_common_headers(c, r);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    srv_metrics_count_status(&c->srv->metrics, 200);
    enum MHD_Result rc = MHD_queue_response(c->mc, 200, r);
    MHD_destroy_response(r);
    return rc;
}

/* --- routes ------------------------------------------------------------------------------ */

static enum MHD_Result serve_metrics(conn_ctx *c) {
    srv_server *srv = c->srv;
    srv_metrics_gauges g = {
        srv->cfg.model_name, atomic_load(&srv->state) == SRV_READY, 0, { 0 }, 0, 0, 0
    };
    pthread_rwlock_rdlock(&srv->life);
    if (srv->sched) {
        srp_sched_get_stats(srv->sched, &g.stats);
        g.have_stats = 1;
    }
    pthread_rwlock_unlock(&srv->life);
    srv_conns_stats(&srv->conns, &g.conns_open, &g.conns_cap, &g.conns_evicted);
    char *text = srv_metrics_render(&srv->metrics, &g);
    if (!text) return fail(c, 500, NULL, NULL, "out of memory");
    return respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, NULL, NULL);
}

/* A worker's job: the request body to a generation (or a body, or an error), then the
 * connection is resumed to send it. */
static void run_post(void *arg) {
    conn_ctx *c = arg;
    srv_server *srv = c->srv;
    srv_error e = { 0 };
    char *body = NULL;
    srv_gen *gen = NULL;
    /* a generous bound: every prompt of a full batch as long as the context */
    size_t max_values = (size_t)srv->cfg.max_model_len * 8 + (1u << 20);
    cJSON *root = srv_parse_request(c->body, c->len, max_values, &e);
    free(c->body); /* parsed: the bytes are not needed any more */
    c->body = NULL;
    c->len = c->cap = 0;
    if (root) {
        /* the life lock keeps the scheduler alive from the state check through the
         * submission */
        pthread_rwlock_rdlock(&srv->life);
        int state = atomic_load(&srv->state);
        route_id id = routes[c->route].id;
        if (state != SRV_READY)
            srv_fail(&e, 503, NULL,
                     state == SRV_LOADING ? "the model is still loading"
                                          : "the server is shutting down");
        else if (id == R_COMPLETIONS)
            srv_handle_completions(srv, root, &c->peer, &gen, &e);
        else if (id == R_CHAT)
            srv_handle_chat(srv, root, &c->peer, &gen, &e);
        else if (id == R_RESPONSES)
            srv_handle_responses(srv, root, &c->peer, &gen, &e);
        else if (id == R_TOKENIZE)
            srv_handle_tokenize(srv, root, &body, &e);
        else
            srv_handle_detokenize(srv, root, &body, &e);
        pthread_rwlock_unlock(&srv->life);
        cJSON_Delete(root);
    }
    if (gen) {
        pthread_mutex_lock(&gen->wmu);
        gen->mc = c->mc; /* read by the engine's notify only once the connection is suspended */
        pthread_mutex_unlock(&gen->wmu);
        srv_gen_check_peer(gen, 0); /* a client that left at once is probed now */
    }
    pthread_mutex_lock(&c->jmu);
    c->job_err = e;
    c->job_body = body;
    c->gen = gen;
    c->job = JOB_DONE;
    atomic_fetch_sub(&srv->n_suspended, 1);
    struct MHD_Connection *mc = c->mc;
    pthread_mutex_unlock(&c->jmu);
    /* last: once resumed, the connection thread may finish the request and free c (and jmu) */
    MHD_resume_connection(mc);
}

static enum MHD_Result submit_post(conn_ctx *c) {
    srv_server *srv = c->srv;
    if (c->too_large) {
        srv_error e = { 0 };
        e.code = "request_too_large";
        srv_fail(&e, 413, NULL, "the request body is larger than %zu bytes",
                 srv->cfg.max_body_bytes);
        return respond_error(c, &e);
    }
    pthread_mutex_lock(&c->jmu);
    if (srv_workers_submit(srv->workers, run_post, c)) {
        pthread_mutex_unlock(&c->jmu);
        srv_error e = { 0 };
        srv_fail(&e, 503, NULL, "the server is busy reading requests; retry later");
        return respond_error(c, &e);
    }
    c->job = JOB_QUEUED;
    atomic_fetch_add(&srv->n_suspended, 1);
    MHD_suspend_connection(c->mc);
    pthread_mutex_unlock(&c->jmu);
    return MHD_YES;
}

/* The worker is done: send what it made. */
static enum MHD_Result take_post(conn_ctx *c) {
    c->job = JOB_TAKEN;
    if (c->job_err.status) return respond_error(c, &c->job_err);
    if (c->job_body) {
        char *b = c->job_body;
        c->job_body = NULL;
        return respond_json(c, 200, b);
    }
    if (!c->gen) return fail(c, 500, NULL, NULL, "the request made nothing");
    pthread_mutex_lock(&c->gen->wmu);
    c->gen->job_phase = 0;
    pthread_mutex_unlock(&c->gen->wmu);
    if (c->gen->opts.stream) return start_stream(c);
    return progress_plain(c);
}

/* A CORS preflight (or a plain OPTIONS): 204 with what the route allows. */
static enum MHD_Result serve_options(conn_ctx *c, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    add_common_headers(c, r);
    MHD_add_response_header(r, "Allow", allow);
    if (c->origin) {
        const char *h =
            MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", allow);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", h && *h ? h : "*");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    srv_metrics_count_status(&c->srv->metrics, 204);
    enum MHD_Result rc = MHD_queue_response(c->mc, 204, r);
    MHD_destroy_response(r);
    return rc;
}

/* The framing headers: one Content-Length (repeats must agree), not together with
 * Transfer-Encoding; a proxy that reads them otherwise would see another request
 * (request smuggling). */
typedef struct framing {
    int n_length, conflict, chunked;
    unsigned long long length;
} framing;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
    (void)kind;
    framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) f->chunked = 1;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) return MHD_YES;
    char *end = NULL;
    errno = 0;
    unsigned long long v = value && *value >= '0' && *value <= '9' ? strtoull(value, &end, 10) : 0;
    if (!end || *end || errno) f->conflict = 1;
    if (f->n_length++ && v != f->length) f->conflict = 1;
    f->length = v;
    return MHD_YES;
}

static int is_probe_route(route_id id) {
    return id == R_HEALTH || id == R_METRICS;
}

/* A refusal decided from the headers. Nothing of the body is kept either way. With no body,
 * a body announced past twice the limit, or "Expect: 100-continue", it goes out at once (and
 * libmicrohttpd closes the connection without reading the body); a body of allowed size is read
 * and dropped first, so that the client, still sending, reads the answer instead of a reset. */
static enum MHD_Result refuse(conn_ctx *c, const srv_error *e, const char *allow) {
    if (allow) snprintf(c->allow, sizeof c->allow, "%s", allow);
    if (!c->body_expected) {
        if (allow)
            return respond(c, e->status, "application/json", srv_error_body(e), "Allow", allow);
        return respond_error(c, e);
    }
    c->refusal = *e;
    c->refused = 1;
    return MHD_YES;
}

static enum MHD_Result refuse_msg(conn_ctx *c, int status, const char *code, const char *msg) {
    srv_error e = { 0 };
    e.code = code;
    srv_fail(&e, status, NULL, "%s", msg);
    return refuse(c, &e, NULL);
}

/* Everything decided from the request line and the headers, before any body byte. */
static enum MHD_Result on_headers(conn_ctx *c, const char *url, const char *method) {
    srv_server *srv = c->srv;
    framing f = { 0 };
    MHD_get_connection_values(c->mc, MHD_HEADER_KIND, framing_header, &f);
    if (f.conflict || (f.n_length && f.chunked)) /* no framing to read a body by: at once */
        return fail(c, 400, "invalid_framing", NULL,
                    "conflicting Content-Length headers, or Content-Length with "
                    "Transfer-Encoding");
    const char *expect =
        MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    c->body_expected = (f.chunked || (f.n_length && f.length > 0)) && !expect &&
                       (!f.n_length || f.length <= 2 * (unsigned long long)srv->cfg.max_body_bytes);
    if (url[0] != '/') /* strict_unescape refused the path */
        return refuse_msg(c, 400, "invalid_path",
                          "the path is not valid: a malformed or forbidden escape (%00, an "
                          "encoded / or \\)");
    int found = -1, path_known = 0;
    char allow[64] = "";
    static const char model_prefix[] = "/v1/models/";
    const char *model_id = NULL;
    if (!strncmp(url, model_prefix, sizeof model_prefix - 1) && url[sizeof model_prefix - 1]) {
        model_id = url + sizeof model_prefix - 1;
        path_known = 1;
        snprintf(allow, sizeof allow, "GET");
        if (!strcmp(method, "GET")) found = R_MODEL_INDEX;
    }
    for (size_t i = 0; !model_id && i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path)) continue;
        path_known = 1;
        snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", allow[0] ? ", " : "",
                 routes[i].method);
        if (!strcmp(method, routes[i].method)) found = (int)i;
    }
    if (!path_known) {
        char msg[300];
        snprintf(msg, sizeof msg, "no route %.200s", url);
        return refuse_msg(c, 404, "not_found", msg);
    }
    if (!strcmp(method, "OPTIONS")) {
        snprintf(allow + strlen(allow), sizeof allow - strlen(allow), ", OPTIONS");
        return serve_options(c, allow);
    }
    if (found == -1) {
        srv_error e = { 0 };
        e.code = "method_not_allowed";
        srv_fail(&e, 405, NULL, "%.20s is not allowed on %.200s (allowed: %s)", method, url, allow);
        return refuse(c, &e, allow);
    }
    c->route = found;
    if (f.n_length && f.length > srv->cfg.max_body_bytes) {
        srv_error e = { 0 };
        e.code = "request_too_large";
        srv_fail(&e, 413, NULL, "the request body is larger than %zu bytes",
                 srv->cfg.max_body_bytes);
        return refuse(c, &e, NULL);
    }
    if ((model_id || routes[found].auth) && !authorized(srv, c->mc))
        return refuse_msg(c, 401, "invalid_api_key",
                          "a valid API key is required (Authorization: Bearer KEY)");
    int open = srv_conns_set_busy(&srv->conns, c->mc, 1);
    if (open > srv->cfg.max_connections && !(found >= 0 && is_probe_route(routes[found].id)))
        return refuse_msg(c, 503, NULL, "too many connections open; retry later");
    if (model_id) {
        srv_error e = { 0 };
        char *body = NULL;
        if (srv_model_body(srv, model_id, &body, &e)) return refuse(c, &e, NULL);
        return respond_json(c, 200, body);
    }
    int state = atomic_load(&srv->state);
    switch (routes[found].id) {
    case R_HEALTH:
        if (state == SRV_READY) return respond_json(c, 200, strdup("{\"status\":\"ok\"}"));
        return fail(c, 503, state == SRV_LOADING ? "loading" : "draining", NULL,
                    state == SRV_LOADING ? "the model is loading" : "the server is shutting down");
    case R_METRICS:
        return serve_metrics(c);
    case R_MODELS:
        return respond_json(c, 200, srv_models_body(srv));
    case R_RESET_PREFIX_CACHE: {
        pthread_rwlock_rdlock(&srv->life);
        int ready = atomic_load(&srv->state) == SRV_READY && srv->sched;
        if (ready) srp_sched_reset_prefix_cache(srv->sched);
        pthread_rwlock_unlock(&srv->life);
        if (!ready) return fail(c, 503, "unavailable", NULL, "the model is not serving");
        return respond_json(c, 200, strdup("{\"status\":\"ok\"}"));
    }
    default:
        if (f.n_length && f.length) {
            c->body = malloc((size_t)f.length + 1); /* announced and within the limit */
            if (!c->body) return fail(c, 500, NULL, NULL, "out of memory");
            c->cap = (size_t)f.length + 1;
        }
        return MHD_YES; /* the body, then the last call submits it */
    }
}

static enum MHD_Result on_body(conn_ctx *c, const char *data, size_t n) {
    const size_t max = c->srv->cfg.max_body_bytes;
    if (c->refused) { /* dropped unread, up to a bound */
        c->discarded += n;
        return c->discarded > 2 * max ? MHD_NO : MHD_YES;
    }
    if (c->too_large || c->len + n > max) {
        /* chunked past the limit: drop what comes (answering 413 at the end), up to a bound */
        c->too_large = 1;
        free(c->body);
        c->body = NULL;
        c->len = c->cap = 0;
        c->discarded += n;
        return c->discarded > max ? MHD_NO : MHD_YES;
    }
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + n + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *nb = realloc(c->body, cap);
        if (!nb) return MHD_NO;
        c->body = nb;
        c->cap = cap;
    }
    memcpy(c->body + c->len, data, n);
    c->len += n;
    c->body[c->len] = 0;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    srv_server *srv = cls;
    conn_ctx *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->srv = srv;
        c->mc = mc;
        pthread_mutex_init(&c->jmu, NULL);
        set_request_id(c);
        c->origin = allowed_origin(
            srv, MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->peer.fd = ci ? ci->connect_fd : -1;
        c->peer.http11 = version && !strcmp(version, MHD_HTTP_VERSION_1_1);
        *con_cls = c;
        return on_headers(c, url, method);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return on_body(c, upload_data, n);
    }
    if (c->refused) {
        c->refused = 0;
        if (c->allow[0])
            return respond(c, c->refusal.status, "application/json", srv_error_body(&c->refusal),
                           "Allow", c->allow);
        return respond_error(c, &c->refusal);
    }
    switch (c->job) {
    case JOB_NONE:
        /* the whole request is here: the long timeout from now on (suspended connections
         * never time out; a stream writes) */
        MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, 600u);
        return submit_post(c);
    case JOB_DONE:
        return take_post(c);
    case JOB_TAKEN:
        if (c->gen) return progress_plain(c); /* resumed by the engine */
        return MHD_YES;
    default:
        return MHD_YES; /* not called while suspended */
    }
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    srv_server *srv = cls;
    (void)toe;
    conn_ctx *c = *con_cls;
    if (!c) return;
    srv_gen_free(c->gen); /* a client gone mid-stream cancels its requests here */
    free(c->body);
    free(c->job_body);
    pthread_mutex_destroy(&c->jmu);
    free(c);
    *con_cls = NULL;
    /* between keep-alive requests the connection is idle: the short timeout, evictable */
    srv_conns_set_busy(&srv->conns, mc, 0);
    MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned)srv->cfg.request_timeout);
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decoding that refuses what would let a path mean something else than it reads: a
 * malformed escape, %00 (which would cut the path short) and encoded / or \. A refused path
 * becomes "\x01", which on_headers answers with 400. */
static size_t strict_unescape(void *cls, struct MHD_Connection *mc, char *s) {
    (void)cls;
    (void)mc;
    char *w = s;
    for (const char *r = s; *r;) {
        if (*r != '%') {
            *w++ = *r++;
            continue;
        }
        int hi = hexval(r[1]), lo = hi >= 0 ? hexval(r[2]) : -1;
        int v = hi * 16 + lo;
        if (hi < 0 || lo < 0 || v == 0 || v == '/' || v == '\\') {
            s[0] = '\x01';
            s[1] = 0;
            return 1;
        }
        *w++ = (char)v;
        r += 3;
    }
    *w = 0;
    return (size_t)(w - s);
}

int srv_http_start(srv_server *srv, char *err, size_t errlen) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    const struct sockaddr *addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    srv_conns_init(&srv->conns, srv->cfg.max_connections);
    if (inet_pton(AF_INET, srv->cfg.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)srv->cfg.port);
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, srv->cfg.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)srv->cfg.port);
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "--host %s is not an IPv4 or IPv6 address", srv->cfg.host);
        return -1;
    }
    if (srv_workers_start(srv->cfg.tokenizer_threads, 1024, &srv->workers)) {
        snprintf(err, errlen, "cannot start the request workers");
        return -1;
    }
    /* libmicrohttpd's own limit sits above the cap: the connections past the cap are the ones
     * that evict idle ones, or get 503, or ask for /health */
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->cfg.port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
        srv_conns_notify, &srv->conns, MHD_OPTION_UNESCAPE_CALLBACK, strict_unescape, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->cfg.http_threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)srv->cfg.max_connections + SRV_CONNECTION_RESERVE,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)srv->cfg.max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->cfg.request_timeout, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s port %d (in use, or not allowed?)",
                 srv->cfg.host, srv->cfg.port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info) srv->cfg.port = info->port;
    return 0;
}

void srv_http_stop(srv_server *srv) {
    if (srv->daemon) {
        MHD_stop_daemon(srv->daemon);
        srv->daemon = NULL;
    }
    srv_workers_stop(srv->workers);
    srv->workers = NULL;
    srv_conns_destroy(&srv->conns);
}
