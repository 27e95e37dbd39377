#include "tok_util.h"

#include <stdlib.h>
#include <string.h>

int srp_grow(void **arr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *p = realloc(*arr, c * size);
    if (!p) return -1;
    *arr = p;
    *cap = c;
    return 0;
}

int srp_tbuf_reserve(srp_tbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int srp_tbuf_put(srp_tbuf *b, const void *s, size_t n) {
    if (srp_tbuf_reserve(b, n + 1)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0; /* keeps the buffer printable as a C string */
    return 0;
}

void srp_tbuf_free(srp_tbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

int srp_tids_push(srp_tids *v, int32_t id) {
    if (srp_grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p)) return -1;
    v->p[v->n++] = id;
    return 0;
}

int srp_tids_append(srp_tids *v, const int32_t *ids, size_t n) {
    if (srp_grow((void **)&v->p, &v->cap, v->n + n, sizeof *v->p)) return -1;
    if (n) memcpy(v->p + v->n, ids, n * sizeof *ids);
    v->n += n;
    return 0;
}

void srp_tids_free(srp_tids *v) {
    free(v->p);
    memset(v, 0, sizeof *v);
}

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

uint64_t srp_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001B3ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix(w)) * 0x100000001B3ull;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ mix(w ^ n)) * 0x100000001B3ull;
    return mix(h);
}

/* A slot keeps the high half of the key's hash, so a probe touches an entry (and its key) only
 * when the hashes agree: lookups stay within the slot array. */
static inline uint64_t slot_of(uint64_t hash, size_t e) {
    return (hash & ~0xFFFFFFFFull) | (e + 1);
}

static int strmap_grow(srp_strmap *m) {
    size_t nslots = m->mask ? (m->mask + 1) * 2 : 1024;
    uint64_t *slot = calloc(nslots, sizeof *slot);
    if (!slot) return -1;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = m->ent[e].hash & (nslots - 1);
        while (slot[i]) i = (i + 1) & (nslots - 1);
        slot[i] = slot_of(m->ent[e].hash, e);
    }
    free(m->slot);
    m->slot = slot;
    m->mask = nslots - 1;
    return 0;
}

/* The slot index holding key, or of the empty slot where it would go. */
static size_t strmap_find(const srp_strmap *m, const char *key, size_t len, uint64_t h) {
    uint64_t hi = h & ~0xFFFFFFFFull;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        uint64_t s = m->slot[i];
        if (!s) return i;
        if ((s & ~0xFFFFFFFFull) != hi) continue;
        const struct srp_strmap_entry *e = &m->ent[(uint32_t)s - 1];
        if (e->len == len && !memcmp(m->keys.p + e->off, key, len)) return i;
    }
}

int32_t srp_strmap_get(const srp_strmap *m, const char *key, size_t len) {
    if (!m->slot) return -1;
    uint64_t s = m->slot[strmap_find(m, key, len, srp_hash_bytes(key, len))];
    return s ? m->ent[(uint32_t)s - 1].value : -1;
}

int srp_strmap_set(srp_strmap *m, const char *key, size_t len, int32_t value) {
    if (len > UINT32_MAX || m->n >= UINT32_MAX - 1) return -1;
    if ((m->n + 1) * 2 > (m->mask ? m->mask + 1 : 0) && strmap_grow(m)) return -1;
    uint64_t h = srp_hash_bytes(key, len);
    size_t i = strmap_find(m, key, len, h);
    if (m->slot[i]) {
        m->ent[(uint32_t)m->slot[i] - 1].value = value;
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        struct srp_strmap_entry *ent = realloc(m->ent, cap * sizeof *ent);
        if (!ent) return -1;
        m->ent = ent;
        m->cap = cap;
    }
    size_t off = m->keys.n;
    if (srp_tbuf_put(&m->keys, key, len)) return -1;
    m->ent[m->n] = (struct srp_strmap_entry){ h, off, (uint32_t)len, value };
    m->slot[i] = slot_of(h, m->n);
    m->n++;
    return 0;
}

