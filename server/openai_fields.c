/* Which request fields serpent honours, ignores or refuses. Nothing a client asks for is
 * dropped silently: a field that would change the answer and that serpent does not implement
 * is a 400 naming it; the fields serpent ignores are those vLLM ignores too (the README lists
 * them); a field nobody defines is logged once and ignored, as vLLM does. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

enum { COMPL = 1, CHAT = 2, BOTH = 3, RESP = 4, ALL = 7, CHAT_RESP = 6 };

/* USED: parsed by the endpoint. IGNORED: accepted, no effect (vLLM ignores it too). REJECT: a
 * 400 unless the value means "off" (ok() says which values do; NULL: null only). */
typedef enum { USED, IGNORED, REJECT } disposition;

typedef struct field_rule {
    const char *name;
    int api;
    disposition d;
    int (*ok)(const cJSON *root, const cJSON *v);
    const char *why; /* for REJECT: what the message says */
} field_rule;

static int is_false(const cJSON *root, const cJSON *v) {
    (void)root;
    return cJSON_IsFalse(v);
}

static int is_zero(const cJSON *root, const cJSON *v) {
    (void)root;
    return cJSON_IsNumber(v) && v->valuedouble == 0;
}

static int empty_string(const cJSON *root, const cJSON *v) {
    (void)root;
    return cJSON_IsString(v) && !v->valuestring[0];
}

static int empty_list(const cJSON *root, const cJSON *v) {
    (void)root;
    return cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0;
}

/* best_of = n (or 1) draws exactly the choices returned: nothing to pick from. */
static int best_of_is_n(const cJSON *root, const cJSON *v) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "n");
    double nv = cJSON_IsNumber(n) ? n->valuedouble : 1;
    return cJSON_IsNumber(v) && (v->valuedouble == 1 || v->valuedouble == nv);
}

static int text_only(const cJSON *root, const cJSON *v) {
    (void)root;
    const cJSON *m;
    if (!cJSON_IsArray(v)) return 0;
    cJSON_ArrayForEach(m, v) if (!cJSON_IsString(m) || strcmp(m->valuestring, "text")) return 0;
    return 1;
}

static int is_disabled(const cJSON *root, const cJSON *v) {
    (void)root;
    return cJSON_IsString(v) && !strcmp(v->valuestring, "disabled");
}

static int function_call_none(const cJSON *root, const cJSON *v) {
    (void)root;
    return cJSON_IsString(v) && !strcmp(v->valuestring, "none");
}

