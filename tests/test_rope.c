/* test_rope.c - RoPE forward against a naive double reference and the facts of KSA_SPEC §6.1
 * (identity at position 0, norm of each (i, i + dh/2) pair kept, scores depending on the
 * position difference only, accuracy at position 131071); gradients against central finite
 * differences (of the reference, and in the float64 build of the kernel).                  */
#include "opcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rope.h"

/* ---- naive reference, double, straight from the formula -------------------------------- */
static void ref_rope(double *y, const double *x, const int32_t *pos, size_t N, size_t H, size_t dh,
                     double base)
{
    size_t half = dh / 2;
    for (size_t n = 0; n < N; n++)
        for (size_t h = 0; h < H; h++) {
            const double *xv = x + (n * H + h) * dh;
            double *yv = y + (n * H + h) * dh;
            for (size_t i = 0; i < half; i++) {
                double theta = pow(base, -2.0 * (double)i / (double)dh);
                double a = (double)pos[n] * theta;
                yv[i] = xv[i] * cos(a) - xv[i + half] * sin(a);
                yv[i + half] = xv[i + half] * cos(a) + xv[i] * sin(a);
            }
        }
}

/* Position ids as the model produces them: small text ids, summary ids 8c+7, ids near the
 * 128k end of a long window, and arbitrary ones.                                           */
static void fill_positions(int32_t *pos, size_t N, test_rng *rng)
{
    for (size_t n = 0; n < N; n++) {
        switch (n % 4) {
        case 0:
            pos[n] = (int32_t)n;
            break;
        case 1:
            pos[n] = (int32_t)(8 * n + 7);
            break;
        case 2:
            pos[n] = (int32_t)(131071 - n);
            break;
        default:
            pos[n] = (int32_t)(test_rng_uniform(rng) * 131072);
            break;
        }
    }
}

/* Forward tolerance. float: the ordinary one. double: the angle p·θ_i itself rounds by up to
 * ~p·2^-53 ≈ 1.5e-11 rad at p = 131071, so two faithful implementations of the formula (pow
 * vs exp/log for θ, say) may differ by that much; 1e-12 would only accept bit-equal ones.  */
#ifdef KSA_REAL_DOUBLE
#define ROPE_FWD_ATOL 1e-10
#else
#define ROPE_FWD_ATOL TEST_FWD_ATOL
#endif

/* {N, H, dh}: odd row counts, 1..4 heads, the smallest head, and dh/2 above the kernel's
 * block of 64 frequencies (130: a tail of one; 256: two full blocks).                   */
static const size_t shapes[][3] = {{3, 1, 2}, {3, 2, 6},   {3, 3, 8},  {3, 4, 64},
                                   {1, 1, 2}, {5, 2, 130}, {2, 1, 256}};
static const double bases[] = {10000.0, 1000000.0};

static void forward_matches_naive_reference(void **state)
{
    (void)state;
    test_rng rng = test_rng_seed(1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
            size_t N = shapes[s][0], H = shapes[s][1], dh = shapes[s][2], n = N * H * dh;
            ksa_real *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
            int32_t *pos = malloc(N * sizeof *pos);
            test_fill_uniform(x, n, -1, 1, &rng);
            fill_positions(pos, N, &rng);
            ksa_rope_forward(y, x, pos, N, H, dh, bases[b]);
            double *xd = test_to_double(x, n), *yd = malloc(n * sizeof *yd);
            ref_rope(yd, xd, pos, N, H, dh, bases[b]);
            ksa_expect_close(y, yd, n, ROPE_FWD_ATOL, TEST_FWD_RTOL, "rope forward");
            free(x), free(y), free(pos), free(xd), free(yd);
        }
}