void srp_strmap_free(srp_strmap *m) {
    free(m->slot);
    free(m->ent);
    srp_tbuf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

static int pairmap_grow(srp_pairmap *m) {
    size_t nslots = m->key ? (m->mask + 1) * 2 : 1024;
    uint64_t *key = malloc(nslots * sizeof *key);
    int32_t *rank = malloc(nslots * sizeof *rank), *merged = malloc(nslots * sizeof *merged);
    if (!key || !rank || !merged) {
        free(key);
        free(rank);
        free(merged);
        return -1;
    }
    for (size_t i = 0; i < nslots; i++) key[i] = UINT64_MAX;
    for (size_t j = 0; m->key && j <= m->mask; j++) {
        if (m->key[j] == UINT64_MAX) continue;
        size_t i = (size_t)srp_pair_hash(m->key[j]) & (nslots - 1);
        while (key[i] != UINT64_MAX) i = (i + 1) & (nslots - 1);
        key[i] = m->key[j];
        rank[i] = m->rank[j];
        merged[i] = m->merged[j];
    }
    free(m->key);
    free(m->rank);
    free(m->merged);
    m->key = key;
    m->rank = rank;
    m->merged = merged;
    m->mask = nslots - 1;
    return 0;
}

int srp_pairmap_set(srp_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    if ((!m->key || (m->n + 1) * 2 > m->mask + 1) && pairmap_grow(m)) return -1;
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)srp_pair_hash(k) & m->mask;
    while (m->key[i] != UINT64_MAX && m->key[i] != k) i = (i + 1) & m->mask;
    if (m->key[i] == UINT64_MAX) m->n++;
    m->key[i] = k;
    m->rank[i] = rank;
    m->merged[i] = merged;
    return 0;
}

void srp_pairmap_free(srp_pairmap *m) {
    free(m->key);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof *m);
}

/* The second byte's range depends on the lead byte (Unicode Table 3-7), which excludes overlong
 * forms, surrogates and code points above U+10FFFF. */
static int second_ok(unsigned char lead, unsigned char c) {
    switch (lead) {
    case 0xE0:
        return c >= 0xA0 && c <= 0xBF;
    case 0xED:
        return c >= 0x80 && c <= 0x9F;
    case 0xF0:
        return c >= 0x90 && c <= 0xBF;
    case 0xF4:
        return c >= 0x80 && c <= 0x8F;
    default:
        return c >= 0x80 && c <= 0xBF;
    }
}

static int seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Length of the valid prefix of a sequence starting at s: the whole sequence when valid (ret ==
 * need), else the maximal subpart (at least 1). */
static int subpart(const unsigned char *s, size_t n, int *need) {
    *need = seq_len(s[0]);
    if (*need <= 1) return 1;
    int k = 1;
    if (n > 1 && second_ok(s[0], s[1])) {
        k = 2;
        while (k < *need && (size_t)k < n && (s[k] & 0xC0) == 0x80) k++;
    }
    return k;
}

int srp_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    if (!n) return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int need, k = subpart(s, n, &need);
    if (need == 0 || k != need) return 0;
    uint32_t c = s[0] & (0x7F >> need);
    for (int i = 1; i < need; i++) c = (c << 6) | (s[i] & 0x3F);
    *cp = c;
    return need;
}

int srp_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int srp_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = srp_utf8_next(u + i, n - i, &cp);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

int srp_utf8_append_lossy(srp_tbuf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (srp_tbuf_reserve(out, n + 1)) return -1;
    size_t i = 0, run = 0; /* bytes [run, i) are valid and not yet copied */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int need, k = subpart(u + i, n - i, &need);
        if (need && k == need) {
            i += (size_t)k;
            continue;
        }
        if (srp_tbuf_put(out, s + run, i - run) || srp_tbuf_put(out, "\xEF\xBF\xBD", 3)) return -1;
        i += (size_t)k;
        run = i;
    }
    return srp_tbuf_put(out, s + run, n - run);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int srp_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}
