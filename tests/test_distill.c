/* test_distill.c - the distillation loss terms (autograd/distill.h) against naive double
 * references and central differences (opcheck.h; float64: of the kernels too): the clamped
 * MSE with elements on both sides of the clamp (close to it, not across it within a
 * difference step), with and without the row RMS normalisation, the KL term and the cosine
 * distance; the KL direction against a hand computation; the weight and the normaliser.  */
#include "opcheck.h"

#include <math.h>
#include <string.h>

#include "autograd/distill.h"

enum { MSE, KL, COS };
typedef struct {
    int kind, rms_norm;
    double clamp, weight, norm;
    size_t N, D;
} dctx;

/* ---- references, double -------------------------------------------------------------- */
static double ref_rms_factor(const double *x, size_t D)
{
    double ss = 0;
    for (size_t j = 0; j < D; j++)
        ss += x[j] * x[j];
    return 1 / (sqrt(ss / (double)D) + KSA_DISTILL_RMS_EPS);
}

static double ref_lse(const double *z, size_t V)
{
    double m = -INFINITY, s = 0;
    for (size_t v = 0; v < V; v++)
        m = fmax(m, z[v]);
    for (size_t v = 0; v < V; v++)
        s += exp(z[v] - m);
    return m + log(s);
}

/* x[0] = student, x[1] = teacher */
static void ref(double *y, double *const *x, void *ctx)
{
    const dctx *k = ctx;
    double total = 0;
    for (size_t n = 0; n < k->N; n++) {
        const double *s = x[0] + n * k->D, *t = x[1] + n * k->D;
        if (k->kind == MSE) {
            double fs = k->rms_norm ? ref_rms_factor(s, k->D) : 1;
            double ft = k->rms_norm ? ref_rms_factor(t, k->D) : 1;
            for (size_t d = 0; d < k->D; d++) {
                double e = s[d] * fs - t[d] * ft;
                total += fmin(e * e, k->clamp);
            }
        } else if (k->kind == KL) {
            double ls = ref_lse(s, k->D), lt = ref_lse(t, k->D);
            for (size_t v = 0; v < k->D; v++)
                total += exp(t[v] - lt) * ((t[v] - lt) - (s[v] - ls));
        } else {
            double ss = 0, tt = 0, st = 0;
            for (size_t d = 0; d < k->D; d++)
                ss += s[d] * s[d], tt += t[d] * t[d], st += s[d] * t[d];
            total += 1 - st / sqrt(ss * tt);
        }
    }
    y[0] = k->weight * total / k->norm;
}

static ksa_tensor *op(ksa_tape *tp, ksa_tensor *s, ksa_tensor *t, const dctx *k, double *value)
{
    if (k->kind == MSE)
        return ksa_op_clamped_mse(tp, s, t, k->clamp, k->rms_norm, k->weight, k->norm, value);
    if (k->kind == KL)
        return ksa_op_kl_teacher(tp, s, t, k->weight, k->norm, value);
    return ksa_op_cosine_distance(tp, s, t, k->weight, k->norm, value);
}

static ksa_tensor *build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return op(tp, in[0], in[1], ctx, NULL);
}

/* the forward kernel: the op on a tape of its own that records nothing */
static void kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const dctx *k = ctx;
    ksa_arena a;
    ksa_arena_init(&a, 1 << 20);
    ksa_tape tp;
    ksa_tape_init(&tp, &a, 4);
    tp.recording = 0;
    ksa_tensor *s = ksa_tensor_2d(&a, k->N, k->D), *t = ksa_tensor_2d(&a, k->N, k->D);
    memcpy(s->data, x[0], k->N * k->D * sizeof(ksa_real));
    memcpy(t->data, x[1], k->N * k->D * sizeof(ksa_real));
    y[0] = op(&tp, s, t, k, NULL)->data[0];
    ksa_tape_free(&tp);
    ksa_arena_free(&a);
}

/* The student near the teacher: e = s − t of magnitudes on both sides of sqrt(clamp) = 0.3,
 * at least 0.02 from it (a difference step moves e by ~1e-6). The teacher is drawn first. */
static ksa_real teacher_copy[64];
static void fill_teacher(ksa_real *x, size_t n, test_rng *rng)
{
    test_fill_uniform(x, n, -1, 1, rng);
    memcpy(teacher_copy, x, n * sizeof *x);
}

static void fill_student_around_the_clamp(ksa_real *x, size_t n, test_rng *rng)
{
    static const double e[] = {0.05, -0.2, 0.28, -0.28, 0.32, -0.32, 0.6, -1.1};
    for (size_t i = 0; i < n; i++) {
        double jitter = 0.005 * (2 * test_rng_uniform(rng) - 1);
        x[i] = (ksa_real)((double)teacher_copy[i] + e[i % 8] + jitter);
    }
}

static ksa_tensor *build_swapped(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    return op(tp, in[1], in[0], ctx, NULL); /* declared teacher first */
}

static void ref_swapped(double *y, double *const *x, void *ctx)
{
    double *const xs[2] = {x[1], x[0]};
    ref(y, xs, ctx);
}

static void kernel_swapped(ksa_real *y, ksa_real *const *x, void *ctx)
{
    ksa_real *const xs[2] = {x[1], x[0]};
    kernel(y, xs, ctx);
}

