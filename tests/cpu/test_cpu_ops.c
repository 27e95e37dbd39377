/* The CPU backend's operations against plain double-precision references on random inputs:
 * packed batches of sequences with odd lengths, chunk boundaries inside sequences, and
 * sequences that continue from a state already in their slot. */
#include <stdint.h>

#include "backend.h"
#include "sampler.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;

static double urand(void) { /* xorshift64*, uniform in [0, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static float nrand(void) {
    return (float)((urand() + urand() + urand() - 1.5) * 2.0);
}

static float *randv(int64_t n, float scale) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = nrand() * scale;
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

/* A batch of n sequences with the given lengths and n_past, in slots 2n-1, 2n-3, ... */
typedef struct {
    srp_batch b;
    int32_t tokens[4096], start[17], past[16], slot[16];
} test_batch;

static void make_batch(test_batch *tb, int n, const int *len, const int *past) {
    memset(tb, 0, sizeof *tb);
    int T = 0;
    for (int s = 0; s < n; s++) {
        tb->start[s] = T;
        tb->past[s] = past[s];
        tb->slot[s] = 2 * (n - s) - 1;
        T += len[s];
    }
    tb->start[n] = T;
    tb->b = (srp_batch){ n, T, tb->tokens, tb->start, tb->past, tb->slot, NULL, 0, 0, NULL, NULL };
}

TEST(cpu_gemm_bias_accumulate) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int M = 7, K = 33, N = 19;
    float *x = randv(M * K, 1), *w = randv(N * K, 1), *bias = randv(N, 1), *out = randv(M * N, 1);
    double *ref = malloc(sizeof(double) * M * N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) acc += (double)x[i * K + k] * w[j * K + k];
            ref[i * N + j] = out[i * N + j] + bias[j] + 0.7 * acc;
        }
    srp_weight W = weight(w, N, K), B = weight(bias, 1, N);
    REQUIRE(be->gemm(be, mat(x, M, K), &W, &B, mat(out, M, N), 0.7f, 1, &e) == 0);
    CHECK(rel_err(out, ref, M * N) < 1e-6);
    /* shape mismatch is an error, not a crash */
    CHECK(be->gemm(be, mat(x, M, K - 1), &W, NULL, mat(out, M, N), 1.0f, 0, &e) == SRP_EINVAL);
    free(x), free(w), free(bias), free(out), free(ref);
    be->destroy(be);
}

TEST(cpu_norms) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int R = 5, C = 48, G = 16;
    float *x = randv(R * C, 2), *z = randv(R * C, 2), *w = randv(C, 1), *out = randv(R * C, 1);
    double *ref = malloc(sizeof(double) * R * C);
    srp_weight W = weight(w, 1, C);
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)x[r * C + c] * x[r * C + c];
        for (int c = 0; c < C; c++) ref[r * C + c] = x[r * C + c] / sqrt(ss / C + 1e-5) * w[c];
    }
    REQUIRE(be->rmsnorm(be, mat(x, R, C), &W, 1e-5f, mat(out, R, C), &e) == 0);
    CHECK(rel_err(out, ref, R * C) < 1e-6);
    for (int r = 0; r < R; r++)
        for (int g = 0; g < C; g += G) {
            double v[64], ss = 0;
            for (int c = g; c < g + G; c++) {
                double zz = z[r * C + c];
                v[c - g] = x[r * C + c] * zz / (1 + exp(-zz));
                ss += v[c - g] * v[c - g];
            }
            for (int c = g; c < g + G; c++) ref[r * C + c] = v[c - g] / sqrt(ss / G + 1e-5) * w[c];
        }
    REQUIRE(be->gated_rmsnorm(be, mat(x, R, C), mat(z, R, C), &W, G, 1e-5f, mat(out, R, C), &e) ==
            0);
    CHECK(rel_err(out, ref, R * C) < 1e-6);
    CHECK(be->gated_rmsnorm(be, mat(x, R, C), mat(z, R, C), &W, 7, 1e-5f, mat(out, R, C), &e) ==
          SRP_EINVAL);
    free(x), free(z), free(w), free(out), free(ref);
    be->destroy(be);
}

