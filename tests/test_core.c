/* test_core.c - arena, tensor views, parameter table, status messages, asserts. */
#include "testutil.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/blas.h"
#include "autograd/params.h"
#include "autograd/tape.h"
#include "core/rng.h"
#include "core/settings.h"

static void arena_hands_out_aligned_memory_and_resets(void **state)
{
    (void)state;
    ksa_arena a;
    ksa_arena_init(&a, 1000);
    void *p = ksa_arena_alloc(&a, 3), *q = ksa_arena_alloc(&a, 65);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_int_equal((uintptr_t)q % 64, 0);
    assert_int_equal(a.used, 64 + 128);
    ksa_real *z = ksa_arena_zeros(&a, 10);
    for (int i = 0; i < 10; i++)
        assert_true(z[i] == 0);
    size_t peak = a.peak;
    ksa_arena_reset(&a);
    assert_int_equal(a.used, 0);
    assert_int_equal(a.peak, peak);
    assert_ptr_equal(ksa_arena_alloc(&a, 1), p); /* reset reuses the same memory */
    ksa_arena_free(&a);
}

/* The VMA of /proc/self/smaps holding p says THPeligible: 1 (huge pages allowed there). */
static int huge_pages_eligible(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    int inside = 0, eligible = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && sscanf(line, "THPeligible: %d", &eligible) == 1)
            break;
    }
    fclose(f);
    return eligible == 1;
}

static void regions_are_aligned_zeroed_and_marked_for_huge_pages(void **state)
{
    (void)state;
    size_t bytes = 5 * (1 << 20) + 12345;
    unsigned char *p = ksa_alloc_region(bytes);
    assert_int_equal((uintptr_t)p % (2 << 20), 0);
    for (size_t i = 0; i < bytes; i += 4096)
        assert_int_equal(p[i], 0);
    memset(p, 7, bytes); /* writable to the end */
    char thp[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f) {
        if (!fgets(thp, sizeof thp, f))
            thp[0] = 0;
        fclose(f);
    }
    if (thp[0] && !strstr(thp, "[never]")) /* this kernel has huge pages: the hint took */
        assert_true(huge_pages_eligible(p));
    ksa_free_region(p, bytes);
}

static void zeroing_on_all_threads_clears_exactly_the_bytes_asked(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 1000, 4 << 20, (9 << 20) + 77}; /* serial and parallel paths */
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *buf = malloc(n + 128);
        memset(buf, 0xAB, n + 128);
        ksa_zero(buf + 64, n);
        for (size_t i = 0; i < 64; i++)
            assert_int_equal(buf[i], 0xAB);
        for (size_t i = 0; i < n; i++)
            if (buf[64 + i] != 0)
                fail_msg("byte %zu of %zu not zeroed", i, n);
        for (size_t i = 0; i < 64; i++)
            assert_int_equal(buf[64 + n + i], 0xAB);
        free(buf);
    }
}

static void overflow_child(const void *arg)
{
    (void)arg;
    ksa_arena a;
    ksa_arena_init(&a, 256);
    ksa_arena_alloc(&a, 200);
    ksa_arena_alloc(&a, 100);
}

static void arena_overflow_aborts_with_the_sizes(void **state)
{
    (void)state;
    test_expect_abort(overflow_child, NULL, "arena overflow: asked 100 bytes, 256 used of 256");
}

static void tape_full_child(const void *arg)
{
    (void)arg;
    ksa_arena a;
    ksa_arena_init(&a, 4096);
    ksa_tape tp;
    ksa_tape_init(&tp, &a, 1);
    ksa_tensor *x = ksa_tensor_1d(&a, 4), *y = ksa_tensor_1d(&a, 4);
    x->requires_grad = 1;
    ksa_tape_record(&tp, NULL, "add", y, 1, &x, 0);
    ksa_tape_record(&tp, NULL, "linear", y, 1, &x, 0);
}

static void a_full_tape_aborts_naming_the_op(void **state)
{
    (void)state;
    test_expect_abort(tape_full_child, NULL, "tape full: 1 nodes (recording linear)");
}

