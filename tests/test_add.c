/* test_add.c - residual add forward against a naive double reference; da and db against
 * central finite differences (of the reference, and in the float64 build of the kernel);
 * a tensor added to itself, NULL gradients, accumulation and the shape check.           */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <omp.h>

#include "autograd/add.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static void ref_add(double *y, const double *a, const double *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

typedef struct {
    size_t n;
    double *a, *b, *c, *y; /* reference inputs, loss coefficients, scratch output */
    ksa_real *ar, *br, *yr;
} case_ctx;

static double ref_loss(void *p)
{
    case_ctx *k = p;
    ref_add(k->y, k->a, k->b, k->n);
    return test_dot_dd(k->y, k->c, k->n);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *p)
{
    case_ctx *k = p;
    ksa_add_forward(k->yr, k->ar, k->br, k->n);
    return test_dot(k->yr, k->c, k->n);
}
#endif

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

/* Runs the op through the tape with d(loss)/dy = c; checks y's shape, da and db. */
static void check_gradients(int ndim, const size_t *shape, uint64_t seed)
{
    test_rng rng = test_rng_seed(seed);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 20);
    memset(arena.base, 0xff, arena.capacity); /* NaN garbage: arena memory is uninitialised */
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 16);

    ksa_tensor *a = ksa_tensor_new(&arena, ndim, shape), *b = ksa_tensor_new(&arena, ndim, shape);
    size_t n = a->numel;
    a->requires_grad = b->requires_grad = 1;
    test_fill_uniform(a->data, n, -2, 2, &rng);
    test_fill_uniform(b->data, n, -2, 2, &rng);
    double *c = malloc(n * sizeof *c);
    test_fill_uniform_d(c, n, -1, 1, &rng);

    ksa_tensor *y = ksa_op_add(&tp, a, b);
    assert_int_equal(y->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        assert_int_equal(y->shape[i], shape[i]);
    assert_int_equal(tp.n, 1);
    test_from_double(ksa_tensor_grad(&arena, y), c, n);
    ksa_tape_replay(&tp);

    case_ctx k = {.n = n, .c = c};
    k.a = test_to_double(a->data, n);
    k.b = test_to_double(b->data, n);
    k.y = malloc(n * sizeof *k.y);
    double *num_da = malloc(n * sizeof *num_da), *num_db = malloc(n * sizeof *num_db);
    test_fd_grad_d(ref_loss, &k, k.a, n, num_da);
    test_fd_grad_d(ref_loss, &k, k.b, n, num_db);
    ksa_expect_close(a->grad, num_da, n, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "da vs differences of the reference");
    ksa_expect_close(b->grad, num_db, n, TEST_BWD_ATOL, TEST_BWD_RTOL,
                     "db vs differences of the reference");
#ifdef KSA_REAL_DOUBLE
    k.ar = a->data, k.br = b->data;
    k.yr = malloc(n * sizeof *k.yr);
    test_fd_grad(kernel_loss, &k, a->data, n, num_da);
    test_fd_grad(kernel_loss, &k, b->data, n, num_db);
    double *ga = test_to_double(a->grad, n), *gb = test_to_double(b->grad, n);
    ksa_expect_close_sym(ga, num_da, n, 1e-8, 1e-6, "da vs differences of the kernel");
    ksa_expect_close_sym(gb, num_db, n, 1e-8, 1e-6, "db vs differences of the kernel");
    free(ga), free(gb), free(k.yr);
#endif
    free(c), free(k.a), free(k.b), free(k.y), free(num_da), free(num_db);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < N_SHAPES; s++)
        check_gradients((int)shapes[s][0], &shapes[s][1], 10 + s);
}

/* y = a + a: both inputs are the same tensor, so it receives 2 c. */
static void a_tensor_added_to_itself_gets_twice_the_gradient(void **state)
{
    (void)state;
    size_t n = 7;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    test_rng rng = test_rng_seed(3);
    ksa_tensor *a = ksa_tensor_2d(&arena, 1, n);
    a->requires_grad = 1;
    test_fill_uniform(a->data, n, -1, 1, &rng);
    ksa_tensor *y = ksa_op_add(&tp, a, a);
    double c[7], want[7];
    test_fill_uniform_d(c, n, -1, 1, &rng);
    test_from_double(ksa_tensor_grad(&arena, y), c, n);
    ksa_tape_replay(&tp);
    for (size_t i = 0; i < n; i++)
        want[i] = 2 * (double)(ksa_real)c[i];
    ksa_expect_close(a->grad, want, n, 0, 0, "d(a + a)/da"); /* exact: x + x = 2x */
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

/* Only the input that needs a gradient gets one; nothing recorded when neither does. */
static void only_inputs_that_need_a_gradient_get_one(void **state)
{
    (void)state;
    size_t n = 6;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    test_rng rng = test_rng_seed(4);
    ksa_tensor *a = ksa_tensor_2d(&arena, 2, 3), *b = ksa_tensor_2d(&arena, 2, 3);
    test_fill_uniform(a->data, n, -1, 1, &rng);
    test_fill_uniform(b->data, n, -1, 1, &rng);
    ksa_tensor *y = ksa_op_add(&tp, a, b);
    assert_int_equal(tp.n, 0);
    assert_int_equal(y->requires_grad, 0);
    b->requires_grad = 1;
    y = ksa_op_add(&tp, a, b);
    assert_int_equal(tp.n, 1);
    double c[6];
    test_fill_uniform_d(c, n, -1, 1, &rng);
    test_from_double(ksa_tensor_grad(&arena, y), c, n);
    ksa_tape_replay(&tp);
    assert_null(a->grad);
    ksa_expect_close(b->grad, c, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "db alone");
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
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
