/* dist.c - MPI start-up and shutdown, the collectives of the flat buffers, agreement, the
 * same settings on every rank, and the watchdog (dist.h). */
#include "dist.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "core/rng.h"

#ifdef KSA_REAL_DOUBLE
#define MPI_REAL_T MPI_DOUBLE
#else
#define MPI_REAL_T MPI_FLOAT
#endif

/* ksa_dist_compare_text's own communicator: its collective never meets the computation's. */
static MPI_Comm report_comm = MPI_COMM_NULL;
/* MPI_Init_thread gave MPI_THREAD_MULTIPLE: the watchdog thread may call MPI. */
static int thread_multiple;
/* ksa_dist_failure_agreed */
static int failure_agreed;

static void watch_enter(void);
static void watch_leave(void);
static void watch_stop(void);

/* A process started without mpirun is an MPI singleton, for which Open MPI by default starts
 * a daemon (orted) in MPI_Init: ~1 s of every command (docs/benchmarks.md, "Whole model,
 * end to end"). An isolated singleton starts none; it cannot spawn processes, which ksa
 * never does. Under mpirun (OMPI_COMM_WORLD_SIZE set) the setting is not used; a user's
 * own setting wins. Open MPI reads it in MPI_Init.                                      */
static void isolate_singleton(void)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE"))
        setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
}

ksa_status ksa_dist_init(int *argc, char ***argv)
{
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized)
        isolate_singleton();
    int provided = MPI_THREAD_SINGLE;
    if (!initialized && MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return ksa_fail(KSA_EMPI, "MPI_Init_thread failed");
    if (initialized)
        MPI_Query_thread(&provided);
    thread_multiple = provided >= MPI_THREAD_MULTIPLE;
    ksa_log_rank = ksa_dist_rank();
    if (report_comm == MPI_COMM_NULL && MPI_Comm_dup(MPI_COMM_WORLD, &report_comm) != MPI_SUCCESS)
        return ksa_fail(KSA_EMPI, "MPI_Comm_dup of MPI_COMM_WORLD failed");
    return KSA_OK;
}

void ksa_dist_finalize(void)
{
    if (!ksa_dist_active())
        return;
    watch_stop();
    if (report_comm != MPI_COMM_NULL)
        MPI_Comm_free(&report_comm);
    MPI_Finalize();
}

