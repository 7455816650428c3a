/* test_sample.c - text generation (model/sample.h). The cached generator (ksa_generate):
 * greedy = the argmax of the forward at every position, and every token equal to the
 * full-recompute oracle's (ksa_sample_recompute), greedy and sampled with the same seed, on
 * KSA configurations whose sequences cross many chunk boundaries and on a causal one;
 * determinism in the seed, top-k and top-p (the draws follow the tempered, cut softmax),
 * which ids can be generated, stop ids and end-of-text, the per-token callback, a batch of
 * prompts of different lengths equal to each alone, the limit max_position_embeddings,
 * statistics, bad options, and the text front end (its streaming).                        */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static ksa_generate_options options(size_t n_new, double temperature, size_t top_k, double top_p,
                                    uint64_t seed)
{
    ksa_generate_options o = ksa_generate_defaults();
    o.max_new_tokens = n_new;
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_p = top_p;
    o.seed = seed;
    return o;
}

/* One prompt through the cached generator; returns what it generated (ids into out). */
static ksa_generated generate(ksa_model *m, const int32_t *prompt, size_t n_prompt, int32_t *out,
                              const ksa_generate_options *o)
{
    ksa_generated g = {.ids = out};
    const int32_t *const prompts[1] = {prompt};
    if (ksa_generate(m, 1, prompts, &n_prompt, o, &g, NULL) != KSA_OK)
        fail_msg("ksa_generate: %s", ksa_last_error());
    assert_true(g.n <= o->max_new_tokens);
    return g;
}

static size_t sample(ksa_model *m, const int32_t *prompt, size_t n_prompt, int32_t *out,
                     size_t n_new, double temperature, size_t top_k, uint64_t seed)
{
    ksa_generate_options o = options(n_new, temperature, top_k, 1.0, seed);
    return generate(m, prompt, n_prompt, out, &o).n;
}

/* A callback that counts its calls into *(size_t *)user. */
static int count_calls(void *user, size_t seq, int32_t id)
{
    (void)seq, (void)id;
    ++*(size_t *)user;
    return 0;
}

