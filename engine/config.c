#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "json_file.h"

/* A field lookup that remembers the file name for messages. Keys may come in two spellings
 * (transformers' attribute names and the constructor names of published checkpoints). */
typedef struct {
    const cJSON *root;
    const char *file;
    srp_err *e;
} reader;

static const cJSON *find(const reader *r, const char *key, const char *alt, const char **used) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r->root, key);
    *used = key;
    if ((!it || cJSON_IsNull(it)) && alt) {
        it = cJSON_GetObjectItemCaseSensitive(r->root, alt);
        *used = alt;
    }
    return cJSON_IsNull(it) ? NULL : it;
}

static int get_int(const reader *r, const char *key, const char *alt, int def, int min, int *out) {
    const char *used;
    const cJSON *it = find(r, key, alt, &used);
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

static int get_float(const reader *r, const char *key, const char *alt, double def, double *out) {
    const char *used;
    const cJSON *it = find(r, key, alt, &used);
    if (!it) {
        *out = def;
        return 0;
    }
    if (srp_json_number(it, out))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a number", r->file, used);
    return 0;
}

static int get_bool(const reader *r, const char *key, const char *alt, int def, int *out) {
    const char *used;
    const cJSON *it = find(r, key, alt, &used);
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

static const char *get_string(const reader *r, const char *key, const char *alt, const char *def,
                              int *err) {
    const char *used;
    const cJSON *it = find(r, key, alt, &used);
    *err = 0;
    if (!it) return def;
    if (!cJSON_IsString(it)) {
        *err = srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a string", r->file, used);
        return NULL;
    }
    return it->valuestring;
}

/* [lo, hi] pair such as time_step_limit; either end may be Infinity. */
static int get_range(const reader *r, const char *key, const char *alt, double *lo, double *hi) {
    const char *used;
    const cJSON *it = find(r, key, alt, &used);
    if (!it) return 0;
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 ||
        srp_json_number(cJSON_GetArrayItem(it, 0), lo) ||
        srp_json_number(cJSON_GetArrayItem(it, 1), hi))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a [min, max] pair", r->file,
                           used);
    return 0;
}

static int parse_act(const reader *r, const char *key, const char *name, srp_act *out) {
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

static int add_layer(srp_config *c, const reader *r, char kind, int index) {
    if (c->n_layers >= SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    switch (kind) {
    case 'M':
        c->layer_kind[c->n_layers++] = SRP_LAYER_MAMBA2;
        return 0;
    case '*':
        c->layer_kind[c->n_layers++] = SRP_LAYER_ATTENTION;
        return 0;
    case '-':
        c->layer_kind[c->n_layers++] = SRP_LAYER_MLP;
        return 0;
    case 'E':
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: layer %d is a mixture-of-experts layer, which serpent does not "
                           "support yet",
                           r->file, index);
    default:
        return srp_err_set(r->e, SRP_EFORMAT, "%s: layer %d has unknown type '%c'", r->file, index,
                           kind);
    }
}

/* The layer pattern: the "M-*" string of published checkpoints, or the list that current
 * transformers writes. Megatron's '|' (pipeline boundary) and '/' (MTP) are not layers. */
static int parse_pattern(srp_config *c, const reader *r) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(r->root, "hybrid_override_pattern");
    const char *list_key = "layers_block_type";
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r->root, list_key);
    if (!list || cJSON_IsNull(list)) {
        list_key = "layer_types";
        list = cJSON_GetObjectItemCaseSensitive(r->root, list_key);
    }
    c->n_layers = 0;
    if (list && !cJSON_IsNull(list)) {
        if (!cJSON_IsArray(list))
            return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\" must be a list of strings",
                               r->file, list_key);
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            if (!cJSON_IsString(it))
                return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"%s\"[%d] must be a string",
                                   r->file, list_key, i);
            const char *s = it->valuestring;
            char kind = '?';
            if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention") || !strcmp(s, "mamba2"))
                kind = 'M';
            else if (!strcmp(s, "attention") || !strcmp(s, "full_attention"))
                kind = '*';
            else if (!strcmp(s, "mlp"))
                kind = '-';
            else if (!strcmp(s, "moe"))
                kind = 'E';
            else
                return srp_err_set(r->e, SRP_EFORMAT,
                                   "%s: field \"%s\"[%d]: unknown layer type \"%s\"", r->file,
                                   list_key, i, s);
            int rc = add_layer(c, r, kind, i);
            if (rc) return rc;
            i++;
        }
    } else if (pat && !cJSON_IsNull(pat)) {
        if (!cJSON_IsString(pat))
            return srp_err_set(r->e, SRP_EFORMAT,
                               "%s: field \"hybrid_override_pattern\" must be a string", r->file);
        int i = 0;
        for (const char *p = pat->valuestring; *p; p++) {
            if (*p == '|' || *p == '/') continue;
            int rc = add_layer(c, r, *p, i++);
            if (rc) return srp_err_prefix(r->e, "field \"hybrid_override_pattern\"");
        }
    } else {
        return srp_err_set(
            r->e, SRP_EFORMAT,
            "%s: missing field \"hybrid_override_pattern\" (or \"layers_block_type\")", r->file);
    }
    if (c->n_layers == 0)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: the layer pattern is empty", r->file);
    return 0;
}

