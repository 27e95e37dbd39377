/* The sampling fields' ranges (server/openai_params.c): values outside them are a 400 naming the
 * field. The penalty bounds keep processed logits finite (issue 11); the rest are vLLM's and
 * OpenAI's. */
#include "server.h"
#include "test.h"

/* Parses body as completions (chat 0) or chat fields; returns the status (200: accepted) and
 * leaves the parameter named in param. */
static int parse(const char *body, int chat, char *param, srv_gen_opts *out) {
    srv_server srv;
    memset(&srv, 0, sizeof srv);
    srv.vocab = 100;
    cJSON *root = cJSON_Parse(body);
    if (!root) return -1;
    srv_gen_opts o;
    srv_error e;
    memset(&e, 0, sizeof e);
    int rc = srv_parse_gen_opts(&srv, root, chat, &o, &e);
    cJSON_Delete(root);
    snprintf(param, 64, "%s", rc ? e.param : "");
    if (!rc && out)
        *out = o;
    else
        srv_gen_opts_free(&o);
    return rc ? e.status : 200;
}

static void rejects(const char *body, const char *param) {
    char got[64];
    for (int chat = 0; chat < 2; chat++) {
        int st = parse(body, chat, got, NULL);
        CHECKF(st == 400 && !strcmp(got, param), "%s: status %d param '%s'", body, st, got);
    }
}

static void accepts(const char *body) {
    char got[64];
    for (int chat = 0; chat < 2; chat++) {
        int st = parse(body, chat, got, NULL);
        CHECKF(st == 200, "%s: status %d param '%s'", body, st, got);
    }
}

/* The reported crash: {"repetition_penalty": 1e-40, "min_p": 0.5} is refused before it reaches
 * the sampler. */
TEST(params_tiny_repetition_penalty_refused) {
    rejects("{\"repetition_penalty\": 1e-40, \"min_p\": 0.5}", "repetition_penalty");
    rejects("{\"repetition_penalty\": 0}", "repetition_penalty");
    rejects("{\"repetition_penalty\": -1}", "repetition_penalty");
    rejects("{\"repetition_penalty\": 0.0099}", "repetition_penalty");
    rejects("{\"repetition_penalty\": 10.5}", "repetition_penalty");
    rejects("{\"repetition_penalty\": 1e400}", "repetition_penalty"); /* inf once parsed */
    rejects("{\"repetition_penalty\": \"1.1\"}", "repetition_penalty");
    accepts("{\"repetition_penalty\": 0.01, \"min_p\": 0.5}");
    accepts("{\"repetition_penalty\": 10}");
    accepts("{\"repetition_penalty\": null}");
    char got[64];
    srv_gen_opts o;
    REQUIRE(parse("{\"repetition_penalty\": 0.01}", 0, got, &o) == 200);
    CHECK(o.sample.repetition_penalty == 0.01f);
    srv_gen_opts_free(&o);
}

TEST(params_penalty_and_sampling_ranges) {
    rejects("{\"presence_penalty\": 2.01}", "presence_penalty");
    rejects("{\"presence_penalty\": -1e300}", "presence_penalty");
    rejects("{\"frequency_penalty\": -2.5}", "frequency_penalty");
    rejects("{\"frequency_penalty\": 1e400}", "frequency_penalty");
    rejects("{\"temperature\": 2.5}", "temperature");
    rejects("{\"temperature\": -1e-30}", "temperature");
    rejects("{\"top_p\": 0}", "top_p");
    rejects("{\"top_p\": 1.0001}", "top_p");
    rejects("{\"min_p\": -0.1}", "min_p");
    rejects("{\"min_p\": 1.5}", "min_p");
    rejects("{\"top_k\": -2}", "top_k");
    rejects("{\"logit_bias\": {\"3\": 101}}", "logit_bias");
    rejects("{\"logit_bias\": {\"3\": -1e400}}", "logit_bias");
    accepts(
        "{\"presence_penalty\": -2, \"frequency_penalty\": 2, \"temperature\": 2, "
        "\"top_p\": 1e-30, \"min_p\": 1, \"top_k\": 2147483647, \"logit_bias\": {\"3\": -100}}");
    accepts("{\"temperature\": 1e-30, \"top_k\": -1, \"min_p\": 0}");
}
