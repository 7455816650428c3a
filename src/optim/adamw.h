/* adamw.h - AdamW with decoupled weight decay over a flat slice of parameters. */
#ifndef KSA_OPTIM_ADAMW_H
#define KSA_OPTIM_ADAMW_H

#include "core/core.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} ksa_adamw_hparams;

/* One update of n elements, t = 1-based update count (bias correction):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd * p )
 * (decoupled decay as torch.optim.AdamW: p *= 1 - lr*wd, then the Adam step).
 * Returns the index of the first element whose new p, m or v is not finite (NaN or +-inf),
 * or n when all are: the check is fused into the update's loop (no second pass). Every
 * element is updated either way; the caller stops the run before the values are used.   */
size_t ksa_adamw_update(ksa_real *p, ksa_real *m, ksa_real *v, const ksa_real *g, size_t n,
                        const ksa_adamw_hparams *hp, long t);

#endif
