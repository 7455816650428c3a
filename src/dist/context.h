/* context.h - context parallelism: the text of one sequence split over the P ranks of a
 * context group (docs/mpi.md, "Context parallelism").
 *
 * The N ranks form a P x (N / P) grid: ranks g*P ... g*P + P - 1 are context group g (data
 * parallelism runs over the N / P groups as without context parallelism; the sharded
 * optimizer's slices still run over all N ranks). A group splits every sequence of L text
 * tokens into P blocks of whole units (unit = C of a chunked model, 1 otherwise): n = L div
 * unit units, floor(n / P) per block, the last block also taking the remaining units and the
 * partial tail chunk. Block r holds text rows [start[r], start[r + 1]) and the summary rows of
 * its complete chunks. Everything but attention is row-wise and runs on the block alone;
 * attention exchanges keys and values:
 *
 *   summary layer (window W chunks), block r = text rows [t0, t1), chunks from c0 = t0 / C:
 *     from earlier blocks: the text halo [max(0, c0 - W)*C, t0) (it may span several blocks
 *     when blocks are shorter than W chunks) and the summary rows [0, min(c0, w)*S) with
 *     w = max(0, (t1 - 1) div C - W), the chunks the block's last query sees as summaries;
 *     one MPI_Ialltoallv per layer, overlapped with the block's attention to its own keys,
 *     the two partial results merged by their lse. The backward sends the halo's and the
 *     summaries' dK/dV back to their owners (one more, overlapped the same way).
 *     Per layer a rank receives O(W*C + S*L/C) rows instead of ring attention's O(L).
 *   causal layer: ring attention. In round s = 1 ... P - 1 block r sends its keys and
 *     values to block r + s and receives those of block r - s (all visible to it), whose
 *     partial result it merges; the backward repeats the rounds and returns each block's
 *     dK/dV. O(L) traffic, reported separately.
 *
 * Position ids, summary insertion and the loss are those of the whole sequence.          */
#ifndef KSA_DIST_CONTEXT_H
#define KSA_DIST_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "autograd/tape.h"
#include "core/core.h"
#include "model/summary_attn.h"

typedef struct ksa_cp_comm ksa_cp_comm; /* the group's communicator (context.c) */

/* Bytes this rank sent, by kind of layer (forward and backward). */
typedef struct {
    uint64_t summary_bytes;             /* summary layers: halos, summaries and their gradients */
    uint64_t ring_bytes;                /* causal layers: ring attention's blocks and gradients */
    uint64_t summary_calls, ring_calls; /* attention ops run (forward + backward) */
} ksa_cp_traffic;

typedef struct ksa_cp_s {
    int P;               /* ranks per context group (1: no context parallelism)      */
    int rank;            /* this rank's block, 0 ... P - 1                           */
    int group, n_groups; /* this rank's context group among the N / P groups          */
    size_t L, unit;      /* sequence length; blocks are whole multiples of unit       */
    size_t *start;       /* owned: [P + 1] first text row of every block; start[P] = L */
    ksa_cp_comm *comm;   /* owned; NULL when P = 1                                     */
    ksa_cp_traffic traffic;
} ksa_cp;

/* Whether P ranks per group can split sequences of L tokens into blocks of whole units on
 * n_ranks ranks: KSA_EINVAL with one line naming the problem (P < 1, P not dividing
 * n_ranks, fewer units than P: a block shorter than one chunk). No MPI.                  */
ksa_status ksa_cp_check(int P, int n_ranks, size_t L, size_t unit);

/* Whether every message of the grid fits MPI's int count: a block's keys and values (ring)
 * and a summary layer's exchange are bounded by 2 * nseq * kv_width * (L + floor(L/C) * S)
 * reals (nseq rows of a micro-batch, kv_width = Hkv * head_dim). KSA_EINVAL naming the
 * sizes otherwise. No MPI. */
ksa_status ksa_cp_check_messages(size_t L, size_t C, size_t S, size_t nseq, size_t kv_width);

/* Collective over all ranks (MPI_Comm_split): the grid of ksa_cp_check's arguments, with this
 * process's rank and the world's size. P = 1 needs no MPI.                              */
ksa_status ksa_cp_init(ksa_cp *cp, int P, size_t L, size_t unit);
void ksa_cp_free(ksa_cp *cp);

/* Block r's text rows [start[r], start[r + 1]) and this rank's. */
static inline size_t ksa_cp_block_start(const ksa_cp *cp)
{
    return cp->start[cp->rank];
}
static inline size_t ksa_cp_block_len(const ksa_cp *cp)
{
    return cp->start[cp->rank + 1] - cp->start[cp->rank];
}

/* The rows of earlier blocks a block needs in a summary layer (see above): text halo
 * [*h0, t0) and summary rows [0, *ns). */
void ksa_cp_summary_needs(const ksa_cp *cp, int block, size_t C, size_t S, size_t W, size_t *h0,
                          size_t *ns);

/* Summary attention of this rank's block on the tape. q, k, v: the block's combined streams
 * ([nseq*T + nseq*NS, H*dh], ksa_op_summary_attention's layout); d: the block's dimensions
 * (T = the block's length, t0 = its start, keys left 0). Returns o with q's shape. With
 * P = 1 it is ksa_op_summary_attention.                                                 */
ksa_tensor *ksa_cp_summary_attention(ksa_tape *tp, ksa_cp *cp, ksa_tensor *q, ksa_tensor *k,
                                     ksa_tensor *v, const ksa_summary_attn_dims *d);

/* Causal attention over the text rows of this rank's block (ring attention): q [nseq*T,
 * Hq*dh], k and v [nseq*T, Hkv*dh], T the block's length. With P = 1 it is
 * ksa_op_causal_attention.                                                              */
ksa_tensor *ksa_cp_causal_attention(ksa_tape *tp, ksa_cp *cp, ksa_tensor *q, ksa_tensor *k,
                                    ksa_tensor *v, size_t nseq, size_t Hq, size_t Hkv, size_t dh);

#endif
