/* test_model.c - the KSA decoder: position ids (KSA_SPEC §2.5, Appendix A), parameter
 * names, whole-model finite-difference gradient checks over configurations that together
 * switch on every flag (float64 build), and structural equivalences.                    */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/decoder.h"
#include "model/gradcheck.h"
#include "model/layout.h"

static void configure(ksa_model_config *c, const char *const *kv)
{
    ksa_model_config_defaults(c);
    for (size_t i = 0; kv[i]; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

#define SMALL                                                                                      \
    "vocab_size", "23", "hidden_size", "8", "intermediate_size", "10", "num_attention_heads", "4", \
        "num_key_value_heads", "2", "head_dim", "4"

/* Configurations that together switch on every feature (issue: S = 2, tail chunk, W = 0,
 * W >= chunks, GQA, bypass layers in list and integer form, independent qkv / norm /
 * qk-norm, tied and untied heads, every position-id type). */
static const char *const cfg_independent_all[] = {SMALL,
                                                  "num_hidden_layers",
                                                  "3",
                                                  "use_summary_attention",
                                                  "true",
                                                  "summary_chunk_size",
                                                  "3",
                                                  "summary_token_num",
                                                  "2",
                                                  "summary_sliding_chunk_num",
                                                  "[0,1,5]",
                                                  "summary_layer_freq",
                                                  "[1,0,1]",
                                                  "summary_independent_parameters",
                                                  "true",
                                                  "summary_independent_attention_layernorm",
                                                  "true",
                                                  "summary_independent_qk_norm",
                                                  "true",
                                                  "summary_chunk_position_ids_type",
                                                  "origin",
                                                  "summary_token_position_ids_type",
                                                  "last_chunk_slice_right",
                                                  NULL};
static const char *const cfg_shared_tied[] = {SMALL,         "num_hidden_layers",
                                              "3",           "num_key_value_heads",
                                              "1",           "use_summary_attention",
                                              "true",        "summary_chunk_size",
                                              "2",           "summary_token_num",
                                              "1",           "summary_sliding_chunk_num",
                                              "100",         "summary_layer_freq",
                                              "2",           "summary_independent_parameters",
                                              "false",       "summary_token_begin",
                                              "22",          "tie_word_embeddings",
                                              "true",        "summary_chunk_position_ids_type",
                                              "inner_chunk", "summary_token_position_ids_type",
                                              "zeros",       NULL};
static const char *const cfg_qkv_only_left[] = {SMALL,
                                                "num_hidden_layers",
                                                "2",
                                                "use_summary_attention",
                                                "true",
                                                "summary_chunk_size",
                                                "4",
                                                "summary_token_num",
                                                "2",
                                                "summary_sliding_chunk_num",
                                                "0",
                                                "summary_independent_parameters",
                                                "false",
                                                "summary_independent_qkv",
                                                "true",
                                                "summary_token_begin",
                                                "3",
                                                "summary_token_position_ids_type",
                                                "last_chunk_slice_left",
                                                NULL};
static const char *const cfg_causal[] = {SMALL, "num_hidden_layers", "2", NULL};
/* cfg_independent_all annealing (KSA_SPEC §5.5): summary rows blend their own q/k/v (own
 * input norm and q/k norms) with the shared ones; and the same model without summary q/k/v
 * (what m = 0 must equal: the summary rows through the shared projections and q/k norms). */
#define MIXING_KV                                                                                  \
    SMALL, "num_hidden_layers", "3", "use_summary_attention", "true", "summary_chunk_size", "3",   \
        "summary_token_num", "2", "summary_sliding_chunk_num", "[0,1,5]", "summary_layer_freq",    \
        "[1,0,1]", "summary_independent_parameters", "true",                                       \
        "summary_independent_attention_layernorm", "true"
static const char *const cfg_mixing[] = {MIXING_KV, "summary_independent_qk_norm",
                                         "true",    "summary_mix_qkv",
                                         "true",    "summary_mix_start_iter",
                                         "100",     "summary_mix_end_iter",
                                         "300",     NULL};
static const char *const cfg_mixing_shared_norms[] = {MIXING_KV, "summary_mix_qkv", "true", NULL};
static const char *const cfg_mixing_as_shared[] = {MIXING_KV, "summary_independent_qkv", "false",
                                                   NULL};

static int32_t *random_tokens(size_t nseq, size_t T, size_t V, uint64_t seed)
{
    test_rng r = test_rng_seed(seed);
    int32_t *tok = malloc(nseq * (T + 1) * sizeof *tok);
    for (size_t i = 0; i < nseq * (T + 1); i++)
        tok[i] = (int32_t)(test_rng_uniform(&r) * (double)V);
    return tok;
}

/* Random weights large enough that every path carries gradient. */
static void randomize(ksa_model *m, uint64_t seed)
{
    test_rng r = test_rng_seed(seed);
    for (size_t i = 0; i < m->params.n; i++) {
        const ksa_param *e = &m->params.table[i];
        ksa_real *w = m->params.data + e->offset;
        if (e->ndim == 1)
            test_fill_uniform(w, e->numel, 0.7, 1.3, &r);
        else
            test_fill_uniform(w, e->numel, -0.6, 0.6, &r);
    }
}

static void positions_match_the_spec_examples(void **state)
{
    (void)state;
    /* KSA_SPEC §2.5: C = 4, S = 2, L = 10 (HF layout: no tail summaries) */
    ksa_model_config c;
    const char *kv[] = {"use_summary_attention",
                        "true",
                        "summary_chunk_size",
                        "4",
                        "summary_token_num",
                        "2",
                        "summary_independent_parameters",
                        "true",
                        NULL};
    configure(&c, kv);
    ksa_model_layout l;
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    assert_int_equal(ksa_layout_summary_rows(&l, 10), 4);
    int32_t pos[14];
    ksa_layout_positions(pos, &l, 1, 10);
    for (int t = 0; t < 10; t++)
        assert_int_equal(pos[t], t);
    int32_t right[4] = {1, 3, 5, 7};
    assert_memory_equal(pos + 10, right, sizeof right);
    l.summary_pos = KSA_POS_LAST_CHUNK_SLICE_LEFT;
    ksa_layout_positions(pos, &l, 1, 10);
    int32_t left[4] = {0, 1, 4, 5};
    assert_memory_equal(pos + 10, left, sizeof left);
    l.chunk_pos = KSA_POS_INNER_CHUNK;
    l.summary_pos = KSA_POS_ZEROS;
    ksa_layout_positions(pos, &l, 1, 10);
    int32_t inner[14] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 0, 0, 0, 0};
    assert_memory_equal(pos, inner, sizeof inner);
    /* Appendix A: C = 8, S = 3, L = 16 */
    l.C = 8, l.S = 3, l.chunk_pos = KSA_POS_ORIGIN;
    int32_t p16[22];
    l.summary_pos = KSA_POS_LAST_CHUNK_SLICE_RIGHT;
    ksa_layout_positions(p16, &l, 1, 16);
    int32_t r16[6] = {1, 4, 7, 9, 12, 15};
    assert_memory_equal(p16 + 16, r16, sizeof r16);
    l.summary_pos = KSA_POS_LAST_CHUNK_SLICE_LEFT;
    ksa_layout_positions(p16, &l, 1, 16);
    int32_t l16[6] = {0, 1, 4, 8, 9, 12};
    assert_memory_equal(p16 + 16, l16, sizeof l16);
}

static void parameters_follow_the_checkpoint_names(void **state)
{
    (void)state;
    ksa_model_config c;
    configure(&c, cfg_independent_all);
    ksa_model m;
    assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
    const char *present[] = {"model.embed_tokens.weight",
                             "summary_embedding.weight",
                             "model.layers.0.input_layernorm_summary.weight",
                             "model.layers.0.self_attn.q_proj_summary.weight",
                             "model.layers.2.self_attn.k_norm_summary.weight",
                             "model.layers.1.mlp.down_proj.weight",
                             "model.norm.weight",
                             "lm_head.weight"};
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
        if (ksa_params_find(&m.params, present[i]) < 0)
            fail_msg("missing parameter %s", present[i]);
    /* layer 1 is a bypass layer: no summary parameters */
    assert_int_equal(ksa_params_find(&m.params, "model.layers.1.self_attn.q_proj_summary.weight"),
                     -1);
    assert_int_equal(ksa_params_find(&m.params, "model.layers.1.input_layernorm_summary.weight"),
                     -1);
    long q = ksa_params_find(&m.params, "model.layers.0.self_attn.k_proj.weight");
    assert_int_equal(m.params.table[q].shape[0], 8); /* Hkv * dh */
    assert_int_equal(m.params.table[q].shape[1], 8);
    ksa_model_free(&m);

    configure(&c, cfg_shared_tied);
    assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
    assert_int_equal(ksa_params_find(&m.params, "lm_head.weight"), -1);
    assert_int_equal(ksa_params_find(&m.params, "summary_embedding.weight"), -1);
    ksa_model_free(&m);
}

#ifdef KSA_REAL_DOUBLE
static void check_model_gradients_mix(const char *const *kv, size_t nseq, size_t T, uint64_t seed,
                                      double mix)
{
    ksa_model_config c;
    configure(&c, kv);
    ksa_model m;
    assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
    m.summary_mix = mix;
    randomize(&m, seed);
    int32_t *tok = random_tokens(nseq, T, m.V, seed + 1);
    ksa_gradcheck_result *res = calloc(m.params.n, sizeof *res);
    ksa_gradcheck_run(&m, tok, nseq, T, NULL, res);
    int failed = 0;
    for (size_t i = 0; i < m.params.n; i++) /* stricter than the CLI: rtol 1e-6, no atol */
        if (!ksa_gradcheck_passes(&res[i], 0, 1e-6)) {
            print_error("%-52s max|diff| %.3g (max|numeric| %.3g)\n", res[i].name,
                        res[i].max_abs_diff, res[i].max_abs_numeric);
            failed = 1;
        }
    assert_false(failed);
    free(res);
    free(tok);
    ksa_model_free(&m);
}

static void check_model_gradients(const char *const *kv, size_t nseq, size_t T, uint64_t seed)
{
    check_model_gradients_mix(kv, nseq, T, seed, 1);
}
#endif

static void whole_model_gradients_match_finite_differences(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    check_model_gradients(cfg_independent_all, 1, 8, 1); /* tail of 2, W = 0, 1, 5 */
    check_model_gradients(cfg_shared_tied, 2, 7, 2);     /* W >= chunks, freq = 2, tied */
    check_model_gradients(cfg_qkv_only_left, 2, 10, 3);  /* S = 2, W = 0, tail of 2 */
    check_model_gradients(cfg_qkv_only_left, 1, 3, 4);   /* T < C: no summary rows */
    check_model_gradients(cfg_causal, 2, 6, 5);
#else
    skip();
#endif
}

/* Annealing, 0 < m < 1: the gradient reaches the summary q/k/v (times m) and the shared ones
 * through the summary rows (times 1 - m); with their own q/k norms and with the shared. */
static void annealing_gradients_match_finite_differences(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    check_model_gradients_mix(cfg_mixing, 1, 8, 21, 0.3);              /* tail of 2 */
    check_model_gradients_mix(cfg_mixing_shared_norms, 2, 7, 22, 0.5); /* shared q/k norms */
    check_model_gradients_mix(cfg_mixing, 1, 8, 23, 0);                /* the shared alone */
#else
    skip();
#endif
}

/* With W >= number of chunks in every layer, text never sees a summary row, so the loss
 * equals that of the plain causal model with the same shared weights (KSA_SPEC §3.1). */
static void full_window_ksa_model_equals_the_causal_model(void **state)
{
    (void)state;
    const char *ksa_kv[] = {SMALL,  "num_hidden_layers",
                            "2",    "use_summary_attention",
                            "true", "summary_chunk_size",
                            "3",    "summary_token_num",
                            "2",    "summary_sliding_chunk_num",
                            "4",    "summary_independent_parameters",
                            "true", NULL};
    ksa_model_config ck, cc;
    configure(&ck, ksa_kv);
    configure(&cc, cfg_causal);
    ksa_model mk, mc;
    assert_int_equal(ksa_model_init(&mk, &ck), KSA_OK);
    assert_int_equal(ksa_model_init(&mc, &cc), KSA_OK);
    randomize(&mk, 11);
    for (size_t i = 0; i < mc.params.n; i++) { /* copy the shared weights by name */
        long j = ksa_params_find(&mk.params, mc.params.table[i].name);
        assert_true(j >= 0);
        memcpy(mc.params.data + mc.params.table[i].offset,
               mk.params.data + mk.params.table[j].offset,
               mc.params.table[i].numel * sizeof(ksa_real));
    }
    size_t nseq = 2, T = 12;
    int32_t *tok = random_tokens(nseq, T, mk.V, 12);
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(&mk, nseq, T));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(&mk));
    double lk, lc;
    ksa_model_forward(&mk, &tp, tok, nseq, T, (double)(nseq * T), &lk, NULL);
    ksa_tape_reset(&tp);
    ksa_model_forward(&mc, &tp, tok, nseq, T, (double)(nseq * T), &lc, NULL);
    ksa_expect_close_dd(&lk, &lc, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "KSA with W >= chunks");
    /* and a window that does not cover the sequence changes the loss */
    ksa_model_free(&mk);
    ksa_model_config_set(&ck, "summary_sliding_chunk_num", "1", "test");
    assert_int_equal(ksa_model_init(&mk, &ck), KSA_OK);
    randomize(&mk, 11);
    ksa_tape_reset(&tp);
    ksa_model_forward(&mk, &tp, tok, nseq, T, (double)(nseq * T), &lk, NULL);
    assert_true(fabs(lk - lc) > 1e-4);
    free(tok);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ksa_model_free(&mk);
    ksa_model_free(&mc);
}

