/* cp_comm.h - the MPI side of ksa_cp, for src/dist's own files (context.c, cp_attn.c). */
#ifndef KSA_DIST_CP_COMM_H
#define KSA_DIST_CP_COMM_H

#include <mpi.h>

struct ksa_cp_comm {
    MPI_Comm comm; /* the context group's ranks, in block order */
};

#ifdef KSA_REAL_DOUBLE
#define KSA_MPI_REAL MPI_DOUBLE
#else
#define KSA_MPI_REAL MPI_FLOAT
#endif

#endif
