/* What the OpenAI endpoints share: the error body, length checks against the context, the
 * response base object, token-id arrays, the end of a streamed choice chunk, and usage. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

int srv_fail(srv_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    if (!e->type)
        e->type = status == 401   ? "authentication_error"
                  : status == 404 ? "not_found_error"
                  : status == 429 ? "rate_limit_error"
                  : status == 503 ? "service_unavailable_error"
                  : status >= 500 ? "server_error"
                                  : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

char *srv_error_body(const srv_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->msg);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(err, "param", e->param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

int srv_check_length(const srv_server *srv, const srv_prompt *p, int n, srv_gen_opts *o,
                     int default_max, srv_error *e) {
    const int L = srv->cfg.max_model_len;
    int room = L;
    for (int i = 0; i < n; i++) {
        if (p[i].n >= L)
            return srv_fail(e, 400, "prompt",
                            "This model's maximum context length is %d tokens, but the prompt "
                            "has %d tokens",
                            L, p[i].n);
        if (o->max_tokens >= 0 && (long long)p[i].n + o->max_tokens > L)
            return srv_fail(e, 400, "max_tokens",
                            "This model's maximum context length is %d tokens. However, you "
                            "requested %lld tokens (%d in the prompt, %d for the completion)",
                            L, (long long)p[i].n + o->max_tokens, p[i].n, o->max_tokens);
        if (L - p[i].n < room) room = L - p[i].n;
    }
    if (o->max_tokens < 0)
        o->max_tokens = default_max >= 0 && default_max < room ? default_max : room;
    return 0;
}

cJSON *srv_response_base(const srv_gen *g, const char *object) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", g->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)g->created);
    cJSON_AddStringToObject(root, "model", g->srv->cfg.model_name);
    return root;
}

cJSON *srv_ids_json(const int32_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

void srv_stream_choice_end(srv_gen *g, srv_choice *c, cJSON *root, cJSON *ch, int finish_now) {
    if (g->opts.return_token_ids)
        cJSON_AddItemToObject(ch, "token_ids",
                              srv_ids_json(c->ids + c->streamed_ids, c->n_ids - c->streamed_ids));
    c->streamed_ids = c->n_ids;
    c->role_sent = 1;
    c->streamed = c->released;
    c->streamed_lps = c->n_lps;
    if (finish_now) {
        cJSON_AddStringToObject(ch, "finish_reason", c->finish_reason);
        c->chunk_finish_sent = 1;
    } else {
        cJSON_AddNullToObject(ch, "finish_reason");
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "choices"), ch);
    if (g->opts.include_usage) cJSON_AddNullToObject(root, "usage");
    srv_sse_json(g, root);
}

/* Prompts count once whatever n is, so their cached tokens are those of each prompt's first
 * choice (the n - 1 others usually start from its snapshot). */
cJSON *srv_usage_json(const srv_gen *g) {
    long prompt = 0, completion = 0, cached = 0;
    for (int i = 0; i < g->n_prompts; i++) {
        prompt += g->prompts[i].n;
        cached += g->choices[i * g->opts.n].n_cached;
    }
    for (int i = 0; i < g->n_choices; i++) completion += g->choices[i].n_generated;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + completion));
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"), "cached_tokens",
                            (double)cached);
    return u;
}

void srv_usage_chunk(srv_gen *g) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", g->id);
    cJSON_AddStringToObject(root, "object", g->api->chunk_object);
    cJSON_AddNumberToObject(root, "created", (double)g->created);
    cJSON_AddStringToObject(root, "model", g->srv->cfg.model_name);
    cJSON_AddArrayToObject(root, "choices");
    cJSON_AddItemToObject(root, "usage", srv_usage_json(g));
    srv_sse_json(g, root);
}
