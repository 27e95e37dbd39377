/* The CUDA Mamba-1 operations against the CPU backend (GPU machine only; ctest label "gpu"): the
 * selective scan's prefill and decode kernels on batches that mix both, with sequences
 * continuing from their slot, odd channel counts and state sizes, inputs as column slices of a
 * wider projection buffer (as the mixer lays them out), outputs poisoned with NaN; and the RMS
 * norm without weight on bf16 slices, in place. */
#include "gpu_pair.h"
#include "test.h"

static uint64_t rng = 0x853c49e6748fea9bull;

/* The mixer's layout: proj [T][3 Di + R + 2N] holds z at Di, dt at 2 Di, B and C after R
 * columns of x_proj's dt; x is its own [T][Di]. */
static void check_scan(int Di, int N, int n, const int *len, const int *past, int gate, int bias_d,
                       double y_tol, double state_tol) {
    const int S = 64, R = 7;
    gp_batch tb;
    gp_make_batch(&tb, n, len, past);
    const int T = tb.b.n_tokens, W = 3 * Di + R + 2 * N;
    gp_pair p = gp_backends(T, n);
    srp_err e = { 0 };
    gp_begin(&p, &tb.b);
    float *x = gp_rand(&rng, (int64_t)T * Di, -2, 2),
          *proj = gp_rand(&rng, (int64_t)T * W, -1.5f, 1.5f);
    /* dt in the range trained models give softplus (dt + bias): 1e-4 .. 1 */
    for (int t = 0; t < T; t++)
        for (int i = 0; i < Di; i++)
            proj[(int64_t)t * W + 2 * Di + i] =
                srp_bf16_to_f32(srp_f32_to_bf16(proj[(int64_t)t * W + 2 * Di + i] * 2.0f - 1.0f));
    float *A_log = gp_rand(&rng, (int64_t)Di * N, -1, 2.8f), *bias = gp_rand(&rng, Di, -6, -1);
    float *D = gp_rand(&rng, Di, 0.5f, 1.5f), *st = gp_rand(&rng, (int64_t)S * Di * N, -1, 1);
    srp_backend *be[2] = { p.cpu, p.gpu };
    srp_weight w[2][3];
    srp_mat xm[2], pm[2], ym[2], sm[2];
    srp_mamba_state ms[2];
    for (int k = 0; k < 2; k++) {
        const srp_dtype act = k ? SRP_BF16 : SRP_F32;
        w[k][0] = gp_weight(be[k], A_log, Di, N);
        w[k][1] = gp_weight(be[k], bias, 1, Di);
        w[k][2] = gp_weight(be[k], D, 1, Di);
        xm[k] = gp_put(be[k], act, T, Di, x);
        pm[k] = gp_put(be[k], act, T, W, proj);
        ym[k] = gp_put(be[k], act, T, Di, NULL);
        sm[k] = gp_put(be[k], SRP_F32, S, (int64_t)Di * N, st);
        ms[k] = (srp_mamba_state){ NULL, act, sm[k].data };
        srp_s6_params sp = { Di, N, &w[k][0], bias_d ? &w[k][1] : NULL, bias_d ? &w[k][2] : NULL };
        srp_mat z = gate ? srp_mat_cols(pm[k], Di, Di) : (srp_mat){ 0 };
        int rc = be[k]->selective_scan(
            be[k], &sp, xm[k], srp_mat_cols(pm[k], 2 * Di, Di), srp_mat_cols(pm[k], 3 * Di + R, N),
            srp_mat_cols(pm[k], 3 * Di + R + N, N), z, &ms[k], ym[k], &e);
        CHECKF(rc == 0, "%s: %s", be[k]->name, e.msg);
    }
    float *a = gp_get_all(p.gpu, ym[1]), *b = gp_get_all(p.cpu, ym[0]);
    const double ey = gp_rel(a, b, (int64_t)T * Di);
    free(a), free(b);
    a = gp_get_all(p.gpu, sm[1]), b = gp_get_all(p.cpu, sm[0]);
    double num = 0, den = 0; /* the batch's slots; the others must be untouched */
    int others_same = 1;
    for (int sl = 0; sl < S; sl++) {
        int used = 0;
        for (int s = 0; s < n; s++) used |= tb.slot[s] == sl;
        for (int64_t i = 0; i < (int64_t)Di * N; i++) {
            const int64_t k = (int64_t)sl * Di * N + i;
            if (!used) {
                others_same &= a[k] == st[k];
                continue;
            }
            num += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
            den += (double)b[k] * b[k];
            if (a[k] != a[k]) num = INFINITY;
        }
    }
    const double es = sqrt(num / (den > 0 ? den : 1));
    fprintf(stderr, "  scan Di %d N %d, %d seqs (%d tokens)%s%s: y rel err %.2e, state %.2e\n", Di,
            N, n, T, gate ? ", gated" : "", bias_d ? "" : ", no bias or D", ey, es);
    CHECKF(ey < y_tol, "scan Di %d N %d: y %.3g", Di, N, ey);
    CHECKF(es < state_tol, "scan Di %d N %d: state %.3g", Di, N, es);
    CHECK(others_same);
    free(a), free(b), free(x), free(proj), free(A_log), free(bias), free(D), free(st);
    gp_release(&p);
}

