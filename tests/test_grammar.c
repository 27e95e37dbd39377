/* The grammar engine (engine/grammar/) on strings: GBNF, JSON Schema, regular expressions and
 * choices accepting and refusing them, and the errors for what serpent does not support (token
 * masks on real tokenizers: test_grammar_masks.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_test_util.h"
#include "test.h"

TEST(gbnf_literals_classes_repetition) {
    srp_grammar *g = gbnf("root ::= \"a\" [b-d]+ x? \"\\n\"  # comment\n"
                          "x ::= \"xy\" | [^a-z]{2}\n");
    REQUIRE(g);
    YES(g, "ab\n");
    YES(g, "abcd\n");
    YES(g, "abxy\n");
    YES(g, "ab12\n");
    NO(g, "a\n");
    NO(g, "abx\n");
    NO(g, "ab1\n");
    NO(g, "abxyz\n");
    NO(g, "ab");
    srp_grammar_unref(g);
}

static int gbnf_error(const char *src, int code, const char *needle) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    int rc = srp_grammar_gbnf(src, strlen(src), &g, &e);
    srp_grammar_unref(g);
    if (rc != code || !strstr(e.msg, needle)) {
        fprintf(stderr, "gbnf \"%s\": rc %d, \"%s\" (wanted %d, \"%s\")\n", src, rc, e.msg, code,
                needle);
        return 0;
    }
    return 1;
}

TEST(gbnf_syntax_and_escapes) {
    srp_grammar *g = gbnf("root ::= greeting (\" \" name)* \"\\x21\"\n"
                          "greeting ::=\n"
                          "    \"hi\"\n"
                          "  | \"h\\u00e9llo\"   # a code point, written as UTF-8\n"
                          "name ::= [A-Z] [a-z\\-]{1,3} | \"\\\"q\\\"\" | \"\\\\\"\n");
    REQUIRE(g);
    YES(g, "hi!");
    YES(g, "h\xc3\xa9llo Bob!");
    YES(g, "hi Ann Bo-b \"q\" \\!");
    NO(g, "hi Annnn!");
    NO(g, "hi A!");
    NO(g, "hello!");
    srp_grammar_unref(g);
    g = gbnf("root ::= ( \"a\"\n  | \"b\" ){2} [0-9]{0,2} x{2,}\nx ::= \"x\"");
    REQUIRE(g);
    YES(g, "abxx");
    YES(g, "bb12xxxx");
    NO(g, "ab123xx");
    NO(g, "abx");
    NO(g, "axx");
    srp_grammar_unref(g);
}

TEST(gbnf_utf8_classes) {
    /* code points of one to four bytes, and a negated class over all of Unicode */
    srp_grammar *g = gbnf("root ::= [a\\u00e9\\u4e2d-\\u4e2f\\U0001F600]+ \"|\" [^a\\u4e2d]*");
    REQUIRE(g);
    YES(g, "a\xc3\xa9\xe4\xb8\xad\xe4\xb8\xaf\xf0\x9f\x98\x80|");
    YES(g, "a|b\xc3\xa9\xe4\xb8\xae\xf0\x9f\x98\x81");
    NO(g, "\xe4\xb8\xb0|");     /* U+4E30, outside the range */
    NO(g, "\xf0\x9f\x98\x81|"); /* U+1F601 */
    NO(g, "a|\xe4\xb8\xad");    /* negated */
    NO(g, "a|a");
    NO(g, "a|\xc3");         /* an incomplete character cannot end */
    NO(g, "a|\xc0\x80");     /* overlong */
    NO(g, "a|\xed\xa0\x80"); /* a surrogate */
    srp_grammar_unref(g);
    g = gbnf("root ::= . . \"x\"");
    REQUIRE(g);
    YES(g, "\xe4\xb8\xad\xf0\x9f\x98\x80x");
    YES(g, "abx");
    NO(g, "ax");
    srp_grammar_unref(g);
}

