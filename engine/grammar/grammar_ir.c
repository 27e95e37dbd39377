/* Building the byte-level IR (rules of alternatives over byte sets), compiling code-point
 * classes to UTF-8 byte sequences, and freezing a rule set into a checked srp_grammar. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

void gb_init(gbuild *b) {
    memset(b, 0, sizeof *b);
}

void gb_free(gbuild *b) {
    for (int r = 0; r < b->n_rules; r++) {
        free(b->rule[r]);
        free(b->name[r]);
    }
    free(b->rule);
    free(b->rule_n);
    free(b->rule_cap);
    free(b->name);
    free(b->defined);
    free(b->first_line);
    free(b->first_col);
    free(b->hash);
    free(b->sets);
    gb_init(b);
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int grow(void **p, int *cap, int need, size_t size) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int rehash(gbuild *b, int cap) {
    int *h = calloc((size_t)cap, sizeof *h);
    if (!h) return -1;
    for (int r = 0; r < b->n_rules; r++) {
        uint32_t i = name_hash(b->name[r], strlen(b->name[r])) & (uint32_t)(cap - 1);
        while (h[i]) i = (i + 1) & (uint32_t)(cap - 1);
        h[i] = r + 1;
    }
    free(b->hash);
    b->hash = h;
    b->hash_cap = cap;
    return 0;
}

static int add_rule(gbuild *b, const char *name, size_t len) {
    int r = b->n_rules, cap = b->cap_rules;
    if (r + 1 > cap) {
        int c = cap ? cap * 2 : 64;
        void **arrs[] = { (void **)&b->rule,     (void **)&b->rule_n,  (void **)&b->rule_cap,
                          (void **)&b->name,     (void **)&b->defined, (void **)&b->first_line,
                          (void **)&b->first_col };
        size_t sizes[] = { sizeof *b->rule,     sizeof *b->rule_n,  sizeof *b->rule_cap,
                           sizeof *b->name,     sizeof *b->defined, sizeof *b->first_line,
                           sizeof *b->first_col };
        for (int i = 0; i < 7; i++) {
            int c2 = cap;
            if (grow(arrs[i], &c2, c, sizes[i])) return -1;
        }
        b->cap_rules = c;
    }
    if ((r + 1) * 2 > b->hash_cap && rehash(b, b->hash_cap ? b->hash_cap * 2 : 128)) return -1;
    b->name[r] = malloc(len + 1);
    if (!b->name[r]) return -1;
    memcpy(b->name[r], name, len);
    b->name[r][len] = 0;
    b->rule[r] = NULL;
    b->rule_n[r] = b->rule_cap[r] = 0;
    b->defined[r] = 0;
    b->first_line[r] = b->first_col[r] = 0;
    b->n_rules++;
    uint32_t i = name_hash(name, len) & (uint32_t)(b->hash_cap - 1);
    while (b->hash[i]) i = (i + 1) & (uint32_t)(b->hash_cap - 1);
    b->hash[i] = r + 1;
    return r;
}

int gb_rule(gbuild *b, const char *name, size_t len) {
    if (b->hash_cap) {
        uint32_t i = name_hash(name, len) & (uint32_t)(b->hash_cap - 1);
        for (; b->hash[i]; i = (i + 1) & (uint32_t)(b->hash_cap - 1)) {
            const char *s = b->name[b->hash[i] - 1];
            if (strlen(s) == len && !memcmp(s, name, len)) return b->hash[i] - 1;
        }
    }
    return add_rule(b, name, len);
}

int gb_fresh(gbuild *b, const char *base) {
    char buf[96];
    /* The name only has to be unique and readable in messages. */
    for (int k = b->n_rules;; k++) {
        /* "~" cannot appear in a GBNF name, so a generated rule never takes a user's name */
        int n = snprintf(buf, sizeof buf, "%.60s~%d", base, k);
        int r = gb_rule(b, buf, (size_t)n);
        if (r < 0) return -1;
        if (b->rule_n[r] || b->defined[r]) continue;
        b->defined[r] = 1;
        return r;
    }
}

