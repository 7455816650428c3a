/* lerp.h - y = m·a + (1 - m)·b with a fixed scalar m: the annealing blend of the summary
 * rows' q/k/v between their own projections (a) and the shared ones (b), KSA_SPEC §5.5.   */
#ifndef KSA_AUTOGRAD_LERP_H
#define KSA_AUTOGRAD_LERP_H

#include "tape.h"

/* y = m·a + (1 - m)·b over n elements; y may alias a or b. */
void ksa_lerp_forward(ksa_real *y, const ksa_real *a, const ksa_real *b, ksa_real m, size_t n);
/* Adds m·dy into da and (1 - m)·dy into db; either may be NULL. */
void ksa_lerp_backward(ksa_real *da, ksa_real *db, const ksa_real *dy, ksa_real m, size_t n);

/* y = m·a + (1 - m)·b; a and b must have the same number of elements (y gets a's shape). m
 * is a constant (no gradient flows to it).                                               */
ksa_tensor *ksa_op_lerp(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b, ksa_real m);
/* The same, written into y (as many elements as a; typically a row range of a larger
 * tensor, see ksa_op_linear_into); returns y. */
ksa_tensor *ksa_op_lerp_into(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b, ksa_real m, ksa_tensor *y);

#endif
