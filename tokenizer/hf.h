/* Hugging Face tokenizer.json: the pipeline as plain data (private to tokenizer/).
 *
 * encode: added tokens are cut out of the text (those with normalized=false first), the pieces
 * between them are normalized, then cut by the normalized added tokens, split by the
 * pre-tokenizers, and each word is turned into ids by the BPE model; the post-processor adds
 * BOS/EOS when asked. decode: ids -> token strings -> decoders -> text. Every step follows the
 * Rust `tokenizers` crate, which is the reference. */
#ifndef SRP_HF_H
#define SRP_HF_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tok_regex.h"
#include "tok_util.h"

/* A String or a Regex pattern of Split, Replace. */
typedef struct hf_pattern {
    char *lit; /* literal string, or NULL when re is set */
    size_t lit_len;
    srp_regex *re;
} hf_pattern;

enum hf_norm_kind { HF_NFC, HF_NFD, HF_NFKC, HF_NFKD, HF_PREPEND, HF_REPLACE, HF_STRIP };

typedef struct hf_normalizer {
    enum hf_norm_kind kind;
    char *text; /* Prepend's prefix, Replace's content */
    size_t text_len;
    hf_pattern pat;  /* Replace */
    int left, right; /* Strip */
} hf_normalizer;

enum hf_behavior { HF_REMOVED, HF_ISOLATED, HF_MERGED_PREV, HF_MERGED_NEXT, HF_CONTIGUOUS };
enum hf_prepend { HF_PREPEND_ALWAYS, HF_PREPEND_FIRST, HF_PREPEND_NEVER };
enum hf_pretok_kind { HF_BYTELEVEL, HF_SPLIT, HF_DIGITS, HF_METASPACE, HF_WHITESPACE_SPLIT };

typedef struct hf_pretok {
    enum hf_pretok_kind kind;
    int add_prefix_space, use_regex; /* ByteLevel */
    hf_pattern pat;                  /* Split */
    enum hf_behavior behavior;       /* Split */
    int invert;                      /* Split */
    int individual_digits;           /* Digits */
    char rep[4];                     /* Metaspace: the replacement character as UTF-8 */
    int rep_len;
    enum hf_prepend prepend; /* Metaspace */
    int split;               /* Metaspace */
} hf_pretok;

enum hf_dec_kind {
    HF_D_BYTELEVEL,
    HF_D_METASPACE,
    HF_D_BYTEFALLBACK,
    HF_D_FUSE,
    HF_D_STRIP,
    HF_D_REPLACE
};

typedef struct hf_decoder {
    enum hf_dec_kind kind;
    hf_pattern pat; /* Replace */
    char *content;  /* Replace's content; Strip's character as UTF-8 */
    size_t content_len;
    int start, stop; /* Strip */
    char rep[4];     /* Metaspace */
    int rep_len;
    enum hf_prepend prepend;
} hf_decoder;

/* Ids a post-processor adds around the sequence when special tokens are asked for. */
typedef struct hf_post {
    int32_t *before, *after;
    int n_before, n_after;
    int present;
} hf_post;

typedef struct hf_added {
    char *content; /* as written in tokenizer.json */
    size_t len;
    char *norm; /* content through the normalizer (normalized tokens only; NULL if unchanged) */
    size_t norm_len;
    int32_t id;
    uint8_t special, single_word, lstrip, rstrip, normalized;
} hf_added;

/* A byte trie over added-token contents, for leftmost-longest matching. */
typedef struct hf_trie {
    struct hf_trie_node {
        int32_t first_child, next_sibling; /* -1 = none */
        int32_t token;                     /* index into added[], or -1 */
        unsigned char byte;
    } * node;
    int n, cap;
    int32_t root[256]; /* child of the root for each first byte, -1 = none */
} hf_trie;

#define HF_CACHE_SLOTS    8192
#define HF_CACHE_MAX_WORD 64

typedef struct hf_cache_entry {
    uint64_t hash;
    char *key;
    uint32_t key_len, n_ids;
    int32_t *ids;
} hf_cache_entry;

