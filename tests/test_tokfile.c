/* test_tokfile.c - token files: headerless (.meta or explicit dtype) and llm.c formats,
 * detection, reads, and every kind of bad file refused with a message naming it.        */
#include "datautil.h"

#include "data/tokfile.h"

/* An llm.c file: header {magic, version, count_in_header} then n uint16 ids. */
static void write_llmc(const char *path, int32_t magic, int32_t version, int32_t count,
                       const uint16_t *ids, size_t n)
{
    size_t bytes = KSA_LLMC_HEADER_INTS * 4 + 2 * n;
    unsigned char *buf = calloc(1, bytes);
    assert_non_null(buf);
    int32_t h[3] = {magic, version, count};
    memcpy(buf, h, sizeof h); /* the test host is little-endian (tokfile.h insists) */
    memcpy(buf + KSA_LLMC_HEADER_INTS * 4, ids, 2 * n);
    dt_write(path, buf, bytes);
    free(buf);
}

static void expect_tokens(const ksa_tokfile *f, const uint32_t *want, size_t n)
{
    assert_int_equal(f->n_tokens, n);
    int32_t *got = malloc(n * sizeof *got);
    assert_non_null(got);
    ksa_tokfile_read(f, got, 0, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ksa_tokfile_get(f, i), want[i]);
        assert_int_equal(got[i], (int32_t)want[i]);
    }
    if (n > 3) { /* a range that starts inside the file */
        ksa_tokfile_read(f, got, 2, n - 3);
        for (size_t i = 0; i < n - 3; i++)
            assert_int_equal(got[i], (int32_t)want[i + 2]);
    }
    free(got);
}

static void headerless_uint16_takes_its_dtype_from_the_meta_file(void **state)
{
    char p[DT_PATH_MAX];
    uint32_t ids[] = {0, 1, 255, 256, 40000, 65535, 7};
    dt_write_tokens(dt_join(p, *state, "a.bin"), ids, 7, 2, "  uint16 \n\n");
    ksa_tokfile f;
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 65536), KSA_OK);
    assert_int_equal(f.format, KSA_TOKFILE_HEADERLESS);
    assert_int_equal(f.dtype, KSA_DTYPE_UINT16);
    expect_tokens(&f, ids, 7);
    ksa_tokfile_close(&f);
}

static void headerless_uint32_reads_a_meta_file_without_newline(void **state)
{
    char p[DT_PATH_MAX];
    uint32_t ids[] = {5, 70000, 1u << 30, 256, 0};
    dt_write_tokens(dt_join(p, *state, "b.bin"), ids, 5, 4, "uint32");
    ksa_tokfile f;
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, (1u << 30) + 1), KSA_OK);
    assert_int_equal(f.dtype, KSA_DTYPE_UINT32);
    expect_tokens(&f, ids, 5);
    ksa_tokfile_close(&f);
}

static void an_explicit_dtype_reads_a_file_without_meta_and_must_agree_with_one(void **state)
{
    char p[DT_PATH_MAX], q[DT_PATH_MAX];
    uint32_t ids[] = {1, 2, 3, 4};
    dt_write_tokens(dt_join(p, *state, "raw.bin"), ids, 4, 4, NULL);
    ksa_tokfile f;
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_UINT32, 257), KSA_OK);
    expect_tokens(&f, ids, 4);
    ksa_tokfile_close(&f);
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_UINT16, 257), KSA_OK); /* as asked */
    assert_int_equal(f.n_tokens, 8);
    ksa_tokfile_close(&f);

    dt_write_tokens(dt_join(q, *state, "m.bin"), ids, 4, 2, "uint16");
    assert_int_equal(ksa_tokfile_open(&f, q, KSA_DTYPE_UINT16, 257), KSA_OK);
    expect_tokens(&f, ids, 4);
    ksa_tokfile_close(&f);
    dt_expect_error(ksa_tokfile_open(&f, q, KSA_DTYPE_UINT32, 257), KSA_EINVAL, q,
                    "uint32 was given", "says uint16");
    assert_null(f.map);
}

static void llmc_files_are_detected_by_their_magic_number(void **state)
{
    char p[DT_PATH_MAX];
    uint16_t raw[] = {10, 20, 256, 50256, 0};
    uint32_t ids[] = {10, 20, 256, 50256, 0};
    write_llmc(dt_join(p, *state, "gpt2.bin"), KSA_LLMC_MAGIC, 1, 5, raw, 5);
    ksa_tokfile f;
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 50257), KSA_OK);
    assert_int_equal(f.format, KSA_TOKFILE_LLMC);
    assert_int_equal(f.dtype, KSA_DTYPE_UINT16);
    expect_tokens(&f, ids, 5);
    ksa_tokfile_close(&f);
}

