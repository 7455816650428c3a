/* test_lerp.c - the annealing blend y = m·a + (1 - m)·b (KSA_SPEC §5.5): forward against a
 * naive double reference; da and db against central finite differences (of the reference,
 * and in the float64 build of the kernel) for several m, the ends m = 0 and m = 1 exact,
 * writing into a row range, accumulation, and the shape check.                          */
#include "opcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/lerp.h"

typedef struct {
    size_t n;
    double m;
} lerp_args;

/* ---- naive reference, double ----------------------------------------------------------- */
static void ref_lerp(double *y, const double *a, const double *b, double m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = m * a[i] + (1 - m) * b[i];
}

static void forward_matches_naive_reference(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    const double ms[] = {0, 0.25, 0.5, 0.9, 1};
    for (size_t n = 1; n < 3000; n = n * 3 + 1)
        for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
            ksa_real *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
            ksa_real *y = malloc(n * sizeof *y);
            memset(y, 0xff, n * sizeof *y); /* NaN: forward must overwrite, not add */
            test_fill_uniform(a, n, -2, 2, &rng);
            test_fill_uniform(b, n, -2, 2, &rng);
            ksa_lerp_forward(y, a, b, (ksa_real)ms[k], n);
            double *ad = test_to_double(a, n), *bd = test_to_double(b, n);
            double *yd = malloc(n * sizeof *yd);
            ref_lerp(yd, ad, bd, ms[k], n);
            ksa_expect_close(y, yd, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "lerp forward");
            free(a), free(b), free(y), free(ad), free(bd), free(yd);
        }
}

/* m = 1 gives a and m = 0 gives b bit for bit (the ends of the annealing window). */
static void the_ends_give_either_input_exactly(void **state)
{
    (void)state;
    enum { N = 37 };
    test_rng rng = test_rng_seed(2);
    ksa_real a[N], b[N], y[N];
    test_fill_uniform(a, N, -3, 3, &rng);
    test_fill_uniform(b, N, -3, 3, &rng);
    ksa_lerp_forward(y, a, b, 1, N);
    assert_memory_equal(y, a, sizeof a);
    ksa_lerp_forward(y, a, b, 0, N);
    assert_memory_equal(y, b, sizeof b);
}

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return ksa_op_lerp(tp, in[0], in[1], (ksa_real)((const lerp_args *)ctx)->m);
}

static void ref(double *y, double *const *x, void *ctx)
{
    const lerp_args *g = ctx;
    ref_lerp(y, x[0], x[1], g->m, g->n);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const lerp_args *g = ctx;
    ksa_lerp_forward(y, x[0], x[1], (ksa_real)g->m, g->n);
}

/* a and b [d0, d1], values in [-2, 2]; y of that shape. */
static opcheck_case lerp_case(size_t d0, size_t d1, lerp_args *g)
{
    g->n = d0 * d1;
    opcheck_case cs = {.op = "lerp", .n_in = 2, .out_ndim = 2, .out_shape = {d0, d1}, .ctx = g};
    cs.in[0] = (opcheck_input){.name = "a", .ndim = 2, .shape = {d0, d1}, .lo = -2, .hi = 2};
    cs.in[1] = (opcheck_input){.name = "b", .ndim = 2, .shape = {d0, d1}, .lo = -2, .hi = 2};
    cs.build = build, cs.ref = ref, cs.kernel = kernel;
    return cs;
}

static void backward_matches_finite_differences(void **state)
{
    (void)state;
    const size_t shapes[][2] = {{3, 6}, {1, 1}, {5, 12}, {17, 33}};
    const double ms[] = {0.5, 0.3125, 0.8, 0, 1};
    uint64_t seed = 10;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
            lerp_args g = {.m = ms[k]};
            opcheck_case cs = lerp_case(shapes[s][0], shapes[s][1], &g);
            opcheck(&cs, seed++);
        }
}

