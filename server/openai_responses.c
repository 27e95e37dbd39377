/* POST /v1/responses: OpenAI's Responses API, the subset apps use. The request becomes a chat
 * request (instructions, input items, function tools) and runs the chat path; the reply (split
 * into reasoning, content and tool calls as chat's is) becomes output items: a message with
 * output_text, function_call items, a reasoning item. Streamed, the events come in OpenAI's
 * order, each with a sequence_number. serpent stores nothing: previous_response_id and
 * background are refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* --- the request -------------------------------------------------------------------------- */

static const char *const builtin_tools[] = { "web_search",
                                             "web_search_preview",
                                             "web_search_preview_2025_03_11",
                                             "file_search",
                                             "computer_use_preview",
                                             "computer_use",
                                             "code_interpreter",
                                             "image_generation",
                                             "mcp",
                                             "local_shell",
                                             "shell",
                                             "apply_patch",
                                             "custom" };

/* Text parts (input_text, output_text, text) joined, or a string as it is; NULL with e. */
static char *item_text(const cJSON *content, const char *param, srv_error *e) {
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (!cJSON_IsArray(content))
        return srv_fail(e, 400, param, "'%s' must be a string or a list of text parts", param),
               NULL;
    static const char *const types[] = { "input_text", "output_text", "text", NULL };
    char *text;
    const char *ty;
    int rc = srv_join_text_parts(content, types, &text, &ty);
    if (rc > 0)
        return srv_fail(e, 400, param,
                        "'%s' parts must be input_text or output_text ('%s' is not supported: "
                        "text only)",
                        param, ty),
               NULL;
    if (rc < 0) return srv_fail(e, 500, NULL, "out of memory"), NULL;
    return text;
}

static cJSON *text_message(const char *role, char *text) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", text ? text : "");
    free(text);
    return m;
}

/* input (a string or a list of items) into chat messages appended to msgs. */
static int input_messages(const cJSON *input, cJSON *msgs, srv_error *e) {
    if (cJSON_IsString(input)) {
        cJSON_AddItemToArray(msgs, text_message("user", strdup(input->valuestring)));
        return 0;
    }
    if (!cJSON_IsArray(input) || cJSON_GetArraySize(input) == 0)
        return srv_fail(e, 400, "input", "'input' must be a string or a non-empty list of items");
    const cJSON *it;
    cJSON *calls_msg = NULL; /* consecutive function_call items make one assistant message */
    int i = 0;
    cJSON_ArrayForEach(it, input) {
        char param[48];
        snprintf(param, sizeof param, "input[%d]", i++);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(it, "type");
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "message";
        if (!cJSON_IsObject(it)) return srv_fail(e, 400, param, "'%s' must be an object", param);
        if (!strcmp(ty, "message")) {
            calls_msg = NULL;
            if (!cJSON_IsString(role))
                return srv_fail(e, 400, param, "'%s.role' is required", param);
            char cp[64];
            snprintf(cp, sizeof cp, "%s.content", param);
            char *text = item_text(cJSON_GetObjectItemCaseSensitive(it, "content"), cp, e);
            if (!text) return -1;
            cJSON_AddItemToArray(msgs, text_message(role->valuestring, text));
        } else if (!strcmp(ty, "function_call")) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(it, "arguments");
            if (!cJSON_IsString(id) || !cJSON_IsString(name) || !cJSON_IsString(args))
                return srv_fail(e, 400, param,
                                "'%s' (function_call) needs call_id, name and arguments", param);
            if (!calls_msg) {
                calls_msg = cJSON_CreateObject();
                cJSON_AddStringToObject(calls_msg, "role", "assistant");
                cJSON_AddNullToObject(calls_msg, "content");
                cJSON_AddArrayToObject(calls_msg, "tool_calls");
                cJSON_AddItemToArray(msgs, calls_msg);
            }
            cJSON *call = cJSON_CreateObject();
            cJSON_AddStringToObject(call, "id", id->valuestring);
            cJSON_AddStringToObject(call, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(call, "function");
            cJSON_AddStringToObject(fn, "name", name->valuestring);
            cJSON_AddStringToObject(fn, "arguments", args->valuestring);
            cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(calls_msg, "tool_calls"), call);
        } else if (!strcmp(ty, "function_call_output")) {
            calls_msg = NULL;
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
            if (!cJSON_IsString(id))
                return srv_fail(e, 400, param, "'%s' (function_call_output) needs call_id", param);
            char op[64];
            snprintf(op, sizeof op, "%s.output", param);
            char *text = item_text(cJSON_GetObjectItemCaseSensitive(it, "output"), op, e);
            if (!text) return -1;
            cJSON *m = text_message("tool", text);
            cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
            cJSON_AddItemToArray(msgs, m);
        } else if (!strcmp(ty, "reasoning")) {
            /* an earlier turn's reasoning, sent back: templates drop it from history anyway */
        } else {
            return srv_fail(e, 400, param,
                            "'%s': input items of type '%s' are not supported (message, "
                            "function_call, function_call_output)",
                            param, ty);
        }
    }
    return 0;
}

