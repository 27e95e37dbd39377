/* Chat templates: filters, tests, string and dict methods, globals, tojson. */
#include "test_jinja.h"

TEST(jinja_string_filters) {
    CHECK_RENDER("{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ s|length }}",
                 "Hello, World!|  HELLO, WORLD!  |  hello, world!  |17");
    /* title only upper-cases word starts (ASCII words), capitalize only the first letter */
    CHECK_RENDER("{{ 'hello wORLD foo_bar 2nd'|title }}|{{ 'hello World'|capitalize }}|"
                 "{{ '\xc3\xa9\x61'|title }}",
                 "Hello WORLD Foo_bar 2nd|Hello World|\xc3\xa9\x41");
    CHECK_RENDER("{{ u|upper }}|{{ u|lower }}",
                 "\xc3\x9cN\xc3\x8f \xf0\x9f\x98\x80 \xce\xa3\xce\x91\xce\xa3 STRASSE|"
                 "\xc3\xbcn\xc3\xaf \xf0\x9f\x98\x80 \xcf\x83\xce\xb1\xcf\x82 stra\xc3\x9f\x65");
    CHECK_RENDER("{{ ' \xc2\xa0\xe2\x80\x83x\xe3\x80\x80 '|trim }}|{{ '\xef\xbb\xbf"
                 "bom'|trim }}",
                 "x|bom");
    CHECK_RENDER("{{ 'line1\nline2\n\nline4'|indent }}|{{ 'a\nb'|indent(2, true) }}|"
                 "{{ 'a\n\nb'|indent(2, first=true, blank=true) }}",
                 "line1\n    line2\n\n    line4|  a\n  b|  a\n  \n  b");
    CHECK_RENDER(
        "{{ '42'|int }}|{{ '4.7'|int }}|{{ 'x'|int }}|{{ ' 12abc'|int }}|{{ '4.5'|float }}|"
        "{{ 'x'|float }}|{{ 'x'|int(5) }}|{{ 'a'|float(9.5) }}",
        "42|4|0|12|4.5|0.0|5|9.5");
    CHECK_RENDER("{{ 'aaa'|replace('a', 'x') }}|{{ 'aaa'|replace('a', 'x', 1) }}|{{ s|join }}|"
                 "{{ 'abc'|join('-') }}|{{ s|string }}",
                 "xxx|xaa|  Hello, World!  |a-b-c|  Hello, World!  ");
}

TEST(jinja_number_and_bool_filters) {
    CHECK_RENDER("{{ n|string }}|{{ f|string }}|{{ 4.7|int }}|{{ -4.7|int }}|{{ n|float }}|"
                 "{{ neg|abs }}|{{ -2.5|abs }}|{{ 4.7|int(0) }}",
                 "7|2.5|4|-5|7.0|3|2.5|4.7");
    CHECK_RENDER("{{ t|int }}|{{ t|string }}|{{ fl|float }}|{{ t|string ~ fl|string }}",
                 "1|true|0.0|truefalse");
}

