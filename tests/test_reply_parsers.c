/* The reply parsers (server/tool_parsers.c, server/reply_split.c): each tool-call format,
 * malformed and unfinished calls left as content, several calls, reasoning, and the same
 * result whether the reply comes whole, cut at any byte, or one byte at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply_split.h"
#include "server.h"
#include "test.h"

typedef struct expect {
    const char *reason;  /* NULL: none */
    const char *content; /* what content_ready hands out */
    int n_calls;
    const char *names[4], *args[4];
} expect;

typedef struct setup {
    const char *parser; /* NULL: no tool parser */
    srv_reasoning reasoning;
    int think_open, first_only;
    const cJSON *tools;
} setup;

static void init(srv_split *s, const setup *u) {
    memset(s, 0, sizeof *s);
    s->reasoning = u->reasoning;
    s->think_open = u->think_open;
    s->tools_by = u->parser ? srv_tool_parser_find(u->parser) : NULL;
    s->tools = u->tools;
    s->first_call_only = u->first_only;
}

/* What the split handed out at the end, and whether what it handed out along the way was only
 * ever extended (a stream never takes back what it sent). */
static int check_result(const srv_split *s, const expect *x, const char *how, const char *text) {
    int ok = 1;
    const char *r = s->reason ? s->reason : "";
    if (strcmp(r, x->reason ? x->reason : "") || s->reason_len != strlen(r)) ok = 0;
    size_t cl = strlen(x->content);
    if (s->content_ready != cl || (cl && memcmp(s->out.content, x->content, cl))) ok = 0;
    if (s->n_calls_ready != x->n_calls) ok = 0;
    for (int i = 0; ok && i < x->n_calls; i++)
        if (strcmp(s->out.calls[i].name, x->names[i]) ||
            strcmp(s->out.calls[i].arguments, x->args[i]) ||
            strncmp(s->out.calls[i].id, "call_", 5) || strlen(s->out.calls[i].id) != 29)
            ok = 0;
    if (!ok) {
        fprintf(stderr, "  %s of %s: reason '%s', content '%.*s', %d calls", how, text, r,
                (int)s->content_ready, s->out.content ? s->out.content : "", s->n_calls_ready);
        for (int i = 0; i < s->n_calls_ready; i++)
            fprintf(stderr, " [%s %s]", s->out.calls[i].name, s->out.calls[i].arguments);
        fprintf(stderr, "\n");
    }
    return ok;
}

/* Whole; cut once at every byte; fed one byte at a time (watching that nothing handed out
 * is taken back). */
static int run_case(const setup *u, const char *text, const expect *x) {
    const size_t n = strlen(text);
    int ok = 1;
    srv_split s;
    init(&s, u);
    if (srv_split_feed(&s, text, n, 1)) return 0;
    ok &= check_result(&s, x, "whole", text);
    srv_split_free(&s);
    for (size_t k = 0; k <= n; k++) {
        init(&s, u);
        if (srv_split_feed(&s, text, k, 0)) return 0;
        if (srv_split_feed(&s, text, n, 1)) return 0;
        char how[32];
        snprintf(how, sizeof how, "cut at %zu", k);
        ok &= check_result(&s, x, how, text);
        srv_split_free(&s);
    }
    init(&s, u);
    size_t last_content = 0, last_reason = 0;
    int last_calls = 0, monotone = 1;
    for (size_t k = 0; k <= n; k++) {
        if (srv_split_feed(&s, text, k, k == n)) return 0;
        monotone &= s.content_ready >= last_content && s.reason_len >= last_reason &&
                    s.n_calls_ready >= last_calls;
        last_content = s.content_ready;
        last_reason = s.reason_len;
        last_calls = s.n_calls_ready;
    }
    ok &= check_result(&s, x, "byte by byte", text) && monotone;
    srv_split_free(&s);
    return ok;
}