static void views_share_data_and_resolve_gradients_through_the_base(void **state)
{
    (void)state;
    ksa_arena a;
    ksa_arena_init(&a, 1 << 12);
    ksa_tensor *x = ksa_tensor_3d(&a, 4, 3, 2);
    assert_int_equal(x->numel, 24);
    assert_int_equal(ksa_rows(x), 12);
    assert_int_equal(ksa_cols(x), 2);
    x->requires_grad = 1;
    ksa_tensor *v = ksa_tensor_rows(&a, x, 1, 2);
    assert_ptr_equal(v->data, x->data + 6);
    assert_int_equal(v->numel, 12);
    size_t shape[2] = {2, 6};
    ksa_tensor *r = ksa_tensor_reshape(&a, v, 2, shape);
    assert_null(ksa_tensor_grad_if_any(r));
    ksa_real *gr = ksa_tensor_grad(&a, r); /* creates the base's gradient */
    assert_non_null(x->grad);
    assert_ptr_equal(gr, x->grad + 6);
    assert_ptr_equal(ksa_tensor_grad_if_any(v), x->grad + 6);
    ksa_tensor *c = ksa_tensor_2d(&a, 2, 2);
    assert_null(ksa_tensor_grad(&a, c)); /* needs no gradient: none is created */
    ksa_arena_free(&a);
}

static void parameters_are_aligned_named_and_counted(void **state)
{
    (void)state;
    ksa_params p;
    ksa_params_init(&p);
    size_t a = ksa_params_add(&p, "a.weight", 2, 3, 5);
    size_t b = ksa_params_add(&p, "b.weight", 1, 7, 0);
    size_t c = ksa_params_add(&p, "c.weight", 2, 16, 16);
    ksa_params_alloc(&p);
    assert_int_equal(ksa_params_find(&p, "b.weight"), (long)b);
    assert_int_equal(ksa_params_find(&p, "missing"), -1);
    assert_int_equal(ksa_params_count(&p), 15 + 7 + 256);
    for (size_t i = 0; i < p.n; i++) {
        ksa_tensor *t = ksa_params_tensor(&p, i);
        assert_int_equal((uintptr_t)t->data % 64, 0);
        assert_ptr_equal(t->grad - p.grad, t->data - p.data);
        assert_true(t->requires_grad);
    }
    assert_int_equal(ksa_params_tensor(&p, a)->shape[1], 5);
    assert_int_equal(ksa_params_tensor(&p, c)->numel, 256);
    assert_true(p.table[c].offset >= p.table[b].offset + 7);
    ksa_params_free(&p);
}

static ksa_status failing_io(void)
{
    return ksa_fail(KSA_EIO, "cannot open '%s': %s", "x.bin", "No such file or directory");
}

static ksa_status tries(void)
{
    KSA_TRY(failing_io());
    return KSA_OK;
}

static void failures_carry_their_message(void **state)
{
    (void)state;
    assert_int_equal(tries(), KSA_EIO);
    assert_string_equal(ksa_last_error(), "cannot open 'x.bin': No such file or directory");
    assert_string_equal(ksa_status_name(KSA_EIO), "i/o error");
}

/* The shortest of %.15g, %.16g, %.17g that reads back exactly. */
static void doubles_print_in_the_shortest_exact_form(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(ksa_format_double(buf, 3e-4), "0.0003");
    assert_string_equal(ksa_format_double(buf, 1e-6), "1e-06");
    assert_string_equal(ksa_format_double(buf, 0.1 + 0.2), "0.30000000000000004");
    double hard[] = {1.0 / 3, 2.0 / 3, 4e-7 * 3, 5.0514227253425075, 1e308, -0.0};
    for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++)
        assert_true(strtod(ksa_format_double(buf, hard[i]), NULL) == hard[i]);
}

/* splitmix64: the published first outputs from state 0, and draws in their ranges. */
static void the_rng_is_splitmix64(void **state)
{
    (void)state;
    ksa_rng r = ksa_rng_at(0);
    assert_true(ksa_rng_next(&r) == 0xE220A8397B1DCDAFull);
    assert_true(ksa_rng_next(&r) == 0x6E789E6AA1B965F4ull);
    assert_true(ksa_rng_next(&r) == 0x06C45D188009454Full);
    r = ksa_rng_at(12345);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 20000; i++) {
        double u = ksa_rng_uniform(&r), o = ksa_rng_uniform_open(&r), z = ksa_rng_normal(&r);
        assert_true(u >= 0 && u < 1 && o > 0 && o < 1);
        sum += z, sum2 += z * z;
    }
    assert_true(fabs(sum / 20000) < 0.03 && fabs(sum2 / 20000 - 1) < 0.05);
    assert_true(ksa_hash_string("") == 0xCBF29CE484222325ull); /* FNV-1a offset basis */
    assert_true(ksa_hash_string("a") == 0xAF63DC4C8601EC8Cull);
}

typedef struct {
    long steps, flag;
    double lr;
    char name[16];
} demo_settings;

static const ksa_config_key demo_keys[] = {
    KSA_KEY(demo_settings, steps, KSA_KEY_INT, "10", "steps"),
    KSA_KEY(demo_settings, flag, KSA_KEY_BOOL, "false", "a flag"),
    KSA_KEY(demo_settings, lr, KSA_KEY_FLOAT, "3e-4", "rate"),
    KSA_KEY(demo_settings, name, KSA_KEY_STRING, "x", "a name"),
};

