#include "model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loader {
    srp_model *m;
    const char *dir;
    const char *prefix; /* "backbone." or "model." */
    srp_progress_fn progress;
    void *user;
    uint64_t done, total;
    srp_err *e;
} loader;

static const char *shape_str(const srp_tensor_info *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* Loads the tensor `name` (prefixed) as a rows x cols weight. A tensor matches when its shape
 * is [rows, cols] up to dimensions of size 1 (conv1d's [C, 1, K], vectors' [n]). */
static int load(loader *L, const char *name, int64_t rows, int64_t cols, srp_weight *out) {
    char full[512];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    const srp_tensor_info *t = srp_ckpt_find(L->m->ckpt, full);
    if (!t && !strncmp(name, "lm_head", 7)) t = srp_ckpt_find(L->m->ckpt, name);
    if (!t) return srp_err_set(L->e, SRP_EFORMAT, "%s: missing tensor %s", L->dir, full);
    char sb[128];
    if (t->dtype != SRP_F32 && t->dtype != SRP_F16 && t->dtype != SRP_BF16)
        return srp_err_set(L->e, SRP_EUNSUPPORTED,
                           "%s: tensor %s has dtype %s; serpent reads BF16, F16 and F32", t->file,
                           t->name, t->dtype_name);
    int64_t dims[SRP_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != 1) dims[nd++] = t->shape[d];
    int ok = t->numel == rows * cols;
    if (ok && rows != 1 && cols != 1) ok = nd == 2 && dims[0] == rows && dims[1] == cols;
    if (!ok)
        return srp_err_set(L->e, SRP_EFORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld]",
                           t->file, t->name, shape_str(t, sb, sizeof sb), (long long)rows,
                           (long long)cols);
    /* 2-D weights other than conv taps are matrices: GEMM operands and the embedding */
    int is_matrix = rows > 1 && strstr(name, "conv1d") == NULL;
    int rc = L->m->be->weight_load(L->m->be, t->data, t->dtype, rows, cols, is_matrix, out, L->e);
    if (rc) return srp_err_prefix(L->e, "%s: tensor %s", t->file, t->name);
    L->done += (uint64_t)t->numel * srp_dtype_size(t->dtype);
    if (L->progress) L->progress(L->user, L->done, L->total);
    return 0;
}

