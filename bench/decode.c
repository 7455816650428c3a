/* bench/decode.c - generation with the KV cache: KSA vs causal, cache size and speed.
 *
 * The model is configs/small.conf's backbone (hidden 512, intermediate 1536, 8 layers, 8
 * query heads, 4 kv heads, head_dim 64, vocabulary 257, tied embeddings) with every layer a
 * summary layer (C = 8, S = 1, W = 128 by default; independent summary parameters), and its
 * peer, the same model with use_summary_attention = false (plain causal: every layer caches
 * all text). max_position_embeddings is set to fit the longest context. For each T:
 *
 *   cache after a context of T tokens (per sequence, all layers): bytes allocated and live
 *     (ksa_decoder_memory_of), causal / KSA, and the ratio KSA_SPEC §8.7 predicts, causal T
 *     rows per layer over (T mod C) + C·min(T div C, W) + S·(T div C) live rows;
 *   decode: --B sequences of T synthetic tokens (ksa_decoder_fill_synthetic: random cached
 *     keys and values, so that 64k and 128k need no prefill), one warm-up step (it also
 *     grows the caches to their final size), then --reps runs of N batched steps (--steps;
 *     default 16, 8 beyond 16k: a multiple of C, so that every run completes as many
 *     chunks), KSA and causal runs alternating (run r starts at context T + 1 + r·N);
 *     median tokens/s and µs per step, and µs per step over that at the first T whose
 *     window is full (T >= W·C): how the cost grows with the context;
 *   memory a decode step reads: the weights, once, and the cached rows its queries attend
 *     to (KSA_SPEC §3.5), per step and per second, against the machine's read bandwidth
 *     measured at the start (a sum over 1 GiB, all threads): the bound of a decode step;
 *   prefill: ksa_decoder_prefill of a random prompt of T tokens (median of --prefill-reps,
 *     the two models alternating), for T <= --prefill-max only: causal prefill is quadratic.
 * Wall times are next to process CPU time (all threads, CLOCK_PROCESS_CPUTIME_ID): the
 * machine is shared, and CPU / wall says how many cores a phase really had.
 *
 * Usage: decode [--T 1024,4096,16384,65536,131072] [--reps 5] [--steps 16|8] [--B 1]
 *               [--prefill-reps 3] [--prefill-max 16384] [--threads 2]
 *               [--C 8] [--S 1] [--W 128]                                                */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "core/core.h"
#include "core/rng.h"
#include "model/decode.h"
#include "model/decoder.h"

enum { MAX_T = 16, MAX_REPS = 64 };

typedef struct {
    size_t Ts[MAX_T], nT;
    size_t reps, steps, B, prefill_reps, prefill_max; /* steps 0: 16, 8 beyond 16k */
    int threads;
    size_t C, S, W;
} options;

static void print_usage(FILE *f)
{
    fprintf(f,
            "usage: decode [--T 1024,4096,16384,65536,131072] [--reps 5] [--steps 16|8] [--B 1]\n"
            "              [--prefill-reps 3] [--prefill-max 16384] [--threads 2]\n"
            "              [--C 8] [--S 1] [--W 128]\n");
}

static void usage(void)
{
    print_usage(stderr);
    exit(2);
}

