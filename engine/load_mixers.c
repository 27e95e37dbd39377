/* Loading the standard mixers, the embedding and the head under transformers' tensor names. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model_load.h"

static srp_state_desc mamba2_state(const srp_mamba2_config *c) {
    return (srp_state_desc){ c->conv_dim, c->conv_kernel - 1 > 0 ? c->conv_kernel - 1 : 1,
                             (int64_t)c->heads * c->head_dim * c->state };
}

int srp_load_mamba2_mixer(srp_loader *L, srp_block *bl, const char *prefix_in) {
    char prefix[256]; /* prefix_in may be a srp_lname buffer, which later calls reuse */
    snprintf(prefix, sizeof prefix, "%s", prefix_in);
    const srp_config *cfg = &srp_loader_model(L)->cfg;
    const srp_mamba2_config *c = &cfg->mamba2;
    const int64_t d = cfg->d_model, Di = c->d_inner, GN = (int64_t)c->groups * c->state;
    srp_mamba2_weights *w = srp_load_alloc(L, sizeof *w);
    if (!w) return SRP_ENOMEM;
    const char *in = srp_lname(L, "%sin_proj.weight", prefix);
    /* in_proj rows are [z | x | B | C | dt]; µP multipliers of each part fold into its rows */
    const srp_load_part parts[5] = {
        { in, c->d_in_proj, 0, Di, c->part_mult[0] },
        { in, c->d_in_proj, Di, Di, c->part_mult[1] },
        { in, c->d_in_proj, 2 * Di, GN, c->part_mult[2] },
        { in, c->d_in_proj, 2 * Di + GN, GN, c->part_mult[3] },
        { in, c->d_in_proj, 2 * Di + 2 * GN, c->heads, c->part_mult[4] },
    };
    int scaled = 0;
    for (int i = 0; i < 5; i++) scaled |= c->part_mult[i] != 1.0f;
    const srp_load_part whole = { in, c->d_in_proj, 0, c->d_in_proj, 1.0f };
    int rc = scaled ? srp_load_concat(L, &w->in_proj, d, SRP_INIT_MATRIX, 5, parts)
                    : srp_load_concat(L, &w->in_proj, d, SRP_INIT_MATRIX, 1, &whole);
    if (!rc && c->proj_bias) {
        srp_load_part bparts[5];
        memcpy(bparts, parts, sizeof bparts);
        const char *bn = srp_lname(L, "%sin_proj.bias", prefix);
        for (int i = 0; i < 5; i++) bparts[i].name = bn;
        rc = srp_load_concat(L, &w->in_proj_bias, 1, SRP_INIT_BIAS, 5, bparts);
    }
    if (!rc)
        rc = srp_load(L, &w->conv, c->conv_dim, c->conv_kernel, SRP_INIT_CONV,
                      srp_lname(L, "%sconv1d.weight", prefix));
    if (!rc && c->conv_bias)
        rc = srp_load(L, &w->conv_bias, 1, c->conv_dim, SRP_INIT_BIAS,
                      srp_lname(L, "%sconv1d.bias", prefix));
    if (!rc)
        rc = srp_load(L, &w->dt_bias, 1, c->heads, SRP_INIT_DT_BIAS,
                      srp_lname(L, "%sdt_bias", prefix));
    if (!rc)
        rc = srp_load(L, &w->A_log, 1, c->heads, SRP_INIT_A_LOG, srp_lname(L, "%sA_log", prefix));
    if (!rc) rc = srp_load(L, &w->D, 1, c->heads, SRP_INIT_D, srp_lname(L, "%sD", prefix));
    if (!rc && c->gate_norm != SRP_GATE_NO_NORM)
        rc = srp_load(L, &w->norm, 1, Di, SRP_INIT_NORM, srp_lname(L, "%snorm.weight", prefix));
    if (!rc)
        rc = srp_load(L, &w->out_proj, d, Di, SRP_INIT_MATRIX,
                      srp_lname(L, "%sout_proj.weight", prefix));
    if (!rc && c->out_bias) {
        const srp_load_part b = { srp_lname(L, "%sout_proj.bias", prefix), d, 0, d,
                                  c->out_mult * cfg->resid_mult };
        rc = srp_load_concat(L, &w->out_proj_bias, 1, SRP_INIT_BIAS, 1, &b);
    }
    if (rc) return rc;
    const srp_state_desc st = mamba2_state(c);
    return srp_block_add_mixer(L, bl, SRP_MIXER_MAMBA2, w, &st, 0) ? 0 : SRP_EINVAL;
}

/* RoPE frequencies as transformers computes them (modeling_rope_utils.py): default theta^(-2i/d),
 * linear divides them by the factor, llama3 interpolates by wavelength band. The dynamic kind
 * starts from the default ones; the backend grows its base with the sequence. */
