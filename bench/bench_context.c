/* Decode time against context length, for a hybrid and a Transformer in the same engine (the
 * Figure 5 of Waleffe et al., "An Empirical Study of Mamba-based Language Models", measured).
 *
 *   bench_context --model NAME=CONFIG_DIR [--model ...] [--backend cuda|cpu] [--json FILE]
 *                 [--contexts 1024,2048,...] [--batch 32] [--max-batch-at 4096,32768,...]
 *                 [--steps N] [--commit SHA] [--gpu-memory-utilization F]
 *
 * For each model (random weights of CONFIG_DIR's shape) and context length L it times a decode
 * step of `batch` sequences that already hold L tokens each, and of one sequence; where `batch`
 * sequences of L tokens do not fit in memory it times the largest batch that does and reports
 * the time per token of that batch. Then, for each length of --max-batch-at, it reports the
 * largest batch the model can hold (as `serpent serve` would size it: state slots and KV blocks
 * for every sequence's whole length, from the memory left after the weights) and its decode
 * throughput.
 *
 * The sequences' KV blocks and state slots are taken but not filled by a prefill (prefilling
 * 32 x 128K tokens would take minutes): a decode step reads and writes the same bytes whatever
 * they hold, and no kernel's work depends on the values. The engine is opened once per model for
 * the sweep, sized for the longest context, and once more for each max-batch length. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

#define MAX_MODELS 4
#define MAX_LENS   16

static srp_err err;

static void die(const char *what) {
    fprintf(stderr, "bench_context: %s: %s\n", what, err.msg);
    exit(1);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct opts {
    const char *backend;
    int steps;
    float gpu_util;
} opts;

static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

static srp_engine *open_engine(const char *dir, const opts *op, int max_seqs, int max_len) {
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = op->backend;
    o.random_weights = 1;
    o.seed = 1;
    o.max_seqs = max_seqs;
    o.max_seq_len = max_len;
    o.max_batch_tokens = max_seqs > 512 ? max_seqs : 512;
    o.max_logits = max_seqs;
    o.gpu_memory_utilization = op->gpu_util;
    srp_engine *eng = NULL;
    if (srp_engine_open(dir, &o, &eng, &err)) return NULL;
    return eng;
}

/* Opens seqs[0..B) holding L tokens each (blocks reserved, nothing computed). 0 when the KV
 * cache cannot hold them. */
static int fill(srp_engine *eng, srp_seq *seqs, int B, int L) {
    for (int i = 0; i < B; i++) {
        if (srp_seq_open(eng, &seqs[i], &err) || srp_seq_reserve(eng, &seqs[i], L + 64, &err)) {
            for (int j = 0; j <= i; j++) srp_seq_close(eng, &seqs[j]);
            return 0;
        }
        seqs[i].n_past = L;
    }
    return 1;
}