static void dtype_names_parse_and_unknown_ones_are_refused(void **state)
{
    (void)state;
    ksa_dtype d = KSA_DTYPE_AUTO;
    assert_int_equal(ksa_tokfile_parse_dtype("uint16", &d), KSA_OK);
    assert_int_equal(d, KSA_DTYPE_UINT16);
    assert_int_equal(ksa_tokfile_parse_dtype("uint32", &d), KSA_OK);
    assert_int_equal(d, KSA_DTYPE_UINT32);
    dt_expect_error(ksa_tokfile_parse_dtype("int64", &d), KSA_EINVAL, "unknown dtype 'int64'",
                    "uint16", "uint32");
    assert_string_equal(ksa_tokfile_dtype_name(KSA_DTYPE_UINT32), "uint32");
}

static void a_missing_file_is_an_io_error_naming_it(void **state)
{
    char p[DT_PATH_MAX];
    ksa_tokfile f;
    dt_expect_error(ksa_tokfile_open(&f, dt_join(p, *state, "nope.bin"), KSA_DTYPE_AUTO, 257),
                    KSA_EIO, "cannot open token file", "nope.bin", "No such file");
}

static void an_empty_file_is_refused(void **state)
{
    char p[DT_PATH_MAX];
    dt_write_tokens(dt_join(p, *state, "empty.bin"), NULL, 0, 2, "uint16");
    ksa_tokfile f;
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "is empty");
    dt_write_str(dt_join(p, *state, "empty2.bin"), ""); /* no .meta, no dtype */
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "is empty");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_UINT16, 257), KSA_EFORMAT, "is empty");
}

static void an_unknown_dtype_in_the_meta_file_is_refused(void **state)
{
    char p[DT_PATH_MAX];
    uint32_t ids[] = {1, 2};
    dt_write_tokens(dt_join(p, *state, "c.bin"), ids, 2, 4, "int64\n");
    ksa_tokfile f;
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "c.bin.meta",
                    "'int64'", "unknown dtype", "uint16");
    dt_write_tokens(p, ids, 2, 4, "uint16 uint32");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "unknown dtype");
}

static void byte_counts_must_be_whole_tokens(void **state)
{
    char p[DT_PATH_MAX], q[DT_PATH_MAX];
    ksa_tokfile f;
    dt_write(dt_join(p, *state, "odd.bin"), "\1\0\2\0\3", 5);
    dt_write_str(dt_join(q, *state, "odd.bin.meta"), "uint16");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "5 bytes",
                    "not a multiple of 2", "uint16");
    dt_write_str(q, "uint32");
    dt_write(p, "\1\0\0\0\2\0", 6);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "6 bytes",
                    "not a multiple of 4", "uint32");
}

static void a_file_without_meta_or_magic_is_refused_saying_what_was_expected(void **state)
{
    char p[DT_PATH_MAX];
    uint32_t ids[] = {1, 2, 3, 4};
    dt_write_tokens(dt_join(p, *state, "plain.bin"), ids, 4, 2, NULL);
    ksa_tokfile f;
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "plain.bin.meta",
                    "magic number 20240520", "--dtype");
    dt_write(p, "\1", 1); /* too short even for the magic */
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "magic number");
}

static void bad_llmc_headers_are_refused(void **state)
{
    char p[DT_PATH_MAX];
    uint16_t raw[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ksa_tokfile f;
    dt_join(p, *state, "h.bin");
    write_llmc(p, KSA_LLMC_MAGIC, 2, 8, raw, 8);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "version 2",
                    "only version 1");
    write_llmc(p, KSA_LLMC_MAGIC, 1, 10, raw, 8);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "says 10 tokens",
                    "16 bytes after the header");
    write_llmc(p, KSA_LLMC_MAGIC, 1, 7, raw, 8);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "says 7 tokens");
    write_llmc(p, KSA_LLMC_MAGIC, 1, -4, raw, 8);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "says -4 tokens");
    write_llmc(p, KSA_LLMC_MAGIC, 1, 0, raw, 0);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "says 0 tokens");
    int32_t short_header[10] = {KSA_LLMC_MAGIC, 1, 0};
    dt_write(p, short_header, sizeof short_header);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p, "40 bytes",
                    "1024-byte header");
    write_llmc(p, KSA_LLMC_MAGIC + 1, 1, 8, raw, 8);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, "magic number");
}