/* Function tools {"type": "function", "name", "description", "parameters"} into chat's. */
static int chat_tools(const cJSON *tools, cJSON *chat, srv_error *e) {
    if (!tools || cJSON_IsNull(tools)) return 0;
    if (!cJSON_IsArray(tools)) return srv_fail(e, 400, "tools", "'tools' must be a list of tools");
    cJSON *out = cJSON_AddArrayToObject(chat, "tools");
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const char *ty = cJSON_IsString(type) ? type->valuestring : "";
        char param[32];
        snprintf(param, sizeof param, "tools[%d]", i++);
        if (strcmp(ty, "function")) {
            for (size_t k = 0; k < sizeof builtin_tools / sizeof builtin_tools[0]; k++)
                if (!strcmp(ty, builtin_tools[k]))
                    return srv_fail(e, 400, param,
                                    "built-in tool '%s' is not supported (serpent runs only "
                                    "function tools, which the client executes)",
                                    ty);
            return srv_fail(e, 400, param, "'%s.type' must be \"function\"", param);
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        if (!cJSON_IsString(name))
            return srv_fail(e, 400, param, "'%s.name' must be a string", param);
        cJSON *ct = cJSON_CreateObject(), *fn;
        cJSON_AddStringToObject(ct, "type", "function");
        cJSON_AddItemToObject(ct, "function", fn = cJSON_CreateObject());
        static const char *const keep[] = { "name", "description", "parameters", "strict" };
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, keep[k]);
            if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(fn, keep[k], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToArray(out, ct);
    }
    return 0;
}

static int chat_tool_choice(const cJSON *tc, cJSON *chat, srv_error *e) {
    if (!tc || cJSON_IsNull(tc)) return 0;
    if (cJSON_IsString(tc)) {
        cJSON_AddItemToObject(chat, "tool_choice", cJSON_Duplicate(tc, 1));
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(tc, "name");
    if (!cJSON_IsObject(tc) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") ||
        !cJSON_IsString(name))
        return srv_fail(e, 400, "tool_choice",
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                        "{\"type\": \"function\", \"name\": ...}");
    cJSON *o = cJSON_AddObjectToObject(chat, "tool_choice");
    cJSON_AddStringToObject(o, "type", "function");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "name", name->valuestring);
    return 0;
}

/* text: {"format": {"type": "text"}} is plain text; json_schema ({"type", "name", "schema",
 * "strict"}) and json_object become chat's response_format (*format: the format, else NULL). */
