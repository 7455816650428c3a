/* attncheck.c - see attncheck.h. */
#include "attncheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/causal_attn.h"

attn_case attn_causal(size_t nseq, size_t T, size_t Hq, size_t Hkv, size_t dh)
{
    attn_case ac = {
        .d = {.nseq = nseq, .T = T, .C = 1, .S = 0, .W = T, .Hq = Hq, .Hkv = Hkv, .dh = dh},
        .causal = 1};
    return ac;
}

/* ======================================================================================
 * Dense reference on the interleaved sequence
 * ====================================================================================== */
size_t attn_build_expanded(attn_token *tok, size_t T, size_t C, size_t S)
{
    size_t L = 0;
    for (size_t c = 0; c * C < T; c++) {
        size_t len = T - c * C < C ? T - c * C : C;
        for (size_t i = 0; i < len; i++)
            tok[L++] = (attn_token){0, c * C + i, (c * C + i) / C};
        if (len == C) /* complete chunk: its summaries follow it */
            for (size_t j = 0; j < S; j++)
                tok[L++] = (attn_token){1, c * S + j, c};
    }
    return L;
}

int attn_visible(const attn_token *tok, size_t q, size_t k, size_t W)
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
    attn_token *tok;
    double *q[2], *k[2], *v[2]; /* [0] text stream, [1] summary stream, kernel layouts */
    double *o[2], *lse[2], *dout[2], *dq[2], *dk[2], *dv[2];
} reference;

static size_t stream_rows(const reference *r, int s)
{
    return r->d.nseq * (s ? r->NS : r->d.T);
}

static double *at(double *const base[2], const reference *r, size_t n, size_t p, size_t h, size_t H)
{
    const attn_token *t = &r->tok[p];
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
        s[kp] = attn_visible(r->tok, qp, kp, r->d.W)
                    ? scale * dotd(qv, at(r->k, r, n, kp, g, r->d.Hkv), r->d.dh)
                    : -INFINITY;
}

/* Softmax of s in place (masked entries -> 0); returns lse. */
static double ref_softmax(double *s, size_t L)
{
    double m = -INFINITY, sum = 0;
    for (size_t k = 0; k < L; k++)
        m = s[k] > m ? s[k] : m;
    for (size_t k = 0; k < L; k++) {
        s[k] = s[k] == -INFINITY ? 0 : exp(s[k] - m);
        sum += s[k];
    }
    for (size_t k = 0; k < L; k++)
        s[k] /= sum;
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
                for (size_t kp = 0; kp < r->L; kp++) {
                    if (p[kp] == 0) /* masked: adding 0·v would change no bit */
                        continue;
                    const double *vv = at(r->v, r, n, kp, g, d->Hkv);
                    for (size_t e = 0; e < d->dh; e++)
                        o[e] += p[kp] * vv[e];
                }
                const attn_token *t = &r->tok[qp];
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
                    if (p[kp] == 0) /* masked */
                        continue;
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
    r->L = attn_build_expanded(r->tok, d->T, d->C, d->S);
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
 * The kernel side of a case
 * ====================================================================================== */
static ksa_real *alloc_reals(size_t n)
{
    return calloc(n ? n : 1, sizeof(ksa_real));
}

void attn_problem_init(attn_problem *p, const attn_case *ac, uint64_t seed)
{
    const ksa_summary_attn_dims *d = &ac->d;
    memset(p, 0, sizeof *p);
    p->ac = *ac;
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
    int nt = ksa_threads_get();
    size_t fw = ac->causal ? ksa_causal_attn_forward_workspace_size(d->T, d->dh, nt)
                           : ksa_summary_attn_forward_workspace_size(d, nt);
    size_t bw = ac->causal ? ksa_causal_attn_backward_workspace_size(d->T, d->dh, nt)
                           : ksa_summary_attn_backward_workspace_size(d, nt);
    p->ws_bytes = fw > bw ? fw : bw;
    p->ws = ksa_alloc(p->ws_bytes);
}

void attn_problem_free(attn_problem *p)
{
    for (int s = 0; s < 2; s++) {
        free(p->q[s]), free(p->k[s]), free(p->v[s]), free(p->o[s]), free(p->lse[s]);
        free(p->dout[s]), free(p->dq[s]), free(p->dk[s]), free(p->dv[s]), free(p->c[s]);
    }
    ksa_free(p->ws);
}

static ksa_attn_out out2(ksa_real *const *x)
{
    return (ksa_attn_out){x[0], x[1]};
}

static ksa_attn_in in2(ksa_real *const *x)
{
    return (ksa_attn_in){x[0], x[1]};
}

void attn_problem_forward(attn_problem *p)
{
    const ksa_summary_attn_dims *d = &p->ac.d;
    if (p->ac.causal)
        ksa_causal_attn_forward(p->o[0], p->lse[0], p->q[0], p->k[0], p->v[0], p->ws, p->ws_bytes,
                                d->nseq, d->T, d->Hq, d->Hkv, d->dh);
    else
        ksa_summary_attn_forward(out2(p->o), out2(p->lse),
                                 (ksa_attn_qkv){in2(p->q), in2(p->k), in2(p->v)}, p->ws,
                                 p->ws_bytes, d);
}

void attn_problem_backward_into(const attn_problem *p, ksa_real *const *g)
{
    const ksa_summary_attn_dims *d = &p->ac.d;
    if (p->ac.causal)
        ksa_causal_attn_backward(g[0], g[2], g[4], p->dout[0], p->q[0], p->k[0], p->v[0], p->o[0],
                                 p->lse[0], p->ws, p->ws_bytes, d->nseq, d->T, d->Hq, d->Hkv,
                                 d->dh);
    else
        ksa_summary_attn_backward(out2(g), out2(g + 2), out2(g + 4), in2(p->dout),
                                  (ksa_attn_qkv){in2(p->q), in2(p->k), in2(p->v)}, in2(p->o),
                                  in2(p->lse), p->ws, p->ws_bytes, d);
}

void attn_problem_backward(attn_problem *p)
{
    for (int s = 0; s < 2; s++) {
        memset(p->dq[s], 0, p->nq[s] * sizeof(ksa_real));
        memset(p->dk[s], 0, p->nk[s] * sizeof(ksa_real));
        memset(p->dv[s], 0, p->nk[s] * sizeof(ksa_real));
    }
    ksa_real *g[6] = {p->dq[0], p->dq[1], p->dk[0], p->dk[1], p->dv[0], p->dv[1]};
    attn_problem_backward_into(p, g);
}

/* The reference on the same inputs, forward and backward. */
static void reference_of(reference *r, const attn_problem *p)
{
    ref_init(r, &p->ac.d);
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < p->nq[s]; i++)
            r->q[s][i] = (double)p->q[s][i], r->dout[s][i] = (double)p->dout[s][i];
        for (size_t i = 0; i < p->nk[s]; i++)
            r->k[s][i] = (double)p->k[s][i], r->v[s][i] = (double)p->v[s][i];
    }
    ref_forward(r);
    ref_backward(r);
}

