/* run.c - the training loop with its progress line, JSONL log, checkpoints and stop. */
#include "train/run.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "autograd/blas.h"
#include "data/path.h"
#include "dist/context.h"
#include "dist/dist.h"
#include "train/run_dir.h"

/* ---- the peak: the run's GEMM, measured and cached per configuration ---------------------- */
/* text reduced to [A-Za-z0-9.-] for a file name, other runs of characters as one '_'. */
static void file_name_part(char *out, size_t cap, const char *text)
{
    size_t n = 0;
    for (const char *c = text; c && *c && n + 1 < cap; c++) {
        int keep = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                   (*c >= '0' && *c <= '9') || *c == '.' || *c == '-';
        if (keep)
            out[n++] = *c;
        else if (n > 0 && out[n - 1] != '_')
            out[n++] = '_';
    }
    while (n > 0 && out[n - 1] == '_')
        n--;
    out[n] = '\0';
}

/* The CPU's model name from /proc/cpuinfo, as a file-name part ("unknown-cpu" if none). */
static void cpu_model(char *out, size_t cap)
{
    char line[512], *name = NULL;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && (name = strchr(line, ':'))) {
            name++;
            break;
        }
    if (f)
        fclose(f);
    file_name_part(out, cap, name);
    if (!out[0])
        snprintf(out, cap, "unknown-cpu");
}

/* A cached peak older than this is measured again: a host's figure drifts (firmware, clock
 * governor, other tenants), and a measurement costs about a second.                      */
#define PEAK_MAX_AGE_SECONDS (24 * 3600)

/* One rank's GEMM peak, as the run configures BLAS, and where the figure came from. */
typedef struct {
    double gflops;
    int threads;       /* the run's threads per rank */
    char core[64];     /* OpenBLAS core type (ksa_blas_core_type), as a file-name part */
    char key[320];     /* CPU model, core type, precision, threads */
    char path[1500];   /* the cache file, "" without a cache folder */
    char source[1800]; /* "measured now, cached in ...", "cached <date> in ...", ... */
} gemm_peak;

static void format_local_time(char *out, size_t cap, time_t t)
{
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, cap, "(unknown time)");
}

/* Measures the peak of this host's ksa_real GEMM on the current threads with the OpenBLAS
 * kernels in force, or takes it from $XDG_CACHE_HOME/ksa (or ~/.cache/ksa), in a file named
 * after the configuration key: CPU model, OpenBLAS core type, precision, threads. A cached
 * figure is measured again when asked (remeasure), when the file is more than a day old
 * (its mtime), or when it is implausible: not positive, or beaten by more than 20 % by a
 * quick 1024^3 GEMM (a peak measured while the host was busy).                          */
static void cached_gemm_peak(int remeasure, gemm_peak *p)
{
    char dir[1024] = "", model[128], at[64];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0])
        snprintf(dir, sizeof dir, "%s/ksa", xdg);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.cache/ksa", home);
    cpu_model(model, sizeof model);
    p->threads = ksa_threads_get();
    file_name_part(p->core, sizeof p->core, ksa_blas_core_type());
    snprintf(p->key, sizeof p->key, "%s_%s_%s_%dthreads", model, p->core, KSA_REAL_NAME,
             p->threads);
    p->path[0] = '\0';
    double cached = 0;
    struct stat st;
    if (dir[0]) {
        snprintf(p->path, sizeof p->path, "%s/sgemm_peak_%s", dir, p->key);
        FILE *f = fopen(p->path, "r");
        if (f) {
            if (fscanf(f, "%lf", &cached) != 1 || !(cached > 0) || fstat(fileno(f), &st) != 0)
                cached = 0;
            fclose(f);
        }
    }
    if (cached > 0) {
        format_local_time(at, sizeof at, st.st_mtime);
        double age = difftime(time(NULL), st.st_mtime);
        if (remeasure) {
            snprintf(p->source, sizeof p->source,
                     "re-measured (--remeasure-peak; was %.1f), cached in %s", cached, p->path);
        } else if (age > PEAK_MAX_AGE_SECONDS) {
            snprintf(p->source, sizeof p->source,
                     "re-measured: the cached %.1f of %s was more than a day old; cached in %s",
                     cached, at, p->path);
        } else {
            double quick = ksa_blas_measure_gflops(1024, 1);
            if (quick <= 1.2 * cached) {
                p->gflops = cached;
                snprintf(p->source, sizeof p->source, "cached %s in %s", at, p->path);
                return;
            }
            snprintf(p->source, sizeof p->source,
                     "re-measured: a quick GEMM ran at %.1f GFLOP/s, above the cached %.1f; "
                     "cached in %s",
                     quick, cached, p->path);
        }
    } else {
        snprintf(p->source, sizeof p->source, "measured now, cached in %s",
                 dir[0] ? p->path : "(no cache folder: neither XDG_CACHE_HOME nor HOME is set)");
    }
    p->gflops = ksa_blas_measure_gflops(2048, 3);
    /* best effort: a read-only home or a full disk only costs the measurement next time,
     * and is said; a file that could not be written whole is removed, never read back */
    char why[1024] = "";
    if (!dir[0])
        return;
    if (ksa_path_make_dirs(dir, "the cache folder") != KSA_OK) {
        snprintf(why, sizeof why, "%s", ksa_last_error());
    } else {
        FILE *f = fopen(p->path, "w");
        int ok = f && fprintf(f, "%.6g\n", p->gflops) > 0;
        if (f && fclose(f) != 0)
            ok = 0;
        if (!ok)
            snprintf(why, sizeof why, "cannot write %.900s: %s", p->path, strerror(errno));
        if (!ok && f)
            unlink(p->path);
    }
    if (why[0]) {
        size_t n = strlen(p->source);
        snprintf(p->source + n, sizeof p->source - n, "; but not cached (%s)", why);
    }
}

