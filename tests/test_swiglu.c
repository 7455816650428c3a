/* test_swiglu.c - SwiGLU forward against a naive double reference, including gate values
 * large enough to overflow exp; gradients of gate and up against central finite differences
 * (of the reference, and in the float64 build of the kernel).                              */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/swiglu.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static double ref_silu(double z)
{
    return z / (1.0 + exp(-z));
}

static void ref_swiglu(double *y, const double *gate, const double *up, size_t n)
{
    for (size_t k = 0; k < n; k++)
        y[k] = ref_silu(gate[k]) * up[k];
}

/* Gates mostly in [-6, 6] (where silu bends), every 7th one large: e^|g| overflows float
 * from 88.7 and double from 709.8.                                                        */
static const double big_gates[] = {30, -30, 100, -100, 1000, -1000};

static void fill_gate(ksa_real *g, size_t n, test_rng *rng)
{
    test_fill_uniform(g, n, -6, 6, rng);
    for (size_t k = 3; k < n; k += 7)
        g[k] = (ksa_real)big_gates[(k / 7) % (sizeof big_gates / sizeof big_gates[0])];
}

typedef struct {
    size_t n;
    double *gate, *up, *c, *y; /* reference inputs, loss coefficients, scratch output */
    ksa_real *gr, *ur, *yr;
    size_t N, I;
} case_ctx;

static double ref_loss(void *p)
{
    case_ctx *k = p;
    ref_swiglu(k->y, k->gate, k->up, k->n);
    return test_dot_dd(k->y, k->c, k->n);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *p)
{
    case_ctx *k = p;
    ksa_swiglu_forward(k->yr, k->gr, k->ur, k->N, k->I);
    return test_dot(k->yr, k->c, k->n);
}
#endif

static const size_t shapes[][2] = {{3, 5}, {1, 1}, {3, 7}, {5, 9}, {4, 64}, {17, 33}, {2, 256}};

static void forward_matches_naive_reference(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t N = shapes[s][0], I = shapes[s][1], n = N * I;
        ksa_real *g = malloc(n * sizeof *g), *u = malloc(n * sizeof *u);
        ksa_real *y = malloc(n * sizeof *y);
        fill_gate(g, n, &rng);
        test_fill_uniform(u, n, -2, 2, &rng);
        ksa_swiglu_forward(y, g, u, N, I);
        double *gd = test_to_double(g, n), *ud = test_to_double(u, n);
        double *yd = malloc(n * sizeof *yd);
        ref_swiglu(yd, gd, ud, n);
        ksa_expect_close(y, yd, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "swiglu forward");
        free(g), free(u), free(y), free(gd), free(ud), free(yd);
    }
}

/* Far past the overflow of exp in either precision the output and both gradients stay
 * finite and exact: silu(g) -> g for g >> 0, -> 0 (and its slope -> 0) for g << 0.
 * A sigmoid written as e^g / (1 + e^g), or a slope as g e^-g / (1 + e^-g)^2, gives NaN.   */
static void large_gates_give_finite_exact_results(void **state)
{
    (void)state;
    enum { N = 2, I = 7, n = N * I };
    const double gates[n] = {30,     -30,  88.8,  -88.8, 100,  -100, 709.9,
                             -709.9, 1000, -1000, 1e4,   -1e4, 1e30, -1e30};
    ksa_real g[n], u[n], y[n], dy[n], dg[n], du[n];
    test_rng rng = test_rng_seed(2);
    test_from_double(g, gates, n);
    test_fill_uniform(u, n, -2, 2, &rng);
    test_fill_uniform(dy, n, -1, 1, &rng);
    memset(dg, 0, sizeof dg), memset(du, 0, sizeof du);
    ksa_swiglu_forward(y, g, u, N, I);
    ksa_swiglu_backward(dg, du, dy, g, u, N, I);
    double want_y[n], want_dg[n], want_du[n];
    for (size_t k = 0; k < n; k++) {
        assert_true(isfinite((double)y[k]) && isfinite((double)dg[k]) && isfinite((double)du[k]));
        /* in double, 1/(1 + e^-g) meets e^-g = inf only where the sigmoid is 0 anyway */
        double gk = g[k], s = 1.0 / (1.0 + exp(-gk));
        want_y[k] = gk * s * (double)u[k];
        want_du[k] = gk * s * (double)dy[k];
        want_dg[k] = (double)dy[k] * (double)u[k] * s * (1.0 + gk * (1.0 - s));
    }
    ksa_expect_close(y, want_y, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "y at large gates");
    ksa_expect_close(dg, want_dg, n, TEST_BWD_ATOL, TEST_BWD_RTOL, "dgate at large gates");
    ksa_expect_close(du, want_du, n, TEST_BWD_ATOL, TEST_BWD_RTOL, "dup at large gates");
}

