/* config.json: the field readers the architecture parsers share, the parts every architecture
 * has (special token ids), and the dispatch to engine/arch_*.c. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"
#include "json_file.h"

const cJSON *srp_cfg_find(const srp_cfg_reader *r, const char *key, const char *alt,
                          const char **used) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->root, key);
    *used = key;
    if ((!it || cJSON_IsNull(it)) && alt) {
        it = cJSON_GetObjectItemCaseSensitive(r->root, alt);
        *used = alt;
    }
    return cJSON_IsNull(it) ? NULL : it;
}

int srp_cfg_int(const srp_cfg_reader *r, const char *key, const char *alt, int def, int min,
                int *out) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, alt, &used);
    if (!it) {
        if (def < min)
            return srp_err_set(r->e, SRP_EFORMAT, "%s: missing field \"%s\"", r->file, key);
        *out = def;
        return 0;
    }
    double v;
    if (srp_json_number(it, &v) || v != floor(v) || v < min || v > 1e9)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be an integer >= %d", r->file,
                           used, min);
    *out = (int)v;
    return 0;
}

int srp_cfg_float(const srp_cfg_reader *r, const char *key, const char *alt, double def,
                  double *out) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, alt, &used);
    if (!it) {
        *out = def;
        return 0;
    }
    if (srp_json_number(it, out))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a number", r->file, used);
    return 0;
}

int srp_cfg_floatf(const srp_cfg_reader *r, const char *key, const char *alt, double def,
                   float *out) {
    double v;
    int rc = srp_cfg_float(r, key, alt, def, &v);
    if (!rc) *out = (float)v;
    return rc;
}

int srp_cfg_bool(const srp_cfg_reader *r, const char *key, const char *alt, int def, int *out) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, alt, &used);
    if (!it) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(it))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be true or false", r->file,
                           used);
    *out = cJSON_IsTrue(it);
    return 0;
}

const char *srp_cfg_string(const srp_cfg_reader *r, const char *key, const char *alt,
                           const char *def, int *err) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, alt, &used);
    *err = 0;
    if (!it) return def;
    if (!cJSON_IsString(it)) {
        *err = srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a string", r->file, used);
        return NULL;
    }
    return it->valuestring;
}

int srp_cfg_int_auto(const srp_cfg_reader *r, const char *key, int auto_value, int *out) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, NULL, &used);
    if (!it || (cJSON_IsString(it) && !strcmp(it->valuestring, "auto"))) {
        *out = auto_value;
        return 0;
    }
    return srp_cfg_int(r, key, NULL, 1, 1, out);
}

int srp_cfg_range(const srp_cfg_reader *r, const char *key, const char *alt, double *lo,
                  double *hi) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, alt, &used);
    if (!it) return 0;
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 ||
        srp_json_number(cJSON_GetArrayItem(it, 0), lo) ||
        srp_json_number(cJSON_GetArrayItem(it, 1), hi))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a [min, max] pair", r->file,
                           used);
    return 0;
}

int srp_cfg_floats(const srp_cfg_reader *r, const char *key, int n, float *out) {
    const char *used;
    const cJSON *it = srp_cfg_find(r, key, NULL, &used);
    if (!it) return 0;
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != n)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a list of %d numbers",
                           r->file, key, n);
    for (int i = 0; i < n; i++) {
        double v;
        if (srp_json_number(cJSON_GetArrayItem(it, i), &v))
            return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\"[%d] must be a number", r->file,
                               key, i);
        out[i] = (float)v;
    }
    return 1;
}

int srp_cfg_act(const srp_cfg_reader *r, const char *key, const char *def, srp_act *out) {
    static const struct {
        const char *name;
        srp_act act;
    } table[] = {
        { "relu2", SRP_ACT_RELU2 },
        { "relu", SRP_ACT_RELU },
        { "gelu", SRP_ACT_GELU },
        { "gelu_new", SRP_ACT_GELU_TANH },
        { "gelu_pytorch_tanh", SRP_ACT_GELU_TANH },
        { "gelu_fast", SRP_ACT_GELU_TANH },
        { "silu", SRP_ACT_SILU },
        { "swish", SRP_ACT_SILU },
    };
    int err;
    const char *name = srp_cfg_string(r, key, NULL, def, &err);
    if (err) return err;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (!strcmp(name, table[i].name)) {
            *out = table[i].act;
            return 0;
        }
    }
    return srp_err_set(r->e, SRP_EUNSUPPORTED,
                       "%s: field \"%s\": activation \"%s\" is not supported (relu2, relu, gelu, "
                       "gelu_new, gelu_pytorch_tanh, silu)",
                       r->file, key, name);
}

int srp_cfg_add_block(srp_config *c, const srp_cfg_reader *r, int layer, int n_mixers,
                      srp_mixer_kind a, srp_mixer_kind b) {
    if (c->n_blocks >= SRP_MAX_BLOCKS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    srp_block_desc *bd = &c->blocks[c->n_blocks++];
    bd->layer = layer;
    bd->n_mixers = n_mixers;
    bd->mixer[0] = a;
    bd->mixer[1] = b;
    return 0;
}

int srp_cfg_mamba2_derive(srp_mamba2_config *m, const srp_cfg_reader *r) {
    if (m->heads % m->groups)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: the Mamba heads (%d) are not a multiple of n_groups (%d)", r->file,
                           m->heads, m->groups);
    const int gn = m->groups * m->state;
    m->d_inner = m->heads * m->head_dim;
    m->conv_dim = m->d_inner + 2 * gn;
    m->d_in_proj = 2 * m->d_inner + 2 * gn + m->heads;
    if (!(m->dt_min <= m->dt_max))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: the time-step limit is empty", r->file);
    return 0;
}

/* transformers 4.x writes "rope_scaling": {"rope_type" | "type": ..., "factor": ...} beside
 * "rope_theta"; transformers 5 folds both into "rope_parameters". */
