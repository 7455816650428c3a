/* decode.h - generation with the decoding KV cache (KSA_SPEC §8): prefill a prompt, then
 * step one token at a time, for B independent sequences at once.
 *
 * Semantics are those of training (ksa_model_forward) exactly, with ksa.c's choices of
 * KSA_SPEC §12: the §3 rule with every layer's literal window W (item 1: no "large-window"
 * layers), causal among a chunk's summaries (item 4), W = 0 allowed (item 5); no summaries
 * for a partial tail chunk until it completes (§2.3, §8.3). The logits of every step equal
 * those of a full forward over the same prefix (tests/test_decode.c).
 *
 * Per sequence and layer, one cache of rotated keys and values [rows, Hkv*dh] whose rows
 * model/kv_cache.h assigns: summary layers keep the text of the current chunk and of the
 * last W chunks plus S summary rows per completed chunk (§8.2); causal (bypass) layers, and
 * every layer of a model without summary attention, keep all text.
 *
 * Prefill (ksa_decoder_prefill) runs the prompt through the training kernels (the tiled
 * attention of summary_attn.c / causal_attn.c, no tape) and keeps the rows the cache needs
 * (§8.3). A step (ksa_decoder_step) takes one new text token for each of n listed sequences
 * and runs them as one batch: the dense layers are [rows, D] matrix products over the n text
 * rows plus S summary rows for every sequence whose token completes a chunk (§8.4: that
 * chunk's summaries are computed in the same step, right after its last text token, their
 * place in the expanded sequence). Each query attends to the rows kv_cache names for it.
 *
 * Memory: a sequence's caches hold ksa_kv_cache_rows_for(T) rows after T tokens (summary
 * layers ~ S + C + W*C + S*T/C, causal layers T); they grow geometrically when needed (a
 * growth copies the rows in use once), or are allocated for T_max up front (reserve = 1).
 * Nothing else grows with the context: a step's cost is the rows its queries read.       */
#ifndef KSA_MODEL_DECODE_H
#define KSA_MODEL_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "model/decoder.h"
#include "model/kv_cache.h"

/* One layer's cache of one sequence. */
typedef struct {
    ksa_kv_cache book; /* which row holds what                              */
    ksa_real *k, *v;   /* [cap, Hkv*dh]: rotated keys and values            */
    size_t cap;        /* rows allocated                                    */
} ksa_layer_cache;

typedef struct {
    ksa_layer_cache *layers; /* [n_layers] */
    size_t T;                /* text tokens in the cache */
} ksa_seq_cache;

/* Scratch of a forward over `rows` rows (text then summary), reused between calls. */
typedef struct {
    size_t rows;                       /* capacity                          */
    ksa_real *h, *x, *q, *k, *v, *att; /* [rows, D|D|qd|kvd|kvd|qd]         */
    ksa_real *gate, *up, *r;           /* [block, I] x2, [rows * Hq]        */
    int32_t *ids, *pos;                /* [rows]                            */
    ksa_real *base; /* [rows, qd] annealing (layout.mix_qkv): shared q/k/v, else NULL */
} ksa_decode_work;

typedef struct {
    ksa_model *m;             /* not owned; its weights must not change while decoding  */
    size_t B;                 /* sequences                                               */
    size_t T_max;             /* text tokens a sequence may hold                         */
    int summary_rows;         /* the model has summary layers: chunks get summary rows   */
    ksa_seq_cache *seqs;      /* [B]                                                     */
    ksa_decode_work step;     /* sized for B text + B*S summary rows                  */
    size_t *query_seq;        /* [B*(1+S)] per step row: its sequence                 */
    size_t *query_j;          /* [B*(1+S)] summary row: j; text row: KSA_KV_NO_ROW    */
    ksa_kv_range *reads;      /* [B*(1+S)] rows each query reads                      */
    unsigned char *listed;    /* [B] scratch of the argument checks                   */
    ksa_real *thread_scratch; /* per thread: the scores of a tile [Hq, DEC_BK]       */
    size_t thread_scratch_threads;
    size_t *row_first_tile; /* [B*(1+S)+1] a step's query row: its first tile        */
    size_t *tile_row;       /* [tiles_cap] a tile: its query row                     */
    size_t *tile_k0;        /* [tiles_cap] a tile: its first cache row               */
    ksa_real *tile_part;    /* [tiles_cap, Hq*(dh+2)] a tile's partial softmax       */
    size_t tiles_cap;
} ksa_decoder;

/* A decoder for B sequences of at most T_max text tokens each (prompt + generated), which
 * must not exceed max_position_embeddings. reserve = 1 allocates every cache for T_max now
 * (a step then never allocates); 0 grows them as the sequences grow. KSA_EINVAL names the
 * problem (B = 0, T_max = 0 or above max_position_embeddings).                            */
ksa_status ksa_decoder_init(ksa_decoder *d, ksa_model *m, size_t B, size_t T_max, int reserve);
void ksa_decoder_free(ksa_decoder *d);

/* Empties sequence b (its buffers are kept for the next prompt). */
void ksa_decoder_reset(ksa_decoder *d, size_t b);

/* Prefills empty sequence b with tokens[0..n) (1 <= n <= T_max) and writes the logits that
 * predict token n into logits [V]. KSA_EINVAL: sequence not empty, n out of range, an id
 * outside the vocabulary (named with its index).                                        */
ksa_status ksa_decoder_prefill(ksa_decoder *d, size_t b, const int32_t *tokens, size_t n,
                               ksa_real *logits);

/* One token for each of n distinct sequences: sequence seq[i] appends tokens[i]; logits
 * [n, V] get, row i, the scores of the token after it. KSA_EINVAL (nothing changed): a
 * sequence listed twice or out of range, an id outside the vocabulary, a sequence already
 * holding T_max tokens.                                                                  */
ksa_status ksa_decoder_step(ksa_decoder *d, size_t n, const size_t *seq, const int32_t *tokens,
                            ksa_real *logits);

/* Benchmarks only: gives empty sequence b a context of T tokens (T <= T_max) whose cached
 * keys and values are random numbers (seeded) instead of a prefill's: the cost of the
 * following steps, and the cache's size, are those of a real context of T tokens, without
 * paying for its prefill. The logits of those steps mean nothing.                       */
void ksa_decoder_fill_synthetic(ksa_decoder *d, size_t b, size_t T, uint64_t seed);

/* Bytes of keys and values: allocated now, and live (rows some future query may read,
 * KSA_SPEC §8.7), summed over sequences and layers; causal_bytes: what a plain causal cache
 * (every layer keeps all text) would hold for the same tokens.                          */
typedef struct {
    size_t allocated_bytes, live_bytes, causal_bytes;
} ksa_decoder_memory;
ksa_decoder_memory ksa_decoder_memory_of(const ksa_decoder *d);

#endif
