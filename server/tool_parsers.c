/* The tool-call formats. Three wrap each call (or list of calls) in a start and an end marker
 * and differ in what is inside (a JSON object, a JSON list, Qwen3-Coder's XML); granite's
 * reply is a marker and one JSON list up to the end, so it is decided only once the reply is
 * complete. The behaviour follows vLLM's parsers of the same names: a call that does not parse
 * is left in the content. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "text.h"
#include "tool_parsers.h"

typedef enum { WRAP_JSON_OBJECT, WRAP_JSON_LIST, WRAP_XML, WHOLE_JSON_LIST } body_kind;

struct srv_tool_parser {
    const char *name;
    body_kind kind;
    const char *start, *end; /* the markers (granite: the two optional starts) */
};

static const srv_tool_parser parsers[] = {
    { "hermes", WRAP_JSON_OBJECT, "<tool_call>", "</tool_call>" },
    { "qwen3_coder", WRAP_XML, "<tool_call>", "</tool_call>" },
    { "nemotron_v2", WRAP_JSON_LIST, "<TOOLCALL>", "</TOOLCALL>" },
    { "granite", WHOLE_JSON_LIST, "<|tool_call|>", "<tool_call>" },
};

/* other names for the same formats: vLLM's qwen3_xml, NVIDIA's Nemotron Nano v2 plugin
 * (nemotron_json) and vLLM's Llama-Nemotron parser, which reads the same <TOOLCALL> list */
static const struct {
    const char *alias;
    int index;
} aliases[] = { { "qwen3_xml", 1 }, { "nemotron_json", 2 }, { "llama_nemotron_json", 2 } };

/* tool_choice required / named: the reply is a JSON list of calls, which the grammar forced
 * (structured_hooks.c); granite's scan with no markers reads it */
static const srv_tool_parser json_list = { "json_list", WHOLE_JSON_LIST, "", "" };

const srv_tool_parser *srv_tool_parser_json_list(void) {
    return &json_list;
}

const srv_tool_parser *srv_tool_parser_find(const char *name) {
    for (size_t i = 0; i < sizeof parsers / sizeof parsers[0]; i++)
        if (!strcmp(parsers[i].name, name)) return &parsers[i];
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(aliases[i].alias, name)) return &parsers[aliases[i].index];
    return NULL;
}

const char *srv_tool_parser_names(void) {
    return "hermes, qwen3_coder (or qwen3_xml), nemotron_v2 (or nemotron_json, "
           "llama_nemotron_json), granite";
}

void srv_tool_out_free(srv_tool_out *o) {
    free(o->content);
    for (int i = 0; i < o->n_calls; i++) {
        free(o->calls[i].name);
        free(o->calls[i].arguments);
    }
    free(o->calls);
    memset(o, 0, sizeof *o);
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void srv_tool_call_id(char *id) {
    static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static atomic_ulong counter;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    /* ids need to be unique, not secret: the clock and a counter through a mixer */
    uint64_t x = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 32) ^
                 ((uint64_t)atomic_fetch_add(&counter, 1) << 48);
    memcpy(id, "call_", 5);
    uint64_t r = 0;
    for (int i = 0; i < 24; i++) {
        if (i % 8 == 0) r = splitmix(&x);
        id[5 + i] = abc[r % 62];
        r /= 62;
    }
    id[29] = 0;
}

static int add_content(srv_tool_out *o, const char *s, size_t n) {
    if (!n) return 0;
    return srv_buf_append_utf8(&o->content, &o->len, &o->cap, s, n);
}

/* Takes name and arguments (malloc'ed) as a new call. */
static int add_call(srv_tool_out *o, char *name, char *args) {
    if (o->n_calls == o->cap_calls) {
        int cap = o->cap_calls ? o->cap_calls * 2 : 4;
        srv_tool_call *nc = realloc(o->calls, (size_t)cap * sizeof *nc);
        if (!nc) {
            free(name);
            free(args);
            return -1;
        }
        o->calls = nc;
        o->cap_calls = cap;
    }
    srv_tool_call *c = &o->calls[o->n_calls++];
    c->name = name;
    c->arguments = args;
    srv_tool_call_id(c->id);
    return 0;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* s[0..n) as one JSON value with nothing but whitespace around it, or NULL. */
static cJSON *parse_json(const char *s, size_t n) {
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!v) return NULL;
    while (end && end < s + n && is_space(*end)) end++;
    if (end != s + n) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* {"name": ..., "arguments": ...} as a call: 1, 0 when it is not one, -1 out of memory.
 * Arguments given as a string of JSON are taken as they are (some models write them so). */
static int json_call(const cJSON *obj, srv_tool_out *o) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(obj, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(obj, "parameters"); /* Llama's word */
    if (!cJSON_IsObject(obj) || !cJSON_IsString(name) || !name->valuestring[0]) return 0;
    char *a = NULL;
    if (!args || cJSON_IsNull(args)) {
        a = strdup("{}");
    } else if (cJSON_IsString(args)) {
        cJSON *inner = parse_json(args->valuestring, strlen(args->valuestring));
        a = inner ? strdup(args->valuestring) : cJSON_PrintUnformatted(args);
        cJSON_Delete(inner);
    } else {
        a = cJSON_PrintUnformatted(args);
    }
    char *n = strdup(name->valuestring);
    if (!a || !n) {
        free(a);
        free(n);
        return -1;
    }
    return add_call(o, n, a) ? -1 : 1;
}

const cJSON *srv_tool_function(const cJSON *tool) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(tool, "function");
    return cJSON_IsObject(f) ? f : tool;
}

