/* test_linear.c - y = x · wᵀ forward against a naive double reference; dx and dw against
 * central finite differences (of the reference, and in the float64 build of the kernel);
 * accumulation, NULL gradients, leading dimensions and thread-count determinism.        */
#include "opcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/linear.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static void ref_linear(double *y, const double *x, const double *w, size_t N, size_t in, size_t out)
{
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < out; o++) {
            double s = 0;
            for (size_t i = 0; i < in; i++)
                s += x[n * in + i] * w[o * in + i];
            y[n * out + o] = s;
        }
}

/* {N, in, out}: odd sizes, 1x1, a single output, a single input, and BLAS-sized blocks */
static const size_t shapes[][3] = {{3, 6, 5}, {1, 1, 1},   {17, 33, 9}, {5, 7, 1},
                                   {2, 1, 7}, {4, 64, 32}, {33, 17, 20}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void forward_matches_naive_reference(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    for (size_t s = 0; s < N_SHAPES; s++) {
        size_t N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        ksa_real *x = malloc(N * in * sizeof *x), *w = malloc(out * in * sizeof *w);
        ksa_real *y = malloc(N * out * sizeof *y);
        memset(y, 0xff, N * out * sizeof *y); /* NaN: forward must overwrite, not add */
        test_fill_uniform(x, N * in, -2, 2, &rng);
        test_fill_uniform(w, out * in, -1, 1, &rng);
        ksa_linear_forward(y, x, w, N, in, out);
        double *xd = test_to_double(x, N * in), *wd = test_to_double(w, out * in);
        double *yd = malloc(N * out * sizeof *yd);
        ref_linear(yd, xd, wd, N, in, out);
        ksa_expect_close(y, yd, N * out, TEST_FWD_ATOL, TEST_FWD_RTOL, "linear forward");
        free(x), free(w), free(y), free(xd), free(wd), free(yd);
    }
}

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
typedef struct {
    size_t N, in, out; /* rows of x (every leading index), its last dimension, w's rows */
} linear_ctx;

static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return ksa_op_linear(tp, in[0], in[1]);
}

static void ref(double *y, double *const *x, void *ctx)
{
    const linear_ctx *k = ctx;
    ref_linear(y, x[0], x[1], k->N, k->in, k->out);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const linear_ctx *k = ctx;
    ksa_linear_forward(y, x[0], x[1], k->N, k->in, k->out);
}

/* x of shape xshape (last dimension in) with values in [-xmax, xmax], w [out, in] in
 * [-1, 1]; y keeps x's leading dimensions and ends in out. k (the ctx) is filled in.   */
static opcheck_case linear_case(linear_ctx *k, int ndim, const size_t *xshape, size_t out,
                                double xmax)
{
    opcheck_case cs = {.op = "linear", .n_in = 2, .out_ndim = ndim, .ctx = k};
    size_t in = xshape[ndim - 1], N = 1;
    cs.in[0] = (opcheck_input){.name = "x", .ndim = ndim, .lo = -xmax, .hi = xmax};
    cs.in[1] = (opcheck_input){.name = "w", .ndim = 2, .shape = {out, in}, .lo = -1, .hi = 1};
    for (int d = 0; d < ndim - 1; d++)
        N *= xshape[d];
    memcpy(cs.in[0].shape, xshape, (size_t)ndim * sizeof *xshape);
    memcpy(cs.out_shape, xshape, (size_t)ndim * sizeof *xshape);
    cs.out_shape[ndim - 1] = out;
    *k = (linear_ctx){.N = N, .in = in, .out = out};
    cs.build = build, cs.ref = ref, cs.kernel = kernel;
    return cs;
}

/* y's shape, dx and dw against differences of the reference and of the kernel. */
static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < N_SHAPES; s++) {
        linear_ctx k;
        opcheck_case cs = linear_case(&k, 2, shapes[s], shapes[s][2], 2);
        opcheck(&cs, 10 + s);
    }
}

