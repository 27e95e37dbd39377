/* The public face of tokenizer/: picks SentencePiece or tokenizer.json for a folder, reads
 * tokenizer_config.json, and adds incremental decoding on top of whole-sequence decoding. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "hf.h"
#include "json_file.h"
#include "sentencepiece_c.h"
#include "token_bytes.h"

struct srp_tokenizer {
    srp_spm *spm; /* exactly one of spm, hf */
    srp_hf *hf;
    int vocab;
    int bos, eos;
    /* add_bos/add_eos from tokenizer_config.json; -1 when it does not say, and then the
     * post-processor of tokenizer.json decides (SentencePiece: BOS only, as LlamaTokenizer) */
    int add_bos, add_eos;
    char *chat_template;
    uint8_t *special; /* [vocab]: 1 for special tokens (see SRP_DECODE_SKIP_SPECIAL) */
    /* srp_tokenizer_min_tokens: text bytes one token covers at most (0: no bound) */
    size_t bytes_per_token;
    char **spec_text; /* the special tokens encoding matches in text */
    size_t *spec_len;
    int n_spec;
};

/* tokenizer_config.json writes special tokens as "<s>" or {"content": "<s>", ...}. */
static const char *token_text(const cJSON *it) {
    if (cJSON_IsString(it)) return it->valuestring;
    if (cJSON_IsObject(it)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

int srp_tokenizer_token_id(const srp_tokenizer *t, const char *token) {
    if (t->hf) return srp_hf_token_id(t->hf, token, strlen(token));
    return srp_spm_piece_id(t->spm, token);
}

static int read_flag(const cJSON *root, const char *key, const char *path, int *out, srp_err *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it))
        return srp_err_set(e, SRP_EFORMAT, "%s: field \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(it);
    return 0;
}

/* chat_template is a string, or a list of {"name", "template"} of which "default" is used. */
static int read_template(const cJSON *root, const char *path, char **out, srp_err *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    const char *s = NULL;
    if (cJSON_IsString(it)) {
        s = it->valuestring;
    } else if (cJSON_IsArray(it)) {
        for (const cJSON *x = it->child; x; x = x->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(x, "name");
            const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(x, "template");
            if (!cJSON_IsString(tpl)) continue;
            if (!s || (cJSON_IsString(name) && !strcmp(name->valuestring, "default")))
                s = tpl->valuestring;
        }
    } else if (it && !cJSON_IsNull(it)) {
        return srp_err_set(e, SRP_EFORMAT,
                           "%s: field \"chat_template\" must be a string or a list of templates",
                           path);
    }
    if (s && !(*out = strdup(s))) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    return 0;
}

static void mark_special(srp_tokenizer *t, int id) {
    if (id >= 0 && id < t->vocab) t->special[id] = 1;
}

/* The special tokens tokenizer_config.json declares: added_tokens_decoder entries with
 * "special": true and the tokens it names (transformers' all_special_tokens). Names missing
 * from the vocabulary are not an error here (bos/eos are checked above). */
static void mark_config_specials(srp_tokenizer *t, const cJSON *root) {
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder"), *it;
    if (cJSON_IsObject(dec)) {
        cJSON_ArrayForEach(it, dec) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "special");
            char *end = NULL;
            long id = strtol(it->string, &end, 10);
            if (cJSON_IsTrue(sp) && it->string[0] && !*end && id >= 0 && id < t->vocab)
                mark_special(t, (int)id);
        }
    }
    static const char *const named[] = { "bos_token", "eos_token", "unk_token", "pad_token",
                                         "sep_token", "cls_token", "mask_token" };
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) {
        const char *s = token_text(cJSON_GetObjectItemCaseSensitive(root, named[k]));
        if (s) mark_special(t, srp_tokenizer_token_id(t, s));
    }
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(root, "additional_special_tokens");
    if (!cJSON_IsArray(extra)) return;
    cJSON_ArrayForEach(it, extra) {
        const char *s = token_text(it);
        if (s) mark_special(t, srp_tokenizer_token_id(t, s));
    }
}

