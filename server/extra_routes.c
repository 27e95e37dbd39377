/* The routes besides generation: /tokenize, /detokenize (vLLM's), /v1/models. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static char *print_and_delete(cJSON *root) {
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

int srv_handle_tokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (!srv->tok) return srv_fail(e, 400, NULL, "this model has no tokenizer");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!cJSON_IsString(pr)) return srv_fail(e, 400, "prompt", "'prompt' must be a string");
    int add_special = 1;
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(root, "add_special_tokens");
    if (as && !cJSON_IsNull(as)) {
        if (!cJSON_IsBool(as))
            return srv_fail(e, 400, "add_special_tokens",
                            "'add_special_tokens' must be true or false");
        add_special = cJSON_IsTrue(as);
    }
    int32_t *ids = NULL;
    int n = 0;
    srp_err te = { 0 };
    if (srp_tokenizer_encode(srv->tok, pr->valuestring, strlen(pr->valuestring), add_special, &ids,
                             &n, &te))
        return srv_fail(e, 400, "prompt", "cannot tokenize: %s", te.msg);
    cJSON *out = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(out, "tokens");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(ids[i]));
    free(ids);
    cJSON_AddNumberToObject(out, "count", n);
    cJSON_AddNumberToObject(out, "max_model_len", srv->cfg.max_model_len);
    *body = print_and_delete(out);
    return *body ? 0 : srv_fail(e, 500, NULL, "out of memory");
}

int srv_handle_detokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e) {
    if (srv_check_model(srv, root, e)) return -1;
    if (!srv->tok) return srv_fail(e, 400, NULL, "this model has no tokenizer");
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(root, "tokens"), *t;
    if (!cJSON_IsArray(toks))
        return srv_fail(e, 400, "tokens", "'tokens' must be a list of token ids");
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
    int rc = srp_tokenizer_decode(srv->tok, ids, k, 1, &raw, &len, &te);
    free(ids);
    if (rc) return srv_fail(e, 400, "tokens", "cannot decode: %s", te.msg);
    rc = srv_buf_append_utf8(&text, &tl, &cap, raw, len);
    free(raw);
    if (rc) return srv_fail(e, 500, NULL, "out of memory");
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "prompt", text ? text : "");
    free(text);
    *body = print_and_delete(out);
    return *body ? 0 : srv_fail(e, 500, NULL, "out of memory");
}

char *srv_models_body(const srv_server *srv) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", srv->cfg.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)srv->created);
    cJSON_AddStringToObject(m, "owned_by", "serpent");
    cJSON_AddNumberToObject(m, "max_model_len", srv->cfg.max_model_len);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), m);
    return print_and_delete(root);
}
