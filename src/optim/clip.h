/* clip.h - gradient clipping pieces over a flat slice g : [n] of the gradient buffer.
 *
 * The KSA recipe (KSA_SPEC §9.5, torch's clip_grad_value_) clips element-wise by value; the
 * global norm is measured afterwards. One optimizer step does, in this order:
 *   1. i = ksa_first_nonfinite(g, n): i < n stops the run (KSA_ENUMERIC, naming the parameter
 *      that holds element i). This comes BEFORE clipping because clipping maps +-inf to
 *      +-clip_value and would hide the divergence; NaN is kept by clipping, but checking first
 *      does not rely on it.
 *   2. ksa_clip_values(g, n, clip_value)              (clip_value <= 0: off)
 *   3. norm = sqrt(ksa_sum_squares(g, n))             (under MPI: each rank's slice, summed
 *                                                      by an allreduce, then the sqrt);
 *      this norm of the value-clipped gradient is the logged grad_norm.
 *   4. ksa_scale(g, n, ksa_clip_norm_factor(norm, clip_norm))   (clip_norm <= 0: off; a
 *      deviation from the recipe, KSA_SPEC §9.5)
 * All loops are OpenMP with static schedules; the sum of squares is bit-identical for a given
 * thread count.                                                                             */
#ifndef KSA_OPTIM_CLIP_H
#define KSA_OPTIM_CLIP_H

#include "core/core.h"

/* Element-wise value clipping of g to [-clip_value, clip_value] (clip_value <= 0: off), in
 * place. +inf becomes +clip_value and -inf -clip_value; NaN stays NaN. That is why the bounds
 * are applied with comparisons (x > c ? c : ...), which are false for NaN: fmin/fmax return
 * the other operand when one is NaN, so fmin(fmax(x, -c), c) would turn a NaN into a bound
 * and hide a divergence. clip_value must not be NaN.                                        */
void ksa_clip_values(ksa_real *g, size_t n, double clip_value);

/* Sum of squares of g, accumulated in double. Thread t of T sums the contiguous block
 * [t*n/T, (t+1)*n/T) in index order and the partial sums are added in thread order, so the
 * result is deterministic for a given thread count (not across thread counts).  0 for n = 0. */
double ksa_sum_squares(const ksa_real *g, size_t n);

/* g *= scale, in place; scale is rounded to ksa_real first (as torch multiplies float32
 * gradients by a float32 factor). scale == 1 leaves g untouched.                        */
void ksa_scale(ksa_real *g, size_t n, double scale);

/* Norm clipping factor: clip_norm / norm when clip_norm > 0 and norm > clip_norm, else 1
 * (a NaN norm gives 1: non-finite gradients are caught by ksa_first_nonfinite first).     */
double ksa_clip_norm_factor(double norm, double clip_norm);

/* Index of the first non-finite (NaN or +-inf) element of g, or n if all are finite. */
size_t ksa_first_nonfinite(const ksa_real *g, size_t n);

#endif
