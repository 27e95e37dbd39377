/* Every CUDA backend operation against the CPU backend on fresh random inputs (GPU machine only;
 * ctest label "gpu"). Inputs are rounded to bf16 first and both backends get the same values, so
 * the comparison measures the kernels, not the input rounding. GPU outputs are filled with NaN
 * before each run, so an element a kernel forgets to write fails the test. */
#include <stdint.h>

#include "backend.h"
#include "dtype.h"
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
    tb->b = (srp_batch){ n, T, tb->tokens, tb->start, tb->past, tb->slot, NULL, 0, 0, tb->rows };
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
    int32_t *tc = malloc(sizeof(int32_t) * R), *tg = malloc(sizeof(int32_t) * R);
    REQUIRE(p.cpu->sample(p.cpu, lc, sp, tc, &e) == 0);
    int rc = p.gpu->sample(p.gpu, lg, sp, tg, &e);
    CHECKF(rc == 0, "%s", e.msg);
    int same = 0;
    for (int r = 0; r < R; r++) {
        same += tc[r] == tg[r];
        CHECKF(tc[r] == tg[r], "V %d row %d (T %.1f k %d p %.2f min-p %.2f): cpu %d gpu %d", V, r,
               sp[r].temperature, sp[r].top_k, sp[r].top_p, sp[r].min_p, tc[r], tg[r]);
    }
    fprintf(stderr, "  sample V %d: %d of %d rows identical\n", V, same, R);
    free(l), free(sp), free(tc), free(tg);
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
