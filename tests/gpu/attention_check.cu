/* The CUDA attention (kernels/cuda/attention.cu) against the CPU backend's, on fresh random inputs.
 *
 * Each case builds a batch (prefill, chunked prefill with a prefix already in the pages, decode,
 * mixed), a scrambled block table whose unused entries name a NaN-filled block, KV caches that
 * are NaN wherever nothing was written, q/k/v as column slices of one wider buffer, and an output
 * poisoned with NaN (its padding columns too). It runs srp_cuda_attention twice and the CPU
 * backend's attention once on fp32 copies of the same bf16 values, then checks:
 *   - ||gpu - cpu|| / ||cpu|| <= 1e-2 over every output, no NaN, padding untouched;
 *   - the largest per-(token, head) relative error (reported; <= 5e-2 required, to catch a
 *     single wrong row that the global norm would hide);
 *   - the two GPU runs are bitwise equal (a race would show here);
 *   - the KV caches: every element equal to the CPU cache's (or NaN in both).
 * Usage: attention_check [--seed N] [--only NAME]. Exit status 0 when every case passes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The engine headers carry no extern "C" guards of their own. */
extern "C" {
#include "backend.h"
}
#include "cuda_ops.h"
#include "gpu_batch.h"

#define MAX_SEQS 64

typedef struct attn_case {
    const char *name;
    int H, KV, D, bs;
    float scale; /* 0: 1/sqrt(D) */
    float qamp;  /* q drawn from [-qamp, qamp]; k, v from [-1, 1] */
    int ld_pad;  /* extra columns of the q/k/v buffer (odd: misaligned rows, the generic path) */
    int n_seqs;
    int past[MAX_SEQS], len[MAX_SEQS];
    int rand_decode; /* > 0: n_seqs decode sequences with n_past drawn from [0, rand_decode) */
} attn_case;

/* clang-format off */
static const attn_case cases[] = {
    /* name                      H   KV  D    bs scale qamp pad seqs  n_past ... / len ... / rand */
    { "decode32_g4_d128",        32, 8,  128, 16, 0,    2,   8,  32, { 0 }, { 0 }, 4096 },
    { "mixed_g4_d128",           32, 8,  128, 16, 0,    2,   8,  8,
      { 0, 3000, 0, 1000, 0, 5000, 17, 64 }, { 257, 1, 1, 200, 77, 1, 130, 64 }, 0 },
    { "mixed_g1_d64",            8,  8,  64,  32, 0,    2,   8,  5,
      { 0, 100, 0, 4000, 333 }, { 513, 1, 64, 1, 31 }, 0 },
    { "mixed_g2_d64_sharp",      16, 8,  64,  8,  0.3f, 6,   8,  4,
      { 0, 2047, 129, 9000 }, { 300, 1, 129, 1 }, 0 },
    { "mixed_g8_d128",           32, 4,  128, 16, 0,    2,   8,  5,
      { 0, 6000, 700, 1, 4096 }, { 200, 1, 33, 1, 1 }, 0 },
    { "g3_d64_bs5",              12, 4,  64,  5,  0,    2,   8,  3, { 0, 37, 250 }, { 100, 1, 20 }, 0 },
    { "g16_d64",                 32, 2,  64,  16, 0,    2,   8,  3, { 0, 3000, 10 }, { 70, 1, 1 }, 0 },
    { "g32_d128_two_row_groups", 32, 1,  128, 16, 0,    2,   8,  3, { 0, 3000, 10 }, { 70, 1, 1 }, 0 },
    { "d16_g2_generic",          8,  4,  16,  16, 0,    2,   8,  3, { 0, 500, 50 }, { 100, 1, 30 }, 0 },
    { "d48_g4_generic",          8,  2,  48,  16, 0,    2,   8,  3, { 0, 1200, 300 }, { 90, 1, 17 }, 0 },
    { "d12_g2_unaligned",        6,  3,  12,  16, 0,    2,   1,  2, { 0, 700 }, { 45, 1 }, 0 },
    { "d128_odd_ld_generic",     8,  2,  128, 16, 0,    2,   1,  2, { 0, 900 }, { 40, 1 }, 0 },
    { "prefill1k_g4_d128",       32, 8,  128, 16, 0,    2,   8,  1, { 0 }, { 1024 }, 0 },
    { "long32k_g4_d128",         32, 8,  128, 16, 0,    2,   8,  6,
      { 32767, 32000, 20000, 100, 0, 30000 }, { 1, 1, 1, 1, 1, 32 }, 0 },
    { "decode8_32k_g8_d64",      32, 4,  64,  16, 0,    3,   8,  8, { 0 }, { 0 }, 32768 },
};
/* clang-format on */