/* ======================================================================================
 * Checks
 * ====================================================================================== */
static const char *describe(const attn_case *ac, const char *what)
{
    static char buf[256];
    const ksa_summary_attn_dims *d = &ac->d;
    if (ac->causal)
        snprintf(buf, sizeof buf, "causal %s (nseq %zu T %zu Hq %zu Hkv %zu dh %zu)", what, d->nseq,
                 d->T, d->Hq, d->Hkv, d->dh);
    else
        snprintf(buf, sizeof buf, "%s (nseq %zu T %zu C %zu S %zu W %zu Hq %zu Hkv %zu dh %zu)",
                 what, d->nseq, d->T, d->C, d->S, d->W, d->Hq, d->Hkv, d->dh);
    return buf;
}

static const char *const stream_name[2] = {"text", "sum"};

/* what_stream, e.g. "dq_text", described */
static const char *describe_stream(const attn_case *ac, const char *what, int s)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%s", what, stream_name[s]);
    return describe(ac, name);
}

void attn_check_against_reference(const attn_case *ac, uint64_t seed)
{
    attn_problem p;
    attn_problem_init(&p, ac, seed);
    attn_problem_forward(&p);
    attn_problem_backward(&p);
    reference r;
    reference_of(&r, &p);
    for (int s = 0; s < 2; s++) {
        ksa_expect_close(p.o[s], r.o[s], p.nq[s], ATT_FWD_ATOL, ATT_FWD_RTOL,
                         describe_stream(ac, "o", s));
        ksa_expect_close(p.lse[s], r.lse[s], p.nl[s], ATT_FWD_ATOL, ATT_FWD_RTOL,
                         describe_stream(ac, "lse", s));
        ksa_expect_close(p.dq[s], r.dq[s], p.nq[s], ATT_BWD_ATOL, ATT_BWD_RTOL,
                         describe_stream(ac, "dq", s));
        ksa_expect_close(p.dk[s], r.dk[s], p.nk[s], ATT_BWD_ATOL, ATT_BWD_RTOL,
                         describe_stream(ac, "dk", s));
        ksa_expect_close(p.dv[s], r.dv[s], p.nk[s], ATT_BWD_ATOL, ATT_BWD_RTOL,
                         describe_stream(ac, "dv", s));
    }
    ref_free(&r);
    attn_problem_free(&p);
}

