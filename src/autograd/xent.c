/* xent.c - loss = sum_n w[n] * (lse[n] - logits[n, target[n]]) / norm
 *   lse[n] = log sum_v exp(logits[n, v])
 * logits, dlogits : [N, V] row-major (N text rows, V vocabulary)
 * target          : [N] int32, 0 <= target < V
 * w               : [N] row weights (0 = the row does not count)
 * lse (saved)     : [N] double, so backward recomputes softmax without a second reduction
 * The loss is summed in double in row order (deterministic for any thread count).
 * Reference: KSA_SPEC §6.3 (all L targets of a row count); scripts/torch_reference.py.   */
#include "xent.h"

#include <math.h>
#include <string.h>

/* ---- forward kernel ------------------------------------------------------------------- */
double ksa_xent_forward(double *lse, double *row_loss, const ksa_real *logits,
                        const int32_t *target, const ksa_real *w, size_t N, size_t V, double norm)
{
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        const ksa_real *ln = logits + n * V;
        ksa_real m = ln[0];
        for (size_t v = 1; v < V; v++)
            m = ln[v] > m ? ln[v] : m;
        double s = 0;
        for (size_t v = 0; v < V; v++)
            s += exp((double)(ln[v] - m));
        lse[n] = (double)m + log(s);
        double wn = w ? (double)w[n] : 1.0;
        row_loss[n] = wn != 0 ? wn * (lse[n] - (double)ln[target[n]]) : 0.0;
    }
    double total = 0;
    for (size_t n = 0; n < N; n++)
        total += row_loss[n];
    return total / norm;
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * d loss / d logits[n, v] = w[n] / norm * (p[n, v] - [v == target[n]]),
 * p[n, v] = exp(logits[n, v] - lse[n]).                                                   */
void ksa_xent_backward(ksa_real *dlogits, double dloss, const ksa_real *logits,
                       const int32_t *target, const ksa_real *w, const double *lse, size_t N,
                       size_t V, double norm)
{
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        double wn = w ? (double)w[n] : 1.0;
        if (wn == 0)
            continue;
        double g = dloss * wn / norm;
        const ksa_real *ln = logits + n * V;
        ksa_real *dn = dlogits + n * V;
        double l = lse[n];
        for (size_t v = 0; v < V; v++)
            dn[v] += (ksa_real)(g * exp((double)ln[v] - l));
        dn[target[n]] -= (ksa_real)g;
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
typedef struct {
    const int32_t *target;  /* [N], a copy in the arena */
    const ksa_real *weight; /* [N] or NULL, a copy */
    const double *lse;      /* [N] */
    double norm;
} xent_ctx;

static void xent_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const xent_ctx *c = nd->ctx;
    ksa_tensor *logits = nd->in[0];
    size_t V = ksa_cols(logits), N = ksa_rows(logits);
    ksa_real *dlogits = ksa_tape_grad(tp, logits);
    if (tp->plan_only)
        return;
    double dloss = (double)ksa_tensor_grad_if_any(nd->out)[0];
    ksa_xent_backward(dlogits, dloss, logits->data, c->target, c->weight, c->lse, N, V, c->norm);
}

ksa_tensor *ksa_op_cross_entropy(ksa_tape *tp, ksa_tensor *logits, const int32_t *target,
                                 const ksa_real *w, double norm, double *loss_value,
                                 double *row_loss_out)
{
    size_t V = ksa_cols(logits), N = ksa_rows(logits);
    KSA_ASSERT(norm > 0, "cross-entropy normaliser must be positive, got %g", norm);
    int32_t *tgt = ksa_arena_alloc(tp->arena, N * sizeof *tgt);
    memcpy(tgt, target, N * sizeof *tgt);
    for (size_t n = 0; n < N; n++)
        KSA_ASSERT(tgt[n] >= 0 && (size_t)tgt[n] < V, "target %d of row %zu outside [0, %zu)",
                   tgt[n], n, V);
    ksa_real *wt = NULL;
    if (w) {
        wt = ksa_arena_reals(tp->arena, N);
        memcpy(wt, w, N * sizeof *wt);
    }
    double *lse = ksa_arena_alloc(tp->arena, N * sizeof *lse);
    double *row_loss =
        row_loss_out ? row_loss_out : ksa_arena_alloc(tp->arena, N * sizeof *row_loss);
    ksa_tensor *loss = ksa_tensor_1d(tp->arena, 1);
    double value =
        tp->plan_only ? 0 : ksa_xent_forward(lse, row_loss, logits->data, tgt, wt, N, V, norm);
    loss->data[0] = (ksa_real)value;
    if (loss_value)
        *loss_value = value;
    ksa_node *nd = ksa_tape_record(tp, xent_node_backward, "cross_entropy", loss, 1, &logits,
                                   sizeof(xent_ctx));
    if (nd)
        *(xent_ctx *)nd->ctx = (xent_ctx){.target = tgt, .weight = wt, .lse = lse, .norm = norm};
    return loss;
}
