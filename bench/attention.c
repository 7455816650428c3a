/* bench/attention.c - summary attention vs causal attention, forward + backward.
 *
 * For each T: the median (of --reps runs) wall time of forward + backward of
 *   summary attention (C = 8, S = 1, W = 128; text and summary queries), and
 *   causal attention over the T text tokens,
 * nseq 1, 4 query heads, 4 kv heads, head_dim 64 (defaults; see --help). Printed next to:
 *   the measured speed-up (causal time / summary time),
 *   the theoretical speed-up = visible (query, key) pairs of causal / of summary
 *     (KSA_SPEC §3.5: text query of chunk c, offset o sees (o+1) + C·min(c,W) + S·max(0,c-W)
 *     keys, summary query s_c.j sees C + j + 1, causal query t sees t + 1),
 *   achieved GFLOP/s of each, counting 4·dh·Hq FLOP per visible pair forward (QKᵀ, PV)
 *     and 8·dh·Hq backward (QKᵀ, dO·Vᵀ, dQ, dK, dV minus the recomputation of QKᵀ),
 *   and the same run's measured sgemm peak (one large square sgemm, all threads).
 *
 * Usage: attention [--T 1024,4096,16384,65536] [--reps 3] [--threads 2]
 *                  [--heads 4] [--kv-heads 4] [--head-dim 64] [--C 8] [--S 1] [--W 128]  */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "autograd/blas.h"
#include "core/core.h"
#include "core/rng.h"
#include "model/causal_attn.h"
#include "model/summary_attn.h"

typedef struct {
    size_t Ts[16], nT;
    int reps, threads;
    size_t Hq, Hkv, dh, C, S, W;
} options;

static void usage(void)
{
    fprintf(stderr, "usage: attention [--T 1024,4096,16384,65536] [--reps 3] [--threads 2]\n"
                    "                 [--heads 4] [--kv-heads 4] [--head-dim 64] [--C 8] [--S 1]"
                    " [--W 128]\n");
    exit(2);
}

static options parse(int argc, char **argv)
{
    options o = {.Ts = {1024, 4096, 16384, 65536},
                 .nT = 4,
                 .reps = 3,
                 .threads = 2,
                 .Hq = 4,
                 .Hkv = 4,
                 .dh = 64,
                 .C = 8,
                 .S = 1,
                 .W = 128};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--T")) {
            o.nT = bench_parse_sizes("attention", v, a, o.Ts, sizeof o.Ts / sizeof o.Ts[0]);
        } else if (!strcmp(a, "--reps"))
            o.reps = (int)bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--threads"))
            o.threads = (int)bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--heads"))
            o.Hq = bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--kv-heads"))
            o.Hkv = bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--head-dim"))
            o.dh = bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--C"))
            o.C = bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--S"))
            o.S = bench_parse_size("attention", v, a, 0);
        else if (!strcmp(a, "--W"))
            o.W = strtoull(v, NULL, 10);
        else
            usage();
    }
    if (o.Hq % o.Hkv) {
        fprintf(stderr, "attention: --heads %zu is not a multiple of --kv-heads %zu\n", o.Hq,
                o.Hkv);
        exit(2);
    }
    return o;
}

/* ---- visible pairs (KSA_SPEC §3.5, summed per query; any T) ------------------------------ */
static double summary_pairs(size_t T, size_t C, size_t S, size_t W)
{
    double pairs = 0;
    for (size_t t = 0; t < T; t++) {
        size_t c = t / C, o = t % C;
        pairs += (double)(o + 1 + C * (c < W ? c : W) + S * (c > W ? c - W : 0));
    }
    for (size_t c = 0; c < T / C; c++)
        for (size_t j = 0; j < S; j++)
            pairs += (double)(C + j + 1);
    return pairs;
}

static double causal_pairs(size_t T)
{
    return (double)T * (double)(T + 1) / 2;
}

