/* test_mixture.c - mixture list files: both line forms, comments, path resolution against
 * the list's folder, optional .bin, and every malformed line named by its number.        */
#include "datautil.h"

#include "data/mixture.h"

/* dir/data/{a,b,c}.bin and dir/lists/ */
static void make_layout(const char *dir)
{
    char p[DT_PATH_MAX];
    assert_int_equal(mkdir(dt_join(p, dir, "data"), 0700), 0);
    assert_int_equal(mkdir(dt_join(p, dir, "lists"), 0700), 0);
    uint32_t ids[4] = {1, 2, 3, 4};
    dt_write_tokens(dt_join(p, dir, "data/a.bin"), ids, 4, 2, "uint16");
    dt_write_tokens(dt_join(p, dir, "data/b.bin"), ids, 4, 2, "uint16");
    dt_write_tokens(dt_join(p, dir, "data/c.tok"), ids, 4, 2, "uint16");
}

static void both_line_forms_comments_and_relative_paths_are_understood(void **state)
{
    const char *dir = *state;
    char list[DT_PATH_MAX], text[4 * DT_PATH_MAX], abs_b[DT_PATH_MAX];
    make_layout(dir);
    dt_join(abs_b, dir, "data/b.bin");
    snprintf(text, sizeof text,
             "# sources of the test mixture\n"
             "\n"
             "web  0.45  ../data/a.bin\n"
             "   \t  \n"
             "0.2\t../data/a      # .bin omitted; trailing comment\r\n"
             "code 3 %s\n"
             "5e-1 ../data/c.tok\n"
             "   # indented comment\n"
             "last 1 ../data/b",
             abs_b);
    dt_write_str(dt_join(list, dir, "lists/mix.txt"), text);
    ksa_mixture m;
    assert_int_equal(ksa_mixture_read(&m, list), KSA_OK);
    assert_int_equal(m.n, 5);
    char want[DT_PATH_MAX];
    snprintf(want, sizeof want, "%s/lists/../data/a.bin", dir);
    assert_string_equal(m.sources[0].name, "web");
    assert_true(m.sources[0].weight == 0.45);
    assert_string_equal(m.sources[0].path, want);
    assert_int_equal(m.sources[0].line, 3);
    assert_string_equal(m.sources[1].name, "../data/a"); /* no name: the path as written */
    assert_true(m.sources[1].weight == 0.2);
    assert_string_equal(m.sources[1].path, want); /* ".bin" appended */
    assert_int_equal(m.sources[1].line, 5);
    assert_string_equal(m.sources[2].name, "code");
    assert_true(m.sources[2].weight == 3.0);
    assert_string_equal(m.sources[2].path, abs_b); /* absolute: unchanged */
    snprintf(want, sizeof want, "%s/lists/../data/c.tok", dir);
    assert_string_equal(m.sources[3].path, want); /* exists as written: nothing appended */
    assert_true(m.sources[3].weight == 0.5);
    snprintf(want, sizeof want, "%s/lists/../data/b.bin", dir);
    assert_string_equal(m.sources[4].path, want); /* last line without newline */
    assert_int_equal(m.sources[4].line, 9);
    ksa_mixture_free(&m);
}

/* A mixture whose line 3 is `bad`; the error must name the file, "line 3" and quote it. */
static void expect_bad_line(const char *dir, const char *bad, ksa_status code, const char *needle)
{
    char list[DT_PATH_MAX], text[DT_PATH_MAX], quoted[DT_PATH_MAX];
    snprintf(text, sizeof text, "# ok so far\nfine 1 ../data/a\n%s\nlater 1 ../data/b\n", bad);
    dt_write_str(dt_join(list, dir, "lists/bad.txt"), text);
    snprintf(quoted, sizeof quoted, "\"%s\"", bad);
    ksa_mixture m;
    dt_expect_error(ksa_mixture_read(&m, list), code, list, "line 3:", quoted, needle);
    assert_null(m.sources);
    assert_int_equal(m.n, 0);
}

static void bad_weights_are_refused_naming_the_line(void **state)
{
    make_layout(*state);
    const char *bad[] = {"web abc ../data/a", "web 0 ../data/a",     "-1 ../data/a",
                         "web nan ../data/a", "web 1e999 ../data/a", "0.5x ../data/a",
                         "web inf ../data/a", "x -0.0 ../data/a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_bad_line(*state, bad[i], KSA_EFORMAT, "not a positive number");
}

static void missing_token_files_are_refused_naming_the_line(void **state)
{
    make_layout(*state);
    expect_bad_line(*state, "web 1 ../data/nothere", KSA_EIO, "no token file");
    expect_bad_line(*state, "web 1 ../data/nothere", KSA_EIO, "nothere.bin");
    expect_bad_line(*state, "2 ../data", KSA_EIO, "no token file"); /* a folder is no file */
}

static void wrong_field_counts_are_refused_naming_the_line(void **state)
{
    make_layout(*state);
    expect_bad_line(*state, "0.5", KSA_EFORMAT, "found 1 field");
    expect_bad_line(*state, "web", KSA_EFORMAT, "found 1 field");
    expect_bad_line(*state, "web 1 ../data/a extra", KSA_EFORMAT, "found 4 fields");
    expect_bad_line(*state, "a b c d e f", KSA_EFORMAT, "found 6 fields");
    expect_bad_line(*state, "web ../data/a", KSA_EFORMAT, "weight 'web'"); /* path missing */
}

static void a_list_without_sources_or_file_is_refused(void **state)
{
    char list[DT_PATH_MAX];
    ksa_mixture m;
    dt_write_str(dt_join(list, *state, "empty.txt"), "# nothing\n\n   \n");
    dt_expect_error(ksa_mixture_read(&m, list), KSA_EFORMAT, list, "no sources");
    dt_expect_error(ksa_mixture_read(&m, dt_join(list, *state, "none.txt")), KSA_EIO,
                    "cannot open mixture file", "none.txt");
}

/* A folder or a FIFO named as the mixture file is refused naming it (a folder made the reader
 * ask for 2^63 bytes and abort; a FIFO without a writer would wait for ever). */
static void a_list_that_is_not_a_regular_file_is_refused(void **state)
{
    char list[DT_PATH_MAX];
    ksa_mixture m;
    assert_int_equal(mkdir(dt_join(list, *state, "lists.d"), 0700), 0);
    dt_expect_error(ksa_mixture_read(&m, list), KSA_EIO, list, "not a regular file");
    assert_int_equal(mkfifo(dt_join(list, *state, "fifo"), 0600), 0);
    dt_expect_error(ksa_mixture_read(&m, list), KSA_EIO, list, "not a regular file");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(both_line_forms_comments_and_relative_paths_are_understood),
        T(bad_weights_are_refused_naming_the_line),
        T(missing_token_files_are_refused_naming_the_line),
        T(wrong_field_counts_are_refused_naming_the_line),
        T(a_list_without_sources_or_file_is_refused),
        T(a_list_that_is_not_a_regular_file_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
