/* Kernel benchmarks on the GPU against the roofline, for one layer of the 8B Mamba-2-Hybrid
 * shape (d_model 4096, 128 SSM heads x 64, d_state 128, 8 groups, conv 4).
 *
 *   bench_kernels [--json FILE] [--commit SHA] [--clocks TEXT]
 *
 * The two ceilings are measured here first: copy bandwidth (a device-to-device copy, bytes read
 * plus written) and the bf16 matrix rate (an 8192^3 GEMM through the backend). Each kernel's
 * floor is max(bytes / bandwidth, FLOPs / matrix rate); the table gives time, floor, and
 * floor / time (the fraction of the roofline reached). Inputs rotate over buffers larger than
 * the L2 cache so repeated runs read memory, not cache. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "dtype.h"

#define H            128
#define P            64
#define N            128
#define G            8
#define K            4
#define CONV_DIM     (H * P + 2 * G * N)
#define ROTATE_BYTES (256ll << 20) /* > 50 MB of L2, several times over */

static srp_backend *be;
static srp_err err;
static double bw_bytes_per_s, mma_flops_per_s;

static void die(const char *what) {
    fprintf(stderr, "bench: %s: %s\n", what, err.msg);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static srp_backend *timed; /* the backend time_op waits for (be unless said) */

static void sync(void) {
    srp_backend *b = timed ? timed : be;
    if (b->sync(b, &err)) die("sync");
}

/* A device buffer of n random bf16 (or fp32) values in [-1, 1). */
static void *rand_buf(int64_t n, srp_dtype t) {
    size_t es = srp_dtype_size(t);
    void *host = malloc((size_t)n * es), *dev = NULL;
    uint64_t s = 0x853c49e6748fea9bull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float v = (float)((s >> 40) * (1.0 / 16777216.0)) * 2 - 1;
        if (t == SRP_F32)
            ((float *)host)[i] = v;
        else
            ((uint16_t *)host)[i] = srp_f32_to_bf16(v);
    }
    if (be->alloc(be, (size_t)n * es, &dev, &err) ||
        be->upload(be, dev, host, (size_t)n * es, &err))
        die("alloc");
    free(host);
    return dev;
}

static srp_weight vec_weight(int n, float lo, float hi) {
    float *v = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) v[i] = lo + (hi - lo) * (float)i / (float)(n > 1 ? n - 1 : 1);
    srp_weight w;
    if (be->weight_load(be, v, SRP_F32, 1, n, 0, &w, &err)) die("weight");
    free(v);
    return w;
}

typedef struct row {
    char name[64];
    double seconds, bytes, flops;
} row;

static row rows[128];
static int n_rows;
static const char *only; /* run just the benchmarks whose name contains this */

static int wanted(const char *name) {
    return !only || strstr(name, only) != NULL;
}

static void record(const char *name, double seconds, double bytes, double flops) {
    row *r = &rows[n_rows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->seconds = seconds;
    r->bytes = bytes;
    r->flops = flops;
    double floor_s = fmax(bytes / bw_bytes_per_s, flops / mma_flops_per_s);
    printf("%-28s %10.1f us  %9.1f MB %9.2f GFLOP  floor %8.1f us  %5.1f%% of roofline\n", name,
           seconds * 1e6, bytes / 1e6, flops / 1e9, floor_s * 1e6, 100 * floor_s / seconds);
    fflush(stdout);
}

/* Times fn(i) for i = 0, 1, ... (i picks the rotating buffer), median of 5 batches of reps. */
typedef void (*op_fn)(int i, void *ctx);

static double time_op(op_fn fn, void *ctx, int reps) {
    for (int i = 0; i < 3; i++) fn(i, ctx);
    sync();
    double t[5];
    for (int b = 0; b < 5; b++) {
        double t0 = now();
        for (int i = 0; i < reps; i++) fn(i, ctx);
        sync();
        t[b] = (now() - t0) / reps;
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    return t[2];
}

static void measure_ceilings(void) {
    const size_t bytes = 1ull << 30;
    void *a = rand_buf(bytes / 2, SRP_BF16), *b = rand_buf(bytes / 2, SRP_BF16);
    cudaStream_t s = 0;
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s);
    cudaDeviceSynchronize();
    double best = 1e9;
    for (int r = 0; r < 10; r++) {
        double t0 = now();
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s);
        cudaDeviceSynchronize();
        best = fmin(best, now() - t0);
    }
    bw_bytes_per_s = 2.0 * bytes / best;
    be->free(be, a);
    be->free(be, b);
    const int M = 8192;
    srp_backend_limits lim = { M, 1, 1, 1, 1 };
    if (be->configure(be, &lim, &err)) die("configure");
    void *x = rand_buf((int64_t)M * M, SRP_BF16), *w = rand_buf((int64_t)M * M, SRP_BF16);
    void *o = rand_buf((int64_t)M * M, SRP_BF16);
    srp_weight W = { { w, SRP_BF16, M, M, M }, 0 };
    srp_mat X = { x, SRP_BF16, M, M, M }, O = { o, SRP_BF16, M, M, M };
    be->gemm(be, X, &W, NULL, O, 1.0f, 0, &err);
    sync();
    double t0 = now();
    for (int r = 0; r < 10; r++)
        if (be->gemm(be, X, &W, NULL, O, 1.0f, 0, &err)) die("gemm");
    sync();
    mma_flops_per_s = 2.0 * M * M * (double)M / ((now() - t0) / 10);
    be->free(be, x);
    be->free(be, w);
    be->free(be, o);
    printf("ceilings: copy %.2f TB/s (read + write), bf16 GEMM %.0f TFLOP/s\n\n",
           bw_bytes_per_s / 1e12, mma_flops_per_s / 1e12);
}

