/* loss_guard.h - the loss-spike guard: finite divergence caught before it is trained on.
 *
 * The guard keeps the last `window` normal losses of a run. A step's loss is *high* when it
 * exceeds factor x the median of those losses (judged once one is there); a step that has
 * been high `steps` times in a row is a *spike*, which the caller acts on (docs/training.md,
 * "Divergence": the run stops, or the step's update is skipped). Only normal losses join the
 * window, so a divergence cannot raise the median it is compared with; a step that is not
 * high ends the run of high steps. factor = 0 switches the guard off: every loss is normal.
 *
 * The state is a few numbers and the window; it goes into every training checkpoint
 * (CHECKPOINT_FORMAT.md, /train loss_window, loss_high_steps, skipped_steps) so that a
 * resumed run judges every step as the uninterrupted one would. Pure: no MPI, no files;
 * under MPI every rank feeds it the same global loss and so holds the same state.         */
#ifndef KSA_OPTIM_LOSS_GUARD_H
#define KSA_OPTIM_LOSS_GUARD_H

#include "core/core.h"

#define KSA_LOSS_GUARD_MAX_WINDOW 1000 /* the largest loss_spike_window */

typedef struct {
    double recent[KSA_LOSS_GUARD_MAX_WINDOW]; /* the last n normal losses, oldest first */
    size_t n;
    long high_steps; /* consecutive high steps up to the last one judged (0: it was normal) */
    long skipped;    /* steps of the run whose update was skipped (the caller counts them) */
} ksa_loss_guard;

typedef enum {
    KSA_LOSS_NORMAL, /* not above the threshold (or not judged): joins the window */
    KSA_LOSS_HIGH,   /* above it, fewer than `steps` times in a row: counted only */
    KSA_LOSS_SPIKE,  /* above it `steps` times in a row or more: act on it */
} ksa_loss_verdict;

/* Median of x[0..n) (the mean of the two middle values when n is even; NaN for n = 0).
 * x is not changed. n <= KSA_LOSS_GUARD_MAX_WINDOW.                                    */
double ksa_loss_median(const double *x, size_t n);

/* Judges a finite loss against the newest min(n, window) losses of g and records it: a
 * normal loss joins the window (the oldest leaves once `window` are there) and clears
 * high_steps, a high one increments high_steps. *median: the median it was compared with
 * (NaN when not judged: the guard is off or the window is empty). window: 1 ... MAX.     */
ksa_loss_verdict ksa_loss_guard_judge(ksa_loss_guard *g, double loss, double factor, long steps,
                                      long window, double *median);

#endif
