/* libmicrohttpd: routing, request bodies, auth, error answers, and the suspend/resume dance
 * that lets a waiting or streaming request hold no thread.
 *
 * A connection waiting for tokens is suspended; the engine thread's notify (gen.c) resumes it.
 * A non-stream request is answered once every choice has finished; a stream's content reader
 * hands out SSE chunks as they come and suspends the connection while there are none. */
#include <arpa/inet.h>
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
    { "/tokenize", "POST", R_TOKENIZE, 1 },
    { "/detokenize", "POST", R_DETOKENIZE, 1 },
    { "/reset_prefix_cache", "POST", R_RESET_PREFIX_CACHE, 1 }, /* vLLM's */
};

typedef struct conn_ctx {
    srv_server *srv;
    struct MHD_Connection *mc;
    char *body;
    size_t len, cap;
    int too_large;
    srv_gen *gen;
} conn_ctx;

static enum MHD_Result respond(conn_ctx *c, int status, const char *ctype, char *body,
                               const char *hname, const char *hvalue) {
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
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

static int authorized(const srv_server *srv, struct MHD_Connection *mc) {
    if (!srv->cfg.api_key) return 1;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    const char *k = h + 7, *want = srv->cfg.api_key;
    size_t kl = strlen(k), wl = strlen(want);
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
        if (srv_gen_done(g) || has_output(g)) return 1;
        pthread_mutex_lock(&g->wmu);
        if (g->pending) {
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

/* libmicrohttpd does not watch a suspended connection, so a client that gave up on a plain
 * (non-stream) request would hold its slot until the end. Every wake-up peeks at the socket:
 * end of file means the client is gone. */
static int peer_closed(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static enum MHD_Result progress_plain(conn_ctx *c) {
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
        if (peer_closed(c->mc)) return MHD_CONTENT_READER_END_WITH_ERROR;
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
            srv_sse_done(g);
            g->stream_ended = 1;
        }
    }
}

static enum MHD_Result start_stream(conn_ctx *c) {
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, c, NULL);
    if (!r) return MHD_NO;
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
    srv_metrics_gauges g = { srv->cfg.model_name, atomic_load(&srv->state) == SRV_READY, 0, { 0 } };
    pthread_rwlock_rdlock(&srv->life);
    if (srv->sched) {
        srp_sched_get_stats(srv->sched, &g.stats);
        g.have_stats = 1;
    }
    pthread_rwlock_unlock(&srv->life);
    char *text = srv_metrics_render(&srv->metrics, &g);
    if (!text) return fail(c, 500, NULL, NULL, "out of memory");
    return respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, NULL, NULL);
}

/* Parses the JSON body: an object, in valid UTF-8, with nothing after it. */
static cJSON *parse_body(conn_ctx *c, srv_error *e) {
    if (c->len == 0) return srv_fail(e, 400, NULL, "the request body is empty; send JSON"), NULL;
    if (!srv_utf8_valid(c->body, c->len))
        return srv_fail(e, 400, NULL, "the request body is not valid UTF-8"), NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(c->body, c->len, &end, 0);
    if (!root) {
        size_t at = end && end >= c->body ? (size_t)(end - c->body) : 0;
        return srv_fail(e, 400, NULL, "malformed JSON near byte %zu", at), NULL;
    }
    while (end && (size_t)(end - c->body) < c->len && strchr(" \t\r\n", *end)) end++;
    if (end && (size_t)(end - c->body) < c->len) {
        cJSON_Delete(root);
        return srv_fail(e, 400, NULL, "malformed JSON: data after the object"), NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return srv_fail(e, 400, NULL, "the request body must be a JSON object"), NULL;
    }
    return root;
}

