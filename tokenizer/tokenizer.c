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
    if ((rc = init_special(t, e))) {
        srp_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void srp_tokenizer_free(srp_tokenizer *t) {
    if (!t) return;
    srp_spm_free(t->spm);
    srp_hf_free(t->hf);
    free(t->chat_template);
    free(t->special);
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

int srp_tokenizer_encode(const srp_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, int *n, srp_err *e) {
    if (t->hf) {
        /* tokenizer_config.json's add_bos_token / add_eos_token replace the post-processor,
         * as transformers' Llama- and Gemma-style fast tokenizers rebuild it from them */
        int cfg = t->add_bos >= 0 || t->add_eos >= 0;
        srp_tids v = { 0 };
        int rc = srp_hf_encode(t->hf, text, len, add_special && !cfg, &v, e);
        if (!rc && v.n > INT32_MAX - 2)
            rc = srp_err_set(e, SRP_EINVAL, "tokenizer: the text is too long");
        if (!rc) rc = wrap(t, v.p, (int)v.n, add_special && cfg, ids, n, e);
        srp_tids_free(&v);
        return rc;
    }
    int32_t *raw = NULL;
    int m = 0;
    if (srp_spm_encode(t->spm, text, len, &raw, &m))
        return srp_err_set(e, SRP_EINVAL, "tokenizer: cannot encode the text");
    int rc = wrap(t, raw, m, add_special, ids, n, e);
    free(raw);
    return rc;
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

int srp_tokenizer_is_special(const srp_tokenizer *t, int id) {
    return id >= 0 && id < t->vocab && t->special[id];
}
