/* embedding.c - out[n,:] = table[ids[n],:]
 * table, dtable : [V, D] row-major (V ids: the text vocabulary, or S summary rows)
 * ids           : [N] int32, 0 <= ids[n] < V
 * out, dout     : [N, D] row-major
 * saved         : a copy of ids in the arena (the caller's buffer may change before backward)
 * Reference: torch.nn.functional.embedding(ids, table) (scripts/torch_reference.py).     */
#include "embedding.h"

#include <string.h>
#include <omp.h>

/* Every id is checked once, serially, before any thread starts: the abort names the first
 * bad position and value, and no thread reads outside the table.                        */
static void check_ids(const int32_t *ids, size_t N, size_t V)
{
    for (size_t n = 0; n < N; n++)
        KSA_ASSERT(ids[n] >= 0 && (size_t)ids[n] < V,
                   "embedding: ids[%zu] = %d is outside the table's %zu rows [0, %zu)", n,
                   (int)ids[n], V, V);
}

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_embedding_forward(ksa_real *out, const ksa_real *table, const int32_t *ids, size_t N,
                           size_t V, size_t D)
{
    check_ids(ids, N, V);
#pragma omp parallel for schedule(static) if (N * D >= KSA_PARALLEL_MIN_ELEMENTS)
    for (size_t n = 0; n < N; n++)
        memcpy(out + n * D, table + (size_t)ids[n] * D, D * sizeof *out);
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * out[n,d] = table[ids[n],d], so dtable[v,d] += sum_{n: ids[n] = v} dout[n,d].
 * Rows of dtable collide whenever an id repeats, so threads split the columns instead:
 * thread t owns columns [d0, d1) of every row and walks n = 0..N-1 in order. Each element
 * is then written by one thread and summed in the order of n whatever the thread count:
 * bit-identical results for any number of threads, no atomics, no scratch.             */
void ksa_embedding_backward(ksa_real *dtable, const ksa_real *dout, const int32_t *ids, size_t N,
                            size_t V, size_t D)
{
    if (!dtable)
        return;
    check_ids(ids, N, V);
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        size_t d0 = D * (size_t)t / (size_t)nt, d1 = D * (size_t)(t + 1) / (size_t)nt;
        for (size_t n = 0; n < N; n++) {
            const ksa_real *dn = dout + n * D;
            ksa_real *dv = dtable + (size_t)ids[n] * D;
            for (size_t d = d0; d < d1; d++)
                dv[d] += dn[d];
        }
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
typedef struct {
    const int32_t *ids; /* [N], a copy in the arena */
    size_t N;
} embedding_ctx;

static void embedding_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const embedding_ctx *c = nd->ctx;
    ksa_tensor *table = nd->in[0];
    ksa_real *dtable = ksa_tape_grad(tp, table);
    if (!tp->plan_only)
        ksa_embedding_backward(dtable, ksa_tensor_grad_if_any(nd->out), c->ids, c->N,
                               table->shape[0], table->shape[1]);
}

ksa_tensor *ksa_op_embedding(ksa_tape *tp, ksa_tensor *table, const int32_t *ids, size_t N)
{
    KSA_ASSERT(table->ndim == 2, "embedding: table must be [V, D], got a %d-d tensor", table->ndim);
    size_t V = table->shape[0], D = table->shape[1];
    KSA_ASSERT(N == 0 || ids, "embedding: %zu ids requested from a NULL pointer", N);
    ksa_tensor *out = ksa_tensor_2d(tp->arena, N, D);
    if (!tp->plan_only)
        ksa_embedding_forward(out->data, table->data, ids, N, V, D);
    ksa_node *nd = ksa_tape_record(tp, embedding_node_backward, "embedding", out, 1, &table,
                                   sizeof(embedding_ctx));
    if (nd) {
        int32_t *ids_copy = ksa_arena_alloc(tp->arena, N * sizeof *ids_copy);
        if (N)
            memcpy(ids_copy, ids, N * sizeof *ids_copy);
        *(embedding_ctx *)nd->ctx = (embedding_ctx){.ids = ids_copy, .N = N};
    }
    return out;
}
