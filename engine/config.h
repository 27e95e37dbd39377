/* Model hyper-parameters read from a checkpoint folder's config.json.
 *
 * Every architecture is normalised into one description of a layer stack: a list of pre-norm
 * residual blocks, each holding one or more mixers that read the same normalised input and add
 * their outputs into the residual stream (a Nemotron-H layer is one block; a Llama or Jamba layer
 * is two: attention, then the feed-forward; a Falcon-H1 block holds attention and Mamba-2 side by
 * side). The parameters of each mixer kind are shared by every block that holds one. Which
 * architectures exist and how their config keys map onto this lives in engine/arch_*.c. */
#ifndef SRP_CONFIG_H
#define SRP_CONFIG_H

#include "status.h"

#define SRP_MAX_LAYERS 1024
#define SRP_MAX_BLOCKS (2 * SRP_MAX_LAYERS)
#define SRP_MAX_MIXERS 2
#define SRP_MAX_EOS    8

typedef enum {
    SRP_ARCH_NEMOTRON_H,
    SRP_ARCH_MAMBA2,
    SRP_ARCH_BAMBA,
    SRP_ARCH_FALCON_H1,
    SRP_ARCH_ZAMBA2,
    SRP_ARCH_LLAMA,
    SRP_ARCH_MAMBA1,
    SRP_ARCH_FALCON_MAMBA,
    SRP_ARCH_GRANITE,
    SRP_ARCH_JAMBA,
} srp_arch;

typedef enum {
    SRP_MIXER_MAMBA2,
    SRP_MIXER_ATTENTION,
    SRP_MIXER_MLP,
    SRP_MIXER_MAMBA1,
    SRP_MIXER_MOE,
    SRP_MIXER_COUNT /* not a mixer */
} srp_mixer_kind;

typedef enum { SRP_ACT_RELU2, SRP_ACT_RELU, SRP_ACT_GELU, SRP_ACT_GELU_TANH, SRP_ACT_SILU } srp_act;

/* How the Mamba-2 mixer gates its scan output y with z before out_proj. */
typedef enum {
    SRP_GATE_NORM_AFTER = 0, /* rmsnorm_groups(y * silu(z)) * w: Mamba-2, Nemotron-H, Zamba2 */
    SRP_GATE_NORM_BEFORE,    /* rmsnorm_groups(y) * w * silu(z): Falcon-H1 norm_before_gate */
    SRP_GATE_NO_NORM,        /* y * silu(z): Falcon-H1 without mamba_rms_norm */
} srp_gate_norm;

/* The Mamba-2 mixer (research/model-spec.md section 1). */
typedef struct srp_mamba2_config {
    int heads, head_dim, groups, state, conv_kernel, chunk_size;
    int d_inner;   /* heads * head_dim */
    int conv_dim;  /* d_inner + 2 * groups * state */
    int d_in_proj; /* 2 * d_inner + 2 * groups * state + heads: [z | x B C | dt] */
    int proj_bias, conv_bias;
    int out_bias;         /* out_proj has a bias: proj_bias unless the architecture says */
    float dt_min, dt_max; /* clamp of softplus(dt + dt_bias) */
    int norm_group;       /* elements per group of the gated RMSNorm */
    srp_gate_norm gate_norm;
    float norm_eps; /* of the gated norm: the model's norm_eps unless the architecture says */
    /* µP multipliers (1 when absent): in_mult scales the mixer's input, out_mult its output;
     * part_mult scales the in_proj outputs z, x, B, C and dt (folded into in_proj at load). */
    float in_mult, out_mult;
    float part_mult[5];
} srp_mamba2_config;

/* The Mamba-1 mixer (Gu & Dao 2023; transformers' modeling_mamba.py): in_proj -> [x | z], causal
 * conv1d over x, x_proj -> [dt (dt_rank) | B (state) | C (state)], dt_proj, the selective scan S6
 * with a per-channel A [d_inner, state], gated by silu(z), out_proj. */
typedef struct srp_mamba1_config {
    int d_inner, state, conv_kernel, dt_rank;
    int proj_bias, conv_bias;
    /* RMS norms of dt, B and C right after x_proj (dt before dt_proj): 0 none, 1 without weight
     * (FalconMamba), 2 with learned weights (Jamba); eps is their epsilon. */
    int bcdt_norm;
    float bcdt_eps;
} srp_mamba1_config;

typedef enum {
    SRP_ROPE_NONE,    /* no position embedding */
    SRP_ROPE_DEFAULT, /* theta^(-2i/d) */
    SRP_ROPE_LINEAR,  /* positions / factor */
    SRP_ROPE_DYNAMIC, /* NTK-aware base growing with the sequence past max_positions */
    SRP_ROPE_LLAMA3,  /* Llama 3.1's frequency-band interpolation */
} srp_rope_kind;

/* Rotary position embedding of one attention mixer (transformers' rotate_half form: channel i
 * pairs with i + dim/2 within the rotated part of each head). */
typedef struct srp_rope_config {
    srp_rope_kind kind;
    int dim; /* rotated channels at the start of each head (head_dim * partial_rotary_factor) */
    float theta;
    float factor;                            /* linear, dynamic, llama3 */
    int max_positions;                       /* dynamic: max_position_embeddings */
    int original_max_positions;              /* llama3 */
    float low_freq_factor, high_freq_factor; /* llama3 */
} srp_rope_config;

