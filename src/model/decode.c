/* decode.c - prefill and one-token decode steps over the KV cache (decode.h, KSA_SPEC §8).
 *
 * A forward here is ksa_model_forward without the tape, over a buffer of rows: text rows
 * [0, nt) then summary rows [nt, nt + ns) (model/layout.h), position ids per row:
 *   embedding -> per layer: [input norm, q/k/v, q/k norms, rope] (two streams in a summary
 *   layer, text rows only in a causal one) -> attention -> o_proj + residual -> MLP
 *   -> final norm and LM head on the text rows wanted.
 * Only attention differs between prefill (the training kernels over the whole prompt) and a
 * step (each query reads the cache rows ksa_kv_cache names for it).                       */
#include "decode.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd/blas.h"
#include "core/rng.h"
#include "autograd/embedding.h"
#include "autograd/lerp.h"
#include "autograd/linear.h"
#include "autograd/rmsnorm.h"
#include "autograd/rope.h"
#include "autograd/swiglu.h"
#include "model/causal_attn.h"
#include "model/layout.h"
#include "model/summary_attn.h"
#include "core/vecmath.h"

/* Rows of the MLP's [rows, I] intermediates at a time (prefill of long prompts). */
enum { MLP_BLOCK = 1024 };
/* Cache rows per tile of a decode query (scores [Hq, DEC_BK] per thread). */
enum { DEC_BK = 256 };

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static const ksa_real *W(const ksa_model *m, long idx)
{
    KSA_ASSERT(idx >= 0, "parameter missing");
    return m->params.data + m->params.table[idx].offset;
}

/* Layer i computes summary rows (a summary layer of a model with summary tokens). */
static int two_streams(const ksa_decoder *d, size_t i)
{
    return d->summary_rows && d->m->layout.is_summary[i];
}

/* The cache of layer i: the §8.2 layout for summary and sliding-chunk layers (S = 0: text
 * only), a ring of one-token chunks for a causal layer with a window, else all text. */
static ksa_status layer_cache_init(const ksa_decoder *d, size_t i, ksa_kv_cache *book)
{
    const ksa_model_layout *l = &d->m->layout;
    if (l->ksa && l->is_summary[i])
        return ksa_kv_cache_init(book, KSA_KV_LAYER_SUMMARY, l->C, l->S, l->window[i], d->T_max);
    if (l->sliding_window)
        return ksa_kv_cache_init(book, KSA_KV_LAYER_SUMMARY, 1, 0, l->sliding_window, d->T_max);
    return ksa_kv_cache_init(book, KSA_KV_LAYER_CAUSAL, 0, 0, 0, d->T_max);
}

/* ---- scratch -------------------------------------------------------------------------- */
static void work_free(ksa_decode_work *w)
{
    ksa_free(w->h), ksa_free(w->x), ksa_free(w->q), ksa_free(w->k), ksa_free(w->v);
    ksa_free(w->att), ksa_free(w->gate), ksa_free(w->up), ksa_free(w->r);
    ksa_free(w->ids), ksa_free(w->pos), ksa_free(w->base);
    memset(w, 0, sizeof *w);
}

static void work_alloc(ksa_decode_work *w, const ksa_model *m, size_t rows)
{
    size_t qd = m->Hq * m->dh, kvd = m->Hkv * m->dh, blk = min_size(rows, MLP_BLOCK);
    size_t norm_rows = rows * (m->Hq > 1 ? m->Hq : 1);
    w->rows = rows;
    w->h = ksa_alloc(rows * m->D * sizeof(ksa_real));
    w->x = ksa_alloc(rows * m->D * sizeof(ksa_real));
    w->q = ksa_alloc(rows * qd * sizeof(ksa_real));
    w->k = ksa_alloc(rows * kvd * sizeof(ksa_real));
    w->v = ksa_alloc(rows * kvd * sizeof(ksa_real));
    w->att = ksa_alloc(rows * qd * sizeof(ksa_real));
    w->gate = ksa_alloc(blk * m->I * sizeof(ksa_real));
    w->up = ksa_alloc(blk * m->I * sizeof(ksa_real));
    w->r = ksa_alloc(norm_rows * sizeof(ksa_real));
    w->ids = ksa_alloc(rows * sizeof(int32_t));
    w->pos = ksa_alloc(rows * sizeof(int32_t));
    /* annealing: the summary rows' shared q, k or v, one at a time (KSA_SPEC §5.5) */
    w->base = m->layout.mix_qkv ? ksa_alloc(rows * qd * sizeof(ksa_real)) : NULL;
}

/* ---- the dense parts of a layer ------------------------------------------------------- */
/* y [N, out] = x [N, in] · wᵀ: ksa_linear_forward, or for a single row a matrix-vector
 * product, which skips gemm's copy of the whole weight into its packed layout. */