static size_t largest_input(const attn_problem *p)
{
    size_t n = 0;
    for (int s = 0; s < 2; s++)
        n = n > p->nq[s] ? n : p->nq[s], n = n > p->nk[s] ? n : p->nk[s];
    return n;
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

void attn_check_reference_differences(const attn_case *ac, uint64_t seed)
{
    attn_problem p;
    attn_problem_init(&p, ac, seed);
    reference r;
    reference_of(&r, &p);
    ref_loss_ctx ctx = {&r, {p.c[0], p.c[1]}};
    double *num = malloc((largest_input(&p) + 1) * sizeof *num);
    for (int s = 0; s < 2; s++) {
        double *in[3] = {r.q[s], r.k[s], r.v[s]}, *an[3] = {r.dq[s], r.dk[s], r.dv[s]};
        size_t n[3] = {p.nq[s], p.nk[s], p.nk[s]};
        for (int i = 0; i < 3; i++) {
            test_fd_grad_d(ref_loss, &ctx, in[i], n[i], num);
            ksa_expect_close_sym(an[i], num, n[i], 1e-8, 1e-6,
                                 describe(ac, "reference backward vs its differences"));
        }
    }
    free(num);
    ref_free(&r);
    attn_problem_free(&p);
}

#ifdef KSA_REAL_DOUBLE
static double kernel_loss(void *ctx)
{
    attn_problem *p = ctx;
    attn_problem_forward(p);
    return test_dot(p->o[0], p->c[0], p->nq[0]) + test_dot(p->o[1], p->c[1], p->nq[1]);
}

void attn_check_kernel_differences(const attn_case *ac, uint64_t seed)
{
    attn_problem p;
    attn_problem_init(&p, ac, seed);
    attn_problem_forward(&p);
    attn_problem_backward(&p);
    double *num = malloc((largest_input(&p) + 1) * sizeof *num);
    for (int s = 0; s < 2; s++) {
        ksa_real *in[3] = {p.q[s], p.k[s], p.v[s]}, *an[3] = {p.dq[s], p.dk[s], p.dv[s]};
        size_t n[3] = {p.nq[s], p.nk[s], p.nk[s]};
        for (int i = 0; i < 3; i++) {
            test_fd_grad(kernel_loss, &p, in[i], n[i], num);
            ksa_expect_close_sym(an[i], num, n[i], OPCHECK_KERNEL_ATOL, OPCHECK_KERNEL_RTOL,
                                 describe(ac, "backward vs differences of the kernel"));
        }
    }
    free(num);
    attn_problem_free(&p);
}
#endif

/* What a gradient holds before the call: 0, or (filled) 0.5 + (e mod 7). */
static double prior(size_t e, int filled)
{
    return filled ? 0.5 + (double)(e % 7) : 0;
}

/* g = prior; the call; then g must be g0 + prior */
static void expect_added(const attn_problem *p, ksa_real *const *g, const ksa_real *const *g0,
                         const size_t *n, int filled, double atol, const char *what)
{
    for (int i = 0; i < 6; i++)
        if (g[i])
            for (size_t e = 0; e < n[i]; e++)
                g[i][e] = (ksa_real)prior(e, filled);
    attn_problem_backward_into(p, g);
    for (int i = 0; i < 6; i++) {
        if (!g[i])
            continue;
        double *want = malloc((n[i] + 1) * sizeof *want);
        for (size_t e = 0; e < n[i]; e++)
            want[e] = (double)g0[i][e] + prior(e, filled);
        ksa_expect_close(g[i], want, n[i], atol, 1e-5, describe(&p->ac, what));
        free(want);
    }
}

void attn_check_accumulation(const attn_case *ac, uint64_t seed)
{
    attn_problem p;
    attn_problem_init(&p, ac, seed);
    attn_problem_forward(&p);
    attn_problem_backward(&p);
    /* g0: the six gradients from zero in one call */
    const ksa_real *g0[6] = {p.dq[0], p.dq[1], p.dk[0], p.dk[1], p.dv[0], p.dv[1]};
    size_t n[6] = {p.nq[0], p.nq[1], p.nk[0], p.nk[1], p.nk[0], p.nk[1]};
    ksa_real *g[6];
    for (int i = 0; i < 6; i++)
        g[i] = alloc_reals(n[i]);
    expect_added(&p, g, g0, n, 1, 1e-5, "backward adds into existing grads");
    /* each alone, the others NULL: from zero it is its value from the full call, and onto
     * existing values it adds that                                                        */
    for (int i = 0; i < 6; i++) {
        ksa_real *one[6] = {0};
        one[i] = g[i];
        expect_added(&p, one, g0, n, 0, 1e-6, "one gradient, the others NULL");
        expect_added(&p, one, g0, n, 1, 1e-5, "one gradient onto existing ones, the others NULL");
    }
    for (int i = 0; i < 6; i++)
        free(g[i]);
    attn_problem_free(&p);
}

void attn_check_determinism(const attn_case *ac, uint64_t seed)
{
    int saved = ksa_threads_get();
    attn_problem a, b;
    ksa_threads_set(2); /* before sizing the workspaces */
    attn_problem_init(&a, ac, seed);
    attn_problem_init(&b, ac, seed);
    attn_problem_forward(&a);
    attn_problem_backward(&a);
    attn_problem_forward(&b);
    attn_problem_backward(&b);
    for (int s = 0; s < 2; s++) {
        assert_memory_equal(a.o[s], b.o[s], a.nq[s] * sizeof(ksa_real));
        assert_memory_equal(a.lse[s], b.lse[s], a.nl[s] * sizeof(ksa_real));
        assert_memory_equal(a.dq[s], b.dq[s], a.nq[s] * sizeof(ksa_real));
        assert_memory_equal(a.dk[s], b.dk[s], a.nk[s] * sizeof(ksa_real));
        assert_memory_equal(a.dv[s], b.dv[s], a.nk[s] * sizeof(ksa_real));
    }
    ksa_threads_set(1);
    attn_problem_forward(&b);
    attn_problem_backward(&b);
    ksa_threads_set(saved);
    /* every forward row is computed by one work item in a fixed order: no dependence on
     * the thread count at all; the dK/dV partial sums are added in another grouping     */
    for (int s = 0; s < 2; s++) {
        assert_memory_equal(a.o[s], b.o[s], a.nq[s] * sizeof(ksa_real));
        assert_memory_equal(a.lse[s], b.lse[s], a.nl[s] * sizeof(ksa_real));
    }
    for (int s = 0; s < 2; s++) {
        ksa_real *x1[4] = {b.o[s], b.dq[s], b.dk[s], b.dv[s]};
        ksa_real *x2[4] = {a.o[s], a.dq[s], a.dk[s], a.dv[s]};
        size_t n[4] = {a.nq[s], a.nq[s], a.nk[s], a.nk[s]};
        static const char *const what[4] = {"o", "dq", "dk", "dv"};
        for (int i = 0; i < 4; i++) {
            double *want = test_to_double(x2[i], n[i]);
            ksa_expect_close(x1[i], want, n[i], 1e-6, 1e-5,
                             describe_stream(ac, what[i], s)); /* 1 vs 2 threads */
            free(want);
        }
    }
    attn_problem_free(&a);
    attn_problem_free(&b);
}

/* ======================================================================================
 * The tape op on the combined [text rows; summary rows] tensors
 * ====================================================================================== */
static ksa_tensor *op_build(ksa_tape *tp, ksa_tensor *const *in, void *ctx)
{
    const attn_case *ac = ctx;
    if (ac->causal)
        return ksa_op_causal_attention(tp, in[0], in[1], in[2], ac->d.nseq, ac->d.Hq, ac->d.Hkv);
    return ksa_op_summary_attention(tp, in[0], in[1], in[2], &ac->d);
}

/* A reference on combined q, k, v (and dout; NULL: none): the text stream's elements first,
 * then the summary stream's.                                                             */
static void reference_of_combined(reference *r, const attn_case *ac, double *const *x)
{
    ref_init(r, &ac->d);
    size_t wq = ac->d.Hq * ac->d.dh, wk = ac->d.Hkv * ac->d.dh;
    double **dst[4] = {r->q, r->k, r->v, r->dout};
    size_t width[4] = {wq, wk, wk, wq};
    for (int i = 0; i < 4; i++) {
        if (!x[i])
            continue;
        size_t text = stream_rows(r, 0) * width[i], sum = stream_rows(r, 1) * width[i];
        memcpy(dst[i][0], x[i], text * sizeof(double));
        memcpy(dst[i][1], x[i] + text, sum * sizeof(double));
    }
}

static void op_ref(double *y, double *const *x, void *ctx)
{
    reference r;
    reference_of_combined(&r, ctx, (double *const[4]){x[0], x[1], x[2], NULL});
    ref_forward(&r);
    size_t text = stream_rows(&r, 0) * r.d.Hq * r.d.dh, sum = stream_rows(&r, 1) * r.d.Hq * r.d.dh;
    memcpy(y, r.o[0], text * sizeof *y);
    memcpy(y + text, r.o[1], sum * sizeof *y);
    ref_free(&r);
}

static void op_kernel(ksa_real *y, ksa_real *const *x, void *ctx)
{
    const attn_case *ac = ctx;
    const ksa_summary_attn_dims *d = &ac->d;
    size_t NS = ksa_summary_attn_summary_rows(d), text = d->nseq * d->T;
    int nt = ksa_threads_get();
    size_t bytes = ac->causal ? ksa_causal_attn_forward_workspace_size(d->T, d->dh, nt)
                              : ksa_summary_attn_forward_workspace_size(d, nt);
    void *ws = ksa_alloc(bytes);
    ksa_real *lse = alloc_reals(d->nseq * (d->T + NS) * d->Hq);
    if (ac->causal) {
        ksa_causal_attn_forward(y, lse, x[0], x[1], x[2], ws, bytes, d->nseq, d->T, d->Hq, d->Hkv,
                                d->dh);
    } else {
        size_t wq = d->Hq * d->dh, wk = d->Hkv * d->dh;
        ksa_attn_qkv in = {
            {x[0], x[0] + text * wq}, {x[1], x[1] + text * wk}, {x[2], x[2] + text * wk}};
        ksa_summary_attn_forward((ksa_attn_out){y, y + text * wq},
                                 (ksa_attn_out){lse, lse + text * d->Hq}, in, ws, bytes, d);
    }
    free(lse);
    ksa_free(ws);
}

opcheck_case attn_op_case(attn_case *ac, int q_no_grad)
{
    const ksa_summary_attn_dims *d = &ac->d;
    size_t rows = d->nseq * (d->T + ksa_summary_attn_summary_rows(d));
    size_t wq = d->Hq * d->dh, wk = d->Hkv * d->dh;
    opcheck_case cs = {.op = ac->causal ? "causal_attention" : "summary_attention", .n_in = 3};
    cs.in[0] = (opcheck_input){.name = "q", .ndim = 2, .shape = {rows, wq}, .lo = -2, .hi = 2};
    cs.in[1] = (opcheck_input){.name = "k", .ndim = 2, .shape = {rows, wk}, .lo = -2, .hi = 2};
    cs.in[2] = (opcheck_input){.name = "v", .ndim = 2, .shape = {rows, wk}, .lo = -1, .hi = 1};
    cs.in[0].no_grad = q_no_grad;
    cs.out_ndim = 2, cs.out_shape[0] = rows, cs.out_shape[1] = wq;
    cs.ctx = ac, cs.build = op_build, cs.ref = op_ref, cs.kernel = op_kernel;
    cs.fwd_atol = ATT_FWD_ATOL, cs.fwd_rtol = ATT_FWD_RTOL;
    return cs;
}

void attn_check_op_against_reference(const opcheck_run *run, const attn_case *ac)
{
    double *x[4];
    for (int i = 0; i < 3; i++)
        x[i] = test_to_double(run->in[i]->data, run->in[i]->numel);
    x[3] = test_to_double(run->y->grad, run->y->numel); /* dout as seeded */
    reference r;
    reference_of_combined(&r, ac, x);
    ref_forward(&r);
    ref_backward(&r);
    size_t wq = ac->d.Hq * ac->d.dh, wk = ac->d.Hkv * ac->d.dh;
    const ksa_real *got[4] = {run->y->data, run->in[0]->grad, run->in[1]->grad, run->in[2]->grad};
    double **want[4] = {r.o, r.dq, r.dk, r.dv};
    size_t width[4] = {wq, wq, wk, wk};
    static const char *const what[4] = {"op o", "op dq", "op dk", "op dv"};
    for (int i = 0; i < 4; i++) {
        if (!got[i]) /* an input without gradient (opcheck has checked it has none) */
            continue;
        double atol = i ? ATT_BWD_ATOL : ATT_FWD_ATOL, rtol = i ? ATT_BWD_RTOL : ATT_FWD_RTOL;
        size_t text = stream_rows(&r, 0) * width[i], sum = stream_rows(&r, 1) * width[i];
        ksa_expect_close(got[i], want[i][0], text, atol, rtol, describe_stream(ac, what[i], 0));
        ksa_expect_close(got[i] + text, want[i][1], sum, atol, rtol,
                         describe_stream(ac, what[i], 1));
    }
    for (int i = 0; i < 4; i++)
        free(x[i]);
    ref_free(&r);
}
