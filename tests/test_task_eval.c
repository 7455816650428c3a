/* test_task_eval.c - retrieval-task accuracy (train/task_eval.h) on a model whose greedy
 * output is known in advance.
 *
 * The model: attention and MLP outputs zero (o_proj, down_proj = 0), so the residual stream
 * of a token is its embedding; embeddings one-hot (E[v] = e_v, D >= V) and an LM head with
 * lm_head[u][x] = 1 exactly when u = next(x): greedy decoding follows the chain
 * x -> next(x) -> ... from the last prompt token (a bigram machine; ties go to id 0). The chain
 * is built from the answer of one example of the set, so that example is solved and others
 * are not, and the test predicts every example's outcome by following the chain itself. The
 * layers are summary layers, so prefill, summaries and the cache all run.                 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tasks.h"
#include "model/decoder.h"
#include "train/task_eval.h"

enum { V = 257, D = 264 };

static void bigram_model(ksa_model *m, const int32_t next[V])
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    const char *kv[] = {"vocab_size",
                        "257",
                        "hidden_size",
                        "264",
                        "intermediate_size",
                        "8",
                        "num_hidden_layers",
                        "2",
                        "num_attention_heads",
                        "2",
                        "num_key_value_heads",
                        "1",
                        "head_dim",
                        "8",
                        "max_position_embeddings",
                        "1024",
                        "use_summary_attention",
                        "true",
                        "summary_chunk_size",
                        "8",
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
    ksa_model_init_weights(m, 3); /* every other weight random: it must not matter */
    ksa_params *p = &m->params;
    for (size_t l = 0; l < m->layout.n_layers; l++) {
        long zero[] = {m->layers[l].o_proj, m->layers[l].down_proj};
        for (int k = 0; k < 2; k++)
            memset(p->data + p->table[zero[k]].offset, 0,
                   p->table[zero[k]].numel * sizeof(ksa_real));
    }
    ksa_real *E = p->data + p->table[m->embed_tokens].offset;
    ksa_real *H = p->data + p->table[m->lm_head].offset;
    memset(E, 0, (size_t)V * D * sizeof *E);
    memset(H, 0, (size_t)V * D * sizeof *H);
    for (size_t v = 0; v < V; v++) {
        E[v * D + v] = 1;
        if (next[v] >= 0)
            H[(size_t)next[v] * D + v] = 1;
    }
}

/* What greedy decoding writes after the prompt: n steps of the chain (0 where undefined). */
static int chain_solves(const int32_t next[V], const ksa_task_example *ex)
{
    int32_t x = ex->ids[ex->prompt_tokens - 1];
    for (size_t k = 0; k < ex->answer_tokens; k++) {
        x = next[x] >= 0 ? next[x] : 0;
        if (x != ex->ids[ex->prompt_tokens + k])
            return 0;
    }
    return 1;
}

