/* Whole-model benchmarks on the GPU: decode steps and an 8K-token prefill of a random-weight model
 * of the 8B Mamba-2-Hybrid shape (bench/configs/hybrid-8b), against the roofline.
 *
 *   bench_model [--config DIR] [--context N] [--json FILE] [--commit SHA] [--clocks TEXT]
 *               [--bandwidth BYTES_PER_S] [--peak FLOPS]
 *
 * A decode step's floor is its bytes over copy bandwidth: every weight matrix once, every
 * running sequence's state slot read and written, and its KV cache read. The prefill's is its
 * FLOPs over the measured bf16 GEMM rate. The ceilings come from bench_kernels (pass them in) or
 * default to the H100 values measured there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

static srp_err err;

static void die(const char *what) {
    fprintf(stderr, "bench_model: %s: %s\n", what, err.msg);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct result {
    char name[64];
    double seconds, tokens_per_s, floor_s;
} result;

static result results[16];
static int n_results;

static void report(const char *name, double seconds, double tokens, double floor_s) {
    result *r = &results[n_results++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->seconds = seconds;
    r->tokens_per_s = tokens / seconds;
    r->floor_s = floor_s;
    printf("%-26s %9.2f ms %10.0f tokens/s   floor %8.2f ms   %5.2fx floor (%4.1f%% of roofline)\n",
           name, seconds * 1e3, r->tokens_per_s, floor_s * 1e3, seconds / floor_s,
           100 * floor_s / seconds);
    fflush(stdout);
}

static double kv_bytes_per_token(srp_engine *eng) {
    return (double)srp_engine_kv_block_bytes(eng) / srp_engine_block_size(eng);
}

/* Prefills n sequences with `context` tokens each, in steps of at most max_batch_tokens. */
static void prefill(srp_engine *eng, srp_seq *seqs, int n, int context, int32_t *ids) {
    const int budget = srp_engine_max_batch_tokens(eng);
    srp_step_item items[256];
    srp_mat lg;
    int s = 0;
    while (s < n) {
        int k = 0, used = 0;
        while (s + k < n && used + context <= budget && k < 256) {
            items[k] = (srp_step_item){ &seqs[s + k], ids, context, SRP_LOGITS_NONE };
            used += context;
            k++;
        }
        if (k == 0) die("context longer than a step");
        if (srp_engine_step(eng, items, k, &lg, &err)) die("prefill");
        s += k;
    }
}

static double decode_steps(srp_engine *eng, srp_seq *seqs, int B, int steps) {
    srp_step_item items[256];
    int32_t tokens[256];
    srp_sample_params sp[256];
    for (int i = 0; i < B; i++) {
        tokens[i] = (i * 7919) % 1000 + 3;
        sp[i] = (srp_sample_params){
            .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 0, .step = 0
        };
    }
    srp_mat lg;
    double t0 = 0;
    for (int step = -3; step < steps; step++) { /* 3 warm-up steps (graph capture) */
        if (step == 0) t0 = now();
        for (int i = 0; i < B; i++)
            items[i] = (srp_step_item){ &seqs[i], &tokens[i], 1, SRP_LOGITS_LAST };
        if (srp_engine_step(eng, items, B, &lg, &err)) die("decode step");
        if (srp_engine_sample(eng, lg, sp, tokens, &err)) die("sample");
    }
    return (now() - t0) / steps;
}

