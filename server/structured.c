/* Structured output: the request fields that constrain a reply to a grammar (OpenAI's
 * response_format, vLLM's guided_* and structured_outputs), compiled through engine/grammar and
 * kept in a small cache, since clients send the same schema with every call. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

/* --- the cache: the last SRV_GRAMMAR_CACHE compiled grammars, by kind, source and replica ---
 *
 * A compiled grammar computes one mask at a time (its matchers share its stacks and cached
 * masks under one lock), while the scheduler computes a step's masks on several threads. So a
 * source is compiled into a few replicas, and requests take them in turn: requests of one
 * replica share its cache, replicas compute in parallel. */

typedef struct cached_grammar {
    char kind;
    int replica;
    char *src;
    size_t len;
    srp_grammar *g;
    unsigned long used;
} cached_grammar;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cached_grammar cache[SRV_GRAMMAR_CACHE];
static unsigned long cache_clock;

/* A cached grammar grows as requests explore it (its stacks and cached masks); one grown past
 * SRV_GRAMMAR_MAX_BYTES leaves the cache (requests holding it keep it) and is compiled afresh,
 * so the cache holds at most SRV_GRAMMAR_CACHE times that. */
static srp_grammar *cache_find(char kind, int replica, const char *src, size_t len) {
    srp_grammar *g = NULL;
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < SRV_GRAMMAR_CACHE && !g; i++)
        if (cache[i].g && cache[i].kind == kind && cache[i].replica == replica &&
            cache[i].len == len && !memcmp(cache[i].src, src, len)) {
            if (srp_grammar_memory(cache[i].g) > SRV_GRAMMAR_MAX_BYTES) {
                srp_grammar_unref(cache[i].g);
                free(cache[i].src);
                memset(&cache[i], 0, sizeof cache[i]);
                break;
            }
            cache[i].used = ++cache_clock;
            g = srp_grammar_ref(cache[i].g);
        }
    pthread_mutex_unlock(&cache_mu);
    return g;
}

static void cache_put(char kind, int replica, const char *src, size_t len, srp_grammar *g) {
    char *copy = malloc(len + 1);
    if (!copy) return;
    memcpy(copy, src, len);
    copy[len] = 0;
    pthread_mutex_lock(&cache_mu);
    int lru = 0;
    for (int i = 1; i < SRV_GRAMMAR_CACHE; i++)
        if (cache[i].used < cache[lru].used) lru = i;
    srp_grammar_unref(cache[lru].g);
    free(cache[lru].src);
    cache[lru] = (cached_grammar){ kind, replica, copy, len, srp_grammar_ref(g), ++cache_clock };
    pthread_mutex_unlock(&cache_mu);
}

void srv_grammar_cache_clear(void) {
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < SRV_GRAMMAR_CACHE; i++) {
        srp_grammar_unref(cache[i].g);
        free(cache[i].src);
        memset(&cache[i], 0, sizeof cache[i]);
    }
    pthread_mutex_unlock(&cache_mu);
}

/* kind: 'j' JSON Schema, 'o' any object, 'r' regex, 'g' GBNF, 'c' choices (each ended by a
 * NUL, so an empty choice, last or not, is one too). */
static int compile(char kind, const char *src, size_t len, srp_grammar **out, srp_err *se) {
    switch (kind) {
    case 'j':
        return srp_grammar_json_schema(src, len, out, se);
    case 'o':
        return srp_grammar_json_object(out, se);
    case 'r':
        return srp_grammar_regex(src, len, out, se);
    case 'g':
        return srp_grammar_gbnf(src, len, out, se);
    default: {
        const char *ch[SRV_MAX_CHOICES];
        size_t lens[SRV_MAX_CHOICES];
        int n = 0;
        for (size_t at = 0; at < len && n < SRV_MAX_CHOICES; n++) {
            ch[n] = src + at;
            lens[n] = strlen(src + at);
            at += lens[n] + 1;
        }
        return srp_grammar_choice(ch, lens, n, out, se);
    }
    }
}

/* Half the processors (the others run the backend), at most SRV_GRAMMAR_REPLICAS. */
static int grammar_replicas(void) {
    static atomic_int n;
    int k = atomic_load(&n);
    if (!k) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        k = cpus >= 4 ? (int)(cpus / 2) : 1;
        if (k > SRV_GRAMMAR_REPLICAS) k = SRV_GRAMMAR_REPLICAS;
        atomic_store(&n, k);
    }
    return k;
}

