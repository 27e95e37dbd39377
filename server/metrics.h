/* Prometheus metrics of the HTTP server: latency histograms observed by the request handlers,
 * the scheduler's counters and gauges read at scrape time (private to server/). */
#ifndef SRV_METRICS_H
#define SRV_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "scheduler.h"

#define SRV_HIST_MAX_BUCKETS 24

typedef struct srv_histogram {
    const double *bounds; /* upper bounds, ascending; +Inf is implied */
    int n_bounds;
    uint64_t counts[SRV_HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    double sum;
    uint64_t count;
} srv_histogram;

typedef struct srv_metrics {
    pthread_mutex_t mu;
    srv_histogram ttft, itl, e2e;
    uint64_t http_requests[6]; /* by status class: 1xx .. 5xx (index 1..5) */
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_destroy(srv_metrics *m);
void srv_metrics_observe(srv_metrics *m, srv_histogram *h, double v);
void srv_metrics_count_status(srv_metrics *m, int status);

typedef struct srv_metrics_gauges {
    const char *model_name;
    int ready;
    int have_stats;
    srp_sched_stats stats;
    int conns_open, conns_cap;
    unsigned long conns_evicted;
} srv_metrics_gauges;

/* The Prometheus text exposition (malloc'ed). */
char *srv_metrics_render(srv_metrics *m, const srv_metrics_gauges *g);

#endif
