/* POST /v1/chat/completions: messages rendered with the checkpoint's chat template, then the
 * chat.completion response and its chat.completion.chunk stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#include "chat_template.h"

static const char *const roles[] = { "system", "user", "assistant", "tool", "developer" };

/* A copy of the messages with content flattened to a string (text parts joined), the form
 * chat templates expect. */
static cJSON *normalize_messages(const cJSON *msgs, srv_error *e) {
    if (!cJSON_IsArray(msgs))
        return srv_fail(e, 400, "messages", "'messages' must be a list of messages"), NULL;
    if (cJSON_GetArraySize(msgs) == 0)
        return srv_fail(e, 400, "messages", "'messages' must not be empty"), NULL;
    cJSON *out = cJSON_CreateArray();
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, msgs) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) {
            srv_fail(e, 400, param, "'%s' must be an object", param);
            goto fail;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        int known = 0;
        for (size_t r = 0; cJSON_IsString(role) && r < sizeof roles / sizeof roles[0]; r++)
            known |= !strcmp(role->valuestring, roles[r]);
        if (!known) {
            srv_fail(e, 400, param,
                     "'%s.role' must be one of system, user, assistant, tool, developer", param);
            goto fail;
        }
        cJSON *copy = cJSON_Duplicate(m, 1);
        if (!copy) {
            srv_fail(e, 500, NULL, "out of memory");
            goto fail;
        }
        cJSON_AddItemToArray(out, copy);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!content || cJSON_IsNull(content) || cJSON_IsString(content)) {
            if (!content && strcmp(role->valuestring, "assistant")) {
                srv_fail(e, 400, param, "'%s.content' is required", param);
                goto fail;
            }
        } else if (cJSON_IsArray(content)) {
            size_t len = 0, cap = 0;
            char *text = NULL;
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") ||
                    !cJSON_IsString(t)) {
                    free(text);
                    srv_fail(e, 400, param,
                             "'%s.content' parts must be {\"type\": \"text\", \"text\": ...}",
                             param);
                    goto fail;
                }
                if ((len && srv_buf_append_utf8(&text, &len, &cap, "\n", 1)) ||
                    srv_buf_append_utf8(&text, &len, &cap, t->valuestring,
                                        strlen(t->valuestring))) {
                    free(text);
                    srv_fail(e, 500, NULL, "out of memory");
                    goto fail;
                }
            }
            cJSON_ReplaceItemInObjectCaseSensitive(copy, "content",
                                                   cJSON_CreateString(text ? text : ""));
            free(text);
        } else {
            srv_fail(e, 400, param, "'%s.content' must be a string or a list of text parts", param);
            goto fail;
        }
        i++;
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

static cJSON *template_vars(const srv_server *srv, const cJSON *root, srv_error *e) {
    cJSON *vars = cJSON_CreateObject();
    const cJSON *agp = cJSON_GetObjectItemCaseSensitive(root, "add_generation_prompt");
    if (agp && !cJSON_IsNull(agp) && !cJSON_IsBool(agp)) {
        cJSON_Delete(vars);
        return srv_fail(e, 400, "add_generation_prompt",
                        "'add_generation_prompt' must be true or false"),
               NULL;
    }
    cJSON_AddBoolToObject(vars, "add_generation_prompt", !agp || !cJSON_IsFalse(agp));
    cJSON_AddStringToObject(vars, "bos_token", srv->bos_text ? srv->bos_text : "");
    cJSON_AddStringToObject(vars, "eos_token", srv->eos_text ? srv->eos_text : "");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (cJSON_IsArray(tools)) cJSON_AddItemToObject(vars, "tools", cJSON_Duplicate(tools, 1));
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs"), *it;
    if (kw && !cJSON_IsNull(kw)) {
        if (!cJSON_IsObject(kw)) {
            cJSON_Delete(vars);
            return srv_fail(e, 400, "chat_template_kwargs",
                            "'chat_template_kwargs' must be an object"),
                   NULL;
        }
        cJSON_ArrayForEach(it, kw) {
            cJSON_DeleteItemFromObjectCaseSensitive(vars, it->string);
            cJSON_AddItemToObject(vars, it->string, cJSON_Duplicate(it, 1));
        }
    }
    return vars;
}

