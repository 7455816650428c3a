/* test_cp.c - context parallelism (dist/context.h): the loss and every parameter gradient of
 * sequences split into blocks over the ranks of context groups equal those of the whole
 * sequences on one rank.
 *
 * A normal cmocka program that calls MPI_Init itself: `make test` runs it as a one-rank
 * singleton (the grid's checks, P = 1), tests/test_cp.sh under mpirun on 2, 3 and 4 ranks,
 * where every P > 1 that divides the rank count runs (4 ranks: P = 4, and P = 2 with two
 * context groups of data parallelism). Every rank computes the reference itself: the whole
 * batch of every group (n_groups x nseq sequences) without context parallelism. Then each
 * rank runs its block of its group's sequences, the gradients are summed over all ranks
 * (what the trainer's reduce-scatter does) and compared, per parameter, with the reference
 * at the PyTorch cross-check's tolerance (test_crosscheck.c: max |diff| <= 2e-3 max |g| in
 * float32; 1e-10 in float64), the loss at 1e-5 relative (float64 1e-12). Failures are
 * counted on every rank and summed before any assertion: all ranks pass or fail together.
 *
 * The cases cover blocks shorter and longer than the window (W*C), S = 1 and 2, tail
 * chunks, hybrid layers (ring attention in the causal ones), GQA, independent summary
 * parameters, sliding-chunk (SCA) and sliding-window (SWA) models, plain causal models and
 * activation recomputation; each also checks the step's memory plan against the arena.  */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "dist/context.h"
#include "dist/dist.h"
#include "model/decoder.h"
#include "model/layout.h"

static int rank, n_ranks;

#ifdef KSA_REAL_DOUBLE
#define LOSS_RTOL 1e-12
#define GRAD_RTOL 1e-10
#define MPI_REAL_T MPI_DOUBLE
#else
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 2e-3
#define MPI_REAL_T MPI_FLOAT
#endif

typedef struct {
    const char *name;
    const char *config; /* "key=value key=value ..." */
    size_t L, nseq;
    int recompute;
} cp_case;

#define SMALL "vocab_size=29 hidden_size=8 intermediate_size=12 head_dim=4 "

static const cp_case cases[] = {
    /* W*C = 8 below the blocks; a tail chunk of 3; hybrid: the third layer is causal (ring) */
    {"hybrid, window below the blocks, tail chunk",
     SMALL "num_hidden_layers=3 num_attention_heads=4 num_key_value_heads=2 "
           "use_summary_attention=true summary_chunk_size=4 summary_token_num=1 "
           "summary_sliding_chunk_num=2 summary_layer_freq=[1,1,0] "
           "summary_independent_parameters=true summary_chunk_position_ids_type=origin "
           "summary_token_position_ids_type=last_chunk_slice_right",
     35, 2, 0},
    /* W*C = 24 above blocks of 8 tokens: the halo spans several blocks; S = 2 */
    {"window above the blocks, S = 2, independent norms",
     SMALL "num_hidden_layers=2 num_attention_heads=2 num_key_value_heads=2 "
           "use_summary_attention=true summary_chunk_size=2 summary_token_num=2 "
           "summary_sliding_chunk_num=12 summary_layer_freq=1 "
           "summary_independent_parameters=true summary_independent_attention_layernorm=true "
           "summary_independent_qk_norm=true summary_chunk_position_ids_type=origin "
           "summary_token_position_ids_type=last_chunk_slice_left",
     35, 1, 0},
    /* windows 0 and 1, shared summary ids, inner_chunk text positions, recomputation */
    {"W = 0 and 1, shared parameters, recomputation",
     SMALL "num_hidden_layers=3 num_attention_heads=4 num_key_value_heads=1 "
           "use_summary_attention=true summary_chunk_size=3 summary_token_num=1 "
           "summary_sliding_chunk_num=[0,1,1] summary_layer_freq=[1,0,1] "
           "summary_token_begin=20 summary_token_position_ids_type=zeros",
     40, 2, 1},
    {"plain causal (ring attention only), GQA",
     SMALL "num_hidden_layers=2 num_attention_heads=4 num_key_value_heads=2", 30, 2, 0},
    {"sliding window of 5 tokens",
     SMALL "num_hidden_layers=2 num_attention_heads=2 num_key_value_heads=1 "
           "layer_sliding_window=5",
     30, 1, 0},
    {"sliding chunks (SCA), recomputation",
     SMALL "num_hidden_layers=2 num_attention_heads=2 num_key_value_heads=2 "
           "use_summary_attention=true summary_chunk_size=4 summary_token_num=0 "
           "sliding_chunk_attention=true summary_sliding_chunk_num=1 summary_layer_freq=[1,0]",
     33, 2, 1},
};

