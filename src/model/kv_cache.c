/* kv_cache.c - row bookkeeping of the decoding KV cache (KSA_SPEC §8.2, layout in kv_cache.h).
 *
 * The state is three numbers (T, n_done, pending); every row index is computed from them, so
 * nothing here is proportional to the context length.                                      */
#include "model/kv_cache.h"

#include <stdint.h>

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Text tokens of the chunk being filled (C while it waits for its summaries and flush). */
static size_t current_len(const ksa_kv_cache *c)
{
    return c->T - c->n_done * c->C;
}

/* Chunks whose text is in the ring: the last min(W, n_done) completed ones. */
static size_t ring_chunks(const ksa_kv_cache *c)
{
    return min_size(c->W, c->n_done);
}

/* Completed chunks older than the window: a text query sees their summaries. */
static size_t old_chunks(const ksa_kv_cache *c)
{
    return c->n_done > c->W ? c->n_done - c->W : 0;
}

ksa_status ksa_kv_cache_init(ksa_kv_cache *c, ksa_kv_kind kind, size_t C, size_t S, size_t W,
                             size_t T_max)
{
    *c = (ksa_kv_cache){.kind = kind, .T_max = T_max};
    if (kind == KSA_KV_LAYER_CAUSAL)
        return KSA_OK;
    if (kind != KSA_KV_LAYER_SUMMARY)
        return ksa_fail(KSA_EINVAL, "kv cache: unknown layer kind %d", (int)kind);
    if (C == 0)
        return ksa_fail(KSA_EINVAL, "kv cache: summary_chunk_size must be >= 1, got 0");
    /* rows_for(T_max) = S + C + Wr*C + n_max*S must fit in size_t: each of the four terms
     * is kept below SIZE_MAX/4 (Wr*C <= T_max) */
    if (T_max > SIZE_MAX / 4 || C > SIZE_MAX / 4 || S > SIZE_MAX / 4)
        return ksa_fail(KSA_EINVAL, "kv cache: sizes too large (T_max %zu, C %zu, S %zu)", T_max, C,
                        S);
    size_t n_max = T_max / C;
    size_t Wr = min_size(W, n_max);
    if (n_max > 0 && S > (SIZE_MAX / 4) / n_max)
        return ksa_fail(KSA_EINVAL,
                        "kv cache: %zu text tokens with %zu summary tokens per chunk "
                        "of %zu need more rows than fit in memory",
                        T_max, S, C);
    c->C = C;
    c->S = S;
    c->W = W;
    c->Wr = Wr;
    c->base = S + C + Wr * C;
    return KSA_OK;
}

size_t ksa_kv_cache_rows_for(const ksa_kv_cache *c, size_t T)
{
    KSA_ASSERT(T <= c->T_max, "kv cache: %zu tokens asked, the cache holds at most %zu", T,
               c->T_max);
    if (c->kind == KSA_KV_LAYER_CAUSAL)
        return T;
    return c->base + (T / c->C) * c->S;
}

size_t ksa_kv_cache_grow_rows(const ksa_kv_cache *c, size_t have)
{
    size_t need = ksa_kv_cache_rows_for(c, c->T < c->T_max ? c->T + 1 : c->T);
    if (have >= need)
        return have;
    size_t cap = ksa_kv_cache_rows_for(c, c->T_max);
    size_t grown = have > cap / 2 ? cap : 2 * have;
    return grown > need ? grown : need;
}

size_t ksa_kv_cache_live_rows(const ksa_kv_cache *c)
{
    if (c->kind == KSA_KV_LAYER_CAUSAL)
        return c->T;
    size_t n = c->T / c->C;
    return c->T % c->C + c->C * min_size(n, c->W) + c->S * n;
}

ksa_kv_append ksa_kv_cache_append_text(ksa_kv_cache *c)
{
    KSA_ASSERT(c->T < c->T_max, "kv cache full: it was sized for %zu text tokens", c->T_max);
    ksa_kv_append a = {.t = c->T};
    if (c->kind == KSA_KV_LAYER_CAUSAL) {
        a.row = c->T++;
        return a;
    }
    KSA_ASSERT(!c->pending, "kv cache: token %zu appended before chunk %zu was flushed", c->T,
               c->n_done);
    a.chunk = a.t / c->C;
    a.offset = a.t % c->C;
    a.row = c->S + c->C - 1 - a.offset;
    a.completes_chunk = a.offset == c->C - 1;
    c->pending = a.completes_chunk;
    c->T++;
    return a;
}

ksa_kv_range ksa_kv_cache_text_reads(const ksa_kv_cache *c)
{
    KSA_ASSERT(c->T > 0, "kv cache: a text query before any text token");
    if (c->kind == KSA_KV_LAYER_CAUSAL)
        return (ksa_kv_range){0, c->T};
    /* own chunk causally, then the ring, then (only once the ring is full, n_done > W) the
     * summaries of the chunks that left the window: one contiguous range */
    size_t begin = c->S + c->C - current_len(c);
    size_t end = c->S + c->C + ring_chunks(c) * c->C + old_chunks(c) * c->S;
    KSA_ASSERT(old_chunks(c) == 0 || ring_chunks(c) == c->Wr, "kv cache: ring %zu of %zu chunks",
               ring_chunks(c), c->Wr);
    return (ksa_kv_range){begin, end};
}

