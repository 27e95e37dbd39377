/* A C face for the SentencePiece C++ library (private to tokenizer/). */
#ifndef SRP_SENTENCEPIECE_C_H
#define SRP_SENTENCEPIECE_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srp_spm srp_spm;

/* NULL on failure, with a message in err. */
srp_spm *srp_spm_load(const char *path, char *err, size_t errlen);
void srp_spm_free(srp_spm *s);
/* 0 on success; *ids malloc'ed. */
int srp_spm_encode(const srp_spm *s, const char *text, size_t len, int32_t **ids, int *n);
/* The same with each piece's byte span of the text: *spans malloc'ed, [n][2]. */
int srp_spm_encode_spans(const srp_spm *s, const char *text, size_t len, int32_t **ids,
                         size_t (**spans)[2], int *n);
/* 0 on success; *text malloc'ed and NUL-terminated. */
int srp_spm_decode(const srp_spm *s, const int32_t *ids, int n, char **text, size_t *len);
int srp_spm_size(const srp_spm *s);
int srp_spm_bos(const srp_spm *s);
int srp_spm_eos(const srp_spm *s);
/* Control or unknown pieces (the ones SentencePiece does not decode as text). */
int srp_spm_is_control(const srp_spm *s, int id);
int srp_spm_is_unknown(const srp_spm *s, int id);
/* The piece string of an id (malloc'ed, NUL-terminated), or NULL. */
char *srp_spm_id_to_piece(const srp_spm *s, int id);
/* Piece id of a piece string, or -1. */
int srp_spm_piece_id(const srp_spm *s, const char *piece);

#ifdef __cplusplus
}
#endif

#endif
