/* summary_attn.c - tiled KSA attention over the two streams, forward and backward.
 *
 *   o[i] = sum_k P[i,k] v[k],  P[i,:] = softmax over the keys visible from i of scale*q[i]·k,
 *   scale = 1/sqrt(dh); visibility and layouts in summary_attn.h (KSA_SPEC §3.2, §6.1).
 *   Saved: lse[i] = log sum_k exp(scale*q[i]·k) over the visible keys, one per row and head.
 *
 * Text queries (the O(L·visible) part) run flash-attention style. A block of up to BQ
 * consecutive text rows of one head sees, for row t with w0 = max(0, t div C - W),
 *   text keys    [w0*C, t]     -> block range [w0(first)*C, last]       (tiles from the top)
 *   summary keys [0, w0*S)     -> block range [0, w0(last)*S)           (tiles from 0)
 * Both bounds are non-decreasing in t, so each row's visible keys inside a tile form one
 * interval [a, b); keys outside it get probability 0 (the -inf scores of a mask, never
 * exponentiated), and a row whose interval in a tile is empty is all zeros there (its
 * running max is untouched; every row sees at least itself, so its final sum is > 0).
 * Per tile: S = scale·Q·Kᵀ (gemm), online softmax (running max m, sum l, rescale of the
 * output accumulator), O += P·V (gemm). Nothing larger than a BQ x BK tile is stored.
 *
 * Summary queries see at most C + S keys (their chunk's text and the chunk's summaries up
 * to themselves): plain loops per (sequence, chunk, head).
 *
 * Backward (standard softmax-attention derivation, e.g. FlashAttention-2 §3.1.2): with
 * P recomputed from lse, dO = d(loss)/dO and D_i = sum_k P[i,k] dP[i,k] = dO[i]·O[i],
 *   dP = dO·Vᵀ,  dS = P ∘ (dP − D),  dQ += scale·dS·K,  dK += scale·dSᵀ·Q,  dV += Pᵀ·dO.
 * Reference it must match: the dense masked attention on the interleaved sequence with the
 * predicate of KSA_SPEC §3.1 (tests/test_summary_attn.c).
 *
 * Threads (deterministic, DESIGN.md §4). Forward: work items (sequence, head, query block)
 * are dealt round-robin (schedule(static, 1), which spreads the causal growth of the work);
 * every output row is computed by one item in a fixed tile order, so the forward does not
 * depend on the thread count. Backward: for each (sequence, kv head), the threads share its
 * (group head, query block) items round-robin; dQ rows are owned by their item, dK/dV go to
 * per-thread buffers [T + NS, dh] that are then added into dk/dv in thread order. Summary
 * queries own their chunk's dK/dV rows and are processed after, per (sequence, chunk, kv
 * head). OpenBLAS called inside the parallel region runs single-threaded.                */
#include "summary_attn.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd/blas.h"
#include "core/vecmath.h"

/* Query rows per block and keys per tile. Measured with bench/attention.c (dh 64, 2 threads,
 * docs/benchmarks.md): 128 x 256 is the fastest for causal attention (128-row blocks make
 * fewer, larger gemm calls: ~10% faster than 64 rows at T = 16k) and as fast as any other
 * choice for summary attention (C = 8, W = 128), whose masked staircase at the window edge
 * grows with the block height but stays a few percent of the work.                       */
#ifndef KSA_ATTN_BQ
#define KSA_ATTN_BQ 128
#endif
#ifndef KSA_ATTN_BK
#define KSA_ATTN_BK 256
#endif
enum { BQ = KSA_ATTN_BQ, BK = KSA_ATTN_BK };