static void project(ksa_real *y, const ksa_real *x, const ksa_real *w, size_t N, size_t in,
                    size_t out)
{
    if (N == 1)
        ksa_gemv(out, in, 1, w, in, x, 0, y);
    else
        ksa_linear_forward(y, x, w, N, in, out);
}

/* y = rmsnorm(x) over groups of `width` (D, or dh for the per-head q/k norms): text rows with
 * w_text and eps, summary rows with w_sum and eps_sum (w_sum < 0: w_text and eps too). */
static void norm_rows(const ksa_decoder *d, ksa_decode_work *w, ksa_real *y, const ksa_real *x,
                      size_t nt, size_t ns, size_t row_len, size_t width, long w_text, long w_sum,
                      double eps_sum)
{
    const ksa_model *m = d->m;
    ksa_real eps = (ksa_real)m->config.rms_norm_eps;
    size_t groups = row_len / width;
    if (w_sum < 0) {
        ksa_rmsnorm_forward(y, w->r, x, W(m, w_text), (nt + ns) * groups, width, eps);
        return;
    }
    ksa_rmsnorm_forward(y, w->r, x, W(m, w_text), nt * groups, width, eps);
    ksa_rmsnorm_forward(y + nt * row_len, w->r, x + nt * row_len, W(m, w_sum), ns * groups, width,
                        (ksa_real)eps_sum);
}

/* y [nt+ns, out] = x · wᵀ, text rows with w_text, summary rows with w_sum (or w_text). */
static void linear_rows(const ksa_model *m, ksa_real *y, const ksa_real *x, size_t nt, size_t ns,
                        size_t in, size_t out, long w_text, long w_sum)
{
    if (w_sum < 0) {
        project(y, x, W(m, w_text), nt + ns, in, out);
        return;
    }
    project(y, x, W(m, w_text), nt, in, out);
    project(y + nt * out, x + nt * in, W(m, w_sum), ns, in, out);
}

/* Summary rows [nt, nt+ns) of y [nt+ns, out] (their own projection, head-normalised) become
 * mix·y + (1-mix)·norm(x̂ · wᵀ): the shared projection w and head norm nw (none: nw < 0) of
 * the same normalised rows w->x, through w->base (KSA_SPEC §5.5).                        */
static void mix_summary_rows(const ksa_decoder *d, ksa_decode_work *w, long wp, long nw,
                             ksa_real *y, size_t nt, size_t ns, size_t out, double mix)
{
    const ksa_model *m = d->m;
    KSA_ASSERT(w->base, "annealing without its scratch");
    project(w->base, w->x + nt * m->D, W(m, wp), ns, m->D, out);
    if (nw >= 0)
        ksa_rmsnorm_forward(w->base, w->r, w->base, W(m, nw), ns * (out / m->dh), m->dh,
                            (ksa_real)m->config.rms_norm_eps);
    ksa_lerp_forward(y + nt * out, y + nt * out, w->base, (ksa_real)mix, ns * out);
}

/* w->q, w->k, w->v of rows [0, nt+ns) of w->h: input norm, projections, q/k norms, rope at
 * w->pos. ns = 0 in a causal layer (its summary rows pass through untouched). */
static void attention_inputs(const ksa_decoder *d, ksa_decode_work *w, const ksa_layer_params *lp,
                             size_t nt, size_t ns)
{
    const ksa_model *m = d->m;
    size_t D = m->D, qd = m->Hq * m->dh, kvd = m->Hkv * m->dh, N = nt + ns;
    /* input_layernorm_summary uses rms_norm_eps like every other norm (KSA_SPEC.md 6.1) */
    norm_rows(d, w, w->x, w->h, nt, ns, D, D, lp->input_layernorm, lp->input_layernorm_summary,
              m->config.rms_norm_eps);
    /* annealing (KSA_SPEC §5.5), as model/decoder.c's attention_block: mix = 0 gives the
     * summary rows the shared projections and head norms alone, 0 < mix < 1 blends them in */
    double mix = ns && m->layout.mix_qkv && lp->q_proj_summary >= 0 ? m->summary_mix : 1;
    int own = mix > 0;
    linear_rows(m, w->q, w->x, nt, ns, D, qd, lp->q_proj, own ? lp->q_proj_summary : -1);
    linear_rows(m, w->k, w->x, nt, ns, D, kvd, lp->k_proj, own ? lp->k_proj_summary : -1);
    linear_rows(m, w->v, w->x, nt, ns, D, kvd, lp->v_proj, own ? lp->v_proj_summary : -1);
    if (mix > 0 && mix < 1)
        mix_summary_rows(d, w, lp->v_proj, -1, w->v, nt, ns, kvd, mix);
    norm_rows(d, w, w->q, w->q, nt, ns, qd, m->dh, lp->q_norm, own ? lp->q_norm_summary : -1,
              KSA_SUMMARY_QK_NORM_EPS);
    norm_rows(d, w, w->k, w->k, nt, ns, kvd, m->dh, lp->k_norm, own ? lp->k_norm_summary : -1,
              KSA_SUMMARY_QK_NORM_EPS);
    if (mix > 0 && mix < 1) {
        mix_summary_rows(d, w, lp->q_proj, lp->q_norm, w->q, nt, ns, qd, mix);
        mix_summary_rows(d, w, lp->k_proj, lp->k_norm, w->k, nt, ns, kvd, mix);
    }
    ksa_rope_forward(w->q, w->q, w->pos, N, m->Hq, m->dh, m->config.rope_theta);
    ksa_rope_forward(w->k, w->k, w->pos, N, m->Hkv, m->dh, m->config.rope_theta);
}

