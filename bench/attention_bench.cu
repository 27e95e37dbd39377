/* Micro-benchmark of the CUDA attention (kernels/cuda/attention.cu, the production launcher)
 * against the roofline, for the attention layer of the 8B Mamba-2-Hybrid (32 query heads, 8 KV
 * heads, head_dim 128, KV blocks of 16).
 *
 * First it measures the two ceilings on this GPU: device-to-device copy bandwidth (bytes read +
 * written over time, 1 GiB) and the bf16 matrix rate (cuBLAS, 8192^3, fp32 accumulation). Each
 * case then reports the median of many runs of the whole operation (KV write + attention
 * kernels), timed with CUDA events after a warm-up, rotating over enough input sets (caches
 * included) that the working set is at least 3x the L2. Every case is timed in two passes so
 * the spread between them shows.
 *   bytes = K and V of every attended position read once + this step's k, v read and written to
 *           the pages + q read + out written
 *   flops = 4 * head_dim * heads * (number of (query, key) pairs the causal mask keeps)
 *   floor = max(bytes / copy bandwidth, flops / matrix rate); fraction = floor / time.
 * Usage: attention_bench [--json PATH] [--runs N] [--commit SHA] [--only NAME] */
#include <cublas_v2.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The engine headers carry no extern "C" guards of their own. */
extern "C" {
#include "backend.h"
}
#include "cuda_ops.h"
#include "gpu_batch.h"

#define H_  32
#define KV_ 8
#define D_  128
#define BS_ 16

typedef struct bench_case {
    const char *name;
    int n_seqs, len, past;
    int kv_heads; /* 0: KV_ (the hybrid's GQA); 32: the 8B Transformer's multi-head attention */
} bench_case;

static const bench_case cases[] = {
    { "decode_b32_ctx4k", 32, 1, 4095, 0 },
    { "decode_b32_ctx32k", 32, 1, 32767, 0 },
    { "decode_b1_ctx32k", 1, 1, 32767, 0 },
    { "decode_b128_ctx4k", 128, 1, 4095, 0 },
    { "prefill_2k", 1, 2048, 0, 0 },
    { "prefill_8k", 1, 8192, 0, 0 },
    { "prefill_32k", 1, 32768, 0, 0 },
    { "prefill_4x2k", 4, 2048, 0, 0 },
    { "prefill_chunk2k_past6k", 1, 2048, 6144, 0 },
    { "mha_decode_b32_ctx32k", 32, 1, 32767, 32 },
};

#define DIE(...)                      \
    do {                              \
        fprintf(stderr, __VA_ARGS__); \
        fprintf(stderr, "\n");        \
        exit(1);                      \
    } while (0)
