#include "json_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int starts_with(const char *s, const char *end, const char *word) {
    size_t n = strlen(word);
    return (size_t)(end - s) >= n && memcmp(s, word, n) == 0;
}

/* Copies text, replacing the bare tokens Infinity, -Infinity and NaN that appear outside
 * strings by objects cJSON can parse. */
static char *rewrite_nonfinite(const char *text, size_t len) {
    static const char *const forms[] = { "-Infinity", "Infinity", "NaN" };
    /* Every replaced token starts with 'N' or 'I' and grows by less than 24 bytes. */
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == 'N' || text[i] == 'I') count++;
    size_t cap = len + count * 24 + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t o = 0;
    int in_string = 0;
    const char *end = text + len;
    for (const char *p = text; p < end;) {
        char c = *p;
        if (in_string) {
            out[o++] = c;
            p++;
            if (c == '\\' && p < end)
                out[o++] = *p++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') in_string = 1;
        int replaced = 0;
        for (int f = 0; f < 3 && !replaced; f++) {
            if (starts_with(p, end, forms[f])) {
                o += (size_t)sprintf(out + o, "{\"__float__\":\"%s\"}", forms[f]);
                p += strlen(forms[f]);
                replaced = 1;
            }
        }
        if (!replaced) out[o++] = *p++;
    }
    out[o] = 0;
    return out;
}

static void line_col(const char *text, const char *at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

cJSON *srp_json_parse(const char *text, size_t len, const char *name, srp_err *e) {
    if (memchr(text, 0, len)) {
        srp_err_set(e, SRP_EFORMAT, "%s: not valid JSON (contains a NUL byte)", name);
        return NULL;
    }
    char *clean = rewrite_nonfinite(text, len);
    if (!clean) {
        srp_err_set(e, SRP_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    const char *errp = NULL;
    cJSON *root = cJSON_ParseWithOpts(clean, &errp, 1);
    if (!root) {
        int line = 0, col = 0;
        if (errp) line_col(clean, errp, &line, &col);
        srp_err_set(e, SRP_EFORMAT, "%s: not valid JSON (near line %d, column %d)", name, line,
                    col);
    }
    free(clean);
    return root;
}

cJSON *srp_json_load_file(const char *path, srp_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        srp_err_set(e, SRP_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? cap * 2 : 65536 * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                srp_err_set(e, SRP_ENOMEM, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        srp_err_set(e, SRP_EIO, "%s: read error", path);
        return NULL;
    }
    cJSON *root = srp_json_parse(buf ? buf : "", len, path, e);
    free(buf);
    return root;
}

int srp_json_number(const cJSON *item, double *out) {
    if (!item) return -1;
    if (cJSON_IsNumber(item)) {
        *out = item->valuedouble;
        return 0;
    }
    const cJSON *f =
        cJSON_IsObject(item) ? cJSON_GetObjectItemCaseSensitive(item, "__float__") : NULL;
    if (!cJSON_IsString(f)) return -1;
    const char *s = f->valuestring;
    if (!strcmp(s, "Infinity") || !strcmp(s, "inf"))
        *out = INFINITY;
    else if (!strcmp(s, "-Infinity") || !strcmp(s, "-inf"))
        *out = -INFINITY;
    else if (!strcmp(s, "NaN") || !strcmp(s, "nan"))
        *out = NAN;
    else
        return -1;
    return 0;
}
