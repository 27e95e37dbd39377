/* What the Bamba, Falcon-H1 and Zamba2 families add to the CPU backend, against plain
 * double-precision references: Falcon-H1's norm-then-gate and the fp32 stream add of Zamba2
 * (kernels/cpu/cpu_streams.c), on column slices of wider buffers as the layer stack uses them,
 * and the SSD scan at the d_state of 256 that Bamba and Falcon-H1 checkpoints use. */
#include <stdint.h>

#include "backend.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float nrand(void) {
    double s = 0;
    for (int i = 0; i < 3; i++) {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        s += (double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
    }
    return (float)((s - 1.5) * 2.0);
}

static float *randv(int64_t n, float scale) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = nrand() * scale;
    return v;
}

/* rows x cols starting at column c0 of a buffer ld wide */
static srp_mat view(float *data, int64_t rows, int64_t c0, int64_t cols, int64_t ld) {
    return (srp_mat){ data + c0, SRP_F32, rows, cols, ld };
}

static double rel_err(const float *a, int64_t lda, const double *ref, int64_t rows, int64_t cols) {
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const double d = a[r * lda + c] - ref[r * cols + c];
            num += d * d;
            den += ref[r * cols + c] * ref[r * cols + c];
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

TEST(cpu_rmsnorm_gate) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int R = 6, C = 48, LD = 60;
    for (int G = 12; G <= C; G *= 4) { /* grouped (Falcon-H1's n_groups) and whole rows */
        float *y = randv(R * LD, 2), *z = randv(R * LD, 2), *w = randv(C, 1), *o = randv(R * LD, 1);
        double *ref = malloc(sizeof(double) * R * C);
        for (int r = 0; r < R; r++)
            for (int g = 0; g < C; g += G) {
                double ss = 0;
                for (int c = g; c < g + G; c++) ss += (double)y[r * LD + 5 + c] * y[r * LD + 5 + c];
                for (int c = g; c < g + G; c++) {
                    const double zz = z[r * LD + 3 + c];
                    ref[r * C + c] =
                        y[r * LD + 5 + c] / sqrt(ss / G + 1e-5) * w[c] * zz / (1 + exp(-zz));
                }
            }
        srp_weight W = { { w, SRP_F32, 1, C, C }, 0 };
        REQUIRE(be->rmsnorm_gate(be, view(y, R, 5, C, LD), view(z, R, 3, C, LD), &W, G, 1e-5f,
                                 view(o, R, 7, C, LD), &e) == 0);
        const double err = rel_err(o + 7, LD, ref, R, C);
        CHECKF(err < 1e-6, "rmsnorm_gate group %d: %.3g", G, err);
        /* in place, as the Mamba mixer calls it */
        REQUIRE(be->rmsnorm_gate(be, view(y, R, 5, C, LD), view(z, R, 3, C, LD), &W, G, 1e-5f,
                                 view(y, R, 5, C, LD), &e) == 0);
        CHECK(rel_err(y + 5, LD, ref, R, C) < 1e-6);
        CHECK(be->rmsnorm_gate(be, view(y, R, 5, C, LD), view(z, R, 3, C, LD), &W, 7, 1e-5f,
                               view(o, R, 7, C, LD), &e) == SRP_EINVAL);
        free(y), free(z), free(w), free(o), free(ref);
    }
    be->destroy(be);
}

