/* swiglu.h - the gated activation of the Qwen3 MLP (KSA_SPEC §6.1):
 * mlp(x) = down(silu(gate(x)) ⊙ up(x)); this op is the middle part, y = silu(gate) ⊙ up.  */
#ifndef KSA_AUTOGRAD_SWIGLU_H
#define KSA_AUTOGRAD_SWIGLU_H

#include "tape.h"

/* y, gate, up: [N, I]. */
void ksa_swiglu_forward(ksa_real *y, const ksa_real *gate, const ksa_real *up, size_t N, size_t I);
/* Adds into dgate and dup (never overwrites); either may be NULL. All arrays [N, I]. */
void ksa_swiglu_backward(ksa_real *dgate, ksa_real *dup, const ksa_real *dy, const ksa_real *gate,
                         const ksa_real *up, size_t N, size_t I);

/* y = silu(gate) * up; gate and up of the same shape ([N, I]), y of that shape too. */
ksa_tensor *ksa_op_swiglu(ksa_tape *tp, ksa_tensor *gate, ksa_tensor *up);

#endif