/* ---- SSD ------------------------------------------------------------------------------------ */
typedef struct ssd_ctx {
    int n_sets, T;
    void *x[16], *bc[16], *dt[16], *y[16];
    srp_mamba_state st;
    srp_mamba_params p;
} ssd_ctx;

static void ssd_op(int i, void *vctx) {
    ssd_ctx *c = vctx;
    int k = i % c->n_sets;
    srp_mat x = { c->x[k], SRP_BF16, c->T, H * P, H * P };
    srp_mat bc = { c->bc[k], SRP_BF16, c->T, 2 * G * N, 2 * G * N };
    srp_mat dt = { c->dt[k], SRP_BF16, c->T, H, H };
    srp_mat y = { c->y[k], SRP_BF16, c->T, H * P, H * P };
    if (be->ssd(be, &c->p, x, srp_mat_cols(bc, 0, G * N), srp_mat_cols(bc, G * N, G * N), dt,
                &c->st, y, &err))
        die("ssd");
}

static srp_weight w_alog, w_dtb, w_d;

static void bench_ssd(const char *name, int n_seqs, int len, int n_slots_rotate) {
    if (!wanted(name)) return;
    const int T = n_seqs * len;
    static int32_t tokens[65536], start[1025], past[1024], slot[1024];
    for (int s = 0; s <= n_seqs; s++) start[s] = s * len;
    for (int s = 0; s < n_seqs; s++) past[s] = 1, slot[s] = s;
    srp_backend_limits lim = { T, n_seqs * n_slots_rotate, 1, 1, 1 };
    if (be->configure(be, &lim, &err)) die("configure");
    ssd_ctx c = { 0 };
    c.T = T;
    double set_bytes = (double)T * (H * P * 2 * 2 + 2 * G * N * 2 + H * 2);
    c.n_sets = (int)fmin(16, fmax(1, ceil(ROTATE_BYTES / set_bytes)));
    for (int k = 0; k < c.n_sets; k++) {
        c.x[k] = rand_buf((int64_t)T * H * P, SRP_BF16);
        c.bc[k] = rand_buf((int64_t)T * 2 * G * N, SRP_BF16);
        c.dt[k] = rand_buf((int64_t)T * H, SRP_BF16);
        c.y[k] = rand_buf((int64_t)T * H * P, SRP_BF16);
    }
    c.st.ssm = rand_buf((int64_t)n_seqs * n_slots_rotate * H * P * N, SRP_F32);
    c.st.conv_dtype = SRP_BF16;
    c.p = (srp_mamba_params){ H, P, G, N, K, 128, 0.0f, INFINITY, &w_alog, &w_dtb, &w_d };
    srp_batch b = { n_seqs, T, tokens, start, past, slot, NULL, 0, 0, NULL, NULL };
    if (be->begin_step(be, &b, &err)) die("begin_step");
    double t = time_op(ssd_op, &c, len >= 8192 ? 5 : 20);
    /* the algorithm's work with 64-token chunks: CB (causal half), M x, C S^T, x^T B */
    double per_tok_head = 2.0 * (32.0 * (N + P) + 2.0 * N * P);
    double flops = per_tok_head * H * T;
    double bytes = set_bytes + 2.0 * n_seqs * H * P * N * 4;
    record(name, t, bytes, flops);
    for (int k = 0; k < c.n_sets; k++) {
        be->free(be, c.x[k]);
        be->free(be, c.bc[k]);
        be->free(be, c.dt[k]);
        be->free(be, c.y[k]);
    }
    be->free(be, c.st.ssm);
}

