/* Loading tokenizer.json: the BPE model, the added tokens and (through hf_load_parts.c) the
 * rest of the pipeline. A malformed file gives an error naming the file and the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "hf_load_parts.h"
#include "json_file.h"

static int oom(const hf_ctx *c) {
    return srp_err_set(c->e, SRP_ENOMEM, "%s: out of memory", c->file);
}

/* Raw bytes of a ByteLevel-alphabet string, or -1 when a character is not in the alphabet. */
static int unmap_bytes(const char *s, size_t n, char *out, size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = srp_utf8_next((const unsigned char *)s + i, n - i, &cp);
        int b = k ? hf_char_byte(cp) : -1;
        if (b < 0) return -1;
        out[o++] = (char)b;
        i += (size_t)k;
    }
    *out_len = o;
    return 0;
}

static int set_token(srp_hf *h, const hf_ctx *c, int32_t id, const char *s, size_t len) {
    h->token_off[id] = h->token_text.n;
    h->token_len[id] = (int32_t)len;
    if (srp_tbuf_put(&h->token_text, s, len)) return oom(c);
    return 0;
}

static int read_id(const hf_ctx *c, const cJSON *it, const char *field, int32_t *id) {
    double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
    /* ids index arrays, so a huge id in a bad file must not make a huge allocation */
    if (v < 0 || v >= (1 << 26) || v != (double)(int32_t)v)
        return hf_bad(c->e, c->file, field, "must be an integer id in [0, 2^26)");
    *id = (int32_t)v;
    return 0;
}

/* The largest id of model.vocab and added_tokens, to size the id tables. */
static int max_id(const hf_ctx *c, const cJSON *vocab, const cJSON *added, int32_t *out) {
    int32_t mx = -1, id = -1;
    char f[600];
    for (const cJSON *it = vocab->child; it; it = it->next) {
        snprintf(f, sizeof f, "model.vocab[\"%.200s\"]", it->string ? it->string : "");
        if (read_id(c, it, f, &id)) return -1;
        if (id > mx) mx = id;
    }
    int i = 0;
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next, i++) {
        snprintf(f, sizeof f, "added_tokens[%d].id", i);
        if (read_id(c, hf_get(it, "id"), f, &id)) return -1;
        if (id > mx) mx = id;
    }
    *out = mx;
    return 0;
}

static int load_vocab(srp_hf *h, const hf_ctx *c, const cJSON *vocab) {
    hf_bpe *m = &h->bpe;
    char *tmp = NULL;
    size_t cap = 0;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        const char *key = it->string ? it->string : "";
        size_t len = strlen(key);
        int32_t id = (int32_t)it->valuedouble;
        if (set_token(h, c, id, key, len)) goto fail;
        if (m->raw) {
            if (len > cap) {
                free(tmp);
                cap = len * 2;
                if (!(tmp = malloc(cap))) goto nomem;
            }
            size_t rl;
            /* a token outside the alphabet can never come out of the ByteLevel step */
            if (unmap_bytes(key, len, tmp, &rl)) continue;
            if (srp_strmap_set(&m->vocab, tmp, rl, id)) goto nomem;
        } else if (srp_strmap_set(&m->vocab, key, len, id)) {
            goto nomem;
        }
    }
    free(tmp);
    return 0;
nomem:
    oom(c);
fail:
    free(tmp);
    return -1;
}

/* Looks a model token up, converting it to raw bytes first in byte-level mode. */
static int32_t model_id(const hf_bpe *m, const char *s, size_t len) {
    if (!m->raw) return srp_strmap_get(&m->vocab, s, len);
    char buf[1024];
    size_t rl;
    if (len > sizeof buf || unmap_bytes(s, len, buf, &rl)) return -1;
    return srp_strmap_get(&m->vocab, buf, rl);
}

/* Formatted only for a message: a file has hundreds of thousands of merges. */
static const char *merge_field(char f[64], int rank) {
    snprintf(f, 64, "model.merges[%d]", rank);
    return f;
}

