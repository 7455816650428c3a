/* test_prepare.c - `ksa prepare` end to end through its library half (src/data/prepare.c):
 * token counts, the train/validation split, dtypes and bad input writing
 * nothing.                                                                                */
#include "datautil.h"

#include <math.h>

#include "data/loader.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

/* The token ids of a prepared file (as int32, malloc'ed), read back through tokfile.h. */
static int32_t *read_tokens(const char *path, size_t vocab, size_t *n, ksa_dtype *dtype)
{
    ksa_tokfile f;
    if (ksa_tokfile_open(&f, path, KSA_DTYPE_AUTO, vocab) != KSA_OK) {
        print_error("%s\n", ksa_last_error());
        fail();
    }
    assert_int_equal(f.format, KSA_TOKFILE_HEADERLESS); /* dtype from the .meta file */
    int32_t *t = malloc((f.n_tokens + 1) * sizeof *t);
    assert_non_null(t);
    ksa_tokfile_read(&f, t, 0, f.n_tokens);
    *n = f.n_tokens;
    *dtype = f.dtype;
    ksa_tokfile_close(&f);
    return t;
}

static ksa_prepare_options quiet_options(const char **inputs, size_t n, const char *out,
                                         double val_fraction)
{
    ksa_prepare_options o;
    ksa_prepare_defaults(&o);
    o.inputs = inputs;
    o.n_inputs = n;
    o.out = out;
    o.val_fraction = val_fraction;
    o.progress = NULL;
    return o;
}

enum { N_DOCS = 3 };

/* Three documents: plain ASCII, empty, and UTF-8 with every byte value mixed in. */
static size_t make_docs(const char *dir, char paths[N_DOCS][DT_PATH_MAX],
                        unsigned char *docs[N_DOCS], size_t sizes[N_DOCS])
{
    sizes[0] = 999, sizes[1] = 0, sizes[2] = 12345;
    const char *utf8 = "Grüße, 日本語, 🙂 ";
    for (size_t d = 0; d < N_DOCS; d++) {
        docs[d] = malloc(sizes[d] + 1);
        assert_non_null(docs[d]);
        for (size_t i = 0; i < sizes[d]; i++)
            docs[d][i] = d == 0  ? (unsigned char)('a' + i % 26)
                         : i % 3 ? (unsigned char)utf8[i % strlen(utf8)]
                                 : (unsigned char)(i * 7 % 256);
        char name[32];
        snprintf(name, sizeof name, "doc%zu.txt", d);
        dt_write(dt_join(paths[d], dir, name), docs[d], sizes[d]);
    }
    return sizes[0] + sizes[1] + sizes[2];
}