/* The loss and logits of a model run with m (ksa_model_forward, nseq x T). */
static double loss_with_mix(const char *const *kv, const ksa_model *from, double mix,
                            const int32_t *tok, size_t nseq, size_t T, ksa_real *logits)
{
    ksa_model_config c;
    configure(&c, kv);
    ksa_model m;
    assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
    for (size_t i = 0; i < m.params.n; i++) { /* the weights of `from`, by name */
        long j = ksa_params_find(&from->params, m.params.table[i].name);
        assert_true(j >= 0);
        memcpy(m.params.data + m.params.table[i].offset,
               from->params.data + from->params.table[j].offset,
               m.params.table[i].numel * sizeof(ksa_real));
    }
    m.summary_mix = mix;
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(&m, nseq, T));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(&m));
    double v;
    ksa_tensor *lg;
    ksa_model_forward(&m, &tp, tok, nseq, T, (double)(nseq * T), &v, &lg);
    memcpy(logits, lg->data, lg->numel * sizeof *logits);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ksa_model_free(&m);
    return v;
}

/* KSA_SPEC §5.5 at its ends: m = 1 is the model without annealing bit for bit (no base path
 * is computed), m = 0 the model whose summary rows use the shared projections and q/k norms
 * (summary_independent_qkv = false, the same other weights) bit for bit; in between the
 * loss differs from both. */
