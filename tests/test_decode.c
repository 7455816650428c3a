/* test_decode.c - the cached decoder (model/decode.h) against the full forward.
 *
 * Oracle: ksa_model_forward over the prefix t_0 ... t_T (a fresh forward for every prefix,
 * summaries of its complete chunks only). Every logit of prefill and of every decode step
 * must equal the oracle's last row within a tolerance relative to the largest |logit|:
 * 1e-10 in the float64 build, 1e-4 in float32. Configurations cover S = 1, 2, 3; W = 0, 1,
 * several and W·C beyond the context; hybrid patterns with causal layers; independent
 * summary parameters, norms and q/k norms; shared summary tokens; both position-id types of
 * each stream; GQA; models without summary layers. Prompts: 1 token, shorter than a chunk,
 * ending on and just before a chunk boundary, longer than the window; decoding then crosses
 * many chunk boundaries and wraps the ring several times. Batched steps (sequences of
 * different lengths, some idle) equal each sequence decoded alone.                        */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/decode.h"
#include "model/decoder.h"

#ifdef KSA_REAL_DOUBLE
#define LOGIT_RTOL 1e-10
#else
#define LOGIT_RTOL 1e-4
#endif

/* Every configuration: hidden 16, 4 query heads, 2 kv heads (unless said), head_dim 4. */
#define SMALL                                                                                      \
    "hidden_size=16 intermediate_size=24 num_attention_heads=4 num_key_value_heads=2 "             \
    "head_dim=4 max_position_embeddings=4096 "

typedef struct {
    const char *name;
    const char *keys; /* key=value ... */
} test_config;

