/* test_sample.c - text generation by full recompute (model/sample.h): greedy = the argmax of
 * the forward at every position, determinism in the seed, top-k, which ids can be generated,
 * stopping at end-of-text, the empty prompt, and the text front end; on a KSA configuration
 * (the prefix crosses chunk boundaries, so summary rows appear) and a causal one.          */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "model/decoder.h"
#include "model/sample.h"

static void configure(ksa_model_config *c, const char *const *kv)
{
    ksa_model_config_defaults(c);
    for (size_t i = 0; kv[i]; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

#define SMALL                                                                                      \
    "hidden_size", "16", "intermediate_size", "24", "num_attention_heads", "4",                    \
        "num_key_value_heads", "2", "head_dim", "4", "num_hidden_layers", "2"

/* C = 3, S = 2, W = 1 then a bypass layer: prefixes of 2 ... 13 tokens cross four chunk
 * boundaries, and the window is shorter than the prefix. */
static const char *const cfg_ksa[] = {SMALL,   "vocab_size",
                                      "257",   "use_summary_attention",
                                      "true",  "summary_chunk_size",
                                      "3",     "summary_token_num",
                                      "2",     "summary_sliding_chunk_num",
                                      "1",     "summary_layer_freq",
                                      "[1,0]", "summary_independent_parameters",
                                      "true",  NULL};
static const char *const cfg_causal[] = {SMALL, "vocab_size", "257", NULL};
/* special ids 257..299, and summary tokens embedded from ids 290, 291 */
static const char *const cfg_ksa_v300[] = {SMALL,   "vocab_size",
                                           "300",   "use_summary_attention",
                                           "true",  "summary_chunk_size",
                                           "4",     "summary_token_num",
                                           "2",     "summary_sliding_chunk_num",
                                           "2",     "summary_independent_parameters",
                                           "false", "summary_token_begin",
                                           "290",   "tie_word_embeddings",
                                           "false", NULL};
static const char *const cfg_toy[] = {SMALL, "vocab_size", "23", NULL}; /* no end-of-text */

static void model_init(ksa_model *m, const char *const *kv, uint64_t seed)
{
    ksa_model_config c;
    configure(&c, kv);
    assert_int_equal(ksa_model_init(m, &c), KSA_OK);
    ksa_model_init_weights(m, seed);
}

static ksa_real *param(ksa_model *m, const char *name)
{
    long i = ksa_params_find(&m->params, name);
    if (i < 0)
        fail_msg("no parameter %s", name);
    return m->params.data + m->params.table[i].offset;
}

/* Logits [T, V] of one forward on prefix[0..T) (plus a dummy target), copied to double. */
static double *forward_logits(ksa_model *m, const int32_t *prefix, size_t T)
{
    int32_t *tok = malloc((T + 1) * sizeof *tok);
    memcpy(tok, prefix, T * sizeof *tok);
    tok[T] = 0;
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(m, 1, T));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    tp.recording = 0;
    ksa_tensor *logits;
    ksa_model_forward(m, &tp, tok, 1, T, 1.0, NULL, &logits);
    double *out = test_to_double(logits->data, T * m->V);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    free(tok);
    return out;
}

/* First maximum of x[0..n). */
static int32_t argmax(const double *x, size_t n)
{
    size_t best = 0;
    for (size_t v = 1; v < n; v++)
        if (x[v] > x[best])
            best = v;
    return (int32_t)best;
}

static size_t sample(ksa_model *m, const int32_t *prompt, size_t n_prompt, int32_t *out,
                     size_t n_new, double temperature, size_t top_k, uint64_t seed)
{
    size_t n = 0;
    if (ksa_sample(m, prompt, n_prompt, out, n_new, temperature, top_k, seed, &n) != KSA_OK)
        fail_msg("ksa_sample: %s", ksa_last_error());
    assert_true(n <= n_new);
    return n;
}

/* prefix = prompt + out[0..i): out[i] is the argmax of the forward on it over ids 0..256,
 * and if generation stopped at n < n_new, that argmax at n is end-of-text. Also one forward
 * on the whole sequence gives the same argmaxes (the model is causal: a text row never sees
 * later tokens, summary rows included).                                                    */
static void check_greedy(const char *const *kv, const int32_t *prompt, size_t n_prompt,
                         size_t n_new)
{
    ksa_model m;
    model_init(&m, kv, 7);
    int32_t *out = calloc(n_new, sizeof *out), *again = calloc(n_new, sizeof *again);
    size_t n = sample(&m, prompt, n_prompt, out, n_new, 0.0, 0, 1);
    assert_true(n > 0); /* (a fixed model and prompt: true for these) */
    assert_int_equal(sample(&m, prompt, n_prompt, again, n_new, 0.0, 0, 99), n);
    assert_memory_equal(out, again, n * sizeof *out);
    int32_t *seq = malloc((n_prompt + n_new) * sizeof *seq);
    memcpy(seq, prompt, n_prompt * sizeof *seq);
    memcpy(seq + n_prompt, out, n * sizeof *seq);
    size_t last = n < n_new ? n : n - 1; /* positions with a known next token */
    double *all = forward_logits(&m, seq, n_prompt + last);
    for (size_t i = 0; i <= last; i++) {
        size_t T = n_prompt + i;
        double *lg = forward_logits(&m, seq, T);
        int32_t want = argmax(lg + (T - 1) * m.V, KSA_TOKENIZER_EOT + 1);
        int32_t got = i < n ? out[i] : KSA_TOKENIZER_EOT;
        if (got != want)
            fail_msg("position %zu: sampled %d, argmax of the forward %d", i, got, want);
        assert_int_equal(argmax(all + (T - 1) * m.V, KSA_TOKENIZER_EOT + 1), want);
        free(lg);
    }
    free(all);
    free(seq);
    free(again);
    free(out);
    ksa_model_free(&m);
}

static void greedy_sampling_is_the_argmax_of_the_forward_at_every_position(void **state)
{
    (void)state;
    const int32_t prompt[] = {'H', 'i'};
    check_greedy(cfg_ksa, prompt, 2, 12);
    check_greedy(cfg_causal, prompt, 2, 12);
    const int32_t one[] = {'x'};
    check_greedy(cfg_ksa, one, 1, 9);
}

static void the_same_seed_gives_the_same_tokens_and_another_seed_others(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_ksa, cfg_causal};
    const int32_t prompt[] = {'a', 'b', 'c'};
    for (size_t c = 0; c < 2; c++) {
        ksa_model m;
        model_init(&m, cfgs[c], 3);
        int32_t a[16], b[16], d[16];
        size_t na = sample(&m, prompt, 3, a, 16, 1.0, 0, 42);
        size_t nb = sample(&m, prompt, 3, b, 16, 1.0, 0, 42);
        size_t nd = sample(&m, prompt, 3, d, 16, 1.0, 0, 43);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        assert_true(na > 1 && nd > 1);
        assert_true(na != nd || memcmp(a, d, na * sizeof *a) != 0);
        /* and top-k 40 at temperature 0.8 is deterministic too */
        na = sample(&m, prompt, 3, a, 16, 0.8, 40, 5);
        nb = sample(&m, prompt, 3, b, 16, 0.8, 40, 5);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na * sizeof *a);
        ksa_model_free(&m);
    }
}

