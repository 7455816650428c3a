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

/* The first seed from 1 whose split at val_fraction puts documents in both files (for three
 * documents at 0.5, three in four seeds do; none among 1000 is a broken hash).            */
static uint64_t a_seed_that_splits(size_t n_docs, double val_fraction)
{
    for (uint64_t seed = 1; seed <= 1000; seed++) {
        size_t n_val = 0;
        for (size_t d = 0; d < n_docs; d++)
            n_val += (size_t)ksa_prepare_goes_to_validation(seed, d, val_fraction);
        if (n_val > 0 && n_val < n_docs)
            return seed;
    }
    fail_msg("no seed in 1..1000 splits %zu documents at val_fraction %g", n_docs, val_fraction);
    return 0;
}

static void whole_documents_go_to_one_file_each_in_command_line_order(void **state)
{
    const char *dir = *state;
    char paths[N_DOCS][DT_PATH_MAX], out[DT_PATH_MAX], val[DT_PATH_MAX], meta[DT_PATH_MAX];
    unsigned char *docs[N_DOCS];
    size_t sizes[N_DOCS];
    size_t total = make_docs(dir, paths, docs, sizes);
    const char *inputs[N_DOCS] = {paths[0], paths[1], paths[2]};
    const double frac = 0.5;
    ksa_prepare_options o = quiet_options(inputs, N_DOCS, dt_join(out, dir, "P.bin"), frac);
    o.seed = a_seed_that_splits(N_DOCS, frac);
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
    size_t at_train = 0, at_val = 0, val_docs = 0;
    for (size_t d = 0; d < N_DOCS; d++) { /* bytes + end-of-text, all in one of the files */
        int to_val = ksa_prepare_goes_to_validation(o.seed, d, frac);
        int32_t *to = to_val ? valt : train;
        size_t *at = to_val ? &at_val : &at_train;
        val_docs += (size_t)to_val;
        for (size_t i = 0; i < sizes[d]; i++)
            assert_int_equal(to[(*at)++], docs[d][i]);
        assert_int_equal(to[(*at)++], KSA_TOKENIZER_EOT);
    }
    assert_int_equal(at_train, n_train);
    assert_int_equal(at_val, n_val);
    assert_int_equal(r.n_val_docs, val_docs);
    assert_int_equal(r.n_train_docs, N_DOCS - val_docs);

    size_t n;
    unsigned char *m = dt_read(dt_join(meta, dir, "P.bin.meta"), &n);
    assert_int_equal(n, 6);
    assert_memory_equal(m, "uint16", 6); /* KSA's convention: no newline */
    free(m);
    m = dt_read(dt_join(meta, dir, "P.val.bin.meta"), &n);
    assert_memory_equal(m, "uint16", 6);
    free(m);
    m = dt_read(dt_join(meta, dir, "P.bin.tokenizer"), &n); /* whose ids these are */
    assert_int_equal(n, 4);
    assert_memory_equal(m, "byte", 4);
    free(m);
    m = dt_read(out, &n);
    assert_int_equal(n, 2 * n_train);
    free(m);
    assert_int_equal(dt_count_entries(dir), N_DOCS + 6); /* no .tmp left behind */

    /* the text decodes back: the first document then the end-of-text marker */
    int32_t *first = ksa_prepare_goes_to_validation(o.seed, 0, frac) ? valt : train;
    char *text = malloc(2 * sizes[0] + 64);
    assert_non_null(text);
    size_t len = ksa_tokenizer_decode(text, 2 * sizes[0] + 64, first, sizes[0] + 1, 0);
    assert_int_equal(len, sizes[0] + strlen(KSA_TOKENIZER_EOT_MARKER));
    assert_memory_equal(text, docs[0], sizes[0]);
    assert_memory_equal(text + sizes[0], KSA_TOKENIZER_EOT_MARKER,
                        strlen(KSA_TOKENIZER_EOT_MARKER));
    free(text), free(train), free(valt);
    for (size_t d = 0; d < N_DOCS; d++)
        free(docs[d]);
}

