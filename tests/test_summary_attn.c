/* test_summary_attn.c - the tiled KSA kernels against a dense reference that knows nothing
 * about streams or tiles: it builds the interleaved expanded sequence (KSA_SPEC §2.2, HF
 * layout: chunks of C text tokens then S summaries, a partial tail chunk text only),
 * classifies every position from that layout, evaluates the predicate of KSA_SPEC §3.1
 * literally, runs full masked softmax attention in double and maps the results back to
 * the two streams. Gradients: analytic backward of that reference (itself checked against
 * its central differences), and in the float64 build central differences of the kernel.  */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "autograd/arena.h"
#include "autograd/tape.h"
#include "model/summary_attn.h"

/* Float kernels against the double reference. The outputs are softmax-weighted sums of up
 * to ~400 terms computed through float gemms and a polynomial exp (rel. error 1e-7), so the
 * float forward is held to 2e-6 + 2e-5·|ref| instead of STYLE.md §7's 1e-6 + 1e-5: a few
 * elements near 0 land at 1-1.5e-6 absolute. Gradients keep STYLE.md's 1e-5 + 1e-4.    */
#ifdef KSA_REAL_DOUBLE
#define ATT_FWD_ATOL 1e-12
#define ATT_FWD_RTOL 1e-10
#define ATT_BWD_ATOL 1e-11
#define ATT_BWD_RTOL 1e-9
#else
#define ATT_FWD_ATOL 2e-6
#define ATT_FWD_RTOL 2e-5
#define ATT_BWD_ATOL 1e-5
#define ATT_BWD_RTOL 1e-4
#endif

/* ======================================================================================
 * Dense reference on the interleaved sequence
 * ====================================================================================== */
typedef struct {
    int is_sum;   /* 0: text token t_i, 1: summary token s_c.j                */
    size_t index; /* its row in its own stream: i, or c*S + j                  */
    size_t chunk; /* i div C for text, c for a summary (KSA_SPEC §3.1)         */
} token;

/* HF layout of KSA_SPEC §2.2; returns the expanded length. */
static size_t build_expanded(token *tok, size_t T, size_t C, size_t S)
{
    size_t L = 0;
    for (size_t c = 0; c * C < T; c++) {
        size_t len = T - c * C < C ? T - c * C : C;
        for (size_t i = 0; i < len; i++)
            tok[L++] = (token){0, c * C + i, (c * C + i) / C};
        if (len == C) /* complete chunk: its summaries follow it */
            for (size_t j = 0; j < S; j++)
                tok[L++] = (token){1, c * S + j, c};
    }
    return L;
}

/* KSA_SPEC §3.1, literally: positions are expanded indices. */
static int visible(const token *tok, size_t q, size_t k, size_t W)
{
    if (!(k <= q))
        return 0;
    /* chunk(q) - chunk(k) >= 0 here: chunks never decrease along the expanded sequence */
    size_t dc = tok[q].chunk - tok[k].chunk;
    if (tok[q].is_sum)
        return dc == 0;
    if (!tok[k].is_sum)
        return dc <= W;
    return dc > W;
}

typedef struct {
    ksa_summary_attn_dims d;
    size_t NS, L;
    token *tok;
    double *q[2], *k[2], *v[2]; /* [0] text stream, [1] summary stream, kernel layouts */
    double *o[2], *lse[2], *dout[2], *dq[2], *dk[2], *dv[2];
} reference;

static size_t stream_rows(const reference *r, int s)
{
    return r->d.nseq * (s ? r->NS : r->d.T);
}

static double *at(double *const base[2], const reference *r, size_t n, size_t p, size_t h, size_t H)
{
    const token *t = &r->tok[p];
    size_t row = n * (t->is_sum ? r->NS : r->d.T) + t->index;
    return base[t->is_sum] + (row * H + h) * r->d.dh;
}

