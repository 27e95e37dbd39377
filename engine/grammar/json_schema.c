/* JSON Schema to GBNF (then compiled by gbnf_parse.c): the walk over a schema, objects,
 * arrays, $ref, and the keywords serpent refuses.
 *
 * Objects: properties come in the schema's order; a required one must be there, an optional
 * one may be left out (linear rules: first_i / rest_i say whether a comma is due).
 * additionalProperties absent is false, as xgrammar's strict mode does and vLLM uses it (and
 * as OpenAI's strict structured outputs require): a reply holds only the listed properties.
 * An object schema with neither properties nor additionalProperties allows any object.
 * true or a schema allows extra properties after the listed ones (their names are not checked
 * against the listed ones). Arrays: prefixItems then items; with prefixItems and no items, no
 * more items (strict again). oneOf is read as anyOf (exclusivity is not enforced). A format
 * serpent does not know, and any keyword it cannot enforce, is SRP_EUNSUPPORTED naming the
 * keyword and its path; annotations are ignored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

static const char *const annotations[] = { "title",    "description", "default",  "examples",
                                           "$schema",  "$id",         "$comment", "deprecated",
                                           "readOnly", "writeOnly",   "$defs",    "definitions" };
static const char *const keywords[] = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "format",
};
#define N_OF(a) (int)(sizeof a / sizeof a[0])

static int in_list(const char *s, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, list[i])) return 1;
    return 0;
}

void js_name(jsc *c, const char *kind, char *buf) {
    snprintf(buf, 48, "%s-%d", kind, ++c->n_names);
}

void js_path(char *buf, const char *path, const char *key, int index) {
    if (index >= 0)
        snprintf(buf, 512, "%s.%s[%d]", path, key, index);
    else
        snprintf(buf, 512, "%s.%s", path, key);
}

static int unsupported(jsc *c, const char *path, const char *fmt, const char *arg) {
    char msg[300];
    snprintf(msg, sizeof msg, fmt, arg);
    return srp_err_set(c->e, SRP_EUNSUPPORTED, "%s: %s", path, msg);
}

static int malformed(jsc *c, const char *path, const char *what) {
    return srp_err_set(c->e, SRP_EFORMAT, "%s: %s", path, what);
}

/* The rule for a $ref, defined on first use (a recursive reference finds the name). */
static int resolve_ref(jsc *c, const cJSON *ref, const char *path, gtext *x) {
    if (!cJSON_IsString(ref)) return malformed(c, path, "'$ref' must be a string");
    const char *r = ref->valuestring;
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, r)) {
            gt_puts(x, c->refs[i].name);
            return 0;
        }
    if (r[0] != '#' || (r[1] && r[1] != '/'))
        return unsupported(c, path,
                           "'$ref' '%.200s' is not supported (only local #/... references)", r);
    const cJSON *target = c->root;
    for (const char *p = r + 1; *p && target;) {
        p++;
        char tok[256];
        size_t n = 0;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1')) ch = *++p == '0' ? '~' : '/';
            if (n + 1 < sizeof tok) tok[n++] = ch;
        }
        tok[n] = 0;
        target = cJSON_IsArray(target) ? cJSON_GetArrayItem(target, atoi(tok))
                                       : cJSON_GetObjectItemCaseSensitive(target, tok);
    }
    if (!target) return unsupported(c, path, "'$ref' '%.200s' points at nothing", r);
    if (c->n_refs == c->cap_refs) {
        int cap = c->cap_refs ? c->cap_refs * 2 : 8;
        jsref *p = realloc(c->refs, sizeof *p * (size_t)cap);
        if (!p) return srp_err_set(c->e, SRP_ENOMEM, "json schema: out of memory");
        c->refs = p;
        c->cap_refs = cap;
    }
    jsref *e = &c->refs[c->n_refs];
    e->ref = strdup(r);
    if (!e->ref) return srp_err_set(c->e, SRP_ENOMEM, "json schema: out of memory");
    js_name(c, "ref", e->name);
    c->n_refs++;
    char name[48];
    memcpy(name, e->name, sizeof name);
    gt_puts(x, name);
    return js_visit(c, target, r, name);
}

/* "<key as a JSON string>" space ":" space <value rule> */
static int property(jsc *c, const char *key, const cJSON *schema, const char *path, char *kv) {
    char val[48], sub[512];
    js_name(c, "kv", kv);
    js_name(c, "prop", val);
    js_path(sub, path, "properties", -1);
    snprintf(sub + strlen(sub), 512 - strlen(sub), ".%.200s", key);
    int rc = js_visit(c, schema, sub, val);
    if (rc) return rc;
    cJSON *k = cJSON_CreateString(key);
    char *json = k ? cJSON_PrintUnformatted(k) : NULL;
    cJSON_Delete(k);
    if (!json) return srp_err_set(c->e, SRP_ENOMEM, "json schema: out of memory");
    gt_printf(&c->out, "%s ::= ", kv);
    gt_literal(&c->out, json, strlen(json));
    gt_printf(&c->out, " space \":\" space %s\n", val);
    free(json);
    return 0;
}