/* The schema type of a tool's parameter: its "type" (the first non-null of a list), or NULL
 * when the tool or the parameter is not described. */
static const char *param_type(const cJSON *tools, const char *fn, const char *param) {
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *f = srv_tool_function(t);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        if (!cJSON_IsString(name) || strcmp(name->valuestring, fn)) continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(params, "properties");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(props, param);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (cJSON_IsString(type)) return type->valuestring;
        const cJSON *ty;
        cJSON_ArrayForEach(ty, type) if (cJSON_IsString(ty) &&
                                         strcmp(ty->valuestring, "null")) return ty->valuestring;
        return p ? "object" : NULL; /* described without a type: any JSON */
    }
    return NULL;
}

static int starts(const char *s, const char *prefix) {
    return !strncmp(s, prefix, strlen(prefix));
}

/* A Qwen3-Coder parameter value as JSON, by its schema type (as vLLM's qwen3_coder): strings
 * stay text; numbers, booleans, objects and lists are parsed, and stay text when they do not
 * parse; "null" is null. */
static cJSON *xml_value(const char *type, const char *v) {
    if (!strcasecmp(v, "null")) return cJSON_CreateNull();
    if (!type || !strcmp(type, "string") || starts(type, "str") || !strcmp(type, "text") ||
        !strcmp(type, "enum"))
        return cJSON_CreateString(v);
    cJSON *j = parse_json(v, strlen(v));
    int ok = 0;
    if (j && (starts(type, "int") || starts(type, "uint") || starts(type, "long")))
        ok = cJSON_IsNumber(j) && j->valuedouble == (double)(long long)j->valuedouble;
    else if (j && (starts(type, "num") || starts(type, "float") || starts(type, "double")))
        ok = cJSON_IsNumber(j);
    else if (j && starts(type, "bool"))
        ok = cJSON_IsBool(j);
    else
        ok = j != NULL;
    if (ok) return j;
    cJSON_Delete(j);
    return cJSON_CreateString(v);
}

/* Finds s[i..n) == lit at or after i: its position or n. */
static size_t find(const char *s, size_t n, size_t i, const char *lit) {
    size_t l = strlen(lit);
    for (; i + l <= n; i++)
        if (!memcmp(s + i, lit, l)) return i;
    return n;
}

/* <function=NAME> <parameter=P>VALUE</parameter>... </function> as a call: 1, 0, -1. */
static int xml_call(const char *b, size_t n, const cJSON *tools, srv_tool_out *o) {
    size_t i = 0;
    while (i < n && is_space(b[i])) i++;
    static const char fn_open[] = "<function=", p_open[] = "<parameter=";
    if (n - i < sizeof fn_open - 1 || memcmp(b + i, fn_open, sizeof fn_open - 1)) return 0;
    i += sizeof fn_open - 1;
    size_t gt = find(b, n, i, ">");
    size_t nl = gt;
    while (nl > i && is_space(b[nl - 1])) nl--;
    if (gt == n || nl == i) return 0;
    char *name = dup_n(b + i, nl - i);
    cJSON *args = cJSON_CreateObject();
    int rc = name && args ? 0 : -1;
    i = gt + 1;
    for (;;) {
        if (rc) break;
        while (i < n && is_space(b[i])) i++;
        if (n - i >= 11 && !memcmp(b + i, "</function>", 11)) {
            i += 11;
            while (i < n && is_space(b[i])) i++;
            rc = i == n ? 1 : 0;
            break;
        }
        if (n - i < sizeof p_open - 1 || memcmp(b + i, p_open, sizeof p_open - 1)) break;
        i += sizeof p_open - 1;
        gt = find(b, n, i, ">");
        if (gt == n || gt == i) break;
        char *pname = dup_n(b + i, gt - i);
        i = gt + 1;
        /* the value ends at </parameter>; a model that forgets it ends it at the next one */
        size_t end = find(b, n, i, "</parameter>"), next = find(b, n, i, p_open);
        size_t fend = find(b, n, i, "</function>");
        size_t vend = end < next && end < fend ? end : next < fend ? next : fend;
        if (vend == n || !pname) {
            free(pname);
            rc = pname ? 0 : -1;
            break;
        }
        size_t vs = i, ve = vend;
        if (vs < ve && b[vs] == '\n') vs++; /* the format's own newlines around the value */
        if (ve > vs && b[ve - 1] == '\n') ve--;
        char *v = dup_n(b + vs, ve - vs);
        cJSON *jv = v ? xml_value(param_type(tools, name, pname), v) : NULL;
        free(v);
        if (!jv) {
            free(pname);
            rc = -1;
            break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(args, pname);
        cJSON_AddItemToObject(args, pname, jv);
        free(pname);
        i = vend == end ? end + 12 : vend;
    }
    if (rc == 1) {
        char *a = cJSON_PrintUnformatted(args);
        cJSON_Delete(args);
        if (!a) {
            free(name);
            return -1;
        }
        return add_call(o, name, a) ? -1 : 1;
    }
    free(name);
    cJSON_Delete(args);
    return rc;
}

/* The calls of one body into a scratch out, so that a body that fails adds nothing: 1 (the
 * calls are moved into o), 0 (not calls), -1 out of memory. */
static int body_calls(const srv_tool_parser *p, const char *b, size_t n, const cJSON *tools,
                      srv_tool_out *o) {
    srv_tool_out tmp = { 0 };
    int rc = 0;
    if (p->kind == WRAP_XML) {
        rc = xml_call(b, n, tools, &tmp);
    } else {
        cJSON *j = parse_json(b, n);
        if (j && p->kind == WRAP_JSON_OBJECT) {
            rc = json_call(j, &tmp);
        } else if (j && cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0) {
            const cJSON *it;
            rc = 1;
            cJSON_ArrayForEach(it, j) if (rc == 1) rc = json_call(it, &tmp);
        }
        cJSON_Delete(j);
    }
    for (int i = 0; rc == 1 && i < tmp.n_calls; i++) {
        if (add_call(o, tmp.calls[i].name, tmp.calls[i].arguments)) {
            tmp.calls[i].name = tmp.calls[i].arguments = NULL;
            rc = -1;
            break;
        }
        memcpy(o->calls[o->n_calls - 1].id, tmp.calls[i].id, sizeof tmp.calls[i].id);
        tmp.calls[i].name = tmp.calls[i].arguments = NULL;
    }
    srv_tool_out_free(&tmp);
    return rc;
}

/* Longest suffix of s[0..n) that is a proper prefix of lit. */
static size_t partial_suffix(const char *s, size_t n, const char *lit) {
    size_t l = strlen(lit);
    for (size_t k = l - 1 < n ? l - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, lit, k)) return k;
    return 0;
}