/* The same by full recompute (the oracle). */
static ksa_generated recompute(ksa_model *m, const int32_t *prompt, size_t n_prompt, int32_t *out,
                               const ksa_generate_options *o)
{
    ksa_generated g = {.ids = out};
    if (ksa_sample_recompute(m, prompt, n_prompt, o, &g) != KSA_OK)
        fail_msg("ksa_sample_recompute: %s", ksa_last_error());
    return g;
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

/* The probabilities the first draw must follow: softmax(logits / temp) over the ids
 * 0..256, restricted to the top k (0 = all; ties to lower ids), then to the nucleus: the
 * likeliest of those, in that order, until their mass reaches top_p. p: [257] out.
 * Fails when top_p is within 1e-6 of a prefix's mass (the set would hang on rounding). */
static void expected_draws(double *p, const double *logits, double temp, size_t k, double top_p)
{
    size_t V = KSA_TOKENIZER_EOT + 1, order[KSA_TOKENIZER_EOT + 1];
    double top = logits[argmax(logits, V)], sum = 0;
    for (size_t v = 0; v < V; v++)
        order[v] = v;
    for (size_t i = 0; i < V; i++) /* selection sort: larger logits first, then lower ids */
        for (size_t j = i + 1; j < V; j++)
            if (logits[order[j]] > logits[order[i]] ||
                (logits[order[j]] == logits[order[i]] && order[j] < order[i])) {
                size_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    size_t kept = k ? k : V;
    for (size_t v = 0; v < V; v++)
        p[v] = 0;
    for (size_t i = 0; i < kept; i++)
        sum += p[order[i]] = exp((logits[order[i]] - top) / temp);
    double acc = 0;
    size_t i = 0;
    for (; i < kept && acc < top_p * sum; i++) {
        acc += p[order[i]];
        if (top_p < 1 && fabs(acc / sum - top_p) < 1e-6)
            fail_msg("top_p %g is the mass of the %zu likeliest: choose another", top_p, i + 1);
    }
    for (size_t j = 0; j < V; j++)
        p[j] /= acc;
    for (; i < kept; i++)
        p[order[i]] = 0;
}

/* The first draw over many seeds follows softmax(logits / temperature) restricted to the
 * top k, then to the top-p nucleus (checked on the ids of probability > 2 %, within 4.5
 * standard deviations); ids outside those never come; a tiny temperature is greedy.     */
static void draws_follow_the_tempered_top_k_top_p_softmax(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 21);
    const int32_t prompt[] = {'d', 'r', 'a', 'w'};
    double *lg = forward_logits(&m, prompt, 4), *last = lg + 3 * m.V;
    size_t V = KSA_TOKENIZER_EOT + 1, n_draws = 3000;
    const struct {
        double temp;
        size_t k;
        double top_p;
        size_t support; /* ids that may come: the premise of the case */
    } cases[] = {{0.5, 0, 1.0, V},
                 {0.8, 3, 1.0, 3},
                 {1.0, 0, 0.5, 0},
                 {0.7, 10, 0.8, 0},
                 {1.0, 4, 0.99999, 4}}; /* 0: fewer than k (or V); the last: all k kept */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double p[KSA_TOKENIZER_EOT + 1];
        expected_draws(p, last, cases[c].temp, cases[c].k, cases[c].top_p);
        size_t count[KSA_TOKENIZER_EOT + 1] = {0}, support = 0;
        ksa_generate_options o = options(1, cases[c].temp, cases[c].k, cases[c].top_p, 0);
        for (uint64_t seed = 0; seed < n_draws; seed++) {
            int32_t id;
            o.seed = seed;
            ksa_generated g = generate(&m, prompt, 4, &id, &o);
            count[g.n ? id : KSA_TOKENIZER_EOT]++;
        }
        for (size_t v = 0; v < V; v++) {
            double q = p[v], f = (double)count[v] / (double)n_draws;
            support += q > 0;
            if (q == 0)
                assert_int_equal(count[v], 0);
            else if (q > 0.02 && fabs(f - q) > 4.5 * sqrt(q * (1 - q) / (double)n_draws))
                fail_msg("temperature %g, top_k %zu, top_p %g: id %zu drawn %.4f of the time, "
                         "p = %.4f",
                         cases[c].temp, cases[c].k, cases[c].top_p, v, f, q);
        }
        assert_true(support > 1); /* a real distribution, not greedy */
        if (cases[c].support)     /* the premise: which ids the nucleus keeps */
            assert_int_equal(support, cases[c].support);
        else
            assert_true(support < (cases[c].k ? cases[c].k : V));
    }
    free(lg);
    int32_t g[10], t[10];
    size_t ng = sample(&m, prompt, 4, g, 10, 0.0, 0, 0);
    assert_int_equal(sample(&m, prompt, 4, t, 10, 1e-4, 0, 1), ng);
    assert_memory_equal(t, g, ng * sizeof *g);
    ksa_model_free(&m);
}

/* top_p so small that one token reaches it: the likeliest, whatever the temperature. */
static void a_tiny_top_p_is_greedy(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_ksa, cfg_causal};
    for (size_t c = 0; c < 2; c++) {
        ksa_model m;
        model_init(&m, cfgs[c], 31);
        const int32_t prompt[] = {'n', 'u', 'c'};
        int32_t g[20], t[20];
        size_t ng = sample(&m, prompt, 3, g, 20, 0.0, 0, 0);
        const double temps[] = {0.7, 1.0, 5.0};
        for (size_t i = 0; i < 3; i++) {
            ksa_generate_options o = options(20, temps[i], i == 2 ? 50 : 0, 1e-9, 17 + i);
            ksa_generated r = generate(&m, prompt, 3, t, &o);
            assert_int_equal(r.n, ng);
            assert_memory_equal(t, g, ng * sizeof *g);
        }
        ksa_model_free(&m);
    }
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
    ksa_generate_options o = options(10, 0.0, 0, 1.0, 0);
    ksa_generated g = {.ids = a, .n = 5};
    size_t zero = 0;
    const int32_t *const none[1] = {NULL};
    assert_int_equal(ksa_generate(&m, 1, none, &zero, &o, &g, NULL), KSA_EINVAL);
    assert_int_equal(g.n, 0);
    assert_non_null(strstr(ksa_last_error(), "give a prompt"));
    ksa_model_free(&m);
}

