/* tokenizer.h - the built-in byte-level tokenizer.
 *
 * Ids 0..255 are the bytes of the text, so any byte string (UTF-8 or not) encodes, one id per
 * byte, and decodes back to exactly the same bytes. Special tokens take the ids from 256 on;
 * the only one defined is end-of-text (KSA_TOKENIZER_EOT = 256), which `ksa prepare` puts
 * after every document, so a model's vocab_size must be at least 257. A larger vocabulary
 * (say 512, for rounder matrix shapes) is allowed: ids 257..V-1 are unnamed special tokens
 * that never occur in prepared data.
 *
 * Decoding writes a special token as a visible marker: end-of-text as "<|endoftext|>", any
 * other id >= 257 as "<|special_N|>" (N in decimal), or skips them with
 * KSA_TOKENIZER_SKIP_SPECIAL. A text that itself contains the characters "<|endoftext|>" is
 * encoded as those bytes, not as the special token.                                        */
#ifndef KSA_DATA_TOKENIZER_H
#define KSA_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define KSA_TOKENIZER_NAME "byte"   /* its name in .tokenizer files and checkpoints */
#define KSA_TOKENIZER_EOT 256       /* end of text: follows every document */
#define KSA_TOKENIZER_MIN_VOCAB 257 /* 256 bytes + end-of-text */
#define KSA_TOKENIZER_EOT_MARKER "<|endoftext|>"

enum { KSA_TOKENIZER_SKIP_SPECIAL = 1 }; /* flag of ksa_tokenizer_decode */

/* ids[i] = bytes[i] for i < n.   ids: [n] */
void ksa_tokenizer_encode(int32_t *ids, const void *bytes, size_t n);

/* Writes the text of ids[0..n) to out, at most cap bytes (no terminating NUL: text may hold
 * NUL bytes), and returns the length of the whole text, like snprintf: call with out = NULL,
 * cap = 0 to size a buffer. Ids must be >= 0 (they come from a model or a checked file).   */
size_t ksa_tokenizer_decode(char *out, size_t cap, const int32_t *ids, size_t n, unsigned flags);

/* KSA_EINVAL unless vocab_size can hold every byte and end-of-text (>= 257). */
ksa_status ksa_tokenizer_check_vocab(size_t vocab_size);

/* KSA_EINVAL unless `name` (the tokenizer of a model's training data, as its checkpoint
 * records it; `what` names the model) is this byte tokenizer: text encoded or decoded
 * through the wrong tokenizer would be garbage. */
ksa_status ksa_tokenizer_check_name(const char *name, const char *what);

#endif
