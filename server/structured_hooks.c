/* Where constrained decoding (engine/grammar/grammar.h) will join the request path: tool_choice
 * "required" or a named function (chat and the Responses API) and the Responses API's
 * text.format. Until the grammar engine is wired in, both are 400s that say so; the callers
 * already parse the reply's tool calls (--tool-call-parser) and text like any other. */
#include "server.h"

int srv_tools_constrain(const srv_server *srv, const cJSON *tools, const cJSON *tool_choice,
                        srv_gen_opts *o, srv_error *e) {
    (void)srv;
    (void)tools;
    (void)o;
    const char *what = cJSON_IsString(tool_choice) ? tool_choice->valuestring : "a named tool";
    return srv_fail(e, 400, "tool_choice",
                    "'tool_choice' \"%s\" requires structured output, which is not implemented "
                    "yet; use \"auto\" (with --tool-call-parser) or \"none\"",
                    what);
}

int srv_text_format_constrain(const srv_server *srv, const cJSON *format, srv_gen_opts *o,
                              srv_error *e) {
    (void)srv;
    (void)o;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(format, "type");
    return srv_fail(e, 400, "text.format",
                    "'text.format' of type '%s' requires structured output, which is not "
                    "implemented yet",
                    cJSON_IsString(t) ? t->valuestring : "?");
}