TEST(cpu_activations) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    float x[6] = { -3.0f, -0.5f, 0.0f, 0.25f, 1.5f, 4.0f }, y[6];
    static const srp_act acts[] = { SRP_ACT_RELU2, SRP_ACT_RELU, SRP_ACT_GELU, SRP_ACT_GELU_TANH,
                                    SRP_ACT_SILU };
    for (int a = 0; a < 5; a++) {
        memcpy(y, x, sizeof x);
        REQUIRE(be->activate(be, acts[a], mat(y, 1, 6), &e) == 0);
        for (int i = 0; i < 6; i++) {
            double v = x[i], want = 0;
            switch (acts[a]) {
            case SRP_ACT_RELU2:
                want = v > 0 ? v * v : 0;
                break;
            case SRP_ACT_RELU:
                want = v > 0 ? v : 0;
                break;
            case SRP_ACT_GELU:
                want = 0.5 * v * (1 + erf(v / sqrt(2.0)));
                break;
            case SRP_ACT_GELU_TANH:
                want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                break;
            case SRP_ACT_SILU:
                want = v / (1 + exp(-v));
                break;
            }
            CHECKF(fabs(y[i] - want) < 1e-5 * (1 + fabs(want)), "%s(%g) = %g, want %g",
                   srp_act_name(acts[a]), v, y[i], want);
        }
    }
    be->destroy(be);
}

TEST(cpu_conv1d_continues_from_slot_state) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int C = 11, K = 4, S = 8;
    int len[3] = { 1, 9, 2 }, past[3] = { 5, 0, 3 };
    test_batch tb;
    make_batch(&tb, 3, len, past);
    const int T = tb.b.n_tokens;
    float *x = randv(T * C, 1), *w = randv(C * K, 1), *bias = randv(C, 1), *out = randv(T * C, 1);
    float *state = randv(S * C * (K - 1), 1), *state0 = malloc(sizeof(float) * S * C * (K - 1));
    memcpy(state0, state, sizeof(float) * S * C * (K - 1));
    double *ref = malloc(sizeof(double) * T * C);
    for (int s = 0; s < 3; s++)
        for (int c = 0; c < C; c++) {
            /* the full input history: K-1 state columns (or zeros), then the new tokens */
            double hist[64];
            for (int k = 0; k < K - 1; k++)
                hist[k] = past[s] ? state0[(tb.slot[s] * C + c) * (K - 1) + k] : 0.0;
            for (int t = 0; t < len[s]; t++) hist[K - 1 + t] = x[(tb.start[s] + t) * C + c];
            for (int t = 0; t < len[s]; t++) {
                double acc = bias[c];
                for (int k = 0; k < K; k++) acc += w[c * K + k] * hist[t + k];
                ref[(tb.start[s] + t) * C + c] = acc / (1 + exp(-acc));
            }
        }
    srp_weight W = weight(w, C, K), B = weight(bias, 1, C);
    srp_mamba_state st = { state, SRP_F32, NULL };
    REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
    REQUIRE(be->conv1d(be, mat(x, T, C), &W, &B, K, &st, mat(out, T, C), &e) == 0);
    CHECK(rel_err(out, ref, T * C) < 1e-6);
    /* the slot now holds the last K-1 raw inputs */
    for (int s = 0; s < 3; s++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K - 1; k++) {
                int t = len[s] - (K - 1) + k; /* index into the new tokens */
                float want = t >= 0    ? x[(tb.start[s] + t) * C + c]
                             : past[s] ? state0[(tb.slot[s] * C + c) * (K - 1) + k + len[s]]
                                       : 0.0f;
                CHECK(state[(tb.slot[s] * C + c) * (K - 1) + k] == want);
            }
    /* untouched slots stay untouched */
    CHECK(!memcmp(state, state0, sizeof(float) * C * (K - 1)));
    free(x), free(w), free(bias), free(out), free(state), free(state0), free(ref);
    be->destroy(be);
}

