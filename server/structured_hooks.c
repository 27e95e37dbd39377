/* Tool calls forced by constrained decoding, as vLLM forces them: tool_choice "required" or a
 * named function constrains the reply to a JSON list of calls [{"name", "parameters"}] (one
 * call of that function when named, one at most with parallel_tool_calls false) whose
 * parameters follow each function's own JSON Schema, so the arguments always validate; the
 * list is then parsed as the calls (srv_tool_parser_json_list). */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "tool_parsers.h"

static cJSON *call_schema(const cJSON *fn, const char *name) {
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "object");
    cJSON *props = cJSON_AddObjectToObject(s, "properties");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "name"), "const", name);
    if (cJSON_IsObject(params) && cJSON_GetArraySize(params) > 0)
        cJSON_AddItemToObject(props, "parameters", cJSON_Duplicate(params, 1));
    else /* a function without parameters takes an empty object */
        cJSON_AddItemToObject(props, "parameters",
                              cJSON_Parse("{\"type\":\"object\",\"properties\":{},"
                                          "\"additionalProperties\":false}"));
    cJSON *req = cJSON_AddArrayToObject(s, "required");
    cJSON_AddItemToArray(req, cJSON_CreateString("name"));
    cJSON_AddItemToArray(req, cJSON_CreateString("parameters"));
    cJSON_AddFalseToObject(s, "additionalProperties");
    return s;
}

int srv_tools_constrain(const srv_server *srv, const cJSON *tools, const cJSON *tool_choice,
                        int parallel, srv_gen_opts *o, srv_error *e) {
    const char *only = NULL; /* a named function */
    if (cJSON_IsObject(tool_choice)) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(srv_tool_function(tool_choice), "name");
        if (!cJSON_IsString(n))
            return srv_fail(e, 400, "tool_choice", "'tool_choice' names no function");
        only = n->valuestring;
    }
    cJSON *schema = cJSON_CreateObject();
    cJSON_AddStringToObject(schema, "type", "array");
    cJSON_AddNumberToObject(schema, "minItems", 1);
    if (only || !parallel) cJSON_AddNumberToObject(schema, "maxItems", 1);
    cJSON *any = cJSON_AddArrayToObject(cJSON_AddObjectToObject(schema, "items"), "anyOf");
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = srv_tool_function(t);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(name) || !name->valuestring[0]) {
            cJSON_Delete(schema);
            return srv_fail(e, 400, "tools", "'tools[%d]' has no function name", i);
        }
        if (!only || !strcmp(only, name->valuestring))
            cJSON_AddItemToArray(any, call_schema(fn, name->valuestring));
        i++;
    }
    if (cJSON_GetArraySize(any) == 0) {
        cJSON_Delete(schema);
        return srv_fail(e, 400, "tool_choice", "'tool_choice' names '%s', which is not in 'tools'",
                        only);
    }
    char *text = cJSON_PrintUnformatted(schema);
    cJSON_Delete(schema);
    if (!text) return srv_fail(e, 500, NULL, "out of memory");
    /* the only schema here the client wrote is the functions' parameters */
    int rc = srv_grammar_get(srv, 'j', text, strlen(text), "tools", &o->grammar, e);
    free(text);
    if (rc) return -1;
    o->forced_tools = 1;
    return 0;
}
