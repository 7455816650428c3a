/* test_tape.c - the tape end to end: a small composite graph
 *   embedding -> rmsnorm -> linear (gate, up) -> swiglu -> linear -> residual add
 *   -> rope (on a [N, H, dh] view) -> rmsnorm -> linear -> cross-entropy
 * gradient-checked against finite differences over every parameter; row views route their
 * gradients into the base tensor; a tensor used twice gets the sum; the arena and tape are
 * reused over many steps without growth and with bit-identical results; with a gradient
 * pool, every activation gradient is given back once dead, with the same parameter
 * gradients bit for bit.                                                                */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/add.h"
#include "autograd/embedding.h"
#include "autograd/linear.h"
#include "autograd/params.h"
#include "autograd/rmsnorm.h"
#include "autograd/rope.h"
#include "autograd/swiglu.h"
#include "autograd/xent.h"

enum { V = 11, D = 8, I = 12, H = 2, N = 7 };

typedef struct {
    ksa_params p;
    size_t emb, norm1, gate, up, down, norm2, head;
    int32_t ids[N], target[N];
    int32_t pos[N];
    ksa_real w[N];
    ksa_arena arena;
    ksa_tape tp;
} model;

static void model_init(model *m, uint64_t seed)
{
    ksa_params_init(&m->p);
    m->emb = ksa_params_add(&m->p, "emb", 2, V, D);
    m->norm1 = ksa_params_add(&m->p, "norm1", 1, D, 0);
    m->gate = ksa_params_add(&m->p, "gate", 2, I, D);
    m->up = ksa_params_add(&m->p, "up", 2, I, D);
    m->down = ksa_params_add(&m->p, "down", 2, D, I);
    m->norm2 = ksa_params_add(&m->p, "norm2", 1, D, 0);
    m->head = ksa_params_add(&m->p, "head", 2, V, D);
    ksa_params_alloc(&m->p);
    test_rng rng = test_rng_seed(seed);
    for (size_t i = 0; i < m->p.n; i++) {
        ksa_param *e = &m->p.table[i];
        if (e->ndim == 1)
            test_fill_uniform(m->p.data + e->offset, e->numel, 0.5, 1.5, &rng);
        else
            test_fill_uniform(m->p.data + e->offset, e->numel, -0.7, 0.7, &rng);
    }
    for (int n = 0; n < N; n++) {
        m->ids[n] = (int32_t)(test_rng_uniform(&rng) * V);
        m->target[n] = (int32_t)(test_rng_uniform(&rng) * V);
        m->pos[n] = 3 * n + 1;
        m->w[n] = (ksa_real)(n == 2 ? 0.0 : 1.0);
    }
    m->ids[4] = m->ids[1]; /* a repeated id: its embedding row gets two contributions */
    ksa_arena_init(&m->arena, 1 << 20);
    ksa_tape_init(&m->tp, &m->arena, 64);
}

static void model_free(model *m)
{
    ksa_tape_free(&m->tp);
    ksa_arena_free(&m->arena);
    ksa_params_free(&m->p);
}

/* One forward pass on the tape; returns the loss tensor (loss value in *value). */
static ksa_tensor *forward(model *m, double *value)
{
    ksa_tape *tp = &m->tp;
    ksa_tensor *P[7];
    for (size_t i = 0; i < 7; i++)
        P[i] = ksa_params_tensor(&m->p, i);
    ksa_tensor *h = ksa_op_embedding(tp, P[m->emb], m->ids, N);
    ksa_tensor *hn = ksa_op_rmsnorm(tp, h, P[m->norm1], (ksa_real)1e-6);
    ksa_tensor *g = ksa_op_linear(tp, hn, P[m->gate]);
    ksa_tensor *u = ksa_op_linear(tp, hn, P[m->up]);
    ksa_tensor *a = ksa_op_swiglu(tp, g, u);
    ksa_tensor *o = ksa_op_linear(tp, a, P[m->down]);
    ksa_tensor *h2 = ksa_op_add(tp, h, o); /* h is used twice: embedding grads sum */
    size_t shape3[3] = {N, H, D / H};
    ksa_tensor *h3 = ksa_tensor_reshape(tp->arena, h2, 3, shape3);
    ksa_tensor *r = ksa_op_rope(tp, h3, m->pos, H, 10000.0);
    size_t shape2[2] = {N, D};
    ksa_tensor *r2 = ksa_tensor_reshape(tp->arena, r, 2, shape2);
    ksa_tensor *y = ksa_op_rmsnorm(tp, r2, P[m->norm2], (ksa_real)1e-6);
    ksa_tensor *logits = ksa_op_linear(tp, y, P[m->head]);
    return ksa_op_cross_entropy(tp, logits, m->target, m->w, (double)(N - 1), value, NULL);
}