/* x [2, 3, 6] and [2, 1, 3, 5]: rows are every leading index, y keeps the leading dims. */
static void input_of_any_rank_keeps_its_leading_dimensions(void **state)
{
    (void)state;
    const size_t x3[3] = {2, 3, 6}, x4[4] = {2, 1, 3, 5};
    linear_ctx k;
    opcheck_case cs = linear_case(&k, 3, x3, 5, 2);
    opcheck(&cs, 30);
    cs = linear_case(&k, 4, x4, 4, 2);
    opcheck(&cs, 31);
}

static void nothing_is_recorded_when_no_input_needs_a_gradient(void **state)
{
    (void)state;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *x = ksa_tensor_2d(&arena, 3, 6), *w = ksa_tensor_2d(&arena, 5, 6);
    test_rng rng = test_rng_seed(3);
    test_fill_uniform(x->data, 18, -1, 1, &rng);
    test_fill_uniform(w->data, 30, -1, 1, &rng);
    ksa_tensor *y = ksa_op_linear(&tp, x, w);
    assert_int_equal(tp.n, 0);
    assert_int_equal(y->requires_grad, 0);
    /* and in no-grad mode even when the inputs need gradients */
    x->requires_grad = w->requires_grad = 1;
    tp.recording = 0;
    y = ksa_op_linear(&tp, x, w);
    assert_int_equal(tp.n, 0);
    assert_int_equal(y->requires_grad, 0);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

/* Only the inputs that need a gradient get one; the other stays untouched (NULL). */
static void backward_fills_only_the_gradients_that_are_needed(void **state)
{
    (void)state;
    const size_t xshape[2] = {4, 7};
    for (int which = 0; which < 2; which++) {
        linear_ctx k;
        opcheck_case cs = linear_case(&k, 2, xshape, 3, 1);
        cs.in[1 - which].no_grad = 1; /* which = 0: dx alone, 1: dw alone */
        opcheck(&cs, 40 + (uint64_t)which);
    }
}

static void backward_adds_into_existing_grads(void **state)
{
    (void)state;
    enum { N = 3, IN = 6, OUT = 5 };
    test_rng rng = test_rng_seed(7);
    ksa_real x[N * IN], w[OUT * IN], dy[N * OUT];
    ksa_real dx0[N * IN], dw0[OUT * IN], dx1[N * IN], dw1[OUT * IN];
    test_fill_uniform(x, N * IN, -1, 1, &rng);
    test_fill_uniform(w, OUT * IN, -1, 1, &rng);
    test_fill_uniform(dy, N * OUT, -1, 1, &rng);
    memset(dx0, 0, sizeof dx0), memset(dw0, 0, sizeof dw0);
    ksa_linear_backward(dx0, dw0, dy, x, w, N, IN, OUT);
    for (size_t i = 0; i < N * IN; i++)
        dx1[i] = 1;
    for (size_t i = 0; i < OUT * IN; i++)
        dw1[i] = -2;
    ksa_linear_backward(dx1, dw1, dy, x, w, N, IN, OUT);
    /* the first call is right from zero (dx = dy · w, dw = dyᵀ · x) ... */
    double want_dx[N * IN], want_dw[OUT * IN];
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < IN; i++) {
            double s = 0;
            for (size_t o = 0; o < OUT; o++)
                s += (double)dy[n * OUT + o] * (double)w[o * IN + i];
            want_dx[n * IN + i] = s;
        }
    for (size_t o = 0; o < OUT; o++)
        for (size_t i = 0; i < IN; i++) {
            double s = 0;
            for (size_t n = 0; n < N; n++)
                s += (double)dy[n * OUT + o] * (double)x[n * IN + i];
            want_dw[o * IN + i] = s;
        }
    ksa_expect_close(dx0, want_dx, N * IN, TEST_FWD_ATOL, TEST_FWD_RTOL, "dx from zero");
    ksa_expect_close(dw0, want_dw, OUT * IN, TEST_FWD_ATOL, TEST_FWD_RTOL, "dw from zero");
    /* ... and the second adds the same amount on top of what was there */
    for (size_t i = 0; i < N * IN; i++)
        assert_true(fabs((double)dx1[i] - (double)dx0[i] - 1) < 1e-5);
    for (size_t i = 0; i < OUT * IN; i++)
        assert_true(fabs((double)dw1[i] - (double)dw0[i] + 2) < 1e-5);
}