TEST(jinja_list_filters) {
    CHECK_RENDER("{{ lst|length }}|{{ lst|first }}|{{ lst|last }}|{{ lst|reverse }}|{{ lst|sort }}|"
                 "{{ lst|sort(reverse=true) }}",
                 "3|3|2|[2, 1, 3]|[1, 2, 3]|[3, 2, 1]");
    CHECK_RENDER(
        "{{ strs|sort }}|{{ strs|sort(case_sensitive=true) }}|{{ [true, 0, 2.5, 1]|sort }}",
        "[\"A\", \"a\", \"b\", \"c\"]|[\"A\", \"a\", \"b\", \"c\"]|[0, true, 1, 2.5]");
    CHECK_RENDER(
        "{{ lst|join }}|{{ lst|join(', ') }}|{{ mixed|join('|') }}|{{ [1, 1, 2, 1]|unique }}|"
        "{{ lst|list }}|{{ lst|string }}",
        "312|3, 1, 2|1|a||true|2.5|1,2|[object Map]|[1, 2]|[3, 1, 2]|[3, 1, 2]");
    CHECK_RENDER(
        "{{ objs|map(attribute='name')|join(',') }}|{{ objs|map(attribute='sub.k')|list }}|"
        "{{ objs|map(attribute='missing', default='?')|list }}",
        "x,y,z|[1, 2, undefined]|[\"?\", \"?\", \"?\"]");
    CHECK_RENDER("{{ objs|selectattr('ok')|map(attribute='name')|list }}|"
                 "{{ objs|rejectattr('ok')|map(attribute='name')|list }}|"
                 "{{ objs|selectattr('name', 'equalto', 'y')|length }}|"
                 "{{ objs|sort(attribute='v')|map(attribute='name')|join }}|"
                 "{{ objs|selectattr('ok', 'defined')|length }}",
                 "[\"x\"]|[\"y\", \"z\"]|1|yxz|2");
    CHECK_RENDER(
        "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|"
        "{{ (messages|first).content }}|{{ messages[1:]|length }}|{{ range(3)|join(',') }}",
        "1|sys|2|0,1,2");
}

TEST(jinja_dict_filters_and_methods) {
    CHECK_RENDER("{{ d.get('a') }}|[{{ d.get('zz') }}]|{{ d.get('zz', 'dflt') }}|{{ d.keys() }}",
                 "2|[]|dflt|[\"2\", \"10\", \"b\", \"a\", \"C\"]");
    CHECK_RENDER(
        "{{ d.values() }}|{{ d|length }}|{{ {'a': 1}.items()|list }}|{{ {'a': 1}|items|list }}",
        "[\"y\", \"x\", 1, 2, 3]|5|[[\"a\", 1]]|[[\"a\", 1]]");
    CHECK_RENDER("{{ d|dictsort }}",
                 "[[\"10\", \"x\"], [\"2\", \"y\"], [\"a\", 2], [\"b\", 1], [\"C\", 3]]");
    CHECK_RENDER("{{ d|dictsort(true) }}",
                 "[[\"10\", \"x\"], [\"2\", \"y\"], [\"C\", 3], [\"a\", 2], [\"b\", 1]]");
}

TEST(jinja_default_filter) {
    CHECK_RENDER(
        "{{ missing|default('dflt') }}|[{{ e|default('dflt') }}]|{{ e|default('dflt', true) }}|"
        "[{{ nul|default('dflt') }}]|{{ n|default(0) }}|{{ fl|default('x', boolean=true) }}",
        "dflt|[]|dflt|[]|7|x");
}

TEST(jinja_tojson) {
    CHECK_RENDER(
        "{{ objs|tojson }}",
        "[{\"name\": \"x\", \"v\": 2, \"ok\": true, \"sub\": {\"k\": 1}}, {\"name\": \"y\", "
        "\"v\": 1, \"ok\": false, \"sub\": {\"k\": 2}}, {\"name\": \"z\", \"v\": 3}]");
    CHECK_RENDER("{{ u|tojson }}|{{ u|tojson(ensure_ascii=true) }}",
                 "\"\xc3\xbcn\xc3\xaf \xf0\x9f\x98\x80 \xce\xa3\xce\x91\xce\xa3 stra\xc3\x9f\x65\"|"
                 "\"\\u00fcn\\u00ef \\ud83d\\ude00 \\u03a3\\u0391\\u03a3 stra\\u00dfe\"");
    CHECK_RENDER("{{ 'q\"b\\\\n\t\x01'|tojson }}|{{ f|tojson }}|{{ 3.0|tojson }}|{{ nul|tojson }}|"
                 "{{ missing|tojson }}|{{ {}|tojson }}|{{ []|tojson(indent=2) }}",
                 "\"q\\\"b\\\\n\\t\\u0001\"|2.5|3|null|null|{}|[]");
    CHECK_RENDER(
        "{{ nested|tojson(indent=2) }}",
        "{\n  \"a\": {\n    \"b\": [\n      1,\n      {\n        \"c\": \"deep\"\n      }\n"
        "    ]\n  }\n}");
    CHECK_RENDER("{{ d|tojson(separators=(',', ':')) }}|{{ {'b': 1, 'a': {'d': 2, 'c': 3}}|"
                 "tojson(sort_keys=true) }}",
                 "{\"2\":\"y\",\"10\":\"x\",\"b\":1,\"a\":2,\"C\":3}|{\"a\": {\"c\": 3, \"d\": 2}, "
                 "\"b\": 1}");
    /* sort_keys follows localeCompare: punctuation, digits, then letters ignoring case */
    CHECK_RENDER_CTX("{{ k|tojson(sort_keys=true) }}",
                     "{\"k\": {\"zeta\": 1, \"Alpha\": 2, \"alpha\": 3, \"_x\": 4, \"1a\": 5, "
                     "\"a-b\": 6, \"a_b\": 7, \"B\": 8}}",
                     "{\"_x\": 4, \"1a\": 5, \"a_b\": 7, \"a-b\": 6, \"alpha\": 3, \"Alpha\": 2, "
                     "\"B\": 8, \"zeta\": 1}");
    CHECK_FAILS("{{ (1, 2)|tojson }}", SRP_EINVAL, "Cannot convert to JSON: TupleValue");
}

