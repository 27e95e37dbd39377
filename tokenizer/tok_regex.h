/* Regular expressions of tokenizer.json (Oniguruma syntax as Hugging Face writes them), run by
 * PCRE2 with UTF and Unicode properties, JIT-compiled. Private to tokenizer/. */
#ifndef SRP_TOK_REGEX_H
#define SRP_TOK_REGEX_H

#include <stddef.h>

typedef struct srp_regex srp_regex;

/* NULL on failure, with PCRE2's reason and the offset in err. */
srp_regex *srp_regex_compile(const char *pattern, size_t len, char *err, size_t errlen);
void srp_regex_free(srp_regex *re);

typedef struct srp_span {
    size_t start, end;
} srp_span;

typedef struct srp_spans {
    srp_span *p;
    size_t n, cap;
} srp_spans;

/* Appends every non-overlapping match in s[0, n), left to right (an empty match moves the search
 * on by one character). 0, or -1 on out of memory or a match error (PCRE2's message in err). */
int srp_regex_find_all(const srp_regex *re, const char *s, size_t n, srp_spans *out, char *err,
                       size_t errlen);

#endif
