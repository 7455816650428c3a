/* test_init_from.c - ksa_ckpt_init_from: a checkpoint's parameters into a model of another
 * configuration (issue #7, fine-tuning; KSA_SPEC §9.1 causal -> KSA, §9.7 from scratch).
 * Files live in a mkdtemp folder that the group teardown removes.                          */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "autograd/arena.h"
#include "autograd/tape.h"
#include "ckpt/ckpt.h"
#include "ckpt/init_from.h"
#include "model/decoder.h"

/* ---- the scratch folder ----------------------------------------------------------------- */
static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    return test_scratch_make(dir, sizeof dir, "ksa_init_from");
}

static int remove_dir(void **state)
{
    (void)state;
    return test_remove_tree(dir);
}

static const char *in_dir(const char *name)
{
    return test_path_in(dir, name);
}

/* ---- configurations and models ---------------------------------------------------------- */
#define SMALL                                                                                      \
    "vocab_size", "23", "hidden_size", "8", "intermediate_size", "10", "num_attention_heads", "4", \
        "num_key_value_heads", "2", "head_dim", "4", "num_hidden_layers", "3"

static const char *const cfg_causal[] = {SMALL, NULL};
static const char *const cfg_causal_tied[] = {SMALL, "tie_word_embeddings", "true", NULL};

/* The causal backbone plus every independent summary parameter, a bypass layer (1) and
 * windows of at least 4 chunks in the summary layers: T = 12, C = 3 gives 4 chunks, so text
 * never sees a summary (KSA_SPEC §3.1, W >= n).                                             */
/* clang-format off */
static const char *const cfg_ksa_full_window[] = {SMALL,
    "use_summary_attention", "true",
    "summary_chunk_size", "3",
    "summary_token_num", "2",
    "summary_sliding_chunk_num", "[4,0,9]",
    "summary_layer_freq", "[1,0,1]",
    "summary_independent_parameters", "true",
    "summary_independent_qkv", "true",
    "summary_independent_attention_layernorm", "true",
    "summary_independent_qk_norm", "true",
    "summary_chunk_position_ids_type", "origin",
    NULL};
/* clang-format on */

/* The same with windows of 1 and 0 chunks: text rows read old summaries. */
/* clang-format off */
static const char *const cfg_ksa_small_window[] = {SMALL,
    "use_summary_attention", "true",
    "summary_chunk_size", "3",
    "summary_token_num", "2",
    "summary_sliding_chunk_num", "[1,0,0]",
    "summary_layer_freq", "[1,0,1]",
    "summary_independent_parameters", "true",
    "summary_independent_qkv", "true",
    "summary_independent_attention_layernorm", "true",
    "summary_independent_qk_norm", "true",
    "summary_chunk_position_ids_type", "origin",
    NULL};
/* clang-format on */

