/* test_clip.c - value clipping (bounds, NaN and inf), sum of squares against double and its
 * determinism, value-clip-then-norm order, norm factor, scaling, first non-finite element.
 * Arrays are long enough (and odd) that every OpenMP thread gets a block.                  */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/clip.h"

enum { BIG = 100003 };

static int default_threads; /* OMP_NUM_THREADS of the run, restored after each change */

static ksa_real *random_grad(size_t n, double lo, double hi, uint64_t seed)
{
    ksa_real *g = malloc(n * sizeof *g);
    assert_non_null(g);
    test_rng rng = test_rng_seed(seed);
    test_fill_uniform(g, n, lo, hi, &rng);
    return g;
}

static void value_clipping_bounds_every_element_and_keeps_the_rest(void **state)
{
    (void)state;
    ksa_real g[] = {-3, -1, -0.5f, 0, 0.25f, 1, 1.0001f, 7, -1.0001f};
    const double want[] = {-1, -1, -0.5, 0, 0.25, 1, 1, 1, -1};
    ksa_clip_values(g, 9, 1.0);
    ksa_expect_close(g, want, 9, 0, 0, "clipped to [-1, 1]");

    ksa_real *b = random_grad(BIG, -3, 3, 1);
    double *orig = test_to_double(b, BIG);
    ksa_clip_values(b, BIG, 0.5);
    for (size_t i = 0; i < BIG; i++)
        orig[i] = orig[i] > 0.5 ? 0.5 : orig[i] < -0.5 ? -0.5 : orig[i];
    ksa_expect_close(b, orig, BIG, 0, 0, "clipped to [-0.5, 0.5], all threads");
    free(b);
    free(orig);
}

static void clip_value_zero_or_negative_turns_value_clipping_off(void **state)
{
    (void)state;
    ksa_real g[] = {-3, 5, 0.5f, INFINITY};
    const double want[] = {-3, 5, 0.5};
    ksa_clip_values(g, 4, 0);
    ksa_expect_close(g, want, 3, 0, 0, "clip_value 0 is off");
    ksa_clip_values(g, 4, -1);
    ksa_expect_close(g, want, 3, 0, 0, "clip_value -1 is off");
    assert_true(isinf(g[3]) && g[3] > 0);
    ksa_clip_values(g, 0, 1.0); /* n = 0 is fine */
}

/* NaN survives (a clipped NaN would hide a divergence); +-inf map to the bounds, which is
 * why the trainer checks ksa_first_nonfinite before clipping. */
static void nan_survives_value_clipping_and_infinities_clip_to_the_bounds(void **state)
{
    (void)state;
    ksa_real *g = random_grad(BIG, -2, 2, 2);
    const size_t nan_at[] = {0, 17, BIG / 2, BIG - 1};
    for (int j = 0; j < 4; j++)
        g[nan_at[j]] = NAN;
    g[5] = INFINITY;
    g[BIG - 2] = -INFINITY;
    g[6] = -NAN;
    ksa_clip_values(g, BIG, 1.0);
    for (int j = 0; j < 4; j++)
        assert_true(isnan(g[nan_at[j]]));
    assert_true(isnan(g[6]));
    assert_true(g[5] == 1);
    assert_true(g[BIG - 2] == -1);
    size_t n_nan = 0;
    for (size_t i = 0; i < BIG; i++) {
        n_nan += isnan(g[i]) != 0;
        assert_true(isnan(g[i]) || fabs((double)g[i]) <= 1);
    }
    assert_int_equal(n_nan, 5);
    /* what fmin/fmax would have done: the NaN becomes a bound */
    assert_true(fmin(fmax((double)NAN, -1.0), 1.0) == -1.0);
    free(g);
}

static void sum_of_squares_matches_a_double_reference(void **state)
{
    (void)state;
    ksa_real *g = random_grad(BIG, -3, 3, 3);
    long double ref = 0; /* a more precise reference than the code's double */
    for (size_t i = 0; i < BIG; i++)
        ref += (long double)g[i] * (long double)g[i];
    double got = ksa_sum_squares(g, BIG), want = (double)ref;
    ksa_expect_close_dd(&got, &want, 1, 0, 1e-13, "sum of squares of 100003 elements");
    got = ksa_sum_squares(g, 1);
    want = (double)g[0] * (double)g[0];
    ksa_expect_close_dd(&got, &want, 1, 0, 0, "sum of squares of one element");
    assert_true(ksa_sum_squares(g, 0) == 0.0);
    /* fewer elements than threads: empty blocks add 0 */
    ksa_threads_set(5);
    got = ksa_sum_squares(g, 3);
    want = (double)g[0] * g[0] + (double)g[1] * g[1] + (double)g[2] * g[2];
    ksa_expect_close_dd(&got, &want, 1, 0, 1e-15, "sum of squares of 3 elements, 5 threads");
    ksa_threads_set(default_threads);
    /* float squares would overflow here; the double accumulation does not */
    ksa_real h[2] = {(ksa_real)1e30, (ksa_real)-1e30};
    got = ksa_sum_squares(h, 2);
    want = 2 * (double)h[0] * (double)h[0];
    ksa_expect_close_dd(&got, &want, 1, 0, 1e-15, "sum of squares of 1e30");
    free(g);
}

