/* Model hyper-parameters read from a checkpoint folder's config.json.
 *
 * Both architectures are normalised into one description of a layer stack: every layer is a
 * pre-norm residual block holding one mixer (Mamba-2, attention or MLP). */
#ifndef SRP_CONFIG_H
#define SRP_CONFIG_H

#include "status.h"

#define SRP_MAX_LAYERS 1024
#define SRP_MAX_EOS    8

typedef enum { SRP_ARCH_NEMOTRON_H, SRP_ARCH_MAMBA2 } srp_arch;

typedef enum { SRP_LAYER_MAMBA2, SRP_LAYER_ATTENTION, SRP_LAYER_MLP } srp_layer_kind;

typedef enum { SRP_ACT_RELU2, SRP_ACT_RELU, SRP_ACT_GELU, SRP_ACT_GELU_TANH, SRP_ACT_SILU } srp_act;

typedef struct srp_config {
    srp_arch arch;
    char arch_name[64]; /* as written in config.json */
    int vocab_size;
    int d_model;
    int n_layers;
    srp_layer_kind layer_kind[SRP_MAX_LAYERS];
    float norm_eps;
    int tie_embeddings;

    /* Mamba-2 mixer */
    int ssm_heads, ssm_head_dim, ssm_groups, ssm_state, conv_kernel, chunk_size;
    int d_inner;   /* ssm_heads * ssm_head_dim */
    int conv_dim;  /* d_inner + 2 * ssm_groups * ssm_state */
    int d_in_proj; /* 2 * d_inner + 2 * ssm_groups * ssm_state + ssm_heads */
    int mamba_proj_bias, conv_bias;
    float dt_min, dt_max; /* clamp of softplus(dt + dt_bias) */
    int gated_norm_group; /* elements per group of the gated RMSNorm */

    /* attention mixer */
    int attn_heads, attn_kv_heads, attn_head_dim;

    /* MLP mixer */
    int mlp_hidden;
    srp_act mlp_act;
    int mlp_bias;

    int bos_id, pad_id; /* -1 when absent */
    int n_eos;
    int eos_ids[SRP_MAX_EOS];
} srp_config;

/* Reads DIR/config.json. Errors name the file and the field. */
int srp_config_load(srp_config *cfg, const char *dir, srp_err *e);

/* Parses config text already in memory; `name` is used in messages. */
int srp_config_parse(srp_config *cfg, const char *text, unsigned long len, const char *name,
                     srp_err *e);

int srp_config_count(const srp_config *cfg, srp_layer_kind kind);
const char *srp_layer_kind_name(srp_layer_kind kind);
const char *srp_act_name(srp_act act);

#endif