static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-a, a), rounded to bf16 */
static uint16_t rand_bf16(float a) {
    const float u = (float)(rng_next() >> 40) / (float)(1ull << 24);
    return srp_f32_to_bf16((2.0f * u - 1.0f) * a);
}

#define BF16_NAN   0x7fc0u
#define OUT_POISON 0xffffu /* a NaN too, and a pattern no write produces */

static int fail(const char *what, srp_err *e) {
    fprintf(stderr, "  %s: %s\n", what, e->msg);
    return 1;
}

/* Returns 0 when the case passes. */
static int run_case(const attn_case *c, srp_backend *cpu, cuda_backend *cb) {
    srp_err e = {};
    int len[MAX_SEQS], past[MAX_SEQS];
    const int S = c->n_seqs, H = c->H, KV = c->KV, D = c->D, bs = c->bs;
    for (int s = 0; s < S; s++) {
        if (c->rand_decode) {
            len[s] = 1;
            past[s] = s == 0 ? 0 : (int)(rng_next() % (uint64_t)c->rand_decode);
        } else {
            len[s] = c->len[s];
            past[s] = c->past[s];
        }
    }
    if (c->rand_decode && S > 1) past[1] = c->rand_decode - 1; /* the longest context too */
    int seq_start[MAX_SEQS + 1], T = 0, max_blocks = 0, n_blocks = 1 /* the NaN block */;
    for (int s = 0; s < S; s++) {
        seq_start[s] = T;
        T += len[s];
        const int nb = (past[s] + len[s] + bs - 1) / bs;
        if (nb + 1 > max_blocks) max_blocks = nb + 1;
        n_blocks += nb;
    }
    seq_start[S] = T;

    /* scrambled block table; unused entries point at the NaN block */
    int32_t *perm = (int32_t *)malloc((size_t)n_blocks * 4);
    int32_t *table = (int32_t *)malloc((size_t)S * max_blocks * 4);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        const int j = (int)(rng_next() % (uint64_t)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    const int32_t nan_block = perm[n_blocks - 1];
    for (int s = 0, next = 0; s < S; s++) {
        const int nb = (past[s] + len[s] + bs - 1) / bs;
        for (int i = 0; i < max_blocks; i++)
            table[(size_t)s * max_blocks + i] = i < nb ? perm[next++] : nan_block;
    }

    /* caches: NaN everywhere, then the prefix (positions < n_past) of every sequence */
    const size_t row = (size_t)KV * D, cache_n = (size_t)n_blocks * bs * row;
    uint16_t *kc_h = (uint16_t *)malloc(cache_n * 2), *vc_h = (uint16_t *)malloc(cache_n * 2);
    float *kc_f = (float *)malloc(cache_n * 4), *vc_f = (float *)malloc(cache_n * 4);
    for (size_t i = 0; i < cache_n; i++) {
        kc_h[i] = vc_h[i] = BF16_NAN;
        kc_f[i] = vc_f[i] = NAN;
    }
    for (int s = 0; s < S; s++)
        for (int pos = 0; pos < past[s]; pos++) {
            const size_t base =
                ((size_t)table[(size_t)s * max_blocks + pos / bs] * bs + pos % bs) * row;
            for (size_t i = 0; i < row; i++) {
                kc_h[base + i] = rand_bf16(1.0f);
                vc_h[base + i] = rand_bf16(1.0f);
                kc_f[base + i] = srp_bf16_to_f32(kc_h[base + i]);
                vc_f[base + i] = srp_bf16_to_f32(vc_h[base + i]);
            }
        }

    /* q, k, v: column slices of one [T, ld] buffer; out [T, H*D + 8] with poisoned padding */
    const int qc = H * D, kc = KV * D, ld = qc + 2 * kc + c->ld_pad, ldo = qc + 8;
    uint16_t *qkv_h = (uint16_t *)malloc((size_t)T * ld * 2);
    float *q_f = (float *)malloc((size_t)T * qc * 4), *k_f = (float *)malloc((size_t)T * kc * 4),
          *v_f = (float *)malloc((size_t)T * kc * 4), *o_f = (float *)malloc((size_t)T * qc * 4);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < ld; i++) {
            const float amp = i < qc ? c->qamp : 1.0f;
            qkv_h[(size_t)t * ld + i] = rand_bf16(amp);
        }
        for (int i = 0; i < qc; i++)
            q_f[(size_t)t * qc + i] = srp_bf16_to_f32(qkv_h[(size_t)t * ld + i]);
        for (int i = 0; i < kc; i++) {
            k_f[(size_t)t * kc + i] = srp_bf16_to_f32(qkv_h[(size_t)t * ld + qc + i]);
            v_f[(size_t)t * kc + i] = srp_bf16_to_f32(qkv_h[(size_t)t * ld + qc + kc + i]);
        }
    }

    srp_batch hb;
    memset(&hb, 0, sizeof hb);
    hb.n_seqs = S;
    hb.n_tokens = T;
    hb.seq_start = seq_start;
    hb.n_past = past;
    hb.block_table = table;
    hb.max_blocks = max_blocks;

    int bad = 0;
    int32_t *meta = NULL;
    uint16_t *qkv_d = NULL, *out_d = NULL, *kc_d = NULL, *vc_d = NULL;
    uint16_t *out_h = (uint16_t *)malloc((size_t)T * ldo * 2),
             *out_h2 = (uint16_t *)malloc((size_t)T * ldo * 2);
    uint16_t *kc_back = (uint16_t *)malloc(cache_n * 2), *vc_back = (uint16_t *)malloc(cache_n * 2);