void ksa_dist_abort(int code)
{
    if (ksa_dist_size() > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int ksa_dist_active(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

int ksa_dist_rank(void)
{
    int rank = 0;
    if (ksa_dist_active())
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

int ksa_dist_size(void)
{
    int size = 1;
    if (ksa_dist_active())
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

int ksa_dist_local_size(void)
{
    int n = 1;
    if (!ksa_dist_active())
        return 1;
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_size(local, &n);
        MPI_Comm_free(&local);
    }
    return n;
}

static size_t max_count(void)
{
    const char *e = getenv("KSA_MPI_MAX_COUNT");
    long v = e ? strtol(e, NULL, 10) : 0;
    return v > 0 && v < INT_MAX ? (size_t)v : (size_t)INT_MAX;
}

static ksa_status mpi_fail(int rc, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return ksa_fail(KSA_EMPI, "%s failed: %s", what, text);
}

ksa_status ksa_dist_reduce_scatter(const ksa_real *grad, ksa_real *slice, size_t s)
{
    int n = ksa_dist_size(), r = ksa_dist_rank(), rc;
    size_t cap = max_count();
    if (n == 1) {
        for (size_t i = 0; i < s; i++)
            slice[i] = grad[i];
        return KSA_OK;
    }
    watch_enter();
    if (s <= cap) {
        rc = MPI_Reduce_scatter_block(grad, slice, (int)s, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD);
        watch_leave();
        return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Reduce_scatter_block");
    }
    /* in pieces: rank q receives the sum of everyone's q-th slice, piece by piece */
    rc = MPI_SUCCESS;
    for (int q = 0; q < n && rc == MPI_SUCCESS; q++)
        for (size_t off = 0; off < s && rc == MPI_SUCCESS; off += cap) {
            size_t len = s - off < cap ? s - off : cap;
            rc = MPI_Reduce(grad + (size_t)q * s + off, q == r ? slice + off : NULL, (int)len,
                            MPI_REAL_T, MPI_SUM, q, MPI_COMM_WORLD);
        }
    watch_leave();
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Reduce");
}

ksa_status ksa_dist_allgather(ksa_real *data, size_t s)
{
    int n = ksa_dist_size(), rc;
    size_t cap = max_count();
    if (n == 1)
        return KSA_OK;
    watch_enter();
    if (s <= cap) {
        rc = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, (int)s, MPI_REAL_T,
                           MPI_COMM_WORLD);
        watch_leave();
        return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allgather");
    }
    rc = MPI_SUCCESS;
    for (int q = 0; q < n && rc == MPI_SUCCESS; q++)
        for (size_t off = 0; off < s && rc == MPI_SUCCESS; off += cap) {
            size_t len = s - off < cap ? s - off : cap;
            rc = MPI_Bcast(data + (size_t)q * s + off, (int)len, MPI_REAL_T, q, MPI_COMM_WORLD);
        }
    watch_leave();
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Bcast");
}

ksa_status ksa_dist_sum_reals(ksa_real *buf, size_t n)
{
    if (ksa_dist_size() == 1)
        return KSA_OK;
    size_t cap = max_count();
    int rc = MPI_SUCCESS;
    watch_enter();
    for (size_t off = 0; off < n && rc == MPI_SUCCESS; off += cap) {
        size_t len = n - off < cap ? n - off : cap;
        rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)len, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD);
    }
    watch_leave();
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allreduce");
}

ksa_status ksa_dist_sum(double *x, int n)
{
    if (ksa_dist_size() == 1)
        return KSA_OK;
    watch_enter();
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    watch_leave();
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allreduce");
}

int ksa_dist_any(int flag)
{
    if (ksa_dist_size() == 1)
        return flag != 0;
    int v = flag != 0, any = v;
    watch_enter();
    MPI_Allreduce(&v, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    watch_leave();
    return any;
}

void ksa_dist_barrier(void)
{
    if (ksa_dist_size() == 1)
        return;
    watch_enter();
    MPI_Barrier(MPI_COMM_WORLD);
    watch_leave();
}

ksa_status ksa_dist_agree(ksa_status st, int *failed_rank)
{
    *failed_rank = -1;
    if (ksa_dist_size() == 1)
        return st;
    struct {
        int code, rank;
    } in = {(int)st, ksa_dist_rank()}, out;
    watch_enter();
    int rc = MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    watch_leave();
    if (rc != MPI_SUCCESS)
        return st != KSA_OK ? st : mpi_fail(rc, "MPI_Allreduce of the ranks' status");
    failure_agreed |= out.code != KSA_OK;
    if (st != KSA_OK || out.code == KSA_OK)
        return st;
    *failed_rank = out.rank;
    return ksa_fail((ksa_status)out.code, "rank %d failed (its message says why)", out.rank);
}

int ksa_dist_failure_agreed(void)
{
    return failure_agreed;
}

void ksa_dist_failing_together(void)
{
    failure_agreed = 1;
}

ksa_status ksa_dist_compare_text(const char *text, double timeout, int *n_with_text, int *all_same)
{
    int n = ksa_dist_size();
    *n_with_text = text[0] != '\0';
    *all_same = 1;
    if (n == 1)
        return KSA_OK;
    KSA_ASSERT(report_comm != MPI_COMM_NULL, "ksa_dist_compare_text before ksa_dist_init");
    uint64_t mine[2] = {text[0] != '\0', ksa_hash_string(text)};
    uint64_t *all = ksa_alloc((size_t)n * sizeof mine);
    MPI_Request req;
    int rc = MPI_Iallgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, report_comm, &req);
    if (rc != MPI_SUCCESS) {
        ksa_free(all);
        return mpi_fail(rc, "MPI_Iallgather of the ranks' messages");
    }
    if (!text[0]) {
        rc = MPI_Wait(&req, MPI_STATUS_IGNORE);
    } else {
        double t0 = ksa_now();
        int done = 0;
        while (rc == MPI_SUCCESS && !done) {
            rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (!done && ksa_now() - t0 > timeout) {
                ksa_free(all); /* req stays pending: the caller ends the job */
                return ksa_fail(KSA_EMPI,
                                "the other ranks did not reach the end of the command within %g s",
                                timeout);
            }
            if (!done)
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL); /* 1 ms */
        }
    }
    if (rc != MPI_SUCCESS) {
        ksa_free(all);
        return mpi_fail(rc, "MPI_Iallgather of the ranks' messages");
    }
    *n_with_text = 0;
    for (int r = 0; r < n; r++) {
        *n_with_text += all[2 * r] != 0;
        *all_same &= all[2 * r] == all[0] && all[2 * r + 1] == all[1];
    }
    ksa_free(all);
    return KSA_OK;
}

