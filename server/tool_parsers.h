/* Tool-call parsers (--tool-call-parser): a model's reply text split into the text outside its
 * tool calls and the calls, in the formats models are trained on (hermes, qwen3_coder,
 * nemotron_v2, granite; vLLM's parsers of the same names). Plain text functions (no HTTP),
 * tested on their own (tests/test_server_text.c).
 *
 * A scan decides text from the front: content and complete calls are handed out as soon as
 * nothing later can change them, so a stream and the whole text give the same result. */
#ifndef SRV_TOOL_PARSERS_H
#define SRV_TOOL_PARSERS_H

#include <stddef.h>

#include <cjson/cJSON.h>

typedef struct srv_tool_call {
    char *name;      /* malloc'ed */
    char *arguments; /* a JSON text, malloc'ed */
    char id[32];     /* "call_" + 24 random characters */
} srv_tool_call;

/* What scans decided, appended to; the owner frees it with srv_tool_out_free. */
typedef struct srv_tool_out {
    char *content; /* the text outside the calls (NUL-terminated once non-empty) */
    size_t len, cap;
    srv_tool_call *calls;
    int n_calls, cap_calls;
} srv_tool_out;

typedef struct srv_tool_parser srv_tool_parser;

/* The parser of that name (aliases: vLLM's and NVIDIA's plugin names), or NULL. */
const srv_tool_parser *srv_tool_parser_find(const char *name);
/* The function object of a tool: chat's {"type": "function", "function": {...}}, or the tool
 * itself in the Responses API's flat form. */
const cJSON *srv_tool_function(const cJSON *tool);
/* The reader of a reply that is a JSON list of calls [{"name", "parameters"}] and nothing
 * else (what tool_choice "required" or a named function constrains a reply to). */
const srv_tool_parser *srv_tool_parser_json_list(void);
/* The names, for help and errors: "hermes, qwen3_coder, ...". */
const char *srv_tool_parser_names(void);

typedef struct srv_tool_scan {
    const srv_tool_parser *p;
    const cJSON *tools; /* the request's tools (qwen3_coder converts values by their schema) */
    size_t pos;         /* bytes of the text decided */
    int state;          /* the parser's own */
} srv_tool_scan;

/* Decides what it can of text[s->pos..len), appending to out and advancing s->pos; text that
 * may still turn into a call stays undecided until more comes or final. A call that does not
 * parse stays content. 0, or -1 when out of memory. */
int srv_tool_scan_feed(srv_tool_scan *s, const char *text, size_t len, int final,
                       srv_tool_out *out);
void srv_tool_out_free(srv_tool_out *o);
/* Fills id with "call_" and 24 random letters and digits (id holds 32 bytes). */
void srv_tool_call_id(char *id);

#endif
