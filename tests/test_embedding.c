/* test_embedding.c - row lookup forward against a naive double reference; the table's
 * gradient against central finite differences (of the reference, and in the float64 build
 * of the kernel); repeated ids, accumulation, the ids copy, thread-count determinism and
 * the abort on an id outside the table.                                                  */
#include "opcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/embedding.h"

/* ---- naive reference, double ----------------------------------------------------------- */
static void ref_embedding(double *out, const double *table, const int32_t *ids, size_t N, size_t D)
{
    for (size_t n = 0; n < N; n++)
        for (size_t d = 0; d < D; d++)
            out[n * D + d] = table[(size_t)ids[n] * D + d];
}

static void fill_ids(int32_t *ids, size_t N, size_t V, test_rng *rng)
{
    for (size_t n = 0; n < N; n++)
        ids[n] = (int32_t)(test_rng_uniform(rng) * (double)V);
}

/* {V, D, N}: odd sizes, 1x1, more ids than rows (so ids repeat), rows never looked up */
static const size_t shapes[][3] = {{5, 6, 3},  {1, 1, 1},    {7, 33, 17},
                                   {3, 5, 20}, {50, 64, 40}, {2, 1, 9}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void forward_copies_the_rows_the_ids_name(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    for (size_t s = 0; s < N_SHAPES; s++) {
        size_t V = shapes[s][0], D = shapes[s][1], N = shapes[s][2];
        ksa_real *table = malloc(V * D * sizeof *table), *out = malloc(N * D * sizeof *out);
        int32_t *ids = malloc(N * sizeof *ids);
        memset(out, 0xff, N * D * sizeof *out); /* NaN: forward must overwrite, not add */
        test_fill_uniform(table, V * D, -2, 2, &rng);
        fill_ids(ids, N, V, &rng);
        ksa_embedding_forward(out, table, ids, N, V, D);
        double *td = test_to_double(table, V * D), *od = malloc(N * D * sizeof *od);
        ref_embedding(od, td, ids, N, D);
        /* a copy: exact, in either precision */
        ksa_expect_close(out, od, N * D, 0, 0, "embedding forward");
        free(table), free(out), free(ids), free(td), free(od);
    }
}

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
typedef struct {
    size_t V, D, N;
    int32_t *ids;    /* N ids                                                          */
    int32_t *reused; /* NULL, or the caller's buffer the op is given, reused after it */
} lookup_ctx;

static void draw_ids(void *ctx, test_rng *rng)
{
    lookup_ctx *k = ctx;
    fill_ids(k->ids, k->N, k->V, rng);
}

static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    const lookup_ctx *k = ctx;
    if (!k->reused)
        return ksa_op_embedding(tp, in[0], k->ids, k->N);
    memcpy(k->reused, k->ids, k->N * sizeof *k->ids);
    ksa_tensor *out = ksa_op_embedding(tp, in[0], k->reused, k->N);
    memset(k->reused, 0, k->N * sizeof *k->ids); /* the next batch overwrites the buffer */
    return out;
}

static void ref(double *y, double *const *x, void *ctx)
{
    const lookup_ctx *k = ctx;
    ref_embedding(y, x[0], k->ids, k->N, k->D);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const lookup_ctx *k = ctx;
    ksa_embedding_forward(y, x[0], k->ids, k->N, k->V, k->D);
}

/* The table [V, D], values in [-xmax, xmax]; out [N, D]. */
static opcheck_case embedding_case(lookup_ctx *k, double xmax)
{
    opcheck_case cs = {.op = "embedding", .n_in = 1, .out_ndim = 2, .out_shape = {k->N, k->D}};
    cs.in[0] = (opcheck_input){.name = "table", .ndim = 2, .shape = {k->V, k->D}, .lo = -xmax};
    cs.in[0].hi = xmax;
    cs.ctx = k, cs.build = build, cs.ref = ref, cs.kernel = kernel;
    return cs;
}