TEST(server_tool_parser_hermes) {
    setup u = { "hermes", 0, 0, 0, NULL };
    CHECK(run_case(&u, "no calls here", &(expect){ NULL, "no calls here", 0, { 0 }, { 0 } }));
    CHECK(run_case(&u,
                   "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                   "\"Paris\"}}\n</tool_call>",
                   &(expect){ NULL, "", 1, { "get_weather" }, { "{\"city\":\"Paris\"}" } }));
    /* several, with text before and whitespace between */
    CHECK(run_case(&u,
                   "Let me check.\n<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n"
                   "<tool_call>{\"name\":\"b\",\"arguments\":{\"x\":[1,2]}}</tool_call>",
                   &(expect){ NULL, "Let me check.", 2, { "a", "b" }, { "{}", "{\"x\":[1,2]}" } }));
    /* text on both sides of a call keeps its spaces; a reply without calls keeps all */
    CHECK(run_case(&u, "a <tool_call>{\"name\":\"f\"}</tool_call> b\n",
                   &(expect){ NULL, "a  b", 1, { "f" }, { "{}" } }));
    CHECK(run_case(&u, "text\n\n", &(expect){ NULL, "text\n\n", 0, { 0 }, { 0 } }));
    /* malformed JSON, a missing name, an unclosed call: left as content */
    CHECK(
        run_case(&u, "<tool_call>{\"name\": \"a\", </tool_call>",
                 &(expect){ NULL, "<tool_call>{\"name\": \"a\", </tool_call>", 0, { 0 }, { 0 } }));
    CHECK(
        run_case(&u, "<tool_call>{\"arguments\": {}}</tool_call>",
                 &(expect){ NULL, "<tool_call>{\"arguments\": {}}</tool_call>", 0, { 0 }, { 0 } }));
    CHECK(run_case(&u, "x <tool_call>{\"name\": \"a\"",
                   &(expect){ NULL, "x <tool_call>{\"name\": \"a\"", 0, { 0 }, { 0 } }));
    /* a marker's prefix at the end is text once the reply ends */
    CHECK(run_case(&u, "a < b <tool_c", &(expect){ NULL, "a < b <tool_c", 0, { 0 }, { 0 } }));
    /* arguments as a JSON string are taken as they are */
    CHECK(run_case(&u, "<tool_call>{\"name\":\"a\",\"arguments\":\"{\\\"k\\\": 1}\"}</tool_call>",
                   &(expect){ NULL, "", 1, { "a" }, { "{\"k\": 1}" } }));
    /* parallel_tool_calls: false keeps the first */
    setup one = { "hermes", 0, 0, 1, NULL };
    CHECK(run_case(&one,
                   "<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>"
                   "<tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>",
                   &(expect){ NULL, "", 1, { "a" }, { "{}" } }));
    /* without a tool parser, a call is text */
    setup none = { NULL, 0, 0, 0, NULL };
    CHECK(run_case(&none, "<tool_call>{\"name\":\"a\"}</tool_call>",
                   &(expect){ NULL, "<tool_call>{\"name\":\"a\"}</tool_call>", 0, { 0 }, { 0 } }));
}

TEST(server_tool_parser_qwen3_coder) {
    cJSON *tools = cJSON_Parse(
        "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"s\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},"
        "\"x\":{\"type\":\"number\"},\"b\":{\"type\":\"boolean\"},\"o\":{\"type\":\"object\"},"
        "\"l\":{\"type\":[\"array\",\"null\"]}}}}}]");
    REQUIRE(tools);
    setup u = { "qwen3_coder", 0, 0, 0, tools };
    CHECK(run_case(
        &u,
        "<tool_call>\n<function=f>\n<parameter=s>\n42\n</parameter>\n<parameter=n>\n7\n"
        "</parameter>\n<parameter=x>\n2.5\n</parameter>\n<parameter=b>\ntrue\n</parameter>\n"
        "<parameter=o>\n{\"k\": [1]}\n</parameter>\n<parameter=l>\n[1, \"a\"]\n</parameter>\n"
        "</function>\n</tool_call>",
        &(expect){
            NULL,
            "",
            1,
            { "f" },
            { "{\"s\":\"42\",\"n\":7,\"x\":2.5,\"b\":true,\"o\":{\"k\":[1]},\"l\":[1,\"a\"]}" } }));
    /* values that do not fit their type stay strings; unknown parameters are strings; a
     * multi-line string keeps its inner newlines */
    CHECK(run_case(
        &u,
        "Sure.\n<tool_call>\n<function=f>\n<parameter=n>\nseven\n</parameter>\n"
        "<parameter=z>\n{\"a\":1}\n</parameter>\n<parameter=s>\nline 1\nline 2\n</parameter>\n"
        "</function>\n</tool_call>",
        &(expect){ NULL,
                   "Sure.",
                   1,
                   { "f" },
                   { "{\"n\":\"seven\",\"z\":\"{\\\"a\\\":1}\",\"s\":\"line 1\\nline 2\"}" } }));
    /* two calls; a tool the request did not list still parses (its values as strings) */
    CHECK(run_case(
        &u,
        "<tool_call>\n<function=g>\n<parameter=n>\n1\n</parameter>\n</function>\n</tool_call>\n"
        "<tool_call>\n<function=f>\n</function>\n</tool_call>",
        &(expect){ NULL, "", 2, { "g", "f" }, { "{\"n\":\"1\"}", "{}" } }));
    /* no <function=...>: content */
    CHECK(run_case(
        &u, "<tool_call>\n{\"name\":\"f\"}\n</tool_call>",
        &(expect){ NULL, "<tool_call>\n{\"name\":\"f\"}\n</tool_call>", 0, { 0 }, { 0 } }));
    cJSON_Delete(tools);
}

