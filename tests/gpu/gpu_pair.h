/* For GPU op tests: a CPU and a CUDA backend side by side, buffers filled from host floats on
 * either (NaN-poisoned when no values are given, so an element a kernel forgets to write fails),
 * and relative errors. Host-only helpers; failures abort the test program. */
#ifndef SRP_GPU_PAIR_H
#define SRP_GPU_PAIR_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "dtype.h"

typedef struct gp_pair {
    srp_backend *cpu, *gpu;
} gp_pair;

static inline gp_pair gp_backends(int max_tokens, int max_seqs) {
    gp_pair p = { 0 };
    srp_err e = { 0 };
    if (srp_backend_cpu_create(0, &p.cpu, &e) || srp_backend_cuda_create(0, &p.gpu, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    srp_backend_limits lim = { max_tokens, max_seqs, 1, max_tokens, 1 };
    if (p.gpu->configure(p.gpu, &lim, &e) || p.cpu->configure(p.cpu, &lim, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    return p;
}

static inline void gp_release(gp_pair *p) {
    p->cpu->destroy(p->cpu);
    p->gpu->destroy(p->gpu);
}

/* Values rounded to bf16, so both backends see the same inputs. */
static inline float *gp_rand(uint64_t *rng, int64_t n, float lo, float hi) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        double u = (double)((*rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
        v[i] = srp_bf16_to_f32(srp_f32_to_bf16((float)(lo + (hi - lo) * u)));
    }
    return v;
}

/* A rows x cols matrix of type t on be (NULL host: NaN). */
static inline srp_mat gp_put(srp_backend *be, srp_dtype t, int64_t rows, int64_t cols,
                             const float *host) {
    srp_mat m = { NULL, t, rows, cols, cols };
    srp_err e = { 0 };
    size_t n = (size_t)(rows * cols), es = srp_dtype_size(t);
    if (be->alloc(be, n * es, &m.data, &e)) abort();
    void *tmp = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        float v = host ? host[i] : NAN;
        if (t == SRP_F32)
            ((float *)tmp)[i] = v;
        else
            ((uint16_t *)tmp)[i] = srp_f32_to_bf16(v);
    }
    if (be->upload(be, m.data, tmp, n * es, &e)) abort();
    free(tmp);
    return m;
}

/* The whole buffer of m (all ld columns of every row) as floats. */
static inline float *gp_get_all(srp_backend *be, srp_mat m) {
    size_t n = (size_t)(m.rows * m.ld), es = srp_dtype_size(m.dtype);
    void *tmp = malloc(n * es);
    float *out = malloc(n * sizeof(float));
    srp_err e = { 0 };
    if (be->download(be, tmp, m.data, n * es, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
    srp_convert_to_f32(out, tmp, m.dtype, n);
    free(tmp);
    return out;
}

static inline srp_weight gp_weight(srp_backend *be, const float *host, int64_t rows, int64_t cols) {
    srp_weight w;
    srp_err e = { 0 };
    if (be->weight_load(be, host, SRP_F32, rows, cols, 0, &w, &e)) abort();
    return w;
}

/* ||a - b|| / ||b|| over n values; NaN anywhere in a is a failure. */
static inline double gp_rel(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i]) return INFINITY;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

typedef struct gp_batch {
    srp_batch b;
    int32_t tokens[8192], start[65], past[64], slot[64], rows[8192];
} gp_batch;

/* n sequences of the given lengths and n_past in slots (5 s + 3) % 64. */
static inline void gp_make_batch(gp_batch *tb, int n, const int *len, const int *past) {
    memset(tb, 0, sizeof *tb);
    int T = 0;
    for (int s = 0; s < n; s++) {
        tb->start[s] = T;
        tb->past[s] = past[s];
        tb->slot[s] = (s * 5 + 3) % 64;
        T += len[s];
    }
    tb->start[n] = T;
    for (int t = 0; t < T; t++) tb->rows[t] = t;
    tb->b =
        (srp_batch){ n, T, tb->tokens, tb->start, tb->past, tb->slot, NULL, 0, 0, tb->rows, NULL };
}

static inline void gp_begin(gp_pair *p, const srp_batch *b) {
    srp_err e = { 0 };
    if (p->cpu->begin_step(p->cpu, b, &e) || p->gpu->begin_step(p->gpu, b, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
}

#endif