int srp_cfg_rope(const srp_cfg_reader *r, int head_dim, srp_rope_config *rope) {
    const char *used;
    const cJSON *params = srp_cfg_find(r, "rope_parameters", NULL, &used);
    const cJSON *scaling = params ? params : srp_cfg_find(r, "rope_scaling", NULL, &used);
    double theta = 10000.0, partial = 1.0;
    int rc = srp_cfg_float(r, "rope_theta", NULL, 10000.0, &theta);
    if (!rc) rc = srp_cfg_float(r, "partial_rotary_factor", NULL, 1.0, &partial);
    if (rc) return rc;
    rope->kind = SRP_ROPE_DEFAULT;
    rope->factor = 1.0f;
    if (scaling && !cJSON_IsObject(scaling))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be an object", r->file, used);
    if (scaling) {
        srp_cfg_reader sub = { scaling, r->file, r->e };
        int err;
        const char *type = srp_cfg_string(&sub, "rope_type", "type", "default", &err);
        if (err) return err;
        rc = srp_cfg_float(&sub, "rope_theta", NULL, theta, &theta);
        if (!rc) rc = srp_cfg_float(&sub, "partial_rotary_factor", NULL, partial, &partial);
        if (!rc) rc = srp_cfg_floatf(&sub, "factor", NULL, 1.0, &rope->factor);
        if (!rc)
            rc = srp_cfg_int(&sub, "original_max_position_embeddings", NULL, 8192, 1,
                             &rope->original_max_positions);
        if (!rc) rc = srp_cfg_floatf(&sub, "low_freq_factor", NULL, 1.0, &rope->low_freq_factor);
        if (!rc) rc = srp_cfg_floatf(&sub, "high_freq_factor", NULL, 4.0, &rope->high_freq_factor);
        if (rc) return rc;
        if (!strcmp(type, "default"))
            rope->kind = SRP_ROPE_DEFAULT;
        else if (!strcmp(type, "linear"))
            rope->kind = SRP_ROPE_LINEAR;
        else if (!strcmp(type, "dynamic"))
            rope->kind = SRP_ROPE_DYNAMIC;
        else if (!strcmp(type, "llama3"))
            rope->kind = SRP_ROPE_LLAMA3;
        else
            return srp_err_set(r->e, SRP_EUNSUPPORTED,
                               "%s: field \"%s\": rope type \"%s\" is not supported (default, "
                               "linear, dynamic, llama3)",
                               r->file, used, type);
        if (rope->kind != SRP_ROPE_DEFAULT && !(rope->factor > 0))
            return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\": factor must be positive",
                               r->file, used);
        if (rope->kind == SRP_ROPE_LLAMA3 && !(rope->high_freq_factor > rope->low_freq_factor))
            return srp_err_set(r->e, SRP_EFORMAT,
                               "%s: field \"%s\": high_freq_factor must exceed low_freq_factor",
                               r->file, used);
    }
    rc = srp_cfg_int(r, "max_position_embeddings", NULL, 2048, 1, &rope->max_positions);
    if (rc) return rc;
    if (!(theta > 0) || !(partial > 0 && partial <= 1))
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: rope_theta must be positive and partial_rotary_factor in (0, 1]",
                           r->file);
    rope->theta = (float)theta;
    rope->dim = (int)(head_dim * partial);
    rope->dim -= rope->dim % 2;
    if (rope->dim <= 0)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: no channel of the %d-channel heads is rotated",
                           r->file, head_dim);
    return 0;
}

