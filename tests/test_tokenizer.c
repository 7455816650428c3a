/* test_tokenizer.c - the byte-level tokenizer: exact round trips, special-token markers. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"

/* encode then decode; checks the ids are the bytes and the text comes back unchanged. */
static void expect_round_trip(const unsigned char *text, size_t n)
{
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    char *back = malloc(n + 1);
    assert_non_null(ids);
    assert_non_null(back);
    ksa_tokenizer_encode(ids, text, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], text[i]);
    assert_int_equal(ksa_tokenizer_decode(NULL, 0, ids, n, 0), n);
    assert_int_equal(ksa_tokenizer_decode(back, n, ids, n, 0), n);
    assert_memory_equal(back, text, n);
    free(ids);
    free(back);
}

static void utf8_text_round_trips_exactly(void **state)
{
    (void)state;
    const char *text = "In the beginning God created the heaven and the earth.\n"
                       "Grüße aus Köln, naïve café, Ελληνικά, русский, 日本語のテキスト, "
                       "עברית, emoji 🙂🚀, and a combining e\xcc\x81.\r\n\ttab";
    expect_round_trip((const unsigned char *)text, strlen(text));
}

static void every_byte_value_round_trips_including_invalid_utf8(void **state)
{
    (void)state;
    unsigned char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (unsigned char)(i < 256 ? i : 255 - (i - 256)); /* 0..255 then 255..0, NULs too */
    expect_round_trip(all, sizeof all);
    const unsigned char broken[] = {0xC3, 0x28, 0xE2, 0x82, 0xFF, 0xFE, 0x80, 0x00, 0xF0};
    expect_round_trip(broken, sizeof broken);
}

static void end_of_text_decodes_to_a_marker_or_is_skipped(void **state)
{
    (void)state;
    int32_t ids[] = {'a', KSA_TOKENIZER_EOT, 'b', 300, 'c'};
    char out[64];
    size_t n = ksa_tokenizer_decode(out, sizeof out, ids, 5, 0);
    const char *want = "a<|endoftext|>b<|special_300|>c";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    n = ksa_tokenizer_decode(out, sizeof out, ids, 5, KSA_TOKENIZER_SKIP_SPECIAL);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "abc", 3);
    assert_string_equal(KSA_TOKENIZER_EOT_MARKER, "<|endoftext|>");
    assert_int_equal(KSA_TOKENIZER_EOT, 256);
}

static void decode_reports_the_full_length_and_never_writes_past_cap(void **state)
{
    (void)state;
    int32_t ids[] = {'x', 'y', KSA_TOKENIZER_EOT, 'z'};
    char out[8];
    memset(out, '#', sizeof out);
    size_t n = ksa_tokenizer_decode(out, 5, ids, 4, 0); /* "xy<|e" fits, the rest is cut */
    assert_int_equal(n, 2 + strlen(KSA_TOKENIZER_EOT_MARKER) + 1);
    assert_memory_equal(out, "xy<|e###", 8);
}

static void vocab_must_hold_the_bytes_and_end_of_text(void **state)
{
    (void)state;
    assert_int_equal(ksa_tokenizer_check_vocab(257), KSA_OK);
    assert_int_equal(ksa_tokenizer_check_vocab(50304), KSA_OK);
    assert_int_equal(ksa_tokenizer_check_vocab(256), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "vocab_size 256"));
    assert_non_null(strstr(ksa_last_error(), "at least 257"));
    assert_int_equal(ksa_tokenizer_check_vocab(0), KSA_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_text_round_trips_exactly),
        cmocka_unit_test(every_byte_value_round_trips_including_invalid_utf8),
        cmocka_unit_test(end_of_text_decodes_to_a_marker_or_is_skipped),
        cmocka_unit_test(decode_reports_the_full_length_and_never_writes_past_cap),
        cmocka_unit_test(vocab_must_hold_the_bytes_and_end_of_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
