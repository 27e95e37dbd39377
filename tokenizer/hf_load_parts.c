/* Reading the normalizer, pre-tokenizer, decoder and post-processor of tokenizer.json into
 * flat arrays (a Sequence inside a Sequence is flattened). Every error names the file and the
 * field, e.g. `tokenizer.json: field "pre_tokenizer.pretokenizers[0].pattern": ...`. */
#include "hf_load_parts.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hf_bad(srp_err *e, const char *file, const char *field, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return srp_err_set(e, SRP_EFORMAT, "%s: field \"%s\": %s", file, field, why);
}

static int oom(srp_err *e, const char *file) {
    return srp_err_set(e, SRP_ENOMEM, "%s: out of memory", file);
}

const cJSON *hf_get(const cJSON *obj, const char *key) {
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

int hf_get_bool(const hf_ctx *c, const cJSON *obj, const char *key, const char *field, int dflt,
                int *out) {
    const cJSON *it = hf_get(obj, key);
    if (!it || cJSON_IsNull(it)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(it)) {
        char f[512];
        snprintf(f, sizeof f, "%s.%s", field, key);
        return hf_bad(c->e, c->file, f, "must be true or false");
    }
    *out = cJSON_IsTrue(it);
    return 0;
}

int hf_get_int(const hf_ctx *c, const cJSON *obj, const char *key, const char *field, int dflt,
               int lo, int hi, int *out) {
    const cJSON *it = hf_get(obj, key);
    if (!it || cJSON_IsNull(it)) {
        *out = dflt;
        return 0;
    }
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1e300;
    if (!cJSON_IsNumber(it) || v != (double)(long long)v || v < lo || v > hi) {
        char f[512];
        snprintf(f, sizeof f, "%s.%s", field, key);
        return hf_bad(c->e, c->file, f, "must be an integer in [%d, %d]", lo, hi);
    }
    *out = (int)v;
    return 0;
}

/* A required string; *out points into the JSON tree. */
static int get_str(const hf_ctx *c, const cJSON *obj, const char *key, const char *field,
                   const char **out) {
    const cJSON *it = hf_get(obj, key);
    if (!cJSON_IsString(it)) {
        char f[512];
        snprintf(f, sizeof f, "%s.%s", field, key);
        return hf_bad(c->e, c->file, f, it ? "must be a string" : "is missing");
    }
    *out = it->valuestring;
    return 0;
}

static int dup_str(const hf_ctx *c, const char *s, char **out, size_t *len) {
    *len = strlen(s);
    *out = malloc(*len + 1);
    if (!*out) return oom(c->e, c->file);
    memcpy(*out, s, *len + 1);
    return 0;
}

/* One character (Metaspace's replacement, Strip's content) as UTF-8. */
static int get_char(const hf_ctx *c, const cJSON *obj, const char *key, const char *field,
                    const char *dflt, char out[4], int *out_len) {
    const cJSON *it = hf_get(obj, key);
    const char *s = dflt;
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it))
            s = NULL;
        else
            s = it->valuestring;
    }
    uint32_t cp;
    int k = s ? srp_utf8_next((const unsigned char *)s, strlen(s), &cp) : 0;
    if (!k || s[k] != 0) {
        char f[512];
        snprintf(f, sizeof f, "%s.%s", field, key);
        return hf_bad(c->e, c->file, f, "must be a string of one character");
    }
    memcpy(out, s, (size_t)k);
    *out_len = k;
    return 0;
}

int hf_get_pattern(const hf_ctx *c, const cJSON *obj, const char *field, hf_pattern *pat) {
    char f[512];
    snprintf(f, sizeof f, "%s.pattern", field);
    const cJSON *p = hf_get(obj, "pattern");
    const cJSON *str = hf_get(p, "String"), *re = hf_get(p, "Regex");
    if (cJSON_IsString(str)) return dup_str(c, str->valuestring, &pat->lit, &pat->lit_len);
    if (!cJSON_IsString(re))
        return hf_bad(c->e, c->file, f, "must be {\"String\": ...} or {\"Regex\": ...}");
    char why[300];
    pat->re = srp_regex_compile(re->valuestring, strlen(re->valuestring), why, sizeof why);
    if (!pat->re) return hf_bad(c->e, c->file, f, "%s", why);
    return 0;
}

