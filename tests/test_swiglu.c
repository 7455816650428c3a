/* test_swiglu.c - SwiGLU forward against a naive double reference, including gate values
 * large enough to overflow exp; gradients of gate and up against central finite differences
 * (of the reference, and in the float64 build of the kernel).                              */
#include "opcheck.h"

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

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return ksa_op_swiglu(tp, in[0], in[1]);
}

static void ref(double *y, double *const *x, void *ctx)
{
    const size_t *NI = ctx;
    ref_swiglu(y, x[0], x[1], NI[0] * NI[1]);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const size_t *NI = ctx;
    ksa_swiglu_forward(y, x[0], x[1], NI[0], NI[1]);
}

/* y ~ gate where the gate is large: scale those c so every term of the loss is O(1); a loss
 * of ~1e3 would round to ~1e-13, i.e. ~1e-7 in a difference quotient (h = 1e-6)          */
static void scale_c(double *c, size_t n, ksa_tensor *const *in, void *ctx)
{
    for (size_t i = 0; i < n; i++)
        c[i] /= fmax(1.0, fabs((double)in[0]->data[i]));
}

/* gate (fill_gate) and up (in [-2, 2]) of shape NI = {N, I}, the ctx */
static opcheck_case swiglu_case(size_t *NI)
{
    opcheck_case cs = {.op = "swiglu", .n_in = 2, .out_ndim = 2, .out_shape = {NI[0], NI[1]}};
    cs.in[0] =
        (opcheck_input){.name = "gate", .ndim = 2, .shape = {NI[0], NI[1]}, .fill = fill_gate};
    cs.in[1] = (opcheck_input){.name = "up", .ndim = 2, .shape = {NI[0], NI[1]}, .lo = -2, .hi = 2};
    cs.ctx = NI, cs.build = build, cs.ref = ref, cs.kernel = kernel, cs.scale_c = scale_c;
    return cs;
}

/* dgate and dup against differences of the reference and of the kernel. */
static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t NI[2] = {shapes[s][0], shapes[s][1]};
        opcheck_case cs = swiglu_case(NI);
        opcheck(&cs, 10 + s);
    }
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
 * right (opcheck) and the kernel's exactly; with neither, nothing is recorded (opcheck).  */
static void op_gives_gradients_only_to_inputs_that_need_them(void **state)
{
    (void)state;
    size_t NI[2] = {3, 5}, n = 15;
    opcheck_case cs = swiglu_case(NI);
    cs.in[0].no_grad = 1;
    opcheck_run r;
    opcheck_begin(&r, &cs, 8);
    ksa_real want[15];
    memset(want, 0, sizeof want);
    ksa_swiglu_backward(NULL, want, r.y->grad, r.in[0]->data, r.in[1]->data, NI[0], NI[1]);
    assert_memory_equal(r.in[1]->grad, want, n * sizeof *want);
    opcheck_end(&r);
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