static double dotd(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Scores of query position qp against every position; -inf where not visible. */
static void ref_scores(const reference *r, double *s, size_t n, size_t qp, size_t h)
{
    size_t g = h / (r->d.Hq / r->d.Hkv);
    double scale = 1 / sqrt((double)r->d.dh);
    const double *qv = at(r->q, r, n, qp, h, r->d.Hq);
    for (size_t kp = 0; kp < r->L; kp++)
        s[kp] = visible(r->tok, qp, kp, r->d.W)
                    ? scale * dotd(qv, at(r->k, r, n, kp, g, r->d.Hkv), r->d.dh)
                    : -INFINITY;
}

/* Softmax of s in place (masked entries -> 0); returns lse. */
static double ref_softmax(double *s, size_t L)
{
    double m = -INFINITY, sum = 0;
    for (size_t k = 0; k < L; k++)
        m = s[k] > m ? s[k] : m;
    for (size_t k = 0; k < L; k++)
        sum += s[k] == -INFINITY ? 0 : exp(s[k] - m);
    for (size_t k = 0; k < L; k++)
        s[k] = s[k] == -INFINITY ? 0 : exp(s[k] - m) / sum;
    return m + log(sum);
}

static void ref_forward(reference *r)
{
    const ksa_summary_attn_dims *d = &r->d;
    double *p = malloc(r->L * sizeof *p);
    for (size_t n = 0; n < d->nseq; n++)
        for (size_t h = 0; h < d->Hq; h++)
            for (size_t qp = 0; qp < r->L; qp++) {
                size_t g = h / (d->Hq / d->Hkv);
                ref_scores(r, p, n, qp, h);
                double lse = ref_softmax(p, r->L);
                double *o = at(r->o, r, n, qp, h, d->Hq);
                memset(o, 0, d->dh * sizeof *o);
                for (size_t kp = 0; kp < r->L; kp++)
                    for (size_t e = 0; e < d->dh; e++)
                        o[e] += p[kp] * at(r->v, r, n, kp, g, d->Hkv)[e];
                const token *t = &r->tok[qp];
                r->lse[t->is_sum][(n * (t->is_sum ? r->NS : d->T) + t->index) * d->Hq + h] = lse;
            }
    free(p);
}

/* Analytic backward of the dense reference with dO = r->dout; overwrites dq, dk, dv.
 * dp_k = dO·v_k, D = sum_k p_k dp_k, ds_k = p_k (dp_k - D),
 * dq = scale sum_k ds_k k_k, dk_k += scale ds_k q, dv_k += p_k dO.                   */
static void ref_backward(reference *r)
{
    const ksa_summary_attn_dims *d = &r->d;
    double scale = 1 / sqrt((double)d->dh);
    for (int s = 0; s < 2; s++) {
        memset(r->dq[s], 0, stream_rows(r, s) * d->Hq * d->dh * sizeof(double));
        memset(r->dk[s], 0, stream_rows(r, s) * d->Hkv * d->dh * sizeof(double));
        memset(r->dv[s], 0, stream_rows(r, s) * d->Hkv * d->dh * sizeof(double));
    }
    double *p = malloc(r->L * sizeof *p), *dp = malloc(r->L * sizeof *dp);
    for (size_t n = 0; n < d->nseq; n++)
        for (size_t h = 0; h < d->Hq; h++)
            for (size_t qp = 0; qp < r->L; qp++) {
                size_t g = h / (d->Hq / d->Hkv);
                ref_scores(r, p, n, qp, h);
                ref_softmax(p, r->L);
                const double *dov = at(r->dout, r, n, qp, h, d->Hq);
                const double *qv = at(r->q, r, n, qp, h, d->Hq);
                double D = 0;
                for (size_t kp = 0; kp < r->L; kp++) {
                    dp[kp] = dotd(dov, at(r->v, r, n, kp, g, d->Hkv), d->dh);
                    D += p[kp] * dp[kp];
                }
                double *dq = at(r->dq, r, n, qp, h, d->Hq);
                for (size_t kp = 0; kp < r->L; kp++) {
                    if (p[kp] == 0)
                        continue;
                    double ds = p[kp] * (dp[kp] - D);
                    const double *kv = at(r->k, r, n, kp, g, d->Hkv);
                    double *dk = at(r->dk, r, n, kp, g, d->Hkv);
                    double *dv = at(r->dv, r, n, kp, g, d->Hkv);
                    for (size_t e = 0; e < d->dh; e++) {
                        dq[e] += scale * ds * kv[e];
                        dk[e] += scale * ds * qv[e];
                        dv[e] += p[kp] * dov[e];
                    }
                }
            }
    free(p), free(dp);
}

static void ref_init(reference *r, const ksa_summary_attn_dims *d)
{
    memset(r, 0, sizeof *r);
    r->d = *d;
    r->NS = ksa_summary_attn_summary_rows(d);
    r->tok = malloc((d->T + r->NS + 1) * sizeof *r->tok);
    r->L = build_expanded(r->tok, d->T, d->C, d->S);
    assert_int_equal(r->L, d->T + r->NS);
    for (int s = 0; s < 2; s++) {
        size_t nq = stream_rows(r, s) * d->Hq * d->dh + 1,
               nk = stream_rows(r, s) * d->Hkv * d->dh + 1;
        r->q[s] = calloc(nq, sizeof(double)), r->o[s] = calloc(nq, sizeof(double));
        r->dout[s] = calloc(nq, sizeof(double)), r->dq[s] = calloc(nq, sizeof(double));
        r->k[s] = calloc(nk, sizeof(double)), r->v[s] = calloc(nk, sizeof(double));
        r->dk[s] = calloc(nk, sizeof(double)), r->dv[s] = calloc(nk, sizeof(double));
        r->lse[s] = calloc(stream_rows(r, s) * d->Hq + 1, sizeof(double));
    }
}

static void ref_free(reference *r)
{
    for (int s = 0; s < 2; s++) {
        free(r->q[s]), free(r->k[s]), free(r->v[s]), free(r->o[s]), free(r->lse[s]);
        free(r->dout[s]), free(r->dq[s]), free(r->dk[s]), free(r->dv[s]);
    }
    free(r->tok);
}

/* ======================================================================================
 * The kernel side of a test case
 * ====================================================================================== */
typedef struct {
    ksa_summary_attn_dims d;
    size_t NS, nq[2], nk[2], nl[2]; /* elements per stream: q-shaped, k-shaped, lse */
    ksa_real *q[2], *k[2], *v[2], *o[2], *lse[2], *dout[2], *dq[2], *dk[2], *dv[2];
    double *c[2]; /* loss = sum o·c */
    void *ws;
    size_t ws_bytes;
} problem;

static ksa_real *alloc_reals(size_t n)
{
    return calloc(n ? n : 1, sizeof(ksa_real));
}

static void problem_init(problem *p, const ksa_summary_attn_dims *d, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->d = *d;
    p->NS = ksa_summary_attn_summary_rows(d);
    test_rng rng = test_rng_seed(seed);
    for (int s = 0; s < 2; s++) {
        size_t rows = d->nseq * (s ? p->NS : d->T);
        p->nq[s] = rows * d->Hq * d->dh, p->nk[s] = rows * d->Hkv * d->dh;
        p->nl[s] = rows * d->Hq;
        p->q[s] = alloc_reals(p->nq[s]), p->o[s] = alloc_reals(p->nq[s]);
        p->dout[s] = alloc_reals(p->nq[s]), p->dq[s] = alloc_reals(p->nq[s]);
        p->k[s] = alloc_reals(p->nk[s]), p->v[s] = alloc_reals(p->nk[s]);
        p->dk[s] = alloc_reals(p->nk[s]), p->dv[s] = alloc_reals(p->nk[s]);
        p->lse[s] = alloc_reals(p->nl[s]);
        p->c[s] = calloc(p->nq[s] + 1, sizeof(double));
        test_fill_uniform(p->q[s], p->nq[s], -2, 2, &rng); /* scores of std ~1.3 */
        test_fill_uniform(p->k[s], p->nk[s], -2, 2, &rng);
        test_fill_uniform(p->v[s], p->nk[s], -1, 1, &rng);
        test_fill_uniform_d(p->c[s], p->nq[s], -1, 1, &rng);
        test_from_double(p->dout[s], p->c[s], p->nq[s]);
    }
    size_t fw = ksa_summary_attn_forward_workspace_size(d, ksa_threads_get());
    size_t bw = ksa_summary_attn_backward_workspace_size(d, ksa_threads_get());
    p->ws_bytes = fw > bw ? fw : bw;
    p->ws = ksa_alloc(p->ws_bytes);
}

static void problem_free(problem *p)
{
    for (int s = 0; s < 2; s++) {
        free(p->q[s]), free(p->k[s]), free(p->v[s]), free(p->o[s]), free(p->lse[s]);
        free(p->dout[s]), free(p->dq[s]), free(p->dk[s]), free(p->dv[s]), free(p->c[s]);
    }
    ksa_free(p->ws);
}

static void problem_forward(problem *p)
{
    ksa_summary_attn_forward(p->o[0], p->o[1], p->lse[0], p->lse[1], p->q[0], p->q[1], p->k[0],
                             p->k[1], p->v[0], p->v[1], p->ws, p->ws_bytes, &p->d);
}

/* Zeroes the gradients, then runs the backward with dO = c. */
static void problem_backward(problem *p)
{
    for (int s = 0; s < 2; s++) {
        memset(p->dq[s], 0, p->nq[s] * sizeof(ksa_real));
        memset(p->dk[s], 0, p->nk[s] * sizeof(ksa_real));
        memset(p->dv[s], 0, p->nk[s] * sizeof(ksa_real));
    }
    ksa_summary_attn_backward(p->dq[0], p->dq[1], p->dk[0], p->dk[1], p->dv[0], p->dv[1],
                              p->dout[0], p->dout[1], p->q[0], p->q[1], p->k[0], p->k[1], p->v[0],
                              p->v[1], p->o[0], p->o[1], p->lse[0], p->lse[1], p->ws, p->ws_bytes,
                              &p->d);
}

/* The reference on the same inputs, forward and backward. */
static void reference_of(reference *r, const problem *p)
{
    ref_init(r, &p->d);
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < p->nq[s]; i++)
            r->q[s][i] = (double)p->q[s][i], r->dout[s][i] = (double)p->dout[s][i];
        for (size_t i = 0; i < p->nk[s]; i++)
            r->k[s][i] = (double)p->k[s][i], r->v[s][i] = (double)p->v[s][i];
    }
    ref_forward(r);
    ref_backward(r);
}

