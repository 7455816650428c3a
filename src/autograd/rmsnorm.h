/* rmsnorm.h - RMSNorm with a weight, over the last D elements of every row (KSA_SPEC §6.1).
 * The same op serves the hidden-size norms (w: [D_model]) and the per-head q_norm/k_norm
 * (x: [N, H*dh] seen as N*H rows of dh, w: [dh]).                                         */
#ifndef KSA_AUTOGRAD_RMSNORM_H
#define KSA_AUTOGRAD_RMSNORM_H

#include "tape.h"

void ksa_rmsnorm_forward(ksa_real *y, ksa_real *r, const ksa_real *x, const ksa_real *w, size_t N,
                         size_t D, ksa_real eps);
void ksa_rmsnorm_backward(ksa_real *dx, ksa_real *dw, const ksa_real *dy, const ksa_real *x,
                          const ksa_real *w, const ksa_real *r, size_t N, size_t D);

/* y = rmsnorm(x) * w over groups of w->numel elements; x->numel must be a multiple. */
ksa_tensor *ksa_op_rmsnorm(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w, ksa_real eps);
/* The same, written into y (as many elements as x; typically a row range of a larger
 * tensor, see ksa_op_linear_into); returns y. */
ksa_tensor *ksa_op_rmsnorm_into(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w, ksa_real eps,
                                ksa_tensor *y);

#endif
