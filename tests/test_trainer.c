/* test_trainer.c - the training step: gradient accumulation does not change the step
 * (global batch 8 as 1 x 8, 2 x 4 and 8 x 1 micro-batches), the step is deterministic,
 * non-finite values stop it with the parameter named, the loss-spike guard's state survives
 * a checkpoint, the MFU's FLOPs against hand counts. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "model/decoder.h"
#include "model/layout.h"
#include "train/trainer.h"

static char tmpdir[64];
static char data_path[128];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/ksa_trainer_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(data_path, sizeof data_path, "%s/tokens.bin", tmpdir);
    FILE *f = fopen(data_path, "wb");
    test_rng r = test_rng_seed(3);
    for (int i = 0; i < 4000; i++) { /* a learnable sequence: mostly i mod 17, some noise */
        uint16_t v =
            (uint16_t)(test_rng_uniform(&r) < 0.8 ? i % 17 : (int)(test_rng_uniform(&r) * 29));
        fwrite(&v, 2, 1, f);
    }
    fclose(f);
    char meta[160];
    snprintf(meta, sizeof meta, "%s.meta", data_path);
    f = fopen(meta, "w");
    fputs("uint16", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

static void small_model(ksa_model *m)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    const char *kv[] = {"vocab_size",
                        "29",
                        "hidden_size",
                        "16",
                        "intermediate_size",
                        "24",
                        "num_hidden_layers",
                        "2",
                        "num_attention_heads",
                        "2",
                        "num_key_value_heads",
                        "1",
                        "head_dim",
                        "8",
                        "use_summary_attention",
                        "true",
                        "summary_chunk_size",
                        "4",
                        "summary_token_num",
                        "1",
                        "summary_sliding_chunk_num",
                        "2",
                        "summary_independent_parameters",
                        "true",
                        NULL};
    for (size_t i = 0; kv[i]; i += 2)
        assert_int_equal(ksa_model_config_set(&c, kv[i], kv[i + 1], "test"), KSA_OK);
    assert_int_equal(ksa_model_init(m, &c), KSA_OK);
    ksa_model_init_weights(m, 7);
}

static void train_config(ksa_train_config *tc, long micro_batch)
{
    ksa_train_config_defaults(tc);
    strcpy(tc->data, data_path);
    tc->seq_len = 21; /* 5 chunks and a tail */
    tc->global_batch = 8;
    tc->micro_batch = micro_batch;
    tc->steps = 4;
    tc->lr = 1e-2;
    tc->lr_schedule[0] = '\0';
    strcpy(tc->lr_schedule, "constant");
    tc->warmup_steps = 0;
    tc->clip_value = 0.05; /* active: value clipping changes the step */
}

typedef struct {
    double loss[4], grad_norm[4];
    ksa_real *params;
    size_t n;
} run_result;

static void run(long micro_batch, run_result *out)
{
    ksa_model m;
    small_model(&m);
    ksa_train_config tc;
    train_config(&tc, micro_batch);
    ksa_trainer t;
    assert_int_equal(ksa_trainer_init(&t, &m, &tc, "test"), KSA_OK);
    for (int s = 0; s < 4; s++) {
        ksa_step_stats st;
        assert_int_equal(ksa_trainer_step(&t, &st), KSA_OK);
        out->loss[s] = st.loss;
        out->grad_norm[s] = st.grad_norm;
        assert_true(st.lr == 1e-2);
    }
    out->n = m.params.numel;
    out->params = malloc(out->n * sizeof *out->params);
    memcpy(out->params, m.params.data, out->n * sizeof *out->params);
    ksa_trainer_free(&t);
    ksa_model_free(&m);
}

static void accumulation_does_not_change_loss_norm_or_parameters(void **state)
{
    (void)state;
    run_result a, b, c;
    run(8, &a); /* one micro-batch of 8 */
    run(4, &b); /* two of 4 */
    run(1, &c); /* eight of 1 */
    ksa_expect_close_dd(b.loss, a.loss, 4, 0, 1e-5, "loss, 2 x 4 vs 1 x 8");
    ksa_expect_close_dd(c.loss, a.loss, 4, 0, 1e-5, "loss, 8 x 1 vs 1 x 8");
    ksa_expect_close_dd(b.grad_norm, a.grad_norm, 4, 0, 1e-4, "grad norm, 2 x 4");
    ksa_expect_close_dd(c.grad_norm, a.grad_norm, 4, 0, 1e-4, "grad norm, 8 x 1");
    double *pa = test_to_double(a.params, a.n);
    /* parameters move by ~lr per step; float rounding differences stay far below that */
    ksa_expect_close(b.params, pa, a.n, 1e-5, 1e-4, "parameters, 2 x 4");
    ksa_expect_close(c.params, pa, a.n, 1e-5, 1e-4, "parameters, 8 x 1");
    assert_true(a.loss[3] < a.loss[0]); /* and it learns */
    free(pa), free(a.params), free(b.params), free(c.params);
}