static void describe(char *buf, size_t n, const ksa_summary_attn_dims *d, const char *what)
{
    snprintf(buf, n, "%s (nseq %zu T %zu C %zu S %zu W %zu Hq %zu Hkv %zu dh %zu)", what, d->nseq,
             d->T, d->C, d->S, d->W, d->Hq, d->Hkv, d->dh);
}

static void expect_stream(const ksa_real *got, const double *want, size_t n, double atol,
                          double rtol, const ksa_summary_attn_dims *d, const char *what)
{
    char buf[256];
    describe(buf, sizeof buf, d, what);
    ksa_expect_close(got, want, n, atol, rtol, buf);
}

/* Forward outputs, lse and all six gradients of the kernel vs the dense reference. */
static void check_against_reference(const ksa_summary_attn_dims *d, uint64_t seed)
{
    problem p;
    problem_init(&p, d, seed);
    problem_forward(&p);
    problem_backward(&p);
    reference r;
    reference_of(&r, &p);
    static const char *const names[2][6] = {
        {"o_text", "lse_text", "dq_text", "dk_text", "dv_text", ""},
        {"o_sum", "lse_sum", "dq_sum", "dk_sum", "dv_sum", ""}};
    for (int s = 0; s < 2; s++) {
        expect_stream(p.o[s], r.o[s], p.nq[s], ATT_FWD_ATOL, ATT_FWD_RTOL, d, names[s][0]);
        expect_stream(p.lse[s], r.lse[s], p.nl[s], ATT_FWD_ATOL, ATT_FWD_RTOL, d, names[s][1]);
        expect_stream(p.dq[s], r.dq[s], p.nq[s], ATT_BWD_ATOL, ATT_BWD_RTOL, d, names[s][2]);
        expect_stream(p.dk[s], r.dk[s], p.nk[s], ATT_BWD_ATOL, ATT_BWD_RTOL, d, names[s][3]);
        expect_stream(p.dv[s], r.dv[s], p.nk[s], ATT_BWD_ATOL, ATT_BWD_RTOL, d, names[s][4]);
    }
    ref_free(&r);
    problem_free(&p);
}

