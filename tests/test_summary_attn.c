/* test_summary_attn.c - the tiled KSA kernels against a dense reference that knows nothing
 * about streams or tiles (attncheck.h: the interleaved expanded sequence of KSA_SPEC §2.2,
 * the predicate of §3.1 taken literally, full masked softmax attention in double, mapped
 * back to the two streams): the mask against the spec's drawn grids; forward, lse and
 * gradients over a sweep of (C, S, W, T, heads) and on multi-tile lengths; gradients
 * against the reference's analytic backward (itself checked against its central
 * differences), and in the float64 build central differences of the kernel; accumulation,
 * NULL gradients, determinism, the tape op and linear memory at 64k tokens.             */
#include "attncheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model/summary_attn.h"

/* KSA_SPEC §3.3, both drawn grids, and the count of Appendix A. */
static const char *const grid1[] = {"X...........", "XX..........", "XXX.........", "XX.X........",
                                    "XX.XX.......", "...XXX......", "..XXX.X.....", "..XXX.XX....",
                                    "......XXX...", "..X..XXX.X..", "..X..XXX.XX.", ".........XXX"};
static const char *const grid2[] = {"X...........", "XX..........", "XXX.........", "XXXX........",
                                    "..XXX.......", "..XXXX......", "....XXX.....", "....XXXX....",
                                    "..XX..XXX...", "..XX..XXXX..", "........XXX.", "........XXXX"};

static void check_grid(const char *const *grid, size_t T, size_t C, size_t S, size_t W)
{
    attn_token tok[64];
    size_t L = attn_build_expanded(tok, T, C, S);
    assert_int_equal(L, 12);
    for (size_t q = 0; q < L; q++)
        for (size_t k = 0; k < L; k++) {
            int want = grid[q][k] == 'X';
            if (attn_visible(tok, q, k, W) != want) {
                print_error("C=%zu S=%zu W=%zu: visible(%zu, %zu) = %d, spec grid says %d\n", C, S,
                            W, q, k, !want, want);
                fail();
            }
        }
}

static void mask_builder_matches_the_drawn_grids_of_the_spec(void **state)
{
    (void)state;
    check_grid(grid1, 8, 2, 1, 1); /* C = 2, S = 1, W = 1, 4 chunks */
    check_grid(grid2, 6, 2, 2, 0); /* C = 2, S = 2, W = 0, 3 chunks (as drawn in §3.3) */
    /* Appendix A: t7 (chunk 3, offset 1) of the first grid sees 6 keys */
    attn_token tok[16];
    size_t L = attn_build_expanded(tok, 8, 2, 1), t7 = 10, seen = 0;
    assert_int_equal(tok[t7].is_sum, 0);
    assert_int_equal(tok[t7].index, 7);
    for (size_t k = 0; k < L; k++)
        seen += (size_t)attn_visible(tok, t7, k, 1);
    assert_int_equal(seen, 6);
    /* §2.2: L = 10, C = 4, S = 2 -> 14 positions in the HF layout (tail without summaries) */
    assert_int_equal(attn_build_expanded(tok, 10, 4, 2), 14);
}

/* The reference's own analytic backward against its central differences: small, so that
 * the rounding error of the differences (~1e-16 * sum |o·c| / h) stays well below the 1e-8
 * tolerance.                                                                            */
static void reference_backward_matches_its_finite_differences(void **state)
{
    (void)state;
    attn_case ac = {.d = {.nseq = 2, .T = 7, .C = 2, .S = 2, .W = 1, .Hq = 2, .Hkv = 1, .dh = 4}};
    attn_check_reference_differences(&ac, 3);
}

/* The sweep: every (C, S, W) with three kinds of T (complete chunks only, a tail chunk,
 * shorter than one chunk) and three head layouts (4/4, 4/2, 4/1); head_dim and nseq cycle
 * so that each of their values meets every (C, S, W).                                   */
