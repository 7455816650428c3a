/* tasks.h - synthetic long-context retrieval tasks with known answers (RULER-style), for
 * testing whether a model retrieves information from beyond its attention window
 * (docs/evaluation.md, "Retrieval tasks").
 *
 * An example is a pure function of (task, len, depth, seed, filler):
 *
 *   prompt  = context "\n" question     the context is filler words and needle sentences
 *                                       joined by single spaces, then 0 or more spaces that
 *                                       make the length exact
 *   answer  = the expected completion   (matched exactly; no end-of-text)
 *   ids     = prompt, answer, end-of-text: exactly `len` tokens
 *
 * so a token file of examples with len = seq_len gives training rows that are each one whole
 * example (docs/data.md, the loader). The tasks (every value is digits only, fixed phrases):
 *
 *   passkey          "The pass key is 58021." / "What is the pass key? The pass key is " 58021
 *   niah-multikey    4 needles "The number for KEY is N.", keys 3-syllable pseudo-words, the
 *                    3 distractor keys differing from the asked one in one syllable
 *   niah-multivalue  4 needles "One number for KEY is N." of one key; the answer lists the
 *                    numbers in order of appearance, separated by ", "
 *   vartrack         2 chains "VAR ABCD = N." "VAR EFGH = VAR ABCD." ... of 4 variables; the
 *                    answer names the variables of the asked value's chain in order of
 *                    appearance, separated by ", "
 *
 * Numbers have 5 to 7 digits, the first not 0, and differ within an example.
 *
 * Depth (percent, [0, 100]) places the first target needle (the pass key; the asked key's
 * needle; the first value; the chain's first assignment) at that fraction of the filler
 * tokens, at the word boundary nearest to it (within half a word). The other needles go at
 * seed-chosen fractions: multikey distractors anywhere; further values, and further
 * assignments of a chain, after the first one (so order of appearance is drawing order).
 *
 * Filler: the words of a UTF-8 text file (maximal runs of non-whitespace; words over
 * KSA_TASK_MAX_WORD_BYTES are cut into pieces at character boundaries), read from a
 * seed-chosen word on and wrapping around at the end; or "noise", RULER's repeated "The grass
 * is green. The sky is blue. ..." from its first word.
 *
 * Tokenizer: the byte tokenizer (tok NULL) or a BPE tokenizer (data/tok.h). Text goes to ids
 * in one place in tasks.c (encode_text). The filler is planned by adding the token counts of
 * its pieces, each word counted with its separating space (" word" encoded alone: its
 * "filler tokens"). For bytes that is exact. For BPE, merges across pieces make the whole
 * differ a little, so the example is encoded whole and fitted: words added by their counts
 * while there is room, dropped from the end while it is too long, then the gap closed by
 * making the last separators of the context two spaces (each adds a token), else with 1 to
 * 64 spaces before the question's newline as well, dropping up to 16 more words, until it is
 * exactly `len`
 * tokens (else KSA_EINVAL). The ids are encode(prompt), then encode(answer), then
 * end-of-text: what the model is prompted with and what it has to produce after it. A
 * needle's pos and tokens are the tokens holding its first and last byte.                */
#ifndef KSA_DATA_TASKS_H
#define KSA_DATA_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "data/tok.h"

typedef enum {
    KSA_TASK_PASSKEY,
    KSA_TASK_NIAH_MULTIKEY,
    KSA_TASK_NIAH_MULTIVALUE,
    KSA_TASK_VARTRACK,
    KSA_TASK_COUNT
} ksa_task_kind;

#define KSA_TASK_MAX_NEEDLES 8     /* vartrack: 2 chains of 4 assignments */
#define KSA_TASK_MAX_WORD_BYTES 32 /* longer filler words are cut into pieces */
#define KSA_TASK_NOISE "noise"     /* the filler name of RULER's repeated sentences */

/* "passkey", "niah-multikey", ... (the command-line names). */
const char *ksa_task_name(ksa_task_kind task);

/* The task called `name`; KSA_EINVAL naming the known ones otherwise. */
ksa_status ksa_task_parse(const char *name, ksa_task_kind *task);

/* The filler: a stream of words. */
typedef struct {
    char *name;     /* owned: KSA_TASK_NOISE or the file's path as given */
    char *text;     /* owned: the file's bytes (or the noise text) */
    size_t *word;   /* owned, [n_words]: word w is text[word[w] .. word[w] + bytes[w]) */
    uint8_t *bytes; /* owned, [n_words] */
    size_t n_words;
    int is_noise; /* noise starts at its first word, a file at a seed-chosen one */
} ksa_task_filler;

/* spec: KSA_TASK_NOISE, or a text file (UTF-8, no NUL bytes, at least one word). On failure
 * *f is left empty (nothing to free); the message names the file.                        */
ksa_status ksa_task_filler_open(ksa_task_filler *f, const char *spec);
void ksa_task_filler_free(ksa_task_filler *f);

typedef struct {
    size_t pos;    /* the token holding its first byte */
    size_t tokens; /* tokens up to the one holding its last byte */
    int target;    /* 1: it holds (part of) the answer */
} ksa_task_needle;

typedef struct {
    ksa_task_kind task;
    size_t len;    /* prompt_tokens + answer_tokens + 1 (end-of-text) */
    double depth;  /* percent, as asked */
    uint64_t seed; /* of this example */
    char *prompt;  /* owned, NUL-terminated (the text holds no NUL) */
    char *answer;  /* owned, NUL-terminated */
    int32_t *ids;  /* owned, [len]: prompt, answer, end-of-text */
    size_t prompt_tokens, answer_tokens;
    ksa_task_needle needles[KSA_TASK_MAX_NEEDLES]; /* in order of appearance */
    size_t n_needles;
    size_t depth_needle;  /* index into needles of the one `depth` placed */
    size_t filler_tokens; /* of the context without needles and their separators, word by
                             word (each word's word_cost: " word" encoded alone) */
} ksa_task_example;

/* The shortest len that holds every example of the task (its needles, question, longest
 * answer and end-of-text, with no filler), counted in bytes: the same for every tokenizer
 * (a byte-level BPE spells this ASCII text in at most as many tokens as bytes).          */
size_t ksa_task_min_len(ksa_task_kind task);

/* One example, spelled by tok (NULL or ksa_tok_byte(): the byte tokenizer). KSA_EINVAL if
 * len < ksa_task_min_len(task) (the message gives the minimum), depth is outside [0, 100],
 * or (BPE) no fit of exactly len tokens was found; KSA_EFORMAT if the tokenizer does not
 * spell the prompt's bytes back (a filler that is not NFC). On failure *ex is left empty.
 * Each call encodes through its own encoder: a tok may be shared by threads.           */
ksa_status ksa_task_generate(ksa_task_example *ex, ksa_task_kind task, size_t len, double depth,
                             uint64_t seed, const ksa_task_filler *filler, const ksa_tok *tok);
void ksa_task_example_free(ksa_task_example *ex);

/* The seed of example i of a set made with `seed`: splitmix64's mixer chained over the pair,
 * cut to 53 bits (exact as a JSON number), so sets of neighbouring seeds share no example. */
uint64_t ksa_task_example_seed(uint64_t seed, size_t i);

/* "0,25,50" -> depths (ksa_alloc'ed, *n of them, in the order given; values are not range
 * checked here); KSA_EINVAL naming an entry that is not a number.                        */
ksa_status ksa_task_parse_depths(const char *text, double **depths, size_t *n);

#endif
