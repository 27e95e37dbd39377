/* POST /v1/chat/completions: messages rendered with the checkpoint's chat template, then the
 * chat.completion response and its chat.completion.chunk stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#include "chat_template.h"

static const char *const roles[] = { "system", "user", "assistant", "tool", "developer" };

/* An assistant message's tool_calls carry their arguments as a JSON string (OpenAI's form);
 * templates index into them, so they become the object (as vLLM does). */
static int parse_call_arguments(cJSON *m, const char *param, srv_error *e) {
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), *call;
    if (!calls || cJSON_IsNull(calls)) return 0;
    if (!cJSON_IsArray(calls))
        return srv_fail(e, 400, param, "'%s.tool_calls' must be a list", param);
    cJSON_ArrayForEach(call, calls) {
        cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
        cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(fn) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name")))
            return srv_fail(e, 400, param,
                            "'%s.tool_calls' entries need function.name and function.arguments",
                            param);
        if (!cJSON_IsString(args)) continue;
        cJSON *obj = cJSON_Parse(args->valuestring);
        if (!obj)
            return srv_fail(e, 400, param, "'%s.tool_calls' arguments are not valid JSON", param);
        cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", obj);
    }
    return 0;
}

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
        if (parse_call_arguments(copy, param, e)) goto fail;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!content || cJSON_IsNull(content) || cJSON_IsString(content)) {
            if (!content && strcmp(role->valuestring, "assistant")) {
                srv_fail(e, 400, param, "'%s.content' is required", param);
                goto fail;
            }
            /* an assistant's null content (beside its tool_calls) renders as "", as vLLM's */
            if (!cJSON_IsString(content)) {
                cJSON_DeleteItemFromObjectCaseSensitive(copy, "content");
                cJSON_AddStringToObject(copy, "content", "");
            }
        } else if (cJSON_IsArray(content)) {
            static const char *const types[] = { "text", NULL };
            char *text;
            const char *ty;
            int rc = srv_join_text_parts(content, types, &text, &ty);
            if (rc) {
                if (rc > 0)
                    srv_fail(e, 400, param,
                             "'%s.content' parts must be {\"type\": \"text\", \"text\": ...}",
                             param);
                else
                    srv_fail(e, 500, NULL, "out of memory");
                goto fail;
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

static int get_flag(const cJSON *root, const char *name, int *v, srv_error *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it)) return srv_fail(e, 400, name, "'%s' must be true or false", name);
    *v = cJSON_IsTrue(it);
    return 1;
}

typedef enum { TOOLS_NONE, TOOLS_AUTO, TOOLS_FORCED } tool_mode;

/* tools are rendered by the template whatever tool_choice says (as vLLM); tool_choice (OpenAI's
 * default with tools: "auto") says whether the reply's calls are parsed (auto) or forced
 * (required, a named function). */
static int check_tools(const cJSON *root, const cJSON **tools_out, tool_mode *mode, srv_error *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    *tools_out = NULL;
    *mode = TOOLS_NONE;
    if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools))
        return srv_fail(e, 400, "tools", "'tools' must be a list of tools");
    int have = cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0;
    if (tc && !cJSON_IsNull(tc) && !cJSON_IsString(tc) && !cJSON_IsObject(tc))
        return srv_fail(e, 400, "tool_choice",
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or a named tool");
    int none =
        !tc || cJSON_IsNull(tc) ? !have : cJSON_IsString(tc) && !strcmp(tc->valuestring, "none");
    if (cJSON_IsString(tc) && !none && strcmp(tc->valuestring, "auto") &&
        strcmp(tc->valuestring, "required"))
        return srv_fail(e, 400, "tool_choice",
                        "'tool_choice' must be \"none\", \"auto\", \"required\" or a named tool");
    if (!none && !have && cJSON_IsString(tc) && !strcmp(tc->valuestring, "required"))
        none = 1; /* "required" with no tools is "none", as OpenAI and vLLM */
    if (!none && !have) return srv_fail(e, 400, "tool_choice", "'tool_choice' needs 'tools'");
    if (have) *tools_out = tools;
    if (!none)
        *mode =
            !tc || cJSON_IsNull(tc) || !strcmp(cJSON_IsString(tc) ? tc->valuestring : "", "auto")
                ? TOOLS_AUTO
                : TOOLS_FORCED;
    return 0;
}

