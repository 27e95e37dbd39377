/* The grammar engine (engine/grammar/): GBNF, JSON Schema, regular expressions and choices
 * accepting and refusing strings, the errors for what serpent does not support, and token
 * masks on real tokenizers (consistency with accept, UTF-8 split across tokens, byte
 * fallback, greedy walks that must end in valid JSON). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "grammar.h"
#include "test.h"
#include "tokenizer.h"

/* A vocabulary of the 256 single bytes: accepting a string is accepting its bytes. */
static srp_vocab *byte_vocab(void) {
    static srp_vocab *v;
    if (!v) {
        static uint8_t b[256];
        const uint8_t *p[256];
        int len[256];
        for (int i = 0; i < 256; i++) {
            b[i] = (uint8_t)i;
            p[i] = &b[i];
            len[i] = 1;
        }
        srp_err e;
        if (srp_vocab_new(256, p, len, &v, &e)) return NULL;
    }
    return v;
}

/* 1 when the grammar accepts s as a whole sentence, 0 when not, -1 on an error. */
static int accepts(srp_grammar *g, const char *s) {
    srp_matcher *m;
    srp_err e;
    if (srp_matcher_new(g, byte_vocab(), &m, &e)) return -1;
    int ok = 1;
    for (const char *p = s; *p && ok; p++) ok = srp_matcher_accept(m, (uint8_t)*p) == 0;
    ok = ok && srp_matcher_can_end(m);
    srp_matcher_free(m);
    return ok;
}

static srp_grammar *gbnf(const char *src) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    if (srp_grammar_gbnf(src, strlen(src), &g, &e)) fprintf(stderr, "gbnf: %s\n", e.msg);
    return g;
}

#define YES(g, s) CHECKF(accepts(g, s) == 1, "should accept \"%s\"", s)
#define NO(g, s)  CHECKF(accepts(g, s) == 0, "should refuse \"%s\"", s)

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

/* --- token masks on real tokenizers ------------------------------------------------------ */

static srp_tokenizer *load_tok(const char *rel, int in_tests) {
    srp_tokenizer *t = NULL;
    srp_err e = { 0 };
    char path[4096];
    if (in_tests)
        snprintf(path, sizeof path, "%s", srp_test_path(rel));
    else
        snprintf(path, sizeof path, "%s/../%s", srp_test_path("."), rel);
    if (srp_tokenizer_load(path, &t, &e)) fprintf(stderr, "load %s: %s\n", path, e.msg);
    return t;
}

static srp_vocab *tok_vocab(const srp_tokenizer *t) {
    int n = srp_tokenizer_vocab_size(t);
    uint8_t **b = calloc((size_t)n, sizeof *b);
    int *len = calloc((size_t)n, sizeof *len);
    srp_vocab *v = NULL;
    srp_err e;
    for (int id = 0; id < n; id++) {
        uint8_t buf[1024];
        len[id] = srp_tokenizer_token_bytes(t, id, buf, sizeof buf);
        if (len[id] > (int)sizeof buf) len[id] = -1; /* none this long in the fixtures */
        if (len[id] > 0) {
            b[id] = malloc((size_t)len[id]);
            memcpy(b[id], buf, (size_t)len[id]);
        }
    }
    if (srp_vocab_new(n, (const uint8_t *const *)b, len, &v, &e)) fprintf(stderr, "%s\n", e.msg);
    for (int id = 0; id < n; id++) free(b[id]);
    free(b);
    free(len);
    return v;
}

static const char *tokenizers[][2] = {
    { "fixtures/zamba2_bpe", "1" }, /* byte-level BPE */
    { "tokenizer/fixtures/tiny_bpe", "1" },
    { "models/serpent-tiny", "0" }, /* SentencePiece BPE, byte fallback */
    { "tokenizer/spm/bpe", "1" },
};
#define N_TOKENIZERS (int)(sizeof tokenizers / sizeof tokenizers[0])