static ksa_real dot(const ksa_real *a, const ksa_real *b, size_t n)
{
    ksa_real s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void axpy(ksa_real *restrict y, ksa_real a, const ksa_real *restrict x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void zero(ksa_real *x, size_t n)
{
    memset(x, 0, n * sizeof *x);
}

/* ---- geometry ---------------------------------------------------------------------- */
typedef struct {
    size_t nseq, T, C, S, W, NS, Hq, Hkv, G, dh;
    size_t t0, c0;   /* the first query text row and its chunk (whole sequence's indices) */
    size_t kt0, TK;  /* text keys held: rows [kt0, kt0 + TK)                              */
    size_t ks0, NSK; /* summary keys held: rows [ks0, ks0 + NSK)                          */
    size_t ldq, ldk; /* row strides: Hq*dh, Hkv*dh */
    ksa_real scale;
} geom;

static geom make_geom(const ksa_summary_attn_dims *d)
{
    KSA_ASSERT(d->C >= 1, "summary attention: chunk size C must be >= 1");
    KSA_ASSERT(d->Hkv >= 1 && d->Hq % d->Hkv == 0,
               "summary attention: Hq = %zu is not a multiple of Hkv = %zu", d->Hq, d->Hkv);
    KSA_ASSERT(d->dh >= 1, "summary attention: head_dim must be >= 1");
    geom g = {.nseq = d->nseq,
              .T = d->T,
              .C = d->C,
              .S = d->S,
              .W = d->W,
              .Hq = d->Hq,
              .Hkv = d->Hkv,
              .dh = d->dh};
    g.NS = ksa_summary_attn_summary_rows(d);
    KSA_ASSERT(d->t0 % d->C == 0, "summary attention: block start %zu is not a multiple of C = %zu",
               d->t0, d->C);
    g.t0 = d->t0;
    g.c0 = d->t0 / d->C;
    if (d->TK == 0 && d->NSK == 0) { /* the keys of the query rows themselves */
        g.kt0 = g.t0, g.TK = g.T;
        g.ks0 = g.c0 * g.S, g.NSK = g.NS;
    } else {
        g.kt0 = d->kt0, g.TK = d->TK;
        g.ks0 = d->ks0, g.NSK = d->NSK;
    }
    g.G = d->Hq / d->Hkv;
    g.ldq = d->Hq * d->dh;
    g.ldk = d->Hkv * d->dh;
    g.scale = (ksa_real)(1.0 / sqrt((double)d->dh));
    return g;
}

size_t ksa_summary_attn_summary_rows(const ksa_summary_attn_dims *d)
{
    return d->C ? d->T / d->C * d->S : 0;
}

/* First chunk whose text a text query t still sees; older chunks appear as summaries. */
static inline size_t window_start(const geom *g, size_t t)
{
    size_t c = t / g->C;
    return c > g->W ? c - g->W : 0;
}

/* [max(lo, a), min(hi, b)) - a: the part of [lo, hi) inside the held rows [a, b), in held
 * coordinates (empty: lo = hi). */
static inline void held(size_t lo, size_t hi, size_t a, size_t b, size_t *hlo, size_t *hhi)
{
    lo = lo > a ? lo : a;
    hi = hi < b ? hi : b;
    if (hi <= lo)
        lo = hi = a;
    *hlo = lo - a;
    *hhi = hi - a;
}

/* Visible held keys [lo, hi) of text query t (the whole sequence's index) in the text
 * (is_text) or summary stream, in held coordinates. */
static inline void row_range(const geom *g, int is_text, size_t t, size_t *lo, size_t *hi)
{
    size_t w0 = window_start(g, t);
    if (is_text)
        held(w0 * g->C, t + 1, g->kt0, g->kt0 + g->TK, lo, hi);
    else
        held(0, w0 * g->S, g->ks0, g->ks0 + g->NSK, lo, hi);
}

/* [lo, hi) clipped to the tile [j0, j0 + nk), in tile coordinates. */
static inline void tile_interval(size_t lo, size_t hi, size_t j0, size_t nk, size_t *a, size_t *b)
{
    size_t x = lo > j0 ? lo - j0 : 0, y = hi > j0 ? hi - j0 : 0;
    *a = x < nk ? x : nk;
    *b = y < nk ? y : nk;
}

/* ---- workspace: one slice per thread, every array 64-byte aligned --------------------- */
static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

typedef struct {
    ksa_real *s;         /* [BQ, BK] scores, then probabilities                     */
    ksa_real *acc;       /* [BQ, dh] output accumulator (forward)                   */
    ksa_real *m, *l;     /* [BQ] running max and sum (forward); m holds D (backward) */
    ksa_real *dp;        /* [BQ, BK] dP, then dS (backward)                         */
    ksa_real *dkb, *dvb; /* [TK + NSK, dh] this thread's dK/dV of one kv head (backward) */
    ksa_real *sq;        /* [C + S] scores of one summary query                     */
} scratch;

static size_t scratch_reals(const geom *g, int backward)
{
    size_t n = round16((size_t)BQ * BK) + 2 * round16(BQ) + round16(g->C + g->S);
    if (backward)
        n += round16((size_t)BQ * BK) + 2 * round16((g->TK + g->NSK) * g->dh);
    else
        n += round16((size_t)BQ * g->dh);
    return n;
}

static scratch scratch_at(void *workspace, const geom *g, int backward, int thread)
{
    ksa_real *p = (ksa_real *)workspace + (size_t)thread * scratch_reals(g, backward);
    scratch w = {0};
    w.s = p, p += round16((size_t)BQ * BK);
    w.m = p, p += round16(BQ);
    w.l = p, p += round16(BQ);
    w.sq = p, p += round16(g->C + g->S);
    if (backward) {
        w.dp = p, p += round16((size_t)BQ * BK);
        w.dkb = p, p += round16((g->TK + g->NSK) * g->dh);
        w.dvb = p;
    } else {
        w.acc = p;
    }
    return w;
}

size_t ksa_summary_attn_forward_workspace_size(const ksa_summary_attn_dims *d, int nthreads)
{
    geom g = make_geom(d);
    return (size_t)(nthreads > 0 ? nthreads : 1) * scratch_reals(&g, 0) * sizeof(ksa_real);
}

size_t ksa_summary_attn_backward_workspace_size(const ksa_summary_attn_dims *d, int nthreads)
{
    geom g = make_geom(d);
    return (size_t)(nthreads > 0 ? nthreads : 1) * scratch_reals(&g, 1) * sizeof(ksa_real);
}

static void check_workspace(const geom *g, int backward, void *workspace, size_t bytes)
{
    int nt = omp_get_max_threads();
    size_t need = (size_t)nt * scratch_reals(g, backward) * sizeof(ksa_real);
    KSA_ASSERT(bytes >= need && workspace,
               "summary attention %s: workspace of %zu bytes, %d threads need %zu",
               backward ? "backward" : "forward", bytes, nt, need);
}

/* The arrays of one call (layouts in summary_attn.h): row r of sequence n, head h is at
 * X + ((n*T + r)*H + h)*dh in a text query array, X + ((n*NS + r)*H + h)*dh in a summary
 * query array, and with TK and NSK in place of T and NS in the key arrays; H = Hq or Hkv. */
typedef struct {
    const ksa_real *q_text, *q_sum, *k_text, *k_sum, *v_text, *v_sum;
    ksa_real *o_text, *o_sum, *lse_text, *lse_sum; /* forward  */
    const ksa_real *do_text, *do_sum, *oc_text, *oc_sum, *lsec_text, *lsec_sum;
    ksa_real *dq_text, *dq_sum, *dk_text, *dk_sum, *dv_text, *dv_sum; /* backward */
} io;

/* The held keys a block of query rows [r0, r0 + nr) may see, in held coordinates: text
 * [*tlo, *thi) (from the first row's window start to the last row), summary [0, *shi). */
static void block_keys(const geom *g, size_t r0, size_t nr, size_t *tlo, size_t *thi, size_t *shi)
{
    size_t first = g->t0 + r0, last = first + nr - 1, slo;
    held(window_start(g, first) * g->C, last + 1, g->kt0, g->kt0 + g->TK, tlo, thi);
    held(0, window_start(g, last) * g->S, g->ks0, g->ks0 + g->NSK, &slo, shi);
    *shi = slo < *shi ? *shi : 0; /* slo is 0 whenever the range is not empty */
}

/* ---- forward: text queries ------------------------------------------------------------ */
typedef struct {
    const geom *g;
    scratch *w;
    const ksa_real *qb; /* first query row of the block, stride ldq */
    size_t r0, nr;      /* text rows [r0, r0 + nr)                  */
} block;

static void forward_tile(const block *bl, int is_text, const ksa_real *kt, const ksa_real *vt,
                         size_t j0, size_t nk)
{
    const geom *g = bl->g;
    scratch *w = bl->w;
    ksa_gemm(0, 1, bl->nr, nk, g->dh, g->scale, bl->qb, g->ldq, kt, g->ldk, 0, w->s, BK);
    for (size_t i = 0; i < bl->nr; i++) {
        ksa_real *row = w->s + i * BK;
        size_t lo, hi, a, b;
        row_range(g, is_text, g->t0 + bl->r0 + i, &lo, &hi);
        tile_interval(lo, hi, j0, nk, &a, &b);
        if (a >= b) { /* nothing visible in this tile for this row */
            zero(row, nk);
            continue;
        }
        zero(row, a);
        zero(row + b, nk - b);
        ksa_real m_old = w->m[i], mx = ksa_row_max(row + a, b - a);
        ksa_real m_new = mx > m_old ? mx : m_old;
        ksa_real sum = ksa_exp_shift_sum(row + a, b - a, m_new);
        if (m_new > m_old && m_old != -INFINITY) { /* rescale what was summed so far */
            ksa_real corr = (ksa_real)exp((double)(m_old - m_new));
            w->l[i] *= corr;
            ksa_real *acc = w->acc + i * g->dh;
#pragma omp simd
            for (size_t d = 0; d < g->dh; d++)
                acc[d] *= corr;
        }
        w->l[i] += sum;
        w->m[i] = m_new;
    }
    ksa_gemm(0, 0, bl->nr, g->dh, nk, 1, w->s, BK, vt, g->ldk, 1, w->acc, g->dh);
}

static void forward_text_block(const geom *g, const io *p, scratch *w, size_t n, size_t h,
                               size_t r0, size_t nr)
{
    size_t kvh = h / g->G, dh = g->dh;
    block bl = {.g = g, .w = w, .r0 = r0, .nr = nr};
    bl.qb = p->q_text + ((n * g->T + r0) * g->Hq + h) * dh;
    for (size_t i = 0; i < nr; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0;
    }
    zero(w->acc, nr * dh);

    /* text keys, from the diagonal tile down to the window start */
    size_t lo, hi, shi;
    block_keys(g, r0, nr, &lo, &hi, &shi);
    const ksa_real *kt = p->k_text + (n * g->TK * g->Hkv + kvh) * dh;
    const ksa_real *vt = p->v_text + (n * g->TK * g->Hkv + kvh) * dh;
    for (size_t j1 = hi; j1 > lo;) {
        size_t nk = j1 - lo < BK ? j1 - lo : BK, j0 = j1 - nk;
        forward_tile(&bl, 1, kt + j0 * g->ldk, vt + j0 * g->ldk, j0, nk);
        j1 = j0;
    }
    /* summaries of the chunks older than the window */
    if (shi) {
        const ksa_real *ks = p->k_sum + (n * g->NSK * g->Hkv + kvh) * dh;
        const ksa_real *vs = p->v_sum + (n * g->NSK * g->Hkv + kvh) * dh;
        for (size_t j0 = 0; j0 < shi; j0 += BK) {
            size_t nk = shi - j0 < BK ? shi - j0 : BK;
            forward_tile(&bl, 0, ks + j0 * g->ldk, vs + j0 * g->ldk, j0, nk);
        }
    }
    for (size_t i = 0; i < nr; i++) {
        size_t row = (n * g->T + r0 + i) * g->Hq + h;
        ksa_real *o = p->o_text + row * dh;
        if (w->l[i] == 0) { /* no held key is visible: another call's keys (a block) */
            zero(o, dh);
            p->lse_text[row] = -INFINITY;
            continue;
        }
        const ksa_real *acc = w->acc + i * dh;
        ksa_real inv = 1 / w->l[i];
#pragma omp simd
        for (size_t d = 0; d < dh; d++)
            o[d] = acc[d] * inv;
        p->lse_text[row] = w->m[i] + (ksa_real)log((double)w->l[i]);
    }
}

/* ---- summary queries: keys of chunk c, as pointers ---------------------------------- */
/* Key k of the query block's chunk c (the sequence's chunk c0 + c): its text row k < C, or
 * its summary row k - C, as an offset into the held key arrays. */
static inline size_t chunk_key_at(const geom *g, size_t n, size_t c, size_t kvh, size_t k)
{
    if (k < g->C)
        return ((n * g->TK + (g->c0 + c) * g->C + k - g->kt0) * g->Hkv + kvh) * g->dh;
    return ((n * g->NSK + (g->c0 + c) * g->S + (k - g->C) - g->ks0) * g->Hkv + kvh) * g->dh;
}

static inline const ksa_real *chunk_key(const geom *g, const ksa_real *x_text,
                                        const ksa_real *x_sum, size_t n, size_t c, size_t kvh,
                                        size_t k)
{
    return (k < g->C ? x_text : x_sum) + chunk_key_at(g, n, c, kvh, k);
}

static inline ksa_real *chunk_key_grad(const geom *g, ksa_real *x_text, ksa_real *x_sum, size_t n,
                                       size_t c, size_t kvh, size_t k)
{
    ksa_real *x = k < g->C ? x_text : x_sum;
    return x ? x + chunk_key_at(g, n, c, kvh, k) : NULL;
}

/* Summary queries need their chunks' keys held: text rows [c0*C, (c0 + n)*C) and summary rows
 * [c0*S, (c0 + n)*S) for the n = T/C chunks of the block. */
static void check_summary_keys(const geom *g)
{
    size_t n = g->T / g->C;
    KSA_ASSERT(g->kt0 <= g->c0 * g->C && (g->c0 + n) * g->C <= g->kt0 + g->TK &&
                   g->ks0 <= g->c0 * g->S && (g->c0 + n) * g->S <= g->ks0 + g->NSK,
               "summary attention: the summary queries' chunks %zu..%zu are not all held", g->c0,
               g->c0 + n);
}

/* Scores of summary query (c, j), head h, into sq[0, C + j + 1): the chunk's C text keys,
 * then its summaries 0..j. */
static size_t summary_scores(const geom *g, const io *p, ksa_real *sq, const ksa_real *qv, size_t n,
                             size_t c, size_t j, size_t kvh)
{
    size_t nk = g->C + j + 1;
    for (size_t k = 0; k < nk; k++)
        sq[k] = g->scale * dot(qv, chunk_key(g, p->k_text, p->k_sum, n, c, kvh, k), g->dh);
    return nk;
}

static void forward_summary_query(const geom *g, const io *p, scratch *w, size_t n, size_t c,
                                  size_t j, size_t h)
{
    size_t kvh = h / g->G, dh = g->dh, row = (n * g->NS + c * g->S + j) * g->Hq + h;
    size_t nk = summary_scores(g, p, w->sq, p->q_sum + row * dh, n, c, j, kvh);
    ksa_real mx = ksa_row_max(w->sq, nk);
    ksa_real sum = ksa_exp_shift_sum(w->sq, nk, mx);
    ksa_real *o = p->o_sum + row * dh;
    zero(o, dh);
    for (size_t k = 0; k < nk; k++)
        axpy(o, w->sq[k] / sum, chunk_key(g, p->v_text, p->v_sum, n, c, kvh, k), dh);
    p->lse_sum[row] = mx + (ksa_real)log((double)sum);
}

/* The inputs q, k, v of both passes; the rest of io is set by each. */
static io io_of(ksa_attn_qkv in)
{
    io p = {.q_text = in.q.text,
            .q_sum = in.q.sum,
            .k_text = in.k.text,
            .k_sum = in.k.sum,
            .v_text = in.v.text,
            .v_sum = in.v.sum};
    return p;
}

/* ---- forward ---------------------------------------------------------------------------- */
void ksa_summary_attn_forward(ksa_attn_out o, ksa_attn_out lse, ksa_attn_qkv in, void *workspace,
                              size_t workspace_bytes, const ksa_summary_attn_dims *d)
{
    geom g = make_geom(d);
    check_workspace(&g, 0, workspace, workspace_bytes);
    io p = io_of(in);
    p.o_text = o.text, p.o_sum = o.sum, p.lse_text = lse.text, p.lse_sum = lse.sum;
    size_t nqb = (g.T + BQ - 1) / BQ, n_text = g.nseq * g.Hq * nqb;
    size_t nch = g.T / g.C, n_sum = g.S && in.q.sum ? g.nseq * nch * g.Hq : 0;
    if (n_sum)
        check_summary_keys(&g);
#pragma omp parallel
    {
        scratch w = scratch_at(workspace, &g, 0, omp_get_thread_num());
#pragma omp for schedule(static, 1) nowait
        for (size_t u = 0; u < n_text; u++) {
            size_t qb = u % nqb, h = u / nqb % g.Hq, n = u / nqb / g.Hq;
            size_t r0 = qb * BQ, nr = g.T - r0 < BQ ? g.T - r0 : BQ;
            forward_text_block(&g, &p, &w, n, h, r0, nr);
        }
#pragma omp for schedule(static)
        for (size_t u = 0; u < n_sum; u++) {
            size_t h = u % g.Hq, c = u / g.Hq % nch, n = u / g.Hq / nch;
            for (size_t j = 0; j < g.S; j++)
                forward_summary_query(&g, &p, &w, n, c, j, h);
        }
    }
}

/* ---- backward: text queries ----------------------------------------------------------- */
typedef struct {
    block bl;
    const ksa_real *dob; /* dO of the block's first row, stride ldq      */
    ksa_real *dqb;       /* dq of the block's first row, or NULL          */
    const ksa_real *lse; /* lse of the block's first row, stride Hq       */
    int want_dk, want_dv;
} bblock;

static void backward_tile(const bblock *bb, int is_text, const ksa_real *kt, const ksa_real *vt,
                          ksa_real *dkb, ksa_real *dvb, size_t j0, size_t nk)
{
    const block *bl = &bb->bl;
    const geom *g = bl->g;
    scratch *w = bl->w;
    size_t nr = bl->nr, dh = g->dh, ra[BQ], rb[BQ];
    /* P = exp(scale·Q·Kᵀ − lse), zero where not visible */
    ksa_gemm(0, 1, nr, nk, dh, g->scale, bl->qb, g->ldq, kt, g->ldk, 0, w->s, BK);
    for (size_t i = 0; i < nr; i++) {
        ksa_real *row = w->s + i * BK;
        size_t lo, hi;
        row_range(g, is_text, g->t0 + bl->r0 + i, &lo, &hi);
        tile_interval(lo, hi, j0, nk, &ra[i], &rb[i]);
        if (ra[i] >= rb[i]) {
            ra[i] = rb[i] = 0;
            zero(row, nk);
            continue;
        }
        zero(row, ra[i]);
        zero(row + rb[i], nk - rb[i]);
        ksa_exp_shift_sum(row + ra[i], rb[i] - ra[i], bb->lse[i * g->Hq]);
    }
    if (bb->want_dv) /* dV += Pᵀ·dO */
        ksa_gemm(1, 0, nk, dh, nr, 1, w->s, BK, bb->dob, g->ldq, 1, dvb, dh);
    if (!bb->dqb && !bb->want_dk)
        return;
    /* dS = P ∘ (dO·Vᵀ − D) */
    ksa_gemm(0, 1, nr, nk, dh, 1, bb->dob, g->ldq, vt, g->ldk, 0, w->dp, BK);
    for (size_t i = 0; i < nr; i++) {
        ksa_real *ds = w->dp + i * BK;
        const ksa_real *pr = w->s + i * BK;
        ksa_real di = w->m[i];
        size_t a = ra[i], b = rb[i];
        zero(ds, a);
        zero(ds + b, nk - b);
#pragma omp simd
        for (size_t k = a; k < b; k++)
            ds[k] = pr[k] * (ds[k] - di);
    }
    if (bb->dqb) /* dQ += scale·dS·K */
        ksa_gemm(0, 0, nr, dh, nk, g->scale, w->dp, BK, kt, g->ldk, 1, bb->dqb, g->ldq);
    if (bb->want_dk) /* dK += scale·dSᵀ·Q */
        ksa_gemm(1, 0, nk, dh, nr, g->scale, w->dp, BK, bl->qb, g->ldq, 1, dkb, dh);
}

static void backward_text_block(const geom *g, const io *p, scratch *w, size_t n, size_t h,
                                size_t r0, size_t nr, int want_dk, int want_dv)
{
    size_t kvh = h / g->G, dh = g->dh, row0 = (n * g->T + r0) * g->Hq + h;
    bblock bb = {.bl = {.g = g, .w = w, .r0 = r0, .nr = nr}};
    bb.bl.qb = p->q_text + row0 * dh;
    bb.dob = p->do_text + row0 * dh;
    bb.dqb = p->dq_text ? p->dq_text + row0 * dh : NULL;
    bb.lse = p->lsec_text + row0;
    bb.want_dk = want_dk;
    bb.want_dv = want_dv;
    for (size_t i = 0; i < nr; i++) /* D_i = dO_i · O_i, kept in w->m */
        w->m[i] = dot(bb.dob + i * g->ldq, p->oc_text + (row0 + i * g->Hq) * dh, dh);

    size_t lo, hi, shi;
    block_keys(g, r0, nr, &lo, &hi, &shi);
    const ksa_real *kt = p->k_text + (n * g->TK * g->Hkv + kvh) * dh;
    const ksa_real *vt = p->v_text + (n * g->TK * g->Hkv + kvh) * dh;
    for (size_t j1 = hi; j1 > lo;) {
        size_t nk = j1 - lo < BK ? j1 - lo : BK, j0 = j1 - nk;
        backward_tile(&bb, 1, kt + j0 * g->ldk, vt + j0 * g->ldk, w->dkb + j0 * dh,
                      w->dvb + j0 * dh, j0, nk);
        j1 = j0;
    }
    if (shi) {
        const ksa_real *ks = p->k_sum + (n * g->NSK * g->Hkv + kvh) * dh;
        const ksa_real *vs = p->v_sum + (n * g->NSK * g->Hkv + kvh) * dh;
        ksa_real *dks = w->dkb + g->TK * dh, *dvs = w->dvb + g->TK * dh;
        for (size_t j0 = 0; j0 < shi; j0 += BK) {
            size_t nk = shi - j0 < BK ? shi - j0 : BK;
            backward_tile(&bb, 0, ks + j0 * g->ldk, vs + j0 * g->ldk, dks + j0 * dh, dvs + j0 * dh,
                          j0, nk);
        }
    }
}

/* dst[r] += sum over threads, in thread order, of their buffer row r (r < TK: text rows,
 * else summary rows); dst_text/dst_sum may be NULL. Rows split statically over threads. */
static void reduce_rows(const geom *g, void *workspace, int nt, int which, ksa_real *dst_text,
                        ksa_real *dst_sum, size_t n, size_t kvh)
{
    size_t rows = g->TK + g->NSK, dh = g->dh;
#pragma omp for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        ksa_real *dst =
            r < g->TK ? (dst_text ? dst_text + ((n * g->TK + r) * g->Hkv + kvh) * dh : NULL)
                      : (dst_sum ? dst_sum + ((n * g->NSK + r - g->TK) * g->Hkv + kvh) * dh : NULL);
        if (!dst)
            continue;
        for (int t = 0; t < nt; t++) {
            scratch o = scratch_at(workspace, g, 1, t);
            const ksa_real *src = (which ? o.dvb : o.dkb) + r * dh;
#pragma omp simd
            for (size_t d = 0; d < dh; d++)
                dst[d] += src[d];
        }
    }
}

/* ---- backward: summary queries of chunk c, kv head kvh (they own the chunk's rows) ---- */
static void backward_summary_chunk(const geom *g, const io *p, scratch *w, size_t n, size_t c,
                                   size_t kvh)
{
    size_t dh = g->dh;
    for (size_t h = kvh * g->G; h < (kvh + 1) * g->G; h++) {
        for (size_t j = 0; j < g->S; j++) {
            size_t row = (n * g->NS + c * g->S + j) * g->Hq + h;
            const ksa_real *qv = p->q_sum + row * dh, *dov = p->do_sum + row * dh;
            size_t nk = summary_scores(g, p, w->sq, qv, n, c, j, kvh);
            ksa_exp_shift_sum(w->sq, nk, p->lsec_sum[row]);
            ksa_real di = dot(dov, p->oc_sum + row * dh, dh);
            ksa_real *dq = p->dq_sum ? p->dq_sum + row * dh : NULL;
            for (size_t k = 0; k < nk; k++) {
                ksa_real pk = w->sq[k];
                const ksa_real *vk = chunk_key(g, p->v_text, p->v_sum, n, c, kvh, k);
                ksa_real ds = pk * (dot(dov, vk, dh) - di);
                if (dq)
                    axpy(dq, g->scale * ds, chunk_key(g, p->k_text, p->k_sum, n, c, kvh, k), dh);
                ksa_real *dk = chunk_key_grad(g, p->dk_text, p->dk_sum, n, c, kvh, k);
                if (dk)
                    axpy(dk, g->scale * ds, qv, dh);
                ksa_real *dv = chunk_key_grad(g, p->dv_text, p->dv_sum, n, c, kvh, k);
                if (dv)
                    axpy(dv, pk, dov, dh);
            }
        }
    }
}

/* ---- backward ------------------------------------------------------------------------- */
void ksa_summary_attn_backward(ksa_attn_out dq, ksa_attn_out dk, ksa_attn_out dv, ksa_attn_in dout,
                               ksa_attn_qkv in, ksa_attn_in o, ksa_attn_in lse, void *workspace,
                               size_t workspace_bytes, const ksa_summary_attn_dims *d)
{
    geom g = make_geom(d);
    check_workspace(&g, 1, workspace, workspace_bytes);
    io p = io_of(in);
    p.do_text = dout.text, p.do_sum = dout.sum, p.oc_text = o.text, p.oc_sum = o.sum;
    p.lsec_text = lse.text, p.lsec_sum = lse.sum;
    p.dq_text = dq.text, p.dq_sum = dq.sum, p.dk_text = dk.text, p.dk_sum = dk.sum;
    p.dv_text = dv.text, p.dv_sum = dv.sum;
    ksa_real *dk_text = dk.text, *dk_sum = dk.sum, *dv_text = dv.text, *dv_sum = dv.sum;
    int want_dk = dk_text || dk_sum, want_dv = dv_text || dv_sum;
    int text_phase = dq.text || want_dk || want_dv;
    size_t nqb = (g.T + BQ - 1) / BQ, units = g.G * nqb, rows = g.TK + g.NSK;
    size_t nch = g.T / g.C, n_sum = g.S && in.q.sum ? g.nseq * nch * g.Hkv : 0;
    if (n_sum)
        check_summary_keys(&g);
#pragma omp parallel
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        scratch w = scratch_at(workspace, &g, 1, tid);
        for (size_t item = 0; text_phase && item < g.nseq * g.Hkv; item++) {
            size_t n = item / g.Hkv, kvh = item % g.Hkv;
            if (want_dk)
                zero(w.dkb, rows * g.dh);
            if (want_dv)
                zero(w.dvb, rows * g.dh);
            for (size_t u = (size_t)tid; u < units; u += (size_t)nt) {
                size_t h = kvh * g.G + u / nqb, qb = u % nqb;
                size_t r0 = qb * BQ, nr = g.T - r0 < BQ ? g.T - r0 : BQ;
                backward_text_block(&g, &p, &w, n, h, r0, nr, want_dk, want_dv);
            }
#pragma omp barrier
            if (want_dk) /* every thread takes the same branch: worksharing is legal */
                reduce_rows(&g, workspace, nt, 0, dk_text, dk_sum, n, kvh);
            if (want_dv)
                reduce_rows(&g, workspace, nt, 1, dv_text, dv_sum, n, kvh);
        }
#pragma omp for schedule(static)
        for (size_t u = 0; u < n_sum; u++) {
            size_t kvh = u % g.Hkv, c = u / g.Hkv % nch, n = u / g.Hkv / nch;
            backward_summary_chunk(&g, &p, &w, n, c, kvh);
        }
    }
}