int gb_push(gbuild *b, int rule, int type, int val) {
    if (++b->n_elems > G_MAX_ELEMS) return -1;
    if (grow((void **)&b->rule[rule], &b->rule_cap[rule], b->rule_n[rule] + 1, sizeof(gelem)))
        return -1;
    b->rule[rule][b->rule_n[rule]++] = (gelem){ .type = (uint32_t)type, .val = (uint32_t)val };
    return 0;
}

int gb_set(gbuild *b, const gbytes *s) {
    if (b->n_sets && !memcmp(&b->sets[b->n_sets - 1], s, sizeof *s)) return b->n_sets - 1;
    if (grow((void **)&b->sets, &b->cap_sets, b->n_sets + 1, sizeof *s)) return -1;
    b->sets[b->n_sets] = *s;
    return b->n_sets++;
}

int g_utf8_encode(uint32_t cp, uint8_t o[4]) {
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 63));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 63));
        o[2] = (uint8_t)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 63));
    o[3] = (uint8_t)(0x80 | (cp & 63));
    return 4;
}

int g_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    if (!n) return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    int len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    if (!len || (size_t)len > n || s[0] > 0xF4) return 0;
    uint32_t c = s[0] & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 63);
    }
    static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

/* Code-point ranges to UTF-8 byte-range sequences, as RE2 does: split a range until both
 * ends encode to the same length and differ only in a suffix of full continuation ranges. */
typedef struct class_ctx {
    gbuild *b;
    int rule, n_alts, err;
    gbytes single;
} class_ctx;

static void class_seq(class_ctx *c, uint32_t lo, uint32_t hi) {
    uint8_t a[4], z[4];
    int n = g_utf8_encode(lo, a);
    g_utf8_encode(hi, z);
    if (c->n_alts++ && gb_push(c->b, c->rule, GE_ALT, 0)) c->err = 1;
    for (int i = 0; i < n && !c->err; i++) {
        gbytes s = { { 0 } };
        for (unsigned x = a[i]; x <= z[i]; x++) s.bits[x >> 5] |= 1u << (x & 31);
        int id = gb_set(c->b, &s);
        if (id < 0 || gb_push(c->b, c->rule, GE_BYTES, id)) c->err = 1;
    }
}

static void class_split(class_ctx *c, uint32_t lo, uint32_t hi) {
    if (lo > hi || c->err) return;
    if (lo <= 0xDFFF && hi >= 0xD800) {
        if (lo < 0xD800) class_split(c, lo, 0xD7FF);
        if (hi > 0xDFFF) class_split(c, 0xE000, hi);
        return;
    }
    static const uint32_t ends[] = { 0x7F, 0x7FF, 0xFFFF };
    for (int i = 0; i < 3; i++)
        if (lo <= ends[i] && hi > ends[i]) {
            class_split(c, lo, ends[i]);
            class_split(c, ends[i] + 1, hi);
            return;
        }
    if (hi <= 0x7F) {
        for (uint32_t x = lo; x <= hi; x++) c->single.bits[x >> 5] |= 1u << (x & 31);
        return;
    }
    for (int i = 1; i < 4; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) == (hi & ~m)) continue;
        if (lo & m) {
            class_split(c, lo, lo | m);
            class_split(c, (lo | m) + 1, hi);
            return;
        }
        if ((hi & m) != m) {
            class_split(c, lo, (hi & ~m) - 1);
            class_split(c, hi & ~m, hi);
            return;
        }
    }
    class_seq(c, lo, hi);
}

