/* Loading weights into a model (private to engine/): the architecture files (arch_*.c) name the
 * checkpoint tensors of each block and hand them to these functions, which check shapes and
 * dtypes, fuse tensors along rows where the layer stack wants one matrix, fold constant
 * multipliers into rows, and upload through the backend. With random weights (benchmarks) the
 * same calls draw values instead of reading the checkpoint, so every architecture gets a random
 * mode for free. */
#ifndef SRP_MODEL_LOAD_H
#define SRP_MODEL_LOAD_H

#include <stdint.h>

#include "model.h"

/* How a tensor is drawn in random mode (and whether the backend sees it as a matrix). */
typedef enum {
    SRP_INIT_MATRIX, /* a GEMM operand: uniform with variance 1/cols */
    SRP_INIT_EMBED,  /* the embedding table: uniform in [-1, 1] (a matrix too) */
    SRP_INIT_NORM,   /* near 1 */
    SRP_INIT_BIAS,   /* near 0 */
    SRP_INIT_CONV,   /* conv taps: uniform in [-0.5, 0.5] */
    SRP_INIT_A_LOG,  /* A from -1 to -16 */
    SRP_INIT_DT_BIAS,
    SRP_INIT_D,
} srp_init;

typedef struct srp_loader srp_loader;

/* A formatted tensor name (without the checkpoint's prefix), valid for the next 16 calls. */
const char *srp_lname(srp_loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether the checkpoint holds `name` (prefixed). Random mode: 0. */
int srp_load_has(srp_loader *L, const char *name);

/* Loads tensor `name` as a rows x cols weight. Its shape must be [rows, cols] up to dimensions
 * of size 1 (conv1d's [C, 1, K], vectors' [n]). */
int srp_load(srp_loader *L, srp_weight *out, int64_t rows, int64_t cols, srp_init init,
             const char *name);
/* Like srp_load, but an absent tensor (and every tensor in random mode) leaves out empty. */
int srp_load_opt(srp_loader *L, srp_weight *out, int64_t rows, int64_t cols, srp_init init,
                 const char *name);

/* A 3-D tensor [n, rows, cols] (stacked experts) as one [n * rows, cols] weight; a 2-D tensor
 * of that shape also does. */
int srp_load_stacked(srp_loader *L, srp_weight *out, int64_t n, int64_t rows, int64_t cols,
                     srp_init init, const char *name);

/* Rows [row0, row0 + rows) of tensor `name` ([total_rows, cols]), times scale. */
typedef struct srp_load_part {
    const char *name;
    int64_t total_rows, row0, rows;
    float scale;
} srp_load_part;

/* One weight made of parts stacked along rows (fused q/k/v, [gate | up], a fused tensor split
 * and scaled). */
int srp_load_concat(srp_loader *L, srp_weight *out, int64_t cols, srp_init init, int n,
                    const srp_load_part *parts);

/* A vector computed on the host (RoPE frequencies), uploaded as an fp32 weight of the model. */
int srp_load_host_vector(srp_loader *L, srp_weight *out, const float *values, int64_t n);

/* Zeroed memory owned by the model (weight structs of a block), or NULL with L's error set. */
void *srp_load_alloc(srp_loader *L, size_t bytes);

/* The model being loaded. */
srp_model *srp_loader_model(srp_loader *L);
srp_err *srp_loader_err(srp_loader *L);
/* The error code L's error holds (SRP_EINVAL if none was recorded), for returning after a
 * function that returned NULL. */
int srp_loader_failed(srp_loader *L);
const char *srp_loader_dir(srp_loader *L);

/* Adds a block for config block `b` with its norm loaded from `norm` (rows = width). */
srp_block *srp_load_block(srp_loader *L, int b, const char *norm, int64_t width);

/* The standard mixers under prefix (e.g. "layers.3.mixer."), transformers' names:
 * Mamba-2: in_proj, conv1d, dt_bias, A_log, D, norm, out_proj (+ biases as the config says);
 * attention: q_proj, k_proj, v_proj, o_proj (+ biases), fused into qkv;
 * MLP: up_proj, down_proj, and gate_proj when gated (fused into [gate | up]). The names can be
 * overridden where a family differs (NULL: the default). Each adds the mixer to block bl. */
int srp_load_mamba2_mixer(srp_loader *L, srp_block *bl, const char *prefix);
int srp_load_attn_mixer(srp_loader *L, srp_block *bl, const char *prefix);
typedef struct srp_mlp_names {
    const char *gate, *up, *down; /* e.g. "gate_proj.weight"; gate_up: one fused tensor */
    const char *gate_up;
} srp_mlp_names;
int srp_load_mlp_mixer(srp_loader *L, srp_block *bl, const char *prefix, const srp_mlp_names *n);
/* The weights alone, for mixers that several blocks share (Zamba2): NULL with L's error set.
 * A block adds them with srp_block_add_mixer (or a copy with its own adapters). */
srp_attn_weights *srp_load_attn_weights(srp_loader *L, const char *prefix);
srp_mlp_weights *srp_load_mlp_weights(srp_loader *L, const char *prefix, const srp_mlp_names *n);
/* Mamba-1 (engine/load_mamba1.c): in_proj, conv1d, x_proj, dt_proj (weight and bias), A_log, D,
 * out_proj (+ in/out biases and the conv bias as the config says), and with weighted dt/B/C norms
 * (bcdt_norm 2) the norm weights named in n (NULL: Jamba's dt_layernorm, b_layernorm,
 * c_layernorm). */
typedef struct srp_mamba1_names {
    const char *dt_norm, *b_norm, *c_norm; /* e.g. "dt_layernorm.weight" */
} srp_mamba1_names;
int srp_load_mamba1_mixer(srp_loader *L, srp_block *bl, const char *prefix,
                          const srp_mamba1_names *n);

/* A mixture-of-experts mixer (engine/load_moe.c) of the config's srp_moe_config, every name
 * relative to prefix. The routed experts come from one stacked tensor each ([E, rows, cols]:
 * up_stacked, down_stacked; gated: each expert's rows [gate | up]) or from one tensor per expert
 * (up_expert, down_expert: formats with one %d; gated experts whose gate is a tensor of its own
 * name it in gate_expert, else up_expert holds [gate | up]), whichever the checkpoint has; bias,
 * fc1/fc2 (".weight" and ".bias" appended) and the shared expert's names may be NULL where the
 * family has none. */
typedef struct srp_moe_names {
    const char *router, *bias;
    const char *up_stacked, *down_stacked, *up_expert, *down_expert;
    const char *fc1, *fc2;
    srp_mlp_names shared;
    const char *gate_expert;
} srp_moe_names;
int srp_load_moe_mixer(srp_loader *L, srp_block *bl, const char *prefix, const srp_moe_names *n);

/* Adds a mixer of kind to bl with weights w; with `state` it gets a recurrent-state layer of
 * that shape in the slot pool, with wants_kv a KV-cache layer. */
srp_mixer *srp_block_add_mixer(srp_loader *L, srp_block *bl, srp_mixer_kind kind, const void *w,
                               const srp_state_desc *state, int wants_kv);

/* The embedding ("embeddings.weight", "embedding.weight" or "embed_tokens.weight"), the final
 * norm (`norm_names`, first found) and the head (lm_head.weight, or the embedding when tied). */
int srp_load_embedding(srp_loader *L);
int srp_load_head(srp_loader *L, const char *const *norm_names, int tie);

#endif