static void top_k_one_is_greedy_at_any_temperature(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 5);
    const int32_t prompt[] = {'t', 'o', 'p'};
    int32_t g[14], k[14];
    size_t ng = sample(&m, prompt, 3, g, 14, 0.0, 0, 0);
    const double temps[] = {0.5, 1.0, 3.0};
    for (size_t t = 0; t < 3; t++) {
        size_t nk = sample(&m, prompt, 3, k, 14, temps[t], 1, 100 + t);
        assert_int_equal(nk, ng);
        assert_memory_equal(k, g, ng * sizeof *g);
    }
    ksa_model_free(&m);
}

/* The first draw over many seeds follows softmax(logits / temperature) restricted to the
 * top k (checked on the ids of probability > 2 %, within 4.5 standard deviations); ids
 * outside the top k never come; a tiny temperature is greedy.                            */
static void draws_follow_the_tempered_top_k_softmax(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 21);
    const int32_t prompt[] = {'d', 'r', 'a', 'w'};
    double *lg = forward_logits(&m, prompt, 4), *last = lg + 3 * m.V;
    size_t V = KSA_TOKENIZER_EOT + 1, n_draws = 3000;
    const double temps[] = {0.5, 0.8};
    const size_t ks[] = {0, 3};
    for (size_t c = 0; c < 2; c++) {
        double temp = temps[c], p[KSA_TOKENIZER_EOT + 1], sum = 0, kth = -INFINITY;
        if (ks[c]) { /* the k-th largest logit */
            double tmp[KSA_TOKENIZER_EOT + 1];
            memcpy(tmp, last, V * sizeof *tmp);
            for (size_t j = 0; j < ks[c]; j++) {
                int32_t b = argmax(tmp, V);
                kth = tmp[b];
                tmp[b] = -INFINITY;
            }
        }
        for (size_t v = 0; v < V; v++) {
            p[v] = last[v] >= kth ? exp((last[v] - last[argmax(last, V)]) / temp) : 0;
            sum += p[v];
        }
        size_t count[KSA_TOKENIZER_EOT + 1] = {0};
        for (uint64_t seed = 0; seed < n_draws; seed++) {
            int32_t id;
            size_t n;
            assert_int_equal(ksa_sample(&m, prompt, 4, &id, 1, temp, ks[c], seed, &n), KSA_OK);
            count[n ? id : KSA_TOKENIZER_EOT]++;
        }
        for (size_t v = 0; v < V; v++) {
            double q = p[v] / sum, f = (double)count[v] / (double)n_draws;
            if (q == 0)
                assert_int_equal(count[v], 0);
            else if (q > 0.02 && fabs(f - q) > 4.5 * sqrt(q * (1 - q) / (double)n_draws))
                fail_msg("temperature %g, top_k %zu: id %zu drawn %.4f of the time, p = %.4f", temp,
                         ks[c], v, f, q);
        }
    }
    free(lg);
    int32_t g[10], t[10];
    size_t ng = sample(&m, prompt, 4, g, 10, 0.0, 0, 0);
    assert_int_equal(sample(&m, prompt, 4, t, 10, 1e-4, 0, 1), ng);
    assert_memory_equal(t, g, ng * sizeof *g);
    ksa_model_free(&m);
}