static void configure(ksa_model_config *c, const char *const *kv)
{
    ksa_model_config_defaults(c);
    for (size_t i = 0; kv[i]; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

static void set_key(ksa_model_config *c, const char *key, const char *value)
{
    if (ksa_model_config_set(c, key, value, "test") != KSA_OK)
        fail_msg("%s", ksa_last_error());
}

static void init_model(ksa_model *m, const ksa_model_config *c, uint64_t seed)
{
    if (ksa_model_init(m, c) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_model_init_weights(m, seed);
}

/* From-scratch weights, perturbed so that norms are not all 1 and attention matters, then
 * rounded to float32 (what a checkpoint stores), so that loaded values compare exactly in
 * both builds.                                                                               */
static void init_perturbed(ksa_model *m, const ksa_model_config *c, uint64_t seed)
{
    init_model(m, c, seed);
    test_rng r = test_rng_seed(seed + 1000);
    for (size_t i = 0; i < m->params.n; i++) {
        const ksa_param *e = &m->params.table[i];
        ksa_real *w = m->params.data + e->offset;
        for (size_t j = 0; j < e->numel; j++) {
            double u = test_rng_uniform(&r);
            double v = e->ndim == 1 ? 0.7 + 0.6 * u : (double)w[j] + 0.6 * (u - 0.5);
            w[j] = (ksa_real)(float)v;
        }
    }
}

static void write_model(const char *path, const ksa_model *m)
{
    if (ksa_ckpt_write_model(path, &m->config, &m->params, -1) != KSA_OK)
        fail_msg("%s", ksa_last_error());
}

/* A causal checkpoint (and its model, for reference losses) written once per test. */
static void make_causal_file(const char *path, ksa_model *mc, const char *const *kv, uint64_t seed)
{
    ksa_model_config c;
    configure(&c, kv);
    init_perturbed(mc, &c, seed);
    write_model(path, mc);
}

static ksa_real *param(const ksa_model *m, const char *name)
{
    long i = ksa_params_find(&m->params, name);
    if (i < 0)
        fail_msg("the model has no parameter %s", name);
    return m->params.data + m->params.table[i].offset;
}

static size_t numel(const ksa_model *m, const char *name)
{
    long i = ksa_params_find(&m->params, name);
    if (i < 0)
        fail_msg("the model has no parameter %s", name);
    return m->params.table[i].numel;
}

static int same_values(const ksa_model *a, const char *na, const ksa_model *b, const char *nb)
{
    size_t n = numel(a, na);
    assert_int_equal(n, numel(b, nb));
    return !memcmp(param(a, na), param(b, nb), n * sizeof(ksa_real));
}

static ksa_real *snapshot(const ksa_model *m)
{
    size_t bytes = m->params.numel * sizeof(ksa_real);
    ksa_real *s = malloc(bytes);
    memcpy(s, m->params.data, bytes);
    return s;
}

static int32_t *random_tokens(size_t nseq, size_t T, size_t V, uint64_t seed)
{
    test_rng r = test_rng_seed(seed);
    int32_t *tok = malloc(nseq * (T + 1) * sizeof *tok);
    for (size_t i = 0; i < nseq * (T + 1); i++)
        tok[i] = (int32_t)(test_rng_uniform(&r) * (double)V);
    return tok;
}

#define NSEQ 2
#define T_LEN 12 /* 4 chunks of C = 3 */

static double model_loss(ksa_model *m, const int32_t *tok)
{
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(m, NSEQ, T_LEN));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    double v;
    ksa_model_forward(m, &tp, tok, NSEQ, T_LEN, (double)(NSEQ * T_LEN), &v, NULL);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    return v;
}

/* ---- reports ------------------------------------------------------------------------------ */
typedef struct {
    char *text;
    size_t len;
    FILE *f;
} report;

static void report_open(report *r)
{
    r->text = NULL;
    r->len = 0;
    r->f = open_memstream(&r->text, &r->len);
    assert_non_null(r->f);
}

static void report_close(report *r)
{
    assert_int_equal(fclose(r->f), 0);
}

static void expect_in(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("'%s' lacks '%s'", text, needle);
}

static size_t count_in(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *s = strstr(text, needle); s; s = strstr(s + 1, needle))
        n++;
    return n;
}

/* The report line of one parameter: "  <name> [shape]: <what>" */
static void expect_line(const char *text, const char *name, const char *shape, const char *what)
{
    char line[512];
    snprintf(line, sizeof line, "  %s %s: %s", name, shape, what);
    expect_in(text, line);
}

static void expect_ok(ksa_status st)
{
    if (st != KSA_OK)
        fail_msg("status %s: %s", ksa_status_name(st), ksa_last_error());
}

static void expect_error(ksa_status got, ksa_status want, const char *const *needles)
{
    if (got != want)
        fail_msg("status %d (%s), expected %d; message: %s", got, ksa_status_name(got), want,
                 ksa_last_error());
    for (size_t i = 0; needles[i]; i++)
        expect_in(ksa_last_error(), needles[i]);
}

static int is_summary_name(const char *name)
{
    return strstr(name, "summary") != NULL;
}

/* ---- same configuration ---------------------------------------------------------------------- */
static void same_configuration_reloads_every_parameter_exactly(void **state)
{
    (void)state;
    ksa_model_config c;
    configure(&c, cfg_ksa_full_window);
    ksa_model src, dst;
    init_perturbed(&src, &c, 1);
    const char *path = in_dir("same.h5");
    write_model(path, &src);
    init_model(&dst, &c, 2);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &dst, KSA_INIT_SUMMARY_COPY, 7, r.f, 1));
    report_close(&r);
    for (size_t i = 0; i < src.params.n; i++) {
        const char *name = src.params.table[i].name;
        if (!same_values(&src, name, &dst, name))
            fail_msg("%s differs after loading", name);
        char shape[64];
        const ksa_param *e = &src.params.table[i];
        if (e->ndim == 2)
            snprintf(shape, sizeof shape, "[%zu, %zu]", e->shape[0], e->shape[1]);
        else
            snprintf(shape, sizeof shape, "[%zu]", e->shape[0]);
        expect_line(r.text, name, shape, "loaded\n");
    }
    assert_int_equal(count_in(r.text, ": loaded\n"), src.params.n);
    char counts[256];
    snprintf(counts, sizeof counts, ": %zu loaded, 0 created, 0 kept, 0 ignored\n", src.params.n);
    expect_in(r.text, counts);
    free(r.text);
    ksa_model_free(&src);
    ksa_model_free(&dst);
}

