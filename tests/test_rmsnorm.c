/* test_rmsnorm.c - RMSNorm forward against a naive double reference; gradients against
 * central finite differences (of the reference, and in the float64 build of the kernel). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rmsnorm.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static void ref_rmsnorm(double *y, const double *x, const double *w, size_t N, size_t D, double eps)
{
    for (size_t n = 0; n < N; n++) {
        double ss = 0;
        for (size_t d = 0; d < D; d++)
            ss += x[n * D + d] * x[n * D + d];
        double r = 1.0 / sqrt(ss / (double)D + eps);
        for (size_t d = 0; d < D; d++)
            y[n * D + d] = x[n * D + d] * r * w[d];
    }
}

typedef struct {
    size_t N, D;
    double eps;
    double *x, *w, *c, *y; /* reference inputs, loss coefficients, scratch output */
    ksa_real *xr, *wr, *yr, *rr;
} case_ctx;

static double ref_loss(void *p)
{
    case_ctx *k = p;
    ref_rmsnorm(k->y, k->x, k->w, k->N, k->D, k->eps);
    return test_dot_dd(k->y, k->c, k->N * k->D);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *p)
{
    case_ctx *k = p;
    ksa_rmsnorm_forward(k->yr, k->rr, k->xr, k->wr, k->N, k->D, (ksa_real)k->eps);
    return test_dot(k->yr, k->c, k->N * k->D);
}
#endif

static const size_t shapes[][2] = {{3, 6}, {1, 1}, {5, 7}, {4, 64}, {17, 33}, {2, 256}};

static void forward_matches_naive_reference(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t N = shapes[s][0], D = shapes[s][1];
        ksa_real *x = malloc(N * D * sizeof *x), *w = malloc(D * sizeof *w);
        ksa_real *y = malloc(N * D * sizeof *y), *r = malloc(N * sizeof *r);
        test_fill_uniform(x, N * D, -2, 2, &rng);
        test_fill_uniform(w, D, 0.5, 1.5, &rng);
        ksa_rmsnorm_forward(y, r, x, w, N, D, (ksa_real)1e-6);
        double *xd = test_to_double(x, N * D), *wd = test_to_double(w, D);
        double *yd = malloc(N * D * sizeof *yd);
        ref_rmsnorm(yd, xd, wd, N, D, 1e-6);
        ksa_expect_close(y, yd, N * D, TEST_FWD_ATOL, TEST_FWD_RTOL, "rmsnorm forward");
        free(x), free(w), free(y), free(r), free(xd), free(wd), free(yd);
    }
}

/* Runs the op through the tape with d(loss)/dy = c; checks dx and dw. */
static void check_gradients(size_t N, size_t D, uint64_t seed)
{
    test_rng rng = test_rng_seed(seed);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 20);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 16);

    ksa_tensor *x = ksa_tensor_2d(&arena, N, D), *w = ksa_tensor_1d(&arena, D);
    x->requires_grad = w->requires_grad = 1;
    test_fill_uniform(x->data, N * D, -2, 2, &rng);
    test_fill_uniform(w->data, D, 0.5, 1.5, &rng);
    double *c = malloc(N * D * sizeof *c);
    test_fill_uniform_d(c, N * D, -1, 1, &rng);

    ksa_tensor *y = ksa_op_rmsnorm(&tp, x, w, (ksa_real)1e-5);
    ksa_real *dy = ksa_tensor_grad(&arena, y);
    test_from_double(dy, c, N * D);
    ksa_tape_replay(&tp);

    case_ctx k = {.N = N, .D = D, .eps = 1e-5, .c = c};
    k.x = test_to_double(x->data, N * D);
    k.w = test_to_double(w->data, D);
    k.y = malloc(N * D * sizeof *k.y);
    double *num_dx = malloc(N * D * sizeof *num_dx), *num_dw = malloc(D * sizeof *num_dw);
    test_fd_grad_d(ref_loss, &k, k.x, N * D, num_dx);
    test_fd_grad_d(ref_loss, &k, k.w, D, num_dw);
    ksa_expect_close(x->grad, num_dx, N * D, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "dx vs differences of the reference");
    ksa_expect_close(w->grad, num_dw, D, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "dw vs differences of the reference");