/* Each bad option or prompt is KSA_EINVAL naming the problem, with nothing generated and the
 * callback never called; the oracle checks the same. */

static void bad_options_and_prompts_are_errors(void **state)
{
    (void)state;
    const char *const short_context[] = {SMALL, "vocab_size", "257", "max_position_embeddings",
                                         "8",   NULL};
    ksa_model m;
    model_init(&m, short_context, 1);
    int32_t out[4];
    size_t calls = 0;
    const int32_t ok[] = {'a'}, bad[] = {'a', 257}, neg[] = {-1};
    const int32_t long9[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const int32_t stop_bad[] = {0, 300}, stop_neg[] = {-2};
    const struct {
        const int32_t *prompt;
        size_t n;
        double temperature, top_p;
        const int32_t *stop;
        size_t n_stop;
        const char *needle;
    } cases[] = {
        {bad, 2, 0.0, 1.0, NULL, 0, "token 1 has id 257"},
        {neg, 1, 0.0, 1.0, NULL, 0, "token 0 has id -1"},
        {ok, 1, -0.5, 1.0, NULL, 0, "temperature must be finite and >= 0"},
        {ok, 1, NAN, 1.0, NULL, 0, "temperature"},
        {ok, 1, INFINITY, 1.0, NULL, 0, "temperature"},
        {ok, 1, 1.0, 0.0, NULL, 0, "top_p must be in (0, 1]"},
        {ok, 1, 1.0, -0.1, NULL, 0, "top_p"},
        {ok, 1, 1.0, 1.5, NULL, 0, "top_p"},
        {ok, 1, 1.0, NAN, NULL, 0, "top_p"},
        {ok, 1, 1.0, 1.0, stop_bad, 2, "stop id 300 is outside the vocabulary"},
        {ok, 1, 1.0, 1.0, stop_neg, 1, "stop id -2"},
        {long9, 9, 0.0, 1.0, NULL, 0,
         "9 tokens, more than the model's max_position_embeddings = 8"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ksa_generate_options o = options(4, cases[c].temperature, 0, cases[c].top_p, 0);
        o.stop_ids = cases[c].stop;
        o.n_stop_ids = cases[c].n_stop;
        o.on_token = count_calls;
        o.user = &calls;
        ksa_generated g = {.ids = out, .n = 3};
        const int32_t *const prompts[1] = {cases[c].prompt};
        if (ksa_generate(&m, 1, prompts, &cases[c].n, &o, &g, NULL) != KSA_EINVAL)
            fail_msg("case %zu (%s) is not an error", c, cases[c].needle);
        if (!strstr(ksa_last_error(), cases[c].needle))
            fail_msg("case %zu: '%s' does not say '%s'", c, ksa_last_error(), cases[c].needle);
        assert_int_equal(g.n, 0);
        g.n = 3;
        assert_int_equal(ksa_sample_recompute(&m, cases[c].prompt, cases[c].n, &o, &g), KSA_EINVAL);
        assert_non_null(strstr(ksa_last_error(), cases[c].needle));
        assert_int_equal(g.n, 0);
    }
    assert_int_equal(calls, 0);
    /* in a batch, the prompt is named by its index */
    const int32_t *const two[2] = {ok, long9};
    size_t lens[2] = {1, 9};
    ksa_generate_options o = options(4, 0.0, 0, 1.0, 0);
    ksa_generated g[2] = {{.ids = out}, {.ids = out}};
    assert_int_equal(ksa_generate(&m, 2, two, lens, &o, g, NULL), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "prompt 1 has 9 tokens"));
    ksa_model_free(&m);
}

/* Cached generation equals the full-recompute oracle token for token: greedy and sampled
 * (top-k, top-p) with the same seed, prompts of 1, 2 and 8 tokens and 40 new ones (the
 * sequences cross 10+ chunk boundaries of C = 3 and 4, windows of 1 and 2 chunks), on two
 * KSA configurations and a causal one; the stop reasons agree too.                     */
static void cached_generation_equals_the_recompute_oracle(void **state)
{
    (void)state;
    const char *const *cfgs[] = {cfg_ksa, cfg_ksa_v300, cfg_causal};
    const int32_t prompt[] = {'T', 'h', 'e', ' ', 'w', 'o', 'r', 'd'};
    const size_t lens[] = {1, 2, 8};
    const struct {
        double temp;
        size_t k;
        double top_p;
    } modes[] = {{0.0, 0, 1.0}, {1.0, 0, 1.0}, {0.8, 40, 1.0}, {1.2, 0, 0.9}, {0.9, 20, 0.7}};
    size_t total = 0;
    for (size_t c = 0; c < 3; c++) {
        ksa_model m;
        model_init(&m, cfgs[c], 40 + c);
        for (size_t l = 0; l < 3; l++)
            for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
                ksa_generate_options o =
                    options(40, modes[i].temp, modes[i].k, modes[i].top_p, 1000 + 10 * c + l);
                int32_t got[40], want[40];
                ksa_generated g = generate(&m, prompt, lens[l], got, &o);
                ksa_generated w = recompute(&m, prompt, lens[l], want, &o);
                for (size_t t = 0; t < g.n && t < w.n; t++)
                    if (got[t] != want[t])
                        fail_msg("config %zu, prompt %zu, mode %zu: token %zu is %d cached, %d "
                                 "recomputed",
                                 c, lens[l], i, t, got[t], want[t]);
                assert_int_equal(g.n, w.n);
                assert_int_equal(g.stop, w.stop);
                assert_int_equal(g.stop_id, w.stop_id);
                total += g.n;
            }
        ksa_model_free(&m);
    }
    assert_true(total > 3 * 3 * 5 * 30); /* most runs go the whole way: long sequences */
}

