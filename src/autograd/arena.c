/* arena.c - bump allocator for one training step. */
#include "arena.h"

#include <string.h>

void ksa_arena_init(ksa_arena *a, size_t capacity_bytes)
{
    a->capacity = (capacity_bytes + 63) / 64 * 64;
    a->base = ksa_alloc_region(a->capacity);
    a->used = 0;
    a->peak = 0;
}

void ksa_arena_init_sparse(ksa_arena *a, size_t capacity_bytes)
{
    a->capacity = (capacity_bytes + 63) / 64 * 64;
    a->base = ksa_alloc_sparse_region(a->capacity);
    a->used = 0;
    a->peak = 0;
}

void ksa_arena_free(ksa_arena *a)
{
    ksa_free_region(a->base, a->capacity);
    a->base = NULL;
    a->capacity = a->used = a->peak = 0;
}

void ksa_arena_reset(ksa_arena *a)
{
    a->used = 0;
}

void *ksa_arena_alloc(ksa_arena *a, size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    KSA_ASSERT(rounded <= a->capacity - a->used,
               "arena overflow: asked %zu bytes, %zu used of %zu (%zu left)", bytes, a->used,
               a->capacity, a->capacity - a->used);
    void *p = a->base + a->used;
    a->used += rounded;
    if (a->used > a->peak)
        a->peak = a->used;
    return p;
}

ksa_real *ksa_arena_reals(ksa_arena *a, size_t n)
{
    return ksa_arena_alloc(a, n * sizeof(ksa_real));
}

ksa_real *ksa_arena_zeros(ksa_arena *a, size_t n)
{
    ksa_real *p = ksa_arena_reals(a, n);
    ksa_zero(p, n * sizeof(ksa_real));
    return p;
}

size_t ksa_arena_mark(const ksa_arena *a)
{
    return a->used;
}

void ksa_arena_release(ksa_arena *a, size_t mark)
{
    KSA_ASSERT(mark <= a->used, "arena release to %zu beyond the %zu bytes in use", mark, a->used);
    a->used = mark;
}