/* The one-token update at batch B: slots rotate so the states come from memory. */
typedef struct upd_ctx {
    int B, rotate;
    float *states; /* rotate x B slots */
    void *x, *bc, *dt, *y;
    srp_mamba_state st;
    srp_mamba_params p;
} upd_ctx;

static int32_t upd_tokens[4096], upd_start[4097], upd_past[4096];

static void upd_op(int i, void *vctx) {
    upd_ctx *c = vctx;
    /* slots 0..B-1 of a pool that starts somewhere else each time: fresh memory, one batch */
    c->st.ssm = c->states + (int64_t)(i % c->rotate) * c->B * H * P * N;
    srp_mat x = { c->x, SRP_BF16, c->B, H * P, H * P };
    srp_mat bc = { c->bc, SRP_BF16, c->B, 2 * G * N, 2 * G * N };
    srp_mat dt = { c->dt, SRP_BF16, c->B, H, H };
    srp_mat y = { c->y, SRP_BF16, c->B, H * P, H * P };
    if (be->ssd(be, &c->p, x, srp_mat_cols(bc, 0, G * N), srp_mat_cols(bc, G * N, G * N), dt,
                &c->st, y, &err))
        die("ssd update");
}

static void bench_update(int B) {
    char name[64];
    snprintf(name, sizeof name, "state update batch %d", B);
    if (!wanted(name)) return;
    upd_ctx c = { 0 };
    c.B = B;
    const double state_bytes = (double)H * P * N * 4;
    c.rotate = (int)fmax(1, ceil(ROTATE_BYTES / (B * state_bytes)));
    for (int s = 0; s <= B; s++) upd_start[s] = s;
    for (int s = 0; s < B; s++) upd_past[s] = 5;
    srp_backend_limits lim = { B, B, 1, 1, 1 };
    if (be->configure(be, &lim, &err)) die("configure");
    static int32_t slots[4096];
    for (int i = 0; i < B; i++) slots[i] = i;
    c.x = rand_buf((int64_t)B * H * P, SRP_BF16);
    c.bc = rand_buf((int64_t)B * 2 * G * N, SRP_BF16);
    c.dt = rand_buf((int64_t)B * H, SRP_BF16);
    c.y = rand_buf((int64_t)B * H * P, SRP_BF16);
    c.states = rand_buf((int64_t)B * c.rotate * H * P * N, SRP_F32);
    c.p = (srp_mamba_params){ H, P, G, N, K, 128, 0.0f, INFINITY, &w_alog, &w_dtb, &w_d };
    srp_batch b = { B, B, upd_tokens, upd_start, upd_past, slots, NULL, 0, 0, NULL, NULL };
    if (be->begin_step(be, &b, &err)) die("begin_step");
    double t = time_op(upd_op, &c, 50);
    record(name, t, B * (2 * state_bytes + (H * P * 2 * 2 + 2 * G * N * 2 + H * 2)),
           B * 4.0 * H * P * N);
    be->free(be, c.x), be->free(be, c.bc), be->free(be, c.dt), be->free(be, c.y);
    be->free(be, c.states);
}

/* conv1d over T tokens of n_seqs sequences. */
typedef struct conv_ctx {
    int T, n_sets;
    void *x[16], *o[16];
    srp_weight w, b;
    srp_mamba_state st;
} conv_ctx;

static void conv_op(int i, void *vctx) {
    conv_ctx *c = vctx;
    int k = i % c->n_sets;
    srp_mat x = { c->x[k], SRP_BF16, c->T, CONV_DIM, CONV_DIM };
    srp_mat o = { c->o[k], SRP_BF16, c->T, CONV_DIM, CONV_DIM };
    if (be->conv1d(be, x, &c->w, &c->b, K, &c->st, o, &err)) die("conv1d");
}

