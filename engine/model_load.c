/* The weight loader behind engine/model_load.h: checkpoint tensors (or random values) into
 * backend weights. */
#include "model_load.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_load_internal.h"

const char *srp_lname(srp_loader *L, const char *fmt, ...) {
    char *buf = L->names[L->next_name++ % SRP_LOADER_NAMES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, SRP_LOADER_NAME_LEN, fmt, ap);
    va_end(ap);
    return buf;
}

srp_model *srp_loader_model(srp_loader *L) {
    return L->m;
}
srp_err *srp_loader_err(srp_loader *L) {
    return L->e;
}
int srp_loader_failed(srp_loader *L) {
    return L->e && L->e->code ? L->e->code : SRP_EINVAL;
}
const char *srp_loader_dir(srp_loader *L) {
    return L->dir;
}

static const srp_tensor_info *find(srp_loader *L, const char *name, char *full, size_t n) {
    snprintf(full, n, "%s%s", L->prefix, name);
    const srp_tensor_info *t = srp_ckpt_find(L->m->ckpt, full);
    /* the head sits outside the backbone in every layout */
    if (!t && !strncmp(name, "lm_head", 7)) {
        t = srp_ckpt_find(L->m->ckpt, name);
        if (t) snprintf(full, n, "%s", name);
    }
    return t;
}

int srp_load_has(srp_loader *L, const char *name) {
    if (L->random) return 0;
    char full[SRP_LOADER_NAME_LEN + 64];
    return find(L, name, full, sizeof full) != NULL;
}

static int register_weight(srp_loader *L, srp_weight *w) {
    srp_model *m = L->m;
    if (m->n_weights == m->cap_weights) {
        int cap = m->cap_weights ? 2 * m->cap_weights : 64;
        srp_weight **nw = realloc(m->weights, (size_t)cap * sizeof *nw);
        if (!nw) return srp_err_set(L->e, SRP_ENOMEM, "out of memory");
        m->weights = nw;
        m->cap_weights = cap;
    }
    m->weights[m->n_weights++] = w;
    return 0;
}

void *srp_load_alloc(srp_loader *L, size_t bytes) {
    srp_model *m = L->m;
    if (m->n_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 64;
        void **na = realloc(m->allocs, (size_t)cap * sizeof *na);
        if (!na) {
            srp_err_set(L->e, SRP_ENOMEM, "out of memory");
            return NULL;
        }
        m->allocs = na;
        m->cap_allocs = cap;
    }
    void *p = calloc(1, bytes);
    if (!p) {
        srp_err_set(L->e, SRP_ENOMEM, "out of memory");
        return NULL;
    }
    m->allocs[m->n_allocs++] = p;
    return p;
}

/* Host staging for a fused, scaled or random tensor. A backend may keep pointing into what it
 * is given (the CPU backend does, for fp32), so each tensor gets its own buffer; upload()
 * frees it once the backend has made its own copy. */
static float *host_buf(srp_loader *L, size_t n) {
    float *b = malloc(n * sizeof *b);
    if (!b) srp_err_set(L->e, SRP_ENOMEM, "loading weights: out of memory");
    return b;
}

