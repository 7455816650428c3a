/* tok.h - one interface over ksa's tokenizers: the built-in byte tokenizer (tokenizer.h,
 * the default, name "byte") and the byte-level BPE of a Hugging Face tokenizer.json (bpe.h,
 * name "bpe-<XXH3-64 of the file>"). Token files and checkpoints record the name; a BPE
 * tokenizer's bytes travel beside token files (<file>.tokenizer.json) and can be opened from
 * memory.
 *
 * Threads: a ksa_tok is read-only once open; each thread encodes through its own
 * ksa_tok_encoder.                                                                          */
#ifndef KSA_DATA_TOK_H
#define KSA_DATA_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "data/bpe.h"

typedef struct ksa_tok ksa_tok;
typedef struct ksa_tok_encoder ksa_tok_encoder;

/* The byte tokenizer. */
ksa_tok *ksa_tok_byte(void);
/* A tokenizer.json file / its bytes (`what` names it in messages). On failure *out is NULL
 * and the message names the file and the problem. */
ksa_status ksa_tok_open_file(ksa_tok **out, const char *path);
ksa_status ksa_tok_open_memory(ksa_tok **out, const void *json, size_t n, const char *what);
void ksa_tok_close(ksa_tok *t);

const char *ksa_tok_name(const ksa_tok *t);   /* the identity word: "byte" or "bpe-<hex>" */
size_t ksa_tok_vocab_size(const ksa_tok *t);  /* the smallest model vocab_size it fits */
int32_t ksa_tok_eot(const ksa_tok *t);        /* end-of-text id */
const ksa_bpe *ksa_tok_bpe(const ksa_tok *t); /* NULL for the byte tokenizer */

ksa_tok_encoder *ksa_tok_encoder_new(const ksa_tok *t);
void ksa_tok_encoder_free(ksa_tok_encoder *e);

/* Appends the ids of text[0..n) to ids (see bpe.h for when BPE can fail). */
ksa_status ksa_tok_encode(ksa_tok_encoder *e, const void *text, size_t n, ksa_ids *ids);

/* Text of ids[0..n) into out (at most cap bytes), returning the whole length (snprintf-like).
 * flags: KSA_TOKENIZER_SKIP_SPECIAL leaves special tokens out. */
size_t ksa_tok_decode(const ksa_tok *t, char *out, size_t cap, const int32_t *ids, size_t n,
                      unsigned flags);

/* The token file at path against a model of vocab_size V: when its <path>.tokenizer names a
 * BPE tokenizer ("bpe-..."), <path>.tokenizer.json must be that tokenizer (its XXH3-64 is
 * the name) and V must hold its whole vocabulary; *eot (may be NULL) gets its end-of-text id.
 * Token files of the byte tokenizer, or without a .tokenizer, pass (*eot = 256). One clear
 * line naming the files on failure. */
ksa_status ksa_tok_check_data(const char *path, size_t V, int32_t *eot);

/* The same checks, keeping the tokenizer: *out is the BPE tokenizer of the token file at
 * path, or NULL when its .tokenizer names none (byte, unknown, no file). */
ksa_status ksa_tok_open_data(ksa_tok **out, const char *path, size_t V);

/* The length in bytes of the text of every id: bytes[i] for i < V (a model's vocabulary)
 * is the length of id i's text (0 for special tokens and ids past the tokenizer's).
 * bytes: [V] */
void ksa_tok_text_bytes(const ksa_tok *t, uint32_t *bytes, size_t V);

#endif