static void steps_are_deterministic(void **state)
{
    (void)state;
    run_result a, b;
    run(2, &a);
    run(2, &b);
    assert_memory_equal(a.loss, b.loss, sizeof a.loss);
    assert_memory_equal(a.params, b.params, a.n * sizeof *a.params);
    free(a.params), free(b.params);
}

static void a_non_finite_gradient_stops_the_step_naming_the_parameter(void **state)
{
    (void)state;
    ksa_model m;
    small_model(&m);
    long k = ksa_params_find(&m.params, "model.layers.1.mlp.up_proj.weight");
    m.params.data[m.params.table[k].offset + 3] = (ksa_real)NAN;
    ksa_train_config tc;
    train_config(&tc, 8);
    ksa_trainer t;
    assert_int_equal(ksa_trainer_init(&t, &m, &tc, "test"), KSA_OK);
    ksa_step_stats st;
    assert_int_equal(ksa_trainer_step(&t, &st), KSA_ENUMERIC);
    if (!strstr(ksa_last_error(), "step 1: non-finite gradient"))
        fail_msg("%s", ksa_last_error());
    assert_int_equal(t.step, 0); /* nothing was applied */
    ksa_trainer_free(&t);
    ksa_model_free(&m);
}

/* An infinite second moment leaves the parameter finite (m / sqrt(inf) = 0) but is caught
 * by the update's fused check all the same: the step stops naming the parameter and the
 * element, and does not count. */
static void a_moment_the_update_leaves_infinite_stops_the_step(void **state)
{
    (void)state;
    ksa_model m;
    small_model(&m);
    ksa_train_config tc;
    train_config(&tc, 8);
    ksa_trainer t;
    assert_int_equal(ksa_trainer_init(&t, &m, &tc, "test"), KSA_OK);
    long k = ksa_params_find(&m.params, "model.layers.1.mlp.up_proj.weight");
    t.exp_avg_sq[m.params.table[k].offset + 3] = (ksa_real)INFINITY;
    ksa_step_stats st;
    assert_int_equal(ksa_trainer_step(&t, &st), KSA_ENUMERIC);
    if (!strstr(ksa_last_error(), "step 1: non-finite value after the AdamW update in "
                                  "model.layers.1.mlp.up_proj.weight (element 3)"))
        fail_msg("%s", ksa_last_error());
    assert_true(isfinite(m.params.data[m.params.table[k].offset + 3]));
    assert_int_equal(t.step, 0);
    ksa_trainer_free(&t);
    ksa_model_free(&m);
}

/* Replaces (or adds) the /train attribute `name` of the file at path by `n` doubles. */
static void put_train_doubles(const char *path, const char *name, const double *v, hsize_t n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "train", H5P_DEFAULT);
    assert_true(f >= 0 && g >= 0);
    if (H5Aexists(g, name) > 0)
        assert_true(H5Adelete(g, name) >= 0);
    hid_t space = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(g, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, v) >= 0);
    H5Aclose(a), H5Sclose(space), H5Gclose(g), H5Fclose(f);
}

/* The loss-spike guard's state goes into a training checkpoint and comes back on resume
 * exactly; a state that cannot be a run's (a non-finite loss in the window, more skipped
 * steps than steps) is refused naming the attribute. */
