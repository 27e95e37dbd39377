/* serpent bench: prefill and decode speed of a model on a backend, in llama-bench's manner, so
 * that CPU and GPU figures come from one tool.
 *
 * ppN: one sequence prefills N prompt tokens (in steps of --ubatch), tokens/s over N. tgM at
 * batch B: B sequences decode M tokens each, one step per token with greedy sampling (the
 * serving loop's work), tokens/s over B * M. --depth D puts D tokens in every sequence first.
 * Each test runs once untimed, then --reps times; rows give the mean and standard deviation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char *summary =
    "Measures prefill (ppN: one sequence, N prompt tokens) and decode (tgM: B sequences, M\n"
    "steps of one token each, greedy sampling included) on a checkpoint, or on random weights\n"
    "of a config.json's shape, and prints llama-bench-style rows (mean +- sd of --reps runs\n"
    "after one untimed run); --json writes them too.";

typedef struct bench_row {
    char test[48];
    int n_prompt, n_gen, batch, depth;
    double mean_ts, sd_ts, mean_step_ms;
} bench_row;

static int parse_list(const char *s, int *out, int cap, int lo) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > 1 << 24 || n == cap) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

static int32_t token_at(int i, int vocab) {
    return (int32_t)(((int64_t)i * 104729 + 17) % (vocab > 20 ? vocab - 10 : vocab) +
                     (vocab > 20 ? 5 : 0));
}

/* Feeds n tokens starting at position offset into seq, in steps of ubatch; the last step asks
 * for logits and a token is drawn from them, so the work is done when this returns. */
static int feed(srp_engine *eng, srp_seq *seq, int offset, int n, int ubatch, srp_err *e) {
    const int vocab = srp_engine_config(eng)->vocab_size;
    int32_t *ids = malloc((size_t)(ubatch > 0 ? ubatch : 1) * sizeof *ids);
    if (!ids) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    int rc = 0;
    srp_mat lg;
    for (int i = 0; i < n && !rc; i += ubatch) {
        int k = n - i < ubatch ? n - i : ubatch;
        for (int t = 0; t < k; t++) ids[t] = token_at(offset + i + t, vocab);
        srp_step_item it = { seq, ids, k, i + k == n ? SRP_LOGITS_LAST : SRP_LOGITS_NONE, 0 };
        rc = srp_engine_step(eng, &it, 1, &lg, e);
    }
    if (!rc && n > 0) {
        srp_sample_params sp = { .top_p = 1.0f };
        int32_t tok;
        rc = srp_engine_sample(eng, lg, &sp, &tok, e);
    }
    free(ids);
    return rc;
}

/* One timed run: returns seconds of the measured part in *sec. */
static int run_once(srp_engine *eng, int n_prompt, int n_gen, int batch, int depth, int ubatch,
                    double *sec, srp_err *e) {
    srp_seq *seqs = calloc((size_t)batch, sizeof *seqs);
    srp_step_item *items = calloc((size_t)batch, sizeof *items);
    int32_t *tokens = calloc((size_t)batch, sizeof *tokens);
    srp_sample_params *sp = calloc((size_t)batch, sizeof *sp);
    int rc = seqs && items && tokens && sp ? 0 : srp_err_set(e, SRP_ENOMEM, "out of memory");
    int opened = 0;
    for (; !rc && opened < batch; opened++) rc = srp_seq_open(eng, &seqs[opened], e);
    if (rc) opened--;
    for (int i = 0; !rc && i < batch && depth > 0; i++)
        rc = feed(eng, &seqs[i], 1000 * i, depth, ubatch, e);
    const int vocab = srp_engine_config(eng)->vocab_size;
    if (!rc && n_prompt > 0) {
        double t0 = cli_now();
        rc = feed(eng, &seqs[0], depth, n_prompt, ubatch, e);
        *sec = cli_now() - t0;
    } else if (!rc) {
        for (int i = 0; i < batch; i++) {
            tokens[i] = token_at(depth + 7 * i, vocab);
            sp[i] = (srp_sample_params){ .top_p = 1.0f };
        }
        srp_mat lg;
        double t0 = cli_now();
        for (int step = 0; step < n_gen && !rc; step++) {
            for (int i = 0; i < batch; i++)
                items[i] = (srp_step_item){ &seqs[i], &tokens[i], 1, SRP_LOGITS_LAST, 0 };
            rc = srp_engine_step(eng, items, batch, &lg, e);
            if (!rc) rc = srp_engine_sample(eng, lg, sp, tokens, e); /* the host has the tokens */
        }
        *sec = cli_now() - t0;
    }
    for (int i = 0; i < opened; i++) srp_seq_close(eng, &seqs[i]);
    free(seqs);
    free(items);
    free(tokens);
    free(sp);
    return rc;
}