/* y may be x: the attention code rotates q and k in place. */
static void forward_in_place_matches_out_of_place(void **state)
{
    (void)state;
    size_t N = 5, H = 2, dh = 130, n = N * H * dh;
    test_rng rng = test_rng_seed(2);
    ksa_real *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    int32_t pos[5];
    test_fill_uniform(x, n, -1, 1, &rng);
    fill_positions(pos, N, &rng);
    ksa_rope_forward(y, x, pos, N, H, dh, 10000.0);
    ksa_rope_forward(x, x, pos, N, H, dh, 10000.0);
    assert_memory_equal(x, y, n * sizeof *x);
    free(x), free(y);
}

/* Rows at position 0 come out bit-identical (cos 0 = 1, sin 0 = 0); the row between them,
 * at position 7, is rotated, so a kernel reading another row's position fails here.     */
static void position_zero_is_the_identity(void **state)
{
    (void)state;
    size_t N = 3, H = 2, dh = 8, n = N * H * dh, row = H * dh;
    test_rng rng = test_rng_seed(3);
    ksa_real x[48], y[48];
    int32_t pos[3] = {0, 7, 0};
    test_fill_uniform(x, n, -1, 1, &rng);
    ksa_rope_forward(y, x, pos, N, H, dh, 10000.0);
    assert_memory_equal(y, x, row * sizeof *x);
    assert_memory_equal(y + 2 * row, x + 2 * row, row * sizeof *x);
    double moved = 0;
    for (size_t i = row; i < 2 * row; i++)
        moved = fmax(moved, fabs((double)y[i] - (double)x[i]));
    assert_true(moved > 0.1);
}

/* Each (i, i + dh/2) pair is rotated as a 2-vector: its length is kept. An interleaved
 * rotation (pairs 2i, 2i+1) or mismatched cos/sin angles break this.                       */
static void rotation_preserves_the_norm_of_every_half_pair(void **state)
{
    (void)state;
    size_t N = 7, H = 3, dh = 64, half = dh / 2, n = N * H * dh;
    test_rng rng = test_rng_seed(4);
    ksa_real *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    int32_t pos[7];
    test_fill_uniform(x, n, -1, 1, &rng);
    fill_positions(pos, N, &rng);
    ksa_rope_forward(y, x, pos, N, H, dh, 10000.0);
    size_t npairs = N * H * half;
    double *got = malloc(npairs * sizeof *got), *want = malloc(npairs * sizeof *want);
    for (size_t v = 0; v < N * H; v++)
        for (size_t i = 0; i < half; i++) {
            double y0 = y[v * dh + i], y1 = y[v * dh + i + half];
            double x0 = x[v * dh + i], x1 = x[v * dh + i + half];
            got[v * half + i] = y0 * y0 + y1 * y1;
            want[v * half + i] = x0 * x0 + x1 * x1;
        }
    ksa_expect_close_dd(got, want, npairs, TEST_FWD_ATOL, TEST_FWD_RTOL, "pair norms");
    free(x), free(y), free(got), free(want);
}

/* Scores: rope(q, p1) . rope(k, p2) = q . rope(k, p2 - p1) for every pair with the same
 * difference, and that value changes with the difference. Tolerance: float rounds cos/sin,
 * ~1.5e-7 per element, summed over dh = 64 products; double carries the angle's rounding,
 * ~p * 2^-53 rad at p = 131071, i.e. ~1e-11 per element.                                */
#ifdef KSA_REAL_DOUBLE
#define DOT_ATOL 1e-9
#else
#define DOT_ATOL 1e-4
#endif

