/* linear.h - y = x · Wᵀ with the weight stored [out, in] as in the checkpoint (KSA_SPEC §7.1).
 * Every projection of the model (q/k/v/o, gate/up/down, lm_head) is this op; no biases.  */
#ifndef KSA_AUTOGRAD_LINEAR_H
#define KSA_AUTOGRAD_LINEAR_H

#include "tape.h"

/* y: [N, out], x: [N, in], w: [out, in], all row-major. Overwrites y. */
void ksa_linear_forward(ksa_real *y, const ksa_real *x, const ksa_real *w, size_t N, size_t in,
                        size_t out);
/* Adds into dx [N, in] and dw [out, in]; either may be NULL. dy: [N, out]. */
void ksa_linear_backward(ksa_real *dx, ksa_real *dw, const ksa_real *dy, const ksa_real *x,
                         const ksa_real *w, size_t N, size_t in, size_t out);

/* y = x · wᵀ for w [out, in] and x of any rank whose last dimension is in (its rows are
 * numel / in); y keeps x's leading dimensions, with last dimension out.                  */
ksa_tensor *ksa_op_linear(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w);
/* The same, written into y (rows of x × out elements; typically a row range of a larger
 * tensor whose other rows another op writes: the two streams of one buffer); returns y. */
ksa_tensor *ksa_op_linear_into(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w, ksa_tensor *y);

#endif
