/* Every open connection, busy (a request in progress) or idle (no request yet, or between
 * keep-alive requests), so that connections nobody uses cannot exhaust the server. At the cap a
 * new connection evicts the connection idle the longest (its socket is shut down, which
 * libmicrohttpd then closes), so a flood of connections that send nothing cannot keep /health
 * from being answered; requests beyond the cap while every connection is busy get 503 (http.c).
 *
 * libmicrohttpd reports a connection's start and end (MHD_OPTION_NOTIFY_CONNECTION) before it
 * closes the socket, and the record lives in the connection's socket context, so the socket
 * shut down here is always the connection's own. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "server.h"

struct srv_conn {
    struct srv_conn *prev, *next; /* in the idle list (oldest first) or the busy list */
    int fd, busy;
};

static void unlink_conn(srv_conns *t, srv_conn *c) {
    srv_conn **head = c->busy ? &t->busy_head : &t->idle_head;
    srv_conn **tail = c->busy ? &t->busy_tail : &t->idle_tail;
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        *tail = c->prev;
    c->prev = c->next = NULL;
}

static void append_conn(srv_conns *t, srv_conn *c) {
    srv_conn **head = c->busy ? &t->busy_head : &t->idle_head;
    srv_conn **tail = c->busy ? &t->busy_tail : &t->idle_tail;
    c->prev = *tail;
    c->next = NULL;
    if (*tail)
        (*tail)->next = c;
    else
        *head = c;
    *tail = c;
}

void srv_conns_init(srv_conns *t, int cap) {
    pthread_mutex_init(&t->mu, NULL);
    t->cap = cap;
}

void srv_conns_destroy(srv_conns *t) {
    pthread_mutex_destroy(&t->mu);
}

void srv_conns_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
    srv_conns *t = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_conn *c = calloc(1, sizeof *c);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!c) return; /* untracked: it still counts for libmicrohttpd's own limit */
        c->fd = ci ? ci->connect_fd : -1;
        pthread_mutex_lock(&t->mu);
        append_conn(t, c);
        t->n++;
        if (t->n > t->cap && t->idle_head != c && t->idle_head) {
            srv_conn *old = t->idle_head;
            unlink_conn(t, old);
            old->busy = -1; /* evicted: in no list */
            if (old->fd >= 0) shutdown(old->fd, SHUT_RDWR);
            t->evicted++;
        }
        pthread_mutex_unlock(&t->mu);
        *socket_context = c;
        return;
    }
    srv_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&t->mu);
    if (c->busy >= 0) unlink_conn(t, c);
    t->n--;
    pthread_mutex_unlock(&t->mu);
    free(c);
    *socket_context = NULL;
}

static srv_conn *conn_of(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

int srv_conns_set_busy(srv_conns *t, struct MHD_Connection *mc, int busy) {
    srv_conn *c = conn_of(mc);
    pthread_mutex_lock(&t->mu);
    if (c && c->busy >= 0 && c->busy != busy) {
        unlink_conn(t, c);
        c->busy = busy;
        append_conn(t, c);
    }
    int n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

void srv_conns_stats(srv_conns *t, int *open, int *cap, unsigned long *evicted) {
    pthread_mutex_lock(&t->mu);
    *open = t->n;
    *cap = t->cap;
    *evicted = t->evicted;
    pthread_mutex_unlock(&t->mu);
}
