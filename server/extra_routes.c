/* The routes besides generation: /tokenize, /detokenize (vLLM's), /v1/models and
 * /v1/models/{id}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static char *print_and_delete(cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static int get_flag(const cJSON *root, const char *name, int def, int *out, srv_error *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = def;
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it)) return srv_fail(e, 400, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(it);
    return 0;
}

/* vLLM's /tokenize: a "prompt" as completions reads it, or "messages" rendered as chat does
 * (add_special_tokens defaults to true for a prompt and false for messages, as vLLM). */
int srv_handle_tokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (!srv->tok) return srv_fail(e, 400, NULL, "this model has no tokenizer");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    int chat = msgs && !cJSON_IsNull(msgs);
    if (chat && pr && !cJSON_IsNull(pr))
        return srv_fail(e, 400, "prompt", "give 'prompt' or 'messages', not both");
    if (!chat && !cJSON_IsString(pr))
        return srv_fail(e, 400, "prompt", "'prompt' must be a string");
    int add_special, strs;
    if (get_flag(root, "add_special_tokens", !chat, &add_special, e) ||
        get_flag(root, "return_token_strs", 0, &strs, e))
        return -1;
    srv_prompt p = { 0 };
    if (chat) {
        if (srv_chat_prompt(srv, root, add_special, &p, e)) return -1;
        free(p.text);
    } else {
        srp_err te = { 0 };
        if (srp_tokenizer_encode(srv->tok, pr->valuestring, strlen(pr->valuestring), add_special,
                                 &p.ids, &p.n, &te))
            return srv_fail(e, 400, "prompt", "cannot tokenize: %s", te.msg);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", p.n);
    cJSON_AddNumberToObject(out, "max_model_len", srv->cfg.max_model_len);
    cJSON_AddItemToObject(out, "tokens", srv_ids_json(p.ids, p.n));
    if (strs) {
        cJSON *a = cJSON_AddArrayToObject(out, "token_strs");
        for (int i = 0; i < p.n; i++) {
            size_t tl = 0;
            char *t = srv_token_text(srv, p.ids[i], &tl);
            cJSON_AddItemToArray(a, srv_json_text(t, t ? tl : 0));
            free(t);
        }
    }
    free(p.ids);
    *body = print_and_delete(out);
    return *body ? 0 : srv_fail(e, 500, NULL, "out of memory");
}

int srv_handle_detokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (!srv->tok) return srv_fail(e, 400, NULL, "this model has no tokenizer");
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(root, "tokens"), *t;
    if (!cJSON_IsArray(toks))
        return srv_fail(e, 400, "tokens", "'tokens' must be a list of token ids");
    int skip, spaces;
    if (get_flag(root, "skip_special_tokens", 1, &skip, e) ||
        get_flag(root, "spaces_between_special_tokens", 1, &spaces, e))
        return -1;
    int n = cJSON_GetArraySize(toks), k = 0;
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    if (!ids) return srv_fail(e, 500, NULL, "out of memory");
    const int vocab = srp_tokenizer_vocab_size(srv->tok);
    cJSON_ArrayForEach(t, toks) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble >= vocab) {
            free(ids);
            return srv_fail(e, 400, "tokens", "'tokens' must hold token ids in [0, %d)", vocab);
        }
        ids[k++] = (int32_t)t->valuedouble;
    }
    char *raw = NULL, *text = NULL;
    size_t len = 0, tl = 0, cap = 0;
    srp_err te = { 0 };
    int flags =
        (skip ? SRP_DECODE_SKIP_SPECIAL : 0) | (spaces ? SRP_DECODE_SPACES_BETWEEN_SPECIAL : 0);
    int rc = srp_tokenizer_decode(srv->tok, ids, k, flags, &raw, &len, &te);
    free(ids);
    if (rc) return srv_fail(e, 400, "tokens", "cannot decode: %s", te.msg);
    rc = srv_buf_append_utf8(&text, &tl, &cap, raw, len);
    free(raw);
    if (rc) return srv_fail(e, 500, NULL, "out of memory");
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "prompt", srv_json_text(text ? text : "", text ? tl : 0));
    free(text);
    *body = print_and_delete(out);
    return *body ? 0 : srv_fail(e, 500, NULL, "out of memory");
}

static cJSON *model_card(const srv_server *srv) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", srv->cfg.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)srv->created);
    cJSON_AddStringToObject(m, "owned_by", "serpent");
    cJSON_AddStringToObject(m, "root", srv->cfg.model_path);
    cJSON_AddNullToObject(m, "parent");
    cJSON_AddNumberToObject(m, "max_model_len", srv->cfg.max_model_len);
    return m;
}

char *srv_models_body(const srv_server *srv) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), model_card(srv));
    return print_and_delete(root);
}

int srv_model_body(const srv_server *srv, const char *id, char **body, srv_error *e) {
    if (strcmp(id, srv->cfg.model_name) && strcmp(id, srv->cfg.model_path)) {
        e->code = "model_not_found";
        return srv_fail(e, 404, "model", "The model '%.200s' does not exist", id);
    }
    *body = print_and_delete(model_card(srv));
    return *body ? 0 : srv_fail(e, 500, NULL, "out of memory");
}