typedef struct hf_bpe {
    srp_strmap vocab; /* token -> id; raw bytes in byte-level mode */
    srp_pairmap merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix, or NULL */
    size_t prefix_len, suffix_len;
    int32_t unk;   /* -1 = none */
    int unk_named; /* unk_token given but missing from vocab */
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_token[256]; /* ids of <0xHH> (byte_fallback), -1 if missing */
    /* Byte-level mode: vocab keys are the raw bytes the ByteLevel alphabet stands for, words
     * stay raw, and a word starts as one symbol per byte. It gives the same ids as mapping
     * every byte to its character first, without the mapping. */
    int raw;
    int32_t raw_byte[256];
    pthread_mutex_t cache_lock;
    hf_cache_entry *cache;
} hf_bpe;

typedef struct srp_hf {
    char *path; /* for messages */
    hf_bpe bpe;
    srp_tbuf token_text; /* id -> token string as tokenizer.json writes it: */
    size_t *token_off;   /* at token_text.p + token_off[id], */
    int32_t *token_len;  /* token_len[id] bytes long; -1 for an unused id */
    uint8_t *special;    /* id -> added token with special=true */
    int32_t n_ids;       /* ids are in [0, n_ids) */
    hf_normalizer *norm;
    int n_norm;
    hf_pretok *pre;
    int n_pre;
    hf_decoder *dec;
    int n_dec, has_decoder;
    hf_post post;
    hf_added *added;
    int n_added;
    srp_strmap added_ids; /* content -> id */
    hf_trie trie_raw, trie_norm;
} srp_hf;

/* --- hf_load.c --- */
int srp_hf_load(const char *path, srp_hf **out, srp_err *e);
/* The same from JSON text; name is used in messages. */
int srp_hf_load_text(const char *text, size_t len, const char *name, srp_hf **out, srp_err *e);
void srp_hf_free(srp_hf *h);
/* Id of a token string (added tokens first, then the model's vocabulary), or -1. */
int32_t srp_hf_token_id(const srp_hf *h, const char *s, size_t len);

/* --- hf_normalize.c --- */
/* Appends the normalized form of s to out. */
int hf_normalize(const srp_hf *h, const char *s, size_t n, srp_tbuf *out, srp_err *e);

/* --- hf_pretok.c --- */
typedef struct hf_piece {
    size_t off, len; /* text in the work buffer */
    int32_t id;      /* >= 0: an added token, already an id */
    int at_start;    /* begins at offset 0 of the input (Metaspace's prepend_scheme "first") */
    int plain;       /* special added tokens are not matched in it (text a user wrote) */
} hf_piece;

typedef struct hf_pieces {
    hf_piece *p;
    size_t n, cap;
} hf_pieces;

int hf_pieces_push(hf_pieces *v, hf_piece pc);
/* Runs one pre-tokenizer over every text piece of in, writing the result to out; new text
 * goes to the end of buf. */
int hf_pretokenize(const hf_pretok *pt, int raw, srp_tbuf *buf, const hf_pieces *in, hf_pieces *out,
                   srp_spans *tmp, srp_err *e);
/* The ByteLevel alphabet: the character standing for each byte, and back. */
uint32_t hf_byte_char(unsigned char b);
int hf_char_byte(uint32_t cp); /* -1 if cp is not in the alphabet */
/* Splits by a pattern; the behaviors of the Rust crate's NormalizedString::split. */
int hf_split_pattern(const hf_pattern *pat, const char *s, size_t n, srp_spans *matches, char *err,
                     size_t errlen);

/* --- hf_bpe.c --- */
int hf_bpe_word(const hf_bpe *m, const char *w, size_t n, srp_tids *out, srp_err *e);
void hf_bpe_free(hf_bpe *m);

/* --- hf_added.c --- */
int hf_trie_add(hf_trie *t, const char *s, size_t n, int32_t token);
void hf_trie_free(hf_trie *t);
/* Cuts the text pieces of in at the tokens of trie (raw or normalized), as the crate's
 * AddedVocabulary::find_matches does. */
int hf_split_added(const srp_hf *h, const hf_trie *trie, const srp_tbuf *buf, const hf_pieces *in,
                   hf_pieces *out);

/* --- hf_encode.c / hf_decode.c --- */
/* plain[0..n_plain): sorted, disjoint byte spans of text where special added tokens are
 * matched as text (the crate's split_special_tokens), or NULL. */
int srp_hf_encode(const srp_hf *h, const char *text, size_t len, int add_special,
                  const size_t (*plain)[2], int n_plain, srp_tids *out, srp_err *e);
int srp_hf_decode(const srp_hf *h, const int32_t *ids, int n, int skip_special, srp_tbuf *out,
                  srp_err *e);

#endif
