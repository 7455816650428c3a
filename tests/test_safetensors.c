/* test_safetensors.c - the safetensors reader and writer (src/interop/safetensors.h), the
 * float16 / bfloat16 conversions, and the checkpoint's stored tokenizer.json
 * (ksa_ckpt_write_model_tokenizer, ksa_ckpt_read_tokenizer_json). Files live in a mkdtemp
 * folder that the group teardown removes.                                                 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "interop/safetensors.h"
#include "model/decoder.h"

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    return test_scratch_make(dir, sizeof dir, "ksa_st");
}

static int remove_dir(void **state)
{
    (void)state;
    return test_remove_tree(dir);
}

static uint32_t bits_of(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static float float_of(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* ---- conversions ------------------------------------------------------------------------ */
static void every_half_widens_exactly_and_narrows_back(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = ksa_f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 0x1f && m) { /* NaN stays NaN (made quiet) */
            assert_true(isnan(x));
            assert_true(ksa_f32_to_f16(x) & 0x3ff);
            continue;
        }
        /* the value by definition: (-1)^s 2^(e-15) (1 + m/1024), subnormals 2^-14 m/1024 */
        double want = e == 0      ? ldexp((double)m, -24)
                      : e == 0x1f ? INFINITY
                                  : ldexp(1024.0 + m, (int)e - 25);
        if (h & 0x8000)
            want = -want;
        assert_true((double)x == want);
        assert_int_equal(ksa_f32_to_f16(x), h);
    }
}