TEST(gbnf_errors) {
    CHECK(gbnf_error("root ::= \"a", SRP_EFORMAT, "line 1 column 10: unterminated string"));
    CHECK(gbnf_error("root ::= x\n", SRP_EFORMAT, "line 1 column 10: rule 'x' is not defined"));
    CHECK(gbnf_error("x ::= \"a\"\n", SRP_EFORMAT, "no 'root' rule"));
    CHECK(gbnf_error("root ::= [b-a]", SRP_EFORMAT, "reversed"));
    CHECK(gbnf_error("root ::= \"a\"\nroot ::= \"b\"", SRP_EFORMAT,
                     "line 2 column 1: rule 'root' is defined twice"));
    CHECK(gbnf_error("root ::= (\"a\"", SRP_EFORMAT, "unclosed '('"));
    CHECK(gbnf_error("root ::= * \"a\"", SRP_EFORMAT, "follows nothing"));
    CHECK(gbnf_error("root ::= \"\\q\"", SRP_EFORMAT, "unknown escape"));
    CHECK(gbnf_error("root ::= \"a\"{3,1}", SRP_EFORMAT, "n < m"));
    CHECK(gbnf_error("root ::= \"a\"{1000000}", SRP_EFORMAT, "repetition count"));
    CHECK(gbnf_error("root ::= root \"a\" | \"b\"", SRP_EUNSUPPORTED, "left-recursive"));
    CHECK(gbnf_error("root ::= x \"a\"\nx ::= y?\ny ::= root", SRP_EUNSUPPORTED, "left-recursive"));
    CHECK(gbnf_error("root ::= (\"a\"?)*", SRP_EUNSUPPORTED, "left-recursive"));
    CHECK(gbnf_error("root ::= \"a\" ::= ", SRP_EFORMAT, "unexpected ':'"));
}

TEST(gbnf_right_recursion_and_deep_repetition) {
    /* balanced parentheses: the pushdown part */
    srp_grammar *g = gbnf("root ::= p\np ::= \"(\" p* \")\"");
    REQUIRE(g);
    YES(g, "()");
    YES(g, "(()(()))");
    NO(g, "(()");
    NO(g, "())");
    srp_grammar_unref(g);
    /* a long optional repetition: nested rules, one stack each, not thousands of them */
    g = gbnf("root ::= \"a\"{0,5000} \"b\"");
    REQUIRE(g);
    char s[6002];
    memset(s, 'a', 5000);
    strcpy(s + 5000, "b");
    YES(g, s);
    strcpy(s + 4000, "b");
    YES(g, s);
    memset(s, 'a', 5001);
    strcpy(s + 5001, "b");
    NO(g, s);
    srp_grammar_unref(g);
}

TEST(matcher_end_and_refusal_keeps_state) {
    srp_grammar *g = gbnf("root ::= \"ab\" \"c\"?");
    REQUIRE(g);
    srp_matcher *m;
    srp_err e;
    REQUIRE(srp_matcher_new(g, byte_vocab(), &m, &e) == 0);
    CHECK(!srp_matcher_can_end(m));
    CHECK(srp_matcher_accept(m, 'b') == SRP_EINVAL);
    CHECK(srp_matcher_accept(m, 'a') == 0);
    CHECK(srp_matcher_accept(m, 'x') == SRP_EINVAL);
    CHECK(srp_matcher_accept(m, 'b') == 0);
    CHECK(srp_matcher_can_end(m) && !srp_matcher_must_end(m));
    CHECK(srp_matcher_accept(m, 'c') == 0);
    CHECK(srp_matcher_can_end(m) && srp_matcher_must_end(m));
    uint32_t mask[8];
    srp_matcher_mask(m, mask);
    for (int i = 0; i < 8; i++) CHECK(mask[i] == 0);
    CHECK(srp_matcher_accept(m, -1) == SRP_EINVAL);
    CHECK(srp_matcher_accept(m, 256) == SRP_EINVAL);
    srp_matcher_free(m);
    srp_grammar_unref(g);
}

TEST(json_schema_scalars) {
    srp_grammar *g = schema("{\"type\": \"string\"}");
    REQUIRE(g);
    YES(g, "\"\"");
    YES(g, "\"a b \\\"q\\\" \\\\ \\n \\u00e9 \xc3\xa9\"");
    YES(g, "\"x\" ");
    NO(g, "\"a");
    NO(g, "\"a\nb\"");
    NO(g, "\"\\x\"");
    NO(g, "a");
    srp_grammar_unref(g);
    g = schema("{\"type\": \"number\"}");
    REQUIRE(g);
    YES(g, "0");
    YES(g, "-12.5e+3");
    YES(g, "3.25");
    NO(g, "01");
    NO(g, "1.");
    NO(g, "+1");
    NO(g, "12345678901234567"); /* 17 digits: the bound that makes a reply end */
    srp_grammar_unref(g);
    g = schema("{\"type\": \"integer\"}");
    REQUIRE(g);
    YES(g, "-7");
    YES(g, "1234567890123456");
    NO(g, "1.5");
    NO(g, "-");
    srp_grammar_unref(g);
    g = schema("{\"type\": [\"boolean\", \"null\"]}");
    REQUIRE(g);
    YES(g, "true");
    YES(g, "false");
    YES(g, "null");
    NO(g, "nul");
    NO(g, "\"true\"");
    srp_grammar_unref(g);
    g = schema("{\"type\": \"number\", \"minimum\": 0}");
    REQUIRE(g);
    YES(g, "2.5");
    NO(g, "-2.5");
    srp_grammar_unref(g);
}