double ksa_run_peak_gflops(const ksa_train_config *tc, int remeasure, FILE *out)
{
    if (tc->peak_gflops > 0) {
        fprintf(out, "# MFU against a peak of %.1f GFLOP/s (peak_gflops)\n", tc->peak_gflops);
        return tc->peak_gflops;
    }
    /* one rank's peak as the run configures BLAS, measured by rank 0 only (the others would
     * slow it), times the ranks: every rank runs the same threads on the same kind of host */
    if (ksa_dist_rank() != 0)
        return 1; /* ranks other than 0 do not print MFU */
    int n_ranks = ksa_dist_size();
    gemm_peak p;
    cached_gemm_peak(remeasure, &p);
    double peak = p.gflops * n_ranks;
    fprintf(out,
            "# MFU against a peak of %.1f GFLOP/s = %d rank%s x %.1f GFLOP/s, the %s GEMM peak of "
            "%d thread%s on OpenBLAS core %s (key %s): %s\n",
            peak, n_ranks, n_ranks > 1 ? "s" : "", p.gflops, KSA_REAL_NAME, p.threads,
            p.threads > 1 ? "s" : "", p.core, p.key, p.source);
    return peak;
}

/* ---- one step's report ------------------------------------------------------------------------
 */
typedef struct {
    long step, steps;
    ksa_step_stats stats;
    size_t tokens_seen;
    double tokens_per_s, mfu, elapsed, eta;
    double cpu; /* the process's CPU seconds so far, all threads (start-up included) */
    int has_val;
    double val_loss;
} step_report;

static void format_duration(char *buf, size_t cap, double seconds)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static void print_progress(FILE *out, const step_report *r)
{
    char el[32], et[32];
    format_duration(el, sizeof el, r->elapsed);
    format_duration(et, sizeof et, r->eta);
    fprintf(out,
            "step %*ld/%ld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | MFU %.1f%% | %s "
            "elapsed | ETA %s",
            (int)snprintf(NULL, 0, "%ld", r->steps), r->step, r->steps, r->stats.loss, r->stats.lr,
            r->stats.grad_norm, r->tokens_per_s, 100 * r->mfu, el, et);
    if (r->stats.distill) /* the terms of the distillation loss, unweighted */
        fprintf(out, " | ce %.4f attn %.4g kl %.4g", r->stats.ce, r->stats.attn, r->stats.kl);
    if (r->stats.distill && r->stats.cos > 0)
        fprintf(out, " cos %.4g", r->stats.cos);
    if (r->has_val)
        fprintf(out, " | val loss %.4f", r->val_loss);
    if (!isnan(r->stats.summary_mix)) /* annealing: the coefficient this step used */
        fprintf(out, " | summary mix %.4f", r->stats.summary_mix);
    if (r->stats.guard_note[0]) /* the loss-spike guard's word on a high loss */
        fprintf(out, " | %s%s", r->stats.skipped ? "skipped: " : "", r->stats.guard_note);
    fprintf(out, "\n");
    fflush(out);
}

