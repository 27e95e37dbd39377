/* The grammar engine's private types: the byte-level IR every front end compiles to, the
 * interned stacks the matcher walks, and the shared mask cache. Not for use outside
 * engine/grammar/. */
#ifndef SRP_GRAMMAR_INTERNAL_H
#define SRP_GRAMMAR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "grammar.h"

/* --- IR ------------------------------------------------------------------------------------
 * A rule is its alternatives one after another, each ended by GE_ALT, the last by GE_END.
 * Terminals are sets of bytes: a character class of code points becomes a rule whose
 * alternatives are UTF-8 byte sequences, so a character split across tokens still matches. */
enum { GE_END, GE_ALT, GE_REF, GE_BYTES };

typedef struct gelem {
    uint32_t type : 2;
    uint32_t val : 30; /* GE_REF: a rule; GE_BYTES: a byte set */
} gelem;

typedef struct gbytes {
    uint32_t bits[8];
} gbytes;

static inline int gbytes_has(const gbytes *s, unsigned b) {
    return (s->bits[b >> 5] >> (b & 31)) & 1;
}

/* Limits that keep a hostile grammar from exhausting memory or time. */
enum {
    G_MAX_ELEMS = 1 << 22, /* elements of all rules */
    G_MAX_REPEAT = 100000, /* the m and n of x{m,n} */
    G_MAX_STACKS = 8192,   /* live stacks of one matcher state */
    G_MAX_NODES = 1 << 22, /* interned stack frames of one grammar (about 150 MB) */
};

/* A growing rule set, as the front ends build it. */
typedef struct gbuild {
    gelem **rule; /* rule[r]: its elements */
    int *rule_n, *rule_cap;
    char **name;                 /* for messages */
    int *defined;                /* GBNF: the rule has a definition */
    int *first_line, *first_col; /* GBNF: where it was first used */
    int n_rules, cap_rules;
    int *hash;
    int hash_cap; /* name -> rule + 1, open addressing */
    gbytes *sets;
    int n_sets, cap_sets;
    long n_elems;
} gbuild;

void gb_init(gbuild *b);
void gb_free(gbuild *b);
/* The rule of this name, created (undefined, empty) if new; -1 when out of memory. */
int gb_rule(gbuild *b, const char *name, size_t len);
/* A new rule named "<base>~<n>" (no GBNF text can name it). */
int gb_fresh(gbuild *b, const char *base);
int gb_push(gbuild *b, int rule, int type, int val);
int gb_set(gbuild *b, const gbytes *s); /* index of a byte set (deduplicated with the last) */
/* Appends to rule a match of one code point in the sorted, disjoint ranges [lo[i], hi[i]]:
 * one GE_BYTES when every code point is one byte, else a reference to a new rule of byte
 * sequences. `base` names that rule. */
int gb_push_class(gbuild *b, int rule, const uint32_t *lo, const uint32_t *hi, int n,
                  const char *base);
/* Freezes b (moved into the grammar) and checks it: every rule defined, no left recursion. */
int gb_finish(gbuild *b, int root, srp_grammar **out, srp_err *e);

/* Code-point ranges [lo[i], hi[i]]: sorted and merged in place (returns the new count), or
 * replaced by their complement in [0, 0x10FFFF] (out arrays hold n + 1; returns the count). */
int g_ranges_normalize(uint32_t *lo, uint32_t *hi, int n);
int g_ranges_complement(const uint32_t *lo, const uint32_t *hi, int n, uint32_t *olo,
                        uint32_t *ohi);

