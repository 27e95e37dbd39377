/* Helpers shared by hf_load.c and hf_load_parts.c (private to tokenizer/). */
#ifndef SRP_HF_LOAD_PARTS_H
#define SRP_HF_LOAD_PARTS_H

#include <cjson/cJSON.h>

#include "hf.h"

typedef struct hf_ctx {
    const char *file;
    srp_err *e;
} hf_ctx;

/* Writes `file: field "field": why` into e and returns SRP_EFORMAT. */
int hf_bad(srp_err *e, const char *file, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const cJSON *hf_get(const cJSON *obj, const char *key);
int hf_get_bool(const hf_ctx *c, const cJSON *obj, const char *key, const char *field, int dflt,
                int *out);
int hf_get_int(const hf_ctx *c, const cJSON *obj, const char *key, const char *field, int dflt,
               int lo, int hi, int *out);
int hf_get_pattern(const hf_ctx *c, const cJSON *obj, const char *field, hf_pattern *pat);
void hf_pattern_free(hf_pattern *p);
/* normalizer, pre_tokenizer, decoder and post_processor. */
int hf_load_pipeline(const hf_ctx *c, const cJSON *root, srp_hf *h);

#endif