void hf_pattern_free(hf_pattern *p) {
    free(p->lit);
    srp_regex_free(p->re);
    memset(p, 0, sizeof *p);
}

static int get_prepend(const hf_ctx *c, const cJSON *obj, const char *field, enum hf_prepend *out) {
    const cJSON *it = hf_get(obj, "prepend_scheme");
    if (!it || cJSON_IsNull(it)) {
        /* files written before prepend_scheme existed say add_prefix_space */
        int aps;
        if (hf_get_bool(c, obj, "add_prefix_space", field, 1, &aps)) return -1;
        *out = aps ? HF_PREPEND_ALWAYS : HF_PREPEND_NEVER;
        return 0;
    }
    const char *s = cJSON_IsString(it) ? it->valuestring : "";
    if (!strcmp(s, "always"))
        *out = HF_PREPEND_ALWAYS;
    else if (!strcmp(s, "first"))
        *out = HF_PREPEND_FIRST;
    else if (!strcmp(s, "never"))
        *out = HF_PREPEND_NEVER;
    else {
        char f[512];
        snprintf(f, sizeof f, "%s.prepend_scheme", field);
        return hf_bad(c->e, c->file, f, "must be \"always\", \"first\" or \"never\"");
    }
    return 0;
}

/* Grows a flat array of `size`-byte elements by one zeroed element. */
static void *grow(const hf_ctx *c, void **arr, int *n, size_t size) {
    char *p = realloc(*arr, (size_t)(*n + 1) * size);
    if (!p) {
        oom(c->e, c->file);
        return NULL;
    }
    *arr = p;
    memset(p + (size_t)*n * size, 0, size);
    return p + (size_t)(*n)++ * size;
}

/* Calls one(...) for an object, or for each element of its `list_key` when its type is
 * "Sequence", recursively. */
typedef int (*hf_one_fn)(const hf_ctx *c, const cJSON *obj, const char *type, const char *field,
                         void *arg);

static int walk(const hf_ctx *c, const cJSON *obj, const char *field, const char *list_key,
                hf_one_fn one, void *arg, int depth) {
    if (!obj || cJSON_IsNull(obj)) return 0;
    if (depth > 16) return hf_bad(c->e, c->file, field, "Sequences nested too deeply");
    const cJSON *t = hf_get(obj, "type");
    if (!cJSON_IsString(t))
        return hf_bad(c->e, c->file, field, "must be null or an object with a \"type\" string");
    if (!strcmp(t->valuestring, "Sequence")) {
        const cJSON *list = hf_get(obj, list_key);
        char f[512];
        snprintf(f, sizeof f, "%s.%s", field, list_key);
        if (!cJSON_IsArray(list)) return hf_bad(c->e, c->file, f, "must be an array");
        int i = 0;
        for (const cJSON *it = list->child; it; it = it->next, i++) {
            char fi[600];
            snprintf(fi, sizeof fi, "%s[%d]", f, i);
            if (walk(c, it, fi, list_key, one, arg, depth + 1)) return -1;
        }
        return 0;
    }
    return one(c, obj, t->valuestring, field, arg);
}