/* UTF-8 helpers. */
int g_utf8_encode(uint32_t cp, uint8_t out[4]);
/* A hex digit's value, or -1 (GBNF's and the regex's escapes). */
static inline int g_hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one code point at s (n bytes left): its length, or 0 when invalid. */
int g_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* --- stacks --------------------------------------------------------------------------------
 * A stack is an interned frame (pos, parent): pos indexes the grammar's elements, parent is
 * the frame to return to (0: the end of the sentence). A matcher state is the sorted set of
 * frames whose pos is a GE_BYTES element, plus node 0 when the grammar may end there. After
 * a byte in a frame's set, the successors depend only on the frame, so each frame caches
 * them (`succ`) and advancing a state is a union of cached lists. */
typedef struct gnode {
    int32_t pos, parent;
    int32_t set;              /* byte set of the element at pos, or -1 when not a terminal */
    int32_t succ_off, succ_n; /* into the succ pool; succ_off -1 until computed */
} gnode;

typedef struct gstore {
    gnode *node;
    int n, cap;
    int32_t *hash; /* (pos, parent) -> node, open addressing, -1 empty */
    int hash_cap;
    int32_t *succ;
    long n_succ, cap_succ;
    uint32_t *mark_x, *mark_s; /* generation stamps: expansion, state union */
    uint32_t stamp_x, stamp_s;
    int32_t *tmp;
    int n_tmp, cap_tmp; /* expansion output */
} gstore;

typedef struct gcache gcache; /* mask_cache.c */

struct srp_grammar {
    atomic_int refs;
    gelem *elem;
    int n_elem;
    int32_t *alt;     /* start of each alternative, rule by rule */
    int32_t *alt_off; /* rule r's alternatives: alt[alt_off[r] .. alt_off[r + 1]) */
    int n_rules, root;
    char **name;
    gbytes *sets;
    int n_sets;
    pthread_mutex_t mu; /* guards store and cache, which grow as matchers explore */
    /* their bytes, noted under mu as they grow, read without it (srp_grammar_memory) */
    atomic_size_t grown;
    gstore store;
    gcache *cache;
    int32_t **lvl; /* the mask walk's state at each trie depth */
    int *lvl_cap, n_lvl;
};

/* matcher.c, under g->mu: the initial state into out (sorted); 0 or -1 when a limit is hit. */
int g_initial(srp_grammar *g, int32_t **out, int *n, int *cap);
/* The state after byte b from in[0..n): into out (deduplicated, unsorted); its size, or -1. */
int g_advance(srp_grammar *g, const int32_t *in, int n, unsigned b, int32_t **out, int *cap);
void g_store_free(gstore *s);

/* vocab_trie.c: the mask of a state, computed by walking the vocabulary's byte trie. */
void g_mask_compute(srp_grammar *g, const srp_vocab *v, const int32_t *state, int n,
                    uint32_t *mask);
uint64_t g_vocab_uid(const srp_vocab *v);

/* mask_cache.c, under g->mu: a cached mask of (vocab, state) or NULL; store a copy. */
const uint32_t *g_cache_get(srp_grammar *g, uint64_t vocab, const int32_t *state, int n);
void g_cache_put(srp_grammar *g, uint64_t vocab, const int32_t *state, int n, const uint32_t *mask,
                 int words);
void g_cache_free(gcache *c);
size_t g_cache_bytes(const gcache *c);

/* GBNF text building for the front ends that emit GBNF (json_schema.c, regex.c). */
typedef struct gtext {
    char *s;
    size_t n, cap;
    int oom;
} gtext;
void gt_put(gtext *t, const char *s, size_t n);
void gt_puts(gtext *t, const char *s);
void gt_printf(gtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A GBNF string literal of n bytes of UTF-8 text, quotes included. */
void gt_literal(gtext *t, const char *s, size_t n);
/* A code point as it may appear inside a GBNF character class. */
void gt_class_char(gtext *t, uint32_t cp);

/* regex.c: a regular expression as one parenthesized GBNF expression appended to out; json:
 * it matches the text of a JSON string whose value the expression matches. `what` names it
 * in messages (a schema path). */
int g_regex_gbnf(const char *re, size_t len, int json, const char *what, gtext *out, srp_err *e);

#endif
