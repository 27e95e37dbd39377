/* The CPU backend: memory, weights, and the row-wise operations. The Mamba-2 and attention
 * operations live in cpu_mamba.c and cpu_attention.c. Everything is fp32. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_internal.h"
#include "sampler.h"

int srp_cpu_check_f32(const char *op, srp_mat m, srp_err *e) {
    if (m.dtype != SRP_F32)
        return srp_err_set(e, SRP_EINVAL, "cpu %s: expected an F32 buffer, got %s", op,
                           srp_dtype_name(m.dtype));
    return 0;
}

static void cpu_destroy(srp_backend *be) {
    free(be);
}

static int cpu_alloc(srp_backend *be, size_t bytes, void **out, srp_err *e) {
    (void)be;
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0)
        return srp_err_set(e, SRP_ENOMEM, "cpu: cannot allocate %zu bytes", bytes);
    memset(p, 0, rounded);
    *out = p;
    return 0;
}

static void cpu_free(srp_backend *be, void *p) {
    (void)be;
    free(p);
}

static int cpu_zero(srp_backend *be, void *p, size_t bytes, srp_err *e) {
    (void)be;
    (void)e;
    memset(p, 0, bytes);
    return 0;
}

static int cpu_copy(srp_backend *be, void *dst, const void *src, size_t bytes, srp_err *e) {
    (void)be;
    (void)e;
    memmove(dst, src, bytes);
    return 0;
}

static int64_t cpu_mem_available(srp_backend *be) {
    (void)be;
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : -1;
}

static int64_t cpu_mem_total(srp_backend *be) {
    (void)be;
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : -1;
}

static int cpu_weight_load(srp_backend *be, const void *data, srp_dtype dtype, int64_t rows,
                           int64_t cols, int is_matrix, srp_weight *out, srp_err *e) {
    (void)is_matrix; /* everything is fp32 here */
    memset(out, 0, sizeof *out);
    out->m = (srp_mat){ NULL, SRP_F32, rows, cols, cols };
    if (dtype == SRP_F32 && ((uintptr_t)data & 3) == 0) {
        out->m.data = (void *)data; /* read straight from the mapped checkpoint */
        return 0;
    }
    if (dtype != SRP_F32 && dtype != SRP_F16 && dtype != SRP_BF16)
        return srp_err_set(e, SRP_EUNSUPPORTED, "cpu: weights of type %s", srp_dtype_name(dtype));
    int rc = cpu_alloc(be, (size_t)(rows * cols) * 4, &out->m.data, e);
    if (rc) return rc;
    srp_convert_to_f32(out->m.data, data, dtype, (size_t)(rows * cols));
    out->owned = 1;
    return 0;
}

static void cpu_weight_free(srp_backend *be, srp_weight *w) {
    if (w->owned) cpu_free(be, w->m.data);
    memset(w, 0, sizeof *w);
}

static int cpu_configure(srp_backend *be, const srp_backend_limits *lim, srp_err *e) {
    (void)be;
    (void)lim;
    (void)e;
    return 0;
}

static int cpu_begin_step(srp_backend *be, const srp_batch *b, srp_err *e) {
    (void)e;
    cpu_of(be)->batch = *b;
    /* OpenMP's thread count is per thread: the one set at creation does not reach a thread
     * that runs the engine later (the scheduler's), which would otherwise use every core. */
    omp_set_num_threads(cpu_of(be)->n_threads);
    return 0;
}

static int cpu_embed(srp_backend *be, const srp_weight *table, float scale, srp_mat out,
                     srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    int rc = srp_cpu_check_f32("embed", out, e);
    if (rc) return rc;
    for (int t = 0; t < b->n_tokens; t++) {
        int32_t id = b->tokens[t];
        if (id < 0 || id >= table->m.rows)
            return srp_err_set(e, SRP_EINVAL, "embed: token id %d outside the vocabulary (%lld)",
                               id, (long long)table->m.rows);
        memcpy(cpu_row(out, t), cpu_row(table->m, id), (size_t)out.cols * 4);
        if (scale != 1.0f)
            for (int64_t c = 0; c < out.cols; c++) cpu_row(out, t)[c] *= scale;
    }
    return 0;
}

