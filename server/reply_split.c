/* Reasoning (<think>...</think>, as vLLM's deepseek_r1 and qwen3 parsers) first, then tool
 * calls in what follows. deepseek_r1 takes a reply as reasoning from its start (R1 no longer
 * writes the opening tag); qwen3 only after a <think> the reply or the prompt opened. A reply
 * cut off inside its reasoning is all reasoning. */
#include <stdlib.h>
#include <string.h>

#include "reply_split.h"
#include "text.h"

static const char think_open[] = "<think>", think_close[] = "</think>";

int srv_reasoning_find(const char *name) {
    if (!strcmp(name, "deepseek_r1")) return SRV_REASONING_DEEPSEEK_R1;
    if (!strcmp(name, "qwen3")) return SRV_REASONING_QWEN3;
    return -1;
}

void srv_split_free(srv_split *s) {
    free(s->reason);
    srv_tool_out_free(&s->out);
    s->reason = NULL;
    s->reason_len = s->reason_cap = 0;
}

static size_t partial_suffix(const char *s, size_t n, const char *lit) {
    size_t l = strlen(lit);
    for (size_t k = l - 1 < n ? l - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, lit, k)) return k;
    return 0;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Advances the reasoning parser; returns 1 when the rest (from s->pos) is content. */
static int feed_reasoning(srv_split *s, const char *text, size_t len, int final, int *err) {
    if (s->phase == 0) {
        size_t i = 0;
        while (i < len && is_space(text[i])) i++;
        size_t rl = len - i, ol = sizeof think_open - 1;
        if (!final && rl < ol && !strncmp(think_open, text + i, rl)) return 0;
        if (rl >= ol && !memcmp(text + i, think_open, ol)) {
            s->pos = i + ol;
            s->phase = 1;
        } else {
            s->phase = s->reasoning == SRV_REASONING_DEEPSEEK_R1 || s->think_open ? 1 : 2;
        }
    }
    if (s->phase == 1) {
        const char *at = NULL;
        for (size_t k = s->pos; k + sizeof think_close - 1 <= len && !at; k++)
            if (!memcmp(text + k, think_close, sizeof think_close - 1)) at = text + k;
        size_t end =
            at ? (size_t)(at - text)
               : len - (final ? 0 : partial_suffix(text + s->pos, len - s->pos, think_close));
        if (srv_buf_append_utf8(&s->reason, &s->reason_len, &s->reason_cap, text + s->pos,
                                end - s->pos)) {
            *err = 1;
            return 0;
        }
        s->pos = at ? end + sizeof think_close - 1 : end;
        if (at) s->phase = 2;
    }
    return s->phase == 2;
}

int srv_split_feed(srv_split *s, const char *text, size_t len, int final) {
    if (s->done) return 0;
    if (!s->reasoning) s->phase = 2;
    int err = 0;
    if (s->phase != 2 && !feed_reasoning(s, text, len, final, &err)) {
        if (err) return -1;
        s->done = final;
        return 0;
    }
    /* content: from where reasoning ended, its offsets the tool scan's own */
    const char *c = text + s->pos;
    size_t cl = len - s->pos;
    if (s->tools_by) {
        s->scan.p = s->tools_by;
        s->scan.tools = s->tools;
        if (srv_tool_scan_feed(&s->scan, c, cl, final, &s->out)) return -1;
    } else if (s->scan.pos < cl) {
        if (srv_buf_append_utf8(&s->out.content, &s->out.len, &s->out.cap, c + s->scan.pos,
                                cl - s->scan.pos))
            return -1;
        s->scan.pos = cl;
    }
    while (s->first_call_only && s->out.n_calls > 1) {
        srv_tool_call *x = &s->out.calls[--s->out.n_calls];
        free(x->name);
        free(x->arguments);
    }
    s->n_calls_ready = s->out.n_calls;
    /* whitespace around calls is not content; it is known only at the end (or once more
     * text follows) */
    size_t t = s->out.len;
    while (t && is_space(s->out.content[t - 1])) t--;
    s->content_ready = !s->tools_by || (final && !s->out.n_calls) ? s->out.len : t;
    s->done = final;
    return 0;
}
