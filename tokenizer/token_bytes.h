/* One token's bytes as they appear inside a text (private to tokenizer/; the public face is
 * srp_tokenizer_token_bytes). Each writes them to b and returns their length, -1 for a token
 * with no text (special, control, unknown, unused), -2 when out of memory. */
#ifndef SRP_TOKEN_BYTES_H
#define SRP_TOKEN_BYTES_H

#include "hf.h"
#include "sentencepiece_c.h"

int srp_hf_token_bytes(const srp_hf *h, int id, srp_tbuf *b);
int srp_spm_token_bytes(const srp_spm *s, int id, srp_tbuf *b);

#endif
