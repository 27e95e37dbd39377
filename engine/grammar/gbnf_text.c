/* Writing GBNF text: the JSON Schema, regex and choice front ends emit GBNF and compile it with
 * the one parser, so every grammar goes through the same checks and can be printed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_internal.h"

void gt_put(gtext *t, const char *s, size_t n) {
    if (t->oom) return;
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->n + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = 0;
}

void gt_puts(gtext *t, const char *s) {
    gt_put(t, s, strlen(s));
}

void gt_printf(gtext *t, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof buf) {
        t->oom = 1; /* only short pieces are written this way */
        return;
    }
    gt_put(t, buf, (size_t)n);
}

void gt_literal(gtext *t, const char *s, size_t n) {
    gt_put(t, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            gt_put(t, "\\\"", 2);
        else if (c == '\\')
            gt_put(t, "\\\\", 2);
        else if (c == '\n')
            gt_put(t, "\\n", 2);
        else if (c == '\t')
            gt_put(t, "\\t", 2);
        else if (c == '\r')
            gt_put(t, "\\r", 2);
        else if (c < 0x20 || c == 0x7F)
            gt_printf(t, "\\x%02X", c);
        else
            gt_put(t, (const char *)&s[i], 1); /* UTF-8 bytes go through as they are */
    }
    gt_put(t, "\"", 1);
}

void gt_class_char(gtext *t, uint32_t cp) {
    if (cp >= 0x20 && cp < 0x7F && !strchr("]\\-^[\"", (int)cp)) {
        char c = (char)cp;
        gt_put(t, &c, 1);
    } else if (cp < 0x100)
        gt_printf(t, "\\x%02X", cp);
    else if (cp < 0x10000)
        gt_printf(t, "\\u%04X", cp);
    else
        gt_printf(t, "\\U%08X", cp);
}
