/* A reply split into reasoning, content and tool calls (reply_split.c), by the reasoning
 * parser (--reasoning-parser: <think>...</think>) and then the tool-call parser
 * (tool_parsers.h). Fed the choice's text as it grows, it hands out what is decided; chat and
 * the Responses API build their messages and stream events from it, so a stream and the whole
 * reply always agree. Plain text functions, tested in tests/test_server_text.c. */
#ifndef SRV_REPLY_SPLIT_H
#define SRV_REPLY_SPLIT_H

#include <stddef.h>

#include "tool_parsers.h"

typedef enum {
    SRV_REASONING_NONE = 0,
    SRV_REASONING_DEEPSEEK_R1,
    SRV_REASONING_QWEN3
} srv_reasoning;

/* The reasoning parser of that name ("deepseek_r1", "qwen3"), or -1. */
int srv_reasoning_find(const char *name);

typedef struct srv_split {
    /* set by the owner before the first feed */
    srv_reasoning reasoning;
    int think_open;                  /* the prompt ends in <think>: the reply starts reasoning */
    const srv_tool_parser *tools_by; /* NULL: no tool calls are parsed */
    const cJSON *tools;
    int first_call_only; /* parallel_tool_calls: false */

    /* progress */
    size_t pos;   /* bytes of the text the reasoning parser decided */
    int phase;    /* 0: before reasoning may start, 1: in reasoning, 2: content */
    char *reason; /* the reasoning decided so far */
    size_t reason_len, reason_cap;
    srv_tool_scan scan;
    srv_tool_out out;     /* content and calls decided so far */
    size_t content_ready; /* bytes of out.content that may be handed out (see below) */
    int n_calls_ready;
    int done;
} srv_split;

/* Decides what it can of text[0..len), which grows between calls; final: it is complete.
 * With a tool parser, content's trailing whitespace is held back until more text follows and
 * dropped at the end of a reply with calls (the newlines around calls are not content).
 * 0, or -1 when out of memory. */
int srv_split_feed(srv_split *s, const char *text, size_t len, int final);
void srv_split_free(srv_split *s);

#endif