static void the_guard_state_round_trips_through_a_checkpoint(void **state)
{
    (void)state;
    ksa_model m;
    small_model(&m);
    ksa_train_config tc;
    train_config(&tc, 8);
    ksa_trainer t, r;
    assert_int_equal(ksa_trainer_init(&t, &m, &tc, "test"), KSA_OK);
    ksa_step_stats st;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ksa_trainer_step(&t, &st), KSA_OK);
    t.guard.n = 3; /* as a run with a skip and a high loss would have left it */
    t.guard.recent[0] = 3.25, t.guard.recent[1] = 1.0 / 3, t.guard.recent[2] = 2.5e-7;
    t.guard.high_steps = 1, t.guard.skipped = 2;
    char path[160];
    snprintf(path, sizeof path, "%s/guard.h5", tmpdir);
    assert_int_equal(ksa_trainer_save(&t, path, NAN), KSA_OK);
    assert_int_equal(ksa_trainer_init(&r, &m, &tc, "test"), KSA_OK);
    assert_int_equal(ksa_trainer_resume(&r, path), KSA_OK);
    assert_int_equal(r.step, 3);
    assert_int_equal(r.guard.n, 3);
    assert_memory_equal(r.guard.recent, t.guard.recent, 3 * sizeof(double));
    assert_int_equal(r.guard.high_steps, 1);
    assert_int_equal(r.guard.skipped, 2);
    ksa_trainer_free(&r);

    double bad_window[2] = {1.5, NAN};
    put_train_doubles(path, "loss_window", bad_window, 2);
    assert_int_equal(ksa_trainer_init(&r, &m, &tc, "test"), KSA_OK);
    assert_int_equal(ksa_trainer_resume(&r, path), KSA_EFORMAT);
    if (!strstr(ksa_last_error(), "/train attribute loss_window[1] is nan"))
        fail_msg("%s", ksa_last_error());
    ksa_trainer_free(&r);
    put_train_doubles(path, "loss_window", bad_window, 1); /* a good window: 1.5 alone */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), g = H5Gopen2(f, "train", H5P_DEFAULT);
    hid_t a = H5Aopen(g, "skipped_steps", H5P_DEFAULT);
    long long four = 4; /* skipped steps, of 3 */
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &four) >= 0);
    H5Aclose(a), H5Gclose(g), H5Fclose(f);
    assert_int_equal(ksa_trainer_init(&r, &m, &tc, "test"), KSA_OK);
    assert_int_equal(ksa_trainer_resume(&r, path), KSA_EFORMAT);
    if (!strstr(ksa_last_error(), "/train skipped_steps = 4 exceeds step = 3"))
        fail_msg("%s", ksa_last_error());
    ksa_trainer_free(&r);
    ksa_trainer_free(&t);
    ksa_model_free(&m);
}

/* ---- FLOPs: hand counts of ksa_model_step_flops ------------------------------------------ *
 * All four models share D = 16, I = 24, V = 29, Hq = 2, Hkv = 1, head_dim = 8, and run G = 3
 * rows of T = 21 text tokens. Multiply-adds of one row through one layer's matrices:
 *   q 16·16 = 256, k and v 8·16 = 128 each, o 16·16 = 256, gate + up + down 3·16·24 = 1152:
 *   1920 (a summary twin of q/k/v has the same shape, so a summary row costs the same).
 * LM head, text rows only: V·D = 464 per row. Attention: 12·head_dim·Hq = 192 per pair.
 *   FLOPs = G · (6 · multiply-adds of one sequence + 192 · visible pairs of one sequence)  */
static void declare_model(ksa_model *m, const char *keys)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    char buf[512];
    snprintf(buf, sizeof buf,
             "vocab_size=29;hidden_size=16;intermediate_size=24;num_attention_heads=2;"
             "num_key_value_heads=1;head_dim=8;%s",
             keys);
    for (char *save = NULL, *kv = strtok_r(buf, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = 0;
        assert_int_equal(ksa_model_config_set(&c, kv, eq + 1, "test"), KSA_OK);
    }
    assert_int_equal(ksa_model_declare(m, &c), KSA_OK);
}

/* The count is a sum of integers far below 2^53: exact in double, so compared exactly.
 * keys: "key=value;key=value..." on top of the shared backbone.                          */
static void expect_step_flops(const char *keys, double hand_count)
{
    ksa_model m;
    declare_model(&m, keys);
    double flops = ksa_model_step_flops(&m, 3, 21);
    ksa_model_free(&m);
    if (flops != hand_count)
        fail_msg("%s: ksa_model_step_flops gives %.17g, the hand count is %.17g", keys, flops,
                 hand_count);
}