static int check_text(const cJSON *text, const cJSON **format, srv_error *e) {
    *format = NULL;
    if (!text || cJSON_IsNull(text)) return 0;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(text, "format");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f, "type");
    if (!cJSON_IsObject(text)) return srv_fail(e, 400, "text", "'text' must be an object");
    if (!f || cJSON_IsNull(f) || (cJSON_IsString(t) && !strcmp(t->valuestring, "text"))) return 0;
    if (cJSON_IsString(t) &&
        (!strcmp(t->valuestring, "json_schema") || !strcmp(t->valuestring, "json_object"))) {
        *format = f;
        return 0;
    }
    return srv_fail(e, 400, "text.format.type",
                    "'text.format.type' must be one of text, json_schema, json_object");
}

/* chat's spelling of a Responses text.format */
static cJSON *response_format(const cJSON *f) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f, "type");
    cJSON *rf = cJSON_CreateObject();
    cJSON_AddStringToObject(rf, "type", t->valuestring);
    if (!strcmp(t->valuestring, "json_schema")) {
        cJSON *js = cJSON_Duplicate(f, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(js, "type");
        cJSON_AddItemToObject(rf, "json_schema", js);
    }
    return rf;
}

/* The chat request a Responses request means (what it shares with chat is copied). */
static cJSON *chat_request(const cJSON *root, srv_error *e) {
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(chat, "messages");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(root, "instructions");
    if (ins && !cJSON_IsNull(ins)) {
        if (!cJSON_IsString(ins)) {
            cJSON_Delete(chat);
            return srv_fail(e, 400, "instructions", "'instructions' must be a string"), NULL;
        }
        cJSON_AddItemToArray(msgs, text_message("system", strdup(ins->valuestring)));
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (!input) {
        cJSON_Delete(chat);
        return srv_fail(e, 400, "input", "'input' is required"), NULL;
    }
    if (input_messages(input, msgs, e) ||
        chat_tools(cJSON_GetObjectItemCaseSensitive(root, "tools"), chat, e) ||
        chat_tool_choice(cJSON_GetObjectItemCaseSensitive(root, "tool_choice"), chat, e)) {
        cJSON_Delete(chat);
        return NULL;
    }
    static const char *const same[] = { "model",
                                        "stream",
                                        "temperature",
                                        "top_p",
                                        "top_k",
                                        "min_p",
                                        "repetition_penalty",
                                        "presence_penalty",
                                        "frequency_penalty",
                                        "seed",
                                        "parallel_tool_calls",
                                        "chat_template_kwargs",
                                        "include_reasoning" };
    for (size_t k = 0; k < sizeof same / sizeof same[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, same[k]);
        if (v) cJSON_AddItemToObject(chat, same[k], cJSON_Duplicate(v, 1));
    }
    const cJSON *max = cJSON_GetObjectItemCaseSensitive(root, "max_output_tokens");
    if (max) cJSON_AddItemToObject(chat, "max_completion_tokens", cJSON_Duplicate(max, 1));
    const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(root, "reasoning");
    const cJSON *effort = cJSON_GetObjectItemCaseSensitive(reasoning, "effort");
    if (cJSON_IsString(effort))
        cJSON_AddStringToObject(chat, "reasoning_effort", effort->valuestring);
    return chat;
}

/* An error of the chat path names chat's fields: say the Responses API's instead. */
static void rename_field(srv_error *e, const char *chat, const char *resp) {
    size_t cl = strlen(chat);
    if (!strncmp(e->param, chat, cl)) {
        char rest[64];
        snprintf(rest, sizeof rest, "%s", e->param + cl);
        snprintf(e->param, sizeof e->param, "%s%s", resp, rest);
    }
    char quoted[64], *at;
    snprintf(quoted, sizeof quoted, "'%s", chat);
    if ((at = strstr(e->msg, quoted))) {
        char tail[sizeof e->msg];
        snprintf(tail, sizeof tail, "%s", at + strlen(quoted));
        snprintf(at, sizeof e->msg - (size_t)(at - e->msg), "'%s%s", resp, tail);
    }
}

int srv_handle_responses(srv_server *srv, const cJSON *root, const srv_peer *peer, srv_gen **gen,
                         srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (srv_check_fields(root, "responses", e)) return -1;
    const cJSON *format;
    if (check_text(cJSON_GetObjectItemCaseSensitive(root, "text"), &format, e)) return -1;
    cJSON *chat = chat_request(root, e);
    if (!chat) return -1;
    if (format) cJSON_AddItemToObject(chat, "response_format", response_format(format));
    int rc = srv_chat_start(srv, chat, peer, &srv_api_responses, gen, e);
    cJSON_Delete(chat);
    if (rc) {
        rename_field(e, "response_format.json_schema", "text.format");
        rename_field(e, "response_format", "text.format");
        rename_field(e, "max_completion_tokens", "max_output_tokens");
        rename_field(e, "messages", "input");
        return -1;
    }
    (*gen)->id[4] = '_'; /* OpenAI's ids read resp_...; the generation writes resp-... */
    /* what the response object repeats of the request, as OpenAI's does */
    static const char *const echoed[] = { "instructions", "tools", "tool_choice", "text",
                                          "metadata" };
    cJSON *echo = cJSON_CreateObject();
    for (size_t i = 0; echo && i < sizeof echoed / sizeof echoed[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, echoed[i]);
        if (v && !cJSON_IsNull(v)) cJSON_AddItemToObject(echo, echoed[i], cJSON_Duplicate(v, 1));
    }
    (*gen)->echo = echo;
    return 0;
}

/* --- the response ------------------------------------------------------------------------- */

enum { ITEM_REASONING, ITEM_MESSAGE, ITEM_CALL };

typedef struct resp_item {
    int kind, call; /* call: index into the split's calls */
    int done;
    char id[48];
} resp_item;

/* The output items in the order they opened, and what the stream has sent of them. */
typedef struct srv_resp_items {
    resp_item *v;
    int n, cap;
    int reasoning, message; /* their indices, or -1 */
    int started, finished;
    size_t reason_sent, text_sent;
    int calls_sent;
} srv_resp_items;

static void items_free(srv_gen *g) {
    if (g->items) free(g->items->v);
    free(g->items);
    g->items = NULL;
}

/* What the reply holds now: reasoning, text and calls (without a parser: all text). */
typedef struct reply_view {
    const char *reason, *text;
    size_t reason_len, text_len;
    const srv_tool_call *calls;
    int n_calls;
} reply_view;

static reply_view view(srv_gen *g, srv_choice *c) {
    reply_view v = { "", "", 0, 0, NULL, 0 };
    int err = 0;
    srv_split *sp = srv_choice_split(g, c, &err);
    if (err) g->failed = 1;
    if (!sp) {
        v.text = c->text ? c->text : "";
        v.text_len = c->done ? c->len : c->released;
        return v;
    }
    if (!g->opts.drop_reasoning && sp->reason) {
        v.reason = sp->reason;
        v.reason_len = sp->reason_len;
    }
    if (sp->out.content) v.text = sp->out.content;
    v.text_len = sp->content_ready;
    v.calls = sp->out.calls;
    v.n_calls = sp->n_calls_ready;
    return v;
}

static cJSON *usage_json(const srv_gen *g) {
    const srv_choice *c = &g->choices[0];
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "input_tokens", g->prompts[0].n);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens",
                            c->n_cached);
    cJSON_AddNumberToObject(u, "output_tokens", c->n_generated);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens",
                            0);
    cJSON_AddNumberToObject(u, "total_tokens", g->prompts[0].n + c->n_generated);
    return u;
}