/* ---- partial results over disjoint keys ------------------------------------------------- */
void ksa_summary_attn_merge(ksa_real *o, ksa_real *lse, const ksa_real *o2, const ksa_real *lse2,
                            size_t n, size_t dh)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        double a = (double)lse[r], b = (double)lse2[r], m = a > b ? a : b;
        if (m == -INFINITY)
            continue;
        double ea = exp(a - m), eb = exp(b - m), sum = ea + eb;
        double wa = ea / sum, wb = eb / sum;
        ksa_real *x = o + r * dh;
        const ksa_real *y = o2 + r * dh;
        for (size_t d = 0; d < dh; d++)
            x[d] = (ksa_real)(wa * (double)x[d] + wb * (double)y[d]);
        lse[r] = (ksa_real)(m + log(sum));
    }
}

/* ---- tape wiring ------------------------------------------------------------------------ *
 * Kernel scratch comes from the arena and is given back right after the call (it is only
 * live inside the kernel): the arena's `used` is restored to its value before.            */
static void *scratch_begin(ksa_arena *a, size_t bytes, size_t *mark)
{
    *mark = ksa_arena_mark(a);
    return ksa_arena_alloc(a, bytes);
}

static void scratch_end(ksa_arena *a, size_t mark)
{
    ksa_arena_release(a, mark);
}