static int object(jsc *c, const cJSON *s, const char *path, gtext *x) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props))
        return malformed(c, path, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return malformed(c, path, "'required' must be an array");
    /* an object schema listing no properties at all restricts nothing: any object */
    int any_extra = cJSON_IsTrue(ap) || (!ap && !props);
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next) {
        if (!cJSON_IsString(r)) return malformed(c, path, "'required' must list strings");
        /* a required extra property could not be enforced */
        if (!cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
            return unsupported(c, path, "required property '%.200s' is not in 'properties'",
                               r->valuestring);
    }
    char extra[48] = "", base[48], kv[48];
    if (any_extra || cJSON_IsObject(ap)) {
        char sub[512], val[48];
        js_path(sub, path, "additionalProperties", -1);
        if (any_extra) {
            c->any_used = 1;
            snprintf(val, sizeof val, "value");
        } else {
            js_name(c, "extra", val);
            int rc = js_visit(c, ap, sub, val);
            if (rc) return rc;
        }
        js_name(c, "kvx", extra);
        gt_printf(&c->out, "%s ::= string \":\" space %s\n", extra, val);
    } else if (ap && !cJSON_IsFalse(ap))
        return malformed(c, path, "'additionalProperties' must be a boolean or a schema");
    js_name(c, "obj", base);
    int n = cJSON_GetArraySize(props), i = 0;
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next, i++) {
        int rc = property(c, p->string, p, path, kv);
        if (rc) return rc;
        int required = 0;
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            required |= !strcmp(r->valuestring, p->string);
        /* first: nothing written yet; rest: a comma comes first */
        gt_printf(&c->out, "%s-f%d ::= %s %s-r%d", base, i, kv, base, i + 1);
        if (!required) gt_printf(&c->out, " | %s-f%d", base, i + 1);
        gt_printf(&c->out, "\n%s-r%d ::= \",\" space %s %s-r%d", base, i, kv, base, i + 1);
        if (!required) gt_printf(&c->out, " | %s-r%d", base, i + 1);
        gt_puts(&c->out, "\n");
    }
    if (extra[0])
        gt_printf(&c->out, "%s-f%d ::= (%s (\",\" space %s)*)?\n%s-r%d ::= (\",\" space %s)*\n",
                  base, n, extra, extra, base, n, extra);
    else
        gt_printf(&c->out, "%s-f%d ::= \"\"\n%s-r%d ::= \"\"\n", base, n, base, n);
    gt_printf(x, "\"{\" space %s-f0 \"}\" space", base);
    return 0;
}

/* The elements after the first j of an array: e[0..k) fixed, then x (or none) repeated. */
static void array_tail(gtext *x, char (*e)[48], int k, const char *rest, long lo, long hi, int j) {
    if (hi >= 0 && j >= hi) return;
    if (j < k) {
        gt_puts(x, j >= lo ? " (\",\" space " : " \",\" space ");
        gt_puts(x, e[j]);
        array_tail(x, e, k, rest, lo, hi, j + 1);
        if (j >= lo) gt_puts(x, ")?");
        return;
    }
    if (!rest[0]) return;
    long min = lo > j ? lo - j : 0;
    if (hi < 0)
        gt_printf(x, " (\",\" space %s){%ld,}", rest, min);
    else
        gt_printf(x, " (\",\" space %s){%ld,%ld}", rest, min, hi - j);
}

