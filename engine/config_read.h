/* Reading config.json fields with messages that name the file and the field (private to
 * engine/: the architecture parsers, engine/arch_*.c, use it). Keys may come in two spellings
 * (transformers' attribute names and the constructor names of published checkpoints): `alt` is
 * tried when `key` is absent or null. A missing field takes `def`; for srp_cfg_int a `def` below
 * `min` makes the field required. */
#ifndef SRP_CONFIG_READ_H
#define SRP_CONFIG_READ_H

#include <cjson/cJSON.h>

#include "config.h"

typedef struct srp_cfg_reader {
    const cJSON *root;
    const char *file;
    srp_err *e;
} srp_cfg_reader;

/* The item under key (or alt), or NULL when absent or null; *used names the key found. */
const cJSON *srp_cfg_find(const srp_cfg_reader *r, const char *key, const char *alt,
                          const char **used);
int srp_cfg_int(const srp_cfg_reader *r, const char *key, const char *alt, int def, int min,
                int *out);
int srp_cfg_float(const srp_cfg_reader *r, const char *key, const char *alt, double def,
                  double *out);
/* Like srp_cfg_float into a float. */
int srp_cfg_floatf(const srp_cfg_reader *r, const char *key, const char *alt, double def,
                   float *out);
int srp_cfg_bool(const srp_cfg_reader *r, const char *key, const char *alt, int def, int *out);
/* A string (owned by the JSON tree) or def; NULL with *err set when the field is not a string. */
const char *srp_cfg_string(const srp_cfg_reader *r, const char *key, const char *alt,
                           const char *def, int *err);
/* An integer >= 1 that may also be the string "auto" (or absent): then auto_value. */
int srp_cfg_int_auto(const srp_cfg_reader *r, const char *key, int auto_value, int *out);
/* A [lo, hi] pair such as time_step_limit; either end may be Infinity. Untouched when absent. */
int srp_cfg_range(const srp_cfg_reader *r, const char *key, const char *alt, double *lo,
                  double *hi);
/* A list of n numbers; 1 when present, 0 when absent (out untouched), negative on error. */
int srp_cfg_floats(const srp_cfg_reader *r, const char *key, int n, float *out);
/* An activation name (relu2, relu, gelu, gelu_new, gelu_pytorch_tanh, silu, swish). */
int srp_cfg_act(const srp_cfg_reader *r, const char *key, const char *def, srp_act *out);

/* Appends a block of one mixer (or two, n_mixers = 2) for config layer `layer`. */
int srp_cfg_add_block(srp_config *c, const srp_cfg_reader *r, int layer, int n_mixers,
                      srp_mixer_kind a, srp_mixer_kind b);

/* Fills the derived sizes of the Mamba-2 mixer (d_inner, conv_dim, d_in_proj) and checks that
 * heads divide into groups. */
int srp_cfg_mamba2_derive(srp_mamba2_config *m, const srp_cfg_reader *r);

/* Reads RoPE settings (rope_theta, rope_scaling / rope_parameters, partial_rotary_factor) for
 * heads of head_dim channels; kind SRP_ROPE_NONE leaves rope off. */
int srp_cfg_rope(const srp_cfg_reader *r, int head_dim, srp_rope_config *rope);

#endif
