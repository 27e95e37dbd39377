/* A token's bytes as they appear inside a text (for grammars, engine/grammar/): the decoders
 * applied to one token that is neither the first nor the last, so nothing is stripped.
 * Byte-level BPE maps its alphabet back to bytes, SentencePiece and Metaspace turn U+2581
 * into a space, byte fallback <0xHH> gives that byte (even when it is only part of a UTF-8
 * character: the neighbouring tokens hold the rest). */
#include <stdlib.h>
#include <string.h>

#include "token_bytes.h"

/* Replaces every occurrence of rep (rep_len bytes) in b with one space. */
static void metaspace(srp_tbuf *b, const char *rep, size_t rep_len) {
    size_t o = 0;
    for (size_t i = 0; i < b->n;) {
        if (rep_len && i + rep_len <= b->n && !memcmp(b->p + i, rep, rep_len)) {
            b->p[o++] = ' ';
            i += rep_len;
        } else
            b->p[o++] = b->p[i++];
    }
    b->n = o;
}

static int byte_level(srp_tbuf *b) {
    size_t o = 0;
    char *raw = malloc(b->n + 1);
    if (!raw) return -1;
    for (size_t j = 0; j < b->n;) {
        uint32_t cp;
        int k = srp_utf8_next((const unsigned char *)b->p + j, b->n - j, &cp);
        int c = k ? hf_char_byte(cp) : -1;
        if (c < 0) { /* not all in the alphabet: the token's own bytes, as decode does */
            free(raw);
            return 0;
        }
        raw[o++] = (char)c;
        j += (size_t)k;
    }
    memcpy(b->p, raw, o);
    b->n = o;
    free(raw);
    return 0;
}

static int replace(const hf_decoder *d, srp_tbuf *b) {
    srp_spans sp = { 0 };
    srp_tbuf out = { 0 };
    char why[300];
    int rc = hf_split_pattern(&d->pat, b->p, b->n, &sp, why, sizeof why) ? -1 : 0;
    size_t at = 0;
    for (size_t k = 0; k < sp.n && !rc; k++) {
        if (srp_tbuf_put(&out, b->p + at, sp.p[k].start - at) ||
            srp_tbuf_put(&out, d->content, d->content_len))
            rc = -1;
        at = sp.p[k].end;
    }
    if (!rc) rc = srp_tbuf_put(&out, b->p + at, b->n - at);
    if (!rc) {
        srp_tbuf_free(b);
        *b = out;
    } else
        srp_tbuf_free(&out);
    free(sp.p);
    return rc;
}

int srp_hf_token_bytes(const srp_hf *h, int id, srp_tbuf *b) {
    if (id < 0 || id >= h->n_ids || h->token_len[id] < 0 || h->special[id]) return -1;
    b->n = 0;
    if (srp_tbuf_put(b, h->token_text.p + h->token_off[id], (size_t)h->token_len[id])) return -2;
    for (int i = 0; i < h->n_dec; i++) {
        const hf_decoder *d = &h->dec[i];
        int c;
        switch (d->kind) {
        case HF_D_BYTELEVEL:
            if (byte_level(b)) return -2;
            break;
        case HF_D_BYTEFALLBACK:
            if ((c = srp_byte_piece(b->p, b->n)) >= 0) {
                b->p[0] = (char)c;
                b->n = 1;
            }
            break;
        case HF_D_METASPACE:
            metaspace(b, d->rep, (size_t)d->rep_len);
            break;
        case HF_D_REPLACE:
            if (replace(d, b)) return -2;
            break;
        case HF_D_FUSE:  /* joins tokens: nothing to do for one */
        case HF_D_STRIP: /* strips the text's ends (after Fuse), not a token inside it */
            break;
        }
    }
    return (int)b->n;
}

int srp_spm_token_bytes(const srp_spm *s, int id, srp_tbuf *b) {
    if (srp_spm_is_control(s, id)) return -1;
    char *p = srp_spm_id_to_piece(s, id);
    if (!p) return -1;
    size_t n = strlen(p);
    b->n = 0;
    int c = srp_byte_piece(p, n);
    int rc = c >= 0 ? srp_tbuf_put(b, &(char){ (char)c }, 1) : srp_tbuf_put(b, p, n);
    free(p);
    if (rc) return -2;
    if (c < 0) metaspace(b, "\xE2\x96\x81", 3);
    return (int)b->n;
}
