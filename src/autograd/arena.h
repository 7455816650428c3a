/* arena.h - per-step activation memory: bump allocation, O(1) reset, never grows.
 *
 * Sized once before the first step; an allocation past the capacity aborts with the bytes
 * asked, used and available (a sizing bug, not a user error). No malloc inside a step.    */
#ifndef KSA_AUTOGRAD_ARENA_H
#define KSA_AUTOGRAD_ARENA_H

#include "core/core.h"

typedef struct {
    char *base;      /* owned, 64-byte aligned */
    size_t capacity; /* bytes */
    size_t used;     /* bytes handed out since the last reset */
    size_t peak;     /* largest `used` ever seen */
} ksa_arena;

void ksa_arena_init(ksa_arena *a, size_t capacity_bytes);
/* The same in a sparse region (ksa_alloc_sparse_region), for a sizing run. */
void ksa_arena_init_sparse(ksa_arena *a, size_t capacity_bytes);
void ksa_arena_free(ksa_arena *a);
void ksa_arena_reset(ksa_arena *a);                /* frees nothing, O(1) */
void *ksa_arena_alloc(ksa_arena *a, size_t bytes); /* 64-byte aligned, uninitialised */
ksa_real *ksa_arena_reals(ksa_arena *a, size_t n); /* uninitialised */
ksa_real *ksa_arena_zeros(ksa_arena *a, size_t n); /* zeroed */

/* Scratch that lives only inside one call (kernel workspaces): take a mark, allocate, and
 * release back to the mark afterwards; everything allocated after the mark is given back. */
size_t ksa_arena_mark(const ksa_arena *a);
void ksa_arena_release(ksa_arena *a, size_t mark);

#endif
