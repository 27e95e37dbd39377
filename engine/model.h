/* A loaded model: its config and its weights in backend memory (llama2.c's Config +
 * TransformerWeights). The checkpoint stays mapped while weights may point into it. */
#ifndef SRP_MODEL_H
#define SRP_MODEL_H

#include "backend.h"
#include "config.h"
#include "safetensors.h"

typedef struct srp_mamba_weights {
    srp_weight in_proj, in_proj_bias, conv, conv_bias, dt_bias, A_log, D, norm, out_proj,
        out_proj_bias;
    int state_index; /* which srp_mamba_state of the slot pool */
} srp_mamba_weights;

typedef struct srp_attn_weights {
    srp_weight q, k, v, o;
    int kv_index; /* which srp_kv_layer of the KV cache */
} srp_attn_weights;

typedef struct srp_mlp_weights {
    srp_weight up, up_bias, down, down_bias;
} srp_mlp_weights;

typedef struct srp_layer {
    srp_layer_kind kind;
    srp_weight norm;
    srp_mamba_weights mamba;
    srp_attn_weights attn;
    srp_mlp_weights mlp;
} srp_layer;

typedef struct srp_model {
    srp_config cfg;
    srp_backend *be; /* not owned */
    srp_ckpt *ckpt;
    srp_weight embed, norm_f, lm_head;
    int lm_head_is_embed;
    srp_layer *layers;
    int n_mamba, n_attn;
} srp_model;

/* Called while weights load: done and total in bytes. */
typedef void (*srp_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Loads DIR (config.json + safetensors) onto be. Errors name the file and the tensor or field. */
int srp_model_load(srp_model *m, const char *dir, srp_backend *be, srp_progress_fn progress,
                   void *user, srp_err *e);
void srp_model_free(srp_model *m);

/* A model of DIR/config.json's shape with random weights (for benchmarks; no checkpoint read). */
int srp_model_random(srp_model *m, const char *dir, srp_backend *be, uint64_t seed, srp_err *e);

#endif
