/* Text helpers of the server (text.c): UTF-8 checks, JSON string output for text that may hold
 * NUL bytes, and stop-string matching. Plain functions over byte strings, tested on their own
 * (tests/test_server_text.c). */
#ifndef SRV_TEXT_H
#define SRV_TEXT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "tokenizer.h"

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int srv_utf8_valid(const char *s, size_t n);
/* Appends s[0..n) to *buf, replacing invalid UTF-8 with U+FFFD. Returns 0 or -1 (no memory). */
int srv_buf_append_utf8(char **buf, size_t *len, size_t *cap, const char *s, size_t n);
/* Appends s[0..n) as a quoted JSON string (NUL and control bytes escaped; cJSON strings stop
 * at NUL, generated text need not). */
int srv_json_quote(char **buf, size_t *len, size_t *cap, const char *s, size_t n);
/* A cJSON node printing s[0..n) as a JSON string. */
cJSON *srv_json_text(const char *s, size_t n);
/* Longest suffix of s[0..n) that is a proper prefix of one of the stops. */
size_t srv_stop_holdback(const char *s, size_t n, char *const *stops, int n_stops);
/* Position of the earliest stop string in s[from..n), or -1. */
long srv_stop_find(const char *s, size_t n, size_t from, char *const *stops, int n_stops);
/* The earliest stop string starting in s[from..n) and ending at min_end or later: its position
 * (or -1), its length in *len and its index in *which. */
long srv_stop_match(const char *s, size_t n, size_t from, size_t min_end, char *const *stops,
                    int n_stops, size_t *len, int *which);
/* Removes every object member that a later member of the same name overrides, through the
 * whole tree: duplicate keys then mean what JavaScript and Python make of them (the last one
 * wins). O(n log n) in the members of an object. Returns 0, or -1 when out of memory. */
int srv_json_dedupe(cJSON *root);
/* Characters (code points) in the valid UTF-8 s[0..n). */
size_t srv_utf8_count(const char *s, size_t n);

/* Chat text a client wrote stays text (chat_marks.c): wraps every special-token text
 * (texts[0..n), lens) inside the strings of root in marks; a mark already there reads as
 * U+FFFD. 0, or -1 when out of memory. */
int srv_mark_specials(cJSON *root, const char *const *texts, const size_t *lens, int n);
/* Takes the marks out of rendered text (in place; *len updated) and returns the spans they
 * enclosed (*spans malloc'ed, *n_spans of them, sorted): the text to tokenize as text. */
int srv_unmark(char *text, size_t *len, srp_text_span **spans, int *n_spans);

#endif