ksa_status ksa_dist_allgather_u64(const uint64_t *mine, int n, uint64_t *all)
{
    if (ksa_dist_size() == 1) {
        memcpy(all, mine, (size_t)n * sizeof *all);
        return KSA_OK;
    }
    watch_enter();
    int rc = MPI_Allgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, MPI_COMM_WORLD);
    watch_leave();
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allgather");
}

/* ---- the same settings on every rank ---------------------------------------------------- */
/* Rank root's text on every rank (owned by the caller): its length, then its bytes. */
static ksa_status broadcast_text(const char *mine, int root, char **text)
{
    uint64_t len = ksa_dist_rank() == root ? strlen(mine) : 0;
    int rc = MPI_Bcast(&len, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Bcast of a length");
    KSA_ASSERT(len < INT_MAX, "settings text of %llu bytes", (unsigned long long)len);
    *text = ksa_alloc(len + 1);
    if (ksa_dist_rank() == root)
        memcpy(*text, mine, len);
    (*text)[len] = '\0';
    rc = MPI_Bcast(*text, (int)len, MPI_CHAR, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        ksa_free(*text);
        return mpi_fail(rc, "MPI_Bcast of the settings");
    }
    return KSA_OK;
}

/* Length of the key of a "key = value" line of length len (len when it has no " = "). */
static size_t key_length(const char *line, size_t len)
{
    const char *eq = strstr(line, " = ");
    return eq && (size_t)(eq - line) < len ? (size_t)(eq - line) : len;
}

/* The first line where a and b differ, as "key = A on rank 0, B on rank r"; the two
 * lines whole when their keys differ too (another order of keys: another build). */
static void first_difference(const char *a, const char *b, int r, char *out, size_t cap)
{
    while (*a || *b) {
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || memcmp(a, b, la) != 0) {
            size_t ka = key_length(a, la), kb = key_length(b, lb);
            if (ka < la && kb < lb && ka == kb && !memcmp(a, b, ka))
                snprintf(out, cap, "%.*s = %.*s on rank 0, %.*s on rank %d", (int)ka, a,
                         (int)(la - ka - 3), a + ka + 3, (int)(lb - kb - 3), b + kb + 3, r);
            else
                snprintf(out, cap, "'%.*s' on rank 0, '%.*s' on rank %d", (int)la, a, (int)lb, b,
                         r);
            return;
        }
        a += la + (a[la] == '\n');
        b += lb + (b[lb] == '\n');
    }
    snprintf(out, cap, "(no line differs)");
}

ksa_status ksa_dist_same_settings(const char *text, const char *what)
{
    int n = ksa_dist_size();
    if (n == 1)
        return KSA_OK;
    uint64_t mine = ksa_hash_string(text), *all = ksa_alloc((size_t)n * sizeof *all);
    ksa_status st = ksa_dist_allgather_u64(&mine, 1, all);
    int other = 0; /* the first rank whose text differs from rank 0's */
    for (int r = 1; r < n && st == KSA_OK && !other; r++)
        if (all[r] != all[0])
            other = r;
    ksa_free(all);
    if (st != KSA_OK || !other)
        return st;
    char *zero = NULL, *theirs = NULL, diff[1024];
    KSA_TRY(broadcast_text(text, 0, &zero));
    if ((st = broadcast_text(text, other, &theirs)) != KSA_OK) {
        ksa_free(zero);
        return st;
    }
    first_difference(zero, theirs, other, diff, sizeof diff);
    ksa_free(zero);
    ksa_free(theirs);
    failure_agreed = 1; /* every rank found the same difference */
    return ksa_fail(KSA_EINVAL, "the ranks do not run the same %s: %s", what, diff);
}