/* h += o_proj(att); h += down(swiglu(gate(x), up(x))), x = post_attention_layernorm(h), over
 * rows [0, N), the MLP in blocks of MLP_BLOCK rows. */
static void attention_output_and_mlp(const ksa_decoder *d, ksa_decode_work *w,
                                     const ksa_layer_params *lp, size_t N)
{
    const ksa_model *m = d->m;
    size_t D = m->D, I = m->I, qd = m->Hq * m->dh;
    ksa_real eps = (ksa_real)m->config.rms_norm_eps;
    for (size_t r0 = 0; r0 < N; r0 += MLP_BLOCK) {
        size_t nr = min_size(MLP_BLOCK, N - r0);
        ksa_real *h = w->h + r0 * D, *x = w->x + r0 * D;
        project(x, w->att + r0 * qd, W(m, lp->o_proj), nr, qd, D);
        for (size_t i = 0; i < nr * D; i++)
            h[i] += x[i];
        ksa_rmsnorm_forward(x, w->r, h, W(m, lp->post_attention_layernorm), nr, D, eps);
        project(w->gate, x, W(m, lp->gate_proj), nr, D, I);
        project(w->up, x, W(m, lp->up_proj), nr, D, I);
        ksa_swiglu_forward(w->gate, w->gate, w->up, nr, I);
        project(x, w->gate, W(m, lp->down_proj), nr, I, D);
        for (size_t i = 0; i < nr * D; i++)
            h[i] += x[i];
    }
}

/* Embeddings of rows [0, nt+ns): w->ids holds the text ids; summary row r is s_c.j with
 * j = sum_j[r] (row j of summary_embedding, or token summary_token_begin + j). */
static void embed_rows(const ksa_decoder *d, ksa_decode_work *w, size_t nt, size_t ns,
                       const size_t *sum_j)
{
    const ksa_model *m = d->m;
    const ksa_model_layout *l = &m->layout;
    ksa_embedding_forward(w->h, W(m, m->embed_tokens), w->ids, nt, m->V, m->D);
    if (!ns)
        return;
    int32_t base = l->independent_embedding ? 0 : (int32_t)m->config.summary_token_begin;
    for (size_t r = 0; r < ns; r++)
        w->ids[nt + r] = base + (int32_t)sum_j[r];
    long table = l->independent_embedding ? m->summary_embedding : m->embed_tokens;
    size_t rows = l->independent_embedding ? l->S : m->V;
    ksa_embedding_forward(w->h + nt * m->D, W(m, table), w->ids + nt, ns, rows, m->D);
}

/* logits [n, V] of rows [row0, row0 + n) of w->h, text rows (final norm, LM head). */
static void lm_head(const ksa_decoder *d, ksa_decode_work *w, size_t row0, size_t n,
                    ksa_real *logits)
{
    const ksa_model *m = d->m;
    ksa_rmsnorm_forward(w->x, w->r, w->h + row0 * m->D, W(m, m->norm), n, m->D,
                        (ksa_real)m->config.rms_norm_eps);
    project(logits, w->x, W(m, m->lm_head >= 0 ? m->lm_head : m->embed_tokens), n, m->D, m->V);
}

/* ---- caches --------------------------------------------------------------------------- */
/* Makes c hold at least `rows` rows, keeping the rows in use (those below rows_for(T)). */
static void cache_reserve(const ksa_model *m, ksa_layer_cache *c, size_t rows)
{
    if (rows <= c->cap)
        return;
    size_t kvd = m->Hkv * m->dh, used = ksa_kv_cache_rows_for(&c->book, c->book.T);
    used = min_size(used, c->cap);
    ksa_real *k = ksa_alloc(rows * kvd * sizeof *k), *v = ksa_alloc(rows * kvd * sizeof *v);
    if (used) {
        memcpy(k, c->k, used * kvd * sizeof *k);
        memcpy(v, c->v, used * kvd * sizeof *v);
    }
    ksa_free(c->k), ksa_free(c->v);
    c->k = k, c->v = v, c->cap = rows;
}

