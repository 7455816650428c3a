/* xent.h - fused softmax + cross-entropy over the vocabulary, with a weight per row. */
#ifndef KSA_AUTOGRAD_XENT_H
#define KSA_AUTOGRAD_XENT_H

#include "tape.h"

/* Forward: lse[n] and row_loss[n] = w[n] * (lse[n] - logits[n, target[n]]) for every row
 * (0 where w[n] == 0); returns sum_n row_loss[n] / norm, summed in double in row order. */
double ksa_xent_forward(double *lse, double *row_loss, const ksa_real *logits,
                        const int32_t *target, const ksa_real *w, size_t N, size_t V, double norm);
/* Backward: dlogits[n,:] += dloss * w[n] / norm * (softmax(logits[n,:]) - onehot(target[n])).
 * Rows with w[n] == 0 are not touched.                                                   */
void ksa_xent_backward(ksa_real *dlogits, double dloss, const ksa_real *logits,
                       const int32_t *target, const ksa_real *w, const double *lse, size_t N,
                       size_t V, double norm);

/* Scalar loss tensor [1] = sum_n w[n] * CE(logits[n,:], target[n]) / norm; the same value
 * in full double precision goes to *loss_value when it is not NULL, and the N terms
 * w[n] * CE(...) (not divided by norm) to row_loss_out[N] when it is not NULL.
 * w may be NULL (every row weighs 1). target and w are copied into the arena. norm > 0:
 * the caller passes the number of counted targets of the whole global batch, so gradient
 * accumulation and the rank count do not change the loss.                                */
ksa_tensor *ksa_op_cross_entropy(ksa_tape *tp, ksa_tensor *logits, const int32_t *target,
                                 const ksa_real *w, double norm, double *loss_value,
                                 double *row_loss_out);

#endif
