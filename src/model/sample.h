/* sample.h - text generation with the decoding KV cache (model/decode.h): each prompt is
 * prefilled once, then every new token costs one decode step over the cache, and the
 * unfinished sequences of a batch are stepped together. The logits are those of the full
 * forward on the same prefix (tests/test_decode.c), so the tokens are too: the full-recompute
 * generator kept here (ksa_sample_recompute) is the test oracle that shows it token for token
 * (tests/test_sample.c); nothing else calls it.
 *
 * Which ids can be generated: with the byte tokenizer (vocab_size >= 257) only the bytes
 * 0..255 and end-of-text (256). Ids 257..V-1 are special tokens that never occur in prepared
 * data (data/tokenizer.h), and summary tokens may be embedded from such ids
 * (summary_token_begin): the model learns nothing useful about them and decoding would print
 * markers, so they are never sampled. A model with vocab_size < 257 (tests, toy
 * configurations) samples from all of its ids and has no end-of-text.
 *
 * A sequence ends when a stop id is drawn (by default end-of-text; the stop id is not part of
 * the output), when the per-token callback says so, after max_new_tokens, or when it holds
 * max_position_embeddings tokens, prompt included (the model has no positions beyond). An
 * empty prompt starts from one end-of-text token (a document boundary, as `ksa prepare`
 * writes between documents): prefill needs at least one input token.                     */
#ifndef KSA_MODEL_SAMPLE_H
#define KSA_MODEL_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "model/decode.h"
#include "model/decoder.h"

typedef struct ksa_tok ksa_tok; /* data/tok.h */

/* How tokens are chosen and when a sequence stops. Start from ksa_generate_defaults().
 * Choosing a token, from the logits of the ids that may be generated:
 *   temperature 0: greedy (argmax, ties -> the lowest id; top_k and top_p are ignored);
 *   else softmax(logits / temperature) restricted to the top_k largest logits (0 = all;
 *   ties -> lower ids first), then to the nucleus: the smallest set of the likeliest of
 *   those (in that order) whose probability reaches top_p of theirs (1 = all), from which
 *   one token is drawn with one uniform of the sequence's generator.
 * Sequence b of a batch draws from its own splitmix64 generator, started at `seed` for b = 0
 * and at ksa_mix64(seed + b) for b > 0: sequence 0 draws what it draws alone, and the draws
 * of each sequence are a pure function of (model, its prompt, options, seed, b).          */
typedef struct {
    size_t max_new_tokens; /* at most this many tokens per sequence                       */
    double temperature;    /* >= 0, finite                                                */
    size_t top_k;          /* 0 = all                                                     */
    double top_p;          /* (0, 1]                                                      */
    uint64_t seed;
    /* NULL: the default, end-of-text when the vocabulary has it (none otherwise); else
     * exactly stop_ids[0..n_stop_ids) (n_stop_ids = 0: nothing stops a sequence early).
     * Each must be in [0, vocab_size); a stop id that cannot be generated never comes.    */
    const int32_t *stop_ids;
    size_t n_stop_ids;
    /* Called with each emitted token (never a stop id), in the order they are chosen (in a
     * step, sequences in increasing order); a nonzero return ends that sequence after that
     * token. NULL: none.                                                                  */
    int (*on_token)(void *user, size_t seq, int32_t id);
    void *user;
    /* The tokenizer of the model's ids (data/tok.h). NULL: the byte tokenizer, with the
     * rules above. A BPE tokenizer: its ids 0 .. vocab-1 may be generated (ids past them,
     * summary ids among them, never are) and its end-of-text is the default stop and what
     * an empty prompt starts from. ksa_sample_text encodes and decodes with it.          */
    const ksa_tok *tok;
} ksa_generate_options;

/* max_new_tokens 200, temperature 1, top_k 0, top_p 1, seed 0, default stop ids, no callback,
 * the byte tokenizer */
ksa_generate_options ksa_generate_defaults(void);

typedef enum {
    KSA_STOP_MAX_NEW_TOKENS,         /* max_new_tokens generated                          */
    KSA_STOP_ID,                     /* a stop id was drawn (not emitted)                 */
    KSA_STOP_CALLBACK,               /* on_token returned nonzero                         */
    KSA_STOP_MAX_POSITION_EMBEDDINGS /* prompt + generated = max_position_embeddings      */
} ksa_stop_reason;

