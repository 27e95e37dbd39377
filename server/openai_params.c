/* The request fields completions and chat share: sampling, stop, n, logprobs, streaming. Each
 * field is checked for its type and range and named in the error, as OpenAI does; which fields
 * are rejected or ignored is openai_fields.c's table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

void srv_gen_opts_free(srv_gen_opts *o) {
    free(o->bias_ids);
    free(o->bias);
    for (int i = 0; i < o->n_stop; i++) free(o->stop[i]);
    srp_grammar_unref(o->grammar);
    cJSON_Delete(o->tools);
    memset(o, 0, sizeof *o);
}

/* A present, non-null field or NULL. */
static const cJSON *field(const cJSON *root, const char *name) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    return it && !cJSON_IsNull(it) ? it : NULL;
}

static int get_number(const cJSON *root, const char *name, double lo, double hi, double *v,
                      srv_error *e) {
    const cJSON *it = field(root, name);
    if (!it) return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return srv_fail(e, 400, name, "'%s' must be a number", name);
    if (it->valuedouble < lo || it->valuedouble > hi)
        return srv_fail(e, 400, name, "'%s' must be in [%g, %g], got %g", name, lo, hi,
                        it->valuedouble);
    *v = it->valuedouble;
    return 1;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, long long *v,
                   srv_error *e) {
    const cJSON *it = field(root, name);
    if (!it) return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
        it->valuedouble != floor(it->valuedouble))
        return srv_fail(e, 400, name, "'%s' must be an integer", name);
    if (it->valuedouble < lo || it->valuedouble > hi)
        return srv_fail(e, 400, name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi,
                        it->valuedouble);
    *v = (long long)it->valuedouble;
    return 1;
}

static int get_bool(const cJSON *root, const char *name, int *v, srv_error *e) {
    const cJSON *it = field(root, name);
    if (!it) return 0;
    if (!cJSON_IsBool(it)) return srv_fail(e, 400, name, "'%s' must be true or false", name);
    *v = cJSON_IsTrue(it);
    return 1;
}

int srv_check_model(const srv_server *srv, const cJSON *root, srv_error *e) {
    const cJSON *it = field(root, "model");
    if (!it) return 0;
    if (!cJSON_IsString(it)) return srv_fail(e, 400, "model", "'model' must be a string");
    if (strcmp(it->valuestring, srv->cfg.model_name) &&
        strcmp(it->valuestring, srv->cfg.model_path)) {
        e->code = "model_not_found";
        return srv_fail(e, 404, "model",
                        "The model '%.200s' does not exist; this server serves '%.200s'",
                        it->valuestring, srv->cfg.model_name);
    }
    return 0;
}

