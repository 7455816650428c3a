/* grad_pool.c - first-fit blocks over one region, freed blocks merged (grad_pool.h). */
#include "grad_pool.h"

#include <string.h>

static void pool_init(ksa_grad_pool *p, size_t capacity_bytes, int sparse)
{
    memset(p, 0, sizeof *p);
    p->capacity = (capacity_bytes + 63) / 64 * 64;
    p->base = sparse ? ksa_alloc_sparse_region(p->capacity) : ksa_alloc_region(p->capacity);
    p->max_blocks = 64;
    p->blocks = ksa_alloc(p->max_blocks * sizeof *p->blocks);
}

void ksa_grad_pool_init(ksa_grad_pool *p, size_t capacity_bytes)
{
    pool_init(p, capacity_bytes, 0);
}

void ksa_grad_pool_init_sparse(ksa_grad_pool *p, size_t capacity_bytes)
{
    pool_init(p, capacity_bytes, 1);
}

void ksa_grad_pool_free_all(ksa_grad_pool *p)
{
    ksa_free_region(p->base, p->capacity);
    ksa_free(p->blocks);
    memset(p, 0, sizeof *p);
}

void ksa_grad_pool_reset(ksa_grad_pool *p)
{
    p->n = 0;
    p->top = 0;
    p->in_use = 0;
}

/* Room for one more block in the list (the list is metadata: a few KiB at most). */
static void blocks_reserve(ksa_grad_pool *p)
{
    if (p->n < p->max_blocks)
        return;
    p->max_blocks *= 2;
    ksa_pool_block *b = ksa_alloc(p->max_blocks * sizeof *b);
    memcpy(b, p->blocks, p->n * sizeof *b);
    ksa_free(p->blocks);
    p->blocks = b;
}

/* Insert blk before position i. */
static void blocks_insert(ksa_grad_pool *p, size_t i, ksa_pool_block blk)
{
    blocks_reserve(p);
    memmove(p->blocks + i + 1, p->blocks + i, (p->n - i) * sizeof *p->blocks);
    p->blocks[i] = blk;
    p->n++;
}

static void blocks_remove(ksa_grad_pool *p, size_t i)
{
    memmove(p->blocks + i, p->blocks + i + 1, (p->n - i - 1) * sizeof *p->blocks);
    p->n--;
}

ksa_real *ksa_grad_pool_alloc(ksa_grad_pool *p, size_t n)
{
    size_t bytes = (n * sizeof(ksa_real) + 63) / 64 * 64;
    if (bytes == 0)
        bytes = 64;
    size_t i = 0;
    while (i < p->n && (p->blocks[i].used || p->blocks[i].bytes < bytes))
        i++;
    if (i == p->n) { /* no free block fits: a new one at the top (a free block is never
                      * last: releasing the last block brings the top down) */
        KSA_ASSERT(p->top + bytes <= p->capacity,
                   "gradient pool overflow: asked %zu bytes, %zu in use, %zu free at the top "
                   "of %zu",
                   bytes, p->in_use, p->capacity - p->top, p->capacity);
        blocks_insert(p, i, (ksa_pool_block){.offset = p->top, .bytes = bytes, .used = 1});
        p->top += bytes;
        if (p->top > p->high_water)
            p->high_water = p->top;
    } else { /* first fit: use its front, keep the rest free */
        ksa_pool_block *b = &p->blocks[i];
        if (b->bytes > bytes) {
            ksa_pool_block rest = {.offset = b->offset + bytes, .bytes = b->bytes - bytes};
            b->bytes = bytes;
            blocks_insert(p, i + 1, rest);
        }
        p->blocks[i].used = 1;
    }
    p->in_use += bytes;
    if (p->in_use > p->peak)
        p->peak = p->in_use;
    return (ksa_real *)(p->base + p->blocks[i].offset);
}

ksa_real *ksa_grad_pool_zeros(ksa_grad_pool *p, size_t n)
{
    ksa_real *ptr = ksa_grad_pool_alloc(p, n);
    ksa_zero(ptr, (n * sizeof(ksa_real) + 63) / 64 * 64);
    return ptr;
}

void ksa_grad_pool_release(ksa_grad_pool *p, void *ptr)
{
    KSA_ASSERT(ksa_grad_pool_owns(p, ptr), "gradient pool: releasing a pointer it does not own");
    size_t offset = (size_t)((char *)ptr - p->base), lo = 0, hi = p->n;
    while (lo < hi) { /* the block at offset */
        size_t mid = (lo + hi) / 2;
        if (p->blocks[mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    KSA_ASSERT(lo < p->n && p->blocks[lo].offset == offset && p->blocks[lo].used,
               "gradient pool: releasing offset %zu, which is not a block in use", offset);
    size_t i = lo;
    p->blocks[i].used = 0;
    p->in_use -= p->blocks[i].bytes;
    if (i + 1 < p->n && !p->blocks[i + 1].used) { /* merge with the next */
        p->blocks[i].bytes += p->blocks[i + 1].bytes;
        blocks_remove(p, i + 1);
    }
    if (i > 0 && !p->blocks[i - 1].used) { /* and with the previous */
        p->blocks[i - 1].bytes += p->blocks[i].bytes;
        blocks_remove(p, i);
        i--;
    }
    if (i == p->n - 1) { /* a free block at the top: the top comes down */
        p->top = p->blocks[i].offset;
        blocks_remove(p, i);
    }
}

int ksa_grad_pool_owns(const ksa_grad_pool *p, const void *ptr)
{
    return p->base && (const char *)ptr >= p->base && (const char *)ptr < p->base + p->capacity;
}
