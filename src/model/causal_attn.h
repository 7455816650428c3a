/* causal_attn.h - causal softmax attention over the text stream (bypass layers,
 * KSA_SPEC §4.3, §6.1): text query t sees text keys [0, t] of its own sequence.
 *
 *   o[t] = sum_{k <= t} softmax_k(scale * q[t]·k[k]) v[k],   scale = 1/sqrt(dh)
 *   GQA: query head h uses kv head h / (Hq/Hkv); the backward sums the group's parts.
 *
 * Layouts (row-major, dh contiguous):
 *   q, o, dq, dout : [nseq, T, Hq,  dh]        lse (saved) : [nseq, T, Hq]
 *   k, v, dk, dv   : [nseq, T, Hkv, dh]
 * Same tiled kernels as summary attention (it is the case C = 1, S = 0, W >= T of
 * summary_attn.h): O(T·dh) memory, workspace from the caller, bit-identical results for a
 * given thread count.                                                                      */
#ifndef KSA_MODEL_CAUSAL_ATTN_H
#define KSA_MODEL_CAUSAL_ATTN_H

#include "autograd/tape.h"

size_t ksa_causal_attn_forward_workspace_size(size_t T, size_t dh, int nthreads);
size_t ksa_causal_attn_backward_workspace_size(size_t T, size_t dh, int nthreads);

/* Writes o and lse. */
void ksa_causal_attn_forward(ksa_real *o, ksa_real *lse, const ksa_real *q, const ksa_real *k,
                             const ksa_real *v, void *workspace, size_t workspace_bytes,
                             size_t nseq, size_t T, size_t Hq, size_t Hkv, size_t dh);

/* Adds into dq, dk, dv (never overwrites); any may be NULL. With P recomputed from lse and
 * D_t = dout[t]·o[t]: dS = P ∘ (dout·vᵀ − D), dq += scale·dS·k, dk += scale·dSᵀ·q,
 * dv += Pᵀ·dout.                                                                           */
void ksa_causal_attn_backward(ksa_real *dq, ksa_real *dk, ksa_real *dv, const ksa_real *dout,
                              const ksa_real *q, const ksa_real *k, const ksa_real *v,
                              const ksa_real *o, const ksa_real *lse, void *workspace,
                              size_t workspace_bytes, size_t nseq, size_t T, size_t Hq, size_t Hkv,
                              size_t dh);

/* q: [nseq*T, Hq*dh], k, v: [nseq*T, Hkv*dh] (text rows only); returns o shaped like q.
 * dh = columns of q / Hq.                                                                  */
ksa_tensor *ksa_op_causal_attention(ksa_tape *tp, ksa_tensor *q, ksa_tensor *k, ksa_tensor *v,
                                    size_t nseq, size_t Hq, size_t Hkv);

#endif
