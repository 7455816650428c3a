/* eval.h - the mean next-token loss of a model over the rows of a token file (`ksa eval`),
 * optionally with its gradient, split over the MPI ranks (row b is rank b mod N's; the sums
 * are reduced, so every rank count gives the same result).
 *
 * Rows (the ksa.c convention, KSA_SPEC §6.3): a row is L + 1 tokens, all L targets count.
 * Whole file (batch < 0): row b = tokens b·L ... b·L+L, floor((N-1)/L) rows, read one at a
 * time. Batch B: B rows in sequential mode from `offset` (neighbouring rows share a token). */
#ifndef KSA_TRAIN_EVAL_H
#define KSA_TRAIN_EVAL_H

#include "data/loader.h"
#include "data/tokfile.h"
#include "model/decoder.h"

typedef struct {
    const char *data; /* the file, for messages (borrowed) */
    int whole, have_file, have_reader;
    ksa_tokfile tf;
    ksa_val_reader vr;
    size_t L, B;     /* text tokens per row, rows */
    int32_t *tokens; /* owned: [B, L + 1] (whole file: one row) */
} ksa_eval_rows;

/* Opens the rows of `data` for a model of vocabulary V (ids must be < V). */
ksa_status ksa_eval_rows_open(ksa_eval_rows *r, const char *data, ksa_dtype dtype, size_t V,
                              size_t L, long batch, size_t offset);
void ksa_eval_rows_close(ksa_eval_rows *r); /* also on a zeroed struct */

/* Position buckets of the L targets of a row (target t, 0-based, is token t + 1, predicted
 * from tokens 0 ... t): [0, 1), [1, 2), [2, 4), [4, 8), ..., the last one ending at L. */
#define KSA_EVAL_MAX_BUCKETS 65 /* 1 + 64: any size_t L */
typedef struct {
    size_t from, to; /* target positions [from, to) */
    size_t targets;  /* (to - from) · B */
    size_t n_bytes;  /* bytes of the targets' text (text_bytes) */
    double loss;     /* mean loss over the targets (nats) */
} ksa_eval_bucket;

/* Fills from and to of the buckets of L (>= 1) target positions; returns how many. */
size_t ksa_eval_position_buckets(size_t L, ksa_eval_bucket *buckets);

typedef struct {
    int grads;               /* d(mean loss)/d(parameter) into m->params.grad */
    int by_position;         /* the position buckets as well */
    double progress_seconds; /* > 0: rank 0 prints progress to stderr at most this often */
    /* [V] the bytes of text each id stands for (ksa_tok_text_bytes of the data's tokenizer),
     * the denominator of bits per byte; NULL: the byte tokenizer's, 1 for ids < 256 (bytes)
     * and 0 for the others (end-of-text, specials)                                        */
    const uint32_t *text_bytes;
} ksa_eval_options;

typedef struct {
    double loss;      /* mean over the B·L targets */
    size_t n_bytes;   /* bytes of the targets' text (text_bytes): the denominator of bits
                       * per byte */
    size_t n_buckets; /* 0 without by_position */
    ksa_eval_bucket bucket[KSA_EVAL_MAX_BUCKETS];
} ksa_eval_result;

/* The mean loss over the B·L targets and what o asks for besides. Collective under MPI
 * (every rank calls it; every rank gets the whole result). */
ksa_status ksa_eval_loss(ksa_model *m, ksa_eval_rows *rows, const ksa_eval_options *o,
                         ksa_eval_result *r);

#endif