/* A non-negative integer (positive unless zero_ok), ended by '\0' or ','. */
static options parse(int argc, char **argv)
{
    options o = {.Ts = {1024, 4096, 16384, 65536, 131072},
                 .nT = 5,
                 .reps = 5,
                 .B = 1,
                 .prefill_reps = 3,
                 .prefill_max = 16384,
                 .threads = 2,
                 .C = 8,
                 .S = 1,
                 .W = 128};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "decode: %s needs a value\n", argv[i]);
            usage();
        }
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--T")) {
            o.nT = bench_parse_sizes("decode", v, a, o.Ts, MAX_T);
        } else if (!strcmp(a, "--reps"))
            o.reps = bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--steps"))
            o.steps = bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--B"))
            o.B = bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--prefill-reps"))
            o.prefill_reps = bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--prefill-max"))
            o.prefill_max = bench_parse_size("decode", v, a, 1);
        else if (!strcmp(a, "--threads"))
            o.threads = (int)bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--C"))
            o.C = bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--S"))
            o.S = bench_parse_size("decode", v, a, 0);
        else if (!strcmp(a, "--W"))
            o.W = bench_parse_size("decode", v, a, 1);
        else {
            fprintf(stderr, "decode: unknown option '%s'\n", a);
            usage();
        }
    }
    if (o.nT == 0) {
        fprintf(stderr, "decode: --T needs at least one length\n");
        exit(2);
    }
    if (o.reps > MAX_REPS || o.prefill_reps > MAX_REPS) {
        fprintf(stderr, "decode: --reps and --prefill-reps take at most %d\n", MAX_REPS);
        exit(2);
    }
    return o;
}

/* ---- the two models --------------------------------------------------------------------- */
static void check(ksa_status st, const char *what)
{
    if (st != KSA_OK) {
        fprintf(stderr, "decode: %s: %s\n", what, ksa_last_error());
        exit(1);
    }
}

static void set(ksa_model_config *c, const char *key, const char *value)
{
    check(ksa_model_config_set(c, key, value, "bench"), key);
}

/* configs/small.conf's backbone; summary = 1: every layer a summary layer (C, S, W of the
 * options), summary = 0: the causal peer. */
static void model_init(ksa_model *m, const options *op, int summary, size_t max_pos)
{
    ksa_model_config c;
    char buf[64];
    ksa_model_config_defaults(&c);
    set(&c, "vocab_size", "257");
    set(&c, "hidden_size", "512");
    set(&c, "intermediate_size", "1536");
    set(&c, "num_hidden_layers", "8");
    set(&c, "num_attention_heads", "8");
    set(&c, "num_key_value_heads", "4");
    set(&c, "head_dim", "64");
    set(&c, "rope_theta", "10000");
    set(&c, "rms_norm_eps", "1e-6");
    set(&c, "tie_word_embeddings", "true");
    snprintf(buf, sizeof buf, "%zu", max_pos);
    set(&c, "max_position_embeddings", buf);
    set(&c, "use_summary_attention", summary ? "true" : "false");
    snprintf(buf, sizeof buf, "%zu", op->C);
    set(&c, "summary_chunk_size", buf);
    snprintf(buf, sizeof buf, "%zu", op->S);
    set(&c, "summary_token_num", buf);
    snprintf(buf, sizeof buf, "%zu", op->W);
    set(&c, "summary_sliding_chunk_num", buf);
    set(&c, "summary_layer_freq", "[1]*8"); /* all summary layers (0 would say the same) */
    set(&c, "summary_independent_parameters", "true");
    set(&c, "summary_chunk_position_ids_type", "origin");
    set(&c, "summary_token_position_ids_type", "last_chunk_slice_right");
    check(ksa_model_init(m, &c), summary ? "the KSA model" : "the causal model");
    ksa_model_init_weights(m, 1234);
}

/* Decode steps per run at context T. */
static size_t steps_for(const options *op, size_t T)
{
    return op->steps ? op->steps : T <= 16384 ? 16 : 8;
}

/* ---- exact row counts (KSA_SPEC §3.5, §8.7) ------------------------------------------- */
/* Live rows of one summary layer after T text tokens; a causal layer has T. */
static size_t summary_live_rows(size_t T, const options *op)
{
    size_t n = T / op->C;
    return T % op->C + op->C * (n < op->W ? n : op->W) + op->S * n;
}

/* Cache rows one layer's queries read in the step that appends text token t (0-based):
 * the text query, plus the S summary queries when t completes a chunk. */