static enum MHD_Result serve_post(conn_ctx *c, route_id id) {
    srv_server *srv = c->srv;
    srv_error e = { 0 };
    if (c->too_large) {
        e.code = "request_too_large";
        srv_fail(&e, 413, NULL, "the request body is larger than %zu bytes",
                 srv->cfg.max_body_bytes);
        return respond_error(c, &e);
    }
    cJSON *root = parse_body(c, &e);
    if (!root) return respond_error(c, &e);
    /* the life lock keeps the scheduler alive from the state check through the submission */
    pthread_rwlock_rdlock(&srv->life);
    int state = atomic_load(&srv->state);
    int rc = -1;
    char *body = NULL;
    if (state != SRV_READY) {
        srv_fail(&e, 503, NULL,
                 state == SRV_LOADING ? "the model is still loading"
                                      : "the server is shutting down");
    } else if (id == R_COMPLETIONS) {
        rc = srv_handle_completions(srv, root, &c->gen, &e);
    } else if (id == R_CHAT) {
        rc = srv_handle_chat(srv, root, &c->gen, &e);
    } else if (id == R_TOKENIZE) {
        rc = srv_handle_tokenize(srv, root, &body, &e);
    } else {
        rc = srv_handle_detokenize(srv, root, &body, &e);
    }
    pthread_rwlock_unlock(&srv->life);
    cJSON_Delete(root);
    if (rc) return respond_error(c, &e);
    if (body) return respond_json(c, 200, body);
    c->gen->mc = c->mc; /* read by the engine's notify only once the connection is suspended */
    if (c->gen->opts.stream) return start_stream(c);
    return progress_plain(c);
}

static enum MHD_Result dispatch(conn_ctx *c, const char *url, const char *method) {
    srv_server *srv = c->srv;
    int found = -1, path_known = 0;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path)) continue;
        path_known = 1;
        snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", allow[0] ? ", " : "",
                 routes[i].method);
        if (!strcmp(method, routes[i].method)) found = (int)i;
    }
    if (!path_known) {
        char msg[300];
        snprintf(msg, sizeof msg, "no route %.200s", url);
        return fail(c, 404, "not_found", NULL, msg);
    }
    if (found < 0) {
        srv_error e = { 0 };
        e.code = "method_not_allowed";
        srv_fail(&e, 405, NULL, "%.20s is not allowed on %.200s (allowed: %s)", method, url, allow);
        return respond(c, 405, "application/json", srv_error_body(&e), "Allow", allow);
    }
    if (routes[found].auth && !authorized(srv, c->mc))
        return fail(c, 401, "invalid_api_key", NULL,
                    "a valid API key is required (Authorization: Bearer KEY)");
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
        return serve_post(c, routes[found].id);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    (void)version;
    srv_server *srv = cls;
    conn_ctx *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->srv = srv;
        c->mc = mc;
        *con_cls = c;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (c->too_large || c->len + n > srv->cfg.max_body_bytes) {
            c->too_large = 1; /* keep reading, answer 413 at the end */
            free(c->body);
            c->body = NULL;
            c->len = c->cap = 0;
            return MHD_YES;
        }
        if (c->len + n + 1 > c->cap) {
            size_t cap = c->cap ? c->cap : 4096;
            while (cap < c->len + n + 1) cap *= 2;
            char *nb = realloc(c->body, cap);
            if (!nb) return MHD_NO;
            c->body = nb;
            c->cap = cap;
        }
        memcpy(c->body + c->len, upload_data, n);
        c->len += n;
        c->body[c->len] = 0;
        return MHD_YES;
    }
    if (c->gen) {                           /* resumed */
        if (peer_closed(mc)) return MHD_NO; /* closing cancels the requests (on_completed) */
        return progress_plain(c);
    }
    return dispatch(c, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)mc;
    (void)toe;
    conn_ctx *c = *con_cls;
    if (!c) return;
    srv_gen_free(c->gen); /* a client gone mid-stream cancels its requests here */
    free(c->body);
    free(c);
    *con_cls = NULL;
}

int srv_http_start(srv_server *srv, char *err, size_t errlen) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    const struct sockaddr *addr;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
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
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->cfg.port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)srv->cfg.http_threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16384,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
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
    if (!srv->daemon) return;
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
}
