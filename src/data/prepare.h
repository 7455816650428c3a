/* prepare.h - `ksa prepare`: text files -> train and validation token files.
 *
 * Each input file is one document: its bytes (tokenizer.h) followed by one end-of-text token.
 * The split is by whole documents: document i (0-based, command-line order) goes, bytes and
 * end-of-text, to the validation file when u(seed, i) < val_fraction, else to the training
 * file, u being a uniform number in [0, 1) from a hash of (seed, i)
 * (ksa_prepare_goes_to_validation). So no document is split between the files, the expected
 * fraction of documents in validation is val_fraction, the choice of one document does not
 * depend on the others, and each file holds its documents in command-line order, each
 * followed by its end-of-text. The two files together hold exactly (input bytes + one
 * end-of-text per input file) tokens. With val_fraction > 0, a split that leaves either file
 * without a document is refused before anything is written, naming the numbers (too few
 * documents for the fraction): no silent fallback.
 *
 * Output, for out = "P.bin": P.bin + P.bin.meta (train) and P.val.bin + P.val.bin.meta
 * (validation; an `out` not ending in ".bin" gets ".val" appended instead). Both files are
 * always written (with val_fraction 0 the validation file is empty). Tokens are uint16 when
 * vocab_size <= 65536, else uint32; a .meta file holds the dtype word without a newline
 * (KSA's convention). Every file is written as "<name>.tmp", flushed, fsync'ed and renamed,
 * so a failure never leaves a half-written file under a final name; P.bin is renamed last,
 * so once the new P.bin is in place the other three are too (it can be a make target).
 * Inputs are all checked before anything is created, so bad input writes nothing.
 *
 * With a BPE tokenizer (o->tokenizer, a tokenizer.json): each document is its text's BPE ids
 * (bpe.h) followed by the tokenizer's end-of-text id; the validation split is the same. The
 * tokenizer is opened (and refused, naming the file and the problem) before anything is
 * written. The work runs in parallel over documents and, within a long document, over
 * pieces cut where a line starts with an ASCII letter (a "\n" followed by [A-Za-z]: no
 * pre-tokenizer word and no added token spans such a place, so the ids are those of the
 * whole text); the files' order is kept. The sidecars: <file>.tokenizer holds the
 * tokenizer's name ("bpe-<XXH3-64 hex of the tokenizer.json>"), <file>.meta the dtype on
 * its first line then `tokenizer NAME`, `vocab_size V`, `eot_id E` lines, and
 * <file>.tokenizer.json a copy of the tokenizer.json's bytes (a run can open the tokenizer
 * from its data). The byte tokenizer's files are as they always were.                   */
#ifndef KSA_DATA_PREPARE_H
#define KSA_DATA_PREPARE_H

#include <stddef.h>
#include <stdio.h>

#include "core/core.h"
#include "data/tokfile.h"

typedef struct {
    const char **inputs; /* borrowed: n_inputs text files, one document each */
    size_t n_inputs;
    const char *out;       /* the training token file, "P.bin" */
    double val_fraction;   /* in [0, 1): expected fraction of documents in validation */
    uint64_t seed;         /* of the document hash that picks the validation documents */
    size_t vocab_size;     /* >= the tokenizer's (257 for bytes), 0: the tokenizer's; the dtype */
    const char *tokenizer; /* a tokenizer.json (byte-level BPE, bpe.h); NULL: bytes */
    FILE *progress;        /* progress lines (bytes, MB/s) go here; NULL: none */
    double progress_every; /* seconds between progress lines (0: after every chunk) */
} ksa_prepare_options;

typedef struct {
    size_t n_files, n_bytes; /* inputs read */
    size_t n_train, n_val;   /* tokens written (bytes: n_train + n_val = n_bytes + n_files) */
    size_t n_train_docs, n_val_docs; /* documents in each file; their sum is n_files */
    ksa_dtype dtype;
    double seconds;
    char tokenizer[32]; /* the tokenizer's name: "byte" or "bpe-<hex>" */
    size_t vocab_size;  /* the vocab_size used (the tokenizer's when 0 was asked) */
    int32_t eot;        /* its end-of-text id */
} ksa_prepare_result;

#define KSA_PREPARE_DEFAULT_SEED 1

/* Defaults: no inputs, out NULL, val_fraction 0.01, seed KSA_PREPARE_DEFAULT_SEED,
 * vocab_size 257, progress to stderr once a second.                                       */
void ksa_prepare_defaults(ksa_prepare_options *o);

/* Whether document `doc` (0-based, command-line order) goes to the validation file:
 * u < val_fraction, u = (ksa_mix64(ksa_mix64(seed + 0x9E3779B97F4A7C15) ^ doc) >> 11)·2^-53,
 * a uniform number in [0, 1) (splitmix64's mixer chained over the pair).                  */
int ksa_prepare_goes_to_validation(uint64_t seed, size_t doc, double val_fraction);

/* The validation file's name for the training file name out (ksa_alloc'ed). */
char *ksa_prepare_val_path(const char *out);

/* Checks the options and inputs, then writes the four files. */
ksa_status ksa_prepare_run(const ksa_prepare_options *o, ksa_prepare_result *r);

#endif
