/* Mamba2ForCausalLM (transformers' modeling_mamba2.py): every layer one Mamba-2 mixer. */
#include <math.h>
#include <string.h>

#include "arch.h"

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_mamba2_config *m = &c->mamba2;
    int rc = 0, err = 0;
    double lo = 0.0, hi = INFINITY, expand;
    /* Defaults are Mamba2Config's. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 32768, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", "d_model", 4096, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", "n_layer", 64, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "layer_norm_epsilon", NULL, 1e-5, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "num_heads", NULL, 128, 1, &m->heads);
    if (!rc) rc = srp_cfg_int(r, "head_dim", NULL, 64, 1, &m->head_dim);
    if (!rc) rc = srp_cfg_int(r, "state_size", NULL, 128, 1, &m->state);
    if (!rc) rc = srp_cfg_float(r, "expand", NULL, 2, &expand);
    if (!rc) rc = srp_cfg_int(r, "n_groups", NULL, 8, 1, &m->groups);
    if (!rc) rc = srp_cfg_int(r, "conv_kernel", NULL, 4, 1, &m->conv_kernel);
    if (!rc) rc = srp_cfg_int(r, "chunk_size", NULL, 256, 1, &m->chunk_size);
    if (!rc) rc = srp_cfg_bool(r, "use_conv_bias", NULL, 1, &m->conv_bias);
    if (!rc) rc = srp_cfg_bool(r, "use_bias", NULL, 0, &m->proj_bias);
    if (!rc) rc = srp_cfg_range(r, "time_step_limit", NULL, &lo, &hi);
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
    m->dt_min = (float)lo;
    m->dt_max = (float)hi;
    int d_inner_expand = (int)(expand * c->d_model);
    if (d_inner_expand != m->heads * m->head_dim)
        return srp_err_set(
            r->e, SRP_EFORMAT,
            "%s: num_heads * head_dim (%d * %d) must equal expand * hidden_size (%d)", r->file,
            m->heads, m->head_dim, d_inner_expand);
    rc = srp_cfg_mamba2_derive(m, r);
    if (rc) return rc;
    /* transformers' Mamba2 mixer normalises the gated output over all of d_inner at once
     * (MambaRMSNormGated has no groups), whatever n_groups is. */
    m->norm_group = m->d_inner;
    for (int i = 0; i < c->n_layers && !rc; i++)
        rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_MAMBA2, 0);
    return rc;
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        srp_block *bl = srp_load_block(L, b, srp_lname(L, "layers.%d.norm.weight", b), c->d_model);
        rc = bl ? srp_load_mamba2_mixer(L, bl, srp_lname(L, "layers.%d.mixer.", b))
                : srp_loader_err(L)->code;
    }
    static const char *const norms[] = { "norm_f.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_mamba2 = {
    SRP_ARCH_MAMBA2, { "Mamba2ForCausalLM", "mamba2" }, parse, load
};
