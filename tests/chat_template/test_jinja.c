/* Chat templates: the template language itself (text, whitespace control, expressions, loops,
 * assignments, macros). Filters, tests and methods are in test_jinja_filters.c; errors and
 * limits in test_jinja_limits.c. */
#include <stdlib.h>

#include "test_jinja.h"

srp_err jt_err;
int jt_rc;

const char *const JT_CTX =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"},"
    "  {\"role\": \"user\", \"content\": \"Hi there\"},"
    "  {\"role\": \"assistant\", \"content\": \"Hello\"}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    " \"n\": 7, \"f\": 2.5, \"neg\": -3, \"s\": \"  Hello, World!  \", \"e\": \"\","
    " \"u\": \"\\u00fcn\\u00ef \\ud83d\\ude00 \\u03a3\\u0391\\u03a3 stra\\u00dfe\","
    " \"lst\": [3, 1, 2], \"strs\": [\"b\", \"A\", \"c\", \"a\"],"
    " \"d\": {\"b\": 1, \"a\": 2, \"C\": 3, \"10\": \"x\", \"2\": \"y\"},"
    " \"objs\": [{\"name\": \"x\", \"v\": 2, \"ok\": true, \"sub\": {\"k\": 1}},"
    "   {\"name\": \"y\", \"v\": 1, \"ok\": false, \"sub\": {\"k\": 2}}, {\"name\": \"z\", \"v\": "
    "3}],"
    " \"nested\": {\"a\": {\"b\": [1, {\"c\": \"deep\"}]}}, \"t\": true, \"fl\": false,"
    " \"nul\": null, \"mixed\": [1, \"a\", null, true, 2.5, [1, 2], {\"k\": \"v\"}]}";

static char *last;

const char *jt_render_limited(const char *tmpl, const char *ctx, const srp_chat_limits *lim) {
    free(last);
    last = NULL;
    memset(&jt_err, 0, sizeof jt_err);
    cJSON *vars = cJSON_Parse(ctx ? ctx : JT_CTX);
    if (!vars) {
        fprintf(stderr, "bad test context JSON\n");
        jt_rc = -100;
        return NULL;
    }
    cJSON *msgs = cJSON_DetachItemFromObject(vars, "messages");
    srp_chat_template *t = NULL;
    jt_rc = srp_chat_template_compile(tmpl, strlen(tmpl), &t, &jt_err);
    if (!jt_rc) jt_rc = srp_chat_template_render(t, msgs, vars, lim, &last, NULL, &jt_err);
    srp_chat_template_free(t);
    cJSON_Delete(msgs);
    cJSON_Delete(vars);
    return jt_rc ? NULL : last;
}

const char *jt_render(const char *tmpl, const char *ctx) {
    return jt_render_limited(tmpl, ctx, NULL);
}

TEST(jinja_text_comments_and_output) {
    CHECK_RENDER("plain text", "plain text");
    CHECK_RENDER("", "");
    CHECK_RENDER("a{# comment #}b{# multi\nline #}c", "abc");
    CHECK_RENDER("{{ 'text' }}|{{ \"dq\" }}|{{ 'a' 'b' \"c\" }}", "text|dq|abc");
    CHECK_RENDER("{{ t }} {{ fl }} [{{ nul }}] [{{ missing }}] {{ None }}", "true false [] [] ");
    CHECK_RENDER("{{ lst }}|{{ d }}|{{ {} }}|{{ [] }}",
                 "[3, 1, 2]|{\"2\": \"y\", \"10\": \"x\", \"b\": 1, \"a\": 2, \"C\": 3}|{}|[]");
    CHECK_RENDER("{{ mixed }}", "[1, \"a\", null, true, 2.5, [1, 2], {\"k\": \"v\"}]");
    /* A single trailing newline is dropped, as in Jinja. */
    CHECK_RENDER("line\n", "line");
    CHECK_RENDER("line\n\n", "line\n");
    CHECK_RENDER(
        "{{ \"\\x41\\u00e9\\u263a\" }}|{{ \"\\ud83d\\ude00\" }}|{{ 'it\\'s' }}|{{ \"a\\tb\" }}",
        "A\xc3\xa9\xe2\x98\xba|\xf0\x9f\x98\x80|it's|a\tb");
}