/* The two streams of a combined buffer of nseq*T text rows then nseq*NS summary rows, each of
 * `width` elements (H*dh for q, k, v, o; Hq for lse). NULL: none. */
static ksa_attn_out streams(ksa_real *x, const ksa_summary_attn_dims *d, size_t width)
{
    ksa_attn_out s = {x, x ? x + d->nseq * d->T * width : NULL};
    return s;
}

static ksa_attn_in cstreams(const ksa_real *x, const ksa_summary_attn_dims *d, size_t width)
{
    ksa_attn_in s = {x, x ? x + d->nseq * d->T * width : NULL};
    return s;
}

/* q, k, v of the combined tensors */
static ksa_attn_qkv qkv_streams(const ksa_node *nd, const ksa_summary_attn_dims *d)
{
    size_t qw = d->Hq * d->dh, kw = d->Hkv * d->dh;
    ksa_attn_qkv in = {cstreams(nd->in[0]->data, d, qw), cstreams(nd->in[1]->data, d, kw),
                       cstreams(nd->in[2]->data, d, kw)};
    return in;
}

/* The node's context: the dimensions and the forward's lse [nseq*T + nseq*NS, Hq]. */
typedef struct {
    ksa_summary_attn_dims d;
    ksa_real *lse;
} summary_attn_ctx;

