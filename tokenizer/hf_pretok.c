/* Pre-tokenizers: each cuts every text piece into smaller ones, with the split behaviors of the
 * crate's NormalizedString::split (Removed, Isolated, MergedWithPrevious, MergedWithNext,
 * Contiguous) over a list of (range, is_match) events that covers the piece. */
#include <stdlib.h>
#include <string.h>

#include "hf.h"
#include "hf_chars.h"

int hf_pieces_push(hf_pieces *v, hf_piece pc) {
    if (srp_grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p)) return -1;
    v->p[v->n++] = pc;
    return 0;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * for U+0100 onwards, in byte order. */
static uint32_t byte_char[256];
static int16_t char_byte[0x144];
static pthread_once_t alphabet_once = PTHREAD_ONCE_INIT;

static void make_alphabet(void) {
    uint32_t next = 256;
    for (int i = 0; i < 0x144; i++) char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        byte_char[b] = printable ? (uint32_t)b : next++;
        char_byte[byte_char[b]] = (int16_t)b;
    }
}

uint32_t hf_byte_char(unsigned char b) {
    pthread_once(&alphabet_once, make_alphabet);
    return byte_char[b];
}

int hf_char_byte(uint32_t cp) {
    pthread_once(&alphabet_once, make_alphabet);
    return cp < 0x144 ? char_byte[cp] : -1;
}

int hf_split_pattern(const hf_pattern *pat, const char *s, size_t n, srp_spans *m, char *err,
                     size_t errlen) {
    if (pat->re) return srp_regex_find_all(pat->re, s, n, m, err, errlen);
    if (!pat->lit_len) return 0;
    for (size_t i = 0; i + pat->lit_len <= n;) {
        const char *hit = memmem(s + i, n - i, pat->lit, pat->lit_len);
        if (!hit) break;
        size_t a = (size_t)(hit - s);
        if (srp_grow((void **)&m->p, &m->cap, m->n + 1, sizeof *m->p)) return -1;
        m->p[m->n++] = (srp_span){ a, a + pat->lit_len };
        i = a + pat->lit_len;
    }
    return 0;
}

typedef struct event {
    size_t a, b;
    int match;
} event;

typedef struct events {
    event *p;
    size_t n, cap;
} events;

static int ev_push(events *v, size_t a, size_t b, int match) {
    if (srp_grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p)) return -1;
    v->p[v->n++] = (event){ a, b, match };
    return 0;
}

/* Matches -> events covering [0, n), as the crate's Pattern::find_matches. */
static int to_events(const srp_spans *m, size_t n, int invert, events *ev) {
    ev->n = 0;
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (prev != m->p[i].start && ev_push(ev, prev, m->p[i].start, invert)) return -1;
        if (ev_push(ev, m->p[i].start, m->p[i].end, !invert)) return -1;
        prev = m->p[i].end;
    }
    if (prev != n && ev_push(ev, prev, n, invert)) return -1;
    return 0;
}

/* Applies a behavior to events in place; removed ranges get match = 2. */
static void apply_behavior(events *ev, enum hf_behavior b) {
    size_t o = 0;
    int prev = 0;
    switch (b) {
    case HF_ISOLATED:
        for (size_t i = 0; i < ev->n; i++) ev->p[i].match = 0;
        return;
    case HF_REMOVED:
        for (size_t i = 0; i < ev->n; i++) ev->p[i].match = ev->p[i].match ? 2 : 0;
        return;
    case HF_CONTIGUOUS:
        for (size_t i = 0; i < ev->n; i++) {
            int m = ev->p[i].match;
            if (o && m == prev)
                ev->p[o - 1].b = ev->p[i].b;
            else
                ev->p[o++] = (event){ ev->p[i].a, ev->p[i].b, 0 };
            prev = m;
        }
        break;
    case HF_MERGED_PREV:
        for (size_t i = 0; i < ev->n; i++) {
            int m = ev->p[i].match;
            if (o && m && !prev)
                ev->p[o - 1].b = ev->p[i].b;
            else
                ev->p[o++] = (event){ ev->p[i].a, ev->p[i].b, 0 };
            prev = m;
        }
        break;
    case HF_MERGED_NEXT: /* the same from the right end */
        o = ev->n;
        for (size_t i = ev->n; i-- > 0;) {
            int m = ev->p[i].match;
            if (o < ev->n && m && !prev)
                ev->p[o].a = ev->p[i].a;
            else
                ev->p[--o] = (event){ ev->p[i].a, ev->p[i].b, 0 };
            prev = m;
        }
        memmove(ev->p, ev->p + o, (ev->n - o) * sizeof *ev->p);
        o = ev->n - o;
        break;
    }
    ev->n = o;
}