static void bench_conv(const char *name, int n_seqs, int len) {
    if (!wanted(name)) return;
    const int T = n_seqs * len;
    static int32_t tokens[65536], start[4097], past[4096], slot[4096];
    for (int s = 0; s <= n_seqs; s++) start[s] = s * len;
    for (int s = 0; s < n_seqs; s++) past[s] = 3, slot[s] = s;
    srp_backend_limits lim = { T, n_seqs, 1, 1, 1 };
    if (be->configure(be, &lim, &err)) die("configure");
    conv_ctx c = { 0 };
    c.T = T;
    double set_bytes = 2.0 * T * CONV_DIM * 2;
    c.n_sets = (int)fmin(16, fmax(1, ceil(ROTATE_BYTES / set_bytes)));
    for (int k = 0; k < c.n_sets; k++) {
        c.x[k] = rand_buf((int64_t)T * CONV_DIM, SRP_BF16);
        c.o[k] = rand_buf((int64_t)T * CONV_DIM, SRP_BF16);
    }
    float *w = malloc(sizeof(float) * CONV_DIM * K);
    for (int i = 0; i < CONV_DIM * K; i++) w[i] = 0.1f * (float)(i % 7);
    if (be->weight_load(be, w, SRP_F32, CONV_DIM, K, 0, &c.w, &err)) die("conv weight");
    free(w);
    c.b = vec_weight(CONV_DIM, -0.1f, 0.1f);
    c.st.conv = rand_buf((int64_t)n_seqs * CONV_DIM * (K - 1), SRP_BF16);
    c.st.conv_dtype = SRP_BF16;
    srp_batch b = { n_seqs, T, tokens, start, past, slot, NULL, 0, 0, NULL, NULL };
    if (be->begin_step(be, &b, &err)) die("begin_step");
    double t = time_op(conv_op, &c, 50);
    record(name, t, set_bytes + 2.0 * n_seqs * CONV_DIM * (K - 1) * 2, 2.0 * T * CONV_DIM * K);
    for (int k = 0; k < c.n_sets; k++) be->free(be, c.x[k]), be->free(be, c.o[k]);
    be->free(be, c.st.conv);
    be->weight_free(be, &c.w);
    be->weight_free(be, &c.b);
}

/* Decode-time products (few rows) of the 8B layer's matrices: the memory-speed GEMV path against
 * cuBLAS (the same backend made with SERPENT_NO_GEMV=1). Weights are >= 64 MB, past the L2. */
typedef struct gemv_ctx {
    srp_backend *b;
    srp_mat x, o;
    srp_weight w;
} gemv_ctx;

static void gemv_op(int i, void *vctx) {
    (void)i;
    gemv_ctx *c = vctx;
    if (c->b->gemm(c->b, c->x, &c->w, NULL, c->o, 1.0f, c->o.dtype == SRP_F32, &err)) die("gemm");
}

static void bench_gemv(srp_backend *blas, const char *what, int M, int Nr, int Kc, int f32_out) {
    char name[64];
    snprintf(name, sizeof name, "%s M=%d", what, M);
    if (!wanted(name)) return;
    srp_backend_limits lim = { M, M, 1, M, 1 };
    if (be->configure(be, &lim, &err) || blas->configure(blas, &lim, &err)) die("configure");
    gemv_ctx c = { be,
                   { rand_buf((int64_t)M * Kc, SRP_BF16), SRP_BF16, M, Kc, Kc },
                   { rand_buf((int64_t)M * Nr, f32_out ? SRP_F32 : SRP_BF16),
                     f32_out ? SRP_F32 : SRP_BF16, M, Nr, Nr },
                   { { rand_buf((int64_t)Nr * Kc, SRP_BF16), SRP_BF16, Nr, Kc, Kc }, 0 } };
    const double bytes = (double)Nr * Kc * 2 + (double)M * (Kc * 2 + Nr * (f32_out ? 8 : 2));
    record(name, time_op(gemv_op, &c, 20), bytes, 2.0 * M * Nr * Kc);
    char name2[80];
    snprintf(name2, sizeof name2, "%s (cuBLAS)", name);
    c.b = blas;
    timed = blas; /* its own stream */
    record(name2, time_op(gemv_op, &c, 20), bytes, 2.0 * M * Nr * Kc);
    timed = NULL;
    be->free(be, c.x.data), be->free(be, c.o.data), be->free(be, c.w.m.data);
}