static const test_config configs[] = {
    {"C3 S1 W1, layers [1,1,0], origin/right, independent",
     SMALL "num_hidden_layers=3 vocab_size=40 use_summary_attention=true summary_chunk_size=3 "
           "summary_token_num=1 summary_sliding_chunk_num=1 summary_layer_freq=[1,1,0] "
           "summary_independent_parameters=true summary_chunk_position_ids_type=origin "
           "summary_token_position_ids_type=last_chunk_slice_right"},
    {"C2 S2 W0, all summary layers, inner_chunk/zeros",
     SMALL "num_hidden_layers=2 vocab_size=30 use_summary_attention=true summary_chunk_size=2 "
           "summary_token_num=2 summary_sliding_chunk_num=0 summary_layer_freq=0 "
           "summary_independent_parameters=true summary_chunk_position_ids_type=inner_chunk "
           "summary_token_position_ids_type=zeros"},
    {"C4 S3 W2, layers [1,0,1], independent q/k norms, eps 0.1, origin/left",
     SMALL "num_hidden_layers=3 vocab_size=50 use_summary_attention=true summary_chunk_size=4 "
           "summary_token_num=3 summary_sliding_chunk_num=2 summary_layer_freq=[1,0,1] "
           "summary_independent_parameters=true summary_independent_qk_norm=true "
           "rms_norm_eps=0.1 summary_chunk_position_ids_type=origin "
           "summary_token_position_ids_type=last_chunk_slice_left"},
    {"C3 S2 W [100,1] (W*C beyond the context), shared summary tokens, untied",
     SMALL "num_hidden_layers=2 vocab_size=300 use_summary_attention=true summary_chunk_size=3 "
           "summary_token_num=2 summary_sliding_chunk_num=[100,1] summary_layer_freq=0 "
           "summary_independent_parameters=false summary_token_begin=290 "
           "tie_word_embeddings=false summary_token_position_ids_type=last_chunk_slice_right"},
    {"C1 S1 W2, layers [0,1], GQA 4:1, independent q/k/v only",
     "hidden_size=16 intermediate_size=24 num_attention_heads=4 num_key_value_heads=1 "
     "head_dim=4 max_position_embeddings=4096 num_hidden_layers=2 vocab_size=30 "
     "use_summary_attention=true summary_chunk_size=1 summary_token_num=1 "
     "summary_sliding_chunk_num=2 summary_layer_freq=[0,1] "
     "summary_independent_parameters=false summary_independent_qkv=true "
     "summary_token_begin=20"},
    {"C5 S1 W3, all summary layers, independent norms, origin/right",
     SMALL "num_hidden_layers=2 vocab_size=30 use_summary_attention=true summary_chunk_size=5 "
           "summary_token_num=1 summary_sliding_chunk_num=3 summary_layer_freq=0 "
           "summary_independent_parameters=true summary_independent_attention_layernorm=true "
           "summary_token_position_ids_type=last_chunk_slice_right"},
    {"causal model (summary attention off)", SMALL "num_hidden_layers=2 vocab_size=30"},
    {"summary attention on, every layer a bypass layer (pattern [0,0]), inner_chunk",
     SMALL "num_hidden_layers=2 vocab_size=30 use_summary_attention=true summary_chunk_size=3 "
           "summary_token_num=1 summary_sliding_chunk_num=1 summary_layer_freq=[0,0] "
           "summary_independent_parameters=true summary_chunk_position_ids_type=inner_chunk"},
    {"sliding chunks C3 W1 (no summary tokens), then a token window of 4",
     SMALL "num_hidden_layers=2 vocab_size=30 use_summary_attention=true "
           "sliding_chunk_attention=true summary_chunk_size=3 summary_token_num=0 "
           "summary_sliding_chunk_num=1 summary_layer_freq=[1,0] layer_sliding_window=4"},
    {"token sliding window of 5, summary attention off",
     SMALL "num_hidden_layers=2 vocab_size=30 layer_sliding_window=5"},
    {"C2 S1 W1 summary layers, bypass layers with a token window of 3",
     SMALL "num_hidden_layers=3 vocab_size=30 use_summary_attention=true summary_chunk_size=2 "
           "summary_token_num=1 summary_sliding_chunk_num=1 summary_layer_freq=[1,0,1] "
           "summary_independent_parameters=true layer_sliding_window=3"},
    /* annealing (KSA_SPEC §5.5): mix= is the model's coefficient, not a configuration key */
    {"annealing m = 0.4, C3 S2 W1, layers [1,1,0], independent q/k and input norms",
     SMALL "num_hidden_layers=3 vocab_size=40 use_summary_attention=true summary_chunk_size=3 "
           "summary_token_num=2 summary_sliding_chunk_num=1 summary_layer_freq=[1,1,0] "
           "summary_independent_parameters=true summary_independent_qk_norm=true "
           "summary_independent_attention_layernorm=true summary_mix_qkv=true mix=0.4"},
    {"annealing m = 0.75, C2 S1 W2, GQA 4:1, shared q/k norms",
     "hidden_size=16 intermediate_size=24 num_attention_heads=4 num_key_value_heads=1 "
     "head_dim=4 max_position_embeddings=4096 num_hidden_layers=2 vocab_size=30 "
     "use_summary_attention=true summary_chunk_size=2 summary_token_num=1 "
     "summary_sliding_chunk_num=2 summary_independent_parameters=true summary_mix_qkv=true "
     "mix=0.75"},
    {"annealing m = 0 (the shared projections alone), C2 S2 W0",
     SMALL "num_hidden_layers=2 vocab_size=30 use_summary_attention=true summary_chunk_size=2 "
           "summary_token_num=2 summary_sliding_chunk_num=0 summary_independent_parameters=true "
           "summary_independent_qk_norm=true summary_mix_qkv=true mix=0"},
};
enum { N_CONFIGS = sizeof configs / sizeof configs[0] };