/* A zero LM head makes every logit equal: greedy takes the lowest id (0) and top-k keeps
 * the k lowest ids.                                                                        */
static void ties_go_to_the_lowest_ids(void **state)
{
    (void)state;
    const char *const untied[] = {SMALL, "vocab_size", "257", "tie_word_embeddings", "false", NULL};
    ksa_model m;
    model_init(&m, untied, 2);
    long h = ksa_params_find(&m.params, "lm_head.weight");
    memset(m.params.data + m.params.table[h].offset, 0, m.params.table[h].numel * sizeof(ksa_real));
    const int32_t prompt[] = {'z'};
    int32_t out[30];
    assert_int_equal(sample(&m, prompt, 1, out, 30, 0.0, 0, 0), 30);
    for (size_t i = 0; i < 30; i++)
        assert_int_equal(out[i], 0);
    assert_int_equal(sample(&m, prompt, 1, out, 30, 1.0, 3, 4), 30);
    int seen[3] = {0};
    for (size_t i = 0; i < 30; i++) {
        assert_in_range(out[i], 0, 2);
        seen[out[i]] = 1;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    ksa_model_free(&m);
}

/* With vocab_size 300, lm_head rows 257..299 scaled up so that the unrestricted argmax is a
 * special id: still only bytes are generated (end-of-text stops). With vocab_size 23 (no
 * end-of-text) every id below 23 may come, and generation never stops early.              */
static void only_bytes_and_end_of_text_are_ever_generated(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa_v300, 9);
    ksa_real *head = param(&m, "lm_head.weight");
    for (size_t i = 257 * m.D; i < 300 * m.D; i++)
        head[i] *= 20;
    const int32_t prompt[] = {'s', 'p', 'e', 'c'};
    double *lg = forward_logits(&m, prompt, 4);
    assert_true(argmax(lg + 3 * m.V, m.V) >= 257); /* the premise */
    free(lg);
    int32_t out[24];
    for (uint64_t seed = 0; seed < 4; seed++) {
        size_t n = sample(&m, prompt, 4, out, 24, seed ? 1.5 : 0.0, seed == 3 ? 5 : 0, seed);
        for (size_t i = 0; i < n; i++)
            assert_in_range(out[i], 0, 255);
    }
    ksa_model_free(&m);

    model_init(&m, cfg_toy, 9);
    const int32_t toy[] = {3, 4};
    for (uint64_t seed = 0; seed < 3; seed++) {
        assert_int_equal(sample(&m, toy, 2, out, 24, seed ? 1.0 : 0.0, 0, seed), 24);
        for (size_t i = 0; i < 24; i++)
            assert_in_range(out[i], 0, 22);
    }
    ksa_model_free(&m);
}

/* End-of-text made likely: every token's embedding gets a large positive component in
 * dimension 0, so the final hidden state's dimension 0 is positive, and lm_head row 256
 * gets `boost` there. A large boost makes end-of-text the argmax at once (nothing is
 * generated); a moderate one makes it a likely draw, so sampling stops early.           */
static void boost_end_of_text(ksa_model *m, double boost)
{
    ksa_real *emb = param(m, "model.embed_tokens.weight"), *head = param(m, "lm_head.weight");
    for (size_t v = 0; v < m->V; v++)
        emb[v * m->D] = 20;
    head[KSA_TOKENIZER_EOT * m->D] = (ksa_real)boost;
}

