/* core.c - status messages, asserts, aligned allocation, thread knob, clock. */
#include "core/core.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <omp.h>
#include <cblas.h>

int ksa_log_rank = 0;

static _Thread_local char last_error[1024];

static const char *const status_names[] = {
    [KSA_OK] = "ok",
    [KSA_EINVAL] = "invalid argument",
    [KSA_EIO] = "i/o error",
    [KSA_EFORMAT] = "bad format",
    [KSA_ENOMEM] = "out of memory",
    [KSA_EMPI] = "mpi error",
    [KSA_ENUMERIC] = "numeric error",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == KSA_STATUS_COUNT,
               "every ksa_status needs a name");

ksa_status ksa_fail(ksa_status code, const char *fmt, ...)
{
    char msg[sizeof last_error]; /* the arguments may point into last_error itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return code;
}

const char *ksa_last_error(void)
{
    return last_error;
}

const char *ksa_status_name(ksa_status code)
{
    return (code >= 0 && code < KSA_STATUS_COUNT) ? status_names[code] : "unknown status";
}

void ksa_assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[rank %d] %s:%d: internal error: `%s` failed: %s\n", ksa_log_rank, file, line,
            expr, msg);
    fflush(stderr);
    abort();
}

void *ksa_alloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "[rank %d] out of memory: could not allocate %zu bytes (%.2f GiB)\n",
                ksa_log_rank, bytes, (double)bytes / (1u << 30));
        fflush(stderr);
        abort();
    }
    return p;
}

void *ksa_alloc_zero(size_t bytes)
{
    void *p = ksa_alloc(bytes);
    memset(p, 0, bytes);
    return p;
}

void ksa_free(void *p)
{
    free(p);
}

enum { HUGE_PAGE = 2 << 20 };

static void *map_region(size_t bytes, int huge)
{
    size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (size == 0)
        size = HUGE_PAGE;
    /* map one huge page more, then unmap the ends so that the region is 2 MiB aligned */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (huge ? 0 : MAP_NORESERVE);
    char *raw = mmap(NULL, size + HUGE_PAGE, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (raw == MAP_FAILED) {
        fprintf(stderr, "[rank %d] out of memory: could not map %zu bytes (%.2f GiB)\n",
                ksa_log_rank, bytes, (double)bytes / (1u << 30));
        fflush(stderr);
        abort();
    }
    char *p = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + size + HUGE_PAGE - (p + size));
    if (tail)
        munmap(p + size, tail);
    /* a hint: without THP the region still works */
    madvise(p, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return p;
}

void *ksa_alloc_region(size_t bytes)
{
    return map_region(bytes, 1);
}

void *ksa_alloc_sparse_region(size_t bytes)
{
    return map_region(bytes, 0);
}

size_t ksa_proc_status_bytes(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t kib = 0, n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kib = strtoull(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kib << 10;
}

size_t ksa_resident_bytes(void)
{
    return ksa_proc_status_bytes("VmRSS");
}

int ksa_reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

void ksa_free_region(void *p, size_t bytes)
{
    if (!p)
        return;
    size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    munmap(p, size ? size : HUGE_PAGE);
}

void ksa_zero(void *p, size_t bytes)
{
    enum { CHUNK = 1 << 20 };
    if (bytes < 4 * (size_t)CHUNK) {
        memset(p, 0, bytes);
        return;
    }
    size_t chunks = (bytes + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        size_t from = c * CHUNK, n = from + CHUNK <= bytes ? CHUNK : bytes - from;
        memset((char *)p + from, 0, n);
    }
}

void ksa_threads_set(int n)
{
    KSA_ASSERT(n >= 1, "thread count must be at least 1, got %d", n);
    omp_set_num_threads(n);
    openblas_set_num_threads(n); /* the OpenMP build of OpenBLAS shares this pool */
}

int ksa_threads_get(void)
{
    return omp_get_max_threads();
}

double ksa_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double ksa_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- numbers as text ------------------------------------------------------------------ */
const char *ksa_format_double(char buf[32], double v)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, v);
        if (digits == 17 || strtod(buf, NULL) == v || v != v)
            break;
    }
    return buf;
}
