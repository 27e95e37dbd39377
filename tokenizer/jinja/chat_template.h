/* Chat templates: the Jinja subset that Hugging Face chat templates use, rendered the way the
 * reference renderer does (@huggingface/jinja, the JS port transformers.js uses), byte for byte.
 *
 * The template and the messages come from users, so nothing here aborts: every failure is a
 * return value with a message, recursion is bounded, and output, memory and work are capped.
 *
 * Where the reference fails with an error of its own (not raise_exception), this renderer may
 * render instead, with Jinja2's meaning: the filters d, default without arguments, escape/e,
 * round, wordcount, sum, min, max, select, reject, map('filter'); tests with arguments
 * (divisibleby, equalto 2, in, lt, ...); str.format and str.join; length / string / list of an
 * undefined value. Known differences: printing a function ({{ x.items }}) prints nothing (the
 * reference prints JavaScript source), and `[]|first` is undefined (the reference crashes). */
#ifndef SRP_CHAT_TEMPLATE_H
#define SRP_CHAT_TEMPLATE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "status.h"

typedef struct srp_chat_template srp_chat_template;

/* Caps on one render. Zero fields take the defaults below. */
typedef struct srp_chat_limits {
    size_t max_output; /* bytes of rendered text (and of any one intermediate string) */
    size_t max_memory; /* bytes of values allocated while rendering */
    size_t max_steps;  /* evaluation steps (expressions, loop iterations, bytes scanned / 64) */
} srp_chat_limits;

#define SRP_CHAT_DEFAULT_MAX_OUTPUT (16u << 20)
#define SRP_CHAT_DEFAULT_MAX_MEMORY (64u << 20)
#define SRP_CHAT_DEFAULT_MAX_STEPS  (50u * 1000 * 1000)

/* Parses a template (len bytes; it need not be NUL-terminated). On success returns 0 and sets
 * *out, which the caller frees with srp_chat_template_free. On a syntax error returns
 * SRP_EFORMAT and e names the line and column. */
int srp_chat_template_compile(const char *tmpl, size_t len, srp_chat_template **out, srp_err *e);

/* Renders a compiled template. The context holds `messages` (any JSON value, normally an array
 * of {role, content, ...} objects; NULL means an empty array), every key of `vars` (an object or
 * NULL: bos_token, eos_token, tools, add_generation_prompt, ...), and the defaults
 * add_generation_prompt=false, tools=none, documents=none for those keys `vars` lacks.
 * On success returns 0 and sets *out to a NUL-terminated string the caller frees with free();
 * *out_len (may be NULL) gets its length. Errors: SRP_EINVAL when the template fails on this
 * input, with e->msg the exact text of a raise_exception('...') call, or "chat template: ..."
 * naming the line and column; SRP_EFULL when a limit was hit; SRP_ENOMEM. limits may be NULL. */
int srp_chat_template_render(const srp_chat_template *t, const cJSON *messages, const cJSON *vars,
                             const srp_chat_limits *limits, char **out, size_t *out_len,
                             srp_err *e);

void srp_chat_template_free(srp_chat_template *t);

/* Compiles, renders once and frees. */
int srp_chat_template_render_string(const char *tmpl, const cJSON *messages, const cJSON *vars,
                                    char **out, srp_err *e);

#endif
