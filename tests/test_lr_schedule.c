/* test_lr_schedule.c - WSD against KSA_SPEC Appendix A, its shortened decay, constant and
 * cosine endpoints and midpoints, warmup 0, kind names and range checks. Everything is double
 * (the schedule does not depend on ksa_real), so one tolerance serves both builds.         */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "optim/lr_schedule.h"

#define LR_RTOL 1e-12

/* lr_at(s, k[i]) / lr must equal f[i] (relative 1e-12, absolute 1e-15 for zeros) */
static void expect_multipliers(const ksa_lr_schedule *s, const long *k, const double *f, size_t n,
                               const char *what)
{
    double got[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        got[i] = ksa_lr_at(s, k[i]) / s->lr;
    ksa_expect_close_dd(got, f, n, 1e-15, LR_RTOL, what);
}

/* the 8k stage of KSA_SPEC §9.8 */
static const ksa_lr_schedule stage_8k = {.kind = KSA_LR_WSD,
                                         .lr = 4e-4,
                                         .min_lr = 1e-7,
                                         .warmup_steps = 1000,
                                         .decay_steps = 1000,
                                         .steps = 127200};

static void wsd_matches_the_spec_test_vectors_of_the_8k_stage(void **state)
{
    (void)state;
    const long k[] = {0, 500, 1000, 126200, 126700, 127200};
    const double f[] = {0, 0.5, 1, 1, 1 - 0.5 * (1 - 2.5e-4), 2.5e-4};
    expect_multipliers(&stage_8k, k, f, 6, "WSD multipliers, KSA_SPEC Appendix A");
    assert_true(ksa_lr_at(&stage_8k, 0) == 0.0); /* the very first update uses LR 0 */
    assert_true(ksa_lr_at(&stage_8k, 127200) == 1e-7);
    assert_true(ksa_lr_at(&stage_8k, 200000) == 1e-7);
    assert_int_equal(ksa_lr_schedule_check(&stage_8k), KSA_OK);
}

static void wsd_last_update_uses_f_of_total_minus_one_slightly_above_min_lr(void **state)
{
    (void)state;
    const double r = 2.5e-4;
    const long k[] = {126199, 126201, 127199};
    const double f[] = {1, 1 - 0.001 * (1 - r), 1 - 0.999 * (1 - r)};
    expect_multipliers(&stage_8k, k, f, 3, "WSD around the decay");
    double last = ksa_lr_at(&stage_8k, 127199);
    assert_true(last > stage_8k.min_lr);
    assert_true(last < 2 * stage_8k.min_lr + 1e-3 * stage_8k.lr);
    /* and the rate never increases after the warmup */
    for (long i = 1000; i < 127210; i += (i < 126000 ? 1000 : 1))
        assert_true(ksa_lr_at(&stage_8k, i + 1) <= ksa_lr_at(&stage_8k, i));
}

static void wsd_shortens_the_decay_when_warmup_plus_decay_exceed_steps(void **state)
{
    (void)state;
    /* warmup 10 + decay 50 > 40: decay shortened to 30, starting right after the warmup */
    ksa_lr_schedule s = {.kind = KSA_LR_WSD,
                         .lr = 1.0,
                         .min_lr = 0.1,
                         .warmup_steps = 10,
                         .decay_steps = 50,
                         .steps = 40};
    const long k[] = {0, 5, 10, 25, 39, 40};
    const double f[] = {0, 0.5, 1, 1 - 15.0 / 30 * 0.9, 1 - 29.0 / 30 * 0.9, 0.1};
    expect_multipliers(&s, k, f, 6, "WSD with the decay shortened to steps - warmup");
    /* warmup == steps: no room, decay 0: warmup then min_lr after the run */
    s.warmup_steps = 40;
    const long k2[] = {20, 39, 40};
    const double f2[] = {0.5, 39.0 / 40, 0.1};
    expect_multipliers(&s, k2, f2, 3, "WSD with no room for a decay");
    /* decay_steps 0 on purpose: stays at lr up to the last update */
    s.warmup_steps = 0;
    s.decay_steps = 0;
    const long k3[] = {0, 39, 40};
    const double f3[] = {1, 1, 0.1};
    expect_multipliers(&s, k3, f3, 3, "WSD without decay");
    /* a decay that fits exactly is not shortened */
    s.warmup_steps = 10;
    s.decay_steps = 30;
    expect_multipliers(&s, k, f, 6, "WSD with warmup + decay == steps");
}

static void wsd_with_zero_warmup_starts_at_the_peak(void **state)
{
    (void)state;
    ksa_lr_schedule s = stage_8k;
    s.warmup_steps = 0;
    const long k[] = {0, 1, 126200, 126700};
    const double f[] = {1, 1, 1, 1 - 0.5 * (1 - 2.5e-4)};
    expect_multipliers(&s, k, f, 4, "WSD without warmup");
}

static void wsd_with_zero_peak_lr_is_zero_until_the_end(void **state)
{
    (void)state;
    ksa_lr_schedule s = {
        .kind = KSA_LR_WSD, .lr = 0, .min_lr = 0, .warmup_steps = 2, .decay_steps = 3, .steps = 10};
    for (long k = 0; k < 12; k++)
        assert_true(ksa_lr_at(&s, k) == 0.0);
}

static void constant_warms_up_linearly_then_holds(void **state)
{
    (void)state;
    ksa_lr_schedule s = {.kind = KSA_LR_CONSTANT,
                         .lr = 3e-3,
                         .min_lr = 1e-5,
                         .warmup_steps = 4,
                         .decay_steps = 7,
                         .steps = 20};
    const long k[] = {0, 1, 2, 4, 19, 20, 1000};
    const double f[] = {0, 0.25, 0.5, 1, 1, 1, 1};
    expect_multipliers(&s, k, f, 7, "constant with warmup");
    s.warmup_steps = 0;
    assert_true(ksa_lr_at(&s, 0) == 3e-3);
    assert_true(ksa_lr_at(&s, 19) == 3e-3);
    /* min_lr may exceed lr for constant: it is unused */
    s.min_lr = 1;
    assert_int_equal(ksa_lr_schedule_check(&s), KSA_OK);
}

static void cosine_hits_lr_after_warmup_its_midpoint_and_min_lr_at_the_end(void **state)
{
    (void)state;
    ksa_lr_schedule s = {.kind = KSA_LR_COSINE,
                         .lr = 1.0,
                         .min_lr = 0.1,
                         .warmup_steps = 10,
                         .decay_steps = 0,
                         .steps = 110};
    const double q = 0.1 + 0.9 * 0.5 * (1 + cos(M_PI / 4)); /* p = 1/4 */
    const long k[] = {0, 5, 10, 35, 60, 109, 110, 500};
    const double f[] = {0, 0.5, 1, q, 0.55, 0.1 + 0.45 * (1 + cos(M_PI * 0.99)), 0.1, 0.1};
    expect_multipliers(&s, k, f, 8, "cosine with warmup");
    /* without warmup it starts at lr, p = k / steps */
    s.warmup_steps = 0;
    s.steps = 100;
    const long k2[] = {0, 50, 100};
    const double f2[] = {1, 0.55, 0.1};
    expect_multipliers(&s, k2, f2, 3, "cosine without warmup");
    /* warmup == steps: max(1, 0) in the denominator, no division by zero */
    s.warmup_steps = 100;
    const long k3[] = {50, 100, 101};
    const double f3[] = {0.5, 1, 0.1};
    expect_multipliers(&s, k3, f3, 3, "cosine with warmup == steps");
}

static void kind_names_round_trip(void **state)
{
    (void)state;
    const char *names[] = {"constant", "cosine", "wsd"};
    const ksa_lr_kind kinds[] = {KSA_LR_CONSTANT, KSA_LR_COSINE, KSA_LR_WSD};
    for (int i = 0; i < 3; i++) {
        ksa_lr_kind kind = (ksa_lr_kind)-1;
        assert_int_equal(ksa_lr_schedule_parse_kind(names[i], &kind), KSA_OK);
        assert_int_equal(kind, kinds[i]);
        assert_string_equal(ksa_lr_schedule_kind_name(kinds[i]), names[i]);
    }
    assert_string_equal(ksa_lr_schedule_kind_name((ksa_lr_kind)7), "unknown");
}

static void bad_kind_names_are_rejected_naming_the_known_ones(void **state)
{
    (void)state;
    const char *bad[] = {"WSD", "linear", "", "cosine ", "wsd2"};
    for (int i = 0; i < 5; i++) {
        ksa_lr_kind kind = KSA_LR_COSINE;
        assert_int_equal(ksa_lr_schedule_parse_kind(bad[i], &kind), KSA_EINVAL);
        assert_int_equal(kind, KSA_LR_COSINE); /* untouched on failure */
        char want[64];
        snprintf(want, sizeof want, "'%s'", bad[i]);
        assert_non_null(strstr(ksa_last_error(), want));
        assert_non_null(strstr(ksa_last_error(), "constant, cosine, wsd"));
    }
}

static void out_of_range_fields_are_rejected_naming_the_key(void **state)
{
    (void)state;
    struct {
        ksa_lr_schedule s;
        const char *key;
    } bad[] = {
        {{KSA_LR_WSD, -1e-3, 0, 0, 0, 10}, "lr = -0.001: expected a finite value >= 0"},
        {{KSA_LR_WSD, NAN, 0, 0, 0, 10}, "lr = nan"},
        {{KSA_LR_WSD, 1e-3, -1, 0, 0, 10}, "min_lr = -1: expected"},
        {{KSA_LR_COSINE, 1e-3, 2e-3, 0, 0, 10}, "min_lr = 0.002 is above lr = 0.001"},
        {{KSA_LR_WSD, 1e-3, 0, -1, 0, 10}, "warmup_steps = -1"},
        {{KSA_LR_WSD, 1e-3, 0, 0, -2, 10}, "decay_steps = -2"},
        {{KSA_LR_CONSTANT, 1e-3, 0, 0, 0, -3}, "steps = -3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ksa_lr_schedule_check(&bad[i].s), KSA_EINVAL);
        if (!strstr(ksa_last_error(), bad[i].key))
            fail_msg("case %zu: '%s' lacks '%s'", i, ksa_last_error(), bad[i].key);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wsd_matches_the_spec_test_vectors_of_the_8k_stage),
        cmocka_unit_test(wsd_last_update_uses_f_of_total_minus_one_slightly_above_min_lr),
        cmocka_unit_test(wsd_shortens_the_decay_when_warmup_plus_decay_exceed_steps),
        cmocka_unit_test(wsd_with_zero_warmup_starts_at_the_peak),
        cmocka_unit_test(wsd_with_zero_peak_lr_is_zero_until_the_end),
        cmocka_unit_test(constant_warms_up_linearly_then_holds),
        cmocka_unit_test(cosine_hits_lr_after_warmup_its_midpoint_and_min_lr_at_the_end),
        cmocka_unit_test(kind_names_round_trip),
        cmocka_unit_test(bad_kind_names_are_rejected_naming_the_known_ones),
        cmocka_unit_test(out_of_range_fields_are_rejected_naming_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
