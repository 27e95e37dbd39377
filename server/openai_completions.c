/* POST /v1/completions: prompts as text, lists of text, token ids or lists of token ids; the
 * text_completion response and its stream chunks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define MAX_CHOICES 256

static void free_prompts(srv_prompt *p, int n) {
    for (int i = 0; i < n; i++) {
        free(p[i].ids);
        free(p[i].text);
    }
    free(p);
}

static int text_prompt(const srv_server *srv, const char *s, int add_special, srv_prompt *p,
                       srv_error *e) {
    if (!srv->tok)
        return srv_fail(e, 400, "prompt",
                        "this model has no tokenizer: send the prompt as token ids");
    if (srv_check_text_length(srv, strlen(s), "prompt", e)) return -1;
    srp_err te = { 0 };
    if (srp_tokenizer_encode(srv->tok, s, strlen(s), add_special, &p->ids, &p->n, &te))
        return srv_fail(e, 400, "prompt", "cannot tokenize the prompt: %s", te.msg);
    p->text = strdup(s);
    if (!p->text) return srv_fail(e, 500, NULL, "out of memory");
    return 0;
}

static int ids_prompt(const srv_server *srv, const cJSON *arr, srv_prompt *p, srv_error *e) {
    int n = cJSON_GetArraySize(arr), k = 0;
    p->ids = malloc((size_t)(n ? n : 1) * sizeof *p->ids);
    if (!p->ids) return srv_fail(e, 500, NULL, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, arr) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble))
            return srv_fail(e, 400, "prompt", "token ids must be integers");
        if (t->valuedouble < 0 || t->valuedouble >= srv->vocab)
            return srv_fail(e, 400, "prompt", "token id %.0f is outside the vocabulary [0, %d)",
                            t->valuedouble, srv->vocab);
        p->ids[k++] = (int32_t)t->valuedouble;
    }
    p->n = k;
    return 0;
}

/* The text of a token-id prompt, for echo. */
static int decode_prompt(const srv_server *srv, srv_prompt *p, int flags) {
    if (p->text) return 0;
    char *raw = NULL, *out = NULL;
    size_t len = 0, olen = 0, cap = 0;
    if (srv->tok && !srp_tokenizer_decode(srv->tok, p->ids, p->n, flags, &raw, &len, NULL))
        srv_buf_append_utf8(&out, &olen, &cap, raw, len);
    free(raw);
    p->text = out ? out : strdup("");
    return p->text ? 0 : -1;
}

static int parse_prompts(const srv_server *srv, const cJSON *root, int add_special,
                         srv_prompt **out, int *n_out, srv_error *e) {
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!pr || cJSON_IsNull(pr)) return srv_fail(e, 400, "prompt", "'prompt' is required");
    int n = 1;
    enum { ONE_TEXT, ONE_IDS, TEXTS, IDS_LISTS } kind;
    if (cJSON_IsString(pr)) {
        kind = ONE_TEXT;
    } else if (cJSON_IsArray(pr)) {
        n = cJSON_GetArraySize(pr);
        if (n == 0) return srv_fail(e, 400, "prompt", "'prompt' must not be an empty list");
        const cJSON *first = pr->child, *it;
        kind = cJSON_IsNumber(first)   ? ONE_IDS
               : cJSON_IsString(first) ? TEXTS
               : cJSON_IsArray(first)  ? IDS_LISTS
                                       : ONE_TEXT;
        if (kind == ONE_TEXT)
            return srv_fail(e, 400, "prompt",
                            "'prompt' must be a string, a list of strings, a list of token ids "
                            "or a list of lists of token ids");
        cJSON_ArrayForEach(it, pr) {
            int ok = kind == ONE_IDS ? cJSON_IsNumber(it)
                     : kind == TEXTS ? cJSON_IsString(it)
                                     : cJSON_IsArray(it);
            if (!ok) return srv_fail(e, 400, "prompt", "'prompt' mixes strings, ids and lists");
        }
        if (kind == ONE_IDS) n = 1;
    } else {
        return srv_fail(e, 400, "prompt",
                        "'prompt' must be a string, a list of strings, a list of token ids or a "
                        "list of lists of token ids");
    }
    if (n > MAX_CHOICES) return srv_fail(e, 400, "prompt", "at most %d prompts", MAX_CHOICES);
    srv_prompt *p = calloc((size_t)n, sizeof *p);
    if (!p) return srv_fail(e, 500, NULL, "out of memory");
    int rc = 0;
    if (kind == ONE_TEXT)
        rc = text_prompt(srv, pr->valuestring, add_special, &p[0], e);
    else if (kind == ONE_IDS)
        rc = ids_prompt(srv, pr, &p[0], e);
    else {
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, pr) {
            rc = kind == TEXTS ? text_prompt(srv, it->valuestring, add_special, &p[i], e)
                               : ids_prompt(srv, it, &p[i], e);
            if (rc) break;
            i++;
        }
    }
    for (int i = 0; !rc && i < n; i++)
        if (p[i].n == 0) rc = srv_fail(e, 400, "prompt", "the prompt is empty (no tokens)");
    if (rc) {
        free_prompts(p, n);
        return -1;
    }
    *out = p;
    *n_out = n;
    return 0;
}

