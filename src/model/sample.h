/* sample.h - text generation by full recompute: every new token re-runs the whole forward
 * (ksa_model_forward, no-grad tape) on the growing prefix and samples from the logits of its
 * last text row. No KV cache (the cached decoder comes with a later issue), so generating n
 * tokens after a prompt of p costs n forwards of p … p + n − 1 tokens: meant for short
 * samples from small models (the end of `ksa train`, `ksa sample`).
 *
 * Which ids can be generated: with the byte tokenizer (vocab_size >= 257) only the bytes
 * 0..255 and end-of-text (256). Ids 257..V-1 are special tokens that never occur in prepared
 * data (data/tokenizer.h), and summary tokens may be embedded from such ids
 * (summary_token_begin): the model learns nothing useful about them and decoding would print
 * markers, so they are never sampled. A model with vocab_size < 257 (tests, toy
 * configurations) samples from all of its ids and has no end-of-text.
 *
 * Generation stops early when end-of-text is drawn; the end-of-text is not part of the
 * output. An empty prompt starts from one end-of-text token (a document boundary, as
 * `ksa prepare` writes between documents): a forward needs at least one input token.     */
#ifndef KSA_MODEL_SAMPLE_H
#define KSA_MODEL_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "model/decoder.h"

/* Generates up to n_new tokens after prompt[0..n_prompt) into out[0..*n_out).
 *   temperature  0: greedy (argmax, ties -> the lowest id); > 0: softmax(logits / temperature)
 *   top_k        keep only the top_k largest logits (ties -> lower ids first); 0 = all
 *   seed         the draws are a pure function of (model, prompt, temperature, top_k, seed)
 * The arena and tape are created here (sized by ksa_model_arena_bytes for one row of the
 * longest prefix) and freed before returning; the model's gradients are not touched.
 * Errors (KSA_EINVAL): a prompt id outside [0, vocab_size), a negative or non-finite
 * temperature, an empty prompt with a vocabulary that has no end-of-text.
 * prompt: [n_prompt] (may be NULL when n_prompt == 0); out: [n_new]                       */
ksa_status ksa_sample(ksa_model *m, const int32_t *prompt, size_t n_prompt, int32_t *out,
                      size_t n_new, double temperature, size_t top_k, uint64_t seed, size_t *n_out);

/* The byte-tokenizer front end: encodes prompt (a C string; NULL = empty), samples up to
 * n_new tokens as ksa_sample and writes prompt + generated text to out, byte for byte
 * (end-of-text is never written, nothing is added: no trailing newline). KSA_EIO when
 * writing fails; ksa_sample's errors otherwise.                                           */
ksa_status ksa_sample_text(ksa_model *m, const char *prompt, size_t n_new, double temperature,
                           size_t top_k, uint64_t seed, FILE *out);

#endif