/* ---- the watchdog ---------------------------------------------------------------------- *
 * The main thread counts the collectives it enters (watch_enter, watch_leave around each
 * collective of this file); the watchdog thread sends that count to every other rank on
 * watch.comm, at once when it changes and every BEAT_SECONDS, and keeps the latest count
 * and arrival time of each rank's messages. When the main thread has waited in collective
 * number k for longer than the limit, the ranks whose count is below k have not entered
 * it; when all have, the ones silent for SILENT_SECONDS have stopped inside it.          */
#define BEAT_SECONDS 0.5
#define SILENT_SECONDS 2.0
#define WATCH_TAG 1

static struct {
    int started;
    MPI_Comm comm;
    pthread_t thread;
    pthread_mutex_t lock; /* guards everything below that the main thread writes */
    pthread_cond_t wake;
    int quit;
    char who[64]; /* the prefix of its messages: "ksa train" */
    /* this rank, written by the main thread */
    long step;       /* the step of the run, for messages */
    double limit;    /* seconds a rank may wait in a collective; 0: no limit */
    char why[160];   /* where the limit comes from, for messages */
    int64_t entered; /* collectives entered since ksa_dist_watch_start */
    int waiting;     /* 1 while inside the last one entered */
    double since;    /* when it entered it (ksa_now) */
    int64_t told;    /* the count the others were last sent (by the thread) */
    /* the others, from their messages; the thread's own (arrays of [ranks]) */
    int64_t *peer_entered;
    double *peer_heard; /* when its last message came */
    int64_t *out;       /* send buffers */
    MPI_Request *sends;
} watch = {.lock = PTHREAD_MUTEX_INITIALIZER, .comm = MPI_COMM_NULL};

/* Test-only fault hooks (docs/mpi.md): KSA_TEST_FAULT=stop_at_step:RANK:STEP makes that
 * rank stop itself (SIGSTOP) as that step begins, before its collectives;
 * stop_in_collective:RANK:STEP in the first collective of that step, once the others know
 * it entered it. Each fires once. */
static int test_fault_now(const char *kind, long step)
{
    static int done;
    const char *f = getenv("KSA_TEST_FAULT");
    size_t n = strlen(kind);
    int r;
    long s;
    if (done || !f || strncmp(f, kind, n) != 0 || f[n] != ':' ||
        sscanf(f + n + 1, "%d:%ld", &r, &s) != 2 || r != ksa_dist_rank() || s != step)
        return 0;
    return done = 1;
}

void ksa_dist_enter_collective(void)
{
    watch_enter();
}

void ksa_dist_leave_collective(void)
{
    watch_leave();
}

static void watch_enter(void)
{
    if (!watch.started)
        return;
    pthread_mutex_lock(&watch.lock);
    watch.entered++;
    watch.waiting = 1;
    watch.since = ksa_now();
    pthread_cond_signal(&watch.wake);
    int stop = test_fault_now("stop_in_collective", watch.step);
    pthread_mutex_unlock(&watch.lock);
    if (!stop)
        return;
    for (int told = 0; !told;) { /* the thread sends the count ... */
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        pthread_mutex_lock(&watch.lock);
        told = watch.told == watch.entered;
        pthread_mutex_unlock(&watch.lock);
    }
    /* ... and, in its next rounds, the MPI calls that see the message through */
    nanosleep(&(struct timespec){.tv_sec = 1}, NULL);
    raise(SIGSTOP);
}

static void watch_leave(void)
{
    if (!watch.started)
        return;
    pthread_mutex_lock(&watch.lock);
    watch.waiting = 0;
    pthread_mutex_unlock(&watch.lock);
}

