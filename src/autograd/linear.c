/* linear.c - y[n,o] = sum_i x[n,i] * w[o,i]   (y = x · wᵀ, no bias)
 * x, dx  : [N, in]  row-major (N rows: every leading dimension of the input flattened)
 * w, dw  : [out, in] row-major, the checkpoint's layout (KSA_SPEC §7.1)
 * y, dy  : [N, out] row-major
 * saved  : nothing (backward needs only x and w, which the tape keeps)
 * Reference: torch.nn.functional.linear(x, w) (scripts/torch_reference.py).
 *
 * Why CblasTrans on the weight: row-major w [out, in] is, read as a matrix, W with one
 * output per row, and y = x · Wᵀ. Handing BLAS that buffer with trans_b = 1 (CblasTrans)
 * makes it read w as the [in, out] matrix Wᵀ (row stride ldb = in) without copying, so
 * weights stay in checkpoint layout everywhere and no transposed copy is ever kept.     */
#include "linear.h"

#include "blas.h"

/* ---- forward kernel ------------------------------------------------------------------- *
 * One GEMM: C[N,out] = A[N,in] · op(B), B = w [out, in] with CblasTrans (see the top). */
void ksa_linear_forward(ksa_real *y, const ksa_real *x, const ksa_real *w, size_t N, size_t in,
                        size_t out)
{
    KSA_ASSERT(in > 0 && out > 0, "linear: empty weight [%zu, %zu]", out, in);
    ksa_gemm(0, 1, N, out, in, 1, x, in, w, in, 0, y, out);
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * Adds into dx and dw (never overwrites: beta = 1); either may be NULL. From
 * y[n,o] = sum_i x[n,i] w[o,i]:
 *   dx[n,i] += sum_o dy[n,o] * w[o,i]   ->  dx += dy · w        (w as stored, no transpose)
 *   dw[o,i] += sum_n dy[n,o] * x[n,i]   ->  dw += dyᵀ · x       (dy [N, out] read transposed)
 * Both are single GEMMs. Like the forward, they give the same bits for a given thread
 * count (DESIGN.md §4), not across thread counts: OpenBLAS changes its blocking with the
 * number of threads, which moves the last bits (test_linear.c measures it).              */
void ksa_linear_backward(ksa_real *dx, ksa_real *dw, const ksa_real *dy, const ksa_real *x,
                         const ksa_real *w, size_t N, size_t in, size_t out)
{
    KSA_ASSERT(in > 0 && out > 0, "linear: empty weight [%zu, %zu]", out, in);
    if (dx)
        ksa_gemm(0, 0, N, in, out, 1, dy, out, w, in, 1, dx, in);
    if (dw && N > 0)
        ksa_gemm(1, 0, out, in, N, 1, dy, out, x, in, 1, dw, in);
}

/* ---- tape wiring ---------------------------------------------------------------------- */
static void linear_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    ksa_tensor *x = nd->in[0], *w = nd->in[1], *y = nd->out;
    size_t out = w->shape[0], in = w->shape[1];
    ksa_real *dx = ksa_tape_grad(tp, x), *dw = ksa_tape_grad(tp, w);
    if (!tp->plan_only)
        ksa_linear_backward(dx, dw, ksa_tensor_grad_if_any(y), x->data, w->data, x->numel / in, in,
                            out);
}

ksa_tensor *ksa_op_linear_into(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w, ksa_tensor *y)
{
    KSA_ASSERT(w->ndim == 2, "linear: weight must be [out, in], got a %d-d tensor", w->ndim);
    size_t out = w->shape[0], in = w->shape[1];
    KSA_ASSERT(in > 0 && out > 0, "linear: empty weight [%zu, %zu]", out, in);
    KSA_ASSERT(ksa_cols(x) == in, "linear: weight is [%zu, %zu] but rows of x have %zu elements",
               out, in, ksa_cols(x));
    size_t N = x->numel / in;
    KSA_ASSERT(ksa_cols(y) == out && y->numel == N * out,
               "linear: output of %zu elements in rows of %zu, expected %zu rows of %zu", y->numel,
               ksa_cols(y), N, out);
    if (!tp->plan_only)
        ksa_linear_forward(y->data, x->data, w->data, N, in, out);
    ksa_tape_record(tp, linear_node_backward, "linear", y, 2, (ksa_tensor *[]){x, w}, 0);
    return y;
}

ksa_tensor *ksa_op_linear(ksa_tape *tp, ksa_tensor *x, ksa_tensor *w)
{
    KSA_ASSERT(w->ndim == 2, "linear: weight must be [out, in], got a %d-d tensor", w->ndim);
    size_t shape[KSA_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        shape[i] = x->shape[i];
    shape[x->ndim - 1] = w->shape[0];
    return ksa_op_linear_into(tp, x, w, ksa_tensor_new(tp->arena, x->ndim, shape));
}