static int parse_ids(srp_config *c, const reader *r) {
    int rc = get_int(r, "bos_token_id", NULL, -1, -1, &c->bos_id);
    if (!rc) rc = get_int(r, "pad_token_id", NULL, -1, -1, &c->pad_id);
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
        rc = get_int(r, "eos_token_id", NULL, 0, 0, &id);
        if (rc) return rc;
        c->eos_ids[c->n_eos++] = id;
    }
    return 0;
}

static int parse_nemotron_h(srp_config *c, const reader *r) {
    int rc = 0, err = 0;
    double eps, dt_min;
    const char *s;
    /* Defaults are NemotronHConfig's, as transformers applies them to missing keys. */
    if (!rc) rc = get_int(r, "vocab_size", NULL, 131072, 1, &c->vocab_size);
    if (!rc) rc = get_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = parse_pattern(c, r);
    if (!rc) rc = get_float(r, "layer_norm_epsilon", NULL, 1e-5, &eps);
    if (!rc) rc = get_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = get_int(r, "mamba_num_heads", NULL, 128, 1, &c->ssm_heads);
    if (!rc) rc = get_int(r, "mamba_head_dim", NULL, 64, 1, &c->ssm_head_dim);
    if (!rc) rc = get_int(r, "ssm_state_size", NULL, 128, 1, &c->ssm_state);
    if (!rc) rc = get_int(r, "n_groups", "mamba_n_groups", 8, 1, &c->ssm_groups);
    if (!rc) rc = get_int(r, "conv_kernel", "mamba_d_conv", 4, 1, &c->conv_kernel);
    if (!rc) rc = get_int(r, "chunk_size", "mamba_chunk_size", 128, 1, &c->chunk_size);
    if (!rc) rc = get_bool(r, "use_conv_bias", "mamba_conv_bias", 1, &c->conv_bias);
    if (!rc) rc = get_bool(r, "use_bias", NULL, 0, &c->mamba_proj_bias);
    /* transformers' NemotronH mixer clamps softplus(dt + dt_bias) to [time_step_min, inf) and
     * ignores time_step_limit; serpent follows its reference in prefill and decode alike. */
    if (!rc) rc = get_float(r, "time_step_min", "mamba_dt_min", 0.001, &dt_min);
    if (!rc) rc = get_int(r, "num_attention_heads", NULL, 32, 1, &c->attn_heads);
    if (!rc) rc = get_int(r, "num_key_value_heads", NULL, c->attn_heads, 1, &c->attn_kv_heads);
    if (!rc) {
        int def_hd = c->d_model / c->attn_heads;
        rc = get_int(r, "head_dim", "attention_head_dim", def_hd > 0 ? def_hd : 1, 1,
                     &c->attn_head_dim);
    }
    if (!rc) rc = get_int(r, "intermediate_size", NULL, 21504, 1, &c->mlp_hidden);
    if (!rc) rc = get_bool(r, "mlp_bias", NULL, 0, &c->mlp_bias);
    if (rc) return rc;
    s = get_string(r, "mlp_hidden_act", NULL, "relu2", &err);
    if (err) return err;
    rc = parse_act(r, "mlp_hidden_act", s, &c->mlp_act);
    if (rc) return rc;
    s = get_string(r, "mamba_hidden_act", NULL, "silu", &err);
    if (err) return err;
    if (strcmp(s, "silu") && strcmp(s, "swish"))
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"mamba_hidden_act\": only silu is supported, not \"%s\"",
                           r->file, s);
    c->norm_eps = (float)eps;
    c->dt_min = (float)dt_min;
    c->dt_max = INFINITY;
    c->d_inner = c->ssm_heads * c->ssm_head_dim;
    if (c->ssm_heads % c->ssm_groups)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: mamba_num_heads (%d) is not a multiple of n_groups (%d)", r->file,
                           c->ssm_heads, c->ssm_groups);
    /* Zamba2RMSNormGated with group_size = d_inner / n_groups */
    c->gated_norm_group = c->d_inner / c->ssm_groups;
    return 0;
}