static void annealing_ends_are_the_summary_and_the_shared_models(void **state)
{
    (void)state;
    ksa_model_config c;
    configure(&c, cfg_mixing);
    ksa_model src;
    assert_int_equal(ksa_model_init(&src, &c), KSA_OK);
    randomize(&src, 31);
    size_t nseq = 2, T = 11, n = nseq * T * src.V;
    int32_t *tok = random_tokens(nseq, T, src.V, 32);
    ksa_real *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    static const char *const no_mix[] = {MIXING_KV, "summary_independent_qk_norm", "true", NULL};
    double l1 = loss_with_mix(cfg_mixing, &src, 1, tok, nseq, T, a);
    double lref = loss_with_mix(no_mix, &src, 1, tok, nseq, T, b);
    assert_true(l1 == lref);
    assert_memory_equal(a, b, n * sizeof *a);
    double l0 = loss_with_mix(cfg_mixing, &src, 0, tok, nseq, T, a);
    double lshared = loss_with_mix(cfg_mixing_as_shared, &src, 1, tok, nseq, T, b);
    assert_true(l0 == lshared);
    assert_memory_equal(a, b, n * sizeof *a);
    double lhalf = loss_with_mix(cfg_mixing, &src, 0.5, tok, nseq, T, a);
    assert_true(fabs(lhalf - l1) > 1e-4 && fabs(lhalf - l0) > 1e-4);
    free(a), free(b), free(tok);
    ksa_model_free(&src);
}

