/* bench/context_parallel.c - context parallelism (dist/context.h): what one sequence split
 * over the P ranks of a context group moves, takes and holds per rank.
 *
 * Run under mpirun: P = the world size, one context group (P = 1: the whole sequence on one
 * rank, no MPI traffic). For each length L of --lengths, one sequence of L tokens through a
 * model of summary layers only (C = 8, S = 1, W = 128 by default), forward + backward
 * (--reps steps, the fastest kept), each rank its block. Printed per (P, L):
 *
 *   traffic  bytes sent per summary layer per step (forward + backward) from the ranks'
 *            counters (cp.traffic.summary_bytes / layers), the total over ranks and the
 *            largest rank's, each next to the formula of context.h's scheme: block r
 *            receives its text halo [h0, t0) and the summary rows [0, ns) of earlier blocks
 *            (ksa_cp_summary_needs), k and v of Hkv*dh reals each, and returns as many
 *            gradient rows in the backward; so in total 2 * sum_r (t0_r - h0_r + ns_r) *
 *            2 * Hkv*dh * sizeof(float); a rank sends forward the overlap of its own rows
 *            with every later block's needs and backward what it received.
 *            Next to it, what ring attention (cp_attn.c's causal layers) would move for the
 *            same sequence per layer: in round s = 1 ... P-1 block r sends its k and v
 *            (2 T_r Hkv*dh reals) to block r + s, forward and again in the backward, where
 *            block r also returns k and v gradients of block r - s (2 T_{r-s} Hkv*dh): in
 *            total 3 * sum_r 2 T_r (P-1-r) Hkv*dh * sizeof(float), rank r sending
 *            (4 T_r (P-1-r) + 2 sum_{q<r} T_q) Hkv*dh floats; and the ratio ring / summary.
 *   time     the step's wall time (the slowest rank's; ranks start together after a
 *            barrier) and its CPU time (user + sys of all threads, summed over the ranks;
 *            it includes MPI's busy waiting for messages).
 *   memory   the peak RSS of a rank during the step (VmHWM, reset before each L through
 *            /proc/self/clear_refs; the largest rank's) and its resident memory before the
 *            step, and the activation memory of the step: the arena peak plus the
 *            activation gradients' high water of ksa_model_plan for this rank's block (the
 *            largest rank's), next to ksa_model_plan of the whole sequence on one rank
 *            (P = 1, planned in the same run): per-rank activation memory / (P = 1's / P),
 *            whose target is 1 +- 20 %.
 *
 * --ring-length L2 (default 8192; 0: none) adds the check of both formulas against the
 * counters on a model with one summary and one causal layer (ring attention) at L2, short
 * enough for the causal layer's O(L2^2) work. Measured bytes (total and largest rank) that
 * differ from their formula, or attention calls other than one forward and one backward per
 * layer, make the exit status 1 (the tables show the numbers).
 *
 * Usage: mpirun -np P bench_context_parallel [--lengths 32768,65536,131072] [--layers 2]
 *            [--hidden 256] [--heads 4] [--kv-heads 2] [--head-dim 64] [--intermediate 512]
 *            [--vocab 512] [--C 8] [--S 1] [--W 128] [--ring-length 8192] [--reps 1]
 *            [--threads N] [--tsv FILE]
 * --threads defaults to the host's cores / the ranks on the host (at least 1); --tsv
 * appends one line of raw numbers per (P, L) to FILE (bench/context_parallel.sh combines
 * the runs of several P from them).                                                     */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "core/core.h"
#include "dist/context.h"
#include "dist/dist.h"
#include "model/decoder.h"

#define PROG "bench_context_parallel"
#define MAX_LENGTHS 16

typedef struct {
    size_t Ls[MAX_LENGTHS], nL;
    size_t layers, hidden, heads, kv_heads, head_dim, inter, vocab, C, S, W;
    size_t ring_L, reps, threads;
    const char *tsv;
} options;

static int rank, P;