TEST(json_schema_integer_bounds) {
    static const struct {
        const char *schema;
        long lo, hi;
    } cases[] = {
        { "{\"type\":\"integer\",\"minimum\":0}", 0, 100000 },
        { "{\"type\":\"integer\",\"minimum\":17,\"maximum\":2345}", 17, 2345 },
        { "{\"type\":\"integer\",\"exclusiveMinimum\":-13,\"exclusiveMaximum\":108}", -12, 107 },
        { "{\"type\":\"integer\",\"minimum\":-250,\"maximum\":-3}", -250, -3 },
        { "{\"type\":\"integer\",\"minimum\":1,\"maximum\":1}", 1, 1 },
        { "{\"type\":\"integer\",\"maximum\":99}", -100000, 99 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        srp_grammar *g = schema(cases[k].schema);
        REQUIRE(g);
        for (long v = -3000; v <= 3000; v++) {
            char s[32];
            snprintf(s, sizeof s, "%ld", v);
            int want = v >= cases[k].lo && v <= cases[k].hi;
            CHECKF(accepts(g, s) == want, "%s: %ld", cases[k].schema, v);
        }
        srp_grammar_unref(g);
    }
    CHECK(schema_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", SRP_EUNSUPPORTED,
                       "no integer"));
}

TEST(json_schema_objects) {
    srp_grammar *g = schema("{\"type\":\"object\",\"properties\":{"
                            "\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},"
                            "\"c\":{\"type\":\"boolean\"}},\"required\":[\"b\"]}");
    REQUIRE(g);
    YES(g, "{\"b\":\"x\"}");
    YES(g, "{\"a\": 1, \"b\": \"x\", \"c\": true}");
    YES(g, "{\"a\":1,\"b\":\"x\"}");
    YES(g, "{\"b\":\"x\",\"c\":false}");
    NO(g, "{\n  \"b\": \"x\"\n}"); /* compact: at most one space between tokens */
    NO(g, "{\"b\":  \"x\"}");
    NO(g, "{}"); /* b is required */
    NO(g, "{\"a\":1}");
    NO(g, "{\"b\":\"x\",\"a\":1}"); /* the schema's order */
    NO(g, "{\"b\":\"x\",\"d\":1}"); /* additionalProperties absent: none */
    NO(g, "{\"b\":\"x\",}");
    NO(g, "{\"b\":1}");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
               "\"additionalProperties\":{\"type\":\"number\"}}");
    REQUIRE(g);
    YES(g, "{}");
    YES(g, "{\"a\":1,\"zz\":2.5,\"y\":3}");
    YES(g, "{\"zz\":2.5}");
    NO(g, "{\"zz\":\"s\"}");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"object\"}"); /* lists nothing, so restricts nothing */
    REQUIRE(g);
    YES(g, "{}");
    YES(g, "{\"k\":1}");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"object\",\"properties\":{}}");
    REQUIRE(g);
    YES(g, "{}");
    NO(g, "{\"k\":1}");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"object\",\"additionalProperties\":true}");
    REQUIRE(g);
    YES(g, "{\"k\":[1,{\"x\":null}],\"j\":\"s\"}");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false}");
    REQUIRE(g);
    YES(g, "{\"a\":{\"any\":[true]}}");
    NO(g, "{\"b\":1}");
    srp_grammar_unref(g);
}

