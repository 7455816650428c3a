/* summary_attn.h - Kwai Summary Attention over the two streams (KSA_SPEC §3, DESIGN.md §2).
 *
 *   o[i] = sum_{k visible from i} softmax_k(scale * q[i]·k[k]) v[k],   scale = 1/sqrt(dh)
 *
 * A batch holds nseq sequences of T text tokens; chunk size C, S summary tokens per chunk,
 * NS = floor(T/C)*S summary rows per sequence (a partial tail chunk has no summary rows,
 * KSA_SPEC §2.3). Summary row r = c*S + j is the token s_c.j. With w0(c) = max(0, c - W):
 *   text query t (chunk c = t div C): summary rows [0, w0*S)  and text rows [w0*C, t]
 *   summary query (c, j):             text rows [c*C, (c+1)*C) and summary rows [c*S, c*S+j]
 * (KSA_SPEC §3.2, equal to the predicate of §3.1 on the interleaved sequence.)
 * GQA: query head h uses kv head h / (Hq/Hkv); the backward sums a group's contributions.
 *
 * Blocks (context parallelism). The query rows may be the text rows [t0, t0 + T) of a longer
 * sequence (t0 = c0*C, so they hold whole chunks from c0 on; NS = floor(T/C)*S summary
 * queries, of chunks c0 ... c0 + T/C - 1) and the keys any held ranges: text rows
 * [kt0, kt0 + TK) and summary rows [ks0, ks0 + NSK). Each query sees the keys of the rule
 * above (in the whole sequence's indices) that are held; the others are another call's (its
 * partial results merge by their lse: o = sum_p exp(lse_p - lse) o_p, lse = log sum_p
 * exp(lse_p)). A text query that sees no held key gets o = 0 and lse = -inf. Summary queries
 * run only when q.sum is given, and then must hold their chunk's keys. TK = NSK = 0 means the
 * keys are the query rows' own: kt0 = t0, TK = T, ks0 = c0*S, NSK = NS. The backward takes the
 * merged o and lse of all calls and adds each call's share of the gradients.
 *
 * Layouts (row-major, dh contiguous):
 *   q_text, o_text, dq_text, do_text : [nseq, T,  Hq,  dh]      lse_text : [nseq, T,  Hq]
 *   q_sum,  o_sum,  dq_sum,  do_sum  : [nseq, NS, Hq,  dh]      lse_sum  : [nseq, NS, Hq]
 *   k_text, v_text, dk_text, dv_text : [nseq, TK,  Hkv, dh]    (TK = T unless a block)
 *   k_sum,  v_sum,  dk_sum,  dv_sum  : [nseq, NSK, Hkv, dh]    (NSK = NS unless a block)
 * lse (saved by the forward, natural log of the softmax denominator including the running
 * maximum) lets the backward recompute every probability tile by tile; nothing of size
 * T x T or T x NS is ever stored. lse is kept in ksa_real: in the float build its error
 * (~1e-7 relative, |lse| ~ 10) perturbs each probability by ~1e-6 relative, below the
 * float accuracy of the products it multiplies.
 *
 * S = 0 is accepted (no summary rows, summary pointers may be NULL): with C = 1 and W >= T
 * this is plain causal attention, which is how causal_attn.c runs.
 *
 * Kernels allocate nothing: scratch (tiles, per-thread dK/dV partial sums of one kv head)
 * is a caller-provided workspace of at least ..._workspace_size(d, nthreads) bytes, where
 * nthreads >= omp_get_max_threads() at the call. Results are bit-identical for a given
 * thread count (static schedules, per-thread partial sums reduced in thread order); the
 * forward does not depend on the thread count at all.                                    */
#ifndef KSA_MODEL_SUMMARY_ATTN_H
#define KSA_MODEL_SUMMARY_ATTN_H

#include "autograd/tape.h"

typedef struct {
    size_t nseq; /* sequences in the batch                                  */
    size_t T;    /* text tokens per sequence                                */
    size_t C;    /* text tokens per chunk (>= 1)                            */
    size_t S;    /* summary tokens per complete chunk (0: no summary stream) */
    size_t W;    /* window in chunks (any value; >= T/C means all text)     */
    size_t Hq;   /* query heads                                             */
    size_t Hkv;  /* key/value heads, divides Hq                             */
    size_t dh;   /* head dimension                                          */
    /* A block of a longer sequence (context parallelism, src/dist/context.h); all zero for a
     * whole sequence. Indices are the whole sequence's: visibility is decided on them.   */
    size_t t0;       /* the query rows are text rows [t0, t0 + T); t0 a multiple of C    */
    size_t kt0, TK;  /* the text keys held are rows [kt0, kt0 + TK)                      */
    size_t ks0, NSK; /* the summary keys held are summary rows [ks0, ks0 + NSK)          */
} ksa_summary_attn_dims;

/* NS = floor(T/C) * S, summary rows per sequence. */
size_t ksa_summary_attn_summary_rows(const ksa_summary_attn_dims *d);

size_t ksa_summary_attn_forward_workspace_size(const ksa_summary_attn_dims *d, int nthreads);
size_t ksa_summary_attn_backward_workspace_size(const ksa_summary_attn_dims *d, int nthreads);

/* One tensor of the two streams: its text rows and its summary rows (the layouts above;
 * .sum may be NULL when S = 0, and an output gradient pair may be {NULL, NULL}). */
typedef struct {
    const ksa_real *text, *sum;
} ksa_attn_in;
typedef struct {
    ksa_real *text, *sum;
} ksa_attn_out;
typedef struct {
    ksa_attn_in q, k, v;
} ksa_attn_qkv;

/* Writes o and lse (both streams). */
void ksa_summary_attn_forward(ksa_attn_out o, ksa_attn_out lse, ksa_attn_qkv in, void *workspace,
                              size_t workspace_bytes, const ksa_summary_attn_dims *d);

/* Adds into the gradients dq, dk, dv (never overwrites); any of the six pointers may be
 * NULL. They must not overlap each other. dout is d(loss)/d(o); o and lse are the
 * forward's. With P = softmax rows recomputed from lse, D_i = sum_d dout[i]·o[i]:
 *   dP = dout·vᵀ,  dS = P ∘ (dP − D),  dq += scale·dS·k,  dk += scale·dSᵀ·q,  dv += Pᵀ·dout */
void ksa_summary_attn_backward(ksa_attn_out dq, ksa_attn_out dk, ksa_attn_out dv, ksa_attn_in dout,
                               ksa_attn_qkv in, ksa_attn_in o, ksa_attn_in lse, void *workspace,
                               size_t workspace_bytes, const ksa_summary_attn_dims *d);

/* Merges another call's partial result (o2, lse2) over other keys into (o, lse), for rows x
 * heads = n entries of dh: lse = log(e^lse + e^lse2), o = e^(lse_old - lse) o + e^(lse2 - lse)
 * o2 (computed in double). An entry whose two lse are -inf stays as it is.              */
void ksa_summary_attn_merge(ksa_real *o, ksa_real *lse, const ksa_real *o2, const ksa_real *lse2,
                            size_t n, size_t dh);

/* Tape op on the combined two-stream tensors (DESIGN.md §2): q is [nseq*T + nseq*NS, Hq*dh],
 * k and v are [nseq*T + nseq*NS, Hkv*dh]; rows [0, nseq*T) are the text rows of all
 * sequences, the rest the summary rows. Returns o with q's shape and layout.            */
ksa_tensor *ksa_op_summary_attention(ksa_tape *tp, ksa_tensor *q, ksa_tensor *k, ksa_tensor *v,
                                     const ksa_summary_attn_dims *d);

#endif
