/* clip.c - g : [n] flat gradient slice; value clipping, sum of squares, scaling, finiteness.
 * Order of use and the NaN/inf rules are in the header.                                   */
#include "clip.h"

#include <math.h>
#include <omp.h>

void ksa_clip_values(ksa_real *g, size_t n, double clip_value)
{
    KSA_ASSERT(!isnan(clip_value), "clip_value is NaN");
    if (clip_value <= 0)
        return;
    const ksa_real hi = (ksa_real)clip_value, lo = -hi;
    /* comparisons, not fmin/fmax: both are false for NaN, which must survive (header) */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        ksa_real x = g[i];
        g[i] = x > hi ? hi : x < lo ? lo : x;
    }
}

/* start of block t of T over n elements: the first n % T blocks get one extra element */
static size_t block_start(size_t n, size_t t, size_t T)
{
    size_t q = n / T, rem = n % T;
    return t * q + (t < rem ? t : rem);
}

double ksa_sum_squares(const ksa_real *g, size_t n)
{
    double total = 0;
#pragma omp parallel
    {
        size_t T = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        size_t lo = block_start(n, t, T), hi = block_start(n, t + 1, T);
        double s = 0;
        for (size_t i = lo; i < hi; i++) {
            double x = (double)g[i];
            s += x * x;
        }
        /* iteration k runs on thread k (chunk 1, T iterations), and `ordered` makes the
         * additions happen in k order: the same rounding on every call */
#pragma omp for ordered schedule(static, 1)
        for (size_t k = 0; k < T; k++) {
#pragma omp ordered
            total += s;
        }
    }
    return total;
}

void ksa_scale(ksa_real *g, size_t n, double scale)
{
    if (scale == 1.0)
        return;
    const ksa_real c = (ksa_real)scale;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        g[i] *= c;
}

double ksa_clip_norm_factor(double norm, double clip_norm)
{
    return (clip_norm > 0 && norm > clip_norm) ? clip_norm / norm : 1.0;
}

size_t ksa_first_nonfinite(const ksa_real *g, size_t n)
{
    size_t first = n;
    /* every thread scans its static block; the minimum over threads is the first index */
#pragma omp parallel for schedule(static) reduction(min : first)
    for (size_t i = 0; i < n; i++)
        if (!isfinite(g[i]) && i < first)
            first = i;
    return first;
}