/* Pushes the kept, non-empty ranges of events as pieces cut from pc. */
static int emit(const events *ev, hf_piece pc, hf_pieces *out) {
    for (size_t i = 0; i < ev->n; i++) {
        if (ev->p[i].match == 2 || ev->p[i].b == ev->p[i].a) continue;
        hf_piece q = { pc.off + ev->p[i].a, ev->p[i].b - ev->p[i].a, -1,
                       pc.at_start && ev->p[i].a == 0, pc.plain };
        if (hf_pieces_push(out, q)) return -1;
    }
    return 0;
}

static int cut(events *ev, enum hf_behavior b, hf_piece pc, hf_pieces *out) {
    apply_behavior(ev, b);
    return emit(ev, pc, out);
}

/* Events for a character predicate: each matching character is its own match. */
static int char_events(const char *s, size_t n, int (*pred)(uint32_t, const hf_pretok *),
                       const hf_pretok *pt, events *ev) {
    ev->n = 0;
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = srp_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (!k) {
            cp = 0xFFFD;
            k = 1;
        }
        if (pred(cp, pt)) {
            if (last < i && ev_push(ev, last, i, 0)) return -1;
            if (ev_push(ev, i, i + (size_t)k, 1)) return -1;
            last = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (last < n && ev_push(ev, last, n, 0)) return -1;
    return 0;
}

static int pred_numeric(uint32_t cp, const hf_pretok *pt) {
    (void)pt;
    return hf_is_numeric(cp);
}

static int pred_space(uint32_t cp, const hf_pretok *pt) {
    (void)pt;
    return hf_is_whitespace(cp);
}

static int pred_rep(uint32_t cp, const hf_pretok *pt) {
    uint32_t r;
    srp_utf8_next((const unsigned char *)pt->rep, (size_t)pt->rep_len, &r);
    return cp == r;
}

/* Copies piece text to the end of buf with a prefix, returning the new piece. */
static int rewrite(srp_tbuf *buf, hf_piece *pc, const char *prefix, size_t plen, const char *from,
                   const char *to, size_t to_len) {
    size_t off = buf->n, flen = from ? strlen(from) : 0;
    if (srp_tbuf_reserve(buf, plen + pc->len * (to_len > flen ? to_len : 1) + 1)) return -1;
    const char *s = buf->p + pc->off; /* valid: reserved before reading */
    memcpy(buf->p + buf->n, prefix, plen);
    buf->n += plen;
    for (size_t i = 0; i < pc->len;) {
        if (flen && i + flen <= pc->len && !memcmp(s + i, from, flen)) {
            memcpy(buf->p + buf->n, to, to_len);
            buf->n += to_len;
            i += flen;
        } else {
            buf->p[buf->n++] = s[i++];
        }
    }
    pc->off = off;
    pc->len = buf->n - off;
    return 0;
}

/* ByteLevel's mapping of every byte to its alphabet character (only when the model is not in
 * raw byte mode). */
static int map_bytes(srp_tbuf *buf, hf_piece *pc) {
    size_t off = buf->n;
    if (srp_tbuf_reserve(buf, pc->len * 2 + 1)) return -1;
    for (size_t i = 0; i < pc->len; i++)
        buf->n +=
            (size_t)srp_utf8_put(hf_byte_char((unsigned char)buf->p[pc->off + i]), buf->p + buf->n);
    pc->off = off;
    pc->len = buf->n - off;
    return 0;
}

static int oom(srp_err *e) {
    return srp_err_set(e, SRP_ENOMEM, "out of memory");
}

int hf_pretokenize(const hf_pretok *pt, int raw, srp_tbuf *buf, const hf_pieces *in, hf_pieces *out,
                   srp_spans *m, srp_err *e) {
    events ev = { 0 };
    int rc = 0;
    char why[300];
    out->n = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        hf_piece pc = in->p[i];
        if (pc.id >= 0) {
            if (hf_pieces_push(out, pc)) rc = oom(e);
            continue;
        }
        m->n = 0;
        switch (pt->kind) {
        case HF_BYTELEVEL: {
            if (pt->add_prefix_space && (pc.len == 0 || buf->p[pc.off] != ' ') &&
                rewrite(buf, &pc, " ", 1, NULL, NULL, 0)) {
                rc = oom(e);
                break;
            }
            size_t first = out->n;
            if (pt->use_regex) {
                if (hf_split_pattern(&pt->pat, buf->p + pc.off, pc.len, m, why, sizeof why)) {
                    rc = srp_err_set(e, SRP_EINVAL, "ByteLevel pre-tokenizer: %s", why);
                    break;
                }
                if (to_events(m, pc.len, 0, &ev) || cut(&ev, HF_ISOLATED, pc, out)) rc = oom(e);
            } else if (pc.len && hf_pieces_push(out, pc)) {
                rc = oom(e);
            }
            for (size_t j = first; j < out->n && !rc && !raw; j++)
                if (map_bytes(buf, &out->p[j])) rc = oom(e);
            break;
        }
        case HF_SPLIT:
            if (hf_split_pattern(&pt->pat, buf->p + pc.off, pc.len, m, why, sizeof why)) {
                rc = srp_err_set(e, SRP_EINVAL, "Split pre-tokenizer: %s", why);
                break;
            }
            if (to_events(m, pc.len, pt->invert, &ev) || cut(&ev, pt->behavior, pc, out))
                rc = oom(e);
            break;
        case HF_DIGITS:
            if (char_events(buf->p + pc.off, pc.len, pred_numeric, pt, &ev) ||
                cut(&ev, pt->individual_digits ? HF_ISOLATED : HF_CONTIGUOUS, pc, out))
                rc = oom(e);
            break;
        case HF_WHITESPACE_SPLIT:
            if (char_events(buf->p + pc.off, pc.len, pred_space, pt, &ev) ||
                cut(&ev, HF_REMOVED, pc, out))
                rc = oom(e);
            break;
        case HF_METASPACE: {
            int starts = pc.len >= (size_t)pt->rep_len &&
                         !memcmp(buf->p + pc.off, pt->rep, (size_t)pt->rep_len);
            int space0 = pc.len && buf->p[pc.off] == ' ';
            int pre = !(starts || space0) && (pt->prepend == HF_PREPEND_ALWAYS ||
                                              (pt->prepend == HF_PREPEND_FIRST && pc.at_start));
            if (rewrite(buf, &pc, pt->rep, pre ? (size_t)pt->rep_len : 0, " ", pt->rep,
                        (size_t)pt->rep_len)) {
                rc = oom(e);
                break;
            }
            if (!pt->split) {
                if (pc.len && hf_pieces_push(out, pc)) rc = oom(e);
            } else if (char_events(buf->p + pc.off, pc.len, pred_rep, pt, &ev) ||
                       cut(&ev, HF_MERGED_NEXT, pc, out)) {
                rc = oom(e);
            }
            break;
        }
        }
    }
    free(ev.p);
    return rc;
}
