/* The architectures serpent serves (private to engine/). Each one, in its own engine/arch_*.c,
 * turns config.json into an srp_config (which blocks, which mixers, their parameters) and says
 * which checkpoint tensors are the weights of each block. The layer stack itself
 * (engine/forward.c) knows no architecture. */
#ifndef SRP_ARCH_H
#define SRP_ARCH_H

#include "config_read.h"
#include "model_load.h"

typedef struct srp_arch_desc {
    srp_arch arch;
    /* "architectures" entries and model_type values that select it */
    const char *names[4];
    /* Fills the fields of c that config.json sets (c is zeroed, with the multipliers at 1). */
    int (*parse)(srp_config *c, const srp_cfg_reader *r);
    /* Loads the weights of every block (and the embedding and head) through L. */
    int (*load)(srp_loader *L);
} srp_arch_desc;

/* The architecture named by `name`, or NULL. */
const srp_arch_desc *srp_arch_find(const char *name);
const srp_arch_desc *srp_arch_of(srp_arch arch);
/* "NemotronHForCausalLM, Mamba2ForCausalLM, ..." for messages. */
const char *srp_arch_supported_list(void);

extern const srp_arch_desc srp_arch_nemotron_h, srp_arch_mamba2;
extern const srp_arch_desc srp_arch_bamba, srp_arch_falcon_h1, srp_arch_zamba2, srp_arch_llama;
extern const srp_arch_desc srp_arch_mamba1, srp_arch_falcon_mamba;
extern const srp_arch_desc srp_arch_granite, srp_arch_jamba;

#endif