static const field_rule rules[] = {
    /* OpenAI's parameters */
    { "model", ALL, USED, NULL, NULL },
    { "prompt", COMPL, USED, NULL, NULL },
    { "messages", CHAT, USED, NULL, NULL },
    { "echo", BOTH, USED, NULL, NULL },
    { "frequency_penalty", ALL, USED, NULL, NULL },
    { "presence_penalty", ALL, USED, NULL, NULL },
    { "logit_bias", BOTH, USED, NULL, NULL },
    { "logprobs", BOTH, USED, NULL, NULL },
    { "top_logprobs", CHAT, USED, NULL, NULL },
    { "max_tokens", BOTH, USED, NULL, NULL },
    { "max_completion_tokens", CHAT, USED, NULL, NULL },
    { "n", BOTH, USED, NULL, NULL },
    { "seed", ALL, USED, NULL, NULL },
    { "stop", BOTH, USED, NULL, NULL },
    { "stream", ALL, USED, NULL, NULL },
    { "stream_options", BOTH, USED, NULL, NULL },
    { "temperature", ALL, USED, NULL, NULL },
    { "top_p", ALL, USED, NULL, NULL },
    { "tools", CHAT_RESP, USED, NULL, NULL }, /* rendered; calls parsed with tool_choice auto */
    { "tool_choice", CHAT_RESP, USED, NULL, NULL }, /* checked with tools (openai_chat.c) */
    { "response_format", BOTH, USED, NULL, NULL },  /* structured.c */
    { "reasoning_effort", CHAT, USED, NULL, NULL }, /* a chat template variable */
    { "user", ALL, IGNORED, NULL, NULL },
    { "metadata", CHAT_RESP, IGNORED, NULL, NULL },
    { "store", CHAT, IGNORED, NULL, NULL },
    { "store", RESP, REJECT, is_false,
      "true is not supported: serpent stores no responses (send false or leave it out)" },
    { "service_tier", ALL, IGNORED, NULL, NULL },
    { "parallel_tool_calls", CHAT_RESP, USED, NULL, NULL }, /* false: the first call only */
    { "prediction", CHAT, IGNORED, NULL, NULL },
    { "prompt_cache_key", CHAT_RESP, IGNORED, NULL, NULL },
    { "safety_identifier", CHAT_RESP, IGNORED, NULL, NULL },
    { "verbosity", CHAT, IGNORED, NULL, NULL },
    { "suffix", COMPL, REJECT, empty_string, "is not supported (no fill-in-the-middle)" },
    { "best_of", BOTH, REJECT, best_of_is_n,
      "other than 1 or n is not supported (no server-side best-of)" },
    { "modalities", CHAT, REJECT, text_only, "other than [\"text\"] is not supported" },
    { "audio", CHAT, REJECT, NULL, "is not supported (text only)" },
    { "functions", CHAT, REJECT, empty_list, "is not supported (use tools)" },
    { "function_call", CHAT, REJECT, function_call_none, "is not supported (use tools)" },
    { "web_search_options", CHAT, REJECT, NULL, "is not supported (no web search)" },
    /* the Responses API's (openai_responses.c turns them into chat's). store: OpenAI's
     * default is true and its client does not send it; serpent stores nothing (as vLLM
     * without a response store), so any value is accepted, and previous_response_id and
     * background, which need a store, are refused. */
    { "input", RESP, USED, NULL, NULL },
    { "instructions", RESP, USED, NULL, NULL },
    { "max_output_tokens", RESP, USED, NULL, NULL },
    { "text", RESP, USED, NULL, NULL },      /* format text; json_schema: the hook */
    { "reasoning", RESP, USED, NULL, NULL }, /* effort: the reasoning_effort variable */
    { "include", RESP, IGNORED, NULL, NULL },
    { "stream_options", RESP, IGNORED, NULL, NULL }, /* include_obfuscation only */
    { "previous_response_id", RESP, REJECT, NULL,
      "is not supported: serpent stores no responses; send the whole conversation as input" },
    { "conversation", RESP, REJECT, NULL,
      "is not supported: serpent stores no conversations; send the whole conversation as input" },
    { "background", RESP, REJECT, is_false, "is not supported (no background responses)" },
    { "truncation", RESP, REJECT, is_disabled, "other than \"disabled\" is not supported" },
    { "top_logprobs", RESP, REJECT, is_zero, "is not supported on /v1/responses" },
    { "max_tool_calls", RESP, REJECT, NULL, "is not supported" },
    { "prompt", RESP, REJECT, NULL, "is not supported (no stored prompts)" },
    /* vLLM's extra parameters */
    { "top_k", ALL, USED, NULL, NULL },
    { "min_p", ALL, USED, NULL, NULL },
    { "repetition_penalty", ALL, USED, NULL, NULL },
    { "stop_token_ids", BOTH, USED, NULL, NULL },
    { "include_stop_str_in_output", BOTH, USED, NULL, NULL },
    { "ignore_eos", BOTH, USED, NULL, NULL },
    { "min_tokens", BOTH, USED, NULL, NULL },
    { "skip_special_tokens", BOTH, USED, NULL, NULL },
    { "spaces_between_special_tokens", BOTH, USED, NULL, NULL },
    { "truncate_prompt_tokens", BOTH, USED, NULL, NULL },
    { "add_special_tokens", BOTH, USED, NULL, NULL },
    { "add_generation_prompt", CHAT, USED, NULL, NULL },
    { "continue_final_message", CHAT, USED, NULL, NULL },
    { "chat_template_kwargs", CHAT_RESP, USED, NULL, NULL },
    { "documents", CHAT, USED, NULL, NULL },
    { "return_tokens_as_token_ids", BOTH, USED, NULL, NULL },
    { "return_token_ids", BOTH, USED, NULL, NULL },
    { "use_beam_search", BOTH, REJECT, is_false, "is not supported (no beam search)" },
    { "length_penalty", BOTH, IGNORED, NULL, NULL }, /* beam search only, in vLLM too */
    { "priority", BOTH, REJECT, is_zero,
      "other than 0 is not supported (first come, first served)" },
    { "request_id", ALL, IGNORED, NULL, NULL },
    { "cache_salt", BOTH, IGNORED, NULL, NULL },          /* no prefix cache to salt */
    { "include_reasoning", CHAT_RESP, USED, NULL, NULL }, /* false: reasoning dropped */
    { "mm_processor_kwargs", CHAT, IGNORED, NULL, NULL }, /* text-only models */
    { "prompt_logprobs", BOTH, REJECT, NULL, "is not supported (use echo with logprobs)" },
    { "allowed_token_ids", BOTH, REJECT, NULL, "is not supported (use logit_bias)" },
    { "bad_words", BOTH, REJECT, empty_list, "is not supported" },
    { "logits_processors", BOTH, REJECT, NULL, "is not supported" },
    { "chat_template", CHAT, REJECT, NULL,
      "is not accepted: the model's own chat template is used (as vLLM without "
      "--trust-request-chat-template)" },
    { "guided_json", BOTH, USED, NULL, NULL },
    { "guided_regex", BOTH, USED, NULL, NULL },
    { "guided_choice", BOTH, USED, NULL, NULL },
    { "guided_grammar", BOTH, USED, NULL, NULL },
    /* serpent has one grammar engine; any backend named constrains the reply the same way */
    { "guided_decoding_backend", BOTH, IGNORED, NULL, NULL },
    { "guided_whitespace_pattern", BOTH, USED, NULL, NULL },
    { "structural_tag", BOTH, REJECT, NULL, "is not supported (structural tags)" },
    { "structured_outputs", BOTH, USED, NULL, NULL },
    { "prompt_embeds", COMPL, REJECT, NULL, "is not supported" },
    { "kv_transfer_params", BOTH, REJECT, NULL, "is not supported (no disaggregated serving)" },
    { "vllm_xargs", BOTH, REJECT, NULL, "is not supported" },
};