/* Stop ids end a sequence where they are drawn and are not emitted; the default is
 * end-of-text, an explicit empty list lets end-of-text through as a token.             */
static void stop_ids_end_a_sequence_without_emitting_them(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 51);
    const int32_t prompt[] = {'s', 't', 'o', 'p'};
    int32_t all[30], cut[30];
    ksa_generate_options o = options(30, 0.9, 0, 1.0, 4);
    ksa_generated a = generate(&m, prompt, 4, all, &o);
    assert_int_equal(a.n, 30);
    assert_int_equal(a.stop, KSA_STOP_MAX_NEW_TOKENS);
    assert_int_equal(a.stop_id, -1);
    size_t j = 0; /* the first occurrence of all[12] */
    while (all[j] != all[12])
        j++;
    const int32_t stops[] = {KSA_TOKENIZER_EOT, all[12]}; /* end-of-text kept, and all[12] */
    o.stop_ids = stops;
    o.n_stop_ids = 2;
    size_t calls = 0;
    o.on_token = count_calls;
    o.user = &calls;
    ksa_generated c = generate(&m, prompt, 4, cut, &o);
    assert_int_equal(c.n, j);
    assert_int_equal(calls, j); /* the callback never sees the stop id */
    assert_memory_equal(cut, all, j * sizeof *all);
    assert_int_equal(c.stop, KSA_STOP_ID);
    assert_int_equal(c.stop_id, all[12]);
    assert_string_equal(ksa_stop_reason_name(c.stop), "stop_id");
    ksa_generated w = recompute(&m, prompt, 4, cut, &o); /* the oracle stops there too */
    assert_int_equal(w.n, j);
    assert_int_equal(w.stop, KSA_STOP_ID);
    ksa_model_free(&m);

    const char *const untied[] = {SMALL, "vocab_size", "257", "tie_word_embeddings", "false", NULL};
    model_init(&m, untied, 11);
    boost_end_of_text(&m, 50); /* end-of-text is the argmax everywhere */
    o = options(5, 0.0, 0, 1.0, 0);
    ksa_generated d = generate(&m, prompt, 4, cut, &o);
    assert_int_equal(d.n, 0);
    assert_int_equal(d.stop, KSA_STOP_ID);
    assert_int_equal(d.stop_id, KSA_TOKENIZER_EOT);
    o.stop_ids = stops; /* non-NULL, none in force */
    o.n_stop_ids = 0;
    d = generate(&m, prompt, 4, cut, &o);
    assert_int_equal(d.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(cut[i], KSA_TOKENIZER_EOT);
    assert_int_equal(d.stop, KSA_STOP_MAX_NEW_TOKENS);
    ksa_model_free(&m);
}

