/* Constrained decoding: grammars over bytes, and the tokens they allow next.
 *
 * A grammar (compiled from GBNF, JSON Schema, a regular expression or a list of choices) is an
 * immutable, reference-counted object any thread may share; the server caches compiled ones.
 * A matcher is one request's position in a grammar, used by one thread at a time (the
 * scheduler's engine thread): before each draw it fills the mask of the tokens whose bytes the
 * grammar allows next, after it it accepts the drawn token. The vocabulary (every token's
 * bytes as it appears inside a text, from the tokenizer) is built once per model. Functions
 * return 0 or a negative SRP_E* code with a message in e; a schema or grammar serpent cannot
 * compile is SRP_EUNSUPPORTED (or SRP_EFORMAT when malformed) with a message naming the
 * construct and where it is ("$.properties.age: 'multipleOf' is not supported"). */
#ifndef SRP_GRAMMAR_H
#define SRP_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Every token's bytes; a token with none (special and control tokens) is never allowed by a
 * grammar. The bytes are copied. */
typedef struct srp_vocab srp_vocab;
int srp_vocab_new(int n_tokens, const uint8_t *const *bytes, const int *lens, srp_vocab **out,
                  srp_err *e);
/* The same from token_bytes(ctx, t, buf, cap), which spells token t as
 * srp_tokenizer_token_bytes does: its length (written when it fits in cap; asked again with
 * room when not), or -1 for a token with no bytes. */
int srp_vocab_from(int n_tokens, int (*token_bytes)(const void *ctx, int t, uint8_t *buf, int cap),
                   const void *ctx, srp_vocab **out, srp_err *e);
void srp_vocab_free(srp_vocab *v);
int srp_vocab_size(const srp_vocab *v);

typedef struct srp_grammar srp_grammar;
/* GBNF, as llama.cpp writes it; the start rule is `root`. */
int srp_grammar_gbnf(const char *src, size_t len, srp_grammar **out, srp_err *e);
/* A JSON Schema (the text of one JSON value) as vLLM's guided_json / response_format
 * json_schema. */
int srp_grammar_json_schema(const char *schema, size_t len, srp_grammar **out, srp_err *e);
/* Any JSON object (response_format json_object). */
int srp_grammar_json_object(srp_grammar **out, srp_err *e);
/* A regular expression the whole output must match (guided_regex). */
int srp_grammar_regex(const char *re, size_t len, srp_grammar **out, srp_err *e);
/* Exactly one of n strings (guided_choice). */
int srp_grammar_choice(const char *const *choices, const size_t *lens, int n, srp_grammar **out,
                       srp_err *e);
/* Bytes the grammar holds: its rules, and the stacks and cached masks its matchers have added
 * (they grow as requests explore it, to bounded sizes), as of its matchers' last call; for a
 * cache that keeps grammars. Never waits for a mask being computed. */
size_t srp_grammar_memory(srp_grammar *g);
srp_grammar *srp_grammar_ref(srp_grammar *g);
void srp_grammar_unref(srp_grammar *g); /* NULL is fine */

typedef struct srp_matcher srp_matcher;
int srp_matcher_new(srp_grammar *g, const srp_vocab *v, srp_matcher **out, srp_err *e);
void srp_matcher_free(srp_matcher *m); /* NULL is fine */
/* Sets bit (t & 31) of mask[t >> 5] for every token t whose bytes the grammar allows next and
 * clears the others; mask holds (vocab + 31) / 32 words. The end of sequence is the caller's:
 * it may end the reply where srp_matcher_can_end says. */
void srp_matcher_mask(srp_matcher *m, uint32_t *mask);
/* The bytes so far form a whole sentence of the grammar. */
int srp_matcher_can_end(const srp_matcher *m);
/* ... and no byte may follow. */
int srp_matcher_must_end(const srp_matcher *m);
/* Advances past token t's bytes: 0, or SRP_EINVAL (state unchanged) when the grammar does not
 * allow them. */
int srp_matcher_accept(srp_matcher *m, int32_t t);

#endif