/* A copy of a request value with its special-token texts marked (chat_marks.c). */
static cJSON *marked_copy(const srv_server *srv, const cJSON *v) {
    cJSON *c = cJSON_Duplicate(v, 1);
    const char *const *texts;
    const size_t *lens;
    int n = srp_tokenizer_special_texts(srv->tok, &texts, &lens);
    if (c && srv_mark_specials(c, texts, lens, n)) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

static cJSON *template_vars(const srv_server *srv, const cJSON *root, int add_generation_prompt,
                            srv_error *e) {
    cJSON *vars = cJSON_CreateObject();
    cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt);
    cJSON_AddStringToObject(vars, "bos_token", srv->bos_text ? srv->bos_text : "");
    cJSON_AddStringToObject(vars, "eos_token", srv->eos_text ? srv->eos_text : "");
    const cJSON *tools = NULL;
    tool_mode mode;
    if (check_tools(root, &tools, &mode, e)) {
        cJSON_Delete(vars);
        return NULL;
    }
    if (tools) cJSON_AddItemToObject(vars, "tools", marked_copy(srv, tools));
    const cJSON *docs = cJSON_GetObjectItemCaseSensitive(root, "documents");
    if (docs && !cJSON_IsNull(docs)) {
        if (!cJSON_IsArray(docs)) {
            cJSON_Delete(vars);
            return srv_fail(e, 400, "documents", "'documents' must be a list of objects"), NULL;
        }
        cJSON_AddItemToObject(vars, "documents", marked_copy(srv, docs));
    }
    const cJSON *effort = cJSON_GetObjectItemCaseSensitive(root, "reasoning_effort");
    if (effort && !cJSON_IsNull(effort)) {
        if (!cJSON_IsString(effort)) {
            cJSON_Delete(vars);
            return srv_fail(e, 400, "reasoning_effort", "'reasoning_effort' must be a string"),
                   NULL;
        }
        cJSON_AddItemToObject(vars, "reasoning_effort", marked_copy(srv, effort));
    }
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs"), *it;
    if (kw && !cJSON_IsNull(kw)) {
        if (!cJSON_IsObject(kw)) {
            cJSON_Delete(vars);
            return srv_fail(e, 400, "chat_template_kwargs",
                            "'chat_template_kwargs' must be an object"),
                   NULL;
        }
        cJSON_ArrayForEach(it, kw) { /* as vLLM: they override the variables above */
            cJSON_DeleteItemFromObjectCaseSensitive(vars, it->string);
            cJSON_AddItemToObject(vars, it->string, marked_copy(srv, it));
        }
    }
    return vars;
}

/* continue_final_message: the rendering ends right after the last message's text, so the
 * model continues it (as transformers' apply_chat_template does). */
static int cut_after_final(char *text, size_t *len, const cJSON *msgs, srv_error *e) {
    const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(last, "content");
    const char *s = cJSON_IsString(c) ? c->valuestring : "";
    size_t sl = strlen(s);
    /* the last occurrence of the content, else of the content without surrounding space */
    for (int pass = 0; pass < 2; pass++) {
        const char *from = s;
        size_t n = sl;
        if (pass == 1) {
            while (n && strchr(" \t\r\n", *from)) from++, n--;
            while (n && strchr(" \t\r\n", from[n - 1])) n--;
        }
        if (n > *len) continue;
        for (size_t at = *len - n + 1; at-- > 0;)
            if (!memcmp(text + at, from, n)) {
                *len = at + n;
                text[*len] = 0;
                return 0;
            }
    }
    return srv_fail(e, 400, "continue_final_message",
                    "'continue_final_message' is set but the final message does not appear in "
                    "the rendered chat");
}

