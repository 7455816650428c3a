/* add.h - elementwise sum of two tensors of the same shape (the residual connections,
 * KSA_SPEC §6.2 step 3: h = h + o_proj(a), h = h + mlp(norm2(h))).                       */
#ifndef KSA_AUTOGRAD_ADD_H
#define KSA_AUTOGRAD_ADD_H

#include "tape.h"

/* y = a + b over n elements; y may alias a or b. */
void ksa_add_forward(ksa_real *y, const ksa_real *a, const ksa_real *b, size_t n);
/* Adds dy into da and db; either may be NULL, and they may be the same buffer (a + a). */
void ksa_add_backward(ksa_real *da, ksa_real *db, const ksa_real *dy, size_t n);

/* y = a + b; a and b must have the same shape, which y gets. */
ksa_tensor *ksa_op_add(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b);

#endif
