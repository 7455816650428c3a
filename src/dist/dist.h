/* dist.h - MPI: start-up, rank and size, shutdown. One code path for 1 and N ranks: a
 * process started without mpirun initialises MPI as a singleton (DESIGN.md §1). Data
 * parallelism and sharding build on this (docs/mpi.md).                               */
#ifndef KSA_DIST_DIST_H
#define KSA_DIST_DIST_H

#include <stdint.h>

#include "core/core.h"

/* MPI_Init (once); sets ksa_log_rank so errors are prefixed with the rank. */
ksa_status ksa_dist_init(int *argc, char ***argv);
void ksa_dist_finalize(void);
/* MPI_Abort of the whole job with exit code `code` (a plain exit without several ranks). */
void ksa_dist_abort(int code);
int ksa_dist_rank(void); /* 0 without MPI (not initialised, or finalised) */
int ksa_dist_size(void); /* 1 without MPI */
/* 1 while MPI is initialised and not finalised (a singleton counts). */
int ksa_dist_active(void);
/* Ranks on this host (MPI_COMM_TYPE_SHARED), for the default thread count per rank. */
int ksa_dist_local_size(void);

/* ---- collectives over the flat buffers (DESIGN.md §5) ---------------------------------- *
 * MPI counts are int: buffers longer than the largest count (INT_MAX, or KSA_MPI_MAX_COUNT
 * from the environment, which tests set small to exercise it) are moved in pieces.      */

/* grad: [N·s] on every rank (N = ranks); slice: [s]. slice = sum over ranks of
 * grad[r·s, (r+1)·s) for this rank r (MPI_Reduce_scatter_block, or per-rank reduces). */
ksa_status ksa_dist_reduce_scatter(const ksa_real *grad, ksa_real *slice, size_t s);
/* data: [N·s]; on entry this rank's slice [r·s, (r+1)·s) is current; on return every
 * rank holds every slice (in-place allgather, or per-rank broadcasts).             */
ksa_status ksa_dist_allgather(ksa_real *data, size_t s);
/* buf[i] = sum over ranks of buf[i], in place (n may exceed an int count). */
ksa_status ksa_dist_sum_reals(ksa_real *buf, size_t n);
/* x[i] = sum over ranks of x[i], in place. */
ksa_status ksa_dist_sum(double *x, int n);
/* 1 on every rank if flag is non-zero on any rank. */
int ksa_dist_any(int flag);

/* Every rank's status after one step of a collective operation (all ranks call it): if any
 * rank failed, every rank returns an error, so all of them take the same path next and no
 * rank is left waiting in a collective another will not enter. A failing rank returns its
 * own st (its message kept); the others return the first failing rank's code with the
 * message "rank R failed (its message says why)" and *failed_rank = R (-1 otherwise). One
 * allreduce of two ints. */
ksa_status ksa_dist_agree(ksa_status st, int *failed_rank);

/* 1 once a failure has been agreed by every rank: ksa_dist_agree returned an error, or the
 * caller declared one with ksa_dist_failing_together. A command that agrees its failures
 * ends the job at once when it fails without that (ksa_cli_run_on_ranks): the other ranks
 * may be waiting for this one in a collective it will never enter.                     */
int ksa_dist_failure_agreed(void);
/* Declares the failure being returned every rank's: decided from values all ranks share
 * after a collective (a step's summed loss, gradient norm or error flags), so every rank
 * returns it at the same point. */
void ksa_dist_failing_together(void);

/* The ranks' resolved settings, as text of "key = value" lines in one order of keys (all
 * ranks call it): KSA_OK on every rank when every rank holds the same text (one allgather
 * of a 64-bit hash), else the same error on every rank, naming the first key whose line
 * differs between rank 0 and the first rank whose text differs, with both values:
 * "the ranks do not run the same <what>: seq_len = 64 on rank 0, 128 on rank 1". */
ksa_status ksa_dist_same_settings(const char *text, const char *what);

/* ---- the watchdog (docs/mpi.md, "A rank that stops") ----------------------------------- *
 * With several ranks, a thread per rank tells the others, on a communicator of its own,
 * how many collectives of src/dist this rank has entered: at once when it enters one, and
 * twice a second. When this rank has waited in a collective for longer than the limit, the
 * thread names the ranks that have not entered it ("rank 1 did not arrive at step 5 within
 * 2 s"), or, when all have, those it has not heard from for a few seconds (stopped inside
 * it), prints that as "[rank r] <who>: ..." and ends the job with MPI_Abort. Needs
 * MPI_THREAD_MULTIPLE (ksa_dist_init asks for it); without, it stays off and says so. */

/* Starts the thread; all ranks call it at the same point of the program (their counts of
 * collectives must match). who: the prefix of its messages ("ksa train"). One rank: no-op. */
ksa_status ksa_dist_watch_start(const char *who);
/* From now on a rank waits at most limit seconds in a collective (0: without limit), for
 * step `step` of the run (its number in messages); why: where the limit comes from
 * ("watchdog_seconds"), for the message. Cheap: call it every step.                    */
void ksa_dist_watch_set(long step, double limit, const char *why);

/* The end of a command, on every rank: *n_with_text = ranks whose text is not "", *all_same =
 * 1 if every rank holds the same text (compared by a 64-bit hash). It runs on a communicator
 * of its own, so a rank that failed alone and comes here while the others wait in a
 * collective of the computation matches nothing of theirs: a rank with text waits at most
 * timeout seconds for the others (KSA_EMPI then: they are not coming), one without waits
 * as long as it takes. One allgather of two integers per rank.                          */
ksa_status ksa_dist_compare_text(const char *text, double timeout, int *n_with_text, int *all_same);

/* all[r·n + i] = mine[i] of rank r (MPI_Allgather; a copy with one rank). */
ksa_status ksa_dist_allgather_u64(const uint64_t *mine, int n, uint64_t *all);

void ksa_dist_barrier(void); /* MPI_Barrier with several ranks */

/* For the collectives of src/dist's other files (context.c): a wait in MPI that the watchdog
 * watches, between enter and leave. */
void ksa_dist_enter_collective(void);
void ksa_dist_leave_collective(void);

#endif
