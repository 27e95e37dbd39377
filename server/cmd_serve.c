/* serpent serve: the OpenAI-compatible HTTP server.
 *
 * Start-up listens first (so /health answers 503 while the weights load), then loads the
 * tokenizer and the engine and starts the scheduler. SIGTERM or SIGINT drains: no new
 * requests (503), in-flight ones finish within --timeout seconds, the rest are cancelled, and
 * the process exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "chat_template.h"
#include "cli.h"
#include "server.h"

static const char *summary =
    "Serves the model over HTTP with OpenAI's API: POST /v1/completions,\n"
    "POST /v1/chat/completions, GET /v1/models[/ID], POST /tokenize, POST /detokenize, GET "
    "/health\n"
    "(200 ready, 503 loading or draining) and GET /metrics (Prometheus). Requests are batched\n"
    "continuously; SIGTERM drains in-flight requests (at most --timeout seconds) and exits 0.";

static void sleep_ms(int ms) {
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

/* bos_token / eos_token text of tokenizer_config.json, for chat templates. */
static char *special_text(const cJSON *root, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsObject(it)) it = cJSON_GetObjectItemCaseSensitive(it, "content");
    return cJSON_IsString(it) ? strdup(it->valuestring) : NULL;
}

static void read_special_texts(srv_server *srv, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    char buf[65536];
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nt = realloc(text, cap);
            if (!nt) break;
            text = nt;
        }
        memcpy(text + len, buf, n);
        len += n;
    }
    fclose(f);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (root) {
        srv->bos_text = special_text(root, "bos_token");
        srv->eos_text = special_text(root, "eos_token");
    }
    cJSON_Delete(root);
    free(text);
}

static int load_model(srv_server *srv, const cli_model_args *ma, srp_engine_opts *eo,
                      const srp_sched_opts *so) {
    srp_err e = { 0 };
    int rc = srp_tokenizer_load(ma->model, &srv->tok, &e);
    if (rc == SRP_EIO) {
        fprintf(stderr, "serpent: %s; serving token ids only\n", e.msg);
        srv->tok = NULL;
    } else if (rc) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    if (srv->tok) {
        srv->chat_template = srp_tokenizer_chat_template(srv->tok);
        read_special_texts(srv, ma->model);
    }
    if (srv->chat_template) {
        srp_err ce = { 0 };
        if (srp_chat_template_compile(srv->chat_template, strlen(srv->chat_template),
                                      &srv->chat_tmpl, &ce)) {
            srv->chat_tmpl = NULL;
            snprintf(srv->chat_tmpl_error, sizeof srv->chat_tmpl_error, "%.500s", ce.msg);
            fprintf(stderr, "serpent: the chat template does not compile (%s); chat answers 400\n",
                    ce.msg);
        }
    }
    if (srp_engine_open(ma->model, eo, &srv->eng, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    const srp_config *c = srp_engine_config(srv->eng);
    if (c->note[0]) fprintf(stderr, "serpent: %s\n", c->note);
    srv->vocab = c->vocab_size;
    for (int i = 0; i < c->n_eos && srv->n_eos < 8; i++) srv->eos_ids[srv->n_eos++] = c->eos_ids[i];
    int teos = srv->tok ? srp_tokenizer_eos(srv->tok) : -1;
    int have = 0;
    for (int i = 0; i < srv->n_eos; i++) have |= srv->eos_ids[i] == teos;
    if (teos >= 0 && !have && srv->n_eos < 8) srv->eos_ids[srv->n_eos++] = teos;
    if (srv->tok && srv_vocab_build(srv, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    if (srp_sched_start(srv->eng, so, &srv->sched, &e)) {
        fprintf(stderr, "serpent: %s\n", e.msg);
        return 1;
    }
    return 0;
}

/* The default served name: the model folder's last component ("models/tiny/" -> "tiny"). */
static const char *folder_name(const char *path, char *buf, size_t len) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, len, "%.*s", (int)(n - start), path + start);
    return buf[0] ? buf : path;
}

/* --allowed-origins: '["https://a.example", "https://b.example"]' (vLLM's form) or
 * "https://a.example,https://b.example"; "*" anywhere allows every origin. */
static int parse_origins(const char *arg, srv_config *cfg) {
    cJSON *list = NULL;
    if (arg[0] == '[') {
        list = cJSON_Parse(arg);
        const cJSON *it;
        int ok = cJSON_IsArray(list);
        if (ok) cJSON_ArrayForEach(it, list) ok &= cJSON_IsString(it);
        if (!ok) {
            cJSON_Delete(list);
            return -1;
        }
    } else {
        list = cJSON_CreateArray();
        for (const char *p = arg; *p;) {
            const char *q = strchr(p, ',');
            size_t n = q ? (size_t)(q - p) : strlen(p);
            while (n && *p == ' ') p++, n--;
            while (n && p[n - 1] == ' ') n--;
            if (n) {
                char *one = strndup(p, n);
                cJSON_AddItemToArray(list, cJSON_CreateString(one ? one : ""));
                free(one);
            }
            p = q ? q + 1 : p + strlen(p);
        }
    }
    int n = cJSON_GetArraySize(list), k = 0;
    cfg->origins = calloc((size_t)(n ? n : 1), sizeof *cfg->origins);
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        if (!strcmp(it->valuestring, "*")) cfg->any_origin = 1;
        if (cfg->origins) cfg->origins[k++] = strdup(it->valuestring);
    }
    cfg->n_origins = k;
    cJSON_Delete(list);
    return cfg->origins ? 0 : -1;
}

static void free_origins(srv_config *cfg) {
    for (int i = 0; i < cfg->n_origins; i++) free(cfg->origins[i]);
    free(cfg->origins);
}

static int wait_idle(srv_server *srv, double deadline) {
    for (;;) {
        srp_sched_stats st;
        srp_sched_get_stats(srv->sched, &st);
        if (st.running == 0 && st.waiting == 0 && atomic_load(&srv->n_gens) == 0) return 1;
        if (srp_sched_now() >= deadline) return 0;
        sleep_ms(20);
    }
}

/* Raises the descriptor limit to the hard one; returns the limit in force. */
static int raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
}