static void copy_row(const ksa_model *m, ksa_layer_cache *c, size_t row, const ksa_real *k,
                     const ksa_real *v)
{
    size_t kvd = m->Hkv * m->dh;
    KSA_ASSERT(row < c->cap, "kv cache row %zu outside the %zu allocated", row, c->cap);
    memcpy(c->k + row * kvd, k, kvd * sizeof *k);
    memcpy(c->v + row * kvd, v, kvd * sizeof *v);
}

static void apply_copies(const ksa_model *m, ksa_layer_cache *c, const ksa_kv_copy *cp, size_t n)
{
    size_t kvd = m->Hkv * m->dh;
    for (size_t i = 0; i < n; i++) {
        KSA_ASSERT(cp[i].dst + cp[i].n <= c->cap && cp[i].src + cp[i].n <= c->cap,
                   "kv cache copy outside the %zu allocated rows", c->cap);
        memcpy(c->k + cp[i].dst * kvd, c->k + cp[i].src * kvd, cp[i].n * kvd * sizeof *c->k);
        memcpy(c->v + cp[i].dst * kvd, c->v + cp[i].src * kvd, cp[i].n * kvd * sizeof *c->v);
    }
}

static void tiles_reserve(ksa_decoder *d, size_t n);

ksa_status ksa_decoder_init(ksa_decoder *d, ksa_model *m, size_t B, size_t T_max, int reserve)
{
    memset(d, 0, sizeof *d);
    const ksa_model_layout *l = &m->layout;
    size_t max_pos = (size_t)m->config.max_position_embeddings;
    if (B == 0)
        return ksa_fail(KSA_EINVAL, "decoding needs at least one sequence");
    if (T_max == 0)
        return ksa_fail(KSA_EINVAL, "decoding needs room for at least one token");
    if (T_max > max_pos)
        return ksa_fail(KSA_EINVAL,
                        "%zu tokens (prompt + generated) exceed the model's "
                        "max_position_embeddings %zu",
                        T_max, max_pos);
    d->m = m;
    d->B = B;
    d->T_max = T_max;
    for (size_t i = 0; i < l->n_layers; i++)
        d->summary_rows |= l->ksa && l->S > 0 && l->is_summary[i];
    size_t S = d->summary_rows ? l->S : 0;
    d->seqs = ksa_alloc_zero(B * sizeof *d->seqs);
    for (size_t b = 0; b < B; b++) {
        ksa_seq_cache *s = &d->seqs[b];
        s->layers = ksa_alloc_zero(l->n_layers * sizeof *s->layers);
        for (size_t i = 0; i < l->n_layers; i++) {
            ksa_layer_cache *c = &s->layers[i];
            ksa_status st = layer_cache_init(d, i, &c->book);
            if (st != KSA_OK) {
                ksa_decoder_free(d);
                return st;
            }
            if (reserve)
                cache_reserve(m, c, ksa_kv_cache_rows_for(&c->book, T_max));
        }
    }
    size_t rows = B * (1 + S);
    work_alloc(&d->step, m, rows);
    d->query_seq = ksa_alloc(rows * sizeof *d->query_seq);
    d->query_j = ksa_alloc(rows * sizeof *d->query_j);
    d->reads = ksa_alloc(rows * sizeof *d->reads);
    d->listed = ksa_alloc_zero(B);
    d->row_first_tile = ksa_alloc((rows + 1) * sizeof *d->row_first_tile);
    if (reserve) { /* the longest range a query can read, in tiles, for every row */
        size_t longest = 0;
        for (size_t i = 0; i < l->n_layers; i++) {
            size_t n = ksa_kv_cache_rows_for(&d->seqs[0].layers[i].book, T_max);
            longest = n > longest ? n : longest;
        }
        tiles_reserve(d, rows * ((longest + DEC_BK - 1) / DEC_BK));
    }
    return KSA_OK;
}

void ksa_decoder_free(ksa_decoder *d)
{
    if (d->seqs)
        for (size_t b = 0; b < d->B; b++) {
            for (size_t i = 0; d->seqs[b].layers && i < d->m->layout.n_layers; i++)
                ksa_free(d->seqs[b].layers[i].k), ksa_free(d->seqs[b].layers[i].v);
            ksa_free(d->seqs[b].layers);
        }
    ksa_free(d->seqs);
    work_free(&d->step);
    ksa_free(d->query_seq), ksa_free(d->query_j), ksa_free(d->reads), ksa_free(d->listed);
    ksa_free(d->thread_scratch), ksa_free(d->row_first_tile);
    ksa_free(d->tile_row), ksa_free(d->tile_k0), ksa_free(d->tile_part);
    memset(d, 0, sizeof *d);
}

void ksa_decoder_reset(ksa_decoder *d, size_t b)
{
    KSA_ASSERT(b < d->B, "sequence %zu of %zu", b, d->B);
    ksa_seq_cache *s = &d->seqs[b];
    for (size_t i = 0; i < d->m->layout.n_layers; i++) {
        ksa_status st = layer_cache_init(d, i, &s->layers[i].book);
        KSA_ASSERT(st == KSA_OK, "a cache that was valid became invalid");
    }
    s->T = 0;
}