static void model_init(ksa_model *m, const test_config *tc, uint64_t seed)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    char buf[1024];
    double mix = 1;
    snprintf(buf, sizeof buf, "%s", tc->keys);
    for (char *save = NULL, *kv = strtok_r(buf, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = 0;
        if (!strcmp(kv, "mix"))
            mix = strtod(eq + 1, NULL);
        else if (ksa_model_config_set(&c, kv, eq + 1, "test") != KSA_OK)
            fail_msg("%s: %s", tc->name, ksa_last_error());
    }
    if (ksa_model_init(m, &c) != KSA_OK)
        fail_msg("%s: %s", tc->name, ksa_last_error());
    m->summary_mix = mix;
    ksa_model_init_weights(m, seed);
    /* norm weights away from 1, so that each norm (and which one a row uses) matters */
    test_rng r = test_rng_seed(seed + 1);
    for (size_t i = 0; i < m->params.n; i++) {
        const ksa_param *p = &m->params.table[i];
        if (p->role == KSA_ROLE_NORM)
            test_fill_uniform(m->params.data + p->offset, p->numel, 0.5, 1.5, &r);
    }
}

/* Logits [V] after prefix[0..T): the last row of a full forward, in double. */
static double *oracle_logits(ksa_model *m, const int32_t *prefix, size_t T)
{
    int32_t *tok = malloc((T + 1) * sizeof *tok);
    memcpy(tok, prefix, T * sizeof *tok);
    tok[T] = 0; /* the forward reads one target per input */
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(m, 1, T));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    tp.recording = 0;
    ksa_tensor *logits;
    ksa_model_forward(m, &tp, tok, 1, T, 1.0, NULL, &logits);
    double *out = test_to_double(logits->data + (T - 1) * m->V, m->V);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    free(tok);
    return out;
}

/* max |got - want| <= LOGIT_RTOL * max |want| */
static void expect_logits(const ksa_real *got, const double *want, size_t V, const char *what,
                          size_t T)
{
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t v = 0; v < V; v++)
        scale = fmax(scale, fabs(want[v]));
    for (size_t v = 0; v < V; v++) {
        double e = fabs((double)got[v] - want[v]);
        if (!(e <= worst)) /* NaN counts as the worst */
            worst = e, at = v;
    }
    if (!(worst <= LOGIT_RTOL * scale))
        fail_msg("%s, after %zu tokens: logit %zu is %.17g, the full forward gives %.17g "
                 "(|diff| %.3g > %.1g * max|logit| %.3g)",
                 what, T, at, (double)got[at], want[at], worst, LOGIT_RTOL, scale);
}

static int32_t *random_tokens(size_t n, size_t V, uint64_t seed)
{
    test_rng r = test_rng_seed(seed);
    int32_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++)
        t[i] = (int32_t)(test_rng_uniform(&r) * (double)V);
    return t;
}

/* Prefill tokens[0..P), then step tokens[P..P+n): every logit vs the oracle. */
static void check_one(ksa_model *m, const char *name, size_t P, size_t n, int reserve,
                      uint64_t seed)
{
    int32_t *tok = random_tokens(P + n, m->V, seed);
    ksa_decoder d;
    assert_int_equal(ksa_decoder_init(&d, m, 1, P + n, reserve), KSA_OK);
    ksa_real *logits = malloc(m->V * sizeof *logits);
    char what[200];
    snprintf(what, sizeof what, "%s, prompt %zu, prefill", name, P);
    assert_int_equal(ksa_decoder_prefill(&d, 0, tok, P, logits), KSA_OK);
    double *want = oracle_logits(m, tok, P);
    expect_logits(logits, want, m->V, what, P);
    free(want);
    snprintf(what, sizeof what, "%s, prompt %zu, decode", name, P);
    for (size_t T = P; T < P + n; T++) {
        size_t seq = 0;
        assert_int_equal(ksa_decoder_step(&d, 1, &seq, tok + T, logits), KSA_OK);
        want = oracle_logits(m, tok, T + 1);
        expect_logits(logits, want, m->V, what, T + 1);
        free(want);
    }
    ksa_decoder_memory mem = ksa_decoder_memory_of(&d);
    assert_true(mem.live_bytes <= mem.allocated_bytes);
    free(logits);
    ksa_decoder_free(&d);
    free(tok);
}

/* prompt lengths relative to the chunk: 1, < C, C-1, C, k*C, k*C-1, long, and decoding of
 * 6 chunks + 20 tokens past it (the ring, W <= 3 chunks here, wraps several times) */