/* Only the input that needs a gradient gets one: db = (1 - m)·dy alone. */
static void only_inputs_that_need_a_gradient_get_one(void **state)
{
    (void)state;
    lerp_args g = {.m = 0.25};
    opcheck_case cs = lerp_case(2, 3, &g);
    cs.in[0].no_grad = 1;
    opcheck_run r;
    opcheck_begin(&r, &cs, 4);
    double want[6];
    for (size_t i = 0; i < 6; i++)
        want[i] = 0.75 * (double)(ksa_real)r.c[i];
    ksa_expect_close(r.in[1]->grad, want, 6, TEST_FWD_ATOL, TEST_FWD_RTOL, "db alone");
    opcheck_end(&r);
}

/* Written into the last rows of a larger tensor (the summary rows of q): the other rows keep
 * their values, and the gradient of y's rows reaches a and b. */
static void writes_into_a_row_range_and_leaves_the_other_rows(void **state)
{
    (void)state;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *big = ksa_tensor_2d(&arena, 5, 4);
    for (size_t i = 0; i < 20; i++)
        big->data[i] = (ksa_real)i;
    ksa_tensor *a = ksa_tensor_2d(&arena, 2, 4), *b = ksa_tensor_2d(&arena, 2, 4);
    a->requires_grad = b->requires_grad = 1;
    for (size_t i = 0; i < 8; i++)
        a->data[i] = 1, b->data[i] = 3;
    ksa_tensor *rows = ksa_tensor_rows(&arena, big, 3, 2);
    assert_ptr_equal(ksa_op_lerp_into(&tp, a, b, 0.25, rows), rows);
    for (size_t i = 0; i < 12; i++)
        assert_true(big->data[i] == (ksa_real)i);
    for (size_t i = 12; i < 20; i++)
        assert_true(big->data[i] == (ksa_real)2.5); /* 0.25·1 + 0.75·3 */
    ksa_real *dbig = ksa_tensor_grad(&arena, big);
    for (size_t i = 0; i < 20; i++)
        dbig[i] = 1;
    ksa_tape_replay(&tp);
    for (size_t i = 0; i < 8; i++) {
        assert_true(a->grad[i] == (ksa_real)0.25);
        assert_true(b->grad[i] == (ksa_real)0.75);
    }
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
    ksa_lerp_backward(da, db, dy, 0.25, N);
    for (size_t i = 0; i < N; i++) {
        assert_true(fabs((double)da[i] - 1 - 0.25 * (double)dy[i]) < 1e-6);
        assert_true(fabs((double)db[i] - (-2 + 0.125 * (double)i) - 0.75 * (double)dy[i]) < 1e-6);
    }
    ksa_lerp_backward(NULL, db, dy, 0.25, N); /* NULL da: db still gets its share */
    for (size_t i = 0; i < N; i++)
        assert_true(fabs((double)db[i] - (-2 + 0.125 * (double)i) - 1.5 * (double)dy[i]) < 1e-6);
}

/* ---- shape check: run in a child process, check it dies of SIGABRT saying `needle` ---- */
static void lerp_mismatched(const void *arg)
{
    (void)arg;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *a = ksa_tensor_2d(&arena, 3, 6), *b = ksa_tensor_2d(&arena, 3, 5);
    memset(a->data, 0, a->numel * sizeof(ksa_real));
    memset(b->data, 0, b->numel * sizeof(ksa_real));
    ksa_op_lerp(&tp, a, b, 0.5);
}

static void different_sizes_abort_naming_both(void **state)
{
    (void)state;
    test_expect_abort(lerp_mismatched, NULL, "a has 18 elements and b 15");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_matches_naive_reference),
        cmocka_unit_test(the_ends_give_either_input_exactly),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(only_inputs_that_need_a_gradient_get_one),
        cmocka_unit_test(writes_into_a_row_range_and_leaves_the_other_rows),
        cmocka_unit_test(backward_adds_into_existing_grads),
        cmocka_unit_test(different_sizes_abort_naming_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