int srv_handle_completions(srv_server *srv, const cJSON *root, const srv_peer *peer, srv_gen **gen,
                           srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (srv_check_fields(root, "completions", e)) return -1;
    srv_gen_opts o;
    if (srv_parse_gen_opts(srv, root, 0, &o, e)) {
        srv_gen_opts_free(&o);
        return -1;
    }
    srv_prompt *p = NULL;
    int n = 0;
    if (parse_prompts(srv, root, o.add_special != 0, &p, &n, e)) {
        srv_gen_opts_free(&o);
        return -1;
    }
    int rc = n * o.n > MAX_CHOICES
                 ? srv_fail(e, 400, "n", "prompts x n must be at most %d", MAX_CHOICES)
                 : 0;
    for (int i = 0; !rc && !o.echo && i < n; i++) { /* the text is for echo only */
        free(p[i].text);
        p[i].text = NULL;
    }
    for (int i = 0; !rc && o.truncate_prompt && i < n; i++) {
        srv_truncate_prompt(&p[i], o.truncate_prompt);
        free(p[i].text); /* echo shows what the model saw */
        p[i].text = NULL;
    }
    if (!rc) rc = srv_check_length(srv, p, n, &o, 16, "prompt", e);
    if (!rc) rc = srv_check_budget(srv, p, n, &o, e);
    for (int i = 0; !rc && o.echo && i < n; i++)
        if (decode_prompt(srv, &p[i], srv_decode_flags(&o)))
            rc = srv_fail(e, 500, NULL, "out of memory");
    if (rc) {
        free_prompts(p, n);
        srv_gen_opts_free(&o);
        return -1;
    }
    return srv_gen_start(srv, &srv_api_completions, p, n, &o, peer, gen, e);
}

/* --- responses --------------------------------------------------------------------------- */

typedef struct lp_arrays {
    cJSON *obj, *tokens, *token_lps, *tops, *offsets;
} lp_arrays;

static lp_arrays lp_new(void) {
    lp_arrays a;
    a.obj = cJSON_CreateObject();
    a.tokens = cJSON_AddArrayToObject(a.obj, "tokens");
    a.token_lps = cJSON_AddArrayToObject(a.obj, "token_logprobs");
    a.tops = cJSON_AddArrayToObject(a.obj, "top_logprobs");
    a.offsets = cJSON_AddArrayToObject(a.obj, "text_offset");
    return a;
}

/* {"token text": logprob, ...} of the top tokens, the chosen one always listed (as vLLM
 * does). Written by hand: token texts may hold NUL bytes, which cJSON keys cannot. */
