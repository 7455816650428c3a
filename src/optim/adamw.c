/* adamw.c - p, m, v, g : [n] flat slices (the rank's owned slice of the parameter buffer).
 * Matches torch.optim.AdamW: decay first (p *= 1 - lr*wd), then p -= lr * mhat/(sqrt(vhat)+eps). */
#include "adamw.h"

#include <math.h>

/* The first i with p[i], m[i] or v[i] not finite, or n: only after the update found one. */
static size_t first_nonfinite_of_three(const ksa_real *p, const ksa_real *m, const ksa_real *v,
                                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]) || !isfinite(m[i]) || !isfinite(v[i]))
            return i;
    return n;
}

size_t ksa_adamw_update(ksa_real *p, ksa_real *m, ksa_real *v, const ksa_real *g, size_t n,
                        const ksa_adamw_hparams *hp, long t)
{
    KSA_ASSERT(t >= 1, "AdamW update count starts at 1, got %ld", t);
    const ksa_real b1 = (ksa_real)hp->beta1, b2 = (ksa_real)hp->beta2;
    const ksa_real c1 = (ksa_real)(1.0 / (1.0 - pow(hp->beta1, (double)t)));
    const ksa_real c2 = (ksa_real)(1.0 / (1.0 - pow(hp->beta2, (double)t)));
    const ksa_real lr = (ksa_real)hp->lr, eps = (ksa_real)hp->eps;
    const ksa_real decay = (ksa_real)(1.0 - hp->lr * hp->weight_decay);
    /* The finite check rides on the update: the new values are in registers already. x - x
     * is 0 for a finite x and NaN for an infinite or NaN one (no -ffast-math here), so the
     * sum stays exactly 0 unless some new p, m or v is not finite, in any order of addition.
     * Four additions per element and no branch: a compare-and-keep-the-index in the loop
     * measured ~1.5x slower (docs/training.md, "Divergence"). */
    ksa_real nonfinite = 0;
#pragma omp parallel for schedule(static) reduction(+ : nonfinite)
    for (size_t i = 0; i < n; i++) {
        ksa_real gi = g[i];
        ksa_real mi = b1 * m[i] + (1 - b1) * gi;
        ksa_real vi = b2 * v[i] + (1 - b2) * gi * gi;
        ksa_real pi = p[i] * decay - lr * (mi * c1) / (sqrt(vi * c2) + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        nonfinite += (pi - pi) + (mi - mi) + (vi - vi);
    }
    /* a second look only when the run is about to stop anyway */
    return nonfinite == 0 ? n : first_nonfinite_of_three(p, m, v, n);
}