static void summary_attn_node_backward(ksa_tape *tp, const ksa_node *nd)
{
    const summary_attn_ctx *c = nd->ctx;
    const ksa_summary_attn_dims *d = &c->d;
    size_t qw = d->Hq * d->dh, kw = d->Hkv * d->dh;
    /* the gradients first: they live on, the scratch taken after them is given back */
    ksa_attn_out dq = streams(ksa_tape_grad(tp, nd->in[0]), d, qw);
    ksa_attn_out dk = streams(ksa_tape_grad(tp, nd->in[1]), d, kw);
    ksa_attn_out dv = streams(ksa_tape_grad(tp, nd->in[2]), d, kw);
    ksa_attn_in dout = cstreams(ksa_tensor_grad_if_any(nd->out), d, qw);
    size_t mark, bytes = ksa_summary_attn_backward_workspace_size(d, ksa_threads_get());
    void *ws = scratch_begin(tp->arena, bytes, &mark);
    if (!tp->plan_only)
        ksa_summary_attn_backward(dq, dk, dv, dout, qkv_streams(nd, d),
                                  cstreams(nd->out->data, d, qw), cstreams(c->lse, d, d->Hq), ws,
                                  bytes, d);
    scratch_end(tp->arena, mark);
}

static void check_stream_tensor(const ksa_tensor *x, const char *name, size_t rows, size_t H,
                                size_t dh)
{
    KSA_ASSERT(x->shape[0] == rows && x->numel == rows * H * dh,
               "summary attention: %s has %zu rows and %zu elements, expected [%zu, %zu*%zu]", name,
               x->shape[0], x->numel, rows, H, dh);
}

