/* JSON Schema to GBNF, shared between json_schema.c (the schema walk, objects, arrays, $ref)
 * and json_schema_types.c (the primitive rules, strings, formats, numbers). Private to
 * engine/grammar/. */
#ifndef SRP_JSON_SCHEMA_H
#define SRP_JSON_SCHEMA_H

#include <cjson/cJSON.h>

#include "grammar_internal.h"

enum { JS_MAX_DEPTH = 32, JS_MAX_NESTING = 128 };

typedef struct jsref {
    char *ref;
    char name[48];
} jsref;

typedef struct jsc {
    const cJSON *root;
    srp_err *e;
    gtext out; /* the rules so far */
    int n_names, nesting;
    jsref *refs;
    int n_refs, cap_refs;
    int any_used; /* the depth-bounded any-value rules are needed */
} jsc;

/* A fresh rule name "<kind>-<n>" into buf[48]. */
void js_name(jsc *c, const char *kind, char *buf);
/* Defines rule `name` as the schema s (at JSON path `path`). */
int js_visit(jsc *c, const cJSON *s, const char *path, const char *name);
/* Child paths ("$.properties.age", "$.anyOf[1]") into buf[512]. */
void js_path(char *buf, const char *path, const char *key, int index);

/* json_schema_types.c: the fixed rules (space, string, number, formats ...) every schema
 * grammar may use, and the depth-bounded any-value rules when c->any_used. */
void js_prelude(jsc *c);
/* Expressions for the schema s as a string, an integer or a number, appended to x. */
int js_string(jsc *c, const cJSON *s, const char *path, gtext *x);
int js_integer(jsc *c, const cJSON *s, const char *path, gtext *x);
int js_number(jsc *c, const cJSON *s, const char *path, gtext *x);

#endif
