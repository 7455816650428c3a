/* run.h - a training run from its next step to its last: one progress line per step, the
 * validation loss every eval_every steps, the JSONL log, checkpoints every save_every steps
 * and at the end, MFU against the machine's peak, and a clean stop on SIGINT, SIGTERM,
 * SIGHUP or SIGUSR1 (the ranks agree on the step, finish it and save).
 *
 * Progress line: step/total | loss | lr | grad norm | tokens/s | MFU | elapsed | ETA
 * [| val loss]. Log (--log): one JSON object per step; loss, lr, grad_norm and val_loss in
 * full precision (%.17g), timings %.9g (docs/training.md). Only rank 0 prints and logs.   */
#ifndef KSA_TRAIN_RUN_H
#define KSA_TRAIN_RUN_H

#include <stdio.h>

#include "train/run_dir.h"
#include "train/trainer.h"

/* The peak of the run for MFU, in GFLOP/s: tc->peak_gflops when set; otherwise, on rank 0,
 * the peak of one rank's GEMM as the run configures BLAS (ksa_real precision, the current
 * threads, OpenBLAS's core type: a 2048^3 GEMM, cached per CPU model, core type, precision
 * and threads in $XDG_CACHE_HOME/ksa or ~/.cache/ksa; measured again when remeasure is set,
 * the cached figure is more than a day old or implausible) times the ranks; 1 on the other
 * ranks (they print nothing). Prints "# MFU against ..." to out: the peak, how it is made up,
 * the cache key, and where the figure came from (cached when, measured now, re-measured why). */
double ksa_run_peak_gflops(const ksa_train_config *tc, int remeasure, FILE *out);

/* How a run ended. */
typedef enum {
    KSA_RUN_FINISHED,        /* every step done */
    KSA_RUN_STOPPED_SAVED,   /* stopped by a signal, a checkpoint of the last step saved */
    KSA_RUN_STOPPED_UNSAVED, /* stopped by a signal without an out folder */
} ksa_run_end;

/* Trains t from t->step to tc->steps. owner: whose checkpoints --keep rotates and whose
 * best.h5 --save-best continues (run_dir.h). step_flops: ksa_model_step_flops of a step;
 * peak: ksa_run_peak_gflops. append_log: a resumed run appends to its log (which then reads
 * as one run). Progress goes to out. Installs SIGINT, SIGTERM, SIGHUP and SIGUSR1 handlers
 * for the run's duration. A log line that cannot be written stops the run (all ranks) with
 * an error naming the log and the reason, before that step is saved. */
ksa_status ksa_run_train(ksa_trainer *t, const ksa_train_config *tc, const ksa_run_owner *owner,
                         double step_flops, double peak, int append_log, FILE *out,
                         ksa_run_end *end);

#endif
