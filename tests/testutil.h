/* testutil.h - helpers shared by the cmocka tests: random data, closeness checks that name
 * the worst element, finite differences, and the tolerances of STYLE.md §7.
 *
 * Every test program is compiled twice (float32 and float64 builds of src/). Forward
 * results are compared with a naive reference written in double inside the test; gradients
 * with central finite differences of that double reference, and, in the float64 build,
 * also with finite differences of the kernel's own forward.                               */
#ifndef KSA_TESTS_TESTUTIL_H
#define KSA_TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "core/rng.h"
#include "model/config.h"

#ifdef KSA_REAL_DOUBLE
#define TEST_FWD_ATOL 1e-12
#define TEST_FWD_RTOL 1e-10
#define TEST_BWD_ATOL 1e-8 /* analytic vs central differences, STYLE.md §7 */
#define TEST_BWD_RTOL 1e-6
#else
#define TEST_FWD_ATOL 1e-6
#define TEST_FWD_RTOL 1e-5
#define TEST_BWD_ATOL 1e-5
#define TEST_BWD_RTOL 1e-4
#endif

/* ---- deterministic random numbers (splitmix64) ---------------------------------------- */
typedef ksa_rng test_rng;              /* src/core/rng.h */
test_rng test_rng_seed(uint64_t seed); /* a mixed seed: nearby seeds give unrelated streams */
double test_rng_uniform(test_rng *r);  /* [0, 1) */
double test_rng_normal(test_rng *r);   /* N(0, 1) */
void test_fill_uniform(ksa_real *x, size_t n, double lo, double hi, test_rng *r);
void test_fill_uniform_d(double *x, size_t n, double lo, double hi, test_rng *r);

/* ---- conversions ---------------------------------------------------------------------- */
double *test_to_double(const ksa_real *x, size_t n); /* malloc'ed copy */
void test_from_double(ksa_real *y, const double *x, size_t n);

/* ---- closeness: |got - want| <= atol + rtol * |want| on every element ------------------ *
 * On failure prints `what`, the worst index, both values and the bound, then fails the test. */
void ksa_expect_close(const ksa_real *got, const double *want, size_t n, double atol, double rtol,
                      const char *what);
void ksa_expect_close_dd(const double *got, const double *want, size_t n, double atol, double rtol,
                         const char *what);
/* STYLE.md's finite-difference rule: |a - n| <= atol + rtol * max(|a|, |n|). */
void ksa_expect_close_sym(const double *a, const double *b, size_t n, double atol, double rtol,
                          const char *what);

/* ---- finite differences --------------------------------------------------------------- *
 * test_fd_grad perturbs ksa_real data: meaningful in the float64 build only (guard it with
 * #ifdef KSA_REAL_DOUBLE); test_fd_grad_d perturbs a double reference in either build.
 * f(ctx) returns a scalar loss computed from the current contents of x (n elements).
 * out[i] = (f(x + h e_i) - f(x - h e_i)) / 2h,  h = 1e-6 * max(1, |x_i|); x is restored. */
typedef double (*test_loss_fn)(void *ctx);
void test_fd_grad(test_loss_fn f, void *ctx, ksa_real *x, size_t n, double *out);
void test_fd_grad_d(test_loss_fn f, void *ctx, double *x, size_t n, double *out);

/* ---- aborts: internal errors (KSA_ASSERT) ------------------------------------------- *
 * Runs fn(arg) in a child process (one OpenMP thread: libgomp's pool does not survive fork;
 * a 10 s alarm so a missing check fails instead of hanging) and fails the test unless the
 * child dies of SIGABRT with `needle` in what it wrote to stderr.                        */
void test_expect_abort(void (*fn)(const void *arg), const void *arg, const char *needle);

/* ---- a scratch folder per test program ---------------------------------------------- *
 * test_scratch_make: mkdtemp "/tmp/<prefix>_XXXXXX" into dir (0 on success);
 * test_remove_tree: removes a folder and everything below it (0 on success);
 * test_path_in: "dir/name" in one of a few rotating buffers (several may be live at once). */
int test_scratch_make(char *dir, size_t cap, const char *prefix);
int test_remove_tree(const char *path);
const char *test_path_in(const char *dir, const char *name);

/* ---- a small model ------------------------------------------------------------------- *
 * The configuration of the checkpoint tests: vocabulary 257, width 16, 2 layers (a summary
 * layer with independent summary parameters, then a causal one), 4 query / 2 key-value
 * heads of 4, chunks of 4 with 1 summary token, window 2: 12 688 parameters.             */
void test_config_small(ksa_model_config *c);

/* ---- editing checkpoints ------------------------------------------------------------ *
 * (Re)writes the `checksum` attribute of an open float dataset from its current values
 * (CHECKPOINT_FORMAT.md, Integrity), for tests that edit a checkpoint to make it wrong in
 * one other way only. Returns 0, or -1 after an HDF5 error.                              */
int test_h5_write_checksum(long long dset);

/* sum_i y[i] * c[i] in double */
double test_dot(const ksa_real *y, const double *c, size_t n);
double test_dot_dd(const double *y, const double *c, size_t n);

#endif