/* ---- causal -> KSA ----------------------------------------------------------------------------
 */
static void expect_summary_copies(const ksa_model *m, int want_equal)
{
    static const char *const pairs[][2] = {
        {"input_layernorm_summary.weight", "input_layernorm.weight"},
        {"self_attn.q_proj_summary.weight", "self_attn.q_proj.weight"},
        {"self_attn.k_proj_summary.weight", "self_attn.k_proj.weight"},
        {"self_attn.v_proj_summary.weight", "self_attn.v_proj.weight"},
        {"self_attn.q_norm_summary.weight", "self_attn.q_norm.weight"},
        {"self_attn.k_norm_summary.weight", "self_attn.k_norm.weight"},
    };
    const size_t summary_layers[] = {0, 2};
    for (size_t l = 0; l < 2; l++)
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
            char a[128], b[128];
            snprintf(a, sizeof a, "model.layers.%zu.%s", summary_layers[l], pairs[k][0]);
            snprintf(b, sizeof b, "model.layers.%zu.%s", summary_layers[l], pairs[k][1]);
            if (same_values(m, a, m, b) != want_equal)
                fail_msg("%s %s %s", a, want_equal ? "is not a copy of" : "equals", b);
        }
    /* layer 1 is a bypass layer: no summary parameters */
    assert_int_equal(ksa_params_find(&m->params, "model.layers.1.self_attn.q_proj_summary.weight"),
                     -1);
}

static void causal_checkpoint_into_ksa_copies_shared_weights_and_keeps_the_loss(void **state)
{
    (void)state;
    ksa_model mc, mk;
    const char *path = in_dir("causal.h5");
    make_causal_file(path, &mc, cfg_causal, 3);
    ksa_model_config ck;
    configure(&ck, cfg_ksa_full_window);
    init_model(&mk, &ck, 4);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &mk, KSA_INIT_SUMMARY_COPY, 7, r.f, 1));
    report_close(&r);

    /* every causal parameter loaded unchanged */
    for (size_t i = 0; i < mc.params.n; i++)
        if (!same_values(&mc, mc.params.table[i].name, &mk, mc.params.table[i].name))
            fail_msg("%s was not loaded", mc.params.table[i].name);
    expect_summary_copies(&mk, 1);

    /* W >= chunks in every summary layer: text never reads summaries (KSA_SPEC §3.1) */
    int32_t *tok = random_tokens(NSEQ, T_LEN, mk.V, 5);
    double lc = model_loss(&mc, tok), lk = model_loss(&mk, tok);
    ksa_expect_close_dd(&lk, &lc, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "KSA loss after init-from");

    /* the report: loaded, copies, the drawn embedding, counts */
    expect_line(r.text, "model.layers.0.self_attn.q_proj.weight", "[16, 8]", "loaded\n");
    expect_line(r.text, "model.layers.2.self_attn.q_proj_summary.weight", "[16, 8]",
                "created (copy of model.layers.2.self_attn.q_proj.weight)\n");
    expect_line(r.text, "model.layers.0.input_layernorm_summary.weight", "[8]",
                "created (copy of model.layers.0.input_layernorm.weight)\n");
    expect_line(r.text, "model.layers.0.self_attn.k_norm_summary.weight", "[4]",
                "created (copy of model.layers.0.self_attn.k_norm.weight)\n");
    expect_line(r.text, "summary_embedding.weight", "[2, 8]", "created (N(0, 0.02^2))\n");
    char counts[256];
    /* 2 summary layers x 6 summary parameters + the summary embedding */
    snprintf(counts, sizeof counts, ": %zu loaded, 13 created, 0 kept, 0 ignored\n", mc.params.n);
    expect_in(r.text, counts);
    assert_int_equal(mk.params.n, mc.params.n + 13);
    expect_in(r.text, "a causal checkpoint into a summary attention configuration");

    free(tok);
    free(r.text);
    ksa_model_free(&mc);
    ksa_model_free(&mk);
}

