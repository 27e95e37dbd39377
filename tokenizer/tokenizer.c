#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "json_file.h"
#include "sentencepiece_c.h"

struct srp_tokenizer {
    srp_spm *spm;
    int vocab;
    int bos, eos;
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

static int read_config(srp_tokenizer *t, const char *dir, srp_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK) != 0) return 0;
    cJSON *root = srp_json_load_file(path, e);
    if (!root) return e ? e->code : SRP_EFORMAT;
    int rc = 0;
    const cJSON *it;
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "add_bos_token")) && !cJSON_IsNull(it)) {
        if (!cJSON_IsBool(it)) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: field \"add_bos_token\" must be true or false",
                             path);
            goto out;
        }
        t->add_bos = cJSON_IsTrue(it);
    }
    if ((it = cJSON_GetObjectItemCaseSensitive(root, "add_eos_token")) && !cJSON_IsNull(it)) {
        if (!cJSON_IsBool(it)) {
            rc = srp_err_set(e, SRP_EFORMAT, "%s: field \"add_eos_token\" must be true or false",
                             path);
            goto out;
        }
        t->add_eos = cJSON_IsTrue(it);
    }
    static const char *const keys[] = { "bos_token", "eos_token" };
    for (int k = 0; k < 2; k++) {
        it = cJSON_GetObjectItemCaseSensitive(root, keys[k]);
        if (!it || cJSON_IsNull(it)) continue;
        const char *s = token_text(it);
        int id = s ? srp_spm_piece_id(t->spm, s) : -1;
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
    it = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(it)) {
        t->chat_template = strdup(it->valuestring);
        if (!t->chat_template) rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
out:
    cJSON_Delete(root);
    return rc;
}

int srp_tokenizer_load(const char *dir, srp_tokenizer **out, srp_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    if (access(path, F_OK) != 0)
        return srp_err_set(e, SRP_EIO, "%s: no tokenizer (tokenizer.model) in this folder", dir);
    srp_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    char msg[512] = "";
    t->spm = srp_spm_load(path, msg, sizeof msg);
    if (!t->spm) {
        free(t);
        return srp_err_set(e, SRP_EFORMAT, "%s", msg);
    }
    t->vocab = srp_spm_size(t->spm);
    t->bos = srp_spm_bos(t->spm);
    t->eos = srp_spm_eos(t->spm);
    t->add_bos = t->bos >= 0; /* LlamaTokenizer's default */
    t->add_eos = 0;
    int rc = read_config(t, dir, e);
    if (rc) {
        srp_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void srp_tokenizer_free(srp_tokenizer *t) {
    if (!t) return;
    srp_spm_free(t->spm);
    free(t->chat_template);
    free(t);
}

int srp_tokenizer_encode(const srp_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, int *n, srp_err *e) {
    int32_t *raw = NULL;
    int m = 0;
    if (srp_spm_encode(t->spm, text, len, &raw, &m))
        return srp_err_set(e, SRP_EINVAL, "tokenizer: cannot encode the text");
    int bos = add_special && t->add_bos && t->bos >= 0;
    int eos = add_special && t->add_eos && t->eos >= 0;
    int32_t *outv = malloc((size_t)(m + 2) * sizeof *outv);
    if (!outv) {
        free(raw);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    int k = 0;
    if (bos) outv[k++] = t->bos;
    memcpy(outv + k, raw, (size_t)m * sizeof *raw);
    k += m;
    if (eos) outv[k++] = t->eos;
    free(raw);
    *ids = outv;
    *n = k;
    return 0;
}

int srp_tokenizer_decode(const srp_tokenizer *t, const int32_t *ids, int n, int skip_special,
                         char **text, size_t *len, srp_err *e) {
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

/* Incremental decoding keeps a window of ids starting at prefix: text of ids[prefix, read) has
 * been emitted; decoding ids[prefix, n) and removing that text yields what is new. Decoding
 * from a token already emitted (not from the start) keeps context-dependent rendering, such as
 * SentencePiece dropping the space of the first piece, out of the output. */
struct srp_detok {
    const srp_tokenizer *t;
    int skip_special;
    int32_t *ids;
    int n, cap, prefix, read;
    char *out;
};

int srp_detok_new(const srp_tokenizer *t, int skip_special, srp_detok **out, srp_err *e) {
    srp_detok *d = calloc(1, sizeof *d);
    if (!d) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    d->t = t;
    d->skip_special = skip_special;
    *out = d;
    return 0;
}

static int ends_incomplete(const char *s, size_t len) {
    if (len >= 3 && !memcmp(s + len - 3, "\xEF\xBF\xBD", 3)) return 1; /* U+FFFD */
    /* a lead byte whose continuation bytes have not all arrived */
    for (size_t back = 1; back <= 4 && back <= len; back++) {
        unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back;
    }
    return 0;
}

static int emit(srp_detok *d, int final, const char **text, size_t *len, srp_err *e) {
    char *prev = NULL, *full = NULL;
    size_t lp = 0, lf = 0;
    int rc = srp_tokenizer_decode(d->t, d->ids + d->prefix, d->read - d->prefix, d->skip_special,
                                  &prev, &lp, e);
    if (!rc)
        rc = srp_tokenizer_decode(d->t, d->ids + d->prefix, d->n - d->prefix, d->skip_special,
                                  &full, &lf, e);
    *text = "";
    *len = 0;
    if (!rc && lf > lp && (final || !ends_incomplete(full, lf))) {
        free(d->out);
        d->out = malloc(lf - lp + 1);
        if (!d->out) {
            rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        } else {
            memcpy(d->out, full + lp, lf - lp);
            d->out[lf - lp] = 0;
            *text = d->out;
            *len = lf - lp;
            d->prefix = d->read;
            d->read = d->n;
        }
    }
    free(prev);
    free(full);
    return rc;
}

int srp_detok_push(srp_detok *d, int32_t id, const char **text, size_t *len, srp_err *e) {
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 64;
        int32_t *ni = realloc(d->ids, (size_t)cap * sizeof *ni);
        if (!ni) return srp_err_set(e, SRP_ENOMEM, "out of memory");
        d->ids = ni;
        d->cap = cap;
    }
    d->ids[d->n++] = id;
    return emit(d, 0, text, len, e);
}

int srp_detok_flush(srp_detok *d, const char **text, size_t *len, srp_err *e) {
    return emit(d, 1, text, len, e);
}

void srp_detok_free(srp_detok *d) {
    if (!d) return;
    free(d->ids);
    free(d->out);
    free(d);
}
