/* test_config.c - configuration keys, files, the pattern language, validation, layouts. */
#include "testutil.h"

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/config.h"

static void patterns_expand_as_in_the_spec(void **state)
{
    (void)state;
    long v[KSA_MAX_LAYERS];
    size_t n;
    assert_int_equal(ksa_pattern_expand("([128]*3+[1024]*1)*6", v, KSA_MAX_LAYERS, &n), KSA_OK);
    assert_int_equal(n, 24);
    for (size_t i = 0; i < 24; i++)
        assert_int_equal(v[i], i % 4 == 3 ? 1024 : 128);
    assert_int_equal(ksa_pattern_expand(" [1, 2 ,3] ", v, KSA_MAX_LAYERS, &n), KSA_OK);
    assert_int_equal(n, 3);
    assert_int_equal(v[2], 3);
    assert_int_equal(ksa_pattern_expand("2*[5]+[1]*2", v, KSA_MAX_LAYERS, &n), KSA_OK);
    assert_int_equal(n, 4);
    assert_true(v[0] == 5 && v[1] == 5 && v[2] == 1 && v[3] == 1);
    assert_int_equal(ksa_pattern_expand("([1]*3+[0]*1)*2", v, KSA_MAX_LAYERS, &n), KSA_OK);
    assert_int_equal(n, 8);
    assert_true(v[3] == 0 && v[4] == 1 && v[7] == 0);
    assert_int_equal(ksa_pattern_expand("7", v, KSA_MAX_LAYERS, &n), KSA_OK);
    assert_true(n == 1 && v[0] == 7);
}

static void bad_patterns_are_refused_with_the_position(void **state)
{
    (void)state;
    long v[KSA_MAX_LAYERS];
    size_t n;
    const char *bad[] = {"",     "[",       "[1,]", "[1]*",  "([1]",      "[1]+",
                         "[-1]", "[1] [2]", "abc",  "[1]*0", "[1]*100000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ksa_pattern_expand(bad[i], v, KSA_MAX_LAYERS, &n), KSA_EINVAL);
        assert_non_null(strstr(ksa_last_error(), "pattern '"));
    }
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/ksa_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void files_set_keys_with_comments_quotes_and_precedence(void **state)
{
    (void)state;
    char *path = write_temp("# a comment\n"
                            "hidden_size = 128   # trailing comment\n"
                            "\n"
                            "num_hidden_layers=8\n"
                            "use_summary_attention = true\n"
                            "summary_chunk_size = 8\nsummary_token_num = 1\n"
                            "summary_independent_parameters = 1\n"
                            "summary_sliding_chunk_num = \"([16]*3+[64]*1)*2\"\n"
                            "summary_layer_freq = '([1]*3+[0]*1)*2'\n"
                            "rope_theta = 1e6\n");
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    assert_int_equal(c.hidden_size, 256);
    assert_int_equal(ksa_model_config_load(&c, path), KSA_OK);
    assert_int_equal(c.hidden_size, 128);
    assert_string_equal(c.summary_sliding_chunk_num, "([16]*3+[64]*1)*2"); /* bare pattern */
    assert_true(c.rope_theta == 1e6);
    /* the command line wins over the file */
    assert_int_equal(ksa_model_config_set(&c, "hidden_size", "64", "command line"), KSA_OK);
    assert_int_equal(c.hidden_size, 64);
    ksa_model_layout l;
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    assert_true(l.ksa && l.C == 8 && l.S == 1 && l.independent_embedding && l.independent_qkv);
    int kinds[8] = {1, 1, 1, 0, 1, 1, 1, 0};
    size_t windows[8] = {16, 16, 16, 64, 16, 16, 16, 64};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(l.is_summary[i], kinds[i]);
        assert_int_equal(l.window[i], windows[i]);
    }
    unlink(path);
    free(path);
}