static void scratch_keeps_from_scratch_summary_weights_and_the_loss(void **state)
{
    (void)state;
    ksa_model mc, mk;
    const char *path = in_dir("causal_scratch.h5");
    make_causal_file(path, &mc, cfg_causal, 5);
    ksa_model_config ck;
    configure(&ck, cfg_ksa_full_window);
    init_model(&mk, &ck, 6);
    ksa_real *before = snapshot(&mk);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &mk, KSA_INIT_SUMMARY_SCRATCH, 7, r.f, 1));
    report_close(&r);
    for (size_t i = 0; i < mk.params.n; i++) {
        const ksa_param *e = &mk.params.table[i];
        const ksa_real *now = mk.params.data + e->offset, *was = before + e->offset;
        if (is_summary_name(e->name)) {
            if (memcmp(now, was, e->numel * sizeof(ksa_real)))
                fail_msg("%s changed; SCRATCH keeps it", e->name);
        } else if (!same_values(&mc, e->name, &mk, e->name)) {
            fail_msg("%s was not loaded", e->name);
        }
    }
    /* from-scratch q/k/v differ from the shared ones; the norms are all 1 on both sides
     * only in the from-scratch model, so compare the projections                          */
    assert_false(same_values(&mk, "model.layers.0.self_attn.q_proj_summary.weight", &mk,
                             "model.layers.0.self_attn.q_proj.weight"));
    assert_false(same_values(&mk, "model.layers.2.self_attn.v_proj_summary.weight", &mk,
                             "model.layers.2.self_attn.v_proj.weight"));
    assert_false(same_values(&mk, "model.layers.2.input_layernorm_summary.weight", &mk,
                             "model.layers.2.input_layernorm.weight"));
    int32_t *tok = random_tokens(NSEQ, T_LEN, mk.V, 8);
    double lc = model_loss(&mc, tok), lk = model_loss(&mk, tok);
    ksa_expect_close_dd(&lk, &lc, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "KSA loss, SCRATCH");
    expect_line(r.text, "model.layers.0.self_attn.q_proj_summary.weight", "[16, 8]",
                "kept (from-scratch init)\n");
    expect_line(r.text, "summary_embedding.weight", "[2, 8]", "kept (from-scratch init)\n");
    char counts[256];
    snprintf(counts, sizeof counts, ": %zu loaded, 0 created, 13 kept, 0 ignored\n", mc.params.n);
    expect_in(r.text, counts);
    free(tok);
    free(before);
    free(r.text);
    ksa_model_free(&mc);
    ksa_model_free(&mk);
}

static void small_windows_let_summaries_change_the_loss(void **state)
{
    (void)state;
    ksa_model mc, mk;
    const char *path = in_dir("causal_small_window.h5");
    make_causal_file(path, &mc, cfg_causal, 9);
    ksa_model_config ck;
    configure(&ck, cfg_ksa_small_window);
    init_model(&mk, &ck, 10);
    expect_ok(ksa_ckpt_init_from(path, &mk, KSA_INIT_SUMMARY_COPY, 7, NULL, 1));
    expect_summary_copies(&mk, 1);
    int32_t *tok = random_tokens(NSEQ, T_LEN, mk.V, 11);
    double lc = model_loss(&mc, tok), lk = model_loss(&mk, tok);
    assert_true(isfinite(lk));
    if (!(fabs(lk - lc) > 1e-4))
        fail_msg("loss %.9g equals the causal %.9g although text reads summaries", lk, lc);
    free(tok);
    ksa_model_free(&mc);
    ksa_model_free(&mk);
}

/* The summary embedding depends on the seed only, not on the model's previous values. */
static void summary_embedding_is_normal_with_std_002_and_follows_the_seed(void **state)
{
    (void)state;
    const char *wide[] = {"vocab_size",
                          "23",
                          "hidden_size",
                          "64",
                          "intermediate_size",
                          "16",
                          "num_attention_heads",
                          "2",
                          "num_key_value_heads",
                          "1",
                          "head_dim",
                          "8",
                          "num_hidden_layers",
                          "1",
                          NULL};
    ksa_model_config cc, ck;
    configure(&cc, wide);
    ksa_model mc;
    const char *path = in_dir("wide.h5");
    init_perturbed(&mc, &cc, 12);
    write_model(path, &mc);
    configure(&ck, wide);
    set_key(&ck, "use_summary_attention", "true");
    set_key(&ck, "summary_chunk_size", "4");
    set_key(&ck, "summary_token_num", "16");
    set_key(&ck, "summary_independent_parameters", "true");
    ksa_model a, b, c;
    init_model(&a, &ck, 1);
    init_model(&b, &ck, 2);
    init_model(&c, &ck, 1);
    ksa_real *scratch = snapshot(&a);
    expect_ok(ksa_ckpt_init_from(path, &a, KSA_INIT_SUMMARY_COPY, 42, NULL, 1));
    expect_ok(ksa_ckpt_init_from(path, &b, KSA_INIT_SUMMARY_COPY, 42, NULL, 1));
    expect_ok(ksa_ckpt_init_from(path, &c, KSA_INIT_SUMMARY_COPY, 43, NULL, 1));
    const char *se = "summary_embedding.weight";
    assert_true(same_values(&a, se, &b, se));
    assert_false(same_values(&a, se, &c, se));
    long i = ksa_params_find(&a.params, se);
    assert_true(memcmp(param(&a, se), scratch + a.params.table[i].offset,
                       numel(&a, se) * sizeof(ksa_real)) != 0);
    size_t n = numel(&a, se);
    assert_int_equal(n, 16 * 64);
    double sum = 0, sq = 0;
    for (size_t j = 0; j < n; j++) {
        double v = param(&a, se)[j];
        sum += v;
        sq += v * v;
    }
    double mean = sum / (double)n, std = sqrt(sq / (double)n - mean * mean);
    if (!(fabs(mean) < 0.003 && fabs(std - 0.02) < 0.002)) /* ~5 standard errors each */
        fail_msg("summary_embedding: mean %.5f, std %.5f; expected N(0, 0.02^2)", mean, std);
    free(scratch);
    ksa_model_free(&mc);
    ksa_model_free(&a);
    ksa_model_free(&b);
    ksa_model_free(&c);
}