static void tokens_are_the_bytes_plus_one_end_of_text_per_file_split_per_document(void **state)
{
    const char *dir = *state;
    char paths[N_DOCS][DT_PATH_MAX], out[DT_PATH_MAX], val[DT_PATH_MAX], meta[DT_PATH_MAX];
    unsigned char *docs[N_DOCS];
    size_t sizes[N_DOCS];
    size_t total = make_docs(dir, paths, docs, sizes);
    const char *inputs[N_DOCS] = {paths[0], paths[1], paths[2]};
    const double frac = 0.1;
    ksa_prepare_options o = quiet_options(inputs, N_DOCS, dt_join(out, dir, "P.bin"), frac);
    ksa_prepare_result r;
    assert_int_equal(ksa_prepare_run(&o, &r), KSA_OK);
    assert_int_equal(r.n_files, N_DOCS);
    assert_int_equal(r.n_bytes, total);
    assert_int_equal(r.n_train + r.n_val, total + N_DOCS);
    assert_int_equal(r.dtype, KSA_DTYPE_UINT16);

    size_t n_train, n_val;
    ksa_dtype dt;
    int32_t *train = read_tokens(out, 257, &n_train, &dt);
    int32_t *valt = read_tokens(dt_join(val, dir, "P.val.bin"), 257, &n_val, &dt);
    assert_int_equal(n_train, r.n_train);
    assert_int_equal(n_val, r.n_val);
    assert_int_equal(n_train + n_val, total + N_DOCS); /* bytes + one eot per file */
    size_t at_train = 0, at_val = 0;
    for (size_t d = 0; d < N_DOCS; d++) { /* head + eot to train, tail to validation */
        size_t nv = (size_t)floor(frac * (double)(sizes[d] + 1)), nh = sizes[d] - nv;
        for (size_t i = 0; i < nh; i++)
            assert_int_equal(train[at_train++], docs[d][i]);
        assert_int_equal(train[at_train++], KSA_TOKENIZER_EOT);
        for (size_t i = nh; i < sizes[d]; i++)
            assert_int_equal(valt[at_val++], docs[d][i]);
    }
    assert_int_equal(at_train, n_train);
    assert_int_equal(at_val, n_val);
    assert_int_equal(n_val, 100 + 0 + 1234); /* floor(0.1 * 1000), floor(0.1), floor(1234.6) */

    size_t n;
    unsigned char *m = dt_read(dt_join(meta, dir, "P.bin.meta"), &n);
    assert_int_equal(n, 6);
    assert_memory_equal(m, "uint16", 6); /* KSA's convention: no newline */
    free(m);
    m = dt_read(dt_join(meta, dir, "P.val.bin.meta"), &n);
    assert_memory_equal(m, "uint16", 6);
    free(m);
    m = dt_read(out, &n);
    assert_int_equal(n, 2 * n_train);
    free(m);
    assert_int_equal(dt_count_entries(dir), N_DOCS + 4); /* no .tmp left behind */

    /* the text decodes back: document 0 then the end-of-text marker */
    char *text = malloc(2 * n_train + 64);
    assert_non_null(text);
    size_t len = ksa_tokenizer_decode(text, 2 * n_train + 64, train, 899 + 1, 0);
    assert_int_equal(len, 899 + strlen(KSA_TOKENIZER_EOT_MARKER));
    assert_memory_equal(text, docs[0], 899);
    assert_memory_equal(text + 899, KSA_TOKENIZER_EOT_MARKER, strlen(KSA_TOKENIZER_EOT_MARKER));
    free(text), free(train), free(valt);
    for (size_t d = 0; d < N_DOCS; d++)
        free(docs[d]);
}