static int cpu_rmsnorm(srp_backend *be, srp_mat x, const srp_weight *w, float eps, srp_mat out,
                       srp_err *e) {
    (void)be;
    if (w && w->m.cols != x.cols)
        return srp_err_set(e, SRP_EINVAL, "rmsnorm: weight of %lld for rows of %lld",
                           (long long)w->m.cols, (long long)x.cols);
    const float *wt = w ? w->m.data : NULL;
#pragma omp parallel for schedule(static) if (x.rows * x.cols > CPU_PAR_MIN)
    for (int64_t r = 0; r < x.rows; r++) {
        const float *xr = cpu_row(x, r);
        float *o = cpu_row(out, r);
        double ss = 0.0;
        for (int64_t c = 0; c < x.cols; c++) ss += (double)xr[c] * xr[c];
        float inv = (float)(1.0 / sqrt(ss / (double)x.cols + eps));
        if (wt)
            for (int64_t c = 0; c < x.cols; c++) o[c] = xr[c] * inv * wt[c];
        else
            for (int64_t c = 0; c < x.cols; c++) o[c] = xr[c] * inv;
    }
    return 0;
}

static int cpu_gemm(srp_backend *be, srp_mat x, const srp_weight *w, const srp_weight *bias,
                    srp_mat out, float alpha, int accumulate, srp_err *e) {
    if (x.cols != w->m.cols || out.cols != w->m.rows || out.rows != x.rows)
        return srp_err_set(e, SRP_EINVAL,
                           "gemm: [%lld x %lld] * [%lld x %lld]^T into [%lld x %lld]",
                           (long long)x.rows, (long long)x.cols, (long long)w->m.rows,
                           (long long)w->m.cols, (long long)out.rows, (long long)out.cols);
    if (x.rows == 0) return 0;
    cpu_of(be)->sgemm(SRP_CBLAS_ROW_MAJOR, SRP_CBLAS_NO_TRANS, SRP_CBLAS_TRANS, (int)x.rows,
                      (int)w->m.rows, (int)x.cols, alpha, x.data, (int)x.ld, w->m.data,
                      (int)w->m.ld, accumulate ? 1.0f : 0.0f, out.data, (int)out.ld);
    if (bias) {
        const float *bv = bias->m.data;
#pragma omp parallel for schedule(static) if (out.rows * out.cols > CPU_PAR_MIN)
        for (int64_t r = 0; r < out.rows; r++) {
            float *o = cpu_row(out, r);
            for (int64_t c = 0; c < out.cols; c++) o[c] += bv[c];
        }
    }
    return 0;
}

static int cpu_gated_rmsnorm(srp_backend *be, srp_mat y, srp_mat z, const srp_weight *w, int group,
                             float eps, srp_mat out, srp_err *e) {
    (void)be;
    if (group <= 0 || y.cols % group)
        return srp_err_set(e, SRP_EINVAL, "gated_rmsnorm: group %d does not divide %lld", group,
                           (long long)y.cols);
    const float *wt = w->m.data;
#pragma omp parallel for schedule(static) if (y.rows * y.cols > CPU_PAR_MIN)
    for (int64_t r = 0; r < y.rows; r++) {
        const float *yr = cpu_row(y, r), *zr = cpu_row(z, r);
        float *o = cpu_row(out, r);
        for (int64_t g0 = 0; g0 < y.cols; g0 += group) {
            double ss = 0.0;
            for (int64_t c = g0; c < g0 + group; c++) {
                float v = yr[c] * cpu_silu(zr[c]);
                o[c] = v;
                ss += (double)v * v;
            }
            float inv = (float)(1.0 / sqrt(ss / group + eps));
            for (int64_t c = g0; c < g0 + group; c++) o[c] = o[c] * inv * wt[c];
        }
    }
    return 0;
}

static int cpu_activate(srp_backend *be, srp_act act, srp_mat x, srp_err *e) {
    (void)be;
    (void)e;
#pragma omp parallel for schedule(static) if (x.rows * x.cols > CPU_PAR_MIN)
    for (int64_t r = 0; r < x.rows; r++) {
        float *xr = cpu_row(x, r);
        for (int64_t c = 0; c < x.cols; c++) xr[c] = srp_cpu_act(act, xr[c]);
    }
    return 0;
}

static int cpu_activate_gated(srp_backend *be, srp_act act, srp_mat gate, srp_mat up, srp_mat out,
                              srp_err *e) {
    (void)be;
    if (gate.rows != up.rows || gate.cols != up.cols || out.rows != gate.rows ||
        out.cols != gate.cols)
        return srp_err_set(e, SRP_EINVAL, "activate_gated: shapes differ");
#pragma omp parallel for schedule(static) if (gate.rows * gate.cols > CPU_PAR_MIN)
    for (int64_t r = 0; r < gate.rows; r++) {
        const float *g = cpu_row(gate, r), *u = cpu_row(up, r);
        float *o = cpu_row(out, r);
        for (int64_t c = 0; c < gate.cols; c++) o[c] = srp_cpu_act(act, g[c]) * u[c];
    }
    return 0;
}