/* The recurrence of model-spec.md section 1.2, in double: the oracle for the chunked scan. */
static void ssd_reference(const srp_mamba_params *p, const test_batch *tb, const float *x,
                          const float *B, const float *C, const float *dt, const float *A_log,
                          const float *dt_bias, const float *D, const float *state0, double *y,
                          double *state_out) {
    const int H = p->heads, P = p->head_dim, N = p->state, G = p->groups;
    const int xw = H * P, bw = G * N;
    for (int s = 0; s < tb->b.n_seqs; s++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / G);
            double S[64 * 64];
            for (int i = 0; i < P * N; i++)
                S[i] = tb->past[s] ? state0[((int64_t)tb->slot[s] * H + h) * P * N + i] : 0.0;
            for (int t = tb->start[s]; t < tb->start[s + 1]; t++) {
                double v = dt[t * H + h] + dt_bias[h];
                double d = v > 20 ? v : log1p(exp(v));
                d = fmin(fmax(d, p->dt_min), p->dt_max);
                double da = exp(d * -exp((double)A_log[h]));
                for (int pp = 0; pp < P; pp++) {
                    double acc = 0;
                    for (int n = 0; n < N; n++) {
                        double *sv = &S[pp * N + n];
                        *sv = da * *sv + d * x[t * xw + h * P + pp] * B[t * bw + g * N + n];
                        acc += *sv * C[t * bw + g * N + n];
                    }
                    y[t * xw + h * P + pp] = acc + D[h] * x[t * xw + h * P + pp];
                }
            }
            for (int i = 0; i < P * N; i++)
                state_out[((int64_t)tb->slot[s] * H + h) * P * N + i] = S[i];
        }
}

static void check_ssd(int chunk, int n, const int *len, const int *past) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int H = 6, P = 8, N = 12, G = 3, SL = 2 * n;
    test_batch tb;
    make_batch(&tb, n, len, past);
    const int T = tb.b.n_tokens;
    float *x = randv(T * H * P, 1), *B = randv(T * G * N, 1), *C = randv(T * G * N, 1);
    float *dt = randv(T * H, 1.5f), *A_log = randv(H, 1), *dt_bias = randv(H, 1), *D = randv(H, 1);
    float *y = randv(T * H * P, 1), *state = randv(SL * H * P * N, 0.5f);
    float *state0 = malloc(sizeof(float) * SL * H * P * N);
    memcpy(state0, state, sizeof(float) * SL * H * P * N);
    double *yref = calloc((size_t)T * H * P, sizeof(double));
    double *sref = malloc(sizeof(double) * SL * H * P * N);
    for (int i = 0; i < SL * H * P * N; i++) sref[i] = state0[i];
    srp_weight wa = weight(A_log, 1, H), wb = weight(dt_bias, 1, H), wd = weight(D, 1, H);
    srp_mamba_params p = { H, P, G, N, 4, chunk, 0.01f, 4.0f, &wa, &wb, &wd };
    ssd_reference(&p, &tb, x, B, C, dt, A_log, dt_bias, D, state0, yref, sref);
    srp_mamba_state st = { NULL, SRP_F32, state };
    REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
    REQUIRE(be->ssd(be, &p, mat(x, T, H * P), mat(B, T, G * N), mat(C, T, G * N), mat(dt, T, H),
                    &st, mat(y, T, H * P), &e) == 0);
    double ey = rel_err(y, yref, (int64_t)T * H * P);
    double es = rel_err(state, sref, (int64_t)SL * H * P * N);
    CHECKF(ey < 1e-5, "chunk %d: output rel err %.3g", chunk, ey);
    CHECKF(es < 1e-5, "chunk %d: state rel err %.3g", chunk, es);
    free(x), free(B), free(C), free(dt), free(A_log), free(dt_bias), free(D), free(y);
    free(state), free(state0), free(yref), free(sref);
    be->destroy(be);
}

TEST(cpu_ssd_chunked_matches_recurrence) {
    int len[4] = { 37, 1, 64, 5 }, past[4] = { 0, 9, 3, 0 };
    check_ssd(8, 4, len, past);   /* sequences cross many chunk boundaries */
    check_ssd(16, 4, len, past);  /* a sequence exactly 4 chunks long */
    check_ssd(3, 4, len, past);   /* odd chunk */
    check_ssd(256, 4, len, past); /* one partial chunk */
    int one[1] = { 1 }, cont[1] = { 7 };
    check_ssd(16, 1, one, cont); /* a single decode step */
}

