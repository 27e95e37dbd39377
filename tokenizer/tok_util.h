/* Small building blocks of the tokenizer (private to tokenizer/): growable buffers, a string ->
 * id hash map, a pair -> merge map, and UTF-8 helpers. Functions returning int give 0 or -1
 * (out of memory). */
#ifndef SRP_TOK_UTIL_H
#define SRP_TOK_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Bytes; offsets into p stay valid when it grows. */
typedef struct srp_tbuf {
    char *p;
    size_t n, cap;
} srp_tbuf;

/* Makes room for `need` elements of `size` bytes in *arr (capacity *cap, doubling). */
int srp_grow(void **arr, size_t *cap, size_t need, size_t size);

int srp_tbuf_reserve(srp_tbuf *b, size_t extra);
int srp_tbuf_put(srp_tbuf *b, const void *s, size_t n);
void srp_tbuf_free(srp_tbuf *b);

typedef struct srp_tids {
    int32_t *p;
    size_t n, cap;
} srp_tids;

int srp_tids_push(srp_tids *v, int32_t id);
int srp_tids_append(srp_tids *v, const int32_t *ids, size_t n);
void srp_tids_free(srp_tids *v);

uint64_t srp_hash_bytes(const void *p, size_t n);

/* Open-addressing map from byte strings to int32 values; keys are copied. */
typedef struct srp_strmap {
    uint64_t *slot; /* 0 = empty, else (high 32 bits of the hash) << 32 | (entry index + 1) */
    size_t mask;
    struct srp_strmap_entry {
        uint64_t hash;
        size_t off;
        uint32_t len;
        int32_t value;
    } * ent;
    size_t n, cap;
    srp_tbuf keys;
} srp_strmap;

/* Sets key -> value (replacing an existing value). */
int srp_strmap_set(srp_strmap *m, const char *key, size_t len, int32_t value);
/* The value, or -1. */
int32_t srp_strmap_get(const srp_strmap *m, const char *key, size_t len);
void srp_strmap_free(srp_strmap *m);

static inline uint64_t srp_pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ull;
    return k ^ (k >> 33);
}

/* Map from a pair of token ids to (merge rank, merged id). */
typedef struct srp_pairmap {
    uint64_t *key; /* UINT64_MAX = empty */
    int32_t *rank, *merged;
    size_t mask, n;
} srp_pairmap;

int srp_pairmap_set(srp_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
/* 1 and the values when (a, b) is a merge, else 0. */
static inline int srp_pairmap_get(const srp_pairmap *m, int32_t a, int32_t b, int32_t *rank,
                                  int32_t *merged) {
    if (!m->key) return 0;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (size_t i = (size_t)srp_pair_hash(k) & m->mask;; i = (i + 1) & m->mask) {
        if (m->key[i] == k) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return 1;
        }
        if (m->key[i] == UINT64_MAX) return 0;
    }
}
void srp_pairmap_free(srp_pairmap *m);

/* Length of the valid UTF-8 sequence at s (n bytes left) and its code point, or 0 when the
 * bytes there are not a valid sequence. */
int srp_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Writes cp as UTF-8 into out (4 bytes of room); returns the length. */
int srp_utf8_put(uint32_t cp, char *out);
int srp_utf8_valid(const char *s, size_t n);
/* Appends s to out with every maximal invalid subpart replaced by U+FFFD, as Unicode's
 * "substitution of maximal subparts" (WHATWG's decoder, Rust's from_utf8_lossy) does. */
int srp_utf8_append_lossy(srp_tbuf *out, const char *s, size_t n);

/* A byte-fallback piece "<0xHH>" (the n bytes at s): the byte it stands for, else -1. */
int srp_byte_piece(const char *s, size_t n);

#endif