/* N random ids: dtable against differences of the reference and of the kernel. */
static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < N_SHAPES; s++) {
        lookup_ctx k = {.V = shapes[s][0], .D = shapes[s][1], .N = shapes[s][2]};
        k.ids = malloc(k.N * sizeof *k.ids);
        opcheck_case cs = embedding_case(&k, 2);
        cs.setup = draw_ids;
        opcheck(&cs, 10 + s);
        free(k.ids);
    }
}

static void repeated_ids_sum_their_gradients_and_unused_rows_stay_zero(void **state)
{
    (void)state;
    enum { V = 6, D = 5, N = 6 };
    const int32_t ids[N] = {2, 0, 2, 2, 5, 0};
    test_rng rng = test_rng_seed(3);
    ksa_real dout[N * D], dtable[V * D];
    test_fill_uniform(dout, N * D, -1, 1, &rng);
    memset(dtable, 0, sizeof dtable);
    ksa_embedding_backward(dtable, dout, ids, N, V, D);
    double want[V * D];
    memset(want, 0, sizeof want);
    for (size_t d = 0; d < D; d++) {
        want[2 * D + d] = (double)dout[0 * D + d] + (double)dout[2 * D + d] + dout[3 * D + d];
        want[0 * D + d] = (double)dout[1 * D + d] + (double)dout[5 * D + d];
        want[5 * D + d] = (double)dout[4 * D + d];
    }
    ksa_expect_close(dtable, want, V * D, TEST_FWD_ATOL, TEST_FWD_RTOL, "dtable");
    for (size_t d = 0; d < D; d++) /* rows 1, 3 and 4 are never looked up: exactly zero */
        assert_true(dtable[1 * D + d] == 0 && dtable[3 * D + d] == 0 && dtable[4 * D + d] == 0);
}

static void backward_adds_into_existing_grads(void **state)
{
    (void)state;
    enum { V = 4, D = 6, N = 5 };
    const int32_t ids[N] = {3, 1, 3, 0, 1};
    test_rng rng = test_rng_seed(7);
    ksa_real dout[N * D], dt0[V * D], dt1[V * D];
    test_fill_uniform(dout, N * D, -1, 1, &rng);
    memset(dt0, 0, sizeof dt0);
    ksa_embedding_backward(dt0, dout, ids, N, V, D);
    for (size_t i = 0; i < V * D; i++)
        dt1[i] = (ksa_real)(0.5 + 0.25 * (double)i);
    ksa_embedding_backward(dt1, dout, ids, N, V, D);
    for (size_t i = 0; i < V * D; i++)
        assert_true(fabs((double)dt1[i] - (double)dt0[i] - (0.5 + 0.25 * (double)i)) < 1e-5);
    /* the first call was right from zero: row 3 got dout rows 0 and 2 */
    for (size_t d = 0; d < D; d++)
        assert_true(fabs((double)dt0[3 * D + d] - (double)dout[d] - (double)dout[2 * D + d]) <
                    1e-6);
    /* NULL dtable: nothing to do, no crash */
    ksa_embedding_backward(NULL, dout, ids, N, V, D);
}

/* The op copies ids: the caller's buffer may be reused before backward runs (opcheck:
 * dtable against differences at the ids given; here: the kernel's exactly).           */
static void caller_may_reuse_its_ids_buffer_before_backward(void **state)
{
    (void)state;
    enum { V = 5, D = 3, N = 4 };
    int32_t ids[N] = {4, 1, 4, 2}, buffer[N];
    lookup_ctx k = {.V = V, .D = D, .N = N, .ids = ids, .reused = buffer};
    opcheck_case cs = embedding_case(&k, 1);
    opcheck_run r;
    opcheck_begin(&r, &cs, 11);
    ksa_real want[V * D];
    memset(want, 0, sizeof want);
    ksa_embedding_backward(want, r.y->grad, ids, N, V, D);
    assert_memory_equal(r.in[0]->grad, want, sizeof want);
    opcheck_end(&r);
}