static void every_step_equals_the_full_forward(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < N_CONFIGS; ci++) {
        ksa_model m;
        model_init(&m, &configs[ci], 100 + ci);
        size_t C = m.layout.ksa ? m.layout.C : 4;
        size_t prompts[] = {1, C > 1 ? C - 1 : 2, C, 2 * C - 1, 3 * C, 4 * C + 1, 7 * C + 2};
        for (size_t p = 0; p < sizeof prompts / sizeof prompts[0]; p++)
            check_one(&m, configs[ci].name, prompts[p], 6 * C + 20, (int)(p % 2), 7 * ci + p);
        ksa_model_free(&m);
    }
}

/* Decoding from a 1-token prompt equals prefilling each longer prompt (prefill's cache
 * reorganisation against the step's incremental one), step by step over 60 tokens. */
static void a_long_decode_from_one_token_stays_exact(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < N_CONFIGS; ci++) {
        ksa_model m;
        model_init(&m, &configs[ci], 300 + ci);
        check_one(&m, configs[ci].name, 1, 60, 0, 900 + ci);
        ksa_model_free(&m);
    }
}

/* Queries that read more keys than one tile of the decode kernel (512): a causal model and
 * wide windows (W = 100 chunks of 3) at 1100 tokens, across the online-softmax rescaling. */
static void long_reads_span_several_key_tiles(void **state)
{
    (void)state;
    size_t which[] = {3, 6};
    for (size_t i = 0; i < 2; i++) {
        ksa_model m;
        model_init(&m, &configs[which[i]], 700 + i);
        check_one(&m, configs[which[i]].name, 1100, 12, 1, 800 + i);
        ksa_model_free(&m);
    }
}

/* One-layer variants see exactly their window: the logits after t_T change with a token
 * inside the window and not with the token just before it (prefill and decode alike).
 * SWA N = 4 at T = 12 (query t_11): t_7 is seen, t_6 is not. SCA C = 3, W = 1 at T = 9 (t_8 in
 * chunk 2): chunks 1 and 2 are seen (t_3), chunk 0 (t_2) is not. */
static void a_window_hides_what_is_outside_it(void **state)
{
    (void)state;
    struct {
        const char *keys;
        size_t T, seen, hidden;
    } cases[] = {
        {SMALL "num_hidden_layers=1 vocab_size=30 layer_sliding_window=4", 12, 7, 6},
        {SMALL "num_hidden_layers=1 vocab_size=30 use_summary_attention=true "
               "sliding_chunk_attention=true summary_chunk_size=3 summary_token_num=0 "
               "summary_sliding_chunk_num=1",
         9, 3, 2},
    };
    for (size_t i = 0; i < 2; i++) {
        test_config tc = {"window", cases[i].keys};
        ksa_model m;
        model_init(&m, &tc, 40 + i);
        size_t T = cases[i].T;
        int32_t *tok = random_tokens(T, m.V, 50 + i);
        double *base = oracle_logits(&m, tok, T);
        for (int which = 0; which < 2; which++) {
            size_t at = which ? cases[i].hidden : cases[i].seen;
            int32_t keep = tok[at];
            tok[at] = (keep + 1) % (int32_t)m.V;
            ksa_decoder d;
            assert_int_equal(ksa_decoder_init(&d, &m, 1, T, 0), KSA_OK);
            ksa_real *logits = malloc(m.V * sizeof *logits);
            assert_int_equal(ksa_decoder_prefill(&d, 0, tok, T - 1, logits), KSA_OK);
            size_t seq = 0;
            assert_int_equal(ksa_decoder_step(&d, 1, &seq, tok + T - 1, logits), KSA_OK);
            double diff = 0;
            for (size_t v = 0; v < m.V; v++)
                diff = fmax(diff, fabs((double)logits[v] - base[v]));
            if (which) /* outside the window: nothing changes */
                assert_true(diff <= 1e-5);
            else
                assert_true(diff > 1e-3);
            tok[at] = keep;
            free(logits);
            ksa_decoder_free(&d);
        }
        free(base);
        free(tok);
        ksa_model_free(&m);
    }
}

