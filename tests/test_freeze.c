/* test_freeze.c - selecting the trained parameters (autograd/params.h, training keys trainable
 * and frozen): the patterns' meaning, their errors, and that a frozen parameter's gradient is
 * never touched by a forward and backward of the model (no op computes it).              */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "autograd/params.h"
#include "model/decoder.h"

static void patterns_select_by_name(void **state)
{
    (void)state;
    const char *q = "model.layers.0.self_attn.q_proj.weight";
    const char *qs = "model.layers.0.self_attn.q_proj_summary.weight";
    assert_true(ksa_params_name_trainable(q, "", ""));
    assert_true(ksa_params_name_trainable(q, NULL, NULL));
    assert_false(ksa_params_name_trainable(q, "*_summary*", ""));
    assert_true(ksa_params_name_trainable(qs, "*_summary*", ""));
    assert_true(ksa_params_name_trainable(qs, "x, *_summary*", "")); /* any pattern; spaces */
    assert_false(ksa_params_name_trainable(qs, "", "model.layers.?.self_attn.*"));
    assert_true(ksa_params_name_trainable(qs, "", "model.layers.?.mlp.*"));
    assert_false(ksa_params_name_trainable(qs, "*_summary*", "*q_proj*")); /* frozen wins */
}

static void model_of(ksa_model *m)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    const char *kv[] = {"vocab_size",
                        "31",
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
                        "2",
                        "use_summary_attention",
                        "true",
                        "summary_chunk_size",
                        "4",
                        "summary_token_num",
                        "1",
                        "summary_sliding_chunk_num",
                        "1",
                        "summary_independent_parameters",
                        "true",
                        NULL};
    for (size_t i = 0; kv[i]; i += 2)
        assert_int_equal(ksa_model_config_set(&c, kv[i], kv[i + 1], "test"), KSA_OK);
    assert_int_equal(ksa_model_init(m, &c), KSA_OK);
    ksa_model_init_weights(m, 3);
}

static void selection_marks_tables_and_views_and_refuses_typos(void **state)
{
    (void)state;
    ksa_model m;
    model_of(&m);
    ksa_params *p = &m.params;
    assert_int_equal(ksa_params_select_trainable(p, "*_summary*,summary_embedding*", ""), KSA_OK);
    size_t elements, n = ksa_params_n_trainable(p, &elements);
    assert_int_equal(n, 7); /* q/k/v_proj_summary of 2 layers and summary_embedding */
    for (size_t i = 0; i < p->n; i++) {
        int summary = strstr(p->table[i].name, "summary") != NULL;
        assert_int_equal(p->table[i].frozen, !summary);
        assert_int_equal(ksa_params_tensor(p, i)->requires_grad, summary);
    }
    /* a pattern that selects nothing, or nothing left: refused, the selection unchanged */
    assert_int_equal(ksa_params_select_trainable(p, "", "model.layer.*"), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "frozen: the pattern 'model.layer.*' matches no"));
    assert_int_equal(ksa_params_select_trainable(p, "summary_embeding*", ""), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "trainable: the pattern 'summary_embeding*'"));
    assert_int_equal(ksa_params_select_trainable(p, "*", "*"), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "leave no parameter to train"));
    assert_int_equal(ksa_params_n_trainable(p, NULL), 7);
    assert_int_equal(ksa_params_select_trainable(p, "", ""), KSA_OK); /* all again */
    assert_int_equal(ksa_params_n_trainable(p, NULL), p->n);
    ksa_model_free(&m);
}

/* A frozen parameter's gradient holds a sentinel through zero_grad, forward and backward:
 * no op computes or adds its gradient; the trained ones get theirs. */
static void no_op_touches_a_frozen_gradient(void **state)
{
    (void)state;
    ksa_model m;
    model_of(&m);
    ksa_params *p = &m.params;
    assert_int_equal(ksa_params_select_trainable(p, "", "*mlp*,model.embed_tokens.weight"), KSA_OK);
    for (size_t i = 0; i < p->n; i++)
        for (size_t j = 0; j < p->table[i].numel; j++)
            p->grad[p->table[i].offset + j] = 7;
    ksa_params_zero_grad(p);
    size_t T = 10, nseq = 2;
    int32_t tokens[2 * 11];
    for (size_t i = 0; i < nseq * (T + 1); i++)
        tokens[i] = (int32_t)(i * 7 % 31);
    ksa_arena arena;
    ksa_grad_pool pool;
    ksa_tape tp;
    ksa_model_tape_init(&m, nseq, T, 1, &arena, &pool, &tp);
    double loss;
    ksa_tape_backward(&tp, ksa_model_forward(&m, &tp, tokens, nseq, T, 20.0, &loss, NULL));
    ksa_model_tape_free(&arena, &pool, &tp);
    for (size_t i = 0; i < p->n; i++) {
        const ksa_param *e = &p->table[i];
        double nonzero = 0;
        for (size_t j = 0; j < e->numel; j++) {
            ksa_real g = p->grad[e->offset + j];
            if (e->frozen && g != 7)
                fail_msg("%s: frozen, but its gradient was written (%g)", e->name, (double)g);
            nonzero += g != 0;
        }
        /* the last layer's summary queries feed nothing the loss reads */
        int unread = !strcmp(e->name, "model.layers.1.self_attn.q_proj_summary.weight");
        if (!e->frozen && !unread && nonzero == 0)
            fail_msg("%s: trained, but its gradient is all zero", e->name);
    }
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(patterns_select_by_name),
        cmocka_unit_test(selection_marks_tables_and_views_and_refuses_typos),
        cmocka_unit_test(no_op_touches_a_frozen_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
