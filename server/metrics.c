/* Prometheus text format, names after vLLM's with the serpent: prefix. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double ttft_bounds[] = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5,
    0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0
};
static const double itl_bounds[] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,
    0.4,   0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0
};
static const double e2e_bounds[] = { 0.3,  0.5,  1.0,  2.5,   5.0,   10.0,  15.0,  20.0,   30.0,
                                     40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0 };

#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

void srv_metrics_init(srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->ttft = (srv_histogram){ .bounds = ttft_bounds, .n_bounds = COUNT(ttft_bounds) };
    m->itl = (srv_histogram){ .bounds = itl_bounds, .n_bounds = COUNT(itl_bounds) };
    m->e2e = (srv_histogram){ .bounds = e2e_bounds, .n_bounds = COUNT(e2e_bounds) };
}

void srv_metrics_destroy(srv_metrics *m) {
    pthread_mutex_destroy(&m->mu);
}

void srv_metrics_observe(srv_metrics *m, srv_histogram *h, double v) {
    pthread_mutex_lock(&m->mu);
    int b = 0;
    while (b < h->n_bounds && v > h->bounds[b]) b++;
    h->counts[b]++;
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_count_status(srv_metrics *m, int status) {
    int cls = status / 100;
    if (cls < 1 || cls > 5) return;
    pthread_mutex_lock(&m->mu);
    m->http_requests[cls]++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct strbuf {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
}

static void gauge(strbuf *b, const char *name, const char *help, const char *type,
                  const char *model, double v) {
    sb_printf(b,
              "# HELP serpent:%s %s\n# TYPE serpent:%s %s\nserpent:%s{model_name=\"%s\"} %.17g\n",
              name, help, name, type, name, model, v);
}

static void histogram(strbuf *b, const char *name, const char *help, const char *model,
                      const srv_histogram *h) {
    sb_printf(b, "# HELP serpent:%s %s\n# TYPE serpent:%s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        sb_printf(b, "serpent:%s_bucket{le=\"%g\",model_name=\"%s\"} %llu\n", name, h->bounds[i],
                  model, (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    sb_printf(b, "serpent:%s_bucket{le=\"+Inf\",model_name=\"%s\"} %llu\n", name, model,
              (unsigned long long)cum);
    sb_printf(b, "serpent:%s_sum{model_name=\"%s\"} %.17g\n", name, model, h->sum);
    sb_printf(b, "serpent:%s_count{model_name=\"%s\"} %llu\n", name, model,
              (unsigned long long)h->count);
}

char *srv_metrics_render(srv_metrics *m, const srv_metrics_gauges *g) {
    strbuf b = { malloc(4096), 0, 4096, 0 };
    if (!b.s) return NULL;
    b.s[0] = 0;
    const char *mn = g->model_name;
    const srp_sched_stats *st = &g->stats;
    srp_sched_stats zero;
    if (!g->have_stats) {
        memset(&zero, 0, sizeof zero);
        st = &zero;
    }
    gauge(&b, "ready", "1 when the model is loaded and requests are admitted.", "gauge", mn,
          g->ready);
    gauge(&b, "num_requests_running", "Requests in the running batch.", "gauge", mn, st->running);
    gauge(&b, "num_requests_waiting", "Requests waiting for a state slot.", "gauge", mn,
          st->waiting);
    gauge(&b, "state_slots_total", "State slots (sequences in flight at once).", "gauge", mn,
          st->slots_total);
    gauge(&b, "state_slots_used", "State slots held by requests.", "gauge", mn,
          st->slots_total - st->slots_free);
    gauge(&b, "kv_blocks_total", "KV cache blocks of the attention layers.", "gauge", mn,
          st->blocks_total);
    const int blocks_used = st->blocks_total - st->blocks_free - st->blocks_cache_only;
    gauge(&b, "kv_blocks_used", "KV cache blocks held by requests.", "gauge", mn, blocks_used);
    gauge(&b, "kv_cache_usage_perc", "Fraction of KV cache blocks held by requests (0 to 1).",
          "gauge", mn, st->blocks_total ? (double)blocks_used / st->blocks_total : 0);
    gauge(&b, "kv_blocks_cached",
          "KV cache blocks the prefix cache holds (shared with requests "
          "or free for them when needed).",
          "gauge", mn, st->blocks_cached);
    gauge(&b, "prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
          "counter", mn, (double)st->prefix_queried_tokens);
    gauge(&b, "prefix_cache_hits_total",
          "Prompt tokens restored from the prefix cache instead of computed.", "counter", mn,
          (double)st->prefix_hit_tokens);
    gauge(&b, "prefix_cache_deferred_total",
          "Requests that waited for another to compute the prefix they share.", "counter", mn,
          (double)st->prefix_deferred);
    gauge(&b, "prefix_cache_snapshots_total", "State snapshots the prefix cache can hold.", "gauge",
          mn, st->snapshots_total);
    gauge(&b, "prefix_cache_snapshots_used", "State snapshots the prefix cache holds.", "gauge", mn,
          st->snapshots_used);
    gauge(&b, "prefix_cache_snapshot_bytes", "Bytes of one state snapshot.", "gauge", mn,
          (double)st->snapshot_bytes);
    gauge(&b, "prefix_cache_snapshots_taken_total", "State snapshots taken.", "counter", mn,
          (double)st->snapshots_taken);
    sb_printf(&b,
              "# HELP serpent:prefix_cache_evictions_total Prefix-cache entries evicted: "
              "snapshots for the snapshot pool, KV blocks for admission.\n"
              "# TYPE serpent:prefix_cache_evictions_total counter\n"
              "serpent:prefix_cache_evictions_total{kind=\"snapshot\",model_name=\"%s\"} %llu\n"
              "serpent:prefix_cache_evictions_total{kind=\"kv_block\",model_name=\"%s\"} %llu\n",
              mn, (unsigned long long)st->snapshot_evictions, mn,
              (unsigned long long)st->block_evictions);
    gauge(&b, "prompt_tokens_total", "Prompt tokens prefilled.", "counter", mn,
          (double)st->prompt_tokens);
    gauge(&b, "generation_tokens_total", "Tokens generated.", "counter", mn,
          (double)st->generation_tokens);
    gauge(&b, "engine_steps_total", "Forward steps run.", "counter", mn, (double)st->steps);
    gauge(&b, "engine_mixed_steps_total", "Steps that held decode and prefill tokens.", "counter",
          mn, (double)st->mixed_steps);
    gauge(&b, "prefill_budget_tokens",
          "Prompt tokens the last step with prompts pending could take beside decode tokens.",
          "gauge", mn, st->prefill_budget);
    gauge(&b, "decode_step_seconds",
          "Measured decode-only step time that bounded that budget (0: unbounded).", "gauge", mn,
          st->decode_step_s);
    gauge(&b, "step_target_seconds", "Step time that budget aimed at (0: unbounded).", "gauge", mn,
          st->step_target_s);
    gauge(&b, "http_connections", "HTTP connections open.", "gauge", mn, g->conns_open);
    gauge(&b, "http_connections_max", "Connections open before idle ones are evicted.", "gauge", mn,
          g->conns_cap);
    gauge(&b, "http_connections_evicted_total", "Idle connections closed to make room.", "counter",
          mn, (double)g->conns_evicted);
    pthread_mutex_lock(&m->mu);
    static const char *reasons[] = { "none", "stop", "length", "abort", "error" };
    sb_printf(&b, "# HELP serpent:request_finished_total Requests (choices) finished by reason.\n"
                  "# TYPE serpent:request_finished_total counter\n");
    for (int r = SRP_FINISH_STOP; r <= SRP_FINISH_ERROR; r++)
        sb_printf(&b,
                  "serpent:request_finished_total{finished_reason=\"%s\",model_name=\"%s\"} %llu\n",
                  reasons[r], mn, (unsigned long long)st->finished[r]);
    gauge(&b, "request_rejected_total", "Requests refused with 429 (queue full).", "counter", mn,
          (double)st->rejected);
    sb_printf(&b, "# HELP serpent:http_responses_total HTTP responses by status class.\n"
                  "# TYPE serpent:http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        sb_printf(&b, "serpent:http_responses_total{code=\"%dxx\",model_name=\"%s\"} %llu\n", c, mn,
                  (unsigned long long)m->http_requests[c]);
    histogram(&b, "time_to_first_token_seconds", "Time from arrival to the first token.", mn,
              &m->ttft);
    histogram(&b, "inter_token_latency_seconds", "Time between consecutive tokens.", mn, &m->itl);
    histogram(&b, "e2e_request_latency_seconds", "Time from arrival to the last token.", mn,
              &m->e2e);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
