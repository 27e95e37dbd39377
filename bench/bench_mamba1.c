/* Mamba-1 kernel benchmarks on the GPU against the roofline, for one layer of Mamba-2.8B
 * (d_model 2560, d_inner 5120, d_state 16, dt_rank 160, conv 4; bench/configs/mamba-2.8b).
 *
 *   bench_mamba1 [--json FILE] [--commit SHA] [--clocks TEXT] [--only NAME]
 *
 * Ceilings measured or read here: copy bandwidth (a device-to-device copy, bytes read plus
 * written) and the SFU rate (16 exponentials per clock per SM on sm_80 and sm_90, at the clock
 * the device reports). The selective scan evaluates exp(delta A) once per channel, state and
 * token, plus softplus and silu per channel and token, so its compute floor is that count over
 * the SFU rate; the memory floor is its bytes over the copy bandwidth. Each row gives both and
 * the fraction of each reached. Inputs rotate over buffers larger than the L2 cache. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "dtype.h"

#define DI           5120
#define NS           16
#define RANK         160
#define K            4
#define PW           (3 * DI + RANK + 2 * NS) /* the mixer's projection buffer */
#define ROTATE_BYTES (256ll << 20)

static srp_backend *be;
static srp_err err;
static double bw, sfu; /* bytes/s, exponentials/s */
static const char *only;