static void forward_and_gradients_match_dense_reference_over_the_sweep(void **state)
{
    (void)state;
    /* S = 0: text-only windows, sliding-chunk attention (C > 1) and a token sliding window
     * (C = 1) */
    static const size_t Cs[] = {1, 2, 3, 8}, Ss[] = {0, 1, 2}, Ws[] = {0, 1, 2, 1000};
    static const size_t Ts[4][3] = {{12, 7, 1}, {12, 13, 1}, {15, 17, 2}, {40, 37, 5}};
    static const size_t heads[3][2] = {{4, 4}, {4, 2}, {4, 1}}, dhs[] = {8, 12, 32, 64};
    uint64_t seed = 100;
    for (size_t ic = 0; ic < 4; ic++)
        for (size_t is = 0; is < 3; is++)
            for (size_t iw = 0; iw < 4; iw++)
                for (size_t it = 0; it < 3; it++)
                    for (size_t ih = 0; ih < 3; ih++) {
                        attn_case ac = {.d = {.nseq = 1 + (ih + it + is) % 2,
                                              .T = Ts[ic][it],
                                              .C = Cs[ic],
                                              .S = Ss[is],
                                              .W = Ws[iw],
                                              .Hq = heads[ih][0],
                                              .Hkv = heads[ih][1],
                                              .dh = dhs[(it + ih + ic + iw) % 4]}};
                        attn_check_against_reference(&ac, seed++);
                    }
}

/* Longer sequences (the kernel's tiles are 128 query rows x 256 keys): several query
 * blocks; a window whose text range spans two key tiles with the per-row staircase in the
 * left one (C 8, W 20: 160 + 128 keys); summary ranges longer than one tile (C 2 and C 1:
 * up to 300 summary keys); W = SIZE_MAX (causal over the text); GQA.                   */