/* The callback sees every emitted token, in order, with its sequence; a nonzero return ends
 * that sequence after the token, and only that one. */
typedef struct {
    size_t stop_seq, stop_after; /* sequence stop_seq ends after this many tokens */
    size_t n[3];
    int32_t seen[3][40];
} callback_log;

static int log_token(void *user, size_t seq, int32_t id)
{
    callback_log *c = user;
    assert_true(seq < 3);
    c->seen[seq][c->n[seq]++] = id;
    return seq == c->stop_seq && c->n[seq] == c->stop_after;
}

static void the_callback_sees_each_token_and_can_end_its_sequence(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 61);
    const int32_t p0[] = {'a', 'b'}, p1[] = {'c', 'd', 'e', 'f', 'g'}, p2[] = {'h'};
    const int32_t *const prompts[3] = {p0, p1, p2};
    size_t lens[3] = {2, 5, 1};
    int32_t free_run[3][20], ids[3][20];
    ksa_generate_options o = options(20, 1.0, 0, 1.0, 9);
    ksa_generated g[3] = {{.ids = free_run[0]}, {.ids = free_run[1]}, {.ids = free_run[2]}};
    assert_int_equal(ksa_generate(&m, 3, prompts, lens, &o, g, NULL), KSA_OK);
    for (size_t b = 0; b < 3; b++)
        assert_int_equal(g[b].n, 20); /* (no end-of-text drawn: true for this model) */

    callback_log log = {.stop_seq = 1, .stop_after = 7};
    o.on_token = log_token;
    o.user = &log;
    ksa_generated h[3] = {{.ids = ids[0]}, {.ids = ids[1]}, {.ids = ids[2]}};
    assert_int_equal(ksa_generate(&m, 3, prompts, lens, &o, h, NULL), KSA_OK);
    assert_int_equal(h[1].n, 7);
    assert_int_equal(h[1].stop, KSA_STOP_CALLBACK);
    for (size_t b = 0; b < 3; b++) {
        assert_int_equal(log.n[b], h[b].n);
        assert_memory_equal(log.seen[b], ids[b], h[b].n * sizeof(int32_t));
        assert_memory_equal(ids[b], free_run[b], h[b].n * sizeof(int32_t));
    }
    assert_int_equal(h[0].n, 20); /* the others go on */
    assert_int_equal(h[2].n, 20);
    assert_int_equal(h[0].stop, KSA_STOP_MAX_NEW_TOKENS);
    /* the oracle stops where the callback says, too */
    memset(&log, 0, sizeof log);
    log.stop_seq = 0, log.stop_after = 3;
    ksa_generated w = recompute(&m, p0, 2, ids[0], &o);
    assert_int_equal(w.n, 3);
    assert_int_equal(w.stop, KSA_STOP_CALLBACK);
    assert_memory_equal(ids[0], free_run[0], 3 * sizeof(int32_t));
    ksa_model_free(&m);
}

/* A batch of prompts of different lengths (an empty one included) whose sequences end at
 * different times (end-of-text made likely): sequence 0 equals its prompt alone with the same
 * seed, sequence b > 0 its prompt alone with seed ksa_mix64(seed + b) (sample.h), greedy and
 * sampled; the statistics add up.                                                        */