/* What the first step of this process used of the memory the plan reserved: the arena's
 * high-water mark, and the gradient pool's largest live set and touched bytes. */
static void print_step_memory(FILE *out, const ksa_trainer *t, long step)
{
    double mib = 1.0 / (1 << 20);
    fprintf(out,
            "# memory used by step %ld (the first of this process): activations arena %.1f of "
            "%.1f MiB; activation grads %.1f MiB at most alive, %.1f touched of %.1f reserved\n",
            step, (double)t->arena.peak * mib, (double)t->arena.capacity * mib,
            (double)t->grads.peak * mib, (double)t->grads.high_water * mib,
            (double)t->grads.capacity * mib);
}

/* Context parallelism: the bytes the ranks sent in the step just done (since `before`), the
 * summary layers' and the ring's apart, as the mean per rank. Collective. */
static ksa_status print_step_traffic(FILE *out, const ksa_trainer *t, const ksa_cp_traffic *before,
                                     long step)
{
    const ksa_cp *cp = t->model->cp;
    if (!cp || cp->P == 1)
        return KSA_OK;
    double sent[2] = {(double)(cp->traffic.summary_bytes - before->summary_bytes),
                      (double)(cp->traffic.ring_bytes - before->ring_bytes)};
    KSA_TRY(ksa_dist_sum(sent, 2));
    double mib = 1.0 / (1 << 20) / t->n_ranks;
    fprintf(
        out,
        "# context parallelism (%d blocks of a row x %d groups), step %ld: a rank sent %.3f MiB "
        "in summary and sliding-window layers (halos, summaries and their gradients) and %.3f "
        "MiB in causal layers (ring attention), mean over the ranks\n",
        cp->P, cp->n_groups, step, sent[0] * mib, sent[1] * mib);
    return KSA_OK;
}

/* One line of the log, flushed: an error (a full disk) names the file and the reason. */
static ksa_status log_step(FILE *log, const char *path, const step_report *r)
{
    int ok = fprintf(log,
                     "{\"step\": %ld, \"loss\": %.17g, \"lr\": %.17g, \"grad_norm\": %.17g, "
                     "\"tokens_per_s\": %.9g, \"tokens\": %zu, \"mfu\": %.9g, \"elapsed\": "
                     "%.9g, \"cpu\": %.9g",
                     r->step, r->stats.loss, r->stats.lr, r->stats.grad_norm, r->tokens_per_s,
                     r->tokens_seen, r->mfu, r->elapsed, r->cpu) >= 0;
    if (ok && r->stats.distill)
        ok = fprintf(log,
                     ", \"loss_ce\": %.17g, \"loss_attn\": %.17g, \"loss_kl\": %.17g, "
                     "\"loss_cos\": %.17g",
                     r->stats.ce, r->stats.attn, r->stats.kl, r->stats.cos) >= 0;
    if (ok && r->has_val)
        ok = fprintf(log, ", \"val_loss\": %.17g", r->val_loss) >= 0;
    if (ok && !isnan(r->stats.summary_mix))
        ok = fprintf(log, ", \"summary_mix\": %.17g", r->stats.summary_mix) >= 0;
    if (ok && r->stats.high_steps > 0)
        ok = fprintf(log, ", \"loss_median\": %.17g, \"loss_high_steps\": %ld",
                     r->stats.loss_median, r->stats.high_steps) >= 0;
    if (ok && r->stats.skipped) /* the note is our own text: no character JSON would escape */
        ok = fprintf(log, ", \"skipped\": \"%s\"", r->stats.guard_note) >= 0;
    ok = ok && fprintf(log, "}\n") >= 0 && fflush(log) == 0;
    if (!ok)
        return ksa_fail(KSA_EIO, "step %ld: cannot write the log '%s': %s", r->step, path,
                        strerror(errno));
    return KSA_OK;
}

/* ---- the loop ---------------------------------------------------------------------------------
 */
/* The signals that make a run finish its step, save and stop. SIGHUP: the terminal or the
 * session went away. SIGUSR1: what mpirun forwards to every rank without ending the job
 * (its SIGTERM, SIGINT and SIGHUP kill the ranks: docs/mpi.md), and what batch systems send
 * ahead of a time limit.                                                                */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
