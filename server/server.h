/* The HTTP server's shared state and the pieces its files share (private to server/).
 *
 * http.c runs libmicrohttpd and routes; openai_*.c parse requests and write responses
 * (openai_common.c holds what the endpoints share); gen.c
 * turns a request's token events into text (detokenization, stop strings, logprobs); sse.c
 * frames stream chunks; metrics.c keeps counters and histograms. */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "engine.h"
#include "grammar/grammar.h"
#include "metrics.h"
#include "reply_split.h"
#include "scheduler.h"
#include "text.h"
#include "tokenizer.h"

typedef enum { SRV_LOADING = 0, SRV_READY, SRV_DRAINING } srv_state;

#define SRV_MAX_EOS 8
/* connections libmicrohttpd accepts past --max-connections: room for /health and /metrics,
 * and for new connections to evict idle ones */
#define SRV_CONNECTION_RESERVE 64

/* The connections open now (conns.c). */
typedef struct srv_conn srv_conn;
typedef struct srv_conns {
    pthread_mutex_t mu;
    srv_conn *idle_head, *idle_tail, *busy_head, *busy_tail;
    int n, cap;
    unsigned long evicted;
} srv_conns;

struct MHD_Connection;
enum MHD_ConnectionNotificationCode;
void srv_conns_init(srv_conns *t, int cap);
void srv_conns_destroy(srv_conns *t);
/* MHD_OPTION_NOTIFY_CONNECTION: tracks a connection; past the cap, evicts the one idle the
 * longest. */
void srv_conns_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);
/* Marks a connection busy (a request in progress) or idle; returns the connections open. */
int srv_conns_set_busy(srv_conns *t, struct MHD_Connection *mc, int busy);
void srv_conns_stats(srv_conns *t, int *open, int *cap, unsigned long *evicted);

/* The request workers (workers.c): body parsing, rendering and tokenization off the HTTP
 * threads. */
typedef struct srv_workers srv_workers;
int srv_workers_start(int n_threads, int max_queued, srv_workers **out);
/* -1 when the queue is full (or stopping, or no memory): answer 503. */
int srv_workers_submit(srv_workers *w, void (*run)(void *arg), void *arg);
/* Runs what is queued, then joins the threads. */
void srv_workers_stop(srv_workers *w);

/* The client's socket, for noticing that it is gone. */
typedef struct srv_peer {
    int fd; /* -1: unknown */
    int http11;
} srv_peer;
enum { SRV_PEER_OK, SRV_PEER_EOF, SRV_PEER_GONE };
/* OK, EOF (it closed its side: half-closed, or gone without a word) or GONE (reset). */
int srv_peer_state(int fd);

typedef struct srv_config {
    const char *host;
    int port;
    const char *model_name; /* --served-model-name */
    const char *model_path; /* --model, accepted as a name too */
    const char *api_key;    /* NULL: no auth */
    int max_model_len;
    size_t max_body_bytes;
    int http_threads;
    int tokenizer_threads;
    int request_timeout;        /* seconds a connection may idle before its request is complete */
    int max_connections;        /* then idle ones are evicted, and busy ones answer 503 */
    int max_connections_per_ip; /* 0: no limit */
    long long max_logprobs;     /* per request: choices x tokens x (top_logprobs + 1) */
    /* CORS: origins whose browsers may call the API ("*": any, as vLLM's default) */
    char **origins;
    int n_origins, any_origin;
    const srv_tool_parser *tool_parser; /* --tool-call-parser; NULL: tool_choice "auto" is a 400 */
    srv_reasoning reasoning_parser;     /* --reasoning-parser */
} srv_config;

typedef struct srv_server {
    srv_config cfg;
    atomic_int state;
    /* handlers hold it for reading from the state check through srp_sched_submit; shutdown
     * takes it for writing to turn the state to SRV_DRAINING */
    pthread_rwlock_t life;
    /* set once before state turns SRV_READY, read-only after */
    srp_engine *eng;
    srp_sched *sched;
    srp_tokenizer *tok;           /* NULL when the model folder has none: token ids only */
    int vocab;                    /* the model's */
    int32_t eos_ids[SRV_MAX_EOS]; /* config.json, generation_config.json and tokenizer EOS */
    int n_eos;
    srp_vocab *vocab_bytes; /* each token's bytes, for constrained decoding; NULL: no tokenizer */
    const char *chat_template;           /* NULL: chat answers 400 */
    struct srp_chat_template *chat_tmpl; /* compiled; NULL when absent or broken */
    char chat_tmpl_error[512];
    char *bos_text, *eos_text; /* for the template */
    long created;              /* unix time the server started */

    srv_metrics metrics;
    srv_conns conns;
    srv_workers *workers;
    atomic_long next_id;
    atomic_int n_suspended; /* connections suspended now */
    atomic_int n_gens;      /* generations alive */
    struct MHD_Daemon *daemon;
} srv_server;