TEST(token_bytes_concatenate_to_the_decoded_text) {
    const char *text = "Hello, world! {\"k\": [1, 2.5e-3]}\n\tcaf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 "
                       "\xf0\x9f\x98\x80  end";
    for (int k = 0; k < N_TOKENIZERS; k++) {
        srp_tokenizer *t = load_tok(tokenizers[k][0], tokenizers[k][1][0] == '1');
        REQUIRE(t);
        int32_t *ids;
        int n;
        srp_err e;
        REQUIRE(srp_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &e) == 0);
        char *dec;
        size_t dlen;
        REQUIRE(srp_tokenizer_decode(t, ids, n, 0, &dec, &dlen, &e) == 0);
        char cat[4096];
        size_t m = 0;
        for (int i = 0; i < n; i++) {
            int len =
                srp_tokenizer_token_bytes(t, ids[i], (uint8_t *)cat + m, (int)(sizeof cat - m));
            CHECKF(len > 0, "%s: token %d has no bytes", tokenizers[k][0], ids[i]);
            if (len > 0) m += (size_t)len;
        }
        /* decode may drop a leading space the tokenizer added (SentencePiece's dummy prefix) */
        size_t skip = m == dlen + 1 && cat[0] == ' ' ? 1 : 0;
        CHECKF(m - skip == dlen && !memcmp(cat + skip, dec, dlen), "%s: \"%.*s\" vs \"%s\"",
               tokenizers[k][0], (int)m, cat, dec);
        CHECK(srp_tokenizer_token_bytes(t, -1, NULL, 0) == -1);
        int eos = srp_tokenizer_eos(t);
        if (eos >= 0) CHECK(srp_tokenizer_token_bytes(t, eos, NULL, 0) == -1);
        free(ids);
        free(dec);
        srp_tokenizer_free(t);
    }
}

