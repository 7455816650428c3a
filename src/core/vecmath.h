/* vecmath.h - vectorisable exp and the softmax pieces shared by the attention kernels
 * (summary_attn.c: training and prefill; decode.c: one-token decoding) and SwiGLU.        */
#ifndef KSA_CORE_VECMATH_H
#define KSA_CORE_VECMATH_H

#include <math.h>
#include <stdint.h>

#include "core/core.h"

/* ---- exp ----------------------------------------------------------------------------- *
 * ksa_exp(t) = exp(t) for t <= 88 (softmax and sigmoid arguments are <= 0).
 * float: Cephes-style range reduction t = n·ln2 + r, |r| <= ln2/2, degree-7 polynomial,
 * 2^n added to the exponent bits; n is read from the mantissa of t·log2e + 1.5·2^23 (no
 * float->int conversion, which would block vectorisation). Relative error < 1e-7;
 * arguments below -86.5 (including -inf) give exactly 0. Branch-free, so that gcc
 * vectorises a loop that calls it (omp simd) at -O2 without -ffast-math. double: libm exp. */
#ifdef KSA_REAL_DOUBLE
static inline ksa_real ksa_exp(ksa_real t)
{
    return exp(t);
}
#else
typedef union {
    float f;
    uint32_t u;
} float_bits;

static inline float ksa_exp(float t)
{
    float tc = t < -88.0f ? -88.0f : t;
    float_bits z = {.f = tc * 1.44269504088896341f + 12582912.0f};
    float nf = z.f - 12582912.0f; /* round(tc / ln2) */
    float r = tc - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    float_bits e = {.f = y * r * r + r + 1.0f};
    e.u += (z.u - 0x4B400000u) << 23; /* times 2^n                     */
    e.u &= -(uint32_t)(t >= -86.5f);  /* underflow (and -inf) -> 0     */
    return e.f;
}
#endif

/* x[k] = exp(x[k] - shift), returns the sum. Inputs x - shift <= ~0 (softmax arguments). */
static inline ksa_real ksa_exp_shift_sum(ksa_real *restrict x, size_t n, ksa_real shift)
{
    ksa_real sum = 0;
#ifndef KSA_REAL_DOUBLE
#pragma omp simd reduction(+ : sum)
#endif
    for (size_t k = 0; k < n; k++) {
        x[k] = ksa_exp(x[k] - shift);
        sum += x[k];
    }
    return sum;
}

static inline ksa_real ksa_row_max(const ksa_real *x, size_t n)
{
    ksa_real mx = x[0];
#pragma omp simd reduction(max : mx)
    for (size_t k = 1; k < n; k++)
        mx = x[k] > mx ? x[k] : mx;
    return mx;
}

#endif