TEST(jinja_whitespace_control) {
    /* trim_blocks and lstrip_blocks, as transformers sets them */
    CHECK_RENDER("{% if t %}\n  yes\n{% endif %}\ntail", "  yes\ntail");
    CHECK_RENDER("    {% for x in lst %}\n    item {{ x }}\n    {% endfor %}",
                 "    item 3\n    item 1\n    item 2\n");
    CHECK_RENDER("  {# c #}\n  {% set x = 1 %}\n  {{ x }}", "  1");
    CHECK_RENDER("{{ 'a' }}\n{{ 'b' }}", "a\nb");
    /* '-' strips whitespace (newlines included) on its side */
    CHECK_RENDER("a  {{- 'b' -}}  \n c", "abc");
    CHECK_RENDER("a \n {%- if t -%} \n b \n {%- endif -%} \n c", "abc");
    CHECK_RENDER("x {#- comment -#}  y", "xy");
    CHECK_RENDER("{% for x in lst -%}\n  {{ x }}\n{%- endfor %}", "312");
    /* transformers' {% generation %} markers disappear */
    CHECK_RENDER("A {% generation %}gen{% endgeneration %} B {%- generation -%} C", "A gen BC");
}

TEST(jinja_numbers) {
    CHECK_RENDER("{{ 1 }}|{{ -1 }}|{{ 1.0 }}|{{ 2.50 }}|{{ -0.0 }}|{{ 0.0 }}",
                 "1|-1|1.0|2.5|-0.0|0.0");
    CHECK_RENDER("{{ 1000000000000000000000 }}|{{ 100000000000000000000 }}|{{ 0.000001 }}|"
                 "{{ 0.0000001 }}|{{ 123456789012345678901234 }}",
                 "1e+21|100000000000000000000|0.000001|1e-7|1.2345678901234569e+23");
    CHECK_RENDER(
        "{{ 0.1 + 0.2 }}|{{ 1 / 3 }}|{{ 10 / 4 }}|{{ 7 / 7 }}|{{ 100000000000000000000.0 }}",
        "0.30000000000000004|0.3333333333333333|2.5|1.0|100000000000000000000.0");
    CHECK_RENDER("{{ 1 / 0 }}|{{ -1 / 0 }}|{{ 5 // 0 }}|{{ 9007199254740993 }}|{{ 2 ** 53 + 1 }}",
                 "Infinity|-Infinity|Infinity|9007199254740992|9007199254740992");
    CHECK_RENDER("{{ f|string }}|{{ 3.0|string }}|{{ 100.0 }}|{{ 12345678.9 }}|{{ 1000000.0 }}",
                 "2.5|3.0|100.0|12345678.9|1000000.0");
}

TEST(jinja_arithmetic) {
    CHECK_RENDER(
        "{{ n + 1 }}|{{ n - 10 }}|{{ n * 3 }}|{{ n / 2 }}|{{ n // 2 }}|{{ n % 3 }}|{{ n ** 2 }}",
        "8|-3|21|3.5|3|1|49");
    CHECK_RENDER("{{ 2 ** -1 }}|{{ 2 ** 3 ** 2 }}|{{ f + 1 }}|{{ f * 2 }}|{{ f // 1 }}|{{ f % 1 }}",
                 "0.5|64|3.5|5.0|2.0|0.5");
    /* JavaScript's remainder keeps the dividend's sign; // floors */
    CHECK_RENDER(
        "{{ -f }}|{{ +n }}|{{ -neg }}|{{ neg % 2 }}|{{ neg // 2 }}|{{ -7 % 3 }}|{{ 7.5 // 2 }}",
        "-2.5|7|3|-1|-2|-1|3.0");
    CHECK_RENDER(
        "{{ 'a' ~ 1 ~ f ~ t ~ lst }}|{{ 'x' + 1 }}|{{ 1 + 'x' }}|{{ 3.0 ~ '' }}|{{ 3 ~ 4 }}",
        "a12.5true3,1,2|x1|1x|3|34");
    CHECK_RENDER("{{ [1] + [2, 3] }}|{{ 'n=' + n|string }}", "[1, 2, 3]|n=7");
    CHECK_RENDER("{{ 'a' + ['b', 1] }}|{{ 'x' ~ d }}", "ab,1|x[object Map]");
}