/* A table parses by kind, refuses bad values naming them, and writes itself back. */
static void settings_tables_parse_and_write(void **state)
{
    (void)state;
    demo_settings d = {0};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ksa_config_key_set(&demo_keys[i], &d, demo_keys[i].default_value, "t"),
                         KSA_OK);
    assert_int_equal(ksa_config_key_set(&demo_keys[1], &d, " 'true' ", "t"), KSA_OK);
    assert_int_equal(d.flag, 1);
    assert_ptr_equal(ksa_config_key_find(demo_keys, 4, "lr"), &demo_keys[2]);
    assert_null(ksa_config_key_find(demo_keys, 4, "nope"));
    assert_int_equal(ksa_config_key_set(&demo_keys[0], &d, "-3", "f.conf:2"), KSA_EINVAL);
    assert_string_equal(ksa_last_error(), "f.conf:2: steps = -3 must not be negative");
    assert_int_equal(ksa_config_key_set(&demo_keys[3], &d, "0123456789abcdef", "cli"),
                     KSA_EINVAL); /* 16 characters do not fit name[16] */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ksa_config_keys_write(demo_keys, 4, &d, f);
    fclose(f);
    assert_string_equal(buf, "steps = 10\nflag = true\nlr = 0.0003\nname = x\n");
    free(buf);
}

/* What ksa_config_keys_write writes reads back as it was: text with blanks at its ends or
 * quotes around it is written quoted, and long STRING fields whole (found by
 * tests/fuzz/fuzz_config.c: `data = " x "` came back as " x", and fields of more than
 * KSA_CONFIG_STR + 63 characters were cut). */
typedef struct {
    char a[16], b[16], c[16], d[16], path[1024];
} text_settings;

static void written_text_reads_back_as_it_was(void **state)
{
    (void)state;
    static const ksa_config_key keys[] = {
        KSA_KEY(text_settings, a, KSA_KEY_STRING, "", ""),
        KSA_KEY(text_settings, b, KSA_KEY_STRING, "", ""),
        KSA_KEY(text_settings, c, KSA_KEY_STRING, "", ""),
        KSA_KEY(text_settings, d, KSA_KEY_STRING, "", ""),
        KSA_KEY(text_settings, path, KSA_KEY_STRING, "", ""),
    };
    enum { N = sizeof keys / sizeof keys[0] };
    text_settings t = {.a = " x ", .b = "'y'", .c = "\"z", .d = "plain"};
    memset(t.path, 'p', 700);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ksa_config_keys_write(keys, N, &t, f);
    fclose(f);
    char *line = buf;
    text_settings back;
    memset(&back, 0, sizeof back);
    for (size_t i = 0; i < N; i++) { /* "name = value\n", as ksa_config_file_read splits it */
        char *eq = strchr(line, '='), *nl = strchr(line, '\n');
        assert_non_null(eq);
        assert_non_null(nl);
        *nl = '\0';
        assert_int_equal(ksa_config_key_set(&keys[i], &back, eq + 1, "t"), KSA_OK);
        line = nl + 1;
    }
    assert_string_equal(back.a, " x ");
    assert_string_equal(back.b, "'y'");
    assert_string_equal(back.c, "\"z");
    assert_string_equal(back.d, "plain");
    assert_string_equal(back.path, t.path);
    free(buf);
}

/* Edit distance counts insertions, deletions, substitutions and neighbour swaps; '-' == '_'. */
static void edit_distance_and_suggestions_find_the_nearest_names(void **state)
{
    (void)state;
    assert_int_equal(ksa_edit_distance("seq-len", "seq_len"), 0);
    assert_int_equal(ksa_edit_distance("hidden_sise", "hidden_size"), 1);
    assert_int_equal(ksa_edit_distance("lr_schdeule", "lr_schedule"), 1); /* a swap */
    assert_int_equal(ksa_edit_distance("", "abc"), 3);
    assert_int_equal(ksa_edit_distance("kitten", "sitting"), 3);
    static const char *const known[] = {"seq_len", "seed", "steps", "beta1", "beta2", "lr"};
    char buf[256];
    ksa_suggest s;
    ksa_suggest_init(&s, "seq"); /* a prefix of seq_len counts as distance 1 */
    for (size_t i = 0; i < 6; i++)
        ksa_suggest_add(&s, known[i]);
    assert_string_equal(ksa_suggest_text(&s, 1, buf, sizeof buf), " (did you mean --seq-len?)");
    ksa_suggest_init(&s, "beta3"); /* two at distance 1 */
    for (size_t i = 0; i < 6; i++)
        ksa_suggest_add(&s, known[i]);
    assert_string_equal(ksa_suggest_text(&s, 0, buf, sizeof buf),
                        " (did you mean 'beta1' or 'beta2'?)");
    ksa_suggest_init(&s, "xyzzy"); /* nothing near */
    for (size_t i = 0; i < 6; i++)
        ksa_suggest_add(&s, known[i]);
    assert_string_equal(ksa_suggest_text(&s, 1, buf, sizeof buf), "");
}