static int run_test(srp_engine *eng, bench_row *row, int reps, int ubatch, int warmup, srp_err *e) {
    double *ts = calloc((size_t)reps, sizeof *ts), step_sum = 0;
    if (!ts) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    const double tokens = row->n_prompt > 0 ? row->n_prompt : (double)row->n_gen * row->batch;
    int rc = 0;
    for (int r = warmup ? -1 : 0; r < reps && !rc; r++) {
        double sec = 0;
        rc = run_once(eng, row->n_prompt, row->n_gen, row->batch, row->depth, ubatch, &sec, e);
        if (rc || r < 0) continue;
        ts[r] = tokens / (sec > 0 ? sec : 1e-12);
        step_sum += sec * 1e3 / (row->n_prompt > 0 ? 1 : row->n_gen);
    }
    if (!rc) {
        double m = 0, v = 0;
        for (int r = 0; r < reps; r++) m += ts[r] / reps;
        for (int r = 0; r < reps; r++) v += (ts[r] - m) * (ts[r] - m);
        row->mean_ts = m;
        row->sd_ts = reps > 1 ? sqrt(v / (reps - 1)) : 0;
        row->mean_step_ms = step_sum / reps;
    }
    free(ts);
    return rc;
}

static void print_row(const bench_row *r, const char *model, double params, const char *backend,
                      int threads) {
    const double mib = params * 2 / (1024.0 * 1024);
    printf("| %s | %.2f M | %.2f %s | %s | %d | %s | %.2f ± %.2f | %.3f |\n", model, params / 1e6,
           mib >= 1024 ? mib / 1024 : mib, mib >= 1024 ? "GiB" : "MiB", backend, threads, r->test,
           r->mean_ts, r->sd_ts, r->mean_step_ms);
    fflush(stdout);
}

static void cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ') v++;
                v[strcspn(v, "\n")] = 0;
                snprintf(buf, n, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
    fputc('"', f);
}

static int write_json(const char *path, int argc, char **argv, const char *model, double params,
                      const char *backend, int threads, const char *device, const char *commit,
                      const bench_row *rows, int n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "serpent bench: cannot write %s\n", path);
        return 1;
    }
    char cmd[4096] = "";
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(cmd);
        snprintf(cmd + l, sizeof cmd - l, "%s%s", i ? " " : "", argv[i]);
    }
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    fprintf(f, "{\n  \"benchmark\": \"serpent-bench\",\n  \"command\": ");
    json_str(f, cmd);
    fprintf(f, ",\n  \"commit\": ");
    json_str(f, commit);
    fprintf(f, ",\n  \"date\": \"%s\",\n  \"device\": ", date);
    json_str(f, device);
    fprintf(f, ",\n  \"model\": ");
    json_str(f, model);
    fprintf(f, ",\n  \"params\": %.0f,\n  \"backend\": \"%s\",\n  \"threads\": %d,\n", params,
            backend, threads);
    fprintf(f, "  \"results\": [\n");
    for (int i = 0; i < n; i++)
        fprintf(f,
                "    {\"test\": \"%s\", \"n_prompt\": %d, \"n_gen\": %d, \"batch\": %d, "
                "\"depth\": %d, \"tokens_per_s\": %.4g, \"sd\": %.4g, \"ms_per_step\": %.4g}%s\n",
                rows[i].test, rows[i].n_prompt, rows[i].n_gen, rows[i].batch, rows[i].depth,
                rows[i].mean_ts, rows[i].sd_ts, rows[i].mean_step_ms, i + 1 < n ? "," : "");
    fprintf(f, "  ]\n}\n");
    return fclose(f) ? 1 : 0;
}