static void arena_estimate_covers_a_training_step(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_independent_all, cfg_shared_tied, cfg_qkv_only_left,
                                 cfg_causal, cfg_mixing};
    for (size_t i = 0; i < 5; i++) {
        ksa_model_config c;
        configure(&c, cfgs[i]);
        ksa_model m;
        assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
        ksa_model_init_weights(&m, 3);
        m.summary_mix = 0.5; /* annealing: both projections of the summary rows */
        size_t nseq = 2, T = 37;
        int32_t *tok = random_tokens(nseq, T, m.V, 5);
        ksa_arena arena;
        size_t bound = ksa_model_arena_bytes(&m, nseq, T);
        ksa_arena_init(&arena, bound);
        ksa_tape tp;
        ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(&m));
        double v;
        ksa_tensor *loss = ksa_model_forward(&m, &tp, tok, nseq, T, (double)(nseq * T), &v, NULL);
        ksa_tape_backward(&tp, loss);
        assert_true(arena.peak <= bound);
        assert_true(isfinite(v) && fabs(v - log((double)m.V)) < 0.5); /* near uniform at init */
        free(tok);
        ksa_tape_free(&tp);
        ksa_arena_free(&arena);
        ksa_model_free(&m);
    }
}

/* ksa_model_forward_per_target leaves the loss as it was (bit for bit), its per-target
 * losses sum to it, and entry t of a row is the loss of the last target of the prefix of
 * t + 1 inputs run alone (causality: that forward sees exactly what position t sees).   */