/* Where sigmoid(g) is tiny but still a normal number, y, dgate and dup keep their relative
 * precision: a sigmoid formed as 1 - 1/(1 + e^g) for g < 0 would round them to 0.
 * (u, dy away from 0 keep every product normal; e^80 still fits in a float.)            */
static void very_negative_gates_keep_relative_precision(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    enum { n = 6 };
    const double gates[n] = {-20, -30, -50, -80, -300, -700};
    const double rtol = 1e-12;
#else
    enum { n = 4 };
    const double gates[n] = {-20, -30, -50, -80};
    const double rtol = 1e-5;
#endif
    ksa_real g[n], u[n], y[n], dy[n], dg[n], du[n];
    test_rng rng = test_rng_seed(3);
    test_from_double(g, gates, n);
    test_fill_uniform(u, n, 0.5, 2, &rng);
    test_fill_uniform(dy, n, 0.5, 2, &rng);
    memset(dg, 0, sizeof dg), memset(du, 0, sizeof du);
    ksa_swiglu_forward(y, g, u, 1, n);
    ksa_swiglu_backward(dg, du, dy, g, u, 1, n);
    double want_y[n], want_dg[n], want_du[n];
    for (size_t k = 0; k < n; k++) {
        double gk = g[k], s = exp(gk) / (1.0 + exp(gk)); /* exact form for g << 0 */
        want_y[k] = gk * s * (double)u[k];
        want_du[k] = gk * s * (double)dy[k];
        want_dg[k] = (double)dy[k] * (double)u[k] * s * (1.0 + gk * (1.0 - s));
    }
    ksa_expect_close(y, want_y, n, 0, rtol, "y at very negative gates");
    ksa_expect_close(dg, want_dg, n, 0, rtol, "dgate at very negative gates");
    ksa_expect_close(du, want_du, n, 0, rtol, "dup at very negative gates");
}

/* Runs the op through the tape with d(loss)/dy = c; checks dgate and dup. */
static void check_gradients(size_t N, size_t I, uint64_t seed)
{
    size_t n = N * I;
    test_rng rng = test_rng_seed(seed);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 20);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);

    ksa_tensor *gate = ksa_tensor_2d(&arena, N, I), *up = ksa_tensor_2d(&arena, N, I);
    gate->requires_grad = up->requires_grad = 1;
    fill_gate(gate->data, n, &rng);
    test_fill_uniform(up->data, n, -2, 2, &rng);
    double *c = malloc(n * sizeof *c);
    test_fill_uniform_d(c, n, -1, 1, &rng);
    /* y ~ gate where the gate is large: scale those c so every term of the loss is O(1);
     * a loss of ~1e3 would round to ~1e-13, i.e. ~1e-7 in a difference quotient (h = 1e-6) */
    for (size_t i = 0; i < n; i++)
        c[i] /= fmax(1.0, fabs((double)gate->data[i]));

    ksa_tensor *y = ksa_op_swiglu(&tp, gate, up);
    assert_int_equal(tp.n, 1);
    ksa_real *dy = ksa_tensor_grad(&arena, y);
    test_from_double(dy, c, n);
    ksa_tape_replay(&tp);
    assert_non_null(gate->grad);
    assert_non_null(up->grad);

    case_ctx k = {.n = n, .N = N, .I = I, .c = c};
    k.gate = test_to_double(gate->data, n);
    k.up = test_to_double(up->data, n);
    k.y = malloc(n * sizeof *k.y);
    double *num_dg = malloc(n * sizeof *num_dg), *num_du = malloc(n * sizeof *num_du);
    test_fd_grad_d(ref_loss, &k, k.gate, n, num_dg);
    test_fd_grad_d(ref_loss, &k, k.up, n, num_du);
    ksa_expect_close(gate->grad, num_dg, n, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "dgate vs differences of the reference");
    ksa_expect_close(up->grad, num_du, n, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "dup vs differences of the reference");
#ifdef KSA_REAL_DOUBLE
    k.gr = gate->data, k.ur = up->data;
    k.yr = malloc(n * sizeof *k.yr);
    test_fd_grad(kernel_loss, &k, gate->data, n, num_dg);
    test_fd_grad(kernel_loss, &k, up->data, n, num_du);
    double *ag = test_to_double(gate->grad, n), *au = test_to_double(up->grad, n);
    ksa_expect_close_sym(ag, num_dg, n, 1e-8, 1e-6, "dgate vs differences of the kernel");
    ksa_expect_close_sym(au, num_du, n, 1e-8, 1e-6, "dup vs differences of the kernel");
    free(ag), free(au), free(k.yr);
#endif
    free(c), free(k.gate), free(k.up), free(k.y), free(num_dg), free(num_du);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_gradients(shapes[s][0], shapes[s][1], 10 + s);
}

/* Adds into dgate and dup, leaving what was there; either may be NULL, and the other then
 * gets exactly what it gets alone.                                                       */