int cmd_bench(int argc, char **argv) {
    cli_model_args ma = { NULL, "auto", 0 };
    const char *prompts = "512", *batches = "1", *json = NULL, *commit = "unknown";
    int n_gen = 128, depth = 0, reps = 5, ubatch = 0, random_weights = 0, no_warmup = 0;
    uint64_t seed = 1;
    cli_opt opts[] = {
        { "model", CLI_STR, &ma.model, "DIR",
          "model folder (config.json + safetensors; with --random-weights config.json only); "
          "default: the shipped model",
          0 },
        { "random-weights", CLI_FLAG, &random_weights, NULL,
          "random weights of config.json's shape (no checkpoint read)", 0 },
        { "seed", CLI_U64, &seed, "S", "seed of the random weights (default 1)", 0 },
        { "prompt-tokens", CLI_STR, &prompts, "N,..",
          "prefill tests: prompt lengths, 0 for none (default 512)", 0 },
        { "gen-tokens", CLI_INT, &n_gen, "M", "decode tests: steps, 0 for none (default 128)", 0 },
        { "batch", CLI_STR, &batches, "B,..", "decode tests: sequences per step (default 1)", 0 },
        { "depth", CLI_INT, &depth, "D", "tokens already in every sequence (default 0)", 0 },
        { "ubatch", CLI_INT, &ubatch, "N",
          "prefill step size (default: the longest prompt, at most 8192)", 0 },
        { "reps", CLI_INT, &reps, "R", "timed runs of each test (default 5)", 0 },
        { "no-warmup", CLI_FLAG, &no_warmup, NULL, "skip the untimed first run", 0 },
        { "json", CLI_STR, &json, "FILE", "also write the results as JSON", 0 },
        { "commit", CLI_STR, &commit, "TEXT", "recorded in the JSON (default unknown)", 0 },
        { "backend", CLI_STR, &ma.backend, "NAME", "cpu, cuda or auto (default auto)", 0 },
        { "threads", CLI_INT, &ma.threads, "N", "CPU threads (default: all cores)", 0 },
    };
    const int n_opts = sizeof opts / sizeof opts[0];
    int p = cli_parse("bench", summary, opts, n_opts, argc, argv, 2);
    if (p == CLI_HELP) return 0;
    if (p == CLI_USAGE) return 2;
    int pp[32], bb[32];
    int n_pp = parse_list(prompts, pp, 32, 0), n_bb = parse_list(batches, bb, 32, 1);
    const char *bad = n_pp < 0         ? "--prompt-tokens must be a list of counts >= 0"
                      : n_bb < 0       ? "--batch must be a list of counts >= 1"
                      : n_gen < 0      ? "--gen-tokens must be >= 0"
                      : depth < 0      ? "--depth must be >= 0"
                      : reps < 1       ? "--reps must be >= 1"
                      : ubatch < 0     ? "--ubatch must be >= 0"
                      : ma.threads < 0 ? "--threads must be >= 0"
                                       : NULL;
    if (bad) {
        fprintf(stderr, "serpent bench: %s\n\n", bad);
        cli_print_help(stderr, "bench", summary, opts, n_opts);
        return 2;
    }
    char default_model[4096];
    if (!ma.model && !(ma.model = cli_default_model(default_model, sizeof default_model))) {
        fprintf(stderr, "serpent bench: no --model given and the default model was not found\n");
        return 1;
    }
    int max_pp = 0, max_b = 1;
    for (int i = 0; i < n_pp; i++) max_pp = pp[i] > max_pp ? pp[i] : max_pp;
    for (int i = 0; i < n_bb; i++) max_b = bb[i] > max_b ? bb[i] : max_b;
    if (!ubatch) ubatch = max_pp > 8192 ? 8192 : max_pp > 0 ? max_pp : 512;
    if (depth > 0 && ubatch < 64) ubatch = 64;

    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = ma.backend;
    o.n_threads = ma.threads;
    o.max_seqs = max_b;
    o.max_batch_tokens = ubatch > max_b ? ubatch : max_b;
    o.max_logits = max_b;
    o.max_seq_len = depth + (max_pp > n_gen ? max_pp : n_gen) + 8;
    o.random_weights = random_weights;
    o.seed = seed;
    srp_engine *eng = NULL;
    srp_err e = { 0 };
    if (srp_engine_open(ma.model, &o, &eng, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    const srp_config *c = srp_engine_config(eng);
    const char *backend = srp_engine_backend(eng)->name;
    const int threads = ma.threads > 0 ? ma.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* the matrices (the head included) and, when the head is its own matrix, the embedding */
    const double params = (double)srp_engine_matrix_params(eng) +
                          (c->tie_embeddings ? 0.0 : (double)c->vocab_size * c->d_model);
    char model[512], device[256];
    char base[256];
    snprintf(base, sizeof base, "%s", ma.model);
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') base[--bl] = 0;
    const char *slash = strrchr(base, '/');
    snprintf(model, sizeof model, "%s%s", slash ? slash + 1 : base,
             random_weights ? " (random)" : "");
    if (!strcmp(backend, "cpu"))
        cpu_model(device, sizeof device);
    else
        snprintf(device, sizeof device, "%s", backend);
    /* ms: per decode step (tg), per whole prompt (pp) */
    printf("| model | params | bf16 size | backend | threads | test | t/s | ms |\n");
    printf("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n");
    bench_row rows[64];
    int n_rows = 0, rc = 0;
    for (int i = 0; i < n_pp && !rc; i++) {
        if (pp[i] == 0) continue;
        bench_row *r = &rows[n_rows];
        *r = (bench_row){ .n_prompt = pp[i], .batch = 1, .depth = depth };
        snprintf(r->test, sizeof r->test, "pp%d%s", pp[i], depth ? " @ d" : "");
        if (depth)
            snprintf(r->test + strlen(r->test), sizeof r->test - strlen(r->test), "%d", depth);
        rc = run_test(eng, r, reps, ubatch, !no_warmup, &e);
        if (!rc) print_row(&rows[n_rows++], model, params, backend, threads);
    }
    for (int i = 0; i < n_bb && !rc && n_gen > 0; i++) {
        bench_row *r = &rows[n_rows];
        *r = (bench_row){ .n_gen = n_gen, .batch = bb[i], .depth = depth };
        snprintf(r->test, sizeof r->test, "tg%d b%d%s", n_gen, bb[i], depth ? " @ d" : "");
        if (depth)
            snprintf(r->test + strlen(r->test), sizeof r->test - strlen(r->test), "%d", depth);
        rc = run_test(eng, r, reps, ubatch, !no_warmup, &e);
        if (!rc) print_row(&rows[n_rows++], model, params, backend, threads);
    }
    if (rc) fprintf(stderr, "serpent bench: %s\n", e.msg);
    srp_engine_close(eng);
    if (!rc && json)
        rc = write_json(json, argc, argv, model, params, backend, threads, device, commit, rows,
                        n_rows);
    return rc ? 1 : 0;
}