size_t ksa_kv_cache_summary_row(const ksa_kv_cache *c, size_t j)
{
    KSA_ASSERT(c->kind == KSA_KV_LAYER_SUMMARY && c->pending,
               "kv cache: summary row asked with no chunk to complete");
    KSA_ASSERT(j < c->S, "kv cache: summary %zu of %zu", j, c->S);
    return c->S - 1 - j;
}

ksa_kv_range ksa_kv_cache_summary_reads(const ksa_kv_cache *c, size_t j)
{
    return (ksa_kv_range){ksa_kv_cache_summary_row(c, j), c->S + c->C};
}

size_t ksa_kv_cache_flush(ksa_kv_cache *c, ksa_kv_copy out[2])
{
    KSA_ASSERT(c->kind == KSA_KV_LAYER_SUMMARY && c->pending,
               "kv cache: flush with no completed chunk");
    size_t k = c->n_done, n = 0;
    if (c->Wr > 0) /* chunk k replaces chunk k - Wr, which leaves the window now */
        out[n++] = (ksa_kv_copy){.src = c->S, .dst = c->S + c->C + (k % c->Wr) * c->C, .n = c->C};
    if (c->S > 0) /* a text-only window (S = 0) keeps no summaries */
        out[n++] = (ksa_kv_copy){.src = 0, .dst = c->base + k * c->S, .n = c->S};
    c->n_done++;
    c->pending = 0;
    return n;
}

void ksa_kv_cache_fill(ksa_kv_cache *c, size_t T)
{
    KSA_ASSERT(c->T == 0, "kv cache: prefill into a cache holding %zu tokens", c->T);
    KSA_ASSERT(T <= c->T_max, "kv cache: prefill of %zu tokens, sized for %zu", T, c->T_max);
    c->T = T;
    if (c->kind == KSA_KV_LAYER_SUMMARY)
        c->n_done = T / c->C;
}

size_t ksa_kv_cache_row_of_text(const ksa_kv_cache *c, size_t t)
{
    if (t >= c->T)
        return KSA_KV_NO_ROW;
    if (c->kind == KSA_KV_LAYER_CAUSAL)
        return t;
    size_t k = t / c->C, o = t % c->C;
    if (k == c->n_done) /* the chunk being filled (or waiting for its flush) */
        return c->S + c->C - 1 - o;
    if (k + ring_chunks(c) < c->n_done) /* left the window */
        return KSA_KV_NO_ROW;
    return c->S + c->C + (k % c->Wr) * c->C + c->C - 1 - o;
}

size_t ksa_kv_cache_row_of_summary(const ksa_kv_cache *c, size_t chunk, size_t j)
{
    if (c->kind == KSA_KV_LAYER_CAUSAL || j >= c->S)
        return KSA_KV_NO_ROW;
    if (chunk < c->n_done)
        return c->base + chunk * c->S + c->S - 1 - j;
    if (chunk == c->n_done && c->pending)
        return c->S - 1 - j;
    return KSA_KV_NO_ROW;
}

ksa_kv_token ksa_kv_cache_row_token(const ksa_kv_cache *c, size_t row)
{
    ksa_kv_token none = {.kind = KSA_KV_NONE};
    if (c->kind == KSA_KV_LAYER_CAUSAL)
        return row < c->T ? (ksa_kv_token){.kind = KSA_KV_TEXT, .t = row} : none;
    size_t S = c->S, C = c->C;
    if (row < S) /* scratch */
        return c->pending
                   ? (ksa_kv_token){.kind = KSA_KV_SUMMARY, .chunk = c->n_done, .j = S - 1 - row}
                   : none;
    if (row < S + C) { /* current chunk */
        size_t o = S + C - 1 - row;
        return o < current_len(c) ? (ksa_kv_token){.kind = KSA_KV_TEXT, .t = c->n_done * C + o}
                                  : none;
    }
    if (row < c->base) { /* ring: slot p holds the newest completed chunk k with k mod Wr = p */
        size_t p = (row - S - C) / C, o = C - 1 - (row - S - C) % C;
        size_t in_ring = ring_chunks(c), first = c->n_done - in_ring;
        if (in_ring == 0)
            return none;
        size_t k = first + (p + c->Wr - first % c->Wr) % c->Wr;
        return k < c->n_done ? (ksa_kv_token){.kind = KSA_KV_TEXT, .t = k * C + o} : none;
    }
    size_t i = row - c->base; /* summary region */
    if (i >= c->n_done * S)
        return none;
    return (ksa_kv_token){.kind = KSA_KV_SUMMARY, .chunk = i / S, .j = S - 1 - i % S};
}
