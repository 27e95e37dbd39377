/* Tokenizer speed on one thread: encode MB/s and decode tokens/s over the lines of a corpus,
 * through the public tokenizer API (the production code). Prints one JSON object.
 *   tokenizer_bench MODEL_DIR CORPUS [REPEAT]
 * Every line is encoded REPEAT times (default 3) and the fastest pass counts; the same for
 * decoding each line's ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tokenizer_bench MODEL_DIR CORPUS [REPEAT]\n");
        return 2;
    }
    int repeat = argc > 3 ? atoi(argv[3]) : 3;
    size_t len;
    char *text = read_all(argv[2], &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    srp_tokenizer *t = NULL;
    srp_err e = { 0 };
    double t0 = now();
    if (srp_tokenizer_load(argv[1], &t, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    double load_s = now() - t0;
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    char **line = malloc(n_lines * sizeof *line);
    size_t *llen = malloc(n_lines * sizeof *llen);
    int32_t **ids = calloc(n_lines, sizeof *ids);
    int *nids = calloc(n_lines, sizeof *nids);
    for (size_t i = 0, a = 0, k = 0; i < len; i++) {
        if (text[i] != '\n') continue;
        line[k] = text + a;
        llen[k++] = i - a;
        a = i + 1;
    }
    double best_enc = 1e30, best_dec = 1e30;
    long long n_tokens = 0;
    for (int r = 0; r < repeat; r++) {
        n_tokens = 0;
        t0 = now();
        for (size_t k = 0; k < n_lines; k++) {
            free(ids[k]);
            if (srp_tokenizer_encode(t, line[k], llen[k], 0, &ids[k], &nids[k], &e)) {
                fprintf(stderr, "line %zu: %s\n", k + 1, e.msg);
                return 1;
            }
            n_tokens += nids[k];
        }
        double dt = now() - t0;
        if (dt < best_enc) best_enc = dt;
    }
    for (int r = 0; r < repeat; r++) {
        t0 = now();
        for (size_t k = 0; k < n_lines; k++) {
            char *out;
            size_t olen;
            if (srp_tokenizer_decode(t, ids[k], nids[k], 0, &out, &olen, &e)) {
                fprintf(stderr, "line %zu: %s\n", k + 1, e.msg);
                return 1;
            }
            free(out);
        }
        double dt = now() - t0;
        if (dt < best_dec) best_dec = dt;
    }
    printf("{\"impl\": \"serpent\", \"lines\": %zu, \"bytes\": %zu, \"tokens\": %lld, "
           "\"load_s\": %.3f, \"encode_s\": %.4f, \"encode_MB_per_s\": %.2f, \"decode_s\": %.4f, "
           "\"decode_tokens_per_s\": %.0f}\n",
           n_lines, len, n_tokens, load_s, best_enc, len / best_enc / 1e6, best_dec,
           n_tokens / best_dec);
    for (size_t k = 0; k < n_lines; k++) free(ids[k]);
    free(ids);
    free(nids);
    free(line);
    free(llen);
    free(text);
    srp_tokenizer_free(t);
    return 0;
}