static void a_zero_fraction_leaves_an_empty_validation_file(void **state)
{
    const char *dir = *state;
    char paths[N_DOCS][DT_PATH_MAX], out[DT_PATH_MAX], val[DT_PATH_MAX];
    unsigned char *docs[N_DOCS];
    size_t sizes[N_DOCS];
    size_t total = make_docs(dir, paths, docs, sizes);
    const char *inputs[N_DOCS] = {paths[2], paths[0], paths[1]};
    ksa_prepare_options o = quiet_options(inputs, N_DOCS, dt_join(out, dir, "Q.bin"), 0.0);
    ksa_prepare_result r;
    assert_int_equal(ksa_prepare_run(&o, &r), KSA_OK);
    assert_int_equal(r.n_train, total + N_DOCS);
    assert_int_equal(r.n_val, 0);
    size_t n;
    unsigned char *v = dt_read(dt_join(val, dir, "Q.val.bin"), &n);
    assert_int_equal(n, 0);
    free(v);
    ksa_tokfile f;
    dt_expect_error(ksa_tokfile_open(&f, val, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "is empty");
    for (size_t d = 0; d < N_DOCS; d++)
        free(docs[d]);
}

static void a_large_vocabulary_writes_uint32_that_the_loader_reads(void **state)
{
    const char *dir = *state;
    char in[DT_PATH_MAX], out[DT_PATH_MAX], meta[DT_PATH_MAX];
    const char *text = "And God said, Let there be light: and there was light.\n";
    dt_write_str(dt_join(in, dir, "genesis.txt"), text);
    const char *inputs[1] = {in};
    ksa_prepare_options o = quiet_options(inputs, 1, dt_join(out, dir, "big.bin"), 0.25);
    o.vocab_size = 70000;
    ksa_prepare_result r;
    assert_int_equal(ksa_prepare_run(&o, &r), KSA_OK);
    assert_int_equal(r.dtype, KSA_DTYPE_UINT32);
    size_t n;
    unsigned char *m = dt_read(dt_join(meta, dir, "big.bin.meta"), &n);
    assert_memory_equal(m, "uint32", 6);
    free(m);
    m = dt_read(out, &n);
    assert_int_equal(n, 4 * r.n_train);
    free(m);
    size_t len = strlen(text), nv = (size_t)floor(0.25 * (double)(len + 1));
    assert_int_equal(r.n_val, nv);
    assert_int_equal(r.n_train, len - nv + 1);

    ksa_loader ld; /* the training file serves a loader: rows are its consecutive tokens */
    ksa_loader_options lo = {.seq_len = 8, .global_batch = 2, .vocab_size = 70000, .seed = 5};
    assert_int_equal(ksa_loader_open_file(&ld, out, &lo), KSA_OK);
    int32_t rows[2 * 9];
    ksa_loader_batch_at(&ld, rows, 0, 0, 1);
    for (size_t b = 0; b < 2; b++) {
        size_t w = ksa_loader_locate(&ld, 0, b).window;
        for (size_t j = 0; j < 9; j++)
            assert_int_equal(rows[b * 9 + j], (unsigned char)text[w * 8 + j]);
    }
    ksa_loader_close(&ld);
}

static void progress_lines_report_bytes_and_speed(void **state)
{
    const char *dir = *state;
    char in[DT_PATH_MAX], out[DT_PATH_MAX];
    dt_write_str(dt_join(in, dir, "t.txt"), "some text for the progress line");
    const char *inputs[1] = {in};
    ksa_prepare_options o = quiet_options(inputs, 1, dt_join(out, dir, "t.bin"), 0.5);
    o.progress = tmpfile();
    assert_non_null(o.progress);
    o.progress_every = 0; /* every chunk */
    ksa_prepare_result r;
    assert_int_equal(ksa_prepare_run(&o, &r), KSA_OK);
    char line[256] = {0};
    rewind(o.progress);
    assert_non_null(fgets(line, sizeof line, o.progress));
    fclose(o.progress);
    assert_non_null(strstr(line, "prepare: "));
    assert_non_null(strstr(line, "MiB"));
    assert_non_null(strstr(line, "MB/s"));
}

static void validation_files_are_named_after_the_training_file(void **state)
{
    (void)state;
    const char *cases[][2] = {{"P.bin", "P.val.bin"},
                              {"build/data/kjv.bin", "build/data/kjv.val.bin"},
                              {"tokens", "tokens.val"},
                              {".bin", ".val.bin"}};
    for (size_t i = 0; i < 4; i++) {
        char *v = ksa_prepare_val_path(cases[i][0]);
        assert_string_equal(v, cases[i][1]);
        ksa_free(v);
    }
}

/* Runs prepare with o, expects code and needle, and checks dir still has n_entries files and
 * that an older P.bin survived untouched.                                                 */
static void expect_nothing_written(const char *dir, const ksa_prepare_options *o, ksa_status code,
                                   const char *needle)
{
    size_t before = dt_count_entries(dir);
    ksa_prepare_result r;
    dt_expect_error(ksa_prepare_run(o, &r), code, needle);
    assert_int_equal(dt_count_entries(dir), before);
    char p[DT_PATH_MAX];
    size_t n;
    unsigned char *old = dt_read(dt_join(p, dir, "P.bin"), &n);
    assert_int_equal(n, 3);
    assert_memory_equal(old, "old", 3);
    free(old);
}

static void bad_input_is_an_error_that_writes_nothing(void **state)
{
    const char *dir = *state;
    char in[DT_PATH_MAX], out[DT_PATH_MAX], missing[DT_PATH_MAX], sub[DT_PATH_MAX];
    dt_write_str(dt_join(in, dir, "ok.txt"), "fine text");
    dt_write_str(dt_join(out, dir, "P.bin"), "old");
    dt_join(missing, dir, "missing.txt");
    const char *two[2] = {in, missing};
    ksa_prepare_options o = quiet_options(two, 2, out, 0.01);
    expect_nothing_written(dir, &o, KSA_EIO, "missing.txt");
    o = quiet_options(two, 0, out, 0.01);
    expect_nothing_written(dir, &o, KSA_EINVAL, "no input files");
    o = quiet_options(two, 1, out, 1.0);
    expect_nothing_written(dir, &o, KSA_EINVAL, "--val-fraction 1 is outside [0, 1)");
    o = quiet_options(two, 1, out, -0.1);
    expect_nothing_written(dir, &o, KSA_EINVAL, "--val-fraction -0.1 is outside");
    o = quiet_options(two, 1, out, NAN);
    expect_nothing_written(dir, &o, KSA_EINVAL, "outside [0, 1)");
    o = quiet_options(two, 1, NULL, 0.01);
    expect_nothing_written(dir, &o, KSA_EINVAL, "no output file");
    o = quiet_options(two, 1, out, 0.01);
    o.vocab_size = 256;
    expect_nothing_written(dir, &o, KSA_EINVAL, "vocab_size 256");
    const char *folder[1] = {dir};
    o = quiet_options(folder, 1, out, 0.01);
    expect_nothing_written(dir, &o, KSA_EIO, "not a regular file");
    /* a missing output folder is created; one that cannot be (under a file) is an error */
    o = quiet_options(two, 1, dt_join(sub, dir, "ok.txt/sub/P.bin"), 0.01);
    expect_nothing_written(dir, &o, KSA_EIO, "cannot create the output folder");
}

static void a_failure_while_writing_removes_every_temporary_file(void **state)
{
    const char *dir = *state;
    char in[DT_PATH_MAX], out[DT_PATH_MAX], blocker[DT_PATH_MAX], tmp[DT_PATH_MAX];
    dt_write_str(dt_join(in, dir, "ok.txt"), "fine text, long enough to split");
    dt_write_str(dt_join(out, dir, "P.bin"), "old");
    const char *inputs[1] = {in};
    ksa_prepare_options o = quiet_options(inputs, 1, out, 0.5);
    /* a folder where a temporary file should go makes creating it fail: first the validation
     * file's (the training one exists by then), then a .meta file's (both token files are
     * complete by then)                                                                   */
    const char *blockers[] = {"P.val.bin.tmp", "P.bin.meta.tmp", "P.val.bin.meta.tmp"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(mkdir(dt_join(blocker, dir, blockers[i]), 0700), 0);
        expect_nothing_written(dir, &o, KSA_EIO, "cannot create");
        assert_false(dt_exists(dt_join(tmp, dir, "P.bin.tmp")));
        assert_false(dt_exists(dt_join(tmp, dir, "P.val.bin")));
        assert_int_equal(rmdir(blocker), 0);
    }
    ksa_prepare_result r; /* and with nothing in the way it works */
    assert_int_equal(ksa_prepare_run(&o, &r), KSA_OK);
    assert_int_equal(dt_count_entries(dir), 5);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(tokens_are_the_bytes_plus_one_end_of_text_per_file_split_per_document),
        T(a_zero_fraction_leaves_an_empty_validation_file),
        T(a_large_vocabulary_writes_uint32_that_the_loader_reads),
        T(progress_lines_report_bytes_and_speed),
        T(validation_files_are_named_after_the_training_file),
        T(bad_input_is_an_error_that_writes_nothing),
        T(a_failure_while_writing_removes_every_temporary_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