static void a_batch_equals_each_prompt_alone(void **state)
{
    (void)state;
    const char *const untied[] = {SMALL,   "vocab_size",
                                  "257",   "use_summary_attention",
                                  "true",  "summary_chunk_size",
                                  "3",     "summary_token_num",
                                  "2",     "summary_sliding_chunk_num",
                                  "1",     "summary_independent_parameters",
                                  "true",  "tie_word_embeddings",
                                  "false", NULL};
    ksa_model m;
    model_init(&m, untied, 71);
    boost_end_of_text(&m, 1);
    enum { B = 5, N = 30 };
    const int32_t text[] = {'a', 'n', 'd', ' ', 'G', 'o', 'd', ' ', 's', 'a', 'i', 'd'};
    const int32_t *const prompts[B] = {text, text + 3, NULL, text + 1, text};
    size_t lens[B] = {7, 1, 0, 11, 4};
    const double temps[] = {0.0, 1.0, 0.8};
    size_t ends[N + 1] = {0};
    for (size_t t = 0; t < 3; t++)
        for (uint64_t seed = 5; seed < 8; seed++) {
            ksa_generate_options o =
                options(N, temps[t], t == 2 ? 30 : 0, t == 2 ? 0.95 : 1.0, seed);
            int32_t ids[B][N], alone[N];
            ksa_generated g[B];
            for (size_t b = 0; b < B; b++)
                g[b] = (ksa_generated){.ids = ids[b]};
            ksa_generate_stats st;
            assert_int_equal(ksa_generate(&m, B, prompts, lens, &o, g, &st), KSA_OK);
            size_t generated = 0, prompt_tokens = 0, fed = 0, longest_fed = 0;
            for (size_t b = 0; b < B; b++) {
                ksa_generate_options ob = o;
                ob.seed = b == 0 ? seed : ksa_mix64(seed + b);
                ksa_generated a = generate(&m, prompts[b], lens[b], alone, &ob);
                if (a.n != g[b].n || memcmp(alone, ids[b], a.n * sizeof *alone) != 0)
                    fail_msg("temperature %g, seed %d: sequence %zu gives %zu tokens in the "
                             "batch, %zu alone (or other tokens)",
                             temps[t], (int)seed, b, g[b].n, a.n);
                assert_int_equal(a.stop, g[b].stop);
                generated += g[b].n;
                prompt_tokens += lens[b] ? lens[b] : 1;
                /* every emitted token is fed but the last of a sequence ended by its length
                 * (a stop id ends a sequence after its last emitted token was fed) */
                size_t fed_b = g[b].stop == KSA_STOP_ID ? g[b].n : g[b].n - 1;
                fed += fed_b;
                longest_fed = fed_b > longest_fed ? fed_b : longest_fed;
                ends[g[b].n]++;
            }
            assert_int_equal(st.generated_tokens, generated);
            assert_int_equal(st.prompt_tokens, prompt_tokens);
            assert_int_equal(st.decode_tokens, fed);
            assert_int_equal(st.decode_steps, longest_fed);
        }
    size_t distinct = 0; /* the premise: sequences ended at many different lengths */
    for (size_t n = 0; n <= N; n++)
        distinct += ends[n] > 0;
    assert_true(distinct >= 5);
    ksa_model_free(&m);
}

/* A sequence holds at most max_position_embeddings tokens, prompt included: generation stops
 * there (stop reason, statistics), the oracle agrees; a prompt that fills the context
 * generates nothing, one just shorter than the limit plus max_new_tokens ends on
 * max_new_tokens. */
