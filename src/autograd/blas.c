/* blas.c - row-major GEMM wrapper over OpenBLAS (cblas_sgemm / cblas_dgemm). */
#include "blas.h"

#include <limits.h>
#include <stdlib.h>
#include <cblas.h>

void ksa_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, ksa_real alpha,
              const ksa_real *A, size_t lda, const ksa_real *B, size_t ldb, ksa_real beta,
              ksa_real *C, size_t ldc)
{
    if (M == 0 || N == 0)
        return;
    KSA_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                   ldc <= INT_MAX,
               "gemm sizes exceed int: M=%zu N=%zu K=%zu", M, N, K);
    enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
#ifdef KSA_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
#else
    cblas_sgemm(CblasRowMajor, ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb,
                beta, C, (int)ldc);
#endif
}

void ksa_gemv(size_t M, size_t K, ksa_real alpha, const ksa_real *A, size_t lda, const ksa_real *x,
              ksa_real beta, ksa_real *y)
{
    if (M == 0)
        return;
    KSA_ASSERT(M <= INT_MAX && K <= INT_MAX && lda <= INT_MAX, "gemv sizes exceed int: M=%zu K=%zu",
               M, K);
#ifdef KSA_REAL_DOUBLE
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)M, (int)K, alpha, A, (int)lda, x, 1, beta, y, 1);
#else
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)M, (int)K, alpha, A, (int)lda, x, 1, beta, y, 1);
#endif
}

const char *ksa_blas_core_type(void)
{
    const char *forced = getenv("OPENBLAS_CORETYPE");
    if (forced && forced[0])
        return forced;
    const char *detected = openblas_get_corename();
    return detected && detected[0] ? detected : "unknown-core";
}

int ksa_blas_uses_openmp(void)
{
    return openblas_get_parallel() == 2;
}

double ksa_blas_measure_gflops(size_t n, int reps)
{
    ksa_real *a = ksa_alloc(n * n * sizeof *a), *b = ksa_alloc(n * n * sizeof *b);
    ksa_real *c = ksa_alloc(n * n * sizeof *c);
    for (size_t i = 0; i < n * n; i++) {
        a[i] = (ksa_real)((double)(i % 7) * 0.01);
        b[i] = (ksa_real)((double)(i % 5) * 0.02);
    }
    ksa_gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n); /* warm-up: threads, pages */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = ksa_now();
        ksa_gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = ksa_now() - t0;
        best = dt < best ? dt : best;
    }
    ksa_free(a), ksa_free(b), ksa_free(c);
    return 2.0 * (double)n * (double)n * (double)n / best / 1e9;
}