static void backward_adds_into_existing_grads(void **state)
{
    (void)state;
    enum { N = 3, I = 7, n = N * I };
    test_rng rng = test_rng_seed(7);
    ksa_real g[n], u[n], dy[n], dg0[n], du0[n], dg1[n], du1[n], dg2[n], du2[n];
    fill_gate(g, n, &rng);
    test_fill_uniform(u, n, -2, 2, &rng);
    test_fill_uniform(dy, n, -1, 1, &rng);
    memset(dg0, 0, sizeof dg0), memset(du0, 0, sizeof du0);
    ksa_swiglu_backward(dg0, du0, dy, g, u, N, I);
    for (size_t k = 0; k < n; k++)
        dg1[k] = 1, du1[k] = -2;
    ksa_swiglu_backward(dg1, du1, dy, g, u, N, I);
    for (size_t k = 0; k < n; k++) {
        assert_true(fabs((double)dg1[k] - (double)dg0[k] - 1) < 1e-5);
        assert_true(fabs((double)du1[k] - (double)du0[k] + 2) < 1e-5);
    }
    memset(dg2, 0, sizeof dg2), memset(du2, 0, sizeof du2);
    ksa_swiglu_backward(dg2, NULL, dy, g, u, N, I);
    ksa_swiglu_backward(NULL, du2, dy, g, u, N, I);
    ksa_swiglu_backward(NULL, NULL, dy, g, u, N, I);
    assert_memory_equal(dg2, dg0, sizeof dg0);
    assert_memory_equal(du2, du0, sizeof du0);
}

/* Only up needs a gradient (gate from a frozen path): gate gets no gradient buffer, up's is
 * right; with neither, nothing is recorded.                                              */
static void op_gives_gradients_only_to_inputs_that_need_them(void **state)
{
    (void)state;
    size_t N = 3, I = 5, n = N * I;
    test_rng rng = test_rng_seed(8);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *gate = ksa_tensor_2d(&arena, N, I), *up = ksa_tensor_2d(&arena, N, I);
    fill_gate(gate->data, n, &rng);
    test_fill_uniform(up->data, n, -2, 2, &rng);

    ksa_tensor *y0 = ksa_op_swiglu(&tp, gate, up);
    assert_int_equal(tp.n, 0);
    assert_int_equal(y0->requires_grad, 0);

    up->requires_grad = 1;
    ksa_tensor *y = ksa_op_swiglu(&tp, gate, up);
    assert_int_equal(tp.n, 1);
    assert_memory_equal(y->data, y0->data, n * sizeof *y->data);
    ksa_real *dy = ksa_tensor_grad(&arena, y);
    test_fill_uniform(dy, n, -1, 1, &rng);
    ksa_tape_replay(&tp);
    assert_null(gate->grad);
    ksa_real want[15];
    memset(want, 0, sizeof want);
    ksa_swiglu_backward(NULL, want, dy, gate->data, up->data, N, I);
    assert_memory_equal(up->grad, want, n * sizeof *want);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

/* Forward and backward give the same bits with 1 and 2 threads (DESIGN.md §4). */
static void results_are_bit_identical_with_one_and_two_threads(void **state)
{
    (void)state;
    size_t N = 257, I = 129, n = N * I;
    test_rng rng = test_rng_seed(9);
    ksa_real *g = malloc(n * sizeof *g), *u = malloc(n * sizeof *u), *dy = malloc(n * sizeof *dy);
    ksa_real *y[2], *dg[2], *du[2];
    fill_gate(g, n, &rng);
    test_fill_uniform(u, n, -2, 2, &rng);
    test_fill_uniform(dy, n, -1, 1, &rng);
    int threads_before = ksa_threads_get();
    for (int t = 0; t < 2; t++) {
        ksa_threads_set(t + 1);
        y[t] = malloc(n * sizeof *y[t]);
        dg[t] = malloc(n * sizeof *dg[t]);
        du[t] = malloc(n * sizeof *du[t]);
        for (size_t k = 0; k < n; k++)
            dg[t][k] = (ksa_real)0.5, du[t][k] = (ksa_real)-0.25;
        ksa_swiglu_forward(y[t], g, u, N, I);
        ksa_swiglu_backward(dg[t], du[t], dy, g, u, N, I);
    }
    ksa_threads_set(threads_before);
    assert_memory_equal(y[0], y[1], n * sizeof *g);
    assert_memory_equal(dg[0], dg[1], n * sizeof *g);
    assert_memory_equal(du[0], du[1], n * sizeof *g);
    free(g), free(u), free(dy);
    for (int t = 0; t < 2; t++)
        free(y[t]), free(dg[t]), free(du[t]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive_reference),
        cmocka_unit_test(large_gates_give_finite_exact_results),
        cmocka_unit_test(very_negative_gates_keep_relative_precision),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(backward_adds_into_existing_grads),
        cmocka_unit_test(op_gives_gradients_only_to_inputs_that_need_them),
        cmocka_unit_test(results_are_bit_identical_with_one_and_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
