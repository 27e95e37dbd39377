/* The threads that turn request bodies into work: JSON parsing, chat-template rendering and
 * tokenization run here, never on libmicrohttpd's threads, so a 16 MiB prompt cannot keep
 * /health waiting. A bounded queue: a request beyond it gets 503 at once. */
#include <pthread.h>
#include <stdlib.h>

#include "server.h"

typedef struct job {
    void (*run)(void *arg);
    void *arg;
    struct job *next;
} job;

struct srv_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    int n_queued, max_queued, stopping, n_threads;
    pthread_t *threads;
};

static void *worker_main(void *arg) {
    srv_workers *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->head && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
        job *j = w->head;
        if (!j) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        w->head = j->next;
        if (!w->head) w->tail = NULL;
        w->n_queued--;
        pthread_mutex_unlock(&w->mu);
        j->run(j->arg);
        free(j);
    }
}

int srv_workers_start(int n_threads, int max_queued, srv_workers **out) {
    srv_workers *w = calloc(1, sizeof *w);
    if (!w) return -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->max_queued = max_queued;
    w->threads = calloc((size_t)n_threads, sizeof *w->threads);
    if (!w->threads) {
        srv_workers_stop(w);
        return -1;
    }
    for (int i = 0; i < n_threads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            srv_workers_stop(w);
            return -1;
        }
        w->n_threads++;
    }
    *out = w;
    return 0;
}

int srv_workers_submit(srv_workers *w, void (*run)(void *arg), void *arg) {
    job *j = malloc(sizeof *j);
    if (!j) return -1;
    *j = (job){ run, arg, NULL };
    pthread_mutex_lock(&w->mu);
    if (w->stopping || w->n_queued >= w->max_queued) {
        pthread_mutex_unlock(&w->mu);
        free(j);
        return -1;
    }
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->n_queued++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void srv_workers_stop(srv_workers *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1; /* what is queued still runs (each job resumes its connection) */
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->n_threads; i++) pthread_join(w->threads[i], NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->threads);
    free(w);
}