static opcheck_case case_of(dctx *k, double lo, double hi)
{
    opcheck_case cs = {
        .op = k->kind == MSE  ? "clamped_mse"
              : k->kind == KL ? "kl_teacher"
                              : "cosine_distance",
        .n_in = 2,
        .in = {{.name = "s", .ndim = 2, .shape = {k->N, k->D}, .lo = lo, .hi = hi},
               {.name = "t", .ndim = 2, .shape = {k->N, k->D}, .lo = lo, .hi = hi, .no_grad = 1}},
        .out_ndim = 1,
        .out_shape = {1},
        .ctx = k,
        .build = build,
        .ref = ref,
        .kernel = kernel,
        .scalar_loss = 1};
    return cs;
}

static void clamped_mse_on_both_sides_of_the_clamp(void **state)
{
    (void)state;
    dctx k = {.kind = MSE, .clamp = 0.09, .weight = 5, .norm = 37, .N = 4, .D = 16};
    opcheck_case cs = case_of(&k, -1, 1);
    cs.in[0] = (opcheck_input){
        .name = "t", .ndim = 2, .shape = {4, 16}, .fill = fill_teacher, .no_grad = 1};
    cs.in[1] = (opcheck_input){
        .name = "s", .ndim = 2, .shape = {4, 16}, .fill = fill_student_around_the_clamp};
    cs.build = build_swapped, cs.ref = ref_swapped, cs.kernel = kernel_swapped;
    opcheck_run r;
    opcheck_begin(&r, &cs, 7);
    /* the clamp's flat part gives no gradient, the rest 2e·weight/norm */
    for (size_t i = 0; i < 64; i++) {
        double e = (double)r.in[1]->data[i] - (double)r.in[0]->data[i], want = 0;
        if (e * e < k.clamp)
            want = 2 * e * k.weight / k.norm;
        assert_true(fabs((double)r.in[1]->grad[i] - want) <= 1e-5 * (1 + fabs(want)));
        if (i % 8 >= 4)
            assert_true(r.in[1]->grad[i] == 0);
    }
    opcheck_end(&r);
}

static void clamped_mse_with_row_rms_normalisation(void **state)
{
    (void)state;
    dctx k = {.kind = MSE, .clamp = 0.1, .rms_norm = 1, .weight = 2, .norm = 11, .N = 3, .D = 8};
    opcheck_case cs = case_of(&k, -2, 2); /* mostly within the clamp after normalisation */
    opcheck(&cs, 11);
    k.clamp = 1e9; /* never clamped: the normalisation's gradient alone */
    opcheck(&cs, 12);
}

static void kl_matches_differences(void **state)
{
    (void)state;
    dctx k = {.kind = KL, .weight = 5, .norm = 6, .N = 3, .D = 7};
    opcheck_case cs = case_of(&k, -3, 3);
    opcheck(&cs, 21);
}

/* KL(teacher ‖ student), not the reverse: p_t = (1/4, 3/4), p_s = (1/2, 1/2) give
 * 1/4 ln(1/2) + 3/4 ln(3/2) = 0.1308..., while KL(s ‖ t) = 0.1438...; and its gradient
 * softmax(zs) − softmax(zt) = (1/4, −1/4). */
static void kl_direction_by_hand(void **state)
{
    (void)state;
    ksa_arena a;
    ksa_arena_init(&a, 1 << 16);
    ksa_tape tp;
    ksa_tape_init(&tp, &a, 4);
    ksa_tensor *zs = ksa_tensor_2d(&a, 1, 2), *zt = ksa_tensor_2d(&a, 1, 2);
    zs->data[0] = 0, zs->data[1] = 0, zt->data[0] = 0, zt->data[1] = (ksa_real)log(3.0);
    zs->requires_grad = 1;
    double value;
    ksa_tensor *l = ksa_op_kl_teacher(&tp, zs, zt, 2.0, 1.0, &value);
    double want = 0.25 * log(0.5) + 0.75 * log(1.5);
    assert_true(fabs(value - want) < 1e-6);
    assert_true(fabs((double)l->data[0] - 2 * want) < 1e-6);
    assert_true(fabs(want - (0.5 * log(2.0) + 0.5 * log(2.0 / 3.0))) > 0.01); /* not KL(s ‖ t) */
    ksa_tape_backward(&tp, l);
    assert_true(fabs((double)zs->grad[0] - 2 * 0.25) < 1e-6);
    assert_true(fabs((double)zs->grad[1] + 2 * 0.25) < 1e-6);
    ksa_tape_free(&tp);
    ksa_arena_free(&a);
}

static void cosine_distance_matches_differences(void **state)
{
    (void)state;
    dctx k = {.kind = COS, .weight = 0.5, .norm = 4, .N = 4, .D = 9};
    opcheck_case cs = case_of(&k, -1, 1);
    opcheck(&cs, 31);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(clamped_mse_on_both_sides_of_the_clamp),
        cmocka_unit_test(clamped_mse_with_row_rms_normalisation),
        cmocka_unit_test(kl_matches_differences),
        cmocka_unit_test(kl_direction_by_hand),
        cmocka_unit_test(cosine_distance_matches_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
