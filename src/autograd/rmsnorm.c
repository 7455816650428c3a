/* rmsnorm.c - y[n,:] = x[n,:] * r[n] * w[:],  r[n] = 1/sqrt(mean(x[n,:]^2) + eps)
 * x, y, dx, dy : [N, D] row-major (N rows: tokens, or tokens x heads for q/k norms)
 * w, dw        : [D]
 * r (saved)    : [N]   kept so backward needs no second reduction
 * Reference: KSA_SPEC §6.1 (weight used as is, no 1 + w); scripts/torch_reference.py.   */
#include "rmsnorm.h"

#include <math.h>
#include <omp.h>

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_rmsnorm_forward(ksa_real *y, ksa_real *r, const ksa_real *x, const ksa_real *w, size_t N,
                         size_t D, ksa_real eps)
{
#pragma omp parallel for schedule(static) if (N * D >= KSA_PARALLEL_MIN_ELEMENTS)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *xn = x + n * D;
        ksa_real *yn = y + n * D;
        ksa_real ss = 0;
        for (size_t d = 0; d < D; d++)
            ss += xn[d] * xn[d];
        ksa_real rn = (ksa_real)(1.0 / sqrt((double)(ss / (ksa_real)D) + (double)eps));
        r[n] = rn;
        for (size_t d = 0; d < D; d++)
            yn[d] = xn[d] * rn * w[d];
    }
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * Adds into dx and dw (never overwrites); either may be NULL. With g = dy * w:
 *   dx[n,:] += r[n] * (g - x[n,:] * r[n]^2 * mean_d(g * x[n,:]))
 *   dw[:]   += sum_n dy[n,:] * x[n,:] * r[n]
 * dw is parallel over columns (each thread a column range, rows in order): deterministic
 * for any thread count, no atomics, no scratch.                                           */
void ksa_rmsnorm_backward(ksa_real *dx, ksa_real *dw, const ksa_real *dy, const ksa_real *x,
                          const ksa_real *w, const ksa_real *r, size_t N, size_t D)
{
    if (!dx && !dw)
        return;
#pragma omp parallel /* one team for both loops */
    {
        if (dx) {
#pragma omp for schedule(static) nowait /* dw needs no dx */
            for (size_t n = 0; n < N; n++) {
                const ksa_real *xn = x + n * D, *dyn = dy + n * D;
                ksa_real *dxn = dx + n * D;
                ksa_real rn = r[n], gx = 0;
                for (size_t d = 0; d < D; d++)
                    gx += dyn[d] * w[d] * xn[d];
                ksa_real coef = rn * rn * rn * gx / (ksa_real)D;
                for (size_t d = 0; d < D; d++)
                    dxn[d] += rn * dyn[d] * w[d] - coef * xn[d];
            }
        }
        if (dw) {
            int nt = omp_get_num_threads(), t = omp_get_thread_num();
            size_t d0 = D * (size_t)t / (size_t)nt, d1 = D * (size_t)(t + 1) / (size_t)nt;
            for (size_t n = 0; n < N; n++) {
                const ksa_real *xn = x + n * D, *dyn = dy + n * D;
                ksa_real rn = r[n];
                for (size_t d = d0; d < d1; d++)
                    dw[d] += dyn[d] * xn[d] * rn;
            }
        }
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
static void rmsnorm_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    ksa_tensor *x = nd->in[0], *w = nd->in[1], *y = nd->out;
    size_t D = w->numel, N = x->numel / D;
    ksa_real *dx = ksa_tape_grad(tp, x), *dw = ksa_tape_grad(tp, w);
    if (!tp->plan_only)
        ksa_rmsnorm_backward(dx, dw, ksa_tensor_grad_if_any(y), x->data, w->data, nd->ctx, N, D);
}

ksa_tensor *ksa_op_rmsnorm_into(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w, ksa_real eps,
                                ksa_tensor *y)
{
    size_t D = w->numel;
    KSA_ASSERT(D > 0 && x->numel % D == 0,
               "rmsnorm: x has %zu elements, not a multiple of the weight's %zu", x->numel, D);
    KSA_ASSERT(y->numel == x->numel, "rmsnorm: output of %zu elements for an input of %zu",
               y->numel, x->numel);
    size_t N = x->numel / D;
    ksa_real *r = ksa_arena_reals(tp->arena, N);
    if (!tp->plan_only)
        ksa_rmsnorm_forward(y->data, r, x->data, w->data, N, D, eps);
    ksa_node *nd =
        ksa_tape_record(tp, rmsnorm_node_backward, "rmsnorm", y, 2, (ksa_tensor *[]){x, w}, 0);
    if (nd)
        nd->ctx = r; /* the context: the rows' 1/rms, [N] */
    return y;
}

ksa_tensor *ksa_op_rmsnorm(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w, ksa_real eps)
{
    return ksa_op_rmsnorm_into(tp, x, w, eps, ksa_tensor_like(tp->arena, x));
}
