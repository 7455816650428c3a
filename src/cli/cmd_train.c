/* cmd_train.c - `ksa train --config X [--key value ...] [--dry-run] [--sample N]`: prints
 * the resolved configuration, layer kinds, parameter count and memory plan, then trains:
 * one progress line per step (step/total, loss, lr, grad norm, tokens/s, MFU, elapsed,
 * ETA), validation loss every eval_every steps, a JSONL log with --log, and optionally a
 * sample of text from the trained model. MFU = ksa_model_step_flops / step time / peak,
 * the peak being peak_gflops or a measured sgemm (cached per thread count).            */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/blas.h"
#include "ckpt/ckpt.h"
#include "ckpt/init_from.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "dist/dist.h"
#include "model/decoder.h"
#include "model/sample.h"
#include "optim/trainer.h"

/* Peak GFLOP/s of this machine for `threads` threads: measured once (a 2048^3 sgemm) and
 * kept in $XDG_CACHE_HOME/ksa (or ~/.cache/ksa), so later runs start at once. */
static double machine_peak_gflops(int threads)
{
    char dir[1024] = "", path[1100] = "";
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0])
        snprintf(dir, sizeof dir, "%s/ksa", xdg);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.cache/ksa", home);
    if (dir[0]) {
        snprintf(path, sizeof path, "%s/sgemm_peak_%s_%dthreads", dir, KSA_REAL_NAME, threads);
        FILE *f = fopen(path, "r");
        double v = 0;
        if (f) {
            int ok = fscanf(f, "%lf", &v) == 1 && v > 0;
            fclose(f);
            if (ok)
                return v;
        }
    }
    double v = ksa_blas_measure_gflops(2048, 3);
    if (dir[0]) { /* best effort: a read-only home only costs the measurement next time */
        char parent[1024];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash) {
            *slash = '\0';
            mkdir(parent, 0755);
        }
        mkdir(dir, 0755);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%.6g\n", v);
            fclose(f);
        }
    }
    return v;
}

/* ---- checkpoints of a run: DIR/step_%08d.h5 ---------------------------------------------- */
static volatile sig_atomic_t stop_requested = 0;
static void request_stop(int sig)
{
    stop_requested = sig;
}

/* Step number of a file name "step_%08ld.h5", or -1 (".tmp" files and others). */
static long checkpoint_step(const char *name)
{
    long step;
    char tail[8];
    if (strlen(name) != 16 || sscanf(name, "step_%8ld%3s", &step, tail) != 2 ||
        strcmp(tail, ".h5") != 0)
        return -1;
    return step;
}

/* Steps of the checkpoints in dir, ascending; returns how many (at most cap). */
static size_t list_checkpoints(const char *dir, long *steps, size_t cap)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long s = checkpoint_step(e->d_name);
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

/* A folder means its highest-numbered checkpoint. */
static ksa_status resolve_resume(const char *arg, char *path, size_t cap)
{
    struct stat sb;
    if (stat(arg, &sb) != 0)
        return ksa_fail(KSA_EIO, "--resume %s: %s", arg, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(path, cap, "%s", arg);
        return KSA_OK;
    }
    long steps[4096];
    size_t n = list_checkpoints(arg, steps, 4096);
    if (n == 0)
        return ksa_fail(KSA_EIO, "--resume %s: the folder holds no step_*.h5 checkpoint", arg);
    snprintf(path, cap, "%s/step_%08ld.h5", arg, steps[n - 1]);
    return KSA_OK;
}

static ksa_status make_folder(const char *dir)
{
    char buf[KSA_PATH_STR];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ksa_fail(KSA_EIO, "cannot create the checkpoint folder '%s': %s", dir,
                        strerror(errno));
    return KSA_OK;
}

/* Saves DIR/step_N.h5, then removes the oldest beyond `keep` (only once the new one is in
 * place, so a failed save never costs an older checkpoint). */
static ksa_status save_checkpoint(const ksa_trainer *t, const ksa_train_config *tc)
{
    char path[KSA_PATH_STR + 32];
    KSA_TRY(make_folder(tc->out));
    snprintf(path, sizeof path, "%s/step_%08ld.h5", tc->out, t->step);
    double t0 = ksa_now();
    KSA_TRY(ksa_trainer_save(t, path));
    printf("# saved %s (%.2f s)\n", path, ksa_now() - t0);
    if (tc->keep > 0) {
        long steps[4096];
        size_t n = list_checkpoints(tc->out, steps, 4096);
        for (size_t i = 0; i + (size_t)tc->keep < n; i++) {
            char old[KSA_PATH_STR + 32];
            snprintf(old, sizeof old, "%s/step_%08ld.h5", tc->out, steps[i]);
            if (ksa_dist_rank() == 0 && unlink(old) != 0)
                fprintf(stderr, "warning: cannot remove old checkpoint %s: %s\n", old,
                        strerror(errno));
        }
    }
    return KSA_OK;
}

