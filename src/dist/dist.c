/* dist.c - MPI start-up and shutdown. */
#include "dist.h"

#include <limits.h>
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
    if (!initialized && MPI_Init(argc, argv) != MPI_SUCCESS)
        return ksa_fail(KSA_EMPI, "MPI_Init failed");
    ksa_log_rank = ksa_dist_rank();
    if (report_comm == MPI_COMM_NULL && MPI_Comm_dup(MPI_COMM_WORLD, &report_comm) != MPI_SUCCESS)
        return ksa_fail(KSA_EMPI, "MPI_Comm_dup of MPI_COMM_WORLD failed");
    return KSA_OK;
}

void ksa_dist_finalize(void)
{
    if (!ksa_dist_active())
        return;
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
    if (s <= cap) {
        rc = MPI_Reduce_scatter_block(grad, slice, (int)s, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD);
        return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Reduce_scatter_block");
    }
    /* in pieces: rank q receives the sum of everyone's q-th slice, piece by piece */
    for (int q = 0; q < n; q++)
        for (size_t off = 0; off < s; off += cap) {
            size_t len = s - off < cap ? s - off : cap;
            rc = MPI_Reduce(grad + (size_t)q * s + off, q == r ? slice + off : NULL, (int)len,
                            MPI_REAL_T, MPI_SUM, q, MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS)
                return mpi_fail(rc, "MPI_Reduce");
        }
    return KSA_OK;
}

ksa_status ksa_dist_allgather(ksa_real *data, size_t s)
{
    int n = ksa_dist_size(), rc;
    size_t cap = max_count();
    if (n == 1)
        return KSA_OK;
    if (s <= cap) {
        rc = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, (int)s, MPI_REAL_T,
                           MPI_COMM_WORLD);
        return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allgather");
    }
    for (int q = 0; q < n; q++)
        for (size_t off = 0; off < s; off += cap) {
            size_t len = s - off < cap ? s - off : cap;
            rc = MPI_Bcast(data + (size_t)q * s + off, (int)len, MPI_REAL_T, q, MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS)
                return mpi_fail(rc, "MPI_Bcast");
        }
    return KSA_OK;
}

ksa_status ksa_dist_sum_reals(ksa_real *buf, size_t n)
{
    if (ksa_dist_size() == 1)
        return KSA_OK;
    size_t cap = max_count();
    for (size_t off = 0; off < n; off += cap) {
        size_t len = n - off < cap ? n - off : cap;
        int rc =
            MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)len, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(rc, "MPI_Allreduce");
    }
    return KSA_OK;
}

ksa_status ksa_dist_sum(double *x, int n)
{
    if (ksa_dist_size() == 1)
        return KSA_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allreduce");
}

int ksa_dist_any(int flag)
{
    if (ksa_dist_size() == 1)
        return flag != 0;
    int v = flag != 0, any = v;
    MPI_Allreduce(&v, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

void ksa_dist_barrier(void)
{
    if (ksa_dist_size() > 1)
        MPI_Barrier(MPI_COMM_WORLD);
}

ksa_status ksa_dist_agree(ksa_status st, int *failed_rank)
{
    *failed_rank = -1;
    if (ksa_dist_size() == 1)
        return st;
    struct {
        int code, rank;
    } in = {(int)st, ksa_dist_rank()}, out;
    int rc = MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return st != KSA_OK ? st : mpi_fail(rc, "MPI_Allreduce of the ranks' status");
    if (st != KSA_OK || out.code == KSA_OK)
        return st;
    *failed_rank = out.rank;
    return ksa_fail((ksa_status)out.code, "rank %d failed (its message says why)", out.rank);
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
    int rc = MPI_Allgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? KSA_OK : mpi_fail(rc, "MPI_Allgather");
}