static void usage(void)
{
    if (rank == 0)
        fprintf(stderr,
                "usage: mpirun -np P %s [--lengths 32768,65536,131072] [--layers 2]\n"
                "           [--hidden 256] [--heads 4] [--kv-heads 2] [--head-dim 64]\n"
                "           [--intermediate 512] [--vocab 512] [--C 8] [--S 1] [--W 128]\n"
                "           [--ring-length 8192] [--reps 1] [--threads N] [--tsv FILE]\n",
                PROG);
    MPI_Finalize();
    exit(2);
}

static options parse(int argc, char **argv)
{
    options o = {.Ls = {32768, 65536, 131072},
                 .nL = 3,
                 .layers = 2,
                 .hidden = 256,
                 .heads = 4,
                 .kv_heads = 2,
                 .head_dim = 64,
                 .inter = 512,
                 .vocab = 512,
                 .C = 8,
                 .S = 1,
                 .W = 128,
                 .ring_L = 8192,
                 .reps = 1};
    struct {
        const char *name;
        size_t *v;
        int zero_ok;
    } sizes[] = {{"--layers", &o.layers, 0},
                 {"--hidden", &o.hidden, 0},
                 {"--heads", &o.heads, 0},
                 {"--kv-heads", &o.kv_heads, 0},
                 {"--head-dim", &o.head_dim, 0},
                 {"--intermediate", &o.inter, 0},
                 {"--vocab", &o.vocab, 0},
                 {"--C", &o.C, 0},
                 {"--S", &o.S, 0},
                 {"--W", &o.W, 1},
                 {"--ring-length", &o.ring_L, 1},
                 {"--reps", &o.reps, 0},
                 {"--threads", &o.threads, 0}};
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *a = argv[i], *v = argv[++i];
        size_t k = 0, n = sizeof sizes / sizeof sizes[0];
        while (k < n && strcmp(a, sizes[k].name))
            k++;
        if (k < n)
            *sizes[k].v = bench_parse_size(PROG, v, a, sizes[k].zero_ok);
        else if (!strcmp(a, "--lengths"))
            o.nL = bench_parse_sizes(PROG, v, a, o.Ls, MAX_LENGTHS);
        else if (!strcmp(a, "--tsv"))
            o.tsv = v;
        else
            usage();
    }
    return o;
}