/* On resume only these training keys may differ from the checkpoint's. */
static int may_change_on_resume(const char *key)
{
    static const char *const allowed[] = {"steps", "out",        "log",    "save_every",
                                          "keep",  "eval_every", "threads"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!strcmp(key, allowed[i]))
            return 1;
    return 0;
}

static ksa_status compare_keys(const ksa_config_key *keys, size_t n, const void *a, const void *b,
                               const char *what, int train)
{
    for (size_t i = 0; i < n; i++) {
        const ksa_config_key *k = &keys[i];
        if (train && may_change_on_resume(k->name))
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

static void format_duration(char *buf, size_t cap, double seconds)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static int train_main(int argc, char **argv);

/* MPI is up for the whole run: checkpoints are written with MPI-IO (parallel HDF5). */
int ksa_cmd_train(int argc, char **argv)
{
    if (ksa_dist_init(&argc, &argv) != KSA_OK) {
        fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
        return 1;
    }
    /* only rank 0 prints progress and writes logs; errors come from every rank */
    if (ksa_dist_rank() != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "[rank %d] cannot silence stdout\n", ksa_dist_rank());
    int rc = train_main(argc, argv);
    fflush(stdout);
    ksa_dist_finalize();
    return rc;
}

static int train_main(int argc, char **argv)
{
    ksa_model_config mc;
    ksa_train_config tc;
    ksa_model_config_defaults(&mc);
    ksa_train_config_defaults(&tc);
    int dry_run = 0, help = 0;
    long sample_tokens = 0;
    const char *prompt = "", *resume = NULL, *init_from = NULL, *summary_init = "copy";
    const ksa_arg args[] = {
        {"dry_run", KSA_ARG_FLAG, &dry_run, NULL, 0, "print the plan and exit"},
        {"resume", KSA_ARG_STRING, &resume, NULL, 0,
         "continue the run of a checkpoint (file or folder)"},
        {"init_from", KSA_ARG_STRING, &init_from, NULL, 0,
         "start from a checkpoint's parameters (fine-tuning)"},
        {"summary_init", KSA_ARG_STRING, &summary_init, NULL, 0,
         "copy (default) | scratch: summary parameters the --init-from checkpoint lacks"},
        {"sample", KSA_ARG_LONG, &sample_tokens, NULL, 0, "after training, print N sampled tokens"},
        {"prompt", KSA_ARG_STRING, &prompt, NULL, 0, "the sample's prompt (default: empty)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    /* --resume: the configuration comes from the checkpoint, the command line may change
     * only a few keys (checked below against this copy) */
    char resume_path[KSA_PATH_STR + 32] = "";
    ksa_model_config stored_mc;
    ksa_train_config stored_tc;
    long resume_step = 0;
    unsigned long long resume_tokens = 0;
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--resume")) {
            for (int j = 0; j < argc; j++)
                if (!strcmp(argv[j], "--config")) {
                    fprintf(stderr, "ksa train: --resume takes its configuration from the "
                                    "checkpoint; drop --config\n");
                    return 2;
                }
            if (resolve_resume(argv[i + 1], resume_path, sizeof resume_path) != KSA_OK ||
                ksa_ckpt_read_config(resume_path, &mc) != KSA_OK ||
                ksa_ckpt_read_train(resume_path, &tc, &resume_step, &resume_tokens) != KSA_OK) {
                fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
                return 1;
            }
            stored_mc = mc;
            stored_tc = tc;
        }
    const char *config_path;
    if (ksa_args_parse_train(argc, argv, args, n_args, &mc, &tc, &config_path) != KSA_OK) {
        fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
        return 2;
    }
    ksa_summary_init how = KSA_INIT_SUMMARY_COPY;
    if (!strcmp(summary_init, "scratch"))
        how = KSA_INIT_SUMMARY_SCRATCH;
    else if (strcmp(summary_init, "copy") != 0) {
        fprintf(stderr, "ksa train: --summary-init '%s' (expected copy or scratch)\n",
                summary_init);
        return 2;
    }
    if (init_from && resume_path[0]) {
        fprintf(stderr, "ksa train: --init-from starts a new run, --resume continues one: give "
                        "one of them\n");
        return 2;
    }
    if (resume_path[0]) {
        size_t nk;
        const ksa_config_key *mk = ksa_model_config_keys(&nk);
        ksa_status st = compare_keys(mk, nk, &mc, &stored_mc, "model", 0);
        const ksa_config_key *tk = ksa_train_config_keys(&nk);
        if (st == KSA_OK)
            st = compare_keys(tk, nk, &tc, &stored_tc, "training", 1);
        if (st != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            return 2;
        }
        if (tc.steps <= resume_step) {
            fprintf(stderr,
                    "ksa train: %s has completed %ld steps; steps = %ld leaves nothing to "
                    "do (raise --steps)\n",
                    resume_path, resume_step, tc.steps);
            return 2;
        }
    }
    if (help) {
        ksa_args_usage(stdout, "train", args, n_args);
        printf("configuration keys: see docs/configs.md and docs/training.md\n");
        return 0;
    }
    int n_ranks = ksa_dist_size();
    if (tc.threads > 0) {
        ksa_threads_set((int)tc.threads);
    } else if (!getenv("OMP_NUM_THREADS")) { /* the host's cores shared by its ranks */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int per_rank = (int)(cores / ksa_dist_local_size());
        ksa_threads_set(per_rank > 0 ? per_rank : 1);
    }
    ksa_model m;
    if (ksa_model_init_for_ranks(&m, &mc, n_ranks) != KSA_OK ||
        ksa_train_config_validate(&tc, n_ranks) != KSA_OK) {
        fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
        return 2;
    }
    printf("# ksa train (%s build, %d rank%s x %d threads), configuration %s\n", KSA_REAL_NAME,
           n_ranks, n_ranks > 1 ? "s" : "", ksa_threads_get(),
           resume_path[0] ? resume_path
           : config_path  ? config_path
                          : "(built-in defaults)");
    ksa_model_config_write(&mc, stdout);
    ksa_train_config_write(&tc, stdout);
    printf("# layers\n");
    ksa_model_layout_print(&m.layout, stdout);
    printf("# parameters: %zu (%.3f M)\n", ksa_params_count(&m.params),
           (double)ksa_params_count(&m.params) / 1e6);
    ksa_print_memory_plan(&m, (size_t)tc.micro_batch, (size_t)tc.seq_len, stdout);
    double step_flops = ksa_model_step_flops(&m, (size_t)tc.global_batch, (size_t)tc.seq_len);
    printf("# model FLOPs per step: %.4g (6 x dense parameters x rows + 12 x head_dim x heads "
           "x visible pairs)\n",
           step_flops);
    if (dry_run) {
        ksa_model_free(&m);
        return 0;
    }

    int rc = 1;
    FILE *log = NULL;
    ksa_trainer t;
    ksa_model_init_weights(&m, (uint64_t)tc.seed);
    if (init_from) { /* parameters only: fresh optimizer, schedule and data */
        printf("# parameters from %s:\n", init_from);
        if (ksa_ckpt_init_from(init_from, &m, how, (uint64_t)tc.seed, stdout) != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            ksa_model_free(&m);
            return 1;
        }
    }
    if (ksa_trainer_init(&t, &m, &tc) != KSA_OK) {
        fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
        ksa_model_free(&m);
        return 1;
    }
    if (resume_path[0]) {
        if (ksa_trainer_resume(&t, resume_path) != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            goto done;
        }
        printf("# resumed from %s after step %ld (%zu tokens seen)\n", resume_path, t.step,
               t.tokens_seen);
    }
    ksa_loader_print(&t.loader, stdout);
    /* a resumed run appends to its log: the log reads as one run */
    printf("# optimizer state on this rank: %.3f MiB (AdamW moments of %zu of %zu elements)\n",
           2.0 * (double)(t.slice_hi - t.slice_lo) * sizeof(ksa_real) / 1048576.0,
           t.slice_hi - t.slice_lo, m.params.numel);
    if (t.rank == 0 && tc.log[0] && !(log = fopen(tc.log, resume_path[0] ? "a" : "w"))) {
        fprintf(stderr, "ksa train: cannot open log '%s': %s\n", tc.log, strerror(errno));
        goto done;
    }
    /* The machine's peak: a host's sgemm peak with all its cores (measured once and cached,
     * by rank 0 only: the other ranks would slow it), times the hosts of the run. */
    int local = ksa_dist_local_size(), hosts = n_ranks / (local > 0 ? local : 1);
    double peak = tc.peak_gflops;
    if (!(peak > 0) && t.rank == 0) {
        int threads = ksa_threads_get(), cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
        ksa_threads_set(cores > 0 ? cores : 1);
        peak = machine_peak_gflops(ksa_threads_get()) * (hosts > 0 ? hosts : 1);
        ksa_threads_set(threads);
    }
    if (!(peak > 0))
        peak = 1; /* ranks other than 0 do not print MFU */
    printf("# MFU against a peak of %.1f GFLOP/s (%s)\n", peak,
           tc.peak_gflops > 0 ? "peak_gflops" : "sgemm on all cores, measured once and cached");
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = request_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double t_start = ksa_now(), first5 = 0, last5[5] = {0};
    long n_first = 0, start_step = t.step;
    while (t.step < tc.steps) {
        ksa_step_stats st;
        if (ksa_trainer_step(&t, &st) != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            goto done;
        }
        long step = t.step; /* 1-based number of the step just completed */
        if (n_first < 5)
            first5 += st.loss, n_first++;
        last5[(step - 1) % 5] = st.loss;
        double elapsed = ksa_now() - t_start;
        double tok_s = (double)st.tokens / st.seconds;
        double mfu = step_flops / st.seconds / (peak * 1e9);
        double eta = elapsed / (double)(step - start_step) * (double)(tc.steps - step);
        char el[32], et[32];
        format_duration(el, sizeof el, elapsed);
        format_duration(et, sizeof et, eta);
        int do_val =
            t.has_val && ((tc.eval_every > 0 && step % tc.eval_every == 0) || step == tc.steps);
        double val_loss = 0;
        if (do_val && ksa_trainer_validate(&t, &val_loss) != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            goto done;
        }
        printf("step %*ld/%ld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | MFU "
               "%.1f%% | %s elapsed | ETA %s",
               (int)snprintf(NULL, 0, "%ld", tc.steps), step, tc.steps, st.loss, st.lr,
               st.grad_norm, tok_s, 100 * mfu, el, et);
        if (do_val)
            printf(" | val loss %.4f", val_loss);
        printf("\n");
        fflush(stdout);
        if (log) {
            fprintf(log,
                    "{\"step\": %ld, \"loss\": %.17g, \"lr\": %.17g, \"grad_norm\": %.17g, "
                    "\"tokens_per_s\": %.9g, \"tokens\": %zu, \"mfu\": %.9g, \"elapsed\": %.9g",
                    step, st.loss, st.lr, st.grad_norm, tok_s, t.tokens_seen, mfu, elapsed);
            if (do_val)
                fprintf(log, ", \"val_loss\": %.17g", val_loss);
            fprintf(log, "}\n");
            fflush(log);
        }
        /* the ranks agree on a stop, so that all of them save at the same step */
        int stop = ksa_dist_any(stop_requested != 0);
        int periodic = tc.save_every > 0 && step % tc.save_every == 0;
        if (tc.out[0] && (periodic || step == tc.steps || stop) &&
            save_checkpoint(&t, &tc) != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            goto done;
        }
        if (stop) {
            printf("# stopped by a signal after step %ld/%ld\n", step, tc.steps);
            if (tc.out[0])
                printf("# resume with: ksa train --resume %s\n", tc.out);
            else
                printf("# no checkpoint saved (give --out DIR to save one)\n");
            rc = tc.out[0] ? 0 : 1;
            goto done;
        }
    }
    if (tc.steps - start_step >= 10) {
        double l5 = 0;
        for (int i = 0; i < 5; i++)
            l5 += last5[i];
        printf("# mean loss of the first 5 steps %.4f, of the last 5 steps %.4f\n", first5 / 5,
               l5 / 5);
    }
    if (sample_tokens > 0) {
        printf("# sample (%ld tokens, temperature 0.8, top-k 40):\n", sample_tokens);
        fflush(stdout);
        if (ksa_sample_text(&m, prompt, (size_t)sample_tokens, 0.8, 40, (uint64_t)tc.seed,
                            stdout) != KSA_OK) {
            fprintf(stderr, "[rank %d] ksa train: %s\n", ksa_dist_rank(), ksa_last_error());
            goto done;
        }
        printf("\n");
    }
    rc = 0;
done:
    if (log)
        fclose(log);
    ksa_trainer_free(&t);
    ksa_model_free(&m);
    return rc;
}