static void integer_layer_freq_has_the_reference_code_meaning(void **state)
{
    (void)state;
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    ksa_model_config_set(&c, "num_hidden_layers", "6", "t");
    ksa_model_config_set(&c, "use_summary_attention", "true", "t");
    ksa_model_config_set(&c, "summary_chunk_size", "4", "t");
    ksa_model_config_set(&c, "summary_token_num", "2", "t");
    ksa_model_config_set(&c, "summary_independent_parameters", "true", "t");
    ksa_model_config_set(&c, "summary_layer_freq", "4", "t");
    ksa_model_layout l;
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    int kinds[6] = {1, 0, 0, 0, 1, 0}; /* layer i is a summary layer iff i mod 4 == 0 */
    for (int i = 0; i < 6; i++)
        assert_int_equal(l.is_summary[i], kinds[i]);
    ksa_model_config_set(&c, "summary_layer_freq", "0", "t");
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(l.is_summary[i], 1);
}

static void expect_set_error(const char *key, const char *value, const char *needle)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    assert_int_equal(ksa_model_config_set(&c, key, value, "cfg:3"), KSA_EINVAL);
    if (!strstr(ksa_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", ksa_last_error(), needle);
}

static void bad_values_and_unknown_keys_are_named(void **state)
{
    (void)state;
    expect_set_error("hidden_sise", "3", "cfg:3: unknown configuration key 'hidden_sise'");
    expect_set_error("hidden_size", "12x", "hidden_size = '12x' is not an integer");
    expect_set_error("hidden_size", "-4", "must not be negative");
    expect_set_error("rope_theta", "inf", "not a finite number");
    expect_set_error("tie_word_embeddings", "yes", "not a boolean");
    expect_set_error("summary_token_position_ids_type", "middle", "expected zeros");
    expect_set_error("summary_sliding_chunk_num", "[1,2", "summary_sliding_chunk_num");
    expect_set_error("summary_mix_qkv", "maybe", "not a boolean");
    expect_set_error("summary_mix_start_iter", "-3", "must not be negative");
    expect_set_error("summary_mix_end_iter", "3.5",
                     "summary_mix_end_iter = '3.5' is not an integer");
}

static void expect_resolve_error(const char *const *kv, size_t n, const char *needle)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    for (size_t i = 0; i < n; i += 2)
        assert_int_equal(ksa_model_config_set(&c, kv[i], kv[i + 1], "t"), KSA_OK);
    ksa_model_layout l;
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_EINVAL);
    if (!strstr(ksa_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", ksa_last_error(), needle);
}

#define KSA_ON "use_summary_attention", "true", "summary_chunk_size", "4", "summary_token_num", "1"

static void invalid_configurations_are_refused(void **state)
{
    (void)state;
    const char *heads[] = {"num_attention_heads", "6", "num_key_value_heads", "4"};
    expect_resolve_error(heads, 4, "not divisible by num_key_value_heads");
    const char *odd[] = {"head_dim", "7"};
    expect_resolve_error(odd, 2, "head_dim = 7 must be even");
    const char *zero[] = {"hidden_size", "0"};
    expect_resolve_error(zero, 2, "hidden_size must be at least 1");
    const char *len[] = {KSA_ON, "summary_independent_parameters", "true",
                         "summary_sliding_chunk_num", "[1,2,3]"};
    expect_resolve_error(len, 10, "gives 3 values, num_hidden_layers is 4");
    const char *freq[] = {KSA_ON, "summary_independent_parameters", "true", "summary_layer_freq",
                          "[1,2,1,1]"};
    expect_resolve_error(freq, 10, "entry 1 is 2");
    const char *begin[] = {KSA_ON};
    expect_resolve_error(begin, 6, "summary_token_begin must be set");
    const char *over[] = {KSA_ON, "summary_token_begin", "257"};
    expect_resolve_error(over, 8, "exceeds vocab_size = 257");
    const char *mix_shared[] = {KSA_ON, "summary_token_begin", "250", "summary_mix_qkv", "true"};
    expect_resolve_error(mix_shared, 10, "summary_mix_qkv = true needs summary_independent_qkv");
}

/* KSA_SPEC §5.5: e = max(start + 1, end); m = 1 up to start, 0 from e on, linear between;
 * 1 whatever the step without the switch. The spec's test vector and the edges. */
static void annealing_coefficient_follows_the_spec(void **state)
{
    (void)state;
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    assert_true(ksa_summary_mix_coeff(&c, 1) == 1); /* switch off: always 1 */
    ksa_model_config_set(&c, "summary_mix_start_iter", "100", "t");
    ksa_model_config_set(&c, "summary_mix_end_iter", "300", "t");
    assert_true(ksa_summary_mix_coeff(&c, 200) == 1);
    ksa_model_config_set(&c, "summary_mix_qkv", "true", "t");
    assert_true(ksa_summary_mix_coeff(&c, 100) == 1); /* the test vector */
    assert_true(ksa_summary_mix_coeff(&c, 200) == 0.5);
    assert_true(ksa_summary_mix_coeff(&c, 300) == 0);
    assert_true(ksa_summary_mix_coeff(&c, 0) == 1); /* before, and after the window */
    assert_true(ksa_summary_mix_coeff(&c, 1) == 1);
    assert_true(ksa_summary_mix_coeff(&c, 101) == 1 - 1.0 / 200);
    assert_true(fabs(ksa_summary_mix_coeff(&c, 299) - 1.0 / 200) < 1e-15);
    assert_true(ksa_summary_mix_coeff(&c, 301) == 0);
    assert_true(ksa_summary_mix_coeff(&c, 100000) == 0);
    /* end <= start: e = start + 1, a step from 1 to 0 right after start */
    ksa_model_config_set(&c, "summary_mix_end_iter", "40", "t");
    assert_true(ksa_summary_mix_coeff(&c, 100) == 1);
    assert_true(ksa_summary_mix_coeff(&c, 101) == 0);
    ksa_model_config_set(&c, "summary_mix_end_iter", "100", "t");
    assert_true(ksa_summary_mix_coeff(&c, 100) == 1);
    assert_true(ksa_summary_mix_coeff(&c, 101) == 0);
    /* start = end = 0 (the defaults): the shared projections from the first step on */
    ksa_model_config_set(&c, "summary_mix_start_iter", "0", "t");
    ksa_model_config_set(&c, "summary_mix_end_iter", "0", "t");
    assert_true(ksa_summary_mix_coeff(&c, 0) == 1);
    assert_true(ksa_summary_mix_coeff(&c, 1) == 0);
    /* start 0, end 4: the first step of a fresh run (it = 1) already blends */
    ksa_model_config_set(&c, "summary_mix_end_iter", "4", "t");
    assert_true(ksa_summary_mix_coeff(&c, 1) == 0.75);
    assert_true(ksa_summary_mix_coeff(&c, 4) == 0);
}

/* The attention variants: a token sliding window for causal layers (SWA) and summary layers
 * without summary tokens (SCA), their layouts and their misuse. */
static void attention_variants_resolve_and_print_their_kinds(void **state)
{
    (void)state;
    ksa_model_config c;
    ksa_model_layout l;
    char out[512];
    ksa_model_config_defaults(&c);
    ksa_model_config_set(&c, "layer_sliding_window", "64", "t");
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    assert_false(l.ksa);
    assert_int_equal(l.sliding_window, 64);
    FILE *f = fmemopen(out, sizeof out, "w");
    ksa_model_layout_print(&l, f);
    fclose(f);
    assert_string_equal(out, "layers 0-3: causal, window 64 tokens (summary attention off)\n");

    ksa_model_config_set(&c, "use_summary_attention", "true", "t");
    ksa_model_config_set(&c, "sliding_chunk_attention", "true", "t");
    ksa_model_config_set(&c, "summary_chunk_size", "8", "t");
    ksa_model_config_set(&c, "summary_sliding_chunk_num", "16", "t");
    ksa_model_config_set(&c, "summary_layer_freq", "([1]*3+[0])", "t");
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    assert_true(l.ksa && l.sca);
    assert_int_equal(l.S, 0);
    assert_false(l.independent_embedding || l.independent_qkv || l.independent_norm);
    f = fmemopen(out, sizeof out, "w");
    ksa_model_layout_print(&l, f);
    fclose(f);
    assert_string_equal(out, "layers 0-2: sliding-chunk W=16\nlayer 3: causal, window 64 tokens\n");
    /* no summary tokens means no summary parameters: summary_token_begin is not needed */
    ksa_model_config_set(&c, "summary_independent_parameters", "false", "t");
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);

    const char *with_tokens[] = {KSA_ON, "sliding_chunk_attention", "true"};
    expect_resolve_error(with_tokens, 8, "summary_token_num must be 0, got 1");
    const char *off[] = {"sliding_chunk_attention", "true"};
    expect_resolve_error(off, 2, "sliding_chunk_attention needs use_summary_attention");
    const char *no_chunk[] = {"use_summary_attention", "true", "sliding_chunk_attention", "true"};
    expect_resolve_error(no_chunk, 4, "summary_chunk_size >= 1");
}

