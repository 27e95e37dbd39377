/* serpent generate: continue a prompt, streaming tokens to stdout. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *summary =
    "Continues a prompt and streams the text (or, with --print-ids, the token ids) to stdout;\n"
    "prompt and generation speed go to stderr. Temperature 0 is greedy decoding.";

typedef struct gen_state {
    srp_engine *eng;
    srp_tokenizer *tok;
    srp_detok *detok;
    int print_ids, n_out;
} gen_state;

static int emit_token(gen_state *g, int32_t id) {
    srp_err e = { 0 };
    if (g->print_ids || !g->detok) {
        printf(g->n_out ? " %d" : "%d", id);
    } else {
        const char *text;
        size_t len;
        if (srp_detok_push(g->detok, id, &text, &len, &e)) {
            fprintf(stderr, "\nserpent: %s\n", e.msg);
            return 1;
        }
        fwrite(text, 1, len, stdout);
    }
    g->n_out++;
    fflush(stdout);
    return 0;
}

/* Feeds the prompt in steps of at most max_batch_tokens, leaving the last row's logits. */
static int prefill(srp_engine *eng, srp_seq *seq, const int32_t *ids, int n, srp_mat *logits) {
    srp_err e = { 0 };
    int step = srp_engine_max_batch_tokens(eng);
    for (int i = 0; i < n; i += step) {
        int k = n - i < step ? n - i : step;
        srp_step_item it = { seq, ids + i, k, i + k == n ? SRP_LOGITS_LAST : SRP_LOGITS_NONE, n };
        if (srp_engine_step(eng, &it, 1, logits, &e)) {
            fprintf(stderr, "serpent: %s\n", e.msg);
            return 1;
        }
    }
    return 0;
}

static int is_eos(const srp_config *c, const srp_tokenizer *tok, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return tok && srp_tokenizer_eos(tok) == id;
}

static int run(const cli_model_args *ma, const int32_t *ids, int n, srp_tokenizer *tok,
               int max_tokens, srp_sample_params sp, int print_ids, int ignore_eos) {
    srp_engine *eng = NULL;
    int batch = n < 512 ? n : 512;
    if (cli_open_engine(ma, n + max_tokens, batch, 1, &eng)) return 1;
    gen_state g = { eng, tok, NULL, print_ids, 0 };
    srp_err e = { 0 };
    srp_seq seq = { .slot = -1 };
    int rc = 0;
    if (tok && !print_ids && srp_detok_new(tok, 1, &g.detok, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        srp_engine_close(eng);
        return 1;
    }
    if (srp_seq_open(eng, &seq, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        rc = 1;
        goto out;
    }
    srp_mat logits;
    double t0 = cli_now();
    if ((rc = prefill(eng, &seq, ids, n, &logits))) goto out;
    double t1 = cli_now(), t2 = t1;
    int produced = 0;
    const srp_config *cfg = srp_engine_config(eng);
    while (produced < max_tokens) {
        int32_t next;
        sp.step = (uint64_t)produced;
        if (srp_engine_sample(eng, logits, &sp, &next, &e)) {
            fprintf(stderr, "serpent: %s\n", e.msg);
            rc = 1;
            break;
        }
        produced++;
        t2 = cli_now();
        if (!ignore_eos && is_eos(cfg, tok, next)) break;
        if ((rc = emit_token(&g, next))) break;
        if (produced == max_tokens) break;
        srp_step_item it = { &seq, &next, 1, SRP_LOGITS_LAST, 0 };
        if (srp_engine_step(eng, &it, 1, &logits, &e)) {
            fprintf(stderr, "serpent: %s\n", e.msg);
            rc = 1;
            break;
        }
    }
    if (!rc && g.detok) {
        const char *text;
        size_t len;
        if (!srp_detok_flush(g.detok, &text, &len, &e)) fwrite(text, 1, len, stdout);
    }
    printf("\n");
    fflush(stdout);
    /* The first token comes from the prefill's logits; generation speed counts the rest. */
    fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tokens/s)\n", n, t1 - t0,
            n / (t1 - t0 > 0 ? t1 - t0 : 1e-9));
    if (produced > 1)
        fprintf(stderr, "generation: %d tokens in %.3f s (%.1f tokens/s)\n", produced, t2 - t1,
                (produced - 1) / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
out:
    srp_seq_close(eng, &seq);
    srp_detok_free(g.detok);
    srp_engine_close(eng);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    cli_model_args ma = { NULL, "auto", 0 };
    const char *prompt = NULL, *prompt_ids = NULL;
    int max_tokens = 64, top_k = 0, print_ids = 0, ignore_eos = 0;
    float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
    uint64_t seed = 0;
    cli_opt opts[] = {
        { "model", CLI_STR, &ma.model, "DIR", "model folder (config.json + safetensors)", 0 },
        { "prompt", CLI_STR, &prompt, "TEXT", "prompt text (needs a tokenizer in the folder)", 0 },
        { "prompt-ids", CLI_STR, &prompt_ids, "1,2,3", "prompt as token ids", 0 },
        { "max-tokens", CLI_INT, &max_tokens, "N", "tokens to generate (default 64)", 0 },
        { "temperature", CLI_FLOAT, &temperature, "T",
          "sampling temperature; 0 is greedy (default 1)", 0 },
        { "top-p", CLI_FLOAT, &top_p, "P", "nucleus sampling mass (default 1: off)", 0 },
        { "top-k", CLI_INT, &top_k, "K", "sample among the K most likely (default 0: off)", 0 },
        { "min-p", CLI_FLOAT, &min_p, "P", "drop tokens below P times the top probability", 0 },
        { "seed", CLI_U64, &seed, "S", "random seed (default: from the clock)", 0 },
        { "print-ids", CLI_FLAG, &print_ids, NULL, "print token ids instead of text", 0 },
        { "ignore-eos", CLI_FLAG, &ignore_eos, NULL, "keep going past end-of-sequence", 0 },
        { "backend", CLI_STR, &ma.backend, "NAME", "cpu, cuda or auto (default auto)", 0 },
        { "threads", CLI_INT, &ma.threads, "N", "CPU threads (default: all cores)", 0 },
    };
    const int n_opts = sizeof opts / sizeof opts[0];
    int p = cli_parse("generate", summary, opts, n_opts, argc, argv, 2);
    if (p == CLI_HELP) return 0;
    if (p == CLI_USAGE) return 2;
    const char *bad = !ma.model                   ? "--model is required"
                      : max_tokens < 0            ? "--max-tokens must be >= 0"
                      : temperature < 0           ? "--temperature must be >= 0"
                      : (top_p <= 0 || top_p > 1) ? "--top-p must be in (0, 1]"
                      : top_k < 0                 ? "--top-k must be >= 0"
                      : (min_p < 0 || min_p > 1)  ? "--min-p must be in [0, 1]"
                                                  : NULL;
    if (bad) {
        fprintf(stderr, "serpent generate: %s\n\n", bad);
        cli_print_help(stderr, "generate", summary, opts, n_opts);
        return 2;
    }
    if (!opts[8].seen) seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    srp_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int n = 0;
    int rc = cli_prompt_ids(ma.model, prompt, prompt_ids, &tok, &ids, &n);
    if (!rc) {
        srp_sample_params sp = {
            .temperature = temperature, .top_k = top_k, .top_p = top_p, .min_p = min_p, .seed = seed
        };
        rc = run(&ma, ids, n, tok, max_tokens, sp, print_ids, ignore_eos);
    }
    free(ids);
    srp_tokenizer_free(tok);
    return rc;
}