/* ---- the model ------------------------------------------------------------------------ */
static void set_key(ksa_model_config *c, const char *key, const char *value)
{
    if (ksa_model_config_set(c, key, value, PROG) != KSA_OK) {
        fprintf(stderr, "%s: %s\n", PROG, ksa_last_error());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
}

static void set_size(ksa_model_config *c, const char *key, size_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%zu", v);
    set_key(c, key, buf);
}

/* summary layers only, or (ring) a summary layer and a causal one */
static void make_model(ksa_model *m, const options *o, size_t max_L, int ring)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    set_size(&c, "vocab_size", o->vocab);
    set_size(&c, "hidden_size", o->hidden);
    set_size(&c, "intermediate_size", o->inter);
    set_size(&c, "num_hidden_layers", ring ? 2 : o->layers);
    set_size(&c, "num_attention_heads", o->heads);
    set_size(&c, "num_key_value_heads", o->kv_heads);
    set_size(&c, "head_dim", o->head_dim);
    set_size(&c, "max_position_embeddings", max_L);
    set_key(&c, "use_summary_attention", "true");
    set_size(&c, "summary_chunk_size", o->C);
    set_size(&c, "summary_token_num", o->S);
    set_size(&c, "summary_sliding_chunk_num", o->W);
    set_key(&c, "summary_layer_freq", ring ? "[1,0]" : "0");
    set_key(&c, "summary_independent_parameters", "true");
    set_key(&c, "tie_word_embeddings", "true");
    if (ksa_model_init(m, &c) != KSA_OK) {
        fprintf(stderr, "%s: %s\n", PROG, ksa_last_error());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    ksa_model_init_weights(m, 7);
}

/* ---- the formulas ---------------------------------------------------------------------- */
static size_t overlap(size_t a0, size_t a1, size_t b0, size_t b1)
{
    size_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

/* Rows (k and v counted once) block p sends per summary layer: forward, the overlap of its
 * text rows with every later block's halo and of its summary rows with their summary
 * needs; backward, the gradients of what it received (its own halo and summaries). */
static size_t summary_rows_sent(const ksa_cp *cp, int p, size_t C, size_t S, size_t W)
{
    size_t s0 = cp->start[p], e0 = cp->start[p + 1], h0, ns, rows = 0;
    for (int r = p + 1; r < cp->P; r++) {
        ksa_cp_summary_needs(cp, r, C, S, W, &h0, &ns);
        rows += overlap(h0, cp->start[r], s0, e0) + overlap(0, ns, s0 / C * S, e0 / C * S);
    }
    ksa_cp_summary_needs(cp, p, C, S, W, &h0, &ns);
    return rows + (s0 - h0) + ns;
}

/* Rows (k and v counted once) block r sends per causal layer (ring attention). */
static size_t ring_rows_sent(const ksa_cp *cp, int r)
{
    size_t rows = 4 * (cp->start[r + 1] - cp->start[r]) * (size_t)(cp->P - 1 - r);
    for (int q = 0; q < r; q++)
        rows += 2 * (cp->start[q + 1] - cp->start[q]);
    return rows;
}

typedef struct {
    double total, most; /* bytes per layer per step: over all ranks, the largest rank's */
} bytes;

static bytes summary_formula(const ksa_cp *cp, const options *o, size_t bytes_per_row)
{
    bytes b = {0, 0};
    for (int p = 0; p < cp->P; p++) {
        double x = (double)summary_rows_sent(cp, p, o->C, o->S, o->W) * 2 * (double)bytes_per_row;
        b.total += x, b.most = x > b.most ? x : b.most;
    }
    return b;
}

static bytes ring_formula(const ksa_cp *cp, size_t bytes_per_row)
{
    bytes b = {0, 0};
    for (int r = 0; r < cp->P; r++) {
        double x = (double)ring_rows_sent(cp, r) * (double)bytes_per_row;
        b.total += x, b.most = x > b.most ? x : b.most;
    }
    return b;
}

/* ---- memory ---------------------------------------------------------------------------- */
/* A /proc/self/status line in MiB (ksa_proc_status_bytes). */
static double status_mib(const char *key)
{
    return (double)ksa_proc_status_bytes(key) / (1 << 20);
}

/* ---- one (P, L) ------------------------------------------------------------------------ */
typedef struct {
    size_t L, T_most;
    double loss;
    bytes sum_meas, sum_form, ring_form, ring_meas; /* per layer per step */
    double wall, cpu, rss_peak, rss_before;         /* wall: slowest rank; cpu: summed */
    double act, act1;                               /* MiB: per rank (largest), P = 1 */
    int peak_reset, calls_ok;
} result;

static double max_over_ranks(double x)
{
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return x;
}
static double sum_over_ranks(double x)
{
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return x;
}

static int32_t *sequence(size_t L, size_t V)
{
    int32_t *t = ksa_alloc((L + 1) * sizeof *t);
    uint64_t x = 12345;
    for (size_t i = 0; i <= L; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((x >> 33) % V);
    }
    return t;
}

static double activation_mib(const ksa_model *m, size_t T)
{
    ksa_step_memory s = ksa_model_plan(m, 1, T, 1);
    return (double)(s.arena_peak + s.grads_high_water) / (1 << 20);
}

/* One sequence of L tokens, this rank's block, --reps steps. n_summary / n_causal: the
 * model's layers of each kind (the counters are divided by them). */
static result run(ksa_model *m, const options *o, size_t L, size_t n_summary, size_t n_causal)
{
    result r = {.L = L};
    ksa_cp cp;
    if (ksa_cp_init(&cp, P, L, o->C) != KSA_OK) {
        fprintf(stderr, "%s: %s\n", PROG, ksa_last_error());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    size_t t0 = ksa_cp_block_start(&cp), T = ksa_cp_block_len(&cp);
    r.T_most = (size_t)max_over_ranks((double)T);
    m->cp = NULL;
    r.act1 = activation_mib(m, L);
    m->cp = &cp;
    r.act = max_over_ranks(activation_mib(m, T));
    int32_t *tokens = sequence(L, m->V);
    ksa_arena arena;
    ksa_grad_pool pool;
    ksa_tape tp;
    MPI_Barrier(MPI_COMM_WORLD);
    r.peak_reset = (int)max_over_ranks(!ksa_reset_peak_rss()) == 0;
    r.rss_before = max_over_ranks(status_mib("VmRSS"));
    ksa_model_tape_init(m, 1, T, 1, &arena, &pool, &tp);
    r.wall = 1e30;
    for (size_t rep = 0; rep < o->reps; rep++) {
        memset(&cp.traffic, 0, sizeof cp.traffic);
        ksa_tape_reset(&tp);
        ksa_params_zero_grad(&m->params);
        MPI_Barrier(MPI_COMM_WORLD);
        double w0 = ksa_now(), c0 = ksa_cpu_seconds(), loss = 0;
        ksa_tensor *l = ksa_model_forward(m, &tp, tokens + t0, 1, T, (double)L, &loss, NULL);
        ksa_tape_backward(&tp, l);
        double wall = max_over_ranks(ksa_now() - w0), cpu = sum_over_ranks(ksa_cpu_seconds() - c0);
        if (wall < r.wall)
            r.wall = wall, r.cpu = cpu;
        r.loss = sum_over_ranks(loss);
    }
    ksa_model_tape_free(&arena, &pool, &tp);
    r.rss_peak = max_over_ranks(status_mib(r.peak_reset ? "VmHWM" : "VmRSS"));
    /* the last step's counters, per layer */
    const ksa_cp_traffic *t = &cp.traffic;
    double sb = n_summary ? (double)t->summary_bytes / (double)n_summary : 0;
    double rb = n_causal ? (double)t->ring_bytes / (double)n_causal : 0;
    r.sum_meas = (bytes){sum_over_ranks(sb), max_over_ranks(sb)};
    r.ring_meas = (bytes){sum_over_ranks(rb), max_over_ranks(rb)};
    /* one forward and one backward call per layer (none with P = 1: the plain kernels) */
    int calls = P == 1 || (t->summary_calls == 2 * n_summary && t->ring_calls == 2 * n_causal);
    r.calls_ok = (int)max_over_ranks(!calls) == 0;
    size_t row = m->Hkv * m->dh * sizeof(ksa_real);
    r.sum_form = P > 1 ? summary_formula(&cp, o, row) : (bytes){0, 0};
    r.ring_form = P > 1 ? ring_formula(&cp, row) : (bytes){0, 0};
    m->cp = NULL;
    ksa_free(tokens);
    ksa_cp_free(&cp);
    return r;
}

/* ---- printing -------------------------------------------------------------------------- */
static double mib(double b)
{
    return b / (1 << 20);
}

/* "exact", or the relative difference (both per layer per step) */
static const char *agreement(char *buf, size_t n, bytes meas, bytes form)
{
    if (meas.total == form.total && meas.most == form.most)
        snprintf(buf, n, "exact");
    else
        snprintf(buf, n, "DIFFERS (total %+.3g %%, largest rank %+.3g %%)",
                 100 * (meas.total / form.total - 1), 100 * (meas.most / form.most - 1));
    return buf;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

/* "12.3x", or "-" without traffic (P = 1) */
static const char *times(char buf[24], double a, double b)
{
    if (b > 0)
        snprintf(buf, 24, "%.1fx", a / b);
    else
        snprintf(buf, 24, "-");
    return buf;
}

int main(int argc, char **argv)
{
    if (ksa_dist_init(&argc, &argv) != KSA_OK) {
        fprintf(stderr, "%s: %s\n", PROG, ksa_last_error());
        return 1;
    }
    rank = ksa_dist_rank(), P = ksa_dist_size();
    options o = parse(argc, argv);
    if (o.heads % o.kv_heads) {
        if (rank == 0)
            fprintf(stderr, "%s: --heads %zu is not a multiple of --kv-heads %zu\n", PROG, o.heads,
                    o.kv_heads);
        usage();
    }
    /* a length the grid cannot split fails alike on every rank: one message, no abort */
    for (size_t i = 0; i <= o.nL; i++) {
        size_t L = i < o.nL ? o.Ls[i] : o.ring_L;
        if (L && ksa_cp_check(P, P, L, o.C) != KSA_OK) {
            if (rank == 0)
                fprintf(stderr, "%s: %s (%s %zu)\n", PROG, ksa_last_error(),
                        i < o.nL ? "--lengths" : "--ring-length", L);
            MPI_Finalize();
            return 2;
        }
    }
    if (!o.threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int local = ksa_dist_local_size();
        o.threads = cores / local > 0 ? (size_t)(cores / local) : 1;
    }
    ksa_threads_set((int)o.threads);
    size_t max_L = o.ring_L;
    for (size_t i = 0; i < o.nL; i++)
        max_L = o.Ls[i] > max_L ? o.Ls[i] : max_L;
    ksa_model m, mr;
    make_model(&m, &o, max_L, 0);
    char cpu[128];
    bench_cpu_name(cpu, sizeof cpu);
    if (rank == 0) {
        printf("context-parallel benchmark (%s): P = %d ranks, one context group, %zu "
               "thread%s per rank\n",
               KSA_REAL_NAME, P, o.threads, o.threads == 1 ? "" : "s");
        printf("model: %zu summary layers (C = %zu, S = %zu, W = %zu), hidden %zu, %zu query "
               "and %zu kv heads of %zu, intermediate %zu, vocabulary %zu: %zu parameters\n",
               o.layers, o.C, o.S, o.W, o.hidden, o.heads, o.kv_heads, o.head_dim, o.inter, o.vocab,
               m.params.numel);
        printf("machine: %s, %ld cores; one sequence per step, forward + backward, fastest of "
               "%zu\n",
               cpu, sysconf(_SC_NPROCESSORS_ONLN), o.reps);
        printf("bytes are per layer per step (forward + backward), sent, k and v rows of "
               "Hkv*dh = %zu floats; ring = ring attention's for the same sequence (formula)\n\n",
               m.Hkv * m.dh);
        printf("| P | L | block rows | summary MiB total: measured | formula | largest rank: "
               "measured | formula | ring MiB total | ring largest rank | ring / summary "
               "total | largest |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
        fflush(stdout);
    }
    result res[MAX_LENGTHS];
    int bad = 0;
    for (size_t i = 0; i < o.nL; i++) {
        result *r = &res[i];
        *r = run(&m, &o, o.Ls[i], o.layers, 0);
        if (P > 1 && (r->sum_meas.total != r->sum_form.total ||
                      r->sum_meas.most != r->sum_form.most || !r->calls_ok))
            bad = 1;
        if (rank == 0) {
            char x[24], y[24];
            printf("| %d | %zu | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s |\n", P,
                   r->L, r->T_most, mib(r->sum_meas.total), mib(r->sum_form.total),
                   mib(r->sum_meas.most), mib(r->sum_form.most), mib(r->ring_form.total),
                   mib(r->ring_form.most), times(x, r->ring_form.total, r->sum_form.total),
                   times(y, r->ring_form.most, r->sum_form.most));
            fflush(stdout);
        }
    }
    if (rank == 0) {
        printf("\n| P | L | step wall s | CPU s (all ranks) | loss | peak RSS MiB per rank | RSS "
               "before MiB | activations MiB per rank (plan) | P = 1 (plan) | per rank / (P = 1 "
               "/ P) |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < o.nL; i++) {
            result *r = &res[i];
            printf("| %d | %zu | %.2f | %.2f | %.6f | %.1f%s | %.1f | %.1f | %.1f | %.3f |\n", P,
                   r->L, r->wall, r->cpu, r->loss, r->rss_peak, r->peak_reset ? "" : " (now)",
                   r->rss_before, r->act, r->act1, r->act / (r->act1 / P));
        }
    }
    /* the formulas against the counters of a summary and a causal layer (ring attention) */
    if (o.ring_L) {
        make_model(&mr, &o, max_L, 1);
        result r = run(&mr, &o, o.ring_L, 1, 1);
        char a[96], b[96];
        if (P > 1 && (r.sum_meas.total != r.sum_form.total || r.sum_meas.most != r.sum_form.most ||
                      r.ring_meas.total != r.ring_form.total ||
                      r.ring_meas.most != r.ring_form.most || !r.calls_ok))
            bad = 1;
        if (rank == 0) {
            printf("\ncheck of the formulas: a summary layer and a causal layer (ring "
                   "attention), L = %zu, P = %d (MiB per layer per step: total, largest rank)\n\n",
                   o.ring_L, P);
            printf("| layer | measured | formula | agreement |\n|---|---|---|---|\n");
            printf("| summary | %.3f, %.3f | %.3f, %.3f | %s |\n", mib(r.sum_meas.total),
                   mib(r.sum_meas.most), mib(r.sum_form.total), mib(r.sum_form.most),
                   P > 1 ? agreement(a, sizeof a, r.sum_meas, r.sum_form) : "no traffic (P = 1)");
            printf("| causal (ring) | %.3f, %.3f | %.3f, %.3f | %s |\n", mib(r.ring_meas.total),
                   mib(r.ring_meas.most), mib(r.ring_form.total), mib(r.ring_form.most),
                   P > 1 ? agreement(b, sizeof b, r.ring_meas, r.ring_form) : "no traffic (P = 1)");
            char x[24];
            printf("ring / summary at L = %zu: %s (total); step %.2f s wall\n", o.ring_L,
                   times(x, r.ring_form.total, r.sum_form.total), r.wall);
        }
        ksa_model_free(&mr);
    }
    /* the targets */
    if (rank == 0) {
        printf("\ntargets:\n");
        for (size_t i = 0; i < o.nL; i++) {
            result *r = &res[i];
            double x = r->act / (r->act1 / P);
            printf("  L = %zu: activation memory per rank %.1f MiB = %.3f x (P = 1's %.1f MiB / "
                   "%d): %s\n",
                   r->L, r->act, x, r->act1, P,
                   x <= 1.2 && x >= 0.8 ? "within 20 %: holds" : "not within 20 %: misses");
            double rt = ratio(r->ring_form.total, r->sum_meas.total);
            if (P > 1)
                printf("  L = %zu: summary-layer traffic %.1fx below ring attention's in total, "
                       "%.1fx for the largest rank%s\n",
                       r->L, rt, ratio(r->ring_form.most, r->sum_meas.most),
                       r->L != 131072 ? ""
                       : rt >= 10     ? " (target at 131072: >= 10x): holds"
                                      : " (target at 131072: >= 10x): misses");
        }
        if (P > 1)
            printf("  counters equal to the formulas (bytes), every (P, L): %s\n",
                   bad ? "NO (see above)" : "yes");
    }
    if (rank == 0 && o.tsv) {
        FILE *f = fopen(o.tsv, "a");
        if (!f) {
            fprintf(stderr, "%s: cannot open '%s' to append\n", PROG, o.tsv);
            bad = 1;
        }
        for (size_t i = 0; f && i < o.nL; i++) {
            result *r = &res[i];
            fprintf(
                f,
                "%d\t%zu\t%zu\t%zu\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.4f\t%.4f\t%.6f\t%.1f\t"
                "%.1f\t%.1f\t%.1f\n",
                P, o.threads, r->L, r->T_most, r->sum_meas.total, r->sum_form.total,
                r->sum_meas.most, r->sum_form.most, r->ring_form.total, r->ring_form.most, r->wall,
                r->cpu, r->loss, r->rss_peak, r->rss_before, r->act, r->act1);
        }
        if (f)
            fclose(f);
    }
    ksa_model_free(&m);
    ksa_dist_finalize();
    return bad;
}