/* Attention over a paged cache whose blocks are handed out in a scrambled order. */
TEST(cpu_attention_paged_gqa) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int H = 6, KVH = 2, Dh = 8, BS = 4, MB = 8, NB = 64;
    int len[3] = { 5, 1, 11 }, past[3] = { 0, 13, 6 };
    test_batch tb;
    make_batch(&tb, 3, len, past);
    const int T = tb.b.n_tokens;
    int32_t table[3 * MB];
    for (int i = 0; i < 3 * MB; i++) table[i] = (i * 37 + 11) % NB; /* distinct ids */
    tb.b.block_table = table;
    tb.b.max_blocks = MB;
    float *kc = randv(NB * BS * KVH * Dh, 1), *vc = randv(NB * BS * KVH * Dh, 1);
    float *q = randv(T * H * Dh, 1), *k = randv(T * KVH * Dh, 1), *v = randv(T * KVH * Dh, 1);
    float *out = randv(T * H * Dh, 1);
    double *ref = malloc(sizeof(double) * T * H * Dh);
    const float scale = 0.3f;
    for (int s = 0; s < 3; s++) {
        /* the whole history of K and V in order: cached positions, then this step's tokens */
        int ctx = past[s] + len[s];
        float *K = malloc(sizeof(float) * ctx * KVH * Dh),
              *V = malloc(sizeof(float) * ctx * KVH * Dh);
        for (int j = 0; j < ctx; j++) {
            const float *ks, *vs;
            if (j < past[s]) {
                int32_t blk = table[s * MB + j / BS];
                ks = kc + ((int64_t)blk * BS + j % BS) * KVH * Dh;
                vs = vc + ((int64_t)blk * BS + j % BS) * KVH * Dh;
            } else {
                ks = k + (tb.start[s] + j - past[s]) * KVH * Dh;
                vs = v + (tb.start[s] + j - past[s]) * KVH * Dh;
            }
            memcpy(K + j * KVH * Dh, ks, sizeof(float) * KVH * Dh);
            memcpy(V + j * KVH * Dh, vs, sizeof(float) * KVH * Dh);
        }
        for (int i = 0; i < len[s]; i++) {
            int t = tb.start[s] + i, pos = past[s] + i;
            for (int h = 0; h < H; h++) {
                int kh = h / (H / KVH);
                double sc[64], mx = -1e300, sum = 0;
                for (int j = 0; j <= pos; j++) {
                    double d = 0;
                    for (int c = 0; c < Dh; c++)
                        d += (double)q[(t * H + h) * Dh + c] * K[(j * KVH + kh) * Dh + c];
                    sc[j] = d * scale;
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= pos; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int c = 0; c < Dh; c++) {
                    double acc = 0;
                    for (int j = 0; j <= pos; j++) acc += sc[j] / sum * V[(j * KVH + kh) * Dh + c];
                    ref[(t * H + h) * Dh + c] = acc;
                }
            }
        }
        free(K), free(V);
    }
    srp_kv_layer kv = { kc, vc, SRP_F32, BS };
    srp_attn_params p = { H, KVH, Dh, scale };
    REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
    REQUIRE(be->attention(be, &p, mat(q, T, H * Dh), mat(k, T, KVH * Dh), mat(v, T, KVH * Dh), &kv,
                          mat(out, T, H * Dh), &e) == 0);
    CHECK(rel_err(out, ref, T * H * Dh) < 1e-5);
    free(kc), free(vc), free(q), free(k), free(v), free(out), free(ref);
    be->destroy(be);
}