static int loadf(loader *L, srp_weight *out, int64_t rows, int64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int loadf(loader *L, srp_weight *out, int64_t rows, int64_t cols, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return load(L, name, rows, cols, out);
}

static int load_mamba(loader *L, int i, srp_mamba_weights *w) {
    const srp_config *c = &L->m->cfg;
    const char *p = "layers.%d.mixer.";
    char f[128];
    int rc = 0;
#define LOADW(dst, rows, cols, suffix)                 \
    do {                                               \
        snprintf(f, sizeof f, "%s%s", p, suffix);      \
        if (!rc) rc = loadf(L, dst, rows, cols, f, i); \
    } while (0)
    LOADW(&w->in_proj, c->d_in_proj, c->d_model, "in_proj.weight");
    if (c->mamba_proj_bias) LOADW(&w->in_proj_bias, 1, c->d_in_proj, "in_proj.bias");
    LOADW(&w->conv, c->conv_dim, c->conv_kernel, "conv1d.weight");
    if (c->conv_bias) LOADW(&w->conv_bias, 1, c->conv_dim, "conv1d.bias");
    LOADW(&w->dt_bias, 1, c->ssm_heads, "dt_bias");
    LOADW(&w->A_log, 1, c->ssm_heads, "A_log");
    LOADW(&w->D, 1, c->ssm_heads, "D");
    LOADW(&w->norm, 1, c->d_inner, "norm.weight");
    LOADW(&w->out_proj, c->d_model, c->d_inner, "out_proj.weight");
    if (c->mamba_proj_bias) LOADW(&w->out_proj_bias, 1, c->d_model, "out_proj.bias");
#undef LOADW
    return rc;
}

static int load_layer(loader *L, int i) {
    const srp_config *c = &L->m->cfg;
    srp_layer *ly = &L->m->layers[i];
    ly->kind = c->layer_kind[i];
    int rc = loadf(L, &ly->norm, 1, c->d_model, "layers.%d.norm.weight", i);
    if (rc) return rc;
    switch (ly->kind) {
    case SRP_LAYER_MAMBA2:
        ly->mamba.state_index = L->m->n_mamba++;
        return load_mamba(L, i, &ly->mamba);
    case SRP_LAYER_ATTENTION: {
        int64_t qd = (int64_t)c->attn_heads * c->attn_head_dim;
        int64_t kvd = (int64_t)c->attn_kv_heads * c->attn_head_dim;
        ly->attn.kv_index = L->m->n_attn++;
        rc = loadf(L, &ly->attn.q, qd, c->d_model, "layers.%d.mixer.q_proj.weight", i);
        if (!rc) rc = loadf(L, &ly->attn.k, kvd, c->d_model, "layers.%d.mixer.k_proj.weight", i);
        if (!rc) rc = loadf(L, &ly->attn.v, kvd, c->d_model, "layers.%d.mixer.v_proj.weight", i);
        if (!rc) rc = loadf(L, &ly->attn.o, c->d_model, qd, "layers.%d.mixer.o_proj.weight", i);
        return rc;
    }
    case SRP_LAYER_MLP:
        rc = loadf(L, &ly->mlp.up, c->mlp_hidden, c->d_model, "layers.%d.mixer.up_proj.weight", i);
        if (!rc)
            rc = loadf(L, &ly->mlp.down, c->d_model, c->mlp_hidden,
                       "layers.%d.mixer.down_proj.weight", i);
        if (!rc && c->mlp_bias)
            rc = loadf(L, &ly->mlp.up_bias, 1, c->mlp_hidden, "layers.%d.mixer.up_proj.bias", i);
        if (!rc && c->mlp_bias)
            rc = loadf(L, &ly->mlp.down_bias, 1, c->d_model, "layers.%d.mixer.down_proj.bias", i);
        return rc;
    }
    return 0;
}

/* transformers saves "backbone." names; other writers use "model.". */
static const char *find_prefix(const srp_ckpt *ck) {
    static const char *const prefixes[] = { "backbone.", "model." };
    for (int p = 0; p < 2; p++) {
        char name[64];
        snprintf(name, sizeof name, "%slayers.0.norm.weight", prefixes[p]);
        if (srp_ckpt_find(ck, name)) return prefixes[p];
    }
    return "backbone.";
}

static int load_embedding(loader *L) {
    static const char *const names[] = { "embeddings.weight", "embedding.weight",
                                         "embed_tokens.weight" };
    const srp_config *c = &L->m->cfg;
    for (int i = 0; i < 3; i++) {
        char full[128];
        snprintf(full, sizeof full, "%s%s", L->prefix, names[i]);
        if (srp_ckpt_find(L->m->ckpt, full))
            return load(L, names[i], c->vocab_size, c->d_model, &L->m->embed);
    }
    return srp_err_set(L->e, SRP_EFORMAT, "%s: missing tensor %sembeddings.weight", L->dir,
                       L->prefix);
}

static int load_head(loader *L) {
    srp_model *m = L->m;
    const srp_config *c = &m->cfg;
    char full[128];
    snprintf(full, sizeof full, "%snorm_f.weight", L->prefix);
    int rc = load(L, srp_ckpt_find(m->ckpt, full) ? "norm_f.weight" : "norm.weight", 1, c->d_model,
                  &m->norm_f);
    if (rc) return rc;
    /* Mamba2 ties lm_head to the embedding when the config says so; transformers' NemotronH never
     * ties, so it needs lm_head.weight unless the file lacks it and the config asks to tie. */
    int have_head = srp_ckpt_find(m->ckpt, "lm_head.weight") != NULL;
    int tie = c->arch == SRP_ARCH_MAMBA2 ? c->tie_embeddings : (!have_head && c->tie_embeddings);
    if (tie) {
        m->lm_head = m->embed;
        m->lm_head.owned = 0;
        m->lm_head_is_embed = 1;
        return 0;
    }
    return load(L, "lm_head.weight", c->vocab_size, c->d_model, &m->lm_head);
}

int srp_model_load(srp_model *m, const char *dir, srp_backend *be, srp_progress_fn progress,
                   void *user, srp_err *e) {
    memset(m, 0, sizeof *m);
    m->be = be;
    int rc = srp_config_load(&m->cfg, dir, e);
    if (rc) return rc;
    rc = srp_ckpt_open(dir, &m->ckpt, e);
    if (rc) return rc;
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) {
        srp_model_free(m);
        return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    loader L = { m, dir, find_prefix(m->ckpt), progress, user, 0, srp_ckpt_bytes(m->ckpt), e };
    rc = load_embedding(&L);
    for (int i = 0; !rc && i < m->cfg.n_layers; i++) rc = load_layer(&L, i);
    if (!rc) rc = load_head(&L);
    if (rc) {
        srp_model_free(m);
        return rc;
    }
    return 0;
}

static void free_w(srp_backend *be, srp_weight *w) {
    if (w->m.data) be->weight_free(be, w);
}

void srp_model_free(srp_model *m) {
    if (!m) return;
    srp_backend *be = m->be;
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layers; i++) {
            srp_layer *l = &m->layers[i];
            srp_weight *ws[] = { &l->norm,
                                 &l->mamba.in_proj,
                                 &l->mamba.in_proj_bias,
                                 &l->mamba.conv,
                                 &l->mamba.conv_bias,
                                 &l->mamba.dt_bias,
                                 &l->mamba.A_log,
                                 &l->mamba.D,
                                 &l->mamba.norm,
                                 &l->mamba.out_proj,
                                 &l->mamba.out_proj_bias,
                                 &l->attn.q,
                                 &l->attn.k,
                                 &l->attn.v,
                                 &l->attn.o,
                                 &l->mlp.up,
                                 &l->mlp.up_bias,
                                 &l->mlp.down,
                                 &l->mlp.down_bias };
            for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++) free_w(be, ws[k]);
        }
        free(m->layers);
    }
    if (!m->lm_head_is_embed) free_w(be, &m->lm_head);
    free_w(be, &m->embed);
    free_w(be, &m->norm_f);
    srp_ckpt_close(m->ckpt);
    memset(m, 0, sizeof *m);
}
