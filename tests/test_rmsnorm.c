/* test_rmsnorm.c - RMSNorm forward against a naive double reference; gradients against
 * central finite differences (of the reference, and in the float64 build of the kernel),
 * also for the per-head use with one weight for every head; accumulation.                 */
#include "opcheck.h"

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

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
typedef struct {
    size_t rows, D; /* normalised rows of D elements, D = w's size */
    double eps;
} norm_ctx;

static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    const norm_ctx *k = ctx;
    return ksa_op_rmsnorm(tp, in[0], in[1], (ksa_real)k->eps);
}

static void ref(double *y, double *const *x, void *ctx)
{
    const norm_ctx *k = ctx;
    ref_rmsnorm(y, x[0], x[1], k->rows, k->D, k->eps);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const norm_ctx *k = ctx;
    ksa_real *r = malloc(k->rows * sizeof *r);
    ksa_rmsnorm_forward(y, r, x[0], x[1], k->rows, k->D, (ksa_real)k->eps);
    free(r);
}

/* x [N, H*D] in [-xmax, xmax], w [D] in [0.5, 1.5]; H = 1 is the usual norm of each row.
 * k (the case's ctx) is filled in.                                                      */
static opcheck_case rmsnorm_case(norm_ctx *k, size_t N, size_t H, size_t D, double eps, double xmax)
{
    *k = (norm_ctx){.rows = N * H, .D = D, .eps = eps};
    opcheck_case cs = {.op = "rmsnorm", .n_in = 2, .out_ndim = 2, .out_shape = {N, H * D}};
    cs.in[0] = (opcheck_input){.name = "x", .ndim = 2, .shape = {N, H * D}, .lo = -xmax};
    cs.in[0].hi = xmax;
    cs.in[1] = (opcheck_input){.name = "w", .ndim = 1, .shape = {D}, .lo = 0.5, .hi = 1.5};
    cs.ctx = k, cs.build = build, cs.ref = ref, cs.kernel = kernel;
    return cs;
}

/* dx and dw against differences of the reference and of the kernel. */
static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        norm_ctx k;
        opcheck_case cs = rmsnorm_case(&k, shapes[s][0], 1, shapes[s][1], 1e-5, 2);
        opcheck(&cs, 10 + s);
    }
}

/* Per-head use (q_norm): x [N, H*dh] with a weight of dh elements, against the reference
 * over N*H rows of dh; gradients as above, nothing recorded without them (opcheck).     */
static void per_head_norm_uses_one_weight_for_every_head(void **state)
{
    (void)state;
    norm_ctx k;
    opcheck_case cs = rmsnorm_case(&k, 3, 4, 8, 1e-6, 1);
    opcheck(&cs, 5);
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
