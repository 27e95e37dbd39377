/* A model of a given config with random weights, for benchmarks of shapes no checkpoint here
 * has (the 8B hybrid). Values are drawn so activations stay in a normal range: matrices
 * uniform with variance 1/fan_in, norms near 1, A from -1 to -16, dt near 0.02. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct gen {
    srp_backend *be;
    uint64_t seed, tensor;
    float *buf;
    size_t cap;
    srp_err *e;
} gen;

/* Fills rows x cols values uniform in [lo, hi) (a counter-based stream per tensor, filled in
 * parallel) and hands them to the backend. */
static int fill(gen *g, srp_weight *w, int64_t rows, int64_t cols, int is_matrix, float lo,
                float hi) {
    size_t n = (size_t)(rows * cols);
    if (n > g->cap) {
        float *nb = realloc(g->buf, n * sizeof(float));
        if (!nb) return srp_err_set(g->e, SRP_ENOMEM, "random weights: out of memory");
        g->buf = nb;
        g->cap = n;
    }
    const uint64_t base = mix(g->seed ^ mix(++g->tensor));
    float *buf = g->buf;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)n; i++)
        buf[i] = lo + (hi - lo) * (float)((mix(base + (uint64_t)i) >> 40) * (1.0 / 16777216.0));
    int rc = g->be->weight_load(g->be, buf, SRP_F32, rows, cols, is_matrix, w, g->e);
    if (rc || w->owned) return rc;
    /* the backend points into buf (the CPU backend does with fp32), which the next tensor
     * overwrites: give the weight memory of its own */
    const size_t bytes = n * sizeof(float);
    void *own = NULL;
    rc = g->be->alloc(g->be, bytes, &own, g->e);
    if (!rc) rc = g->be->upload(g->be, own, buf, bytes, g->e);
    if (rc) {
        if (own) g->be->free(g->be, own);
        return rc;
    }
    w->m.data = own;
    w->owned = 1;
    return 0;
}

static int fill_matrix(gen *g, srp_weight *w, int64_t rows, int64_t cols) {
    const float a = sqrtf(3.0f / (float)cols); /* variance 1/cols */
    return fill(g, w, rows, cols, 1, -a, a);
}

static int fill_layer(gen *g, const srp_config *c, srp_layer *ly) {
    int rc = fill(g, &ly->norm, 1, c->d_model, 0, 0.9f, 1.1f);
    if (rc) return rc;
    if (ly->kind == SRP_LAYER_MAMBA2) {
        srp_mamba_weights *m = &ly->mamba;
        rc = fill_matrix(g, &m->in_proj, c->d_in_proj, c->d_model);
        if (!rc) rc = fill(g, &m->conv, c->conv_dim, c->conv_kernel, 0, -0.5f, 0.5f);
        if (!rc && c->conv_bias) rc = fill(g, &m->conv_bias, 1, c->conv_dim, 0, -0.1f, 0.1f);
        if (!rc) rc = fill(g, &m->dt_bias, 1, c->ssm_heads, 0, -5.0f, -3.0f);
        if (!rc) rc = fill(g, &m->A_log, 1, c->ssm_heads, 0, 0.0f, 2.77f);
        if (!rc) rc = fill(g, &m->D, 1, c->ssm_heads, 0, 0.5f, 1.5f);
        if (!rc) rc = fill(g, &m->norm, 1, c->d_inner, 0, 0.9f, 1.1f);
        if (!rc) rc = fill_matrix(g, &m->out_proj, c->d_model, c->d_inner);
        return rc;
    }
    if (ly->kind == SRP_LAYER_ATTENTION) {
        int64_t qd = (int64_t)c->attn_heads * c->attn_head_dim;
        int64_t kvd = (int64_t)c->attn_kv_heads * c->attn_head_dim;
        rc = fill_matrix(g, &ly->attn.q, qd, c->d_model);
        if (!rc) rc = fill_matrix(g, &ly->attn.k, kvd, c->d_model);
        if (!rc) rc = fill_matrix(g, &ly->attn.v, kvd, c->d_model);
        if (!rc) rc = fill_matrix(g, &ly->attn.o, c->d_model, qd);
        return rc;
    }
    rc = fill_matrix(g, &ly->mlp.up, c->mlp_hidden, c->d_model);
    if (!rc) rc = fill_matrix(g, &ly->mlp.down, c->d_model, c->mlp_hidden);
    return rc;
}

int srp_model_random(srp_model *m, const char *dir, srp_backend *be, uint64_t seed, srp_err *e) {
    memset(m, 0, sizeof *m);
    m->be = be;
    int rc = srp_config_load(&m->cfg, dir, e);
    if (rc) return rc;
    /* biases stay absent: the benchmarks measure the checkpoints we serve, which have none */
    m->cfg.mamba_proj_bias = 0;
    m->cfg.mlp_bias = 0;
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    gen g = { be, seed, 0, NULL, 0, e };
    const srp_config *c = &m->cfg;
    rc = fill(&g, &m->embed, c->vocab_size, c->d_model, 1, -1.0f, 1.0f);
    for (int i = 0; !rc && i < c->n_layers; i++) {
        srp_layer *ly = &m->layers[i];
        ly->kind = c->layer_kind[i];
        if (ly->kind == SRP_LAYER_MAMBA2) ly->mamba.state_index = m->n_mamba++;
        if (ly->kind == SRP_LAYER_ATTENTION) ly->attn.kv_index = m->n_attn++;
        rc = fill_layer(&g, c, ly);
    }
    if (!rc) rc = fill(&g, &m->norm_f, 1, c->d_model, 0, 0.9f, 1.1f);
    if (!rc) rc = fill_matrix(&g, &m->lm_head, c->vocab_size, c->d_model);
    free(g.buf);
    if (rc) srp_model_free(m);
    return rc;
}
