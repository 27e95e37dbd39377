/* Character classes the Rust crate uses outside its regexes (private to tokenizer/). */
#ifndef SRP_HF_CHARS_H
#define SRP_HF_CHARS_H

#include <stddef.h>
#include <stdint.h>

/* Rust's char::is_whitespace and regex \s: the Unicode White_Space property. */
int hf_is_whitespace(uint32_t cp);
/* Rust regex \w: alphabetic, marks, decimal digits, connector punctuation, joiners. */
int hf_is_word(uint32_t cp);
/* Rust's char::is_numeric: general categories Nd, Nl, No. */
int hf_is_numeric(uint32_t cp);
/* The code point that ends at s[n-1] (s valid UTF-8, n > 0); its length in *len. */
uint32_t hf_prev_char(const char *s, size_t n, int *len);

#endif