static void summary_keys_are_ignored_without_summary_attention(void **state)
{
    (void)state;
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    ksa_model_config_set(&c, "summary_chunk_size", "4", "t");
    ksa_model_config_set(&c, "summary_token_num", "1", "t");
    ksa_model_config_set(&c, "summary_sliding_chunk_num", "[1,2,3]", "t"); /* wrong length */
    ksa_model_layout l;
    assert_int_equal(ksa_model_config_resolve(&c, &l), KSA_OK);
    assert_false(l.ksa);
}

static void written_configuration_loads_back_identically(void **state)
{
    (void)state;
    ksa_model_config a, b;
    ksa_model_config_defaults(&a);
    ksa_model_config_set(&a, "summary_sliding_chunk_num", "([3]*2+[9])*2", "t");
    ksa_model_config_set(&a, "rms_norm_eps", "1e-5", "t");
    ksa_model_config_set(&a, "summary_token_begin", "250", "t");
    ksa_model_config_set(&a, "summary_mix_qkv", "true", "t");
    ksa_model_config_set(&a, "summary_mix_start_iter", "7", "t");
    ksa_model_config_set(&a, "summary_mix_end_iter", "19", "t");
    char *path = write_temp("");
    FILE *f = fopen(path, "w");
    ksa_model_config_write(&a, f);
    fclose(f);
    ksa_model_config_defaults(&b);
    assert_int_equal(ksa_model_config_load(&b, path), KSA_OK);
    assert_memory_equal(&a, &b, sizeof a);
    unlink(path);
    free(path);
}