int srv_chat_prompt(srv_server *srv, const cJSON *root, int add_special, srv_prompt *p,
                    srv_error *e) {
    if (!srv->tok) return srv_fail(e, 400, NULL, "this model has no tokenizer, so no chat");
    if (!srv->chat_template)
        return srv_fail(e, 400, NULL,
                        "this model has no chat template (tokenizer_config.json has no "
                        "\"chat_template\"); use /v1/completions");
    if (!srv->chat_tmpl)
        return srv_fail(e, 400, NULL, "this model's chat template does not compile: %s",
                        srv->chat_tmpl_error);
    int agp = 1, cont = 0, rc;
    if ((rc = get_flag(root, "continue_final_message", &cont, e)) < 0) return -1;
    if ((rc = get_flag(root, "add_generation_prompt", &agp, e)) < 0) return -1;
    if (cont && agp && rc)
        return srv_fail(e, 400, "continue_final_message",
                        "'continue_final_message' and 'add_generation_prompt' cannot both be true");
    if (cont && !rc) agp = 0;
    cJSON *msgs = normalize_messages(cJSON_GetObjectItemCaseSensitive(root, "messages"), e);
    rc = msgs ? 0 : -1;
    /* echo: the last message, when it is the assistant's, starts the reply (as vLLM) */
    if (!rc) {
        const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(last, "content");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "assistant") && cJSON_IsString(c) &&
            !(p->text = strdup(c->valuestring)))
            rc = srv_fail(e, 500, NULL, "out of memory");
    }
    /* what the client wrote stays text: its special-token texts are marked for the tokenizer */
    const char *const *texts;
    const size_t *lens;
    int n_texts = srp_tokenizer_special_texts(srv->tok, &texts, &lens);
    if (!rc && srv_mark_specials(msgs, texts, lens, n_texts))
        rc = srv_fail(e, 500, NULL, "out of memory");
    cJSON *vars = rc ? NULL : template_vars(srv, root, agp, e);
    char *text = NULL;
    size_t text_len = 0;
    if (!vars) rc = -1;
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
    if (!rc && cont) rc = cut_after_final(text, &text_len, msgs, e);
    cJSON_Delete(msgs);
    cJSON_Delete(vars);
    srp_text_span *plain = NULL;
    int n_plain = 0;
    if (!rc && srv_unmark(text, &text_len, &plain, &n_plain))
        rc = srv_fail(e, 500, NULL, "out of memory");
    if (!rc) rc = srv_check_text_length(srv, text_len, "messages", e);
    if (!rc && srv->cfg.reasoning_parser) { /* a template that opens the reasoning itself */
        size_t n = text_len;
        while (n && strchr(" \t\r\n", text[n - 1])) n--;
        p->think_open = n >= 7 && !memcmp(text + n - 7, "<think>", 7);
    }
    if (!rc) {
        srp_err te = { 0 };
        if (srp_tokenizer_encode_spans(srv->tok, text, text_len, add_special, plain, n_plain,
                                       &p->ids, &p->n, &te))
            rc = srv_fail(e, 400, "messages", "cannot tokenize the rendered chat: %s", te.msg);
        else if (p->n == 0)
            rc = srv_fail(e, 400, "messages", "the rendered chat has no tokens");
    }
    free(plain);
    free(text);
    if (rc) {
        free(p->ids);
        free(p->text);
        memset(p, 0, sizeof *p);
    }
    return rc;
}

/* tool_choice and the other fields that say how the reply is split: with "auto" the calls
 * are parsed, which needs --tool-call-parser (vLLM: --enable-auto-tool-choice); "required"
 * and named functions go to the constrained-decoding hook. */