static int scan_wrapped(srv_tool_scan *s, const char *text, size_t len, int final,
                        srv_tool_out *out) {
    const srv_tool_parser *p = s->p;
    const size_t sl = strlen(p->start), el = strlen(p->end);
    while (s->pos < len) {
        size_t at = find(text, len, s->pos, p->start);
        if (at == len) {
            size_t keep = final ? 0 : partial_suffix(text + s->pos, len - s->pos, p->start);
            if (add_content(out, text + s->pos, len - s->pos - keep)) return -1;
            s->pos = len - keep;
            return 0;
        }
        if (add_content(out, text + s->pos, at - s->pos)) return -1;
        s->pos = at;
        size_t end = find(text, len, at + sl, p->end);
        if (end == len) { /* unclosed: wait for the rest, or it stays text */
            if (!final) return 0;
            if (add_content(out, text + at, len - at)) return -1;
            s->pos = len;
            return 0;
        }
        int rc = body_calls(p, text + at + sl, end - at - sl, s->tools, out);
        if (rc < 0) return -1;
        if (rc == 0 && add_content(out, text + at, end + el - at)) return -1;
        s->pos = end + el;
    }
    return 0;
}

/* granite: the whole reply (trimmed) is an optional marker and then one JSON list of calls,
 * or it is all content (vLLM's granite parser); state 1: known to be content. */
static int scan_granite(srv_tool_scan *s, const char *text, size_t len, int final,
                        srv_tool_out *out) {
    const srv_tool_parser *p = s->p;
    if (s->state == 0) {
        size_t i = 0;
        while (i < len && is_space(text[i])) i++;
        const char *r = text + i;
        size_t rl = len - i, ml = 0;
        if (rl >= strlen(p->start) && !memcmp(r, p->start, strlen(p->start)))
            ml = strlen(p->start);
        else if (rl >= strlen(p->end) && !memcmp(r, p->end, strlen(p->end)))
            ml = strlen(p->end);
        int maybe = 0;
        if (ml) {
            size_t j = ml;
            while (j < rl && is_space(r[j])) j++;
            maybe = j == rl || r[j] == '[';
        } else {
            maybe = rl == 0 || r[0] == '[' || !strncmp(p->start, r, rl) || !strncmp(p->end, r, rl);
        }
        if (maybe && !final) return 0; /* decided only by the whole reply */
        if (maybe && rl > ml) {
            int rc = body_calls(p, r + ml, rl - ml, s->tools, out);
            if (rc < 0) return -1;
            if (rc == 1) {
                s->pos = len;
                s->state = 2;
                return 0;
            }
        }
        s->state = 1;
    }
    if (s->state == 1 && add_content(out, text + s->pos, len - s->pos)) return -1;
    s->pos = len;
    return 0;
}

int srv_tool_scan_feed(srv_tool_scan *s, const char *text, size_t len, int final,
                       srv_tool_out *out) {
    if (s->pos >= len) return 0;
    if (s->p->kind == WHOLE_JSON_LIST) return scan_granite(s, text, len, final, out);
    return scan_wrapped(s, text, len, final, out);
}