/* ---- KSA -> causal, tied <-> untied --------------------------------------------------------- */
static void ksa_checkpoint_into_a_causal_model_ignores_summary_parameters(void **state)
{
    (void)state;
    ksa_model_config ck, cc;
    configure(&ck, cfg_ksa_full_window);
    configure(&cc, cfg_causal);
    ksa_model mk, mc;
    init_perturbed(&mk, &ck, 13);
    const char *path = in_dir("ksa.h5");
    write_model(path, &mk);
    init_model(&mc, &cc, 14);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &mc, KSA_INIT_SUMMARY_COPY, 7, r.f, 1));
    report_close(&r);
    for (size_t i = 0; i < mc.params.n; i++)
        if (!same_values(&mk, mc.params.table[i].name, &mc, mc.params.table[i].name))
            fail_msg("%s was not loaded", mc.params.table[i].name);
    size_t n_summary = 0;
    for (size_t i = 0; i < mk.params.n; i++)
        if (is_summary_name(mk.params.table[i].name)) {
            char line[256];
            snprintf(line, sizeof line, "  %s ", mk.params.table[i].name);
            expect_in(r.text, line);
            n_summary++;
        }
    assert_int_equal(n_summary, 13);
    assert_int_equal(count_in(r.text, ": ignored; not a parameter of the configuration\n"), 13);
    expect_line(r.text, "model.layers.2.self_attn.v_proj_summary.weight", "[8, 8]",
                "ignored; not a parameter of the configuration\n");
    char counts[256];
    snprintf(counts, sizeof counts, ": %zu loaded, 0 created, 0 kept, 13 ignored\n", mc.params.n);
    expect_in(r.text, counts);
    free(r.text);
    ksa_model_free(&mk);
    ksa_model_free(&mc);
}

static void tied_checkpoint_into_an_untied_model_copies_the_embedding(void **state)
{
    (void)state;
    ksa_model mt, mu;
    const char *path = in_dir("tied.h5");
    make_causal_file(path, &mt, cfg_causal_tied, 15);
    ksa_model_config cu;
    configure(&cu, cfg_causal);
    init_model(&mu, &cu, 16);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &mu, KSA_INIT_SUMMARY_COPY, 7, r.f, 1));
    report_close(&r);
    assert_true(same_values(&mt, "model.embed_tokens.weight", &mu, "model.embed_tokens.weight"));
    assert_true(same_values(&mt, "model.embed_tokens.weight", &mu, "lm_head.weight"));
    expect_line(r.text, "lm_head.weight", "[23, 8]",
                "created (copy of model.embed_tokens.weight); the checkpoint ties lm_head to "
                "model.embed_tokens.weight\n");
    /* the untied model computes what the tied one did */
    int32_t *tok = random_tokens(NSEQ, T_LEN, mu.V, 17);
    double lt = model_loss(&mt, tok), lu = model_loss(&mu, tok);
    ksa_expect_close_dd(&lu, &lt, 1, TEST_FWD_ATOL, TEST_FWD_RTOL, "untied copy of a tied head");
    free(tok);
    free(r.text);
    ksa_model_free(&mt);
    ksa_model_free(&mu);
}