static int parse_ids(srp_config *c, const srp_cfg_reader *r) {
    int rc = srp_cfg_int(r, "bos_token_id", NULL, -1, -1, &c->bos_id);
    if (!rc) rc = srp_cfg_int(r, "pad_token_id", NULL, -1, -1, &c->pad_id);
    if (rc) return rc;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(r->root, "eos_token_id");
    c->n_eos = 0;
    if (cJSON_IsArray(eos)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, eos) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0)
                return srp_err_set(r->e, SRP_EFORMAT,
                                   "%s: field \"eos_token_id\" must hold token ids", r->file);
            if (c->n_eos < SRP_MAX_EOS) c->eos_ids[c->n_eos++] = it->valueint;
        }
    } else if (eos && !cJSON_IsNull(eos)) {
        int id;
        rc = srp_cfg_int(r, "eos_token_id", NULL, 0, 0, &id);
        if (rc) return rc;
        c->eos_ids[c->n_eos++] = id;
    }
    return 0;
}

/* Checks that hold whatever the architecture. */
static int check(const srp_config *c, const char *name, srp_err *e) {
    if (srp_config_count(c, SRP_MIXER_ATTENTION) && c->attn.heads % c->attn.kv_heads)
        return srp_err_set(e, SRP_EFORMAT,
                           "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads "
                           "(%d)",
                           name, c->attn.heads, c->attn.kv_heads);
    if (!(c->norm_eps >= 0))
        return srp_err_set(e, SRP_EFORMAT, "%s: the norm epsilon must be >= 0", name);
    if (c->n_blocks == 0) return srp_err_set(e, SRP_EFORMAT, "%s: the model has no layers", name);
    return 0;
}

static void defaults(srp_config *c) {
    memset(c, 0, sizeof *c);
    c->embed_mult = c->resid_mult = c->logits_mult = 1.0f;
    c->mamba2.in_mult = c->mamba2.out_mult = 1.0f;
    c->mamba2.out_bias = -1;  /* proj_bias unless the parser says */
    c->mamba2.norm_eps = NAN; /* norm_eps unless the parser says */
    for (int i = 0; i < 5; i++) c->mamba2.part_mult[i] = 1.0f;
    c->attn.in_mult = c->attn.key_mult = c->attn.out_mult = 1.0f;
    c->mlp.gate_mult = c->mlp.out_mult = 1.0f;
}

static int config_from_json(srp_config *cfg, const cJSON *root, const char *name, srp_err *e) {
    defaults(cfg);
    srp_cfg_reader r = { root, name, e };
    if (!cJSON_IsObject(root))
        return srp_err_set(e, SRP_EFORMAT, "%s: expected a JSON object", name);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *arch = NULL;
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        arch = cJSON_GetArrayItem(archs, 0)->valuestring;
    else if (cJSON_IsString(mt))
        arch = mt->valuestring;
    if (!arch)
        return srp_err_set(e, SRP_EFORMAT,
                           "%s: missing field \"architectures\" (or \"model_type\")", name);
    snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", arch);
    const srp_arch_desc *a = srp_arch_find(arch);
    if (!a)
        return srp_err_set(e, SRP_EUNSUPPORTED,
                           "%s: field \"architectures\": \"%s\" is not supported (supported: %s)",
                           name, arch, srp_arch_supported_list());
    cfg->arch = a->arch;
    int rc = a->parse(cfg, &r);
    if (cfg->mamba2.out_bias < 0) cfg->mamba2.out_bias = cfg->mamba2.proj_bias;
    if (isnan(cfg->mamba2.norm_eps)) cfg->mamba2.norm_eps = cfg->norm_eps;
    if (!rc) rc = parse_ids(cfg, &r);
    if (!rc) rc = check(cfg, name, e);
    return rc;
}

