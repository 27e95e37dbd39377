/* The public face of the chat-template renderer: compile, render, free. */
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

int srp_chat_template_compile(const char *tmpl, size_t len, srp_chat_template **out, srp_err *e) {
    *out = NULL;
    if (!tmpl) return srp_err_set(e, SRP_EINVAL, "chat template: no template");
    srp_chat_template *t = calloc(1, sizeof *t);
    if (!t) return srp_err_set(e, SRP_ENOMEM, "chat template: out of memory");
    jtoks toks = { 0 };
    int rc = 0;
    char *src = jarena_strdup(&t->arena, tmpl, len);
    if (!src) {
        rc = srp_err_set(e, SRP_ENOMEM, "chat template: out of memory");
        goto fail;
    }
    t->src = src;
    t->srclen = len;
    if ((rc = jinja_lex(src, len, &t->arena, &toks, e)) ||
        (rc = jinja_parse(&toks, &t->arena, src, len, &t->prog, e)))
        goto fail;
    free(toks.v);
    *out = t;
    return 0;
fail:
    free(toks.v);
    srp_chat_template_free(t);
    return rc;
}

void srp_chat_template_free(srp_chat_template *t) {
    if (!t) return;
    jarena_free(&t->arena);
    free(t);
}

static bool has_key(const cJSON *vars, const char *k) {
    return vars && cJSON_GetObjectItemCaseSensitive(vars, k) != NULL;
}

/* The render context: globals, then messages and the caller's variables (a name may be given
 * once: the reference refuses to redeclare one). */
static int setup_context(jctx *c, jenv *root, const cJSON *messages, const cJSON *vars) {
    int rc = jinja_setup_globals(c, root);
    if (rc) return rc;
    jv v;
    if (messages) {
        if ((rc = jv_from_json(c, messages, 0, &v))) return rc;
    } else {
        jarr *a = jarr_new(c, 0);
        if (!a) return c->e->code;
        v = (jv){ .k = JV_ARRAY, .u.arr = a };
    }
    if ((rc = jenv_set(c, root, "messages", 8, v))) return rc;
    if (vars && !cJSON_IsObject(vars)) return jerr(c, NULL, "template variables must be an object");
    for (const cJSON *it = vars ? vars->child : NULL; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        size_t kn = strlen(k);
        jv old = jenv_lookup(root, k, kn);
        if (old.k != JV_UNDEF || (kn == 8 && !memcmp(k, "messages", 8)))
            return jerr(c, NULL, "Variable already declared: %s", k);
        if ((rc = jv_from_json(c, it, 0, &v)) || (rc = jenv_set(c, root, k, kn, v))) return rc;
    }
    /* What transformers passes when the caller does not say. */
    if (!has_key(vars, "add_generation_prompt") &&
        (rc = jenv_set(c, root, "add_generation_prompt", 21, jv_bool(false))))
        return rc;
    if (!has_key(vars, "tools") && (rc = jenv_set(c, root, "tools", 5, jv_null()))) return rc;
    if (!has_key(vars, "documents") && (rc = jenv_set(c, root, "documents", 9, jv_null())))
        return rc;
    return 0;
}

int srp_chat_template_render(const srp_chat_template *t, const cJSON *messages, const cJSON *vars,
                             const srp_chat_limits *limits, char **out, size_t *out_len,
                             srp_err *e) {
    srp_err scratch;
    if (!e) e = &scratch;
    *out = NULL;
    if (out_len) *out_len = 0;
    jctx c = { .t = t, .e = e };
    c.lim.max_output =
        limits && limits->max_output ? limits->max_output : SRP_CHAT_DEFAULT_MAX_OUTPUT;
    c.lim.max_memory =
        limits && limits->max_memory ? limits->max_memory : SRP_CHAT_DEFAULT_MAX_MEMORY;
    c.lim.max_steps = limits && limits->max_steps ? limits->max_steps : SRP_CHAT_DEFAULT_MAX_STEPS;
    c.arena.cap = c.lim.max_memory;
    jbuf b = jctx_buf(&c);
    int rc;
    jenv *root = jenv_new(&c, NULL);
    if (!root) {
        rc = e->code;
        goto done;
    }
    if ((rc = setup_context(&c, root, messages, vars))) goto done;
    rc = jinja_exec_block(&c, root, t->prog.body, t->prog.n, &b);
    if (rc == JR_BREAK || rc == JR_CONTINUE)
        rc = jerr(&c, NULL, "%s outside of a loop", rc == JR_BREAK ? "break" : "continue");
    if (rc) goto done;
    if (!b.p && jbuf_put(&b, "", 0) == 0 && !(b.p = malloc(1))) {
        rc = srp_err_set(e, SRP_ENOMEM, "chat template: out of memory");
        goto done;
    }
    if (b.n == 0) b.p[0] = 0;
    *out = b.p;
    if (out_len) *out_len = b.n;
    b.p = NULL;
done:
    jbuf_free(&b);
    jarena_free(&c.arena);
    return rc;
}

int srp_chat_template_render_string(const char *tmpl, const cJSON *messages, const cJSON *vars,
                                    char **out, srp_err *e) {
    srp_chat_template *t;
    *out = NULL;
    int rc = srp_chat_template_compile(tmpl, tmpl ? strlen(tmpl) : 0, &t, e);
    if (rc) return rc;
    rc = srp_chat_template_render(t, messages, vars, NULL, out, NULL, e);
    srp_chat_template_free(t);
    return rc;
}
