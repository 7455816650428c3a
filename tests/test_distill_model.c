/* test_distill_model.c - the model side of attention distillation (decoder.h, KSA_SPEC §9.2):
 * the teacher gives exactly the logits of the plain causal model on the same weights; the
 * distillation loss is the weighted sum of its terms, and in the float64 build its gradient
 * matches central differences on summary parameters (those distillation trains). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/decoder.h"

static void configure(ksa_model *m, int ksa)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    const char *kv[] = {"vocab_size",
                        "29",
                        "hidden_size",
                        "8",
                        "intermediate_size",
                        "12",
                        "num_attention_heads",
                        "2",
                        "num_key_value_heads",
                        "1",
                        "head_dim",
                        "4",
                        "num_hidden_layers",
                        "3",
                        "summary_chunk_size",
                        "3",
                        "summary_token_num",
                        "1",
                        "summary_sliding_chunk_num",
                        "1",
                        "summary_layer_freq",
                        "[1,1,0]",
                        "summary_independent_parameters",
                        "true",
                        "summary_chunk_position_ids_type",
                        "origin",
                        "summary_token_position_ids_type",
                        "last_chunk_slice_right",
                        NULL};
    for (size_t i = 0; kv[i]; i += 2)
        assert_int_equal(ksa_model_config_set(&c, kv[i], kv[i + 1], "test"), KSA_OK);
    assert_int_equal(
        ksa_model_config_set(&c, "use_summary_attention", ksa ? "true" : "false", "test"), KSA_OK);
    assert_int_equal(ksa_model_init(m, &c), KSA_OK);
    ksa_model_init_weights(m, 5);
}

static void tokens_of(int32_t *tokens, size_t n, size_t V)
{
    for (size_t i = 0; i < n; i++)
        tokens[i] = (int32_t)((i * 11 + 3) % V);
}

/* The causal model has the KSA model's shared parameters (same names); the teacher of the KSA
 * model gives its logits bit for bit. */
static void the_teacher_is_the_causal_model(void **state)
{
    (void)state;
    ksa_model k, c;
    configure(&k, 1);
    configure(&c, 0);
    for (size_t i = 0; i < c.params.n; i++) {
        long j = ksa_params_find(&k.params, c.params.table[i].name);
        assert_true(j >= 0);
        memcpy(c.params.data + c.params.table[i].offset, k.params.data + k.params.table[j].offset,
               c.params.table[i].numel * sizeof(ksa_real));
    }
    size_t nseq = 2, T = 13, Nt = nseq * T;
    int32_t tokens[2 * 14];
    tokens_of(tokens, nseq * (T + 1), k.V);
    ksa_arena a1, a2;
    ksa_grad_pool p1, p2;
    ksa_tape t1, t2;
    ksa_model_tape_init(&c, nseq, T, 0, &a1, &p1, &t1);
    t1.recording = 0;
    ksa_tensor *want;
    double loss;
    ksa_model_forward(&c, &t1, tokens, nseq, T, 1.0, &loss, &want);
    ksa_model_tape_init(&k, nseq, T, 0, &a2, &p2, &t2);
    ksa_tensor *got = ksa_tensor_2d(&a2, Nt, k.V);
    ksa_model_teacher_logits(&k, &t2, tokens, nseq, T, got);
    for (size_t i = 0; i < Nt * k.V; i++)
        if (got->data[i] != want->data[i])
            fail_msg("logit %zu: teacher %.9g, causal model %.9g", i, (double)got->data[i],
                     (double)want->data[i]);
    /* and the KSA model's own logits differ (the teacher is not the student) */
    ksa_tensor *student;
    ksa_tape_reset(&t2);
    ksa_model_forward(&k, &t2, tokens, nseq, T, 1.0, &loss, &student);
    double diff = 0;
    for (size_t i = 0; i < Nt * k.V; i++)
        diff = fmax(diff, fabs((double)student->data[i] - (double)want->data[i]));
    assert_true(diff > 1e-3);
    ksa_model_tape_free(&a1, &p1, &t1);
    ksa_model_tape_free(&a2, &p2, &t2);
    ksa_model_free(&k);
    ksa_model_free(&c);
}

