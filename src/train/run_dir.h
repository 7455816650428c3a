/* run_dir.h - the folder of a run: its checkpoints DIR/step_%08ld.h5 (CHECKPOINT_FORMAT.md,
 * Writing), saving with rotation, finding the checkpoint to resume, and which settings a
 * resumed run may change.                                                                  */
#ifndef KSA_TRAIN_RUN_DIR_H
#define KSA_TRAIN_RUN_DIR_H

#include <stdio.h>

#include "core/core.h"
#include "model/config.h"
#include "train/train_config.h"
#include "train/trainer.h"

/* The step of a checkpoint file name "step_%08ld.h5", or -1 (".tmp" files and others). */
long ksa_run_checkpoint_step(const char *name);

/* The steps of the checkpoints in dir, ascending; returns how many (at most cap; 0 when the
 * folder cannot be read). */
size_t ksa_run_list_checkpoints(const char *dir, long *steps, size_t cap);

/* --resume ARG: a checkpoint file as given, or a folder's highest-numbered checkpoint; a folder
 * another run holds is refused (checked on rank 0). */
ksa_status ksa_run_resolve_resume(const char *arg, char *path, size_t cap);

/* --resume ARG: the checkpoint it names (ksa_run_resolve_resume) into path, and that
 * checkpoint's model configuration, training keys, steps done and tokens seen. */
ksa_status ksa_run_read_resume(const char *arg, char *path, size_t cap, ksa_model_config *mc,
                               ksa_train_config *tc, long *steps_done,
                               unsigned long long *tokens_seen);

/* Creates dir and its parents (mkdir -p). */
ksa_status ksa_run_make_folder(const char *dir);

/* ---- the run's hold on its folders ------------------------------------------------------ *
 * A run holds an advisory lock (flock) on DIR/.ksa_lock of its checkpoint folder for its
 * whole life, and on the folder it resumes from; the lock file holds the holder's pid. A
 * second run on a held folder (or a --resume of a folder whose run is still writing) is
 * refused naming that pid; the lock goes away with the process, however it ends.        */
typedef struct {
    int fd[2]; /* -1: none */
} ksa_run_lock;

/* Collective under MPI (rank 0 touches the files, every rank gets the verdict). Before step 1:
 * creates tc->out and locks it, creates the folder of tc->log and checks the log can be
 * opened for appending (a missing or unwritable location fails now, not at the first save
 * hours later), and locks resume_dir (the folder a --resume reads; NULL: none) unless it is
 * tc->out. */
ksa_status ksa_run_claim_outputs(const ksa_train_config *tc, const char *resume_dir,
                                 ksa_run_lock *lk);
void ksa_run_release(ksa_run_lock *lk);

/* Collective under MPI. Saves DIR/step_N.h5 (N = t->step), prints "# saved ..." to out,
 * then, when keep > 0, removes the oldest checkpoints beyond keep (only once the new one is
 * in place, so a failed save never costs an older checkpoint; rank 0 removes). */
ksa_status ksa_run_save(const ksa_trainer *t, const char *dir, long keep, FILE *out);

/* Resume rules: the model keys and the training keys given (checkpoint's values overridden
 * by the command line) must equal the stored ones, except the training keys steps, out,
 * log, save_every, keep, eval_every and threads; and steps must exceed the steps done. */
int ksa_run_may_change_on_resume(const char *key);
ksa_status ksa_run_check_resume(const char *path, const ksa_model_config *given_mc,
                                const ksa_model_config *stored_mc, const ksa_train_config *given_tc,
                                const ksa_train_config *stored_tc, long steps_done);

/* --ckpt ARG of the commands that only read a checkpoint (eval, sample): a file as given (a
 * missing one is the checkpoint reader's error), or a folder's highest-numbered step_%08ld.h5
 * into path; a folder without one is an error. Takes no lock: reading needs none.        */
ksa_status ksa_run_newest_checkpoint(const char *arg, char *path, size_t cap);

#endif