static size_t rows_read(size_t t, const options *op, int summary)
{
    if (!summary)
        return t + 1;
    size_t C = op->C, S = op->S, W = op->W, c = t / C, o = t % C;
    size_t rows = (o + 1) + C * (c < W ? c : W) + S * (c > W ? c - W : 0);
    if (o == C - 1)
        for (size_t j = 0; j < S; j++)
            rows += C + j + 1;
    return rows;
}

/* ---- timing ----------------------------------------------------------------------------- */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    double wall, cpu; /* seconds */
} timing;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *x, size_t n)
{
    double s[MAX_REPS];
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static timing median_timing(const timing *t, size_t n)
{
    double w[MAX_REPS], c[MAX_REPS];
    for (size_t i = 0; i < n; i++)
        w[i] = t[i].wall, c[i] = t[i].cpu;
    return (timing){median(w, n), median(c, n)};
}

static void random_ids(int32_t *ids, size_t n, size_t V, ksa_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)(ksa_rng_next(rng) % V);
}

/* `steps` batched steps of every sequence of d, random tokens. */
static timing decode_run(ksa_decoder *d, size_t steps, ksa_rng *rng)
{
    size_t B = d->B, V = d->m->V;
    size_t *seq = ksa_alloc(B * sizeof *seq);
    int32_t *ids = ksa_alloc(B * sizeof *ids);
    ksa_real *logits = ksa_alloc(B * V * sizeof *logits);
    for (size_t b = 0; b < B; b++)
        seq[b] = b;
    double w0 = ksa_now(), c0 = cpu_now();
    for (size_t s = 0; s < steps; s++) {
        random_ids(ids, B, V, rng);
        check(ksa_decoder_step(d, B, seq, ids, logits), "decode step");
    }
    timing t = {ksa_now() - w0, cpu_now() - c0};
    ksa_free(seq), ksa_free(ids), ksa_free(logits);
    return t;
}

/* Prefill of sequence 0 (emptied first) with T random tokens. */
static timing prefill_run(ksa_decoder *d, const int32_t *ids, size_t T, ksa_real *logits)
{
    ksa_decoder_reset(d, 0);
    double w0 = ksa_now(), c0 = cpu_now();
    check(ksa_decoder_prefill(d, 0, ids, T, logits), "prefill");
    return (timing){ksa_now() - w0, cpu_now() - c0};
}

/* ---- one context length ----------------------------------------------------------------- */
typedef struct {
    ksa_decoder_memory ksa, causal; /* per sequence, after T tokens */
    size_t steps;                   /* per run                       */
    timing dec_ksa, dec_causal;     /* median run of `steps` steps   */
    double read_ksa, read_causal;   /* cache rows read per step, all layers, per sequence */
    double completing;              /* fraction of the timed steps that complete a chunk  */
    int prefilled;
    timing pre_ksa, pre_causal;
} result;

static ksa_decoder_memory per_sequence(ksa_decoder_memory m, size_t B)
{
    return (ksa_decoder_memory){m.allocated_bytes / B, m.live_bytes / B, m.causal_bytes / B};
}