int srv_grammar_get(const srv_server *srv, char kind, const char *src, size_t len,
                    const char *param, srp_grammar **out, srv_error *e) {
    *out = NULL;
    if (!srv->vocab_bytes)
        return srv_fail(e, 400, param,
                        "'%s' needs the model's tokenizer (the model folder has none)", param);
    static atomic_uint next;
    const int replica = (int)(atomic_fetch_add(&next, 1) % (unsigned)grammar_replicas());
    if ((*out = cache_find(kind, replica, src, len))) return 0;
    srp_err se = { 0 };
    int rc = compile(kind, src, len, out, &se);
    if (rc == SRP_ENOMEM) return srv_fail(e, 500, NULL, "out of memory");
    if (rc) return srv_fail(e, 400, param, "'%s': %s", param, se.msg);
    cache_put(kind, replica, src, len, *out);
    return 0;
}

/* --- the request fields ------------------------------------------------------------------- */

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return it && !cJSON_IsNull(it) ? it : NULL;
}

/* A schema given as a JSON value, or as a string holding one (vLLM accepts both). */
static int schema_grammar(const srv_server *srv, const cJSON *schema, const char *param,
                          srp_grammar **out, srv_error *e) {
    if (cJSON_IsString(schema))
        return srv_grammar_get(srv, 'j', schema->valuestring, strlen(schema->valuestring), param,
                               out, e);
    if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema))
        return srv_fail(e, 400, param, "'%s' must be a JSON Schema", param);
    char *text = cJSON_PrintUnformatted(schema);
    if (!text) return srv_fail(e, 500, NULL, "out of memory");
    int rc = srv_grammar_get(srv, 'j', text, strlen(text), param, out, e);
    free(text);
    return rc;
}

static int choice_grammar(const srv_server *srv, const cJSON *list, const char *param,
                          srp_grammar **out, srv_error *e) {
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : 0;
    if (n < 1 || n > SRV_MAX_CHOICES)
        return srv_fail(e, 400, param, "'%s' must be a list of 1 to %d strings", param,
                        SRV_MAX_CHOICES);
    size_t len = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list) {
        if (!cJSON_IsString(c))
            return srv_fail(e, 400, param, "'%s' must be a list of strings", param);
        len += strlen(c->valuestring) + 1;
    }
    char *buf = malloc(len), *at = buf;
    if (!buf) return srv_fail(e, 500, NULL, "out of memory");
    cJSON_ArrayForEach(c, list) {
        size_t k = strlen(c->valuestring) + 1;
        memcpy(at, c->valuestring, k);
        at += k;
    }
    int rc = srv_grammar_get(srv, 'c', buf, len, param, out, e);
    free(buf);
    return rc;
}

static int text_grammar(const srv_server *srv, char kind, const cJSON *v, const char *param,
                        srp_grammar **out, srv_error *e) {
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return srv_fail(e, 400, param, "'%s' must be a non-empty string", param);
    return srv_grammar_get(srv, kind, v->valuestring, strlen(v->valuestring), param, out, e);
}

/* OpenAI's response_format: text, json_object, or json_schema with {"name", "schema",
 * "strict"} (the Responses API's text.format arrives in this form too). */
static int response_format_grammar(const srv_server *srv, const cJSON *rf, const char *param,
                                   srp_grammar **out, srv_error *e) {
    char p[96];
    const cJSON *type = field(rf, "type");
    snprintf(p, sizeof p, "%s.type", param);
    if (!cJSON_IsObject(rf) || !cJSON_IsString(type))
        return srv_fail(e, 400, p, "'%s' must be text, json_object or json_schema", p);
    if (!strcmp(type->valuestring, "text")) return 0;
    if (!strcmp(type->valuestring, "json_object"))
        return srv_grammar_get(srv, 'o', "", 0, param, out, e);
    if (strcmp(type->valuestring, "json_schema"))
        return srv_fail(e, 400, p, "'%s' must be text, json_object or json_schema", p);
    const cJSON *js = field(rf, "json_schema");
    snprintf(p, sizeof p, "%s.json_schema", param);
    if (!cJSON_IsObject(js)) return srv_fail(e, 400, p, "'%s' must be an object", p);
    const cJSON *schema = field(js, "schema");
    snprintf(p + strlen(p), sizeof p - strlen(p), ".schema");
    if (!schema) /* OpenAI: a schema-less json_schema format is any JSON object */
        return srv_grammar_get(srv, 'o', "", 0, param, out, e);
    return schema_grammar(srv, schema, p, out, e);
}

