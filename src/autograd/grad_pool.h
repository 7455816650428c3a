/* grad_pool.h - the memory of activation gradients during one backward.
 *
 * An activation's gradient is needed from the first backward node that adds into it (its
 * last consumer in the forward) until the backward of the node that produced it; after
 * that it is dead. The tape frees it then (tape.h), and the pool gives the space to the
 * gradients created later, so the backward's peak is the largest set of gradients alive at
 * one time, not the sum of all of them.
 *
 * One region reserved up front (no malloc inside a step), first-fit over a list of blocks
 * sorted by address, a freed block merged with free neighbours. A backward frees its
 * gradients in nearly the reverse order of their creation, so the blocks stay few (tens)
 * and the region's low addresses are reused: `high_water` (the end of the highest block
 * ever handed out) is the memory the pool has touched. An allocation past the capacity
 * aborts with the bytes asked and in use (a sizing bug, not a user error).               */
#ifndef KSA_AUTOGRAD_GRAD_POOL_H
#define KSA_AUTOGRAD_GRAD_POOL_H

#include "core/core.h"

typedef struct {
    size_t offset, bytes; /* within the region, multiples of 64 */
    int used;
} ksa_pool_block;

typedef struct {
    char *base;             /* owned, 64-byte aligned */
    size_t capacity;        /* bytes */
    ksa_pool_block *blocks; /* [n] sorted by offset, covering [0, top) without gaps */
    size_t n, max_blocks;
    size_t top;        /* end of the last block */
    size_t in_use;     /* bytes of used blocks */
    size_t peak;       /* largest in_use since init */
    size_t high_water; /* largest top since init: the bytes the pool has touched */
} ksa_grad_pool;

void ksa_grad_pool_init(ksa_grad_pool *p, size_t capacity_bytes);
/* The same in a sparse region (ksa_alloc_sparse_region), for a sizing run. */
void ksa_grad_pool_init_sparse(ksa_grad_pool *p, size_t capacity_bytes);
void ksa_grad_pool_free_all(ksa_grad_pool *p); /* releases the region */
void ksa_grad_pool_reset(ksa_grad_pool *p);    /* every block free, O(1) */
/* n reals, zeroed, 64-byte aligned. */
ksa_real *ksa_grad_pool_zeros(ksa_grad_pool *p, size_t n);
/* The same uninitialised (a sizing run, which writes nothing). */
ksa_real *ksa_grad_pool_alloc(ksa_grad_pool *p, size_t n);
/* Gives back a block from ksa_grad_pool_zeros. */
void ksa_grad_pool_release(ksa_grad_pool *p, void *ptr);
/* 1 if ptr points into the pool's region. */
int ksa_grad_pool_owns(const ksa_grad_pool *p, const void *ptr);

#endif
