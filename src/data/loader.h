/* loader.h - the deterministic sharded loader (docs/data.md, "Sampling").
 *
 * A training row is L + 1 consecutive tokens (inputs: the first L, targets: the last L, all
 * counted; KSA_SPEC §6.3), starting at a window start s·L; a file of N tokens has
 * floor((N - 1) / L) windows. Row `row` (0 <= row < G, G = global_batch) of global batch
 * `step` comes from:
 *   one file   g = step·G + row, epoch e = g / n_windows, window perm_{seed,e}(g mod n_windows),
 *              where perm is a pseudo-random permutation of the windows (keyed Feistel network
 *              with cycle walking, never materialised): within an epoch every window is used
 *              exactly once, and each epoch has its own order;
 *   a mixture  a source drawn with probability proportional to its weight, then one of its
 *              windows uniformly (with replacement), both from a counter-based hash of
 *              (seed, step, row).
 * So a batch is a pure function of (seed, step): the loader's whole state is the step
 * number (nothing else needs saving in a checkpoint; resuming at step s is exact), and rank
 * r of n_ranks takes rows r, r + n_ranks, ... of the same global batch, so the data a run
 * sees does not depend on the number of ranks. Steps count from 0: the first batch of a run
 * is step 0.
 *
 * Evaluation reads sequentially: row b of a batch at offset O is tokens O+b·L ... O+b·L+L
 * inclusive (neighbouring rows share one token); ksa_val_reader serves the rows of a whole
 * file so, or a fixed subset of them spread evenly over the file.                         */
#ifndef KSA_DATA_LOADER_H
#define KSA_DATA_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "data/tokfile.h"

typedef struct {
    size_t seq_len;      /* L: a row is L + 1 tokens */
    size_t global_batch; /* G: rows per step over all ranks */
    size_t vocab_size;   /* every token id must be below it (checked at open) */
    uint64_t seed;
    ksa_dtype dtype; /* KSA_DTYPE_AUTO: each file's .meta or llm.c header */
} ksa_loader_options;

typedef struct {
    ksa_tokfile file; /* owned, open */
    char *name;       /* owned: the mixture line's name, or the file's path */
    double weight;    /* normalised: the weights of all sources sum to 1 */
    double cum;       /* sum of the normalised weights of sources 0..this one */
    size_t n_windows; /* floor((n_tokens - 1) / L) >= 1 */
} ksa_loader_source;

typedef struct {
    ksa_loader_source *sources; /* owned, n_sources (1 for a single file) */
    size_t n_sources;
    int is_mixture; /* 0: one file, epochs of permutations; 1: per-row draws */
    size_t seq_len, global_batch;
    uint64_t seed;
} ksa_loader;

/* Where one row of a global batch comes from: tokens window·L ... window·L + L of source. */
typedef struct {
    size_t source;
    size_t window;
    uint64_t epoch; /* one file: the epoch the row belongs to; mixture: 0 */
} ksa_loader_row;

/* Opens one token file (`data = tokens.bin`). Errors: the file's own (tokfile.h), fewer
 * than L + 1 tokens (names the file, its length and L), a zero seq_len or global_batch.   */
ksa_status ksa_loader_open_file(ksa_loader *ld, const char *path, const ksa_loader_options *o);
/* Opens every source of a mixture file (`data_mix = sources.txt`, mixture.h). */
ksa_status ksa_loader_open_mixture(ksa_loader *ld, const char *list_path,
                                   const ksa_loader_options *o);
void ksa_loader_close(ksa_loader *ld);

/* The tokenizer of the loader's ids: its sources' (tokfile.h), "unknown" when any source's is
 * unknown; sources made by two different known tokenizers are an error naming both. */
ksa_status ksa_loader_tokenizer(const ksa_loader *ld, char *out, size_t cap);

/* One line per source: name, path, tokens, windows, weight (for the run log). */
void ksa_loader_print(const ksa_loader *ld, FILE *out);

/* The window behind row `row` (< global_batch) of global batch `step`. */
ksa_loader_row ksa_loader_locate(const ksa_loader *ld, uint64_t step, size_t row);

/* Number of rows rank `rank` of n_ranks owns in a global batch of global_batch rows, and,
 * if rows != NULL, their global indices rank, rank + n_ranks, ... in rows[0..count).       */