static int reply_opts(srv_server *srv, const cJSON *root, srv_gen_opts *o, srv_error *e) {
    const cJSON *tools;
    tool_mode mode;
    int v = 1;
    if (check_tools(root, &tools, &mode, e)) return -1;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    if (mode == TOOLS_AUTO && !srv->cfg.tool_parser)
        return srv_fail(e, 400, tc && !cJSON_IsNull(tc) ? "tool_choice" : "tools",
                        "\"auto\" tool choice (the default with 'tools') requires the server to "
                        "be started with --tool-call-parser (one of %s); or send "
                        "'tool_choice': \"none\"",
                        srv_tool_parser_names());
    if (get_flag(root, "parallel_tool_calls", &v, e) < 0) return -1;
    o->first_call_only = !v;
    if (mode == TOOLS_FORCED && o->grammar)
        return srv_fail(e, 400, "tool_choice",
                        "a forced 'tool_choice' cannot be combined with another output constraint "
                        "(response_format, guided_*)");
    if (mode == TOOLS_FORCED && srv_tools_constrain(srv, tools, tc, v, o, e)) return -1;
    if (mode == TOOLS_FORCED || (mode != TOOLS_NONE && srv->cfg.tool_parser)) {
        o->parse_tools = 1;
        if (!(o->tools = cJSON_Duplicate(tools, 1))) return srv_fail(e, 500, NULL, "out of memory");
    }
    v = 1;
    if (get_flag(root, "include_reasoning", &v, e) < 0) return -1;
    o->drop_reasoning = !v;
    return 0;
}

int srv_chat_start(srv_server *srv, const cJSON *root, const srv_peer *peer, const srv_api *api,
                   srv_gen **gen, srv_error *e) {
    srv_gen_opts o;
    if (srv_parse_gen_opts(srv, root, 1, &o, e) || reply_opts(srv, root, &o, e)) {
        srv_gen_opts_free(&o);
        return -1;
    }
    srv_prompt *p = calloc(1, sizeof *p);
    int rc = p ? 0 : srv_fail(e, 500, NULL, "out of memory");
    if (!rc) rc = srv_chat_prompt(srv, root, o.add_special > 0, p, e);
    if (!rc) srv_truncate_prompt(p, o.truncate_prompt);
    if (!rc && !o.echo) {
        free(p->text);
        p->text = NULL;
    }
    if (!rc) rc = srv_check_length(srv, p, 1, &o, -1, "messages", e);
    if (!rc) rc = srv_check_budget(srv, p, 1, &o, e);
    if (rc) {
        if (p) {
            free(p->ids);
            free(p->text);
        }
        free(p);
        srv_gen_opts_free(&o);
        return -1;
    }
    return srv_gen_start(srv, api, p, 1, &o, peer, gen, e);
}

int srv_handle_chat(srv_server *srv, const cJSON *root, const srv_peer *peer, srv_gen **gen,
                    srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (srv_check_fields(root, "chat", e)) return -1;
    return srv_chat_start(srv, root, peer, &srv_api_chat, gen, e);
}

/* --- responses --------------------------------------------------------------------------- */

static cJSON *bytes_json(const char *s, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
    return a;
}

static cJSON *token_lp_json(const srv_gen *g, int32_t id, float lp) {
    cJSON *o = cJSON_CreateObject();
    size_t tl = 0;
    char *t = srv_gen_token_text(g, id, &tl);
    cJSON_AddItemToObject(o, "token", srv_json_text(t, t ? tl : 0));
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON_AddItemToObject(o, "bytes", bytes_json(t, t ? tl : 0));
    free(t);
    return o;
}

static cJSON *chat_logprobs(const srv_gen *g, const srv_choice *c, int from, int to) {
    cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
    for (int k = from; k < to; k++) {
        const srp_token_event *ev = &c->lps[k].ev;
        cJSON *o = token_lp_json(g, ev->token, ev->logprob);
        cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
        for (int i = 0; i < ev->n_top; i++)
            cJSON_AddItemToArray(top, token_lp_json(g, ev->top_ids[i], ev->top_logprobs[i]));
        cJSON_AddItemToArray(content, o);
    }
    return lp;
}