static void die(const char *what) {
    fprintf(stderr, "bench_mamba1: %s: %s\n", what, err.msg);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void sync(void) {
    if (be->sync(be, &err)) die("sync");
}

static void *rand_buf(int64_t n, srp_dtype t, float lo, float hi) {
    size_t es = srp_dtype_size(t);
    void *host = malloc((size_t)n * es), *dev = NULL;
    uint64_t s = 0x853c49e6748fea9bull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float v = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
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

static srp_weight vec_weight(int64_t rows, int64_t cols, float lo, float hi) {
    const int64_t n = rows * cols;
    float *v = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * (float)(i % 977) / 976.0f;
    srp_weight w;
    if (be->weight_load(be, v, SRP_F32, rows, cols, 0, &w, &err)) die("weight");
    free(v);
    return w;
}

typedef struct row {
    char name[64];
    double seconds, bytes, exps;
} row;

static row rows[32];
static int n_rows;

static void record(const char *name, double seconds, double bytes, double exps) {
    row *r = &rows[n_rows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->seconds = seconds, r->bytes = bytes, r->exps = exps;
    const double mem = bytes / bw, sf = exps / sfu;
    printf("%-26s %9.1f us %9.1f MB  memory floor %8.1f us (%5.1f%%)  SFU floor %8.1f us "
           "(%5.1f%%)\n",
           name, seconds * 1e6, bytes / 1e6, mem * 1e6, 100 * mem / seconds, sf * 1e6,
           100 * sf / seconds);
    fflush(stdout);
}

typedef void (*op_fn)(int i, void *ctx);

/* Median of 5 batches of reps calls, after 3 warm-up calls. */
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
    void *a = rand_buf(bytes / 2, SRP_BF16, -1, 1), *b = rand_buf(bytes / 2, SRP_BF16, -1, 1);
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
    cudaDeviceSynchronize();
    double best = 1e9;
    for (int r = 0; r < 10; r++) {
        double t0 = now();
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaDeviceSynchronize();
        best = fmin(best, now() - t0);
    }
    bw = 2.0 * bytes / best;
    be->free(be, a);
    be->free(be, b);
    int sms = 0, khz = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0);
    sfu = 16.0 * sms * khz * 1e3;
    printf("ceilings: copy %.2f TB/s (read + write); SFU %.2f T exp/s (%d SMs x 16 x %.2f GHz)\n\n",
           bw / 1e12, sfu / 1e12, sms, khz / 1e6);
}

static srp_weight w_alog, w_dtb, w_d, w_conv, w_convb;

/* ---- the selective scan -------------------------------------------------------------------- */
typedef struct scan_ctx {
    int T, n_sets, n_seqs, rotate;
    void *x[16], *proj[16], *y[16];
    float *states; /* rotate x n_seqs slots */
    srp_mamba_state st;
} scan_ctx;

static void scan_op(int i, void *vctx) {
    scan_ctx *c = vctx;
    const int k = i % c->n_sets;
    c->st.ssm = c->states + (int64_t)(i % c->rotate) * c->n_seqs * DI * NS;
    srp_mat x = { c->x[k], SRP_BF16, c->T, DI, DI }, y = { c->y[k], SRP_BF16, c->T, DI, DI };
    srp_mat proj = { c->proj[k], SRP_BF16, c->T, PW, PW };
    const srp_s6_params p = { DI, NS, &w_alog, &w_dtb, &w_d };
    if (be->selective_scan(be, &p, x, srp_mat_cols(proj, 2 * DI, DI),
                           srp_mat_cols(proj, 3 * DI + RANK, NS),
                           srp_mat_cols(proj, 3 * DI + RANK + NS, NS), srp_mat_cols(proj, DI, DI),
                           &c->st, y, &err))
        die("selective_scan");
}

static int32_t tokens[65536], start[1025], past[1024], slot[1024];

static void bench_scan(const char *name, int n_seqs, int len) {
    if (only && !strstr(name, only)) return;
    const int T = n_seqs * len;
    for (int s = 0; s <= n_seqs; s++) start[s] = s * len;
    for (int s = 0; s < n_seqs; s++) past[s] = 1, slot[s] = s;
    const double state_bytes = (double)DI * NS * 4;
    scan_ctx c = { 0 };
    c.T = T, c.n_seqs = n_seqs;
    c.rotate = (int)fmax(1, ceil(ROTATE_BYTES / (n_seqs * state_bytes)));
    srp_backend_limits lim = { T, n_seqs, 1, 1, 1 };
    if (be->configure(be, &lim, &err)) die("configure");
    const double set_bytes = (double)T * (DI * 2 + PW * 2 + DI * 2);
    c.n_sets = (int)fmin(16, fmax(1, ceil(ROTATE_BYTES / set_bytes)));
    for (int k = 0; k < c.n_sets; k++) {
        c.x[k] = rand_buf((int64_t)T * DI, SRP_BF16, -2, 2);
        c.proj[k] = rand_buf((int64_t)T * PW, SRP_BF16, -1.5f, 1.5f);
        c.y[k] = rand_buf((int64_t)T * DI, SRP_BF16, 0, 0);
    }
    c.states = rand_buf((int64_t)c.rotate * n_seqs * DI * NS, SRP_F32, -1, 1);
    srp_batch b = { n_seqs, T, tokens, start, past, slot, NULL, 0, 0, NULL, NULL };
    if (be->begin_step(be, &b, &err)) die("begin_step");
    const double t = time_op(scan_op, &c, len >= 8192 ? 5 : len > 1 ? 20 : 200);
    /* x, dt, z, B, C read, y written (bf16); every sequence's state read and written; A_log */
    const double bytes = (double)T * (4.0 * DI * 2 + 2.0 * NS * 2) + n_seqs * 2.0 * state_bytes +
                         (double)DI * NS * 4;
    /* exp(delta A) per channel, state, token; softplus (2) and silu (2) per channel, token */
    const double exps = (double)T * DI * (NS + 4);
    record(name, t, bytes, exps);
    for (int k = 0; k < c.n_sets; k++) {
        be->free(be, c.x[k]);
        be->free(be, c.proj[k]);
        be->free(be, c.y[k]);
    }
    be->free(be, c.states);
}

/* ---- conv1d over Mamba-1's x ---------------------------------------------------------------- */
typedef struct conv_ctx {
    int T, n_sets;
    void *proj[16], *o[16];
    srp_mamba_state st;
} conv_ctx;

static void conv_op(int i, void *vctx) {
    conv_ctx *c = vctx;
    const int k = i % c->n_sets;
    srp_mat proj = { c->proj[k], SRP_BF16, c->T, PW, PW }, o = { c->o[k], SRP_BF16, c->T, DI, DI };
    if (be->conv1d(be, srp_mat_cols(proj, 0, DI), &w_conv, &w_convb, K, &c->st, o, &err))
        die("conv1d");
}

static void bench_conv(const char *name, int n_seqs, int len) {
    if (only && !strstr(name, only)) return;
    const int T = n_seqs * len;
    for (int s = 0; s <= n_seqs; s++) start[s] = s * len;
    for (int s = 0; s < n_seqs; s++) past[s] = 3, slot[s] = s;
    srp_backend_limits lim = { T, n_seqs, 1, 1, 1 };
    if (be->configure(be, &lim, &err)) die("configure");
    conv_ctx c = { 0 };
    c.T = T;
    const double set_bytes = (double)T * (PW + DI) * 2;
    c.n_sets = (int)fmin(16, fmax(1, ceil(ROTATE_BYTES / set_bytes)));
    for (int k = 0; k < c.n_sets; k++) {
        c.proj[k] = rand_buf((int64_t)T * PW, SRP_BF16, -1, 1);
        c.o[k] = rand_buf((int64_t)T * DI, SRP_BF16, 0, 0);
    }
    c.st.conv = rand_buf((int64_t)n_seqs * DI * (K - 1), SRP_BF16, -1, 1);
    c.st.conv_dtype = SRP_BF16;
    srp_batch b = { n_seqs, T, tokens, start, past, slot, NULL, 0, 0, NULL, NULL };
    if (be->begin_step(be, &b, &err)) die("begin_step");
    const double t = time_op(conv_op, &c, 50);
    record(name, t, 2.0 * T * DI * 2 + 2.0 * n_seqs * DI * (K - 1) * 2, 2.0 * T * DI);
    for (int k = 0; k < c.n_sets; k++) be->free(be, c.proj[k]), be->free(be, c.o[k]);
    be->free(be, c.st.conv);
}

static void write_json(const char *path, const char *commit, const char *clocks, int argc,
                       char **argv) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_mamba1: cannot write %s\n", path);
        return;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    fprintf(f,
            "{\n  \"benchmark\": \"mamba1 kernels\",\n  \"commit\": \"%s\",\n  \"gpu\": \"%s\",\n",
            commit, prop.name);
    fprintf(f, "  \"clocks\": \"%s\",\n  \"command\": \"", clocks);
    for (int i = 0; i < argc; i++) fprintf(f, "%s%s", i ? " " : "", argv[i]);
    fprintf(f, "\",\n  \"copy_bandwidth_bytes_per_s\": %.4g,\n  \"sfu_exp_per_s\": %.4g,\n", bw,
            sfu);
    fprintf(f,
            "  \"shape\": {\"d_inner\": %d, \"state\": %d, \"dt_rank\": %d, \"conv\": %d},\n"
            "  \"results\": [\n",
            DI, NS, RANK, K);
    for (int i = 0; i < n_rows; i++) {
        const double mem = rows[i].bytes / bw, sf = rows[i].exps / sfu;
        fprintf(f,
                "    {\"name\": \"%s\", \"seconds\": %.4g, \"bytes\": %.4g, \"exps\": %.4g, "
                "\"memory_floor_seconds\": %.4g, \"memory_roofline_fraction\": %.3f, "
                "\"sfu_floor_seconds\": %.4g, \"sfu_roofline_fraction\": %.3f}%s\n",
                rows[i].name, rows[i].seconds, rows[i].bytes, rows[i].exps, mem,
                mem / rows[i].seconds, sf, sf / rows[i].seconds, i + 1 < n_rows ? "," : "");
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
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
    }
    if (srp_backend_cuda_create(0, &be, &err)) die("cuda");
    measure_ceilings();
    /* A = -exp(A_log) from -1 to -16 as S4D-real starts it; softplus(dt + bias) around 0.01 */
    w_alog = vec_weight(DI, NS, 0.0f, 2.77f);
    w_dtb = vec_weight(1, DI, -6.0f, -2.0f);
    w_d = vec_weight(1, DI, 0.5f, 1.5f);
    w_conv = vec_weight(DI, K, -0.5f, 0.5f);
    w_convb = vec_weight(1, DI, -0.1f, 0.1f);
    bench_scan("scan prefill 2K", 1, 2048);
    bench_scan("scan prefill 8K", 1, 8192);
    bench_scan("scan prefill 8 x 2K", 8, 2048);
    const int batches[3] = { 1, 64, 256 };
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "scan decode batch %d", batches[i]);
        bench_scan(name, batches[i], 1);
    }
    bench_conv("conv1d prefill 8K", 1, 8192);
    bench_conv("conv1d decode batch 64", 64, 1);
    if (json) write_json(json, commit, clocks, argc, argv);
    be->destroy(be);
    return 0;
}
