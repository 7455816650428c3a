/* test_adamw.c - AdamW against a direct double transcription of torch.optim.AdamW. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "optim/adamw.h"

static void updates_match_torch_adamw_formula(void **state)
{
    (void)state;
    enum { n = 37, steps = 5 };
    ksa_adamw_hparams hp = {
        .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    test_rng rng = test_rng_seed(1);
    ksa_real p[n], m[n] = {0}, v[n] = {0}, g[n];
    double pd[n], md[n] = {0}, vd[n] = {0};
    test_fill_uniform(p, n, -1, 1, &rng);
    for (int i = 0; i < n; i++)
        pd[i] = (double)p[i];
    for (long t = 1; t <= steps; t++) {
        test_fill_uniform(g, n, -2, 2, &rng);
        g[3] = 0; /* a zero gradient still decays */
        assert_int_equal(ksa_adamw_update(p, m, v, g, n, &hp, t), n); /* all finite */
        for (int i = 0; i < n; i++) { /* torch: p.mul_(1 - lr*wd); then the Adam step */
            pd[i] *= 1 - hp.lr * hp.weight_decay;
            md[i] = hp.beta1 * md[i] + (1 - hp.beta1) * g[i];
            vd[i] = hp.beta2 * vd[i] + (1 - hp.beta2) * (double)g[i] * g[i];
            double mh = md[i] / (1 - pow(hp.beta1, (double)t));
            double denom = sqrt(vd[i] / (1 - pow(hp.beta2, (double)t))) + hp.eps;
            pd[i] -= hp.lr * mh / denom;
        }
    }
    ksa_expect_close(p, pd, n, TEST_FWD_ATOL * 10, TEST_FWD_RTOL * 10, "AdamW parameters");
    ksa_expect_close(m, md, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "AdamW first moment");
    ksa_expect_close(v, vd, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "AdamW second moment");
}

/* n elements of a mild state: p, m in [-1, 1), v in [0, 1), g in [-2, 2) */
static void fill_state(ksa_real *p, ksa_real *m, ksa_real *v, ksa_real *g, size_t n, uint64_t seed)
{
    test_rng rng = test_rng_seed(seed);
    test_fill_uniform(p, n, -1, 1, &rng);
    test_fill_uniform(m, n, -1, 1, &rng);
    test_fill_uniform(v, n, 0, 1, &rng);
    test_fill_uniform(g, n, -2, 2, &rng);
}

static const ksa_adamw_hparams check_hp = {
    .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.01};

/* Big enough that every thread of the static schedule gets a block. */
enum { CHECK_N = 10007 };

static void a_finite_update_reports_no_element(void **state)
{
    (void)state;
    ksa_real *p = malloc(4 * CHECK_N * sizeof *p), *m = p + CHECK_N, *v = m + CHECK_N,
             *g = v + CHECK_N;
    fill_state(p, m, v, g, CHECK_N, 2);
    assert_int_equal(ksa_adamw_update(p, m, v, g, CHECK_N, &check_hp, 3), CHECK_N);
    assert_int_equal(ksa_adamw_update(p, m, v, g, 0, &check_hp, 4), 0); /* empty slice */
    free(p);
}

/* One non-finite value planted at index `at` of the array `which` (0 p, 1 m, 2 v, 3 g) must
 * be reported at that index, with every thread count: the update turns a NaN or inf in any
 * input into a non-finite p, m or v at the same index (an inf in v alone leaves p finite:
 * m / sqrt(inf) = 0, so the moments are checked too).                                  */
static void a_planted_nonfinite_value_is_reported_at_its_index(void **state)
{
    (void)state;
    ksa_real *p = malloc(4 * CHECK_N * sizeof *p), *arrays[4];
    for (int a = 0; a < 4; a++)
        arrays[a] = p + (size_t)a * CHECK_N;
    const size_t where[] = {0, 17, CHECK_N / 2, CHECK_N - 1};
    const double bad[] = {NAN, INFINITY, -INFINITY};
    const int threads[] = {1, 2, 3};
    for (int which = 0; which < 4; which++)
        for (size_t w = 0; w < 4; w++)
            for (int b = 0; b < 3; b++)
                for (int th = 0; th < 3; th++) {
                    fill_state(arrays[0], arrays[1], arrays[2], arrays[3], CHECK_N, 5);
                    arrays[which][where[w]] = (ksa_real)bad[b];
                    ksa_threads_set(threads[th]);
                    size_t got = ksa_adamw_update(arrays[0], arrays[1], arrays[2], arrays[3],
                                                  CHECK_N, &check_hp, 2);
                    if (got != where[w])
                        fail_msg("%g planted in %s[%zu] with %d threads: reported %zu", bad[b],
                                 (const char *[]){"p", "m", "v", "g"}[which], where[w], threads[th],
                                 got);
                }
    free(p);
}

/* Two bad elements in different threads' blocks: the first one is reported. */
static void the_first_of_several_nonfinite_elements_is_reported(void **state)
{
    (void)state;
    ksa_real *p = malloc(4 * CHECK_N * sizeof *p), *m = p + CHECK_N, *v = m + CHECK_N,
             *g = v + CHECK_N;
    for (int th = 1; th <= 4; th++) {
        fill_state(p, m, v, g, CHECK_N, 7);
        g[CHECK_N - 3] = (ksa_real)NAN; /* the last thread's block */
        v[CHECK_N / 3] = (ksa_real)INFINITY;
        m[CHECK_N / 3 + 1] = (ksa_real)NAN;
        ksa_threads_set(th);
        assert_int_equal(ksa_adamw_update(p, m, v, g, CHECK_N, &check_hp, 9), CHECK_N / 3);
    }
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(updates_match_torch_adamw_formula),
        cmocka_unit_test(a_finite_update_reports_no_element),
        cmocka_unit_test(a_planted_nonfinite_value_is_reported_at_its_index),
        cmocka_unit_test(the_first_of_several_nonfinite_elements_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