static double head_dot(const ksa_real *a, const ksa_real *b, size_t dh)
{
    double s = 0;
    for (size_t i = 0; i < dh; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

static void scores_depend_only_on_the_position_difference(void **state)
{
    (void)state;
    enum { H = 2, DH = 64, NPAIRS = 5, ROW = H * DH };
    const int32_t d = 5;
    const int32_t p1s[NPAIRS] = {0, 3, 1000, 65536, 131071 - 5};
    test_rng rng = test_rng_seed(5);
    ksa_real q[ROW], k[ROW];
    test_fill_uniform(q, ROW, -1, 1, &rng);
    test_fill_uniform(k, ROW, -1, 1, &rng);

    /* rows 2t, 2t+1: q at p1, k at p1 + d; last row: k at d (its partner q stays at 0) */
    enum { N = 2 * NPAIRS + 1 };
    ksa_real x[N * ROW], y[N * ROW];
    int32_t pos[N];
    for (int t = 0; t < NPAIRS; t++) {
        memcpy(x + (2 * t) * ROW, q, sizeof q);
        memcpy(x + (2 * t + 1) * ROW, k, sizeof k);
        pos[2 * t] = p1s[t];
        pos[2 * t + 1] = p1s[t] + d;
    }
    memcpy(x + 2 * NPAIRS * ROW, k, sizeof k);
    pos[2 * NPAIRS] = d;
    ksa_rope_forward(y, x, pos, N, H, DH, 10000.0);

    double got[NPAIRS * H], want[NPAIRS * H];
    for (int t = 0; t < NPAIRS; t++)
        for (int h = 0; h < H; h++) {
            got[t * H + h] = head_dot(y + 2 * t * ROW + h * DH, y + (2 * t + 1) * ROW + h * DH, DH);
            want[t * H + h] = head_dot(q + h * DH, y + 2 * NPAIRS * ROW + h * DH, DH);
        }
    ksa_expect_close_dd(got, want, NPAIRS * H, DOT_ATOL, 0, "scores at the same offset");
    for (int h = 0; h < H; h++) /* offset 5 differs from offset 0 (the unrotated q . k) */
        assert_true(fabs(want[h] - head_dot(q + h * DH, k + h * DH, DH)) > 0.05);
}

/* At p = 131071 an angle rounded to float is off by up to ~0.008 rad (KSA_SPEC §6.1); the
 * kernel must still match the double reference to the forward tolerance.               */
static void forward_is_accurate_at_position_131071(void **state)
{
    (void)state;
    size_t N = 4, H = 2, dh = 128, n = N * H * dh;
    int32_t pos[4] = {131071, 131070, 100003, 65536};
    test_rng rng = test_rng_seed(6);
    ksa_real *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    test_fill_uniform(x, n, -1, 1, &rng);
    double *xd = test_to_double(x, n), *yd = malloc(n * sizeof *yd);
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        ksa_rope_forward(y, x, pos, N, H, dh, bases[b]);
        ref_rope(yd, xd, pos, N, H, dh, bases[b]);
        ksa_expect_close(y, yd, n, ROPE_FWD_ATOL, TEST_FWD_RTOL, "rope at large positions");
    }
    free(x), free(y), free(xd), free(yd);
}

/* ---- the op through the tape: opcheck.h ------------------------------------------------ */
typedef struct {
    size_t N, H, dh;
    double base;
    int32_t *pos;    /* N positions                                                  */
    int32_t *reused; /* NULL, or the caller's buffer the op is given, reused after it */
} rope_ctx;

static void draw_positions(void *ctx, test_rng *rng)
{
    rope_ctx *k = ctx;
    fill_positions(k->pos, k->N, rng);
}

static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    const rope_ctx *k = ctx;
    if (!k->reused)
        return ksa_op_rope(tp, in[0], k->pos, k->H, k->base);
    memcpy(k->reused, k->pos, k->N * sizeof *k->pos);
    ksa_tensor *y = ksa_op_rope(tp, in[0], k->reused, k->H, k->base);
    for (size_t i = 0; i < k->N; i++)
        k->reused[i] = 77777; /* the next batch overwrites the buffer before backward */
    return y;
}

static void ref(double *y, double *const *x, void *ctx)
{
    const rope_ctx *k = ctx;
    ref_rope(y, x[0], k->pos, k->N, k->H, k->dh, k->base);
}

static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const rope_ctx *k = ctx;
    ksa_rope_forward(y, x[0], k->pos, k->N, k->H, k->dh, k->base);
}