static int read_config(srp_tokenizer *t, const char *dir, srp_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK) != 0) return 0;
    cJSON *root = srp_json_load_file(path, e);
    if (!root) return e ? e->code : SRP_EFORMAT;
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = srp_err_set(e, SRP_EFORMAT, "%s: must hold a JSON object", path);
        goto out;
    }
    if ((rc = read_flag(root, "add_bos_token", path, &t->add_bos, e)) ||
        (rc = read_flag(root, "add_eos_token", path, &t->add_eos, e)))
        goto out;
    static const char *const keys[] = { "bos_token", "eos_token" };
    for (int k = 0; k < 2; k++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (!it || cJSON_IsNull(it)) continue;
        const char *s = token_text(it);
        int id = s ? srp_tokenizer_token_id(t, s) : -1;
        if (id < 0) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: field \"%s\": \"%s\" is not in the vocabulary",
                             path, keys[k], s ? s : "?");
            goto out;
        }
        if (k == 0)
            t->bos = id;
        else
            t->eos = id;
    }
    rc = read_template(root, path, &t->chat_template, e);
    if (!rc) mark_config_specials(t, root);
out:
    cJSON_Delete(root);
    return rc;
}

/* Newer checkpoints keep the chat template in its own file. */
static int read_template_file(srp_tokenizer *t, const char *dir, srp_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "rb");
    if (!f || t->chat_template) {
        if (f) fclose(f);
        return 0;
    }
    srp_tbuf b = { 0 };
    char chunk[4096];
    size_t k;
    int rc = 0;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0 && !rc)
        if (srp_tbuf_put(&b, chunk, k)) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (!rc && ferror(f)) rc = srp_err_set(e, SRP_EIO, "%s: read error", path);
    fclose(f);
    if (!rc && !b.p && srp_tbuf_put(&b, "", 0)) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (rc)
        srp_tbuf_free(&b);
    else
        t->chat_template = b.p;
    return rc;
}

/* The special tokens the tokenizer file itself declares. */
static int init_special(srp_tokenizer *t, srp_err *e) {
    t->special = calloc((size_t)(t->vocab > 0 ? t->vocab : 1), 1);
    if (!t->special) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    for (int id = 0; id < t->vocab; id++)
        t->special[id] = t->hf ? t->hf->special[id] : (uint8_t)srp_spm_is_control(t->spm, id);
    return 0;
}

static int add_special_text(srp_tokenizer *t, const char *s, size_t n) {
    for (int i = 0; i < t->n_spec; i++)
        if (t->spec_len[i] == n && !memcmp(t->spec_text[i], s, n)) return 0;
    char **nt = realloc(t->spec_text, (size_t)(t->n_spec + 1) * sizeof *nt);
    if (!nt) return -1;
    t->spec_text = nt;
    size_t *nl = realloc(t->spec_len, (size_t)(t->n_spec + 1) * sizeof *nl);
    if (!nl) return -1;
    t->spec_len = nl;
    if (!(t->spec_text[t->n_spec] = malloc(n + 1))) return -1;
    memcpy(t->spec_text[t->n_spec], s, n);
    t->spec_text[t->n_spec][n] = 0;
    t->spec_len[t->n_spec++] = n;
    return 0;
}

/* The special tokens text can spell: tokenizer.json's special added tokens; SentencePiece's
 * special pieces that are not control pieces (the library matches user-defined ones in text,
 * never control ones). */
static int collect_special_texts(srp_tokenizer *t, srp_err *e) {
    int rc = 0;
    if (t->hf) {
        for (int i = 0; i < t->hf->n_added && !rc; i++) {
            const hf_added *a = &t->hf->added[i];
            if (a->special && a->len) rc = add_special_text(t, a->content, a->len);
        }
    } else {
        for (int id = 0; id < t->vocab && !rc; id++) {
            if (!t->special[id] || srp_spm_is_control(t->spm, id)) continue;
            char *p = srp_spm_id_to_piece(t->spm, id);
            rc = !p || (*p && add_special_text(t, p, strlen(p)));
            free(p);
        }
    }
    return rc ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
}

