/* tokenizer.json encoding: the pipeline of hf.h over one text. */
#include <stdlib.h>
#include <string.h>

#include "hf.h"

typedef struct work {
    srp_tbuf buf; /* all text: the input, normalized pieces, rewritten words */
    hf_pieces a, b;
    srp_spans spans;
} work;

static void work_free(work *w) {
    srp_tbuf_free(&w->buf);
    free(w->a.p);
    free(w->b.p);
    free(w->spans.p);
}

static void swap(hf_pieces *a, hf_pieces *b) {
    hf_pieces t = *a;
    *a = *b;
    *b = t;
}

/* Normalizes each text piece of w->a (appending the result to buf) into w->b. */
static int normalize_pieces(const srp_hf *h, work *w, srp_err *e) {
    w->b.n = 0;
    for (size_t i = 0; i < w->a.n; i++) {
        hf_piece pc = w->a.p[i];
        if (pc.id < 0 && h->n_norm) {
            srp_tbuf tmp = { 0 };
            int rc = hf_normalize(h, w->buf.p + pc.off, pc.len, &tmp, e);
            size_t off = w->buf.n;
            if (!rc && srp_tbuf_put(&w->buf, tmp.p, tmp.n))
                rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
            pc.off = off;
            pc.len = tmp.n;
            srp_tbuf_free(&tmp);
            if (rc) return rc;
            if (!pc.len) continue; /* the crate drops pieces that become empty */
        }
        if (hf_pieces_push(&w->b, pc)) return srp_err_set(e, SRP_ENOMEM, "out of memory");
    }
    swap(&w->a, &w->b);
    return 0;
}

/* The input as pieces: the plain spans apart from the rest (when the text is valid UTF-8,
 * offsets into it are offsets into the buffer). */
static int first_pieces(work *w, size_t len, const size_t (*plain)[2], int n_plain) {
    if (!n_plain || w->buf.n != len)
        return hf_pieces_push(&w->a, (hf_piece){ 0, w->buf.n, -1, 1, 0 });
    size_t at = 0;
    for (int i = 0; i <= n_plain; i++) {
        size_t b = i < n_plain ? plain[i][0] : len, end = i < n_plain ? plain[i][1] : len;
        if (b > len) b = len;
        if (end > len) end = len;
        if (b > at && hf_pieces_push(&w->a, (hf_piece){ at, b - at, -1, at == 0, 0 })) return -1;
        if (b < at) b = at;
        if (end > b && hf_pieces_push(&w->a, (hf_piece){ b, end - b, -1, b == 0, 1 })) return -1;
        if (end > at) at = end;
    }
    return 0;
}

int srp_hf_encode(const srp_hf *h, const char *text, size_t len, int add_special,
                  const size_t (*plain)[2], int n_plain, srp_tids *out, srp_err *e) {
    work w = { 0 };
    int rc = 0;
    out->n = 0;
    /* The reference takes Unicode strings: invalid UTF-8 reaches it as U+FFFD, as a lossy
     * decoder (Python's errors="replace", node's Buffer.toString) makes it. */
    if (srp_utf8_append_lossy(&w.buf, text, len) || first_pieces(&w, len, plain, n_plain)) {
        rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        goto done;
    }
    if (add_special && h->post.n_before &&
        srp_tids_append(out, h->post.before, (size_t)h->post.n_before)) {
        rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        goto done;
    }
    if (w.buf.n == 0) goto post;
    if (hf_split_added(h, &h->trie_raw, &w.buf, &w.a, &w.b)) {
        rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        goto done;
    }
    swap(&w.a, &w.b);
    if ((rc = normalize_pieces(h, &w, e))) goto done;
    if (hf_split_added(h, &h->trie_norm, &w.buf, &w.a, &w.b)) {
        rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
        goto done;
    }
    swap(&w.a, &w.b);
    for (int i = 0; i < h->n_pre; i++) {
        if ((rc = hf_pretokenize(&h->pre[i], h->bpe.raw, &w.buf, &w.a, &w.b, &w.spans, e)))
            goto done;
        swap(&w.a, &w.b);
    }
    for (size_t i = 0; i < w.a.n; i++) {
        const hf_piece *pc = &w.a.p[i];
        if (pc->id >= 0)
            rc = srp_tids_push(out, pc->id) ? srp_err_set(e, SRP_ENOMEM, "out of memory") : 0;
        else
            rc = hf_bpe_word(&h->bpe, w.buf.p + pc->off, pc->len, out, e);
        if (rc) goto done;
    }
post:
    if (add_special && h->post.n_after &&
        srp_tids_append(out, h->post.after, (size_t)h->post.n_after))
        rc = srp_err_set(e, SRP_ENOMEM, "out of memory");
done:
    work_free(&w);
    return rc;
}