static void generation_stops_at_max_position_embeddings(void **state)
{
    (void)state;
    const char *const ctx16[] = {SMALL,   "vocab_size",
                                 "257",   "use_summary_attention",
                                 "true",  "summary_chunk_size",
                                 "3",     "summary_token_num",
                                 "1",     "summary_sliding_chunk_num",
                                 "1",     "summary_layer_freq",
                                 "[1,0]", "summary_independent_parameters",
                                 "true",  "max_position_embeddings",
                                 "16",    NULL};
    ksa_model m;
    model_init(&m, ctx16, 81);
    int32_t prompt[16];
    for (size_t i = 0; i < 16; i++)
        prompt[i] = (int32_t)('a' + i);
    const int32_t *const prompts[4] = {prompt, prompt, prompt, prompt};
    size_t lens[4] = {10, 3, 16, 2};
    int32_t ids[4][16], want[16];
    ksa_generate_options o = options(13, 0.0, 0, 1.0, 0); /* 3 + 13 = 16: ends on the length */
    ksa_generated g[4];
    for (size_t b = 0; b < 4; b++)
        g[b] = (ksa_generated){.ids = ids[b]};
    ksa_generate_stats st;
    assert_int_equal(ksa_generate(&m, 4, prompts, lens, &o, g, &st), KSA_OK);
    const size_t n_want[4] = {6, 13, 0, 13};
    const ksa_stop_reason stop_want[4] = {KSA_STOP_MAX_POSITION_EMBEDDINGS, KSA_STOP_MAX_NEW_TOKENS,
                                          KSA_STOP_MAX_POSITION_EMBEDDINGS,
                                          KSA_STOP_MAX_NEW_TOKENS};
    for (size_t b = 0; b < 4; b++) {
        assert_int_equal(g[b].n, n_want[b]);
        assert_int_equal(g[b].stop, stop_want[b]);
        ksa_generated w = recompute(&m, prompt, lens[b], want, &o);
        assert_int_equal(w.n, g[b].n);
        assert_int_equal(w.stop, g[b].stop);
        assert_memory_equal(want, ids[b], w.n * sizeof *want);
    }
    assert_string_equal(ksa_stop_reason_name(g[0].stop), "max_position_embeddings");
    assert_int_equal(st.context_stops, 2);
    assert_int_equal(st.max_positions, 16);
    assert_int_equal(st.prompt_tokens, 10 + 3 + 2); /* the full prompt is not prefilled */
    ksa_model_free(&m);
}

/* The statistics of one sequence: prompt, generated and stepped tokens; the KV cache's bytes
 * equal those of a decoder holding the same tokens, and a causal cache's are those of every
 * layer keeping every token fed. */
static void the_statistics_count_tokens_and_cache_bytes(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 91); /* C 3, S 2, W 1, layers [1, 0] */
    const int32_t prompt[] = {'s', 't', 'a', 't', 's'};
    int32_t ids[40];
    ksa_generate_options o = options(40, 0.0, 0, 1.0, 0);
    ksa_generated g = {.ids = ids};
    const int32_t *const prompts[1] = {prompt};
    size_t len = 5;
    ksa_generate_stats st;
    assert_int_equal(ksa_generate(&m, 1, prompts, &len, &o, &g, &st), KSA_OK);
    assert_int_equal(g.n, 40);
    assert_int_equal(st.prompt_tokens, 5);
    assert_int_equal(st.generated_tokens, 40);
    assert_int_equal(st.decode_steps, 39); /* the last token is never fed */
    assert_int_equal(st.decode_tokens, 39);
    assert_true(st.prefill_seconds > 0);
    assert_true(st.decode_seconds > 0);
    size_t T = 5 + 39, row = 2 * m.Hkv * m.dh * sizeof(ksa_real);
    assert_int_equal(st.memory.causal_bytes, 2 * T * row);
    size_t n = T / 3; /* summary layer: tail + window's text + S per chunk (decode.h) */
    assert_int_equal(st.memory.live_bytes, ((T % 3) + 3 * 1 + 2 * n + T) * row);
    assert_true(st.memory.live_bytes <= st.memory.allocated_bytes);
    assert_true(st.memory.live_bytes < st.memory.causal_bytes);
    ksa_model_free(&m);
}

/* ksa_sample_text writes exactly the prompt's bytes (NUL included) and then the generated
 * bytes, the tokens of ksa_generate; the prompt is written and flushed before the first
 * token, and each token before the next is chosen (the callback sees the file grow). */
typedef struct {
    FILE *f;
    size_t prompt_len, calls, bad;
} stream_check;

static int check_stream(void *user, size_t seq, int32_t id)
{
    stream_check *c = user;
    struct stat sb;
    (void)seq, (void)id;
    c->calls++;
    if (fstat(fileno(c->f), &sb) != 0 || (size_t)sb.st_size != c->prompt_len + c->calls)
        c->bad++; /* not yet on the file */
    return 0;
}