TEST(jinja_comparison_and_logic) {
    CHECK_RENDER("{{ n > 3 }}|{{ n < 3 }}|{{ n >= 7 }}|{{ n <= 6 }}|{{ n == 7 }}|{{ n != 7 }}",
                 "true|false|true|false|true|false");
    /* == is JavaScript's loose equality on the underlying values */
    CHECK_RENDER(
        "{{ n == 7.0 }}|{{ '7' == n }}|{{ t == 1 }}|{{ nul == none }}|{{ missing == none }}|"
        "{{ '' == 0 }}|{{ lst == lst }}|{{ [1] == [1] }}|{{ [] == '' }}|{{ [1,2] == '1,2' }}",
        "true|true|true|true|true|true|true|false|true|true");
    CHECK_RENDER("{{ t and 'yes' }}|{{ fl and 'yes' }}|{{ fl or 'no' }}|{{ e or 'empty' }}|"
                 "{{ not t }}|{{ not not n }}|{{ [] or 'E' }}|{{ {} or 'D' }}|{{ lst and 'L' }}",
                 "yes|false|no|empty|false|true|E|D|L");
    CHECK_RENDER("{{ 'a' in 'cat' }}|{{ 'z' not in 'cat' }}|{{ 2 in lst }}|{{ 5 in lst }}|"
                 "{{ 2.0 in lst }}|{{ 'a' in d }}|{{ 'zz' in d }}|{{ 'x' in missing }}|"
                 "{{ 'x' not in missing }}",
                 "true|true|true|false|true|true|false|false|true");
    CHECK_RENDER(
        "{{ 'yes' if t else 'no' }}|{{ 'a' if fl else 'b' if t else 'c' }}|[{{ 'x' if fl }}]",
        "yes|b|[]");
    CHECK_RENDER("{{ not n is odd }}|{{ n is not odd and t }}|{{ 1 if nul is none else 2 }}",
                 "false|false|1");
}

TEST(jinja_subscripts_slices_attributes) {
    CHECK_RENDER(
        "{{ lst[0] }}|{{ lst[-1] }}|[{{ lst[5] }}]|{{ lst[1:] }}|{{ lst[:2] }}|{{ lst[::-1] }}",
        "3|2|[]|[1, 2]|[3, 1]|[2, 1, 3]");
    CHECK_RENDER("{{ lst[::2] }}|{{ lst[-2:] }}|{{ lst[1:-1] }}|{{ lst[5:] }}|{{ lst[2:0:-1] }}",
                 "[3, 2]|[1, 2]|[1]|[]|[2, 1]");
    /* the reference reads an explicit stop of -1 with a negative step as "to the start" */
    CHECK_RENDER("{{ lst[3:-1:-1] }}", "[2, 1, 3]");
    CHECK_RENDER(
        "{{ s[2:7] }}|{{ 'hello'[::-1] }}|{{ 'hello'[1:3] }}|{{ 'hello'[-3:] }}|{{ 'abc'[1] }}|"
        "{{ 'abc'[-1] }}|[{{ 'abc'[10] }}]",
        "Hello|olleh|el|llo|b|c|[]");
    /* strings slice by code point, index and measure by UTF-16 unit */
    CHECK_RENDER("{{ u[1:4] }}|{{ u|length }}|{{ '\xf0\x9f\x98\x80' 'a'|length }}|"
                 "{{ ('\xf0\x9f\x98\x80' 'a')[2] }}|{{ ('\xf0\x9f\x98\x80' 'abc')[1:] }}",
                 "n\xc3\xaf |17|3|a|abc");
    CHECK_RENDER("{{ d.a }}|{{ d['b'] }}|[{{ d.missing }}]|[{{ d.missing.deeper }}]|"
                 "{{ nested.a.b[1].c }}|{{ messages[1].content }}|{{ messages[-1]['role'] }}|"
                 "[{{ missing.attr }}]|[{{ nul.attr }}]",
                 "2|1|[]|[]|deep|Hi there|assistant|[]|[]");
    CHECK_RENDER("{{ {'a': {'b': 1}} }}|{{ {'a': 1}['a'] }}|{{ [1, 2, 3][1] }}|{{ (1) }}|"
                 "{{ [1, 2, 3,] }}|{{ {'a': 1, 'a': 2} }}",
                 "{\"a\": {\"b\": 1}}|1|2|1|[1, 2, 3]|{\"a\": 2}");
    CHECK_RENDER("{{ s.length }}|{{ lst.length }}", "17|3");
}

