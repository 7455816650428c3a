/* prepare.h - `ksa prepare`: text files -> train and validation token files.
 *
 * Each input file is one document: its bytes (tokenizer.h) followed by one end-of-text token.
 * The last val_fraction of each document's tokens go to validation: a document of n bytes
 * has n + 1 tokens, n_val = floor(val_fraction · (n + 1)) of them (<= n) are its last n_val
 * bytes and go to the validation file; the first n - n_val bytes and then the end-of-text
 * token go to the training file. So the end-of-text stays in the training part, which keeps
 * the documents of the training file separated, and the two files together hold exactly
 * (input bytes + one end-of-text per input file) tokens. Documents keep their command-line
 * order in both files.
 *
 * Output, for out = "P.bin": P.bin + P.bin.meta (train) and P.val.bin + P.val.bin.meta
 * (validation; an `out` not ending in ".bin" gets ".val" appended instead). Both files are
 * always written (with val_fraction 0 the validation file is empty). Tokens are uint16 when
 * vocab_size <= 65536, else uint32; a .meta file holds the dtype word without a newline
 * (KSA's convention). Every file is written as "<name>.tmp", flushed, fsync'ed and renamed,
 * so a failure never leaves a half-written file under a final name; P.bin is renamed last,
 * so once the new P.bin is in place the other three are too (it can be a make target).
 * Inputs are all checked before anything is created, so bad input writes nothing.          */
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
    double val_fraction;   /* in [0, 1) */
    size_t vocab_size;     /* >= 257; decides the dtype */
    FILE *progress;        /* progress lines (bytes, MB/s) go here; NULL: none */
    double progress_every; /* seconds between progress lines (0: after every chunk) */
} ksa_prepare_options;

typedef struct {
    size_t n_files, n_bytes; /* inputs read */
    size_t n_train, n_val;   /* tokens written; n_train + n_val = n_bytes + n_files */
    ksa_dtype dtype;
    double seconds;
} ksa_prepare_result;

/* Defaults: no inputs, out NULL, val_fraction 0.01, vocab_size 257, progress to stderr once
 * a second.                                                                               */
void ksa_prepare_defaults(ksa_prepare_options *o);

/* The validation file's name for the training file name out (ksa_alloc'ed). */
char *ksa_prepare_val_path(const char *out);

/* Checks the options and inputs, then writes the four files. */
ksa_status ksa_prepare_run(const ksa_prepare_options *o, ksa_prepare_result *r);

#endif
