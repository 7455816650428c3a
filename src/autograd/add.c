/* add.c - y[i] = a[i] + b[i]
 * a, b, y, da, db, dy : [n] contiguous (any shape, flattened; a and b of the same shape)
 * saved               : nothing
 * Reference: the residual additions of the decoder layer (torch `h + x`).               */
#include "add.h"

#include <stdio.h>

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_add_forward(ksa_real *y, const ksa_real *a, const ksa_real *b, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * dy/da = dy/db = identity, so da += dy and db += dy: one pass for two distinct gradients
 * (a residual: dy read once), two passes when da == db (y = a + a receives 2 dy).        */
void ksa_add_backward(ksa_real *da, ksa_real *db, const ksa_real *dy, size_t n)
{
    if (da && db && da != db) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) {
            da[i] += dy[i];
            db[i] += dy[i];
        }
        return;
    }
    if (da) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            da[i] += dy[i];
    }
    if (db) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            db[i] += dy[i];
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
static void add_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    ksa_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
    ksa_real *da = ksa_tape_grad(tp, a), *db = ksa_tape_grad(tp, b);
    if (!tp->plan_only)
        ksa_add_backward(da, db, ksa_tensor_grad_if_any(y), y->numel);
}

static int same_shape(const ksa_tensor *a, const ksa_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* "[3, 6]" into buf, for assert messages. */
static const char *shape_str(char *buf, size_t size, const ksa_tensor *t)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%zu", i ? ", " : "", t->shape[i]);
    return buf;
}

ksa_tensor *ksa_op_add(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b)
{
    if (!same_shape(a, b)) {
        char sa[96], sb[96];
        KSA_ASSERT(same_shape(a, b), "add: shapes differ, a is [%s] and b is [%s]",
                   shape_str(sa, sizeof sa, a), shape_str(sb, sizeof sb, b));
    }
    ksa_tensor *y = ksa_tensor_like(tp->arena, a);
    if (!tp->plan_only)
        ksa_add_forward(y->data, a->data, b->data, y->numel);
    ksa_tape_record(tp, add_node_backward, "add", y, 2, (ksa_tensor *[]){a, b}, 0);
    return y;
}