static int parse_mamba2(srp_config *c, const reader *r) {
    int rc = 0, err = 0;
    double eps, expand, lo = 0.0, hi = INFINITY;
    /* Defaults are Mamba2Config's. */
    if (!rc) rc = get_int(r, "vocab_size", NULL, 32768, 1, &c->vocab_size);
    if (!rc) rc = get_int(r, "hidden_size", "d_model", 4096, 1, &c->d_model);
    if (!rc) rc = get_int(r, "num_hidden_layers", "n_layer", 64, 1, &c->n_layers);
    if (!rc) rc = get_float(r, "layer_norm_epsilon", NULL, 1e-5, &eps);
    if (!rc) rc = get_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = get_int(r, "num_heads", NULL, 128, 1, &c->ssm_heads);
    if (!rc) rc = get_int(r, "head_dim", NULL, 64, 1, &c->ssm_head_dim);
    if (!rc) rc = get_int(r, "state_size", NULL, 128, 1, &c->ssm_state);
    if (!rc) rc = get_float(r, "expand", NULL, 2, &expand);
    if (!rc) rc = get_int(r, "n_groups", NULL, 8, 1, &c->ssm_groups);
    if (!rc) rc = get_int(r, "conv_kernel", NULL, 4, 1, &c->conv_kernel);
    if (!rc) rc = get_int(r, "chunk_size", NULL, 256, 1, &c->chunk_size);
    if (!rc) rc = get_bool(r, "use_conv_bias", NULL, 1, &c->conv_bias);
    if (!rc) rc = get_bool(r, "use_bias", NULL, 0, &c->mamba_proj_bias);
    if (!rc) rc = get_range(r, "time_step_limit", NULL, &lo, &hi);
    if (rc) return rc;
    if (c->n_layers > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    for (int i = 0; i < c->n_layers; i++) c->layer_kind[i] = SRP_LAYER_MAMBA2;
    const char *s = get_string(r, "hidden_act", NULL, "silu", &err);
    if (err) return err;
    if (strcmp(s, "silu") && strcmp(s, "swish"))
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"hidden_act\": only silu is supported, not \"%s\"", r->file,
                           s);
    c->norm_eps = (float)eps;
    c->dt_min = (float)lo;
    c->dt_max = (float)hi;
    c->d_inner = c->ssm_heads * c->ssm_head_dim;
    int d_inner_expand = (int)(expand * c->d_model);
    if (d_inner_expand != c->d_inner)
        return srp_err_set(
            r->e, SRP_EFORMAT,
            "%s: num_heads * head_dim (%d * %d) must equal expand * hidden_size (%d)", r->file,
            c->ssm_heads, c->ssm_head_dim, d_inner_expand);
    if (c->ssm_heads % c->ssm_groups)
        return srp_err_set(r->e, SRP_EFORMAT,
                           "%s: num_heads (%d) is not a multiple of n_groups (%d)", r->file,
                           c->ssm_heads, c->ssm_groups);
    /* transformers' Mamba2 mixer normalises the gated output over all of d_inner at once
     * (MambaRMSNormGated has no groups), whatever n_groups is. */
    c->gated_norm_group = c->d_inner;
    return 0;
}