#define CK(call)                                 \
    do {                                         \
        if (srp_cuda_check((call), #call, &e)) { \
            bad = fail("cuda", &e);              \
            goto done;                           \
        }                                        \
    } while (0)
    CK(cudaMalloc((void **)&qkv_d, (size_t)T * ld * 2));
    CK(cudaMalloc((void **)&out_d, (size_t)T * ldo * 2));
    CK(cudaMalloc((void **)&kc_d, cache_n * 2));
    CK(cudaMalloc((void **)&vc_d, cache_n * 2));
    CK(cudaMemcpyAsync(qkv_d, qkv_h, (size_t)T * ld * 2, cudaMemcpyHostToDevice, cb->stream));
    if (gpu_batch_set(cb, &hb, &meta, &e)) {
        bad = fail("batch", &e);
        goto done;
    }
    {
        srp_attn_params p = { H, KV, D, c->scale > 0 ? c->scale : 1.0f / sqrtf((float)D) };
        srp_mat q = { qkv_d, SRP_BF16, T, qc, ld };
        srp_mat k = { qkv_d + qc, SRP_BF16, T, kc, ld };
        srp_mat v = { qkv_d + qc + kc, SRP_BF16, T, kc, ld };
        srp_mat o = { out_d, SRP_BF16, T, qc, ldo };
        srp_kv_layer kvl = { kc_d, vc_d, SRP_BF16, bs };
        for (int run = 0; run < 2; run++) {
            /* On cb->stream, and waited for: a plain cudaMemcpy from pageable memory can return
             * before its DMA lands and is not ordered with a non-blocking stream (seen: the tail
             * of the cache upload overwrote keys the kernel had just written). */
            CK(cudaMemcpyAsync(kc_d, kc_h, cache_n * 2, cudaMemcpyHostToDevice, cb->stream));
            CK(cudaMemcpyAsync(vc_d, vc_h, cache_n * 2, cudaMemcpyHostToDevice, cb->stream));
            CK(cudaMemsetAsync(out_d, 0xff, (size_t)T * ldo * 2, cb->stream));
            CK(cudaStreamSynchronize(cb->stream));
            if (srp_cuda_attention(cb, &p, q, k, v, &kvl, o, &e)) {
                bad = fail("srp_cuda_attention", &e);
                goto done;
            }
            CK(cudaStreamSynchronize(cb->stream));
            CK(cudaGetLastError());
            CK(cudaMemcpyAsync(run ? out_h2 : out_h, out_d, (size_t)T * ldo * 2,
                               cudaMemcpyDeviceToHost, cb->stream));
            CK(cudaStreamSynchronize(cb->stream));
        }
        CK(cudaMemcpyAsync(kc_back, kc_d, cache_n * 2, cudaMemcpyDeviceToHost, cb->stream));
        CK(cudaMemcpyAsync(vc_back, vc_d, cache_n * 2, cudaMemcpyDeviceToHost, cb->stream));
        CK(cudaStreamSynchronize(cb->stream));

        /* the CPU reference */
        srp_mat qf = { q_f, SRP_F32, T, qc, qc }, kf = { k_f, SRP_F32, T, kc, kc },
                vf = { v_f, SRP_F32, T, kc, kc }, of = { o_f, SRP_F32, T, qc, qc };
        srp_kv_layer kvf = { kc_f, vc_f, SRP_F32, bs };
        if (cpu->begin_step(cpu, &hb, &e) || cpu->attention(cpu, &p, qf, kf, vf, &kvf, of, &e)) {
            bad = fail("cpu attention", &e);
            goto done;
        }
    }
    {
        double num = 0, den = 0, worst_row = 0;
        long nan_out = 0, pad_bad = 0;
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H; h++) {
                double rn = 0, rd = 0;
                for (int d = 0; d < D; d++) {
                    const size_t i = (size_t)h * D + d;
                    const float g = srp_bf16_to_f32(out_h[(size_t)t * ldo + i]);
                    const float r = o_f[(size_t)t * qc + i];
                    if (g != g) nan_out++;
                    rn += ((double)g - r) * ((double)g - r);
                    rd += (double)r * r;
                }
                num += rn;
                den += rd;
                const double rel = sqrt(rn / (rd > 0 ? rd : 1e-30));
                if (!(rel <= worst_row)) worst_row = rel; /* NaN sticks */
            }
            for (int i = qc; i < ldo; i++)
                if (out_h[(size_t)t * ldo + i] != OUT_POISON) pad_bad++;
        }
        const double rel = sqrt(num / den);
        const int same = memcmp(out_h, out_h2, (size_t)T * ldo * 2) == 0;
        long kv_bad = 0;
        for (size_t i = 0; i < cache_n; i++) {
            const float gk = srp_bf16_to_f32(kc_back[i]), gv = srp_bf16_to_f32(vc_back[i]);
            const float rk = kc_f[i], rv = vc_f[i];
            if (!(gk == rk || (gk != gk && rk != rk))) kv_bad++;
            if (!(gv == rv || (gv != gv && rv != rv))) kv_bad++;
        }
        const int ok =
            rel <= 1e-2 && worst_row <= 5e-2 && nan_out == 0 && pad_bad == 0 && same && kv_bad == 0;
        int max_ctx = 0;
        for (int s = 0; s < S; s++)
            if (past[s] + len[s] > max_ctx) max_ctx = past[s] + len[s];
        printf("%-26s H%-3d KV%-2d D%-4d bs%-3d seqs %-3d tokens %-5d max_ctx %-6d  rel %.2e  "
               "worst_row %.2e  nan %ld  pad %ld  repeat %s  kv_bad %ld  %s\n",
               c->name, H, KV, D, bs, S, T, max_ctx, rel, worst_row, nan_out, pad_bad,
               same ? "same" : "DIFF", kv_bad, ok ? "PASS" : "FAIL");
        bad = !ok;
    }