static int parse_stop(const cJSON *root, srv_gen_opts *o, srv_error *e) {
    const cJSON *it = field(root, "stop"), *s;
    if (!it) return 0;
    if (cJSON_IsString(it)) {
        if (!it->valuestring[0]) return srv_fail(e, 400, "stop", "'stop' must not be empty");
        o->stop[o->n_stop++] = strdup(it->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(it))
        return srv_fail(e, 400, "stop", "'stop' must be a string or a list of strings");
    if (cJSON_GetArraySize(it) > SRV_MAX_STOP)
        return srv_fail(e, 400, "stop", "'stop' holds at most %d strings", SRV_MAX_STOP);
    cJSON_ArrayForEach(s, it) {
        if (!cJSON_IsString(s) || !s->valuestring[0])
            return srv_fail(e, 400, "stop", "'stop' must hold non-empty strings");
        o->stop[o->n_stop++] = strdup(s->valuestring);
    }
    for (int i = 0; i < o->n_stop; i++)
        if (!o->stop[i]) return srv_fail(e, 500, NULL, "out of memory");
    return 0;
}

static int parse_logit_bias(const srv_server *srv, const cJSON *root, srv_gen_opts *o,
                            srv_error *e) {
    const cJSON *it = field(root, "logit_bias"), *b;
    if (!it) return 0;
    if (!cJSON_IsObject(it))
        return srv_fail(e, 400, "logit_bias", "'logit_bias' must map token ids to numbers");
    int n = cJSON_GetArraySize(it);
    if (n > 1024) return srv_fail(e, 400, "logit_bias", "'logit_bias' holds at most 1024 tokens");
    o->bias_ids = malloc((size_t)(n ? n : 1) * sizeof *o->bias_ids);
    o->bias = malloc((size_t)(n ? n : 1) * sizeof *o->bias);
    if (!o->bias_ids || !o->bias) return srv_fail(e, 500, NULL, "out of memory");
    cJSON_ArrayForEach(b, it) {
        /* plain decimal digits: no sign, no spaces (strtol would take " 5" and "+5") */
        int digits = b->string[0] && strlen(b->string) <= 10;
        for (const char *q = b->string; digits && *q; q++) digits = *q >= '0' && *q <= '9';
        long id = digits ? strtol(b->string, NULL, 10) : -1;
        if (!digits || id < 0 || id >= srv->vocab)
            return srv_fail(e, 400, "logit_bias",
                            "'logit_bias' key '%.40s' is not a token id in [0, %d)", b->string,
                            srv->vocab);
        if (!cJSON_IsNumber(b) || !isfinite(b->valuedouble) || b->valuedouble < -100 ||
            b->valuedouble > 100)
            return srv_fail(e, 400, "logit_bias",
                            "'logit_bias' values must be numbers in [-100, 100]");
        o->bias_ids[o->n_bias] = (int32_t)id;
        o->bias[o->n_bias++] = (float)b->valuedouble;
    }
    return 0;
}

static int parse_stop_ids(const srv_server *srv, const cJSON *root, srv_gen_opts *o, srv_error *e) {
    const cJSON *it = field(root, "stop_token_ids"), *t;
    if (!it) return 0;
    if (!cJSON_IsArray(it))
        return srv_fail(e, 400, "stop_token_ids", "'stop_token_ids' must be a list of token ids");
    if (cJSON_GetArraySize(it) > SRV_MAX_STOP_IDS)
        return srv_fail(e, 400, "stop_token_ids", "'stop_token_ids' holds at most %d ids",
                        SRV_MAX_STOP_IDS);
    cJSON_ArrayForEach(t, it) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble >= srv->vocab)
            return srv_fail(e, 400, "stop_token_ids",
                            "'stop_token_ids' must hold token ids in [0, %d)", srv->vocab);
        o->stop_ids[o->n_stop_ids++] = (int32_t)t->valuedouble;
    }
    return 0;
}

