/* Reading the JSON files that sit beside a checkpoint (config.json, the safetensors index,
 * tokenizer_config.json). Python's json module writes Infinity, -Infinity and NaN, which are not
 * JSON; transformers writes {"__float__": "Infinity"} instead. Both are accepted here. */
#ifndef SRP_JSON_FILE_H
#define SRP_JSON_FILE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "status.h"

/* Parses text (len bytes) into a cJSON tree owned by the caller (cJSON_Delete). Non-standard
 * numbers are rewritten to {"__float__": "..."} objects first. `name` is used in messages. */
cJSON *srp_json_parse(const char *text, size_t len, const char *name, srp_err *e);

/* Reads and parses a whole file. */
cJSON *srp_json_load_file(const char *path, srp_err *e);

/* Reads a number: a JSON number or a {"__float__": "Infinity"|"-Infinity"|"NaN"} object.
 * Returns 0 and sets *out, or -1 if item is neither. */
int srp_json_number(const cJSON *item, double *out);

#endif