/* The assistant's text: with echo, the request's last (assistant) message first. */
static cJSON *content_json(const srv_gen *g, const char *s, size_t n, int with_echo) {
    const char *echo = with_echo && g->opts.echo ? g->prompts[0].text : NULL;
    size_t el = echo ? strlen(echo) : 0;
    char *t = malloc(el + n + 1);
    if (!t) return cJSON_CreateString("");
    if (el) memcpy(t, echo, el);
    if (n) memcpy(t + el, s, n);
    t[el + n] = 0;
    cJSON *r = srv_json_text(t, el + n);
    free(t);
    return r;
}

/* reasoning_content (vLLM's first name for it) and reasoning (its current one) */
static void add_reasoning(const srv_gen *g, cJSON *o, const char *s, size_t n, int always) {
    if (g->srv->cfg.reasoning_parser == SRV_REASONING_NONE || g->opts.drop_reasoning) return;
    if (!n && !always) return;
    cJSON_AddItemToObject(o, "reasoning_content", n ? srv_json_text(s, n) : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "reasoning", n ? srv_json_text(s, n) : cJSON_CreateNull());
}

static cJSON *tool_call_json(const srv_tool_call *t, int index, int with_args) {
    cJSON *o = cJSON_CreateObject();
    if (index >= 0) cJSON_AddNumberToObject(o, "index", index);
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(o, "function");
    cJSON_AddStringToObject(fn, "name", t->name);
    cJSON_AddStringToObject(fn, "arguments", with_args ? t->arguments : "");
    return o;
}

/* A reply with calls finishes with "tool_calls" (as vLLM, whatever ended it). */
static void split_finish(srv_choice *c, const srv_split *sp) {
    if (c->done && sp->n_calls_ready && c->finish_reason &&
        (!strcmp(c->finish_reason, "stop") || !strcmp(c->finish_reason, "length")))
        c->finish_reason = "tool_calls";
}