static double loss_no_grad(void *ctx)
{
    model *m = ctx;
    ksa_tape_reset(&m->tp);
    m->tp.recording = 0;
    double value;
    forward(m, &value);
    m->tp.recording = 1;
    return value;
}

static void composite_graph_gradients_match_finite_differences(void **state)
{
    (void)state;
    model m;
    model_init(&m, 42);
    ksa_tape_reset(&m.tp);
    double value;
    ksa_tensor *loss = forward(&m, &value);
    assert_true(m.tp.n == 11); /* every op recorded one node */
    ksa_tape_backward(&m.tp, loss);
    double *analytic = test_to_double(m.p.grad, m.p.numel);
    double *num = malloc(m.p.numel * sizeof *num);
#ifdef KSA_REAL_DOUBLE
    test_fd_grad(loss_no_grad, &m, m.p.data, m.p.numel, num);
    ksa_expect_close_sym(analytic, num, m.p.numel, 1e-8, 1e-6, "composite graph gradients");
#else
    /* float: differences of the float forward are too coarse for the STYLE bound; check
     * against a larger step with a correspondingly looser bound (the float64 build of this
     * same test does the exact check). */
    for (size_t i = 0; i < m.p.numel; i++) {
        ksa_real saved = m.p.data[i];
        double h = 1e-2;
        m.p.data[i] = (ksa_real)(saved + h);
        double fp = loss_no_grad(&m);
        m.p.data[i] = (ksa_real)(saved - h);
        double fm = loss_no_grad(&m);
        m.p.data[i] = saved;
        num[i] = (fp - fm) / (2 * h);
    }
    ksa_expect_close_sym(analytic, num, m.p.numel, 2e-3, 2e-2, "composite graph gradients");
#endif
    /* the embedding rows never looked up get exactly zero gradient */
    ksa_param *e = &m.p.table[m.emb];
    for (size_t v = 0; v < V; v++) {
        int used = 0;
        for (int n = 0; n < N; n++)
            used |= m.ids[n] == (int32_t)v;
        if (!used)
            for (size_t d = 0; d < D; d++)
                assert_true(m.p.grad[e->offset + v * D + d] == 0);
    }
    free(analytic), free(num);
    model_free(&m);
}

static void row_views_send_gradients_to_their_base(void **state)
{
    (void)state;
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 8);
    ksa_tensor *x = ksa_tensor_2d(&arena, 5, 3), *w = ksa_tensor_1d(&arena, 3);
    x->requires_grad = 1;
    test_rng rng = test_rng_seed(3);
    test_fill_uniform(x->data, 15, -1, 1, &rng);
    test_fill_uniform(w->data, 3, 0.5, 1.5, &rng);
    ksa_tensor *top = ksa_tensor_rows(&arena, x, 0, 2), *bottom = ksa_tensor_rows(&arena, x, 2, 3);
    ksa_tensor *a = ksa_op_rmsnorm(&tp, top, w, (ksa_real)1e-6);
    ksa_tensor *b = ksa_op_rmsnorm(&tp, bottom, w, (ksa_real)1e-6);
    ksa_real *da = ksa_tensor_grad(&arena, a), *db = ksa_tensor_grad(&arena, b);
    for (size_t i = 0; i < 6; i++)
        da[i] = (ksa_real)(i + 1);
    for (size_t i = 0; i < 9; i++)
        db[i] = (ksa_real)(-(double)i);
    ksa_tape_replay(&tp);
    /* same as one rmsnorm over all 5 rows with the concatenated output gradient */
    ksa_real y[15], r[5], dy[15], dx[15] = {0};
    ksa_rmsnorm_forward(y, r, x->data, w->data, 5, 3, (ksa_real)1e-6);
    memcpy(dy, da, 6 * sizeof *dy);
    memcpy(dy + 6, db, 9 * sizeof *dy);
    ksa_rmsnorm_backward(dx, NULL, dy, x->data, w->data, r, 5, 3);
    double *want = test_to_double(dx, 15);
    ksa_expect_close(x->grad, want, 15, 1e-12, 1e-12, "gradient of x through two row views");
    assert_null(w->grad); /* w did not ask for a gradient */
    free(want);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
}