static void generation_stops_at_end_of_text_without_emitting_it(void **state)
{
    (void)state;
    const char *const untied[] = {SMALL,   "vocab_size",
                                  "257",   "use_summary_attention",
                                  "true",  "summary_chunk_size",
                                  "3",     "summary_token_num",
                                  "1",     "summary_independent_parameters",
                                  "true",  "tie_word_embeddings",
                                  "false", NULL};
    const int32_t prompt[] = {'e', 'n', 'd'};
    int32_t out[40];
    ksa_model m;
    model_init(&m, untied, 11);
    boost_end_of_text(&m, 50);
    assert_int_equal(sample(&m, prompt, 3, out, 40, 0.0, 0, 0), 0);
    assert_int_equal(sample(&m, prompt, 3, out, 40, 1.0, 0, 1), 0);
    ksa_model_free(&m);

    model_init(&m, untied, 11);
    boost_end_of_text(&m, 1);
    size_t stopped = 0;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        size_t n = sample(&m, prompt, 3, out, 40, 1.0, 0, seed);
        for (size_t i = 0; i < n; i++)
            assert_in_range(out[i], 0, 255);
        stopped += n > 0 && n < 40;
    }
    assert_true(stopped >= 3); /* early stops after a few tokens, not only at once */
    ksa_model_free(&m);
}

static void an_empty_prompt_starts_from_end_of_text(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 13);
    int32_t a[10], b[10];
    const int32_t eot[] = {KSA_TOKENIZER_EOT};
    size_t na = sample(&m, NULL, 0, a, 10, 0.9, 20, 8);
    size_t nb = sample(&m, eot, 1, b, 10, 0.9, 20, 8);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    assert_int_equal(sample(&m, eot, 1, b, 0, 1.0, 0, 0), 0); /* nothing asked */
    ksa_model_free(&m);

    model_init(&m, cfg_toy, 13);
    size_t n = 5;
    assert_int_equal(ksa_sample(&m, NULL, 0, a, 10, 0.0, 0, 0, &n), KSA_EINVAL);
    assert_int_equal(n, 0);
    assert_non_null(strstr(ksa_last_error(), "give a prompt"));
    ksa_model_free(&m);
}

static void bad_prompts_and_temperatures_are_errors(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_causal, 1);
    int32_t out[4];
    size_t n;
    const int32_t bad[] = {'a', 257};
    assert_int_equal(ksa_sample(&m, bad, 2, out, 4, 0.0, 0, 0, &n), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "prompt token 1 has id 257"));
    const int32_t neg[] = {-1};
    assert_int_equal(ksa_sample(&m, neg, 1, out, 4, 0.0, 0, 0, &n), KSA_EINVAL);
    const int32_t ok[] = {'a'};
    assert_int_equal(ksa_sample(&m, ok, 1, out, 4, -0.5, 0, 0, &n), KSA_EINVAL);
    assert_int_equal(ksa_sample(&m, ok, 1, out, 4, NAN, 0, 0, &n), KSA_EINVAL);
    assert_int_equal(ksa_sample(&m, ok, 1, out, 4, INFINITY, 0, 0, &n), KSA_EINVAL);
    ksa_model_free(&m);
}

/* ksa_sample_text writes exactly the prompt's bytes and then the sampled bytes. */
static void the_text_front_end_writes_prompt_and_sample_exactly(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 17);
    const char *prompt = "In the beginning \xc3\xa9";
    size_t np = strlen(prompt);
    int32_t ids[64], out[20];
    ksa_tokenizer_encode(ids, prompt, np);
    size_t n = sample(&m, ids, np, out, 20, 0.7, 30, 3);
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(ksa_sample_text(&m, prompt, 20, 0.7, 30, 3, f), KSA_OK);
    char buf[256];
    rewind(f);
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(len, np + n);
    assert_memory_equal(buf, prompt, np);
    for (size_t i = 0; i < n; i++)
        assert_int_equal((unsigned char)buf[np + i], out[i]);

    f = tmpfile(); /* no prompt: NULL and "" alike */
    assert_int_equal(ksa_sample_text(&m, NULL, 6, 0.0, 0, 0, f), KSA_OK);
    assert_int_equal(ksa_sample_text(&m, "", 6, 0.0, 0, 0, f), KSA_OK);
    rewind(f);
    len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(len % 2 == 0);
    assert_memory_equal(buf, buf + len / 2, len / 2);
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_sampling_is_the_argmax_of_the_forward_at_every_position),
        cmocka_unit_test(the_same_seed_gives_the_same_tokens_and_another_seed_others),
        cmocka_unit_test(top_k_one_is_greedy_at_any_temperature),
        cmocka_unit_test(draws_follow_the_tempered_top_k_softmax),
        cmocka_unit_test(ties_go_to_the_lowest_ids),
        cmocka_unit_test(only_bytes_and_end_of_text_are_ever_generated),
        cmocka_unit_test(generation_stops_at_end_of_text_without_emitting_it),
        cmocka_unit_test(an_empty_prompt_starts_from_end_of_text),
        cmocka_unit_test(bad_prompts_and_temperatures_are_errors),
        cmocka_unit_test(the_text_front_end_writes_prompt_and_sample_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
