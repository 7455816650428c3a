/* context.c - the context-parallel grid and its blocks (context.h). */
#include "context.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "cp_comm.h"
#include "dist/dist.h"

ksa_status ksa_cp_check(int P, int n_ranks, size_t L, size_t unit)
{
    if (P < 1)
        return ksa_fail(KSA_EINVAL, "context_parallel = %d: it must be at least 1", P);
    if (n_ranks % P != 0)
        return ksa_fail(KSA_EINVAL,
                        "context_parallel = %d does not divide the %d ranks (they form a grid of "
                        "context groups of %d ranks)",
                        P, n_ranks, P);
    if (P > 1 && L / unit < (size_t)P)
        return ksa_fail(KSA_EINVAL,
                        "context_parallel = %d: a sequence of %zu tokens has %zu whole chunk%s of "
                        "%zu, fewer than the %d blocks (a block would be shorter than one chunk)",
                        P, L, L / unit, L / unit == 1 ? "" : "s", unit, P);
    return KSA_OK;
}

ksa_status ksa_cp_check_messages(size_t L, size_t C, size_t S, size_t nseq, size_t kv_width)
{
    double rows = (double)L + (double)(L / (C ? C : 1)) * (double)S;
    double reals = 2 * (double)nseq * (double)kv_width * rows;
    if (reals > (double)INT_MAX)
        return ksa_fail(KSA_EINVAL,
                        "context parallelism: the keys and values of %zu row%s of %zu tokens "
                        "(%.3g elements) may not fit one MPI message (at most %d elements): "
                        "lower micro_batch",
                        nseq, nseq == 1 ? "" : "s", L, reals, INT_MAX);
    return KSA_OK;
}

ksa_status ksa_cp_init(ksa_cp *cp, int P, size_t L, size_t unit)
{
    memset(cp, 0, sizeof *cp);
    int world = ksa_dist_size(), me = ksa_dist_rank();
    KSA_TRY(ksa_cp_check(P, world, L, unit));
    cp->P = P;
    cp->rank = me % P;
    cp->group = me / P;
    cp->n_groups = world / P;
    cp->L = L;
    cp->unit = unit;
    cp->start = ksa_alloc_zero(((size_t)P + 1) * sizeof *cp->start);
    size_t per = L / unit / (size_t)P;
    for (int r = 0; r < P; r++)
        cp->start[r] = (size_t)r * per * unit;
    cp->start[P] = L;
    if (P == 1)
        return KSA_OK;
    cp->comm = ksa_alloc_zero(sizeof *cp->comm);
    int rc = MPI_Comm_split(MPI_COMM_WORLD, cp->group, cp->rank, &cp->comm->comm);
    if (rc != MPI_SUCCESS) {
        ksa_cp_free(cp);
        return ksa_fail(KSA_EMPI, "MPI_Comm_split of the context groups failed");
    }
    return KSA_OK;
}

void ksa_cp_free(ksa_cp *cp)
{
    if (cp->comm) {
        if (cp->comm->comm != MPI_COMM_NULL)
            MPI_Comm_free(&cp->comm->comm);
        ksa_free(cp->comm);
    }
    ksa_free(cp->start);
    memset(cp, 0, sizeof *cp);
}

void ksa_cp_summary_needs(const ksa_cp *cp, int block, size_t C, size_t S, size_t W, size_t *h0,
                          size_t *ns)
{
    size_t t0 = cp->start[block], t1 = cp->start[block + 1], c0 = t0 / C;
    size_t last = (t1 - 1) / C, w = last > W ? last - W : 0;
    *h0 = c0 > W ? (c0 - W) * C : 0;
    *ns = (w < c0 ? w : c0) * S;
}
