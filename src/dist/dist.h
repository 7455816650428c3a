/* dist.h - MPI: start-up, rank and size, shutdown. One code path for 1 and N ranks: a
 * process started without mpirun initialises MPI as a singleton (DESIGN.md §1). Data
 * parallelism and sharding build on this (the MPI issue).                               */
#ifndef KSA_DIST_DIST_H
#define KSA_DIST_DIST_H

#include "autograd/core.h"

/* MPI_Init (once); sets ksa_log_rank so errors are prefixed with the rank. */
ksa_status ksa_dist_init(int *argc, char ***argv);
void ksa_dist_finalize(void);
int ksa_dist_rank(void);
int ksa_dist_size(void);

#endif