TEST(server_tool_parser_nemotron_v2) {
    setup u = { "nemotron_v2", 0, 0, 0, NULL };
    CHECK(run_case(&u,
                   "<TOOLCALL>[{\"name\": \"a\", \"arguments\": {\"q\": \"x\"}}, {\"name\": \"b\", "
                   "\"arguments\": {}}]</TOOLCALL>",
                   &(expect){ NULL, "", 2, { "a", "b" }, { "{\"q\":\"x\"}", "{}" } }));
    CHECK(run_case(&u, "Hello <TOOLCALL>[]</TOOLCALL>",
                   &(expect){ NULL, "Hello <TOOLCALL>[]</TOOLCALL>", 0, { 0 }, { 0 } }));
    CHECK(run_case(
        &u, "<TOOLCALL>[{\"name\": \"a\"}, {\"nam\": 1}]</TOOLCALL>",
        &(expect){
            NULL, "<TOOLCALL>[{\"name\": \"a\"}, {\"nam\": 1}]</TOOLCALL>", 0, { 0 }, { 0 } }));
    CHECK(srv_tool_parser_find("nemotron_json") == srv_tool_parser_find("nemotron_v2"));
    CHECK(srv_tool_parser_find("nope") == NULL);
}

TEST(server_tool_parser_granite) {
    setup u = { "granite", 0, 0, 0, NULL };
    CHECK(run_case(&u, "<|tool_call|>[{\"name\": \"a\", \"arguments\": {\"k\": 1}}]",
                   &(expect){ NULL, "", 1, { "a" }, { "{\"k\":1}" } }));
    CHECK(run_case(&u,
                   " <tool_call> [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", "
                   "\"arguments\": {}}]\n",
                   &(expect){ NULL, "", 2, { "a", "b" }, { "{}", "{}" } }));
    CHECK(run_case(&u, "[{\"name\": \"a\", \"arguments\": {}}]",
                   &(expect){ NULL, "", 1, { "a" }, { "{}" } }));
    /* text first, or a list that is not calls: all content */
    CHECK(run_case(
        &u, "I will call <|tool_call|>[{\"name\": \"a\"}]",
        &(expect){ NULL, "I will call <|tool_call|>[{\"name\": \"a\"}]", 0, { 0 }, { 0 } }));
    CHECK(run_case(&u, "[1, 2] are numbers",
                   &(expect){ NULL, "[1, 2] are numbers", 0, { 0 }, { 0 } }));
    CHECK(run_case(&u, "<|tool_call|>[{\"name\": \"a\"",
                   &(expect){ NULL, "<|tool_call|>[{\"name\": \"a\"", 0, { 0 }, { 0 } }));
}

TEST(server_reasoning_parser) {
    setup r1 = { NULL, SRV_REASONING_DEEPSEEK_R1, 0, 0, NULL };
    setup q3 = { NULL, SRV_REASONING_QWEN3, 0, 0, NULL };
    setup q3_open = { NULL, SRV_REASONING_QWEN3, 1, 0, NULL };
    CHECK(run_case(&r1, "<think>\nhmm\n</think>\n\nAnswer.",
                   &(expect){ "\nhmm\n", "\n\nAnswer.", 0, { 0 }, { 0 } }));
    CHECK(run_case(&r1, "hmm</think>Answer.", &(expect){ "hmm", "Answer.", 0, { 0 }, { 0 } }));
    /* cut off while thinking: all reasoning */
    CHECK(run_case(&r1, "still thinking", &(expect){ "still thinking", "", 0, { 0 }, { 0 } }));
    CHECK(run_case(&q3, "<think>a</think>b", &(expect){ "a", "b", 0, { 0 }, { 0 } }));
    /* qwen3 without <think>: no reasoning (unless the template opened it) */
    CHECK(run_case(&q3, "plain answer", &(expect){ NULL, "plain answer", 0, { 0 }, { 0 } }));
    CHECK(run_case(&q3, "<thin", &(expect){ NULL, "<thin", 0, { 0 }, { 0 } }));
    CHECK(run_case(&q3_open, "a\n</think>\n\nb", &(expect){ "a\n", "\n\nb", 0, { 0 }, { 0 } }));
    CHECK(run_case(&q3_open, "", &(expect){ NULL, "", 0, { 0 }, { 0 } }));
    /* reasoning, then tool calls in the content */
    setup both = { "hermes", SRV_REASONING_QWEN3, 1, 0, NULL };
    CHECK(run_case(
        &both,
        "I need the weather.</think>\n\n<tool_call>{\"name\":\"w\",\"arguments\":{}}</tool_call>",
        &(expect){ "I need the weather.", "", 1, { "w" }, { "{}" } }));
    /* a tool-call marker inside the reasoning is reasoning */
    CHECK(run_case(&both, "<tool_call>{\"name\":\"w\"}</tool_call></think>ok",
                   &(expect){ "<tool_call>{\"name\":\"w\"}</tool_call>", "ok", 0, { 0 }, { 0 } }));
    CHECK(srv_reasoning_find("deepseek_r1") == SRV_REASONING_DEEPSEEK_R1);
    CHECK(srv_reasoning_find("qwen3") == SRV_REASONING_QWEN3);
    CHECK(srv_reasoning_find("other") < 0);
}