/* ---- timing --------------------------------------------------------------------------- */
static ksa_real *randoms(size_t n, ksa_rng *rng)
{
    ksa_real *x = ksa_alloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (ksa_real)(ksa_rng_uniform(rng) * 2 - 1);
    return x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

typedef struct {
    double fwd, bwd, total; /* seconds */
} timing;

/* One kernel's buffers for a given T: inputs, outputs, gradients, workspace. */
typedef struct {
    int summary;
    ksa_summary_attn_dims d; /* for causal: C, S, W unused */
    size_t tq, tk;           /* elements of the text part of q-shaped / k-shaped arrays */
    ksa_real *q, *k, *v, *dout, *o, *lse, *dq, *dk, *dv;
    void *ws;
    size_t wb;
} run;

static void run_init(run *r, const options *op, size_t T, int summary)
{
    memset(r, 0, sizeof *r);
    r->summary = summary;
    r->d = (ksa_summary_attn_dims){.nseq = 1,
                                   .T = T,
                                   .C = op->C,
                                   .S = op->S,
                                   .W = op->W,
                                   .Hq = op->Hq,
                                   .Hkv = op->Hkv,
                                   .dh = op->dh};
    size_t rows = T + (summary ? ksa_summary_attn_summary_rows(&r->d) : 0);
    size_t nq = rows * op->Hq * op->dh, nk = rows * op->Hkv * op->dh;
    r->tq = T * op->Hq * op->dh, r->tk = T * op->Hkv * op->dh;
    ksa_rng st = ksa_rng_at(42);
    r->q = randoms(nq, &st), r->k = randoms(nk, &st), r->v = randoms(nk, &st);
    r->dout = randoms(nq, &st);
    r->o = ksa_alloc(nq * sizeof(ksa_real)), r->lse = ksa_alloc(rows * op->Hq * sizeof(ksa_real));
    r->dq = ksa_alloc_zero(nq * sizeof(ksa_real)), r->dk = ksa_alloc_zero(nk * sizeof(ksa_real));
    r->dv = ksa_alloc_zero(nk * sizeof(ksa_real));
    size_t fb, bb;
    if (summary) {
        fb = ksa_summary_attn_forward_workspace_size(&r->d, ksa_threads_get());
        bb = ksa_summary_attn_backward_workspace_size(&r->d, ksa_threads_get());
    } else {
        fb = ksa_causal_attn_forward_workspace_size(T, op->dh, ksa_threads_get());
        bb = ksa_causal_attn_backward_workspace_size(T, op->dh, ksa_threads_get());
    }
    r->wb = fb > bb ? fb : bb;
    r->ws = ksa_alloc(r->wb);
}

static void run_free(run *r)
{
    ksa_free(r->q), ksa_free(r->k), ksa_free(r->v), ksa_free(r->dout), ksa_free(r->o);
    ksa_free(r->lse), ksa_free(r->dq), ksa_free(r->dk), ksa_free(r->dv), ksa_free(r->ws);
}

/* Forward then backward once. */
static timing run_once(run *r)
{
    const ksa_summary_attn_dims *d = &r->d;
    size_t tq = r->tq, tk = r->tk, tl = d->T * d->Hq;
    ksa_attn_qkv qkv = {{r->q, r->q + tq}, {r->k, r->k + tk}, {r->v, r->v + tk}};
    double t0 = ksa_now();
    if (r->summary)
        ksa_summary_attn_forward((ksa_attn_out){r->o, r->o + tq},
                                 (ksa_attn_out){r->lse, r->lse + tl}, qkv, r->ws, r->wb, d);
    else
        ksa_causal_attn_forward(r->o, r->lse, r->q, r->k, r->v, r->ws, r->wb, 1, d->T, d->Hq,
                                d->Hkv, d->dh);
    double t1 = ksa_now();
    if (r->summary)
        ksa_summary_attn_backward(
            (ksa_attn_out){r->dq, r->dq + tq}, (ksa_attn_out){r->dk, r->dk + tk},
            (ksa_attn_out){r->dv, r->dv + tk}, (ksa_attn_in){r->dout, r->dout + tq}, qkv,
            (ksa_attn_in){r->o, r->o + tq}, (ksa_attn_in){r->lse, r->lse + tl}, r->ws, r->wb, d);
    else
        ksa_causal_attn_backward(r->dq, r->dk, r->dv, r->dout, r->q, r->k, r->v, r->o, r->lse,
                                 r->ws, r->wb, 1, d->T, d->Hq, d->Hkv, d->dh);
    double t2 = ksa_now();
    return (timing){t1 - t0, t2 - t1, t2 - t0};
}

/* Medians over reps; the two kernels' repetitions alternate, so that a slow phase of the
 * (shared) machine hits both.                                                            */
static void time_pair(const options *op, size_t T, timing *ts, timing *tc)
{
    run s, c;
    run_init(&s, op, T, 1);
    run_init(&c, op, T, 0);
    double sf[64], sb[64], st[64], cf[64], cb[64], ct[64];
    for (int r = 0; r < op->reps; r++) {
        timing a = run_once(&s), b = run_once(&c);
        sf[r] = a.fwd, sb[r] = a.bwd, st[r] = a.total;
        cf[r] = b.fwd, cb[r] = b.bwd, ct[r] = b.total;
    }
    *ts = (timing){median(sf, op->reps), median(sb, op->reps), median(st, op->reps)};
    *tc = (timing){median(cf, op->reps), median(cb, op->reps), median(ct, op->reps)};
    run_free(&s);
    run_free(&c);
}

/* Best of 3 large square sgemms (n = 3072) with all threads: the machine's peak. */
static double sgemm_peak(void)
{
    size_t n = 3072;
    ksa_rng st = ksa_rng_at(7);
    ksa_real *a = randoms(n * n, &st), *b = randoms(n * n, &st), *c = ksa_alloc(n * n * sizeof *c);
    double best = 1e30;
    for (int r = 0; r < 4; r++) { /* the first run warms up the thread pool */
        double t0 = ksa_now();
        ksa_gemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
        double t = ksa_now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    ksa_free(a), ksa_free(b), ksa_free(c);
    return 2.0 * (double)n * (double)n * (double)n / best / 1e9;
}

int main(int argc, char **argv)
{
    options op = parse(argc, argv);
    if (op.reps > 64)
        op.reps = 64;
    ksa_threads_set(op.threads);
    char cpu[128];
    bench_cpu_name(cpu, sizeof cpu);
    double peak = sgemm_peak();
    printf("attention benchmark (%s): nseq 1, Hq %zu, Hkv %zu, head_dim %zu, %d threads, "
           "median of %d\n",
           KSA_REAL_NAME, op.Hq, op.Hkv, op.dh, op.threads, op.reps);
    printf("summary attention C = %zu, S = %zu, W = %zu; causal attention over the text\n", op.C,
           op.S, op.W);
    printf("machine: %s, %d threads; sgemm peak (3072^3, %d threads): %.1f GFLOP/s\n", cpu,
           ksa_threads_get(), op.threads, peak);
    printf("FLOP counted per visible (query, key) pair: 4*dh*Hq forward + 8*dh*Hq backward\n\n");
    printf("| T | summary fwd+bwd (s) | causal fwd+bwd (s) | speed-up measured | speed-up "
           "theoretical | measured/theoretical | summary GFLOP/s | causal GFLOP/s | summary "
           "%% peak | causal %% peak |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (size_t i = 0; i < op.nT; i++) {
        size_t T = op.Ts[i];
        timing s, c;
        time_pair(&op, T, &s, &c);
        double ps = summary_pairs(T, op.C, op.S, op.W), pc = causal_pairs(T);
        double per_pair = 12.0 * (double)op.dh * (double)op.Hq;
        double gs = ps * per_pair / s.total / 1e9, gc = pc * per_pair / c.total / 1e9;
        double meas = c.total / s.total, theo = pc / ps;
        printf("| %zu | %.3f (%.3f + %.3f) | %.3f (%.3f + %.3f) | %.2fx | %.2fx | %.0f%% | %.1f | "
               "%.1f | %.0f%% | %.0f%% |\n",
               T, s.total, s.fwd, s.bwd, c.total, c.fwd, c.bwd, meas, theo, 100 * meas / theo, gs,
               gc, 100 * gs / peak, 100 * gc / peak);
        fflush(stdout);
    }
    return 0;
}