static void per_target_losses_sum_to_the_loss_and_match_prefixes(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_independent_all, cfg_causal};
    for (size_t i = 0; i < 2; i++) {
        ksa_model_config c;
        configure(&c, cfgs[i]);
        ksa_model m;
        assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
        randomize(&m, 21);
        size_t nseq = 2, T = 13;
        double norm = 7.5;
        int32_t *tok = random_tokens(nseq, T, m.V, 22);
        ksa_arena arena;
        ksa_arena_init(&arena, ksa_model_arena_bytes(&m, nseq, T));
        ksa_tape tp;
        ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(&m));
        double plain, with, per[26], sum = 0;
        ksa_model_forward(&m, &tp, tok, nseq, T, norm, &plain, NULL);
        ksa_tape_reset(&tp);
        ksa_model_forward_per_target(&m, &tp, tok, nseq, T, norm, &with, per);
        assert_true(plain == with);
        for (size_t n = 0; n < nseq * T; n++)
            sum += per[n];
        assert_true(sum / norm == with);
        for (size_t q = 0; q < nseq; q++)
            for (size_t t = 0; t < T; t++) {
                double alone, last[13];
                ksa_tape_reset(&tp);
                ksa_model_forward_per_target(&m, &tp, tok + q * (T + 1), 1, t + 1, 1.0, &alone,
                                             last);
                ksa_expect_close_dd(&per[q * T + t], &last[t], 1, TEST_FWD_ATOL, TEST_FWD_RTOL,
                                    "per-target loss against its prefix");
            }
        free(tok);
        ksa_tape_free(&tp);
        ksa_arena_free(&arena);
        ksa_model_free(&m);
    }
}

/* One forward + backward of nseq x T; the loss into *loss and the parameter gradients into
 * grads. pool: activation gradients from a gradient pool (as the trainer) or the arena.
 * Returns the arena's peak. */