static int cpu_gather_rows(srp_backend *be, srp_mat x, srp_mat out, srp_err *e) {
    const srp_batch *b = &cpu_of(be)->batch;
    for (int i = 0; i < b->n_logits; i++) {
        int32_t r = b->logit_rows[i];
        if (r < 0 || r >= x.rows)
            return srp_err_set(e, SRP_EINVAL, "gather_rows: row %d outside [0, %lld)", r,
                               (long long)x.rows);
        memcpy(cpu_row(out, i), cpu_row(x, r), (size_t)x.cols * 4);
    }
    return 0;
}

static int cpu_sample(srp_backend *be, srp_mat logits, const srp_sample_params *params,
                      int32_t *tokens, srp_err *e) {
    (void)be;
    int n = (int)logits.cols;
    int rc = 0;
#pragma omp parallel if (logits.rows > 1)
    {
        float *scratch = malloc((size_t)n * sizeof *scratch);
        int32_t *order = malloc((size_t)n * sizeof *order);
        if (!scratch || !order) {
#pragma omp atomic write
            rc = SRP_ENOMEM;
        } else {
#pragma omp for schedule(dynamic)
            for (int64_t r = 0; r < logits.rows; r++)
                tokens[r] = srp_sample_row(cpu_row(logits, r), n, &params[r], scratch, order);
        }
        free(scratch);
        free(order);
    }
    if (rc) return srp_err_set(e, rc, "sample: out of memory");
    return 0;
}

static int cpu_sync(srp_backend *be, srp_err *e) {
    (void)be;
    (void)e;
    return 0;
}

const char *srp_backend_cpu_blas_core(void) {
    return srp_cpu_blas_core();
}

/* OMP_NUM_THREADS when set (the ThreadSanitizer tests run the backend on one thread: TSan does
 * not see libgomp's synchronisation), else every core. */
static int default_threads(void) {
    const char *s = getenv("OMP_NUM_THREADS");
    int n = s ? atoi(s) : 0;
    return n > 0 ? n : omp_get_num_procs();
}

int srp_backend_cpu_create(int n_threads, srp_backend **out, srp_err *e) {
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (n_threads <= 0) n_threads = default_threads();
    omp_set_num_threads(n_threads);
    int rc = srp_cpu_blas_load(n_threads, &c->sgemm, e);
    if (rc) {
        free(c);
        return rc;
    }
    c->n_threads = n_threads;
    srp_backend *b = &c->base;
    b->name = "cpu";
    b->act_dtype = SRP_F32;
    b->conv_dtype = SRP_F32;
    b->kv_dtype = SRP_F32;
    b->destroy = cpu_destroy;
    b->alloc = cpu_alloc;
    b->free = cpu_free;
    b->zero = cpu_zero;
    b->upload = cpu_copy;
    b->download = cpu_copy;
    b->copy = cpu_copy;
    b->mem_available = cpu_mem_available;
    b->mem_total = cpu_mem_total;
    b->weight_load = cpu_weight_load;
    b->weight_free = cpu_weight_free;
    b->configure = cpu_configure;
    b->begin_step = cpu_begin_step;
    b->embed = cpu_embed;
    b->rmsnorm = cpu_rmsnorm;
    b->gemm = cpu_gemm;
    b->conv1d = srp_cpu_conv1d;
    b->ssd = srp_cpu_ssd;
    b->selective_scan = srp_cpu_selective_scan;
    b->gated_rmsnorm = cpu_gated_rmsnorm;
    b->rmsnorm_gate = srp_cpu_rmsnorm_gate;
    b->attention = srp_cpu_attention;
    b->activate = cpu_activate;
    b->activate_gated = cpu_activate_gated;
    b->rope = srp_cpu_rope;
    b->moe_route = srp_cpu_moe_route;
    b->moe_experts = srp_cpu_moe_experts;
    b->gather_rows = cpu_gather_rows;
    b->add = srp_cpu_add;
    b->sample = cpu_sample;
    b->sample_extras = 1;
    b->sync = cpu_sync;
    *out = b;
    return 0;
}
