/* Loading a model: the config picks the architecture, whose loader names the tensors of every
 * block (engine/arch_*.c); the same path draws random weights for benchmarks. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "model_load_internal.h"

/* transformers saves "backbone." names; other writers use "model.". */
static const char *find_prefix(const srp_ckpt *ck) {
    static const char *const prefixes[] = { "backbone.", "model." };
    for (int p = 0; p < 2; p++) {
        const char *pre = prefixes[p];
        for (int i = 0; i < srp_ckpt_count(ck); i++)
            if (!strncmp(srp_ckpt_tensor(ck, i)->name, pre, strlen(pre))) return pre;
    }
    return "";
}

static int load(srp_model *m, const char *dir, srp_backend *be, int random, uint64_t seed,
                srp_progress_fn progress, void *user, srp_err *e) {
    memset(m, 0, sizeof *m);
    m->be = be;
    int rc = srp_config_load(&m->cfg, dir, e);
    if (rc) return rc;
    const srp_arch_desc *arch = srp_arch_of(m->cfg.arch);
    if (!random) {
        rc = srp_ckpt_open(dir, &m->ckpt, e);
        if (rc) return rc;
    }
    m->blocks = calloc((size_t)m->cfg.n_blocks, sizeof *m->blocks);
    srp_loader *L = calloc(1, sizeof *L);
    if (!m->blocks || !L) {
        free(L);
        srp_model_free(m);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    L->m = m;
    L->dir = dir;
    L->prefix = m->ckpt ? find_prefix(m->ckpt) : "";
    L->random = random;
    L->seed = seed;
    L->progress = progress;
    L->user = user;
    L->total = m->ckpt ? srp_ckpt_bytes(m->ckpt) : 0;
    L->e = e;
    rc = arch->load(L);
    free(L);
    if (rc) srp_model_free(m);
    return rc;
}

int srp_model_load(srp_model *m, const char *dir, srp_backend *be, srp_progress_fn progress,
                   void *user, srp_err *e) {
    return load(m, dir, be, 0, 0, progress, user, e);
}

int srp_model_random(srp_model *m, const char *dir, srp_backend *be, uint64_t seed, srp_err *e) {
    return load(m, dir, be, 1, seed, NULL, NULL, e);
}

void srp_model_free(srp_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_weights; i++)
        if (m->weights[i]->m.data) m->be->weight_free(m->be, m->weights[i]);
    free(m->weights);
    for (int i = 0; i < m->n_allocs; i++) free(m->allocs[i]);
    free(m->allocs);
    free(m->blocks);
    free(m->state);
    srp_ckpt_close(m->ckpt);
    memset(m, 0, sizeof *m);
}