/* Thread: count to every other rank (skipping one whose previous message is still going). */
static void send_count(int64_t count)
{
    int n = ksa_dist_size(), me = ksa_dist_rank();
    for (int p = 0; p < n; p++) {
        int done = 1;
        if (p == me ||
            (watch.sends[p] != MPI_REQUEST_NULL &&
             (MPI_Test(&watch.sends[p], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done)))
            continue;
        watch.out[p] = count;
        MPI_Isend(&watch.out[p], 1, MPI_INT64_T, p, WATCH_TAG, watch.comm, &watch.sends[p]);
    }
}

/* Thread: every message that has come. */
static void receive_counts(void)
{
    for (;;) {
        int flag = 0;
        MPI_Status status;
        if (MPI_Iprobe(MPI_ANY_SOURCE, WATCH_TAG, watch.comm, &flag, &status) != MPI_SUCCESS ||
            !flag)
            return;
        int64_t count;
        int p = status.MPI_SOURCE;
        if (MPI_Recv(&count, 1, MPI_INT64_T, p, WATCH_TAG, watch.comm, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS)
            return;
        if (count > watch.peer_entered[p])
            watch.peer_entered[p] = count;
        watch.peer_heard[p] = ksa_now();
    }
}

/* Thread, under the lock: "rank 1", "ranks 1, 3" for the ranks whose flag is set. */
static void list_ranks(const int *flag, int n, char *out, size_t cap)
{
    size_t len = 0;
    int count = 0;
    for (int p = 0; p < n; p++)
        count += flag[p];
    len += (size_t)snprintf(out, cap, "rank%s", count > 1 ? "s" : "");
    for (int p = 0, first = 1; p < n && len < cap; p++)
        if (flag[p]) {
            len += (size_t)snprintf(out + len, cap - len, "%s %d", first ? "" : ",", p);
            first = 0;
        }
}

/* Thread, under the lock, when this rank has waited `waited` s in collective number
 * watch.entered, beyond the limit: ends the job naming who is missing, if it can tell. */
static void judge(double waited)
{
    int n = ksa_dist_size(), me = ksa_dist_rank();
    int *absent = ksa_alloc_zero((size_t)n * sizeof *absent);
    int *silent = ksa_alloc_zero((size_t)n * sizeof *silent);
    int n_absent = 0, n_silent = 0;
    double now = ksa_now(), longest = 0;
    for (int p = 0; p < n; p++) {
        if (p == me)
            continue;
        absent[p] = watch.peer_entered[p] < watch.entered;
        silent[p] = now - watch.peer_heard[p] > SILENT_SECONDS;
        n_absent += absent[p];
        n_silent += silent[p];
        if (silent[p] && now - watch.peer_heard[p] > longest)
            longest = now - watch.peer_heard[p];
    }
    char ranks[256], msg[600] = "";
    if (n_absent) {
        list_ranks(absent, n, ranks, sizeof ranks);
        snprintf(msg, sizeof msg, "%s did not arrive at step %ld within %g s (%s)", ranks,
                 watch.step, watch.limit, watch.why);
    } else if (n_silent) {
        list_ranks(silent, n, ranks, sizeof ranks);
        snprintf(msg, sizeof msg,
                 "%s stopped inside a collective of step %ld: every rank entered it %.0f s ago "
                 "(limit %g s, %s), and nothing has been heard from %s for %.0f s",
                 ranks, watch.step, waited, watch.limit, watch.why, n_silent > 1 ? "them" : "it",
                 longest);
    } else if (waited > 2 * watch.limit &&
               waited > watch.limit + SILENT_SECONDS + 2 * BEAT_SECONDS) {
        /* (a rank that stopped inside has fallen silent by then: its last message came at
         * most BEAT_SECONDS before it stopped and was read at most BEAT_SECONDS later) */
        snprintf(msg, sizeof msg,
                 "a collective of step %ld has not completed within %.0f s (limit %g s, %s), "
                 "though every rank entered it and answers",
                 watch.step, waited, watch.limit, watch.why);
    }
    ksa_free(absent);
    ksa_free(silent);
    if (!msg[0])
        return; /* not yet: a rank that stopped inside has not fallen silent yet */
    fprintf(stderr, "[rank %d] %s: %s; ending the job\n", me, watch.who, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ksa_now() time t as a CLOCK_MONOTONIC deadline (ksa_now reads that clock). */
static struct timespec monotonic_at(double t)
{
    if (t < 0)
        t = 0;
    time_t sec = (time_t)t;
    return (struct timespec){.tv_sec = sec, .tv_nsec = (long)((t - (double)sec) * 1e9)};
}

static void *watch_thread(void *arg)
{
    (void)arg;
    double next_beat = 0;
    pthread_mutex_lock(&watch.lock);
    while (!watch.quit) {
        int64_t count = watch.entered;
        if (count != watch.told || ksa_now() >= next_beat) {
            pthread_mutex_unlock(&watch.lock); /* MPI outside the lock: entering stays cheap */
            send_count(count);
            receive_counts();
            pthread_mutex_lock(&watch.lock);
            watch.told = count;
            next_beat = ksa_now() + BEAT_SECONDS;
        }
        double wake = next_beat;
        if (watch.waiting && watch.limit > 0) {
            double waited = ksa_now() - watch.since;
            if (waited > watch.limit) {
                pthread_mutex_unlock(&watch.lock);
                receive_counts(); /* the freshest counts before a verdict */
                pthread_mutex_lock(&watch.lock);
                if (watch.waiting && watch.entered == count)
                    judge(ksa_now() - watch.since);
                wake = ksa_now() + 0.25; /* no verdict yet: look again soon */
            } else if (watch.since + watch.limit < wake) {
                wake = watch.since + watch.limit;
            }
        }
        if (watch.entered == watch.told && !watch.quit) {
            struct timespec at = monotonic_at(wake);
            pthread_cond_timedwait(&watch.wake, &watch.lock, &at);
        }
    }
    pthread_mutex_unlock(&watch.lock);
    return NULL;
}

ksa_status ksa_dist_watch_start(const char *who)
{
    int n = ksa_dist_size();
    if (n == 1 || watch.started)
        return KSA_OK;
    if (!thread_multiple) {
        if (ksa_dist_rank() == 0)
            fprintf(stderr, "warning: this MPI library does not provide MPI_THREAD_MULTIPLE: "
                            "the watchdog is off (docs/mpi.md)\n");
        return KSA_OK;
    }
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &watch.comm);
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Comm_dup for the watchdog");
    snprintf(watch.who, sizeof watch.who, "%s", who);
    watch.peer_entered = ksa_alloc_zero((size_t)n * sizeof *watch.peer_entered);
    watch.peer_heard = ksa_alloc((size_t)n * sizeof *watch.peer_heard);
    watch.out = ksa_alloc_zero((size_t)n * sizeof *watch.out);
    watch.sends = ksa_alloc((size_t)n * sizeof *watch.sends);
    double now = ksa_now();
    for (int p = 0; p < n; p++) {
        watch.peer_heard[p] = now;
        watch.sends[p] = MPI_REQUEST_NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&watch.wake, &ca);
    pthread_condattr_destroy(&ca);
    watch.quit = 0;
    watch.started = 1;
    if (pthread_create(&watch.thread, NULL, watch_thread, NULL) != 0) {
        watch.started = 0;
        return ksa_fail(KSA_ENOMEM, "cannot start the watchdog thread");
    }
    return KSA_OK;
}

void ksa_dist_watch_set(long step, double limit, const char *why)
{
    if (!watch.started)
        return;
    pthread_mutex_lock(&watch.lock);
    watch.step = step;
    watch.limit = limit > 0 ? limit : 0;
    snprintf(watch.why, sizeof watch.why, "%s", why);
    pthread_cond_signal(&watch.wake);
    pthread_mutex_unlock(&watch.lock);
    if (test_fault_now("stop_at_step", step))
        raise(SIGSTOP);
}

/* Before MPI_Finalize: the thread ends, its sends complete. Messages the others sent last
 * may stay unreceived; MPI_Finalize drops them with the communicator. */
static void watch_stop(void)
{
    if (!watch.started)
        return;
    pthread_mutex_lock(&watch.lock);
    watch.quit = 1;
    pthread_cond_signal(&watch.wake);
    pthread_mutex_unlock(&watch.lock);
    pthread_join(watch.thread, NULL);
    watch.started = 0;
    for (int p = 0; p < ksa_dist_size(); p++)
        if (watch.sends[p] != MPI_REQUEST_NULL)
            MPI_Wait(&watch.sends[p], MPI_STATUS_IGNORE);
    pthread_cond_destroy(&watch.wake);
    ksa_free(watch.peer_entered);
    ksa_free(watch.peer_heard);
    ksa_free(watch.out);
    ksa_free(watch.sends);
}