TEST(sampler_greedy_and_filters) {
    float logits[6] = { 0.5f, 3.0f, 2.9f, -1.0f, 3.0f, 0.0f };
    float scratch[6];
    int32_t order[6];
    srp_sample_params g = {
        .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 1, .step = 0
    };
    CHECK(srp_sample_row(logits, 6, &g, scratch, order) == 1); /* lowest index of the tie */
    srp_sample_params k1 = {
        .temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .min_p = 0.0f, .seed = 1, .step = 0
    };
    CHECK(srp_sample_row(logits, 6, &k1, scratch, order) == 1);
    /* top-k 3 and min-p keep only {1, 2, 4}; top-p 0.5 keeps the two ties */
    srp_sample_params k3 = {
        .temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .min_p = 0.0f, .seed = 7, .step = 0
    };
    srp_sample_params mp = {
        .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.5f, .seed = 7, .step = 0
    };
    srp_sample_params tp = {
        .temperature = 1.0f, .top_k = 0, .top_p = 0.5f, .min_p = 0.0f, .seed = 7, .step = 0
    };
    int seen[6] = { 0 }, seen_tp[6] = { 0 };
    for (uint64_t step = 0; step < 2000; step++) {
        k3.step = mp.step = tp.step = step;
        int32_t a = srp_sample_row(logits, 6, &k3, scratch, order);
        int32_t b = srp_sample_row(logits, 6, &mp, scratch, order);
        int32_t c = srp_sample_row(logits, 6, &tp, scratch, order);
        CHECK(a == 1 || a == 2 || a == 4);
        CHECK(b == 1 || b == 2 || b == 4);
        CHECK(c == 1 || c == 4);
        seen[a]++;
        seen_tp[c]++;
    }
    /* the three kept tokens have probabilities ~ 1 : 0.905 : 1 */
    CHECK(seen[1] > 550 && seen[2] > 500 && seen[4] > 550);
    CHECK(seen_tp[1] > 850 && seen_tp[4] > 850);
}

TEST(sampler_is_deterministic_per_seed_and_step) {
    float logits[50];
    for (int i = 0; i < 50; i++) logits[i] = (float)((i * 7919) % 13) * 0.3f;
    float scratch[50];
    int32_t order[50];
    srp_sample_params p = {
        .temperature = 0.9f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 42, .step = 0
    };
    int32_t first[64];
    for (int s = 0; s < 64; s++) {
        p.step = (uint64_t)s;
        first[s] = srp_sample_row(logits, 50, &p, scratch, order);
    }
    int differ = 0;
    for (int s = 0; s < 64; s++) {
        p.step = (uint64_t)s;
        CHECK(srp_sample_row(logits, 50, &p, scratch, order) == first[s]);
        p.seed = 43;
        differ += srp_sample_row(logits, 50, &p, scratch, order) != first[s];
        p.seed = 42;
    }
    CHECK(differ > 10); /* another seed draws other tokens */
    /* temperature sharpens: at T = 0.05 the four tokens tied for the best logit take ~99% */
    srp_sample_params cold = {
        .temperature = 0.05f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 3, .step = 0
    };
    float best = logits[srp_argmax(logits, 50)];
    int hits = 0;
    for (int s = 0; s < 200; s++) {
        cold.step = (uint64_t)s;
        hits += logits[srp_sample_row(logits, 50, &cold, scratch, order)] == best;
    }
    CHECK(hits >= 190);
}

/* OpenBLAS must not fall back to its generic kernels on a CPU that has AVX2 (it did on these
 * machines when left to detect the CPU itself). */
TEST(cpu_blas_uses_the_cpus_vector_units) {
    srp_backend *be = cpu();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && !getenv("OPENBLAS_CORETYPE")) {
        const char *core = srp_backend_cpu_blas_core();
        CHECKF(strcmp(core, "Prescott") && strcmp(core, "Core2") && strcmp(core, "Nehalem"),
               "OpenBLAS chose %s", core);
    }
#endif
    be->destroy(be);
}

/* RoPE against transformers' formula written out: cos/sin tables of position * inv_freq, then
 * x * cos + rotate_half(x) * sin on the first `dim` channels of every head. */
static void rope_ref(double *x, int heads, int hd, int dim, double pos, double base) {
    const int half = dim / 2;
    for (int h = 0; h < heads; h++) {
        double *v = x + h * hd, rot[256];
        for (int i = 0; i < dim; i++) rot[i] = i < half ? -v[i + half] : v[i - half];
        for (int i = 0; i < dim; i++) {
            const double f = pow(base, -2.0 * (i % half) / dim);
            v[i] = v[i] * cos(pos * f) + rot[i] * sin(pos * f);
        }
    }
}

