/* concat.c - y = [a; b] along the first dimension
 * a, da : [Na, R]    b, db : [Nb, R]    y, dy : [Na + Nb, R]   (R = product of the rest)
 * Forward copies; backward adds the two row ranges of dy into da and db.               */
#include "concat.h"

#include <string.h>

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_concat_rows_forward(ksa_real *y, const ksa_real *a, size_t na, const ksa_real *b,
                             size_t nb)
{
    memcpy(y, a, na * sizeof *y);
    memcpy(y + na, b, nb * sizeof *y);
}

/* ---- backward kernel: da += dy[0, na), db += dy[na, na + nb) -------------------------- */
void ksa_concat_rows_backward(ksa_real *da, ksa_real *db, const ksa_real *dy, size_t na, size_t nb)
{
    if (da) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < na; i++)
            da[i] += dy[i];
    }
    if (db) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < nb; i++)
            db[i] += dy[na + i];
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
static void concat_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    ksa_tensor *a = nd->in[0], *b = nd->in[1];
    ksa_real *da = ksa_tape_grad(tp, a), *db = ksa_tape_grad(tp, b);
    if (!tp->plan_only)
        ksa_concat_rows_backward(da, db, ksa_tensor_grad_if_any(nd->out), a->numel, b->numel);
}

ksa_tensor *ksa_op_concat_rows(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b)
{
    KSA_ASSERT(a->ndim == b->ndim, "concat: ranks %d and %d differ", a->ndim, b->ndim);
    for (int i = 1; i < a->ndim; i++)
        KSA_ASSERT(a->shape[i] == b->shape[i], "concat: dimension %d is %zu in a, %zu in b", i,
                   a->shape[i], b->shape[i]);
    size_t shape[KSA_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[0] = a->shape[0] + b->shape[0];
    ksa_tensor *y = ksa_tensor_new(tp->arena, a->ndim, shape);
    if (!tp->plan_only)
        ksa_concat_rows_forward(y->data, a->data, a->numel, b->data, b->numel);
    ksa_tape_record(tp, concat_node_backward, "concat_rows", y, 2, (ksa_tensor *[]){a, b}, 0);
    return y;
}