static cJSON *text_part(const char *s, size_t n, const char *type) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", type);
    cJSON_AddItemToObject(p, "text", srv_json_text(s, n));
    if (!strcmp(type, "output_text")) {
        cJSON_AddArrayToObject(p, "annotations");
        cJSON_AddArrayToObject(p, "logprobs");
    }
    return p;
}

/* One output item as it stands (in_progress until done). */
static cJSON *item_json(const resp_item *it, const reply_view *v) {
    cJSON *o = cJSON_CreateObject();
    const char *status = it->done ? "completed" : "in_progress";
    if (it->kind == ITEM_MESSAGE) {
        cJSON_AddStringToObject(o, "id", it->id);
        cJSON_AddStringToObject(o, "type", "message");
        cJSON_AddStringToObject(o, "status", status);
        cJSON_AddStringToObject(o, "role", "assistant");
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        if (it->done) cJSON_AddItemToArray(content, text_part(v->text, v->text_len, "output_text"));
    } else if (it->kind == ITEM_REASONING) {
        cJSON_AddStringToObject(o, "id", it->id);
        cJSON_AddStringToObject(o, "type", "reasoning");
        cJSON_AddArrayToObject(o, "summary");
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        if (it->done)
            cJSON_AddItemToArray(content, text_part(v->reason, v->reason_len, "reasoning_text"));
        cJSON_AddStringToObject(o, "status", status);
    } else {
        const srv_tool_call *t = &v->calls[it->call];
        cJSON_AddStringToObject(o, "id", it->id);
        cJSON_AddStringToObject(o, "type", "function_call");
        cJSON_AddStringToObject(o, "status", status);
        cJSON_AddStringToObject(o, "call_id", t->id);
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "arguments", it->done ? t->arguments : "");
    }
    return o;
}