#ifdef KSA_REAL_DOUBLE
    k.xr = x->data, k.wr = w->data;
    k.yr = malloc(N * D * sizeof *k.yr), k.rr = malloc(N * sizeof *k.rr);
    test_fd_grad(kernel_loss, &k, x->data, N * D, num_dx);
    test_fd_grad(kernel_loss, &k, w->data, D, num_dw);
    double *ax = test_to_double(x->grad, N * D), *aw = test_to_double(w->grad, D);
    ksa_expect_close_sym(ax, num_dx, N * D, 1e-8, 1e-6, "dx vs differences of the kernel");
    ksa_expect_close_sym(aw, num_dw, D, 1e-8, 1e-6, "dw vs differences of the kernel");
    free(ax), free(aw), free(k.yr), free(k.rr);
#endif
    free(c), free(k.x), free(k.w), free(k.y), free(num_dx), free(num_dw);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_gradients(shapes[s][0], shapes[s][1], 10 + s);
}

/* Per-head use (q_norm): x [N, H*dh] with a weight of dh elements. */
static void per_head_norm_uses_one_weight_for_every_head(void **state)
{
    (void)state;
    size_t N = 3, H = 4, dh = 8;
    test_rng rng = test_rng_seed(5);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *x = ksa_tensor_2d(&arena, N, H * dh), *w = ksa_tensor_1d(&arena, dh);
    test_fill_uniform(x->data, N * H * dh, -1, 1, &rng);
    test_fill_uniform(w->data, dh, 0.5, 1.5, &rng);
    ksa_tensor *y = ksa_op_rmsnorm(&tp, x, w, (ksa_real)1e-6);
    double *xd = test_to_double(x->data, N * H * dh), *wd = test_to_double(w->data, dh);
    double *yd = malloc(N * H * dh * sizeof *yd);
    ref_rmsnorm(yd, xd, wd, N * H, dh, 1e-6);
    ksa_expect_close(y->data, yd, N * H * dh, TEST_FWD_ATOL, TEST_FWD_RTOL, "per-head rmsnorm");
    assert_int_equal(tp.n, 0); /* no input needs a gradient: nothing recorded */
    free(xd), free(wd), free(yd);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

static void backward_adds_into_existing_grads(void **state)
{
    (void)state;
    size_t N = 3, D = 6;
    test_rng rng = test_rng_seed(7);
    ksa_real x[18], w[6], y[18], r[3], dy[18], dx0[18], dw0[6], dx1[18], dw1[6];
    test_fill_uniform(x, N * D, -1, 1, &rng);
    test_fill_uniform(w, D, 0.5, 1.5, &rng);
    test_fill_uniform(dy, N * D, -1, 1, &rng);
    ksa_rmsnorm_forward(y, r, x, w, N, D, (ksa_real)1e-6);
    memset(dx0, 0, sizeof dx0), memset(dw0, 0, sizeof dw0);
    ksa_rmsnorm_backward(dx0, dw0, dy, x, w, r, N, D);
    for (size_t i = 0; i < N * D; i++)
        dx1[i] = 1;
    for (size_t i = 0; i < D; i++)
        dw1[i] = -2;
    ksa_rmsnorm_backward(dx1, dw1, dy, x, w, r, N, D);
    for (size_t i = 0; i < N * D; i++)
        assert_true(fabs((double)dx1[i] - (double)dx0[i] - 1) < 1e-5);
    for (size_t i = 0; i < D; i++)
        assert_true(fabs((double)dw1[i] - (double)dw0[i] + 2) < 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive_reference),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(per_head_norm_uses_one_weight_for_every_head),
        cmocka_unit_test(backward_adds_into_existing_grads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
