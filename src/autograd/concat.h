/* concat.h - stack two tensors along their first dimension (the two streams, DESIGN.md §2). */
#ifndef KSA_AUTOGRAD_CONCAT_H
#define KSA_AUTOGRAD_CONCAT_H

#include "tape.h"

/* y = [a; b]: a is [Na, ...], b is [Nb, ...] with equal trailing dimensions. */
/* Kernels: na, nb are element counts of a and b. */
void ksa_concat_rows_forward(ksa_real *y, const ksa_real *a, size_t na, const ksa_real *b,
                             size_t nb);
void ksa_concat_rows_backward(ksa_real *da, ksa_real *db, const ksa_real *dy, size_t na, size_t nb);

/* y = [a; b] on the tape. */
ksa_tensor *ksa_op_concat_rows(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b);

#endif
