/* blas.h - the one place that calls BLAS. Row-major; ksa_real picks sgemm or dgemm.
 *
 *   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C[M,N]
 *   op(X) = X when trans_x == 0, X^T when trans_x == 1; lda/ldb/ldc are row strides.     */
#ifndef KSA_AUTOGRAD_BLAS_H
#define KSA_AUTOGRAD_BLAS_H

#include "core/core.h"

void ksa_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, ksa_real alpha,
              const ksa_real *A, size_t lda, const ksa_real *B, size_t ldb, ksa_real beta,
              ksa_real *C, size_t ldc);

/* y[M] = alpha * A[M,K] · x[K] + beta * y[M] (row-major A, row stride lda): one row of
 * activations against a weight matrix, which gemm would first copy into its packed layout
 * (that copy is most of the time of a one-row product, e.g. a decode step).            */
void ksa_gemv(size_t M, size_t K, ksa_real alpha, const ksa_real *A, size_t lda, const ksa_real *x,
              ksa_real beta, ksa_real *y);

/* Best GFLOP/s of `reps` square n x n x n GEMMs of ksa_real on the current threads (after
 * one warm-up): the machine's peak, the MFU denominator. Allocates 3 n^2 reals.       */
double ksa_blas_measure_gflops(size_t n, int reps);

/* The kernels OpenBLAS runs: OPENBLAS_CORETYPE when set (it overrides OpenBLAS's own
 * choice), else the core OpenBLAS detected ("Haswell", "SkylakeX", ...).              */
const char *ksa_blas_core_type(void);

/* 1 when OpenBLAS was built with OpenMP (one shared thread pool, DESIGN.md §4). */
int ksa_blas_uses_openmp(void);

#endif
