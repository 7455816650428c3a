/* test_causal_attn.c - tiled causal attention against a dense causal softmax reference in
 * double (forward and analytic backward, the latter checked against its own central
 * differences), GQA, lengths that are not multiples of the tile sizes, determinism, the
 * tape op; in the float64 build also against central differences of the kernel.         */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/arena.h"
#include "autograd/tape.h"
#include "model/causal_attn.h"
#include "model/summary_attn.h"

/* Float forward: see test_summary_attn.c (sums of up to 300 softmax-weighted terms through
 * float gemms and a polynomial exp): 2e-6 + 2e-5·|ref|. Gradients: STYLE.md §7.         */
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

typedef struct {
    size_t nseq, T, Hq, Hkv, dh;
} shape;

/* ---- dense reference, double ------------------------------------------------------------ */
typedef struct {
    shape s;
    double *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv; /* kernel layouts */
} reference;

static double dotd(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static const double *qrow(const reference *r, const double *x, size_t n, size_t t, size_t h)
{
    return x + ((n * r->s.T + t) * r->s.Hq + h) * r->s.dh;
}

static double *krow(const reference *r, double *x, size_t n, size_t t, size_t g)
{
    return x + ((n * r->s.T + t) * r->s.Hkv + g) * r->s.dh;
}

/* p[0..t] = softmax_k<=t(scale q_t·k_k); returns lse. */
static double ref_probs(const reference *r, double *p, size_t n, size_t t, size_t h)
{
    size_t g = h / (r->s.Hq / r->s.Hkv);
    double scale = 1 / sqrt((double)r->s.dh), m = -INFINITY, sum = 0;
    for (size_t k = 0; k <= t; k++) {
        p[k] = scale * dotd(qrow(r, r->q, n, t, h), krow(r, r->k, n, k, g), r->s.dh);
        m = p[k] > m ? p[k] : m;
    }
    for (size_t k = 0; k <= t; k++)
        sum += exp(p[k] - m);
    for (size_t k = 0; k <= t; k++)
        p[k] = exp(p[k] - m) / sum;
    return m + log(sum);
}

static void ref_forward(reference *r)
{
    const shape *s = &r->s;
    double *p = malloc(s->T * sizeof *p);
    for (size_t n = 0; n < s->nseq; n++)
        for (size_t h = 0; h < s->Hq; h++)
            for (size_t t = 0; t < s->T; t++) {
                size_t g = h / (s->Hq / s->Hkv);
                r->lse[(n * s->T + t) * s->Hq + h] = ref_probs(r, p, n, t, h);
                double *o = (double *)qrow(r, r->o, n, t, h);
                memset(o, 0, s->dh * sizeof *o);
                for (size_t k = 0; k <= t; k++)
                    for (size_t e = 0; e < s->dh; e++)
                        o[e] += p[k] * krow(r, r->v, n, k, g)[e];
            }
    free(p);
}

/* dp_k = dO·v_k, D = sum_k p_k dp_k, ds_k = p_k (dp_k - D); dq = scale sum ds_k k_k,
 * dk_k += scale ds_k q, dv_k += p_k dO. Overwrites dq, dk, dv.                         */
static void ref_backward(reference *r)
{
    const shape *s = &r->s;
    double scale = 1 / sqrt((double)s->dh);
    size_t nq = s->nseq * s->T * s->Hq * s->dh, nk = s->nseq * s->T * s->Hkv * s->dh;
    memset(r->dq, 0, nq * sizeof(double));
    memset(r->dk, 0, nk * sizeof(double));
    memset(r->dv, 0, nk * sizeof(double));
    double *p = malloc(s->T * sizeof *p), *dp = malloc(s->T * sizeof *dp);
    for (size_t n = 0; n < s->nseq; n++)
        for (size_t h = 0; h < s->Hq; h++)
            for (size_t t = 0; t < s->T; t++) {
                size_t g = h / (s->Hq / s->Hkv);
                ref_probs(r, p, n, t, h);
                const double *dov = qrow(r, r->dout, n, t, h), *qv = qrow(r, r->q, n, t, h);
                double D = 0;
                for (size_t k = 0; k <= t; k++) {
                    dp[k] = dotd(dov, krow(r, r->v, n, k, g), s->dh);
                    D += p[k] * dp[k];
                }
                double *dq = (double *)qrow(r, r->dq, n, t, h);
                for (size_t k = 0; k <= t; k++) {
                    double ds = p[k] * (dp[k] - D);
                    const double *kv = krow(r, r->k, n, k, g);
                    double *dk = krow(r, r->dk, n, k, g), *dv = krow(r, r->dv, n, k, g);
                    for (size_t e = 0; e < s->dh; e++) {
                        dq[e] += scale * ds * kv[e];
                        dk[e] += scale * ds * qv[e];
                        dv[e] += p[k] * dov[e];
                    }
                }
            }
    free(p), free(dp);
}

/* ---- the kernel side of a case ---------------------------------------------------------- */
typedef struct {
    shape s;
    size_t nq, nk, nl;
    ksa_real *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
    double *c;
    void *ws;
    size_t ws_bytes;
} problem;

static ksa_real *alloc_reals(size_t n)
{
    return calloc(n ? n : 1, sizeof(ksa_real));
}

static void problem_init(problem *p, shape s, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->s = s;
    p->nq = s.nseq * s.T * s.Hq * s.dh, p->nk = s.nseq * s.T * s.Hkv * s.dh;
    p->nl = s.nseq * s.T * s.Hq;
    p->q = alloc_reals(p->nq), p->o = alloc_reals(p->nq), p->dout = alloc_reals(p->nq);
    p->dq = alloc_reals(p->nq), p->lse = alloc_reals(p->nl);
    p->k = alloc_reals(p->nk), p->v = alloc_reals(p->nk);
    p->dk = alloc_reals(p->nk), p->dv = alloc_reals(p->nk);
    p->c = calloc(p->nq + 1, sizeof(double));
    test_rng rng = test_rng_seed(seed);
    test_fill_uniform(p->q, p->nq, -2, 2, &rng);
    test_fill_uniform(p->k, p->nk, -2, 2, &rng);
    test_fill_uniform(p->v, p->nk, -1, 1, &rng);
    test_fill_uniform_d(p->c, p->nq, -1, 1, &rng);
    test_from_double(p->dout, p->c, p->nq);
    size_t fw = ksa_causal_attn_forward_workspace_size(s.T, s.dh, ksa_threads_get());
    size_t bw = ksa_causal_attn_backward_workspace_size(s.T, s.dh, ksa_threads_get());
    p->ws_bytes = fw > bw ? fw : bw;
    p->ws = ksa_alloc(p->ws_bytes);
}

static void problem_free(problem *p)
{
    free(p->q), free(p->k), free(p->v), free(p->o), free(p->lse), free(p->dout);
    free(p->dq), free(p->dk), free(p->dv), free(p->c);
    ksa_free(p->ws);
}

static void problem_forward(problem *p)
{
    ksa_causal_attn_forward(p->o, p->lse, p->q, p->k, p->v, p->ws, p->ws_bytes, p->s.nseq, p->s.T,
                            p->s.Hq, p->s.Hkv, p->s.dh);
}

static void problem_backward(problem *p)
{
    memset(p->dq, 0, p->nq * sizeof(ksa_real));
    memset(p->dk, 0, p->nk * sizeof(ksa_real));
    memset(p->dv, 0, p->nk * sizeof(ksa_real));
    ksa_causal_attn_backward(p->dq, p->dk, p->dv, p->dout, p->q, p->k, p->v, p->o, p->lse, p->ws,
                             p->ws_bytes, p->s.nseq, p->s.T, p->s.Hq, p->s.Hkv, p->s.dh);
}

static void reference_of(reference *r, const problem *p)
{
    r->s = p->s;
    r->q = test_to_double(p->q, p->nq), r->dout = test_to_double(p->dout, p->nq);
    r->k = test_to_double(p->k, p->nk), r->v = test_to_double(p->v, p->nk);
    r->o = calloc(p->nq + 1, sizeof(double)), r->dq = calloc(p->nq + 1, sizeof(double));
    r->dk = calloc(p->nk + 1, sizeof(double)), r->dv = calloc(p->nk + 1, sizeof(double));
    r->lse = calloc(p->nl + 1, sizeof(double));
    ref_forward(r);
    ref_backward(r);
}

static void ref_free(reference *r)
{
    free(r->q), free(r->k), free(r->v), free(r->o), free(r->lse), free(r->dout);
    free(r->dq), free(r->dk), free(r->dv);
}

static void expect(const ksa_real *got, const double *want, size_t n, double atol, double rtol,
                   const shape *s, const char *what)
{
    char buf[200];
    snprintf(buf, sizeof buf, "%s (nseq %zu T %zu Hq %zu Hkv %zu dh %zu)", what, s->nseq, s->T,
             s->Hq, s->Hkv, s->dh);
    ksa_expect_close(got, want, n, atol, rtol, buf);
}

static void check_against_reference(shape s, uint64_t seed)
{
    problem p;
    problem_init(&p, s, seed);
    problem_forward(&p);
    problem_backward(&p);
    reference r;
    reference_of(&r, &p);
    expect(p.o, r.o, p.nq, ATT_FWD_ATOL, ATT_FWD_RTOL, &s, "o");
    expect(p.lse, r.lse, p.nl, ATT_FWD_ATOL, ATT_FWD_RTOL, &s, "lse");
    expect(p.dq, r.dq, p.nq, ATT_BWD_ATOL, ATT_BWD_RTOL, &s, "dq");
    expect(p.dk, r.dk, p.nk, ATT_BWD_ATOL, ATT_BWD_RTOL, &s, "dk");
    expect(p.dv, r.dv, p.nk, ATT_BWD_ATOL, ATT_BWD_RTOL, &s, "dv");
    ref_free(&r);
    problem_free(&p);
}

/* ---- tests ------------------------------------------------------------------------------ */
typedef struct {
    reference *r;
    const double *c;
} ref_loss_ctx;

static double ref_loss(void *ctx)
{
    ref_loss_ctx *x = ctx;
    ref_forward(x->r);
    const shape *s = &x->r->s;
    return test_dot_dd(x->r->o, x->c, s->nseq * s->T * s->Hq * s->dh);
}

static void reference_backward_matches_its_finite_differences(void **state)
{
    (void)state;
    shape s = {.nseq = 2, .T = 6, .Hq = 2, .Hkv = 1, .dh = 4};
    problem p;
    problem_init(&p, s, 2);
    reference r;
    reference_of(&r, &p);
    ref_loss_ctx ctx = {&r, p.c};
    double *num = malloc(p.nq * sizeof *num);
    double *in[3] = {r.q, r.k, r.v}, *an[3] = {r.dq, r.dk, r.dv};
    size_t n[3] = {p.nq, p.nk, p.nk};
    for (int i = 0; i < 3; i++) {
        test_fd_grad_d(ref_loss, &ctx, in[i], n[i], num);
        ksa_expect_close_sym(an[i], num, n[i], 1e-8, 1e-6, "causal reference backward");
    }
    free(num);
    ref_free(&r);
    problem_free(&p);
}

/* Lengths around the kernel's tile sizes (128 query rows, 256 keys), GQA 4/4, 4/2, 4/1,
 * head_dim and nseq cycling so that each value meets every length and head layout.       */
static void forward_and_gradients_match_dense_causal_reference(void **state)
{
    (void)state;
    static const size_t Ts[] = {1, 2, 7, 127, 128, 129, 255, 257, 300, 520};
    static const size_t heads[3][2] = {{4, 4}, {4, 2}, {4, 1}}, dhs[] = {8, 12, 16, 64};
    uint64_t seed = 10;
    for (size_t it = 0; it < sizeof Ts / sizeof Ts[0]; it++)
        for (size_t ih = 0; ih < 3; ih++)
            for (size_t id = 0; id < 4; id += 1 + (Ts[it] > 100)) {
                shape s = {.nseq = 1 + (it + ih + id) % 2,
                           .T = Ts[it],
                           .Hq = heads[ih][0],
                           .Hkv = heads[ih][1],
                           .dh = dhs[(id + ih) % 4]};
                check_against_reference(s, seed++);
            }
}

/* KSA_SPEC §3.1: with W >= the number of chunks a summary layer is plain causal attention
 * over the text (summaries are never visible to text).                                  */
static void equals_summary_attention_whose_window_covers_every_chunk(void **state)
{
    (void)state;
    shape s = {.nseq = 2, .T = 150, .Hq = 4, .Hkv = 2, .dh = 16};
    problem p;
    problem_init(&p, s, 31);
    problem_forward(&p);
    ksa_summary_attn_dims d = {
        .nseq = 2, .T = 150, .C = 8, .S = 1, .W = 150 / 8, .Hq = 4, .Hkv = 2, .dh = 16};
    size_t NS = ksa_summary_attn_summary_rows(&d), nqs = d.nseq * NS * d.Hq * d.dh;
    size_t nks = d.nseq * NS * d.Hkv * d.dh;
    ksa_real *qs = alloc_reals(nqs), *ks = alloc_reals(nks), *vs = alloc_reals(nks);
    ksa_real *ot = alloc_reals(p.nq), *os = alloc_reals(nqs);
    ksa_real *lt = alloc_reals(p.nl), *ls = alloc_reals(d.nseq * NS * d.Hq);
    test_rng rng = test_rng_seed(5);
    test_fill_uniform(qs, nqs, -2, 2, &rng);
    test_fill_uniform(ks, nks, -2, 2, &rng);
    test_fill_uniform(vs, nks, -1, 1, &rng);
    size_t bytes = ksa_summary_attn_forward_workspace_size(&d, ksa_threads_get());
    void *ws = ksa_alloc(bytes);
    ksa_summary_attn_forward(ot, os, lt, ls, p.q, qs, p.k, ks, p.v, vs, ws, bytes, &d);
    double *want = test_to_double(p.o, p.nq);
    ksa_expect_close(ot, want, p.nq, 1e-6, 1e-6, "summary attention with W >= chunks vs causal");
    free(want), free(qs), free(ks), free(vs), free(ot), free(os), free(lt), free(ls);
    ksa_free(ws);
    problem_free(&p);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *ctx)
{
    problem *p = ctx;
    problem_forward(p);
    return test_dot(p->o, p->c, p->nq);
}
#endif

static void backward_matches_finite_differences_of_the_kernel(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    static const shape cases[] = {{.nseq = 2, .T = 9, .Hq = 4, .Hkv = 2, .dh = 6},
                                  {.nseq = 1, .T = 150, .Hq = 2, .Hkv = 1, .dh = 3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        problem p;
        problem_init(&p, cases[c], 60 + c);
        problem_forward(&p);
        problem_backward(&p);
        double *num = malloc(p.nq * sizeof *num);
        ksa_real *in[3] = {p.q, p.k, p.v}, *an[3] = {p.dq, p.dk, p.dv};
        size_t n[3] = {p.nq, p.nk, p.nk};
        for (int i = 0; i < 3; i++) {
            test_fd_grad(kernel_loss, &p, in[i], n[i], num);
            double *a = test_to_double(an[i], n[i]);
            ksa_expect_close_sym(a, num, n[i], 1e-8, 1e-6,
                                 "causal attention backward vs differences of the kernel");
            free(a);
        }
        free(num);
        problem_free(&p);
    }
#else
    skip();
#endif
}

static void backward_adds_into_existing_grads_and_accepts_null(void **state)
{
    (void)state;
    shape s = {.nseq = 2, .T = 140, .Hq = 4, .Hkv = 1, .dh = 8};
    problem p;
    problem_init(&p, s, 71);
    problem_forward(&p);
    problem_backward(&p);
    ksa_real *cur[3] = {p.dq, p.dk, p.dv};
    size_t n[3] = {p.nq, p.nk, p.nk};
    for (int i = 0; i < 3; i++) {
        ksa_real *g = alloc_reals(n[i]);
        double *want = malloc(n[i] * sizeof *want);
        for (size_t e = 0; e < n[i]; e++) {
            g[e] = (ksa_real)(1.0 + (double)(e % 5));
            want[e] = (double)cur[i][e] + 1.0 + (double)(e % 5);
        }
        ksa_real *one[3] = {0};
        one[i] = g; /* the others NULL */
        ksa_causal_attn_backward(one[0], one[1], one[2], p.dout, p.q, p.k, p.v, p.o, p.lse, p.ws,
                                 p.ws_bytes, s.nseq, s.T, s.Hq, s.Hkv, s.dh);
        ksa_expect_close(g, want, n[i], 1e-5, 1e-5, "adds into existing grads, others NULL");
        free(g), free(want);
    }
    problem_free(&p);
}

static void results_are_deterministic_for_a_thread_count(void **state)
{
    (void)state;
    shape s = {.nseq = 1, .T = 700, .Hq = 4, .Hkv = 2, .dh = 32};
    int saved = ksa_threads_get();
    problem a, b;
    ksa_threads_set(2); /* before sizing the workspaces */
    problem_init(&a, s, 8);
    problem_init(&b, s, 8);
    problem_forward(&a);
    problem_backward(&a);
    problem_forward(&b);
    problem_backward(&b);
    assert_memory_equal(a.o, b.o, a.nq * sizeof(ksa_real));
    assert_memory_equal(a.lse, b.lse, a.nl * sizeof(ksa_real));
    assert_memory_equal(a.dq, b.dq, a.nq * sizeof(ksa_real));
    assert_memory_equal(a.dk, b.dk, a.nk * sizeof(ksa_real));
    assert_memory_equal(a.dv, b.dv, a.nk * sizeof(ksa_real));
    ksa_threads_set(1);
    problem_forward(&b);
    problem_backward(&b);
    ksa_threads_set(saved);
    assert_memory_equal(a.o, b.o, a.nq * sizeof(ksa_real)); /* forward: thread-count free */
    assert_memory_equal(a.lse, b.lse, a.nl * sizeof(ksa_real));
    double *x = test_to_double(a.o, a.nq);
    ksa_expect_close(b.o, x, a.nq, 1e-6, 1e-5, "o, 1 vs 2 threads"), free(x);
    x = test_to_double(a.dq, a.nq);
    ksa_expect_close(b.dq, x, a.nq, 1e-6, 1e-5, "dq, 1 vs 2 threads"), free(x);
    x = test_to_double(a.dk, a.nk);
    ksa_expect_close(b.dk, x, a.nk, 1e-6, 1e-5, "dk, 1 vs 2 threads"), free(x);
    x = test_to_double(a.dv, a.nk);
    ksa_expect_close(b.dv, x, a.nk, 1e-6, 1e-5, "dv, 1 vs 2 threads"), free(x);
    problem_free(&a);
    problem_free(&b);
}

static void tape_op_matches_reference(void **state)
{
    (void)state;
    shape s = {.nseq = 2, .T = 70, .Hq = 4, .Hkv = 2, .dh = 8};
    problem p;
    problem_init(&p, s, 17);
    reference r;
    reference_of(&r, &p);
    ksa_arena arena;
    ksa_arena_init(&arena, 1 << 22);
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, 4);
    ksa_tensor *q = ksa_tensor_2d(&arena, s.nseq * s.T, s.Hq * s.dh);
    ksa_tensor *k = ksa_tensor_2d(&arena, s.nseq * s.T, s.Hkv * s.dh);
    ksa_tensor *v = ksa_tensor_2d(&arena, s.nseq * s.T, s.Hkv * s.dh);
    memcpy(q->data, p.q, p.nq * sizeof(ksa_real));
    memcpy(k->data, p.k, p.nk * sizeof(ksa_real));
    memcpy(v->data, p.v, p.nk * sizeof(ksa_real));
    k->requires_grad = v->requires_grad = 1; /* q needs none: dq is never created */
    ksa_tensor *o = ksa_op_causal_attention(&tp, q, k, v, s.nseq, s.Hq, s.Hkv);
    assert_int_equal(tp.n, 1);
    assert_int_equal(tp.nodes[0].op, KSA_OP_CAUSAL_ATTN);
    ksa_real *dout = ksa_tensor_grad(&arena, o);
    memcpy(dout, p.dout, p.nq * sizeof(ksa_real));
    ksa_tape_replay(&tp);
    assert_null(q->grad);
    expect(o->data, r.o, p.nq, ATT_FWD_ATOL, ATT_FWD_RTOL, &s, "op o");
    expect(k->grad, r.dk, p.nk, ATT_BWD_ATOL, ATT_BWD_RTOL, &s, "op dk");
    expect(v->grad, r.dv, p.nk, ATT_BWD_ATOL, ATT_BWD_RTOL, &s, "op dv");
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ref_free(&r);
    problem_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reference_backward_matches_its_finite_differences),
        cmocka_unit_test(forward_and_gradients_match_dense_causal_reference),
        cmocka_unit_test(equals_summary_attention_whose_window_covers_every_chunk),
        cmocka_unit_test(backward_matches_finite_differences_of_the_kernel),
        cmocka_unit_test(backward_adds_into_existing_grads_and_accepts_null),
        cmocka_unit_test(results_are_deterministic_for_a_thread_count),
        cmocka_unit_test(tape_op_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