#define CU(call)                                                                      \
    do {                                                                              \
        cudaError_t err_ = (call);                                                    \
        if (err_ != cudaSuccess)                                                      \
            DIE("%s:%d %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
    } while (0)

/* random bf16 in [-1, 1) from a counter hash: benchmarks never run on zeros */
static __global__ void fill_random(uint16_t *p, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = seed + i * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        const float u = (float)(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
        __nv_bfloat16 b = __float2bfloat16(u);
        p[i] = *(uint16_t *)&b;
    }
}

static void fill(uint16_t *p, size_t n, uint64_t seed) {
    fill_random<<<1024, 256>>>(p, n, seed);
    CU(cudaGetLastError());
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static float median(float *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

/* Device-to-device copy bandwidth, bytes read + written per second. */
static double copy_bandwidth(void) {
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CU(cudaMalloc(&a, bytes));
    CU(cudaMalloc(&b, bytes));
    fill((uint16_t *)a, bytes / 2, 1);
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    float t[20];
    for (int i = 0; i < 23; i++) {
        CU(cudaEventRecord(e0));
        CU(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
        CU(cudaEventRecord(e1));
        CU(cudaEventSynchronize(e1));
        if (i >= 3) CU(cudaEventElapsedTime(&t[i - 3], e0, e1));
    }
    CU(cudaFree(a));
    CU(cudaFree(b));
    return 2.0 * bytes / (median(t, 20) * 1e-3);
}

/* bf16 GEMM rate of cuBLAS, flop/s. */
static double matmul_rate(void) {
    const int n = 8192;
    uint16_t *a, *b, *c;
    CU(cudaMalloc((void **)&a, (size_t)n * n * 2));
    CU(cudaMalloc((void **)&b, (size_t)n * n * 2));
    CU(cudaMalloc((void **)&c, (size_t)n * n * 2));
    fill(a, (size_t)n * n, 2);
    fill(b, (size_t)n * n, 3);
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) DIE("cublasCreate failed");
    const float one = 1.0f, zero = 0.0f;
    cudaEvent_t e0, e1;
    CU(cudaEventCreate(&e0));
    CU(cudaEventCreate(&e1));
    float t[10];
    for (int i = 0; i < 13; i++) {
        CU(cudaEventRecord(e0));
        if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, CUDA_R_16BF, n, b,
                         CUDA_R_16BF, n, &zero, c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
            DIE("cublasGemmEx failed");
        CU(cudaEventRecord(e1));
        CU(cudaEventSynchronize(e1));
        if (i >= 3) CU(cudaEventElapsedTime(&t[i - 3], e0, e1));
    }
    cublasDestroy(h);
    CU(cudaFree(a));
    CU(cudaFree(b));
    CU(cudaFree(c));
    return 2.0 * n * n * (double)n / (median(t, 10) * 1e-3);
}

typedef struct input_set {
    uint16_t *qkv, *out, *kc, *vc;
} input_set;

typedef struct result {
    float med_us[2], min_us;
    double bytes, flops;
    long nan_out;
} result;

static result run_case(cuda_backend *cb, const bench_case *c, int runs, size_t l2) {
    const int S = c->n_seqs, T = S * c->len, ctx = c->past + c->len;
    const int nb_seq = (ctx + BS_ - 1) / BS_, n_blocks = S * nb_seq;
    const int kvh = c->kv_heads ? c->kv_heads : KV_;
    const int qc = H_ * D_, kc = kvh * D_, ld = qc + 2 * kc;
    int32_t *seq_start = (int32_t *)malloc((size_t)(S + 1) * 4);
    int32_t *past = (int32_t *)malloc((size_t)S * 4);
    int32_t *table = (int32_t *)malloc((size_t)n_blocks * 4);
    for (int s = 0; s <= S; s++) seq_start[s] = s * c->len;
    for (int s = 0; s < S; s++) past[s] = c->past;
    /* a scrambled table: blocks of a sequence are not contiguous in memory */
    for (int i = 0; i < n_blocks; i++) table[i] = i;
    uint64_t r = 12345;
    for (int i = n_blocks - 1; i > 0; i--) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        const int j = (int)((r >> 33) % (uint64_t)(i + 1));
        const int32_t t = table[i];
        table[i] = table[j];
        table[j] = t;
    }
    srp_batch hb;
    memset(&hb, 0, sizeof hb);
    hb.n_seqs = S;
    hb.n_tokens = T;
    hb.seq_start = seq_start;
    hb.n_past = past;
    hb.block_table = table;
    hb.max_blocks = nb_seq;
    int32_t *meta = NULL;
    srp_err e = {};
    if (gpu_batch_set(cb, &hb, &meta, &e)) DIE("%s", e.msg);

    const size_t cache_n = (size_t)n_blocks * BS_ * kc;
    const size_t set_bytes = cache_n * 4 + (size_t)T * (ld + qc) * 2;
    int n_sets = (int)((3 * l2 + set_bytes - 1) / set_bytes);
    if (n_sets < 1) n_sets = 1;
    if (n_sets > 8) n_sets = 8;
    input_set sets[8];
    for (int i = 0; i < n_sets; i++) {
        CU(cudaMalloc((void **)&sets[i].qkv, (size_t)T * ld * 2));
        CU(cudaMalloc((void **)&sets[i].out, (size_t)T * qc * 2));
        CU(cudaMalloc((void **)&sets[i].kc, cache_n * 2));
        CU(cudaMalloc((void **)&sets[i].vc, cache_n * 2));
        fill(sets[i].qkv, (size_t)T * ld, 100 + i);
        fill(sets[i].kc, cache_n, 200 + i);
        fill(sets[i].vc, cache_n, 300 + i);
    }
    /* the fills ran on the legacy stream, which the backend's non-blocking stream does not
     * wait for */
    CU(cudaDeviceSynchronize());
    srp_attn_params p = { H_, kvh, D_, 1.0f / sqrtf((float)D_) };

    cudaEvent_t *ev = (cudaEvent_t *)malloc((size_t)2 * runs * sizeof *ev);
    for (int i = 0; i < 2 * runs; i++) CU(cudaEventCreate(&ev[i]));
    float *t = (float *)malloc((size_t)runs * sizeof *t);
    result res;
    memset(&res, 0, sizeof res);
    res.min_us = 1e30f;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = -5; i < runs; i++) {
            const input_set *in = &sets[(i + 5) % n_sets];
            srp_mat q = { in->qkv, SRP_BF16, T, qc, ld };
            srp_mat k = { in->qkv + qc, SRP_BF16, T, kc, ld };
            srp_mat v = { in->qkv + qc + kc, SRP_BF16, T, kc, ld };
            srp_mat o = { in->out, SRP_BF16, T, qc, qc };
            srp_kv_layer kvl = { in->kc, in->vc, SRP_BF16, BS_ };
            if (i >= 0) CU(cudaEventRecord(ev[2 * i], cb->stream));
            if (srp_cuda_attention(cb, &p, q, k, v, &kvl, o, &e)) DIE("%s: %s", c->name, e.msg);
            if (i >= 0) CU(cudaEventRecord(ev[2 * i + 1], cb->stream));
        }
        CU(cudaStreamSynchronize(cb->stream));
        CU(cudaGetLastError());
        for (int i = 0; i < runs; i++) {
            CU(cudaEventElapsedTime(&t[i], ev[2 * i], ev[2 * i + 1]));
            t[i] *= 1000.0f;
            if (t[i] < res.min_us) res.min_us = t[i];
        }
        res.med_us[pass] = median(t, runs);
    }
    /* the last run's output must be fully written */
    uint16_t *out_h = (uint16_t *)malloc((size_t)T * qc * 2);
    const input_set *last = &sets[(runs + 4) % n_sets];
    CU(cudaMemcpy(out_h, last->out, (size_t)T * qc * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < (size_t)T * qc; i++)
        if ((out_h[i] & 0x7f80u) == 0x7f80u) res.nan_out++;

    double pairs = 0; /* (query, key) pairs the causal mask keeps */
    for (int i = 0; i < c->len; i++) pairs += (double)(c->past + i + 1);
    pairs *= S;
    res.flops = 4.0 * D_ * H_ * pairs;
    res.bytes = (double)S * ctx * kc * 2 * 2 /* K, V of every position once */
                + (double)T * kc * 2 * 2 * 2 /* k, v read and written to the pages */
                + (double)T * qc * 2 * 2;    /* q in, out */

    for (int i = 0; i < 2 * runs; i++) cudaEventDestroy(ev[i]);
    free(ev);
    free(t);
    free(out_h);
    for (int i = 0; i < n_sets; i++) {
        cudaFree(sets[i].qkv);
        cudaFree(sets[i].out);
        cudaFree(sets[i].kc);
        cudaFree(sets[i].vc);
    }
    cudaFree(meta);
    free(seq_start);
    free(past);
    free(table);
    return res;
}

int main(int argc, char **argv) {
    const char *json = NULL, *commit = "unknown", *only = NULL;
    int runs = 50;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--commit") && i + 1 < argc)
            commit = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else
            DIE("usage: %s [--json PATH] [--runs N] [--commit SHA] [--only NAME]", argv[0]);
    }
    if (runs < 1) runs = 1;
    cuda_backend cb;
    srp_err e = {};
    if (gpu_backend_init(&cb, &e)) DIE("%s", e.msg);
    int clock_khz = 0, mem_khz = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
    cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0);
    /* with --only (a profiler run) the ceilings are not measured and no fractions come out */
    const double bw = only ? NAN : copy_bandwidth(), peak = only ? NAN : matmul_rate();
    printf("%s: %d SMs, L2 %d MB, peak SM clock %d MHz, memory clock %d MHz\n", cb.prop.name,
           cb.prop.multiProcessorCount, cb.prop.l2CacheSize >> 20, clock_khz / 1000,
           mem_khz / 1000);
    printf("measured: copy %.0f GB/s (read + write), bf16 matmul %.0f TFLOP/s\n", bw / 1e9,
           peak / 1e12);
    printf("attention: %d heads, %d KV heads, head_dim %d, block %d; median of %d runs\n\n", H_,
           KV_, D_, BS_, runs);
    printf("%-24s %10s %10s %9s %9s %8s %10s %10s %8s %5s\n", "case", "median_us", "pass2_us", "MB",
           "GFLOP", "GB/s", "TFLOP/s", "floor_us", "roofline", "nan");

    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) DIE("cannot write %s", json);
    if (jf)
        fprintf(jf,
                "{\n  \"commit\": \"%s\",\n  \"gpu\": \"%s\",\n  \"sm_count\": %d,\n"
                "  \"l2_bytes\": %d,\n  \"peak_sm_clock_mhz\": %d,\n  \"memory_clock_mhz\": %d,\n"
                "  \"copy_bandwidth_GBps\": %.1f,\n  \"bf16_matmul_TFLOPs\": %.1f,\n"
                "  \"shape\": {\"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, "
                "\"block_size\": %d},\n  \"runs\": %d,\n  \"cases\": [\n",
                commit, cb.prop.name, cb.prop.multiProcessorCount, cb.prop.l2CacheSize,
                clock_khz / 1000, mem_khz / 1000, bw / 1e9, peak / 1e12, H_, KV_, D_, BS_, runs);
    const int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        const bench_case *c = &cases[i];
        if (only && strcmp(only, c->name)) continue;
        result r = run_case(&cb, c, runs, (size_t)cb.prop.l2CacheSize);
        const double t = r.med_us[0] * 1e-6;
        const double floor_s = fmax(r.bytes / bw, r.flops / peak);
        printf("%-24s %10.1f %10.1f %9.1f %9.1f %8.0f %10.1f %10.1f %7.1f%% %5ld\n", c->name,
               r.med_us[0], r.med_us[1], r.bytes / 1e6, r.flops / 1e9, r.bytes / t / 1e9,
               r.flops / t / 1e12, floor_s * 1e6, 100.0 * floor_s / t, r.nan_out);
        if (jf)
            fprintf(jf,
                    "    {\"name\": \"%s\", \"seqs\": %d, \"tokens_per_seq\": %d, \"n_past\": %d, "
                    "\"median_us\": %.2f, \"median_us_pass2\": %.2f, \"min_us\": %.2f, "
                    "\"bytes\": %.0f, \"flops\": %.0f, \"GBps\": %.1f, \"TFLOPs\": %.2f, "
                    "\"floor_us\": %.2f, \"bound\": \"%s\", \"roofline_fraction\": %.4f, "
                    "\"nan_outputs\": %ld}%s\n",
                    c->name, c->n_seqs, c->len, c->past, r.med_us[0], r.med_us[1], r.min_us,
                    r.bytes, r.flops, r.bytes / t / 1e9, r.flops / t / 1e12, floor_s * 1e6,
                    r.bytes / bw > r.flops / peak ? "memory" : "compute", floor_s / t, r.nan_out,
                    i + 1 < n && !only ? "," : "");
        fflush(stdout);
    }
    if (jf) {
        fprintf(jf, "  ]\n}\n");
        fclose(jf);
    }
    srp_cuda_attention_free(&cb);
    return 0;
}
