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
    *out = t;
    return 0;
}

void srp_tokenizer_free(srp_tokenizer *t) {
    if (!t) return;
    srp_spm_free(t->spm);
    srp_hf_free(t->hf);
    free(t->chat_template);
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

int srp_tokenizer_decode(const srp_tokenizer *t, const int32_t *ids, int n, int skip_special,
                         char **text, size_t *len, srp_err *e) {
    if (t->hf) {
        srp_tbuf b = { 0 };
        int rc = srp_hf_decode(t->hf, ids, n, skip_special, &b, e);
        if (rc) {
            srp_tbuf_free(&b);
            return rc;
        }
        *text = b.p;
        *len = b.n;
        return 0;
    }
    int32_t *keep = malloc((size_t)(n > 0 ? n : 1) * sizeof *keep);
    if (!keep) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab) {
            free(keep);
            return srp_err_set(e, SRP_EINVAL, "token id %d is outside the vocabulary [0, %d)",
                               ids[i], t->vocab);
        }
        if (skip_special && srp_spm_is_control(t->spm, ids[i])) continue;
        keep[k++] = ids[i];
    }
    int rc = srp_spm_decode(t->spm, keep, k, text, len);
    free(keep);
    if (rc) return srp_err_set(e, SRP_EINVAL, "tokenizer: cannot decode the ids");
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
    if (id < 0 || id >= t->vocab) return 0;
    return t->hf ? t->hf->special[id] : srp_spm_is_control(t->spm, id);
}