/* x [N, H*dh] or, with three_d, [N, H, dh], values in [-1, 1]; y keeps x's shape. */
static opcheck_case rope_case(rope_ctx *k, int three_d)
{
    opcheck_case cs = {
        .op = "rope", .n_in = 1, .fwd_atol = ROPE_FWD_ATOL, .fwd_rtol = TEST_FWD_RTOL};
    cs.in[0] = (opcheck_input){.name = "x", .ndim = 2, .shape = {k->N, k->H * k->dh}};
    if (three_d)
        cs.in[0] = (opcheck_input){.name = "x", .ndim = 3, .shape = {k->N, k->H, k->dh}};
    cs.in[0].lo = -1, cs.in[0].hi = 1;
    cs.out_ndim = cs.in[0].ndim;
    memcpy(cs.out_shape, cs.in[0].shape, sizeof cs.out_shape);
    cs.ctx = k, cs.build = build, cs.ref = ref, cs.kernel = kernel;
    return cs;
}

/* Positions as the model makes them, x 2-d and 3-d in turn: dx against differences of
 * the reference and of the kernel.                                                     */
static void backward_matches_finite_differences(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
            rope_ctx k = {
                .N = shapes[s][0], .H = shapes[s][1], .dh = shapes[s][2], .base = bases[b]};
            k.pos = malloc(k.N * sizeof *k.pos);
            opcheck_case cs = rope_case(&k, (int)(s % 2));
            cs.setup = draw_positions;
            opcheck(&cs, 10 + 2 * s + b);
            free(k.pos);
        }
}

/* Adds into dx, leaving what was there; dx = NULL is accepted and touches nothing. */
static void backward_adds_into_existing_grads(void **state)
{
    (void)state;
    size_t N = 3, H = 2, dh = 6, n = N * H * dh;
    test_rng rng = test_rng_seed(7);
    int32_t pos[3] = {2, 15, 131071};
    ksa_real dy[36], dx0[36], dx1[36];
    test_fill_uniform(dy, n, -1, 1, &rng);
    memset(dx0, 0, sizeof dx0);
    ksa_rope_backward(dx0, dy, pos, N, H, dh, 10000.0);
    for (size_t i = 0; i < n; i++)
        dx1[i] = 1;
    ksa_rope_backward(dx1, dy, pos, N, H, dh, 10000.0);
    for (size_t i = 0; i < n; i++)
        assert_true(fabs((double)dx1[i] - (double)dx0[i] - 1) < 1e-6);
    ksa_rope_backward(NULL, dy, pos, N, H, dh, 10000.0);
    /* the gradient is not trivially zero or dy itself */
    double diff = 0;
    for (size_t i = 0; i < n; i++)
        diff = fmax(diff, fabs((double)dx0[i] - (double)dy[i]));
    assert_true(diff > 0.1);
}

/* The op copies pos: the caller may rebuild its position buffer before backward runs
 * (opcheck: dx against differences at the positions given; here: the kernel's exactly). */
static void op_keeps_its_own_copy_of_the_positions(void **state)
{
    (void)state;
    int32_t pos[3] = {5, 23, 1000}, buffer[3];
    rope_ctx k = {.N = 3, .H = 2, .dh = 8, .base = 10000.0, .pos = pos, .reused = buffer};
    opcheck_case cs = rope_case(&k, 0);
    opcheck_run r;
    opcheck_begin(&r, &cs, 8);
    ksa_real want[48];
    memset(want, 0, sizeof want);
    ksa_rope_backward(want, r.y->grad, pos, k.N, k.H, k.dh, k.base);
    assert_memory_equal(r.in[0]->grad, want, sizeof want);
    opcheck_end(&r);
}

/* x [3, 4, 6] at positions 0, 1 and 131071 (opcheck: without gradients nothing is recorded
 * and y is the same, matching the reference).                                            */