static ksa_status check_ids(const ksa_model *m, const int32_t *ids, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= m->V)
            return ksa_fail(KSA_EINVAL, "%s token %zu has id %d, outside the vocabulary [0, %zu)",
                            what, i, (int)ids[i], m->V);
    return KSA_OK;
}

/* The summary kernel's dimensions for layer i over a prompt of n tokens (its cache kind is
 * KSA_KV_LAYER_SUMMARY): the cache's chunk, window and, in a two-stream layer, S. */
static ksa_summary_attn_dims layer_dims(const ksa_decoder *d, size_t i, size_t n)
{
    const ksa_model *m = d->m;
    const ksa_kv_cache *book = &d->seqs[0].layers[i].book; /* the same for every sequence */
    return (ksa_summary_attn_dims){.nseq = 1,
                                   .T = n,
                                   .C = book->C,
                                   .S = two_streams(d, i) ? m->layout.S : 0,
                                   .W = book->W,
                                   .Hq = m->Hq,
                                   .Hkv = m->Hkv,
                                   .dh = m->dh};
}

/* ---- prefill -------------------------------------------------------------------------- */
ksa_status ksa_decoder_prefill(ksa_decoder *d, size_t b, const int32_t *tokens, size_t n,
                               ksa_real *logits)
{
    ksa_model *m = d->m;
    const ksa_model_layout *l = &m->layout;
    if (b >= d->B)
        return ksa_fail(KSA_EINVAL, "prefill: sequence %zu of a decoder of %zu", b, d->B);
    if (d->seqs[b].T != 0)
        return ksa_fail(KSA_EINVAL, "prefill: sequence %zu already holds %zu tokens", b,
                        d->seqs[b].T);
    if (n == 0 || n > d->T_max)
        return ksa_fail(KSA_EINVAL, "prefill: a prompt of %zu tokens (1 to %zu allowed)", n,
                        d->T_max);
    KSA_TRY(check_ids(m, tokens, n, "prompt"));

    size_t C = l->C, S = l->S, NS = d->summary_rows ? (n / C) * S : 0, N = n + NS;
    size_t qd = m->Hq * m->dh, kvd = m->Hkv * m->dh;
    ksa_decode_work w;
    work_alloc(&w, m, n + ksa_layout_summary_rows(l, n)); /* >= N: positions of every row */
    memcpy(w.ids, tokens, n * sizeof *tokens);
    ksa_layout_positions(w.pos, l, 1, n); /* text, then the summary rows of the chunks */
    size_t *sum_j = ksa_alloc((NS ? NS : 1) * sizeof *sum_j);
    for (size_t r = 0; r < NS; r++)
        sum_j[r] = r % S;
    embed_rows(d, &w, n, NS, sum_j);
    ksa_free(sum_j);

    /* the attention of layer i: the summary kernel with its cache's C, S and W (a text-only
     * window has S = 0), or causal attention over all text */
    ksa_seq_cache *sc = &d->seqs[b];
    int nt = ksa_threads_get();
    size_t ws_bytes = ksa_causal_attn_forward_workspace_size(n, m->dh, nt);
    for (size_t i = 0; i < l->n_layers; i++) {
        ksa_summary_attn_dims dims = layer_dims(d, i, n);
        size_t s = sc->layers[i].book.kind == KSA_KV_LAYER_SUMMARY
                       ? ksa_summary_attn_forward_workspace_size(&dims, nt)
                       : 0;
        ws_bytes = s > ws_bytes ? s : ws_bytes;
    }
    void *ws = ksa_alloc(ws_bytes);
    ksa_real *lse = ksa_alloc(N * m->Hq * sizeof *lse);

    for (size_t i = 0; i < l->n_layers; i++) {
        const ksa_layer_params *lp = &m->layers[i];
        ksa_layer_cache *c = &sc->layers[i];
        int two = two_streams(d, i);
        size_t ns = two ? NS : 0;
        attention_inputs(d, &w, lp, n, ns);
        if (c->book.kind == KSA_KV_LAYER_SUMMARY) {
            ksa_summary_attn_dims dims = layer_dims(d, i, n);
            ksa_attn_out o = {w.att, w.att + n * qd}, lo = {lse, lse + n * m->Hq};
            ksa_attn_qkv in = {{w.q, w.q + n * qd}, {w.k, w.k + n * kvd}, {w.v, w.v + n * kvd}};
            ksa_summary_attn_forward(o, lo, in, ws, ws_bytes, &dims);
        } else {
            ksa_causal_attn_forward(w.att, lse, w.q, w.k, w.v, ws, ws_bytes, 1, n, m->Hq, m->Hkv,
                                    m->dh);
        }
        /* keep what the cache holds after n tokens (KSA_SPEC §8.3) */
        ksa_kv_cache_fill(&c->book, n);
        cache_reserve(m, c, ksa_kv_cache_rows_for(&c->book, n));
        for (size_t t = 0; t < n; t++) {
            size_t row = ksa_kv_cache_row_of_text(&c->book, t);
            if (row != KSA_KV_NO_ROW)
                copy_row(m, c, row, w.k + t * kvd, w.v + t * kvd);
        }
        for (size_t r = 0; r < ns; r++) {
            size_t row = ksa_kv_cache_row_of_summary(&c->book, r / S, r % S);
            copy_row(m, c, row, w.k + (n + r) * kvd, w.v + (n + r) * kvd);
        }
        attention_output_and_mlp(d, &w, lp, n + ns);
    }
    lm_head(d, &w, n - 1, 1, logits);
    sc->T = n;
    ksa_free(ws), ksa_free(lse);
    work_free(&w);
    return KSA_OK;
}

