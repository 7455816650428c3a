/* causal_attn.c - causal attention over the text stream, forward, backward, tape wiring.
 *
 *   o[t] = sum_{k <= t} P[t,k] v[k],  P[t,:] = softmax_{k <= t}(scale * q[t]·k[k])
 *   q, o, dq, dout : [nseq, T, Hq, dh];  k, v, dk, dv : [nseq, T, Hkv, dh];  lse : [nseq, T, Hq]
 *   Saved: lse[t] = log sum_{k <= t} exp(scale * q[t]·k[k]).
 *
 * Causal attention is summary attention (KSA_SPEC §3.1) with a window that covers every
 * chunk and no summary tokens: with C = 1, S = 0 and W >= T, text query t sees text keys
 * [w0*C, t] = [0, t] and no summary keys. Both kernels therefore run the tiled
 * flash-attention code of summary_attn.c (tiles of 128 query rows x 256 keys, online
 * softmax, only tiles at or below the diagonal visited, only the diagonal tile masked);
 * the derivation of the backward is in its header comment
 * (dS = P ∘ (dO·Vᵀ − rowsum(dO∘O)), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO).
 * Reference it must match: dense causal softmax attention (tests/test_causal_attn.c).   */
#include "causal_attn.h"

#include <stdint.h>
#include <string.h>

#include "summary_attn.h"

static ksa_summary_attn_dims causal_dims(size_t nseq, size_t T, size_t Hq, size_t Hkv, size_t dh)
{
    ksa_summary_attn_dims d = {
        .nseq = nseq, .T = T, .C = 1, .S = 0, .W = SIZE_MAX, .Hq = Hq, .Hkv = Hkv, .dh = dh};
    return d;
}

size_t ksa_causal_attn_forward_workspace_size(size_t T, size_t dh, int nthreads)
{
    ksa_summary_attn_dims d = causal_dims(1, T, 1, 1, dh);
    return ksa_summary_attn_forward_workspace_size(&d, nthreads);
}

size_t ksa_causal_attn_backward_workspace_size(size_t T, size_t dh, int nthreads)
{
    ksa_summary_attn_dims d = causal_dims(1, T, 1, 1, dh);
    return ksa_summary_attn_backward_workspace_size(&d, nthreads);
}

void ksa_causal_attn_forward(ksa_real *o, ksa_real *lse, const ksa_real *q, const ksa_real *k,
                             const ksa_real *v, void *workspace, size_t workspace_bytes,
                             size_t nseq, size_t T, size_t Hq, size_t Hkv, size_t dh)
{
    ksa_summary_attn_dims d = causal_dims(nseq, T, Hq, Hkv, dh);
    ksa_attn_qkv in = {{q, NULL}, {k, NULL}, {v, NULL}};
    ksa_summary_attn_forward((ksa_attn_out){o, NULL}, (ksa_attn_out){lse, NULL}, in, workspace,
                             workspace_bytes, &d);
}

void ksa_causal_attn_backward(ksa_real *dq, ksa_real *dk, ksa_real *dv, const ksa_real *dout,
                              const ksa_real *q, const ksa_real *k, const ksa_real *v,
                              const ksa_real *o, const ksa_real *lse, void *workspace,
                              size_t workspace_bytes, size_t nseq, size_t T, size_t Hq, size_t Hkv,
                              size_t dh)
{
    ksa_summary_attn_dims d = causal_dims(nseq, T, Hq, Hkv, dh);
    ksa_attn_qkv in = {{q, NULL}, {k, NULL}, {v, NULL}};
    ksa_summary_attn_backward((ksa_attn_out){dq, NULL}, (ksa_attn_out){dk, NULL},
                              (ksa_attn_out){dv, NULL}, (ksa_attn_in){dout, NULL}, in,
                              (ksa_attn_in){o, NULL}, (ksa_attn_in){lse, NULL}, workspace,
                              workspace_bytes, &d);
}

/* ---- tape wiring ----------------------------------------------------------------------- *
 * The kernel's scratch is taken from the arena for the duration of the call only (the
 * arena's `used` is restored afterwards).                                                  */
/* The node's context: the sizes and the forward's lse [nseq*T, Hq]. */
typedef struct {
    size_t nseq, T, Hq, Hkv, dh;
    ksa_real *lse;
} causal_attn_ctx;

static void causal_attn_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const causal_attn_ctx *c = nd->ctx;
    ksa_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2], *o = nd->out;
    size_t nseq = c->nseq, T = c->T, Hq = c->Hq, Hkv = c->Hkv, dh = c->dh;
    ksa_real *dq = ksa_tape_grad(tp, q), *dk = ksa_tape_grad(tp, k);
    ksa_real *dv = ksa_tape_grad(tp, v);
    size_t mark = ksa_arena_mark(tp->arena);
    size_t bytes = ksa_causal_attn_backward_workspace_size(T, dh, ksa_threads_get());
    void *ws = ksa_arena_alloc(tp->arena, bytes);
    if (!tp->plan_only)
        ksa_causal_attn_backward(dq, dk, dv, ksa_tensor_grad_if_any(o), q->data, k->data, v->data,
                                 o->data, c->lse, ws, bytes, nseq, T, Hq, Hkv, dh);
    ksa_arena_release(tp->arena, mark);
}

ksa_tensor *ksa_op_causal_attention(ksa_tape *tp, ksa_tensor *q, ksa_tensor *k, ksa_tensor *v,
                                    size_t nseq, size_t Hq, size_t Hkv)
{
    KSA_ASSERT(nseq >= 1 && q->shape[0] % nseq == 0,
               "causal attention: %zu rows of q are not nseq = %zu sequences", q->shape[0], nseq);
    KSA_ASSERT(Hq >= 1 && q->numel % (q->shape[0] * Hq) == 0,
               "causal attention: rows of q (%zu elements) are not %zu heads",
               q->numel / (q->shape[0] ? q->shape[0] : 1), Hq);
    size_t rows = q->shape[0], T = rows / nseq, dh = rows ? q->numel / rows / Hq : 0;
    KSA_ASSERT(k->shape[0] == rows && k->numel == rows * Hkv * dh && v->shape[0] == rows &&
                   v->numel == k->numel,
               "causal attention: k/v must be [%zu, %zu*%zu], got %zu and %zu elements", rows, Hkv,
               dh, k->numel, v->numel);
    ksa_tensor *o = ksa_tensor_like(tp->arena, q);
    ksa_real *lse = ksa_arena_reals(tp->arena, rows * Hq);
    size_t mark = ksa_arena_mark(tp->arena);
    size_t bytes = ksa_causal_attn_forward_workspace_size(T, dh, ksa_threads_get());
    void *ws = ksa_arena_alloc(tp->arena, bytes);
    if (!tp->plan_only)
        ksa_causal_attn_forward(o->data, lse, q->data, k->data, v->data, ws, bytes, nseq, T, Hq,
                                Hkv, dh);
    ksa_arena_release(tp->arena, mark);
    ksa_node *nd = ksa_tape_record(tp, causal_attn_node_backward, "causal_attention", o, 3,
                                   (ksa_tensor *[]){q, k, v}, sizeof(causal_attn_ctx));
    if (nd)
        *(causal_attn_ctx *)nd->ctx = (causal_attn_ctx){nseq, T, Hq, Hkv, dh, lse};
    return o;
}
