/* run_dir.h - the folder of a run: its checkpoints DIR/step_%08ld.h5 (CHECKPOINT_FORMAT.md,
 * Writing) and DIR/best.h5, saving with rotation, finding the checkpoint to resume, and
 * which settings a resumed run may change.
 *
 * A folder belongs to one run. Every run has an id (16 hex digits, new for a fresh run or
 * a fine-tune, kept by a resume), written into each of its checkpoints (/train run_id) and
 * into the marker file DIR/.ksa_run. A fresh run refuses a folder holding another run's
 * checkpoints (unless told to overwrite them); rotation (--keep) removes only the run's own
 * files; --resume DIR takes the newest checkpoint of the run the marker names.           */
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

/* ---- run ids --------------------------------------------------------------------------- */
/* A new run id, the same on every rank (rank 0's; collective under MPI). */
void ksa_run_new_id(char *id, size_t cap);

/* Whose files a run may rotate and resume: its own (run_id = id) and, when it resumed a
 * checkpoint written before run ids existed, the unstamped files of that folder. */
typedef struct {
    char id[KSA_CKPT_STAMP];
    int adopt_unstamped;
} ksa_run_owner;
int ksa_run_owns(const ksa_run_owner *o, const char *file_run_id);

/* The id in DIR/.ksa_run ("" when there is none). */
void ksa_run_read_marker(const char *dir, char *id, size_t cap);

/* --resume ARG: a checkpoint file as given, or a folder's newest checkpoint of the run its
 * marker names (any run's without a marker); a folder another run holds is refused (checked
 * on rank 0). */
ksa_status ksa_run_resolve_resume(const char *arg, char *path, size_t cap);

/* --resume ARG: the checkpoint it names (ksa_run_resolve_resume) into path, and that
 * checkpoint's model configuration, training keys and progress (steps, tokens, stamps). */
ksa_status ksa_run_read_resume(const char *arg, char *path, size_t cap, ksa_model_config *mc,
                               ksa_train_config *tc, ksa_ckpt_progress *pr);

/* a and b name the same existing folder ("runs/x" and "/home/u/runs/x/"), by device and
 * inode; 0 when either is empty or does not exist. */
int ksa_run_same_folder(const char *a, const char *b);

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

/* Collective under MPI (rank 0 touches the files and prints to out, every rank gets the
 * verdict). Before step 1: creates tc->out, locks it and makes it the owner's: checkpoints of
 * another run there are refused, or removed when overwrite is set (each named on out), and
 * the marker is written; creates the folder of tc->log and checks the log can be opened for
 * appending (a missing or unwritable location fails now, not at the first save hours later);
 * locks resume_dir (the folder a --resume reads; NULL: none) unless it is tc->out. */
ksa_status ksa_run_claim_outputs(const ksa_train_config *tc, const char *resume_dir,
                                 const ksa_run_owner *owner, int overwrite, FILE *out,
                                 ksa_run_lock *lk);
void ksa_run_release(ksa_run_lock *lk);

/* Collective under MPI. Saves DIR/step_N.h5 (N = t->step), prints "# saved ..." to out,
 * then, when keep > 0, removes the owner's oldest checkpoints beyond keep (only once the new
 * one is in place, so a failed save never costs an older checkpoint; rank 0 removes; files
 * of other runs are never touched). */
ksa_status ksa_run_save(const ksa_trainer *t, const char *dir, long keep,
                        const ksa_run_owner *owner, FILE *out);

/* --save-best: DIR/best.h5, a training checkpoint stamped with the validation loss it was
 * saved for (/train val_loss). The loss of the owner's best.h5 in dir, or +inf when there is
 * none (or it is another run's). */
double ksa_run_best_so_far(const char *dir, const ksa_run_owner *owner);
/* Collective under MPI: saves DIR/best.h5 for val_loss (replacing the previous one only once
 * the new one is complete) and prints "# best ..." to out. */
ksa_status ksa_run_save_best(const ksa_trainer *t, const char *dir, double val_loss, FILE *out);

/* Resume rules: the model keys and the training keys given (checkpoint's values overridden
 * by the command line) must equal the stored ones, except the training keys steps, out,
 * log, save_every, keep, save_best, eval_every, threads, recompute, the loss-spike
 * guard's (loss_spike_factor, _steps, _window, _action), watchdog_factor and
 * watchdog_seconds, and the data paths (data,
 * data_mix; val_data) when the checkpoint records the data's identity (pr), which the
 * trainer then checks; steps must exceed the steps done. A new `steps` that changes the
 * learning rate of any remaining update (the old schedule continuing at its final value
 * past its end) is refused unless allow_schedule_change; either way the change is printed
 * on out (rank 0). */
int ksa_run_may_change_on_resume(const char *key);
ksa_status ksa_run_check_resume(const char *path, const ksa_model_config *given_mc,
                                const ksa_model_config *stored_mc, const ksa_train_config *given_tc,
                                const ksa_train_config *stored_tc, const ksa_ckpt_progress *pr,
                                int allow_schedule_change, FILE *out);

/* --ckpt ARG of the commands that only read a checkpoint (eval, sample): a file as given (a
 * missing one is the checkpoint reader's error), or a folder's highest-numbered step_%08ld.h5
 * into path; a folder without one is an error. Takes no lock: reading needs none.        */
ksa_status ksa_run_newest_checkpoint(const char *arg, char *path, size_t cap);

/* The annealing coefficient (KSA_SPEC §5.5) a model read from the checkpoint at path runs
 * with, into m->summary_mix: that of the checkpoint's last completed step (its /train step;
 * ksa_summary_mix_coeff(config, step)); 1 for a checkpoint without /train (step 0: ksa init,
 * an import) and for a model that does not anneal (the file is then not opened). *step gets
 * the step (-1: no /train or not read). Evaluation and sampling call it after reading.   */
ksa_status ksa_run_checkpoint_mix(const char *path, ksa_model *m, long *step);

#endif