#define N_STOP_SIGNALS (int)(sizeof stop_signals / sizeof stop_signals[0])

static volatile sig_atomic_t stop_requested = 0;
static void request_stop(int sig)
{
    stop_requested = sig;
}

/* ---- the watchdog's limit (docs/mpi.md, "A rank that stops") ---------------------------- */
#define WATCHDOG_MIN_SECONDS 10.0 /* a busy host can stall a short step many times over */
#define WATCHDOG_RECENT 25        /* steps whose median sets the limit */

typedef struct {
    double seconds[WATCHDOG_RECENT]; /* the last steps' times, a ring */
    long n;                          /* steps timed so far */
} step_times;

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* How long a rank may wait in a collective during the next step (0: without limit), and
 * why, for the watchdog's message: watchdog_seconds, or watchdog_factor x the median of the
 * last steps (at least WATCHDOG_MIN_SECONDS; none before the first step is timed),
 * whichever is shorter. */
static double watchdog_limit(const ksa_train_config *tc, const step_times *st, char *why,
                             size_t cap)
{
    double limit = 0;
    why[0] = '\0';
    long n = st->n < WATCHDOG_RECENT ? st->n : WATCHDOG_RECENT;
    if (tc->watchdog_factor > 0 && n > 0) {
        double sorted[WATCHDOG_RECENT];
        memcpy(sorted, st->seconds, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, by_value);
        double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        limit = tc->watchdog_factor * median;
        if (limit < WATCHDOG_MIN_SECONDS)
            limit = WATCHDOG_MIN_SECONDS;
        snprintf(why, cap, "watchdog_factor %g x the median step of %.3g s, at least %g s",
                 tc->watchdog_factor, median, WATCHDOG_MIN_SECONDS);
    }
    if (tc->watchdog_seconds > 0 && (limit == 0 || tc->watchdog_seconds < limit)) {
        limit = tc->watchdog_seconds;
        snprintf(why, cap, "watchdog_seconds");
    }
    return limit;
}

/* Test-only fault hook (docs/mpi.md): KSA_TEST_FAULT=unagreed_error:RANK:STEP makes that
 * rank return an error after that step without telling the others, as a failure on a path
 * that is not agreed would. */
static int unagreed_fault(int rank, long step)
{
    const char *f = getenv("KSA_TEST_FAULT"), *kind = "unagreed_error:";
    int r;
    long s;
    return f && !strncmp(f, kind, strlen(kind)) &&
           sscanf(f + strlen(kind), "%d:%ld", &r, &s) == 2 && r == rank && s == step;
}

/* The mean of the first and of the last 5 losses of a run of 10 steps or more. */
typedef struct {
    double first5, last5[5];
    long n_first;
} loss_summary;