static void untied_checkpoint_into_a_tied_model_ignores_lm_head(void **state)
{
    (void)state;
    ksa_model mu, mt;
    const char *path = in_dir("untied.h5");
    make_causal_file(path, &mu, cfg_causal, 18);
    assert_false(same_values(&mu, "model.embed_tokens.weight", &mu, "lm_head.weight"));
    ksa_model_config ct;
    configure(&ct, cfg_causal_tied);
    init_model(&mt, &ct, 19);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &mt, KSA_INIT_SUMMARY_COPY, 7, r.f, 1));
    report_close(&r);
    assert_int_equal(ksa_params_find(&mt.params, "lm_head.weight"), -1);
    assert_true(same_values(&mu, "model.embed_tokens.weight", &mt, "model.embed_tokens.weight"));
    expect_line(r.text, "lm_head.weight", "[23, 8]",
                "ignored; the configuration ties lm_head to model.embed_tokens.weight\n");
    char counts[256];
    snprintf(counts, sizeof counts, ": %zu loaded, 0 created, 0 kept, 1 ignored\n", mt.params.n);
    expect_in(r.text, counts);
    free(r.text);
    ksa_model_free(&mu);
    ksa_model_free(&mt);
}

/* ---- refusals ----------------------------------------------------------------------------------
 */
/* init_from must fail with `want` and every needle in the message, leaving the model's
 * parameters and the report untouched.                                                       */
static void expect_refusal(const char *path, ksa_model *m, ksa_status want,
                           const char *const *needles)
{
    ksa_real *before = snapshot(m);
    report r;
    report_open(&r);
    ksa_status st = ksa_ckpt_init_from(path, m, KSA_INIT_SUMMARY_COPY, 7, r.f, 1);
    report_close(&r);
    expect_error(st, want, needles);
    if (memcmp(before, m->params.data, m->params.numel * sizeof(ksa_real)))
        fail_msg("a refusal changed the model's parameters (%s)", ksa_last_error());
    assert_int_equal(r.len, 0);
    free(r.text);
    free(before);
}

static void refuse_with_key(const char *path, const char *key, const char *value,
                            const char *const *needles)
{
    ksa_model_config c;
    configure(&c, cfg_ksa_full_window);
    set_key(&c, key, value);
    ksa_model m;
    init_model(&m, &c, 20);
    expect_refusal(path, &m, KSA_EINVAL, needles);
    ksa_model_free(&m);
}

static void shape_changes_are_refused_naming_parameter_shapes_and_key(void **state)
{
    (void)state;
    ksa_model mc;
    const char *path = in_dir("refuse.h5");
    make_causal_file(path, &mc, cfg_causal, 21);
    const char *hidden[] = {path,
                            "model.embed_tokens.weight: the checkpoint has [23, 8], the "
                            "configuration needs [23, 16]",
                            "hidden_size is 8 in the checkpoint, 16 in the configuration", NULL};
    refuse_with_key(path, "hidden_size", "16", hidden);
    const char *vocab[] = {"model.embed_tokens.weight: the checkpoint has [23, 8], the "
                           "configuration needs [31, 8]",
                           "vocab_size is 23 in the checkpoint, 31", NULL};
    refuse_with_key(path, "vocab_size", "31", vocab);
    const char *heads[] = {"model.layers.0.self_attn.q_proj.weight: the checkpoint has [16, 8], "
                           "the configuration needs [8, 8]",
                           "num_attention_heads is 4 in the checkpoint, 2", NULL};
    refuse_with_key(path, "num_attention_heads", "2", heads);
    const char *kv_heads[] = {"model.layers.0.self_attn.k_proj.weight: the checkpoint has [8, 8], "
                              "the configuration needs [4, 8]",
                              "num_key_value_heads is 2 in the checkpoint, 1", NULL};
    refuse_with_key(path, "num_key_value_heads", "1", kv_heads);
    const char *inter[] = {"model.layers.0.mlp.gate_proj.weight: the checkpoint has [10, 8], "
                           "the configuration needs [12, 8]",
                           "intermediate_size is 10 in the checkpoint, 12", NULL};
    refuse_with_key(path, "intermediate_size", "12", inter);
    const char *fewer[] = {path,
                           "num_hidden_layers: the checkpoint has 3, the configuration "
                           "needs 2",
                           NULL};
    /* the window and layer patterns of the KSA configuration have 3 entries */
    ksa_model_config c;
    configure(&c, cfg_causal);
    set_key(&c, "num_hidden_layers", "2");
    ksa_model m;
    init_model(&m, &c, 22);
    expect_refusal(path, &m, KSA_EINVAL, fewer);
    ksa_model_free(&m);
    const char *more[] = {"num_hidden_layers: the checkpoint has 3, the configuration needs 4",
                          NULL};
    set_key(&c, "num_hidden_layers", "4");
    init_model(&m, &c, 23);
    expect_refusal(path, &m, KSA_EINVAL, more);
    ksa_model_free(&m);
    ksa_model_free(&mc);
}