int cmd_serve(int argc, char **argv) {
    cli_model_args ma = { NULL, "auto", 0 };
    const char *host = "127.0.0.1", *name = NULL, *api_key = NULL, *origins = "*";
    int port = 8000, max_seqs = 0, max_len = 4096, max_batched = 512, max_queue = 1024;
    int timeout = 30, max_body_mb = 16, http_threads = 2, tok_threads = 2, req_timeout = 10;
    int max_conns = 0, max_conns_ip = 1024, max_logprobs = 262144, random_weights = 0;
    int min_prefill = 32;
    float gpu_mem = 0.0f, itl_slowdown = 2.5f, step_target_ms = 0.0f;
    uint64_t seed = 1;
    int no_prefix_cache = 0;
    float prefix_gb = 0.0f;
    const char *tool_parser = NULL, *reasoning_parser = NULL;
    cli_opt opts[] = {
        { "model", CLI_STR, &ma.model, "DIR",
          "model folder (config.json + safetensors); default: $SERPENT_MODEL, else the shipped "
          "models/serpent-tiny",
          0 },
        { "host", CLI_STR, &host, "ADDR", "address to listen on (default 127.0.0.1)", 0 },
        { "port", CLI_INT, &port, "N", "port to listen on; 0 picks a free one (default 8000)", 0 },
        { "served-model-name", CLI_STR, &name, "NAME",
          "model name in the API (default: the model folder's name)", 0 },
        { "api-key", CLI_STR, &api_key, "KEY",
          "require 'Authorization: Bearer KEY' (default: $SERPENT_API_KEY, else none)", 0 },
        { "max-num-seqs", CLI_INT, &max_seqs, "N",
          "requests running at once: state slots (default: as many as fit in GPU memory, at "
          "most 256; 16 on the CPU)",
          0 },
        { "max-model-len", CLI_INT, &max_len, "N",
          "longest prompt + completion in tokens (default 4096)", 0 },
        { "max-num-batched-tokens", CLI_INT, &max_batched, "N",
          "most tokens in one forward step: prompt chunks fill it while nothing decodes (default "
          "512)",
          0 },
        { "itl-slowdown", CLI_FLOAT, &itl_slowdown, "F",
          "while requests decode, a step that also prefills prompts takes at most F times a "
          "decode-only step of that batch (measured), bounding the time between their tokens; "
          "0: no bound, prompts fill --max-num-batched-tokens (default 2.5)",
          0 },
        { "step-target-ms", CLI_FLOAT, &step_target_ms, "MS",
          "and at most MS milliseconds (default 0: no absolute bound)", 0 },
        { "min-prefill-tokens", CLI_INT, &min_prefill, "N",
          "prompt tokens every step may take whatever the bounds say, so prompts progress "
          "(default 32)",
          0 },
        { "max-queue", CLI_INT, &max_queue, "N",
          "requests waiting for a slot before 429 (default 1024)", 0 },
        { "timeout", CLI_INT, &timeout, "S",
          "seconds in-flight requests get to finish on SIGTERM (default 30)", 0 },
        { "max-request-mb", CLI_INT, &max_body_mb, "N",
          "largest request body, MiB; then 413 (default 16)", 0 },
        { "http-threads", CLI_INT, &http_threads, "N", "threads serving connections (default 2)",
          0 },
        { "tokenizer-threads", CLI_INT, &tok_threads, "N",
          "threads that parse, render and tokenize requests (default 2)", 0 },
        { "request-timeout", CLI_INT, &req_timeout, "S",
          "seconds a connection may stay silent before its request is complete (default 10)", 0 },
        { "max-connections", CLI_INT, &max_conns, "N",
          "connections open at once; past it idle ones are closed and busy ones get 503 "
          "(default: 8192, or less below the descriptor limit)",
          0 },
        { "max-connections-per-ip", CLI_INT, &max_conns_ip, "N",
          "connections from one address (default 1024; 0: no limit; behind a proxy all come "
          "from its address)",
          0 },
        { "max-logprobs", CLI_INT, &max_logprobs, "N",
          "logprob entries one request may ask for: choices x tokens x (top_logprobs + 1) "
          "(default 262144)",
          0 },
        { "allowed-origins", CLI_STR, &origins, "LIST",
          "origins browsers may call from (CORS): a JSON list or comma-separated; \"*\" is any "
          "(default \"*\")",
          0 },
        { "tool-call-parser", CLI_STR, &tool_parser, "NAME",
          "parse the model's tool calls when a request's tool_choice is \"auto\" (the default "
          "with tools): hermes, qwen3_coder, nemotron_v2 or granite (default: none, and \"auto\" "
          "is a 400, as vLLM without --enable-auto-tool-choice)",
          0 },
        { "reasoning-parser", CLI_STR, &reasoning_parser, "NAME",
          "split <think>...</think> off replies into reasoning_content: deepseek_r1 (reasoning "
          "from the reply's start) or qwen3 (after a <think> the reply or the chat template "
          "opened) (default: none)",
          0 },
        { "gpu-memory-utilization", CLI_FLOAT, &gpu_mem, "F",
          "share of GPU memory serpent may use (default 0.9)", 0 },
        { "prefix-cache-gb", CLI_FLOAT, &prefix_gb, "F",
          "memory for the prefix cache's state snapshots, GB (default: a tenth of what the "
          "weights leave, plus what the slots and KV cache do not use; 1 GB at most on the CPU)",
          0 },
        { "no-prefix-cache", CLI_FLAG, &no_prefix_cache, NULL,
          "compute every prompt in full (no snapshots, no shared KV blocks)", 0 },
        { "backend", CLI_STR, &ma.backend, "NAME", "cpu, cuda or auto (default auto)", 0 },
        { "threads", CLI_INT, &ma.threads, "N", "CPU threads (default: all cores)", 0 },
        { "random-weights", CLI_FLAG, &random_weights, NULL,
          "benchmarks: --model's config.json shape with random weights (no checkpoint needed; "
          "token-id prompts unless the folder has a tokenizer)",
          0 },
        { "seed", CLI_U64, &seed, "S", "seed of --random-weights (default 1)", 0 },
    };
    const int n_opts = sizeof opts / sizeof opts[0];
    int p = cli_parse("serve", summary, opts, n_opts, argc, argv, 2);
    if (p == CLI_HELP) return 0;
    if (p == CLI_USAGE) return 2;
    char default_model[4096];
    if (!ma.model && !(ma.model = cli_default_model(default_model, sizeof default_model))) {
        fprintf(stderr,
                "serpent serve: no --model given and the default model (models/serpent-tiny, "
                "or $SERPENT_MODEL) was not found\n");
        return 1;
    }
    const char *bad =
        (port < 0 || port > 65535)                    ? "--port must be in [0, 65535]"
        : max_seqs < 0                                ? "--max-num-seqs must be >= 0"
        : max_len < 2                                 ? "--max-model-len must be >= 2"
        : max_batched < 1                             ? "--max-num-batched-tokens must be >= 1"
        : max_queue < 0                               ? "--max-queue must be >= 0"
        : timeout < 0                                 ? "--timeout must be >= 0"
        : (max_body_mb < 1 || max_body_mb > 4096)     ? "--max-request-mb must be in [1, 4096]"
        : (http_threads < 1 || http_threads > 64)     ? "--http-threads must be in [1, 64]"
        : (tok_threads < 1 || tok_threads > 64)       ? "--tokenizer-threads must be in [1, 64]"
        : (req_timeout < 1 || req_timeout > 3600)     ? "--request-timeout must be in [1, 3600]"
        : max_conns < 0                               ? "--max-connections must be >= 0"
        : max_conns_ip < 0                            ? "--max-connections-per-ip must be >= 0"
        : max_logprobs < 1                            ? "--max-logprobs must be >= 1"
        : (gpu_mem < 0 || gpu_mem > 1)                ? "--gpu-memory-utilization must be in (0, 1]"
        : (itl_slowdown != 0 && !(itl_slowdown >= 1)) ? "--itl-slowdown must be 0 (off) or >= 1"
        : !(step_target_ms >= 0)                      ? "--step-target-ms must be >= 0"
        : min_prefill < 1                             ? "--min-prefill-tokens must be >= 1"
        : (prefix_gb < 0 || prefix_gb > 1e6)          ? "--prefix-cache-gb must be >= 0"
        : tool_parser && !srv_tool_parser_find(tool_parser)
            ? "--tool-call-parser must be one of hermes, qwen3_coder, nemotron_v2, granite"
        : reasoning_parser && srv_reasoning_find(reasoning_parser) < 0
            ? "--reasoning-parser must be deepseek_r1 or qwen3"
            : NULL;
    if (bad) {
        fprintf(stderr, "serpent serve: %s\n\n", bad);
        cli_print_help(stderr, "serve", summary, opts, n_opts);
        return 2;
    }
    if (!api_key) api_key = getenv("SERPENT_API_KEY");
    /* a key read from a file or a variable may carry a newline */
    char key_buf[1024];
    if (api_key) {
        while (*api_key == ' ' || *api_key == '\t' || *api_key == '\n' || *api_key == '\r')
            api_key++;
        size_t kl = strlen(api_key);
        while (kl && strchr(" \t\r\n", api_key[kl - 1])) kl--;
        snprintf(key_buf, sizeof key_buf, "%.*s", (int)kl, api_key);
        api_key = key_buf[0] ? key_buf : NULL;
    }

    /* Signals are taken by sigwait below; every thread started from here on blocks them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int fd_limit = raise_fd_limit();
    /* below the descriptor limit, with room for the model files, the reserve libmicrohttpd
     * accepts past the cap, and whatever else the process holds */
    int conn_room = fd_limit - SRV_CONNECTION_RESERVE - 256;
    if (conn_room < 16) conn_room = 16;
    if (!max_conns) max_conns = conn_room < 8192 ? conn_room : 8192;
    if (max_conns > conn_room) {
        fprintf(stderr,
                "serpent serve: --max-connections %d is above what %d descriptors allow; "
                "using %d\n",
                max_conns, fd_limit, conn_room);
        max_conns = conn_room;
    }

    srv_server *srv = calloc(1, sizeof *srv);
    if (!srv) return 1;
    char base[256];
    srv->cfg =
        (srv_config){ .host = host,
                      .port = port,
                      .model_name = name ? name : folder_name(ma.model, base, sizeof base),
                      .model_path = ma.model,
                      .api_key = api_key,
                      .max_model_len = max_len,
                      .max_body_bytes = (size_t)max_body_mb << 20,
                      .http_threads = http_threads,
                      .tokenizer_threads = tok_threads,
                      .request_timeout = req_timeout,
                      .max_connections = max_conns,
                      .max_connections_per_ip = max_conns_ip,
                      .max_logprobs = max_logprobs,
                      .tool_parser = tool_parser ? srv_tool_parser_find(tool_parser) : NULL,
                      .reasoning_parser = reasoning_parser
                                              ? (srv_reasoning)srv_reasoning_find(reasoning_parser)
                                              : SRV_REASONING_NONE };
    if (parse_origins(origins, &srv->cfg)) {
        fprintf(stderr, "serpent serve: --allowed-origins: not a JSON list of strings\n");
        free(srv);
        return 2;
    }
    srv->created = (long)time(NULL);
    atomic_store(&srv->state, SRV_LOADING);
    pthread_rwlock_init(&srv->life, NULL);
    srv_metrics_init(&srv->metrics);
    char err[512];
    int rc = 0;
    if (srv_http_start(srv, err, sizeof err)) {
        fprintf(stderr, "serpent: %s\n", err);
        rc = 1;
        goto out;
    }
    fprintf(stderr, "serpent: listening on http://%s:%d (loading %s)\n", host, srv->cfg.port,
            ma.model);
    srp_engine_opts eo;
    srp_engine_opts_default(&eo);
    eo.backend = ma.backend;
    eo.n_threads = ma.threads;
    eo.max_seqs = max_seqs;
    eo.max_seq_len = max_len;
    eo.max_batch_tokens = max_batched;
    eo.gpu_memory_utilization = gpu_mem;
    eo.prefix_cache = !no_prefix_cache;
    eo.prefix_cache_bytes = (int64_t)((double)prefix_gb * 1e9);
    eo.random_weights = random_weights;
    eo.seed = seed;
    srp_sched_opts so;
    srp_sched_opts_default(&so);
    so.max_queue = max_queue;
    so.itl_slowdown = itl_slowdown;
    so.step_target_s = step_target_ms * 1e-3;
    so.min_prefill = min_prefill;
    so.prefix_cache = eo.prefix_cache;
    if ((rc = load_model(srv, &ma, &eo, &so))) goto out;
    atomic_store(&srv->state, SRV_READY);
    const double slot = (double)srp_engine_slot_bytes(srv->eng);
    fprintf(stderr,
            "serpent: ready: model '%s', %d state slots (%.*f %s of recurrent state each), %d KV "
            "blocks, %s\n",
            srv->cfg.model_name, srp_engine_total_slots(srv->eng), slot < 1e6 ? 1 : 2,
            slot < 1e6 ? slot / 1e3 : slot / 1e6, slot < 1e6 ? "KB" : "MB",
            srp_engine_total_blocks(srv->eng), srv->tok ? "tokenizer loaded" : "no tokenizer");
    if (srp_engine_total_snapshots(srv->eng) > 0)
        fprintf(stderr, "serpent: prefix cache: %d state snapshots of %.1f MB (%.2f GB)\n",
                srp_engine_total_snapshots(srv->eng), srp_engine_snapshot_bytes(srv->eng) / 1e6,
                srp_engine_total_snapshots(srv->eng) * (double)srp_engine_snapshot_bytes(srv->eng) /
                    1e9);
    else if (eo.prefix_cache && srp_engine_config(srv->eng)->attn.rope.kind == SRP_ROPE_DYNAMIC)
        fprintf(stderr, "serpent: prefix cache: off, the model scales RoPE dynamically\n");
    else if (eo.prefix_cache)
        fprintf(stderr, "serpent: prefix cache: no memory left for a state snapshot; off\n");

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {}
    fprintf(stderr, "serpent: signal %d: draining (at most %d s)\n", sig, timeout);
    pthread_rwlock_wrlock(&srv->life);
    atomic_store(&srv->state, SRV_DRAINING);
    pthread_rwlock_unlock(&srv->life);
    int idle = wait_idle(srv, srp_sched_now() + timeout);
    if (!idle) fprintf(stderr, "serpent: --timeout reached; cancelling what is left\n");
    pthread_rwlock_wrlock(&srv->life);
    srp_sched *sched = srv->sched;
    srv->sched = NULL;
    pthread_rwlock_unlock(&srv->life);
    srp_sched_stop(sched); /* every request finishes; its connection is resumed */
    for (int i = 0;
         i < 250 && (atomic_load(&srv->n_suspended) > 0 || atomic_load(&srv->n_gens) > 0); i++)
        sleep_ms(20);
out:
    if (atomic_load(&srv->n_suspended) > 0) {
        /* stopping libmicrohttpd with suspended connections is undefined: leave it to exit */
        fprintf(stderr, "serpent: %d connections still suspended at exit\n",
                atomic_load(&srv->n_suspended));
        return rc;
    }
    srv_http_stop(srv);
    if (srv->sched) srp_sched_stop(srv->sched);
    srp_engine_close(srv->eng);
    srp_chat_template_free(srv->chat_tmpl);
    srp_tokenizer_free(srv->tok);
    srv_grammar_cache_clear();
    srp_vocab_free(srv->vocab_bytes);
    free(srv->bos_text);
    free(srv->eos_text);
    srv_metrics_destroy(&srv->metrics);
    pthread_rwlock_destroy(&srv->life);
    free_origins(&srv->cfg);
    free(srv);
    if (!rc) fprintf(stderr, "serpent: stopped\n");
    return rc;
}
