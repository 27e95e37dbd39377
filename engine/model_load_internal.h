/* The loader's state (private to model.c and model_load.c). */
#ifndef SRP_MODEL_LOAD_INTERNAL_H
#define SRP_MODEL_LOAD_INTERNAL_H

#include "model_load.h"

#define SRP_LOADER_NAMES    16
#define SRP_LOADER_NAME_LEN 256

struct srp_loader {
    srp_model *m;
    const char *dir;
    const char *prefix; /* "backbone." or "model." */
    int random;         /* draw values instead of reading the checkpoint */
    uint64_t seed, tensor;
    srp_progress_fn progress;
    void *user;
    uint64_t done, total;
    char names[SRP_LOADER_NAMES][SRP_LOADER_NAME_LEN];
    int next_name;
    srp_err *e;
};

#endif