static result measure(ksa_model *mk, ksa_model *mc, const options *op, size_t T)
{
    result r = {0};
    r.steps = steps_for(op, T);
    size_t T_max = T + 1 + op->reps * r.steps, n_layers = mk->layout.n_layers;
    ksa_decoder dk, dc;
    check(ksa_decoder_init(&dk, mk, op->B, T_max, 0), "KSA decoder");
    check(ksa_decoder_init(&dc, mc, op->B, T_max, 0), "causal decoder");
    ksa_rng rng = ksa_rng_at(99 + T);

    if (T <= op->prefill_max) {
        int32_t *ids = ksa_alloc(T * sizeof *ids);
        ksa_real *logits = ksa_alloc(mk->V * sizeof *logits);
        random_ids(ids, T, mk->V, &rng);
        timing tk[MAX_REPS], tc[MAX_REPS];
        for (size_t i = 0; i < op->prefill_reps; i++) {
            tk[i] = prefill_run(&dk, ids, T, logits);
            tc[i] = prefill_run(&dc, ids, T, logits);
        }
        r.prefilled = 1;
        r.pre_ksa = median_timing(tk, op->prefill_reps);
        r.pre_causal = median_timing(tc, op->prefill_reps);
        ksa_decoder_reset(&dk, 0), ksa_decoder_reset(&dc, 0);
        ksa_free(ids), ksa_free(logits);
    }

    /* the caches are allocated exactly for T tokens here (reserve = 0) */
    for (size_t b = 0; b < op->B; b++) {
        ksa_decoder_fill_synthetic(&dk, b, T, 1000 + b);
        ksa_decoder_fill_synthetic(&dc, b, T, 2000 + b);
    }
    r.ksa = per_sequence(ksa_decoder_memory_of(&dk), op->B);
    r.causal = per_sequence(ksa_decoder_memory_of(&dc), op->B);

    decode_run(&dk, 1, &rng); /* warm-up: grows the caches (to T_max, one copy) */
    decode_run(&dc, 1, &rng);
    timing tk[MAX_REPS], tc[MAX_REPS];
    for (size_t i = 0; i < op->reps; i++) {
        tk[i] = decode_run(&dk, r.steps, &rng);
        tc[i] = decode_run(&dc, r.steps, &rng);
    }
    r.dec_ksa = median_timing(tk, op->reps), r.dec_causal = median_timing(tc, op->reps);
    /* rows read, averaged over every timed step (token t = T+1 ... T_max-1) */
    for (size_t t = T + 1; t < T_max; t++) {
        r.read_ksa += (double)(n_layers * rows_read(t, op, 1));
        r.read_causal += (double)(n_layers * rows_read(t, op, 0));
        r.completing += t % op->C == op->C - 1;
    }
    double timed = (double)(T_max - T - 1);
    r.read_ksa /= timed, r.read_causal /= timed, r.completing /= timed;
    ksa_decoder_free(&dk);
    ksa_decoder_free(&dc);
    return r;
}

/* ---- the machine ------------------------------------------------------------------------ */

/* The 1-minute load average (other users of the machine), -1 if unknown. */
static double load_average(void)
{
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1;
        fclose(f);
    }
    return load;
}

static double per_step(double seconds, const result *r)
{
    return seconds / (double)r->steps;
}

static double mib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* Bytes of the parameters a decode step reads: summary = 0, those of the text rows (all
 * shared parameters: with tied embeddings the table is the LM head); summary = 1, those a
 * step completing a chunk reads in addition (the summary-only ones).                   */
static double weight_bytes(const ksa_model *m, int summary)
{
    double n = 0;
    for (size_t i = 0; i < m->params.n; i++)
        if (m->params.table[i].summary == summary)
            n += (double)m->params.table[i].numel;
    return n * sizeof(ksa_real);
}

/* The machine's read bandwidth, the bound of a decode step (it reads every weight and every
 * cached row it attends to once): best of 3 sums over 1 GiB, all threads, bytes/s.      */
static double read_bandwidth(void)
{
    size_t n = ((size_t)1 << 30) / sizeof(float);
    float *x = ksa_alloc(n * sizeof *x);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(i & 7);
    double best = 1e30;
    volatile float sink = 0;
    for (int r = 0; r < 4; r++) { /* the first run warms up */
        double t0 = ksa_now();
        float sum = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < n; i++)
            sum += x[i];
        double t = ksa_now() - t0;
        sink += sum;
        if (r > 0 && t < best)
            best = t;
    }
    (void)sink;
    ksa_free(x);
    return (double)(n * sizeof *x) / best;
}