static void rope_inv_freq(const srp_rope_config *r, float *out) {
    const int half = r->dim / 2;
    for (int i = 0; i < half; i++) {
        double f = pow((double)r->theta, -2.0 * i / r->dim);
        if (r->kind == SRP_ROPE_LINEAR) f /= r->factor;
        if (r->kind == SRP_ROPE_LLAMA3) {
            const double low_wl = r->original_max_positions / r->low_freq_factor;
            const double high_wl = r->original_max_positions / r->high_freq_factor;
            const double wl = 2.0 * M_PI / f;
            if (wl > low_wl) {
                f /= r->factor;
            } else if (wl >= high_wl) {
                const double smooth = (r->original_max_positions / wl - r->low_freq_factor) /
                                      (r->high_freq_factor - r->low_freq_factor);
                f = (1.0 - smooth) * f / r->factor + smooth * f;
            }
        }
        out[i] = (float)f;
    }
}

srp_attn_weights *srp_load_attn_weights(srp_loader *L, const char *prefix_in) {
    char prefix[256]; /* prefix_in may be a srp_lname buffer, which later calls reuse */
    snprintf(prefix, sizeof prefix, "%s", prefix_in);
    const srp_config *cfg = &srp_loader_model(L)->cfg;
    const srp_attn_config *c = &cfg->attn;
    const int64_t d = cfg->d_model, qd = (int64_t)c->heads * c->head_dim,
                  kvd = (int64_t)c->kv_heads * c->head_dim, d_in = c->d_in ? c->d_in : d;
    srp_attn_weights *w = srp_load_alloc(L, sizeof *w);
    if (!w) return NULL;
    const srp_load_part qkv[3] = {
        { srp_lname(L, "%sq_proj.weight", prefix), qd, 0, qd, 1.0f },
        { srp_lname(L, "%sk_proj.weight", prefix), kvd, 0, kvd, c->key_mult },
        { srp_lname(L, "%sv_proj.weight", prefix), kvd, 0, kvd, 1.0f },
    };
    int rc = srp_load_concat(L, &w->qkv, d_in, SRP_INIT_MATRIX, 3, qkv);
    if (!rc && c->qkv_bias) {
        /* the input multiplier scales x only: the gemm adds the bias after alpha */
        const srp_load_part b[3] = {
            { srp_lname(L, "%sq_proj.bias", prefix), qd, 0, qd, 1.0f },
            { srp_lname(L, "%sk_proj.bias", prefix), kvd, 0, kvd, c->key_mult },
            { srp_lname(L, "%sv_proj.bias", prefix), kvd, 0, kvd, 1.0f },
        };
        rc = srp_load_concat(L, &w->qkv_bias, 1, SRP_INIT_BIAS, 3, b);
    }
    if (!rc)
        rc = srp_load(L, &w->o, d, qd, SRP_INIT_MATRIX, srp_lname(L, "%so_proj.weight", prefix));
    if (!rc && c->o_bias) {
        const srp_load_part b = { srp_lname(L, "%so_proj.bias", prefix), d, 0, d,
                                  c->out_mult * cfg->resid_mult };
        rc = srp_load_concat(L, &w->o_bias, 1, SRP_INIT_BIAS, 1, &b);
    }
    if (!rc && c->rope.kind != SRP_ROPE_NONE) {
        float f[512];
        if (c->rope.dim / 2 > 512 || c->rope.dim <= 0) {
            srp_err_set(srp_loader_err(L), SRP_EUNSUPPORTED,
                        "%s: %d rotary channels per head (at most 1024)", srp_loader_dir(L),
                        c->rope.dim);
            return NULL;
        }
        rope_inv_freq(&c->rope, f);
        rc = srp_load_host_vector(L, &w->inv_freq, f, c->rope.dim / 2);
    }
    return rc ? NULL : w;
}

int srp_load_attn_mixer(srp_loader *L, srp_block *bl, const char *prefix) {
    srp_attn_weights *w = srp_load_attn_weights(L, prefix);
    if (!w) return srp_loader_failed(L);
    return srp_block_add_mixer(L, bl, SRP_MIXER_ATTENTION, w, NULL, 1) ? 0 : SRP_EINVAL;
}

/* "x.weight" -> "x.bias" under prefix. */
static const char *bias_of(srp_loader *L, const char *prefix, const char *weight) {
    const size_t n = strlen(weight);
    const size_t stem = n > 7 && !strcmp(weight + n - 7, ".weight") ? n - 7 : n;
    return srp_lname(L, "%s%.*s.bias", prefix, (int)stem, weight);
}

