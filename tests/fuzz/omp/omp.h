/* omp.h - the OpenMP runtime calls of src/, for the fuzz build only (mk/fuzz.mk).
 *
 * The harnesses compile src/ without -fopenmp: the readers do not need threads, a serial
 * program is simpler to fuzz, and clang's OpenMP runtime (libomp) would leave a file in
 * /dev/shm behind every crashed process. The `#pragma omp` lines are then ignored and these
 * calls resolve to GCC's libgomp, which OpenBLAS loads anyway (outside a parallel region they
 * report one thread).                                                                      */
#ifndef KSA_TESTS_FUZZ_OMP_H
#define KSA_TESTS_FUZZ_OMP_H

int omp_get_max_threads(void);
int omp_get_num_threads(void);
int omp_get_thread_num(void);
void omp_set_num_threads(int n);

#endif
