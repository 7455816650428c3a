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

/* The mean loss over the B·L targets, the number of targets that are bytes (ids < 256, not
 * end-of-text: the denominator of bits per byte) and, with grads, d(mean loss)/d(parameter)
 * in m->params.grad. Collective under MPI (every rank calls it). */
ksa_status ksa_eval_loss(ksa_model *m, ksa_eval_rows *rows, int grads, double *loss,
                         size_t *n_bytes);

#endif