TEST(jinja_tests) {
    CHECK_RENDER(
        "{{ n is odd }}|{{ n is even }}|{{ n is number }}|{{ f is number }}|{{ n is integer }}|"
        "{{ f is integer }}|{{ s is string }}|{{ n is string }}",
        "true|false|true|true|true|false|true|false");
    CHECK_RENDER(
        "{{ d is mapping }}|{{ lst is mapping }}|{{ lst is iterable }}|{{ s is iterable }}|"
        "{{ d is iterable }}|{{ lst is sequence }}|{{ d is sequence }}|{{ (1,2) is iterable }}",
        "true|false|true|true|false|true|true|false");
    CHECK_RENDER("{{ nul is none }}|{{ missing is none }}|{{ missing is defined }}|"
                 "{{ missing is undefined }}|{{ n is defined }}|{{ t is true }}|{{ fl is false }}|"
                 "{{ t is boolean }}|{{ n is boolean }}|{{ n is not none }}",
                 "true|false|false|true|true|true|true|true|false|true");
    CHECK_RENDER(
        "{{ 'abc' is lower }}|{{ 'ABC' is upper }}|{{ 'aBc' is lower }}|{{ range is callable }}|"
        "{{ 1 is lower }}|{{ missing is upper }}",
        "true|true|false|true|false|false");
    /* extension: tests with arguments, which the reference cannot parse */
    CHECK_RENDER("{{ n is divisibleby(7) }}|{{ 10 is divisibleby 3 }}|{{ n is eq 7 }}|"
                 "{{ 2 is in(lst) }}|{{ n is gt(3) }}|{{ f is float }}",
                 "true|false|true|true|true|true");
    CHECK_FAILS("{{ n is nosuchtest }}", SRP_EINVAL, "Unknown test: nosuchtest");
    CHECK_FAILS("{{ f is odd }}", SRP_EINVAL, "cannot odd on FloatValue");
}