size_t ksa_loader_rank_rows(size_t global_batch, int rank, int n_ranks, size_t *rows);

/* The rows of rank `rank` of n_ranks for global batch `step`, in order.
 * tokens: [ksa_loader_rank_rows(G, rank, n_ranks, NULL), L + 1]                          */
void ksa_loader_batch_at(const ksa_loader *ld, int32_t *tokens, uint64_t step, int rank,
                         int n_ranks);
/* The same rows, only tokens t0 ... t0 + T of each (a block of context parallelism, which
 * reads nothing else). tokens: [rows, T + 1]                                             */
void ksa_loader_block_at(const ksa_loader *ld, int32_t *tokens, uint64_t step, int rank,
                         int n_ranks, size_t t0, size_t T);

/* KSA_OK when the file holds nseq sequential rows of seq_len from offset (offset + nseq *
 * seq_len + 1 tokens), else the error ksa_loader_read_sequential would return: a caller
 * checks before allocating the rows. */
ksa_status ksa_loader_check_sequential(const ksa_tokfile *f, size_t offset, size_t nseq,
                                       size_t seq_len);

/* Sequential rows: row b = tokens offset + b·L ... offset + b·L + L inclusive.
 * tokens: [nseq, L + 1]. A file shorter than offset + nseq·L + 1 tokens is an error.       */
ksa_status ksa_loader_read_sequential(const ksa_tokfile *f, int32_t *tokens, size_t offset,
                                      size_t nseq, size_t seq_len);

/* ---- the validation reader: rows of a whole file, nseq rows at a time ----------------- *
 * The file holds n_rows = floor((N - 1) / L) full rows, row r = tokens r·L ... r·L + L (the
 * at most L - 1 tokens after the last full row are never targets). The reader serves
 * n_chosen of them: all when max_rows is 0 or >= n_rows; otherwise max_rows rows spread
 * evenly over the whole file, chosen row i being file row floor(i·n_rows / max_rows)
 * (ksa_loader_spread_row): fixed for a file, the same at every evaluation and on any number
 * of ranks. Batch k holds chosen rows k·nseq ... (at most nseq; the last may be shorter).  */
typedef struct {
    ksa_tokfile file;  /* owned, open */
    size_t seq_len;    /* L */
    size_t nseq;       /* rows per batch */
    size_t n_rows;     /* full rows in the whole file */
    size_t n_chosen;   /* rows served: n_rows, or max_rows < n_rows spread over the file */
    size_t next_batch; /* the batch ksa_val_reader_next returns next */
} ksa_val_reader;

/* File row of chosen row i (< n_chosen) when n_chosen of n_rows rows are spread evenly:
 * floor(i·n_rows / n_chosen), so row 0 is always chosen and, for n_chosen <= n_rows, the
 * chosen rows are distinct and increasing (i·n_rows never overflows: 128-bit product).  */
size_t ksa_loader_spread_row(size_t i, size_t n_chosen, size_t n_rows);

/* max_rows: rows to serve, 0 for all (see above). */
ksa_status ksa_val_reader_open(ksa_val_reader *vr, const char *path, ksa_dtype dtype,
                               size_t vocab_size, size_t seq_len, size_t nseq, size_t max_rows);
/* Batches of the chosen rows: ceil(n_chosen / nseq). */
size_t ksa_val_reader_n_batches(const ksa_val_reader *vr);
/* Fills batch k (< n_batches) and returns its number of rows.
 * tokens: [nseq, L + 1] (only the returned rows are written).                             */
size_t ksa_val_reader_batch(const ksa_val_reader *vr, size_t k, int32_t *tokens);
/* The same rows, only tokens t0 ... t0 + T of each. tokens: [nseq, T + 1]                 */
size_t ksa_val_reader_block(const ksa_val_reader *vr, size_t k, int32_t *tokens, size_t t0,
                            size_t T);
/* Fills the next batch and returns its number of rows; 0 once every chosen row was served. */
size_t ksa_val_reader_next(ksa_val_reader *vr, int32_t *tokens);
void ksa_val_reader_rewind(ksa_val_reader *vr); /* back to the first batch */
/* One line for the run log: which rows of which file are evaluated. */
void ksa_val_reader_print(const ksa_val_reader *vr, FILE *out);
void ksa_val_reader_close(ksa_val_reader *vr);

#endif
