/* Helpers of the grammar tests: compiling with the message printed, whole-string acceptance
 * through a vocabulary of the 256 bytes, and tokenizer vocabularies. */
#ifndef SRP_GRAMMAR_TEST_UTIL_H
#define SRP_GRAMMAR_TEST_UTIL_H

#include <stdint.h>

#include "grammar.h"
#include "tokenizer.h"

/* The 256 single bytes as tokens (made once, never freed). */
srp_vocab *byte_vocab(void);
/* 1 when g accepts s as a whole sentence, 0 when not, -1 on an error. */
int accepts(srp_grammar *g, const char *s);
/* Compiled grammars, NULL (message printed) on an error. */
srp_grammar *gbnf(const char *src);
srp_grammar *schema(const char *src);
/* 1 when compiling the schema fails with code and a message containing needle. */
int schema_error(const char *src, int code, const char *needle);
/* A tokenizer under tests/ (in_tests) or the repository root. */
srp_tokenizer *load_tok(const char *rel, int in_tests);
/* Every token's bytes through srp_tokenizer_token_bytes. */
srp_vocab *tok_vocab(const srp_tokenizer *t);
/* A matcher after the tokens prefix[0..n), or NULL. */
srp_matcher *matcher_after(srp_grammar *g, const srp_vocab *v, const int32_t *prefix, int n);

#define YES(g, s) CHECKF(accepts(g, s) == 1, "should accept \"%s\"", s)
#define NO(g, s)  CHECKF(accepts(g, s) == 0, "should refuse \"%s\"", s)

#endif