srp_mlp_weights *srp_load_mlp_weights(srp_loader *L, const char *prefix_in,
                                      const srp_mlp_names *n) {
    char prefix[256]; /* prefix_in may be a srp_lname buffer, which later calls reuse */
    snprintf(prefix, sizeof prefix, "%s", prefix_in);
    const srp_config *cfg = &srp_loader_model(L)->cfg;
    const srp_mlp_config *c = &cfg->mlp;
    const int64_t d = cfg->d_model, H = c->hidden;
    static const srp_mlp_names defaults = { "gate_proj.weight", "up_proj.weight",
                                            "down_proj.weight", NULL };
    if (!n) n = &defaults;
    srp_mlp_weights *w = srp_load_alloc(L, sizeof *w);
    if (!w) return NULL;
    int rc;
    /* [gate | up] rows with gate_mult folded into the gate's (its bias too: transformers
     * multiplies gate(x), bias included) */
    srp_load_part p[2];
    int np = 1;
    if (!c->gated) {
        p[0] = (srp_load_part){ srp_lname(L, "%s%s", prefix, n->up), H, 0, H, 1.0f };
    } else if (n->gate_up) {
        const char *gu = srp_lname(L, "%s%s", prefix, n->gate_up);
        p[0] = (srp_load_part){ gu, 2 * H, 0, H, c->gate_mult };
        p[1] = (srp_load_part){ gu, 2 * H, H, H, 1.0f };
        np = 2;
    } else {
        p[0] = (srp_load_part){ srp_lname(L, "%s%s", prefix, n->gate), H, 0, H, c->gate_mult };
        p[1] = (srp_load_part){ srp_lname(L, "%s%s", prefix, n->up), H, 0, H, 1.0f };
        np = 2;
    }
    rc = srp_load_concat(L, &w->up, d, SRP_INIT_MATRIX, np, p);
    if (!rc && c->bias) {
        srp_load_part b[2];
        const char *wn[2] = { !c->gated    ? n->up
                              : n->gate_up ? n->gate_up
                                           : n->gate,
                              n->gate_up ? n->gate_up : n->up };
        for (int i = 0; i < np; i++) {
            b[i] = p[i];
            b[i].name = bias_of(L, prefix, wn[i]);
        }
        rc = srp_load_concat(L, &w->up_bias, 1, SRP_INIT_BIAS, np, b);
    }
    if (!rc)
        rc = srp_load(L, &w->down, d, H, SRP_INIT_MATRIX, srp_lname(L, "%s%s", prefix, n->down));
    if (!rc && c->bias) {
        const srp_load_part b = { bias_of(L, prefix, n->down), d, 0, d,
                                  c->out_mult * cfg->resid_mult };
        rc = srp_load_concat(L, &w->down_bias, 1, SRP_INIT_BIAS, 1, &b);
    }
    return rc ? NULL : w;
}

int srp_load_mlp_mixer(srp_loader *L, srp_block *bl, const char *prefix, const srp_mlp_names *n) {
    srp_mlp_weights *w = srp_load_mlp_weights(L, prefix, n);
    if (!w) return srp_loader_failed(L);
    return srp_block_add_mixer(L, bl, SRP_MIXER_MLP, w, NULL, 0) ? 0 : SRP_EINVAL;
}

int srp_load_embedding(srp_loader *L) {
    static const char *const names[] = { "embeddings.weight", "embedding.weight",
                                         "embed_tokens.weight" };
    srp_model *m = srp_loader_model(L);
    const srp_config *c = &m->cfg;
    for (int i = 0; i < 3; i++)
        if (srp_load_has(L, names[i]) || (i == 0 && !m->ckpt))
            return srp_load(L, &m->embed, c->vocab_size, c->d_model, SRP_INIT_EMBED, names[i]);
    return srp_err_set(srp_loader_err(L), SRP_EFORMAT, "%s: missing tensor %s", srp_loader_dir(L),
                       srp_lname(L, "(backbone. or model.)embeddings.weight"));
}

int srp_load_head(srp_loader *L, const char *const *norm_names, int tie) {
    srp_model *m = srp_loader_model(L);
    const srp_config *c = &m->cfg;
    const char *norm = norm_names[0];
    for (int i = 0; norm_names[i]; i++)
        if (srp_load_has(L, norm_names[i])) {
            norm = norm_names[i];
            break;
        }
    int rc = srp_load(L, &m->norm_f, 1, c->d_model, SRP_INIT_NORM, norm);
    if (rc) return rc;
    if (tie) {
        m->lm_head = m->embed;
        m->lm_head.owned = 0;
        m->lm_head_is_embed = 1;
        return 0;
    }
    return srp_load(L, &m->lm_head, c->vocab_size, c->d_model, SRP_INIT_MATRIX, "lm_head.weight");
}