static int array(jsc *c, const cJSON *s, const char *path, gtext *x) {
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(s, "prefixItems");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minItems");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(s, "maxItems");
    if (prefix && !cJSON_IsArray(prefix))
        return malformed(c, path, "'prefixItems' must be an array");
    if (cJSON_IsArray(items))
        return unsupported(c, path, "'items' as an array is not supported (use '%s')",
                           "prefixItems");
    if ((mn && (!cJSON_IsNumber(mn) || mn->valuedouble < 0)) ||
        (mx && (!cJSON_IsNumber(mx) || mx->valuedouble < 0)))
        return malformed(c, path, "'minItems' and 'maxItems' must be non-negative integers");
    long lo = mn ? (long)mn->valuedouble : 0, hi = mx ? (long)mx->valuedouble : -1;
    if (lo > G_MAX_REPEAT || hi > G_MAX_REPEAT)
        return unsupported(c, path, "'minItems' / 'maxItems' above %s is not supported", "100000");
    int k = cJSON_GetArraySize(prefix);
    if (k > 1000) return unsupported(c, path, "more than %s 'prefixItems'", "1000");
    char(*e)[48] = calloc((size_t)(k ? k : 1), 48); /* the rule of each prefix item */
    char rest[48] = "", sub[512];                   /* the rule of the items after them */
    if (!e) return srp_err_set(c->e, SRP_ENOMEM, "json schema: out of memory");
    int rc = 0, i = 0;
    for (const cJSON *p = prefix ? prefix->child : NULL; p && !rc; p = p->next, i++) {
        js_path(sub, path, "prefixItems", i);
        js_name(c, "item", e[i]);
        rc = js_visit(c, p, sub, e[i]);
    }
    if (!rc && items && !cJSON_IsFalse(items) && !cJSON_IsTrue(items)) {
        js_path(sub, path, "items", -1);
        js_name(c, "item", rest);
        rc = js_visit(c, items, sub, rest);
    } else if (!rc && (cJSON_IsTrue(items) || (!items && !k))) {
        c->any_used = 1;
        snprintf(rest, sizeof rest, "value");
    }
    if (!rc && hi >= 0 && hi < lo)
        rc = unsupported(c, path, "'maxItems' is less than '%s'", "minItems");
    if (!rc && !rest[0] && lo > k)
        rc = unsupported(c, path, "'minItems' is more than the items '%s' allows", "prefixItems");
    if (!rc) {
        gt_puts(x, "\"[\" space");
        if (hi != 0 && (k || rest[0])) {
            gt_puts(x, " (");
            gt_puts(x, k ? e[0] : rest);
            if (k)
                array_tail(x, e, k, rest, lo, hi, 1);
            else if (hi < 0)
                gt_printf(x, " (\",\" space %s){%ld,}", rest, lo > 1 ? lo - 1 : 0);
            else
                gt_printf(x, " (\",\" space %s){%ld,%ld}", rest, lo > 1 ? lo - 1 : 0, hi - 1);
            gt_puts(x, lo ? ")" : ")?");
        }
        gt_puts(x, " \"]\" space");
    }
    free(e);
    return rc;
}

static int literal_value(jsc *c, const cJSON *v, gtext *x) {
    char *json = cJSON_PrintUnformatted(v);
    if (!json) return srp_err_set(c->e, SRP_ENOMEM, "json schema: out of memory");
    gt_literal(x, json, strlen(json));
    gt_puts(x, " space");
    free(json);
    return 0;
}

static int one_type(jsc *c, const cJSON *s, const char *type, const char *path, gtext *x) {
    if (!strcmp(type, "object")) return object(c, s, path, x);
    if (!strcmp(type, "array")) return array(c, s, path, x);
    if (!strcmp(type, "string")) return js_string(c, s, path, x);
    if (!strcmp(type, "integer")) return js_integer(c, s, path, x);
    if (!strcmp(type, "number")) return js_number(c, s, path, x);
    if (!strcmp(type, "boolean") || !strcmp(type, "null")) {
        gt_puts(x, type);
        return 0;
    }
    return unsupported(c, path, "type '%.100s' is not a JSON Schema type", type);
}

/* Alternatives over the schemas of an anyOf / oneOf. */
static int alternatives(jsc *c, const cJSON *list, const char *key, const char *path, gtext *x) {
    if (!cJSON_IsArray(list) || !list->child)
        return malformed(c, path, "'anyOf' / 'oneOf' must be a non-empty array");
    int i = 0;
    gt_puts(x, "(");
    for (const cJSON *it = list->child; it; it = it->next, i++) {
        char name[48], sub[512];
        js_name(c, "alt", name);
        js_path(sub, path, key, i);
        int rc = js_visit(c, it, sub, name);
        if (rc) return rc;
        gt_printf(x, "%s%s", i ? " | " : "", name);
    }
    gt_puts(x, ")");
    return 0;
}