/* Each document is a draw: over many documents the validation share is val_fraction. */
static void the_seeded_choice_honours_the_fraction_and_depends_on_the_seed(void **state)
{
    (void)state;
    enum { N = 100000 };
    const double fractions[] = {0.01, 0.1, 0.5};
    for (size_t k = 0; k < 3; k++) {
        double f = fractions[k];
        size_t n_val = 0, same_as_seed_2 = 0;
        for (size_t d = 0; d < N; d++) {
            int v = ksa_prepare_goes_to_validation(KSA_PREPARE_DEFAULT_SEED, d, f);
            n_val += (size_t)v;
            same_as_seed_2 += v && ksa_prepare_goes_to_validation(2, d, f);
        }
        double sd = sqrt(N * f * (1 - f)); /* binomial: within 5 sd */
        assert_true(fabs((double)n_val - N * f) < 5 * sd);
        /* another seed picks other documents: independent draws overlap in f^2 of them */
        assert_true(fabs((double)same_as_seed_2 - N * f * f) < 5 * sqrt(N * f * f) + 1);
    }
    for (size_t d = 0; d < 100; d++) { /* the ends of [0, 1) */
        assert_false(ksa_prepare_goes_to_validation(7, d, 0.0));
        assert_true(ksa_prepare_goes_to_validation(7, d, nextafter(1.0, 0.0)));
    }
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
    ksa_prepare_options o = quiet_options(inputs, 1, dt_join(out, dir, "big.bin"), 0.0);
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
    size_t len = strlen(text);
    assert_int_equal(r.n_val, 0);
    assert_int_equal(r.n_train, len + 1);

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
    ksa_prepare_options o = quiet_options(inputs, 1, dt_join(out, dir, "t.bin"), 0.0);
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

/* Runs prepare with o, expects code and the needles, and checks dir still has n_entries files and
 * that an older P.bin survived untouched.                                                 */
#define expect_nothing_written(dir, o, code, ...)                                                  \
    expect_nothing_written_((dir), (o), (code), (const char *const[]){__VA_ARGS__, NULL})
static void expect_nothing_written_(const char *dir, const ksa_prepare_options *o, ksa_status code,
                                    const char *const *needles)
{
    size_t before = dt_count_entries(dir);
    ksa_prepare_result r;
    dt_expect_error_(ksa_prepare_run(o, &r), code, needles);
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
    /* one document cannot be split; nor can two that the seed sends to the same file */
    o = quiet_options(two, 1, out, 0.01);
    expect_nothing_written(dir, &o, KSA_EINVAL, "too few documents",
                           "puts 0 of the 1 document (0 of 10 tokens) in the validation file "
                           "and 1 in the training file");
    const char *ok_twice[2] = {in, in};
    o = quiet_options(ok_twice, 2, out, nextafter(1.0, 0.0));
    o.seed = 5;
    expect_nothing_written(dir, &o, KSA_EINVAL, "--seed 5 puts 2 of the 2 documents (20 of 20",
                           "and 0 in the training file");
    /* a missing output folder is created; one that cannot be (under a file) is an error */
    o = quiet_options(two, 1, dt_join(sub, dir, "ok.txt/sub/P.bin"), 0.0);
    expect_nothing_written(dir, &o, KSA_EIO, "cannot create the output folder");
}

static void a_failure_while_writing_removes_every_temporary_file(void **state)
{
    const char *dir = *state;
    char in[DT_PATH_MAX], out[DT_PATH_MAX], blocker[DT_PATH_MAX], tmp[DT_PATH_MAX];
    dt_write_str(dt_join(in, dir, "ok.txt"), "fine text, long enough to split");
    dt_write_str(dt_join(out, dir, "P.bin"), "old");
    const char *inputs[1] = {in};
    ksa_prepare_options o = quiet_options(inputs, 1, out, 0.0);
    /* a folder where a temporary file should go makes creating it fail: first the validation
     * file's (the training one exists by then), then a .meta or .tokenizer file's (both token files
     * are complete by then)                                                                   */
    const char *blockers[] = {"P.val.bin.tmp", "P.bin.meta.tmp", "P.val.bin.meta.tmp",
                              "P.bin.tokenizer.tmp", "P.val.bin.tokenizer.tmp"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(mkdir(dt_join(blocker, dir, blockers[i]), 0700), 0);
        expect_nothing_written(dir, &o, KSA_EIO, "cannot create");
        assert_false(dt_exists(dt_join(tmp, dir, "P.bin.tmp")));
        assert_false(dt_exists(dt_join(tmp, dir, "P.val.bin")));
        assert_int_equal(rmdir(blocker), 0);
    }
    ksa_prepare_result r; /* and with nothing in the way it works */
    assert_int_equal(ksa_prepare_run(&o, &r), KSA_OK);
    assert_int_equal(dt_count_entries(dir), 7);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(whole_documents_go_to_one_file_each_in_command_line_order),
        T(the_seeded_choice_honours_the_fraction_and_depends_on_the_seed),
        T(a_zero_fraction_leaves_an_empty_validation_file),
        T(a_large_vocabulary_writes_uint32_that_the_loader_reads),
        T(progress_lines_report_bytes_and_speed),
        T(validation_files_are_named_after_the_training_file),
        T(bad_input_is_an_error_that_writes_nothing),
        T(a_failure_while_writing_removes_every_temporary_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
