/* The table of architectures. A new family adds its engine/arch_<family>.c and a line here. */
#include "arch.h"

#include <stdio.h>
#include <string.h>

static const srp_arch_desc *const archs[] = {
    &srp_arch_nemotron_h, &srp_arch_mamba2, &srp_arch_bamba,  &srp_arch_falcon_h1,
    &srp_arch_zamba2,     &srp_arch_llama,  &srp_arch_mamba1, &srp_arch_falcon_mamba,
    &srp_arch_granite,    &srp_arch_jamba,
};

#define N_ARCHS (sizeof archs / sizeof archs[0])

const srp_arch_desc *srp_arch_find(const char *name) {
    for (size_t i = 0; i < N_ARCHS; i++)
        for (int k = 0; k < 4 && archs[i]->names[k]; k++)
            if (!strcmp(name, archs[i]->names[k])) return archs[i];
    return NULL;
}

const srp_arch_desc *srp_arch_of(srp_arch arch) {
    for (size_t i = 0; i < N_ARCHS; i++)
        if (archs[i]->arch == arch) return archs[i];
    return NULL;
}

const char *srp_arch_supported_list(void) {
    static char list[1024];
    if (!list[0]) {
        size_t o = 0;
        for (size_t i = 0; i < N_ARCHS && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "",
                                  archs[i]->names[0]);
    }
    return list;
}