/* B = 4 sequences with prompts of different lengths, stepped together while some sit out
 * steps: every logit equals the oracle of its own sequence. */
static void a_batch_equals_each_sequence_alone(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < N_CONFIGS; ci++) {
        ksa_model m;
        model_init(&m, &configs[ci], 500 + ci);
        enum { B = 4, STEPS = 24 };
        size_t P[B] = {1, 5, 9, 12}, T_max = 12 + STEPS;
        int32_t *tok[B];
        size_t T[B];
        ksa_decoder d;
        assert_int_equal(ksa_decoder_init(&d, &m, B, T_max, 0), KSA_OK);
        ksa_real *logits = malloc(B * m.V * sizeof *logits);
        for (size_t b = 0; b < B; b++) {
            tok[b] = random_tokens(T_max, m.V, 1000 + 10 * ci + b);
            assert_int_equal(ksa_decoder_prefill(&d, b, tok[b], P[b], logits), KSA_OK);
            T[b] = P[b];
        }
        for (size_t s = 0; s < STEPS; s++) {
            size_t seq[B], n = 0;
            int32_t next[B];
            for (size_t b = 0; b < B; b++)
                if ((s + b) % 5 != 4 && T[b] < T_max) { /* sequence b sits out some steps */
                    seq[n] = B - 1 - b; /* listed in another order than the decoder's */
                    next[n++] = tok[B - 1 - b][T[B - 1 - b]];
                }
            assert_int_equal(ksa_decoder_step(&d, n, seq, next, logits), KSA_OK);
            for (size_t i = 0; i < n; i++) {
                size_t b = seq[i];
                T[b]++;
                double *want = oracle_logits(&m, tok[b], T[b]);
                char what[200];
                snprintf(what, sizeof what, "%s, batched sequence %zu", configs[ci].name, b);
                expect_logits(logits + i * m.V, want, m.V, what, T[b]);
                free(want);
            }
        }
        for (size_t b = 0; b < B; b++)
            free(tok[b]);
        free(logits);
        ksa_decoder_free(&d);
        ksa_model_free(&m);
    }
}

/* The cache holds the §8.7 rows: live bytes of a summary layer after T tokens are
 * (T mod C) + C*min(n, W) + S*n rows with n = T div C; a causal layer's are T. */
static void the_cache_holds_the_rows_of_the_spec(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, &configs[0], 7); /* C 3, S 1, W 1, layers [1, 1, 0] */
    size_t T = 100, row = 2 * m.Hkv * m.dh * sizeof(ksa_real);
    int32_t *tok = random_tokens(T, m.V, 3);
    ksa_decoder d;
    assert_int_equal(ksa_decoder_init(&d, &m, 1, T, 1), KSA_OK);
    ksa_real *logits = malloc(m.V * sizeof *logits);
    assert_int_equal(ksa_decoder_prefill(&d, 0, tok, 50, logits), KSA_OK);
    for (size_t t = 50; t < T; t++) {
        size_t seq = 0;
        assert_int_equal(ksa_decoder_step(&d, 1, &seq, tok + t, logits), KSA_OK);
    }
    ksa_decoder_memory mem = ksa_decoder_memory_of(&d);
    size_t n = T / 3, summary_rows = (T % 3) + 3 * 1 + 1 * n;
    assert_int_equal(mem.live_bytes, (2 * summary_rows + T) * row);
    assert_int_equal(mem.causal_bytes, 3 * T * row);
    /* reserved up front: S + C + W*C + n*S rows per summary layer, T per causal layer */
    assert_int_equal(mem.allocated_bytes, (2 * (1 + 3 + 3 + n) + T) * row);
    /* a synthetic context (benchmarks) holds the same rows and can be stepped */
    ksa_decoder syn;
    assert_int_equal(ksa_decoder_init(&syn, &m, 1, T + 1, 0), KSA_OK);
    ksa_decoder_fill_synthetic(&syn, 0, T, 11);
    assert_int_equal(syn.seqs[0].T, T);
    assert_int_equal(ksa_decoder_memory_of(&syn).live_bytes, mem.live_bytes);
    size_t seq = 0;
    assert_int_equal(ksa_decoder_step(&syn, 1, &seq, tok, logits), KSA_OK);
    assert_int_equal(syn.seqs[0].T, T + 1);
    ksa_decoder_free(&syn);
    free(logits);
    free(tok);
    ksa_decoder_free(&d);
    ksa_model_free(&m);
}