static int load_merges(srp_hf *h, const hf_ctx *c, const cJSON *merges) {
    hf_bpe *m = &h->bpe;
    int rank = 0;
    char f[64];
    for (const cJSON *it = merges->child; it; it = it->next, rank++) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            a = it->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return hf_bad(c->e, c->file, merge_field(f, rank),
                              "must be \"left right\" with one space");
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            a = it->child->valuestring;
            b = it->child->next->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            return hf_bad(c->e, c->file, merge_field(f, rank),
                          "must be \"left right\" or [\"left\", \"right\"]");
        }
        int32_t ia = model_id(m, a, la), ib = model_id(m, b, lb);
        if (ia < 0 || ib < 0)
            return hf_bad(c->e, c->file, merge_field(f, rank),
                          "token \"%.*s\" is not in model.vocab", (int)(ia < 0 ? la : lb),
                          ia < 0 ? a : b);
        /* the right part loses its continuing_subword_prefix in the merged token */
        size_t skip = m->prefix_len && lb >= m->prefix_len && !memcmp(b, m->prefix, m->prefix_len)
                          ? m->prefix_len
                          : 0;
        char stack[512], *joined = la + lb < sizeof stack ? stack : malloc(la + lb + 1);
        if (!joined) return oom(c);
        memcpy(joined, a, la);
        memcpy(joined + la, b + skip, lb - skip);
        int32_t im = model_id(m, joined, la + lb - skip);
        if (joined != stack) free(joined);
        if (im < 0)
            return hf_bad(c->e, c->file, merge_field(f, rank),
                          "the merged token \"%.*s%.*s\" is not in model.vocab", (int)la, a,
                          (int)(lb - skip), b + skip);
        if (srp_pairmap_set(&m->merges, ia, ib, rank, im)) return oom(c);
    }
    return 0;
}

static int opt_string(const hf_ctx *c, const cJSON *model, const char *key, char **out,
                      size_t *len) {
    const cJSON *it = hf_get(model, key);
    if (!it || cJSON_IsNull(it)) return 0;
    char f[64];
    snprintf(f, sizeof f, "model.%s", key);
    if (!cJSON_IsString(it)) return hf_bad(c->e, c->file, f, "must be a string or null");
    *len = strlen(it->valuestring);
    if (!*len) return 0; /* "" behaves as no prefix */
    if (!(*out = strdup(it->valuestring))) return oom(c);
    return 0;
}