/* "max_new_tokens", "stop_id", "callback", "max_position_embeddings" */
const char *ksa_stop_reason_name(ksa_stop_reason r);

/* What one sequence generated. */
typedef struct {
    int32_t *ids;         /* the caller's buffer, [min(max_new_tokens, max_position_embeddings)]:
                           * the tokens generated (a sequence holds at most
                           * max_position_embeddings tokens, prompt included)               */
    size_t n;             /* how many                                                        */
    ksa_stop_reason stop; /* why the sequence ended                                          */
    int32_t stop_id;      /* the stop id drawn when stop == KSA_STOP_ID, else -1             */
} ksa_generated;

/* Counts and times of one ksa_generate call, over all its sequences. */
typedef struct {
    size_t prompt_tokens;      /* prefilled (an empty prompt: its one end-of-text)         */
    size_t generated_tokens;   /* emitted                                                   */
    size_t decode_steps;       /* calls of ksa_decoder_step                                 */
    size_t decode_tokens;      /* tokens those steps appended (summed over sequences)       */
    double prefill_seconds;    /* inside ksa_decoder_prefill                                */
    double decode_seconds;     /* inside ksa_decoder_step                                   */
    size_t context_stops;      /* sequences ended by max_position_embeddings                */
    size_t max_positions;      /* the model's max_position_embeddings                       */
    ksa_decoder_memory memory; /* the KV cache at the end (its largest): allocated and live
                                * bytes, and what a causal cache would hold (decode.h)      */
} ksa_generate_stats;

/* Generates for n_seq prompts at once: prompts[b][0..prompt_lens[b]) (a prompt may be empty,
 * prompts[b] then may be NULL), each continued into out[b] (its ids buffer given).
 * Every prompt is prefilled into one decoder (model/decode.h) sized for
 * T_max = min(longest prompt + max_new_tokens, max_position_embeddings) tokens, its caches
 * grown as needed; then the unfinished sequences take one decode step together per token.
 * stats may be NULL. The model's weights are read, nothing of it is written.
 * Errors (KSA_EINVAL, nothing generated): a prompt id outside [0, vocab_size), a prompt
 * longer than max_position_embeddings, an empty prompt with a vocabulary that has no
 * end-of-text, a negative or non-finite temperature, top_p outside (0, 1], a stop id outside
 * the vocabulary. KSA_ENUMERIC: a logit that is not finite (out holds what came before).  */
ksa_status ksa_generate(ksa_model *m, size_t n_seq, const int32_t *const *prompts,
                        const size_t *prompt_lens, const ksa_generate_options *o,
                        ksa_generated *out, ksa_generate_stats *stats);

/* The text front end: encodes prompt[0..prompt_len) (bytes, NUL included; NULL when
 * prompt_len = 0) with o->tok (NULL: the byte tokenizer), writes the prompt to f and
 * flushes, then generates as ksa_generate (one sequence) and writes each generated token's
 * text as it comes, flushing after each: its bytes (a UTF-8 character may span several
 * tokens), special tokens as the tokenizer decodes them (only when stop ids let them
 * through). Nothing else is written: no trailing newline. o->on_token, if set, is called
 * after each write.
 * result (may be NULL) gets n, stop and stop_id, and the ids into result->ids when that is
 * not NULL (sized as ksa_generated says); stats as ksa_generate's. Errors: ksa_generate's,
 * found before anything is written; KSA_EIO when writing fails.                          */
ksa_status ksa_sample_text(ksa_model *m, const char *prompt, size_t prompt_len,
                           const ksa_generate_options *o, FILE *f, ksa_generated *result,
                           ksa_generate_stats *stats);

/* THE TEST ORACLE, not for use: the same generation (one sequence, the same options, stop
 * rules, generator and choice of tokens) by full recompute, re-running ksa_model_forward
 * (no-grad tape) on the growing prefix for every token: n new tokens after a prompt of p
 * cost n forwards of p ... p + n - 1 tokens. tests/test_sample.c checks ksa_generate
 * against it token for token; src/cli must not call it.                                 */
ksa_status ksa_sample_recompute(ksa_model *m, const int32_t *prompt, size_t n_prompt,
                                const ksa_generate_options *o, ksa_generated *out);

#endif
