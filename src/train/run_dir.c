/* run_dir.c - run ids and folder ownership, checkpoint names, listing, saving with rotation
 * and best.h5, resume lookup and rules. */
#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <math.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "ckpt/verify.h"
#include "data/path.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "optim/lr_schedule.h"

#define MAX_CHECKPOINTS 4096
#define MARKER ".ksa_run"
#define BEST "best.h5"

/* ---- run ids and the marker ------------------------------------------------------------- */
void ksa_run_new_id(char *id, size_t cap)
{
    uint64_t mine = 0;
    if (getrandom(&mine, sizeof mine, 0) != (ssize_t)sizeof mine)
        mine = 0; /* no kernel randomness: the clock and pid below still separate runs */
    mine = ksa_mix64(mine ^ (uint64_t)(ksa_now() * 1e9) ^ ((uint64_t)getpid() << 32));
    int n = ksa_dist_size();
    uint64_t *all = ksa_alloc((size_t)n * sizeof *all);
    if (ksa_dist_allgather_u64(&mine, 1, all) != KSA_OK)
        all[0] = mine; /* cannot happen with a working MPI: the run would stop anyway */
    snprintf(id, cap, "%016llx", (unsigned long long)all[0]);
    ksa_free(all);
}

int ksa_run_owns(const ksa_run_owner *o, const char *file_run_id)
{
    return !strcmp(file_run_id, o->id) || (o->adopt_unstamped && !file_run_id[0]);
}

void ksa_run_read_marker(const char *dir, char *id, size_t cap)
{
    char path[KSA_PATH_STR + 32];
    snprintf(path, sizeof path, "%s/" MARKER, dir);
    id[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(id, (int)cap, f))
        id[0] = '\0';
    id[strcspn(id, "\r\n")] = '\0';
    fclose(f);
}

/* DIR/.ksa_run := id, through a temporary file renamed into place. */
static ksa_status write_marker(const char *dir, const char *id)
{
    char path[KSA_PATH_STR + 32], tmp[KSA_PATH_STR + 40];
    snprintf(path, sizeof path, "%s/" MARKER, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return ksa_fail(KSA_EIO, "cannot write '%s': %s", tmp, strerror(errno));
    int ok = fprintf(f, "%s\n", id) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ksa_fail(KSA_EIO, "cannot write '%s': %s", path, strerror(errno));
    }
    return KSA_OK;
}