/* The OpenMP build of OpenBLAS is linked: one thread pool (DESIGN.md §4). */
static void openblas_is_the_openmp_build(void **state)
{
    (void)state;
    assert_true(ksa_blas_uses_openmp());
}

/* Nothing is recorded when no input wants a gradient; otherwise one node with a zeroed
 * context of the asked size. */
static void ops_record_only_what_needs_a_gradient(void **state)
{
    (void)state;
    ksa_arena a;
    ksa_arena_init(&a, 1 << 12);
    ksa_tape tp;
    ksa_tape_init(&tp, &a, 4);
    ksa_tensor *x = ksa_tensor_1d(&a, 4), *y = ksa_tensor_1d(&a, 4);
    assert_null(ksa_tape_record(&tp, NULL, "add", y, 1, &x, 8));
    assert_int_equal(tp.n, 0);
    assert_int_equal(y->requires_grad, 0);
    x->requires_grad = 1;
    tp.recording = 0; /* no-grad mode */
    assert_null(ksa_tape_record(&tp, NULL, "add", y, 1, &x, 8));
    tp.recording = 1;
    ksa_node *nd = ksa_tape_record(&tp, NULL, "add", y, 1, &x, 24);
    assert_non_null(nd);
    assert_int_equal(tp.n, 1);
    assert_int_equal(y->requires_grad, 1);
    assert_ptr_equal(nd->in[0], x);
    assert_null(nd->in[1]);
    assert_string_equal(nd->op, "add");
    for (size_t i = 0; i < 24; i++)
        assert_int_equal(((unsigned char *)nd->ctx)[i], 0);
    ksa_tape_free(&tp);
    ksa_arena_free(&a);
}

static void twin_child(const void *arg)
{
    (void)arg;
    ksa_params p;
    ksa_params_init(&p);
    size_t a = ksa_params_add(&p, "a.weight", 2, 2, 3);
    size_t b = ksa_params_add(&p, "a_summary.weight", 2, 2, 3);
    ksa_params_set_role(&p, b, KSA_ROLE_LINEAR, 1, (long)a);
    size_t c = ksa_params_add(&p, "b_summary.weight", 2, 2, 3);
    ksa_params_set_role(&p, c, KSA_ROLE_LINEAR, 1, (long)b); /* a summary twin: a bug */
}

/* Roles default by rank; a summary parameter's twin must be an earlier shared one. */
static void parameters_carry_a_role_and_a_twin(void **state)
{
    (void)state;
    ksa_params p;
    ksa_params_init(&p);
    size_t w = ksa_params_add(&p, "w", 2, 4, 3), g = ksa_params_add(&p, "g", 1, 4, 0);
    assert_int_equal(p.table[w].role, KSA_ROLE_LINEAR);
    assert_int_equal(p.table[g].role, KSA_ROLE_NORM);
    assert_int_equal(p.table[w].twin, -1);
    assert_int_equal(p.table[w].summary, 0);
    ksa_params_free(&p);
    test_expect_abort(twin_child, NULL, "twin 1 must be an earlier shared parameter");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_hands_out_aligned_memory_and_resets),
        cmocka_unit_test(regions_are_aligned_zeroed_and_marked_for_huge_pages),
        cmocka_unit_test(zeroing_on_all_threads_clears_exactly_the_bytes_asked),
        cmocka_unit_test(arena_overflow_aborts_with_the_sizes),
        cmocka_unit_test(a_full_tape_aborts_naming_the_op),
        cmocka_unit_test(views_share_data_and_resolve_gradients_through_the_base),
        cmocka_unit_test(parameters_are_aligned_named_and_counted),
        cmocka_unit_test(failures_carry_their_message),
        cmocka_unit_test(doubles_print_in_the_shortest_exact_form),
        cmocka_unit_test(the_rng_is_splitmix64),
        cmocka_unit_test(settings_tables_parse_and_write),
        cmocka_unit_test(written_text_reads_back_as_it_was),
        cmocka_unit_test(edit_distance_and_suggestions_find_the_nearest_names),
        cmocka_unit_test(openblas_is_the_openmp_build),
        cmocka_unit_test(ops_record_only_what_needs_a_gradient),
        cmocka_unit_test(parameters_carry_a_role_and_a_twin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
