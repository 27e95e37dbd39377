#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_print_help(FILE *f, const char *command, const char *summary, const cli_opt *opts,
                    int n_opts) {
    fprintf(f, "usage: serpent %s [options]\n\n%s\n\noptions:\n", command, summary);
    for (int i = 0; i < n_opts; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-26s %s\n", left, opts[i].help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help");
}

static int usage(const char *command, const char *summary, const cli_opt *opts, int n_opts,
                 const char *fmt, const char *what) {
    fprintf(stderr, "serpent %s: ", command);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n\n");
    cli_print_help(stderr, command, summary, opts, n_opts);
    return CLI_USAGE;
}

static int set_value(cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_STR:
        *(const char **)o->dest = v;
        return 0;
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < -2147483647L || x > 2147483647L) return -1;
        *(int *)o->dest = (int)x;
        return 0;
    }
    case CLI_U64: {
        if (*v == '-') return -1;
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno) return -1;
        *(uint64_t *)o->dest = x;
        return 0;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (!*v || *end || errno || !isfinite(x)) return -1;
        *(float *)o->dest = x;
        return 0;
    }
    case CLI_FLAG:
        return -1;
    }
    return -1;
}

int cli_parse(const char *command, const char *summary, cli_opt *opts, int n_opts, int argc,
              char **argv, int first) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_print_help(stdout, command, summary, opts, n_opts);
            return CLI_HELP;
        }
        if (strncmp(a, "--", 2) != 0)
            return usage(command, summary, opts, n_opts, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int k = 0; k < n_opts && !o; k++)
            if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, name, nlen)) o = &opts[k];
        if (!o) return usage(command, summary, opts, n_opts, "unknown option '%s'", a);
        o->seen = 1;
        if (o->kind == CLI_FLAG) {
            if (eq) return usage(command, summary, opts, n_opts, "option '%s' takes no value", a);
            *(int *)o->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return usage(command, summary, opts, n_opts, "option '%s' needs a value", a);
        if (set_value(o, v)) {
            char what[256];
            snprintf(what, sizeof what, "--%s %s", o->name, v);
            return usage(command, summary, opts, n_opts, "bad value in '%s'", what);
        }
    }
    return CLI_OK;
}

int cli_parse_ids(const char *s, int32_t **ids, int *n) {
    int cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 2147483647L) {
            free(v);
            return -1;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') {
            p++;
            if (!*p) {
                free(v);
                return -1;
            }
        } else if (*p) {
            free(v);
            return -1;
        }
    }
    if (k == 0) {
        free(v);
        return -1;
    }
    *ids = v;
    *n = k;
    return 0;
}

static int is_model_dir(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    return access(path, R_OK) == 0;
}

const char *cli_default_model(char *buf, size_t n) {
    const char *env = getenv("SERPENT_MODEL");
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        return buf;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0; /* the executable's folder */
        static const char *const rel[] = { "/../models/serpent-tiny",
                                           "/../share/serpent/models/serpent-tiny",
                                           "/models/serpent-tiny" };
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            snprintf(buf, n, "%s%s", exe, rel[i]);
            if (is_model_dir(buf)) return buf;
        }
    }
    /* run from a checkout, and the checkout this executable was built from (an out-of-tree
     * build folder anywhere) */
    static const char *const fixed[] = { "models/serpent-tiny",
#ifdef SERPENT_SOURCE_DIR
                                         SERPENT_SOURCE_DIR "/models/serpent-tiny",
#endif
                                         "/opt/serpent/models/serpent-tiny" };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        snprintf(buf, n, "%s", fixed[i]);
        if (is_model_dir(buf)) return buf;
    }
    return NULL;
}

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void print_progress(void *user, uint64_t done, uint64_t total) {
    int *last = user;
    if (total < (1ull << 30)) return; /* small checkpoints load in a blink */
    int pct = (int)(done * 100 / total);
    if (pct / 5 != *last / 5 || done == total) {
        fprintf(stderr, "\rloading weights: %3d%% (%.1f of %.1f GB)", pct, done / 1e9, total / 1e9);
        if (done == total) fprintf(stderr, "\n");
        *last = pct;
    }
}

int cli_open_engine(const cli_model_args *a, int max_seq_len, int max_batch_tokens, int max_logits,
                    srp_engine **eng) {
    static int last_pct = -5;
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = a->backend;
    o.n_threads = a->threads;
    o.max_seqs = 1;
    o.max_seq_len = max_seq_len;
    o.max_batch_tokens = max_batch_tokens;
    o.max_logits = max_logits;
    o.progress = print_progress;
    o.progress_user = &last_pct;
    srp_err e = { 0 };
    if (srp_engine_open(a->model, &o, eng, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    /* a recurrent model's memory per sequence does not grow with its length: say what it is */
    const int64_t slot = srp_engine_slot_bytes(*eng);
    if (slot >= 1000000)
        fprintf(stderr, "serpent: recurrent state per sequence: %.2f MB\n", (double)slot / 1e6);
    else if (slot > 0)
        fprintf(stderr, "serpent: recurrent state per sequence: %.1f KB\n", (double)slot / 1e3);
    if (srp_engine_config(*eng)->note[0])
        fprintf(stderr, "serpent: %s\n", srp_engine_config(*eng)->note);
    return 0;
}

int cli_prompt_ids(const char *model, const char *prompt, const char *prompt_ids,
                   srp_tokenizer **tok, int32_t **ids, int *n) {
    srp_err e = { 0 };
    *tok = NULL;
    if ((prompt != NULL) == (prompt_ids != NULL)) {
        fprintf(stderr, "serpent: give exactly one of --prompt and --prompt-ids\n");
        return 2;
    }
    int rc = srp_tokenizer_load(model, tok, &e);
    if (rc && rc != SRP_EIO) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    if (prompt_ids) {
        if (cli_parse_ids(prompt_ids, ids, n)) {
            fprintf(stderr, "serpent: --prompt-ids must be a comma-separated list of token ids\n");
            return 2;
        }
        return 0;
    }
    if (!*tok) {
        fprintf(stderr, "serpent: %s; use --prompt-ids\n", e.msg);
        return 1;
    }
    if (srp_tokenizer_encode(*tok, prompt, strlen(prompt), 1, ids, n, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    if (*n == 0) {
        free(*ids);
        fprintf(stderr, "serpent: the prompt encodes to no tokens\n");
        return 2;
    }
    return 0;
}
