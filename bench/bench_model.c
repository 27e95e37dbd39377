/* Whole-model benchmarks on the GPU: decode steps and an 8K-token prefill of a random-weight model
 * of the 8B Mamba-2-Hybrid shape (bench/configs/hybrid-8b, the default) or any other config
 * (bench/configs/nemotron-3-nano-30b-a3b: the mixture-of-experts hybrid), against the roofline.
 *
 *   bench_model [--config DIR] [--context N] [--json FILE] [--commit SHA] [--clocks TEXT]
 *               [--bandwidth BYTES_PER_S] [--peak FLOPS]
 *
 * A decode step's floor is its bytes over copy bandwidth: every weight matrix it reads once,
 * every running sequence's state slot read and written, and its KV cache read. Of the routed
 * experts of a mixture-of-experts model a step reads only those its tokens go to: one untimed
 * step per batch size counts them (srp_engine_count_experts) and the floor counts those, as
 * many as the timed steps use (the same batch, the same kind of tokens). The prefill's floor is
 * its FLOPs (each token through its top_k experts only) over the measured bf16 GEMM rate. The
 * ceilings come from bench_kernels (pass them in) or default to the H100 values measured
 * there. */
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
    int64_t experts_used; /* -1: not a mixture-of-experts model */
} result;

static result results[16];
static int n_results;

static void report(const char *name, double seconds, double tokens, double floor_s,
                   int64_t experts_used) {
    result *r = &results[n_results++];
    r->experts_used = experts_used;
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
            items[k] = (srp_step_item){ &seqs[s + k], ids, context, SRP_LOGITS_NONE, 0 };
            used += context;
            k++;
        }
        if (k == 0) die("context longer than a step");
        if (srp_engine_step(eng, items, k, &lg, &err)) die("prefill");
        s += k;
    }
}

/* One decode step that counts the experts its tokens are routed to (all layers together). */
static int64_t count_experts(srp_engine *eng, srp_seq *seqs, int B) {
    srp_step_item items[256];
    int32_t tokens[256];
    for (int i = 0; i < B; i++) {
        tokens[i] = (i * 6007) % 1000 + 3;
        items[i] = (srp_step_item){ &seqs[i], &tokens[i], 1, SRP_LOGITS_LAST, 0 };
    }
    srp_mat lg;
    srp_engine_count_experts(eng, 1);
    if (srp_engine_step(eng, items, B, &lg, &err)) die("counting step");
    srp_engine_count_experts(eng, 0);
    return srp_engine_experts_used(eng);
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
            items[i] = (srp_step_item){ &seqs[i], &tokens[i], 1, SRP_LOGITS_LAST, 0 };
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
    /* routed experts: read only where the step's tokens go */
    const int64_t n_experts = srp_engine_expert_count(eng);
    const double expert_bytes = (double)srp_engine_expert_bytes(eng);
    const double dense_bytes = weight_bytes - expert_bytes;
    const double bytes_per_expert = n_experts ? expert_bytes / n_experts : 0;
    const int n_moe = srp_config_count(c, SRP_MIXER_MOE);
    printf("model: %s, %d layers (%d Mamba-2, %d Mamba-1, %d attention, %d MLP, %d MoE), "
           "%.2f GB of matrices; %.2f MB of state per sequence; %d slots, %d KV blocks; loaded in "
           "%.1f s\n",
           config, c->n_layers, srp_config_count(c, SRP_MIXER_MAMBA2),
           srp_config_count(c, SRP_MIXER_MAMBA1), srp_config_count(c, SRP_MIXER_ATTENTION),
           srp_config_count(c, SRP_MIXER_MLP), n_moe, weight_bytes / 1e9, state_bytes / 1e6,
           srp_engine_total_slots(eng), srp_engine_total_blocks(eng), now() - t0);
    if (n_experts)
        printf("experts: %lld routed (%d per token per layer) of %.1f MB each, %.2f GB; the rest "
               "%.2f GB\n",
               (long long)n_experts, c->moe.top_k, bytes_per_expert / 1e6, expert_bytes / 1e9,
               dense_bytes / 1e9);
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
            srp_step_item it = { &s, ids, 8192, SRP_LOGITS_LAST, 0 };
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
        double active = (double)(srp_engine_matrix_params(eng) - srp_engine_expert_params(eng));
        if (n_experts)
            active += (double)srp_engine_expert_params(eng) / n_experts * c->moe.top_k * n_moe;
        double flops = active * 2 * T;
        flops -= 2.0 * c->vocab_size * c->d_model * (T - 1);
        int n_attn = srp_config_count(c, SRP_MIXER_ATTENTION);
        flops += n_attn * 2.0 * 2.0 * (T * T / 2) * c->attn.heads * c->attn.head_dim;
        report("prefill 8K", best, T, flops / peak, -1);
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
        const int64_t used = n_experts ? count_experts(eng, seqs, B) : -1;
        double t = decode_steps(eng, seqs, B, B >= 128 ? 10 : 30);
        double bytes = (n_experts ? dense_bytes + used * bytes_per_expert : weight_bytes) +
                       B * 2 * state_bytes + B * (context + 16.0) * kv_bytes_per_token(eng) +
                       B * 4.0 * c->vocab_size; /* logits */
        char name[64];
        snprintf(name, sizeof name, "decode batch %d", B);
        if (n_experts)
            printf("  (%lld of %lld experts used: %.2f GB of weights read)\n", (long long)used,
                   (long long)n_experts, (dense_bytes + used * bytes_per_expert) / 1e9);
        report(name, t, B, bytes / bw, used);
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
                        "\"floor_seconds\": %.5g, \"times_floor\": %.3f, \"experts_used\": "
                        "%lld}%s\n",
                        results[i].name, results[i].seconds, results[i].tokens_per_s,
                        results[i].floor_s, results[i].seconds / results[i].floor_s,
                        (long long)results[i].experts_used, i + 1 < n_results ? "," : "");
            fprintf(f, "  ]\n}\n");
            fclose(f);
        }
    }
    free(seqs);
    srp_engine_close(eng);
    return 0;
}