/* ---- one step: attention --------------------------------------------------------------- *
 * Every query row reads one range of its cache (ksa_kv_cache_*_reads). The range is cut into
 * tiles of DEC_BK rows and a tile is one item of work for any thread, so that one long range
 * keeps every thread busy (split-K, as in "flash decoding"). A tile streams its K rows, then
 * its V rows, once each, whole rows for all heads together (the cache is [rows, Hkv·dh]),
 * and leaves a partial softmax per query head hq:
 *   m[hq] = max_k s[hq, k],  l[hq] = Σ_k exp(s[hq, k] − m[hq]),
 *   acc[hq, :] = Σ_k exp(s[hq, k] − m[hq]) · V[k, head hq/G, :],  s = scale · q·K.
 * merge_tiles() then combines the tiles of a row, in order (the result does not depend on
 * the number of threads).                                                                  */

/* Reals of one tile's partial: m [Hq], l [Hq], acc [Hq, dh]. */
static size_t tile_reals(const ksa_model *m)
{
    return m->Hq * (m->dh + 2);
}

/* Per-thread scratch of attend_tile(): the scores [Hq, DEC_BK]. */
static size_t thread_scratch_reals(const ksa_model *m)
{
    return m->Hq * DEC_BK;
}

/* One tile: cache rows [k0, k0 + nk) of K, V [rows, Hkv*dh] against the query q [Hq, dh];
 * the partial goes to part (tile_reals), s is scratch [Hq, DEC_BK].                     */
static void attend_tile(ksa_real *part, const ksa_real *q, const ksa_real *K, const ksa_real *V,
                        size_t k0, size_t nk, const ksa_model *m, ksa_real *s)
{
    size_t Hq = m->Hq, G = Hq / m->Hkv, dh = m->dh, kvd = m->Hkv * dh;
    ksa_real scale = (ksa_real)(1.0 / sqrt((double)dh));
    ksa_real *mx = part, *sum = part + Hq, *acc = part + 2 * Hq;
    for (size_t k = 0; k < nk; k++) {
        const ksa_real *key = K + (k0 + k) * kvd;
        for (size_t hq = 0; hq < Hq; hq++) {
            const ksa_real *qh = q + hq * dh, *kh = key + hq / G * dh;
            ksa_real dot = 0;
#pragma omp simd reduction(+ : dot)
            for (size_t x = 0; x < dh; x++)
                dot += qh[x] * kh[x];
            s[hq * DEC_BK + k] = scale * dot;
        }
    }
    for (size_t hq = 0; hq < Hq; hq++) {
        mx[hq] = ksa_row_max(s + hq * DEC_BK, nk);
        sum[hq] = ksa_exp_shift_sum(s + hq * DEC_BK, nk, mx[hq]);
    }
    memset(acc, 0, Hq * dh * sizeof *acc);
    for (size_t k = 0; k < nk; k++) {
        const ksa_real *value = V + (k0 + k) * kvd;
        for (size_t hq = 0; hq < Hq; hq++) {
            ksa_real p = s[hq * DEC_BK + k], *a = acc + hq * dh;
            const ksa_real *vh = value + hq / G * dh;
#pragma omp simd
            for (size_t x = 0; x < dh; x++)
                a[x] += p * vh[x];
        }
    }
}

/* o [Hq, dh] = the attention output of a row from the partials of its n tiles (n >= 1). */
static void merge_tiles(ksa_real *o, const ksa_real *parts, size_t n, const ksa_model *m)
{
    size_t Hq = m->Hq, dh = m->dh, tr = tile_reals(m);
    for (size_t hq = 0; hq < Hq; hq++) {
        ksa_real M = parts[hq];
        for (size_t t = 1; t < n; t++)
            M = parts[t * tr + hq] > M ? parts[t * tr + hq] : M;
        ksa_real l = 0, *oh = o + hq * dh;
        memset(oh, 0, dh * sizeof *oh);
        for (size_t t = 0; t < n; t++) {
            const ksa_real *pt = parts + t * tr;
            ksa_real w = (ksa_real)exp((double)(pt[hq] - M)), *acc = (ksa_real *)pt + 2 * Hq;
            l += w * pt[Hq + hq];
            for (size_t x = 0; x < dh; x++)
                oh[x] += w * acc[hq * dh + x];
        }
        for (size_t x = 0; x < dh; x++)
            oh[x] /= l;
    }
}