/* tokenizer.json: the longest token as written (byte-level and Metaspace spellings are never
 * shorter than the bytes they stand for), times 3 when a Unicode normalization can compose
 * characters (at most 3 bytes into 1); no bound when a normalizer, pre-tokenizer or fused
 * unknowns can delete text. */
static size_t hf_bytes_per_token(const srp_hf *h) {
    int shrink = 1;
    for (int i = 0; i < h->n_norm; i++) {
        enum hf_norm_kind k = h->norm[i].kind;
        if (k == HF_REPLACE || k == HF_STRIP) return 0;
        if (k != HF_PREPEND) shrink = 3;
    }
    for (int i = 0; i < h->n_pre; i++)
        if (h->pre[i].kind == HF_WHITESPACE_SPLIT ||
            (h->pre[i].kind == HF_SPLIT && h->pre[i].behavior == HF_REMOVED))
            return 0;
    if (h->bpe.fuse_unk && !h->bpe.byte_fallback && !h->bpe.raw) return 0;
    size_t most = 4; /* an unknown character, whatever its token's spelling */
    for (int32_t id = 0; id < h->n_ids; id++)
        if (h->token_len[id] > 0 && (size_t)h->token_len[id] > most)
            most = (size_t)h->token_len[id];
    for (int i = 0; i < h->n_added; i++)
        if (h->added[i].len > most) most = h->added[i].len;
    return most * (size_t)shrink;
}

/* SentencePiece: a bound only with byte fallback (every byte is a piece) and a normalizer that
 * leaves text as it is, which the probes check (whitespace collapsing and NFKC change them). */
static size_t spm_bytes_per_token(const srp_tokenizer *t) {
    if (srp_spm_piece_id(t->spm, "<0x00>") < 0 || srp_spm_piece_id(t->spm, "<0xFF>") < 0) return 0;
    static const char *const probes[] = { "a    b",       " x",        "x ",    "\x01\x7f\t",
                                          "\xef\xac\x81", "e\xcc\x81", "a\r\nb" };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        int32_t *ids = NULL;
        int n = 0;
        char *back = NULL;
        size_t len = 0;
        int same = !srp_spm_encode(t->spm, probes[i], strlen(probes[i]), &ids, &n) &&
                   !srp_spm_decode(t->spm, ids, n, &back, &len) && len == strlen(probes[i]) &&
                   !memcmp(back, probes[i], len);
        free(ids);
        free(back);
        if (!same) return 0;
    }
    size_t most = 4;
    for (int id = 0; id < t->vocab; id++) {
        char *p = srp_spm_id_to_piece(t->spm, id);
        if (p && strlen(p) > most) most = strlen(p);
        free(p);
    }
    return most;
}

size_t srp_tokenizer_min_tokens(const srp_tokenizer *t, size_t len) {
    return t->bytes_per_token ? (len + t->bytes_per_token - 1) / t->bytes_per_token : 0;
}

int srp_tokenizer_special_texts(const srp_tokenizer *t, const char *const **texts,
                                const size_t **lens) {
    *texts = (const char *const *)t->spec_text;
    *lens = t->spec_len;
    return t->n_spec;
}

