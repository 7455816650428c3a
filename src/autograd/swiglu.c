/* swiglu.c - y = silu(gate) * up,  silu(z) = z * sigmoid(z)
 * gate, up, y, dgate, dup, dy : [N, I] row-major (N rows: text and summary rows alike,
 *                               I = intermediate size); element-wise, so seen as N*I values
 * saved                       : nothing; backward recomputes sigmoid(gate) from gate
 * Reference: KSA_SPEC §6.1 (MLP: down(silu(gate(x)) ⊙ up(x)), no biases);
 * scripts/torch_reference.py.                                                             */
#include "swiglu.h"

#include "core/vecmath.h"

/* sigmoid without overflow for any |z|: exp only ever sees -|z|, so e is in (0, 1] and
 * sigmoid(z) = 1/(1+e) for z >= 0, e/(1+e) = 1 - 1/(1+e) for z < 0 (accurate when tiny).
 * Branch-free with ksa_exp (the vectorised polynomial in float), so the loops below run
 * in SIMD lanes; in float64 it is libm's exp.                                           */
static inline ksa_real sigmoid(ksa_real z)
{
    ksa_real e = ksa_exp(z < 0 ? z : -z);
    ksa_real r = 1 / (1 + e);
    return z >= 0 ? r : e * r;
}

/* ---- forward kernel ------------------------------------------------------------------- */
void ksa_swiglu_forward(ksa_real *y, const ksa_real *gate, const ksa_real *up, size_t N, size_t I)
{
    size_t n = N * I;
#pragma omp parallel for simd schedule(static) if (n >= KSA_PARALLEL_MIN_ELEMENTS)
    for (size_t k = 0; k < n; k++) {
        ksa_real g = gate[k];
        y[k] = g * sigmoid(g) * up[k];
    }
}

/* ---- backward kernel ------------------------------------------------------------------ *
 * Adds into dgate and dup (never overwrites); either may be NULL. With s = sigmoid(g),
 * s' = s (1 - s), so silu'(g) = s + g s (1 - s) = s (1 + g (1 - s)):
 *   dgate += dy * up * s * (1 + g * (1 - s))
 *   dup   += dy * g * s
 * One pass when both are wanted (the model's case), one loop each otherwise: no test
 * inside a loop, so each vectorises.                                                      */
void ksa_swiglu_backward(ksa_real *dgate, ksa_real *dup, const ksa_real *dy, const ksa_real *gate,
                         const ksa_real *up, size_t N, size_t I)
{
    size_t n = N * I;
    if (dgate && dup) {
#pragma omp parallel for simd schedule(static)
        for (size_t k = 0; k < n; k++) {
            ksa_real g = gate[k], s = sigmoid(g), d = dy[k];
            dgate[k] += d * up[k] * s * (1 + g * (1 - s));
            dup[k] += d * g * s;
        }
    } else if (dgate) {
#pragma omp parallel for simd schedule(static)
        for (size_t k = 0; k < n; k++) {
            ksa_real g = gate[k], s = sigmoid(g);
            dgate[k] += dy[k] * up[k] * s * (1 + g * (1 - s));
        }
    } else if (dup) {
#pragma omp parallel for simd schedule(static)
        for (size_t k = 0; k < n; k++) {
            ksa_real g = gate[k];
            dup[k] += dy[k] * g * sigmoid(g);
        }
    }
}

/* ---- tape wiring ---------------------------------------------------------------------- */
static void swiglu_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    ksa_tensor *gate = nd->in[0], *up = nd->in[1], *y = nd->out;
    ksa_real *dgate = ksa_tape_grad(tp, gate), *dup = ksa_tape_grad(tp, up);
    if (!tp->plan_only)
        ksa_swiglu_backward(dgate, dup, ksa_tensor_grad_if_any(y), gate->data, up->data,
                            ksa_rows(gate), ksa_cols(gate));
}

ksa_tensor *ksa_op_swiglu(ksa_tape *tp, ksa_tensor *gate, ksa_tensor *up)
{
    KSA_ASSERT(gate->numel == up->numel && ksa_cols(gate) == ksa_cols(up),
               "swiglu: gate has %zu elements in rows of %zu, up %zu in rows of %zu", gate->numel,
               ksa_cols(gate), up->numel, ksa_cols(up));
    size_t N = ksa_rows(gate), I = ksa_cols(gate);
    ksa_tensor *y = ksa_tensor_like(tp->arena, gate);
    if (!tp->plan_only)
        ksa_swiglu_forward(y->data, gate->data, up->data, N, I);
    ksa_tape_record(tp, swiglu_node_backward, "swiglu", y, 2, (ksa_tensor *[]){gate, up}, 0);
    return y;
}