/* Keeps buf alive as long as the model when the backend points into it. */
static int adopt(srp_loader *L, const srp_weight *w, float *buf) {
    if (w->owned || w->m.data != (void *)buf) {
        free(buf);
        return 0;
    }
    srp_model *m = L->m;
    if (m->n_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 64;
        void **na = realloc(m->allocs, (size_t)cap * sizeof *na);
        if (!na) {
            free(buf);
            return srp_err_set(L->e, SRP_ENOMEM, "out of memory");
        }
        m->allocs = na;
        m->cap_allocs = cap;
    }
    m->allocs[m->n_allocs++] = buf;
    return 0;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Random values that keep activations in a normal range: matrices with variance 1/fan_in,
 * norms near 1, A from -1 to -16, dt near 0.02. A counter-based stream per tensor, filled in
 * parallel. */
static void draw(srp_loader *L, float *dst, int64_t rows, int64_t cols, srp_init init) {
    float lo = -1.0f, hi = 1.0f;
    switch (init) {
    case SRP_INIT_MATRIX:
        hi = sqrtf(3.0f / (float)cols);
        lo = -hi;
        break;
    case SRP_INIT_EMBED:
        break;
    case SRP_INIT_NORM:
        lo = 0.9f, hi = 1.1f;
        break;
    case SRP_INIT_BIAS:
        lo = -0.1f, hi = 0.1f;
        break;
    case SRP_INIT_CONV:
        lo = -0.5f, hi = 0.5f;
        break;
    case SRP_INIT_A_LOG:
        lo = 0.0f, hi = 2.77f;
        break;
    case SRP_INIT_DT_BIAS:
        lo = -5.0f, hi = -3.0f;
        break;
    case SRP_INIT_D:
        lo = 0.5f, hi = 1.5f;
        break;
    }
    const uint64_t base = mix64(L->seed ^ mix64(++L->tensor));
    const int64_t n = rows * cols;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        dst[i] = lo + (hi - lo) * (float)((mix64(base + (uint64_t)i) >> 40) * (1.0 / 16777216.0));
}

static const char *shape_str(const srp_tensor_info *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* The tensor `name` checked to be [rows, cols] (up to dimensions of size 1). */
static int lookup(srp_loader *L, const char *name, int64_t rows, int64_t cols,
                  const srp_tensor_info **out) {
    char full[SRP_LOADER_NAME_LEN + 64];
    const srp_tensor_info *t = find(L, name, full, sizeof full);
    if (!t) return srp_err_set(L->e, SRP_EFORMAT, "%s: missing tensor %s", L->dir, full);
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
    if (!ok) {
        char sb[128];
        return srp_err_set(L->e, SRP_EFORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld]",
                           t->file, t->name, shape_str(t, sb, sizeof sb), (long long)rows,
                           (long long)cols);
    }
    *out = t;
    return 0;
}

static void progress(srp_loader *L, const srp_tensor_info *t) {
    L->done += (uint64_t)t->numel * srp_dtype_size(t->dtype);
    if (L->progress) L->progress(L->user, L->done, L->total);
}

static int upload(srp_loader *L, srp_weight *out, const void *data, srp_dtype dtype, int64_t rows,
                  int64_t cols, srp_init init, const char *what) {
    const int is_matrix = (init == SRP_INIT_MATRIX || init == SRP_INIT_EMBED) && rows > 1;
    int rc = L->m->be->weight_load(L->m->be, data, dtype, rows, cols, is_matrix, out, L->e);
    if (rc) return srp_err_prefix(L->e, "%s: tensor %s", L->dir, what);
    return register_weight(L, out);
}

/* upload() of a staging buffer, which is freed or kept as the backend needs. */
static int upload_staged(srp_loader *L, srp_weight *out, float *buf, int64_t rows, int64_t cols,
                         srp_init init, const char *what) {
    int rc = upload(L, out, buf, SRP_F32, rows, cols, init, what);
    if (rc) {
        free(buf);
        return rc;
    }
    return adopt(L, out, buf);
}

int srp_load(srp_loader *L, srp_weight *out, int64_t rows, int64_t cols, srp_init init,
             const char *name) {
    if (L->random) {
        float *buf = host_buf(L, (size_t)(rows * cols));
        if (!buf) return SRP_ENOMEM;
        draw(L, buf, rows, cols, init);
        return upload_staged(L, out, buf, rows, cols, init, name);
    }
    const srp_tensor_info *t;
    int rc = lookup(L, name, rows, cols, &t);
    if (rc) return rc;
    rc = upload(L, out, t->data, t->dtype, rows, cols, init, t->name);
    if (rc) return rc;
    progress(L, t);
    return 0;
}

int srp_load_stacked(srp_loader *L, srp_weight *out, int64_t n, int64_t rows, int64_t cols,
                     srp_init init, const char *name) {
    char full[SRP_LOADER_NAME_LEN + 64];
    const srp_tensor_info *t = L->random ? NULL : find(L, name, full, sizeof full);
    if (L->random || !t || t->ndim != 3) return srp_load(L, out, n * rows, cols, init, name);
    if (t->shape[0] != n || t->shape[1] != rows || t->shape[2] != cols) {
        char sb[128];
        return srp_err_set(
            L->e, SRP_EFORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld, %lld]", t->file,
            t->name, shape_str(t, sb, sizeof sb), (long long)n, (long long)rows, (long long)cols);
    }
    if (t->dtype != SRP_F32 && t->dtype != SRP_F16 && t->dtype != SRP_BF16)
        return srp_err_set(L->e, SRP_EUNSUPPORTED,
                           "%s: tensor %s has dtype %s; serpent reads BF16, F16 and F32", t->file,
                           t->name, t->dtype_name);
    int rc = upload(L, out, t->data, t->dtype, n * rows, cols, init, t->name);
    if (rc) return rc;
    progress(L, t);
    return 0;
}