static void configure(ksa_model_config *c, const char *text)
{
    ksa_model_config_defaults(c);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = '\0';
        if (ksa_model_config_set(c, kv, eq + 1, "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
    }
}

static long sum_over_ranks(long n)
{
    long s = 0;
    MPI_Allreduce(&n, &s, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

/* One forward and backward of nseq x T tokens (rows of T + 1) on a fresh tape: the loss, and
 * the parameter gradients left in m->params.grad. Checks the memory plan against the arena. */
static double step(ksa_model *m, const int32_t *tokens, size_t nseq, size_t T, double norm,
                   long *bad)
{
    ksa_arena arena;
    ksa_grad_pool pool;
    ksa_tape tp;
    ksa_model_tape_init(m, nseq, T, 1, &arena, &pool, &tp);
    ksa_step_memory plan = ksa_model_plan(m, nseq, T, 1);
    if (plan.arena_peak > arena.capacity) {
        fprintf(stderr, "[rank %d] the plan's arena peak %zu exceeds the arena's %zu\n", rank,
                plan.arena_peak, arena.capacity);
        ++*bad;
    }
    ksa_params_zero_grad(&m->params);
    double loss = 0;
    ksa_tensor *l = ksa_model_forward(m, &tp, tokens, nseq, T, norm, &loss, NULL);
    ksa_tape_backward(&tp, l);
    ksa_model_tape_free(&arena, &pool, &tp);
    return loss;
}

static long run_case(const cp_case *k, int P)
{
    ksa_model_config c;
    configure(&c, k->config);
    ksa_model m;
    if (ksa_model_init(&m, &c) != KSA_OK)
        fail_msg("%s: %s", k->name, ksa_last_error());
    ksa_model_init_weights(&m, 11);
    m.recompute = k->recompute;
    size_t unit = ksa_layout_block_unit(&m.layout), L = k->L;
    ksa_cp cp;
    if (ksa_cp_init(&cp, P, L, unit) != KSA_OK)
        fail_msg("%s: %s", k->name, ksa_last_error());
    size_t G = k->nseq * (size_t)cp.n_groups, n = m.params.numel;
    int32_t *tokens = malloc(G * (L + 1) * sizeof *tokens);
    uint64_t x = 12345;
    for (size_t i = 0; i < G * (L + 1); i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int32_t)((x >> 33) % m.V);
    }
    long bad = 0;
    double norm = (double)(G * L);
    /* the reference: every group's sequences, whole, on this rank alone */
    double loss_ref = step(&m, tokens, G, L, norm, &bad);
    double *g_ref = malloc(n * sizeof *g_ref);
    for (size_t i = 0; i < n; i++)
        g_ref[i] = (double)m.params.grad[i];
    /* this rank's block of its group's sequences */
    size_t t0 = ksa_cp_block_start(&cp), T = ksa_cp_block_len(&cp);
    int32_t *block = malloc(k->nseq * (T + 1) * sizeof *block);
    for (size_t s = 0; s < k->nseq; s++)
        memcpy(block + s * (T + 1), tokens + ((size_t)cp.group * k->nseq + s) * (L + 1) + t0,
               (T + 1) * sizeof *block);
    m.cp = &cp;
    double loss = step(&m, block, k->nseq, T, norm, &bad);
    m.cp = NULL;
    MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, m.params.grad, (int)n, MPI_REAL_T, MPI_SUM, MPI_COMM_WORLD);
    if (!(fabs(loss - loss_ref) <= LOSS_RTOL * fabs(loss_ref))) {
        fprintf(stderr, "[rank %d] %s, P = %d: loss %.12g, whole sequences %.12g\n", rank, k->name,
                P, loss, loss_ref);
        bad++;
    }
    for (size_t p = 0; p < m.params.n; p++) {
        const ksa_param *e = &m.params.table[p];
        double max_g = 0, max_diff = 0;
        for (size_t i = e->offset; i < e->offset + e->numel; i++) {
            max_g = fmax(max_g, fabs(g_ref[i]));
            max_diff = fmax(max_diff, fabs((double)m.params.grad[i] - g_ref[i]));
        }
        if (!(max_diff <= GRAD_RTOL * max_g)) {
            fprintf(stderr, "[rank %d] %s, P = %d: %s: max |diff| %.3g > %g x max |g| %.3g\n", rank,
                    k->name, P, e->name, max_diff, GRAD_RTOL, max_g);
            bad++;
        }
    }
    if (rank == 0)
        printf("  %s, P = %d x %d groups: loss %.9g (whole %.9g)\n", k->name, P, cp.n_groups, loss,
               loss_ref);
    free(tokens), free(block), free(g_ref);
    ksa_cp_free(&cp);
    ksa_model_free(&m);
    return bad;
}

/* Every case under every P > 1 that divides the rank count (P = 1 on one rank). */
static void blocks_give_the_whole_sequences_loss_and_gradients(void **state)
{
    (void)state;
    long bad = 0;
    for (int P = n_ranks == 1 ? 1 : 2; P <= n_ranks; P++) {
        if (n_ranks % P)
            continue;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            bad += run_case(&cases[i], P);
    }
    assert_int_equal(sum_over_ranks(bad), 0);
}

/* The grid refuses what it cannot split, naming the problem. */
static void the_grid_refuses_what_it_cannot_split(void **state)
{
    (void)state;
    assert_int_equal(ksa_cp_check(2, 3, 64, 8), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "does not divide the 3 ranks"));
    assert_int_equal(ksa_cp_check(4, 4, 24, 8), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "shorter than one chunk"));
    assert_int_equal(ksa_cp_check(0, 4, 24, 8), KSA_EINVAL);
    assert_int_equal(ksa_cp_check(3, 3, 24, 8), KSA_OK);
    assert_int_equal(ksa_cp_check(1, 5, 3, 8), KSA_OK); /* P = 1: any length */
}