done:
#undef CK
    cudaFree(meta);
    cudaFree(qkv_d);
    cudaFree(out_d);
    cudaFree(kc_d);
    cudaFree(vc_d);
    free(perm);
    free(table);
    free(kc_h);
    free(vc_h);
    free(kc_f);
    free(vc_f);
    free(qkv_h);
    free(q_f);
    free(k_f);
    free(v_f);
    free(o_f);
    free(out_h);
    free(out_h2);
    free(kc_back);
    free(vc_back);
    if (bad) printf("%-26s FAIL\n", c->name);
    return bad;
}

/* Bad arguments come back as error codes with a message, before any launch. */
static int check_errors(cuda_backend *cb) {
    srp_err e = {};
    int32_t seq_start[2] = { 0, 1 }, past[1] = { 40 }, table[2] = { 0, 1 };
    srp_batch hb;
    memset(&hb, 0, sizeof hb);
    hb.n_seqs = 1;
    hb.n_tokens = 1;
    hb.seq_start = seq_start;
    hb.n_past = past;
    hb.block_table = table;
    hb.max_blocks = 2;
    int32_t *meta = NULL;
    uint16_t *buf = NULL;
    int bad = 0;
    if (gpu_batch_set(cb, &hb, &meta, &e) ||
        srp_cuda_check(cudaMalloc((void **)&buf, 1 << 20), "cudaMalloc", &e))
        return fail("setup", &e);
    srp_mat m64 = { buf, SRP_BF16, 1, 4 * 64, 4 * 64 };
    srp_kv_layer kvl = { buf, buf, SRP_BF16, 16 };
    struct {
        const char *what;
        srp_attn_params p;
        srp_mat q;
        int no_table;
        int want;
    } t[] = {
        { "heads not a multiple of kv_heads", { 4, 3, 64, 0.125f }, m64, 0, SRP_EINVAL },
        { "head_dim 300", { 4, 4, 300, 0.125f }, m64, 0, SRP_EUNSUPPORTED },
        { "q of the wrong width", { 4, 4, 32, 0.125f }, m64, 0, SRP_EINVAL },
        { "q in F32", { 4, 4, 64, 0.125f }, { buf, SRP_F32, 1, 256, 256 }, 0, SRP_EINVAL },
        { "no block table", { 4, 4, 64, 0.125f }, m64, 1, SRP_EINVAL },
        { "position past the block table", { 4, 4, 64, 0.125f }, m64, 0, SRP_EINVAL },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        srp_mat kv = { buf, SRP_BF16, 1, (int64_t)t[i].p.kv_heads * t[i].p.head_dim,
                       (int64_t)t[i].p.kv_heads * t[i].p.head_dim };
        const int32_t *saved = cb->batch.block_table;
        if (t[i].no_table) cb->batch.block_table = NULL;
        past[0] = i == 5 ? 40 : 20; /* position 40 needs block 2 of a 2-block table */
        memset(&e, 0, sizeof e);
        const int rc = srp_cuda_attention(cb, &t[i].p, t[i].q, kv, kv, &kvl, t[i].q, &e);
        cb->batch.block_table = saved;
        const int ok = rc == t[i].want && e.msg[0];
        printf("error: %-34s -> %d \"%s\"  %s\n", t[i].what, rc, e.msg, ok ? "PASS" : "FAIL");
        if (!ok) bad = 1;
    }
    cudaFree(buf);
    cudaFree(meta);
    return bad;
}

int main(int argc, char **argv) {
    uint64_t seed = (uint64_t)time(NULL);
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--seed N] [--only NAME]\n", argv[0]);
            return 2;
        }
    }
    srp_err e = {};
    cuda_backend cb;
    if (gpu_backend_init(&cb, &e)) return fail("init", &e), 1;
    srp_backend *cpu = NULL;
    if (srp_backend_cpu_create(0, &cpu, &e)) return fail("cpu backend", &e), 1;
    printf("attention_check on %s, seed %llu\n", cb.prop.name, (unsigned long long)seed);
    int failed = 0, n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && strcmp(only, cases[i].name)) continue;
        rng_state = seed * 1000003u + i;
        failed += run_case(&cases[i], cpu, &cb);
        n++;
        fflush(stdout);
    }
    if (!only) failed += check_errors(&cb);
    srp_cuda_attention_free(&cb);
    cpu->destroy(cpu);
    printf("%d case(s), %d failed\n", n, failed);
    return failed ? 1 : 0;
}