static void sum_of_squares_is_bit_identical_for_repeated_runs(void **state)
{
    (void)state;
    ksa_real *g = random_grad(BIG, -1, 1, 4);
    const int threads[] = {1, 2, 3, 4, 7};
    for (int t = 0; t < 5; t++) {
        ksa_threads_set(threads[t]);
        double first = ksa_sum_squares(g, BIG);
        for (int rep = 0; rep < 20; rep++) {
            double again = ksa_sum_squares(g, BIG);
            if (memcmp(&first, &again, sizeof first) != 0)
                fail_msg("%d threads, run %d: %.17g != %.17g", threads[t], rep, again, first);
        }
    }
    ksa_threads_set(default_threads);
    free(g);
}

/* The recipe: value clip, then measure the norm (logged grad_norm), then norm-clip.
 * g = (10, 0.5), clip_value 1, clip_norm 1: value clipping gives (1, 0.5), grad_norm
 * sqrt(1.25), result (1, 0.5)/sqrt(1.25). Norm first would log sqrt(100.25) and end at
 * about (0.999, 0.050): the order is observable. */
static void norm_is_measured_after_value_clipping(void **state)
{
    (void)state;
    ksa_real g[] = {10, 0.5f};
    ksa_clip_values(g, 2, 1.0);
    double grad_norm = sqrt(ksa_sum_squares(g, 2));
    assert_true(grad_norm == sqrt(1.25));
    ksa_scale(g, 2, ksa_clip_norm_factor(grad_norm, 1.0));
    const double want[] = {1 / sqrt(1.25), 0.5 / sqrt(1.25)};
    ksa_expect_close(g, want, 2, 0, TEST_FWD_RTOL, "value clip, then norm clip");

    ksa_real h[] = {10, 0.5f}; /* the other order */
    double wrong_norm = sqrt(ksa_sum_squares(h, 2));
    ksa_scale(h, 2, ksa_clip_norm_factor(wrong_norm, 1.0));
    ksa_clip_values(h, 2, 1.0);
    assert_true(wrong_norm == sqrt(100.25));
    assert_true(fabs((double)h[1] - want[1]) > 0.3);
}

static void norm_factor_is_one_unless_the_norm_exceeds_clip_norm(void **state)
{
    (void)state;
    assert_true(ksa_clip_norm_factor(5.0, 0) == 1.0);   /* off */
    assert_true(ksa_clip_norm_factor(5.0, -1) == 1.0);  /* off */
    assert_true(ksa_clip_norm_factor(0.5, 1.0) == 1.0); /* below */
    assert_true(ksa_clip_norm_factor(1.0, 1.0) == 1.0); /* equal */
    assert_true(ksa_clip_norm_factor(4.0, 1.0) == 0.25);
    assert_true(ksa_clip_norm_factor(0.0, 1.0) == 1.0);
    assert_true(ksa_clip_norm_factor(NAN, 1.0) == 1.0);
    assert_true(ksa_clip_norm_factor(INFINITY, 1.0) == 0.0);
}

static void scale_multiplies_every_element(void **state)
{
    (void)state;
    ksa_real *g = random_grad(BIG, -2, 2, 5);
    double *want = test_to_double(g, BIG);
    for (size_t i = 0; i < BIG; i++)
        want[i] *= 0.25;
    ksa_scale(g, BIG, 0.25);
    ksa_expect_close(g, want, BIG, 0, 0, "g * 0.25 (exact in binary)");
    ksa_scale(g, BIG, 1.0);
    ksa_expect_close(g, want, BIG, 0, 0, "g * 1");
    free(g);
    free(want);
}

static void first_nonfinite_finds_the_lowest_index(void **state)
{
    (void)state;
    ksa_real *g = random_grad(BIG, -1e3, 1e3, 6);
    assert_int_equal(ksa_first_nonfinite(g, BIG), BIG);
    assert_int_equal(ksa_first_nonfinite(g, 0), 0);
    g[BIG - 1] = -INFINITY; /* in the last thread's block */
    assert_int_equal(ksa_first_nonfinite(g, BIG), BIG - 1);
    assert_int_equal(ksa_first_nonfinite(g, BIG - 1), BIG - 1); /* not within n */
    g[BIG / 2 + 1] = NAN;
    assert_int_equal(ksa_first_nonfinite(g, BIG), BIG / 2 + 1);
    g[7] = INFINITY;
    g[3] = NAN;
    assert_int_equal(ksa_first_nonfinite(g, BIG), 3);
    ksa_threads_set(7);
    assert_int_equal(ksa_first_nonfinite(g, BIG), 3);
    ksa_threads_set(default_threads);
    /* large finite values are finite */
    ksa_real h[] = {(ksa_real)1e30, (ksa_real)-1e30, 0};
    assert_int_equal(ksa_first_nonfinite(h, 3), 3);
    free(g);
}

int main(void)
{
    default_threads = ksa_threads_get();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(value_clipping_bounds_every_element_and_keeps_the_rest),
        cmocka_unit_test(clip_value_zero_or_negative_turns_value_clipping_off),
        cmocka_unit_test(nan_survives_value_clipping_and_infinities_clip_to_the_bounds),
        cmocka_unit_test(sum_of_squares_matches_a_double_reference),
        cmocka_unit_test(sum_of_squares_is_bit_identical_for_repeated_runs),
        cmocka_unit_test(norm_is_measured_after_value_clipping),
        cmocka_unit_test(norm_factor_is_one_unless_the_norm_exceeds_clip_norm),
        cmocka_unit_test(scale_multiplies_every_element),
        cmocka_unit_test(first_nonfinite_finds_the_lowest_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