static double distill_loss(ksa_model *m, const int32_t *tokens, size_t nseq, size_t T,
                           ksa_distill *d, int backward)
{
    ksa_arena a;
    ksa_grad_pool p;
    ksa_tape tp;
    ksa_model_tape_init(m, nseq, T, backward, &a, &p, &tp);
    tp.recording = backward;
    if (backward)
        ksa_params_zero_grad(&m->params);
    ksa_tensor *l = ksa_model_forward_distill(m, &tp, tokens, nseq, T, (double)(nseq * T), d);
    double v = (double)l->data[0];
    if (backward)
        ksa_tape_backward(&tp, l);
    ksa_model_tape_free(&a, &p, &tp);
    return v;
}

/* The returned loss is the weighted sum of the reported terms; its gradient (float64) matches
 * central differences on a few elements of summary parameters, with every term
 * on (the cosine term too) and the attention term's per-row normalisation. */
static void the_loss_is_the_weighted_sum_and_its_gradient_is_right(void **state)
{
    (void)state;
    ksa_model m;
    configure(&m, 1);
    size_t nseq = 2, T = 10;
    int32_t tokens[2 * 11];
    tokens_of(tokens, nseq * (T + 1), m.V);
    /* the step's memory plan (the teacher's outputs included) fits the arena it sizes */
    m.distill = 1;
    ksa_step_memory plan = ksa_model_plan(&m, nseq, T, 1);
    size_t arena = ksa_model_arena_bytes(&m, nseq, T) - ksa_model_grad_bytes(&m, nseq, T);
    assert_true(plan.arena_peak <= arena);
    m.distill = 0;
    assert_true(ksa_model_plan(&m, nseq, T, 1).arena_peak < plan.arena_peak);
    m.distill = 1; /* the steps below are distillation steps */
    ksa_distill d = ksa_distill_defaults();
    d.cos_weight = 0.7, d.rms_norm = 1, d.clamp = 1e3; /* a smooth loss for the differences */
    double v = distill_loss(&m, tokens, nseq, T, &d, 1);
    double want =
        d.lm_weight * d.ce + d.attn_weight * d.attn + d.kl_weight * d.kl + d.cos_weight * d.cos;
    assert_true(fabs(v - want) <= 1e-5 * fabs(want));
    assert_true(d.ce > 0 && d.attn > 0 && d.kl > 0 && d.cos > 0);
#ifdef KSA_REAL_DOUBLE
    /* summary parameters only: the teacher does not depend on them (a shared weight moves
     * the teacher too, which the gradient rightly treats as a constant: it trains frozen) */
    const char *names[] = {"model.layers.0.self_attn.q_proj_summary.weight",
                           "summary_embedding.weight",
                           "model.layers.1.self_attn.k_proj_summary.weight",
                           "model.layers.1.self_attn.v_proj_summary.weight"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        long i = ksa_params_find(&m.params, names[k]);
        assert_true(i >= 0);
        for (size_t j = 0; j < 3; j++) {
            size_t at = m.params.table[i].offset + j * 5 % m.params.table[i].numel;
            double g = (double)m.params.grad[at], x = m.params.data[at], h = 1e-6;
            ksa_distill dd = d;
            m.params.data[at] = x + h;
            double fp = distill_loss(&m, tokens, nseq, T, &dd, 0);
            m.params.data[at] = x - h;
            double fm = distill_loss(&m, tokens, nseq, T, &dd, 0);
            m.params.data[at] = x;
            double fd = (fp - fm) / (2 * h);
            if (!(fabs(g - fd) <= 1e-7 + 1e-5 * fmax(fabs(g), fabs(fd))))
                fail_msg("%s[%zu]: gradient %.10g, differences %.10g", names[k], j, g, fd);
        }
    }
#endif
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_teacher_is_the_causal_model),
        cmocka_unit_test(the_loss_is_the_weighted_sum_and_its_gradient_is_right),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