static void file_errors_name_the_line(void **state)
{
    (void)state;
    char *path = write_temp("hidden_size = 64\nthis line has no equals sign\n");
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    assert_int_equal(ksa_model_config_load(&c, path), KSA_EFORMAT);
    assert_non_null(strstr(ksa_last_error(), ":2: expected 'key = value'"));
    unlink(path);
    free(path);
    path = write_temp("\n\nnum_layers = 4\n");
    assert_int_equal(ksa_model_config_load(&c, path), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), ":3: unknown configuration key 'num_layers'"));
    unlink(path);
    free(path);
    assert_int_equal(ksa_model_config_load(&c, "/nonexistent/x.conf"), KSA_EIO);
    assert_non_null(strstr(ksa_last_error(), "cannot open configuration '/nonexistent/x.conf'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(patterns_expand_as_in_the_spec),
        cmocka_unit_test(bad_patterns_are_refused_with_the_position),
        cmocka_unit_test(files_set_keys_with_comments_quotes_and_precedence),
        cmocka_unit_test(integer_layer_freq_has_the_reference_code_meaning),
        cmocka_unit_test(bad_values_and_unknown_keys_are_named),
        cmocka_unit_test(invalid_configurations_are_refused),
        cmocka_unit_test(annealing_coefficient_follows_the_spec),
        cmocka_unit_test(attention_variants_resolve_and_print_their_kinds),
        cmocka_unit_test(summary_keys_are_ignored_without_summary_attention),
        cmocka_unit_test(written_configuration_loads_back_identically),
        cmocka_unit_test(file_errors_name_the_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
