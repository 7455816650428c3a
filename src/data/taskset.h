/* taskset.h - `ksa task`: N examples of a retrieval task (tasks.h) written as a token file
 * and a JSONL file (docs/evaluation.md, "Retrieval tasks").
 *
 * For out = "P" (or "P.bin"):
 *   P.bin            the examples' ids, one after another, each `len` tokens (prompt, answer,
 *                    end-of-text), headerless uint16 (uint32 when vocab_size > 65536), with
 *                    P.bin.meta and P.bin.tokenizer as `ksa prepare` writes them (data.md),
 *                    and with a BPE tokenizer P.bin.tokenizer.json, a copy of it;
 *   P.jsonl          one JSON object per example, in the same order: task, len, depth, seed,
 *                    filler, prompt, answer, prompt_tokens, answer_tokens, needles (each
 *                    {pos, tokens, target}) and depth_needle.
 * Example i has depth depths[i mod n_depths] and seed ksa_task_example_seed(seed, i).
 * Everything is checked before a file is created (task, length, depths, count, tokenizer,
 * vocabulary, filler, existing outputs); files are written as "<name>.tmp", flushed, fsync'ed and
 * renamed, P.bin last; on any failure the .tmp files are removed, so no partial output stays
 * behind. */
#ifndef KSA_DATA_TASKSET_H
#define KSA_DATA_TASKSET_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "data/tasks.h"
#include "data/tokfile.h"

#define KSA_TASKSET_DEFAULT_FILLER "build/data/kjv.txt" /* made by `make` */

typedef struct {
    ksa_task_kind task;
    size_t len;           /* tokens per example, >= ksa_task_min_len(task) */
    size_t n;             /* examples, >= 1 */
    const double *depths; /* borrowed, [n_depths], percent in [0, 100], cycled */
    size_t n_depths;
    uint64_t seed;
    const char *filler;    /* KSA_TASK_NOISE or a text file */
    const char *out;       /* the prefix P */
    const char *tokenizer; /* a tokenizer.json (BPE), or NULL: the byte tokenizer */
    size_t vocab_size;     /* 0: the tokenizer's; else at least that; decides the dtype */
    int overwrite;         /* replace existing outputs instead of refusing */
} ksa_taskset_options;

typedef struct {
    char *bin_path, *jsonl_path; /* owned: the files written */
    size_t n_tokens;             /* n · len */
    ksa_dtype dtype;
    size_t vocab_size;  /* the one that decided the dtype */
    char tokenizer[64]; /* its identity word: "byte" or "bpe-<hex>" */
    double seconds;
} ksa_taskset_result;

/* Defaults: passkey, len 0 and n 0 (to be given), depths 0, 25, 50, 75, 100, seed 1, filler
 * KSA_TASKSET_DEFAULT_FILLER, out NULL, the byte tokenizer, vocab_size 0 (the tokenizer's:
 * 257 for bytes), no overwrite.                                                           */
void ksa_taskset_defaults(ksa_taskset_options *o);

/* Checks the options, then writes the files; on success fills r (free with
 * ksa_taskset_result_free).                                                              */
ksa_status ksa_taskset_write(const ksa_taskset_options *o, ksa_taskset_result *r);
void ksa_taskset_result_free(ksa_taskset_result *r);

#endif