TEST(server_tool_call_ids_differ) {
    char a[32], b[32];
    srv_tool_call_id(a);
    srv_tool_call_id(b);
    CHECK(strlen(a) == 29 && !strncmp(a, "call_", 5) && strcmp(a, b));
}

/* --- the chat and Responses writers over a split reply ------------------------------------ */

typedef struct fake_gen {
    srv_server srv;
    srv_gen g;
    srv_prompt p;
    srv_choice c;
    srv_split sp;
} fake_gen;

static void fake_init(fake_gen *f, const srv_api *api, const char *parser, srv_reasoning r) {
    memset(f, 0, sizeof *f);
    f->srv.cfg.model_name = "m";
    f->srv.cfg.tool_parser = parser ? srv_tool_parser_find(parser) : NULL;
    f->srv.cfg.reasoning_parser = r;
    f->g.srv = &f->srv;
    f->g.api = api;
    f->g.opts.n = 1;
    f->g.opts.stream = 1;
    f->g.opts.logprobs = -1;
    f->g.opts.parse_tools = parser != NULL;
    f->g.prompts = &f->p;
    f->g.n_prompts = 1;
    f->g.choices = &f->c;
    f->g.n_choices = 1;
    f->c.stop_string = f->c.stop_token = -1;
    f->c.split = &f->sp;
    f->sp.reasoning = r;
    f->sp.tools_by = f->srv.cfg.tool_parser;
    snprintf(f->g.id, sizeof f->g.id, "%s_x", api->id_prefix);
}

/* Streams text in pieces of `step` bytes, then finishes the choice. */
static void fake_stream(fake_gen *f, const char *text, size_t step) {
    size_t n = strlen(text);
    for (size_t at = 0; at < n; at += step) {
        size_t k = at + step < n ? step : n - at;
        f->c.text = realloc(f->c.text, f->c.len + k + 1);
        memcpy(f->c.text + f->c.len, text + at, k);
        f->c.len += k;
        f->c.text[f->c.len] = 0;
        f->c.released = f->c.len;
        f->g.api->chunks(&f->g, 0);
    }
    f->c.done = 1;
    f->c.finish_reason = "stop";
    f->g.n_done = 1;
    f->g.api->chunks(&f->g, 1);
}

static void fake_free(fake_gen *f) {
    free(f->c.text);
    srv_split_free(&f->sp);
    free(f->g.out);
    if (f->g.api->free_state) f->g.api->free_state(&f->g);
}

/* The JSON of each "data:" line of the stream, in order (caller deletes the array). */
static cJSON *stream_events(const fake_gen *f) {
    cJSON *all = cJSON_CreateArray();
    const char *s = f->g.out ? f->g.out : "";
    while ((s = strstr(s, "data: "))) {
        s += 6;
        const char *end = strstr(s, "\n\n");
        cJSON *j = cJSON_ParseWithLength(s, (size_t)(end - s));
        if (j) cJSON_AddItemToArray(all, j);
        s = end;
    }
    return all;
}

static const char tool_reply[] =
    "Checking.<tool_call>{\"name\":\"a\",\"arguments\":{\"k\":1}}</tool_call>\n"
    "<tool_call>{\"name\":\"b\",\"arguments\":{}}</tool_call>";