TEST(cpu_rope_matches_rotate_half) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int H = 4, KV = 2, HD = 16, DIM = 12, T = 9;
    int len[2] = { 6, 3 }, past[2] = { 0, 40 };
    test_batch tb;
    make_batch(&tb, 2, len, past);
    for (int dyn = 0; dyn < 2; dyn++) {
        const float theta = 500.0f, factor = 3.0f;
        const int max_pos = 16;
        float inv_freq[DIM / 2];
        for (int i = 0; i < DIM / 2; i++) inv_freq[i] = (float)pow(theta, -2.0 * i / DIM);
        srp_weight f = weight(inv_freq, 1, DIM / 2);
        float *q = randv(T * H * HD, 1), *k = randv(T * KV * HD, 1);
        double *rq = malloc(sizeof(double) * T * H * HD),
               *rk = malloc(sizeof(double) * T * KV * HD);
        for (int i = 0; i < T * H * HD; i++) rq[i] = q[i];
        for (int i = 0; i < T * KV * HD; i++) rk[i] = k[i];
        for (int s = 0; s < 2; s++) {
            /* transformers' dynamic NTK: the base grows with the sequence length it sees */
            const int L = past[s] + len[s];
            double base = theta;
            if (dyn && L > max_pos)
                base = theta * pow(factor * L / max_pos - (factor - 1), (double)DIM / (DIM - 2));
            for (int t = tb.start[s]; t < tb.start[s + 1]; t++) {
                const double pos = past[s] + t - tb.start[s];
                rope_ref(rq + t * H * HD, H, HD, DIM, pos, base);
                rope_ref(rk + t * KV * HD, KV, HD, DIM, pos, base);
            }
        }
        srp_rope_params p = { H, KV, HD, DIM, &f, dyn, theta, factor, max_pos };
        REQUIRE(be->begin_step(be, &tb.b, &e) == 0);
        REQUIRE(be->rope(be, &p, mat(q, T, H * HD), mat(k, T, KV * HD), &e) == 0);
        CHECKF(rel_err(q, rq, T * H * HD) < 2e-6, "dynamic %d: q %.3g", dyn,
               rel_err(q, rq, T * H * HD));
        CHECKF(rel_err(k, rk, T * KV * HD) < 2e-6, "dynamic %d: k %.3g", dyn,
               rel_err(k, rk, T * KV * HD));
        free(q), free(k), free(rq), free(rk);
    }
    srp_rope_params bad = { H, KV, HD, HD + 2, NULL, 0, 1, 1, 1 };
    float q1[64], k1[32];
    CHECK(be->rope(be, &bad, mat(q1, 1, 64), mat(k1, 1, 32), &e) == SRP_EINVAL);
    be->destroy(be);
}

TEST(cpu_activate_gated) {
    srp_backend *be = cpu();
    srp_err e = { 0 };
    const int R = 5, C = 37;
    float *g = randv(R * C, 2), *u = randv(R * C, 2), *o = randv(R * C, 1);
    double *ref = malloc(sizeof(double) * R * C);
    for (int i = 0; i < R * C; i++) ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    REQUIRE(be->activate_gated(be, SRP_ACT_SILU, mat(g, R, C), mat(u, R, C), mat(o, R, C), &e) ==
            0);
    CHECK(rel_err(o, ref, R * C) < 1e-6);
    for (int i = 0; i < R * C; i++) ref[i] = (g[i] > 0 ? (double)g[i] * g[i] : 0.0) * u[i];
    REQUIRE(be->activate_gated(be, SRP_ACT_RELU2, mat(g, R, C), mat(u, R, C), mat(g, R, C), &e) ==
            0); /* in place */
    CHECK(rel_err(g, ref, R * C) < 1e-6);
    CHECK(be->activate_gated(be, SRP_ACT_SILU, mat(g, R, C), mat(u, R, C - 1), mat(o, R, C), &e) ==
          SRP_EINVAL);
    free(g), free(u), free(o), free(ref);
    be->destroy(be);
}