static size_t loss_and_gradients(ksa_model *m, const int32_t *tok, size_t nseq, size_t T, int pool,
                                 double *loss, ksa_real *grads)
{
    ksa_arena arena;
    ksa_grad_pool gp;
    ksa_tape tp;
    if (pool) {
        ksa_model_tape_init(m, nseq, T, 1, &arena, &gp, &tp);
    } else {
        ksa_arena_init(&arena, ksa_model_arena_bytes(m, nseq, T));
        ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    }
    ksa_params_zero_grad(&m->params);
    ksa_tensor *l = ksa_model_forward(m, &tp, tok, nseq, T, (double)(nseq * T), loss, NULL);
    ksa_tape_backward(&tp, l);
    memcpy(grads, m->params.grad, m->params.numel * sizeof *grads);
    size_t peak = arena.peak;
    if (pool) {
        ksa_model_tape_free(&arena, &gp, &tp);
    } else {
        ksa_tape_free(&tp);
        ksa_arena_free(&arena);
    }
    return peak;
}

/* --recompute re-runs each layer's forward in the backward: the same kernels on the same
 * values, so the loss and every parameter gradient are bit-identical to the stored-
 * activation run, with activation gradients from the pool or the arena, for every layer
 * kind (summary layers, bypass layers with and without summary rows, sliding windows) --
 * and the arena holds less. */
static void recomputation_gives_identical_gradients_in_less_memory(void **state)
{
    (void)state;
    static const char *const cfg_swa_sca[] = {
        SMALL,  "num_hidden_layers",    "2",     "use_summary_attention",
        "true", "summary_chunk_size",   "3",     "summary_sliding_chunk_num",
        "1",    "summary_layer_freq",   "[1,0]", "sliding_chunk_attention",
        "true", "layer_sliding_window", "4",     NULL};
    const char *const *cfgs[] = {cfg_independent_all, cfg_shared_tied, cfg_qkv_only_left,
                                 cfg_causal, cfg_swa_sca};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        ksa_model_config c;
        configure(&c, cfgs[i]);
        ksa_model m;
        assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
        randomize(&m, 31 + i);
        size_t nseq = 2, T = 40, n = m.params.numel;
        int32_t *tok = random_tokens(nseq, T, m.V, 32 + i);
        ksa_real *stored = malloc(n * sizeof *stored), *again = malloc(n * sizeof *again);
        for (int pool = 0; pool < 2; pool++) {
            double l_stored, l_again;
            m.recompute = 0;
            size_t peak_stored = loss_and_gradients(&m, tok, nseq, T, pool, &l_stored, stored);
            m.recompute = 1;
            size_t peak_again = loss_and_gradients(&m, tok, nseq, T, pool, &l_again, again);
            if (l_stored != l_again || memcmp(stored, again, n * sizeof *stored) != 0)
                fail_msg("configuration %zu (pool %d): recomputation changed the loss "
                         "(%.17g vs %.17g) or the gradients",
                         i, pool, l_stored, l_again);
            if (!(peak_again < peak_stored))
                fail_msg("configuration %zu (pool %d): arena peak %zu with recomputation, "
                         "%zu without",
                         i, pool, peak_again, peak_stored);
        }
        free(stored);
        free(again);
        free(tok);
        ksa_model_free(&m);
    }
}

/* The memory plan's sizing run (ksa_model_plan: the same ops, no kernels) uses exactly the
 * arena and gradient pool a real step uses, with and without recomputation, on an allocated
 * and on a declared-only model (whose buffers it leaves unallocated). */
