/* test_add.c - residual add forward against a naive double reference; da and db against
 * central finite differences (of the reference, and in the float64 build of the kernel);
 * a tensor added to itself, NULL gradients, accumulation and the shape check.           */
#include "opcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/add.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static void ref_add(double *y, const double *a, const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

/* {ndim, d0, d1, d2}: odd sizes, 1x1, a 3-d activation, a long row */
static const size_t shapes[][4] = {{2, 3, 6, 0}, {2, 1, 1, 0},    {2, 17, 33, 0},
                                   {3, 2, 3, 5}, {1, 1001, 0, 0}, {3, 4, 1, 7}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void forward_matches_naive_reference(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    for (size_t n = 1; n < 3000; n = n * 3 + 1) {
        ksa_real *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        ksa_real *y = malloc(n * sizeof *y);
        memset(y, 0xff, n * sizeof *y); /* NaN: forward must overwrite, not add */
        test_fill_uniform(a, n, -2, 2, &rng);
        test_fill_uniform(b, n, -2, 2, &rng);
        ksa_add_forward(y, a, b, n);
        double *ad = test_to_double(a, n), *bd = test_to_double(b, n);
        double *yd = malloc(n * sizeof *yd);
        ref_add(yd, ad, bd, n);
        ksa_expect_close(y, yd, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "add forward");
        ksa_add_forward(a, a, b, n); /* in place, as a residual stream does */
        ksa_expect_close(a, yd, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "add forward in place");
        free(a), free(b), free(y), free(ad), free(bd), free(yd);
    }
}

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return ksa_op_add(tp, in[0], in[1]);
}

static void ref(double *y, double *const *x, void *ctx)
{
    ref_add(y, x[0], x[1], *(const size_t *)ctx);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    ksa_add_forward(y, x[0], x[1], *(const size_t *)ctx);
}

/* a and b of one shape, values in [-2, 2]; y of that shape; *n (the ctx) its size. */
static opcheck_case add_case(int ndim, const size_t *shape, size_t *n)
{
    opcheck_case cs = {.op = "add", .n_in = 2, .out_ndim = ndim, .ctx = n};
    cs.in[0] = (opcheck_input){.name = "a", .ndim = ndim, .lo = -2, .hi = 2};
    cs.in[1] = (opcheck_input){.name = "b", .ndim = ndim, .lo = -2, .hi = 2};
    *n = 1;
    for (int d = 0; d < ndim; d++) {
        cs.in[0].shape[d] = cs.in[1].shape[d] = cs.out_shape[d] = shape[d];
        *n *= shape[d];
    }
    cs.build = build, cs.ref = ref, cs.kernel = kernel;
    return cs;
}

/* y's shape, da and db against differences of the reference and of the kernel. */
static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < N_SHAPES; s++) {
        size_t n;
        opcheck_case cs = add_case((int)shapes[s][0], &shapes[s][1], &n);
        opcheck(&cs, 10 + s);
    }
}

/* y = a + a: both inputs are the same tensor, so it receives 2 c, exactly. */
static ksa_tensor *build_twice(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return ksa_op_add(tp, in[0], in[0]);
}

static void ref_twice(double *y, double *const *x, void *ctx)
{
    ref_add(y, x[0], x[0], *(const size_t *)ctx);
}

static void kernel_twice(ksa_real *y, ksa_real *const *x, void *ctx)
{
    ksa_add_forward(y, x[0], x[0], *(const size_t *)ctx);
}

static void a_tensor_added_to_itself_gets_twice_the_gradient(void **state)
{
    (void)state;
    size_t n = 7;
    opcheck_case cs = {.op = "add", .n_in = 1, .out_ndim = 2, .out_shape = {1, n}, .ctx = &n};
    cs.in[0] = (opcheck_input){.name = "a", .ndim = 2, .shape = {1, n}, .lo = -1, .hi = 1};
    cs.build = build_twice, cs.ref = ref_twice, cs.kernel = kernel_twice;
    opcheck_run r;
    opcheck_begin(&r, &cs, 3);
    double want[7];
    for (size_t i = 0; i < n; i++)
        want[i] = 2 * (double)(ksa_real)r.c[i];
    ksa_expect_close(r.in[0]->grad, want, n, 0, 0, "d(a + a)/da"); /* exact: x + x = 2x */
    opcheck_end(&r);
}