static void the_text_front_end_streams_prompt_and_sample_exactly(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, cfg_ksa, 17);
    const char prompt[] = "In the\0 beginning \xc3\xa9";
    size_t np = sizeof prompt - 1;
    int32_t ids[64], out[20], got[20];
    ksa_tokenizer_encode(ids, prompt, np);
    size_t n = sample(&m, ids, np, out, 20, 0.7, 30, 3);
    assert_true(n > 10);
    FILE *f = tmpfile();
    assert_non_null(f);
    stream_check sc = {.f = f, .prompt_len = np};
    ksa_generate_options o = options(20, 0.7, 30, 1.0, 3);
    o.on_token = check_stream;
    o.user = &sc;
    ksa_generated r = {.ids = got};
    ksa_generate_stats st;
    assert_int_equal(ksa_sample_text(&m, prompt, np, &o, f, &r, &st), KSA_OK);
    assert_int_equal(r.n, n);
    assert_memory_equal(got, out, n * sizeof *out);
    assert_int_equal(sc.calls, n);
    assert_int_equal(sc.bad, 0);
    assert_int_equal(st.generated_tokens, n);
    char buf[256];
    rewind(f);
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(len, np + n);
    assert_memory_equal(buf, prompt, np);
    for (size_t i = 0; i < n; i++)
        assert_int_equal((unsigned char)buf[np + i], out[i]);

    f = tmpfile(); /* no prompt; result and stats not asked for */
    o = options(6, 0.0, 0, 1.0, 0);
    assert_int_equal(ksa_sample_text(&m, NULL, 0, &o, f, NULL, NULL), KSA_OK);
    assert_int_equal(ksa_sample_text(&m, "", 0, &o, f, NULL, NULL), KSA_OK);
    rewind(f);
    len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_int_equal(len, 12);
    assert_memory_equal(buf, buf + 6, 6);

    f = tmpfile(); /* nothing to generate: the prompt is on the file all the same */
    o.max_new_tokens = 0;
    assert_int_equal(ksa_sample_text(&m, prompt, np, &o, f, NULL, NULL), KSA_OK);
    struct stat sb;
    assert_int_equal(fstat(fileno(f), &sb), 0);
    assert_int_equal(sb.st_size, np);
    fclose(f);
    o.max_new_tokens = 6;

    f = tmpfile(); /* an error is found before anything is written */
    o.top_p = 2;
    assert_int_equal(ksa_sample_text(&m, "abc", 3, &o, f, NULL, NULL), KSA_EINVAL);
    assert_int_equal(ftell(f), 0);
    fclose(f);
    FILE *full = fopen("/dev/full", "w"); /* a failed write is KSA_EIO */
    if (full) {
        o.top_p = 1;
        assert_int_equal(ksa_sample_text(&m, "abc", 3, &o, full, NULL, NULL), KSA_EIO);
        assert_non_null(strstr(ksa_last_error(), "cannot write the sample"));
        assert_int_equal(ksa_sample_text(&m, NULL, 0, &o, full, NULL, NULL), KSA_EIO);
        fclose(full);
    }
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_sampling_is_the_argmax_of_the_forward_at_every_position),
        cmocka_unit_test(cached_generation_equals_the_recompute_oracle),
        cmocka_unit_test(the_same_seed_gives_the_same_tokens_and_another_seed_others),
        cmocka_unit_test(top_k_one_is_greedy_at_any_temperature),
        cmocka_unit_test(draws_follow_the_tempered_top_k_top_p_softmax),
        cmocka_unit_test(a_tiny_top_p_is_greedy),
        cmocka_unit_test(ties_go_to_the_lowest_ids),
        cmocka_unit_test(only_bytes_and_end_of_text_are_ever_generated),
        cmocka_unit_test(generation_stops_at_end_of_text_without_emitting_it),
        cmocka_unit_test(stop_ids_end_a_sequence_without_emitting_them),
        cmocka_unit_test(the_callback_sees_each_token_and_can_end_its_sequence),
        cmocka_unit_test(a_batch_equals_each_prompt_alone),
        cmocka_unit_test(generation_stops_at_max_position_embeddings),
        cmocka_unit_test(the_statistics_count_tokens_and_cache_bytes),
        cmocka_unit_test(an_empty_prompt_starts_from_end_of_text),
        cmocka_unit_test(bad_options_and_prompts_are_errors),
        cmocka_unit_test(the_text_front_end_streams_prompt_and_sample_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
