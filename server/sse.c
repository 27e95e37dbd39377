/* Server-sent events: each chunk is one "data: <json>" event; the stream ends with
 * "data: [DONE]" as OpenAI's does. */
#include <stdlib.h>
#include <string.h>

#include "server.h"

void srv_out_append(srv_gen *g, const char *s, size_t n) {
    if (g->out_len + n + 1 > g->out_cap) {
        size_t cap = g->out_cap ? g->out_cap : 1024;
        while (cap < g->out_len + n + 1) cap *= 2;
        char *no = realloc(g->out, cap);
        if (!no) {
            g->failed = 1; /* the stream is cut; the client sees no [DONE] */
            return;
        }
        g->out = no;
        g->out_cap = cap;
    }
    memcpy(g->out + g->out_len, s, n);
    g->out_len += n;
    g->out[g->out_len] = 0;
}

void srv_sse_json(srv_gen *g, cJSON *chunk) {
    char *s = chunk ? cJSON_PrintUnformatted(chunk) : NULL;
    cJSON_Delete(chunk);
    if (!s) {
        g->failed = 1;
        return;
    }
    srv_out_append(g, "data: ", 6);
    srv_out_append(g, s, strlen(s));
    srv_out_append(g, "\n\n", 2);
    free(s);
}

void srv_sse_event(srv_gen *g, const char *name, cJSON *chunk) {
    srv_out_append(g, "event: ", 7);
    srv_out_append(g, name, strlen(name));
    srv_out_append(g, "\n", 1);
    srv_sse_json(g, chunk);
}

void srv_sse_done(srv_gen *g) {
    srv_out_append(g, "data: [DONE]\n\n", 14);
}