static cJSON *top_dict(const srv_gen *g, int32_t token, const srp_token_event *ev) {
    char *buf = NULL, *keys[SRP_MAX_TOP_LOGPROBS + 1];
    size_t len = 0, cap = 0, key_len[SRP_MAX_TOP_LOGPROBS + 1];
    int n_keys = 0, has_chosen = 0, ok = 1;
    for (int i = 0; i <= ev->n_top && ok; i++) {
        if (i == ev->n_top && has_chosen) break;
        int32_t id = i < ev->n_top ? ev->top_ids[i] : token;
        float lp = i < ev->n_top ? ev->top_logprobs[i] : ev->logprob;
        has_chosen |= id == token;
        size_t kl;
        char *k = srv_gen_token_text(g, id, &kl);
        if (!k) continue;
        int dup = 0;
        for (int j = 0; j < n_keys; j++) dup |= key_len[j] == kl && !memcmp(keys[j], k, kl);
        if (dup) {
            free(k);
            continue;
        }
        keys[n_keys] = k;
        key_len[n_keys++] = kl;
        char num[40];
        int nl = snprintf(num, sizeof num, ":%.9g", lp);
        if (n_keys > 1) ok = srv_buf_append_utf8(&buf, &len, &cap, ",", 1) == 0;
        ok = ok && srv_json_quote(&buf, &len, &cap, k, kl) == 0;
        ok = ok && srv_buf_append_utf8(&buf, &len, &cap, num, (size_t)nl) == 0;
    }
    for (int j = 0; j < n_keys; j++) free(keys[j]);
    size_t need = len + 3;
    char *obj = ok ? malloc(need) : NULL;
    cJSON *r = NULL;
    if (obj) {
        snprintf(obj, need, "{%s}", buf ? buf : "");
        r = cJSON_CreateRaw(obj);
        free(obj);
    }
    free(buf);
    return r ? r : cJSON_CreateObject();
}

/* One token's entry; ev NULL for the first prompt token (nothing predicts it). offset is in
 * characters of the returned text, as vLLM's (Python string) offsets. */
static void lp_add(const srv_gen *g, lp_arrays *a, int32_t token, const srp_token_event *ev,
                   size_t offset) {
    size_t tl;
    char *t = srv_gen_token_text(g, token, &tl);
    cJSON_AddItemToArray(a->tokens, srv_json_text(t, t ? tl : 0));
    free(t);
    cJSON_AddItemToArray(a->offsets, cJSON_CreateNumber((double)offset));
    if (!ev) {
        cJSON_AddItemToArray(a->token_lps, cJSON_CreateNull());
        cJSON_AddItemToArray(a->tops, cJSON_CreateNull());
        return;
    }
    cJSON_AddItemToArray(a->token_lps, cJSON_CreateNumber(ev->logprob));
    cJSON_AddItemToArray(a->tops, top_dict(g, token, ev));
}

/* Prompt tokens' entries for echo. A token's offset is where its text starts in the echoed
 * prompt: the characters the prompt's tokens before it decode to (never past the text). */
static void lp_add_prompt(const srv_gen *g, lp_arrays *a, const srv_prompt *p) {
    const size_t total = p->text ? srv_utf8_count(p->text, strlen(p->text)) : 0;
    srp_detok *d = NULL;
    if (g->srv->tok) srp_detok_new(g->srv->tok, srv_decode_flags(&g->opts), &d, NULL);
    size_t off = 0;
    for (int i = 0; i < p->n; i++) {
        const srp_token_event *ev = i > 0 && i - 1 < p->n_lp ? &p->lp[i - 1] : NULL;
        lp_add(g, a, p->ids[i], ev, off < total ? off : total);
        const char *s;
        size_t n;
        if (d && !srp_detok_push(d, p->ids[i], &s, &n, NULL)) off += srv_utf8_count(s, n);
    }
    srp_detok_free(d);
}

/* Characters of the echoed prompt (the base of the generated tokens' offsets). */
static size_t echo_chars(const srv_gen *g, const srv_prompt *p) {
    return g->opts.echo && p->text ? srv_utf8_count(p->text, strlen(p->text)) : 0;
}

/* Generated tokens [from, to) of a choice; *byte, *chars: a cursor into the choice's text that
 * only moves forward (offsets never decrease). */
static void lp_add_generated(const srv_gen *g, lp_arrays *a, const srv_choice *c, int from, int to,
                             size_t base, size_t *byte, size_t *chars) {
    for (int k = from; k < to; k++) {
        size_t off = c->lps[k].offset;
        if (off > c->len) off = c->len;
        if (off > *byte) {
            *chars += srv_utf8_count(c->text + *byte, off - *byte);
            *byte = off;
        }
        lp_add(g, a, c->lps[k].ev.token, &c->lps[k].ev, base + *chars);
    }
}

