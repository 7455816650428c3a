/* bpe.h - the byte-level BPE tokenizer of a Hugging Face tokenizer.json (the Qwen2/Qwen3
 * and GPT-2 kind), encoding exactly as the tokenizers library and its JavaScript port do.
 *
 * Encoding text (bytes) goes:
 *   1. invalid UTF-8 -> U+FFFD, each maximal invalid subsequence once (the WHATWG decoder's
 *      rule, which is what a reference that reads the text as a string sees);
 *   2. split out the added tokens (`added_tokens`: <|endoftext|>, <|im_start|>, ...), the
 *      longest one that starts at each position, scanning left to right; each becomes its id;
 *   3. each stretch between them: NFC (utf8proc) when the file's normalizer asks for it, then
 *      the pre-tokenizer's split regex (PCRE2, UTF + Unicode properties, JIT when available),
 *      matches and the text between matches both being words;
 *   4. each word: its bytes are the initial symbols, then the merges are applied lowest rank
 *      first (leftmost among equal ranks) until none applies: a heap over the pairs, so
 *      O(n log n) in the word's length. Short words' results are cached per encoder.
 * The byte-level alphabet (GPT-2's bytes_to_unicode) is undone at load: vocab entries and
 * merges are held as raw bytes, so nothing is mapped per character while encoding.
 *
 * Decoding concatenates the tokens' bytes (an added token: its content); the result is the
 * NFC form of the valid UTF-8 text that was encoded (invalid bytes come back as U+FFFD).
 *
 * Identity: "bpe-" + the 16 lowercase hex digits of XXH3-64 (libxxhash) of the
 * tokenizer.json file's bytes (KSA_BPE_NAME_LEN characters): token files and checkpoints
 * name their tokenizer with it.
 *
 * Supported files (anything else is refused at open, naming the file and the part):
 *   model        {"type": "BPE"} with vocab and merges ("a b" strings or [a, b] pairs),
 *                no continuing_subword_prefix / end_of_word_suffix, no dropout;
 *   normalizer   null or {"type": "NFC"};
 *   pre_tokenizer Sequence[Split{Regex, behavior "Isolated"}, ByteLevel{use_regex false}],
 *                or ByteLevel{use_regex true} alone (GPT-2's regex), add_prefix_space false;
 *   decoder      null or ByteLevel;
 *   added_tokens with lstrip, rstrip and single_word false.
 * The end-of-text id is the added token "<|endoftext|>" (else "<|end_of_text|>", "</s>",
 * "<eos>"); a file with none of them is refused.
 *
 * Threads: a ksa_bpe is read-only once open and may be shared; each thread encodes through
 * its own ksa_bpe_encoder (cache, regex match data, buffers).                               */
#ifndef KSA_DATA_BPE_H
#define KSA_DATA_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define KSA_BPE_NAME_LEN 20 /* "bpe-" + 16 hex digits */

typedef struct ksa_bpe ksa_bpe;
typedef struct ksa_bpe_encoder ksa_bpe_encoder;

/* A growing list of ids that encoding appends to.   v: [cap], n used */
typedef struct {
    int32_t *v;
    size_t n, cap;
} ksa_ids;

void ksa_ids_push(ksa_ids *ids, int32_t id);
void ksa_ids_reserve(ksa_ids *ids, size_t more); /* room for `more` ids past ids->n */
void ksa_ids_free(ksa_ids *ids);

/* Opens the tokenizer.json at path / held in json[0..n) (`what` names it in messages, e.g.
 * the path of the file it came from). On failure *out is NULL, and the message is one line
 * that names the file and the problem. */
ksa_status ksa_bpe_open_file(ksa_bpe **out, const char *path);
ksa_status ksa_bpe_open_memory(ksa_bpe **out, const void *json, size_t n, const char *what);
void ksa_bpe_close(ksa_bpe *b);

const char *ksa_bpe_name(const ksa_bpe *b);  /* "bpe-<16 hex>" */
size_t ksa_bpe_vocab_size(const ksa_bpe *b); /* 1 + the largest id, added tokens included */
int32_t ksa_bpe_eot(const ksa_bpe *b);
/* The bytes of the tokenizer.json it was opened from (to copy beside token files).   [n] */
const void *ksa_bpe_json(const ksa_bpe *b, size_t *n);

ksa_bpe_encoder *ksa_bpe_encoder_new(const ksa_bpe *b);
void ksa_bpe_encoder_free(ksa_bpe_encoder *e);

/* Appends the ids of text[0..n) to ids. Fails only if PCRE2 gives up on a match (a
 * resource limit), which names the tokenizer. */
ksa_status ksa_bpe_encode(ksa_bpe_encoder *e, const void *text, size_t n, ksa_ids *ids);

/* Writes the bytes of ids[0..n) to out, at most cap bytes, and returns the whole length
 * (snprintf-like: out = NULL, cap = 0 sizes it). skip_special: leave out the added tokens
 * marked special. An id that is no token (>= vocab size, or a hole) decodes as
 * "<|unknown_N|>". */
size_t ksa_bpe_decode(const ksa_bpe *b, char *out, size_t cap, const int32_t *ids, size_t n,
                      int skip_special);

#endif