/* A matcher after the tokens prefix[0..n). */
static srp_matcher *matcher_after(srp_grammar *g, const srp_vocab *v, const int32_t *prefix,
                                  int n) {
    srp_matcher *m;
    srp_err e;
    if (srp_matcher_new(g, v, &m, &e)) return NULL;
    for (int i = 0; i < n; i++)
        if (srp_matcher_accept(m, prefix[i])) {
            srp_matcher_free(m);
            return NULL;
        }
    return m;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Walks the grammar with seeded random allowed tokens (a quarter of the time one holding a
 * character that closes something, so that walks end) until it may end; checks at every step
 * that the mask is exactly the set of tokens accept takes when `exhaustive` (every `every`-th
 * token), and writes the bytes produced to out. Returns their length, -1 when max_steps
 * did not finish, -2 on an inconsistency (printed). */
static int walk_grammar(srp_grammar *g, const srp_vocab *v, const srp_tokenizer *t, int max_steps,
                        int check_every, char *out, int cap) {
    int nv = srp_vocab_size(v), words = (nv + 31) / 32, n_out = 0, n = 0;
    uint32_t *mask = malloc(sizeof *mask * (size_t)words);
    int32_t *prefix = malloc(sizeof *prefix * (size_t)max_steps),
            *allowed = malloc(sizeof(int32_t) * (size_t)nv);
    srp_matcher *m = matcher_after(g, v, NULL, 0);
    int rc = -1;
    if (!m) goto done;
    for (; n < max_steps; n++) {
        if (srp_matcher_can_end(m) && (srp_matcher_must_end(m) || rnd() % 4 == 0)) {
            rc = n_out;
            break;
        }
        srp_matcher_mask(m, mask);
        int na = 0, nclose = 0;
        for (int tok = 0; tok < nv; tok++)
            if (mask[tok >> 5] >> (tok & 31) & 1) allowed[na++] = tok;
        if (check_every) {
            for (int tok = 0; tok < nv; tok += check_every) {
                srp_matcher *c = matcher_after(g, v, prefix, n);
                int ok = c && srp_matcher_accept(c, tok) == 0;
                int in_mask = mask[tok >> 5] >> (tok & 31) & 1;
                if (ok != in_mask) {
                    fprintf(stderr, "step %d token %d: mask %d, accept %d\n", n, tok, in_mask, ok);
                    srp_matcher_free(c);
                    rc = -2;
                    goto done;
                }
                srp_matcher_free(c);
            }
        }
        if (!na) {
            fprintf(stderr, "step %d: no token allowed and the grammar cannot end\n", n);
            rc = -2;
            goto done;
        }
        int pick = allowed[rnd() % (unsigned)na];
        if (rnd() % 4 == 0) { /* prefer a token that closes something */
            for (int i = 0; i < na; i++) {
                uint8_t b[256];
                int len = srp_tokenizer_token_bytes(t, allowed[i], b, sizeof b);
                for (int j = 0; j < len && j < 256; j++)
                    if (b[j] == '"' || b[j] == '}' || b[j] == ']') {
                        if (rnd() % (unsigned)++nclose == 0) pick = allowed[i];
                        break;
                    }
            }
        }
        if (srp_matcher_accept(m, pick)) {
            fprintf(stderr, "step %d: accept refused masked token %d\n", n, pick);
            rc = -2;
            goto done;
        }
        prefix[n] = pick;
        uint8_t b[256];
        int len = srp_tokenizer_token_bytes(t, pick, b, sizeof b);
        if (len > 0 && n_out + len < cap) {
            memcpy(out + n_out, b, (size_t)len);
            n_out += len;
        }
    }
done:
    if (rc >= 0) out[rc] = 0;
    srp_matcher_free(m);
    free(mask);
    free(prefix);
    free(allowed);
    return rc;
}

static const char *json_gbnf =
    "root ::= object\n"
    "value ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
    "array ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\bfnrt] | \"u\" "
    "[0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{1,15})) (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? "
    "ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

TEST(mask_matches_accept_exhaustively) {
    srp_grammar *g = gbnf(json_gbnf);
    REQUIRE(g);
    for (int k = 0; k < N_TOKENIZERS; k++) {
        srp_tokenizer *t = load_tok(tokenizers[k][0], tokenizers[k][1][0] == '1');
        REQUIRE(t);
        srp_vocab *v = tok_vocab(t);
        REQUIRE(v);
        int every = srp_vocab_size(v) > 2000 ? 7 : 1;
        for (int walk = 0; walk < 3; walk++) {
            char out[65536];
            /* 60 steps may not finish an object (-1) */
            CHECKF(walk_grammar(g, v, t, 60, every, out, sizeof out) != -2, "%s", tokenizers[k][0]);
        }
        srp_vocab_free(v);
        srp_tokenizer_free(t);
    }
    srp_grammar_unref(g);
}

TEST(mask_random_walks_give_json) {
    srp_grammar *g = gbnf(json_gbnf);
    REQUIRE(g);
    for (int k = 0; k < N_TOKENIZERS; k++) {
        srp_tokenizer *t = load_tok(tokenizers[k][0], tokenizers[k][1][0] == '1');
        REQUIRE(t);
        srp_vocab *v = tok_vocab(t);
        REQUIRE(v);
        for (int walk = 0; walk < 5; walk++) {
            static char out[1 << 20];
            int n = walk_grammar(g, v, t, 20000, 0, out, sizeof out);
            CHECKF(n > 0, "%s: walk %d did not end", tokenizers[k][0], walk);
            if (n <= 0) continue;
            if (getenv("SERPENT_TEST_VERBOSE")) fprintf(stderr, "%s: %s\n", tokenizers[k][0], out);
            cJSON *j = cJSON_ParseWithLength(out, (size_t)n);
            CHECKF(j && cJSON_IsObject(j), "%s: not a JSON object: %s", tokenizers[k][0], out);
            cJSON_Delete(j);
        }
        srp_vocab_free(v);
        srp_tokenizer_free(t);
    }
    srp_grammar_unref(g);
}

TEST(mask_utf8_split_across_byte_fallback_tokens) {
    srp_tokenizer *t = load_tok("models/serpent-tiny", 0);
    REQUIRE(t);
    srp_vocab *v = tok_vocab(t);
    REQUIRE(v);
    srp_grammar *g = gbnf("root ::= \"\\u4e2d\\n\"");
    REQUIRE(g);
    int b0 = srp_tokenizer_token_id(t, "<0xE4>"), b1 = srp_tokenizer_token_id(t, "<0xB8>"),
        b2 = srp_tokenizer_token_id(t, "<0xAD>"), nl = srp_tokenizer_token_id(t, "<0x0A>");
    REQUIRE(b0 >= 0 && b1 >= 0 && b2 >= 0 && nl >= 0);
    uint8_t buf[8];
    CHECK(srp_tokenizer_token_bytes(t, nl, buf, 8) == 1 && buf[0] == '\n');
    int words = (srp_vocab_size(v) + 31) / 32;
    uint32_t *mask = calloc((size_t)words, sizeof *mask);
    srp_matcher *m = matcher_after(g, v, NULL, 0);
    REQUIRE(m);
    int seq[] = { b0, b1, b2, nl };
    for (int i = 0; i < 4; i++) {
        srp_matcher_mask(m, mask);
        CHECKF(mask[seq[i] >> 5] >> (seq[i] & 31) & 1, "byte %d not allowed", i);
        int count = 0;
        for (int w = 0; w < words; w++) count += __builtin_popcount(mask[w]);
        CHECKF(count == 1 || i == 0, "step %d: %d tokens allowed", i, count);
        CHECK(srp_matcher_accept(m, seq[i]) == 0);
    }
    CHECK(srp_matcher_must_end(m));
    srp_matcher_free(m);
    free(mask);
    srp_grammar_unref(g);
    srp_vocab_free(v);
    srp_tokenizer_free(t);
}

/* --- JSON Schema ----------------------------------------------------------------------- */

static srp_grammar *schema(const char *src) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    if (srp_grammar_json_schema(src, strlen(src), &g, &e)) fprintf(stderr, "schema: %s\n", e.msg);
    return g;
}

