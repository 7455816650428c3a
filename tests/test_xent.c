/* test_xent.c - fused softmax + cross-entropy: loss against a naive double reference,
 * dlogits against finite differences, row weights, the normaliser, extreme logits.      */
#include "opcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/xent.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static double ref_xent(const double *logits, const int32_t *target, const double *w, size_t N,
                       size_t V, double norm)
{
    double total = 0;
    for (size_t n = 0; n < N; n++) {
        double m = -INFINITY;
        for (size_t v = 0; v < V; v++)
            m = fmax(m, logits[n * V + v]);
        double s = 0;
        for (size_t v = 0; v < V; v++)
            s += exp(logits[n * V + v] - m);
        double ce = m + log(s) - logits[n * V + target[n]];
        total += (w ? w[n] : 1.0) * ce;
    }
    return total / norm;
}

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
typedef struct {
    size_t N, V;
    int weighted;    /* 0: w = NULL, every row weighs 1 */
    double norm;     /* 0.5 + N */
    int32_t *target; /* N targets, drawn after the logits, */
    ksa_real *w;     /* ... with N weights (every third row 0) */
    double *wd;      /* w in double, for the reference */
    double value;    /* the loss the op reports in double */
    double *row;     /* [N] the per-row terms the op reports */
} xent_ctx;

static void setup(void *ctx, test_rng *rng)
{
    xent_ctx *k = ctx;
    for (size_t n = 0; n < k->N; n++) {
        k->target[n] = (int32_t)(test_rng_uniform(rng) * (double)k->V);
        k->w[n] = (ksa_real)((n % 3 == 1) ? 0.0 : 0.5 + test_rng_uniform(rng));
        k->wd[n] = (double)k->w[n];
    }
}

static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    xent_ctx *k = ctx;
    return ksa_op_cross_entropy(tp, in[0], k->target, k->weighted ? k->w : NULL, k->norm, &k->value,
                                k->row);
}

static void ref(double *y, double *const *x, void *ctx)
{
    const xent_ctx *k = ctx;
    y[0] = ref_xent(x[0], k->target, k->weighted ? k->wd : NULL, k->N, k->V, k->norm);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const xent_ctx *k = ctx;
    double *lse = malloc(k->N * sizeof *lse), *rl = malloc(k->N * sizeof *rl);
    y[0] = (ksa_real)ksa_xent_forward(lse, rl, x[0], k->target, k->weighted ? k->w : NULL, k->N,
                                      k->V, k->norm);
    free(lse), free(rl);
}

/* Logits [N, V] in [-scale, scale]: the loss tensor [1], the reported value and the reported
 * per-row terms (w[n] * CE, not normalised) against the reference, dlogits against its
 * differences (opcheck, the loss itself being y), rows of weight 0 without any gradient. */
static void check_case(size_t N, size_t V, double scale, int weighted, uint64_t seed)
{
    xent_ctx k = {.N = N, .V = V, .weighted = weighted, .norm = 0.5 + (double)N};
    k.target = malloc(N * sizeof *k.target);
    k.w = malloc(N * sizeof *k.w);
    k.wd = malloc(N * sizeof *k.wd);
    k.row = malloc(N * sizeof *k.row);
    opcheck_case cs = {.op = "cross_entropy", .n_in = 1, .out_ndim = 1, .out_shape = {1}};
    cs.in[0] = (opcheck_input){.name = "logits", .ndim = 2, .shape = {N, V}, .lo = -scale};
    cs.in[0].hi = scale;
    cs.ctx = &k, cs.build = build, cs.ref = ref, cs.kernel = kernel, cs.setup = setup;
    cs.scalar_loss = 1; /* the loss is y itself */
    opcheck_run r;
    opcheck_begin(&r, &cs, seed);
    double want, *logits = test_to_double(r.in[0]->data, N * V);
    ref(&want, &logits, &k);
    ksa_expect_close_dd(&k.value, &want, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "loss value");
    for (size_t n = 0; n < N; n++) {
        double want_row =
            ref_xent(logits + n * V, k.target + n, weighted ? k.wd + n : NULL, 1, V, 1.0);
        ksa_expect_close_dd(&k.row[n], &want_row, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "row loss");
    }
    free(logits);
    if (weighted) /* rows of weight 0 get no gradient at all */
        for (size_t n = 1; n < N; n += 3)
            for (size_t v = 0; v < V; v++)
                assert_true(r.in[0]->grad[n * V + v] == 0);
    opcheck_end(&r);
    free(k.target), free(k.w), free(k.wd), free(k.row);
}

static const size_t shapes[][2] = {{3, 6}, {1, 2}, {5, 7}, {4, 257}, {17, 33}};

static void loss_and_gradient_match_reference(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        check_case(shapes[s][0], shapes[s][1], 3.0, 0, 100 + s);
        check_case(shapes[s][0], shapes[s][1], 3.0, 1, 200 + s);
    }
}

static void large_logits_stay_finite_and_exact(void **state)
{
    (void)state;
    check_case(4, 9, 80.0, 1, 300); /* exp(80) overflows float without the max shift */
}

static void zero_weight_rows_do_not_change_the_loss(void **state)
{
    (void)state;
    size_t N = 4, V = 5;
    ksa_real logits[20], w[4] = {1, 0, 1, 0};
    int32_t target[4] = {0, 1, 2, 3};
    test_rng rng = test_rng_seed(9);
    test_fill_uniform(logits, N * V, -2, 2, &rng);
    double lse[4], rl[4];
    double a = ksa_xent_forward(lse, rl, logits, target, w, N, V, 2.0);
    for (size_t v = 0; v < V; v++) /* change only the rows that do not count */
        logits[1 * V + v] += 7, logits[3 * V + v] *= -3;
    double b = ksa_xent_forward(lse, rl, logits, target, w, N, V, 2.0);
    assert_true(a == b);
    assert_true(rl[1] == 0 && rl[3] == 0);
}

static void normaliser_divides_the_summed_loss(void **state)
{
    (void)state;
    size_t N = 3, V = 4;
    ksa_real logits[12];
    int32_t target[3] = {3, 0, 2};
    test_rng rng = test_rng_seed(11);
    test_fill_uniform(logits, N * V, -2, 2, &rng);
    double lse[3], rl[3];
    double one = ksa_xent_forward(lse, rl, logits, target, NULL, N, V, 1.0);
    double six = ksa_xent_forward(lse, rl, logits, target, NULL, N, V, 6.0);
    assert_true(fabs(one / 6.0 - six) <= 1e-12 * fabs(one));
    assert_true(fabs(one - (rl[0] + rl[1] + rl[2])) <= 1e-12 * fabs(one));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loss_and_gradient_match_reference),
        cmocka_unit_test(large_logits_stay_finite_and_exact),
        cmocka_unit_test(zero_weight_rows_do_not_change_the_loss),
        cmocka_unit_test(normaliser_divides_the_summed_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