TEST(jinja_string_methods) {
    CHECK_RENDER("{{ s.strip() }}|{{ s.lstrip() }}|[{{ s.rstrip() }}]|{{ 'abc'.upper() }}|"
                 "{{ 'ABC'.lower() }}|{{ 'a b'.title() }}|{{ 'ab'.capitalize() }}",
                 "Hello, World!|Hello, World!  |[  Hello, World!]|ABC|abc|A B|Ab");
    /* like the reference, strip('\n') ignores its argument and strips all whitespace */
    CHECK_RENDER("[{{ '\n x \n'.strip('\n') }}]", "[x]");
    CHECK_RENDER(
        "{{ 'a,b,,c'.split(',') }}|{{ '  a  b c '.split() }}|{{ 'a b c d'.split(' ', 1) }}|"
        "{{ ' a b  c '.split(none, 1) }}|{{ 'a-b-c'.split('-', 0) }}|{{ 'abc'.split('x') }}",
        "[\"a\", \"b\", \"\", \"c\"]|[\"a\", \"b\", \"c\"]|[\"a\", \"b c d\"]|"
        "[\"a\", \"b  c \"]|[\"a-b-c\"]|[\"abc\"]");
    CHECK_RENDER("{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith('lo') }}|"
                 "{{ 'hello'.startswith(('x', 'h')) }}|{{ 'hello'.endswith('x') }}",
                 "true|true|true|false");
    CHECK_RENDER("{{ 'aaa'.replace('a', 'b') }}|{{ 'aaa'.replace('a', 'b', 2) }}|"
                 "{{ 'abc'.replace('', '-') }}|{{ 'a.b'.replace('.', '\\\\') }}",
                 "bbb|bba|-a-b-c-|a\\b");
    CHECK_RENDER("{% set c = messages[2].content %}{{ c.split('l')[-1] }}|{{ c.startswith('He') }}",
                 "o|true");
    CHECK_FAILS("{{ 'a'.split('') }}", SRP_EINVAL, "empty separator");
    /* extension: Python's str.format and str.join */
    CHECK_RENDER("{{ '{} and {}'.format('a', 1) }}|{{ '{0}{1}{0}'.format('x', 'y') }}|"
                 "{{ '{name}!'.format(name='N') }}|{{ ', '.join(strs) }}",
                 "a and 1|xyx|N!|b, A, c, a");
}

TEST(jinja_globals) {
    CHECK_RENDER("{{ range(3)|list }}|{{ range(1, 10, 3)|list }}|{{ range(5, 0, -2)|list }}|"
                 "{{ range(0) }}|{{ range(2, 5)|length }}",
                 "[0, 1, 2]|[1, 4, 7]|[5, 3, 1]|[]|3");
    CHECK_RENDER("{{ namespace(a=1, b=2)|tojson }}", "{\"a\": 1, \"b\": 2}");
    CHECK_RENDER(
        "{{ strftime_now('%Y')|length }}|{{ strftime_now('%%') }}|{{ strftime_now('x%qy') }}",
        "4|%|x%qy");
    CHECK_RENDER("{{ True }}{{ False }}[{{ None }}]{{ true }}", "truefalse[]true");
    CHECK_FAILS("{{ range(1, 2, 0) }}", SRP_EINVAL, "must not be zero");
}

TEST(jinja_extensions) {
    /* Jinja2 filters the reference lacks: d, default without arguments, round, escape, ... */
    CHECK_RENDER("{{ missing|d('x') }}|{{ missing|default }}|{{ lst|sum }}|{{ lst|min }}|"
                 "{{ lst|max }}|{{ 2.5|round }}|{{ 3.14159|round(2) }}",
                 "x||6|1|3|3.0|3.14");
    CHECK_RENDER("{{ '<a & \"b\">'|e }}|{{ 'one two  three'|wordcount }}|"
                 "{{ lst|select('odd')|list }}|{{ lst|reject('odd')|list }}|"
                 "{{ strs|map('upper')|list }}|{{ missing|length }}|{{ nul|string }}",
                 "&lt;a &amp; &#34;b&#34;&gt;|3|[3, 1]|[2]|[\"B\", \"A\", \"C\", \"A\"]|0|None");
}

TEST(jinja_selectattr_checks_its_test_first) {
    CHECK_FAILS("{{ objs|selectattr('nokey', 'nosuchtest')|list }}", SRP_EINVAL, "Unknown test");
    CHECK_FAILS("{{ objs|selectattr('name', 1)|list }}", SRP_EINVAL, "must be strings");
}

TEST(jinja_selectattr_with_tests) {
    CHECK_RENDER("{{ objs|selectattr('v', 'odd')|map(attribute='name')|join }}|"
                 "{{ objs|rejectattr('v', 'odd')|map(attribute='name')|join }}",
                 "yz|x");
}