static ksa_status train_steps(ksa_trainer *t, const ksa_train_config *tc,
                              const ksa_run_owner *owner, double step_flops, double peak, FILE *log,
                              FILE *out, ksa_run_end *end, loss_summary *ls)
{
    double t_start = ksa_now();
    long start_step = t->step;
    int save_best = tc->save_best && t->has_val && tc->out[0];
    double best = save_best ? ksa_run_best_so_far(tc->out, owner) : 0;
    if (save_best && isfinite(best))
        fprintf(out, "# best validation loss so far: %.4f (%s/best.h5)\n", best, tc->out);
    step_times times = {{0}, 0};
    while (t->step < tc->steps) {
        step_report r = {.steps = tc->steps};
        char why[160];
        double limit = watchdog_limit(tc, &times, why, sizeof why);
        ksa_dist_watch_set(t->step + 1, limit, why);
        ksa_cp_traffic before = t->model->cp ? t->model->cp->traffic : (ksa_cp_traffic){0};
        ksa_status st = ksa_trainer_step(t, &r.stats);
        if (st != KSA_OK) {
            ksa_dist_failing_together(); /* a step fails on every rank at once (trainer.h) */
            return st;
        }
        times.seconds[times.n++ % WATCHDOG_RECENT] = r.stats.seconds;
        r.step = t->step; /* 1-based number of the step just completed */
        if (unagreed_fault(t->rank, r.step))
            return ksa_fail(KSA_EINVAL, "step %ld: fault injected by KSA_TEST_FAULT", r.step);
        if (ls->n_first < 5)
            ls->first5 += r.stats.loss, ls->n_first++;
        ls->last5[(r.step - 1) % 5] = r.stats.loss;
        r.tokens_seen = t->tokens_seen;
        r.elapsed = ksa_now() - t_start;
        r.cpu = ksa_cpu_seconds();
        r.tokens_per_s = (double)r.stats.tokens / r.stats.seconds;
        r.mfu = step_flops / r.stats.seconds / (peak * 1e9);
        r.eta = r.elapsed / (double)(r.step - start_step) * (double)(tc->steps - r.step);
        r.has_val = t->has_val &&
                    ((tc->eval_every > 0 && r.step % tc->eval_every == 0) || r.step == tc->steps);
        if (r.has_val)
            KSA_TRY(ksa_trainer_validate(t, &r.val_loss));
        print_progress(out, &r);
        if (r.step == start_step + 1) {
            print_step_memory(out, t, r.step);
            KSA_TRY(print_step_traffic(out, t, &before, r.step));
        }
        /* a log that cannot be written stops the run like a failed save: nothing more is
         * trained or saved (rank 0 logs; the ranks agree, so all of them stop) */
        int failed_rank;
        KSA_TRY(ksa_dist_agree(log ? log_step(log, tc->log, &r) : KSA_OK, &failed_rank));
        if (save_best && r.has_val && r.val_loss < best) {
            best = r.val_loss;
            KSA_TRY(ksa_run_save_best(t, tc->out, best, out));
        }
        /* the ranks agree on a stop, so that all of them save at the same step */
        int stop = ksa_dist_any(stop_requested != 0);
        int periodic = tc->save_every > 0 && r.step % tc->save_every == 0;
        if (tc->out[0] && (periodic || r.step == tc->steps || stop))
            KSA_TRY(ksa_run_save(t, tc->out, tc->keep, owner, out));
        if (stop) {
            fprintf(out, "# stopped by a signal after step %ld/%ld\n", r.step, tc->steps);
            if (tc->out[0])
                fprintf(out, "# resume with: ksa train --resume %s\n", tc->out);
            else
                fprintf(out, "# no checkpoint saved (give --out DIR to save one)\n");
            *end = tc->out[0] ? KSA_RUN_STOPPED_SAVED : KSA_RUN_STOPPED_UNSAVED;
            return KSA_OK;
        }
    }
    *end = KSA_RUN_FINISHED;
    if (tc->steps - start_step >= 10) {
        double l5 = 0;
        for (int i = 0; i < 5; i++)
            l5 += ls->last5[i];
        fprintf(out, "# mean loss of the first 5 steps %.4f, of the last 5 steps %.4f\n",
                ls->first5 / 5, l5 / 5);
    }
    return KSA_OK;
}

ksa_status ksa_run_train(ksa_trainer *t, const ksa_train_config *tc, const ksa_run_owner *owner,
                         double step_flops, double peak, int append_log, FILE *out,
                         ksa_run_end *end)
{
    FILE *log = NULL;
    ksa_status st = KSA_OK;
    if (t->rank == 0 && tc->log[0] && !(log = fopen(tc->log, append_log ? "a" : "w")))
        st = ksa_fail(KSA_EIO, "cannot open log '%s': %s", tc->log, strerror(errno));
    int failed_rank;
    if ((st = ksa_dist_agree(st, &failed_rank)) == KSA_OK &&
        (tc->watchdog_factor > 0 || tc->watchdog_seconds > 0))
        st = ksa_dist_agree(ksa_dist_watch_start("ksa train"), &failed_rank);
    if (st != KSA_OK) {
        if (log)
            fclose(log);
        return st;
    }
    struct sigaction sa, old[N_STOP_SIGNALS];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = request_stop;
    sa.sa_flags = SA_RESTART; /* a read or a save that a signal interrupts goes on */
    for (int i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &sa, &old[i]);
    loss_summary ls = {0};
    st = train_steps(t, tc, owner, step_flops, peak, log, out, end, &ls);
    for (int i = 0; i < N_STOP_SIGNALS; i++)
        sigaction(stop_signals[i], &old[i], NULL);
    if (log && fclose(log) != 0 && st == KSA_OK)
        st = ksa_fail(KSA_EIO, "cannot write the log '%s': %s", tc->log, strerror(errno));
    return st;
}