typedef struct srp_attn_config {
    int heads, kv_heads, head_dim;
    int d_in; /* input width: d_model unless set (Zamba2's shared blocks read 2 * d_model) */
    /* rank of the per-use low-rank adapters added to q, k and v (Zamba2; 0: none) */
    int adapter_rank;
    float scale; /* softmax scale: head_dim^-0.5 unless the config sets it */
    int qkv_bias, o_bias;
    /* multipliers (1 when absent): on the mixer's input (q, k and v alike), on k alone, and on
     * the output */
    float in_mult, key_mult, out_mult;
    srp_rope_config rope;
} srp_attn_config;

/* A feed-forward layer: down(act(up(x))), or down(act(gate(x)) * up(x)) when gated. */
typedef struct srp_mlp_config {
    int hidden;
    srp_act act;
    int gated;
    int bias;
    float gate_mult, out_mult; /* multipliers on the gate projection and on the output */
    int adapter_rank;          /* per-use low-rank adapter on [gate | up] (Zamba2; 0: none) */
    int post_proj;             /* a d_model x d_model projection after down (Zamba2's linear) */
} srp_mlp_config;

/* How a mixture-of-experts router turns its logits into scores. */
typedef enum { SRP_MOE_SOFTMAX, SRP_MOE_SIGMOID } srp_moe_score;

/* A mixture-of-experts feed-forward layer. The router scores n_experts per token (softmax over
 * them all, or a sigmoid each); top_k are chosen by score plus an optional correction bias (which
 * chooses but does not weight), among the experts of the topk_group best of n_group groups (a
 * group's merit: the sum of its two best scores). The chosen experts' outputs are summed with
 * their scores as weights, renormalised to sum 1 when norm_topk, then times scale. Experts are
 * MLPs (down(act(up(x))), or down(act(gate(x)) * up(x)) when gated); with a latent width they
 * work between the projections fc1 (d_model -> latent) and fc2 (latent -> d_model), while the
 * router and the shared expert see x itself. The shared expert (shared_hidden > 0) is an MLP
 * every token goes through. */
typedef struct srp_moe_config {
    int n_experts, top_k;
    srp_moe_score score;
    int n_group, topk_group;
    int norm_topk;
    float scale;
    int hidden; /* each expert's intermediate width */
    srp_act act;
    int gated;
    int latent;    /* 0: the experts work on x */
    int proj_bias; /* fc1 / fc2 have biases */
    int shared_hidden;
    srp_act shared_act;
    int shared_gated, shared_bias;
} srp_moe_config;

/* What a block normalises, and where its mixers' outputs go. Every family but Zamba2 uses the
 * defaults (0): norm(x) in, x += out. Zamba2's shared transformer reads the residual stream
 * concatenated with the step's token embeddings and hands its result, through an auxiliary fp32
 * stream, to the next Mamba block's norm input (not to the residual stream). */
typedef enum {
    SRP_IN_RESID = 0,    /* norm(x) */
    SRP_IN_CONCAT_EMBED, /* norm([x | e]), e the token embeddings: 2 * d_model wide */
    SRP_IN_AUX,          /* norm(aux) */
    SRP_IN_RESID_AUX,    /* norm(x + aux) */
} srp_block_in;

typedef enum {
    SRP_OUT_RESID = 0, /* x += sum of the mixers' outputs */
    SRP_OUT_AUX,       /* aux = sum of the mixers' outputs */
} srp_block_out;

/* One block: out (+)= sum over its mixers of mixer(norm(in)), times resid_mult. */
typedef struct srp_block_desc {
    int layer; /* the config.json layer it belongs to */
    int n_mixers;
    srp_mixer_kind mixer[SRP_MAX_MIXERS];
    srp_block_in in;
    srp_block_out out;
    /* > 0: the block uses shared weights, those of the first block with the same id (Zamba2's
     * shared transformer blocks, used by several layers); 0: its own. */
    int shared_id;
} srp_block_desc;

typedef struct srp_config {
    srp_arch arch;
    char arch_name[64]; /* as written in config.json */
    int vocab_size;
    int d_model;
    int n_layers; /* layers as config.json counts them */
    int n_blocks;
    srp_block_desc blocks[SRP_MAX_BLOCKS];
    float norm_eps;
    int tie_embeddings;
    /* µP multipliers (1 when absent): embeddings, each block's output, and the logits */
    float embed_mult, resid_mult, logits_mult;

    srp_mamba2_config mamba2;
    srp_attn_config attn;
    srp_mlp_config mlp;
    srp_mamba1_config mamba1;
    srp_moe_config moe;

    int bos_id, pad_id; /* -1 when absent */
    int n_eos;
    int eos_ids[SRP_MAX_EOS];

    /* What serpent leaves out of this checkpoint and why (e.g. multi-token-prediction layers),
     * for the commands to print; empty when nothing. */
    char note[256];
} srp_config;

/* Reads DIR/config.json. Errors name the file and the field. */
int srp_config_load(srp_config *cfg, const char *dir, srp_err *e);

/* Parses config text already in memory; `name` is used in messages. */
int srp_config_parse(srp_config *cfg, const char *text, unsigned long len, const char *name,
                     srp_err *e);

/* How many blocks hold a mixer of this kind. */
int srp_config_count(const srp_config *cfg, srp_mixer_kind kind);
/* Columns of block b's norm input (2 * d_model for SRP_IN_CONCAT_EMBED, else d_model). */
int srp_config_norm_width(const srp_config *cfg, int b);
/* Whether some block reads (in) or writes (out) the auxiliary stream, or the embeddings. */
int srp_config_uses_aux(const srp_config *cfg);
int srp_config_uses_embed(const srp_config *cfg);
const char *srp_mixer_kind_name(srp_mixer_kind kind);
const char *srp_act_name(srp_act act);

#endif