int srp_tokenizer_load(const char *dir, srp_tokenizer **out, srp_err *e) {
    char json[4096], model[4096];
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    snprintf(model, sizeof model, "%s/tokenizer.model", dir);
    /* tokenizer.json first when both exist, as transformers' fast tokenizers do */
    int have_json = access(json, F_OK) == 0;
    if (!have_json && access(model, F_OK) != 0)
        return srp_err_set(
            e, SRP_EIO, "%s: no tokenizer (tokenizer.json or tokenizer.model) in this folder", dir);
    srp_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    t->add_bos = t->add_eos = -1;
    t->bos = t->eos = -1;
    int rc = 0;
    if (have_json) {
        rc = srp_hf_load(json, &t->hf, e);
        if (!rc) t->vocab = t->hf->n_ids;
    } else {
        char msg[512] = "";
        t->spm = srp_spm_load(model, msg, sizeof msg);
        if (!t->spm) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s", msg);
        } else {
            t->vocab = srp_spm_size(t->spm);
            t->bos = srp_spm_bos(t->spm);
            t->eos = srp_spm_eos(t->spm);
        }
    }
    if (!rc) rc = init_special(t, e);
    if (!rc) rc = read_config(t, dir, e);
    if (!rc) rc = read_template_file(t, dir, e);
    if (!rc && t->spm) {
        if (t->add_bos < 0) t->add_bos = t->bos >= 0; /* LlamaTokenizer's default */
        if (t->add_eos < 0) t->add_eos = 0;
    }
    if (!rc) rc = collect_special_texts(t, e);
    if (!rc) t->bytes_per_token = t->hf ? hf_bytes_per_token(t->hf) : spm_bytes_per_token(t);
    if (rc) {
        srp_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int srp_tokenizer_load_json_text(const char *text, size_t len, const char *name,
                                 srp_tokenizer **out, srp_err *e) {
    srp_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    t->add_bos = t->add_eos = -1;
    t->bos = t->eos = -1;
    int rc = srp_hf_load_text(text, len, name, &t->hf, e);
    if (rc) {
        free(t);
        return rc;
    }
    t->vocab = t->hf->n_ids;
    if ((rc = init_special(t, e)) || (rc = collect_special_texts(t, e))) {
        srp_tokenizer_free(t);
        return rc;
    }
    t->bytes_per_token = hf_bytes_per_token(t->hf);
    *out = t;
    return 0;
}

void srp_tokenizer_free(srp_tokenizer *t) {
    if (!t) return;
    srp_spm_free(t->spm);
    srp_hf_free(t->hf);
    free(t->chat_template);
    free(t->special);
    for (int i = 0; i < t->n_spec; i++) free(t->spec_text[i]);
    free(t->spec_text);
    free(t->spec_len);
    free(t);
}

static int wrap(const srp_tokenizer *t, const int32_t *raw, int m, int add_special, int32_t **ids,
                int *n, srp_err *e) {
    int bos = add_special && t->add_bos > 0 && t->bos >= 0;
    int eos = add_special && t->add_eos > 0 && t->eos >= 0;
    int32_t *outv = malloc((size_t)(m + 2) * sizeof *outv);
    if (!outv) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int k = 0;
    if (bos) outv[k++] = t->bos;
    if (m) memcpy(outv + k, raw, (size_t)m * sizeof *raw);
    k += m;
    if (eos) outv[k++] = t->eos;
    *ids = outv;
    *n = k;
    return 0;
}

static int overlaps(const srp_text_span *plain, int n_plain, size_t b, size_t e) {
    for (int i = 0; i < n_plain; i++)
        if (plain[i].begin < e && b < plain[i].end) return 1;
    return 0;
}

/* A SentencePiece special piece that was text: its characters' pieces, else its bytes'
 * byte-fallback pieces, else <unk>. */
static int spm_as_text(const srp_tokenizer *t, const char *s, size_t n, srp_tids *out) {
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        while (i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80) k++;
        char ch[8];
        if (k == 1 && s[i] == ' ')
            snprintf(ch, sizeof ch, "\xe2\x96\x81"); /* "▁", SentencePiece's space */
        else
            snprintf(ch, sizeof ch, "%.*s", (int)k, s + i);
        int id = srp_spm_piece_id(t->spm, ch);
        if (id >= 0 && !t->special[id]) {
            if (srp_tids_push(out, id)) return -1;
        } else {
            for (size_t j = 0; j < k; j++) {
                char bp[8];
                snprintf(bp, sizeof bp, "<0x%02X>", (unsigned char)s[i + j]);
                int bid = srp_spm_piece_id(t->spm, bp);
                if (bid < 0 || t->special[bid]) bid = srp_spm_piece_id(t->spm, "<unk>");
                if (bid >= 0 && srp_tids_push(out, bid)) return -1;
            }
        }
        i += k;
    }
    return 0;
}