/* A summary embedding of another summary_token_num is refused too. */
static void a_different_summary_token_num_is_refused(void **state)
{
    (void)state;
    ksa_model_config c;
    configure(&c, cfg_ksa_full_window);
    ksa_model mk, m;
    init_perturbed(&mk, &c, 24);
    const char *path = in_dir("ksa_s2.h5");
    write_model(path, &mk);
    set_key(&c, "summary_token_num", "3");
    init_model(&m, &c, 25);
    const char *needles[] = {"summary_embedding.weight: the checkpoint has [2, 8], the "
                             "configuration needs [3, 8]",
                             "summary_token_num is 2 in the checkpoint, 3", NULL};
    expect_refusal(path, &m, KSA_EINVAL, needles);
    ksa_model_free(&m);
    ksa_model_free(&mk);
}

static hid_t open_rw(const char *path)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    return f;
}

static void add_float_dataset(hid_t f, const char *name, hsize_t n)
{
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(space >= 0 && d >= 0);
    float *zeros = calloc(n, sizeof *zeros);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
    assert_int_equal(test_h5_write_checksum(d), 0); /* wrong in no other way */
    free(zeros);
    H5Dclose(d);
    H5Sclose(space);
}

static void bad_files_are_refused_clearly_and_leave_the_model_untouched(void **state)
{
    (void)state;
    ksa_model_config c;
    configure(&c, cfg_causal);
    ksa_model mc, m;
    init_perturbed(&mc, &c, 26);
    init_model(&m, &c, 27);

    const char *missing = in_dir("no_such_file.h5");
    const char *n_missing[] = {missing, "No such file", NULL};
    expect_refusal(missing, &m, KSA_EIO, n_missing);

    const char *text = in_dir("text.h5");
    FILE *f = fopen(text, "w");
    assert_non_null(f);
    fputs("not a checkpoint\n", f);
    fclose(f);
    const char *n_text[] = {text, "not an HDF5 file", NULL};
    expect_refusal(text, &m, KSA_EFORMAT, n_text);

    const char *plain = in_dir("plain.h5");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t h = H5Fcreate(plain, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(h >= 0);
    add_float_dataset(h, "x", 3);
    H5Fclose(h);
    const char *n_plain[] = {plain, "not a ksa checkpoint", NULL};
    expect_refusal(plain, &m, KSA_EFORMAT, n_plain);

    /* a parameter the file's /config declares is missing: named, nothing loaded */
    const char *holed = in_dir("holed.h5");
    write_model(holed, &mc);
    h = open_rw(holed);
    assert_true(H5Ldelete(h, "/params/model.norm.weight", H5P_DEFAULT) >= 0);
    H5Fclose(h);
    const char *n_holed[] = {holed, "/params/model.norm.weight is missing", NULL};
    expect_refusal(holed, &m, KSA_EFORMAT, n_holed);

    /* a dataset contradicting the file's /config: named with both shapes */
    const char *bent = in_dir("bent.h5");
    write_model(bent, &mc);
    h = open_rw(bent);
    assert_true(
        H5Ldelete(h, "/params/model.layers.2.post_attention_layernorm.weight", H5P_DEFAULT) >= 0);
    add_float_dataset(h, "/params/model.layers.2.post_attention_layernorm.weight", 7);
    H5Fclose(h);
    const char *n_bent[] = {"/params/model.layers.2.post_attention_layernorm.weight has shape "
                            "[7], the checkpoint's own /config declares [8]",
                            NULL};
    expect_refusal(bent, &m, KSA_EFORMAT, n_bent);

    /* floats of 64 bytes: refused before HDF5 converts them (a damaged file's float of 4 GiB
     * had it allocate buffers of 4 GiB an element; tests/fuzz/fuzz_ckpt.c) */
    const char *wide = in_dir("wide.h5");
    write_model(wide, &mc);
    h = open_rw(wide);
    assert_true(H5Ldelete(h, "/params/model.norm.weight", H5P_DEFAULT) >= 0);
    hid_t type = H5Tcopy(H5T_IEEE_F64LE);
    hsize_t n = 8;
    hid_t space = H5Screate_simple(1, &n, NULL);
    assert_true(type >= 0 && H5Tset_size(type, 64) >= 0 && space >= 0);
    hid_t d = H5Dcreate2(h, "/params/model.norm.weight", type, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    assert_true(d >= 0);
    uint64_t any_sum = 0; /* present, as in a sound file: the width is refused before values */
    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t sum = H5Acreate2(d, "checksum", H5T_STD_U64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(sum >= 0 && H5Awrite(sum, H5T_NATIVE_UINT64, &any_sum) >= 0);
    H5Aclose(sum), H5Sclose(scalar);
    H5Dclose(d), H5Sclose(space), H5Tclose(type), H5Fclose(h);
    const char *n_wide[] = {"/params/model.norm.weight does not hold floating-point numbers of 2, "
                            "4 or 8 bytes",
                            NULL};
    expect_refusal(wide, &m, KSA_EFORMAT, n_wide);
    ksa_model_free(&mc);
    ksa_model_free(&m);
}

/* Without list_all the report is one line per kind: its count and the first three names. */
static void the_default_report_counts_each_kind_with_a_few_names(void **state)
{
    (void)state;
    ksa_model mc, mk;
    const char *path = in_dir("causal_summary.h5");
    make_causal_file(path, &mc, cfg_causal, 3);
    ksa_model_config ck;
    configure(&ck, cfg_ksa_full_window);
    init_model(&mk, &ck, 4);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &mk, KSA_INIT_SUMMARY_COPY, 7, r.f, 0));
    report_close(&r);
    /* header, loaded, copies, drawn, counts */
    assert_int_equal(count_in(r.text, "\n"), 5);
    assert_int_equal(count_in(r.text, ": loaded\n"), 0);
    char line[256];
    snprintf(line, sizeof line, "%zu: %s, ", mc.params.n, mc.params.table[0].name);
    expect_in(r.text, line);
    /* 2 summary layers x 6 copied parameters, named with their sources */
    expect_in(r.text, "created: copies of loaded parameters");
    expect_in(r.text, "  12: model.layers.0.");
    expect_in(r.text, "_summary.weight <- model.layers.0.");
    assert_int_equal(count_in(r.text, " <- "), 3);
    expect_in(r.text, "created: drawn from N(0, 0.02^2)");
    expect_in(r.text, "   1: summary_embedding.weight\n");
    snprintf(line, sizeof line, ": %zu loaded, 13 created, 0 kept, 0 ignored\n", mc.params.n);
    expect_in(r.text, line);
    free(r.text);
    ksa_model_free(&mc);
    ksa_model_free(&mk);
}

/* Datasets that the file's /config does not declare are never loaded, only reported. */
static void undeclared_datasets_are_ignored_and_reported(void **state)
{
    (void)state;
    ksa_model_config c;
    configure(&c, cfg_causal);
    ksa_model mc, m;
    init_perturbed(&mc, &c, 28);
    const char *path = in_dir("extra.h5");
    write_model(path, &mc);
    hid_t h = open_rw(path);
    add_float_dataset(h, "/params/extra.weight", 5);
    H5Fclose(h);
    init_model(&m, &c, 29);
    report r;
    report_open(&r);
    expect_ok(ksa_ckpt_init_from(path, &m, KSA_INIT_SUMMARY_COPY, 7, r.f, 1));
    report_close(&r);
    assert_memory_equal(m.params.data, mc.params.data, m.params.numel * sizeof(ksa_real));
    expect_in(r.text, "  extra.weight: ignored; not declared by the checkpoint's /config\n");
    char counts[256];
    snprintf(counts, sizeof counts, ": %zu loaded, 0 created, 0 kept, 1 ignored\n", m.params.n);
    expect_in(r.text, counts);
    free(r.text);
    ksa_model_free(&mc);
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_configuration_reloads_every_parameter_exactly),
        cmocka_unit_test(causal_checkpoint_into_ksa_copies_shared_weights_and_keeps_the_loss),
        cmocka_unit_test(scratch_keeps_from_scratch_summary_weights_and_the_loss),
        cmocka_unit_test(small_windows_let_summaries_change_the_loss),
        cmocka_unit_test(summary_embedding_is_normal_with_std_002_and_follows_the_seed),
        cmocka_unit_test(ksa_checkpoint_into_a_causal_model_ignores_summary_parameters),
        cmocka_unit_test(tied_checkpoint_into_an_untied_model_copies_the_embedding),
        cmocka_unit_test(untied_checkpoint_into_a_tied_model_ignores_lm_head),
        cmocka_unit_test(shape_changes_are_refused_naming_parameter_shapes_and_key),
        cmocka_unit_test(a_different_summary_token_num_is_refused),
        cmocka_unit_test(bad_files_are_refused_clearly_and_leave_the_model_untouched),
        cmocka_unit_test(undeclared_datasets_are_ignored_and_reported),
        cmocka_unit_test(the_default_report_counts_each_kind_with_a_few_names),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