/* The message of a split reply: reasoning, content (null when empty) and tool_calls. */
static void split_message(srv_gen *g, srv_choice *c, cJSON *msg) {
    int err = 0;
    srv_split *sp = srv_choice_split(g, c, &err);
    if (err) g->failed = 1;
    const char *echo = g->opts.echo ? g->prompts[0].text : NULL;
    if (sp->content_ready || (echo && echo[0]))
        cJSON_AddItemToObject(msg, "content",
                              content_json(g, sp->out.content, sp->content_ready, 1));
    else
        cJSON_AddNullToObject(msg, "content");
    add_reasoning(g, msg, sp->reason, sp->reason_len, 1);
    if (sp->n_calls_ready) {
        cJSON *calls = cJSON_AddArrayToObject(msg, "tool_calls");
        for (int k = 0; k < sp->n_calls_ready; k++)
            cJSON_AddItemToArray(calls, tool_call_json(&sp->out.calls[k], -1, 1));
    }
    split_finish(c, sp);
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
        if (c->split)
            split_message(g, c, msg);
        else
            cJSON_AddItemToObject(msg, "content", content_json(g, c->text, c->len, 1));
        if (g->opts.logprobs >= 0) {
            int to = c->n_lps;
            while (c->stopped_by_string && to > 0 && c->lps[to - 1].offset >= c->len) to--;
            cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(g, c, 0, to));
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason", c->finish_reason);
        cJSON_AddItemToObject(ch, "stop_reason", srv_stop_reason_json(g, c));
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

/* One chunk of a choice (root and ch consumed), its delta's tool call or NULL. */
static void send_chunk(srv_gen *g, srv_choice *c, cJSON *root, cJSON *ch, int finish_now) {
    if (!cJSON_GetObjectItemCaseSensitive(ch, "logprobs")) cJSON_AddNullToObject(ch, "logprobs");
    if (finish_now) cJSON_AddItemToObject(ch, "stop_reason", srv_stop_reason_json(g, c));
    srv_stream_choice_end(g, c, root, ch, finish_now);
}

/* The stream of a split reply: reasoning and content deltas as they are decided, then each
 * tool call once it is complete (its id, type and name, then its arguments), as OpenAI's
 * tool_calls deltas. */
static void split_chunks(srv_gen *g, srv_choice *c) {
    int err = 0;
    srv_split *sp = srv_choice_split(g, c, &err);
    if (err) g->failed = 1;
    split_finish(c, sp);
    const int drop = g->opts.drop_reasoning;
    int first = !c->role_sent, new_reason = !drop && sp->reason_len > c->reason_sent;
    int new_content = sp->content_ready > c->content_sent,
        new_calls = sp->n_calls_ready > c->calls_sent;
    int to_lps = srv_choice_sendable_lps(c);
    int new_lps = to_lps > c->streamed_lps, finish_now = c->done && !c->chunk_finish_sent;
    int new_ids = g->opts.return_token_ids && c->n_ids > c->streamed_ids;
    if (first || new_reason || new_content || new_lps || new_ids || (finish_now && !new_calls)) {
        cJSON *root = srv_response_base(g, "chat.completion.chunk");
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (first) cJSON_AddStringToObject(delta, "role", "assistant");
        if (new_reason)
            add_reasoning(g, delta, sp->reason + c->reason_sent, sp->reason_len - c->reason_sent,
                          0);
        if (first || new_content)
            cJSON_AddItemToObject(
                delta, "content",
                content_json(g, sp->out.content ? sp->out.content + c->content_sent : "",
                             sp->content_ready - c->content_sent, first));
        if (g->opts.logprobs >= 0 && new_lps)
            cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(g, c, c->streamed_lps, to_lps));
        c->streamed_lps = to_lps;
        c->reason_sent = sp->reason_len;
        c->content_sent = sp->content_ready;
        send_chunk(g, c, root, ch, finish_now && !new_calls);
    }
    for (; c->calls_sent < sp->n_calls_ready; c->calls_sent++) {
        const srv_tool_call *t = &sp->out.calls[c->calls_sent];
        for (int part = 0; part < 2; part++) {
            cJSON *root = srv_response_base(g, "chat.completion.chunk");
            cJSON *ch = cJSON_CreateObject();
            cJSON_AddNumberToObject(ch, "index", c->index);
            cJSON *calls =
                cJSON_AddArrayToObject(cJSON_AddObjectToObject(ch, "delta"), "tool_calls");
            if (part == 0) {
                cJSON_AddItemToArray(calls, tool_call_json(t, c->calls_sent, 0));
            } else {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "index", c->calls_sent);
                cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "arguments",
                                        t->arguments);
                cJSON_AddItemToArray(calls, o);
            }
            send_chunk(g, c, root, ch,
                       finish_now && part == 1 && c->calls_sent + 1 == sp->n_calls_ready);
        }
    }
}

static void chat_chunks(srv_gen *g, int final) {
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        if (c->split) {
            split_chunks(g, c);
            continue;
        }
        int first = !c->role_sent, new_text = c->released > c->streamed;
        int to_lps = srv_choice_sendable_lps(c);
        int new_lps = to_lps > c->streamed_lps, finish_now = c->done && !c->chunk_finish_sent;
        int new_ids = g->opts.return_token_ids && c->n_ids > c->streamed_ids;
        if (!first && !new_text && !new_lps && !finish_now && !new_ids) continue;
        cJSON *root = srv_response_base(g, "chat.completion.chunk");
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (first) cJSON_AddStringToObject(delta, "role", "assistant");
        if (first || new_text)
            cJSON_AddItemToObject(delta, "content",
                                  content_json(g, c->text ? c->text + c->streamed : "",
                                               c->released - c->streamed, first));
        if (g->opts.logprobs >= 0 && new_lps)
            cJSON_AddItemToObject(ch, "logprobs", chat_logprobs(g, c, c->streamed_lps, to_lps));
        else
            cJSON_AddNullToObject(ch, "logprobs");
        c->streamed_lps = to_lps;
        if (finish_now) cJSON_AddItemToObject(ch, "stop_reason", srv_stop_reason_json(g, c));
        srv_stream_choice_end(g, c, root, ch, finish_now);
    }
    if (final && g->opts.include_usage) srv_usage_chunk(g);
}

const srv_api srv_api_chat = { "chatcmpl", "chat.completion.chunk", chat_response, chat_chunks, 0,
                               NULL };
