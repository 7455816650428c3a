/* run_dir.c - checkpoint names, listing, saving with rotation, resume lookup and rules. */
#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "data/path.h"
#include "dist/dist.h"

#define MAX_CHECKPOINTS 4096

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
    long *steps = ksa_alloc(MAX_CHECKPOINTS * sizeof *steps);
    size_t n = ksa_run_list_checkpoints(arg, steps, MAX_CHECKPOINTS);
    ksa_status st = KSA_OK;
    if (n == 0)
        st = ksa_fail(KSA_EIO, "--resume %s: the folder holds no step_*.h5 checkpoint", arg);
    else
        snprintf(path, cap, "%s/step_%08ld.h5", arg, steps[n - 1]);
    ksa_free(steps);
    return st;
}

ksa_status ksa_run_read_resume(const char *arg, char *path, size_t cap, ksa_model_config *mc,
                               ksa_train_config *tc, long *steps_done,
                               unsigned long long *tokens_seen)
{
    KSA_TRY(ksa_run_resolve_resume(arg, path, cap));
    KSA_TRY(ksa_ckpt_read_config(path, mc));
    return ksa_train_config_read_checkpoint(path, tc, steps_done, tokens_seen);
}

ksa_status ksa_run_make_folder(const char *dir)
{
    return ksa_path_make_dirs(dir, "the checkpoint folder");
}

static ksa_status claim_on_this_rank(const ksa_train_config *tc, const char *resume_dir,
                                     ksa_run_lock *lk)
{
    if (tc->out[0]) {
        KSA_TRY(ksa_run_make_folder(tc->out));
        KSA_TRY(lock_folder(tc->out, "the checkpoint folder", 1, &lk->fd[0]));
    }
    if (resume_dir && strcmp(resume_dir, tc->out) != 0)
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
                                 ksa_run_lock *lk)
{
    lk->fd[0] = lk->fd[1] = -1;
    ksa_status st = ksa_dist_rank() == 0 ? claim_on_this_rank(tc, resume_dir, lk) : KSA_OK;
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

ksa_status ksa_run_save(const ksa_trainer *t, const char *dir, long keep, FILE *out)
{
    char path[KSA_PATH_STR + 32];
    KSA_TRY(ksa_run_make_folder(dir));
    snprintf(path, sizeof path, "%s/step_%08ld.h5", dir, t->step);
    double t0 = ksa_now();
    KSA_TRY(ksa_trainer_save(t, path));
    fprintf(out, "# saved %s (%.2f s)\n", path, ksa_now() - t0);
    if (keep <= 0)
        return KSA_OK;
    long *steps = ksa_alloc(MAX_CHECKPOINTS * sizeof *steps);
    size_t n = ksa_run_list_checkpoints(dir, steps, MAX_CHECKPOINTS);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char old[KSA_PATH_STR + 32];
        snprintf(old, sizeof old, "%s/step_%08ld.h5", dir, steps[i]);
        if (ksa_dist_rank() == 0 && unlink(old) != 0)
            fprintf(stderr, "warning: cannot remove old checkpoint %s: %s\n", old, strerror(errno));
    }
    ksa_free(steps);
    return KSA_OK;
}

int ksa_run_may_change_on_resume(const char *key)
{
    static const char *const allowed[] = {"steps", "out",        "log",    "save_every",
                                          "keep",  "eval_every", "threads"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!strcmp(key, allowed[i]))
            return 1;
    return 0;
}

/* The first key of the table whose values differ between a and b (skipping the keys a resume
 * may change when `train`), as an error. */
static ksa_status compare_keys(const ksa_config_key *keys, size_t n, const void *a, const void *b,
                               const char *what, int train)
{
    for (size_t i = 0; i < n; i++) {
        const ksa_config_key *k = &keys[i];
        if (train && ksa_run_may_change_on_resume(k->name))
            continue;
        size_t size = k->kind == KSA_KEY_STRING  ? strlen((const char *)a + k->offset) + 1
                      : k->kind == KSA_KEY_FLOAT ? sizeof(double)
                                                 : sizeof(long);
        if (memcmp((const char *)a + k->offset, (const char *)b + k->offset, size) != 0)
            return ksa_fail(KSA_EINVAL,
                            "--resume: %s key '%s' differs from the checkpoint's; a resumed run "
                            "may change only steps, out, log, save_every, keep, eval_every and "
                            "threads",
                            what, k->name);
    }
    return KSA_OK;
}

ksa_status ksa_run_check_resume(const char *path, const ksa_model_config *given_mc,
                                const ksa_model_config *stored_mc, const ksa_train_config *given_tc,
                                const ksa_train_config *stored_tc, long steps_done)
{
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    KSA_TRY(compare_keys(keys, n, given_mc, stored_mc, "model", 0));
    keys = ksa_train_config_keys(&n);
    KSA_TRY(compare_keys(keys, n, given_tc, stored_tc, "training", 1));
    if (given_tc->steps <= steps_done)
        return ksa_fail(KSA_EINVAL,
                        "%s has completed %ld steps; steps = %ld leaves nothing to do (raise "
                        "--steps)",
                        path, steps_done, given_tc->steps);
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
    long *steps = ksa_alloc(MAX_CHECKPOINTS * sizeof *steps);
    size_t n = ksa_run_list_checkpoints(arg, steps, MAX_CHECKPOINTS);
    long newest = n ? steps[n - 1] : -1;
    ksa_free(steps);
    if (n == 0)
        return ksa_fail(KSA_EIO, "folder '%s' holds no checkpoint (no step_*.h5 file)", arg);
    n_written = snprintf(path, cap, "%s/step_%08ld.h5", arg, newest);
    if (n_written < 0 || (size_t)n_written >= cap)
        return ksa_fail(KSA_EINVAL, "checkpoint path '%s/step_%08ld.h5' is too long", arg, newest);
    return KSA_OK;
}