static int schema_expr(jsc *c, const cJSON *s, const char *path, gtext *x) {
    if (cJSON_IsTrue(s)) {
        c->any_used = 1;
        gt_puts(x, "value");
        return 0;
    }
    if (cJSON_IsFalse(s)) return unsupported(c, path, "the schema %s matches nothing", "false");
    if (!cJSON_IsObject(s)) return malformed(c, path, "a schema must be an object or a boolean");
    int n_kw = 0;
    for (const cJSON *k = s->child; k; k = k->next) {
        if (in_list(k->string, annotations, N_OF(annotations))) continue;
        if (!in_list(k->string, keywords, N_OF(keywords)))
            return unsupported(c, path, "'%.100s' is not supported", k->string);
        n_kw++;
    }
    static const char *const alone[] = { "$ref", "anyOf", "oneOf", "allOf" };
    for (int i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, alone[i]);
        if (!v) continue;
        if (n_kw > 1)
            return unsupported(c, path, "'%s' next to other keywords is not supported", alone[i]);
        if (i == 0) return resolve_ref(c, v, path, x);
        if (i < 3) return alternatives(c, v, alone[i], path, x);
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 1)
            return unsupported(c, path, "'allOf' is supported with %s item only", "one");
        char sub[512];
        js_path(sub, path, "allOf", 0);
        return schema_expr(c, v->child, sub, x);
    }
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (cv) return literal_value(c, cv, x);
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    if (en) {
        if (!cJSON_IsArray(en) || !en->child)
            return malformed(c, path, "'enum' must be a non-empty array");
        gt_puts(x, "(");
        for (const cJSON *v = en->child; v; v = v->next) {
            if (v != en->child) gt_puts(x, " | ");
            int rc = literal_value(c, v, x);
            if (rc) return rc;
        }
        gt_puts(x, ")");
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (cJSON_IsString(type)) return one_type(c, s, type->valuestring, path, x);
    if (cJSON_IsArray(type) && type->child) {
        gt_puts(x, "(");
        for (const cJSON *t = type->child; t; t = t->next) {
            if (!cJSON_IsString(t)) return malformed(c, path, "'type' must list strings");
            if (t != type->child) gt_puts(x, " | ");
            int rc = one_type(c, s, t->valuestring, path, x);
            if (rc) return rc;
        }
        gt_puts(x, ")");
        return 0;
    }
    if (type) return malformed(c, path, "'type' must be a string or a non-empty array");
    /* no type: the one its keywords belong to, or any value */
    static const char *const by_kw[][2] = {
        { "properties", "object" },       { "additionalProperties", "object" },
        { "required", "object" },         { "items", "array" },
        { "prefixItems", "array" },       { "minItems", "array" },
        { "maxItems", "array" },          { "minLength", "string" },
        { "maxLength", "string" },        { "pattern", "string" },
        { "format", "string" },           { "minimum", "number" },
        { "maximum", "number" },          { "exclusiveMinimum", "number" },
        { "exclusiveMaximum", "number" },
    };
    for (int i = 0; i < N_OF(by_kw); i++)
        if (cJSON_GetObjectItemCaseSensitive(s, by_kw[i][0]))
            return one_type(c, s, by_kw[i][1], path, x);
    c->any_used = 1;
    gt_puts(x, "value");
    return 0;
}

int js_visit(jsc *c, const cJSON *s, const char *path, const char *name) {
    if (++c->nesting > JS_MAX_NESTING) {
        c->nesting--;
        return unsupported(c, path, "schemas nested deeper than %s are not supported", "128");
    }
    gtext x = { 0 };
    int rc = schema_expr(c, s, path, &x);
    c->nesting--;
    if (!rc && x.oom) rc = srp_err_set(c->e, SRP_ENOMEM, "json schema: out of memory");
    if (!rc) {
        gt_printf(&c->out, "%s ::= ", name);
        gt_put(&c->out, x.s, x.n);
        gt_puts(&c->out, "\n");
    }
    free(x.s);
    return rc;
}

static int compile(jsc *c, const char *what, srp_grammar **out, srp_err *e) {
    js_prelude(c);
    int rc;
    if (c->out.oom)
        rc = srp_err_set(e, SRP_ENOMEM, "%s: out of memory", what);
    else {
        rc = srp_grammar_gbnf(c->out.s, c->out.n, out, e);
        if (rc) srp_err_prefix(e, "%s (the grammar it became)", what);
    }
    free(c->out.s);
    for (int i = 0; i < c->n_refs; i++) free(c->refs[i].ref);
    free(c->refs);
    return rc;
}

int srp_grammar_json_schema(const char *schema, size_t len, srp_grammar **out, srp_err *e) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(schema, len);
    if (!root) return srp_err_set(e, SRP_EFORMAT, "json schema: not valid JSON");
    jsc c = { .root = root, .e = e };
    int rc = js_visit(&c, root, "$", "root");
    if (rc) {
        free(c.out.s);
        for (int i = 0; i < c.n_refs; i++) free(c.refs[i].ref);
        free(c.refs);
    } else
        rc = compile(&c, "json schema", out, e);
    cJSON_Delete(root);
    return rc;
}

int srp_grammar_json_object(srp_grammar **out, srp_err *e) {
    *out = NULL;
    jsc c = { .e = e, .any_used = 1 };
    gt_puts(&c.out, "root ::= o0\n");
    return compile(&c, "json object", out, e);
}