/* Hybrid KSA, C = 4, S = 1, W = 2, layers summary, summary, causal bypass, independent
 * summary parameters (q/k/v twins), untied LM head. T = 21: 5 complete chunks and a tail of
 * 1 token, so 5 summary rows per sequence.
 *   multiply-adds: 2 summary layers · (21 + 5) rows · 1920 = 99 840
 *                + 1 causal layer  ·  21 rows      · 1920 = 40 320
 *                + LM head          ·  21 rows      ·  464 =  9 744        sum 149 904
 *   pairs of a summary layer (KSA_SPEC §3.5): text query of chunk c, offset o sees
 *   (o + 1) + 4·min(c, 2) + 1·max(0, c − 2) keys; chunk by chunk
 *     c = 0: 1+2+3+4 = 10;  c = 1: 10 + 4·4 = 26;  c = 2: 10 + 4·8 = 42;
 *     c = 3: 10 + 4·9 = 46; c = 4: 10 + 4·10 = 50;  c = 5 (t = 20 alone): 1 + 8 + 3 = 12
 *     text 186; summary query s_c.0 of the 5 complete chunks: 4 + 1 = 5 each, 25; total 211
 *   pairs of the causal layer: 21·22/2 = 231;  all layers 2·211 + 231 = 653
 *   FLOPs = 3 · (6 · 149 904 + 192 · 653) = 3 · (899 424 + 125 376) = 3 074 400
 * (Charging every dense parameter, twins included, to every row of both streams gave
 * 3 · (6 · 7248 · 26 + 192 · 653) = 3 768 192, 23 % more.)                               */
static void flops_of_a_hybrid_ksa_model_are_the_hand_count(void **state)
{
    (void)state;
    const char *hybrid = "num_hidden_layers=3;use_summary_attention=true;summary_chunk_size=4;"
                         "summary_token_num=1;summary_sliding_chunk_num=2;"
                         "summary_layer_freq=[1, 1, 0];tie_word_embeddings=false";
    char keys[512];
    snprintf(keys, sizeof keys, "%s;summary_independent_parameters=true", hybrid);
    expect_step_flops(keys, 3074400.0);
    /* shared summary parameters: the same rows meet matrices of the same shapes */
    snprintf(keys, sizeof keys, "%s;summary_independent_parameters=false;summary_token_begin=28",
             hybrid);
    expect_step_flops(keys, 3074400.0);
}

/* Plain causal, 2 layers, tied LM head (the embedding matrix multiplies the text rows).
 *   multiply-adds: 2 layers · 21 rows · 1920 + 21 · 464 = 80 640 + 9 744 = 90 384
 *   pairs: 2 layers · 21·22/2 = 462
 *   FLOPs = 3 · (6 · 90 384 + 192 · 462) = 3 · (542 304 + 88 704) = 1 893 024           */
static void flops_of_a_plain_causal_model_are_the_hand_count(void **state)
{
    (void)state;
    expect_step_flops("num_hidden_layers=2;tie_word_embeddings=true", 1893024.0);
}

/* Sliding windows, same dense work as the plain causal model (multiply-adds 90 384):
 * SWA, layer_sliding_window = 5: query t sees min(t, 5) + 1 keys,
 *   1+2+3+4+5 + 16·6 = 111 pairs per layer, 222 in all;
 *   FLOPs = 3 · (542 304 + 192 · 222) = 3 · 584 928 = 1 754 784.
 * SCA, C = 4, S = 0, W = 2 (no summary rows): own chunk causally + 4·min(c, 2) keys,
 *   10 + 26 + 42 + 42 + 42 + (1 + 8) = 171 pairs per layer, 342 in all;
 *   FLOPs = 3 · (542 304 + 192 · 342) = 3 · 607 968 = 1 823 904.                        */
static void flops_of_sliding_window_and_sliding_chunk_models_are_the_hand_count(void **state)
{
    (void)state;
    expect_step_flops("num_hidden_layers=2;tie_word_embeddings=true;layer_sliding_window=5",
                      1754784.0);
    expect_step_flops("num_hidden_layers=2;tie_word_embeddings=true;use_summary_attention=true;"
                      "sliding_chunk_attention=true;summary_token_num=0;summary_chunk_size=4;"
                      "summary_sliding_chunk_num=2",
                      1823904.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accumulation_does_not_change_loss_norm_or_parameters),
        cmocka_unit_test(steps_are_deterministic),
        cmocka_unit_test(a_non_finite_gradient_stops_the_step_naming_the_parameter),
        cmocka_unit_test(a_moment_the_update_leaves_infinite_stops_the_step),
        cmocka_unit_test(the_guard_state_round_trips_through_a_checkpoint),
        cmocka_unit_test(flops_of_a_hybrid_ksa_model_are_the_hand_count),
        cmocka_unit_test(flops_of_a_plain_causal_model_are_the_hand_count),
        cmocka_unit_test(flops_of_sliding_window_and_sliding_chunk_models_are_the_hand_count),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
