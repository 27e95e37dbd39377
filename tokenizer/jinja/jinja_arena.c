/* The arena that holds a compiled template or one render's values, and growable buffers. */
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

struct jarena_chunk {
    jarena_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

#define CHUNK_MIN (64u << 10)

void *jarena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jarena_chunk *h = a->head;
    if (!h || h->size - h->used < n) {
        size_t size = n > CHUNK_MIN ? n : CHUNK_MIN;
        /* Small arenas (short templates, short chats) grow by small chunks. */
        if (a->total < CHUNK_MIN * 4 && n <= 4096) size = 4096;
        if (n > SIZE_MAX / 2 || (a->cap && a->total + size + sizeof(jarena_chunk) > a->cap)) {
            a->hit_cap = true;
            return NULL;
        }
        jarena_chunk *c = malloc(sizeof(jarena_chunk) + size);
        if (!c) return NULL;
        c->used = 0;
        c->size = size;
        a->total += sizeof(jarena_chunk) + size;
        if (h && h->size - h->used > size - n) {
            /* A big one-off block: keep filling the current chunk afterwards. */
            c->next = h->next;
            h->next = c;
        } else {
            c->next = h;
            a->head = c;
        }
        h = c;
    }
    void *p = h->data + h->used;
    h->used += n;
    memset(p, 0, n);
    return p;
}

char *jarena_strdup(jarena *a, const char *s, size_t n) {
    char *p = jarena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void jarena_free(jarena *a) {
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

int jbuf_put(jbuf *b, const char *s, size_t n) {
    if (n == 0) return 0;
    if (b->limit && (n > b->limit || b->n > b->limit - n)) return -1;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int jbuf_putc(jbuf *b, char c) {
    return jbuf_put(b, &c, 1);
}

void jbuf_free(jbuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