static void accuracy_counts_exactly_the_examples_the_model_answers(void **state)
{
    (void)state;
    ksa_task_filler filler;
    assert_int_equal(ksa_task_filler_open(&filler, KSA_TASK_NOISE), KSA_OK);
    const double depths[] = {0, 40, 100};
    enum { N = 23, LEN = 300 };
    const uint64_t seed = 77;
    /* the chain of the first example whose answer's bytes are all different */
    int32_t next[V];
    size_t solved_by_construction = N;
    for (size_t i = 0; i < N && solved_by_construction == N; i++) {
        ksa_task_example ex;
        assert_int_equal(ksa_task_generate(&ex, KSA_TASK_PASSKEY, LEN, depths[i % 3],
                                           ksa_task_example_seed(seed, i), &filler, NULL),
                         KSA_OK);
        for (size_t v = 0; v < V; v++)
            next[v] = -1;
        int distinct = 1;
        int32_t x = ex.ids[ex.prompt_tokens - 1];
        for (size_t k = 0; k < ex.answer_tokens && distinct; k++) {
            int32_t y = ex.ids[ex.prompt_tokens + k];
            distinct = next[x] < 0 && x != y;
            next[x] = y;
            x = y;
        }
        if (distinct)
            solved_by_construction = i;
        ksa_task_example_free(&ex);
    }
    assert_true(solved_by_construction < N);
    ksa_model m;
    bigram_model(&m, next);

    /* the outcome of every example, predicted by following the chain */
    size_t want_correct[3] = {0}, want_n[3] = {0}, want_total = 0, want_first_wrong = N;
    for (size_t i = 0; i < N; i++) {
        ksa_task_example ex;
        assert_int_equal(ksa_task_generate(&ex, KSA_TASK_PASSKEY, LEN, depths[i % 3],
                                           ksa_task_example_seed(seed, i), &filler, NULL),
                         KSA_OK);
        int ok = chain_solves(next, &ex);
        if (i == solved_by_construction)
            assert_true(ok);
        want_correct[i % 3] += (size_t)ok, want_n[i % 3]++, want_total += (size_t)ok;
        if (!ok && want_first_wrong == N)
            want_first_wrong = i;
        ksa_task_example_free(&ex);
    }
    assert_true(want_total >= 1 && want_total < N); /* both outcomes occur */

    for (size_t batch = 1; batch <= 8; batch += 7) { /* alone and in batches */
        ksa_task_eval_options o = {.task = KSA_TASK_PASSKEY,
                                   .len = LEN,
                                   .n = N,
                                   .depths = depths,
                                   .n_depths = 3,
                                   .seed = seed,
                                   .filler = &filler,
                                   .batch = batch};
        ksa_task_eval_result r;
        assert_int_equal(ksa_task_eval(&m, &o, &r), KSA_OK);
        assert_int_equal(r.n, N);
        assert_int_equal(r.correct, want_total);
        for (size_t d = 0; d < 3; d++) {
            assert_int_equal(r.by_depth[d].n, want_n[d]);
            assert_int_equal(r.by_depth[d].correct, want_correct[d]);
            assert_true(r.by_depth[d].depth == depths[d]);
        }
        assert_int_equal(r.first_wrong, want_first_wrong);
        assert_true(r.cache.live_bytes > 0 && r.cache.live_bytes < r.cache.causal_bytes);
        ksa_task_eval_result_free(&r);
    }
    ksa_model_free(&m);

    /* every answer token counts: with the chain's last link broken, the example that was
     * solved is wrong by its last token only, and nothing is solved any more */
    ksa_task_example ex;
    assert_int_equal(
        ksa_task_generate(&ex, KSA_TASK_PASSKEY, LEN, depths[solved_by_construction % 3],
                          ksa_task_example_seed(seed, solved_by_construction), &filler, NULL),
        KSA_OK);
    int32_t last_from = ex.ids[ex.prompt_tokens + ex.answer_tokens - 2];
    next[last_from] = (int32_t)'x';
    assert_false(chain_solves(next, &ex));
    ksa_task_example_free(&ex);
    bigram_model(&m, next);
    ksa_task_eval_options o = {.task = KSA_TASK_PASSKEY,
                               .len = LEN,
                               .n = N,
                               .depths = depths,
                               .n_depths = 3,
                               .seed = seed,
                               .filler = &filler,
                               .batch = 4};
    ksa_task_eval_result r;
    assert_int_equal(ksa_task_eval(&m, &o, &r), KSA_OK);
    assert_int_equal(r.correct, 0);
    ksa_task_eval_result_free(&r);
    ksa_model_free(&m);
    ksa_task_filler_free(&filler);
}

static void bad_options_are_refused_by_name(void **state)
{
    (void)state;
    int32_t next[V];
    for (size_t v = 0; v < V; v++)
        next[v] = -1;
    ksa_model m;
    bigram_model(&m, next);
    ksa_task_filler filler;
    assert_int_equal(ksa_task_filler_open(&filler, KSA_TASK_NOISE), KSA_OK);
    double depths[] = {50}, bad_depth[] = {101};
    ksa_task_eval_options o = {.task = KSA_TASK_PASSKEY,
                               .len = 200,
                               .n = 2,
                               .depths = depths,
                               .n_depths = 1,
                               .seed = 1,
                               .filler = &filler,
                               .batch = 2};
    ksa_task_eval_result r;
    ksa_task_eval_options bad = o;
    bad.len = 2000; /* above max_position_embeddings 1024 */
    assert_int_equal(ksa_task_eval(&m, &bad, &r), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "max_position_embeddings"));
    bad = o;
    bad.len = 10;
    assert_int_equal(ksa_task_eval(&m, &bad, &r), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "at least"));
    bad = o;
    bad.depths = bad_depth;
    assert_int_equal(ksa_task_eval(&m, &bad, &r), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "depth 101"));
    bad = o;
    bad.n = 0;
    assert_int_equal(ksa_task_eval(&m, &bad, &r), KSA_EINVAL);
    bad = o;
    bad.batch = 0;
    assert_int_equal(ksa_task_eval(&m, &bad, &r), KSA_EINVAL);
    assert_int_equal(ksa_task_eval(&m, &o, &r), KSA_OK); /* the good options work */
    assert_int_equal(r.n, 2);
    ksa_task_eval_result_free(&r);
    ksa_task_filler_free(&filler);
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accuracy_counts_exactly_the_examples_the_model_answers),
        cmocka_unit_test(bad_options_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
