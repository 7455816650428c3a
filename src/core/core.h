/* core.h - the real type, status codes, asserts, aligned allocation, threads, timing.
 *
 * Everything in src/ is written once against ksa_real and compiled twice (DESIGN.md §4):
 * float (bin/ksa) and, with -DKSA_REAL_DOUBLE, double (bin/ksa64, gradient checks).       */
#ifndef KSA_CORE_CORE_H
#define KSA_CORE_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef KSA_REAL_DOUBLE
typedef double ksa_real;
#define KSA_REAL_NAME "float64"
#else
typedef float ksa_real;
#define KSA_REAL_NAME "float32"
#endif

/* ---- errors of the outside world: returned, never silent (STYLE.md §5) ---------------- */
typedef enum {
    KSA_OK = 0,
    KSA_EINVAL,   /* bad argument, configuration or command line */
    KSA_EIO,      /* a file could not be opened, read or written */
    KSA_EFORMAT,  /* a file was read but its content is wrong    */
    KSA_ENOMEM,   /* an allocation outside a step failed         */
    KSA_EMPI,     /* an MPI call failed                          */
    KSA_ENUMERIC, /* a non-finite loss or gradient               */
    KSA_STATUS_COUNT
} ksa_status;

/* Records the message (printf format) as the last error and returns code. */
ksa_status ksa_fail(ksa_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ksa_last_error(void);
const char *ksa_status_name(ksa_status code);

#define KSA_TRY(expr)                                                                              \
    do {                                                                                           \
        ksa_status ksa_try_status_ = (expr);                                                       \
        if (ksa_try_status_ != KSA_OK)                                                             \
            return ksa_try_status_;                                                                \
    } while (0)

/* ---- bugs: always compiled, abort with rank, place, expression and values ------------- */
extern int ksa_log_rank; /* set by src/dist once MPI is up; 0 before */

void ksa_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#define KSA_ASSERT(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ksa_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                               \
    } while (0)

/* ---- memory outside a step: 64-byte aligned, aborts naming the size on failure -------- */
void *ksa_alloc(size_t bytes);      /* uninitialised */
void *ksa_alloc_zero(size_t bytes); /* zeroed        */
void ksa_free(void *p);
/* Large regions reserved once (the step arena, the gradient pool): zeroed by the kernel,
 * 2 MiB aligned, and marked for transparent huge pages (madvise: Debian's default mode),
 * so a first touch faults in 2 MiB instead of 4 KiB. Free with ksa_free_region and the same
 * size. Pages stay unallocated until written.                                           */
void *ksa_alloc_region(size_t bytes);
/* The same address space for a sizing run (ksa_model_plan) that writes only a few scattered
 * bytes of it: 4 KiB pages, no commit charge (MAP_NORESERVE), so planning a step of any size
 * touches almost nothing. Free with ksa_free_region.                                      */
void *ksa_alloc_sparse_region(size_t bytes);

/* The process's resident memory now (VmRSS of /proc/self/status), bytes; 0 if unknown. */
size_t ksa_resident_bytes(void);
/* Any "Key:   N kB" line of /proc/self/status (VmRSS, VmHWM: the peak), bytes; 0 if unknown. */
size_t ksa_proc_status_bytes(const char *key);
/* Resets the kernel's peak-RSS mark (VmHWM) to the current RSS (/proc/self/clear_refs);
 * 0 when Linux refuses. */
int ksa_reset_peak_rss(void);
void ksa_free_region(void *p, size_t bytes);
/* memset(p, 0, bytes), on all threads when bytes is large. */
void ksa_zero(void *p, size_t bytes);

/* ---- threads: one knob for OpenMP loops and OpenBLAS (DESIGN.md §4) ------------------- */
void ksa_threads_set(int n);
int ksa_threads_get(void);
/* Elementwise and per-row loops over fewer elements than this run on one thread (an
 * `if` clause of their parallel region): a decode step's rows are this small, and waking
 * the other threads for them costs more than the work, much more on a loaded machine.
 * Such loops compute every element the same way on any number of threads.             */
#define KSA_PARALLEL_MIN_ELEMENTS 32768

/* ---- numbers as text ------------------------------------------------------------------ */
/* The shortest "%.Ng" (N = 15, 16 or 17) that reads back as exactly v: full precision
 * without the noise digits of %.17g (0.0003, not 0.00029999999999999997). Returns buf. */
const char *ksa_format_double(char buf[32], double v);

/* ---- time ----------------------------------------------------------------------------- */
double ksa_now(void);         /* seconds, monotonic */
double ksa_cpu_seconds(void); /* CPU time of the whole process so far, all threads */

#endif
