/* distill.h - the loss terms of attention distillation (KSA_SPEC §9.2): a student tensor
 * against a fixed teacher tensor of the same shape (the teacher needs no gradient). Each op
 * returns a scalar [1] = weight · (sum of its per-row or per-element terms) / norm, where
 * norm is the count the caller averages over (the elements or rows of the whole global
 * batch, so that gradient accumulation and the rank count do not change the loss), and
 * reports the unweighted sum / norm in double to *value when it is not NULL.
 *
 *   clamped MSE  s, t [N, D]: term(n, d) = min((ŝ[n,d] − t̂[n,d])², clamp), where ŝ = s and
 *                t̂ = t, or with rms_norm each row divided by its RMS: x̂[n,:] = x[n,:] /
 *                (sqrt(mean_d x[n,d]²) + 1e-6). Elements with (ŝ − t̂)² >= clamp give no
 *                gradient (the clamp's flat part).
 *   KL           zs, zt [N, V] logits: term(n) = Σ_v p_t(v) (log p_t(v) − log p_s(v)),
 *                p = softmax over v: KL(teacher ‖ student), the direction the reference
 *                computes (KSA_SPEC §9.2).
 *   cosine       s, t [N, D]: term(n) = 1 − cos(s[n,:], t[n,:]), cos = s·t / (|s| |t|) (a
 *                zero row counts as cos = 0).                                            */
#ifndef KSA_AUTOGRAD_DISTILL_H
#define KSA_AUTOGRAD_DISTILL_H

#include "tape.h"

#define KSA_DISTILL_RMS_EPS 1e-6 /* added to the row RMS before dividing (KSA_SPEC §9.2) */

ksa_tensor *ksa_op_clamped_mse(ksa_tape *tp, ksa_tensor *s, ksa_tensor *t, double clamp,
                               int rms_norm, double weight, double norm, double *value);
ksa_tensor *ksa_op_kl_teacher(ksa_tape *tp, ksa_tensor *zs, ksa_tensor *zt, double weight,
                              double norm, double *value);
ksa_tensor *ksa_op_cosine_distance(ksa_tape *tp, ksa_tensor *s, ksa_tensor *t, double weight,
                                   double norm, double *value);

#endif
