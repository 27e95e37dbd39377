/* Every CUDA backend operation against the CPU backend on fresh random inputs (GPU machine only;
 * ctest label "gpu"). Inputs are rounded to bf16 first and both backends get the same values, so
 * the comparison measures the kernels, not the input rounding. GPU outputs are filled with NaN
 * before each run, so an element a kernel forgets to write fails the test. */
#include <float.h>
#include <stdint.h>

#include "backend.h"
#include "dtype.h"
#include "sample_twin.h"
#include "sampler.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float urand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0));
}

static float *randv(int64_t n, float scale) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = srp_bf16_to_f32(srp_f32_to_bf16((urand() + urand() + urand() - 1.5f) * 2 * scale));
    return v;
}

typedef struct pair {
    srp_backend *cpu, *gpu;
} pair;

static pair backends(int max_tokens, int max_seqs, int max_blocks, int max_logits, int vocab) {
    pair p = { 0 };
    srp_err e = { 0 };
    if (srp_backend_cpu_create(0, &p.cpu, &e) || srp_backend_cuda_create(0, &p.gpu, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    srp_backend_limits lim = { max_tokens, max_seqs, max_blocks, max_logits, vocab };
    if (p.gpu->configure(p.gpu, &lim, &e) || p.cpu->configure(p.cpu, &lim, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    return p;
}

static void release(pair *p) {
    p->cpu->destroy(p->cpu);
    p->gpu->destroy(p->gpu);
}

/* A matrix on a backend, filled from host floats (NULL: NaN poison). */
static srp_mat put(srp_backend *be, srp_dtype t, int64_t rows, int64_t cols, const float *host) {
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

static float *get(srp_backend *be, srp_mat m) {
    size_t n = (size_t)(m.rows * m.ld), es = srp_dtype_size(m.dtype);
    void *tmp = malloc(n * es);
    float *out = malloc((size_t)(m.rows * m.cols) * sizeof(float));
    srp_err e = { 0 };
    if (be->download(be, tmp, m.data, n * es, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
    for (int64_t r = 0; r < m.rows; r++)
        srp_convert_to_f32(out + r * m.cols, (char *)tmp + (size_t)(r * m.ld) * es, m.dtype,
                           (size_t)m.cols);
    free(tmp);
    return out;
}

static srp_weight weight(srp_backend *be, const float *host, int64_t rows, int64_t cols,
                         int is_matrix) {
    srp_weight w;
    srp_err e = { 0 };
    if (be->weight_load(be, host, SRP_F32, rows, cols, is_matrix, &w, &e)) abort();
    return w;
}

/* ||a - b|| / ||b||; NaN anywhere in a counts as a failure (an unwritten element). */
static double rel(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i]) return INFINITY;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

typedef struct test_batch {
    srp_batch b;
    int32_t tokens[8192], start[65], past[64], slot[64], table[64 * 64], rows[4096];
} test_batch;

static void make_batch(test_batch *tb, int n, const int *len, const int *past) {
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

static void begin(pair *p, const srp_batch *b) {
    srp_err e = { 0 };
    if (p->cpu->begin_step(p->cpu, b, &e) || p->gpu->begin_step(p->gpu, b, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
}

TEST(gpu_gemm) {
    static const struct {
        int M, K, N, f32_out, acc, bias;
        float alpha;
    } cases[] = { { 1, 64, 128, 0, 0, 0, 1.0f },
                  { 37, 96, 200, 0, 0, 1, 0.25f },
                  { 130, 256, 72, 1, 1, 0, 1.0f },
                  { 5, 4096, 1024, 1, 1, 1, 3.5f },
                  { 512, 512, 512, 0, 0, 0, 1.0f },
                  /* the GEMV path (M <= 8): odd row counts, long rows, every epilogue */
                  { 2, 16384, 131, 1, 1, 1, 0.5f },
                  { 3, 1024, 4099, 0, 0, 1, 1.0f },
                  { 8, 4096, 1000, 1, 1, 0, 2.0f },
                  { 7, 8, 9, 0, 1, 1, 1.0f } };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int M = cases[c].M, K = cases[c].K, N = cases[c].N;
        pair p = backends(M, 1, 1, 1, 1);
        srp_err e = { 0 };
        float *x = randv((int64_t)M * K, 1), *w = randv((int64_t)N * K, 0.1f), *bias = randv(N, 1);
        float *o0 = randv((int64_t)M * N, 1);
        srp_dtype ot = cases[c].f32_out ? SRP_F32 : SRP_BF16;
        srp_weight wc = weight(p.cpu, w, N, K, 1), wg = weight(p.gpu, w, N, K, 1);
        srp_weight bc = weight(p.cpu, bias, 1, N, 0), bg = weight(p.gpu, bias, 1, N, 0);
        srp_mat xc = put(p.cpu, SRP_F32, M, K, x), xg = put(p.gpu, SRP_BF16, M, K, x);
        srp_mat oc = put(p.cpu, SRP_F32, M, N, o0),
                og = put(p.gpu, ot, M, N, cases[c].acc ? o0 : NULL);
        REQUIRE(p.cpu->gemm(p.cpu, xc, &wc, cases[c].bias ? &bc : NULL, oc, cases[c].alpha,
                            cases[c].acc, &e) == 0);
        REQUIRE(p.gpu->gemm(p.gpu, xg, &wg, cases[c].bias ? &bg : NULL, og, cases[c].alpha,
                            cases[c].acc, &e) == 0);
        float *a = get(p.gpu, og), *b = get(p.cpu, oc);
        double err = rel(a, b, (int64_t)M * N);
        CHECKF(err < 1e-2, "gemm %dx%dx%d: %.3g", M, K, N, err);
        fprintf(stderr, "  gemm %d x %d x %d %s%s: rel err %.2e\n", M, K, N,
                ot == SRP_F32 ? "f32" : "bf16", cases[c].acc ? " +acc" : "", err);
        free(x), free(w), free(bias), free(o0), free(a), free(b);
        release(&p);
    }
}

TEST(gpu_rowwise_ops) {
    const int R = 19, C = 1536, G = 256, V = 300;
    pair p = backends(R, 4, 1, R, V);
    srp_err e = { 0 };
    int len[3] = { 7, 1, 11 }, past[3] = { 0, 4, 2 };
    test_batch tb;
    make_batch(&tb, 3, len, past);
    for (int t = 0; t < R; t++) tb.tokens[t] = (t * 37) % V;
    tb.b.n_logits = 5;
    int32_t rows[5] = { 6, 7, 18, 0, 9 };
    tb.b.logit_rows = rows;
    begin(&p, &tb.b);
    float *x = randv((int64_t)R * C, 2), *z = randv((int64_t)R * C, 2), *w = randv(C, 1);
    float *table = randv((int64_t)V * C, 1);
    srp_weight wc = weight(p.cpu, w, 1, C, 0), wg = weight(p.gpu, w, 1, C, 0);
    srp_weight tc = weight(p.cpu, table, V, C, 1), tg = weight(p.gpu, table, V, C, 1);
    /* embed */
    srp_mat ec = put(p.cpu, SRP_F32, R, C, NULL), eg = put(p.gpu, SRP_F32, R, C, NULL);
    REQUIRE(p.cpu->embed(p.cpu, &tc, 1.5f, ec, &e) == 0 &&
            p.gpu->embed(p.gpu, &tg, 1.5f, eg, &e) == 0);
    float *a = get(p.gpu, eg), *b = get(p.cpu, ec);
    CHECK(rel(a, b, (int64_t)R * C) == 0.0);
    free(a), free(b);
    /* rmsnorm: fp32 residual in, bf16 out */
    srp_mat xc = put(p.cpu, SRP_F32, R, C, x), xg = put(p.gpu, SRP_F32, R, C, x);
    srp_mat oc = put(p.cpu, SRP_F32, R, C, NULL), og = put(p.gpu, SRP_BF16, R, C, NULL);
    REQUIRE(p.cpu->rmsnorm(p.cpu, xc, &wc, 1e-5f, oc, &e) == 0);
    REQUIRE(p.gpu->rmsnorm(p.gpu, xg, &wg, 1e-5f, og, &e) == 0);
    a = get(p.gpu, og), b = get(p.cpu, oc);
    CHECKF(rel(a, b, (int64_t)R * C) < 1e-2, "rmsnorm %.3g", rel(a, b, (int64_t)R * C));
    free(a), free(b);
    /* gated rmsnorm, bf16 in and out, groups of G */
    srp_mat yc = put(p.cpu, SRP_F32, R, C, x), yg = put(p.gpu, SRP_BF16, R, C, x);
    srp_mat zc = put(p.cpu, SRP_F32, R, C, z), zg = put(p.gpu, SRP_BF16, R, C, z);
    srp_mat gc = put(p.cpu, SRP_F32, R, C, NULL), gg = put(p.gpu, SRP_BF16, R, C, NULL);
    REQUIRE(p.cpu->gated_rmsnorm(p.cpu, yc, zc, &wc, G, 1e-5f, gc, &e) == 0);
    REQUIRE(p.gpu->gated_rmsnorm(p.gpu, yg, zg, &wg, G, 1e-5f, gg, &e) == 0);
    a = get(p.gpu, gg), b = get(p.cpu, gc);
    CHECKF(rel(a, b, (int64_t)R * C) < 1e-2, "gated rmsnorm %.3g", rel(a, b, (int64_t)R * C));
    free(a), free(b);
    /* activations in place on a column slice (ld > cols) */
    static const srp_act acts[] = { SRP_ACT_RELU2, SRP_ACT_RELU, SRP_ACT_GELU, SRP_ACT_GELU_TANH,
                                    SRP_ACT_SILU };
    for (int k = 0; k < 5; k++) {
        srp_mat ac = put(p.cpu, SRP_F32, R, C, x), ag = put(p.gpu, SRP_BF16, R, C, x);
        REQUIRE(p.cpu->activate(p.cpu, acts[k], srp_mat_cols(ac, 100, 700), &e) == 0);
        REQUIRE(p.gpu->activate(p.gpu, acts[k], srp_mat_cols(ag, 100, 700), &e) == 0);
        a = get(p.gpu, ag), b = get(p.cpu, ac);
        CHECKF(rel(a, b, (int64_t)R * C) < 1e-2, "activation %s", srp_act_name(acts[k]));
        free(a), free(b);
    }
    /* gather */
    srp_mat hc = put(p.cpu, SRP_F32, 5, C, NULL), hg = put(p.gpu, SRP_F32, 5, C, NULL);
    REQUIRE(p.cpu->gather_rows(p.cpu, xc, hc, &e) == 0 &&
            p.gpu->gather_rows(p.gpu, xg, hg, &e) == 0);
    a = get(p.gpu, hg), b = get(p.cpu, hc);
    CHECK(rel(a, b, 5 * C) == 0.0);
    free(a), free(b);
    free(x), free(z), free(w), free(table);
    release(&p);
}

TEST(gpu_conv1d) {
    /* a mixed step, then a decode-only step (its own kernel), for kernels 2 to 4 */
    for (int run = 0; run < 6; run++) {
        const int kernel = 2 + run % 3, decode = run >= 3;
        const int C = 1000, S = 64, km1 = kernel - 1;
        int len[5] = { 1, 9, 2, 1, 70 }, past[5] = { 5, 0, 3, 0, 2 };
        if (decode)
            for (int i = 0; i < 5; i++) len[i] = 1;
        test_batch tb;
        make_batch(&tb, 5, len, past);
        const int T = tb.b.n_tokens;
        pair p = backends(T, 5, 1, 1, 1);
        srp_err e = { 0 };
        begin(&p, &tb.b);
        float *x = randv((int64_t)T * C, 1), *w = randv((int64_t)C * kernel, 1),
              *bias = randv(C, 1);
        float *st = randv((int64_t)S * C * km1, 1);
        srp_weight wc = weight(p.cpu, w, C, kernel, 0), wg = weight(p.gpu, w, C, kernel, 0);
        srp_weight bc = weight(p.cpu, bias, 1, C, 0), bg = weight(p.gpu, bias, 1, C, 0);
        srp_mat sc = put(p.cpu, SRP_F32, S, C * km1, st), sg = put(p.gpu, SRP_BF16, S, C * km1, st);
        srp_mamba_state msc = { sc.data, SRP_F32, NULL }, msg = { sg.data, SRP_BF16, NULL };
        /* the input is a column slice of a wider projection, as in the model */
        srp_mat xc = put(p.cpu, SRP_F32, T, C + 40, NULL),
                xg = put(p.gpu, SRP_BF16, T, C + 40, NULL);
        float *wide = malloc(sizeof(float) * T * (C + 40));
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C + 40; c++)
                wide[t * (C + 40) + c] = c >= 20 && c < 20 + C ? x[t * C + c - 20] : 0;
        srp_mat xc2 = put(p.cpu, SRP_F32, T, C + 40, wide),
                xg2 = put(p.gpu, SRP_BF16, T, C + 40, wide);
        (void)xc, (void)xg;
        srp_mat oc = put(p.cpu, SRP_F32, T, C, NULL), og = put(p.gpu, SRP_BF16, T, C, NULL);
        REQUIRE(p.cpu->conv1d(p.cpu, srp_mat_cols(xc2, 20, C), &wc, &bc, kernel, &msc, oc, &e) ==
                0);
        REQUIRE(p.gpu->conv1d(p.gpu, srp_mat_cols(xg2, 20, C), &wg, &bg, kernel, &msg, og, &e) ==
                0);
        float *a = get(p.gpu, og), *b = get(p.cpu, oc);
        double err = rel(a, b, (int64_t)T * C);
        CHECKF(err < 1e-2, "conv1d kernel %d: %.3g", kernel, err);
        free(a), free(b);
        a = get(p.gpu, sg), b = get(p.cpu, sc);
        err = rel(a, b, (int64_t)S * C * km1);
        CHECKF(err == 0.0, "conv1d kernel %d state: %.3g", kernel, err); /* copies, no arithmetic */
        fprintf(stderr, "  conv1d kernel %d%s: ok\n", kernel, decode ? " (decode)" : "");
        free(a), free(b), free(x), free(w), free(bias), free(st), free(wide);
        release(&p);
    }
}

/* The scan on a batch mixing prefill and decode sequences, some continuing from their slot. */
static void check_ssd(int H, int P, int N, int G, int n, const int *len, const int *past,
                      double y_tol, double state_tol) {
    const int S = 64;
    test_batch tb;
    make_batch(&tb, n, len, past);
    const int T = tb.b.n_tokens;
    pair p = backends(T, n, 1, 1, 1);
    srp_err e = { 0 };
    begin(&p, &tb.b);
    float *x = randv((int64_t)T * H * P, 1), *B = randv((int64_t)T * G * N, 1),
          *C = randv((int64_t)T * G * N, 1);
    float *dt = randv((int64_t)T * H, 1.5f), *A_log = randv(H, 1), *dt_bias = randv(H, 1),
          *D = randv(H, 1);
    float *st = randv((int64_t)S * H * P * N, 0.5f);
    srp_weight w[2][3];
    srp_backend *be[2] = { p.cpu, p.gpu };
    for (int k = 0; k < 2; k++) {
        w[k][0] = weight(be[k], A_log, 1, H, 0);
        w[k][1] = weight(be[k], dt_bias, 1, H, 0);
        w[k][2] = weight(be[k], D, 1, H, 0);
    }
    srp_mamba_params pc = { H, P, G, N, 4, 64, 0.001f, INFINITY, &w[0][0], &w[0][1], &w[0][2] };
    srp_mamba_params pg = pc;
    pg.A_log = &w[1][0], pg.dt_bias = &w[1][1], pg.D = &w[1][2];
    srp_mat sc = put(p.cpu, SRP_F32, S, (int64_t)H * P * N, st),
            sg = put(p.gpu, SRP_F32, S, (int64_t)H * P * N, st);
    srp_mamba_state msc = { NULL, SRP_F32, sc.data }, msg = { NULL, SRP_BF16, sg.data };
    srp_mat in[2][4], y[2];
    const float *src[4] = { x, B, C, dt };
    const int64_t cols[4] = { (int64_t)H * P, (int64_t)G * N, (int64_t)G * N, H };
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 4; i++)
            in[k][i] = put(be[k], k ? SRP_BF16 : SRP_F32, T, cols[i], src[i]);
        y[k] = put(be[k], k ? SRP_BF16 : SRP_F32, T, (int64_t)H * P, NULL);
    }
    REQUIRE(p.cpu->ssd(p.cpu, &pc, in[0][0], in[0][1], in[0][2], in[0][3], &msc, y[0], &e) == 0);
    int rc = p.gpu->ssd(p.gpu, &pg, in[1][0], in[1][1], in[1][2], in[1][3], &msg, y[1], &e);
    CHECKF(rc == 0, "%s", e.msg);
    float *a = get(p.gpu, y[1]), *b = get(p.cpu, y[0]);
    double ey = rel(a, b, (int64_t)T * H * P);
    free(a), free(b);
    a = get(p.gpu, sg), b = get(p.cpu, sc);
    /* only the slots of this batch changed; compare those */
    double num = 0, den = 0;
    for (int s = 0; s < n; s++)
        for (int64_t i = 0; i < (int64_t)H * P * N; i++) {
            int64_t k = (int64_t)tb.slot[s] * H * P * N + i;
            num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
            den += (double)b[k] * b[k];
            if (a[k] != a[k]) num = INFINITY;
        }
    double es = sqrt(num / den);
    fprintf(stderr, "  ssd H%d P%d N%d G%d, %d seqs: y rel err %.2e, state rel err %.2e\n", H, P, N,
            G, n, ey, es);
    CHECKF(ey < y_tol, "ssd y %.3g", ey);
    CHECKF(es < state_tol, "ssd state %.3g", es);
    free(a), free(b), free(x), free(B), free(C), free(dt), free(A_log), free(dt_bias), free(D),
        free(st);
    release(&p);
}

TEST(gpu_ssd_tensor_core) {
    int len[6] = { 1, 37, 64, 130, 1, 200 }, past[6] = { 4, 0, 7, 0, 0, 3 };
    /* prefill uses bf16 operands on tensor cores (as mamba_ssm's kernels do), so the state
     * carries bf16 rounding: 1e-2 like the outputs */
    check_ssd(8, 64, 128, 2, 6, len, past, 1e-2, 1e-2);
    check_ssd(4, 64, 64, 1, 6, len, past, 1e-2, 1e-2);
    int one[1] = { 2000 }, zero[1] = { 0 };
    check_ssd(2, 64, 128, 1, 1, one, zero, 1e-2, 1e-2); /* a long sequence: 32 chunks */
    /* enough (sequence, head) pairs that each head's state stays in one block */
    check_ssd(128, 64, 128, 8, 6, len, past, 1e-2, 1e-2);
}

TEST(gpu_ssd_generic_and_decode) {
    int len[5] = { 1, 37, 3, 70, 1 }, past[5] = { 4, 0, 7, 2, 9 };
    check_ssd(6, 12, 24, 3, 5, len, past, 1e-2, 1e-2);
    /* decode only: fp32 arithmetic on the state, so fp32 tolerance */
    int dl[4] = { 1, 1, 1, 1 }, dp[4] = { 3, 0, 100, 1 };
    check_ssd(8, 64, 128, 2, 4, dl, dp, 1e-2, 1e-5);
    check_ssd(6, 12, 24, 3, 4, dl, dp, 1e-2, 1e-5);
    /* more than 4 decode sequences take the other update kernel */
    int dl6[6] = { 1, 1, 1, 1, 1, 1 }, dp6[6] = { 3, 0, 100, 1, 7, 0 };
    check_ssd(8, 64, 128, 2, 6, dl6, dp6, 1e-2, 1e-5);
}

/* Each row's GPU token against the CPU sampler's and the host twin's (tests/gpu/sample_twin.c). */
static void compare_samples(const float *l, int R, int V, const srp_sample_params *sp,
                            const int32_t *tc, const int32_t *tg) {
    int same = 0;
    float *masked = malloc(sizeof *masked * (size_t)V);
    for (int r = 0; r < R; r++) {
        const float *row = l + (int64_t)r * V;
        if (sp[r].allowed) { /* the twin knows no masks: it gets the banned logits as -inf */
            for (int i = 0; i < V; i++)
                masked[i] = sp[r].allowed[i >> 5] >> (i & 31) & 1u ? row[i] : -INFINITY;
            row = masked;
        }
        const int32_t tw = sample_twin_row(row, V, &sp[r]);
        CHECKF(!sp[r].allowed || sp[r].allowed[tg[r] >> 5] >> (tg[r] & 31) & 1u,
               "V %d row %d: gpu token %d is banned by the row's mask", V, r, tg[r]);
        CHECKF(tg[r] >= 0 && tg[r] < V, "V %d row %d: gpu token %d", V, r, tg[r]);
        same += tc[r] == tg[r] && tw == tg[r];
        CHECKF(tc[r] == tg[r] && tw == tg[r],
               "V %d row %d (T %g k %d p %g min-p %g): cpu %d gpu %d twin %d", V, r,
               sp[r].temperature, sp[r].top_k, sp[r].top_p, sp[r].min_p, tc[r], tg[r], tw);
    }
    fprintf(stderr, "  sample V %d: %d of %d rows identical (cpu, gpu, twin)\n", V, same, R);
    free(masked);
}

/* The GPU sampler draws what the CPU sampler draws from the same logits: greedy with ties,
 * temperature, top-k, top-p, min-p and their combinations, in rows of several sizes. */
static void check_sample(int R, int V, float scale) {
    pair p = backends(R, R, 1, R, V);
    srp_err e = { 0 };
    float *l = randv((int64_t)R * V, scale);
    /* ties: every 16th row repeats its maximum at a later index */
    for (int r = 0; r < R; r += 16) {
        float mx = l[(int64_t)r * V];
        int at = 0;
        for (int i = 1; i < V; i++)
            if (l[(int64_t)r * V + i] > mx) mx = l[(int64_t)r * V + i], at = i;
        l[(int64_t)r * V + (at + V / 2) % V] = mx;
    }
    srp_mat lc = put(p.cpu, SRP_F32, R, V, l), lg = put(p.gpu, SRP_F32, R, V, l);
    srp_sample_params *sp = malloc(sizeof *sp * R);
    static const float temps[] = { 0.0f, 0.7f, 1.0f, 1.6f };
    static const int topk[] = { 0, 1, 40, 1000 };
    static const float topp[] = { 1.0f, 0.9f, 0.5f, 0.99f };
    static const float minp[] = { 0.0f, 0.05f, 0.0f, 0.2f };
    for (int r = 0; r < R; r++)
        sp[r] = (srp_sample_params){ .temperature = temps[r % 4],
                                     .top_k = topk[(r / 4) % 4],
                                     .top_p = topp[(r / 16) % 4],
                                     .min_p = minp[(r / 64) % 4],
                                     .seed = 1000u + r,
                                     .step = (uint64_t)r * 7 };
    /* constrained decoding: every third row allows a random third of the tokens (a row that
     * allows one token, and the last row's mask banning its argmax) */
    const int words = (V + 31) / 32;
    uint32_t *masks = calloc((size_t)R * words, sizeof *masks);
    uint64_t x = 12345;
    for (int r = 0; r < R; r += 3) {
        uint32_t *m = masks + (size_t)r * words;
        for (int i = 0; i < V; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            if ((x >> 33) % 3 == 0 || (r % 9 == 6 && i == (int)((x >> 20) % V)))
                m[i >> 5] |= 1u << (i & 31);
        }
        if (r % 9 == 6) { /* exactly one token */
            memset(m, 0, (size_t)words * 4);
            m[(V / 2) >> 5] |= 1u << ((V / 2) & 31);
        }
        m[0] |= 1u; /* never empty */
        sp[r].allowed = m;
    }
    int32_t *tc = malloc(sizeof(int32_t) * R), *tg = malloc(sizeof(int32_t) * R);
    REQUIRE(p.cpu->sample(p.cpu, lc, sp, tc, &e) == 0);
    int rc = p.gpu->sample(p.gpu, lg, sp, tg, &e);
    CHECKF(rc == 0, "%s", e.msg);
    compare_samples(l, R, V, sp, tc, tg);
    free(l), free(sp), free(tc), free(tg), free(masks);
    release(&p);
}

TEST(gpu_sample) {
    check_sample(256, 5000, 3.0f);
    check_sample(64, 131072, 2.0f);
    check_sample(40, 300, 0.3f); /* flat: wide nuclei */
}

/* RoPE (plain and dynamic NTK, partial rotation, GQA, sequences continuing from n_past) and the
 * gated activations, against the CPU backend. */
TEST(gpu_rope_and_gated_activation) {
    const int H = 8, KV = 2, HD = 64, T = 300;
    int len[3] = { 250, 1, 49 }, past[3] = { 0, 9000, 100 };
    pair p = backends(T, 3, 1, 1, 8);
    srp_err e = { 0 };
    test_batch tb;
    make_batch(&tb, 3, len, past);
    begin(&p, &tb.b);
    const int dims[2] = { 64, 32 };
    for (int c = 0; c < 2; c++) {
        const int dim = dims[c];
        float inv_freq[32];
        for (int i = 0; i < dim / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * i / dim);
        srp_weight fc = weight(p.cpu, inv_freq, 1, dim / 2, 0),
                   fg = weight(p.gpu, inv_freq, 1, dim / 2, 0);
        float *q = randv((int64_t)T * H * HD, 1), *k = randv((int64_t)T * KV * HD, 1);
        srp_mat qc = put(p.cpu, SRP_F32, T, H * HD, q), qg = put(p.gpu, SRP_BF16, T, H * HD, q);
        srp_mat kc = put(p.cpu, SRP_F32, T, KV * HD, k), kg = put(p.gpu, SRP_BF16, T, KV * HD, k);
        srp_rope_params rc = { H, KV, HD, dim, &fc, c, 10000.0f, 4.0f, 2048 };
        srp_rope_params rg = rc;
        rg.inv_freq = &fg;
        REQUIRE(p.cpu->rope(p.cpu, &rc, qc, kc, &e) == 0);
        REQUIRE(p.gpu->rope(p.gpu, &rg, qg, kg, &e) == 0);
        float *a = get(p.gpu, qg), *b = get(p.cpu, qc);
        double eq = rel(a, b, (int64_t)T * H * HD);
        free(a), free(b);
        a = get(p.gpu, kg), b = get(p.cpu, kc);
        double ek = rel(a, b, (int64_t)T * KV * HD);
        free(a), free(b);
        CHECKF(eq < 1e-2 && ek < 1e-2, "rope dim %d: q %.3g k %.3g", dim, eq, ek);
        fprintf(stderr, "  rope dim %d%s: rel err q %.2e k %.2e\n", dim, c ? " dynamic" : "", eq,
                ek);
        free(q), free(k);
    }
    const int C = 1000;
    float *g = randv((int64_t)T * C, 2), *u = randv((int64_t)T * C, 2);
    srp_mat gc = put(p.cpu, SRP_F32, T, C, g), gg = put(p.gpu, SRP_BF16, T, C, g);
    srp_mat uc = put(p.cpu, SRP_F32, T, C, u), ug = put(p.gpu, SRP_BF16, T, C, u);
    srp_mat oc = put(p.cpu, SRP_F32, T, C, NULL), og = put(p.gpu, SRP_BF16, T, C, NULL);
    REQUIRE(p.cpu->activate_gated(p.cpu, SRP_ACT_SILU, gc, uc, oc, &e) == 0);
    REQUIRE(p.gpu->activate_gated(p.gpu, SRP_ACT_SILU, gg, ug, og, &e) == 0);
    float *a = get(p.gpu, og), *b = get(p.cpu, oc);
    double err = rel(a, b, (int64_t)T * C);
    CHECKF(err < 1e-2, "swiglu %.3g", err);
    fprintf(stderr, "  silu(gate) * up: rel err %.2e\n", err);
    free(a), free(b), free(g), free(u);
    release(&p);
}

/* The sampler is total (issue 11): rows with NaN, +-inf, only non-finite logits, logits at the
 * ends of the float range, and parameters outside the API's ranges (NaN, +-inf, top_k past the
 * vocabulary, min_p above 1, top_p <= 0) give a token in range, the same on both backends and
 * in the host twin. */
static void check_sample_edges(int V) {
    enum { KINDS = 8, PARAMS = 24 };
    const int R = KINDS * PARAMS;
    pair p = backends(R, R, 1, R, V);
    srp_err e = { 0 };
    float *l = randv((int64_t)R * V, 2.0f);
    for (int r = 0; r < R; r++) {
        float *row = l + (int64_t)r * V;
        switch (r % KINDS) {
        case 0:
            for (int i = 0; i < V; i++) row[i] = NAN;
            break;
        case 1:
            for (int i = 0; i < V; i++) row[i] = -INFINITY;
            break;
        case 2:
            for (int i = 0; i < V; i++) row[i] = i % 2 ? INFINITY : NAN;
            break;
        case 3: /* the largest values are non-finite; finite ones scattered */
            for (int i = 0; i < V; i += 3) row[i] = i % 2 ? INFINITY : NAN;
            break;
        case 4:
            for (int i = 0; i < V; i++) row[i] = i % 3 ? -FLT_MAX : FLT_MAX;
            break;
        case 5: /* one finite logit among NaNs */
            for (int i = 0; i < V; i++) row[i] = NAN;
            row[V / 2] = -3.0f;
            break;
        case 6:
            for (int i = 0; i < V; i++) row[i] = (float)(i % 4);
            break; /* ties */
        default:
            break; /* random */
        }
    }
    static const float temps[] = { NAN, -1.0f, 1e-30f, 1e-45f, 1.0f, 2.0f, INFINITY, FLT_MAX };
    static const int topk[] = { 0, -5, 1, 3, 1 << 30 };
    static const float topp[] = { 1.0f, NAN, 0.0f, -1.0f, 1e-30f, 0.5f, 2.0f };
    static const float minp[] = { 0.0f, NAN, 1.0f, 1.5f, -1.0f, 0.5f };
    srp_sample_params *sp = malloc(sizeof *sp * R);
    for (int r = 0; r < R; r++) {
        const int k = r / KINDS;
        sp[r] = (srp_sample_params){ .temperature = temps[k % 8],
                                     .top_k = topk[(k / 2) % 5],
                                     .top_p = topp[(k / 3) % 7],
                                     .min_p = minp[(k / 5) % 6],
                                     .seed = 77u + r,
                                     .step = (uint64_t)r };
    }
    srp_mat lc = put(p.cpu, SRP_F32, R, V, l), lg = put(p.gpu, SRP_F32, R, V, l);
    int32_t *tc = malloc(sizeof(int32_t) * R), *tg = malloc(sizeof(int32_t) * R);
    REQUIRE(p.cpu->sample(p.cpu, lc, sp, tc, &e) == 0);
    int rc = p.gpu->sample(p.gpu, lg, sp, tg, &e);
    CHECKF(rc == 0, "%s", e.msg);
    for (int r = 0; r < R; r++)
        if (r % KINDS < 3) CHECKF(tg[r] == 0, "V %d row %d: no finite logit, gpu %d", V, r, tg[r]);
    compare_samples(l, R, V, sp, tc, tg);
    free(l), free(sp), free(tc), free(tg);
    release(&p);
}

TEST(gpu_sample_edge_cases) {
    check_sample_edges(1);
    check_sample_edges(5);
    check_sample_edges(3000);
}

/* The hybrid families' wiring ops (kernels/cuda/streams.cu): Falcon-H1's norm-then-gate on
 * column slices, the fp32 stream add (a copy into half of a wider buffer, an in-place sum), and
 * the bf16 GEMM accumulation the low-rank adapters use. */
TEST(gpu_hybrid_wiring_ops) {
    const int R = 21, C = 768, LD = 800, G = 192;
    pair p = backends(R, 1, 1, 1, 1);
    srp_err e = { 0 };
    float *y = randv((int64_t)R * LD, 2), *z = randv((int64_t)R * LD, 2), *w = randv(C, 1);
    srp_weight wc = weight(p.cpu, w, 1, C, 0), wg = weight(p.gpu, w, 1, C, 0);
    for (int g = G; g <= C; g *= 4) {
        srp_mat yc = put(p.cpu, SRP_F32, R, LD, y), yg = put(p.gpu, SRP_BF16, R, LD, y);
        srp_mat zc = put(p.cpu, SRP_F32, R, LD, z), zg = put(p.gpu, SRP_BF16, R, LD, z);
        REQUIRE(p.cpu->rmsnorm_gate(p.cpu, srp_mat_cols(yc, 16, C), srp_mat_cols(zc, 8, C), &wc, g,
                                    1e-5f, srp_mat_cols(yc, 16, C), &e) == 0);
        REQUIRE(p.gpu->rmsnorm_gate(p.gpu, srp_mat_cols(yg, 16, C), srp_mat_cols(zg, 8, C), &wg, g,
                                    1e-5f, srp_mat_cols(yg, 16, C), &e) == 0);
        float *a = get(p.gpu, yg), *b = get(p.cpu, yc);
        const double err = rel(a, b, (int64_t)R * LD);
        CHECKF(err < 1e-2, "rmsnorm_gate group %d: %.3g", g, err);
        fprintf(stderr, "  rmsnorm_gate group %d: rel err %.2e\n", g, err);
        free(a), free(b);
    }
    /* add: x copied into the left half of [x | e], then e + x summed in place into e */
    const int D = 300;
    float *x = randv((int64_t)R * D, 1), *wide = randv((int64_t)R * 2 * D, 1);
    srp_mat xc = put(p.cpu, SRP_F32, R, D, x), xg = put(p.gpu, SRP_F32, R, D, x);
    srp_mat dc = put(p.cpu, SRP_F32, R, 2 * D, wide), dg = put(p.gpu, SRP_F32, R, 2 * D, wide);
    REQUIRE(p.cpu->add(p.cpu, xc, NULL, srp_mat_cols(dc, 0, D), &e) == 0);
    REQUIRE(p.gpu->add(p.gpu, xg, NULL, srp_mat_cols(dg, 0, D), &e) == 0);
    srp_mat rc = srp_mat_cols(dc, D, D), rg = srp_mat_cols(dg, D, D);
    REQUIRE(p.cpu->add(p.cpu, xc, &rc, rc, &e) == 0);
    REQUIRE(p.gpu->add(p.gpu, xg, &rg, rg, &e) == 0);
    float *a = get(p.gpu, dg), *b = get(p.cpu, dc);
    CHECKF(rel(a, b, (int64_t)R * 2 * D) < 1e-6, "add %.3g", rel(a, b, (int64_t)R * 2 * D));
    free(a), free(b);
    /* adapters: out (bf16 slice) += (x A^T) B^T */
    const int K = 96, r = 8, N = 72;
    float *xi = randv((int64_t)R * K, 1), *A = randv((int64_t)r * K, 0.3f),
          *Bm = randv((int64_t)N * r, 0.3f), *o0 = randv((int64_t)R * (N + 20), 1);
    srp_weight Ac = weight(p.cpu, A, r, K, 1), Ag = weight(p.gpu, A, r, K, 1);
    srp_weight Bc = weight(p.cpu, Bm, N, r, 1), Bg = weight(p.gpu, Bm, N, r, 1);
    srp_mat ic = put(p.cpu, SRP_F32, R, K, xi), ig = put(p.gpu, SRP_BF16, R, K, xi);
    srp_mat oc = put(p.cpu, SRP_F32, R, N + 20, o0), og = put(p.gpu, SRP_BF16, R, N + 20, o0);
    srp_mat mc = put(p.cpu, SRP_F32, R, r, NULL), mg = put(p.gpu, SRP_BF16, R, r, NULL);
    REQUIRE(p.cpu->gemm(p.cpu, ic, &Ac, NULL, mc, 1.0f, 0, &e) == 0);
    REQUIRE(p.gpu->gemm(p.gpu, ig, &Ag, NULL, mg, 1.0f, 0, &e) == 0);
    REQUIRE(p.cpu->gemm(p.cpu, mc, &Bc, NULL, srp_mat_cols(oc, 10, N), 1.0f, 1, &e) == 0);
    REQUIRE(p.gpu->gemm(p.gpu, mg, &Bg, NULL, srp_mat_cols(og, 10, N), 1.0f, 1, &e) == 0);
    a = get(p.gpu, og), b = get(p.cpu, oc);
    const double err = rel(a, b, (int64_t)R * (N + 20));
    CHECKF(err < 1e-2, "adapter gemm accumulate %.3g", err);
    fprintf(stderr, "  adapter gemms into a bf16 slice: rel err %.2e\n", err);
    free(a), free(b), free(y), free(z), free(w), free(x), free(wide), free(xi), free(A), free(Bm),
        free(o0);
    release(&p);
}

/* The SSD shapes of the new families that the tensor-core kernel does not take: Falcon-H1's and
 * Bamba's d_state 256 (the generic kernel, whose tiles must still fit on chip), and small heads
 * (Falcon-H1's mamba_d_head 12 or 16) with states of 32 to 64. */
TEST(gpu_ssd_families_shapes) {
    int len[5] = { 1, 37, 3, 70, 1 }, past[5] = { 4, 0, 7, 2, 9 };
    check_ssd(4, 64, 256, 1, 5, len, past, 1e-2, 1e-2);
    check_ssd(8, 16, 64, 2, 5, len, past, 1e-2, 1e-2);
    check_ssd(4, 12, 64, 2, 5, len, past, 1e-2, 1e-2);
    int dl[4] = { 1, 1, 1, 1 }, dp[4] = { 3, 0, 100, 1 };
    check_ssd(4, 64, 256, 1, 4, dl, dp, 1e-2, 1e-5);
}

/* ---- mixture of experts ------------------------------------------------------------------- */

/* Router logits whose top_k are clear (chosen experts well above the rest), so that both
 * backends route alike and the experts' outputs can be compared token by token. */
static float *clear_logits(int T, int E, int K) {
    float *l = malloc((size_t)T * E * sizeof *l);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < E; i++) l[(int64_t)t * E + i] = -3.0f + urand();
        for (int k = 0; k < K; k++) {
            int i = (int)(urand() * E) % E;
            while (l[(int64_t)t * E + i] > 0) i = (i + 1) % E;
            l[(int64_t)t * E + i] = 3.0f + urand();
        }
    }
    return l;
}

typedef struct moe_bufs {
    srp_mat logits, ids, w, index_m;
    srp_moe_routing r;
} moe_bufs;

static moe_bufs moe_alloc(srp_backend *be, int T, int E, int K, const float *logits) {
    moe_bufs b;
    b.logits = put(be, SRP_F32, T, E, logits);
    b.ids = (srp_mat){ NULL, SRP_I32, T, K, K };
    b.w = put(be, SRP_F32, T, K, NULL);
    srp_err e = { 0 };
    if (be->alloc(be, (size_t)T * K * 4, &b.ids.data, &e)) abort();
    b.index_m = (srp_mat){ NULL, SRP_I32, 1, SRP_MOE_INDEX_INTS(T, K, E), 0 };
    if (be->alloc(be, (size_t)b.index_m.cols * 4, &b.index_m.data, &e)) abort();
    b.r = (srp_moe_routing){ b.ids, b.w, b.index_m.data };
    return b;
}

static int32_t *get_ids(srp_backend *be, srp_mat m) {
    int32_t *h = malloc((size_t)(m.rows * m.cols) * 4);
    srp_err e = { 0 };
    if (be->download(be, h, m.data, (size_t)(m.rows * m.cols) * 4, &e)) abort();
    return h;
}

/* The GPU's routing against the CPU's: the same experts (as sets) and weights, on random
 * logits (where the top-k is rarely a near-tie), and an index that groups every pair. */
TEST(gpu_moe_route) {
    static const struct {
        int T, E, K, G, TG, sigmoid, norm, bias;
        float scale;
    } cases[] = {
        { 1, 128, 6, 1, 1, 1, 1, 1, 2.5f }, /* Nemotron 3 Nano */
        { 300, 128, 6, 1, 1, 1, 1, 1, 2.5f },   { 77, 16, 3, 4, 2, 1, 1, 1, 2.5f }, /* grouped */
        { 50, 12, 4, 3, 2, 1, 0, 1, 1.0f },     { 129, 8, 2, 1, 1, 0, 1, 0, 1.0f }, /* Granite */
        { 33, 16, 4, 1, 1, 0, 0, 0, 1.0f },                                         /* Jamba */
        { 64, 1024, 32, 64, 8, 1, 1, 1, 1.0f },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int T = cases[c].T, E = cases[c].E, K = cases[c].K;
        pair p = backends(T, 1, 1, 1, 1);
        srp_err e = { 0 };
        float *logits = malloc((size_t)T * E * sizeof *logits), *bias = malloc((size_t)E * 4);
        for (int64_t i = 0; i < (int64_t)T * E; i++) logits[i] = (urand() - 0.5f) * 6;
        for (int i = 0; i < E; i++) bias[i] = urand() * 0.2f;
        srp_weight bc = weight(p.cpu, bias, 1, E, 0), bg = weight(p.gpu, bias, 1, E, 0);
        srp_moe_route_params rp = { E,
                                    K,
                                    cases[c].sigmoid ? SRP_MOE_SIGMOID : SRP_MOE_SOFTMAX,
                                    cases[c].G,
                                    cases[c].TG,
                                    cases[c].norm,
                                    cases[c].scale,
                                    cases[c].bias ? &bc : NULL };
        moe_bufs mc = moe_alloc(p.cpu, T, E, K, logits), mg = moe_alloc(p.gpu, T, E, K, logits);
        REQUIRE(p.cpu->moe_route(p.cpu, &rp, mc.logits, &mc.r, &e) == 0);
        if (cases[c].bias) rp.bias = &bg;
        REQUIRE(p.gpu->moe_route(p.gpu, &rp, mg.logits, &mg.r, &e) == 0);
        int32_t *ic = get_ids(p.cpu, mc.ids), *ig = get_ids(p.gpu, mg.ids);
        float *wc = get(p.cpu, mc.w), *wg = get(p.gpu, mg.w);
        int same = 0;
        double werr = 0;
        for (int t = 0; t < T; t++) {
            int all = 1;
            for (int k = 0; k < K; k++) {
                int found = -1;
                for (int q = 0; q < K; q++)
                    if (ig[t * K + q] == ic[t * K + k]) found = q;
                all &= found >= 0;
                if (found >= 0)
                    werr = fmax(werr, fabs(wg[t * K + found] - wc[t * K + k]) /
                                          fmax(fabs(wc[t * K + k]), 1e-6));
            }
            same += all;
        }
        CHECKF(same >= T - (T + 99) / 100, "case %zu: %d of %d tokens routed alike", c, same, T);
        CHECKF(werr < 1e-4, "case %zu: weights differ by %.3g", c, werr);
        /* the index: every pair in its expert's rows, the tiles covering them */
        const int64_t P = (int64_t)T * K;
        int32_t *ix = malloc((size_t)mg.index_m.cols * 4);
        REQUIRE(p.gpu->download(p.gpu, ix, mg.index_m.data, (size_t)mg.index_m.cols * 4, &e) == 0);
        const int32_t *off = ix, *sorted = ix + E + 8, *inv = sorted + P, *te = inv + P,
                      *tr = te + P + E, *tn = tr + P + E;
        int ok = off[0] == 0 && off[E] == P;
        for (int i = 0; i < E; i++) ok &= off[i] <= off[i + 1];
        for (int64_t q = 0; q < P; q++) {
            const int32_t pos = inv[q], ex = ig[q];
            ok &= pos >= off[ex] && pos < off[ex + 1] && sorted[pos] == q;
        }
        int64_t covered = 0;
        for (int i = 0; i < ix[E + 1]; i++) {
            ok &=
                tn[i] >= 1 && tn[i] <= 8 && tr[i] >= off[te[i]] && tr[i] + tn[i] <= off[te[i] + 1];
            covered += tn[i];
        }
        CHECKF(ok && covered == P, "case %zu: the index is inconsistent", c);
        fprintf(stderr,
                "  route %d tokens, %d experts, top %d, %d groups: %d/%d alike, weights %.1e\n", T,
                E, K, cases[c].G, same, T, werr);
        free(logits), free(bias), free(ic), free(ig), free(wc), free(wg), free(ix);
        release(&p);
    }
}

/* Routed experts: the device path (decode-sized steps: tiles of one expert's rows, with rows
 * counts 1 to 8 and experts nobody chose), the grouped cuBLAS path (larger steps), 16-byte and
 * scalar loads, gated and not, fp32 accumulation into the residual and bf16 output. */
TEST(gpu_moe_experts) {
    static const struct {
        int T, E, K, in, H, gated, acc;
    } cases[] = {
        { 1, 128, 6, 512, 256, 0, 1 },  /* batch-1 decode: one row per tile */
        { 40, 4, 2, 256, 128, 0, 1 },   /* 20 rows per expert: tiles of 8, 8, 4 */
        { 13, 32, 4, 96, 64, 1, 0 },    /* gated, bf16 out, idle experts */
        { 9, 6, 3, 36, 12, 0, 1 },      /* scalar loads both ways */
        { 9, 4, 2, 4096, 64, 0, 1 },    /* 8 rows of 4096: more than 48 KB of shared memory */
        { 200, 16, 4, 256, 128, 0, 1 }, /* the grouped path */
        { 150, 8, 2, 96, 64, 1, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int T = cases[c].T, E = cases[c].E, K = cases[c].K, in = cases[c].in, H = cases[c].H,
                  gated = cases[c].gated, U = gated ? 2 * H : H;
        const int64_t P = (int64_t)T * K, S = in + U + in;
        pair p = backends(T, 1, 1, 1, 1);
        srp_err e = { 0 };
        float *logits = clear_logits(T, E, K);
        float *up = randv((int64_t)E * U * in, 1.0f / sqrtf((float)in)),
              *down = randv((int64_t)E * in * H, 1.0f / sqrtf((float)H)),
              *x = randv((int64_t)T * in, 1), *o0 = randv((int64_t)T * in, 1);
        srp_weight uc = weight(p.cpu, up, (int64_t)E * U, in, 1),
                   ug = weight(p.gpu, up, (int64_t)E * U, in, 1),
                   dc = weight(p.cpu, down, (int64_t)E * in, H, 1),
                   dg = weight(p.gpu, down, (int64_t)E * in, H, 1);
        const srp_moe_route_params rp = { E, K, SRP_MOE_SOFTMAX, 1, 1, 1, 1.0f, NULL };
        moe_bufs mc = moe_alloc(p.cpu, T, E, K, logits), mg = moe_alloc(p.gpu, T, E, K, logits);
        REQUIRE(p.cpu->moe_route(p.cpu, &rp, mc.logits, &mc.r, &e) == 0);
        REQUIRE(p.gpu->moe_route(p.gpu, &rp, mg.logits, &mg.r, &e) == 0);
        const srp_act act = gated ? SRP_ACT_SILU : SRP_ACT_RELU2;
        srp_moe_experts_params ec = {
            E, K, H, act, gated, &uc, &dc, put(p.cpu, SRP_F32, P, S, NULL)
        };
        srp_moe_experts_params eg = { E,     K,   H,   act,
                                      gated, &ug, &dg, put(p.gpu, SRP_BF16, P, S, NULL) };
        const srp_dtype ot = cases[c].acc ? SRP_F32 : SRP_BF16;
        srp_mat xc = put(p.cpu, SRP_F32, T, in, x), xg = put(p.gpu, SRP_BF16, T, in, x);
        srp_mat oc = put(p.cpu, SRP_F32, T, in, o0),
                og = put(p.gpu, ot, T, in, cases[c].acc ? o0 : NULL);
        REQUIRE(p.cpu->moe_experts(p.cpu, &ec, &mc.r, xc, oc, 0.5f, cases[c].acc, &e) == 0);
        if (p.gpu->moe_experts(p.gpu, &eg, &mg.r, xg, og, 0.5f, cases[c].acc, &e))
            fprintf(stderr, "%s\n", e.msg);
        float *a = get(p.gpu, og), *b = get(p.cpu, oc);
        double err = rel(a, b, (int64_t)T * in);
        CHECKF(err < 1.5e-2, "experts case %zu: rel err %.3g", c, err);
        fprintf(stderr, "  experts: %d tokens, %d experts top %d, %d -> %d%s: rel err %.2e\n", T, E,
                K, in, H, gated ? " gated" : "", err);
        free(logits), free(up), free(down), free(x), free(o0), free(a), free(b);
        release(&p);
    }
}

/* A step graph recorded once replays the routing and experts of new logits: the choice of
 * experts is data on the device, not part of the graph. */
TEST(gpu_moe_in_a_step_graph) {
    const int T = 8, E = 32, K = 4, in = 256, H = 128, U = H;
    const int64_t P = (int64_t)T * K, S = in + U + in;
    pair p = backends(T, 8, 1, 8, 8);
    srp_err e = { 0 };
    float *up = randv((int64_t)E * U * in, 0.06f), *down = randv((int64_t)E * in * H, 0.09f),
          *x = randv((int64_t)T * in, 1), *zeros = calloc((size_t)T * in, sizeof(float));
    srp_weight uc = weight(p.cpu, up, (int64_t)E * U, in, 1),
               ug = weight(p.gpu, up, (int64_t)E * U, in, 1),
               dc = weight(p.cpu, down, (int64_t)E * in, H, 1),
               dg = weight(p.gpu, down, (int64_t)E * in, H, 1);
    const srp_moe_route_params rp = { E, K, SRP_MOE_SIGMOID, 1, 1, 1, 2.0f, NULL };
    float *l0 = clear_logits(T, E, K);
    moe_bufs mc = moe_alloc(p.cpu, T, E, K, l0), mg = moe_alloc(p.gpu, T, E, K, l0);
    srp_moe_experts_params ec = { E, K,   H,   SRP_ACT_RELU2,
                                  0, &uc, &dc, put(p.cpu, SRP_F32, P, S, NULL) };
    srp_moe_experts_params eg = { E, K,   H,   SRP_ACT_RELU2,
                                  0, &ug, &dg, put(p.gpu, SRP_BF16, P, S, NULL) };
    srp_mat xc = put(p.cpu, SRP_F32, T, in, x), xg = put(p.gpu, SRP_BF16, T, in, x);
    srp_mat oc = put(p.cpu, SRP_F32, T, in, zeros), og = put(p.gpu, SRP_F32, T, in, zeros);
    REQUIRE(p.gpu->graph_begin(p.gpu, 7, &e) == 0);
    int rc = p.gpu->moe_route(p.gpu, &rp, mg.logits, &mg.r, &e);
    if (!rc) rc = p.gpu->moe_experts(p.gpu, &eg, &mg.r, xg, og, 1.0f, 0, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    REQUIRE(rc == 0);
    REQUIRE(p.gpu->graph_end(p.gpu, 7, &e) == 0);
    for (int round = 0; round < 3; round++) {
        float *l = clear_logits(T, E, K);
        REQUIRE(p.gpu->upload(p.gpu, mg.logits.data, l, (size_t)T * E * 4, &e) == 0);
        memcpy(mc.logits.data, l, (size_t)T * E * 4);
        REQUIRE(p.gpu->graph_replay(p.gpu, 7, &e) == 1);
        REQUIRE(p.cpu->moe_route(p.cpu, &rp, mc.logits, &mc.r, &e) == 0);
        REQUIRE(p.cpu->moe_experts(p.cpu, &ec, &mc.r, xc, oc, 1.0f, 0, &e) == 0);
        float *a = get(p.gpu, og), *b = get(p.cpu, oc);
        double err = rel(a, b, (int64_t)T * in);
        CHECKF(err < 1.5e-2, "graph replay %d: rel err %.3g", round, err);
        fprintf(stderr, "  replay %d with new routing: rel err %.2e\n", round, err);
        free(l), free(a), free(b);
    }
    free(up), free(down), free(x), free(zeros), free(l0);
    release(&p);
}

/* The device-to-device copy of the prefix cache's snapshots: both backends copy the same ranges
 * (odd offsets and lengths, fp32 and bf16 bytes alike) and must agree bit for bit, the bytes
 * around each range untouched. */
TEST(gpu_copy) {
    pair p = backends(16, 4, 4, 4, 16);
    static const struct {
        size_t src, dst, bytes;
    } rows[] = { { 0, 4096, 4096 }, { 3, 9001, 1 }, { 128, 70000, 65536 + 6 }, { 5, 200000, 333 } };
    const size_t total = 300000;
    float *host = randv((int64_t)(total / 4), 1);
    srp_mat c = put(p.cpu, SRP_F32, 1, (int64_t)(total / 4), host);
    srp_mat g = put(p.gpu, SRP_F32, 1, (int64_t)(total / 4), host);
    srp_err e = { 0 };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK(p.cpu->copy(p.cpu, (char *)c.data + rows[i].dst, (char *)c.data + rows[i].src,
                          rows[i].bytes, &e) == 0);
        CHECKF(p.gpu->copy(p.gpu, (char *)g.data + rows[i].dst, (char *)g.data + rows[i].src,
                           rows[i].bytes, &e) == 0,
               "%s", e.msg);
    }
    CHECK(p.gpu->sync(p.gpu, &e) == 0);
    float *a = get(p.cpu, c), *b = get(p.gpu, g);
    CHECKF(!memcmp(a, b, total), "the CUDA copy differs from the CPU one");
    CHECK(memcmp(a, host, total) != 0); /* the copies changed something */
    free(a), free(b), free(host);
    p.cpu->free(p.cpu, c.data);
    p.gpu->free(p.gpu, g.data);
    release(&p);
}
