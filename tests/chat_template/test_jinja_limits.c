/* Chat templates: errors as values, and the limits that keep hostile templates and inputs from
 * taking the server down (depth, output, memory, work). */
#include <stdlib.h>

#include "test_jinja.h"

TEST(jinja_compile_errors_name_line_and_column) {
    srp_chat_template *t = (srp_chat_template *)1;
    srp_err e;
    const char *bad = "line one\n{% if x %}\n  {{ x + }}\n{% endif %}";
    CHECK(srp_chat_template_compile(bad, strlen(bad), &t, &e) == SRP_EFORMAT);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(e.msg, "line 3, column");
    const char *cases[] = {
        "{% if x %}never closed",
        "{% for x in y %}",
        "{{ x ",
        "{{ 'unterminated }}",
        "{% endif %}",
        "{% unknown %}",
        "{{ x | }}",
        "{{ (1, }}",
        "{# no end",
        "{{ x is }}",
        "{% set %}",
        "{% macro m(a, a) %}{% endmacro %}",
        "{{ f(a=1, 2) }}",
        "{{ '\\q' }}",
        "{{ @ }}",
        "{{ x[] }}",
        "{{ x[1:2:3:4] }}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = srp_chat_template_compile(cases[i], strlen(cases[i]), &t, &e);
        CHECKF(rc == SRP_EFORMAT && t == NULL, "'%s' compiled (rc %d)", cases[i], rc);
        CHECKF(strstr(e.msg, "chat template: line ") != NULL, "'%s': %s", cases[i], e.msg);
    }
}

TEST(jinja_runtime_errors) {
    CHECK_FAILS("{{ nul + 1 }}", SRP_EINVAL, "Cannot perform operation on null values");
    CHECK_FAILS("{{ missing + 1 }}", SRP_EINVAL, "on undefined values");
    CHECK_FAILS("x\n  {{ 'a' < 'b' }}", SRP_EINVAL, "line 2, column 10");
    CHECK_FAILS("{{ d|upper }}", SRP_EINVAL, "Unknown ObjectValue filter: upper");
    CHECK_FAILS("{% for x in 5 %}{% endfor %}", SRP_EINVAL, "Expected iterable");
    CHECK_FAILS("{% for a, b in [1, 2] %}{% endfor %}", SRP_EINVAL, "Cannot unpack");
    CHECK_FAILS("{% set x.y = 1 %}", SRP_EINVAL, "non-namespace");
    CHECK_FAILS("{{ n() }}", SRP_EINVAL, "not a function");
    CHECK_FAILS("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", SRP_EINVAL, "takes not more than");
    CHECK_FAILS("{% macro m(a) %}{% endmacro %}{{ m(b=2) }}", SRP_EINVAL,
                "no keyword argument 'b'");
    CHECK_FAILS("{% break %}", SRP_EINVAL, "outside of a loop");
    CHECK_FAILS("{{ lst[1.5] }}", SRP_EINVAL, "non-string/non-number");
    /* errors in branches that do not run do not matter */
    CHECK_RENDER("{% if fl %}{{ nul + 1 }}{% endif %}ok", "ok");
}

TEST(jinja_raise_exception_message_is_verbatim) {
    CHECK_FAILS("{{ raise_exception('Conversation roles must alternate user/assistant') }}",
                SRP_EINVAL, "Conversation roles must alternate user/assistant");
    CHECK(strcmp(jt_err.msg, "Conversation roles must alternate user/assistant") == 0);
    CHECK_FAILS("{% if messages[0].role != 'user' %}{{ raise_exception('Must start with user') }}"
                "{% endif %}",
                SRP_EINVAL, "Must start with user");
    CHECK(strcmp(jt_err.msg, "Must start with user") == 0);
}

TEST(jinja_context_variables) {
    /* a variable the reference declares itself may not be passed again */
    const char *got = jt_render("x", "{\"range\": 1}");
    CHECK(!got && jt_rc == SRP_EINVAL && strstr(jt_err.msg, "already declared"));
    got = jt_render("x", "{\"messages\": [], \"vars_must_be\": \"fine\"}");
    CHECK(got && strcmp(got, "x") == 0);
    /* JavaScript orders integer-like keys first; a repeated key keeps its first place */
    CHECK_RENDER_CTX("{{ o|tojson }}",
                     "{\"o\": {\"b\": 1, \"1\": 2, \"a\": 3, \"0\": 4, \"b\": 5}}",
                     "{\"0\": 4, \"1\": 2, \"b\": 5, \"a\": 3}");
    /* messages need not be an array; whatever JSON the caller passes is rendered */
    CHECK_RENDER_CTX("{{ messages }}", "{\"messages\": {\"k\": 1.5}}", "{\"k\": 1.5}");
}

static void check_limit(const char *tmpl, const srp_chat_limits *lim, int code, const char *part) {
    const char *got = jt_render_limited(tmpl, NULL, lim);
    CHECKF(!got && jt_rc == code && strstr(jt_err.msg, part), "%s: rc %d [%s]", tmpl, jt_rc,
           jt_err.msg);
}