static int one_normalizer(const hf_ctx *c, const cJSON *o, const char *type, const char *field,
                          void *arg) {
    srp_hf *h = arg;
    hf_normalizer *n = grow(c, (void **)&h->norm, &h->n_norm, sizeof *n);
    if (!n) return -1;
    if (!strcmp(type, "NFC"))
        n->kind = HF_NFC;
    else if (!strcmp(type, "NFD"))
        n->kind = HF_NFD;
    else if (!strcmp(type, "NFKC"))
        n->kind = HF_NFKC;
    else if (!strcmp(type, "NFKD"))
        n->kind = HF_NFKD;
    else if (!strcmp(type, "Prepend")) {
        const char *s;
        n->kind = HF_PREPEND;
        if (get_str(c, o, "prepend", field, &s)) return -1;
        return dup_str(c, s, &n->text, &n->text_len);
    } else if (!strcmp(type, "Replace")) {
        const char *s;
        n->kind = HF_REPLACE;
        if (get_str(c, o, "content", field, &s) || dup_str(c, s, &n->text, &n->text_len)) return -1;
        return hf_get_pattern(c, o, field, &n->pat);
    } else if (!strcmp(type, "Strip")) {
        n->kind = HF_STRIP;
        if (hf_get_bool(c, o, "strip_left", field, 1, &n->left)) return -1;
        return hf_get_bool(c, o, "strip_right", field, 1, &n->right);
    } else {
        h->n_norm--;
        return srp_err_set(c->e, SRP_EUNSUPPORTED,
                           "%s: field \"%s.type\": normalizer \"%s\" is not supported", c->file,
                           field, type);
    }
    return 0;
}