TEST(json_schema_arrays) {
    srp_grammar *g = schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},"
                            "\"minItems\":2,\"maxItems\":3}");
    REQUIRE(g);
    YES(g, "[1,2]");
    YES(g, "[1, 2, 3]");
    NO(g, "[1]");
    NO(g, "[1,2,3,4]");
    NO(g, "[1,\"a\"]");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"array\"}");
    REQUIRE(g);
    YES(g, "[]");
    YES(g, "[1,\"a\",{\"b\":[]}]");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],"
               "\"minItems\":1}");
    REQUIRE(g);
    YES(g, "[\"a\"]");
    YES(g, "[\"a\",2]");
    NO(g, "[]");
    NO(g, "[\"a\",2,3]"); /* prefixItems without items: no more */
    NO(g, "[2]");
    srp_grammar_unref(g);
    g = schema(
        "{\"type\":\"array\",\"prefixItems\":[{\"const\":1}],\"items\":{\"type\":\"boolean\"}}");
    REQUIRE(g);
    YES(g, "[]");
    YES(g, "[1,true,false]");
    NO(g, "[true]");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"array\",\"maxItems\":0}");
    REQUIRE(g);
    YES(g, "[]");
    NO(g, "[1]");
    srp_grammar_unref(g);
}

TEST(json_schema_strings) {
    srp_grammar *g = schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}");
    REQUIRE(g);
    YES(g, "\"ab\"");
    YES(g, "\"a\xc3\xa9\\n\"");
    NO(g, "\"a\"");
    NO(g, "\"abcd\"");
    srp_grammar_unref(g);
    g = schema("{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d+(\\\\.x)?$\"}");
    REQUIRE(g);
    YES(g, "\"AB-12\"");
    YES(g, "\"AB-1.x\"");
    NO(g, "\"ab-12\"");
    NO(g, "\"AB-\"");
    srp_grammar_unref(g);
    /* a pattern on the decoded string: a quote is \" in the JSON text */
    g = schema("{\"type\":\"string\",\"pattern\":\"a\\\"[^x]\"}");
    REQUIRE(g);
    YES(g, "\"a\\\"b\"");
    YES(g, "\"a\\\"\\\\\"");
    NO(g, "\"a\"b\"");
    srp_grammar_unref(g);
    static const char *formats[][4] = {
        { "date", "2024-02-29", "2024-13-01", "24-01-01" },
        { "time", "23:59:07.25Z", "24:00:00Z", "12:00" },
        { "date-time", "2024-02-29T23:59:07+01:00", "2024-02-29 23:59:07Z", "2024-02-29" },
        { "uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000",
          "123e4567-e89b-12d3-a456-42661417400g" },
        { "email", "first.last+tag@mail.example.org", "no-at.example.org", "a@b" },
        { "ipv4", "192.168.0.255", "256.1.1.1", "1.2.3" },
    };
    for (int k = 0; k < 6; k++) {
        char src[128], s[128];
        snprintf(src, sizeof src, "{\"type\":\"string\",\"format\":\"%s\"}", formats[k][0]);
        g = schema(src);
        REQUIRE(g);
        snprintf(s, sizeof s, "\"%s\"", formats[k][1]);
        YES(g, s);
        for (int j = 2; j < 4; j++) {
            snprintf(s, sizeof s, "\"%s\"", formats[k][j]);
            NO(g, s);
        }
        srp_grammar_unref(g);
    }
}

TEST(json_schema_enum_const_anyof_allof) {
    srp_grammar *g = schema("{\"enum\":[\"red\",1,null,{\"a\":[true]}]}");
    REQUIRE(g);
    YES(g, "\"red\"");
    YES(g, "1");
    YES(g, "null");
    YES(g, "{\"a\":[true]}");
    NO(g, "\"blue\"");
    NO(g, "2");
    srp_grammar_unref(g);
    g = schema(
        "{\"type\":\"object\",\"properties\":{\"v\":{\"const\":\"x\\\"y\"}},\"required\":[\"v\"]}");
    REQUIRE(g);
    YES(g, "{\"v\":\"x\\\"y\"}");
    NO(g, "{\"v\":\"xy\"}");
    srp_grammar_unref(g);
    g = schema("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}],"
               "\"description\":\"ignored\"}");
    REQUIRE(g);
    YES(g, "5");
    YES(g, "\"a\"");
    NO(g, "\"ab\"");
    srp_grammar_unref(g);
    g = schema("{\"oneOf\":[{\"type\":\"null\"},{\"type\":\"boolean\"}]}");
    REQUIRE(g);
    YES(g, "null");
    YES(g, "true");
    NO(g, "0");
    srp_grammar_unref(g);
    g = schema("{\"allOf\":[{\"type\":\"integer\",\"minimum\":0}],\"title\":\"t\"}");
    REQUIRE(g);
    YES(g, "3");
    NO(g, "-3");
    srp_grammar_unref(g);
}