static void op_records_nothing_when_x_needs_no_gradient(void **state)
{
    (void)state;
    int32_t pos[3] = {0, 1, 131071};
    rope_ctx k = {.N = 3, .H = 4, .dh = 6, .base = 10000.0, .pos = pos};
    opcheck_case cs = rope_case(&k, 1);
    opcheck(&cs, 9);
}

/* Forward and backward give the same bits with 1 and 2 threads (DESIGN.md §4). Enough rows
 * that both threads work, dh/2 above one block so the per-thread cos/sin scratch is reused. */
static void results_are_bit_identical_with_one_and_two_threads(void **state)
{
    (void)state;
    size_t N = 257, H = 3, dh = 130, n = N * H * dh;
    test_rng rng = test_rng_seed(10);
    ksa_real *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
    ksa_real *y[2], *dx[2];
    int32_t *pos = malloc(N * sizeof *pos);
    test_fill_uniform(x, n, -1, 1, &rng);
    test_fill_uniform(dy, n, -1, 1, &rng);
    fill_positions(pos, N, &rng);
    int threads_before = ksa_threads_get();
    for (int t = 0; t < 2; t++) {
        ksa_threads_set(t + 1);
        y[t] = malloc(n * sizeof *y[t]);
        dx[t] = malloc(n * sizeof *dx[t]);
        for (size_t i = 0; i < n; i++)
            dx[t][i] = (ksa_real)0.5;
        ksa_rope_forward(y[t], x, pos, N, H, dh, 10000.0);
        ksa_rope_backward(dx[t], dy, pos, N, H, dh, 10000.0);
    }
    ksa_threads_set(threads_before);
    assert_memory_equal(y[0], y[1], n * sizeof *x);
    assert_memory_equal(dx[0], dx[1], n * sizeof *x);
    free(x), free(dy), free(pos);
    for (int t = 0; t < 2; t++)
        free(y[t]), free(dx[t]);
}

/* In place: y overwrites x's buffer (no second one) with the values of the out-of-place
 * op, and dx is the out-of-place op's, because the backward needs no values.           */
static void the_in_place_op_equals_the_out_of_place_one(void **state)
{
    (void)state;
    enum { N = 5, H = 3, dh = 8, n = N * H * dh };
    int32_t pos[N] = {0, 7, 8, 300, 65535};
    test_rng rng = test_rng_seed(21);
    ksa_real x0[n], dy[n];
    test_fill_uniform(x0, n, -1, 1, &rng);
    test_fill_uniform(dy, n, -1, 1, &rng);
    ksa_real *y_out[2], *dx[2];
    for (int in_place = 0; in_place < 2; in_place++) {
        ksa_arena a;
        ksa_arena_init(&a, 1 << 20);
        ksa_tape tp;
        ksa_tape_init(&tp, &a, 8);
        ksa_tensor *x = ksa_tensor_2d(&a, N, H * dh);
        memcpy(x->data, x0, sizeof x0);
        x->requires_grad = 1;
        ksa_tensor *y = in_place ? ksa_op_rope_in_place(&tp, x, pos, H, 10000.0)
                                 : ksa_op_rope(&tp, x, pos, H, 10000.0);
        if (in_place)
            assert_ptr_equal(y->data, x->data);
        else
            assert_ptr_not_equal(y->data, x->data);
        memcpy(ksa_tape_grad(&tp, y), dy, sizeof dy);
        ksa_tape_replay(&tp);
        y_out[in_place] = malloc(sizeof x0), dx[in_place] = malloc(sizeof x0);
        memcpy(y_out[in_place], y->data, sizeof x0);
        memcpy(dx[in_place], ksa_tensor_grad_if_any(x), sizeof x0);
        ksa_tape_free(&tp);
        ksa_arena_free(&a);
    }
    assert_memory_equal(y_out[0], y_out[1], n * sizeof(ksa_real));
    assert_memory_equal(dx[0], dx[1], n * sizeof(ksa_real));
    double diff = 0; /* and dx is not dy */
    for (size_t i = 0; i < n; i++)
        diff = fmax(diff, fabs((double)dx[1][i] - (double)dy[i]));
    assert_true(diff > 0.1);
    for (int i = 0; i < 2; i++)
        free(y_out[i]), free(dx[i]);
}