/* ======================================================================================
 * Tests
 * ====================================================================================== */

/* KSA_SPEC §3.3, both drawn grids, and the count of Appendix A. */
static const char *const grid1[] = {"X...........", "XX..........", "XXX.........", "XX.X........",
                                    "XX.XX.......", "...XXX......", "..XXX.X.....", "..XXX.XX....",
                                    "......XXX...", "..X..XXX.X..", "..X..XXX.XX.", ".........XXX"};
static const char *const grid2[] = {"X...........", "XX..........", "XXX.........", "XXXX........",
                                    "..XXX.......", "..XXXX......", "....XXX.....", "....XXXX....",
                                    "..XX..XXX...", "..XX..XXXX..", "........XXX.", "........XXXX"};

static void check_grid(const char *const *grid, size_t T, size_t C, size_t S, size_t W)
{
    token tok[64];
    size_t L = build_expanded(tok, T, C, S);
    assert_int_equal(L, 12);
    for (size_t q = 0; q < L; q++)
        for (size_t k = 0; k < L; k++) {
            int want = grid[q][k] == 'X';
            if (visible(tok, q, k, W) != want) {
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
    token tok[16];
    size_t L = build_expanded(tok, 8, 2, 1), t7 = 10, seen = 0;
    assert_int_equal(tok[t7].is_sum, 0);
    assert_int_equal(tok[t7].index, 7);
    for (size_t k = 0; k < L; k++)
        seen += (size_t)visible(tok, t7, k, 1);
    assert_int_equal(seen, 6);
    /* §2.2: L = 10, C = 4, S = 2 -> 14 positions in the HF layout (tail without summaries) */
    assert_int_equal(build_expanded(tok, 10, 4, 2), 14);
}

typedef struct {
    reference *r;
    double *c[2];
} ref_loss_ctx;

static double ref_loss(void *ctx)
{
    ref_loss_ctx *x = ctx;
    ref_forward(x->r);
    double s = 0;
    for (int k = 0; k < 2; k++)
        s += test_dot_dd(x->r->o[k], x->c[k], stream_rows(x->r, k) * x->r->d.Hq * x->r->d.dh);
    return s;
}

/* The reference's own analytic backward against its central differences. */
static void reference_backward_matches_its_finite_differences(void **state)
{
    (void)state;
    /* small, so that the rounding error of the differences (~1e-16 * sum |o·c| / h) stays
     * well below the 1e-8 tolerance                                                     */
    ksa_summary_attn_dims d = {
        .nseq = 2, .T = 7, .C = 2, .S = 2, .W = 1, .Hq = 2, .Hkv = 1, .dh = 4};
    problem p;
    problem_init(&p, &d, 3);
    reference r;
    reference_of(&r, &p);
    ref_loss_ctx ctx = {&r, {p.c[0], p.c[1]}};
    double *num = malloc((p.nq[0] + p.nk[0] + 1) * sizeof *num);
    for (int s = 0; s < 2; s++) {
        double *in[3] = {r.q[s], r.k[s], r.v[s]}, *an[3] = {r.dq[s], r.dk[s], r.dv[s]};
        size_t n[3] = {p.nq[s], p.nk[s], p.nk[s]};
        for (int i = 0; i < 3; i++) {
            test_fd_grad_d(ref_loss, &ctx, in[i], n[i], num);
            ksa_expect_close_sym(an[i], num, n[i], 1e-8, 1e-6, "reference backward");
        }
    }
    free(num);
    ref_free(&r);
    problem_free(&p);
}

/* The sweep: every (C, S, W) with three kinds of T (complete chunks only, a tail chunk,
 * shorter than one chunk) and three head layouts (4/4, 4/2, 4/1); head_dim and nseq cycle
 * so that each of their values meets every (C, S, W).                                   */
static void forward_and_gradients_match_dense_reference_over_the_sweep(void **state)
{
    (void)state;
    static const size_t Cs[] = {1, 2, 3, 8}, Ss[] = {1, 2}, Ws[] = {0, 1, 2, 1000};
    static const size_t Ts[4][3] = {{12, 7, 1}, {12, 13, 1}, {15, 17, 2}, {40, 37, 5}};
    static const size_t heads[3][2] = {{4, 4}, {4, 2}, {4, 1}}, dhs[] = {8, 12, 32, 64};
    uint64_t seed = 100;
    for (size_t ic = 0; ic < 4; ic++)
        for (size_t is = 0; is < 2; is++)
            for (size_t iw = 0; iw < 4; iw++)
                for (size_t it = 0; it < 3; it++)
                    for (size_t ih = 0; ih < 3; ih++) {
                        ksa_summary_attn_dims d = {.nseq = 1 + (ih + it + is) % 2,
                                                   .T = Ts[ic][it],
                                                   .C = Cs[ic],
                                                   .S = Ss[is],
                                                   .W = Ws[iw],
                                                   .Hq = heads[ih][0],
                                                   .Hkv = heads[ih][1],
                                                   .dh = dhs[(it + ih + ic + iw) % 4]};
                        check_against_reference(&d, seed++);
                    }
}

/* Longer sequences (the kernel's tiles are 128 query rows x 256 keys): several query
 * blocks; a window whose text range spans two key tiles with the per-row staircase in the
 * left one (C 8, W 20: 160 + 128 keys); summary ranges longer than one tile (C 2 and C 1:
 * up to 300 summary keys); W = SIZE_MAX (causal over the text); GQA.                   */
static void multi_tile_cases_match_dense_reference(void **state)
{
    (void)state;
    static const ksa_summary_attn_dims cases[] = {
        {.nseq = 1, .T = 600, .C = 8, .S = 1, .W = 20, .Hq = 4, .Hkv = 2, .dh = 16},
        {.nseq = 2, .T = 300, .C = 8, .S = 2, .W = 3, .Hq = 2, .Hkv = 1, .dh = 8},
        {.nseq = 1, .T = 601, .C = 2, .S = 1, .W = 3, .Hq = 2, .Hkv = 2, .dh = 8},
        {.nseq = 1, .T = 257, .C = 3, .S = 2, .W = 40, .Hq = 4, .Hkv = 1, .dh = 12},
        {.nseq = 1, .T = 400, .C = 5, .S = 1, .W = SIZE_MAX, .Hq = 2, .Hkv = 2, .dh = 16},
        {.nseq = 1, .T = 300, .C = 1, .S = 1, .W = 0, .Hq = 1, .Hkv = 1, .dh = 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_against_reference(&cases[i], 500 + i);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *ctx)
{
    problem *p = ctx;
    problem_forward(p);
    return test_dot(p->o[0], p->c[0], p->nq[0]) + test_dot(p->o[1], p->c[1], p->nq[1]);
}
#endif

/* float64 build: the backward against central differences of the kernel's own forward. */
static void backward_matches_finite_differences_of_the_kernel(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    static const ksa_summary_attn_dims cases[] = {
        {.nseq = 2, .T = 11, .C = 3, .S = 2, .W = 1, .Hq = 4, .Hkv = 2, .dh = 6},
        {.nseq = 1, .T = 140, .C = 4, .S = 1, .W = 2, .Hq = 2, .Hkv = 1, .dh = 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        problem p;
        problem_init(&p, &cases[c], 40 + c);
        problem_forward(&p);
        problem_backward(&p);
        double *num = malloc((p.nq[0] + p.nk[0] + 1) * sizeof *num);
        for (int s = 0; s < 2; s++) {
            ksa_real *in[3] = {p.q[s], p.k[s], p.v[s]}, *an[3] = {p.dq[s], p.dk[s], p.dv[s]};
            size_t n[3] = {p.nq[s], p.nk[s], p.nk[s]};
            for (int i = 0; i < 3; i++) {
                test_fd_grad(kernel_loss, &p, in[i], n[i], num);
                ksa_expect_close_sym(an[i], num, n[i], 1e-8, 1e-6,
                                     "summary attention backward vs differences of the kernel");
            }
        }
        free(num);
        problem_free(&p);
    }
#else
    skip();
#endif
}

/* Gradients are added to what is there; NULL gradients are skipped without disturbing
 * the others. */
static void backward_adds_into_existing_grads_and_accepts_null(void **state)
{
    (void)state;
    ksa_summary_attn_dims d = {
        .nseq = 2, .T = 150, .C = 4, .S = 2, .W = 2, .Hq = 4, .Hkv = 2, .dh = 8};
    problem p;
    problem_init(&p, &d, 77);
    problem_forward(&p);
    problem_backward(&p);
    ksa_real *g0[6], *g1[6];
    size_t n[6] = {p.nq[0], p.nq[1], p.nk[0], p.nk[1], p.nk[0], p.nk[1]};
    ksa_real *cur[6] = {p.dq[0], p.dq[1], p.dk[0], p.dk[1], p.dv[0], p.dv[1]};
    for (int i = 0; i < 6; i++) {
        g0[i] = alloc_reals(n[i]), g1[i] = alloc_reals(n[i]);
        memcpy(g0[i], cur[i], n[i] * sizeof(ksa_real));
        for (size_t e = 0; e < n[i]; e++)
            g1[i][e] = (ksa_real)(0.5 + (double)(e % 7));
    }
    ksa_summary_attn_backward(g1[0], g1[1], g1[2], g1[3], g1[4], g1[5], p.dout[0], p.dout[1],
                              p.q[0], p.q[1], p.k[0], p.k[1], p.v[0], p.v[1], p.o[0], p.o[1],
                              p.lse[0], p.lse[1], p.ws, p.ws_bytes, &d);
    for (int i = 0; i < 6; i++) {
        double *want = malloc(n[i] * sizeof *want);
        for (size_t e = 0; e < n[i]; e++)
            want[e] = (double)g0[i][e] + 0.5 + (double)(e % 7);
        ksa_expect_close(g1[i], want, n[i], 1e-5, 1e-5, "backward adds into existing grads");
        free(want);
    }
    /* each gradient alone (the others NULL) equals its value from the full call */
    for (int i = 0; i < 6; i++) {
        ksa_real *one[6] = {0};
        one[i] = g1[i];
        memset(g1[i], 0, n[i] * sizeof(ksa_real));
        ksa_summary_attn_backward(one[0], one[1], one[2], one[3], one[4], one[5], p.dout[0],
                                  p.dout[1], p.q[0], p.q[1], p.k[0], p.k[1], p.v[0], p.v[1], p.o[0],
                                  p.o[1], p.lse[0], p.lse[1], p.ws, p.ws_bytes, &d);
        double *want = test_to_double(g0[i], n[i]);
        ksa_expect_close(g1[i], want, n[i], 1e-6, 1e-5, "one gradient, the others NULL");
        free(want);
    }
    for (int i = 0; i < 6; i++)
        free(g0[i]), free(g1[i]);
    problem_free(&p);
}

static int same_bits(const ksa_real *a, const ksa_real *b, size_t n)
{
    return memcmp(a, b, n * sizeof(ksa_real)) == 0;
}

/* Same thread count: bit-identical outputs and gradients. 1 vs 2 threads: the same
 * forward, close gradients (dK/dV partial sums are added in another grouping). */
static void results_are_deterministic_for_a_thread_count(void **state)
{
    (void)state;
    ksa_summary_attn_dims d = {
        .nseq = 2, .T = 333, .C = 8, .S = 1, .W = 5, .Hq = 4, .Hkv = 2, .dh = 16};
    int saved = ksa_threads_get();
    problem a, b;
    ksa_threads_set(2); /* before sizing the workspaces */
    problem_init(&a, &d, 91);
    problem_init(&b, &d, 91);
    problem_forward(&a);
    problem_backward(&a);
    problem_forward(&b);
    problem_backward(&b);
    for (int s = 0; s < 2; s++) {
        assert_true(same_bits(a.o[s], b.o[s], a.nq[s]));
        assert_true(same_bits(a.lse[s], b.lse[s], a.nl[s]));
        assert_true(same_bits(a.dq[s], b.dq[s], a.nq[s]));
        assert_true(same_bits(a.dk[s], b.dk[s], a.nk[s]));
        assert_true(same_bits(a.dv[s], b.dv[s], a.nk[s]));
    }
    ksa_threads_set(1);
    problem_forward(&b);
    problem_backward(&b);
    ksa_threads_set(saved);
    /* every forward row is computed by one work item in a fixed order: no dependence on
     * the thread count at all */
    for (int s = 0; s < 2; s++) {
        assert_true(same_bits(a.o[s], b.o[s], a.nq[s]));
        assert_true(same_bits(a.lse[s], b.lse[s], a.nl[s]));
    }
    for (int s = 0; s < 2; s++) {
        double *x;
        x = test_to_double(a.o[s], a.nq[s]);
        ksa_expect_close(b.o[s], x, a.nq[s], 1e-6, 1e-5, "o, 1 vs 2 threads"), free(x);
        x = test_to_double(a.dq[s], a.nq[s]);
        ksa_expect_close(b.dq[s], x, a.nq[s], 1e-6, 1e-5, "dq, 1 vs 2 threads"), free(x);
        x = test_to_double(a.dk[s], a.nk[s]);
        ksa_expect_close(b.dk[s], x, a.nk[s], 1e-6, 1e-5, "dk, 1 vs 2 threads"), free(x);
        x = test_to_double(a.dv[s], a.nk[s]);
        ksa_expect_close(b.dv[s], x, a.nk[s], 1e-6, 1e-5, "dv, 1 vs 2 threads"), free(x);
    }
    problem_free(&a);
    problem_free(&b);
}

static size_t round64(size_t bytes)
{
    return (bytes + 63) / 64 * 64;
}

/* The op on combined [text rows; summary rows] tensors, through the tape. */
static void tape_op_on_combined_streams_matches_reference(void **state)
{
    (void)state;
    ksa_summary_attn_dims d = {
        .nseq = 2, .T = 19, .C = 4, .S = 2, .W = 1, .Hq = 4, .Hkv = 2, .dh = 8};
    problem p;
    problem_init(&p, &d, 123);
    reference r;
    reference_of(&r, &p);

    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 22);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 8);
    size_t rows = d.nseq * (d.T + p.NS);
    ksa_tensor *q = ksa_tensor_2d(&arena, rows, d.Hq * d.dh);
    ksa_tensor *k = ksa_tensor_2d(&arena, rows, d.Hkv * d.dh);
    ksa_tensor *v = ksa_tensor_2d(&arena, rows, d.Hkv * d.dh);
    q->requires_grad = k->requires_grad = v->requires_grad = 1;
    memcpy(q->data, p.q[0], p.nq[0] * sizeof(ksa_real));
    memcpy(q->data + p.nq[0], p.q[1], p.nq[1] * sizeof(ksa_real));
    memcpy(k->data, p.k[0], p.nk[0] * sizeof(ksa_real));
    memcpy(k->data + p.nk[0], p.k[1], p.nk[1] * sizeof(ksa_real));
    memcpy(v->data, p.v[0], p.nk[0] * sizeof(ksa_real));
    memcpy(v->data + p.nk[0], p.v[1], p.nk[1] * sizeof(ksa_real));

    ksa_tensor *o = ksa_op_summary_attention(&tp, q, k, v, &d);
    assert_int_equal(tp.n, 1);
    assert_int_equal(tp.nodes[0].op, KSA_OP_SUMMARY_ATTN);
    assert_int_equal(o->shape[0], rows);
    assert_int_equal(o->shape[1], d.Hq * d.dh);
    ksa_real *dout = ksa_tensor_grad(&arena, o);
    memcpy(dout, p.dout[0], p.nq[0] * sizeof(ksa_real));
    memcpy(dout + p.nq[0], p.dout[1], p.nq[1] * sizeof(ksa_real));
    size_t used_before = arena.used;
    ksa_tape_replay(&tp);
    /* backward creates the three gradients and gives its scratch back */
    assert_int_equal(arena.used, used_before + round64((p.nq[0] + p.nq[1]) * sizeof(ksa_real)) +
                                     2 * round64((p.nk[0] + p.nk[1]) * sizeof(ksa_real)));

    ksa_expect_close(o->data, r.o[0], p.nq[0], ATT_FWD_ATOL, ATT_FWD_RTOL, "op o, text rows");
    ksa_expect_close(o->data + p.nq[0], r.o[1], p.nq[1], ATT_FWD_ATOL, ATT_FWD_RTOL,
                     "op o, summary rows");
    ksa_expect_close(q->grad, r.dq[0], p.nq[0], ATT_BWD_ATOL, ATT_BWD_RTOL, "op dq, text rows");
    ksa_expect_close(q->grad + p.nq[0], r.dq[1], p.nq[1], ATT_BWD_ATOL, ATT_BWD_RTOL,
                     "op dq, summary rows");
    ksa_expect_close(k->grad, r.dk[0], p.nk[0], ATT_BWD_ATOL, ATT_BWD_RTOL, "op dk, text rows");
    ksa_expect_close(k->grad + p.nk[0], r.dk[1], p.nk[1], ATT_BWD_ATOL, ATT_BWD_RTOL,
                     "op dk, summary rows");
    ksa_expect_close(v->grad, r.dv[0], p.nk[0], ATT_BWD_ATOL, ATT_BWD_RTOL, "op dv, text rows");
    ksa_expect_close(v->grad + p.nk[0], r.dv[1], p.nk[1], ATT_BWD_ATOL, ATT_BWD_RTOL,
                     "op dv, summary rows");

    /* no input needs a gradient: nothing is recorded */
    q->requires_grad = k->requires_grad = v->requires_grad = 0;
    ksa_tensor *o2 = ksa_op_summary_attention(&tp, q, k, v, &d);
    assert_int_equal(tp.n, 1);
    assert_false(o2->requires_grad);
    ksa_expect_close(o2->data, r.o[0], p.nq[0], ATT_FWD_ATOL, ATT_FWD_RTOL, "op o, no grad");

    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ref_free(&r);
    problem_free(&p);
}

/* ---- memory ------------------------------------------------------------------------- */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Resets the kernel's peak-RSS mark (VmHWM) to the current RSS when Linux allows it. */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
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
    int reset = reset_peak_rss();
    long rss0 = status_kib("VmRSS");
    getrusage(RUSAGE_SELF, &ru0);
    problem p;
    problem_init(&p, &d, 9);
    double t0 = ksa_now();
    problem_forward(&p);
    problem_backward(&p);
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
    problem_free(&p);
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
        cmocka_unit_test(memory_stays_linear_at_64k_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
