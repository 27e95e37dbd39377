/* serpent score: one prefill over given ids; the mean negative log-likelihood of each next
 * token, the perplexity, and optionally every position's logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *summary =
    "Runs one prefill over the ids and prints the mean negative log-likelihood of each next\n"
    "token and the perplexity. --logits-out writes float32 little-endian logits,\n"
    "[n_tokens x vocab] row-major, one row for every position.";

/* log softmax(row)[target], in double */
static double log_prob(const float *row, int vocab, int target) {
    float mx = row[0];
    for (int i = 1; i < vocab; i++)
        if (row[i] > mx) mx = row[i];
    double sum = 0.0;
    for (int i = 0; i < vocab; i++) sum += exp((double)row[i] - mx);
    return (double)row[target] - mx - log(sum);
}

static int run(const cli_model_args *ma, const int32_t *ids, int n, const char *out_path) {
    srp_engine *eng = NULL;
    int step = n < 256 ? n : 256;
    if (cli_open_engine(ma, n, step, step, &eng)) return 1;
    const int vocab = srp_engine_config(eng)->vocab_size;
    srp_err e = { 0 };
    srp_seq seq = { .slot = -1 };
    FILE *out = NULL;
    float *rows = malloc((size_t)step * vocab * sizeof *rows);
    int rc = 0;
    if (!rows) {
        fprintf(stderr, "serpent: out of memory\n");
        rc = 1;
        goto done;
    }
    if (out_path && !(out = fopen(out_path, "wb"))) {
        fprintf(stderr, "serpent: cannot write %s\n", out_path);
        rc = 1;
        goto done;
    }
    if (srp_seq_open(eng, &seq, &e)) goto fail;
    double nll = 0.0, t0 = cli_now();
    for (int i = 0; i < n; i += step) {
        int k = n - i < step ? n - i : step;
        srp_step_item it = { &seq, ids + i, k, SRP_LOGITS_ALL, n };
        srp_mat logits;
        if (srp_engine_step(eng, &it, 1, &logits, &e)) goto fail;
        if (srp_engine_logits_to_host(eng, logits, 0, k, rows, &e)) goto fail;
        for (int r = 0; r < k && i + r + 1 < n; r++)
            nll -= log_prob(rows + (size_t)r * vocab, vocab, ids[i + r + 1]);
        if (out && fwrite(rows, sizeof *rows, (size_t)k * vocab, out) != (size_t)k * vocab) {
            fprintf(stderr, "serpent: write error on %s\n", out_path);
            rc = 1;
            goto done;
        }
    }
    double dt = cli_now() - t0;
    if (n > 1)
        printf("tokens: %d\nmean_nll: %.6f\nperplexity: %.6f\n", n, nll / (n - 1),
               exp(nll / (n - 1)));
    else
        printf("tokens: %d\nmean_nll: n/a (one token predicts nothing)\nperplexity: n/a\n", n);
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.1f tokens/s)\n", n, dt,
            n / (dt > 0 ? dt : 1e-9));
    goto done;
fail:
    fprintf(stderr, "serpent: %s\n", e.msg);
    rc = 1;
done:
    if (out && fclose(out) != 0 && !rc) {
        fprintf(stderr, "serpent: write error on %s\n", out_path);
        rc = 1;
    }
    free(rows);
    srp_seq_close(eng, &seq);
    srp_engine_close(eng);
    return rc;
}

int cmd_score(int argc, char **argv) {
    cli_model_args ma = { NULL, "auto", 0 };
    const char *prompt = NULL, *prompt_ids = NULL, *logits_out = NULL;
    cli_opt opts[] = {
        { "model", CLI_STR, &ma.model, "DIR", "model folder (config.json + safetensors)", 0 },
        { "prompt-ids", CLI_STR, &prompt_ids, "1,2,3", "token ids to score", 0 },
        { "prompt", CLI_STR, &prompt, "TEXT", "text to score (needs a tokenizer in the folder)",
          0 },
        { "logits-out", CLI_STR, &logits_out, "FILE", "write every position's logits here", 0 },
        { "backend", CLI_STR, &ma.backend, "NAME", "cpu, cuda or auto (default auto)", 0 },
        { "threads", CLI_INT, &ma.threads, "N", "CPU threads (default: all cores)", 0 },
    };
    const int n_opts = sizeof opts / sizeof opts[0];
    int p = cli_parse("score", summary, opts, n_opts, argc, argv, 2);
    if (p == CLI_HELP) return 0;
    if (p == CLI_USAGE) return 2;
    if (!ma.model) {
        fprintf(stderr, "serpent score: --model is required\n\n");
        cli_print_help(stderr, "score", summary, opts, n_opts);
        return 2;
    }
    srp_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int n = 0;
    int rc = cli_prompt_ids(ma.model, prompt, prompt_ids, &tok, &ids, &n);
    if (!rc) rc = run(&ma, ids, n, logits_out);
    free(ids);
    srp_tokenizer_free(tok);
    return rc;
}