int gb_push_class(gbuild *b, int rule, const uint32_t *lo, const uint32_t *hi, int n,
                  const char *base) {
    int ascii_only = 1;
    for (int i = 0; i < n; i++) ascii_only &= hi[i] < 0x80;
    if (ascii_only) {
        gbytes s = { { 0 } };
        for (int i = 0; i < n; i++)
            for (uint32_t x = lo[i]; x <= hi[i]; x++) s.bits[x >> 5] |= 1u << (x & 31);
        int id = gb_set(b, &s);
        return id < 0 ? -1 : gb_push(b, rule, GE_BYTES, id);
    }
    int r = gb_fresh(b, base);
    if (r < 0) return -1;
    class_ctx c = { .b = b, .rule = r };
    for (int i = 0; i < n; i++) class_split(&c, lo[i], hi[i]);
    int any = 0;
    for (int i = 0; i < 8; i++) any |= c.single.bits[i] != 0;
    if (any && !c.err) { /* the one-byte part as one alternative, first */
        if (c.n_alts && gb_push(b, r, GE_ALT, 0)) return -1;
        int id = gb_set(b, &c.single);
        if (id < 0 || gb_push(b, r, GE_BYTES, id)) return -1;
    }
    if (c.err) return -1;
    return gb_push(b, rule, GE_REF, r);
}

/* --- freezing and checking ----------------------------------------------------------------- */

static int check_left_recursion(srp_grammar *g, srp_err *e) {
    int n = g->n_rules;
    char *nullable = calloc((size_t)n, 1), *color = calloc((size_t)n, 1);
    int32_t *off = malloc(sizeof *off * (size_t)(n + 1)),
            *adj = malloc(sizeof *adj * (size_t)g->n_elem);
    int32_t *st = malloc(sizeof *st * (size_t)(2 * n + 2));
    int rc = 0;
    if (!nullable || !color || !off || !adj || !st) {
        rc = srp_err_set(e, SRP_ENOMEM, "grammar: out of memory");
        goto out;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (int a = g->alt_off[r]; a < g->alt_off[r + 1] && !nullable[r]; a++) {
                int p = g->alt[a];
                while (g->elem[p].type == GE_REF && nullable[g->elem[p].val]) p++;
                if (g->elem[p].type == GE_END || g->elem[p].type == GE_ALT)
                    nullable[r] = changed = 1;
            }
        }
    }
    /* Edges "r may begin with s" (s after only nullable rules). */
    int m = 0;
    for (int r = 0; r < n; r++) {
        off[r] = m;
        for (int a = g->alt_off[r]; a < g->alt_off[r + 1]; a++)
            for (int p = g->alt[a]; g->elem[p].type == GE_REF; p++) {
                adj[m++] = (int32_t)g->elem[p].val;
                if (!nullable[g->elem[p].val]) break;
            }
    }
    off[n] = m;
    /* Iterative DFS (rule chains can be as long as a repetition count); a back edge is a left
     * recursion, which would make the matcher's expansion loop forever. */
    for (int r0 = 0; r0 < n && !rc; r0++) {
        if (color[r0]) continue;
        int sp = 0;
        st[sp++] = r0;
        st[sp++] = off[r0];
        color[r0] = 1;
        while (sp) {
            int r = st[sp - 2], i = st[sp - 1];
            if (i == off[r + 1]) {
                color[r] = 2;
                sp -= 2;
                continue;
            }
            st[sp - 1] = i + 1;
            int s = adj[i];
            if (color[s] == 1) {
                rc = srp_err_set(e, SRP_EUNSUPPORTED,
                                 "grammar: rule '%s' is left-recursive (through '%s'; a "
                                 "repetition of something that can be empty is too)",
                                 g->name[s], g->name[r]);
                break;
            }
            if (!color[s]) {
                color[s] = 1;
                st[sp++] = s;
                st[sp++] = off[s];
            }
        }
    }
out:
    free(nullable);
    free(color);
    free(off);
    free(adj);
    free(st);
    return rc;
}

