/* Helpers shared by the chat-template unit tests (test_jinja*.c). Expected outputs are what the
 * reference renderer (@huggingface/jinja) produces, unless a test says "extension". */
#ifndef SRP_TEST_JINJA_H
#define SRP_TEST_JINJA_H

#include "chat_template.h"
#include "test.h"

extern srp_err jt_err;
extern int jt_rc;

/* The context most tests use: a short chat plus values of every type (see test_jinja.c). */
extern const char *const JT_CTX;

/* Renders tmpl with ctx (a JSON object whose "messages" become the messages; NULL: JT_CTX).
 * Returns the output, valid until the next call, or NULL with jt_rc / jt_err set. */
const char *jt_render(const char *tmpl, const char *ctx);
const char *jt_render_limited(const char *tmpl, const char *ctx, const srp_chat_limits *lim);

#define CHECK_RENDER(tmpl, want)                                                                \
    do {                                                                                        \
        const char *got_ = jt_render((tmpl), NULL);                                             \
        CHECKF(got_ &&strcmp(got_, (want)) == 0, "%s\n    want [%s]\n    got  [%s] %s", (tmpl), \
               (want), got_ ? got_ : "(error)", got_ ? "" : jt_err.msg);                        \
    } while (0)

#define CHECK_RENDER_CTX(tmpl, ctx, want)                                                       \
    do {                                                                                        \
        const char *got_ = jt_render((tmpl), (ctx));                                            \
        CHECKF(got_ &&strcmp(got_, (want)) == 0, "%s\n    want [%s]\n    got  [%s] %s", (tmpl), \
               (want), got_ ? got_ : "(error)", got_ ? "" : jt_err.msg);                        \
    } while (0)

/* The render fails with `code` and a message containing `part`. */
#define CHECK_FAILS(tmpl, code, part)                                                          \
    do {                                                                                       \
        const char *got_ = jt_render((tmpl), NULL);                                            \
        CHECKF(!got_ && jt_rc == (code) && strstr(jt_err.msg, (part)) != NULL,                 \
               "%s\n    want error %d containing [%s]\n    got  %s / %d [%s]", (tmpl), (code), \
               (part), got_ ? got_ : "(error)", jt_rc, jt_err.msg);                            \
    } while (0)

#endif
