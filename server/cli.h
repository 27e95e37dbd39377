/* Command-line flags of serpent's subcommands: a table per command, parsed in one place so every
 * command gets --help, usage errors and exit code 2 the same way. */
#ifndef SRP_CLI_H
#define SRP_CLI_H

#include <stdint.h>
#include <stdio.h>

typedef enum { CLI_STR, CLI_INT, CLI_FLOAT, CLI_U64, CLI_FLAG } cli_kind;

typedef struct cli_opt {
    const char *name; /* without the leading "--" */
    cli_kind kind;
    void *dest;      /* const char **, int *, float *, uint64_t *, int * (flag) */
    const char *arg; /* value placeholder for help, e.g. "DIR" */
    const char *help;
    int seen; /* set by the parser */
} cli_opt;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_USAGE = 2 };

/* Parses argv[first..argc). Returns CLI_OK, CLI_HELP (after printing help to stdout) or
 * CLI_USAGE (after printing the problem and the usage to stderr). */
int cli_parse(const char *command, const char *summary, cli_opt *opts, int n_opts, int argc,
              char **argv, int first);

void cli_print_help(FILE *f, const char *command, const char *summary, const cli_opt *opts,
                    int n_opts);

/* Parses "1,2,3" into a malloc'ed array; returns 0, or -1 for a malformed list. */
int cli_parse_ids(const char *s, int32_t **ids, int *n);

/* The model `serve` uses without --model: $SERPENT_MODEL, else models/serpent-tiny beside the
 * executable's folder (build/serpent -> models/), under share/serpent/ of its prefix, in the
 * working directory, in the source tree it was built from, or under /opt/serpent (the
 * container). Fills buf and returns it, or NULL when none exists. */
const char *cli_default_model(char *buf, size_t n);

/* Seconds since an arbitrary start (monotonic clock). */
double cli_now(void);

int cmd_generate(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#include "engine.h"
#include "tokenizer.h"

/* Settings shared by the commands that run a model. */
typedef struct cli_model_args {
    const char *model;
    const char *backend;
    int threads;
} cli_model_args;

/* Opens the engine for one sequence of up to max_seq_len tokens, printing errors to stderr.
 * Returns 0 or 1 (the exit code for a runtime failure). */
int cli_open_engine(const cli_model_args *a, int max_seq_len, int max_batch_tokens, int max_logits,
                    srp_engine **eng);

/* The prompt as ids: --prompt-ids, or --prompt encoded by the folder's tokenizer (with BOS as
 * tokenizer_config.json says). *tok is loaded when the folder has a tokenizer, else NULL.
 * Returns 0, 1 (runtime failure) or 2 (usage). */
int cli_prompt_ids(const char *model, const char *prompt, const char *prompt_ids,
                   srp_tokenizer **tok, int32_t **ids, int *n);

#endif
