/* Text <-> token ids for a model folder.
 *
 * srp_tokenizer_load reads whichever tokenizer the folder has: Hugging Face tokenizer.json
 * (preferred when both exist, as transformers does) or SentencePiece tokenizer.model, plus
 * tokenizer_config.json (special tokens, add_bos_token / add_eos_token, chat template) and
 * chat_template.jinja. The rest of serpent does not know which kind it is. Ids are those of
 * Hugging Face `tokenizers` (resp. the SentencePiece library) for the same text. A loaded
 * tokenizer may be used from many threads at once. Functions return 0 or a negative SRP_E*
 * code with a message in e (a malformed file: the file and the field). */
#ifndef SRP_TOKENIZER_H
#define SRP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct srp_tokenizer srp_tokenizer;

/* SRP_EIO with a message saying so when the folder holds no tokenizer. */
int srp_tokenizer_load(const char *dir, srp_tokenizer **out, srp_err *e);
void srp_tokenizer_free(srp_tokenizer *t);
/* A tokenizer from tokenizer.json text alone (no tokenizer_config.json); `name` is used in
 * messages. */
int srp_tokenizer_load_json_text(const char *text, size_t len, const char *name,
                                 srp_tokenizer **out, srp_err *e);

/* Encodes len bytes of text. Special tokens written in the text are matched (as Hugging Face
 * does); invalid UTF-8 is read as U+FFFD, as a lossy decoder gives it to the reference. With
 * add_special the model's BOS/EOS are added as tokenizer_config.json's add_bos_token /
 * add_eos_token say, or, where it does not say, as tokenizer.json's post-processor does.
 * *ids is malloc'ed; the caller frees it. */
int srp_tokenizer_encode(const srp_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, int *n, srp_err *e);

/* How special tokens decode (flags of srp_tokenizer_decode and srp_detok_new). Special tokens
 * are those the tokenizer files mark so: tokenizer.json's added tokens and
 * tokenizer_config.json's added_tokens_decoder entries with "special": true, the tokens it names
 * (bos, eos, unk, pad, additional_special_tokens ...) and SentencePiece's control pieces. */
enum {
    SRP_DECODE_SKIP_SPECIAL = 1, /* drop them */
    /* when they are shown: one space between each special token and the text beside it, as
     * Hugging Face's decode(spaces_between_special_tokens=True) joins its pieces */
    SRP_DECODE_SPACES_BETWEEN_SPECIAL = 2,
};

/* A byte span [begin, end) of a text. */
typedef struct srp_text_span {
    size_t begin, end;
} srp_text_span;

/* srp_tokenizer_encode, except that special tokens written inside the spans plain[0..n_plain)
 * (sorted, disjoint) are encoded as the text they are, never as the special token: what a user
 * wrote stays text, only the chat template's own markers are control tokens. (Hugging Face's
 * split_special_tokens for tokenizer.json; a SentencePiece user-defined piece there becomes its
 * characters' pieces, or its bytes with byte fallback.) */
int srp_tokenizer_encode_spans(const srp_tokenizer *t, const char *text, size_t len,
                               int add_special, const srp_text_span *plain, int n_plain,
                               int32_t **ids, int *n, srp_err *e);

/* The texts encoding matches as special tokens (tokenizer.json's special added tokens,
 * SentencePiece's special user-defined pieces): *texts and *lens (owned by t) get them; returns
 * how many. */
int srp_tokenizer_special_texts(const srp_tokenizer *t, const char *const **texts,
                                const size_t **lens);

/* Decodes ids to text (malloc'ed, NUL-terminated) under SRP_DECODE_* flags; shown special
 * tokens read as written in the tokenizer files ("<|im_end|>", "<s>"). */
int srp_tokenizer_decode(const srp_tokenizer *t, const int32_t *ids, int n, int flags, char **text,
                         size_t *len, srp_err *e);

/* A lower bound on the tokens len bytes of text encode to (without special tokens added),
 * known without encoding them: 0 when the tokenizer can shrink text without limit (a
 * normalizer or pre-tokenizer that deletes text, whitespace collapsing, fused unknowns). Lets a
 * server refuse a prompt longer than its context from its length. */
size_t srp_tokenizer_min_tokens(const srp_tokenizer *t, size_t len);

int srp_tokenizer_vocab_size(const srp_tokenizer *t);
int srp_tokenizer_bos(const srp_tokenizer *t); /* -1 if none */
int srp_tokenizer_eos(const srp_tokenizer *t); /* -1 if none */
/* The chat template of tokenizer_config.json, or NULL. */
const char *srp_tokenizer_chat_template(const srp_tokenizer *t);
/* Id of a token written as text ("<|im_end|>"), or -1. */
int srp_tokenizer_token_id(const srp_tokenizer *t, const char *token);
/* Token id's bytes as they appear inside a text (what constrained decoding matches against):
 * the decoders applied to that one token with nothing stripped (byte-level BPE's alphabet
 * mapped back to bytes, U+2581 of SentencePiece / Metaspace as a space, a byte-fallback
 * <0xHH> as that single byte). Writes at most cap of them to buf and returns their length
 * (call again with a larger buf when it exceeds cap), or -1 for special, control and unknown
 * tokens and ids outside the vocabulary, which have no text. */
int srp_tokenizer_token_bytes(const srp_tokenizer *t, int id, uint8_t *buf, int cap);
/* 1 for special tokens (those decode drops with skip_special), else 0. */
int srp_tokenizer_is_special(const srp_tokenizer *t, int id);

/* Incremental decoding for streaming: push ids one at a time and get back the text that became
 * complete. Never returns a partial UTF-8 sequence. */
typedef struct srp_detok srp_detok;
/* flags: SRP_DECODE_*, as srp_tokenizer_decode. */
int srp_detok_new(const srp_tokenizer *t, int flags, srp_detok **out, srp_err *e);
/* *text (owned by d, valid until the next call) receives the new text, possibly empty. */
int srp_detok_push(srp_detok *d, int32_t id, const char **text, size_t *len, srp_err *e);
/* Text still held back at the end of a stream (an incomplete character decodes as U+FFFD). */
int srp_detok_flush(srp_detok *d, const char **text, size_t *len, srp_err *e);
void srp_detok_free(srp_detok *d);

#endif
