/* ckpt_tok.h - the tokenizer a checkpoint's model reads and writes text with: its /tokenizer
 * (CHECKPOINT_FORMAT.md) opened as a data/tok.h tokenizer, for `ksa sample`, `ksa eval
 * --task` and `ksa train --sample`.                                                        */
#ifndef KSA_CKPT_CKPT_TOK_H
#define KSA_CKPT_CKPT_TOK_H

#include <stddef.h>

#include "core/core.h"
#include "data/tok.h"

/* Opens the tokenizer named by a /tokenizer type for a model of vocab_size V:
 *   "byte"        the byte tokenizer; V must hold the bytes and end-of-text (>= 257);
 *   "bpe-<hex>"   the tokenizer.json given (json[0..n), from the checkpoint or the data),
 *                 which must hash to that name, with every id below V;
 *   anything else (e.g. "unknown") is refused: text through the wrong tokenizer is garbage.
 * `what` names the model in messages ("checkpoint 'x.h5'"). On failure *out is NULL.     */
ksa_status ksa_tok_for_model(ksa_tok **out, const char *type, const unsigned char *json, size_t n,
                             size_t V, const char *what);

/* The same from a checkpoint file: its /tokenizer type and /tokenizer/tokenizer.json. */
ksa_status ksa_ckpt_open_tok(ksa_tok **out, const char *path, size_t V);

#endif
