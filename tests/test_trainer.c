/* test_trainer.c - the training step: gradient accumulation does not change the step
 * (global batch 8 as 1 x 8, 2 x 4 and 8 x 1 micro-batches), the step is deterministic,
 * non-finite values stop it with the parameter named, FLOPs of the MFU formula.        */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void flops_count_dense_rows_and_visible_pairs(void **state)
{
    (void)state;
    ksa_model m;
    small_model(&m);
    /* dense: every linear matrix (untied: lm_head too), not the embedding tables */
    double dense = 0;
    for (size_t i = 0; i < m.params.n; i++)
        if (m.params.table[i].ndim == 2 && strstr(m.params.table[i].name, "embed") == NULL)
            dense += (double)m.params.table[i].numel;
    size_t T = 21, G = 3, rows = G * (T + ksa_layout_summary_rows(&m.layout, T));
    /* visible pairs per sequence and layer, counted by brute force over the two streams */
    double pairs = 0;
    size_t C = 4, S = 1, W = 2;
    for (size_t t = 0; t < T; t++) {
        size_t c = t / C, w0 = c > W ? c - W : 0;
        pairs += (double)(w0 * S + (t - w0 * C + 1));
    }
    for (size_t c = 0; c < T / C; c++)
        pairs += (double)(C + 1); /* S = 1: its chunk's C text keys and itself */
    double want = 6 * dense * (double)rows + 12.0 * 8 * 2 * pairs * 2 /* layers */ * (double)G;
    double got = ksa_model_step_flops(&m, G, T);
    assert_true(fabs(got - want) <= 1e-9 * want);
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accumulation_does_not_change_loss_norm_or_parameters),
        cmocka_unit_test(steps_are_deterministic),
        cmocka_unit_test(a_non_finite_gradient_stops_the_step_naming_the_parameter),
        cmocka_unit_test(flops_count_dense_rows_and_visible_pairs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