/* Seconds per decode step of B sequences (median of `steps` after warm-up and graph capture). */
static double decode_step(srp_engine *eng, srp_seq *seqs, int B, int steps) {
    srp_step_item *items = calloc((size_t)B, sizeof *items);
    int32_t *tokens = calloc((size_t)B, sizeof *tokens);
    srp_sample_params *sp = calloc((size_t)B, sizeof *sp);
    double *t = calloc((size_t)steps, sizeof *t);
    for (int i = 0; i < B; i++) {
        tokens[i] = 5 + i % 100;
        sp[i] = (srp_sample_params){ .temperature = 0.0f, .top_p = 1.0f };
    }
    srp_mat lg;
    for (int s = -3; s < steps; s++) {
        double t0 = now();
        for (int i = 0; i < B; i++)
            items[i] = (srp_step_item){ &seqs[i], &tokens[i], 1, SRP_LOGITS_LAST, 0 };
        if (srp_engine_step(eng, items, B, &lg, &err)) die("decode step");
        if (srp_engine_sample(eng, lg, sp, tokens, &err)) die("sample");
        if (s >= 0) t[s] = now() - t0;
    }
    for (int i = 0; i < steps; i++)
        for (int j = i + 1; j < steps; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    double med = t[steps / 2];
    free(items), free(tokens), free(sp), free(t);
    return med;
}

static void close_all(srp_engine *eng, srp_seq *seqs, int B) {
    for (int i = 0; i < B; i++) srp_seq_close(eng, &seqs[i]);
}

/* The batch a server would size for sequences of L tokens: state slots and KV blocks for every
 * sequence's whole length, from what the weights leave (an engine opened with max_seqs 0 caps
 * at 256, so the count is taken from the per-sequence bytes instead). */
static int max_batch(srp_engine *eng, int L, int64_t budget) {
    const int64_t blocks = (L + 64 + srp_engine_block_size(eng) - 1) / srp_engine_block_size(eng);
    const int64_t per_seq = srp_engine_slot_bytes(eng) + blocks * srp_engine_kv_block_bytes(eng);
    return per_seq > 0 ? (int)(budget / per_seq) : 0;
}

int main(int argc, char **argv) {
    opts op = { "cuda", 10, 0.92f };
    const char *names[MAX_MODELS], *dirs[MAX_MODELS], *json = NULL, *commit = "unknown";
    int n_models = 0, lens[MAX_LENS] = { 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072 };
    int n_lens = 8, batch = 32, maxat[MAX_LENS] = { 4096, 32768, 131072 }, n_maxat = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--model") && n_models < MAX_MODELS) {
            const char *eq = strchr(v, '=');
            if (!eq) die("--model NAME=DIR");
            names[n_models] = strndup(v, (size_t)(eq - v));
            dirs[n_models++] = eq + 1;
        } else if (!strcmp(a, "--backend")) {
            op.backend = v;
        } else if (!strcmp(a, "--json")) {
            json = v;
        } else if (!strcmp(a, "--contexts")) {
            n_lens = parse_list(v, lens, MAX_LENS);
        } else if (!strcmp(a, "--batch")) {
            batch = atoi(v);
        } else if (!strcmp(a, "--max-batch-at")) {
            n_maxat = parse_list(v, maxat, MAX_LENS);
        } else if (!strcmp(a, "--steps")) {
            op.steps = atoi(v);
        } else if (!strcmp(a, "--commit")) {
            commit = v;
        } else if (!strcmp(a, "--gpu-memory-utilization")) {
            op.gpu_util = (float)atof(v);
        }
    }
    if (n_models == 0) die("give at least one --model NAME=CONFIG_DIR");
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf) {
        fprintf(jf, "{\n  \"benchmark\": \"context\",\n  \"commit\": \"%s\",\n  \"command\": \"",
                commit);
        for (int i = 0; i < argc; i++) fprintf(jf, "%s%s", i ? " " : "", argv[i]);
        fprintf(jf, "\",\n  \"batch\": %d,\n  \"rows\": [\n", batch);
    }
    int first_row = 1;
    int max_len = 0;
    for (int i = 0; i < n_lens; i++)
        if (lens[i] > max_len) max_len = lens[i];
    srp_seq *seqs = calloc(4096, sizeof *seqs);
    for (int m = 0; m < n_models; m++) {
        /* the sweep: enough slots for `batch` sequences, every other byte for the KV cache */
        srp_engine *eng = open_engine(dirs[m], &op, batch, max_len + 64);
        if (!eng) die(dirs[m]);
        int64_t budget = srp_engine_pool_budget(eng);
        if (budget < 0) /* the CPU: what the sweep holds */
            budget = (int64_t)srp_engine_total_blocks(eng) * srp_engine_kv_block_bytes(eng) +
                     (int64_t)batch * srp_engine_slot_bytes(eng);
        printf("%s: %.2f GB of matrices, %.1f MB per state slot, %.1f KB of KV per token; "
               "%.1f GB for slots and KV\n",
               names[m], srp_engine_matrix_bytes(eng) / 1e9, srp_engine_slot_bytes(eng) / 1e6,
               srp_engine_kv_block_bytes(eng) / 1024.0 / srp_engine_block_size(eng), budget / 1e9);
        for (int li = 0; li < n_lens; li++) {
            const int L = lens[li];
            const int Bs[2] = { batch, 1 };
            for (int k = 0; k < 2; k++) {
                int B = Bs[k], fitted = 1;
                while (B > 0 && !fill(eng, seqs, B, L)) {
                    B = B > 1 ? B - 1 : 0; /* the largest batch that fits */
                    fitted = 0;
                }
                if (B == 0) {
                    printf("  %-12s L=%6d batch %3d: does not fit\n", names[m], L, Bs[k]);
                    continue;
                }
                const double t = decode_step(eng, seqs, B, op.steps);
                close_all(eng, seqs, B);
                printf("  %-12s L=%6d batch %3d%s: %8.2f ms per step, %8.3f ms per token of "
                       "the batch, %8.0f tokens/s\n",
                       names[m], L, B, fitted ? "" : " (largest that fits)", t * 1e3, t * 1e3 / B,
                       B / t);
                fflush(stdout);
                if (jf)
                    fprintf(jf,
                            "%s    {\"model\": \"%s\", \"kind\": \"sweep\", \"asked_batch\": %d, "
                            "\"batch\": %d, \"context\": %d, \"step_seconds\": %.6g, "
                            "\"tokens_per_s\": %.6g, \"fits\": %s}",
                            first_row ? "" : ",\n", names[m], Bs[k], B, L, t, B / t,
                            fitted ? "true" : "false");
                first_row = 0;
            }
        }
        srp_engine_close(eng);
        /* the largest batch at each length, sized from the same budget, then its throughput */
        for (int li = 0; li < n_maxat; li++) {
            const int L = maxat[li];
            eng = open_engine(dirs[m], &op, 1, L + 64);
            if (!eng) die(dirs[m]);
            int B = max_batch(eng, L, budget);
            srp_engine_close(eng);
            if (B > 4096) B = 4096;
            if (B < 1) {
                printf("  %-12s L=%6d: not one sequence fits\n", names[m], L);
                continue;
            }
            eng = open_engine(dirs[m], &op, B, L + 64);
            while (!eng && B > 1) { /* activations for a larger batch take a little memory */
                B = B * 15 / 16;
                eng = open_engine(dirs[m], &op, B, L + 64);
            }
            if (!eng) die("max-batch engine");
            while (B > 0 && !fill(eng, seqs, B, L)) B--;
            const double t = decode_step(eng, seqs, B, op.steps);
            close_all(eng, seqs, B);
            srp_engine_close(eng);
            printf("  %-12s L=%6d: largest batch %4d, %8.2f ms per step, %8.0f tokens/s\n",
                   names[m], L, B, t * 1e3, B / t);
            fflush(stdout);
            if (jf)
                fprintf(jf,
                        "%s    {\"model\": \"%s\", \"kind\": \"max_batch\", \"batch\": %d, "
                        "\"context\": %d, \"step_seconds\": %.6g, \"tokens_per_s\": %.6g}",
                        first_row ? "" : ",\n", names[m], B, L, t, B / t);
            first_row = 0;
        }
    }
    if (jf) {
        fprintf(jf, "\n  ]\n}\n");
        fclose(jf);
    }
    free(seqs);
    return 0;
}
