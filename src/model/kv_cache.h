/* kv_cache.h - bookkeeping of one layer's decoding KV cache for one sequence (KSA_SPEC §8).
 *
 * Index arithmetic only: the cache owns no keys or values. It names the rows of one buffer
 * that the caller owns ("row" r will hold the key and the value of one KV head, or of all of
 * them), says which row a new key/value goes to, which rows a query reads, which block copies
 * a chunk completion needs, and which logical token (text t_i, or summary s_c.j) each row
 * holds. Semantics are those of KSA_SPEC §3 with the layer's literal window W (§12 items 1,
 * 4, 5): causal among a chunk's summaries, W = 0 allowed, no "large-window" special case.
 *
 * Summary layer (chunk C, S >= 1 summary tokens, window W chunks), the layout of §8.2:
 *
 *   [ scratch: S | current chunk: C | ring: R = Wr*C | summaries of completed chunks ... ]
 *     0            S                  S+C              base = S+C+R
 *
 *   Wr = min(W, floor(T_max/C)): the ring never needs more chunks than can complete (W >= the
 *   chunks of T_max degenerates to "all text", as §12 item 1 says; W = 0: no ring).
 *   - current chunk: offset o of the incomplete chunk at row S+C-1-o (fills right to left, so
 *     the filled part [S+C-len, S+C) touches the ring);
 *   - scratch: s_c.j of the chunk being completed at row S-1-j (right to left, so summary
 *     query j reads the single range [S-1-j, S+C): s_c.j ... s_c.0 and the chunk's C tokens);
 *   - ring: completed chunk k (one of the last min(W, completed) chunks) at rows
 *     S+C + (k mod Wr)*C + [0, C), offset o at S+C + (k mod Wr)*C + C-1-o (a block copy of
 *     the current-chunk region);
 *   - summaries: s_k.j of completed chunk k at base + k*S + S-1-j (a block copy of scratch),
 *     in chunk order, so "summaries of chunks older than the window" are the prefix
 *     [base, base + (k_old)*S).
 *   A text query reads the single range [S+C-len, S+C + min(W,n)*C + max(0, n-W)*S) (n =
 *   completed chunks): its own chunk causally, the window's text, the old summaries. The range
 *   crosses from the ring into the summary region only when n > W, and then the ring is full.
 *
 * Causal (bypass) layer: plain append-only text, t_i at row i, query t reads [0, t+1).
 *
 * Row stability. The layout up to base is fixed at init, and the summary region only grows
 * at its end, so a caller may allocate ksa_kv_cache_rows_for(c, T_max) rows up front or grow
 * its buffer geometrically (ksa_kv_cache_grow_rows) without any row index changing. Within
 * the buffer: a summary row, once copied into the summary region, and a causal-layer row
 * never move; a text row of a summary layer moves exactly once, current chunk -> ring, by
 * the flush copy, and a ring row is overwritten when its chunk leaves the window (from then
 * on that chunk is seen through its summary rows only, which were stored at its flush).
 *
 * Order of one decode step of a summary layer (the caller's model code):
 *   a = ksa_kv_cache_append_text(c)      write k/v of t_T at a.row; read text_reads(c)
 *   if a.completes_chunk:
 *       write k/v of s_c.j at summary_row(c, j) for every j; summary query j reads
 *       summary_reads(c, j); then apply every copy of ksa_kv_cache_flush(c), in order.
 * Misuse (appending past T_max, appending while a chunk waits for its flush, summary
 * operations on a causal layer) is a bug and aborts with KSA_ASSERT.                        */
#ifndef KSA_MODEL_KV_CACHE_H
#define KSA_MODEL_KV_CACHE_H

#include "core/core.h"

typedef enum {
    KSA_KV_LAYER_CAUSAL,  /* bypass layer: append-only text          */
    KSA_KV_LAYER_SUMMARY, /* summary layer: the ring layout of §8.2  */
} ksa_kv_kind;

typedef struct {
    ksa_kv_kind kind;
    size_t C, S, W; /* chunk size, summary tokens per chunk, window in chunks (summary kind) */
    size_t T_max;   /* most text tokens the cache will ever hold                            */
    size_t Wr;      /* chunks in the ring: min(W, T_max div C)                              */
    size_t base;    /* first row of the summary region: S + C + Wr*C                        */
    size_t T;       /* text tokens appended so far                                          */
    size_t n_done;  /* completed and flushed chunks (their summaries are in the region)     */
    int pending;    /* 1: chunk n_done has all C tokens, summaries and flush still to come  */
} ksa_kv_cache;

/* A half-open range of rows [begin, end). */
typedef struct {
    size_t begin, end;
} ksa_kv_range;