/* Blocks of whole units: floor(n / P) units each, the last also the rest and the tail. */
static void blocks_are_whole_chunks_the_last_takes_the_rest(void **state)
{
    (void)state;
    ksa_cp cp; /* P = n_ranks: one group */
    assert_int_equal(ksa_cp_init(&cp, n_ranks, 4 * (size_t)n_ranks + 3 + 4, 4), KSA_OK);
    assert_int_equal(cp.n_groups, 1);
    assert_int_equal(cp.rank, rank);
    for (int r = 0; r < n_ranks; r++)
        assert_int_equal(cp.start[r], 4 * (size_t)r);
    assert_int_equal(cp.start[n_ranks], 4 * (size_t)n_ranks + 7); /* + 1 chunk + tail of 3 */
    ksa_cp_free(&cp);
    /* the needs of a block: halo from the window start, summaries the last query sees */
    size_t starts[] = {0, 16, 32, 43};
    ksa_cp fake = {.P = 3, .start = starts};
    size_t h0, ns;
    ksa_cp_summary_needs(&fake, 1, 4, 1, 2, &h0, &ns); /* chunks 4..7, W 2 */
    assert_int_equal(h0, 8);                           /* chunk 2 on */
    assert_int_equal(ns, 4);                           /* last query (chunk 7) sees 0..4 */
    ksa_cp_summary_needs(&fake, 2, 4, 2, 1, &h0, &ns); /* chunks 8..10 + tail, W 1 */
    assert_int_equal(h0, 28);
    assert_int_equal(ns, 16); /* min(c0 = 8, 9) chunks x 2 */
}

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_grid_refuses_what_it_cannot_split),
        cmocka_unit_test(blocks_are_whole_chunks_the_last_takes_the_rest),
        cmocka_unit_test(blocks_give_the_whole_sequences_loss_and_gradients),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
