/* attncheck.h - what test_summary_attn.c and test_causal_attn.c share: a dense reference
 * that knows nothing about streams or tiles, the kernel side of a case ("problem") and the
 * checks both tests run on it.
 *
 * The reference builds the interleaved expanded sequence (KSA_SPEC §2.2, HF layout: chunks
 * of C text tokens then S summaries, a partial tail chunk text only), classifies every
 * position from that layout, evaluates the predicate of KSA_SPEC §3.1 literally, runs full
 * masked softmax attention in double (forward and analytic backward) and maps the results
 * back to the two streams. The causal kernel is the summary kernel's case C = 1, S = 0,
 * W >= T (causal_attn.h): a causal case is those dimensions with .causal = 1, and every
 * check then runs ksa_causal_attn_* instead (the summary stream is empty).              */
#ifndef KSA_TESTS_ATTNCHECK_H
#define KSA_TESTS_ATTNCHECK_H

#include "opcheck.h"
#include "testutil.h"

#include "model/summary_attn.h"

/* Float kernels against the double reference. The outputs are softmax-weighted sums of up
 * to ~400 terms computed through float gemms and a polynomial exp (rel. error 1e-7), so the
 * float forward is held to 2e-6 + 2e-5·|ref| instead of STYLE.md §7's 1e-6 + 1e-5: a few
 * elements near 0 land at 1-1.5e-6 absolute. Gradients keep STYLE.md's 1e-5 + 1e-4.    */
#ifdef KSA_REAL_DOUBLE
#define ATT_FWD_ATOL 1e-12
#define ATT_FWD_RTOL 1e-10
#define ATT_BWD_ATOL 1e-11
#define ATT_BWD_RTOL 1e-9
#else
#define ATT_FWD_ATOL 2e-6
#define ATT_FWD_RTOL 2e-5
#define ATT_BWD_ATOL 1e-5
#define ATT_BWD_RTOL 1e-4
#endif

typedef struct {
    ksa_summary_attn_dims d;
    int causal; /* 1: the causal kernels and op; d is then C = 1, S = 0, W = T */
} attn_case;

/* A causal case: [nseq, T] text tokens, nothing else. */
attn_case attn_causal(size_t nseq, size_t T, size_t Hq, size_t Hkv, size_t dh);

/* ---- the expanded sequence and KSA_SPEC §3.1 ---------------------------------------- */
typedef struct {
    int is_sum;   /* 0: text token t_i, 1: summary token s_c.j                */
    size_t index; /* its row in its own stream: i, or c*S + j                  */
    size_t chunk; /* i div C for text, c for a summary (KSA_SPEC §3.1)         */
} attn_token;

/* HF layout of KSA_SPEC §2.2; returns the expanded length. */
size_t attn_build_expanded(attn_token *tok, size_t T, size_t C, size_t S);
/* KSA_SPEC §3.1, literally: may expanded position q see position k? */
int attn_visible(const attn_token *tok, size_t q, size_t k, size_t W);

/* ---- the kernel side of a case -------------------------------------------------------- *
 * Stream s = 0 text, 1 summaries; q, o, dq, dout are q-shaped (nq[s] elements), k, v, dk,
 * dv k-shaped (nk[s]), lse nl[s]; the loss is sum o·c, so dout = c.                       */
typedef struct {
    attn_case ac;
    size_t NS, nq[2], nk[2], nl[2];
    ksa_real *q[2], *k[2], *v[2], *o[2], *lse[2], *dout[2], *dq[2], *dk[2], *dv[2];
    double *c[2];
    void *ws;
    size_t ws_bytes;
} attn_problem;

/* Inputs uniform from the seed: per stream q, k in [-2, 2) (scores of std ~1.3), v in
 * [-1, 1), c in [-1, 1); the workspace sized for the current thread count.              */
void attn_problem_init(attn_problem *p, const attn_case *ac, uint64_t seed);
void attn_problem_free(attn_problem *p);
void attn_problem_forward(attn_problem *p);
/* Adds into g[0..5] = dq text, dq sum, dk text, dk sum, dv text, dv sum (NULL: skipped). */
void attn_problem_backward_into(const attn_problem *p, ksa_real *const *g);
/* Zeroes dq, dk, dv, then the backward with dO = c. */
void attn_problem_backward(attn_problem *p);

/* ---- checks --------------------------------------------------------------------------- */
/* Forward outputs, lse and every gradient of the kernels vs the dense reference. */
void attn_check_against_reference(const attn_case *ac, uint64_t seed);
/* The reference's own analytic backward against its central differences. */
void attn_check_reference_differences(const attn_case *ac, uint64_t seed);
#ifdef KSA_REAL_DOUBLE
/* The kernels' backward against central differences of their forward (float64 only). */
void attn_check_kernel_differences(const attn_case *ac, uint64_t seed);
#endif
/* Gradients are added to what is there, all at once and each alone (the others NULL). */
void attn_check_accumulation(const attn_case *ac, uint64_t seed);
/* Same thread count: the same bits; 1 vs 2 threads: the same forward, close gradients. */
void attn_check_determinism(const attn_case *ac, uint64_t seed);

/* ---- the tape op ---------------------------------------------------------------------- *
 * An opcheck case for ksa_op_summary_attention (or ksa_op_causal_attention) on the
 * combined [text rows; summary rows] tensors of ac (which must outlive it); q_no_grad: q
 * needs no gradient. attn_check_op_against_reference then holds the run's output and
 * gradients to the analytic reference at ATT_FWD / ATT_BWD.                             */
opcheck_case attn_op_case(attn_case *ac, int q_no_grad);
void attn_check_op_against_reference(const opcheck_run *r, const attn_case *ac);

#endif
