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
                  : status == 403 ? "permission_error"
                  : status == 429 ? "rate_limit_error"
                  : status >= 500 ? "server_error"
                                  : "invalid_request_error"; /* 400, 404, 405, 413 */
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

char *srv_error_body(const srv_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    /* messages quote what the client sent (a path, a name), maybe cut mid-character: the body
     * is valid UTF-8 whatever they held */
    char *msg = NULL;
    size_t ml = 0, mc = 0;
    if (srv_buf_append_utf8(&msg, &ml, &mc, e->msg, strlen(e->msg))) msg = NULL;
    cJSON_AddStringToObject(err, "message", msg ? msg : "(out of memory)");
    free(msg);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    char *param = NULL;
    size_t pl = 0, pc = 0;
    if (e->param[0] && srv_buf_append_utf8(&param, &pl, &pc, e->param, strlen(e->param)))
        param = NULL;
    if (param)
        cJSON_AddStringToObject(err, "param", param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    free(param);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Turns every \u0000 escape of the body into \uFDD2 (the same length; a noncharacter a
 * request has no use for), so the parsed tree shows where the NULs were. Returns how many. */
static int mark_nul_escapes(char *s, size_t n) {
    int count = 0, in_string = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_string) {
            in_string = s[i] == '"';
            continue;
        }
        if (s[i] == '"') {
            in_string = 0;
        } else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && s[i + 2] == '0' && s[i + 3] == '0' &&
                s[i + 4] == '0' && s[i + 5] == '0') {
                memcpy(s + i + 2, "FDD2", 4);
                count++;
            }
            i++; /* the escaped character (\\ included) */
        }
    }
    return count;
}

/* Values in the JSON text (one more than the commas outside strings), counted before cJSON
 * builds a node of about 64 bytes for each. */
static size_t count_values(const char *s, size_t n) {
    size_t k = 1;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        if (in_string) {
            if (s[i] == '\\')
                i++;
            else if (s[i] == '"')
                in_string = 0;
        } else if (s[i] == '"') {
            in_string = 1;
        } else if (s[i] == ',') {
            k++;
        }
    }
    return k;
}

static int has_nul_mark(const char *s) {
    return s && strstr(s, "\xEF\xB7\x92") != NULL;
}

/* The path of the first string (or key) holding a marked NUL: "messages[0].content". */
static int find_nul(const cJSON *node, char *path, size_t cap) {
    size_t base = strlen(path);
    int i = 0;
    for (const cJSON *it = node->child; it; it = it->next, i++) {
        if (cJSON_IsObject(node))
            snprintf(path + base, cap - base, "%s%.40s", base ? "." : "", it->string);
        else
            snprintf(path + base, cap - base, "[%d]", i);
        if ((cJSON_IsObject(node) && has_nul_mark(it->string)) ||
            (cJSON_IsString(it) && has_nul_mark(it->valuestring)) || find_nul(it, path, cap))
            return 1;
        path[base] = 0;
    }
    return 0;
}

cJSON *srv_parse_request(char *body, size_t len, size_t max_values, srv_error *e) {
    if (len == 0 || !body)
        return srv_fail(e, 400, NULL, "the request body is empty; send JSON"), NULL;
    if (!srv_utf8_valid(body, len))
        return srv_fail(e, 400, NULL, "the request body is not valid UTF-8"), NULL;
    const char *nul = memchr(body, 0, len);
    if (nul)
        return srv_fail(e, 400, NULL, "malformed JSON: a NUL byte at byte %zu",
                        (size_t)(nul - body)),
               NULL;
    size_t values = count_values(body, len);
    if (values > max_values)
        return srv_fail(e, 400, NULL,
                        "the request holds %zu JSON values; at most %zu (no prompt can be "
                        "longer than the context)",
                        values, max_values),
               NULL;
    int nuls = mark_nul_escapes(body, len);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return srv_fail(e, 400, NULL, "malformed JSON near byte %zu", at), NULL;
    }
    while (end && (size_t)(end - body) < len && strchr(" \t\r\n", *end)) end++;
    if (end && (size_t)(end - body) < len) {
        cJSON_Delete(root);
        return srv_fail(e, 400, NULL, "malformed JSON: data after the object"), NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return srv_fail(e, 400, NULL, "the request body must be a JSON object"), NULL;
    }
    char path[256] = "";
    if (nuls && find_nul(root, path, sizeof path)) {
        cJSON_Delete(root);
        return srv_fail(e, 400, path, "'%s' holds a NUL character (\\u0000)", path), NULL;
    }
    if (srv_json_dedupe(root)) { /* duplicate keys: the last one wins, as in JS and Python */
        cJSON_Delete(root);
        return srv_fail(e, 500, NULL, "out of memory"), NULL;
    }
    return root;
}

