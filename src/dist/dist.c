/* dist.c - MPI start-up and shutdown. */
#include "dist.h"

#include <mpi.h>

ksa_status ksa_dist_init(int *argc, char ***argv)
{
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(argc, argv) != MPI_SUCCESS)
        return ksa_fail(KSA_EMPI, "MPI_Init failed");
    ksa_log_rank = ksa_dist_rank();
    return KSA_OK;
}

void ksa_dist_finalize(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized)
        MPI_Finalize();
}

int ksa_dist_rank(void)
{
    int initialized = 0, rank = 0;
    MPI_Initialized(&initialized);
    if (initialized)
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

int ksa_dist_size(void)
{
    int initialized = 0, size = 1;
    MPI_Initialized(&initialized);
    if (initialized)
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}
