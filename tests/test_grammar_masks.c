/* Token masks of the grammar engine on real tokenizers: token bytes against decode, masks
 * agreeing with accept token by token, UTF-8 split across byte-fallback tokens, seeded random
 * walks that must end in JSON the schema validates, matchers of one grammar on threads. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "grammar_test_util.h"
#include "test.h"

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

/* srp_grammar_memory (what the server's grammar cache bounds) counts what matchers add: the
 * stacks they explore and the masks cached for them. */
TEST(grammar_memory_grows_with_use) {
    srp_tokenizer *t = load_tok("models/serpent-tiny", 0);
    REQUIRE(t);
    srp_vocab *v = tok_vocab(t);
    REQUIRE(v);
    srp_grammar *g = NULL;
    srp_err e;
    REQUIRE(srp_grammar_json_object(&g, &e) == 0);
    const size_t before = srp_grammar_memory(g);
    CHECK(before > 0);
    uint32_t *mask = calloc((size_t)(srp_vocab_size(v) + 31) / 32, sizeof *mask);
    srp_matcher *m = matcher_after(g, v, NULL, 0);
    REQUIRE(m);
    srp_matcher_mask(m, mask);
    const size_t after = srp_grammar_memory(g);
    CHECKF(after >= before + (size_t)srp_vocab_size(v) / 8, "%zu -> %zu bytes", before, after);
    srp_matcher_free(m);
    srp_grammar_unref(g);
    srp_vocab_free(v);
    srp_tokenizer_free(t);
    free(mask);
}
