/* test_xent.c - fused softmax + cross-entropy: loss against a naive double reference,
 * dlogits against finite differences, row weights, the normaliser, extreme logits.      */
#include "testutil.h"

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

typedef struct {
    size_t N, V;
    double norm;
    double *logits, *w;
    const int32_t *target;
    ksa_real *logits_r, *w_r;
} case_ctx;

static double ref_loss(void *p)
{
    case_ctx *k = p;
    return ref_xent(k->logits, k->target, k->w, k->N, k->V, k->norm);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *p)
{
    case_ctx *k = p;
    double *lse = malloc(k->N * sizeof *lse), *rl = malloc(k->N * sizeof *rl);
    double v = ksa_xent_forward(lse, rl, k->logits_r, k->target, k->w_r, k->N, k->V, k->norm);
    free(lse), free(rl);
    return v;
}
#endif

static const size_t shapes[][2] = {{3, 6}, {1, 2}, {5, 7}, {4, 257}, {17, 33}};

/* Forward, then backward through the tape, against the reference; weights with zeros. */
static void check_case(size_t N, size_t V, double scale, int weighted, uint64_t seed)
{
    test_rng rng = test_rng_seed(seed);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 22);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *logits = ksa_tensor_2d(&arena, N, V);
    logits->requires_grad = 1;
    test_fill_uniform(logits->data, N * V, -scale, scale, &rng);
    int32_t *target = malloc(N * sizeof *target);
    ksa_real *w = malloc(N * sizeof *w);
    for (size_t n = 0; n < N; n++) {
        target[n] = (int32_t)(test_rng_uniform(&rng) * (double)V);
        w[n] = (ksa_real)((n % 3 == 1) ? 0.0 : 0.5 + test_rng_uniform(&rng));
    }
    double norm = 0.5 + (double)N;
    double value = 0;
    ksa_tensor *loss = ksa_op_cross_entropy(&tp, logits, target, weighted ? w : NULL, norm, &value);

    case_ctx k = {.N = N, .V = V, .norm = norm, .target = target};
    k.logits = test_to_double(logits->data, N * V);
    k.w = weighted ? test_to_double(w, N) : NULL;
    double want = ref_loss(&k);
    ksa_expect_close_dd(&value, &want, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "loss value");
    ksa_expect_close(loss->data, &want, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "loss tensor");

    ksa_tape_backward(&tp, loss);
    double *num = malloc(N * V * sizeof *num);
    test_fd_grad_d(ref_loss, &k, k.logits, N * V, num);
    ksa_expect_close(logits->grad, num, N * V, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "dlogits vs differences of the reference");
#ifdef KSA_REAL_DOUBLE
    k.logits_r = logits->data;
    k.w_r = weighted ? w : NULL;
    test_fd_grad(kernel_loss, &k, logits->data, N * V, num);
    double *a = test_to_double(logits->grad, N * V);
    ksa_expect_close_sym(a, num, N * V, 1e-8, 1e-6, "dlogits vs differences of the kernel");
    free(a);
#endif
    if (weighted) /* rows of weight 0 get no gradient at all */
        for (size_t n = 1; n < N; n += 3)
            for (size_t v = 0; v < V; v++)
                assert_true(logits->grad[n * V + v] == 0);
    free(num), free(k.logits), free(k.w), free(target), free(w);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

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
