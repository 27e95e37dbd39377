/* serpent: an inference server for state-space and hybrid language models. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: serpent <command> [options]\n\n"
               "commands:\n"
               "  generate   continue a prompt and stream the text\n"
               "  score      negative log-likelihood, perplexity and logits of token ids\n"
               "  tokenize   text to token ids and back, one line at a time\n"
               "  serve      OpenAI-compatible HTTP server with continuous batching\n"
               "  bench      prefill and decode speed (llama-bench-style rows)\n\n"
               "`serpent <command> --help` describes each command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return cmd_generate(argc, argv);
    if (!strcmp(cmd, "score")) return cmd_score(argc, argv);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc, argv);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc, argv);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc, argv);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("serpent 0.1.0\n");
        return 0;
    }
    fprintf(stderr, "serpent: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