/* Unknown names are logged once each (a bounded set, so no request can grow it). */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static char seen[64][48];
static int n_seen;

static void log_unknown(const char *api, const char *name) {
    pthread_mutex_lock(&seen_mu);
    int found = 0;
    for (int i = 0; i < n_seen && !found; i++) found = !strncmp(seen[i], name, sizeof seen[i] - 1);
    if (!found && n_seen < 64) {
        snprintf(seen[n_seen++], sizeof seen[0], "%s", name);
        char shown[48];
        size_t k = 0;
        for (const char *p = name; *p && k + 1 < sizeof shown; p++)
            shown[k++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        shown[k] = 0;
        fprintf(stderr, "serpent: %s request: unknown field '%s' ignored (logged once)\n", api,
                shown);
    }
    pthread_mutex_unlock(&seen_mu);
}

int srv_check_fields(const cJSON *root, const char *api, srv_error *e) {
    const int which = !strcmp(api, "chat") ? CHAT : !strcmp(api, "responses") ? RESP : COMPL;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        const field_rule *r = NULL;
        for (size_t i = 0; i < sizeof rules / sizeof rules[0] && !r; i++)
            if ((rules[i].api & which) && !strcmp(rules[i].name, it->string)) r = &rules[i];
        if (!r) { /* another endpoint's field counts as unknown here */
            log_unknown(api, it->string);
            continue;
        }
        if (r->d != REJECT || cJSON_IsNull(it) || (r->ok && r->ok(root, it))) continue;
        return srv_fail(e, 400, r->name, "'%s' %s", r->name, r->why);
    }
    return 0;
}