static const char *status_of(const srv_gen *g) {
    const srv_choice *c = &g->choices[0];
    if (!c->done || !g->items || !g->items->finished) return "in_progress";
    return c->finish_reason && !strcmp(c->finish_reason, "length") ? "incomplete" : "completed";
}

/* r[name]: the request's value when it gave one, else dflt (consumed either way). */
static void echo_or(cJSON *r, const cJSON *echo, const char *name, cJSON *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(echo, name);
    if (v) {
        cJSON_Delete(dflt);
        dflt = cJSON_Duplicate(v, 1);
    }
    cJSON_AddItemToObject(r, name, dflt);
}

/* The response object: its output items (with the final state once finished) and usage. */
static cJSON *response_json(srv_gen *g, const reply_view *v) {
    cJSON *r = cJSON_CreateObject();
    const char *status = status_of(g);
    cJSON_AddStringToObject(r, "id", g->id);
    cJSON_AddStringToObject(r, "object", "response");
    cJSON_AddNumberToObject(r, "created_at", (double)g->created);
    cJSON_AddStringToObject(r, "status", status);
    cJSON_AddStringToObject(r, "model", g->srv->cfg.model_name);
    cJSON_AddBoolToObject(r, "background", 0);
    cJSON_AddNullToObject(r, "error");
    echo_or(r, g->echo, "instructions", cJSON_CreateNull());
    if (!strcmp(status, "incomplete"))
        cJSON_AddStringToObject(cJSON_AddObjectToObject(r, "incomplete_details"), "reason",
                                "max_output_tokens");
    else
        cJSON_AddNullToObject(r, "incomplete_details");
    cJSON *out = cJSON_AddArrayToObject(r, "output");
    for (int i = 0; g->items && i < g->items->n; i++)
        if (strcmp(status, "in_progress")) cJSON_AddItemToArray(out, item_json(&g->items->v[i], v));
    cJSON_AddNumberToObject(r, "max_output_tokens", g->opts.max_tokens);
    cJSON_AddBoolToObject(r, "parallel_tool_calls", !g->opts.first_call_only);
    echo_or(r, g->echo, "tool_choice",
            cJSON_CreateString(g->opts.forced_tools  ? "required"
                               : g->opts.parse_tools ? "auto"
                                                     : "none"));
    cJSON_AddNullToObject(r, "previous_response_id");
    cJSON_AddBoolToObject(r, "store", 0);
    cJSON_AddNumberToObject(r, "temperature", g->opts.sample.temperature);
    cJSON_AddNumberToObject(r, "top_p", g->opts.sample.top_p);
    echo_or(r, g->echo, "text", cJSON_Parse("{\"format\":{\"type\":\"text\"}}"));
    cJSON_AddStringToObject(r, "truncation", "disabled");
    echo_or(r, g->echo, "tools", cJSON_CreateArray());
    echo_or(r, g->echo, "metadata", cJSON_CreateObject());
    if (strcmp(status, "in_progress"))
        cJSON_AddItemToObject(r, "usage", usage_json(g));
    else
        cJSON_AddNullToObject(r, "usage");
    return r;
}