/* Room for n tiles (grows geometrically; a reserved decoder has room for any step). */
static void tiles_reserve(ksa_decoder *d, size_t n)
{
    if (n <= d->tiles_cap)
        return;
    size_t cap = d->tiles_cap * 2 > n ? d->tiles_cap * 2 : n;
    ksa_free(d->tile_row), ksa_free(d->tile_k0), ksa_free(d->tile_part);
    d->tile_row = ksa_alloc(cap * sizeof *d->tile_row);
    d->tile_k0 = ksa_alloc(cap * sizeof *d->tile_k0);
    d->tile_part = ksa_alloc(cap * tile_reals(d->m) * sizeof *d->tile_part);
    d->tiles_cap = cap;
}

/* w->att [nq, Hq*dh] = attention of the step's nq query rows over their cache ranges. */
static void attend_rows(ksa_decoder *d, ksa_decode_work *w, size_t li, size_t nq)
{
    const ksa_model *m = d->m;
    size_t qd = m->Hq * m->dh, kvd = m->Hkv * m->dh, tr = tile_reals(m), ntiles = 0, keys = 0;
    for (size_t r = 0; r < nq; r++) {
        size_t len = d->reads[r].end - d->reads[r].begin;
        KSA_ASSERT(len > 0, "decode query row %zu reads no cache row", r);
        ntiles += (len + DEC_BK - 1) / DEC_BK;
        keys += len;
    }
    tiles_reserve(d, ntiles);
    size_t t = 0;
    for (size_t r = 0; r < nq; r++) {
        d->row_first_tile[r] = t;
        for (size_t k0 = d->reads[r].begin; k0 < d->reads[r].end; k0 += DEC_BK, t++)
            d->tile_row[t] = r, d->tile_k0[t] = k0;
    }
    d->row_first_tile[nq] = t;
    int parallel = keys * kvd >= KSA_PARALLEL_MIN_ELEMENTS;
#pragma omp parallel if (parallel)
    {
        ksa_real *s = d->thread_scratch + (size_t)omp_get_thread_num() * thread_scratch_reals(m);
#pragma omp for schedule(static)
        for (size_t i = 0; i < ntiles; i++) {
            size_t r = d->tile_row[i], k0 = d->tile_k0[i];
            const ksa_layer_cache *c = &d->seqs[d->query_seq[r]].layers[li];
            attend_tile(d->tile_part + i * tr, w->q + r * qd, c->k, c->v, k0,
                        min_size(DEC_BK, d->reads[r].end - k0), m, s);
        }
#pragma omp for schedule(static)
        for (size_t r = 0; r < nq; r++)
            merge_tiles(w->att + r * qd, d->tile_part + d->row_first_tile[r] * tr,
                        d->row_first_tile[r + 1] - d->row_first_tile[r], m);
    }
}