int main(int argc, char **argv)
{
    options op = parse(argc, argv);
    ksa_threads_set(op.threads);
    size_t max_pos = 0; /* the longest context, decoding included */
    for (size_t i = 0; i < op.nT; i++) {
        size_t T_max = op.Ts[i] + 1 + op.reps * steps_for(&op, op.Ts[i]);
        max_pos = T_max > max_pos ? T_max : max_pos;
    }
    ksa_model mk, mc;
    model_init(&mk, &op, 1, max_pos);
    model_init(&mc, &op, 0, max_pos);
    size_t row_bytes = 2 * mk.Hkv * mk.dh * sizeof(ksa_real);
    size_t n_layers = mk.layout.n_layers, ring_full = op.W * op.C;

    char cpu[128];
    bench_cpu_name(cpu, sizeof cpu);
    double load0 = load_average(), wall0 = ksa_now();
    printf("decode benchmark (%s): hidden %zu, intermediate %zu, %zu layers, Hq %zu, Hkv %zu, "
           "head_dim %zu, vocab %zu; max_position_embeddings %zu\n",
           KSA_REAL_NAME, mk.D, mk.I, n_layers, mk.Hq, mk.Hkv, mk.dh, mk.V, max_pos);
    printf("KSA: every layer a summary layer, C = %zu, S = %zu, W = %zu; peer: the same model "
           "with use_summary_attention = false (causal)\n",
           op.C, op.S, op.W);
    printf("batch B = %zu; decode: median of %zu runs of N steps (column N) after T synthetic "
           "tokens and one warm-up step; ",
           op.B, op.reps);
    if (op.prefill_max)
        printf("prefill: median of %zu, T <= %zu\n", op.prefill_reps, op.prefill_max);
    else
        printf("no prefill (--prefill-max 0)\n");
    printf("machine: %s, %ld online CPUs, %d threads; load average at start %.2f\n", cpu,
           sysconf(_SC_NPROCESSORS_ONLN), ksa_threads_get(), load0);
    double w_text = weight_bytes(&mk, 0), w_sum = weight_bytes(&mk, 1), bw = read_bandwidth();
    printf("KV row (K and V of one layer, one token): %zu bytes; weights a step reads: %.1f MiB, "
           "%.1f MiB more in KSA when a chunk completes\n",
           row_bytes, mib((size_t)w_text), mib((size_t)w_sum));
    printf("read bandwidth (sum over 1 GiB, %d threads, best of 3): %.1f GB/s\n\n",
           ksa_threads_get(), bw / 1e9);
    fflush(stdout);

    result res[MAX_T];
    for (size_t i = 0; i < op.nT; i++) {
        double w0 = ksa_now();
        res[i] = measure(&mk, &mc, &op, op.Ts[i]);
        fprintf(stderr, "decode: T = %zu measured in %.1f s\n", op.Ts[i], ksa_now() - w0);
    }

    printf("Cache after T tokens, one sequence, all %zu layers (MiB; ratios causal / KSA):\n\n",
           n_layers);
    printf("| T | KSA allocated | KSA live | causal allocated | causal live | ratio allocated "
           "| ratio live | ratio theoretical (§8.7) | live rows per layer KSA / causal |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < op.nT; i++) {
        const result *r = &res[i];
        size_t T = op.Ts[i], live = summary_live_rows(T, &op);
        printf("| %zu | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.2fx | %zu / %zu |\n", T,
               mib(r->ksa.allocated_bytes), mib(r->ksa.live_bytes), mib(r->causal.allocated_bytes),
               mib(r->causal.live_bytes),
               (double)r->causal.allocated_bytes / (double)r->ksa.allocated_bytes,
               (double)r->causal.live_bytes / (double)r->ksa.live_bytes, (double)T / (double)live,
               live, T);
        if (r->ksa.live_bytes != n_layers * live * row_bytes ||
            r->causal.live_bytes != n_layers * T * row_bytes)
            printf("(T = %zu: the measured live bytes disagree with §8.7)\n", T);
    }

    size_t T0 = 0; /* the first T whose window is full: the reference of the growth columns */
    size_t i0 = op.nT;
    for (size_t i = 0; i < op.nT; i++)
        if (op.Ts[i] >= ring_full && (i0 == op.nT || op.Ts[i] < T0))
            i0 = i, T0 = op.Ts[i];
    printf("\nDecode, batch %zu: N steps after T tokens (tokens/s of the batch; µs per step, CPU "
           "µs of the process in parentheses; growth: µs per step over that at the first T "
           "whose window is full, T >= W·C = %zu):\n\n",
           op.B, ring_full);
    printf("| T | N | KSA tok/s | causal tok/s | KSA / causal speed | KSA µs/step | causal µs/step "
           "| KSA growth | causal growth |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < op.nT; i++) {
        const result *r = &res[i];
        double sk = per_step(r->dec_ksa.wall, r), sc = per_step(r->dec_causal.wall, r);
        printf("| %zu | %zu | %.1f | %.1f | %.2fx | %.0f (%.0f) | %.0f (%.0f) |", op.Ts[i],
               r->steps, (double)op.B / sk, (double)op.B / sc, sc / sk, 1e6 * sk,
               1e6 * per_step(r->dec_ksa.cpu, r), 1e6 * sc, 1e6 * per_step(r->dec_causal.cpu, r));
        if (i0 < op.nT && op.Ts[i] >= T0)
            printf(" %.2fx | %.2fx |\n", sk / per_step(res[i0].dec_ksa.wall, &res[i0]),
                   sc / per_step(res[i0].dec_causal.wall, &res[i0]));
        else
            printf(" — | — |\n");
    }

    printf("\nMemory a decode step reads (MiB: the weights once, plus the cached rows its "
           "queries attend to, KSA_SPEC §3.5, for each of the %zu sequences) and the rate "
           "achieved, against the read bandwidth above:\n\n",
           op.B);
    printf("| T | KSA KV read | causal KV read | KSA MiB/step | causal MiB/step | KSA GB/s | "
           "causal GB/s | KSA %% of bandwidth | causal %% of bandwidth |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < op.nT; i++) {
        const result *r = &res[i];
        double kv_k = r->read_ksa * (double)row_bytes * (double)op.B;
        double kv_c = r->read_causal * (double)row_bytes * (double)op.B;
        double bk = w_text + r->completing * w_sum + kv_k, bc = weight_bytes(&mc, 0) + kv_c;
        double gk = bk / per_step(r->dec_ksa.wall, r), gc = bc / per_step(r->dec_causal.wall, r);
        printf("| %zu | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f%% | %.0f%% |\n", op.Ts[i],
               mib((size_t)kv_k), mib((size_t)kv_c), mib((size_t)bk), mib((size_t)bc), gk / 1e9,
               gc / 1e9, 100 * gk / bw, 100 * gc / bw);
    }

    printf("\nPrefill of a random prompt of T tokens, one sequence (s; CPU s in parentheses; "
           "ratio causal / KSA):\n\n");
    printf("| T | KSA prefill | causal prefill | ratio | KSA tok/s | causal tok/s |\n");
    printf("|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < op.nT; i++) {
        const result *r = &res[i];
        if (!r->prefilled) {
            printf("| %zu | — | — | — | — | — |\n", op.Ts[i]);
            continue;
        }
        double T = (double)op.Ts[i];
        printf("| %zu | %.3f (%.3f) | %.3f (%.3f) | %.2fx | %.0f | %.0f |\n", op.Ts[i],
               r->pre_ksa.wall, r->pre_ksa.cpu, r->pre_causal.wall, r->pre_causal.cpu,
               r->pre_causal.wall / r->pre_ksa.wall, T / r->pre_ksa.wall, T / r->pre_causal.wall);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\nload average at end %.2f; total %.0f s wall; peak resident memory %.2f GiB\n",
           load_average(), ksa_now() - wall0, (double)ru.ru_maxrss / (1024.0 * 1024.0));
    ksa_model_free(&mk);
    ksa_model_free(&mc);
    return 0;
}