int main(int argc, char **argv) {
    const char *config = "bench/configs/hybrid-8b", *json = NULL, *commit = "unknown",
               *clocks = "unknown";
    int context = 1024;
    double bw = 2.97e12, peak = 8.0e14;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config"))
            config = argv[i + 1];
        else if (!strcmp(argv[i], "--context"))
            context = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json = argv[i + 1];
        else if (!strcmp(argv[i], "--commit"))
            commit = argv[i + 1];
        else if (!strcmp(argv[i], "--clocks"))
            clocks = argv[i + 1];
        else if (!strcmp(argv[i], "--bandwidth"))
            bw = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--peak"))
            peak = atof(argv[i + 1]);
    }
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = "cuda";
    o.random_weights = 1;
    o.seed = 1;
    o.max_seqs = 256;
    o.max_batch_tokens = 8192;
    o.max_logits = 256;
    o.max_seq_len = 8192 + 64;
    o.gpu_memory_utilization = 0.94f;
    srp_engine *eng = NULL;
    double t0 = now();
    if (srp_engine_open(config, &o, &eng, &err)) die("open");
    const srp_config *c = srp_engine_config(eng);
    const double weight_bytes = (double)srp_engine_matrix_bytes(eng);
    const double state_bytes = (double)srp_engine_slot_bytes(eng);
    printf("model: %s, %d layers (%d Mamba-2, %d Mamba-1, %d attention, %d MLP), %.2f GB of "
           "matrices; %.2f MB of state per sequence; %d slots, %d KV blocks; loaded in %.1f s\n",
           config, c->n_layers, srp_config_count(c, SRP_MIXER_MAMBA2),
           srp_config_count(c, SRP_MIXER_MAMBA1), srp_config_count(c, SRP_MIXER_ATTENTION),
           srp_config_count(c, SRP_MIXER_MLP), weight_bytes / 1e9, state_bytes / 1e6,
           srp_engine_total_slots(eng), srp_engine_total_blocks(eng), now() - t0);
    printf("ceilings: %.2f TB/s copy, %.0f TFLOP/s bf16\n\n", bw / 1e12, peak / 1e12);

    static int32_t ids[8192];
    for (int i = 0; i < 8192; i++) ids[i] = (i * 104729) % (c->vocab_size - 10) + 5;

    /* the 8K prefill */
    {
        srp_seq s;
        srp_mat lg;
        double best = 1e9;
        for (int rep = 0; rep < 4; rep++) {
            if (srp_seq_open(eng, &s, &err)) die("seq");
            srp_step_item it = { &s, ids, 8192, SRP_LOGITS_LAST };
            srp_backend *be = srp_engine_backend(eng);
            be->sync(be, &err);
            double ts = now();
            if (srp_engine_step(eng, &it, 1, &lg, &err)) die("prefill 8K");
            be->sync(be, &err);
            if (rep > 0) best = fmin(best, now() - ts); /* the first run warms up */
            srp_seq_close(eng, &s);
        }
        const double T = 8192;
        /* every matrix on every token, but the head on one row only */
        double flops = (double)srp_engine_matrix_params(eng) * 2 * T;
        flops -= 2.0 * c->vocab_size * c->d_model * (T - 1);
        int n_attn = srp_config_count(c, SRP_MIXER_ATTENTION);
        flops += n_attn * 2.0 * 2.0 * (T * T / 2) * c->attn.heads * c->attn.head_dim;
        report("prefill 8K", best, T, flops / peak);
    }

    /* decode steps at several batch sizes, every sequence `context` tokens into its text */
    int batches[4] = { 1, 32, 128, 256 };
    srp_seq *seqs = calloc(256, sizeof *seqs);
    for (int bi = 0; bi < 4; bi++) {
        const int B = batches[bi];
        if (B > srp_engine_total_slots(eng)) break;
        for (int i = 0; i < B; i++)
            if (srp_seq_open(eng, &seqs[i], &err)) die("seq");
        prefill(eng, seqs, B, context, ids);
        double t = decode_steps(eng, seqs, B, B >= 128 ? 10 : 30);
        double bytes = weight_bytes + B * 2 * state_bytes +
                       B * (context + 16.0) * kv_bytes_per_token(eng) +
                       B * 4.0 * c->vocab_size; /* logits */
        char name[64];
        snprintf(name, sizeof name, "decode batch %d", B);
        report(name, t, B, bytes / bw);
        for (int i = 0; i < B; i++) srp_seq_close(eng, &seqs[i]);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f,
                    "{\n  \"benchmark\": \"model\",\n  \"commit\": \"%s\",\n  \"clocks\": \"%s\",\n"
                    "  \"config\": \"%s\",\n  \"context\": %d,\n  \"copy_bandwidth\": %.4g,\n"
                    "  \"bf16_peak\": %.4g,\n  \"command\": \"",
                    commit, clocks, config, context, bw, peak);
            for (int i = 0; i < argc; i++) fprintf(f, "%s%s", i ? " " : "", argv[i]);
            fprintf(f, "\",\n  \"results\": [\n");
            for (int i = 0; i < n_results; i++)
                fprintf(f,
                        "    {\"name\": \"%s\", \"seconds\": %.5g, \"tokens_per_s\": %.5g, "
                        "\"floor_seconds\": %.5g, \"times_floor\": %.3f}%s\n",
                        results[i].name, results[i].seconds, results[i].tokens_per_s,
                        results[i].floor_s, results[i].seconds / results[i].floor_s,
                        i + 1 < n_results ? "," : "");
            fprintf(f, "  ]\n}\n");
            fclose(f);
        }
    }
    free(seqs);
    srp_engine_close(eng);
    return 0;
}