int srv_handle_chat(srv_server *srv, const cJSON *root, srv_gen **gen, srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (!srv->tok) return srv_fail(e, 400, NULL, "this model has no tokenizer, so no chat");
    if (!srv->chat_template)
        return srv_fail(e, 400, NULL,
                        "this model has no chat template (tokenizer_config.json has no "
                        "\"chat_template\"); use /v1/completions");
    if (!srv->chat_tmpl)
        return srv_fail(e, 400, NULL, "this model's chat template does not compile: %s",
                        srv->chat_tmpl_error);
    srv_gen_opts o;
    if (srv_parse_gen_opts(srv, root, 1, &o, e)) {
        srv_gen_opts_free(&o);
        return -1;
    }
    cJSON *msgs = normalize_messages(cJSON_GetObjectItemCaseSensitive(root, "messages"), e);
    cJSON *vars = msgs ? template_vars(srv, root, e) : NULL;
    char *text = NULL;
    size_t text_len = 0;
    int rc = msgs && vars ? 0 : -1;
    if (!rc) {
        srp_err te = { 0 };
        int r = srp_chat_template_render(srv->chat_tmpl, msgs, vars, NULL, &text, &text_len, &te);
        if (r == SRP_ENOMEM)
            rc = srv_fail(e, 500, NULL, "out of memory rendering the chat");
        else if (r == SRP_EFULL)
            rc = srv_fail(e, 400, "messages", "the chat is too large for the template: %s", te.msg);
        else if (r)
            rc = srv_fail(e, 400, "messages", "the chat template failed: %s", te.msg);
    }
    cJSON_Delete(msgs);
    cJSON_Delete(vars);
    srv_prompt *p = rc ? NULL : calloc(1, sizeof *p);
    if (!rc && !p) rc = srv_fail(e, 500, NULL, "out of memory");
    if (!rc) {
        srp_err te = { 0 };
        if (srp_tokenizer_encode(srv->tok, text, text_len, 0, &p->ids, &p->n, &te))
            rc = srv_fail(e, 400, "messages", "cannot tokenize the rendered chat: %s", te.msg);
        else if (p->n == 0)
            rc = srv_fail(e, 400, "messages", "the rendered chat has no tokens");
    }
    free(text);
    if (!rc) rc = srv_check_length(srv, p, 1, &o, -1, e);
    if (rc) {
        if (p) free(p->ids);
        free(p);
        srv_gen_opts_free(&o);
        return -1;
    }
    return srv_gen_start(srv, &srv_api_chat, p, 1, &o, gen, e);
}

/* --- responses --------------------------------------------------------------------------- */

static cJSON *bytes_json(const char *s, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
    return a;
}

static cJSON *token_lp_json(const srv_server *srv, int32_t id, float lp) {
    cJSON *o = cJSON_CreateObject();
    size_t tl = 0;
    char *t = srv_token_text(srv, id, &tl);
    cJSON_AddItemToObject(o, "token", srv_json_text(t, t ? tl : 0));
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON_AddItemToObject(o, "bytes", bytes_json(t, t ? tl : 0));
    free(t);
    return o;
}

static cJSON *chat_logprobs(const srv_gen *g, const srv_choice *c, int from) {
    cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
    for (int k = from; k < c->n_lps; k++) {
        const srp_token_event *ev = &c->lps[k].ev;
        if (c->stopped_by_string && c->lps[k].offset >= c->len) break;
        cJSON *o = token_lp_json(g->srv, ev->token, ev->logprob);
        cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
        for (int i = 0; i < ev->n_top; i++)
            cJSON_AddItemToArray(top, token_lp_json(g->srv, ev->top_ids[i], ev->top_logprobs[i]));
        cJSON_AddItemToArray(content, o);
    }
    return lp;
}

static char *chat_response(srv_gen *g) {
    cJSON *root = srv_response_base(g, "chat.completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        cJSON *msg = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddItemToObject(msg, "content", srv_json_text(c->text, c->len));
        if (g->opts.logprobs >= 0)
            cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(g, c, 0));
        else
            cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddStringToObject(ch, "finish_reason", c->finish_reason);
        if (g->opts.return_token_ids) {
            cJSON *ids = cJSON_AddArrayToObject(ch, "token_ids");
            for (int k = 0; k < c->n_ids; k++)
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(c->ids[k]));
        }
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_AddItemToObject(root, "usage", srv_usage_json(g));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void chat_chunks(srv_gen *g, int final) {
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        int first = !c->role_sent, new_text = c->released > c->streamed;
        int new_lps = c->n_lps > c->streamed_lps, finish_now = c->done && !c->chunk_finish_sent;
        int new_ids = g->opts.return_token_ids && c->n_ids > c->streamed_ids;
        if (!first && !new_text && !new_lps && !finish_now && !new_ids) continue;
        cJSON *root = srv_response_base(g, "chat.completion.chunk");
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (first) cJSON_AddStringToObject(delta, "role", "assistant");
        if (first || new_text) {
            size_t n = c->released - c->streamed;
            char *t = malloc(n + 1);
            if (t) {
                memcpy(t, c->text ? c->text + c->streamed : "", n);
                t[n] = 0;
            }
            cJSON_AddItemToObject(delta, "content", srv_json_text(t, t ? n : 0));
            free(t);
        }
        if (g->opts.logprobs >= 0 && new_lps)
            cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(g, c, c->streamed_lps));
        else
            cJSON_AddNullToObject(ch, "logprobs");
        srv_stream_choice_end(g, c, root, ch, finish_now);
    }
    if (final && g->opts.include_usage) srv_usage_chunk(g);
}

const srv_api srv_api_chat = { "chatcmpl", "chat.completion.chunk", chat_response, chat_chunks };
