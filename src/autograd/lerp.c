/* lerp.c - y[i] = m·a[i] + (1 - m)·b[i], m a scalar constant
 * a, b, y, da, db, dy : [n] contiguous (any shape, flattened; in the model [Ns, H*dh]: the
 *                       summary rows' q, k or v from the summary (a) and the shared (b)
 *                       projections, after the q/k head norms, before RoPE)
 * saved               : m (in the node's context)
 * Reference: KSA_SPEC §5.5; scripts/torch_reference.py `mix_summary_qkv`.               */
#include "lerp.h"

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_lerp_forward(ksa_real *y, const ksa_real *a, const ksa_real *b, ksa_real m, size_t n)
{
    ksa_real mb = 1 - m;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = m * a[i] + mb * b[i];
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * dy/da = m, dy/db = 1 - m (elementwise): da += m·dy, db += (1 - m)·dy.                    */
void ksa_lerp_backward(ksa_real *da, ksa_real *db, const ksa_real *dy, ksa_real m, size_t n)
{
    ksa_real mb = 1 - m;
    if (da) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++)
            da[i] += m * dy[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++)
            db[i] += mb * dy[i];
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
typedef struct {
    ksa_real m;
} lerp_ctx;

static void lerp_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    ksa_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
    const lerp_ctx *c = nd->ctx;
    ksa_real *da = ksa_tape_grad(tp, a), *db = ksa_tape_grad(tp, b);
    if (!tp->plan_only)
        ksa_lerp_backward(da, db, ksa_tensor_grad_if_any(y), c->m, y->numel);
}

ksa_tensor *ksa_op_lerp_into(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b, ksa_real m, ksa_tensor *y)
{
    KSA_ASSERT(a->numel == b->numel, "lerp: a has %zu elements and b %zu", a->numel, b->numel);
    KSA_ASSERT(y->numel == a->numel, "lerp: output of %zu elements for inputs of %zu", y->numel,
               a->numel);
    KSA_ASSERT(a != b, "lerp: a and b are the same tensor");
    if (!tp->plan_only)
        ksa_lerp_forward(y->data, a->data, b->data, m, y->numel);
    ksa_node *nd = ksa_tape_record(tp, lerp_node_backward, "lerp", y, 2, (ksa_tensor *[]){a, b},
                                   sizeof(lerp_ctx));
    if (nd)
        ((lerp_ctx *)nd->ctx)->m = m;
    return y;
}

ksa_tensor *ksa_op_lerp(ksa_tape *tp, ksa_tensor *a, ksa_tensor *b, ksa_real m)
{
    return ksa_op_lerp_into(tp, a, b, m, ksa_tensor_like(tp->arena, a));
}