static void multi_tile_cases_match_dense_reference(void **state)
{
    (void)state;
    static const attn_case cases[] = {
        {.d = {.nseq = 1, .T = 600, .C = 8, .S = 1, .W = 20, .Hq = 4, .Hkv = 2, .dh = 16}},
        {.d = {.nseq = 2, .T = 300, .C = 8, .S = 2, .W = 3, .Hq = 2, .Hkv = 1, .dh = 8}},
        {.d = {.nseq = 1, .T = 601, .C = 2, .S = 1, .W = 3, .Hq = 2, .Hkv = 2, .dh = 8}},
        {.d = {.nseq = 1, .T = 257, .C = 3, .S = 2, .W = 40, .Hq = 4, .Hkv = 1, .dh = 12}},
        {.d = {.nseq = 1, .T = 400, .C = 5, .S = 1, .W = SIZE_MAX, .Hq = 2, .Hkv = 2, .dh = 16}},
        {.d = {.nseq = 1, .T = 300, .C = 1, .S = 1, .W = 0, .Hq = 1, .Hkv = 1, .dh = 32}},
        /* text-only windows: a token sliding window of 300, sliding chunks of 8 x 20 */
        {.d = {.nseq = 1, .T = 600, .C = 1, .S = 0, .W = 300, .Hq = 2, .Hkv = 1, .dh = 16}},
        {.d = {.nseq = 2, .T = 500, .C = 8, .S = 0, .W = 20, .Hq = 2, .Hkv = 2, .dh = 8}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        attn_check_against_reference(&cases[i], 500 + i);
}

/* float64 build: the backward against central differences of the kernel's own forward. */
static void backward_matches_finite_differences_of_the_kernel(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    static const attn_case cases[] = {
        {.d = {.nseq = 2, .T = 11, .C = 3, .S = 2, .W = 1, .Hq = 4, .Hkv = 2, .dh = 6}},
        {.d = {.nseq = 1, .T = 140, .C = 4, .S = 1, .W = 2, .Hq = 2, .Hkv = 1, .dh = 3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        attn_check_kernel_differences(&cases[c], 40 + c);
#else
    skip();
#endif
}

/* Gradients are added to what is there; NULL gradients are skipped without disturbing
 * the others. */
static void backward_adds_into_existing_grads_and_accepts_null(void **state)
{
    (void)state;
    attn_case ac = {.d = {.nseq = 2, .T = 150, .C = 4, .S = 2, .W = 2, .Hq = 4, .Hkv = 2, .dh = 8}};
    attn_check_accumulation(&ac, 77);
}

/* Same thread count: bit-identical outputs and gradients. 1 vs 2 threads: the same
 * forward, close gradients (dK/dV partial sums are added in another grouping). */
static void results_are_deterministic_for_a_thread_count(void **state)
{
    (void)state;
    attn_case ac = {
        .d = {.nseq = 2, .T = 333, .C = 8, .S = 1, .W = 5, .Hq = 4, .Hkv = 2, .dh = 16}};
    attn_check_determinism(&ac, 91);
}

/* ---- blocks of a longer sequence (context parallelism) ---------------------------------- *
 * The whole sequence's kernels against the same rows computed block by block: query rows
 * [t0, t1) with the keys a context-parallel rank holds (text rows from the window start of
 * its first chunk, summary rows from chunk 0), in one call, or in two calls whose partial
 * results merge by their lse (the block's own keys, then the others': what a rank computes
 * while the exchange runs). Every block's o and lse equal the whole's rows; dq, and dk/dv
 * summed over the blocks into the rows they came from, equal the whole's gradients.     */
static ksa_real *rows_copy(const ksa_real *src, size_t nseq, size_t R, size_t a, size_t b,
                           size_t width)
{
    ksa_real *dst = ksa_alloc_zero(((b - a) * nseq + 1) * width * sizeof *dst);
    for (size_t n = 0; n < nseq; n++)
        memcpy(dst + n * (b - a) * width, src + (n * R + a) * width, (b - a) * width * sizeof *dst);
    return dst;
}

static void rows_add(double *dst, const ksa_real *src, size_t nseq, size_t R, size_t a, size_t b,
                     size_t width)
{
    for (size_t n = 0; n < nseq; n++)
        for (size_t i = 0; i < (b - a) * width; i++)
            dst[(n * R + a) * width + i] += (double)src[n * (b - a) * width + i];
}

static double *to_double(const ksa_real *x, size_t nseq, size_t R, size_t a, size_t b, size_t width)
{
    double *d = calloc((b - a) * nseq * width + 1, sizeof *d);
    for (size_t n = 0; n < nseq; n++)
        for (size_t i = 0; i < (b - a) * width; i++)
            d[n * (b - a) * width + i] = (double)x[(n * R + a) * width + i];
    return d;
}

/* The keys of one call of a block: text rows [kt0, kt1) and summary rows [ks0, ks1). */
typedef struct {
    size_t kt0, kt1, ks0, ks1;
    ksa_real *k[2], *v[2], *dk[2], *dv[2];
} held_keys;

static void held_init(held_keys *h, const attn_problem *p, size_t kt0, size_t kt1, size_t ks0,
                      size_t ks1)
{
    const ksa_summary_attn_dims *d = &p->ac.d;
    size_t w = d->Hkv * d->dh, R[2] = {d->T, p->NS}, a[2] = {kt0, ks0}, b[2] = {kt1, ks1};
    *h = (held_keys){.kt0 = kt0, .kt1 = kt1, .ks0 = ks0, .ks1 = ks1};
    for (int s = 0; s < 2; s++) {
        h->k[s] = rows_copy(p->k[s], d->nseq, R[s], a[s], b[s], w);
        h->v[s] = rows_copy(p->v[s], d->nseq, R[s], a[s], b[s], w);
        size_t n = (b[s] - a[s]) * d->nseq * w;
        h->dk[s] = ksa_alloc_zero((n + 1) * sizeof(ksa_real));
        h->dv[s] = ksa_alloc_zero((n + 1) * sizeof(ksa_real));
    }
}

static void held_give_back(held_keys *h, const attn_problem *p, double *dk[2], double *dv[2])
{
    const ksa_summary_attn_dims *d = &p->ac.d;
    size_t w = d->Hkv * d->dh, R[2] = {d->T, p->NS}, a[2] = {h->kt0, h->ks0};
    size_t b[2] = {h->kt1, h->ks1};
    for (int s = 0; s < 2; s++) {
        rows_add(dk[s], h->dk[s], d->nseq, R[s], a[s], b[s], w);
        rows_add(dv[s], h->dv[s], d->nseq, R[s], a[s], b[s], w);
        ksa_free(h->k[s]), ksa_free(h->v[s]), ksa_free(h->dk[s]), ksa_free(h->dv[s]);
    }
}

static ksa_summary_attn_dims call_dims(const ksa_summary_attn_dims *whole, size_t t0, size_t t1,
                                       const held_keys *h)
{
    ksa_summary_attn_dims d = *whole;
    d.T = t1 - t0, d.t0 = t0;
    d.kt0 = h->kt0, d.TK = h->kt1 - h->kt0, d.ks0 = h->ks0, d.NSK = h->ks1 - h->ks0;
    return d;
}

static void *workspace_for(const ksa_summary_attn_dims *d, size_t *bytes)
{
    int nt = ksa_threads_get();
    size_t f = ksa_summary_attn_forward_workspace_size(d, nt);
    size_t b = ksa_summary_attn_backward_workspace_size(d, nt);
    *bytes = f > b ? f : b;
    return ksa_alloc(*bytes);
}

/* o, lse += the partial result (o2, lse2) of other keys: lse = log(e^lse + e^lse2). */
static void merge_partial(ksa_real *o, ksa_real *lse, const ksa_real *o2, const ksa_real *lse2,
                          size_t rows_heads, size_t dh)
{
    for (size_t r = 0; r < rows_heads; r++) {
        double a = lse[r], b = lse2[r], m = a > b ? a : b;
        if (m == -INFINITY)
            continue;
        double ea = exp(a - m), eb = exp(b - m), l = m + log(ea + eb);
        for (size_t d = 0; d < dh; d++)
            o[r * dh + d] = (ksa_real)((ea * o[r * dh + d] + eb * o2[r * dh + d]) / (ea + eb));
        lse[r] = (ksa_real)l;
    }
}

static void check_blocks(const attn_case *ac, const size_t *starts, size_t nb, int split,
                         uint64_t seed)
{
    const ksa_summary_attn_dims *d = &ac->d;
    attn_problem p;
    attn_problem_init(&p, ac, seed);
    attn_problem_forward(&p);
    attn_problem_backward(&p);
    size_t C = d->C, S = d->S, wq = d->Hq * d->dh, wk = d->Hkv * d->dh, R[2] = {d->T, p.NS};
    double *dk[2], *dv[2], *dq[2];
    for (int s = 0; s < 2; s++) {
        dk[s] = calloc(p.nk[s] + 1, sizeof(double));
        dv[s] = calloc(p.nk[s] + 1, sizeof(double));
        dq[s] = calloc(p.nq[s] + 1, sizeof(double));
    }
    char what[160];
    for (size_t b = 0; b < nb; b++) {
        size_t t0 = starts[b], t1 = b + 1 < nb ? starts[b + 1] : d->T, c0 = t0 / C, c1 = t1 / C;
        size_t h0 = c0 > d->W ? (c0 - d->W) * C : 0, qa[2] = {t0, c0 * S}, qb[2] = {t1, c1 * S};
        ksa_real *q[2], *dout[2], *o[2], *lse[2], *dqb[2];
        for (int s = 0; s < 2; s++) {
            q[s] = rows_copy(p.q[s], d->nseq, R[s], qa[s], qb[s], wq);
            dout[s] = rows_copy(p.dout[s], d->nseq, R[s], qa[s], qb[s], wq);
            o[s] = rows_copy(p.q[s], d->nseq, R[s], qa[s], qb[s], wq);
            dqb[s] = ksa_alloc_zero(((qb[s] - qa[s]) * d->nseq + 1) * wq * sizeof(ksa_real));
            lse[s] = rows_copy(p.lse[s], d->nseq, R[s], qa[s], qb[s], d->Hq);
        }
        /* calls: all held keys at once, or the block's own keys and then the others' */
        held_keys calls[2];
        size_t ncalls = 1;
        if (!split) {
            held_init(&calls[0], &p, h0, t1, 0, c1 * S);
        } else {
            held_init(&calls[0], &p, t0, t1, c0 * S, c1 * S);
            if (h0 < t0 || c0 * S > 0)
                held_init(&calls[ncalls++], &p, h0, t0, 0, c0 * S);
        }
        for (size_t i = 0; i < ncalls; i++) {
            ksa_summary_attn_dims cd = call_dims(d, t0, t1, &calls[i]);
            size_t bytes;
            void *ws = workspace_for(&cd, &bytes);
            ksa_attn_qkv in = {{q[0], i ? NULL : q[1]},
                               {calls[i].k[0], calls[i].k[1]},
                               {calls[i].v[0], calls[i].v[1]}};
            if (i == 0) {
                ksa_summary_attn_forward((ksa_attn_out){o[0], o[1]}, (ksa_attn_out){lse[0], lse[1]},
                                         in, ws, bytes, &cd);
            } else {
                size_t n = (t1 - t0) * d->nseq;
                ksa_real *o2 = ksa_alloc_zero(n * wq * sizeof *o2);
                ksa_real *l2 = ksa_alloc_zero(n * d->Hq * sizeof *l2);
                ksa_summary_attn_forward((ksa_attn_out){o2, NULL}, (ksa_attn_out){l2, NULL}, in, ws,
                                         bytes, &cd);
                merge_partial(o[0], lse[0], o2, l2, n * d->Hq, d->dh);
                ksa_free(o2), ksa_free(l2);
            }
            ksa_free(ws);
        }
        snprintf(what, sizeof what, "block [%zu, %zu) of T %zu C %zu S %zu W %zu%s", t0, t1, d->T,
                 C, S, d->W, split ? " (two calls)" : "");
        for (int s = 0; s < 2; s++) {
            double *want_o = to_double(p.o[s], d->nseq, R[s], qa[s], qb[s], wq);
            double *want_l = to_double(p.lse[s], d->nseq, R[s], qa[s], qb[s], d->Hq);
            ksa_expect_close(o[s], want_o, (qb[s] - qa[s]) * d->nseq * wq, ATT_FWD_ATOL,
                             ATT_FWD_RTOL, what);
            ksa_expect_close(lse[s], want_l, (qb[s] - qa[s]) * d->nseq * d->Hq, ATT_FWD_ATOL,
                             ATT_FWD_RTOL, what);
            free(want_o), free(want_l);
        }
        /* the backward of every call takes the merged o and lse */
        for (size_t i = 0; i < ncalls; i++) {
            ksa_summary_attn_dims cd = call_dims(d, t0, t1, &calls[i]);
            size_t bytes;
            void *ws = workspace_for(&cd, &bytes);
            ksa_attn_qkv in = {{q[0], i ? NULL : q[1]},
                               {calls[i].k[0], calls[i].k[1]},
                               {calls[i].v[0], calls[i].v[1]}};
            ksa_summary_attn_backward((ksa_attn_out){dqb[0], i ? NULL : dqb[1]},
                                      (ksa_attn_out){calls[i].dk[0], calls[i].dk[1]},
                                      (ksa_attn_out){calls[i].dv[0], calls[i].dv[1]},
                                      (ksa_attn_in){dout[0], i ? NULL : dout[1]}, in,
                                      (ksa_attn_in){o[0], o[1]}, (ksa_attn_in){lse[0], lse[1]}, ws,
                                      bytes, &cd);
            ksa_free(ws);
            held_give_back(&calls[i], &p, dk, dv);
        }
        for (int s = 0; s < 2; s++) {
            rows_add(dq[s], dqb[s], d->nseq, R[s], qa[s], qb[s], wq);
            ksa_free(q[s]), ksa_free(dout[s]), ksa_free(o[s]), ksa_free(dqb[s]);
            ksa_free(lse[s]);
        }
    }
    snprintf(what, sizeof what, "blocks of T %zu C %zu S %zu W %zu%s", d->T, C, S, d->W,
             split ? " (two calls)" : "");
    for (int s = 0; s < 2; s++) {
        double *want_q = to_double(p.dq[s], d->nseq, R[s], 0, R[s], wq);
        double *want_k = to_double(p.dk[s], d->nseq, R[s], 0, R[s], wk);
        double *want_v = to_double(p.dv[s], d->nseq, R[s], 0, R[s], wk);
        ksa_expect_close_dd(dq[s], want_q, p.nq[s], ATT_BWD_ATOL, ATT_BWD_RTOL, what);
        ksa_expect_close_dd(dk[s], want_k, p.nk[s], ATT_BWD_ATOL, ATT_BWD_RTOL, what);
        ksa_expect_close_dd(dv[s], want_v, p.nk[s], ATT_BWD_ATOL, ATT_BWD_RTOL, what);
        free(want_q), free(want_k), free(want_v), free(dq[s]), free(dk[s]), free(dv[s]);
    }
    attn_problem_free(&p);
}

/* Blocks shorter and longer than the window (W·C), a tail chunk in the last block, S = 0,
 * 1, 2, GQA, plain causal attention (C = 1, S = 0, W beyond the length), and blocks that
 * cross the kernel's 128-row and 256-key tiles. */
static void blocks_of_a_sequence_match_the_whole(void **state)
{
    (void)state;
    static const struct {
        attn_case ac;
        size_t nb, starts[4];
    } cases[] = {
        /* W·C = 8 < blocks of 16 and 20 (two blocks, then three with a tail chunk) */
        {{.d = {.nseq = 2, .T = 36, .C = 4, .S = 1, .W = 2, .Hq = 4, .Hkv = 2, .dh = 8}},
         2,
         {0, 16}},
        {{.d = {.nseq = 1, .T = 43, .C = 4, .S = 2, .W = 1, .Hq = 2, .Hkv = 1, .dh = 8}},
         3,
         {0, 12, 28}},
        /* W·C = 24 > blocks of 8: the halo spans three earlier blocks */
        {{.d = {.nseq = 1, .T = 35, .C = 2, .S = 2, .W = 12, .Hq = 4, .Hkv = 4, .dh = 6}},
         4,
         {0, 8, 16, 26}},
        /* W = 0: own chunk and summaries only; S = 0: sliding chunks */
        {{.d = {.nseq = 2, .T = 30, .C = 3, .S = 1, .W = 0, .Hq = 2, .Hkv = 2, .dh = 8}},
         3,
         {0, 9, 18}},
        {{.d = {.nseq = 1, .T = 40, .C = 4, .S = 0, .W = 3, .Hq = 4, .Hkv = 1, .dh = 8}},
         2,
         {0, 20}},
        /* causal over the text (ring attention's case) and a token sliding window */
        {{.d = {.nseq = 1, .T = 50, .C = 1, .S = 0, .W = SIZE_MAX, .Hq = 2, .Hkv = 1, .dh = 8}},
         4,
         {0, 13, 26, 38}},
        {{.d = {.nseq = 1, .T = 60, .C = 1, .S = 0, .W = 17, .Hq = 2, .Hkv = 2, .dh = 8}},
         3,
         {0, 20, 40}},
        /* several tiles: 600 rows, C 8, W 20 (160 keys), blocks of 200, 208 and 192 + tail */
        {{.d = {.nseq = 1, .T = 603, .C = 8, .S = 1, .W = 20, .Hq = 2, .Hkv = 1, .dh = 16}},
         3,
         {0, 200, 408}},
        {{.d = {.nseq = 1, .T = 700, .C = 2, .S = 1, .W = SIZE_MAX, .Hq = 2, .Hkv = 2, .dh = 8}},
         2,
         {0, 350}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int split = 0; split < 2; split++)
            check_blocks(&cases[i].ac, cases[i].starts, cases[i].nb, split, 900 + i);
}

static size_t round64(size_t bytes)
{
    return (bytes + 63) / 64 * 64;
}

/* The op on combined [text rows; summary rows] tensors, through the tape (opcheck.h), and
 * its output and gradients against the reference's analytic ones.                      */
static void tape_op_on_combined_streams_matches_reference(void **state)
{
    (void)state;
    attn_case ac = {.d = {.nseq = 2, .T = 19, .C = 4, .S = 2, .W = 1, .Hq = 4, .Hkv = 2, .dh = 8}};
    opcheck_case cs = attn_op_case(&ac, 0);
    opcheck_run r;
    opcheck_begin(&r, &cs, 123);
    /* backward creates the three gradients and gives its scratch back */
    assert_int_equal(r.used_after_replay, r.used_before_replay +
                                              round64(r.in[0]->numel * sizeof(ksa_real)) +
                                              2 * round64(r.in[1]->numel * sizeof(ksa_real)));
    attn_check_op_against_reference(&r, &ac);
    opcheck_end(&r);
}

/* ---- memory ------------------------------------------------------------------------- */
static long status_kib(const char *key)
{
    return (long)(ksa_proc_status_bytes(key) >> 10);
}

#define MEMORY_TEST_T 65536 /* a few seconds, also under ASan */

/* Forward + backward at T = 64k text tokens: the peak memory growth stays a few tens of MB
 * (inputs, outputs, gradients, workspace: O(T·dh)) - an L x L float score matrix would
 * be 16 GiB.                                                                             */
static void memory_stays_linear_at_64k_tokens(void **state)
{
    (void)state;
    ksa_summary_attn_dims d = {
        .nseq = 1, .T = MEMORY_TEST_T, .C = 8, .S = 1, .W = 4, .Hq = 1, .Hkv = 1, .dh = 16};
    struct rusage ru0, ru1;
    int reset = ksa_reset_peak_rss();
    long rss0 = status_kib("VmRSS");
    getrusage(RUSAGE_SELF, &ru0);
    attn_case ac = {.d = d};
    attn_problem p;
    attn_problem_init(&p, &ac, 9);
    double t0 = ksa_now();
    attn_problem_forward(&p);
    attn_problem_backward(&p);
    double secs = ksa_now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    long peak = reset ? status_kib("VmHWM") : ru1.ru_maxrss;
    long grown_kib = peak - (reset ? rss0 : ru0.ru_maxrss);
    double L = (double)(d.T + p.NS), dense_gib = L * L * 4 / (1u << 30);
    size_t arrays = 0;
    for (int s = 0; s < 2; s++)
        arrays += (4 * p.nq[s] + 5 * p.nk[s] + p.nl[s]) * sizeof(ksa_real);
    print_message("  T=%zu: fwd+bwd %.2f s, peak RSS growth %.1f MiB (arrays %.1f MiB, workspace "
                  "%.1f MiB); a dense L x L float matrix: %.1f GiB\n",
                  d.T, secs, (double)grown_kib / 1024, (double)arrays / (1 << 20),
                  (double)p.ws_bytes / (1 << 20), dense_gib);
    /* finite outputs and gradients */
    for (size_t i = 0; i < p.nq[0]; i += 97)
        assert_true(isfinite((double)p.o[0][i]) && isfinite((double)p.dq[0][i]));
    /* the workspace is linear in T (per thread: two tiles and a [T + NS, dh] dK and dV),
     * and everything together stays far below one L x L matrix                          */
    assert_true(p.ws_bytes / (size_t)ksa_threads_get() < (size_t)(32 << 20));
    assert_true((double)grown_kib * 1024 < (double)arrays + (double)p.ws_bytes + 64.0 * (1 << 20));
    assert_true((double)grown_kib * 1024 < dense_gib * (1u << 30) / 16);
    attn_problem_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mask_builder_matches_the_drawn_grids_of_the_spec),
        cmocka_unit_test(reference_backward_matches_its_finite_differences),
        cmocka_unit_test(forward_and_gradients_match_dense_reference_over_the_sweep),
        cmocka_unit_test(multi_tile_cases_match_dense_reference),
        cmocka_unit_test(backward_matches_finite_differences_of_the_kernel),
        cmocka_unit_test(backward_adds_into_existing_grads_and_accepts_null),
        cmocka_unit_test(results_are_deterministic_for_a_thread_count),
        cmocka_unit_test(tape_op_on_combined_streams_matches_reference),
        cmocka_unit_test(blocks_of_a_sequence_match_the_whole),
        cmocka_unit_test(memory_stays_linear_at_64k_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