int srp_config_parse(srp_config *cfg, const char *text, unsigned long len, const char *name,
                     srp_err *e) {
    cJSON *root = srp_json_parse(text, len, name, e);
    if (!root) return e ? e->code : SRP_EFORMAT;
    int rc = config_from_json(cfg, root, name, e);
    cJSON_Delete(root);
    return rc;
}

static void add_eos(srp_config *cfg, int id) {
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_ids[i] == id) return;
    if (cfg->n_eos < SRP_MAX_EOS) cfg->eos_ids[cfg->n_eos++] = id;
}

/* generation_config.json's eos_token_id (an id or a list) joins config.json's: chat checkpoints
 * end their turns with a token config.json does not name (transformers' generate and vLLM stop
 * at any of them). */
static int read_generation_config(srp_config *cfg, const char *dir, srp_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (access(path, F_OK) != 0) return 0;
    cJSON *root = srp_json_load_file(path, e);
    if (!root) return e ? e->code : SRP_EIO;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), *it;
    int rc = 0;
    if (eos && !cJSON_IsNull(eos) && !cJSON_IsNumber(eos) && !cJSON_IsArray(eos))
        rc = srp_err_set(e, SRP_EFORMAT, "%s: field \"eos_token_id\" must be a token id or a list",
                         path);
    for (it = cJSON_IsArray(eos)    ? eos->child
              : cJSON_IsNumber(eos) ? eos
                                    : NULL;
         it && !rc; it = cJSON_IsArray(eos) ? it->next : NULL) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 0 || it->valuedouble >= cfg->vocab_size)
            rc = srp_err_set(e, SRP_EFORMAT,
                             "%s: field \"eos_token_id\" must hold token ids in [0, %d)", path,
                             cfg->vocab_size);
        else
            add_eos(cfg, (int)it->valuedouble);
    }
    cJSON_Delete(root);
    return rc;
}

int srp_config_load(srp_config *cfg, const char *dir, srp_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root = srp_json_load_file(path, e);
    if (!root) return e ? e->code : SRP_EIO;
    int rc = config_from_json(cfg, root, path, e);
    cJSON_Delete(root);
    if (!rc) rc = read_generation_config(cfg, dir, e);
    return rc;
}

int srp_config_count(const srp_config *cfg, srp_mixer_kind kind) {
    int n = 0;
    for (int i = 0; i < cfg->n_blocks; i++)
        for (int k = 0; k < cfg->blocks[i].n_mixers; k++) n += cfg->blocks[i].mixer[k] == kind;
    return n;
}

int srp_config_norm_width(const srp_config *cfg, int b) {
    return cfg->blocks[b].in == SRP_IN_CONCAT_EMBED ? 2 * cfg->d_model : cfg->d_model;
}

int srp_config_uses_aux(const srp_config *cfg) {
    for (int i = 0; i < cfg->n_blocks; i++)
        if (cfg->blocks[i].out == SRP_OUT_AUX || cfg->blocks[i].in == SRP_IN_AUX ||
            cfg->blocks[i].in == SRP_IN_RESID_AUX)
            return 1;
    return 0;
}

int srp_config_uses_embed(const srp_config *cfg) {
    for (int i = 0; i < cfg->n_blocks; i++)
        if (cfg->blocks[i].in == SRP_IN_CONCAT_EMBED) return 1;
    return 0;
}

const char *srp_mixer_kind_name(srp_mixer_kind kind) {
    switch (kind) {
    case SRP_MIXER_MAMBA2:
        return "mamba2";
    case SRP_MIXER_ATTENTION:
        return "attention";
    case SRP_MIXER_MLP:
        return "mlp";
    case SRP_MIXER_MAMBA1:
        return "mamba1";
    case SRP_MIXER_MOE:
        return "moe";
    case SRP_MIXER_COUNT:
        break;
    }
    return "?";
}

const char *srp_act_name(srp_act act) {
    switch (act) {
    case SRP_ACT_RELU2:
        return "relu2";
    case SRP_ACT_RELU:
        return "relu";
    case SRP_ACT_GELU:
        return "gelu";
    case SRP_ACT_GELU_TANH:
        return "gelu_tanh";
    case SRP_ACT_SILU:
        return "silu";
    }
    return "?";
}