static int config_from_json(srp_config *cfg, const cJSON *root, const char *name, srp_err *e) {
    memset(cfg, 0, sizeof *cfg);
    reader r = { root, name, e };
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        return srp_err_set(e, SRP_EFORMAT, "%s: expected a JSON object", name);
    }
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *arch = NULL;
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        arch = cJSON_GetArrayItem(archs, 0)->valuestring;
    else if (cJSON_IsString(mt))
        arch = mt->valuestring;
    if (!arch) {
        return srp_err_set(e, SRP_EFORMAT,
                           "%s: missing field \"architectures\" (or \"model_type\")", name);
    }
    snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", arch);
    if (!strcmp(arch, "NemotronHForCausalLM") || !strcmp(arch, "nemotron_h")) {
        cfg->arch = SRP_ARCH_NEMOTRON_H;
        rc = parse_nemotron_h(cfg, &r);
    } else if (!strcmp(arch, "Mamba2ForCausalLM") || !strcmp(arch, "mamba2")) {
        cfg->arch = SRP_ARCH_MAMBA2;
        rc = parse_mamba2(cfg, &r);
    } else {
        rc = srp_err_set(e, SRP_EUNSUPPORTED,
                         "%s: field \"architectures\": \"%s\" is not supported (supported: "
                         "NemotronHForCausalLM, Mamba2ForCausalLM)",
                         name, arch);
    }
    if (!rc) rc = parse_ids(cfg, &r);
    if (!rc) {
        int gn = cfg->ssm_groups * cfg->ssm_state;
        cfg->conv_dim = cfg->d_inner + 2 * gn;
        cfg->d_in_proj = 2 * cfg->d_inner + 2 * gn + cfg->ssm_heads;
        if (srp_config_count(cfg, SRP_LAYER_ATTENTION) && cfg->attn_heads % cfg->attn_kv_heads)
            rc = srp_err_set(e, SRP_EFORMAT,
                             "%s: num_attention_heads (%d) is not a multiple of "
                             "num_key_value_heads (%d)",
                             name, cfg->attn_heads, cfg->attn_kv_heads);
        if (!(cfg->norm_eps >= 0))
            rc = srp_err_set(e, SRP_EFORMAT, "%s: field \"layer_norm_epsilon\" must be >= 0", name);
        if (!(cfg->dt_min <= cfg->dt_max))
            rc = srp_err_set(e, SRP_EFORMAT, "%s: the time-step limit is empty", name);
    }
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

int srp_config_count(const srp_config *cfg, srp_layer_kind kind) {
    int n = 0;
    for (int i = 0; i < cfg->n_layers; i++) n += cfg->layer_kind[i] == kind;
    return n;
}

const char *srp_layer_kind_name(srp_layer_kind kind) {
    switch (kind) {
    case SRP_LAYER_MAMBA2:
        return "mamba2";
    case SRP_LAYER_ATTENTION:
        return "attention";
    case SRP_LAYER_MLP:
        return "mlp";
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
