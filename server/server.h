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
#include "metrics.h"
#include "scheduler.h"
#include "text.h"
#include "tokenizer.h"

typedef enum { SRV_LOADING = 0, SRV_READY, SRV_DRAINING } srv_state;

typedef struct srv_config {
    const char *host;
    int port;
    const char *model_name; /* --served-model-name */
    const char *model_path; /* --model, accepted as a name too */
    const char *api_key;    /* NULL: no auth */
    int max_model_len;
    size_t max_body_bytes;
    int http_threads;
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
    srp_tokenizer *tok; /* NULL when the model folder has none: token ids only */
    int vocab;          /* the model's */
    int32_t eos_ids[8];
    int n_eos;
    const char *chat_template;           /* NULL: chat answers 400 */
    struct srp_chat_template *chat_tmpl; /* compiled; NULL when absent or broken */
    char chat_tmpl_error[512];
    char *bos_text, *eos_text; /* for the template */
    long created;              /* unix time the server started */

    srv_metrics metrics;
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

#define SRV_MAX_STOP 16
#define SRV_MAX_N    128

typedef struct srv_gen_opts {
    int n;
    int max_tokens; /* -1: not given */
    int stream, include_usage;
    int logprobs; /* -1: off; k: chosen token + top k */
    int echo;     /* completions */
    int ignore_eos;
    int return_token_ids;
    int skip_special;
    int have_seed;
    uint64_t seed;
    srp_sample_params sample;
    int n_bias;
    int32_t *bias_ids; /* malloc'ed */
    float *bias;
    int n_stop;
    char *stop[SRV_MAX_STOP]; /* malloc'ed, non-empty */
} srv_gen_opts;

void srv_gen_opts_free(srv_gen_opts *o);
/* Reads the sampling and output fields shared by both endpoints; chat selects the chat
 * spellings (logprobs bool + top_logprobs, max_completion_tokens). */
int srv_parse_gen_opts(const srv_server *srv, const cJSON *root, int chat, srv_gen_opts *o,
                       srv_error *e);
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
} srv_api;
extern const srv_api srv_api_completions, srv_api_chat;

typedef struct srv_prompt {
    int32_t *ids;
    int n;
    char *text;          /* for echo: the prompt as text */
    srp_token_event *lp; /* [n - 1] prompt logprobs when echo + logprobs */
    int n_lp;
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
    int n_generated;
    int n_cached;              /* prompt tokens the prefix cache supplied */
    double t_last;             /* time of the last token, for inter-token latency */
    const char *finish_reason; /* "stop", "length", "abort"; NULL while running */
    int done, stopped_by_string, chunk_finish_sent, role_sent;
    char error[256];
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

    /* stream output not yet handed to libmicrohttpd */
    char *out;
    size_t out_len, out_cap, out_pos;
    int stream_started, stream_ended;
} srv_gen;

/* Takes ownership of prompts and opts; submits n requests per prompt. On failure (e filled,
 * e.g. 429 when the queue is full) everything is freed. */
int srv_gen_start(srv_server *srv, const srv_api *api, srv_prompt *prompts, int n_prompts,
                  srv_gen_opts *opts, srv_gen **out, srv_error *e);
/* Releases the requests (cancelling unfinished ones) and frees everything. */
void srv_gen_free(srv_gen *g);
/* Takes every pending event of every choice and advances the texts; returns 1 when something
 * changed. Stream chunks for the changes are appended to g->out when g->opts.stream. */
int srv_gen_poll(srv_gen *g);
/* Whether every choice has finished. */
static inline int srv_gen_done(const srv_gen *g) {
    return g->n_done == g->n_choices;
}
/* The text of one token for logprobs (malloc'ed, valid UTF-8, may hold NUL bytes: its length
 * goes to *len). */
char *srv_token_text(const srv_server *srv, int32_t id, size_t *len);

/* --- what the endpoints share (openai_common.c) --------------------------------------------- */

/* Checks every prompt + max_tokens against --max-model-len (400 naming the field); a missing
 * max_tokens becomes default_max (-1: all the room left), shrunk to fit. */
int srv_check_length(const srv_server *srv, const srv_prompt *p, int n, srv_gen_opts *o,
                     int default_max, srv_error *e);

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
int srv_handle_completions(srv_server *srv, const cJSON *root, srv_gen **gen, srv_error *e);
int srv_handle_chat(srv_server *srv, const cJSON *root, srv_gen **gen, srv_error *e);
/* /tokenize, /detokenize, /v1/models: JSON body (malloc'ed) or -1 with e. */
int srv_handle_tokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e);
int srv_handle_detokenize(srv_server *srv, const cJSON *root, char **body, srv_error *e);
char *srv_models_body(const srv_server *srv);

/* --- SSE (sse.c) --------------------------------------------------------------------------- */

/* Appends "data: <json>\n\n" (the JSON printed compactly, then deleted) to g->out. */
void srv_sse_json(srv_gen *g, cJSON *chunk);
void srv_sse_done(srv_gen *g);
void srv_out_append(srv_gen *g, const char *s, size_t n);

/* --- the daemon (http.c) ------------------------------------------------------------------- */

int srv_http_start(srv_server *srv, char *err, size_t errlen);
/* Resumes what is suspended and stops libmicrohttpd. */
void srv_http_stop(srv_server *srv);

#endif