TEST(gpu_selective_scan_prefill_and_decode) {
    int len[8] = { 1, 37, 64, 130, 1, 200, 2, 3 }, past[8] = { 4, 0, 7, 0, 0, 3, 0, 5 };
    /* the state stays fp32 in both; y is rounded to bf16 */
    check_scan(100, 16, 8, len, past, 1, 1, 1e-2, 1e-4); /* 4 threads per channel */
    check_scan(37, 24, 8, len, past, 0, 0, 1e-2, 1e-4);  /* 8 threads, padded states */
    check_scan(64, 5, 8, len, past, 1, 1, 1e-2, 1e-4);   /* 2 threads; decode without float4 */
    check_scan(48, 64, 8, len, past, 1, 1, 1e-2, 1e-4);  /* 16 threads */
    /* enough blocks for the wide tiles (16 channels; 32 with 8 states) */
    int wl[5] = { 40, 1, 150, 20, 7 }, wp[5] = { 0, 3, 9, 0, 2 };
    check_scan(5120, 16, 3, wl, wp, 1, 1, 1e-2, 1e-4);
    check_scan(5120, 8, 5, wl, wp, 1, 1, 1e-2, 1e-4);
    check_scan(5120, 24, 3, wl, wp, 0, 1, 1e-2, 1e-4);
    check_scan(5120, 64, 3, wl, wp, 1, 0, 1e-2, 1e-4);
    int one[1] = { 2000 }, zero[1] = { 0 };
    check_scan(640, 16, 1, one, zero, 1, 1, 1e-2, 1e-4); /* 32 chunks */
    /* decode only, Mamba-2.8B's width */
    int dl[64], dp[64];
    for (int i = 0; i < 64; i++) dl[i] = 1, dp[i] = i % 3 ? 17 * i : 0;
    check_scan(5120, 16, 64, dl, dp, 1, 1, 1e-2, 1e-5);
}

/* FalconMamba's weightless norms of dt, B and C: bf16 column slices, in place. */
TEST(gpu_rmsnorm_without_weight) {
    const int R = 300, W = 200;
    gp_pair p = gp_backends(R, 1);
    srp_err e = { 0 };
    float *x = gp_rand(&rng, (int64_t)R * W, -3, 3);
    const int c0[3] = { 0, 7, 40 }, n[3] = { 7, 16, 160 };
    srp_mat xc = gp_put(p.cpu, SRP_F32, R, W, x), xg = gp_put(p.gpu, SRP_BF16, R, W, x);
    for (int k = 0; k < 3; k++) {
        srp_mat sc = srp_mat_cols(xc, c0[k], n[k]), sg = srp_mat_cols(xg, c0[k], n[k]);
        REQUIRE(p.cpu->rmsnorm(p.cpu, sc, NULL, 1e-3f, sc, &e) == 0);
        REQUIRE(p.gpu->rmsnorm(p.gpu, sg, NULL, 1e-3f, sg, &e) == 0);
    }
    float *a = gp_get_all(p.gpu, xg), *b = gp_get_all(p.cpu, xc);
    const double err = gp_rel(a, b, (int64_t)R * W);
    fprintf(stderr, "  rmsnorm without weight: rel err %.2e\n", err);
    CHECKF(err < 1e-2, "rmsnorm without weight %.3g", err);
    free(a), free(b), free(x);
    gp_release(&p);
}