static void write_json(const char *path, const char *commit, const char *clocks, int argc,
                       char **argv) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s\n", path);
        return;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    fprintf(f, "{\n  \"benchmark\": \"kernels\",\n  \"commit\": \"%s\",\n  \"gpu\": \"%s\",\n",
            commit, prop.name);
    fprintf(f, "  \"clocks\": \"%s\",\n  \"command\": \"", clocks);
    for (int i = 0; i < argc; i++) fprintf(f, "%s%s", i ? " " : "", argv[i]);
    fprintf(f, "\",\n  \"copy_bandwidth_bytes_per_s\": %.4g,\n  \"bf16_gemm_flops_per_s\": %.4g,\n",
            bw_bytes_per_s, mma_flops_per_s);
    fprintf(f,
            "  \"shape\": {\"heads\": %d, \"head_dim\": %d, \"state\": %d, \"groups\": %d, "
            "\"conv\": %d},\n  \"results\": [\n",
            H, P, N, G, K);
    for (int i = 0; i < n_rows; i++) {
        double floor_s = fmax(rows[i].bytes / bw_bytes_per_s, rows[i].flops / mma_flops_per_s);
        fprintf(f,
                "    {\"name\": \"%s\", \"seconds\": %.4g, \"bytes\": %.4g, \"flops\": %.4g, "
                "\"floor_seconds\": %.4g, \"roofline_fraction\": %.3f}%s\n",
                rows[i].name, rows[i].seconds, rows[i].bytes, rows[i].flops, floor_s,
                floor_s / rows[i].seconds, i + 1 < n_rows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

int main(int argc, char **argv) {
    const char *json = NULL, *commit = "unknown", *clocks = "unknown";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--json"))
            json = argv[i + 1];
        else if (!strcmp(argv[i], "--commit"))
            commit = argv[i + 1];
        else if (!strcmp(argv[i], "--clocks"))
            clocks = argv[i + 1];
    }
    if (srp_backend_cuda_create(0, &be, &err)) die("cuda");
    measure_ceilings();
    w_alog = vec_weight(H, 0.0f, 2.7f); /* A from -1 to -15, as trained models spread it */
    w_dtb = vec_weight(H, -6.0f, -2.0f);
    w_d = vec_weight(H, 0.5f, 1.5f);
    bench_ssd("ssd prefill 512", 1, 512, 1);
    bench_ssd("ssd prefill 2K", 1, 2048, 1);
    bench_ssd("ssd prefill 8K", 1, 8192, 1);
    bench_ssd("ssd prefill 32K", 1, 32768, 1);
    bench_ssd("ssd prefill 8 x 2K", 8, 2048, 1);
    int batches[5] = { 1, 8, 32, 128, 256 };
    for (int i = 0; i < 5; i++) bench_update(batches[i]);
    bench_conv("conv1d prefill 8K", 1, 8192);
    bench_conv("conv1d update batch 128", 128, 1);
    srp_backend *blas = NULL;
    setenv("SERPENT_NO_GEMV", "1", 1);
    if (srp_backend_cuda_create(0, &blas, &err)) die("cuda (cuBLAS only)");
    unsetenv("SERPENT_NO_GEMV");
    const int ms[3] = { 1, 4, 8 };
    for (int i = 0; i < 3; i++) {
        bench_gemv(blas, "gemv in_proj 18560x4096", ms[i], H * P * 2 + 2 * G * N + H, 4096, 0);
        bench_gemv(blas, "gemv out_proj 4096x8192", ms[i], 4096, H * P, 1);
        bench_gemv(blas, "gemv mlp up 16384x4096", ms[i], 16384, 4096, 0);
        bench_gemv(blas, "gemv mlp down 4096x16384", ms[i], 4096, 16384, 1);
        bench_gemv(blas, "gemv lm_head 131072x4096", ms[i], 131072, 4096, 1);
    }
    blas->destroy(blas);
    if (json) write_json(json, commit, clocks, argc, argv);
    be->destroy(be);
    return 0;
}