TEST(jinja_for_loops) {
    CHECK_RENDER("{% for x in lst %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                 "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
                 "{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
                 "1032truefalse31;2121falsefalse332;3210falsetrue31;");
    CHECK_RENDER("{% for x in [] %}never{% else %}else{% endfor %}", "else");
    CHECK_RENDER("{% for k in d %}{{ k }},{% endfor %}", "2,10,b,a,C,");
    CHECK_RENDER("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                 "2=y;10=x;b=1;a=2;C=3;");
    CHECK_RENDER("{% for x in lst if x > 1 %}{{ x }}{{ loop.index }}{{ loop.length }} {% endfor %}",
                 "312 222 ");
    CHECK_RENDER(
        "{% for m in messages if m.role != 'system' %}{{ m.role }}:{{ loop.last }} {% endfor %}",
        "user:false assistant:true ");
    CHECK_RENDER("{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }},{% endfor %}|"
                 "{% for (a, b) in [[1, 2]] %}{{ a }}{{ b }}{% endfor %}",
                 "3,7,|12");
    CHECK_RENDER(
        "{% for i in range(3) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{% endfor %}|"
        "{% endfor %}",
        "1020|1121|1222|");
    /* strings are not iterable in a for loop (the reference refuses them) */
    CHECK_FAILS("{% for c in 'abc' %}{{ c }}{% endfor %}", SRP_EINVAL, "got StringValue");
}

TEST(jinja_break_continue) {
    CHECK_RENDER("{% for x in lst %}{% if x == 1 %}{% continue %}{% endif %}[{{ x }}]{% endfor %}",
                 "[3][2]");
    /* an iteration left by break or continue contributes nothing, not even its earlier text */
    CHECK_RENDER("{% for x in lst %}A{% if x == 1 %}{% break %}{% endif %}B{{ x }}{% endfor %}",
                 "AB3");
    CHECK_RENDER("{% for x in lst %}{% continue %}{% else %}ELSE{% endfor %}", "ELSE");
    CHECK_RENDER("{% macro stop() %}{% break %}{% endmacro %}{% for x in lst %}{{ x }}{{ stop() }}"
                 "{% endfor %}end",
                 "end");
}

TEST(jinja_set_and_namespace) {
    CHECK_RENDER("{% set x = 5 %}{{ x }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}", "5|12");
    CHECK_RENDER("{% set y %}block {{ n }}{% endset %}[{{ y }}]", "[block 7]");
    /* set inside if is visible after it; set inside a loop body is not */
    CHECK_RENDER("{% if t %}{% set inner = 'in' %}{% endif %}{{ inner }}|"
                 "{% for i in lst %}{% set v = i %}{% endfor %}[{{ v }}]",
                 "in|[]");
    CHECK_RENDER("{% set a = 1 %}{% set a = a + 1 %}{{ a }}", "2");
    CHECK_RENDER(
        "{% set ns = namespace(count=0, found=false) %}{% for x in lst %}"
        "{% set ns.count = ns.count + x %}{% if x == 2 %}{% set ns.found = true %}{% endif %}"
        "{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns }}",
        "6 true {\"count\": 6, \"found\": true}");
    CHECK_RENDER("{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}[{{ ns.c }}]", "12[]");
    CHECK_RENDER(
        "{% set ns = namespace(a=[]) %}{% set ns.a = ns.a + [1] %}{% set ns.a = ns.a + [2] %}"
        "{{ ns.a|tojson }}",
        "[1, 2]");
    CHECK_RENDER(
        "{% set content = '' %}{% for m in messages %}{% set content = content + m.content %}"
        "{% endfor %}[{{ content }}]",
        "[]");
}

TEST(jinja_macros_and_calls) {
    CHECK_RENDER(
        "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
        "{{ greet('Bob') }}|{{ greet('Ann', 'Hi') }}|{{ greet(greeting='Hey', name='Di') }}",
        "Hello, Bob!|Hi, Ann!|Hey, Di!");
    CHECK_RENDER("{% macro m(a, b=a ~ '!') %}{{ a }}{{ b }}{% endmacro %}{{ m('x') }}", "xx!");
    CHECK_RENDER("{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}",
                 "[1, 2]{\"k\": 3}");
    CHECK_RENDER("{% macro rec(i) %}{% if i > 0 %}{{ i }}{{ rec(i - 1) }}{% endif %}{% endmacro %}"
                 "{{ rec(4) }}",
                 "4321");
    /* macros see the scope they are called from */
    CHECK_RENDER("{% macro outer() %}{% set local = 'L' %}{{ inner() }}{% endmacro %}"
                 "{% macro inner() %}{{ local }}{% endmacro %}{{ outer() }}",
                 "L");
    CHECK_RENDER("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                 "{% call wrap('b') %}inside {{ n }}{% endcall %}",
                 "<b>inside 7</b>");
    CHECK_RENDER("{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}"
                 "{% call(item) each([1, 2]) %}<{{ item }}>{% endcall %}",
                 "<1><2>");
    CHECK_RENDER("{% filter upper %}shout {{ s|trim }}{% endfilter %}|"
                 "{% filter replace('a', 'o') %}banana{% endfilter %}",
                 "SHOUT HELLO, WORLD!|bonono");
}

TEST(jinja_chat_template_end_to_end) {
    const char *tmpl = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim "
                       "}}{{ eos_token }}"
                       "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
    CHECK_RENDER(tmpl,
                 "<s><|system|>sys</s><|user|>Hi there</s><|assistant|>Hello</s><|assistant|>");
    /* defaults when the caller passes no variables: add_generation_prompt false, tools none */
    CHECK_RENDER_CTX("{{ add_generation_prompt }}|{{ tools is none }}|{{ messages|length }}",
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "false|true|1");
    char *out = NULL;
    srp_err e;
    CHECK(srp_chat_template_render_string("{{ messages|length }}", NULL, NULL, &out, &e) == 0);
    CHECK(out && strcmp(out, "0") == 0);
    free(out);
    /* compile once, render many times */
    srp_chat_template *t;
    REQUIRE(srp_chat_template_compile("{{ messages[0].content|upper }}", 31, &t, &e) == 0);
    for (int i = 0; i < 3; i++) {
        cJSON *m = cJSON_Parse(i == 1 ? "[{\"content\": \"b\"}]" : "[{\"content\": \"a\"}]");
        CHECK(srp_chat_template_render(t, m, NULL, NULL, &out, NULL, &e) == 0);
        CHECK(out && strcmp(out, i == 1 ? "B" : "A") == 0);
        free(out);
        cJSON_Delete(m);
    }
    srp_chat_template_free(t);
}