int srv_parse_gen_opts(const srv_server *srv, const cJSON *root, int chat, srv_gen_opts *o,
                       srv_error *e) {
    memset(o, 0, sizeof *o);
    o->n = 1;
    o->max_tokens = -1;
    o->logprobs = -1;
    o->skip_special = 1;
    o->spaces_between_special = 1;
    o->add_special = -1;
    o->sample = (srp_sample_params){ .temperature = 1.0f, .top_p = 1.0f };
    double d;
    long long ll;
    int rc, b = 0;
    if ((rc = get_int(root, "n", 1, SRV_MAX_N, &ll, e)) < 0) return -1;
    if (rc) o->n = (int)ll;
    const char *mt =
        chat && field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    o->max_tokens_field = mt;
    if ((rc = get_int(root, mt, 0, 2147483647.0, &ll, e)) < 0) return -1;
    if (rc) o->max_tokens = (int)ll;
    if ((rc = get_int(root, "min_tokens", 0, 2147483647.0, &ll, e)) < 0) return -1;
    if (rc) o->min_tokens = (int)ll;
    if (o->max_tokens >= 0 && o->min_tokens > o->max_tokens)
        return srv_fail(e, 400, "min_tokens", "'min_tokens' (%d) must not exceed '%s' (%d)",
                        o->min_tokens, mt, o->max_tokens);
    if ((rc = get_number(root, "temperature", 0, 2, &d, e)) < 0) return -1;
    if (rc) o->sample.temperature = (float)d;
    if ((rc = get_number(root, "top_p", 0, 1, &d, e)) < 0) return -1;
    if (rc && d <= 0) return srv_fail(e, 400, "top_p", "'top_p' must be in (0, 1]");
    if (rc) o->sample.top_p = (float)d;
    if ((rc = get_int(root, "top_k", -1, 2147483647.0, &ll, e)) < 0) return -1;
    if (rc) o->sample.top_k = ll < 0 ? 0 : (int)ll;
    if ((rc = get_number(root, "min_p", 0, 1, &d, e)) < 0) return -1;
    if (rc) o->sample.min_p = (float)d;
    if ((rc = get_number(root, "presence_penalty", -2, 2, &d, e)) < 0) return -1;
    if (rc) o->sample.presence_penalty = (float)d;
    if ((rc = get_number(root, "frequency_penalty", -2, 2, &d, e)) < 0) return -1;
    if (rc) o->sample.frequency_penalty = (float)d;
    /* vLLM takes any finite value > 0, but one near 0 divides logits past the float range
     * (issue 11: 1e-40 made them infinite); in [0.01, 10] a logit grows at most 100-fold */
    if ((rc = get_number(root, "repetition_penalty", 0.01, 10, &d, e)) < 0) return -1;
    if (rc) o->sample.repetition_penalty = (float)d;
    const cJSON *seed = field(root, "seed");
    if (seed) {
        if (!cJSON_IsNumber(seed) || !isfinite(seed->valuedouble) ||
            seed->valuedouble != floor(seed->valuedouble) || fabs(seed->valuedouble) > 9.2e18)
            return srv_fail(e, 400, "seed", "'seed' must be an integer");
        o->have_seed = 1;
        o->seed = (uint64_t)(int64_t)seed->valuedouble;
    }
    if (get_bool(root, "stream", &o->stream, e) < 0) return -1;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return srv_fail(e, 400, "stream_options", "'stream_options' must be an object");
        if (!o->stream)
            return srv_fail(e, 400, "stream_options",
                            "'stream_options' can only be given when 'stream' is true");
        if (get_bool(so, "include_usage", &o->include_usage, e) < 0 ||
            get_bool(so, "continuous_usage_stats", &o->continuous_usage, e) < 0) {
            char p[64];
            snprintf(p, sizeof p, "stream_options.%.40s", e->param);
            snprintf(e->param, sizeof e->param, "%s", p);
            return -1;
        }
    }
    if (chat) {
        b = 0;
        if (get_bool(root, "logprobs", &b, e) < 0) return -1;
        if ((rc = get_int(root, "top_logprobs", 0, SRP_MAX_TOP_LOGPROBS, &ll, e)) < 0) return -1;
        if (rc && ll > 0 && !b)
            return srv_fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        if (b) o->logprobs = rc ? (int)ll : 0;
    } else {
        if ((rc = get_int(root, "logprobs", 0, SRP_MAX_TOP_LOGPROBS, &ll, e)) < 0) return -1;
        if (rc) o->logprobs = (int)ll;
    }
    if (get_bool(root, "echo", &o->echo, e) < 0) return -1;
    if (get_bool(root, "ignore_eos", &o->ignore_eos, e) < 0) return -1;
    if (get_bool(root, "return_token_ids", &o->return_token_ids, e) < 0) return -1;
    if (get_bool(root, "return_tokens_as_token_ids", &o->tokens_as_ids, e) < 0) return -1;
    if (get_bool(root, "skip_special_tokens", &o->skip_special, e) < 0) return -1;
    if (get_bool(root, "spaces_between_special_tokens", &o->spaces_between_special, e) < 0)
        return -1;
    if (get_bool(root, "include_stop_str_in_output", &o->include_stop_str, e) < 0) return -1;
    if ((rc = get_bool(root, "add_special_tokens", &b, e)) < 0) return -1;
    if (rc) o->add_special = b;
    if ((rc = get_int(root, "truncate_prompt_tokens", 1, 2147483647.0, &ll, e)) < 0) return -1;
    if (rc) o->truncate_prompt = (int)ll;
    const cJSON *user = field(root, "user");
    if (user && !cJSON_IsString(user)) return srv_fail(e, 400, "user", "'user' must be a string");
    if (parse_stop(root, o, e) < 0) return -1;
    if (parse_stop_ids(srv, root, o, e) < 0) return -1;
    if (parse_logit_bias(srv, root, o, e) < 0) return -1;
    if (srv_parse_structured(srv, root, o, e) < 0) return -1;
    if (!srv->tok) o->return_token_ids = 1; /* no text without a tokenizer */
    return 0;
}

int srv_decode_flags(const srv_gen_opts *o) {
    return (o->skip_special ? SRP_DECODE_SKIP_SPECIAL : 0) |
           (o->spaces_between_special ? SRP_DECODE_SPACES_BETWEEN_SPECIAL : 0);
}