static void the_sizing_run_uses_what_a_step_uses(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_independent_all, cfg_shared_tied, cfg_causal, cfg_mixing};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        for (int recompute = 0; recompute < 2; recompute++) {
            ksa_model_config c;
            configure(&c, cfgs[i]);
            ksa_model m, declared;
            assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
            assert_int_equal(ksa_model_declare(&declared, &c), KSA_OK);
            m.summary_mix = declared.summary_mix = 0.25; /* annealing: both paths */
            randomize(&m, 41);
            m.recompute = declared.recompute = recompute;
            size_t nseq = 2, T = 29;
            int32_t *tok = random_tokens(nseq, T, m.V, 42);
            ksa_step_memory plan = ksa_model_plan(&m, nseq, T, 1);
            ksa_step_memory plan_declared = ksa_model_plan(&declared, nseq, T, 1);
            assert_null(declared.params.data);
            ksa_arena arena;
            ksa_grad_pool pool;
            ksa_tape tp;
            ksa_model_tape_init(&m, nseq, T, 1, &arena, &pool, &tp);
            double v;
            ksa_tensor *loss =
                ksa_model_forward(&m, &tp, tok, nseq, T, (double)(nseq * T), &v, NULL);
            ksa_tape_backward(&tp, loss);
            if (plan.arena_peak != arena.peak || plan.grads_high_water != pool.high_water ||
                plan.grads_peak != pool.peak)
                fail_msg("configuration %zu, recompute %d: planned arena %zu, pool %zu touched, "
                         "%zu alive; the step: %zu, %zu, %zu",
                         i, recompute, plan.arena_peak, plan.grads_high_water, plan.grads_peak,
                         arena.peak, pool.high_water, pool.peak);
            assert_true(plan_declared.arena_peak == plan.arena_peak);
            assert_true(plan_declared.grads_high_water == plan.grads_high_water);
            ksa_model_tape_free(&arena, &pool, &tp);
            free(tok);
            ksa_model_free(&m);
            ksa_model_free(&declared);
        }
}

/* The reservation bounds a step whatever the annealing coefficient: a sizing run (as a
 * step, in sparse memory) of long sequences, where the fixed slack of the bound no longer
 * hides a missing term, stays within the arena and the gradient pool it gets. */
static void annealing_steps_fit_the_reservation(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_mixing, cfg_mixing_shared_norms};
    const double mixes[] = {1, 0.5, 0};
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < 3; k++)
            for (int recompute = 0; recompute < 2; recompute++) {
                ksa_model_config c;
                configure(&c, cfgs[i]);
                /* many summary rows, wide heads: the projections dominate the memory */
                ksa_model_config_set(&c, "summary_chunk_size", "2", "test");
                ksa_model_config_set(&c, "head_dim", "32", "test");
                ksa_model_config_set(&c, "num_key_value_heads", "4", "test");
                ksa_model m;
                assert_int_equal(ksa_model_declare(&m, &c), KSA_OK);
                m.summary_mix = mixes[k];
                m.recompute = recompute;
                size_t nseq = 3, T = 6001;
                size_t grads = ksa_model_grad_bytes(&m, nseq, T);
                size_t arena = ksa_model_arena_bytes(&m, nseq, T) - grads;
                ksa_step_memory p = ksa_model_plan(&m, nseq, T, 1);
                if (p.arena_peak > arena || p.grads_high_water > grads)
                    fail_msg("configuration %zu, m %g, recompute %d: arena %zu of %zu, gradients "
                             "%zu of %zu",
                             i, mixes[k], recompute, p.arena_peak, arena, p.grads_high_water,
                             grads);
                ksa_model_free(&m);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(positions_match_the_spec_examples),
        cmocka_unit_test(parameters_follow_the_checkpoint_names),
        cmocka_unit_test(whole_model_gradients_match_finite_differences),
        cmocka_unit_test(annealing_gradients_match_finite_differences),
        cmocka_unit_test(annealing_ends_are_the_summary_and_the_shared_models),
        cmocka_unit_test(full_window_ksa_model_equals_the_causal_model),
        cmocka_unit_test(arena_estimate_covers_a_training_step),
        cmocka_unit_test(per_target_losses_sum_to_the_loss_and_match_prefixes),
        cmocka_unit_test(recomputation_gives_identical_gradients_in_less_memory),
        cmocka_unit_test(the_sizing_run_uses_what_a_step_uses),
        cmocka_unit_test(annealing_steps_fit_the_reservation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