static int schema_error(const char *src, int code, const char *needle) {
    srp_grammar *g = NULL;
    srp_err e = { 0 };
    int rc = srp_grammar_json_schema(src, strlen(src), &g, &e);
    srp_grammar_unref(g);
    if (rc != code || !strstr(e.msg, needle)) {
        fprintf(stderr, "schema %s: rc %d, \"%s\" (wanted %d, \"%s\")\n", src, rc, e.msg, code,
                needle);
        return 0;
    }
    return 1;
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
    YES(g, "{\n  \"b\": \"x\"\n}");
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
static const char *walk_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":3},"
    "\"ok\":{\"type\":\"boolean\"},"
    "\"when\":{\"type\":\"string\",\"format\":\"date\"}},"
    "\"required\":[\"name\",\"age\"]}";

static int valid_walk_output(const cJSON *j) {
    if (!cJSON_IsObject(j)) return 0;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *age = cJSON_GetObjectItemCaseSensitive(j, "age");
    if (!cJSON_IsString(name) || !cJSON_IsNumber(age)) return 0;
    if (age->valuedouble < 0 || age->valuedouble > 150) return 0;
    for (const cJSON *k = j->child; k; k = k->next) {
        if (!strcmp(k->string, "tags")) {
            if (!cJSON_IsArray(k) || cJSON_GetArraySize(k) > 3) return 0;
            for (const cJSON *t = k->child; t; t = t->next)
                if (!cJSON_IsString(t) ||
                    (strcmp(t->valuestring, "a") && strcmp(t->valuestring, "b")))
                    return 0;
        } else if (!strcmp(k->string, "ok")) {
            if (!cJSON_IsBool(k)) return 0;
        } else if (!strcmp(k->string, "when")) {
            if (!cJSON_IsString(k) || strlen(k->valuestring) != 10) return 0;
        } else if (strcmp(k->string, "name") && strcmp(k->string, "age"))
            return 0;
    }
    return 1;
}

TEST(json_schema_random_walks_validate) {
    srp_grammar *g = schema(walk_schema);
    REQUIRE(g);
    for (int k = 0; k < N_TOKENIZERS; k++) {
        srp_tokenizer *t = load_tok(tokenizers[k][0], tokenizers[k][1][0] == '1');
        REQUIRE(t);
        srp_vocab *v = tok_vocab(t);
        REQUIRE(v);
        for (int walk = 0; walk < 8; walk++) {
            static char out[1 << 16];
            /* the first walk also checks every mask against accept */
            int every = walk ? 0 : srp_vocab_size(v) > 2000 ? 5 : 1;
            int n = walk_grammar(g, v, t, 5000, every, out, sizeof out);
            CHECKF(n > 0, "%s: walk %d did not end (%d)", tokenizers[k][0], walk, n);
            if (n <= 0) continue;
            if (getenv("SERPENT_TEST_VERBOSE")) fprintf(stderr, "%s: %s\n", tokenizers[k][0], out);
            cJSON *j = cJSON_ParseWithLength(out, (size_t)n);
            CHECKF(valid_walk_output(j), "%s: %s", tokenizers[k][0], out);
            cJSON_Delete(j);
        }
        srp_vocab_free(v);
        srp_tokenizer_free(t);
    }
    srp_grammar_unref(g);
}

/* Matchers of one grammar on several threads: the grammar's frame store and mask cache are
 * shared under its mutex (run under the sanitizers, TSan included). */
typedef struct walk_job {
    srp_grammar *g;
    const srp_vocab *v;
    const srp_tokenizer *t;
    int ok;
} walk_job;

static void *walk_thread(void *arg) {
    walk_job *j = arg;
    int nv = srp_vocab_size(j->v), words = (nv + 31) / 32;
    uint32_t *mask = malloc(sizeof *mask * (size_t)words);
    char out[8192];
    int n = 0;
    uint64_t r = (uint64_t)(uintptr_t)arg | 1;
    srp_matcher *m = matcher_after(j->g, j->v, NULL, 0);
    j->ok = m != NULL;
    for (int step = 0; m && step < 3000 && !srp_matcher_can_end(m); step++) {
        srp_matcher_mask(m, mask);
        int pick = -1, seen = 0;
        for (int tok = 0; tok < nv; tok++) {
            if (!(mask[tok >> 5] >> (tok & 31) & 1)) continue;
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            uint8_t b[256];
            int len = srp_tokenizer_token_bytes(j->t, tok, b, sizeof b);
            int closing = len > 0 && memchr(b, '"', (size_t)len) != NULL;
            /* reservoir pick, with closing tokens weighted up so that the walk ends */
            seen += closing ? 8 : 1;
            if (r % (uint64_t)seen < (closing ? 8u : 1u)) pick = tok;
        }
        if (pick < 0 || srp_matcher_accept(m, pick)) {
            j->ok = 0;
            break;
        }
        uint8_t b[256];
        int len = srp_tokenizer_token_bytes(j->t, pick, b, sizeof b);
        if (len > 0 && n + len < (int)sizeof out) {
            memcpy(out + n, b, (size_t)len);
            n += len;
        }
    }
    if (m && !srp_matcher_can_end(m)) j->ok = 0;
    if (j->ok) {
        cJSON *js = cJSON_ParseWithLength(out, (size_t)n);
        j->ok = valid_walk_output(js);
        cJSON_Delete(js);
    }
    srp_matcher_free(m);
    free(mask);
    return NULL;
}

TEST(matchers_share_a_grammar_across_threads) {
    srp_tokenizer *t = load_tok("fixtures/zamba2_bpe", 1);
    REQUIRE(t);
    srp_vocab *v = tok_vocab(t);
    srp_grammar *g = schema(walk_schema);
    REQUIRE(v && g);
    pthread_t th[4];
    walk_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (walk_job){ .g = g, .v = v, .t = t };
        REQUIRE(pthread_create(&th[i], NULL, walk_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECKF(jobs[i].ok, "thread %d", i);
    }
    srp_grammar_unref(g);
    srp_vocab_free(v);
    srp_tokenizer_free(t);
}

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