int srv_check_length(const srv_server *srv, const srv_prompt *p, int n, srv_gen_opts *o,
                     int default_max, const char *prompt_param, srv_error *e) {
    const int L = srv->cfg.max_model_len;
    int room = L;
    for (int i = 0; i < n; i++) {
        if (p[i].n >= L) {
            e->code = "context_length_exceeded";
            return srv_fail(e, 400, prompt_param,
                            "This model's maximum context length is %d tokens, but the prompt "
                            "has %d tokens",
                            L, p[i].n);
        }
        if (o->max_tokens >= 0 && (long long)p[i].n + o->max_tokens > L) {
            e->code = "context_length_exceeded";
            return srv_fail(e, 400, o->max_tokens_field ? o->max_tokens_field : "max_tokens",
                            "This model's maximum context length is %d tokens. However, you "
                            "requested %lld tokens (%d in the prompt, %d for the completion)",
                            L, (long long)p[i].n + o->max_tokens, p[i].n, o->max_tokens);
        }
        if (L - p[i].n < room) room = L - p[i].n;
    }
    if (o->max_tokens < 0)
        o->max_tokens = default_max >= 0 && default_max < room ? default_max : room;
    if (o->min_tokens > o->max_tokens)
        return srv_fail(e, 400, "min_tokens",
                        "'min_tokens' (%d) is more than the %d tokens the context leaves",
                        o->min_tokens, o->max_tokens);
    return 0;
}

int srv_check_text_length(const srv_server *srv, size_t n, const char *param, srv_error *e) {
    size_t at_least = srv->tok ? srp_tokenizer_min_tokens(srv->tok, n) : 0;
    if (at_least < (size_t)srv->cfg.max_model_len) return 0;
    e->code = "context_length_exceeded";
    return srv_fail(e, 400, param,
                    "This model's maximum context length is %d tokens, but the %s is %zu bytes "
                    "long: at least %zu tokens",
                    srv->cfg.max_model_len, param, n, at_least);
}

int srv_check_budget(const srv_server *srv, const srv_prompt *p, int n_prompts,
                     const srv_gen_opts *o, srv_error *e) {
    if (o->logprobs < 0) return 0;
    const long long per = (long long)o->logprobs + 1, cap = srv->cfg.max_logprobs;
    long long cost = (long long)n_prompts * o->n * o->max_tokens * per;
    for (int i = 0; o->echo && i < n_prompts; i++) cost += (long long)p[i].n * per * o->n;
    if (cost <= cap) return 0;
    return srv_fail(e, 400, o->n > 1 || n_prompts > 1 ? "n" : "logprobs",
                    "this request asks for %lld logprob entries (choices x tokens x "
                    "(top_logprobs + 1) = %d x %d x %lld%s); the server allows %lld per request",
                    cost, n_prompts * o->n, o->max_tokens, per,
                    o->echo ? ", with the echoed prompt" : "", cap);
}

void srv_truncate_prompt(srv_prompt *p, int k) {
    if (k <= 0 || p->n <= k) return;
    memmove(p->ids, p->ids + (p->n - k), (size_t)k * sizeof *p->ids);
    p->n = k;
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
    if (finish_now) {
        cJSON_AddStringToObject(ch, "finish_reason", c->finish_reason);
        c->chunk_finish_sent = 1;
    } else {
        cJSON_AddNullToObject(ch, "finish_reason");
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "choices"), ch);
    if (g->opts.include_usage && g->opts.continuous_usage)
        cJSON_AddItemToObject(root, "usage", srv_usage_json(g));
    else if (g->opts.include_usage)
        cJSON_AddNullToObject(root, "usage");
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

int srv_join_text_parts(const cJSON *parts, const char *const *types, char **out,
                        const char **bad_type) {
    size_t len = 0, cap = 0;
    char *text = NULL;
    const cJSON *part;
    *out = NULL;
    cJSON_ArrayForEach(part, parts) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        int known = 0;
        for (int i = 0; types[i] && !known; i++) known = !strcmp(ty, types[i]);
        if (!known || !cJSON_IsString(t)) {
            free(text);
            *bad_type = ty;
            return 1;
        }
        if ((len && srv_buf_append_utf8(&text, &len, &cap, "\n", 1)) ||
            srv_buf_append_utf8(&text, &len, &cap, t->valuestring, strlen(t->valuestring))) {
            free(text);
            return -1;
        }
    }
    *out = text ? text : strdup("");
    return *out ? 0 : -1;
}