int srp_load_opt(srp_loader *L, srp_weight *out, int64_t rows, int64_t cols, srp_init init,
                 const char *name) {
    if (!srp_load_has(L, name)) return 0;
    return srp_load(L, out, rows, cols, init, name);
}

int srp_load_concat(srp_loader *L, srp_weight *out, int64_t cols, srp_init init, int n,
                    const srp_load_part *parts) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += parts[i].rows;
    /* one whole tensor, unscaled: no host copy */
    if (n == 1 && parts[0].row0 == 0 && parts[0].rows == parts[0].total_rows &&
        parts[0].scale == 1.0f)
        return cols == 1 ? srp_load(L, out, 1, total, init, parts[0].name)
                         : srp_load(L, out, total, cols, init, parts[0].name);
    float *buf = host_buf(L, (size_t)(total * cols));
    if (!buf) return SRP_ENOMEM;
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        const srp_load_part *p = &parts[i];
        float *dst = buf + r * cols;
        if (L->random) {
            draw(L, dst, p->rows, cols, init);
        } else {
            const srp_tensor_info *t;
            int rc = cols == 1 ? lookup(L, p->name, 1, p->total_rows, &t)
                               : lookup(L, p->name, p->total_rows, cols, &t);
            if (!rc && (p->row0 < 0 || p->row0 + p->rows > p->total_rows))
                rc = srp_err_set(L->e, SRP_EINVAL, "%s: rows [%lld, %lld) of %s", L->dir,
                                 (long long)p->row0, (long long)(p->row0 + p->rows), t->name);
            if (rc) {
                free(buf);
                return rc;
            }
            const size_t esz = srp_dtype_size(t->dtype);
            srp_convert_to_f32(dst, (const char *)t->data + (size_t)(p->row0 * cols) * esz,
                               t->dtype, (size_t)(p->rows * cols));
            progress(L, t);
        }
        if (p->scale != 1.0f)
            for (int64_t k = 0; k < p->rows * cols; k++) dst[k] *= p->scale;
        r += p->rows;
    }
    return cols == 1 ? upload_staged(L, out, buf, 1, total, init, parts[0].name)
                     : upload_staged(L, out, buf, total, cols, init, parts[0].name);
}

int srp_load_host_vector(srp_loader *L, srp_weight *out, const float *values, int64_t n) {
    /* the backend may point into the data it is given: keep a copy the model owns */
    float *copy = srp_load_alloc(L, (size_t)n * sizeof *copy);
    if (!copy) return SRP_ENOMEM;
    memcpy(copy, values, (size_t)n * sizeof *copy);
    return upload(L, out, copy, SRP_F32, 1, n, SRP_INIT_NORM, "(computed vector)");
}

srp_block *srp_load_block(srp_loader *L, int b, const char *norm, int64_t width) {
    srp_block *bl = &L->m->blocks[b];
    if (srp_load(L, &bl->norm, 1, width, SRP_INIT_NORM, norm)) return NULL;
    return bl;
}

srp_mixer *srp_block_add_mixer(srp_loader *L, srp_block *bl, srp_mixer_kind kind, const void *w,
                               const srp_state_desc *state, int wants_kv) {
    srp_model *m = L->m;
    if (bl->n_mixers >= SRP_MAX_MIXERS) {
        srp_err_set(L->e, SRP_EINVAL, "a block holds at most %d mixers", SRP_MAX_MIXERS);
        return NULL;
    }
    srp_mixer *mx = &bl->mixer[bl->n_mixers++];
    *mx = (srp_mixer){ kind, w, -1, -1 };
    if (state) {
        srp_state_desc *ns = realloc(m->state, (size_t)(m->n_mamba + 1) * sizeof *ns);
        if (!ns) {
            srp_err_set(L->e, SRP_ENOMEM, "out of memory");
            return NULL;
        }
        m->state = ns;
        m->state[m->n_mamba] = *state;
        mx->state_index = m->n_mamba++;
    }
    if (wants_kv) mx->kv_index = m->n_attn++;
    return mx;
}