static void an_id_outside_the_vocabulary_is_reported_at_its_first_offset(void **state)
{
    char p[DT_PATH_MAX];
    enum { n = 200000 }; /* several scan blocks: the bad ids sit in the second and third */
    uint32_t *ids = malloc(n * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (uint32_t)(i % 257);
    ids[70001] = 300;
    ids[150000] = 999;
    ksa_tokfile f;
    dt_write_tokens(dt_join(p, *state, "v16.bin"), ids, n, 2, "uint16");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p,
                    "token 70001 (byte offset 140002) is 300", "vocab_size 257");
    assert_null(f.map);
    dt_write_tokens(dt_join(p, *state, "v32.bin"), ids, n, 4, "uint32");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p,
                    "token 70001 (byte offset 280004) is 300");
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 1000), KSA_OK); /* all < 1000 */
    ksa_tokfile_close(&f);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 999), KSA_EFORMAT,
                    "token 150000 (byte offset 600000) is 999", "vocab_size 999");

    ids[70001] = ids[150000] = 0; /* bad ids at the edges of scan blocks and of the file */
    ids[131071] = 400;
    dt_write_tokens(p, ids, n, 4, "uint32");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT,
                    "token 131071 (byte offset 524284) is 400");
    ids[131071] = 0;
    ids[n - 1] = 257;
    dt_write_tokens(p, ids, n, 2, "uint16");
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT,
                    "token 199999 (byte offset 399998) is 257");

    uint16_t raw[6] = {1, 2, 3, 4, 257, 258}; /* llm.c: offsets count the 1024-byte header */
    write_llmc(dt_join(p, *state, "v.llmc"), KSA_LLMC_MAGIC, 1, 6, raw, 6);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, p,
                    "token 4 (byte offset 1032) is 257");
    free(ids);
}

/* <file>.tokenizer names the tokenizer: its first word. A file that holds no such word (a
 * NUL byte, control bytes, a word too long to keep) is refused naming it, not read as a name
 * that a checkpoint would then record (found by tests/fuzz/fuzz_tokfile.c: NUL bytes read as
 * the empty name). */
static void the_tokenizer_file_names_the_tokenizer_and_a_malformed_one_is_refused(void **state)
{
    char p[DT_PATH_MAX], side[DT_PATH_MAX + 16];
    uint32_t ids[4] = {1, 2, 3, 4};
    dt_write_tokens(dt_join(p, *state, "t.bin"), ids, 4, 2, "uint16");
    snprintf(side, sizeof side, "%s.tokenizer", p);
    ksa_tokfile f;
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_OK);
    assert_string_equal(f.tokenizer, "unknown"); /* no .tokenizer file */
    ksa_tokfile_close(&f);
    dt_write_str(side, " byte\n# made by hand\n");
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_OK);
    assert_string_equal(f.tokenizer, "byte");
    ksa_tokfile_close(&f);
    dt_write(side, "\0\0", 2);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, side);
    dt_write(side, "byte\0", 5);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, side);
    const char *bad[] = {"", " \n\t", "byte\x01", "\x7f", "by\x80te"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dt_write_str(side, bad[i]);
        dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, side,
                        "does not hold a tokenizer name");
        assert_null(f.map);
    }
    char longest[40];
    memset(longest, 'x', 31);
    longest[31] = '\0';
    dt_write_str(side, longest);
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_OK);
    assert_string_equal(f.tokenizer, longest);
    ksa_tokfile_close(&f);
    strcat(longest, "x"); /* 32 characters: not kept cut */
    dt_write_str(side, longest);
    dt_expect_error(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, 257), KSA_EFORMAT, side);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(headerless_uint16_takes_its_dtype_from_the_meta_file),
        T(headerless_uint32_reads_a_meta_file_without_newline),
        T(an_explicit_dtype_reads_a_file_without_meta_and_must_agree_with_one),
        T(llmc_files_are_detected_by_their_magic_number),
        T(dtype_names_parse_and_unknown_ones_are_refused),
        T(a_missing_file_is_an_io_error_naming_it),
        T(an_empty_file_is_refused),
        T(an_unknown_dtype_in_the_meta_file_is_refused),
        T(byte_counts_must_be_whole_tokens),
        T(a_file_without_meta_or_magic_is_refused_saying_what_was_expected),
        T(bad_llmc_headers_are_refused),
        T(an_id_outside_the_vocabulary_is_reported_at_its_first_offset),
        T(the_tokenizer_file_names_the_tokenizer_and_a_malformed_one_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
