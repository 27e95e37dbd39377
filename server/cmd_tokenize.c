/* serpent tokenize: text -> ids (or, with --decode, ids -> text), one input line at a time. It
 * needs only the tokenizer files of a model folder. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *summary =
    "Prints the token ids of each input line (stdin, or --file), space-separated, one output\n"
    "line per input line. Special tokens written in the text are matched; BOS/EOS are added\n"
    "only with --add-special-tokens. With --decode each input line holds ids and its text is\n"
    "printed. The folder needs only tokenizer.json or tokenizer.model (+ tokenizer_config.json).";

static int encode_line(const srp_tokenizer *tok, const char *line, size_t len, int add_special,
                       long lineno, FILE *out) {
    int32_t *ids = NULL;
    int n = 0;
    srp_err e = { 0 };
    if (srp_tokenizer_encode(tok, line, len, add_special, &ids, &n, &e)) {
        fprintf(stderr, "serpent tokenize: line %ld: %s\n", lineno, e.msg);
        return 1;
    }
    for (int i = 0; i < n; i++) fprintf(out, i ? " %d" : "%d", ids[i]);
    fputc('\n', out);
    free(ids);
    return 0;
}

static int decode_line(const srp_tokenizer *tok, char *line, int skip_special, long lineno,
                       FILE *out) {
    int32_t *ids = NULL;
    int n = 0, cap = 0;
    char *p = line, *end;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\t' && *end != '\r')) {
            fprintf(stderr, "serpent tokenize: line %ld: not a list of token ids\n", lineno);
            free(ids);
            return 1;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            int32_t *ni = realloc(ids, (size_t)cap * sizeof *ni);
            if (!ni) {
                free(ids);
                fprintf(stderr, "serpent tokenize: out of memory\n");
                return 1;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *text = NULL;
    size_t len = 0;
    srp_err e = { 0 };
    int rc = srp_tokenizer_decode(tok, ids, n, skip_special, &text, &len, &e);
    free(ids);
    if (rc) {
        fprintf(stderr, "serpent tokenize: line %ld: %s\n", lineno, e.msg);
        return 1;
    }
    fwrite(text, 1, len, out);
    fputc('\n', out);
    free(text);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    int add_special = 0, decode = 0, skip_special = 0;
    cli_opt opts[] = {
        { "model", CLI_STR, &model, "DIR", "folder with tokenizer.json or tokenizer.model", 0 },
        { "file", CLI_STR, &file, "F", "read lines from F instead of stdin", 0 },
        { "add-special-tokens", CLI_FLAG, &add_special, NULL, "add BOS/EOS as the model does", 0 },
        { "decode", CLI_FLAG, &decode, NULL, "read lines of ids and print their text", 0 },
        { "skip-special-tokens", CLI_FLAG, &skip_special, NULL,
          "with --decode: leave special tokens out of the text", 0 },
    };
    const int n_opts = sizeof opts / sizeof opts[0];
    int p = cli_parse("tokenize", summary, opts, n_opts, argc, argv, 2);
    if (p == CLI_HELP) return 0;
    if (p == CLI_USAGE) return 2;
    if (!model) {
        fprintf(stderr, "serpent tokenize: --model is required\n\n");
        cli_print_help(stderr, "tokenize", summary, opts, n_opts);
        return 2;
    }
    srp_tokenizer *tok = NULL;
    srp_err e = { 0 };
    if (srp_tokenizer_load(model, &tok, &e)) {
        fprintf(stderr, "serpent tokenize: %s\n", e.msg);
        return 1;
    }
    FILE *in = file ? fopen(file, "rb") : stdin;
    if (!in) {
        fprintf(stderr, "serpent tokenize: cannot open %s: %s\n", file, strerror(errno));
        srp_tokenizer_free(tok);
        return 1;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        rc = decode ? decode_line(tok, line, skip_special, lineno, stdout)
                    : encode_line(tok, line, (size_t)len, add_special, lineno, stdout);
    }
    if (!rc && ferror(in)) {
        fprintf(stderr, "serpent tokenize: read error on %s\n", file ? file : "stdin");
        rc = 1;
    }
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, "serpent tokenize: write error\n");
        rc = 1;
    }
    free(line);
    if (file) fclose(in);
    srp_tokenizer_free(tok);
    return rc;
}