TEST(json_schema_refs) {
    /* a recursive tree through $defs, and a definitions-style reference */
    srp_grammar *g =
        schema("{\"$ref\":\"#/$defs/node\",\"$defs\":{\"node\":{\"type\":\"object\","
               "\"properties\":{\"v\":{\"$ref\":\"#/definitions/val\"},"
               "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},"
               "\"required\":[\"v\"]}},\"definitions\":{\"val\":{\"type\":\"integer\"}}}");
    REQUIRE(g);
    YES(g, "{\"v\":1}");
    YES(g, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}");
    NO(g, "{\"v\":1,\"kids\":[{\"w\":2}]}");
    NO(g, "{\"v\":\"1\"}");
    srp_grammar_unref(g);
    CHECK(schema_error("{\"$ref\":\"#/$defs/missing\"}", SRP_EUNSUPPORTED, "points at nothing"));
    CHECK(schema_error("{\"$ref\":\"http://x/y.json\"}", SRP_EUNSUPPORTED, "only local"));
}

TEST(json_schema_unsupported_keywords_named_with_path) {
    CHECK(schema_error("{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\","
                       "\"multipleOf\":2}}}",
                       SRP_EUNSUPPORTED, "$.properties.age: 'multipleOf' is not supported"));
    static const char *kws[] = { "patternProperties", "not",           "if",      "uniqueItems",
                                 "dependentRequired", "minProperties", "contains" };
    for (int i = 0; i < 7; i++) {
        char src[200], want[100];
        snprintf(src, sizeof src, "{\"type\":\"array\",\"items\":{\"%s\":{}}}", kws[i]);
        snprintf(want, sizeof want, "$.items: '%s' is not supported", kws[i]);
        CHECK(schema_error(src, SRP_EUNSUPPORTED, want));
    }
    CHECK(schema_error("{\"anyOf\":[{\"type\":\"string\"},{\"format\":\"uri\"}]}", SRP_EUNSUPPORTED,
                       "$.anyOf[1]: 'format' 'uri' is not supported"));
    CHECK(schema_error("{\"type\":\"number\",\"maximum\":3}", SRP_EUNSUPPORTED,
                       "'maximum' on a number"));
    CHECK(schema_error("{\"allOf\":[{},{}]}", SRP_EUNSUPPORTED, "'allOf'"));
    CHECK(schema_error("{\"type\":\"object\",\"required\":[\"a\"]}", SRP_EUNSUPPORTED,
                       "$: required property 'a' is not in 'properties'"));
    CHECK(schema_error("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", SRP_EUNSUPPORTED,
                       "$: pattern: position 4: backreferences are not supported"));
    CHECK(schema_error("{\"type\":\"strin\"}", SRP_EUNSUPPORTED, "type 'strin'"));
    CHECK(schema_error("[1,2", SRP_EFORMAT, "not valid JSON"));
    CHECK(schema_error("false", SRP_EUNSUPPORTED, "matches nothing"));
    /* annotations are fine */
    srp_grammar *g =
        schema("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\","
               "\"$id\":\"x\",\"title\":\"T\",\"description\":\"d\",\"$comment\":\"c\","
               "\"type\":\"integer\",\"default\":1,\"examples\":[1],\"deprecated\":false,"
               "\"readOnly\":true,\"writeOnly\":false}");
    CHECK(g);
    srp_grammar_unref(g);
}

TEST(json_object_any_and_bounded_depth) {
    srp_grammar *g = NULL;
    srp_err e;
    REQUIRE(srp_grammar_json_object(&g, &e) == 0);
    YES(g, "{}");
    YES(g, "{\"a\": [1, -2.5e3, \"s\", true, null, {\"b\": {}}]}");
    NO(g, "[1]");
    NO(g, "{\"a\":}");
    NO(g, "{\"a\":1,}");
    char deep[200] = "", *p = deep;
    for (int i = 0; i < 31; i++) p += sprintf(p, "{\"a\":");
    strcat(deep, "1");
    for (int i = 0; i < 31; i++) strcat(deep, "}");
    YES(g, deep); /* 31 levels */
    char deeper[400] = "";
    p = deeper;
    for (int i = 0; i < 40; i++) p += sprintf(p, "{\"a\":");
    strcat(deeper, "1");
    for (int i = 0; i < 40; i++) strcat(deeper, "}");
    NO(g, deeper);
    /* whitespace is bounded, so that a reply must end */
    char ws[64] = "{\"a\":\n";
    for (int i = 0; i < 25; i++) strcat(ws, " ");
    strcat(ws, "1}");
    NO(g, ws);
    srp_grammar_unref(g);
}

