/* TESTS ONLY: a stand-in for the Jinja renderer (srp_chat_template_render, server/jinja_*.c)
 * while that is not built in. It renders exactly one template, the one in
 * tests/server/model/tokenizer_config.json, and refuses any other, so the chat endpoint can be
 * tested end to end. It is linked into serpent_chat_test_server only, never into serpent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "status.h"

static const char *const test_template =
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + "
    "message['content'] | trim + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|assistant|>\n' }}{% endif %}";

static int append(char **buf, size_t *len, const char *s, size_t n) {
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb) return -1;
    memcpy(nb + *len, s, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
    return 0;
}

int srp_chat_template_render(const char *tmpl, const cJSON *messages, const cJSON *vars, char **out,
                             srp_err *e);

int srp_chat_template_render(const char *tmpl, const cJSON *messages, const cJSON *vars, char **out,
                             srp_err *e) {
    if (strcmp(tmpl, test_template))
        return srp_err_set(e, SRP_EUNSUPPORTED, "the test renderer knows only the test template");
    char *buf = NULL;
    size_t len = 0;
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(vars, "bos_token"), *m;
    if (cJSON_IsString(bos)) append(&buf, &len, bos->valuestring, strlen(bos->valuestring));
    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        const char *c = cJSON_IsString(content) ? content->valuestring : "";
        size_t cl = strlen(c);
        while (cl && strchr(" \t\r\n", c[cl - 1])) cl--;
        while (cl && strchr(" \t\r\n", *c)) c++, cl--;
        append(&buf, &len, "<|", 2);
        append(&buf, &len, role->valuestring, strlen(role->valuestring));
        append(&buf, &len, "|>\n", 3);
        append(&buf, &len, c, cl);
        append(&buf, &len, "\n", 1);
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(vars, "add_generation_prompt")))
        append(&buf, &len, "<|assistant|>\n", 14);
    if (!buf) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    *out = buf;
    return 0;
}