static int load_model(srp_hf *h, const hf_ctx *c, const cJSON *model) {
    hf_bpe *m = &h->bpe;
    const cJSON *type = hf_get(model, "type");
    if (!cJSON_IsObject(model)) return hf_bad(c->e, c->file, "model", "must be an object");
    if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE")))
        return srp_err_set(c->e, SRP_EUNSUPPORTED,
                           "%s: field \"model.type\": only BPE models are supported (not %s)",
                           c->file, cJSON_IsString(type) ? type->valuestring : "?");
    const cJSON *dropout = hf_get(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return srp_err_set(c->e, SRP_EUNSUPPORTED,
                           "%s: field \"model.dropout\": BPE dropout is not supported", c->file);
    if (hf_get_bool(c, model, "fuse_unk", "model", 0, &m->fuse_unk) ||
        hf_get_bool(c, model, "byte_fallback", "model", 0, &m->byte_fallback) ||
        hf_get_bool(c, model, "ignore_merges", "model", 0, &m->ignore_merges) ||
        opt_string(c, model, "continuing_subword_prefix", &m->prefix, &m->prefix_len) ||
        opt_string(c, model, "end_of_word_suffix", &m->suffix, &m->suffix_len))
        return -1;
    /* byte-level mode when the words reaching the model are ByteLevel's last step */
    m->raw = h->n_pre > 0 && h->pre[h->n_pre - 1].kind == HF_BYTELEVEL && !m->prefix && !m->suffix;
    const cJSON *vocab = hf_get(model, "vocab"), *merges = hf_get(model, "merges");
    if (!cJSON_IsObject(vocab)) return hf_bad(c->e, c->file, "model.vocab", "must be an object");
    if (!cJSON_IsArray(merges)) return hf_bad(c->e, c->file, "model.merges", "must be an array");
    if (load_vocab(h, c, vocab) || load_merges(h, c, merges)) return -1;
    m->unk = -1;
    const cJSON *unk = hf_get(model, "unk_token");
    if (unk && !cJSON_IsNull(unk)) {
        if (!cJSON_IsString(unk))
            return hf_bad(c->e, c->file, "model.unk_token", "must be a string or null");
        m->unk = model_id(m, unk->valuestring, strlen(unk->valuestring));
        m->unk_named = m->unk < 0;
    }
    for (int b = 0; b < 256; b++) {
        char name[8], ch[4];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_token[b] = model_id(m, name, 6);
        ch[0] = (char)b;
        m->raw_byte[b] = m->raw ? srp_strmap_get(&m->vocab, ch, 1) : -1;
    }
    return 0;
}

static int load_added(srp_hf *h, const hf_ctx *c, const cJSON *added) {
    if (!added || cJSON_IsNull(added)) return 0;
    if (!cJSON_IsArray(added)) return hf_bad(c->e, c->file, "added_tokens", "must be an array");
    int n = cJSON_GetArraySize(added), i = 0;
    if (n && !(h->added = calloc((size_t)n, sizeof *h->added))) return oom(c);
    for (const cJSON *it = added->child; it; it = it->next, i++) {
        char f[64];
        snprintf(f, sizeof f, "added_tokens[%d]", i);
        hf_added *a = &h->added[h->n_added];
        const cJSON *content = hf_get(it, "content");
        if (!cJSON_IsString(content)) return hf_bad(c->e, c->file, f, "needs a \"content\" string");
        int sp, sw, ls, rs, nz;
        if (hf_get_bool(c, it, "special", f, 0, &sp) ||
            hf_get_bool(c, it, "single_word", f, 0, &sw) ||
            hf_get_bool(c, it, "lstrip", f, 0, &ls) || hf_get_bool(c, it, "rstrip", f, 0, &rs) ||
            hf_get_bool(c, it, "normalized", f, !sp, &nz))
            return -1;
        a->id = (int32_t)hf_get(it, "id")->valuedouble; /* checked by max_id */
        a->special = (uint8_t)sp;
        a->single_word = (uint8_t)sw;
        a->lstrip = (uint8_t)ls;
        a->rstrip = (uint8_t)rs;
        a->normalized = (uint8_t)nz;
        a->len = strlen(content->valuestring);
        if (!a->len) continue; /* the crate ignores empty added tokens */
        if (!(a->content = strdup(content->valuestring))) return oom(c);
        h->n_added++;
        if (sp) h->special[a->id] = 1;
        if (srp_strmap_set(&h->added_ids, a->content, a->len, a->id)) return oom(c);
        if (set_token(h, c, a->id, a->content, a->len)) return -1;
    }
    return 0;
}

/* Normalized added tokens are matched in normalized text, so their trie holds their
 * normalized form; the others are matched in the raw text. */
static int build_tries(srp_hf *h, const hf_ctx *c) {
    for (int i = 0; i < h->n_added; i++) {
        hf_added *a = &h->added[i];
        if (a->normalized && h->n_norm) {
            srp_tbuf out = { 0 };
            if (hf_normalize(h, a->content, a->len, &out, c->e)) {
                srp_tbuf_free(&out);
                return srp_err_prefix(c->e, "%s: added_tokens[%d]", c->file, i);
            }
            if (out.n != a->len || memcmp(out.p, a->content, a->len)) {
                a->norm = out.p;
                a->norm_len = out.n;
            } else {
                srp_tbuf_free(&out);
            }
        }
        const char *s = a->norm ? a->norm : a->content;
        size_t n = a->norm ? a->norm_len : a->len;
        if (n && hf_trie_add(a->normalized ? &h->trie_norm : &h->trie_raw, s, n, i)) return oom(c);
    }
    return 0;
}

int srp_hf_load_text(const char *text, size_t len, const char *name, srp_hf **out, srp_err *e) {
    hf_ctx c = { name, e };
    cJSON *root = srp_json_parse(text, len, name, e);
    if (!root) return e ? e->code : SRP_EFORMAT;
    srp_hf *h = calloc(1, sizeof *h);
    int rc = 0;
    if (!h || !(h->path = strdup(name))) {
        free(h);
        cJSON_Delete(root);
        return srp_err_set(e, SRP_ENOMEM, "%s: out of memory", name);
    }
    pthread_mutex_init(&h->bpe.cache_lock, NULL);
    memset(h->trie_raw.root, 0xFF, sizeof h->trie_raw.root);
    memset(h->trie_norm.root, 0xFF, sizeof h->trie_norm.root);
    const cJSON *model = hf_get(root, "model"), *added = hf_get(root, "added_tokens");
    const cJSON *vocab = hf_get(model, "vocab");
    int32_t mx;
    if (!cJSON_IsObject(root)) {
        rc = hf_bad(e, name, "(top level)", "must be an object");
        goto out;
    }
    if (!cJSON_IsObject(vocab)) {
        rc = hf_bad(e, name, "model.vocab", "must be an object");
        goto out;
    }
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        rc = hf_bad(e, name, "added_tokens", "must be an array");
        goto out;
    }
    if (max_id(&c, vocab, added, &mx)) goto fail;
    h->n_ids = mx + 1;
    h->token_off = calloc((size_t)h->n_ids + 1, sizeof *h->token_off);
    h->token_len = malloc(((size_t)h->n_ids + 1) * sizeof *h->token_len);
    h->special = calloc((size_t)h->n_ids + 1, 1);
    if (!h->token_off || !h->token_len || !h->special) {
        rc = oom(&c);
        goto out;
    }
    memset(h->token_len, 0xFF, ((size_t)h->n_ids + 1) * sizeof *h->token_len);
    if (hf_load_pipeline(&c, root, h) || load_model(h, &c, model) || load_added(h, &c, added) ||
        build_tries(h, &c))
        goto fail;
    if (!(h->bpe.cache = calloc(HF_CACHE_SLOTS, sizeof *h->bpe.cache))) rc = oom(&c);
    goto out;
fail:
    rc = e && e->code ? e->code : SRP_EFORMAT;
out:
    cJSON_Delete(root);
    if (rc) {
        srp_hf_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int srp_hf_load(const char *path, srp_hf **out, srp_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return srp_err_set(e, SRP_EIO, "%s: cannot open", path);
    srp_tbuf b = { 0 };
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (srp_tbuf_put(&b, chunk, k)) {
            fclose(f);
            srp_tbuf_free(&b);
            return srp_err_set(e, SRP_ENOMEM, "%s: out of memory", path);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        srp_tbuf_free(&b);
        return srp_err_set(e, SRP_EIO, "%s: read error", path);
    }
    int rc = srp_hf_load_text(b.p ? b.p : "", b.n, path, out, e);
    srp_tbuf_free(&b);
    return rc;
}

void srp_hf_free(srp_hf *h) {
    if (!h) return;
    hf_bpe_free(&h->bpe);
    srp_tbuf_free(&h->token_text);
    free(h->token_off);
    free(h->token_len);
    free(h->special);
    for (int i = 0; i < h->n_norm; i++) {
        free(h->norm[i].text);
        hf_pattern_free(&h->norm[i].pat);
    }
    free(h->norm);
    for (int i = 0; i < h->n_pre; i++) hf_pattern_free(&h->pre[i].pat);
    free(h->pre);
    for (int i = 0; i < h->n_dec; i++) {
        free(h->dec[i].content);
        hf_pattern_free(&h->dec[i].pat);
    }
    free(h->dec);
    free(h->post.before);
    free(h->post.after);
    for (int i = 0; i < h->n_added; i++) {
        free(h->added[i].content);
        free(h->added[i].norm);
    }
    free(h->added);
    srp_strmap_free(&h->added_ids);
    hf_trie_free(&h->trie_raw);
    hf_trie_free(&h->trie_norm);
    free(h->path);
    free(h);
}

int32_t srp_hf_token_id(const srp_hf *h, const char *s, size_t len) {
    int32_t id = srp_strmap_get(&h->added_ids, s, len);
    return id >= 0 ? id : model_id(&h->bpe, s, len);
}