ksa_status ksa_decoder_step(ksa_decoder *d, size_t n, const size_t *seq, const int32_t *tokens,
                            ksa_real *logits)
{
    ksa_model *m = d->m;
    const ksa_model_layout *l = &m->layout;
    if (n == 0)
        return KSA_OK;
    if (n > d->B)
        return ksa_fail(KSA_EINVAL, "decode step: %zu sequences listed, the decoder has %zu", n,
                        d->B);
    KSA_TRY(check_ids(m, tokens, n, "decode step"));
    ksa_status st = KSA_OK;
    for (size_t i = 0; i < n && st == KSA_OK; i++) {
        if (seq[i] >= d->B)
            st =
                ksa_fail(KSA_EINVAL, "decode step: sequence %zu of a decoder of %zu", seq[i], d->B);
        else if (d->listed[seq[i]])
            st = ksa_fail(KSA_EINVAL, "decode step: sequence %zu listed twice", seq[i]);
        else if (d->seqs[seq[i]].T >= d->T_max)
            st = ksa_fail(KSA_EINVAL,
                          "decode step: sequence %zu already holds %zu tokens, the most this "
                          "decoder allows (at most max_position_embeddings)",
                          seq[i], d->seqs[seq[i]].T);
        else
            d->listed[seq[i]] = 1;
    }
    for (size_t i = 0; i < n; i++)
        if (seq[i] < d->B)
            d->listed[seq[i]] = 0;
    if (st != KSA_OK)
        return st;

    /* rows: text row i for seq[i], then S summary rows for each sequence whose token
     * completes a chunk (KSA_SPEC §8.4) */
    ksa_decode_work *w = &d->step;
    size_t S = d->summary_rows ? l->S : 0, C = l->C, ns = 0;
    for (size_t i = 0; i < n; i++) {
        size_t T = d->seqs[seq[i]].T;
        w->ids[i] = tokens[i];
        w->pos[i] = ksa_layout_text_position(l, T);
        d->query_seq[i] = seq[i];
        d->query_j[i] = KSA_KV_NO_ROW;
        if (S && T % C == C - 1)
            for (size_t j = 0; j < S; j++, ns++) {
                w->pos[n + ns] = ksa_layout_summary_position(l, T / C, j);
                d->query_seq[n + ns] = seq[i];
                d->query_j[n + ns] = j;
            }
    }
    embed_rows(d, w, n, ns, d->query_j + n);

    size_t kvd = m->Hkv * m->dh;
    int nthreads = ksa_threads_get();
    if ((size_t)nthreads > d->thread_scratch_threads) {
        ksa_free(d->thread_scratch);
        d->thread_scratch =
            ksa_alloc((size_t)nthreads * thread_scratch_reals(m) * sizeof(ksa_real));
        d->thread_scratch_threads = (size_t)nthreads;
    }
    for (size_t li = 0; li < l->n_layers; li++) {
        const ksa_layer_params *lp = &m->layers[li];
        int two = two_streams(d, li);
        size_t nq = n + (two ? ns : 0); /* query rows of this layer */
        attention_inputs(d, w, lp, n, two ? ns : 0);
        /* keys and values in: text rows (append), then the summary rows (scratch) */
        for (size_t r = 0; r < nq; r++) {
            ksa_layer_cache *c = &d->seqs[d->query_seq[r]].layers[li];
            if (d->query_j[r] == KSA_KV_NO_ROW) {
                cache_reserve(m, c, ksa_kv_cache_grow_rows(&c->book, c->cap));
                ksa_kv_append a = ksa_kv_cache_append_text(&c->book);
                copy_row(m, c, a.row, w->k + r * kvd, w->v + r * kvd);
                d->reads[r] = ksa_kv_cache_text_reads(&c->book);
            } else {
                size_t j = d->query_j[r];
                copy_row(m, c, ksa_kv_cache_summary_row(&c->book, j), w->k + r * kvd,
                         w->v + r * kvd);
                d->reads[r] = ksa_kv_cache_summary_reads(&c->book, j);
            }
        }
        attend_rows(d, w, li, nq);
        /* completed chunks: text into the ring, summaries into their region (§8.4 step 3-4) */
        for (size_t i = 0; i < n; i++) {
            ksa_layer_cache *c = &d->seqs[seq[i]].layers[li];
            if (c->book.pending) {
                ksa_kv_copy copies[2];
                size_t nc = ksa_kv_cache_flush(&c->book, copies);
                apply_copies(m, c, copies, nc);
            }
        }
        attention_output_and_mlp(d, w, lp, nq);
    }
    lm_head(d, w, 0, n, logits);
    for (size_t i = 0; i < n; i++)
        d->seqs[seq[i]].T++;
    return KSA_OK;
}

void ksa_decoder_fill_synthetic(ksa_decoder *d, size_t b, size_t T, uint64_t seed)
{
    KSA_ASSERT(b < d->B && d->seqs[b].T == 0 && T <= d->T_max,
               "synthetic context of %zu tokens for sequence %zu", T, b);
    size_t kvd = d->m->Hkv * d->m->dh;
    ksa_rng rng = ksa_rng_at(seed);
    for (size_t i = 0; i < d->m->layout.n_layers; i++) {
        ksa_layer_cache *c = &d->seqs[b].layers[i];
        ksa_kv_cache_fill(&c->book, T);
        size_t rows = ksa_kv_cache_rows_for(&c->book, T);
        cache_reserve(d->m, c, rows);
        for (size_t x = 0; x < rows * kvd; x++) {
            c->k[x] = (ksa_real)ksa_rng_normal(&rng);
            c->v[x] = (ksa_real)ksa_rng_normal(&rng);
        }
    }
    d->seqs[b].T = T;
}

/* ---- memory --------------------------------------------------------------------------- */
ksa_decoder_memory ksa_decoder_memory_of(const ksa_decoder *d)
{
    ksa_decoder_memory mem = {0};
    size_t row_bytes = 2 * d->m->Hkv * d->m->dh * sizeof(ksa_real); /* K and V */
    for (size_t b = 0; b < d->B; b++)
        for (size_t i = 0; i < d->m->layout.n_layers; i++) {
            const ksa_layer_cache *c = &d->seqs[b].layers[i];
            mem.allocated_bytes += c->cap * row_bytes;
            mem.live_bytes += ksa_kv_cache_live_rows(&c->book) * row_bytes;
            mem.causal_bytes += d->seqs[b].T * row_bytes;
        }
    return mem;
}