/* Emits one event (stream only): type and sequence_number first, as OpenAI's. */
static void event(srv_gen *g, int emit, const char *type, cJSON *body) {
    if (!emit) {
        cJSON_Delete(body);
        return;
    }
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddNumberToObject(ev, "sequence_number", g->seq++);
    cJSON *it = body ? body->child : NULL;
    while (it) { /* the body's members move into the event */
        cJSON *next = it->next;
        cJSON_AddItemToObject(ev, it->string, cJSON_DetachItemViaPointer(body, it));
        it = next;
    }
    cJSON_Delete(body);
    srv_sse_event(g, type, ev);
}

static cJSON *at_item(srv_resp_items *s, int index, int with_content) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "item_id", s->v[index].id);
    cJSON_AddNumberToObject(b, "output_index", index);
    if (with_content) cJSON_AddNumberToObject(b, "content_index", 0);
    return b;
}

static int open_item(srv_gen *g, int emit, int kind, int call, const reply_view *v) {
    srv_resp_items *s = g->items;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 4;
        resp_item *nv = realloc(s->v, (size_t)cap * sizeof *nv);
        if (!nv) {
            g->failed = 1;
            return -1;
        }
        s->v = nv;
        s->cap = cap;
    }
    resp_item *it = &s->v[s->n];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    it->call = call;
    static const char *const prefix[] = { "rs", "msg", "fc" };
    snprintf(it->id, sizeof it->id, "%s_%s_%d", prefix[kind], g->id + 5, s->n);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "output_index", s->n);
    cJSON_AddItemToObject(b, "item", item_json(it, v));
    event(g, emit, "response.output_item.added", b);
    if (kind != ITEM_CALL) {
        cJSON *p = at_item(s, s->n, 1);
        cJSON_AddItemToObject(
            p, "part", text_part("", 0, kind == ITEM_MESSAGE ? "output_text" : "reasoning_text"));
        event(g, emit, "response.content_part.added", p);
    }
    return s->n++;
}

static void close_item(srv_gen *g, int emit, int index, const reply_view *v) {
    srv_resp_items *s = g->items;
    resp_item *it = &s->v[index];
    if (it->done) return;
    it->done = 1;
    if (it->kind == ITEM_MESSAGE || it->kind == ITEM_REASONING) {
        int msg = it->kind == ITEM_MESSAGE;
        cJSON *b = at_item(s, index, 1);
        cJSON_AddItemToObject(b, "text",
                              msg ? srv_json_text(v->text, v->text_len)
                                  : srv_json_text(v->reason, v->reason_len));
        if (msg) cJSON_AddArrayToObject(b, "logprobs");
        event(g, emit, msg ? "response.output_text.done" : "response.reasoning_text.done", b);
        b = at_item(s, index, 1);
        cJSON_AddItemToObject(b, "part",
                              msg ? text_part(v->text, v->text_len, "output_text")
                                  : text_part(v->reason, v->reason_len, "reasoning_text"));
        event(g, emit, "response.content_part.done", b);
    } else {
        cJSON *b = at_item(s, index, 0);
        cJSON_AddStringToObject(b, "name", v->calls[it->call].name);
        cJSON_AddStringToObject(b, "arguments", v->calls[it->call].arguments);
        event(g, emit, "response.function_call_arguments.done", b);
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "output_index", index);
    cJSON_AddItemToObject(b, "item", item_json(it, v));
    event(g, emit, "response.output_item.done", b);
}