static void nothing_is_recorded_when_the_table_needs_no_gradient(void **state)
{
    (void)state;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *table = ksa_tensor_2d(&arena, 4, 3);
    test_rng rng = test_rng_seed(12);
    test_fill_uniform(table->data, 12, -1, 1, &rng);
    const int32_t ids[2] = {3, 0};
    ksa_tensor *out = ksa_op_embedding(&tp, table, ids, 2);
    assert_int_equal(tp.n, 0);
    assert_int_equal(out->requires_grad, 0);
    assert_memory_equal(out->data, table->data + 9, 3 * sizeof(ksa_real));
    assert_memory_equal(out->data + 3, table->data, 3 * sizeof(ksa_real));
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

/* Many repeats of few ids, D not a multiple of the thread count: forward and the
 * scatter-add must not change a bit between 1, 2, 3 and 4 threads.                      */
static void results_are_bit_identical_for_any_thread_count(void **state)
{
    (void)state;
    size_t V = 37, D = 131, N = 500;
    test_rng rng = test_rng_seed(13);
    ksa_real *table = malloc(V * D * sizeof *table), *dout = malloc(N * D * sizeof *dout);
    int32_t *ids = malloc(N * sizeof *ids);
    test_fill_uniform(table, V * D, -1, 1, &rng);
    test_fill_uniform(dout, N * D, -1, 1, &rng);
    fill_ids(ids, N, V, &rng);
    ksa_real *out[4], *dt[4];
    int saved_threads = ksa_threads_get();
    for (int r = 0; r < 4; r++) {
        ksa_threads_set(r + 1);
        out[r] = malloc(N * D * sizeof *out[r]);
        dt[r] = malloc(V * D * sizeof *dt[r]);
        for (size_t i = 0; i < V * D; i++)
            dt[r][i] = (ksa_real)0.1; /* accumulate onto something not exactly summable */
        ksa_embedding_forward(out[r], table, ids, N, V, D);
        ksa_embedding_backward(dt[r], dout, ids, N, V, D);
    }
    ksa_threads_set(saved_threads);
    for (int r = 1; r < 4; r++) {
        assert_memory_equal(out[0], out[r], N * D * sizeof *out[0]);
        assert_memory_equal(dt[0], dt[r], V * D * sizeof *dt[0]);
    }
    for (int r = 0; r < 4; r++)
        free(out[r]), free(dt[r]);
    free(table), free(dout), free(ids);
}

/* ---- aborts: run in a child process, check it dies of SIGABRT saying `needle` ---------- */
typedef struct {
    int32_t bad_id;
    int backward;
} abort_case;

static void run_with_bad_id(const void *arg)
{
    const abort_case *ac = arg;
    enum { V = 5, D = 2, N = 4 };
    ksa_real table[V * D] = {0}, out[N * D] = {0};
    const int32_t ids[N] = {0, 4, ac->bad_id, 1};
    if (ac->backward)
        ksa_embedding_backward(table, out, ids, N, V, D);
    else
        ksa_embedding_forward(out, table, ids, N, V, D);
}

static void an_id_outside_the_table_aborts_naming_position_and_value(void **state)
{
    (void)state;
    const abort_case cases[] = {{5, 0}, {-1, 0}, {5, 1}, {-7, 1}};
    const char *needles[] = {
        "ids[2] = 5 is outside the table's 5 rows", "ids[2] = -1 is outside the table's 5 rows",
        "ids[2] = 5 is outside the table's 5 rows", "ids[2] = -7 is outside the table's 5 rows"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_expect_abort(run_with_bad_id, &cases[i], needles[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(forward_copies_the_rows_the_ids_name),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(repeated_ids_sum_their_gradients_and_unused_rows_stay_zero),
        cmocka_unit_test(backward_adds_into_existing_grads),
        cmocka_unit_test(caller_may_reuse_its_ids_buffer_before_backward),
        cmocka_unit_test(nothing_is_recorded_when_the_table_needs_no_gradient),
        cmocka_unit_test(results_are_bit_identical_for_any_thread_count),
        cmocka_unit_test(an_id_outside_the_table_aborts_naming_position_and_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
