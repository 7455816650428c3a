/* adamw.c - p, m, v, g : [n] flat slices (the rank's owned slice of the parameter buffer).
 * Matches torch.optim.AdamW: decay first (p *= 1 - lr*wd), then p -= lr * mhat/(sqrt(vhat)+eps). */
#include "adamw.h"

#include <math.h>

void ksa_adamw_update(ksa_real *p, ksa_real *m, ksa_real *v, const ksa_real *g, size_t n,
                      const ksa_adamw_hparams *hp, long t)
{
    KSA_ASSERT(t >= 1, "AdamW update count starts at 1, got %ld", t);
    const ksa_real b1 = (ksa_real)hp->beta1, b2 = (ksa_real)hp->beta2;
    const ksa_real c1 = (ksa_real)(1.0 / (1.0 - pow(hp->beta1, (double)t)));
    const ksa_real c2 = (ksa_real)(1.0 / (1.0 - pow(hp->beta2, (double)t)));
    const ksa_real lr = (ksa_real)hp->lr, eps = (ksa_real)hp->eps;
    const ksa_real decay = (ksa_real)(1.0 - hp->lr * hp->weight_decay);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        ksa_real gi = g[i];
        ksa_real mi = b1 * m[i] + (1 - b1) * gi;
        ksa_real vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - lr * (mi * c1) / (sqrt(vi * c2) + eps);
    }
}