static void steps_reuse_arena_and_tape_without_growth(void **state)
{
    (void)state;
    model m;
    model_init(&m, 7);
    double first_loss = 0;
    size_t first_peak = 0;
    ksa_real *first_grad = malloc(m.p.numel * sizeof *first_grad);
    for (int step = 0; step < 200; step++) {
        ksa_tape_reset(&m.tp);
        assert_int_equal(m.arena.used, 0);
        assert_int_equal(m.tp.n, 0);
        ksa_params_zero_grad(&m.p);
        double value;
        ksa_tensor *loss = forward(&m, &value);
        ksa_tape_backward(&m.tp, loss);
        if (step == 0) {
            first_loss = value;
            first_peak = m.arena.peak;
            memcpy(first_grad, m.p.grad, m.p.numel * sizeof *first_grad);
        } else {
            assert_true(value == first_loss); /* bit-identical */
            assert_int_equal(m.arena.peak, first_peak);
            assert_memory_equal(m.p.grad, first_grad, m.p.numel * sizeof *first_grad);
        }
    }
    free(first_grad);
    model_free(&m);
}

static void no_grad_mode_records_nothing(void **state)
{
    (void)state;
    model m;
    model_init(&m, 9);
    double with_tape, without;
    ksa_tape_reset(&m.tp);
    forward(&m, &with_tape);
    size_t used_recording = m.arena.used;
    without = loss_no_grad(&m);
    assert_int_equal(m.tp.n, 0);
    assert_true(with_tape == without);
    assert_true(m.arena.used <= used_recording);
    model_free(&m);
}

/* With a gradient pool: the parameter gradients are bit for bit those of arena gradients;
 * every activation gradient is back in the pool after backward (none is a leaf here); the
 * pool's peak is below the sum of all of them; repeated steps touch no more memory.     */
static void a_gradient_pool_frees_dead_gradients_and_changes_nothing(void **state)
{
    (void)state;
    model m;
    model_init(&m, 11);
    ksa_params_zero_grad(&m.p);
    ksa_tape_reset(&m.tp);
    double value;
    ksa_tensor *loss = forward(&m, &value);
    size_t before_backward = m.arena.used;
    ksa_tape_backward(&m.tp, loss);
    size_t all_grads = m.arena.used - before_backward; /* every activation gradient */
    ksa_real *arena_grad = malloc(m.p.numel * sizeof *arena_grad);
    memcpy(arena_grad, m.p.grad, m.p.numel * sizeof *arena_grad);

    ksa_grad_pool pool;
    ksa_grad_pool_init(&pool, all_grads);
    ksa_tape_use_grad_pool(&m.tp, &pool);
    size_t high_water = 0;
    for (int step = 0; step < 3; step++) {
        ksa_params_zero_grad(&m.p);
        ksa_tape_reset(&m.tp);
        loss = forward(&m, &value);
        size_t activations = m.arena.used;
        ksa_tape_backward(&m.tp, loss);
        assert_memory_equal(m.p.grad, arena_grad, m.p.numel * sizeof *arena_grad);
        assert_int_equal(m.arena.used, activations); /* no gradient in the arena */
        assert_int_equal(pool.in_use, 0);
        assert_int_equal(pool.n, 0);
        assert_true(pool.peak > 0 && pool.peak < all_grads);
        if (step == 0)
            high_water = pool.high_water;
        assert_int_equal(pool.high_water, high_water);
    }
    ksa_grad_pool_free_all(&pool);
    free(arena_grad);
    model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(composite_graph_gradients_match_finite_differences),
        cmocka_unit_test(row_views_send_gradients_to_their_base),
        cmocka_unit_test(steps_reuse_arena_and_tape_without_growth),
        cmocka_unit_test(no_grad_mode_records_nothing),
        cmocka_unit_test(a_gradient_pool_frees_dead_gradients_and_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