int gb_finish(gbuild *b, int root, srp_grammar **out, srp_err *e) {
    *out = NULL;
    for (int r = 0; r < b->n_rules; r++)
        if (!b->defined[r]) {
            int rc =
                srp_err_set(e, SRP_EFORMAT, "grammar: line %d column %d: rule '%s' is not defined",
                            b->first_line[r], b->first_col[r], b->name[r]);
            gb_free(b);
            return rc;
        }
    srp_grammar *g = calloc(1, sizeof *g);
    long n_elem = b->n_elems + b->n_rules, n_alt = b->n_rules;
    for (int r = 0; r < b->n_rules; r++)
        for (int i = 0; i < b->rule_n[r]; i++) n_alt += b->rule[r][i].type == GE_ALT;
    if (g) {
        g->elem = malloc(sizeof *g->elem * (size_t)n_elem);
        g->alt = malloc(sizeof *g->alt * (size_t)n_alt);
        g->alt_off = malloc(sizeof *g->alt_off * (size_t)(b->n_rules + 1));
    }
    if (!g || !g->elem || !g->alt || !g->alt_off) {
        if (g) {
            free(g->elem);
            free(g->alt);
            free(g->alt_off);
            free(g);
        }
        gb_free(b);
        return srp_err_set(e, SRP_ENOMEM, "grammar: out of memory");
    }
    atomic_init(&g->refs, 1);
    int p = 0, a = 0;
    for (int r = 0; r < b->n_rules; r++) {
        g->alt_off[r] = a;
        g->alt[a++] = p;
        for (int i = 0; i < b->rule_n[r]; i++) {
            g->elem[p++] = b->rule[r][i];
            if (b->rule[r][i].type == GE_ALT) g->alt[a++] = p;
        }
        g->elem[p++] = (gelem){ .type = GE_END };
        free(b->rule[r]);
    }
    g->alt_off[b->n_rules] = a;
    g->n_elem = p;
    g->n_rules = b->n_rules;
    g->root = root;
    g->name = b->name;
    g->sets = b->sets;
    g->n_sets = b->n_sets;
    b->name = NULL;
    b->sets = NULL;
    b->n_rules = 0;
    gb_free(b);
    pthread_mutex_init(&g->mu, NULL);
    int rc = check_left_recursion(g, e);
    if (rc) {
        srp_grammar_unref(g);
        return rc;
    }
    *out = g;
    return 0;
}

srp_grammar *srp_grammar_ref(srp_grammar *g) {
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void srp_grammar_unref(srp_grammar *g) {
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (int r = 0; r < g->n_rules; r++) free(g->name[r]);
    free(g->name);
    free(g->elem);
    free(g->alt);
    free(g->alt_off);
    free(g->sets);
    g_store_free(&g->store);
    g_cache_free(g->cache);
    for (int i = 0; i < g->n_lvl; i++) free(g->lvl[i]);
    free(g->lvl);
    free(g->lvl_cap);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static int range_cmp(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

int g_ranges_normalize(uint32_t *lo, uint32_t *hi, int n) {
    if (n <= 1) return n;
    uint32_t *pairs = malloc(sizeof *pairs * 2 * (size_t)n);
    if (!pairs) return -1;
    for (int i = 0; i < n; i++) {
        pairs[2 * i] = lo[i];
        pairs[2 * i + 1] = hi[i];
    }
    qsort(pairs, (size_t)n, 2 * sizeof *pairs, range_cmp);
    int m = 0;
    for (int i = 0; i < n; i++) {
        uint32_t a = pairs[2 * i], z = pairs[2 * i + 1];
        if (m && a <= hi[m - 1] + 1) {
            if (z > hi[m - 1]) hi[m - 1] = z;
        } else {
            lo[m] = a;
            hi[m++] = z;
        }
    }
    free(pairs);
    return m;
}

int g_ranges_complement(const uint32_t *lo, const uint32_t *hi, int n, uint32_t *olo,
                        uint32_t *ohi) {
    int m = 0;
    uint32_t next = 0;
    for (int i = 0; i < n; i++) {
        if (lo[i] > next) {
            olo[m] = next;
            ohi[m++] = lo[i] - 1;
        }
        next = hi[i] + 1;
    }
    if (next <= 0x10FFFF) {
        olo[m] = next;
        ohi[m++] = 0x10FFFF;
    }
    return m;
}