/* Copy rows [src, src+n) to [dst, dst+n) of the caller's buffer (never overlapping). */
typedef struct {
    size_t src, dst, n;
} ksa_kv_copy;

/* The text token just appended. */
typedef struct {
    size_t row;          /* where its key/value go                                     */
    size_t t;            /* its text index (origin position, KSA_SPEC §2.4)            */
    size_t chunk;        /* t div C (summary layer; 0 in a causal one)                  */
    size_t offset;       /* t mod C (summary layer; 0 in a causal one)                  */
    int completes_chunk; /* summary layer, offset C-1: summaries and flush come next    */
} ksa_kv_append;

/* What a row holds. */
typedef enum { KSA_KV_NONE, KSA_KV_TEXT, KSA_KV_SUMMARY } ksa_kv_token_kind;
typedef struct {
    ksa_kv_token_kind kind;
    size_t t;        /* KSA_KV_TEXT: text index                  */
    size_t chunk, j; /* KSA_KV_SUMMARY: the token s_chunk.j      */
} ksa_kv_token;

#define KSA_KV_NO_ROW ((size_t)-1)

/* An empty cache. Summary kind needs C >= 1 (S and W any, 0 included); causal kind ignores
 * C, S and W. S = 0 is a text-only window: the layout without scratch and summary region,
 * a query reads its own chunk causally and the W chunks before it, nothing older. That is
 * sliding-chunk attention, and with C = 1 a token-level sliding window of W tokens
 * (query t reads t-W ... t). Fails with KSA_EINVAL naming the value when the dimensions are
 * invalid or the rows for T_max do not fit in size_t.                                    */
ksa_status ksa_kv_cache_init(ksa_kv_cache *c, ksa_kv_kind kind, size_t C, size_t S, size_t W,
                             size_t T_max);

/* Rows needed to hold T text tokens (T <= T_max), all completed chunks flushed:
 * summary: S + C + Wr*C + (T div C)*S;  causal: T. Every row written while the cache holds
 * at most T tokens is below this.                                                        */
size_t ksa_kv_cache_rows_for(const ksa_kv_cache *c, size_t T);

/* A buffer capacity in rows for the next decode step: `have` if it is enough for T+1
 * tokens, else the larger of twice `have` and what T+1 needs, capped at rows_for(T_max). */
size_t ksa_kv_cache_grow_rows(const ksa_kv_cache *c, size_t have);

/* Rows holding a token some future query may read (KSA_SPEC §8.7), between steps:
 * summary: (T mod C) + C*min(n, W) + S*n with n = T div C;  causal: T.                   */
size_t ksa_kv_cache_live_rows(const ksa_kv_cache *c);

/* Appends text token t_T. */
ksa_kv_append ksa_kv_cache_append_text(ksa_kv_cache *c);

/* Rows the newest text token (the query) attends to: exactly the keys KSA_SPEC §3 shows it. */
ksa_kv_range ksa_kv_cache_text_reads(const ksa_kv_cache *c);

/* While a chunk is pending: the row of its summary s_c.j, and the rows query s_c.j reads
 * (its chunk's C text tokens and s_c.0 ... s_c.j).                                        */
size_t ksa_kv_cache_summary_row(const ksa_kv_cache *c, size_t j);
ksa_kv_range ksa_kv_cache_summary_reads(const ksa_kv_cache *c, size_t j);

/* Completes the pending chunk: writes into out[] the block copies to apply, in order, and
 * returns their number (at most 2: the chunk's text into the ring, overwriting the chunk
 * that leaves the window, when Wr > 0; the scratch summaries into the summary region, when
 * S > 0).                                                                                */
size_t ksa_kv_cache_flush(ksa_kv_cache *c, ksa_kv_copy out[2]);

/* Prefill bookkeeping (KSA_SPEC §8.3): an empty cache takes the state it would have after
 * T appends with every completed chunk flushed. The caller then copies each kept token's
 * key/value from the prefill buffers to row_of_text / row_of_summary.                   */
void ksa_kv_cache_fill(ksa_kv_cache *c, size_t T);

/* The row holding t_t, or s_chunk.j, now; KSA_KV_NO_ROW when the cache no longer (or not
 * yet) holds it (text evicted from the window, a token not yet appended).              */
size_t ksa_kv_cache_row_of_text(const ksa_kv_cache *c, size_t t);
size_t ksa_kv_cache_row_of_summary(const ksa_kv_cache *c, size_t chunk, size_t j);

/* What row r holds now (KSA_KV_NONE: unused, stale or evicted). Scratch rows are reported
 * as the pending chunk's summaries while a chunk is pending (valid once written).        */
ksa_kv_token ksa_kv_cache_row_token(const ksa_kv_cache *c, size_t row);

#endif