static int get_behavior(const hf_ctx *c, const cJSON *o, const char *field, enum hf_behavior *b) {
    static const char *const names[] = { "Removed", "Isolated", "MergedWithPrevious",
                                         "MergedWithNext", "Contiguous" };
    const cJSON *it = hf_get(o, "behavior");
    for (int i = 0; i < 5; i++) {
        if (cJSON_IsString(it) && !strcmp(it->valuestring, names[i])) {
            *b = (enum hf_behavior)i;
            return 0;
        }
    }
    char f[512];
    snprintf(f, sizeof f, "%s.behavior", field);
    return hf_bad(c->e, c->file, f,
                  "must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

static int one_pretok(const hf_ctx *c, const cJSON *o, const char *type, const char *field,
                      void *arg) {
    srp_hf *h = arg;
    hf_pretok *p = grow(c, (void **)&h->pre, &h->n_pre, sizeof *p);
    if (!p) return -1;
    if (!strcmp(type, "ByteLevel")) {
        p->kind = HF_BYTELEVEL;
        if (hf_get_bool(c, o, "add_prefix_space", field, 1, &p->add_prefix_space) ||
            hf_get_bool(c, o, "use_regex", field, 1, &p->use_regex))
            return -1;
        if (!p->use_regex) return 0;
        /* GPT-2's pattern, which the crate hard-codes for ByteLevel */
        static const char gpt2[] =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
        char why[300];
        p->pat.re = srp_regex_compile(gpt2, sizeof gpt2 - 1, why, sizeof why);
        return p->pat.re ? 0 : srp_err_set(c->e, SRP_EINVAL, "%s: %s", c->file, why);
    }
    if (!strcmp(type, "Split")) {
        p->kind = HF_SPLIT;
        if (get_behavior(c, o, field, &p->behavior)) return -1;
        if (hf_get_bool(c, o, "invert", field, 0, &p->invert)) return -1;
        return hf_get_pattern(c, o, field, &p->pat);
    }
    if (!strcmp(type, "Digits")) {
        p->kind = HF_DIGITS;
        return hf_get_bool(c, o, "individual_digits", field, 0, &p->individual_digits);
    }
    if (!strcmp(type, "Metaspace")) {
        p->kind = HF_METASPACE;
        if (get_char(c, o, "replacement", field, "\xE2\x96\x81", p->rep, &p->rep_len)) return -1;
        if (get_prepend(c, o, field, &p->prepend)) return -1;
        return hf_get_bool(c, o, "split", field, 1, &p->split);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = HF_WHITESPACE_SPLIT;
        return 0;
    }
    h->n_pre--;
    return srp_err_set(c->e, SRP_EUNSUPPORTED,
                       "%s: field \"%s.type\": pre-tokenizer \"%s\" is not supported", c->file,
                       field, type);
}

static int one_decoder(const hf_ctx *c, const cJSON *o, const char *type, const char *field,
                       void *arg) {
    srp_hf *h = arg;
    hf_decoder *d = grow(c, (void **)&h->dec, &h->n_dec, sizeof *d);
    if (!d) return -1;
    if (!strcmp(type, "ByteLevel"))
        d->kind = HF_D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback"))
        d->kind = HF_D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse"))
        d->kind = HF_D_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        d->kind = HF_D_METASPACE;
        if (get_char(c, o, "replacement", field, "\xE2\x96\x81", d->rep, &d->rep_len)) return -1;
        return get_prepend(c, o, field, &d->prepend);
    } else if (!strcmp(type, "Strip")) {
        char ch[4];
        int len;
        d->kind = HF_D_STRIP;
        if (get_char(c, o, "content", field, " ", ch, &len)) return -1;
        d->content = malloc(4);
        if (!d->content) return oom(c->e, c->file);
        memcpy(d->content, ch, (size_t)len);
        d->content_len = (size_t)len;
        if (hf_get_int(c, o, "start", field, 0, 0, 1 << 20, &d->start)) return -1;
        return hf_get_int(c, o, "stop", field, 0, 0, 1 << 20, &d->stop);
    } else if (!strcmp(type, "Replace")) {
        const char *s;
        d->kind = HF_D_REPLACE;
        if (get_str(c, o, "content", field, &s) || dup_str(c, s, &d->content, &d->content_len))
            return -1;
        return hf_get_pattern(c, o, field, &d->pat);
    } else {
        h->n_dec--;
        return srp_err_set(c->e, SRP_EUNSUPPORTED,
                           "%s: field \"%s.type\": decoder \"%s\" is not supported", c->file, field,
                           type);
    }
    return 0;
}

static int add_ids(const hf_ctx *c, int32_t **arr, int *n, const int32_t *ids, int k) {
    int32_t *p = realloc(*arr, (size_t)(*n + k + 1) * sizeof *p);
    if (!p) return oom(c->e, c->file);
    if (k) memcpy(p + *n, ids, (size_t)k * sizeof *ids);
    *arr = p;
    *n += k;
    return 0;
}

/* TemplateProcessing's "single": the special tokens before and after the sequence $A. */
static int template_single(const hf_ctx *c, const cJSON *o, const char *field, hf_post *post) {
    char f[512];
    snprintf(f, sizeof f, "%s.single", field);
    const cJSON *single = hf_get(o, "single"), *specials = hf_get(o, "special_tokens");
    if (!cJSON_IsArray(single)) return hf_bad(c->e, c->file, f, "must be an array");
    int32_t *bef = NULL, *aft = NULL;
    int nb = 0, na = 0, seen_seq = 0, i = 0, rc = 0;
    for (const cJSON *it = single->child; it && !rc; it = it->next, i++) {
        char fi[600];
        snprintf(fi, sizeof fi, "%s[%d]", f, i);
        const cJSON *sp = hf_get(it, "SpecialToken");
        if (hf_get(it, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const cJSON *name = hf_get(sp, "id");
        if (!cJSON_IsString(name)) {
            rc = hf_bad(c->e, c->file, fi,
                        "must be {\"SpecialToken\": {\"id\": ...}} or "
                        "{\"Sequence\": ...}");
            break;
        }
        const cJSON *def = hf_get(specials, name->valuestring);
        const cJSON *ids = hf_get(def, "ids");
        if (!cJSON_IsArray(ids)) {
            rc = hf_bad(c->e, c->file, fi, "special token \"%s\" has no ids in special_tokens",
                        name->valuestring);
            break;
        }
        for (const cJSON *x = ids->child; x; x = x->next) {
            double v = cJSON_IsNumber(x) ? x->valuedouble : -1;
            if (v < 0 || v > INT32_MAX - 1 || v != (double)(int32_t)v) {
                rc = hf_bad(c->e, c->file, fi, "special token \"%s\": ids must be integers",
                            name->valuestring);
                break;
            }
            int32_t id = (int32_t)v;
            rc = seen_seq ? add_ids(c, &aft, &na, &id, 1) : add_ids(c, &bef, &nb, &id, 1);
            if (rc) break;
        }
    }
    if (!rc) {
        /* a later processor wraps what an earlier one made */
        int32_t *nbef = NULL, *naft = NULL;
        int nnb = 0, nna = 0;
        rc = add_ids(c, &nbef, &nnb, bef, nb) ||
             add_ids(c, &nbef, &nnb, post->before, post->n_before) ||
             add_ids(c, &naft, &nna, post->after, post->n_after) ||
             add_ids(c, &naft, &nna, aft, na);
        if (!rc) {
            free(post->before);
            free(post->after);
            post->before = nbef;
            post->after = naft;
            post->n_before = nnb;
            post->n_after = nna;
        } else {
            free(nbef);
            free(naft);
        }
    }
    free(bef);
    free(aft);
    return rc ? -1 : 0;
}

/* Roberta/BertProcessing: "cls": ["<s>", 0], "sep": ["</s>", 2]. */
static int cls_sep(const hf_ctx *c, const cJSON *o, const char *field, hf_post *post) {
    int32_t ids[2];
    static const char *const keys[] = { "cls", "sep" };
    for (int k = 0; k < 2; k++) {
        const cJSON *it = hf_get(o, keys[k]);
        const cJSON *id = cJSON_IsArray(it) ? cJSON_GetArrayItem(it, 1) : NULL;
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX - 1) {
            char f[512];
            snprintf(f, sizeof f, "%s.%s", field, keys[k]);
            return hf_bad(c->e, c->file, f, "must be [\"token\", id]");
        }
        ids[k] = (int32_t)id->valuedouble;
    }
    if (add_ids(c, &post->after, &post->n_after, &ids[1], 1)) return -1;
    int32_t *nb = NULL;
    int n = 0;
    if (add_ids(c, &nb, &n, &ids[0], 1) || add_ids(c, &nb, &n, post->before, post->n_before)) {
        free(nb);
        return -1;
    }
    free(post->before);
    post->before = nb;
    post->n_before = n;
    return 0;
}

static int one_post(const hf_ctx *c, const cJSON *o, const char *type, const char *field,
                    void *arg) {
    srp_hf *h = arg;
    h->post.present = 1;
    if (!strcmp(type, "ByteLevel")) return 0; /* it moves offsets only */
    if (!strcmp(type, "TemplateProcessing")) return template_single(c, o, field, &h->post);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
        return cls_sep(c, o, field, &h->post);
    return srp_err_set(c->e, SRP_EUNSUPPORTED,
                       "%s: field \"%s.type\": post-processor \"%s\" is not supported", c->file,
                       field, type);
}

int hf_load_pipeline(const hf_ctx *c, const cJSON *root, srp_hf *h) {
    if (walk(c, hf_get(root, "normalizer"), "normalizer", "normalizers", one_normalizer, h, 0))
        return -1;
    if (walk(c, hf_get(root, "pre_tokenizer"), "pre_tokenizer", "pretokenizers", one_pretok, h, 0))
        return -1;
    const cJSON *dec = hf_get(root, "decoder");
    h->has_decoder = dec && !cJSON_IsNull(dec);
    if (walk(c, dec, "decoder", "decoders", one_decoder, h, 0)) return -1;
    return walk(c, hf_get(root, "post_processor"), "post_processor", "processors", one_post, h, 0);
}
