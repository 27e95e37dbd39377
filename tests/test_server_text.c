/* The server's text helpers: UTF-8 checks, stop-string matching and hold-back, JSON quoting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "text.h"

TEST(server_utf8_valid) {
    CHECK(srv_utf8_valid("plain", 5));
    CHECK(srv_utf8_valid("caf\xC3\xA9 \xF0\x9F\x90\x8D", 10));
    CHECK(!srv_utf8_valid("\xC3\x28", 2));         /* bad continuation */
    CHECK(!srv_utf8_valid("\xC0\xAF", 2));         /* overlong */
    CHECK(!srv_utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
    CHECK(!srv_utf8_valid("\xF4\x90\x80\x80", 4)); /* past U+10FFFF */
    CHECK(!srv_utf8_valid("\xE2\x82", 2));         /* truncated */
}

TEST(server_utf8_sanitize) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    REQUIRE(srv_buf_append_utf8(&buf, &len, &cap,
                                "a\xFF"
                                "b\xC3\xA9",
                                5) == 0);
    CHECK(len == 7 && !memcmp(buf,
                              "a\xEF\xBF\xBD"
                              "b\xC3\xA9",
                              7));
    CHECK(srv_utf8_valid(buf, len));
    free(buf);
}

TEST(server_stop_strings) {
    char *stops[] = { "END", "\n\n" };
    const char *t = "hello EN";
    CHECK(srv_stop_holdback(t, strlen(t), stops, 2) == 2); /* "EN" may become "END" */
    CHECK(srv_stop_holdback("hello E", 7, stops, 2) == 1);
    CHECK(srv_stop_holdback("hello", 5, stops, 2) == 0);
    CHECK(srv_stop_holdback("a\n", 2, stops, 2) == 1);
    CHECK(srv_stop_find("abc END x\n\n", 11, 0, stops, 2) == 4);
    CHECK(srv_stop_find("abc END x\n\n", 11, 5, stops, 2) == 9);
    CHECK(srv_stop_find("abc", 3, 0, stops, 2) == -1);
    char *one[] = { "x" };
    CHECK(srv_stop_holdback("axxx", 4, one, 1) == 0); /* a whole match is found, not held */
}

TEST(server_json_quote) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    REQUIRE(srv_json_quote(&buf, &len, &cap, "a\"b\\\n\0\x01z", 8) == 0);
    CHECKF(!strcmp(buf, "\"a\\\"b\\\\\\n\\u0000\\u0001z\""), "%s", buf);
    free(buf);
    cJSON *n = srv_json_text("x\0y", 3);
    char *s = cJSON_PrintUnformatted(n);
    CHECKF(!strcmp(s, "\"x\\u0000y\""), "%s", s);
    cJSON *back = cJSON_Parse(s);
    CHECK(cJSON_IsString(back) && !strcmp(back->valuestring, "x")); /* cJSON stops at NUL */
    cJSON_Delete(back);
    free(s);
    cJSON_Delete(n);
}

static char *deduped(const char *json) {
    cJSON *r = cJSON_Parse(json);
    if (!r || srv_json_dedupe(r)) return NULL;
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

/* Duplicate keys: the last one wins, at every depth, in small and large objects. */
TEST(server_json_last_duplicate_wins) {
    char *s = deduped("{\"a\":1,\"b\":2,\"a\":3,\"c\":{\"x\":1,\"x\":[{\"y\":1,\"y\":2}]}}");
    REQUIRE(s);
    CHECK_STR_CONTAINS(s, "{\"b\":2,\"a\":3,\"c\":{\"x\":[{\"y\":2}]}}");
    free(s);
    char big[4096] = "{";
    for (int i = 0; i < 40; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "\"k%d\":%d,", i % 20, i);
    strcat(big, "\"k3\":\"last\"}");
    s = deduped(big);
    REQUIRE(s);
    cJSON *r = cJSON_Parse(s);
    CHECK(cJSON_GetArraySize(r) == 20);
    CHECK(!strcmp(cJSON_GetObjectItem(r, "k3")->valuestring, "last"));
    CHECK(cJSON_GetObjectItem(r, "k19")->valueint == 39);
    cJSON_Delete(r);
    free(s);
}

TEST(server_stop_match_ends_in_new_text) {
    char *stops[] = { "ab", "b" };
    size_t len = 0;
    int which = -1;
    /* "xab" where "ab" was already there: only a match ending at byte 3 or later counts */
    CHECK(srv_stop_match("xabb", 4, 0, 4, stops, 2, &len, &which) == 3);
    CHECK(which == 1 && len == 1);
    CHECK(srv_stop_match("xab", 3, 0, 4, stops, 2, &len, &which) == -1);
    CHECK(srv_stop_match("xab", 3, 0, 3, stops, 2, &len, &which) == 1 && which == 0);
    CHECK(srv_utf8_count("caf\xC3\xA9 \xF0\x9F\x90\x8D", 10) == 6);
}

/* Special-token texts in request strings are marked, survive rendering, and come out as the
 * spans to tokenize as text; a mark the client sent reads as U+FFFD. */
TEST(server_chat_marks) {
    const char *texts[] = { "<|im_start|>", "<|im_end|>", "<|im" };
    const size_t lens[] = { 12, 10, 4 };
    cJSON *m =
        cJSON_Parse("[{\"role\":\"user\",\"content\":\"a<|im_start|>b\\uFDD0c<|im_end|>\"}]");
    REQUIRE(m);
    REQUIRE(srv_mark_specials(m, texts, lens, 3) == 0);
    const char *c = cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "content")->valuestring;
    char text[256];
    snprintf(text, sizeof text, "<|im_start|>user\n%s<|im_end|>", c); /* "rendered" */
    cJSON_Delete(m);
    size_t len = strlen(text);
    srp_text_span *sp = NULL;
    int n = 0;
    REQUIRE(srv_unmark(text, &len, &sp, &n) == 0);
    CHECK(!strcmp(text, "<|im_start|>user\na<|im_start|>b\xEF\xBF\xBD"
                        "c<|im_end|><|im_end|>"));
    CHECK(len == strlen(text));
    REQUIRE(n == 2);
    CHECK(sp[0].begin == 18 && sp[0].end == 30); /* the user's <|im_start|> (longest match) */
    CHECK(sp[1].begin == 35 && sp[1].end == 45); /* the user's <|im_end|> */
    free(sp);
}