static void add_finish(const srv_gen *g, const srv_choice *c, cJSON *ch) {
    cJSON_AddStringToObject(ch, "finish_reason", c->finish_reason);
    cJSON_AddItemToObject(ch, "stop_reason", srv_stop_reason_json(g, c));
}

static char *completion_response(srv_gen *g) {
    cJSON *root = srv_response_base(g, "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        const srv_prompt *p = &g->prompts[c->prompt_index];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        size_t plen = g->opts.echo && p->text ? strlen(p->text) : 0;
        char *text = malloc(plen + c->len + 1);
        if (text) {
            if (plen) memcpy(text, p->text, plen);
            if (c->len) memcpy(text + plen, c->text, c->len);
            text[plen + c->len] = 0;
        }
        cJSON_AddItemToObject(ch, "text", srv_json_text(text, text ? plen + c->len : 0));
        free(text);
        if (g->opts.logprobs >= 0) {
            lp_arrays a = lp_new();
            if (g->opts.echo) lp_add_prompt(g, &a, p);
            int to = c->n_lps;
            while (c->stopped_by_string && to > 0 && c->lps[to - 1].offset >= c->len) to--;
            size_t byte = 0, chars = 0;
            lp_add_generated(g, &a, c, 0, to, echo_chars(g, p), &byte, &chars);
            cJSON_AddItemToObject(ch, "logprobs", a.obj);
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
        add_finish(g, c, ch);
        if (g->opts.return_token_ids) {
            cJSON_AddItemToObject(ch, "prompt_token_ids", srv_ids_json(p->ids, p->n));
            cJSON_AddItemToObject(ch, "token_ids", srv_ids_json(c->ids, c->n_ids));
        }
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_AddItemToObject(root, "usage", srv_usage_json(g));
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Streamed echo with logprobs waits for the prompt's logprobs (the first choice of each prompt
 * computes them), so the first chunk carries them as the whole reply does. */
static int echo_ready(const srv_gen *g, const srv_prompt *p) {
    return !(g->opts.echo && g->opts.logprobs >= 0) || p->n_lp >= p->n - 1;
}

static void completion_chunks(srv_gen *g, int final) {
    for (int i = 0; i < g->n_choices; i++) {
        srv_choice *c = &g->choices[i];
        const srv_prompt *p = &g->prompts[c->prompt_index];
        if (!c->role_sent && !echo_ready(g, p) && !c->done) continue;
        int echo_now = g->opts.echo && !c->role_sent;
        int to_lps = srv_choice_sendable_lps(c);
        int new_text = c->released > c->streamed, new_lps = to_lps > c->streamed_lps;
        int finish_now = c->done && !c->chunk_finish_sent;
        int new_ids = g->opts.return_token_ids && c->n_ids > c->streamed_ids;
        if (!echo_now && !new_text && !new_lps && !finish_now && !new_ids) continue;
        cJSON *root = srv_response_base(g, "text_completion");
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", c->index);
        size_t plen = echo_now && p->text ? strlen(p->text) : 0;
        size_t dlen = c->released - c->streamed;
        char *text = malloc(plen + dlen + 1);
        if (text) {
            if (plen) memcpy(text, p->text, plen);
            memcpy(text + plen, c->text ? c->text + c->streamed : "", dlen);
            text[plen + dlen] = 0;
        }
        cJSON_AddItemToObject(ch, "text", srv_json_text(text, text ? plen + dlen : 0));
        free(text);
        if (g->opts.logprobs >= 0) {
            lp_arrays a = lp_new();
            if (echo_now) lp_add_prompt(g, &a, p);
            lp_add_generated(g, &a, c, c->streamed_lps, to_lps, echo_chars(g, p), &c->lp_byte,
                             &c->lp_chars);
            cJSON_AddItemToObject(ch, "logprobs", a.obj);
        } else {
            cJSON_AddNullToObject(ch, "logprobs");
        }
        c->streamed_lps = to_lps;
        if (finish_now) cJSON_AddItemToObject(ch, "stop_reason", srv_stop_reason_json(g, c));
        srv_stream_choice_end(g, c, root, ch, finish_now);
    }
    if (final && g->opts.include_usage) srv_usage_chunk(g);
}

const srv_api srv_api_completions = {
    "cmpl", "text_completion", completion_response, completion_chunks, 0, NULL
};