static int spm_encode(const srp_tokenizer *t, const char *text, size_t len,
                      const srp_text_span *plain, int n_plain, int32_t **raw, int *m, srp_err *e) {
    if (!n_plain) {
        if (srp_spm_encode(t->spm, text, len, raw, m))
            return srp_err_set(e, SRP_EINVAL, "tokenizer: cannot encode the text");
        return 0;
    }
    int32_t *ids = NULL;
    size_t(*sp)[2] = NULL;
    int k = 0;
    if (srp_spm_encode_spans(t->spm, text, len, &ids, &sp, &k))
        return srp_err_set(e, SRP_EINVAL, "tokenizer: cannot encode the text");
    srp_tids v = { 0 };
    int rc = 0;
    for (int i = 0; i < k && !rc; i++) {
        size_t b = sp[i][0], en = sp[i][1];
        if (t->special[ids[i]] && b < en && en <= len && overlaps(plain, n_plain, b, en))
            rc = spm_as_text(t, text + b, en - b, &v);
        else
            rc = srp_tids_push(&v, ids[i]);
    }
    free(ids);
    free(sp);
    if (rc || v.n > INT32_MAX - 2) {
        srp_tids_free(&v);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    *raw = v.p ? v.p : malloc(sizeof **raw);
    *m = (int)v.n;
    return *raw ? 0 : srp_err_set(e, SRP_ENOMEM, "out of memory");
}

int srp_tokenizer_encode_spans(const srp_tokenizer *t, const char *text, size_t len,
                               int add_special, const srp_text_span *plain, int n_plain,
                               int32_t **ids, int *n, srp_err *e) {
    if (t->hf) {
        size_t(*pl)[2] = NULL;
        if (n_plain > 0) {
            if (!(pl = malloc((size_t)n_plain * sizeof *pl)))
                return srp_err_set(e, SRP_ENOMEM, "out of memory");
            for (int i = 0; i < n_plain; i++) pl[i][0] = plain[i].begin, pl[i][1] = plain[i].end;
        }
        /* tokenizer_config.json's add_bos_token / add_eos_token replace the post-processor,
         * as transformers' Llama- and Gemma-style fast tokenizers rebuild it from them */
        int cfg = t->add_bos >= 0 || t->add_eos >= 0;
        srp_tids v = { 0 };
        int rc = srp_hf_encode(t->hf, text, len, add_special && !cfg, (const size_t(*)[2])pl,
                               n_plain, &v, e);
        free(pl);
        if (!rc && v.n > INT32_MAX - 2)
            rc = srp_err_set(e, SRP_EINVAL, "tokenizer: the text is too long");
        if (!rc) rc = wrap(t, v.p, (int)v.n, add_special && cfg, ids, n, e);
        srp_tids_free(&v);
        return rc;
    }
    int32_t *raw = NULL;
    int m = 0;
    int rc = spm_encode(t, text, len, plain, n_plain, &raw, &m, e);
    if (rc) return rc;
    rc = wrap(t, raw, m, add_special, ids, n, e);
    free(raw);
    return rc;
}

int srp_tokenizer_encode(const srp_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, int *n, srp_err *e) {
    return srp_tokenizer_encode_spans(t, text, len, add_special, NULL, 0, ids, n, e);
}

/* Decodes ids that hold no special token to be shown on its own (a run of text). */
static int decode_run(const srp_tokenizer *t, const int32_t *ids, int n, srp_tbuf *out,
                      srp_err *e) {
    if (t->hf) {
        srp_tbuf b = { 0 };
        int rc = srp_hf_decode(t->hf, ids, n, 0, &b, e);
        if (!rc && srp_tbuf_put(out, b.p ? b.p : "", b.n))
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        srp_tbuf_free(&b);
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    if (srp_spm_decode(t->spm, ids, n, &text, &len))
        return srp_err_set(e, SRP_EINVAL, "tokenizer: cannot decode the ids");
    int rc = srp_tbuf_put(out, text, len) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
    free(text);
    return rc;
}

/* The text of a special token shown on its own: as tokenizer.json writes it, or the
 * SentencePiece piece (the library decodes control pieces to nothing). */
static int decode_special(const srp_tokenizer *t, int32_t id, srp_tbuf *out, srp_err *e) {
    if (t->hf) return decode_run(t, &id, 1, out, e);
    char *p = srp_spm_id_to_piece(t->spm, id);
    int rc =
        !p || srp_tbuf_put(out, p, strlen(p)) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
    free(p);
    return rc;
}

/* Whether a shown special token is decoded apart from its neighbours: always with spaces
 * between, and SentencePiece control pieces (which the library would drop). Otherwise it stays
 * in its run, which the tokenizer decodes as its reference does. */
static int stands_apart(const srp_tokenizer *t, int32_t id, int spaces) {
    if (!t->special[id]) return 0;
    if (spaces) return 1;
    return t->spm && srp_spm_is_control(t->spm, id) && !srp_spm_is_unknown(t->spm, id);
}

int srp_tokenizer_decode(const srp_tokenizer *t, const int32_t *ids, int n, int flags, char **text,
                         size_t *len, srp_err *e) {
    const int skip = flags & SRP_DECODE_SKIP_SPECIAL;
    const int spaces = !skip && (flags & SRP_DECODE_SPACES_BETWEEN_SPECIAL);
    int32_t *keep = malloc((size_t)(n > 0 ? n : 1) * sizeof *keep);
    if (!keep) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab) {
            free(keep);
            return srp_err_set(e, SRP_EINVAL, "token id %d is outside the vocabulary [0, %d)",
                               ids[i], t->vocab);
        }
        if (skip && t->special[ids[i]]) continue;
        keep[k++] = ids[i];
    }
    /* pieces: runs of text and special tokens standing apart, joined with a space or not */
    srp_tbuf out = { 0 };
    int rc = 0, pieces = 0;
    for (int i = 0; i < k && !rc;) {
        int j = i;
        if (stands_apart(t, keep[i], spaces))
            j = i + 1;
        else
            while (j < k && !stands_apart(t, keep[j], spaces)) j++;
        if (pieces++ && spaces && srp_tbuf_put(&out, " ", 1))
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        if (!rc)
            rc = j == i + 1 && stands_apart(t, keep[i], spaces)
                     ? decode_special(t, keep[i], &out, e)
                     : decode_run(t, keep + i, j - i, &out, e);
        i = j;
    }
    free(keep);
    if (!rc && srp_tbuf_put(&out, "", 0)) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (rc) {
        srp_tbuf_free(&out);
        return rc;
    }
    *text = out.p;
    *len = out.n;
    return 0;
}

int srp_tokenizer_vocab_size(const srp_tokenizer *t) {
    return t->vocab;
}
int srp_tokenizer_bos(const srp_tokenizer *t) {
    return t->bos;
}
int srp_tokenizer_eos(const srp_tokenizer *t) {
    return t->eos;
}
const char *srp_tokenizer_chat_template(const srp_tokenizer *t) {
    return t->chat_template;
}

int srp_tokenizer_token_bytes(const srp_tokenizer *t, int id, uint8_t *buf, int cap) {
    if (id < 0 || id >= t->vocab || t->special[id]) return -1;
    srp_tbuf b = { 0 };
    int n = t->hf ? srp_hf_token_bytes(t->hf, id, &b) : srp_spm_token_bytes(t->spm, id, &b);
    if (n > 0 && buf) memcpy(buf, b.p, (size_t)(n < cap ? n : cap));
    srp_tbuf_free(&b);
    return n < 0 ? -1 : n;
}

int srp_tokenizer_is_special(const srp_tokenizer *t, int id) {
    return id >= 0 && id < t->vocab && t->special[id];
}
