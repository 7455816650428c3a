/* test_loss_guard.c - the loss-spike guard: the median, the window of normal losses, the run
 * of high steps, switching off, and a window made smaller (a resume with another
 * loss_spike_window). Everything is double: one set of checks serves both builds.        */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "optim/loss_guard.h"

static void median_of_odd_and_even_counts_leaves_the_input_alone(void **state)
{
    (void)state;
    double x[] = {5, 1, 4, 2, 3};
    assert_true(ksa_loss_median(x, 5) == 3);
    assert_true(ksa_loss_median(x, 4) == 3); /* {5, 1, 4, 2}: (2 + 4) / 2 */
    assert_true(ksa_loss_median(x, 1) == 5);
    assert_true(isnan(ksa_loss_median(x, 0)));
    assert_true(x[0] == 5 && x[1] == 1 && x[4] == 3); /* not sorted in place */
}

static ksa_loss_guard *new_guard(void)
{
    static ksa_loss_guard g;
    memset(&g, 0, sizeof g);
    return &g;
}

static void the_first_loss_is_not_judged_and_normal_losses_fill_the_window(void **state)
{
    (void)state;
    ksa_loss_guard *g = new_guard();
    double median;
    assert_int_equal(ksa_loss_guard_judge(g, 100, 3, 1, 4, &median), KSA_LOSS_NORMAL);
    assert_true(isnan(median)); /* an empty window: nothing to compare with */
    const double losses[] = {90, 80, 70, 60, 50};
    for (int i = 0; i < 5; i++)
        assert_int_equal(ksa_loss_guard_judge(g, losses[i], 3, 1, 4, &median), KSA_LOSS_NORMAL);
    /* the last 4 normal losses, oldest first */
    assert_int_equal(g->n, 4);
    assert_true(g->recent[0] == 80 && g->recent[3] == 50);
    assert_true(median == 75); /* 50 was judged against {90, 80, 70, 60} (100 had left) */
}

static void a_spike_needs_steps_high_losses_in_a_row_and_never_joins_the_window(void **state)
{
    (void)state;
    ksa_loss_guard *g = new_guard();
    double median;
    for (int i = 0; i < 3; i++)
        ksa_loss_guard_judge(g, 2.0, 3, 2, 5, &median);
    assert_int_equal(ksa_loss_guard_judge(g, 6.0, 3, 2, 5, &median), KSA_LOSS_NORMAL); /* = 3x */
    assert_int_equal(ksa_loss_guard_judge(g, 6.1, 3, 2, 5, &median), KSA_LOSS_HIGH);
    assert_true(median == 2.0);
    assert_int_equal(g->high_steps, 1);
    assert_int_equal(ksa_loss_guard_judge(g, 50, 3, 2, 5, &median), KSA_LOSS_SPIKE);
    assert_int_equal(ksa_loss_guard_judge(g, 50, 3, 2, 5, &median), KSA_LOSS_SPIKE);
    assert_int_equal(g->high_steps, 3);
    assert_int_equal(g->n, 4); /* 2, 2, 2, 6: no high loss joined */
    assert_true(median == 2.0);
    /* a normal loss ends the run of high steps */
    assert_int_equal(ksa_loss_guard_judge(g, 2.5, 3, 2, 5, &median), KSA_LOSS_NORMAL);
    assert_int_equal(g->high_steps, 0);
    assert_int_equal(ksa_loss_guard_judge(g, 7, 3, 2, 5, &median), KSA_LOSS_HIGH);
}

static void factor_zero_judges_nothing_but_keeps_the_window(void **state)
{
    (void)state;
    ksa_loss_guard *g = new_guard();
    double median;
    ksa_loss_guard_judge(g, 1, 0, 1, 3, &median);
    assert_int_equal(ksa_loss_guard_judge(g, 1e6, 0, 1, 3, &median), KSA_LOSS_NORMAL);
    assert_true(isnan(median));
    assert_int_equal(g->n, 2); /* ready should the guard be switched on at a resume */
}

static void a_smaller_window_keeps_the_newest_losses(void **state)
{
    (void)state;
    ksa_loss_guard *g = new_guard();
    double median;
    for (int i = 1; i <= 6; i++)
        ksa_loss_guard_judge(g, i, 3, 1, 6, &median);
    /* window 6 -> 3: the median of {4, 5, 6}, then 7 joins and 4 leaves */
    assert_int_equal(ksa_loss_guard_judge(g, 7, 3, 1, 3, &median), KSA_LOSS_NORMAL);
    assert_true(median == 5);
    assert_int_equal(g->n, 3);
    assert_true(g->recent[0] == 5 && g->recent[2] == 7);
    /* {5, 6, 7}: the threshold is 3 x 6 */
    assert_int_equal(ksa_loss_guard_judge(g, 18.5, 3, 1, 3, &median), KSA_LOSS_SPIKE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(median_of_odd_and_even_counts_leaves_the_input_alone),
        cmocka_unit_test(the_first_loss_is_not_judged_and_normal_losses_fill_the_window),
        cmocka_unit_test(a_spike_needs_steps_high_losses_in_a_row_and_never_joins_the_window),
        cmocka_unit_test(factor_zero_judges_nothing_but_keeps_the_window),
        cmocka_unit_test(a_smaller_window_keeps_the_newest_losses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