static void text_delta(srv_gen *g, int emit, int index, const char *type, const char *s, size_t n) {
    cJSON *b = at_item(g->items, index, 1);
    cJSON_AddItemToObject(b, "delta", srv_json_text(s, n));
    if (!strcmp(type, "response.output_text.delta")) cJSON_AddArrayToObject(b, "logprobs");
    event(g, emit, type, b);
}

/* Moves the items forward to what the reply holds now; emit: as stream events too. The whole
 * response runs the same steps without events, so both give the same items. */
static void advance(srv_gen *g, int emit) {
    if (!g->items && !(g->items = calloc(1, sizeof *g->items))) {
        g->failed = 1;
        return;
    }
    srv_resp_items *s = g->items;
    if (s->finished) return;
    srv_choice *c = &g->choices[0];
    if (!s->started) {
        s->started = 1;
        s->reasoning = s->message = -1;
    }
    reply_view v = view(g, c);
    if (v.reason_len > s->reason_sent) {
        if (s->reasoning < 0) s->reasoning = open_item(g, emit, ITEM_REASONING, 0, &v);
        if (s->reasoning < 0) return;
        text_delta(g, emit, s->reasoning, "response.reasoning_text.delta",
                   v.reason + s->reason_sent, v.reason_len - s->reason_sent);
        s->reason_sent = v.reason_len;
    }
    int past_reasoning = v.text_len > s->text_sent || v.n_calls > s->calls_sent || c->done;
    if (past_reasoning && s->reasoning >= 0) close_item(g, emit, s->reasoning, &v);
    if (v.text_len > s->text_sent) {
        if (s->message < 0) s->message = open_item(g, emit, ITEM_MESSAGE, 0, &v);
        if (s->message < 0) return;
        text_delta(g, emit, s->message, "response.output_text.delta", v.text + s->text_sent,
                   v.text_len - s->text_sent);
        s->text_sent = v.text_len;
    }
    for (; s->calls_sent < v.n_calls; s->calls_sent++) {
        int k = open_item(g, emit, ITEM_CALL, s->calls_sent, &v);
        if (k < 0) return;
        cJSON *b = at_item(s, k, 0);
        cJSON_AddStringToObject(b, "delta", v.calls[s->calls_sent].arguments);
        event(g, emit, "response.function_call_arguments.delta", b);
        close_item(g, emit, k, &v);
    }
    if (!c->done) return;
    if (s->message < 0 && !v.n_calls) s->message = open_item(g, emit, ITEM_MESSAGE, 0, &v);
    if (s->message >= 0) close_item(g, emit, s->message, &v);
    s->finished = 1;
    const char *status = status_of(g);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddItemToObject(b, "response", response_json(g, &v));
    event(g, emit, !strcmp(status, "incomplete") ? "response.incomplete" : "response.completed", b);
}

static char *responses_response(srv_gen *g) {
    advance(g, 0);
    reply_view v = view(g, &g->choices[0]);
    cJSON *r = response_json(g, &v);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

static void responses_chunks(srv_gen *g, int final) {
    (void) final;
    if (!g->items || !g->items->started) {
        /* the opening events carry the response as it starts: no output, no usage yet */
        reply_view none = { "", "", 0, 0, NULL, 0 };
        cJSON *b = cJSON_CreateObject();
        cJSON_AddItemToObject(b, "response", response_json(g, &none));
        event(g, 1, "response.created", b);
        b = cJSON_CreateObject();
        cJSON_AddItemToObject(b, "response", response_json(g, &none));
        event(g, 1, "response.in_progress", b);
    }
    advance(g, 1);
}

const srv_api srv_api_responses = { "resp",           "response", responses_response,
                                    responses_chunks, 1,          items_free };