TEST(jinja_output_and_memory_limits) {
    srp_chat_limits lim = { .max_output = 1000 };
    check_limit("{% for i in range(2000) %}x{% endfor %}", &lim, SRP_EFULL, "output exceeds");
    check_limit(
        "{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}",
        &lim, SRP_EFULL, "exceeds");
    check_limit("{{ 'x'|indent(5000, true) }}", &lim, SRP_EFULL, "exceeds");
    lim = (srp_chat_limits){ .max_memory = 1 << 20 };
    check_limit("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                "{% set ns.l = ns.l + [i] %}{% endfor %}",
                &lim, SRP_EFULL, "more than");
    /* the default cap: 16 MiB of output */
    check_limit("{% for i in range(1000000) %}{{ '0123456789abcdefghij' }}{% endfor %}", NULL,
                SRP_EFULL, "output exceeds");
}

TEST(jinja_work_limits) {
    srp_chat_limits lim = { .max_steps = 100000 };
    check_limit("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
                &lim, SRP_EFULL, "steps");
    /* range() itself is capped */
    check_limit("{{ range(100000000)|length }}", NULL, SRP_EFULL, "range() longer");
    /* scanning long strings counts as work too */
    check_limit("{% set s = 'x' * 1 if false else 'abcdefgh' %}{% set ns = namespace(s=s) %}"
                "{% for i in range(18) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                "{% for i in range(100000) %}{% if 'zz' in ns.s %}{% endif %}{% endfor %}",
                NULL, SRP_EFULL, "steps");
}

TEST(jinja_depth_limits) {
    /* runaway macro recursion */
    check_limit("{% macro r(i) %}{{ r(i + 1) }}{% endmacro %}{{ r(0) }}", NULL, SRP_EINVAL,
                "nested more than");
    /* deep nesting in the template is a compile error, not a stack overflow */
    size_t n = 100000;
    char *deep = malloc(2 * n + 8);
    REQUIRE(deep);
    strcpy(deep, "{{ ");
    for (size_t i = 0; i < n; i++) deep[3 + i] = '(';
    deep[3 + n] = '1';
    for (size_t i = 0; i < n; i++) deep[4 + n + i] = ')';
    strcpy(deep + 4 + 2 * n, " }}");
    srp_chat_template *t;
    srp_err e;
    CHECK(srp_chat_template_compile(deep, strlen(deep), &t, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "nested too deeply");
    /* a long flat chain builds a tall tree: refused too */
    strcpy(deep, "{{ 1");
    size_t k = 4;
    for (size_t i = 0; i < 20000; i++) k += (size_t)sprintf(deep + k, "+1");
    strcpy(deep + k, " }}");
    CHECK(srp_chat_template_compile(deep, strlen(deep), &t, &e) == SRP_EFORMAT);
    free(deep);
    /* nested blocks */
    char *blocks = malloc(32 * 1000);
    REQUIRE(blocks);
    size_t p = 0;
    for (int i = 0; i < 1000; i++) p += (size_t)sprintf(blocks + p, "{%% if t %%}");
    for (int i = 0; i < 1000; i++) p += (size_t)sprintf(blocks + p, "{%% endif %%}");
    CHECK(srp_chat_template_compile(blocks, p, &t, &e) == SRP_EFORMAT);
    free(blocks);
    /* a namespace that contains itself cannot be printed */
    check_limit("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}", NULL, SRP_EINVAL,
                "nested too deeply");
}

TEST(jinja_hostile_input_data) {
    /* deeply nested messages are refused, not walked */
    char *deep = malloc(4000);
    REQUIRE(deep);
    size_t k = (size_t)sprintf(deep, "{\"messages\": ");
    for (int i = 0; i < 900; i++) deep[k++] = '[';
    for (int i = 0; i < 900; i++) deep[k++] = ']';
    strcpy(deep + k, "}");
    const char *got = jt_render("{{ messages|length }}", deep);
    CHECK(!got && jt_rc == SRP_EINVAL && strstr(jt_err.msg, "nested too deeply"));
    free(deep);
    /* invalid UTF-8 in content passes through without harm */
    got = jt_render("{{ messages[0].content|upper|length }}{{ messages[0].content[1:] }}",
                    "{\"messages\": [{\"content\": \"a\\u00ff\"}]}");
    CHECK(got != NULL);
}

TEST(jinja_recursion_through_tall_expressions_is_bounded) {
    /* 60 nested macro calls, each through an expression 90 levels tall: refused in time,
     * without exhausting the C stack */
    char *t = malloc(8000);
    REQUIRE(t);
    size_t k = (size_t)sprintf(t, "{%% macro r(i) %%}{%% if i < 60 %%}{{ ");
    for (int i = 0; i < 90; i++) k += (size_t)sprintf(t + k, "'' ~ (");
    k += (size_t)sprintf(t + k, "r(i + 1)");
    for (int i = 0; i < 90; i++) k += (size_t)sprintf(t + k, ")");
    sprintf(t + k, " }}{%% endif %%}{%% endmacro %%}{{ r(0) }}");
    check_limit(t, NULL, SRP_EINVAL, "nested more than");
    free(t);
}