/* An error answered with the OpenAI error body. */
typedef struct srv_error {
    int status;
    const char *type; /* "invalid_request_error", ... */
    const char *code; /* NULL or e.g. "model_not_found" */
    char param[64];   /* empty: null */
    char msg[768];
} srv_error;

/* Fills e and returns -1, so parsers can `return srv_fail(e, 400, "temperature", "...")`. */
int srv_fail(srv_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The JSON body {"error": {...}} (malloc'ed). */
char *srv_error_body(const srv_error *e);

/* --- request parameters common to completions and chat (openai_params.c) ------------------ */

#define SRV_MAX_STOP     16
#define SRV_MAX_N        128
#define SRV_MAX_STOP_IDS 64

typedef struct srv_gen_opts {
    int n;
    int max_tokens;               /* -1: not given */
    const char *max_tokens_field; /* the field that gave max_tokens, for errors */
    int min_tokens;               /* stop tokens and strings are held off until this many */
    int stream, include_usage, continuous_usage;
    int logprobs; /* -1: off; k: chosen token + top k */
    int echo;
    int ignore_eos;
    int return_token_ids;
    int tokens_as_ids; /* return_tokens_as_token_ids: logprob tokens as "token_id:N" */
    int skip_special, spaces_between_special;
    int include_stop_str;
    int add_special;     /* -1: the endpoint's default */
    int truncate_prompt; /* 0: off; k: keep the last k prompt tokens */
    int have_seed;
    uint64_t seed;
    srp_sample_params sample;
    int n_bias;
    int32_t *bias_ids; /* malloc'ed */
    float *bias;
    int n_stop;
    char *stop[SRV_MAX_STOP]; /* malloc'ed, non-empty */
    int n_stop_ids;
    int32_t stop_ids[SRV_MAX_STOP_IDS]; /* stop_token_ids */
    srp_grammar *grammar;               /* structured output (a reference); NULL: free text */
    /* how the reply is split (chat, responses): tool calls parsed (tool_choice "auto" with a
     * --tool-call-parser), the request's tools (malloc'ed copy, for the parser), only the
     * first call kept (parallel_tool_calls: false), reasoning dropped (include_reasoning) */
    int parse_tools, first_call_only, drop_reasoning;
    int forced_tools; /* the reply is the JSON list of calls a grammar forced */
    cJSON *tools;
} srv_gen_opts;

void srv_gen_opts_free(srv_gen_opts *o);
/* Reads the sampling and output fields shared by both endpoints; chat selects the chat
 * spellings (logprobs bool + top_logprobs, max_completion_tokens). */
int srv_parse_gen_opts(const srv_server *srv, const cJSON *root, int chat, srv_gen_opts *o,
                       srv_error *e);
/* SRP_DECODE_* flags from skip_special_tokens / spaces_between_special_tokens. */
int srv_decode_flags(const srv_gen_opts *o);
/* --- structured output (structured.c) ------------------------------------------------------ */

#define SRV_GRAMMAR_CACHE    64  /* compiled grammars kept, by source and replica */
#define SRV_GRAMMAR_REPLICAS 8   /* copies of one source, computing masks in parallel */
#define SRV_MAX_CHOICES      256 /* guided_choice */
/* a cached grammar grown past this is recompiled */
#define SRV_GRAMMAR_MAX_BYTES ((size_t)32 << 20)

/* The constraint a request asks for (response_format, guided_json, guided_regex,
 * guided_choice, guided_grammar or structured_outputs) compiled into o->grammar (NULL: none);
 * a schema or grammar serpent cannot compile is a 400 naming the field and the construct. */
int srv_parse_structured(const srv_server *srv, const cJSON *root, srv_gen_opts *o, srv_error *e);
/* A grammar from the cache or compiled. kind: 'j' JSON Schema, 'o' any JSON object, 'r'
 * regex, 'g' GBNF, 'c' choices (each ended by a NUL); param names the field in errors. */
int srv_grammar_get(const srv_server *srv, char kind, const char *src, size_t len,
                    const char *param, srp_grammar **out, srv_error *e);
/* srv->vocab_bytes from the tokenizer: every token's bytes as they appear inside a text. */
int srv_vocab_build(srv_server *srv, srp_err *e);
/* Drops the cached grammars (at shutdown). */
void srv_grammar_cache_clear(void);

/* Checks every top-level field of a request against the table of what serpent implements,
 * ignores (as vLLM does) or rejects (openai_fields.c): a field serpent cannot honour is a 400
 * naming it; an unknown field is logged once and ignored, as vLLM does. api: "completions" or
 * "chat". */
int srv_check_fields(const cJSON *root, const char *api, srv_error *e);
/* The request body as a JSON object: valid UTF-8, nothing after it, at most max_values values
 * (counted before parsing: a tree node costs far more than its text), no NUL in any string
 * (400 naming the field: C strings would cut it there), duplicate keys resolved (the last
 * wins). NULL with e filled otherwise. */
cJSON *srv_parse_request(char *body, size_t len, size_t max_values, srv_error *e);
/* Checks "model" (absent is fine; another name is 404). */
int srv_check_model(const srv_server *srv, const cJSON *root, srv_error *e);

/* --- a generation: one HTTP request's choices (gen.c) -------------------------------------- */

struct srv_gen;
/* How one OpenAI API writes a generation: each endpoint defines one and hands it to
 * srv_gen_start, so the generation never calls back into the endpoints. */
typedef struct srv_api {
    const char *id_prefix;                        /* "cmpl", "chatcmpl" */
    const char *chunk_object;                     /* "object" of stream chunks */
    char *(*response)(struct srv_gen *g);         /* the whole non-stream body */
    void (*chunks)(struct srv_gen *g, int final); /* stream chunks into g->out */
    int no_done;                                  /* the stream ends without data: [DONE] */
    void (*free_state)(struct srv_gen *g);        /* NULL, or frees what the api kept in g */
} srv_api;
extern const srv_api srv_api_completions, srv_api_chat, srv_api_responses;

typedef struct srv_prompt {
    int32_t *ids;
    int n;
    char *text;          /* for echo: the prompt as text (chat: the assistant's last message) */
    srp_token_event *lp; /* [n - 1] prompt logprobs when echo + logprobs */
    int n_lp;
    int think_open; /* the rendered chat ends in <think>: the reply starts in its reasoning */
} srv_prompt;

typedef struct srv_tok_lp {
    srp_token_event ev;
    size_t offset; /* where the token's text starts in the choice's text */
} srv_tok_lp;

typedef struct srv_choice {
    int index, prompt_index;
    srp_request *req;
    srp_detok *detok;
    char *text; /* generated text so far (cut at a stop string) */
    size_t len, cap;
    size_t released; /* bytes that can no longer turn into a stop string: safe to send */
    size_t streamed; /* bytes sent in stream chunks */
    int32_t *ids;    /* generated ids (stop token included) */
    int n_ids, cap_ids, streamed_ids;
    srv_tok_lp *lps; /* logprobs of tokens that made text */
    int n_lps, cap_lps, streamed_lps;
    size_t lp_byte, lp_chars; /* streamed text_offset cursor: bytes and characters */
    int n_generated;
    int n_cached;              /* prompt tokens the prefix cache supplied */
    double t_last;             /* time of the last token, for inter-token latency */
    const char *finish_reason; /* "stop", "length", "abort"; NULL while running */
    /* what stopped it, as vLLM's stop_reason: a stop string (index into opts.stop), a
     * stop_token_ids id, or neither (-1: the model's end of sequence, or not stopped) */
    int stop_string, stop_token;
    int done, stopped_by_string, chunk_finish_sent, role_sent;
    char error[256];
    /* the reply split into reasoning, content and tool calls (NULL: no parser applies), and
     * how much of each the stream has sent */
    srv_split *split;
    size_t reason_sent, content_sent;
    int calls_sent;
} srv_choice;

typedef struct srv_gen {
    srv_server *srv;
    const srv_api *api;
    srv_gen_opts opts;
    srv_prompt *prompts;
    int n_prompts;
    srv_choice *choices;
    int n_choices, n_done;
    char id[48];
    long created;
    double t_arrival;
    int failed; /* an engine error: answer 500 */
    int cancelled;

    /* waking the connection: the engine thread sets pending; a suspended one is resumed */
    pthread_mutex_t wmu;
    int pending, suspended;
    struct MHD_Connection *mc;
    /* whether the client is still there: a client that closed its side may have half-closed
     * (it still wants the reply) or be gone; writing tells (a gone one answers with a reset),
     * so once: "HTTP/1.1 100 Continue" before the response (while nothing else writes), or an
     * SSE comment in a stream (want_ping, written by the connection's thread) */
    srv_peer peer;
    int probed, job_phase;
    atomic_int want_ping, peer_gone;

    /* stream output not yet handed to libmicrohttpd */
    char *out;
    size_t out_len, out_cap, out_pos;
    int stream_started, stream_ended;
    /* the Responses API's stream: event sequence number and output items (openai_responses.c) */
    int seq;
    struct srv_resp_items *items;
    cJSON *echo; /* the request fields its response object repeats (instructions, tools, ...) */
} srv_gen;

/* Takes ownership of prompts and opts; submits n requests per prompt. On failure (e filled,
 * e.g. 429 when the queue is full) everything is freed. */
int srv_gen_start(srv_server *srv, const srv_api *api, srv_prompt *prompts, int n_prompts,
                  srv_gen_opts *opts, const srv_peer *peer, srv_gen **out, srv_error *e);
/* Whether the client is still there; on an end of file, sends the probe above once, when it
 * may (on_conn_thread: called by the connection's thread before its response is queued, or by
 * the stream reader). */
int srv_gen_check_peer(srv_gen *g, int on_conn_thread);
/* Releases the requests (cancelling unfinished ones) and frees everything. */
void srv_gen_free(srv_gen *g);
/* Takes every pending event of every choice and advances the texts; returns 1 when something
 * changed. Stream chunks for the changes are appended to g->out when g->opts.stream. */
int srv_gen_poll(srv_gen *g);
/* How many of a choice's logprobs can be sent: those of tokens whose text can no longer be
 * removed by a stop string (all that survived, once the choice is done). */
int srv_choice_sendable_lps(const srv_choice *c);
/* The stop_reason of a finished choice (a string, a number or null). */
cJSON *srv_stop_reason_json(const srv_gen *g, const srv_choice *c);
/* Whether every choice has finished. */
static inline int srv_gen_done(const srv_gen *g) {
    return g->n_done == g->n_choices;
}
/* The text of one token for logprobs (malloc'ed, valid UTF-8, may hold NUL bytes: its length
 * goes to *len). */
char *srv_token_text(const srv_server *srv, int32_t id, size_t *len);
/* The same, or "token_id:N" when the request asked for return_tokens_as_token_ids. */
char *srv_gen_token_text(const srv_gen *g, int32_t id, size_t *len);

/* --- what the endpoints share (openai_common.c) --------------------------------------------- */

/* Checks every prompt + max_tokens against --max-model-len (400, code
 * context_length_exceeded, naming prompt_param or the max_tokens field); a missing max_tokens
 * becomes default_max (-1: all the room left), shrunk to fit. */
int srv_check_length(const srv_server *srv, const srv_prompt *p, int n, srv_gen_opts *o,
                     int default_max, const char *prompt_param, srv_error *e);

/* Keeps the last k prompt tokens (truncate_prompt_tokens; 0: all). */
void srv_truncate_prompt(srv_prompt *p, int k);
/* Renders a request's messages with the chat template (add_generation_prompt,
 * continue_final_message, tools, documents, chat_template_kwargs) and tokenizes the result, with
 * BOS/EOS when add_special; p->text gets the last message's content when it is the
 * assistant's (for echo). Shared by chat and /tokenize. */
int srv_chat_prompt(srv_server *srv, const cJSON *root, int add_special, srv_prompt *p,
                    srv_error *e);

/* The "text" of each part of a content list, joined with newlines, into *out (malloc'ed). 0;
 * 1 when a part is not an object of one of types (a NULL-terminated list) with a string text,
 * its type (or "") in *bad_type; -1 out of memory. */
int srv_join_text_parts(const cJSON *parts, const char *const *types, char **out,
                        const char **bad_type);
/* {"id","object","created","model"} */
cJSON *srv_response_base(const srv_gen *g, const char *object);
void srv_usage_chunk(srv_gen *g);
cJSON *srv_usage_json(const srv_gen *g);
/* A JSON array of token ids. */
cJSON *srv_ids_json(const int32_t *ids, int n);
/* Completes and sends one choice's stream chunk (completions and chat alike): the token ids it
 * adds when asked for, its finish reason once, the usage placeholder, then the SSE event; marks
 * what the chunk carried as sent. ch is the choice object, root the chunk (both consumed). */
void srv_stream_choice_end(srv_gen *g, srv_choice *c, cJSON *root, cJSON *ch, int finish_now);

/* Request handlers: parse the body and start a generation (*gen), or fail with e. */
int srv_handle_completions(srv_server *srv, const cJSON *root, const srv_peer *peer, srv_gen **gen,
                           srv_error *e);
int srv_handle_chat(srv_server *srv, const cJSON *root, const srv_peer *peer, srv_gen **gen,
                    srv_error *e);
/* POST /v1/responses (openai_responses.c): the request turned into a chat one, then the chat
 * path below with the Responses API's output. */
int srv_handle_responses(srv_server *srv, const cJSON *root, const srv_peer *peer, srv_gen **gen,
                         srv_error *e);
/* The chat path after the field checks: renders root's messages and tools, reads the shared
 * options and starts a generation written by api. */
int srv_chat_start(srv_server *srv, const cJSON *root, const srv_peer *peer, const srv_api *api,
                   srv_gen **gen, srv_error *e);
/* Feeds a choice's split with what of its text is final (no stop string can take it back),
 * and returns it (NULL when the choice has none); -1 in *err when out of memory. */
srv_split *srv_choice_split(srv_gen *g, srv_choice *c, int *err);

/* --- tool calls and formats forced by constrained decoding (structured_hooks.c) ---------- */

/* tool_choice "required" or a named function (tools: the request's list, chat or Responses
 * format): o->grammar allows only a JSON list of calls of those functions with arguments that
 * follow their parameters' schemas (one call when named or not parallel), and o->forced_tools
 * has the reply parsed as that list. */
int srv_tools_constrain(const srv_server *srv, const cJSON *tools, const cJSON *tool_choice,
                        int parallel, srv_gen_opts *o, srv_error *e);
/* The output budget: choices x max_tokens x (top_logprobs + 1), and the same for echoed
 * prompt logprobs, against --max-logprobs (400 naming the product). */
int srv_check_budget(const srv_server *srv, const srv_prompt *p, int n_prompts,
                     const srv_gen_opts *o, srv_error *e);
/* A text of n bytes that surely holds more tokens than the context: 400
 * context_length_exceeded before tokenizing it. */
int srv_check_text_length(const srv_server *srv, size_t n, const char *param, srv_error *e);
/* /tokenize, /detokenize, /v1/models: JSON body (malloc'ed) or -1 with e. */
int srv_handle_tokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e);
int srv_handle_detokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e);
char *srv_models_body(const srv_server *srv);
/* GET /v1/models/{id}: the model card, or 404 model_not_found. */
int srv_model_body(const srv_server *srv, const char *id, char **body, srv_error *e);

/* --- SSE (sse.c) --------------------------------------------------------------------------- */

/* Appends "data: <json>\n\n" (the JSON printed compactly, then deleted) to g->out. */
void srv_sse_json(srv_gen *g, cJSON *chunk);
void srv_sse_done(srv_gen *g);
/* "event: <name>\ndata: <json>\n\n" (the Responses API names its events). */
void srv_sse_event(srv_gen *g, const char *name, cJSON *chunk);
void srv_out_append(srv_gen *g, const char *s, size_t n);

/* --- the daemon (http.c) ------------------------------------------------------------------- */

int srv_http_start(srv_server *srv, char *err, size_t errlen);
/* Resumes what is suspended and stops libmicrohttpd. */
void srv_http_stop(srv_server *srv);

#endif