static void bad_arguments_are_errors_that_change_nothing(void **state)
{
    (void)state;
    ksa_model m;
    model_init(&m, &configs[0], 9);
    ksa_decoder d;
    assert_int_equal(ksa_decoder_init(&d, &m, 2, 5000, 0), KSA_EINVAL); /* > max positions */
    assert_non_null(strstr(ksa_last_error(), "max_position_embeddings"));
    assert_int_equal(ksa_decoder_init(&d, &m, 0, 10, 0), KSA_EINVAL);
    assert_int_equal(ksa_decoder_init(&d, &m, 2, 0, 0), KSA_EINVAL);
    assert_int_equal(ksa_decoder_init(&d, &m, 2, 6, 0), KSA_OK);
    ksa_real *logits = malloc(2 * m.V * sizeof *logits);
    int32_t good[6] = {1, 2, 3, 4, 5, 6}, bad[2] = {1, 40};
    assert_int_equal(ksa_decoder_prefill(&d, 0, bad, 2, logits), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "id 40"));
    assert_int_equal(ksa_decoder_prefill(&d, 0, good, 7, logits), KSA_EINVAL); /* > T_max */
    assert_int_equal(ksa_decoder_prefill(&d, 0, good, 0, logits), KSA_EINVAL);
    assert_int_equal(ksa_decoder_prefill(&d, 2, good, 1, logits), KSA_EINVAL);
    assert_int_equal(ksa_decoder_prefill(&d, 0, good, 5, logits), KSA_OK);
    assert_int_equal(ksa_decoder_prefill(&d, 0, good, 1, logits), KSA_EINVAL); /* not empty */
    size_t twice[2] = {0, 0}, out_of_range[1] = {2}, both[2] = {1, 0};
    assert_int_equal(ksa_decoder_step(&d, 2, twice, good, logits), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "twice"));
    assert_int_equal(ksa_decoder_step(&d, 1, out_of_range, good, logits), KSA_EINVAL);
    assert_int_equal(ksa_decoder_step(&d, 2, both, bad, logits), KSA_EINVAL);
    assert_int_equal(d.seqs[0].T, 5); /* nothing appended by the failed steps */
    assert_int_equal(d.seqs[1].T, 0);
    assert_int_equal(ksa_decoder_step(&d, 1, twice, good + 5, logits), KSA_OK); /* T = 6 */
    assert_int_equal(ksa_decoder_step(&d, 1, twice, good, logits), KSA_EINVAL); /* full */
    assert_non_null(strstr(ksa_last_error(), "6 tokens"));
    /* a reset sequence starts again and decodes exactly */
    ksa_decoder_reset(&d, 0);
    assert_int_equal(ksa_decoder_prefill(&d, 0, good, 3, logits), KSA_OK);
    double *want = oracle_logits(&m, good, 3);
    expect_logits(logits, want, m.V, "after a reset", 3);
    free(want);
    free(logits);
    ksa_decoder_free(&d);
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_step_equals_the_full_forward),
        cmocka_unit_test(a_long_decode_from_one_token_stays_exact),
        cmocka_unit_test(long_reads_span_several_key_tiles),
        cmocka_unit_test(a_window_hides_what_is_outside_it),
        cmocka_unit_test(a_batch_equals_each_sequence_alone),
        cmocka_unit_test(the_cache_holds_the_rows_of_the_spec),
        cmocka_unit_test(bad_arguments_are_errors_that_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