/* Only the input that needs a gradient gets one, exactly dy (opcheck: a gets none, and
 * nothing is recorded when neither needs one).                                         */
static void only_inputs_that_need_a_gradient_get_one(void **state)
{
    (void)state;
    size_t n;
    opcheck_case cs = add_case(2, (const size_t[]){2, 3}, &n);
    cs.in[0].no_grad = 1;
    opcheck_run r;
    opcheck_begin(&r, &cs, 4);
    ksa_expect_close(r.in[1]->grad, r.c, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "db alone");
    opcheck_end(&r);
}

static void backward_adds_into_existing_grads(void **state)
{
    (void)state;
    enum { N = 18 };
    test_rng rng = test_rng_seed(7);
    ksa_real dy[N], da[N], db[N];
    test_fill_uniform(dy, N, -1, 1, &rng);
    for (size_t i = 0; i < N; i++)
        da[i] = 1, db[i] = (ksa_real)(-2 + 0.125 * (double)i);
    ksa_add_backward(da, db, dy, N);
    for (size_t i = 0; i < N; i++) {
        assert_true(fabs((double)da[i] - 1 - (double)dy[i]) < 1e-6);
        assert_true(fabs((double)db[i] - (-2 + 0.125 * (double)i) - (double)dy[i]) < 1e-6);
    }
    ksa_add_backward(NULL, db, dy, N); /* NULL da: db still gets its share */
    for (size_t i = 0; i < N; i++)
        assert_true(fabs((double)db[i] - (-2 + 0.125 * (double)i) - 2 * (double)dy[i]) < 1e-6);
    ksa_add_backward(da, NULL, dy, N);
    for (size_t i = 0; i < N; i++)
        assert_true(fabs((double)da[i] - 1 - 2 * (double)dy[i]) < 1e-6);
}

/* ---- shape check: run in a child process, check it dies of SIGABRT saying `needle` ---- */
typedef struct {
    int ndim_a, ndim_b;
    size_t shape_a[3], shape_b[3];
} abort_case;

static void add_mismatched(const void *arg)
{
    const abort_case *ac = arg;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *a = ksa_tensor_new(&arena, ac->ndim_a, ac->shape_a);
    ksa_tensor *b = ksa_tensor_new(&arena, ac->ndim_b, ac->shape_b);
    memset(a->data, 0, a->numel * sizeof(ksa_real));
    memset(b->data, 0, b->numel * sizeof(ksa_real));
    ksa_op_add(&tp, a, b);
}

static void different_shapes_abort_naming_both(void **state)
{
    (void)state;
    const abort_case transposed = {2, 2, {3, 6, 0}, {6, 3, 0}};
    const abort_case flattened = {2, 1, {3, 6, 0}, {18, 0, 0}};
    const abort_case one_dim_off = {3, 3, {2, 3, 5}, {2, 3, 4}};
    test_expect_abort(add_mismatched, &transposed, "a is [3, 6] and b is [6, 3]");
    test_expect_abort(add_mismatched, &flattened, "a is [3, 6] and b is [18]");
    test_expect_abort(add_mismatched, &one_dim_off, "a is [2, 3, 5] and b is [2, 3, 4]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive_reference),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(a_tensor_added_to_itself_gets_twice_the_gradient),
        cmocka_unit_test(only_inputs_that_need_a_gradient_get_one),
        cmocka_unit_test(backward_adds_into_existing_grads),
        cmocka_unit_test(different_shapes_abort_naming_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