/* The run id of DIR/name ("?" when the file cannot be read as a checkpoint). */
static void file_run_id(const char *dir, const char *name, char *id, size_t cap)
{
    char path[KSA_PATH_STR + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (ksa_ckpt_read_run_id(path, id, cap) != KSA_OK)
        snprintf(id, cap, "?");
}

long ksa_run_checkpoint_step(const char *name)
{
    long step;
    char tail[8];
    if (strlen(name) != 16 || sscanf(name, "step_%8ld%3s", &step, tail) != 2 ||
        strcmp(tail, ".h5") != 0)
        return -1;
    return step;
}

size_t ksa_run_list_checkpoints(const char *dir, long *steps, size_t cap)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long s = ksa_run_checkpoint_step(e->d_name);
        if (s >= 0)
            steps[n++] = s;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort: a few hundred entries at most */
        for (size_t j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            long t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

/* Locks dir/.ksa_lock (flock, not blocking) and writes this pid into it; *fd keeps it. A
 * folder this run only reads (writable = 0) may be read-only: without a lock file it cannot be
 * some run's folder, and an existing one is locked through a read-only descriptor. */
static ksa_status lock_folder(const char *dir, const char *what, int writable, int *fd)
{
    char path[KSA_PATH_STR + 32];
    snprintf(path, sizeof path, "%s/.ksa_lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int can_write = *fd >= 0;
    if (!can_write && writable)
        return ksa_fail(KSA_EIO, "cannot write in %s '%s': %s", what, dir, strerror(errno));
    if (!can_write && (*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return KSA_OK; /* no lock file and none can be made: no run writes here */
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(*fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(*fd);
        *fd = -1;
        return ksa_fail(KSA_EINVAL,
                        "%s '%s' is in use by another run (pid %s): wait for it to end, or "
                        "choose another folder",
                        what, dir, pid[0] ? pid : "unknown");
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (can_write && (ftruncate(*fd, 0) != 0 || pwrite(*fd, text, (size_t)len, 0) != len))
        return ksa_fail(KSA_EIO, "cannot write '%s': %s", path, strerror(errno));
    return KSA_OK;
}

static ksa_status newest_of_run(const char *arg, const char *what, int verify, char *path,
                                size_t cap);

ksa_status ksa_run_resolve_resume(const char *arg, char *path, size_t cap)
{
    struct stat sb;
    if (stat(arg, &sb) != 0)
        return ksa_fail(KSA_EIO, "--resume %s: %s", arg, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(path, cap, "%s", arg);
        return KSA_OK;
    }
    /* A folder whose run is still writing is refused before anything is read. Rank 0 alone
     * looks (the ranks of one job would otherwise take the lock from each other); the other
     * ranks learn it in ksa_run_claim_outputs. */
    int fd = -1;
    if (ksa_dist_rank() == 0)
        KSA_TRY(lock_folder(arg, "the folder to resume from", 0, &fd));
    if (fd >= 0)
        close(fd);
    return newest_of_run(arg, "--resume ", 1, path, cap);
}

/* The newest step_*.h5 of dir that belongs to the run its marker names (any without a
 * marker) into path; what: the start of error messages. With verify, a checkpoint that is
 * damaged (ksa_ckpt_verify, values included) is passed over for the next older one of the
 * run, with a warning naming both; when none is sound, the error names the newest's damage. */
static ksa_status newest_of_run(const char *arg, const char *what, int verify, char *path,
                                size_t cap)
{
    long *steps = ksa_alloc(MAX_CHECKPOINTS * sizeof *steps);
    size_t n = ksa_run_list_checkpoints(arg, steps, MAX_CHECKPOINTS);
    char marker[KSA_CKPT_STAMP];
    ksa_run_read_marker(arg, marker, sizeof marker);
    /* the marker's run: its own checkpoints, or unstamped ones (written before run ids) */
    ksa_run_owner owner = {.adopt_unstamped = 1};
    snprintf(owner.id, sizeof owner.id, "%s", marker);
    size_t pick = n, n_owned = 0;
    char damaged[KSA_PATH_STR + 32] = "", why[1024] = "";
    ksa_status st = KSA_OK;
    for (size_t i = n; i-- > 0 && pick == n && st == KSA_OK;) {
        char name[32], id[KSA_CKPT_STAMP] = "";
        snprintf(name, sizeof name, "step_%08ld.h5", steps[i]);
        if (marker[0])
            file_run_id(arg, name, id, sizeof id);
        int unreadable = !strcmp(id, "?"); /* maybe the run's own, damaged */
        if (marker[0] && !ksa_run_owns(&owner, id) && !(verify && unreadable))
            continue;
        n_owned++;
        if ((size_t)snprintf(path, cap, "%s/%s", arg, name) >= cap)
            st = ksa_fail(KSA_EINVAL, "%s%s: the checkpoint path is too long", what, arg);
        else if (!verify || ksa_ckpt_verify(path, 1) == KSA_OK)
            pick = i;           /* an unreadable file does not pass the check */
        else if (!damaged[0]) { /* the newest: named in the warning or the error */
            snprintf(damaged, sizeof damaged, "%s", path);
            snprintf(why, sizeof why, "%s", ksa_last_error());
        }
    }
    if (st != KSA_OK) {
        ksa_free(steps);
        return st;
    }
    if (n == 0)
        st = ksa_fail(KSA_EIO, "%s%s: the folder holds no step_*.h5 checkpoint", what, arg);
    else if (n_owned == 0)
        st = ksa_fail(KSA_EIO, "%s%s: the folder holds no checkpoint of its run %s", what, arg,
                      marker);
    else if (pick == n)
        st = ksa_fail(KSA_EFORMAT, "%s%s: no undamaged checkpoint of the run; the newest: %s", what,
                      arg, why);
    else if (damaged[0] && ksa_dist_rank() == 0)
        fprintf(stderr, "warning: %s%s: %s; resuming from %s, the newest sound checkpoint\n", what,
                arg, why, path);
    ksa_free(steps);
    return st;
}

ksa_status ksa_run_read_resume(const char *arg, char *path, size_t cap, ksa_model_config *mc,
                               ksa_train_config *tc, ksa_ckpt_progress *pr)
{
    KSA_TRY(ksa_run_resolve_resume(arg, path, cap));
    KSA_TRY(ksa_ckpt_read_config(path, mc));
    return ksa_train_config_read_checkpoint(path, tc, pr);
}

ksa_status ksa_run_make_folder(const char *dir)
{
    return ksa_path_make_dirs(dir, "the checkpoint folder");
}

/* The checkpoints (step_*.h5, best.h5) of dir that are not the owner's: refused, or removed
 * when overwrite is set. Then the marker names the owner. dir is locked by this run. A folder
 * the marker already gives the owner is its own: a stray file of another run there is left
 * alone (rotation and resume pass it by). */
static ksa_status take_folder(const char *dir, const ksa_run_owner *owner, int overwrite, FILE *out)
{
    char marker[KSA_CKPT_STAMP];
    ksa_run_read_marker(dir, marker, sizeof marker);
    if (!strcmp(marker, owner->id))
        return KSA_OK;
    long *steps = ksa_alloc((MAX_CHECKPOINTS + 1) * sizeof *steps);
    size_t n = ksa_run_list_checkpoints(dir, steps, MAX_CHECKPOINTS);
    char best[KSA_PATH_STR + 32];
    snprintf(best, sizeof best, "%s/" BEST, dir);
    if (ksa_path_is_file(best))
        steps[n++] = -1; /* -1: best.h5 */
    size_t n_foreign = 0;
    char other[KSA_CKPT_STAMP] = "";
    for (size_t i = 0; i < n; i++) {
        char name[32], id[KSA_CKPT_STAMP];
        snprintf(name, sizeof name, steps[i] < 0 ? BEST : "step_%08ld.h5", steps[i]);
        file_run_id(dir, name, id, sizeof id);
        if (ksa_run_owns(owner, id))
            continue;
        if (!n_foreign)
            snprintf(other, sizeof other, "%s", id[0] ? id : "without a run id");
        steps[n_foreign++] = steps[i];
    }
    ksa_status st = KSA_OK;
    if (n_foreign && !overwrite)
        st = ksa_fail(KSA_EINVAL,
                      "the checkpoint folder '%s' holds %zu checkpoint%s of another run (run %s): "
                      "give a new --out folder, or --overwrite to delete them",
                      dir, n_foreign, n_foreign > 1 ? "s" : "", other);
    for (size_t i = 0; i < n_foreign && st == KSA_OK; i++) {
        char path[KSA_PATH_STR + 32];
        if (steps[i] < 0)
            snprintf(path, sizeof path, "%s", best);
        else
            snprintf(path, sizeof path, "%s/step_%08ld.h5", dir, steps[i]);
        if (unlink(path) != 0)
            st = ksa_fail(KSA_EIO, "--overwrite: cannot remove '%s': %s", path, strerror(errno));
        else
            fprintf(out, "# --overwrite: removed %s (another run's)\n", path);
    }
    ksa_free(steps);
    if (st == KSA_OK)
        st = write_marker(dir, owner->id);
    return st;
}

int ksa_run_same_folder(const char *a, const char *b)
{
    struct stat sa, sb;
    return b[0] && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static ksa_status claim_on_this_rank(const ksa_train_config *tc, const char *resume_dir,
                                     const ksa_run_owner *owner, int overwrite, FILE *out,
                                     ksa_run_lock *lk)
{
    if (tc->out[0]) {
        KSA_TRY(ksa_run_make_folder(tc->out));
        KSA_TRY(lock_folder(tc->out, "the checkpoint folder", 1, &lk->fd[0]));
        KSA_TRY(take_folder(tc->out, owner, overwrite, out));
    }
    if (resume_dir && !ksa_run_same_folder(resume_dir, tc->out))
        KSA_TRY(lock_folder(resume_dir, "the folder to resume from", 0, &lk->fd[1]));
    if (tc->log[0]) {
        KSA_TRY(ksa_path_make_parent(tc->log, "the log folder"));
        FILE *f = fopen(tc->log, "a"); /* creates it, truncates nothing */
        if (!f)
            return ksa_fail(KSA_EIO, "cannot open log '%s': %s", tc->log, strerror(errno));
        fclose(f);
    }
    return KSA_OK;
}

ksa_status ksa_run_claim_outputs(const ksa_train_config *tc, const char *resume_dir,
                                 const ksa_run_owner *owner, int overwrite, FILE *out,
                                 ksa_run_lock *lk)
{
    lk->fd[0] = lk->fd[1] = -1;
    ksa_status st = ksa_dist_rank() == 0
                        ? claim_on_this_rank(tc, resume_dir, owner, overwrite, out, lk)
                        : KSA_OK;
    int failed_rank;
    st = ksa_dist_agree(st, &failed_rank);
    if (st != KSA_OK)
        ksa_run_release(lk);
    return st;
}

void ksa_run_release(ksa_run_lock *lk)
{
    for (int i = 0; i < 2; i++)
        if (lk->fd[i] >= 0) {
            close(lk->fd[i]); /* closing the file drops the flock */
            lk->fd[i] = -1;
        }
}

ksa_status ksa_run_save(const ksa_trainer *t, const char *dir, long keep,
                        const ksa_run_owner *owner, FILE *out)
{
    char path[KSA_PATH_STR + 32];
    KSA_TRY(ksa_run_make_folder(dir));
    snprintf(path, sizeof path, "%s/step_%08ld.h5", dir, t->step);
    double t0 = ksa_now();
    KSA_TRY(ksa_trainer_save(t, path, NAN));
    fprintf(out, "# saved %s (%.2f s)\n", path, ksa_now() - t0);
    if (keep <= 0 || ksa_dist_rank() != 0)
        return KSA_OK;
    long *steps = ksa_alloc(MAX_CHECKPOINTS * sizeof *steps);
    size_t n = ksa_run_list_checkpoints(dir, steps, MAX_CHECKPOINTS), n_own = 0;
    for (size_t i = 0; i < n; i++) { /* the owner's checkpoints, oldest first */
        char name[32], id[KSA_CKPT_STAMP];
        snprintf(name, sizeof name, "step_%08ld.h5", steps[i]);
        file_run_id(dir, name, id, sizeof id);
        if (ksa_run_owns(owner, id))
            steps[n_own++] = steps[i];
    }
    for (size_t i = 0; i + (size_t)keep < n_own; i++) {
        char old[KSA_PATH_STR + 32];
        snprintf(old, sizeof old, "%s/step_%08ld.h5", dir, steps[i]);
        if (unlink(old) != 0)
            fprintf(stderr, "warning: cannot remove old checkpoint %s: %s\n", old, strerror(errno));
    }
    ksa_free(steps);
    return KSA_OK;
}

double ksa_run_best_so_far(const char *dir, const ksa_run_owner *owner)
{
    char path[KSA_PATH_STR + 32];
    snprintf(path, sizeof path, "%s/" BEST, dir);
    ksa_train_config tc;
    ksa_ckpt_progress pr;
    if (!ksa_path_is_file(path) || ksa_train_config_read_checkpoint(path, &tc, &pr) != KSA_OK ||
        !ksa_run_owns(owner, pr.run_id) || isnan(pr.val_loss))
        return INFINITY;
    return pr.val_loss;
}

ksa_status ksa_run_save_best(const ksa_trainer *t, const char *dir, double val_loss, FILE *out)
{
    char path[KSA_PATH_STR + 32];
    snprintf(path, sizeof path, "%s/" BEST, dir);
    KSA_TRY(ksa_trainer_save(t, path, val_loss));
    fprintf(out, "# best validation loss so far (%.4f at step %ld): saved %s\n", val_loss, t->step,
            path);
    return KSA_OK;
}

int ksa_run_may_change_on_resume(const char *key)
{
    static const char *const allowed[] = {"steps",
                                          "out",
                                          "log",
                                          "save_every",
                                          "keep",
                                          "save_best",
                                          "eval_every",
                                          "threads",
                                          "recompute",
                                          "context_parallel",
                                          "loss_spike_factor",
                                          "loss_spike_steps",
                                          "loss_spike_window",
                                          "loss_spike_action",
                                          "watchdog_factor",
                                          "watchdog_seconds"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!strcmp(key, allowed[i]))
            return 1;
    return 0;
}

/* The first key of the table whose values differ between a and b (skipping the keys a resume
 * may change when pr != NULL: the training keys), as an error. */
static ksa_status compare_keys(const ksa_config_key *keys, size_t n, const void *a, const void *b,
                               const char *what, const ksa_ckpt_progress *pr)
{
    for (size_t i = 0; i < n; i++) {
        const ksa_config_key *k = &keys[i];
        int data_path = !strcmp(k->name, "data") || !strcmp(k->name, "data_mix");
        if (pr && (ksa_run_may_change_on_resume(k->name) || (data_path && pr->data_identity[0]) ||
                   (!strcmp(k->name, "val_data") && pr->val_data_identity[0])))
            continue;
        size_t size = k->kind == KSA_KEY_STRING  ? strlen((const char *)a + k->offset) + 1
                      : k->kind == KSA_KEY_FLOAT ? sizeof(double)
                                                 : sizeof(long);
        if (memcmp((const char *)a + k->offset, (const char *)b + k->offset, size) != 0)
            return ksa_fail(
                KSA_EINVAL,
                "--resume: %s key '%s' differs from the checkpoint's; a resumed run "
                "may change only steps, out, log, save_every, keep, save_best, "
                "eval_every, threads, recompute, context_parallel, the loss_spike_* keys and the "
                "watchdog keys (and where its data lies)",
                what, k->name);
    }
    return KSA_OK;
}

/* A new `steps` changes the schedule when any remaining update k (steps_done <= k < new
 * steps) gets another learning rate than the old schedule gives it (past its end: its final
 * value). The first such update is *k_first. */
static int schedule_changes(const ksa_train_config *old_tc, const ksa_train_config *new_tc,
                            long steps_done, long *k_first, double *lr_old, double *lr_new)
{
    ksa_lr_schedule a, b;
    if (ksa_train_config_schedule(old_tc, &a) != KSA_OK ||
        ksa_train_config_schedule(new_tc, &b) != KSA_OK)
        return 0; /* the keys are checked (and refused) elsewhere */
    for (long k = steps_done; k < new_tc->steps; k++) {
        double x = ksa_lr_at(&a, k), y = ksa_lr_at(&b, k);
        if (x != y) {
            *k_first = k, *lr_old = x, *lr_new = y;
            return 1;
        }
    }
    return 0;
}

ksa_status ksa_run_check_resume(const char *path, const ksa_model_config *given_mc,
                                const ksa_model_config *stored_mc, const ksa_train_config *given_tc,
                                const ksa_train_config *stored_tc, const ksa_ckpt_progress *pr,
                                int allow_schedule_change, FILE *out)
{
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    KSA_TRY(compare_keys(keys, n, given_mc, stored_mc, "model", NULL));
    keys = ksa_train_config_keys(&n);
    KSA_TRY(compare_keys(keys, n, given_tc, stored_tc, "training", pr));
    long steps_done = pr->step;
    if (given_tc->steps <= steps_done)
        return ksa_fail(KSA_EINVAL,
                        "%s has completed %ld steps; steps = %ld leaves nothing to do (raise "
                        "--steps)",
                        path, steps_done, given_tc->steps);
    long k;
    double lr_old, lr_new;
    if (!schedule_changes(stored_tc, given_tc, steps_done, &k, &lr_old, &lr_new))
        return KSA_OK;
    char a[32], b[32];
    ksa_format_double(a, lr_old);
    ksa_format_double(b, lr_new);
    if (!allow_schedule_change)
        return ksa_fail(KSA_EINVAL,
                        "--resume: steps %ld -> %ld reshapes the %s learning-rate schedule: "
                        "step %ld would run at lr %s instead of %s; give "
                        "--allow-schedule-change to accept the new schedule from step %ld on",
                        stored_tc->steps, given_tc->steps, given_tc->lr_schedule, k + 1, b, a,
                        steps_done + 1);
    if (ksa_dist_rank() == 0)
        fprintf(out,
                "# schedule change (--allow-schedule-change): steps %ld -> %ld; step %ld runs at "
                "lr %s instead of %s\n",
                stored_tc->steps, given_tc->steps, k + 1, b, a);
    return KSA_OK;
}

ksa_status ksa_run_newest_checkpoint(const char *arg, char *path, size_t cap)
{
    struct stat sb;
    int n_written;
    if (stat(arg, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        n_written = snprintf(path, cap, "%s", arg);
        if (n_written < 0 || (size_t)n_written >= cap)
            return ksa_fail(KSA_EINVAL, "checkpoint path '%s' is too long", arg);
        return KSA_OK;
    }
    return newest_of_run(arg, "", 0, path, cap);
}

ksa_status ksa_run_checkpoint_mix(const char *path, ksa_model *m, long *step)
{
    m->summary_mix = 1;
    *step = -1;
    if (!m->layout.mix_qkv)
        return KSA_OK;
    int has_train;
    KSA_TRY(ksa_ckpt_has(path, "/train", &has_train));
    if (!has_train)
        return KSA_OK;
    ksa_train_config stored;
    ksa_ckpt_progress pr;
    KSA_TRY(ksa_train_config_read_checkpoint(path, &stored, &pr));
    *step = pr.step;
    m->summary_mix = ksa_summary_mix_coeff(&m->config, pr.step);
    return KSA_OK;
}
