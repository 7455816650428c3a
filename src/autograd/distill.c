/* distill.c - distillation loss terms (distill.h): forward kernels, backward kernels, tape
 * wiring. Per-row terms are computed in parallel into a double array and summed in row
 * order (deterministic whatever the thread count).
 *
 * Clamped MSE, e = ŝ − t̂, term = min(e², c):  d/dŝ = 2e where e² < c, else 0; with the row
 * RMS normalisation ŝ = s / (r + ε), r = sqrt(Σ_j s_j² / D):
 *   ds_k = g_k / (r + ε) − s_k (Σ_j g_j s_j) / (D r (r + ε)²)      (g = d/dŝ; r = 0: first term)
 * KL(teacher ‖ student) of logit rows:  d/dzs = softmax(zs) − softmax(zt).
 * Cosine distance 1 − cos, cos = s·t / (|s| |t|):  d/ds = −(t / (|s| |t|) − cos · s / |s|²). */
#include "distill.h"

#include <math.h>
#include <string.h>

#include "core/vecmath.h"

/* ---- shared ------------------------------------------------------------------------------ */
static size_t rows_of(const ksa_tensor *x)
{
    return x->ndim >= 1 ? x->shape[0] : 1;
}

static void check_pair(const ksa_tensor *s, const ksa_tensor *t, const char *op)
{
    KSA_ASSERT(s->numel == t->numel && rows_of(s) == rows_of(t) && rows_of(s) >= 1,
               "%s: student of %zu elements in %zu rows, teacher of %zu in %zu", op, s->numel,
               rows_of(s), t->numel, rows_of(t));
}

static double sum_in_order(const double *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    return s;
}

/* 1 / (RMS of the row + ε), and the RMS itself. */
static double rms_factor(const ksa_real *x, size_t D, double *rms)
{
    double ss = 0;
    for (size_t j = 0; j < D; j++)
        ss += (double)x[j] * (double)x[j];
    *rms = sqrt(ss / (double)D);
    return 1.0 / (*rms + KSA_DISTILL_RMS_EPS);
}

typedef struct {
    double clamp, weight, norm;
    int rms_norm;
} loss_ctx;

/* term[n] = the op's term of row n;  ds += scale · d(Σ terms)/ds.  s, t [N, D]. */
typedef void (*term_kernel)(double *term, const ksa_real *s, const ksa_real *t, size_t N, size_t D,
                            const loss_ctx *c);
typedef void (*grad_kernel)(ksa_real *ds, double scale, const ksa_real *s, const ksa_real *t,
                            size_t N, size_t D, const loss_ctx *c);

/* ---- clamped MSE -------------------------------------------------------------------------- */
/* term[n] = Σ_d min((ŝ − t̂)², clamp) of row n; s, t [N, D]. */
static void mse_forward(double *term, const ksa_real *s, const ksa_real *t, size_t N, size_t D,
                        const loss_ctx *c)
{
    double clamp = c->clamp;
    int rms_norm = c->rms_norm;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *sr = s + n * D, *tr = t + n * D;
        double r, fs = rms_norm ? rms_factor(sr, D, &r) : 1,
                  ft = rms_norm ? rms_factor(tr, D, &r) : 1;
        double acc = 0;
        for (size_t d = 0; d < D; d++) {
            double e = (double)sr[d] * fs - (double)tr[d] * ft;
            acc += fmin(e * e, clamp);
        }
        term[n] = acc;
    }
}

/* ds += scale · d(Σ terms)/ds, scale = dloss · weight / norm. */
static void mse_backward(ksa_real *ds, double scale, const ksa_real *s, const ksa_real *t, size_t N,
                         size_t D, const loss_ctx *c)
{
    double clamp = c->clamp;
    int rms_norm = c->rms_norm;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *sr = s + n * D, *tr = t + n * D;
        ksa_real *dr = ds + n * D;
        double r = 0, rt, fs = rms_norm ? rms_factor(sr, D, &r) : 1;
        double ft = rms_norm ? rms_factor(tr, D, &rt) : 1, gs = 0;
        for (size_t d = 0; d < D; d++) { /* g_d = 2e inside the clamp; Σ g s for the norm */
            double e = (double)sr[d] * fs - (double)tr[d] * ft;
            gs += (e * e < clamp ? 2 * e : 0) * (double)sr[d];
        }
        double corr = rms_norm && r > 0 ? gs * fs * fs / ((double)D * r) : 0;
        for (size_t d = 0; d < D; d++) {
            double e = (double)sr[d] * fs - (double)tr[d] * ft, g = e * e < clamp ? 2 * e : 0;
            dr[d] += (ksa_real)(scale * (g * fs - (double)sr[d] * corr));
        }
    }
}

/* ---- KL(teacher ‖ student) --------------------------------------------------------------- */
static double log_sum_exp(const ksa_real *z, size_t V)
{
    double m = -INFINITY, s = 0;
    for (size_t v = 0; v < V; v++)
        m = fmax(m, (double)z[v]);
    for (size_t v = 0; v < V; v++)
        s += exp((double)z[v] - m);
    return m + log(s);
}

static void kl_forward(double *term, const ksa_real *zs, const ksa_real *zt, size_t N, size_t V,
                       const loss_ctx *c)
{
    (void)c;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *s = zs + n * V, *t = zt + n * V;
        double ls = log_sum_exp(s, V), lt = log_sum_exp(t, V), acc = 0;
        for (size_t v = 0; v < V; v++) {
            double log_pt = (double)t[v] - lt;
            acc += exp(log_pt) * (log_pt - ((double)s[v] - ls));
        }
        term[n] = acc;
    }
}