/* One of vLLM's constraints by its structured_outputs name (guided_<name> is the same):
 * json, regex, choice, grammar or json_object; param names it in errors. */
static int constraint(const srv_server *srv, const char *name, const cJSON *v, const char *param,
                      srp_grammar **out, srv_error *e) {
    if (!strcmp(name, "json")) return schema_grammar(srv, v, param, out, e);
    if (!strcmp(name, "regex")) return text_grammar(srv, 'r', v, param, out, e);
    if (!strcmp(name, "choice")) return choice_grammar(srv, v, param, out, e);
    if (!strcmp(name, "grammar")) return text_grammar(srv, 'g', v, param, out, e);
    if (!strcmp(name, "json_object")) {
        if (!cJSON_IsTrue(v)) return srv_fail(e, 400, param, "'%s' must be true", param);
        return srv_grammar_get(srv, 'o', "", 0, param, out, e);
    }
    return srv_fail(e, 400, param, "'%s' is not supported (structural tags, ...)", param);
}

int srv_parse_structured(const srv_server *srv, const cJSON *root, srv_gen_opts *o, srv_error *e) {
    /* the spellings, in vLLM's: one constraint per request */
    static const char *const names[] = {
        "response_format", "guided_json",    "guided_regex",
        "guided_choice",   "guided_grammar", "structured_outputs"
    };
    const cJSON *v[6];
    int given = 0, which = -1;
    for (int i = 0; i < 6; i++) {
        v[i] = field(root, names[i]);
        if (v[i] && !(i == 0 && cJSON_IsObject(v[i]) && cJSON_IsString(field(v[i], "type")) &&
                      !strcmp(field(v[i], "type")->valuestring, "text"))) {
            given++;
            which = i;
        }
    }
    if (given > 1)
        return srv_fail(e, 400, names[which],
                        "only one of response_format, guided_json, guided_regex, guided_choice, "
                        "guided_grammar and structured_outputs may constrain a request");
    const cJSON *ws = field(root, "guided_whitespace_pattern");
    if (ws)
        return srv_fail(e, 400, "guided_whitespace_pattern",
                        "'guided_whitespace_pattern' is not supported (JSON is written "
                        "compact: at most one space between tokens)");
    if (which < 0) return 0;
    if (which == 0) return response_format_grammar(srv, v[0], "response_format", &o->grammar, e);
    if (which < 5) /* guided_<name> */
        return constraint(srv, names[which] + strlen("guided_"), v[which], names[which],
                          &o->grammar, e);
    /* structured_outputs: {"json" | "regex" | "choice" | "grammar" | "json_object": ...} */
    const cJSON *so = v[5];
    if (!cJSON_IsObject(so))
        return srv_fail(e, 400, "structured_outputs", "'structured_outputs' must be an object");
    const cJSON *it, *one = NULL;
    int n = 0;
    cJSON_ArrayForEach(it, so) if (!cJSON_IsNull(it)) n++, one = it;
    if (n != 1)
        return srv_fail(e, 400, "structured_outputs",
                        "'structured_outputs' must hold exactly one of json, regex, choice, "
                        "grammar, json_object");
    char p[64];
    snprintf(p, sizeof p, "structured_outputs.%.40s", one->string);
    return constraint(srv, one->string, one, p, &o->grammar, e);
}

/* --- the vocabulary's bytes ----------------------------------------------------------------- */

/* ids past the tokenizer's (padded embedding rows) and special tokens have no bytes: no grammar
 * allows them */
static int token_bytes(const void *tok, int t, uint8_t *buf, int cap) {
    return srp_tokenizer_token_bytes(tok, t, buf, cap);
}

int srv_vocab_build(srv_server *srv, srp_err *e) {
    return srp_vocab_from(srv->vocab, token_bytes, srv->tok, &srv->vocab_bytes, e);
}