TEST(server_chat_stream_tool_calls) {
    for (size_t step = 1; step <= 7; step += 3) {
        fake_gen f;
        fake_init(&f, &srv_api_chat, "hermes", SRV_REASONING_NONE);
        fake_stream(&f, tool_reply, step);
        cJSON *evs = stream_events(&f), *ev;
        char content[256] = "", names[64] = "", args[128] = "";
        const char *finish = NULL;
        cJSON_ArrayForEach(ev, evs) {
            const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(ev, "choices"), 0);
            const cJSON *d = cJSON_GetObjectItem(ch, "delta");
            const cJSON *ct = cJSON_GetObjectItem(d, "content");
            if (cJSON_IsString(ct)) strcat(content, ct->valuestring);
            const cJSON *tc = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "tool_calls"), 0);
            const cJSON *fn = cJSON_GetObjectItem(tc, "function");
            const cJSON *nm = cJSON_GetObjectItem(fn, "name"),
                        *ar = cJSON_GetObjectItem(fn, "arguments");
            if (cJSON_IsString(nm)) {
                strcat(names, nm->valuestring);
                CHECK(!strncmp(cJSON_GetStringValue(cJSON_GetObjectItem(tc, "id")), "call_", 5));
                CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(tc, "type")), "function"));
            }
            if (cJSON_IsString(ar)) strcat(args, ar->valuestring);
            const cJSON *fr = cJSON_GetObjectItem(ch, "finish_reason");
            if (cJSON_IsString(fr)) finish = fr->valuestring;
        }
        CHECKF(!strcmp(content, "Checking.") && !strcmp(names, "ab") &&
                   !strcmp(args, "{\"k\":1}{}") && finish && !strcmp(finish, "tool_calls"),
               "step %zu: content '%s' names '%s' args '%s'", step, content, names, args);
        /* the whole reply says the same */
        char *whole = f.g.api->response(&f.g);
        cJSON *w = cJSON_Parse(whole);
        const cJSON *msg = cJSON_GetObjectItem(
            cJSON_GetArrayItem(cJSON_GetObjectItem(w, "choices"), 0), "message");
        CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "content")), "Checking."));
        CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(msg, "tool_calls")) == 2);
        cJSON_Delete(w);
        free(whole);
        cJSON_Delete(evs);
        fake_free(&f);
    }
}

TEST(server_responses_stream_items) {
    fake_gen f;
    fake_init(&f, &srv_api_responses, "hermes", SRV_REASONING_DEEPSEEK_R1);
    fake_stream(
        &f, "hmm</think>Checking.<tool_call>{\"name\":\"a\",\"arguments\":{\"k\":1}}</tool_call>",
        2);
    cJSON *evs = stream_events(&f), *ev;
    char types[2048] = "";
    int seq = 0;
    cJSON_ArrayForEach(ev, evs) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "type"));
        CHECK((int)cJSON_GetNumberValue(cJSON_GetObjectItem(ev, "sequence_number")) == seq++);
        /* a run of deltas counts once */
        size_t tl = strlen(t), have = strlen(types);
        if (strstr(t, ".delta") && have > tl && !strncmp(types + have - tl - 1, t, tl)) continue;
        snprintf(types + have, sizeof types - have, "%s ", t);
    }
    CHECKF(!strcmp(types, "response.created response.in_progress response.output_item.added "
                          "response.content_part.added response.reasoning_text.delta "
                          "response.reasoning_text.done response.content_part.done "
                          "response.output_item.done response.output_item.added "
                          "response.content_part.added response.output_text.delta "
                          "response.output_item.added response.function_call_arguments.delta "
                          "response.function_call_arguments.done response.output_item.done "
                          "response.output_text.done response.content_part.done "
                          "response.output_item.done response.completed "),
           "%s", types);
    const cJSON *done =
        cJSON_GetObjectItem(cJSON_GetArrayItem(evs, cJSON_GetArraySize(evs) - 1), "response");
    char *whole = f.g.api->response(&f.g);
    cJSON *w = cJSON_Parse(whole);
    CHECK(cJSON_Compare(cJSON_GetObjectItem(w, "output"), cJSON_GetObjectItem(done, "output"), 1));
    const cJSON *out = cJSON_GetObjectItem(w, "output");
    CHECK(cJSON_GetArraySize(out) == 3);
    CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 2), "type")),
                  "function_call"));
    CHECK(
        !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 2), "arguments")),
                "{\"k\":1}"));
    cJSON_Delete(w);
    free(whole);
    cJSON_Delete(evs);
    fake_free(&f);
}