/* --- regular expressions and choices ----------------------------------------------------- */

static srp_grammar *regex(const char *re) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    if (srp_grammar_regex(re, strlen(re), &g, &e)) fprintf(stderr, "regex: %s\n", e.msg);
    return g;
}

static int regex_error(const char *re, int code, const char *needle) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    int rc = srp_grammar_regex(re, strlen(re), &g, &e);
    srp_grammar_unref(g);
    if (rc != code || !strstr(e.msg, needle)) {
        fprintf(stderr, "regex %s: rc %d, \"%s\" (wanted %d, \"%s\")\n", re, rc, e.msg, code,
                needle);
        return 0;
    }
    return 1;
}

TEST(regex_subset) {
    srp_grammar *g = regex("^(?:[a-c]+|x\\d{2,3})(-\\w*)?\\.$");
    REQUIRE(g);
    YES(g, "abc.");
    YES(g, "x12-a_9.");
    YES(g, "x123-.");
    NO(g, "x1.");
    NO(g, "x1234.");
    NO(g, "abd.");
    NO(g, "abc");
    srp_grammar_unref(g);
    g = regex("[^\\s\\d]+ .\\t[\\]\\-a]{2}(?P<n>z)?(?<m>q)*");
    REQUIRE(g);
    YES(g, "ab \xe4\xb8\xad\t]-");
    YES(g, "\xc3\xa9 x\taazqq");
    NO(g, "a1 x\taa");
    NO(g, "ab \n\taa");
    NO(g, "ab x\tab");
    srp_grammar_unref(g);
    g = regex("a{2}|b{1,}|c*?|\\x41\\u00e9|\\{x}|");
    REQUIRE(g);
    YES(g, "aa");
    YES(g, "bbb");
    YES(g, "");
    YES(g, "ccc");
    YES(g, "A\xc3\xa9");
    YES(g, "{x}");
    NO(g, "a");
    srp_grammar_unref(g);
    CHECK(regex_error("(a)\\1", SRP_EUNSUPPORTED, "position 4: backreferences"));
    CHECK(regex_error("a(?=b)", SRP_EUNSUPPORTED, "lookahead"));
    CHECK(regex_error("(?<!a)b", SRP_EUNSUPPORTED, "lookbehind"));
    CHECK(regex_error("a\\bc", SRP_EUNSUPPORTED, "word boundaries"));
    CHECK(regex_error("a^b", SRP_EUNSUPPORTED, "only at the ends"));
    CHECK(regex_error("\\p{L}", SRP_EUNSUPPORTED, "Unicode properties"));
    CHECK(regex_error("a++", SRP_EUNSUPPORTED, "possessive"));
    CHECK(regex_error("(a", SRP_EFORMAT, "unclosed"));
    CHECK(regex_error("a)", SRP_EFORMAT, "unmatched"));
    CHECK(regex_error("[a", SRP_EFORMAT, "unterminated"));
    CHECK(regex_error("*a", SRP_EFORMAT, "follows nothing"));
}

TEST(choice_literals) {
    const char *ch[] = { "yes", "no", "a \"quoted\" \\ one\n", "n" };
    size_t lens[] = { 3, 2, strlen(ch[2]), 1 };
    srp_grammar *g = NULL;
    srp_err e;
    REQUIRE(srp_grammar_choice(ch, lens, 4, &g, &e) == 0);
    YES(g, "yes");
    YES(g, "no");
    YES(g, "n");
    YES(g, ch[2]);
    NO(g, "ye");
    NO(g, "yesno");
    srp_grammar_unref(g);
    CHECK(srp_grammar_choice(ch, lens, 0, &g, &e) == SRP_EINVAL);
}

/* A function-call-like schema; walks with random allowed tokens must give JSON it validates. */
TEST(gbnf_generated_rules_never_take_user_names) {
    /* the repetition makes a rule; the user's own root_1 ... must stay theirs */
    srp_grammar *g =
        gbnf("root ::= \"a\"* root_0 root_1 root_2\nroot_0 ::= \"x\"\nroot_1 ::= \"y\"\n"
             "root_2 ::= \"z\"");
    REQUIRE(g);
    YES(g, "aaxyz");
    YES(g, "xyz");
    NO(g, "aaxy");
    srp_grammar_unref(g);
}