static void float_to_half_rounds_to_nearest_even(void **state)
{
    (void)state;
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: to the even 1; 1 + 3*2^-11 up */
    assert_int_equal(ksa_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(ksa_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(ksa_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above half: up */
    assert_int_equal(ksa_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(ksa_f32_to_f16(65519.0f), 0x7bff); /* below the half to 65536 */
    assert_int_equal(ksa_f32_to_f16(65520.0f), 0x7c00); /* the half: to even = inf */
    assert_int_equal(ksa_f32_to_f16(-1e9f), 0xfc00);
    assert_int_equal(ksa_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(ksa_f32_to_f16(0x1p-24f), 0x0001);     /* smallest subnormal */
    assert_int_equal(ksa_f32_to_f16(0x1p-25f), 0x0000);     /* half of it: to even 0 */
    assert_int_equal(ksa_f32_to_f16(0x1.8p-24f), 0x0002);   /* 1.5 units: to even 2 */
    assert_int_equal(ksa_f32_to_f16(0x1.4p-25f), 0x0001);   /* above half a unit */
    assert_int_equal(ksa_f32_to_f16(0x1.ffcp-15f), 0x0400); /* rounds up to the smallest normal */
    assert_int_equal(ksa_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(ksa_f32_to_f16(1e-30f), 0x0000);
    /* against a plain nearest-even rounding in double on many random floats */
    test_rng r = test_rng_seed(5);
    for (int i = 0; i < 200000; i++) {
        float x = (float)((test_rng_uniform(&r) - 0.5) *
                          ldexp(1.0, (int)(test_rng_uniform(&r) * 44) - 28));
        uint16_t h = ksa_f32_to_f16(x);
        double got = ksa_f16_to_f32(h), err = fabs(got - x);
        /* no half is nearer; at a tie the chosen one has an even last bit */
        double below = ksa_f16_to_f32((uint16_t)(h - 1)), above = ksa_f16_to_f32((uint16_t)(h + 1));
        if ((h & 0x7fff) != 0 && (h & 0x7c00) != 0x7c00)
            assert_true(err <= fabs(below - x));
        if ((h & 0x7fff) < 0x7bff)
            assert_true(err <= fabs(above - x));
        if ((err == fabs(below - x) || err == fabs(above - x)) && err > 0)
            assert_int_equal(h & 1, 0);
    }
}

static void bfloat16_rounds_to_nearest_even_and_widens_exactly(void **state)
{
    (void)state;
    assert_int_equal(ksa_f32_to_bf16(float_of(0x3f808000u)), 0x3f80); /* tie, even below */
    assert_int_equal(ksa_f32_to_bf16(float_of(0x3f818000u)), 0x3f82); /* tie, even above */
    assert_int_equal(ksa_f32_to_bf16(float_of(0x3f808001u)), 0x3f81); /* above the tie */
    assert_int_equal(ksa_f32_to_bf16(float_of(0x3f807fffu)), 0x3f80); /* below the tie */
    assert_int_equal(ksa_f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80); /* max float: inf */
    assert_int_equal(ksa_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(ksa_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(ksa_f32_to_bf16(float_of(0x00008000u)), 0x0000); /* subnormal tie */
    assert_int_equal(ksa_f32_to_bf16(float_of(0x00018000u)), 0x0002);
    assert_true(isnan(ksa_bf16_to_f32(ksa_f32_to_bf16(float_of(0x7f800001u))))); /* sNaN low */
    assert_true(isnan(ksa_bf16_to_f32(ksa_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float x = ksa_bf16_to_f32((uint16_t)h);
        assert_int_equal(bits_of(x), h << 16);
        if (!isnan(x))
            assert_int_equal(ksa_f32_to_bf16(x), h);
    }
}

/* ---- files ----------------------------------------------------------------------------- */
static const float values_a[6] = {1.0f, -2.5f, 3.25f, 0.1f, 1e-3f, 65504.0f};
static const float values_b[3] = {7.0f, -0.0f, 0.5f};

static ksa_status fill_ab(void *ctx, size_t i, float *out)
{
    (void)ctx;
    if (i == 0)
        memcpy(out, values_a, sizeof values_a);
    else
        memcpy(out, values_b, sizeof values_b);
    return KSA_OK;
}

static void written_files_read_back_in_every_dtype(void **state)
{
    (void)state;
    const ksa_st_dtype dts[] = {KSA_ST_F32, KSA_ST_F16, KSA_ST_BF16};
    for (size_t k = 0; k < 3; k++) {
        ksa_st_entry e[2] = {{"a", dts[k], 2, {2, 3}}, {"b.weight", dts[k], 1, {3, 0}}};
        const char *path = test_path_in(dir, "rt.safetensors");
        assert_int_equal(ksa_st_write(path, e, 2, fill_ab, NULL), KSA_OK);
        ksa_st_file f;
        assert_int_equal(ksa_st_open(&f, path), KSA_OK);
        assert_int_equal(f.n, 2);
        assert_int_equal(f.data_start % 8, 0); /* the header is padded to 8 bytes */
        long a = ksa_st_find(&f, "a"), b = ksa_st_find(&f, "b.weight");
        assert_true(a >= 0 && b >= 0);
        assert_int_equal(f.tensors[a].ndim, 2);
        assert_int_equal(f.tensors[a].shape[1], 3);
        float got[6];
        assert_int_equal(ksa_st_read_f32(&f, (size_t)a, 0, 6, got), KSA_OK);
        for (int i = 0; i < 6; i++) {
            float want = dts[k] == KSA_ST_F32   ? values_a[i]
                         : dts[k] == KSA_ST_F16 ? ksa_f16_to_f32(ksa_f32_to_f16(values_a[i]))
                                                : ksa_bf16_to_f32(ksa_f32_to_bf16(values_a[i]));
            assert_int_equal(bits_of(got[i]), bits_of(want));
        }
        assert_int_equal(ksa_st_read_f32(&f, (size_t)b, 1, 2, got), KSA_OK); /* a range */
        assert_int_equal(bits_of(got[0]), bits_of(-0.0f));
        assert_true(got[1] == 0.5f);
        ksa_st_close(&f);
    }
}

/* A file of one F32 tensor "x" of 2 elements behind the given header text. */
static const char *file_with_header(const char *header, size_t data_bytes)
{
    const char *path = test_path_in(dir, "h.safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_bytes; i++)
        fputc(0, f);
    fclose(f);
    return path;
}

static void expect_refused(const char *header, size_t data_bytes, const char *needle)
{
    const char *path = file_with_header(header, data_bytes);
    ksa_st_file f;
    ksa_status st = ksa_st_open(&f, path);
    if (st == KSA_OK || !strstr(ksa_last_error(), needle) || !strstr(ksa_last_error(), path)) {
        fprintf(stderr, "header %s: status %d, message '%s', wanted '%s'\n", header, (int)st,
                st == KSA_OK ? "" : ksa_last_error(), needle);
        fail();
    }
}

static void malformed_headers_are_refused_naming_the_problem(void **state)
{
    (void)state;
    const char *ok = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    ksa_st_file f;
    assert_int_equal(ksa_st_open(&f, file_with_header(ok, 8)), KSA_OK);
    ksa_st_close(&f);
    expect_refused(ok, 6, "past the end of the file");       /* truncated data */
    expect_refused(ok, 12, "4 bytes after the last tensor"); /* trailing bytes */
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                   "a hole of 4 bytes before tensor 'x'");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, "overlaps tensor");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   "its shape and dtype F32 need 12");
    expect_refused("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                   "unknown dtype 'Q4'");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                   "not a non-negative integer");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                   "0 <= begin <= end");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets list");
    expect_refused("{\"__metadata__\":{\"a\":1},\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
                   "\"data_offsets\":[0,8]}}",
                   8, "__metadata__ value 'a' is not a string");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                   8, "tensor 'x' appears twice");
    expect_refused("{\"x\":1", 0, "not valid JSON");
    expect_refused("[1, 2]", 0, "does not start with '{'");
    expect_refused("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8,
                   "more than one JSON value");
    /* a header length beyond the file */
    const char *path = test_path_in(dir, "long.safetensors");
    FILE *fp = fopen(path, "wb");
    unsigned char len8[8] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
    fwrite(len8, 1, 8, fp);
    fputs("{}", fp);
    fclose(fp);
    assert_int_not_equal(ksa_st_open(&f, path), KSA_OK);
    assert_non_null(strstr(ksa_last_error(), "larger than the file"));
    /* shorter than the length field */
    fp = fopen(path, "wb");
    fputs("abc", fp);
    fclose(fp);
    assert_int_not_equal(ksa_st_open(&f, path), KSA_OK);
    assert_non_null(strstr(ksa_last_error(), "shorter than the 8-byte header length"));
}

static void non_float_tensors_are_not_read(void **state)
{
    (void)state;
    const char *path =
        file_with_header("{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    ksa_st_file f;
    assert_int_equal(ksa_st_open(&f, path), KSA_OK);
    float out[2];
    assert_int_not_equal(ksa_st_read_f32(&f, 0, 0, 2, out), KSA_OK);
    assert_non_null(strstr(ksa_last_error(), "tensor 'i' has dtype I32"));
    ksa_st_close(&f);
}

/* ---- the checkpoint's tokenizer.json ---------------------------------------------------- */
static void tokenizer_identity_is_xxh3_64_of_the_bytes(void **state)
{
    (void)state;
    char id[KSA_CKPT_TOKENIZER_ID];
    ksa_ckpt_tokenizer_identity((const unsigned char *)"", 0, id);
    assert_string_equal(id, "bpe-2d06800538d394c2"); /* XXH3_64bits of no bytes */
    ksa_ckpt_tokenizer_identity((const unsigned char *)"{}", 2, id);
    assert_int_equal(strlen(id), 20);
    assert_string_not_equal(id, "bpe-2d06800538d394c2");
}

static void checkpoint_stores_tokenizer_json_verbatim(void **state)
{
    (void)state;
    ksa_model_config c;
    test_config_small(&c);
    ksa_model m;
    assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
    ksa_model_init_weights(&m, 3);
    static const unsigned char json[] = "{\"added_tokens\": [], \"x\": \"\\u00e9\0after a NUL\"}";
    size_t len = sizeof json - 1;
    ksa_ckpt_tokenizer tok = {.eot_id = 5, .json = json, .json_len = len};
    const char *path = test_path_in(dir, "tok.h5");
    assert_int_equal(ksa_ckpt_write_model_tokenizer(path, &c, &m.params, &tok), KSA_OK);
    unsigned char *got;
    size_t got_len;
    assert_int_equal(ksa_ckpt_read_tokenizer_json(path, &got, &got_len), KSA_OK);
    assert_int_equal(got_len, len);
    assert_memory_equal(got, json, len);
    free(got);
    char type[64], id[KSA_CKPT_TOKENIZER_ID];
    int eot;
    assert_int_equal(ksa_ckpt_read_tokenizer(path, type, sizeof type), KSA_OK);
    ksa_ckpt_tokenizer_identity(json, len, id);
    assert_string_equal(type, id);
    assert_int_equal(ksa_ckpt_read_eot_id(path, &eot), KSA_OK);
    assert_int_equal(eot, 5);
    /* a file with tokenizer.json is version 3; one without stays 2, and has none to read */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    long long v = 0;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a);
    H5Fclose(f);
    assert_int_equal(v, 3);
    const char *plain = test_path_in(dir, "plain.h5");
    assert_int_equal(ksa_ckpt_write_model(plain, &c, &m.params, 256), KSA_OK);
    assert_int_equal(ksa_ckpt_read_tokenizer_json(plain, &got, &got_len), KSA_OK);
    assert_null(got);
    assert_int_equal(got_len, 0);
    f = H5Fopen(plain, H5F_ACC_RDONLY, H5P_DEFAULT);
    a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a);
    H5Fclose(f);
    assert_int_equal(v, 2);
    /* one byte changed behind the checksum's back: refused, naming the dataset */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/tokenizer/tokenizer.json", H5P_DEFAULT);
    unsigned char bytes[sizeof json];
    assert_true(H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes) >= 0);
    bytes[3] ^= 1;
    assert_true(H5Dwrite(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    assert_int_not_equal(ksa_ckpt_read_tokenizer_json(path, &got, &got_len), KSA_OK);
    assert_non_null(
        strstr(ksa_last_error(), "/tokenizer/tokenizer.json does not match its checksum"));
    assert_int_not_equal(ksa_ckpt_read_params(path, &m.params, 0), KSA_OK); /* the verifier too */
    assert_non_null(strstr(ksa_last_error(), "/tokenizer/tokenizer.json does not match"));
    ksa_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_half_widens_exactly_and_narrows_back),
        cmocka_unit_test(float_to_half_rounds_to_nearest_even),
        cmocka_unit_test(bfloat16_rounds_to_nearest_even_and_widens_exactly),
        cmocka_unit_test(written_files_read_back_in_every_dtype),
        cmocka_unit_test(malformed_headers_are_refused_naming_the_problem),
        cmocka_unit_test(non_float_tensors_are_not_read),
        cmocka_unit_test(tokenizer_identity_is_xxh3_64_of_the_bytes),
        cmocka_unit_test(checkpoint_stores_tokenizer_json_verbatim),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
