/* Compares serpent's chat-template renderer with the reference renderer, byte for byte.
 *
 *   chat_template_ref REFERENCE.json [-v]
 *
 * REFERENCE.json comes from render_reference.js: templates, contexts, and for each case the
 * reference's output or error. A case passes when both render the same bytes, or both fail
 * (and a raise_exception message is the same). Where only the reference fails, with an error
 * of its own rather than a raised one, serpent may render (it implements some Jinja the
 * reference lacks); such cases are counted apart. Prints "N passed, N failed" last. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "json_file.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static void show_diff(const char *want, const char *got, size_t got_len) {
    size_t wl = strlen(want), i = 0;
    while (i < wl && i < got_len && want[i] == got[i]) i++;
    size_t from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "    first difference at byte %zu (reference %zu bytes, serpent %zu)\n", i, wl,
            got_len);
    fprintf(stderr, "    reference: ...%.*s|%.*s\n", (int)(i - from), want + from,
            (int)(wl - i < 80 ? wl - i : 80), want + i);
    fprintf(stderr, "    serpent:   ...%.*s|%.*s\n", (int)(i - from), got + from,
            (int)(got_len - i < 80 ? got_len - i : 80), got + i);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s REFERENCE.json [-v]\n", argv[0]);
        return 2;
    }
    bool verbose = argc > 2 && !strcmp(argv[2], "-v");
    size_t len;
    char *text = slurp(argv[1], &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    srp_err e = { 0 };
    cJSON *root = srp_json_parse(text, len, argv[1], &e);
    free(text);
    if (!root) {
        fprintf(stderr, "%s\n", e.msg);
        return 2;
    }
    const cJSON *templates = cJSON_GetObjectItem(root, "templates");
    const cJSON *contexts = cJSON_GetObjectItem(root, "contexts");
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int nt = cJSON_GetArraySize(templates), nc = cJSON_GetArraySize(contexts);
    srp_chat_template **compiled = calloc((size_t)nt, sizeof *compiled);
    char **compile_err = calloc((size_t)nt, sizeof *compile_err);
    int *tmpl_failed = calloc((size_t)nt, sizeof *tmpl_failed);
    cJSON **msgs = calloc((size_t)nc, sizeof *msgs), **vars = calloc((size_t)nc, sizeof *vars);
    if (!compiled || !compile_err || !tmpl_failed || !msgs || !vars) return 2;
    for (int i = 0; i < nt; i++) {
        const char *t =
            cJSON_GetObjectItem(cJSON_GetArrayItem(templates, i), "template")->valuestring;
        if (srp_chat_template_compile(t, strlen(t), &compiled[i], &e))
            compile_err[i] = strdup(e.msg);
    }
    for (int i = 0; i < nc; i++) {
        vars[i] =
            cJSON_Duplicate(cJSON_GetObjectItem(cJSON_GetArrayItem(contexts, i), "context"), 1);
        msgs[i] = cJSON_DetachItemFromObject(vars[i], "messages");
    }
    int passed = 0, failed = 0, both_failed = 0, extension = 0, shown = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        int ti = cJSON_GetObjectItem(c, "template")->valueint;
        int ci = cJSON_GetObjectItem(c, "context")->valueint;
        const char *tname =
            cJSON_GetObjectItem(cJSON_GetArrayItem(templates, ti), "name")->valuestring;
        const char *cname =
            cJSON_GetObjectItem(cJSON_GetArrayItem(contexts, ci), "name")->valuestring;
        bool ref_ok = cJSON_IsTrue(cJSON_GetObjectItem(c, "ok"));
        const cJSON *rout = cJSON_GetObjectItem(c, ref_ok ? "output" : "error");
        bool raised = !ref_ok && cJSON_IsTrue(cJSON_GetObjectItem(c, "raised"));
        char *out = NULL;
        size_t out_len = 0;
        int rc;
        if (compiled[ti]) {
            rc = srp_chat_template_render(compiled[ti], msgs[ci], vars[ci], NULL, &out, &out_len,
                                          &e);
        } else {
            rc = SRP_EFORMAT;
            snprintf(e.msg, sizeof e.msg, "%s", compile_err[ti]);
        }
        const char *why = NULL;
        bool ours_raised = rc && strncmp(e.msg, "chat template:", 14) != 0;
        if (ref_ok && rc)
            why = "serpent failed where the reference rendered";
        else if (ref_ok && (out_len != strlen(rout->valuestring) ||
                            memcmp(out, rout->valuestring, out_len) != 0))
            why = "outputs differ";
        else if (raised && !rc)
            why = "the reference raised an exception, serpent rendered";
        else if (raised && (!ours_raised || strcmp(e.msg, rout->valuestring) != 0))
            why = "raised messages differ";
        if (why) {
            failed++;
            tmpl_failed[ti]++;
            if (shown++ < 40 || verbose) {
                fprintf(stderr, "FAIL %s on %s: %s\n", tname, cname, why);
                if (rc) fprintf(stderr, "    serpent: %s\n", e.msg);
                if (!ref_ok) fprintf(stderr, "    reference error: %s\n", rout->valuestring);
                if (ref_ok && !rc) show_diff(rout->valuestring, out, out_len);
            }
        } else {
            passed++;
            if (!ref_ok && !rc) {
                extension++;
                if (verbose)
                    fprintf(stderr, "note %s on %s: the reference failed (%s), serpent rendered\n",
                            tname, cname, rout->valuestring);
            } else if (!ref_ok) {
                both_failed++;
            }
        }
        free(out);
    }
    int bad_templates = 0;
    for (int i = 0; i < nt; i++) bad_templates += tmpl_failed[i] > 0;
    printf("templates: %d (%d with a failing case); cases where both failed: %d; "
           "where only the reference failed and serpent rendered: %d\n",
           nt, bad_templates, both_failed, extension);
    printf("%d passed, %d failed\n", passed, failed);
    for (int i = 0; i < nt; i++) srp_chat_template_free(compiled[i]), free(compile_err[i]);
    for (int i = 0; i < nc; i++) cJSON_Delete(msgs[i]), cJSON_Delete(vars[i]);
    free(compiled);
    free(compile_err);
    free(tmpl_failed);
    free(msgs);
    free(vars);
    cJSON_Delete(root);
    return failed ? 1 : 0;
}