/* Ops that share one cos/sin table (the decoder's q and k of every layer) give the bare
 * kernels' values bit for bit, forward and backward; an op over fewer rows uses the table's
 * first ones; the table keeps its own copy of the positions.                            */
static void ops_sharing_a_table_equal_the_kernels(void **state)
{
    (void)state;
    enum { N = 6, H = 2, dh = 8, n = N * H * dh, Nt = 4 };
    int32_t pos[N] = {0, 7, 8, 300, 65535, 3}, given[N];
    memcpy(given, pos, sizeof pos);
    test_rng rng = test_rng_seed(5);
    ksa_real x0[n], dy[n], want_y[n], want_dx[n];
    test_fill_uniform(x0, n, -1, 1, &rng);
    test_fill_uniform(dy, n, -1, 1, &rng);
    ksa_arena a;
    ksa_arena_init(&a, 1 << 20);
    ksa_tape tp;
    ksa_tape_init(&tp, &a, 8);
    const ksa_rope_table *table = ksa_rope_table_new(&a, given, N, dh, 10000.0);
    for (size_t i = 0; i < N; i++)
        given[i] = 77777; /* the caller's buffer is rebuilt before the ops run */
    ksa_tensor *x[2], *y[2];
    size_t rows[2] = {N, Nt}; /* all rows, then the first Nt (a bypass layer's text rows) */
    for (int t = 0; t < 2; t++) {
        x[t] = ksa_tensor_2d(&a, rows[t], H * dh);
        memcpy(x[t]->data, x0, rows[t] * H * dh * sizeof *x0);
        x[t]->requires_grad = 1;
        y[t] = ksa_op_rope_table_in_place(&tp, x[t], table, H);
        memcpy(ksa_tape_grad(&tp, y[t]), dy, rows[t] * H * dh * sizeof *dy);
    }
    ksa_rope_forward(want_y, x0, pos, N, H, dh, 10000.0);
    assert_memory_equal(y[0]->data, want_y, sizeof want_y);
    assert_memory_equal(y[1]->data, want_y, Nt * H * dh * sizeof *want_y);
    ksa_tape_replay(&tp);
    memset(want_dx, 0, sizeof want_dx);
    ksa_rope_backward(want_dx, dy, pos, N, H, dh, 10000.0);
    assert_memory_equal(ksa_tensor_grad_if_any(x[0]), want_dx, sizeof want_dx);
    assert_memory_equal(ksa_tensor_grad_if_any(x[1]), want_dx, Nt * H * dh * sizeof *want_dx);
    ksa_tape_free(&tp);
    ksa_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_in_place_op_equals_the_out_of_place_one),
        cmocka_unit_test(forward_matches_naive_reference),
        cmocka_unit_test(forward_in_place_matches_out_of_place),
        cmocka_unit_test(position_zero_is_the_identity),
        cmocka_unit_test(rotation_preserves_the_norm_of_every_half_pair),
        cmocka_unit_test(scores_depend_only_on_the_position_difference),
        cmocka_unit_test(forward_is_accurate_at_position_131071),
        cmocka_unit_test(backward_matches_finite_differences),
        cmocka_unit_test(backward_adds_into_existing_grads),
        cmocka_unit_test(op_keeps_its_own_copy_of_the_positions),
        cmocka_unit_test(op_records_nothing_when_x_needs_no_gradient),
        cmocka_unit_test(results_are_bit_identical_with_one_and_two_threads),
        cmocka_unit_test(ops_sharing_a_table_equal_the_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