static void kl_backward(ksa_real *dzs, double scale, const ksa_real *zs, const ksa_real *zt,
                        size_t N, size_t V, const loss_ctx *c)
{
    (void)c;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *s = zs + n * V, *t = zt + n * V;
        ksa_real *d = dzs + n * V;
        double ls = log_sum_exp(s, V), lt = log_sum_exp(t, V);
        for (size_t v = 0; v < V; v++)
            d[v] += (ksa_real)(scale * (exp((double)s[v] - ls) - exp((double)t[v] - lt)));
    }
}

/* ---- cosine distance ---------------------------------------------------------------------- */
/* |s|², |t|², s·t of one row */
static void row_products(const ksa_real *s, const ksa_real *t, size_t D, double *ss, double *tt,
                         double *st)
{
    double a = 0, b = 0, c = 0;
    for (size_t d = 0; d < D; d++) {
        a += (double)s[d] * (double)s[d];
        b += (double)t[d] * (double)t[d];
        c += (double)s[d] * (double)t[d];
    }
    *ss = a, *tt = b, *st = c;
}

static void cos_forward(double *term, const ksa_real *s, const ksa_real *t, size_t N, size_t D,
                        const loss_ctx *c)
{
    (void)c;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        double ss, tt, st;
        row_products(s + n * D, t + n * D, D, &ss, &tt, &st);
        term[n] = 1 - (ss > 0 && tt > 0 ? st / sqrt(ss * tt) : 0);
    }
}

static void cos_backward(ksa_real *ds, double scale, const ksa_real *s, const ksa_real *t, size_t N,
                         size_t D, const loss_ctx *c)
{
    (void)c;
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *sr = s + n * D, *tr = t + n * D;
        double ss, tt, st;
        row_products(sr, tr, D, &ss, &tt, &st);
        if (!(ss > 0 && tt > 0))
            continue; /* cos = 0 there: constant */
        double inv = 1 / sqrt(ss * tt), cosv = st * inv;
        for (size_t d = 0; d < D; d++)
            ds[n * D + d] += (ksa_real)(-scale * ((double)tr[d] * inv - cosv * (double)sr[d] / ss));
    }
}

/* ---- tape wiring, shared by the three ops ------------------------------------------------- */
typedef struct {
    loss_ctx c;
    grad_kernel grad;
} loss_node;

static void loss_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const loss_node *ln = nd->ctx;
    ksa_tensor *s = nd->in[0], *t = nd->in[1];
    ksa_real *ds = ksa_tape_grad(tp, s);
    const ksa_real *dy = ksa_tensor_grad_if_any(nd->out);
    if (!ds || !dy || tp->plan_only)
        return;
    size_t N = rows_of(s);
    ln->grad(ds, (double)dy[0] * ln->c.weight / ln->c.norm, s->data, t->data, N, s->numel / N,
             &ln->c);
}

/* y [1] = weight · Σ_n term[n] / norm (*value: the same without the weight). */
static ksa_tensor *loss_op(ksa_tape *tp, const char *name, ksa_tensor *s, ksa_tensor *t,
                           term_kernel term_of, grad_kernel grad, const loss_ctx *c, double *value)
{
    check_pair(s, t, name);
    KSA_ASSERT(c->norm > 0, "%s: norm %g must be positive", name, c->norm);
    size_t N = rows_of(s), mark = ksa_arena_mark(tp->arena);
    double v = 0;
    if (!tp->plan_only) {
        double *term = ksa_arena_alloc(tp->arena, N * sizeof *term);
        term_of(term, s->data, t->data, N, s->numel / N, c);
        v = sum_in_order(term, N) / c->norm;
    }
    ksa_arena_release(tp->arena, mark);
    if (value)
        *value = v;
    ksa_tensor *y = ksa_tensor_1d(tp->arena, 1);
    if (!tp->plan_only)
        y->data[0] = (ksa_real)(c->weight * v);
    ksa_node *nd = ksa_tape_record(tp, loss_node_backward, name, y, 2, (ksa_tensor *[]){s, t},
                                   sizeof(loss_node));
    if (nd)
        *(loss_node *)nd->ctx = (loss_node){.c = *c, .grad = grad};
    return y;
}

ksa_tensor *ksa_op_clamped_mse(ksa_tape *tp, ksa_tensor *s, ksa_tensor *t, double clamp,
                               int rms_norm, double weight, double norm, double *value)
{
    KSA_ASSERT(clamp > 0, "clamped MSE: clamp %g must be positive", clamp);
    loss_ctx c = {.clamp = clamp, .weight = weight, .norm = norm, .rms_norm = rms_norm};
    return loss_op(tp, "clamped_mse", s, t, mse_forward, mse_backward, &c, value);
}

ksa_tensor *ksa_op_kl_teacher(ksa_tape *tp, ksa_tensor *zs, ksa_tensor *zt, double weight,
                              double norm, double *value)
{
    loss_ctx c = {.weight = weight, .norm = norm};
    return loss_op(tp, "kl_teacher", zs, zt, kl_forward, kl_backward, &c, value);
}

ksa_tensor *ksa_op_cosine_distance(ksa_tape *tp, ksa_tensor *s, ksa_tensor *t, double weight,
                                   double norm, double *value)
{
    loss_ctx c = {.weight = weight, .norm = norm};
    return loss_op(tp, "cosine_distance", s, t, cos_forward, cos_backward, &c, value);
}