ksa_tensor *ksa_op_summary_attention(ksa_tape *tp, ksa_tensor *q, ksa_tensor *k, ksa_tensor *v,
                                     const ksa_summary_attn_dims *d)
{
    KSA_ASSERT(d->TK == 0 && d->NSK == 0,
               "summary attention op: keys of other rows than the queries' (a block of context "
               "parallelism) go through src/dist/cp_attn.c");
    size_t NS = ksa_summary_attn_summary_rows(d), rows = d->nseq * (d->T + NS);
    check_stream_tensor(q, "q", rows, d->Hq, d->dh);
    check_stream_tensor(k, "k", rows, d->Hkv, d->dh);
    check_stream_tensor(v, "v", rows, d->Hkv, d->dh);
    ksa_tensor *o = ksa_tensor_like(tp->arena, q);
    ksa_real *lse = ksa_arena_reals(tp->arena, rows * d->Hq);
    size_t mark, bytes = ksa_summary_attn_forward_workspace_size(d, ksa_threads_get());
    void *ws = scratch_begin(tp->arena, bytes, &mark);
    size_t qw = d->Hq * d->dh, kw = d->Hkv * d->dh;
    ksa_attn_qkv in = {cstreams(q->data, d, qw), cstreams(k->data, d, kw),
                       cstreams(v->data, d, kw)};
    if (!tp->plan_only)
        ksa_summary_attn_forward(streams(o->data, d, qw), streams(lse, d, d->Hq), in, ws, bytes, d);
    scratch_end(tp->arena, mark);
    ksa_node *nd = ksa_tape_record(tp, summary_attn_node_backward, "summary_attention", o, 3,
                                   (ksa_tensor *[]){q, k, v}, sizeof(summary_attn_ctx));
    if (nd)
        *(summary_attn_ctx *)nd->ctx = (summary_attn_ctx){.d = *d, .lse = lse};
    return o;
}
