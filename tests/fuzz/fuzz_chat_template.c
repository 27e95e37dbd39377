/* libFuzzer target: compile and render arbitrary templates against arbitrary contexts.
 *
 * Input: a template, optionally followed by a NUL byte and a JSON object used as the context
 * (its "messages" become the messages). Without one, a fixed chat with tools is used. Build with
 * -DSERPENT_FUZZ=ON and clang; tests/fuzz/README.md says how to run it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

static const char default_ctx[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Hi \\u00e9 \\ud83d\\ude00\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>Hello\", \"tool_calls\":"
    "  [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, "
    "2.5]}}}]},"
    " {\"role\": \"tool\", \"content\": \"{}\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const char *nul = memchr(text, 0, size);
    size_t tlen = nul ? (size_t)(nul - text) : size;
    cJSON *vars = NULL;
    if (nul) {
        size_t jlen = size - tlen - 1;
        char *json = malloc(jlen + 1);
        if (!json) return 0;
        memcpy(json, nul + 1, jlen);
        json[jlen] = 0;
        vars = cJSON_Parse(json);
        free(json);
        if (vars && !cJSON_IsObject(vars)) {
            cJSON_Delete(vars);
            vars = NULL;
        }
    }
    if (!vars) vars = cJSON_Parse(default_ctx);
    cJSON *msgs = cJSON_DetachItemFromObject(vars, "messages");
    srp_chat_template *t = NULL;
    srp_err e;
    if (srp_chat_template_compile(text, tlen, &t, &e) == 0) {
        /* Small limits keep each run fast; hitting one is a normal outcome. */
        srp_chat_limits lim = { .max_output = 1 << 20,
                                .max_memory = 64 << 20,
                                .max_steps = 200000 };
        char *out = NULL;
        size_t n = 0;
        if (srp_chat_template_render(t, msgs, vars, &lim, &out, &n, &e) == 0 && strlen(out) > n)
            abort(); /* the length must cover the whole NUL-terminated output */
        free(out);
        srp_chat_template_free(t);
    }
    cJSON_Delete(msgs);
    cJSON_Delete(vars);
    return 0;
}