/* max |x[i]| in double, for bounds relative to a buffer's scale */
static double max_abs(const ksa_real *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

/* Sizes large enough that OpenBLAS really splits the GEMMs (M*N*K well above its
 * single-thread threshold). For a given thread count, forward and both gradients must not
 * change a bit from one run to the next (DESIGN.md §4: exact resume depends on it).
 * Across thread counts OpenBLAS 0.3.21 changes its blocking, so 1 and 2 threads differ in
 * the last bits (measured: ~20% of float elements, |diff| ~4e-7 of the largest value); they
 * must agree to rounding, relative to the buffer's largest element.                     */
static void results_are_bit_identical_for_a_given_thread_count(void **state)
{
    (void)state;
    size_t N = 130, in = 97, out = 111;
    test_rng rng = test_rng_seed(9);
    ksa_real *x = malloc(N * in * sizeof *x), *w = malloc(out * in * sizeof *w);
    ksa_real *dy = malloc(N * out * sizeof *dy);
    test_fill_uniform(x, N * in, -1, 1, &rng);
    test_fill_uniform(w, out * in, -1, 1, &rng);
    test_fill_uniform(dy, N * out, -1, 1, &rng);
    ksa_real *y[4], *dx[4], *dw[4]; /* runs: 1 thread, 1 thread, 2 threads, 2 threads */
    int saved_threads = ksa_threads_get();
    for (int r = 0; r < 4; r++) {
        ksa_threads_set(1 + r / 2);
        y[r] = malloc(N * out * sizeof *y[r]);
        dx[r] = malloc(N * in * sizeof *dx[r]);
        dw[r] = malloc(out * in * sizeof *dw[r]);
        for (size_t i = 0; i < N * in; i++)
            dx[r][i] = (ksa_real)0.1; /* accumulate onto something, as in a real step */
        for (size_t i = 0; i < out * in; i++)
            dw[r][i] = (ksa_real)-0.1;
        ksa_linear_forward(y[r], x, w, N, in, out);
        ksa_linear_backward(dx[r], dw[r], dy, x, w, N, in, out);
    }
    ksa_threads_set(saved_threads);
    for (int r = 0; r < 4; r += 2) {
        assert_memory_equal(y[r], y[r + 1], N * out * sizeof *y[r]);
        assert_memory_equal(dx[r], dx[r + 1], N * in * sizeof *dx[r]);
        assert_memory_equal(dw[r], dw[r + 1], out * in * sizeof *dw[r]);
    }
    double *y1 = test_to_double(y[0], N * out), *dx1 = test_to_double(dx[0], N * in);
    double *dw1 = test_to_double(dw[0], out * in);
    ksa_expect_close(y[2], y1, N * out, TEST_FWD_RTOL * max_abs(y[0], N * out), 0,
                     "y, 2 threads vs 1");
    ksa_expect_close(dx[2], dx1, N * in, TEST_FWD_RTOL * max_abs(dx[0], N * in), 0,
                     "dx, 2 threads vs 1");
    ksa_expect_close(dw[2], dw1, out * in, TEST_FWD_RTOL * max_abs(dw[0], out * in), 0,
                     "dw, 2 threads vs 1");
    for (int r = 0; r < 4; r++)
        free(y[r]), free(dx[r]), free(dw[r]);
    free(x), free(w), free(dy), free(y1), free(dx1), free(dw1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive_reference),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(input_of_any_rank_keeps_its_leading_dimensions),
        cmocka_unit_test(nothing_is_recorded_when_no_input_needs_a_gradient),
        cmocka_unit_test(backward_fills_only_the_gradients_that_are_needed),
        cmocka_unit_test(backward_adds_into_existing_grads),
        cmocka_unit_test(results_are_bit_identical_for_a_given_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
