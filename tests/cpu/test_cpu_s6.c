/* The CPU backend's Mamba-1 operations against double-precision references written from the
 * math (modeling_mamba.py's slow_forward): the selective scan over packed sequences of odd
 * lengths, some continuing from their slot's state, some decoding one token; the scan cut into
 * steps against one pass; and the RMS norm without a weight that FalconMamba applies to dt, B, C.
 */
#include <stdint.h>

#include "backend.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double urand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static float *randv(int64_t n, float lo, float hi) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * urand());
    return v;
}

static srp_mat mat(float *data, int64_t rows, int64_t cols) {
    return (srp_mat){ data, SRP_F32, rows, cols, cols };
}

static srp_weight weight(float *data, int64_t rows, int64_t cols) {
    return (srp_weight){ mat(data, rows, cols), 0 };
}

static double rel_err(const float *a, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i]) return INFINITY;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static srp_backend *cpu(void) {
    srp_backend *be = NULL;
    srp_err e = { 0 };
    if (srp_backend_cpu_create(2, &be, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
    return be;
}

typedef struct {
    srp_batch b;
    int32_t tokens[4096], start[17], past[16], slot[16];
} s6_batch;

/* Sequences in slots 3, 0, 5, ... so that no sequence sits in the slot of its index. */
static void make_batch(s6_batch *tb, int n, const int *len, const int *past) {
    memset(tb, 0, sizeof *tb);
    int T = 0;
    for (int s = 0; s < n; s++) {
        tb->start[s] = T;
        tb->past[s] = past[s];
        tb->slot[s] = (3 * s + 3) % 8;
        T += len[s];
    }
    tb->start[n] = T;
    tb->b = (srp_batch){ n, T, tb->tokens, tb->start, tb->past, tb->slot, NULL, 0, 0, NULL, NULL };
}

/* The recurrence in double, on the layout the op uses; h is the slot states [8][Di][N]. */
static void reference_scan(const s6_batch *tb, int Di, int N, const float *x, const float *dt,
                           const float *B, const float *C, const float *z, const float *A_log,
                           const float *bias, const float *D, double *h, double *y) {
    for (int s = 0; s < tb->b.n_seqs; s++) {
        double *hs = h + (int64_t)tb->slot[s] * Di * N;
        if (tb->past[s] == 0)
            for (int64_t k = 0; k < (int64_t)Di * N; k++) hs[k] = 0;
        for (int t = tb->start[s]; t < tb->start[s + 1]; t++)
            for (int i = 0; i < Di; i++) {
                double v = (double)dt[t * Di + i] + (bias ? bias[i] : 0);
                double d = v > 20 ? v : log1p(exp(v)), u = x[t * Di + i], acc = 0;
                for (int n = 0; n < N; n++) {
                    double A = -exp((double)A_log[i * N + n]);
                    double *hn = &hs[(int64_t)i * N + n];
                    *hn = exp(d * A) * *hn + d * B[t * N + n] * u;
                    acc += C[t * N + n] * *hn;
                }
                acc += (D ? D[i] : 0) * u;
                if (z) acc *= z[t * Di + i] / (1 + exp(-(double)z[t * Di + i]));
                y[t * Di + i] = acc;
            }
    }
}

static void check_scan(int Di, int N, int n, const int *len, const int *past, int gate,
                       int with_bias_d) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    s6_batch tb;
    make_batch(&tb, n, len, past);
    const int T = tb.b.n_tokens, S = 8;
    float *x = randv((int64_t)T * Di, -2, 2), *dt = randv((int64_t)T * Di, -4, 1);
    float *B = randv((int64_t)T * N, -1.5f, 1.5f), *C = randv((int64_t)T * N, -1.5f, 1.5f);
    float *z = randv((int64_t)T * Di, -3, 3), *A_log = randv((int64_t)Di * N, -1, 2.5f);
    float *bias = randv(Di, -3, 0), *D = randv(Di, 0.5f, 1.5f);
    float *st = randv((int64_t)S * Di * N, -1, 1), *y = randv((int64_t)T * Di, 0, 0);
    for (int64_t i = 0; i < (int64_t)T * Di; i++) y[i] = NAN; /* unwritten outputs fail */
    double *h = malloc(sizeof(double) * S * Di * N), *yr = malloc(sizeof(double) * T * Di);
    for (int64_t i = 0; i < (int64_t)S * Di * N; i++) h[i] = st[i];
    reference_scan(&tb, Di, N, x, dt, B, C, gate ? z : NULL, A_log, with_bias_d ? bias : NULL,
                   with_bias_d ? D : NULL, h, yr);
    srp_weight wa = weight(A_log, Di, N), wb = weight(bias, 1, Di), wd = weight(D, 1, Di);
    srp_s6_params p = { Di, N, &wa, with_bias_d ? &wb : NULL, with_bias_d ? &wd : NULL };
    srp_mamba_state ms = { NULL, SRP_F32, st };
    srp_mat zm = gate ? mat(z, T, Di) : (srp_mat){ 0 };
    REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
    REQUIRE(be->selective_scan(be, &p, mat(x, T, Di), mat(dt, T, Di), mat(B, T, N), mat(C, T, N),
                               zm, &ms, mat(y, T, Di), &e) == 0);
    double ey = rel_err(y, yr, (int64_t)T * Di), es = rel_err(st, h, (int64_t)S * Di * N);
    CHECKF(ey < 1e-5, "scan Di %d N %d: y relative error %.3g", Di, N, ey);
    CHECKF(es < 1e-5, "scan Di %d N %d: state relative error %.3g", Di, N, es);
    fprintf(stderr, "  scan Di %d N %d, %d seqs%s: y %.2e state %.2e\n", Di, N, n,
            gate ? ", gated" : "", ey, es);
    free(x), free(dt), free(B), free(C), free(z), free(A_log), free(bias), free(D), free(st),
        free(y), free(h), free(yr);
    be->destroy(be);
}

TEST(cpu_selective_scan_matches_recurrence) {
    /* prefill from zero, prefill continuing from the slot, decode steps, odd widths */
    int len[5] = { 1, 7, 33, 1, 20 }, past[5] = { 3, 0, 5, 0, 2 };
    check_scan(37, 16, 5, len, past, 1, 1);
    check_scan(64, 5, 5, len, past, 0, 1);
    check_scan(16, 24, 5, len, past, 1, 0);
    int one[1] = { 300 }, zero[1] = { 0 };
    check_scan(48, 16, 1, one, zero, 1, 1);
}

/* A sequence fed in pieces (a chunked prefill, then decode steps) gives what one pass gives. */
TEST(cpu_selective_scan_in_pieces_equals_one_pass) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int Di = 40, N = 16, T = 50, S = 8;
    float *x = randv(T * Di, -2, 2), *dt = randv(T * Di, -4, 1), *B = randv(T * N, -1, 1);
    float *C = randv(T * N, -1, 1), *z = randv(T * Di, -3, 3), *A_log = randv(Di * N, -1, 2.5f);
    float *bias = randv(Di, -3, 0), *D = randv(Di, 0.5f, 1.5f);
    float *st1 = randv(S * Di * N, 0, 0), *st2 = randv(S * Di * N, 0, 0);
    float *y1 = malloc(sizeof(float) * T * Di), *y2 = malloc(sizeof(float) * T * Di);
    srp_weight wa = weight(A_log, Di, N), wb = weight(bias, 1, Di), wd = weight(D, 1, Di);
    srp_s6_params p = { Di, N, &wa, &wb, &wd };
    s6_batch tb;
    int whole[1] = { T }, zero[1] = { 0 };
    make_batch(&tb, 1, whole, zero);
    srp_mamba_state m1 = { NULL, SRP_F32, st1 }, m2 = { NULL, SRP_F32, st2 };
    REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
    REQUIRE(be->selective_scan(be, &p, mat(x, T, Di), mat(dt, T, Di), mat(B, T, N), mat(C, T, N),
                               mat(z, T, Di), &m1, mat(y1, T, Di), &e) == 0);
    const int pieces[5] = { 20, 1, 13, 1, 15 };
    for (int k = 0, t0 = 0; k < 5; t0 += pieces[k++]) {
        int len[1] = { pieces[k] }, past[1] = { t0 };
        make_batch(&tb, 1, len, past);
        REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
        const int L = pieces[k];
        REQUIRE(be->selective_scan(be, &p, mat(x + t0 * Di, L, Di), mat(dt + t0 * Di, L, Di),
                                   mat(B + t0 * N, L, N), mat(C + t0 * N, L, N),
                                   mat(z + t0 * Di, L, Di), &m2, mat(y2 + t0 * Di, L, Di),
                                   &e) == 0);
    }
    double num = 0, den = 0;
    for (int i = 0; i < T * Di; i++) num += (y1[i] - y2[i]) * (y1[i] - y2[i]), den += y1[i] * y1[i];
    CHECKF(sqrt(num / den) < 1e-6, "pieces vs one pass %.3g", sqrt(num / den));
    CHECK(memcmp(st1, st2, sizeof(float) * S * Di * N) == 0);
    /* bad shapes are errors, not crashes */
    CHECK(be->selective_scan(be, &p, mat(x, T, Di - 1), mat(dt, T, Di), mat(B, T, N), mat(C, T, N),
                             mat(z, T, Di), &m1, mat(y1, T, Di), &e) == SRP_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "selective_scan");
    free(x), free(dt), free(B), free(C), free(z), free(A_log), free(bias), free(D), free(st1),
        free(st2), free(y1), free(y2);
    be->destroy(be);
}

/* FalconMamba's norm: x * rsqrt(mean(x^2) + eps), no weight, in place on a column slice. */
TEST(cpu_rmsnorm_without_weight_in_place) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int R = 6, W = 40, c0 = 9, n = 16;
    float *x = randv(R * W, -3, 3);
    double *ref = malloc(sizeof(double) * R * W);
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int c = c0; c < c0 + n; c++) ss += (double)x[r * W + c] * x[r * W + c];
        for (int c = 0; c < W; c++)
            ref[r * W + c] =
                c >= c0 && c < c0 + n ? x[r * W + c] / sqrt(ss / n + 1e-3) : x[r * W + c];
    }
    srp_mat slice = srp_mat_cols(mat(x, R, W), c0, n);
    REQUIRE(be->rmsnorm(be, slice, NULL, 1e-3f, slice, &e) == 0);
    CHECK(rel_err(x, ref, R * W) < 1e-6);
    free(x), free(ref);
    be->destroy(be);
}
