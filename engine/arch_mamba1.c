/* MambaForCausalLM and FalconMambaForCausalLM (transformers' modeling_mamba.py and
 * modeling_falcon_mamba.py): every layer one Mamba-1 mixer. FalconMamba adds weightless RMS
 * norms of dt, B and C after x_proj (eps mixer_rms_eps). */
#include <math.h>
#include <string.h>

#include "arch.h"

/* time_step_rank: a number, or "auto" for ceil(hidden_size / 16) (MambaConfig). */
static int parse_dt_rank(const srp_cfg_reader *r, int d_model, int *out) {
    const char *used = NULL;
    const cJSON *it = srp_cfg_find(r, "time_step_rank", "dt_rank", &used);
    if (!it || (cJSON_IsString(it) && !strcmp(it->valuestring, "auto"))) {
        *out = (d_model + 15) / 16;
        return 0;
    }
    return srp_cfg_int(r, used, NULL, 0, 1, out);
}

static int parse_common(srp_config *c, const srp_cfg_reader *r, int falcon) {
    srp_mamba1_config *m = &c->mamba1;
    int rc = 0, err = 0, resid_fp32 = 1;
    double expand = 2;
    /* Defaults are MambaConfig's / FalconMambaConfig's (transformers 5). */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 50280, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", "d_model", 768, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", "n_layer", 32, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "layer_norm_epsilon", NULL, 1e-5, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 1, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "state_size", "d_state", 16, 1, &m->state);
    if (!rc) rc = srp_cfg_float(r, "expand", NULL, 2, &expand);
    if (!rc) rc = srp_cfg_int(r, "conv_kernel", "d_conv", 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_bool(r, "use_bias", NULL, 0, &m->proj_bias);
    if (!rc) rc = srp_cfg_bool(r, "use_conv_bias", NULL, 1, &m->conv_bias);
    /* the residual stream is fp32 whatever this says */
    if (!rc) rc = srp_cfg_bool(r, "residual_in_fp32", NULL, 1, &resid_fp32);
    if (!rc) rc = parse_dt_rank(r, c->d_model, &m->dt_rank);
    if (!rc && falcon) rc = srp_cfg_floatf(r, "mixer_rms_eps", NULL, 1e-6, &m->bcdt_eps);
    if (rc) return rc;
    if (c->n_layers > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    const char *s = srp_cfg_string(r, "hidden_act", NULL, "silu", &err);
    if (err) return err;
    if (strcmp(s, "silu") && strcmp(s, "swish"))
        return srp_err_set(r->e, SRP_EUNSUPPORTED,
                           "%s: field \"hidden_act\": only silu is supported, not \"%s\"", r->file,
                           s);
    /* intermediate_size = int(expand * hidden_size), as the config recomputes it on load */
    m->d_inner = (int)(expand * c->d_model);
    if (!(expand > 0) || m->d_inner < 1)
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"expand\" must be positive", r->file);
    if (m->conv_kernel > 64)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: field \"conv_kernel\": %d (at most 64)",
                           r->file, m->conv_kernel);
    if (falcon && !(m->bcdt_eps >= 0))
        return srp_err_set(r->e, SRP_EFORMAT, "%s: field \"mixer_rms_eps\" must be >= 0", r->file);
    m->bcdt_norm = falcon ? 1 : 0;
    for (int i = 0; i < c->n_layers && !rc; i++)
        rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_MAMBA1, 0);
    return rc;
}

static int parse_mamba(srp_config *c, const srp_cfg_reader *r) {
    return parse_common(c, r, 0);
}

static int parse_falcon(srp_config *c, const srp_cfg_reader *r) {
    return parse_common(c, r, 1);
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        srp_block *bl = srp_load_block(L, b, srp_lname(L, "layers.%d.norm.weight", b), c->d_model);
        rc = bl ? srp_load_mamba1_mixer(L, bl, srp_lname(L, "layers.%d.mixer.", b), NULL)
                : srp_loader_err(L)->code;
    }
    static const char *const norms[] = { "norm_f.weight", NULL };
    /* a tied checkpoint may still hold lm_head.weight (a copy of the embedding): the config
     * decides, as transformers' tying does */
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_mamba1 = {
    SRP_ARCH_MAMBA1, { "MambaForCausalLM", "mamba" }, parse_mamba, load
};

const srp_arch_desc srp_arch_falcon_mamba = {
    SRP_ARCH_FALCON_MAMBA, { "FalconMambaForCausalLM", "falcon_mamba" }, parse_falcon, load
};