TEST(cpu_add_streams) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int R = 9, C = 40, LD = 2 * C;
    float *x = randv(R * C, 1), *y = randv(R * C, 1), *wide = randv(R * LD, 1);
    double *ref = malloc(sizeof(double) * R * C);
    /* a copy into the left half of a wider buffer (Zamba2's [x | e]); the right half stays */
    float *right = malloc(sizeof(float) * R * C);
    for (int r = 0; r < R; r++) memcpy(right + r * C, wide + r * LD + C, sizeof(float) * C);
    REQUIRE(be->add(be, view(x, R, 0, C, C), NULL, view(wide, R, 0, C, LD), &e) == 0);
    for (int i = 0; i < R * C; i++) ref[i] = x[i];
    CHECK(rel_err(wide, LD, ref, R, C) == 0.0);
    for (int i = 0; i < R * C; i++) ref[i] = right[i];
    CHECK(rel_err(wide + C, LD, ref, R, C) == 0.0);
    /* x + y into y (the norm input x + aux, in place) */
    for (int i = 0; i < R * C; i++) ref[i] = (double)x[i] + y[i];
    srp_mat ym = view(y, R, 0, C, C);
    REQUIRE(be->add(be, view(x, R, 0, C, C), &ym, ym, &e) == 0);
    CHECK(rel_err(y, C, ref, R, C) < 1e-7);
    CHECK(be->add(be, view(x, R, 0, C, C), NULL, view(wide, R, 0, C - 1, LD), &e) == SRP_EINVAL);
    free(x), free(y), free(wide), free(ref), free(right);
    be->destroy(be);
}

/* y and the final state of one sequence by the recurrence (model-spec.md section 1.2), fresh
 * state, one head group. */
static void ssd_recurrence(int T, int H, int P, int N, const float *x, const float *B,
                           const float *C, const float *dt, const float *A_log,
                           const float *dt_bias, const float *D, double *y, double *S) {
    memset(S, 0, sizeof(double) * H * P * N);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const double v = dt[t * H + h] + dt_bias[h], d = v > 20 ? v : log1p(exp(v));
            const double da = exp(d * -exp((double)A_log[h]));
            for (int p = 0; p < P; p++) {
                double acc = 0;
                for (int n = 0; n < N; n++) {
                    double *sv = &S[((int64_t)h * P + p) * N + n];
                    *sv = da * *sv + d * x[t * H * P + h * P + p] * B[t * N + n];
                    acc += *sv * C[t * N + n];
                }
                y[t * H * P + h * P + p] = acc + D[h] * x[t * H * P + h * P + p];
            }
        }
}

TEST(cpu_ssd_state_256) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int T = 45, H = 2, P = 16, N = 256;
    float *x = randv(T * H * P, 1), *B = randv(T * N, 0.3f), *C = randv(T * N, 0.3f);
    float *dt = randv(T * H, 1.5f), *A_log = randv(H, 1), *dt_bias = randv(H, 1), *D = randv(H, 1);
    float *y = randv(T * H * P, 1), *state = randv(H * P * N, 1);
    double *yref = malloc(sizeof(double) * T * H * P), *sref = malloc(sizeof(double) * H * P * N);
    ssd_recurrence(T, H, P, N, x, B, C, dt, A_log, dt_bias, D, yref, sref);
    srp_weight wa = { { A_log, SRP_F32, 1, H, H }, 0 }, wb = { { dt_bias, SRP_F32, 1, H, H }, 0 },
               wd = { { D, SRP_F32, 1, H, H }, 0 };
    srp_mamba_params p = { H, P, 1, N, 4, 16, 0.0f, INFINITY, &wa, &wb, &wd };
    int32_t start[2] = { 0, T }, past[1] = { 0 }, slot[1] = { 0 }, tokens[64] = { 0 };
    srp_batch b = { 1, T, tokens, start, past, slot, NULL, 0, 0, NULL, NULL };
    srp_mamba_state st = { NULL, SRP_F32, state };
    REQUIRE(be->begin_step(be, &b, &e) == 0);
    REQUIRE(be->ssd(be, &p, view(x, T, 0, H * P, H * P), view(B, T, 0, N, N), view(C, T, 0, N, N),
                    view(dt, T, 0, H, H), &st, view(y, T, 0, H * P, H * P), &e) == 0);
    const double ey = rel_err(y, H * P, yref, T, H * P), es = rel_err(state, N, sref, H * P, N);
    CHECKF(ey < 1e-5 && es < 1e-5, "ssd state 256: y %.3g, state %.3g", ey, es);
    free(x), free(B), free(C), free(dt), free(A_log), free(dt_bias), free(D), free(y), free(state),
        free(yref), free(sref);
    be->destroy(be);
}
