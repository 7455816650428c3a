/* test_bpe.c - the byte-level BPE tokenizer (bpe.h) and the tokenizer interface (tok.h) on
 * small tokenizer.json files made here: merge order, added tokens, invalid UTF-8, NFC, the
 * identity word, long runs without quadratic time, and every refused kind of file. The
 * check against the real Qwen3 tokenizer and its JavaScript reference is tests/test_bpe.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <xxhash.h>

#include "ckpt/ckpt_tok.h"
#include "core/core.h"
#include "data/bpe.h"
#include "data/tok.h"
#include "data/tokenizer.h"
#include "bpeutil.h"
#include "datautil.h"

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)need + 1 > b->cap) {
        b->cap = 2 * (b->n + (size_t)need + 1);
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)need + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

/* A tokenizer.json: the 256 bytes (ids 0..255), then `merges` (a NULL-ended list of "a b",
 * spelt in the byte-level alphabet, each making the next id), then the added tokens
 * <|endoftext|>, <|end|> and <| (listed first). model/normalizer/pre: the JSON of those parts, NULL
 * for the defaults (BPE, NFC, Qwen's Sequence[Split, ByteLevel]). */
static char *make_json(const char *const *merges, const char *model_type, const char *normalizer,
                       const char *pre, const char *extra_model)
{
    sbuf b = {0};
    size_t n_merges = 0;
    while (merges && merges[n_merges])
        n_merges++;
    put(&b, "{\"version\": \"1.0\", \"added_tokens\": [");
    put(&b, "{\"id\": %zu, \"content\": \"<|\"},", 258 + n_merges); /* first, a prefix of both */
    put(&b,
        "{\"id\": %zu, \"content\": \"<|endoftext|>\", \"special\": true, \"lstrip\": false, "
        "\"rstrip\": false, \"single_word\": false, \"normalized\": false},",
        256 + n_merges);
    put(&b, "{\"id\": %zu, \"content\": \"<|end|>\"}], ", 257 + n_merges);
    put(&b, "\"normalizer\": %s, ", normalizer ? normalizer : "{\"type\": \"NFC\"}");
    put(&b, "\"pre_tokenizer\": %s, ",
        pre ? pre
            : "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
              "{\"Regex\": \"" QWEN_REGEX "\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
              "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}");
    put(&b, "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"%s\", %s",
        model_type ? model_type : "BPE", extra_model ? extra_model : "");
    put(&b, "\"vocab\": {");
    for (int c = 0; c < 256; c++) {
        char ch[8];
        bpe_byte_char(c, ch);
        put(&b, "\"%s\": %d,", ch, c);
    }
    for (size_t i = 0; i < n_merges; i++) {
        char tok[64]; /* the merge's two parts (byte-level already) joined */
        size_t k = 0;
        for (const char *p = merges[i]; *p; p++)
            if (*p != ' ')
                tok[k++] = *p;
        tok[k] = 0;
        put(&b, "\"%s\": %zu,", tok, 256 + i);
    }
    b.s[--b.n] = 0; /* the last comma */
    put(&b, "}, \"merges\": [");
    for (size_t i = 0; i < n_merges; i++)
        put(&b, "%s\"%s\"", i ? ", " : "", merges[i]);
    put(&b, "]}}");
    return b.s;
}

static ksa_bpe *open_json(const char *json)
{
    ksa_bpe *b = NULL;
    if (ksa_bpe_open_memory(&b, json, strlen(json), "test.json") != KSA_OK) {
        print_error("%s\n", ksa_last_error());
        fail();
    }
    return b;
}

/* The ids of text (n bytes) into ids (cleared first). */
static void encode(ksa_bpe *b, const void *text, size_t n, ksa_ids *ids)
{
    ksa_bpe_encoder *e = ksa_bpe_encoder_new(b);
    ids->n = 0;
    assert_int_equal(ksa_bpe_encode(e, text, n, ids), KSA_OK);
    ksa_bpe_encoder_free(e);
}

static void expect_ids(ksa_bpe *b, const char *text, const int32_t *want, size_t n_want)
{
    ksa_ids ids = {0};
    encode(b, text, strlen(text), &ids);
    if (ids.n != n_want) {
        print_error("'%s': %zu ids, want %zu\n", text, ids.n, n_want);
        fail();
    }
    for (size_t i = 0; i < n_want; i++)
        assert_int_equal(ids.v[i], want[i]);
    ksa_ids_free(&ids);
}

/* decode(encode(text)) as a malloc'ed string; *n its length. */
static char *round_trip(ksa_bpe *b, const void *text, size_t len, size_t *n)
{
    ksa_ids ids = {0};
    encode(b, text, len, &ids);
    *n = ksa_bpe_decode(b, NULL, 0, ids.v, ids.n, 0);
    char *out = malloc(*n + 1);
    assert_int_equal(ksa_bpe_decode(b, out, *n, ids.v, ids.n, 0), *n);
    out[*n] = 0;
    ksa_ids_free(&ids);
    return out;
}

static void merges_apply_lowest_rank_first_and_leftmost_among_equals(void **state)
{
    (void)state;
    /* ranks: ab 256, bc 257, "a a" 258 */
    const char *const m1[] = {"a b", "b c", "a a", NULL};
    char *json = make_json(m1, NULL, NULL, NULL, NULL);
    ksa_bpe *b = open_json(json);
    expect_ids(b, "abc", (const int32_t[]){256, 'c'}, 2);
    expect_ids(b, "aaa", (const int32_t[]){258, 'a'}, 2); /* leftmost pair first */
    expect_ids(b, "aab", (const int32_t[]){'a', 256}, 2); /* ab outranks aa */
    ksa_bpe_close(b);
    free(json);
    const char *const m2[] = {"b c", "a b", NULL}; /* bc first now */
    json = make_json(m2, NULL, NULL, NULL, NULL);
    b = open_json(json);
    expect_ids(b, "abc", (const int32_t[]){'a', 256}, 2);
    assert_int_equal(ksa_bpe_vocab_size(b), 256 + 2 + 3);
    assert_int_equal(ksa_bpe_eot(b), 258);
    ksa_bpe_close(b);
    free(json);
}

static void words_are_split_by_the_regex_and_merged_within_a_word_only(void **state)
{
    (void)state;
    /* "Ġ" is the byte-level space: " t" is a merge */
    const char *const m[] = {"t h", "th e", "\xc4\xa0 the", NULL};
    char *json = make_json(m, NULL, NULL, NULL, NULL);
    ksa_bpe *b = open_json(json);
    /* "the the": "the" | " the"; numbers one digit each; "'s" its own word */
    expect_ids(b, "the the", (const int32_t[]){257, 258}, 2);
    expect_ids(b, "12", (const int32_t[]){'1', '2'}, 2);
    expect_ids(b, "it's", (const int32_t[]){'i', 't', '\'', 's'}, 4);
    ksa_bpe_close(b);
    free(json);
}

static void added_tokens_match_the_longest_and_are_not_merged_into_words(void **state)
{
    (void)state;
    char *json = make_json(NULL, NULL, NULL, NULL, NULL);
    ksa_bpe *b = open_json(json);
    expect_ids(b, "a<|endoftext|>b", (const int32_t[]){'a', 256, 'b'}, 3);
    expect_ids(b, "<|end|><|endoftext|>", (const int32_t[]){257, 256}, 2);
    expect_ids(b, "<|endof", (const int32_t[]){258, 'e', 'n', 'd', 'o', 'f'}, 6);
    expect_ids(b, "|<|<", (const int32_t[]){'|', 258, '<'}, 3);
    int32_t both[] = {256, 'x', 257};
    char out[64];
    size_t n = ksa_bpe_decode(b, out, sizeof out, both, 3, 0);
    assert_int_equal(n, strlen("<|endoftext|>x<|end|>"));
    assert_memory_equal(out, "<|endoftext|>x<|end|>", n);
    n = ksa_bpe_decode(b, out, sizeof out, both, 3, 1); /* only special ones are skipped */
    assert_int_equal(n, strlen("x<|end|>"));
    assert_memory_equal(out, "x<|end|>", n);
    int32_t bad[] = {999};
    n = ksa_bpe_decode(b, out, sizeof out, bad, 1, 0);
    assert_memory_equal(out, "<|unknown_999|>", n);
    ksa_bpe_close(b);
    free(json);
}

static void invalid_utf8_becomes_one_replacement_per_maximal_invalid_subpart(void **state)
{
    (void)state;
    char *json = make_json(NULL, NULL, NULL, NULL, NULL);
    ksa_bpe *b = open_json(json);
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\x80z", "a\xEF\xBF\xBDz"},
        {"\xE2\x82z", "\xEF\xBF\xBDz"},                           /* truncated 3-byte */
        {"\xF0\x9F\x98", "\xEF\xBF\xBD"},                         /* truncated at end */
        {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
        {"\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* overlong */
        {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* > U+10FFFF */
        {"\xFF\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"ok \xE2\x82\xAC", "ok \xE2\x82\xAC"}, /* valid stays */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        char *got = round_trip(b, cases[i].in, strlen(cases[i].in), &n);
        assert_int_equal(n, strlen(cases[i].out));
        assert_memory_equal(got, cases[i].out, n);
        free(got);
    }
    ksa_bpe_close(b);
    free(json);
}

static void nfc_composes_when_the_file_asks_and_only_then(void **state)
{
    (void)state;
    char *json = make_json(NULL, NULL, NULL, NULL, NULL);
    ksa_bpe *b = open_json(json);
    size_t n;
    char *got = round_trip(b, "Cafe\xCC\x81!", 7, &n); /* e + U+0301 -> U+00E9 */
    assert_int_equal(n, 6);
    assert_memory_equal(got, "Caf\xC3\xA9!", 6);
    free(got);
    ksa_bpe_close(b);
    free(json);
    json = make_json(NULL, NULL, "null", NULL, NULL);
    b = open_json(json);
    got = round_trip(b, "Cafe\xCC\x81!", 7, &n);
    assert_int_equal(n, 7);
    free(got);
    ksa_bpe_close(b);
    free(json);
}

static void the_identity_is_bpe_and_the_xxh3_of_the_file_bytes(void **state)
{
    char *json = make_json(NULL, NULL, NULL, NULL, NULL);
    char want[32];
    snprintf(want, sizeof want, "bpe-%016llx", (unsigned long long)XXH3_64bits(json, strlen(json)));
    ksa_bpe *b = open_json(json);
    assert_string_equal(ksa_bpe_name(b), want);
    assert_int_equal(strlen(ksa_bpe_name(b)), KSA_BPE_NAME_LEN);
    size_t n;
    assert_memory_equal(ksa_bpe_json(b, &n), json, strlen(json));
    assert_int_equal(n, strlen(json));
    ksa_bpe_close(b);
    char path[DT_PATH_MAX];
    dt_write_str(dt_join(path, *state, "tokenizer.json"), json);
    ksa_tok *t = NULL;
    assert_int_equal(ksa_tok_open_file(&t, path), KSA_OK);
    assert_string_equal(ksa_tok_name(t), want);
    assert_int_equal(ksa_tok_vocab_size(t), 259);
    assert_int_equal(ksa_tok_eot(t), 256);
    ksa_tok_close(t);
    free(json);
}

static void the_byte_tokenizer_behind_the_interface_is_unchanged(void **state)
{
    (void)state;
    ksa_tok *t = ksa_tok_byte();
    assert_string_equal(ksa_tok_name(t), "byte");
    assert_int_equal(ksa_tok_vocab_size(t), KSA_TOKENIZER_MIN_VOCAB);
    assert_int_equal(ksa_tok_eot(t), KSA_TOKENIZER_EOT);
    assert_null(ksa_tok_bpe(t));
    ksa_tok_encoder *e = ksa_tok_encoder_new(t);
    ksa_ids ids = {0};
    const char text[] = "a\xff<|endoftext|>";
    assert_int_equal(ksa_tok_encode(e, text, sizeof text - 1, &ids), KSA_OK);
    assert_int_equal(ids.n, sizeof text - 1);
    for (size_t i = 0; i < ids.n; i++)
        assert_int_equal(ids.v[i], (unsigned char)text[i]);
    ksa_ids_push(&ids, KSA_TOKENIZER_EOT);
    char a[64], b[64];
    size_t na = ksa_tok_decode(t, a, sizeof a, ids.v, ids.n, 0);
    size_t nb = ksa_tokenizer_decode(b, sizeof b, ids.v, ids.n, 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    ksa_ids_free(&ids);
    ksa_tok_encoder_free(e);
    ksa_tok_close(t);
}

/* One megabyte of one character, no spaces: one word of a million symbols (or a million
 * words), merged in O(n log n): seconds would mean quadratic work. */
static void a_megabyte_run_of_one_character_encodes_fast_and_round_trips(void **state)
{
    (void)state;
    const char *const m[] = {"a a", "aa aa", "aaaa aaaa", "\xc4\x8a \xc4\x8a", NULL};
    char *json = make_json(m, NULL, NULL, NULL, NULL);
    ksa_bpe *b = open_json(json);
    static const char *const units[] = {"a", "\n", " ", "!", "7", "\xE6\x97\xA5", "e\xCC\x81"};
    const size_t N = (size_t)1 << 20;
    char *text = malloc(N + 8);
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t len = strlen(units[u]), n = 0;
        while (n + len <= N)
            memcpy(text + n, units[u], len), n += len;
        double t0 = ksa_now();
        size_t out_n;
        char *out = round_trip(b, text, n, &out_n);
        double secs = ksa_now() - t0;
        if (secs > 5) {
            print_error("1 MB of '%s' took %.1f s\n", units[u], secs);
            fail();
        }
        if (u < 6) { /* e + U+0301 comes back composed (NFC) */
            assert_int_equal(out_n, n);
            assert_memory_equal(out, text, n);
        } else {
            assert_int_equal(out_n, n / 3 * 2);
        }
        free(out);
    }
    ksa_ids ids = {0};
    memset(text, 'a', 1 << 20);
    encode(b, text, 1 << 20, &ids);
    assert_int_equal(ids.n, (1 << 20) / 8); /* all "aaaaaaaa" */
    ksa_ids_free(&ids);
    free(text);
    ksa_bpe_close(b);
    free(json);
}

#define BAD(json, ...)                                                                             \
    do {                                                                                           \
        ksa_bpe *b_ = (ksa_bpe *)1;                                                                \
        dt_expect_error(ksa_bpe_open_memory(&b_, (json), strlen(json), "bad.json"), KSA_EFORMAT,   \
                        "bad.json", __VA_ARGS__);                                                  \
        assert_null(b_);                                                                           \
    } while (0)

static void unsupported_or_broken_files_are_refused_naming_the_file_and_the_problem(void **state)
{
    (void)state;
    char *j = make_json(NULL, "WordPiece", NULL, NULL, NULL);
    BAD(j, "WordPiece", "byte-level BPE");
    free(j);
    j = make_json(NULL, "Unigram", NULL, NULL, NULL);
    BAD(j, "Unigram");
    free(j);
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}", "not valid JSON");
    BAD("{\"model\": {\"type\": \"BPE\", \"merges\": []}, \"pre_tokenizer\": {\"type\": "
        "\"ByteLevel\"}}",
        "model.vocab is missing");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
        "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
        "lacks the token of byte 0x00");
    BAD("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}, \"pre_tokenizer\": "
        "{\"type\": \"ByteLevel\"}}",
        "no valid id");
    const char *const unknown[] = {"a q", NULL};
    j = make_json(unknown, NULL, NULL, NULL, NULL);
    char *q = strstr(j, "\"aq\""); /* the merge's pair exists; its result does not */
    assert_non_null(q);
    q[2] = 'Z';
    BAD(j, "model.merges[0] makes a token that is not in the vocab");
    free(j);
    j = make_json(NULL, NULL, NULL, NULL, NULL);
    char *m = strstr(j, "\"merges\": [");
    assert_non_null(m);
    memcpy(m, "\"merger\"", 8); /* no merges key */
    BAD(j, "model.merges is missing");
    free(j);
    const char *const nonsense[] = {"a b", NULL};
    j = make_json(nonsense, NULL, NULL, NULL, NULL);
    m = strstr(j, "\"a b\"]");
    assert_non_null(m);
    memcpy(m, "\"a#b\"", 5);
    BAD(j, "model.merges[0] is not a pair of tokens of the vocab");
    free(j);
    j = make_json(NULL, NULL, NULL,
                  "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                  "{\"Regex\": \"(\\\\p{L}+\"}, \"behavior\": \"Isolated\"}, {\"type\": "
                  "\"ByteLevel\", \"use_regex\": false}]}",
                  NULL);
    BAD(j, "PCRE2 cannot compile the pre_tokenizer regex", "(\\p{L}+");
    free(j);
    j = make_json(NULL, NULL, "{\"type\": \"NFKC\"}", NULL, NULL);
    BAD(j, "unsupported normalizer 'NFKC'");
    free(j);
    j = make_json(NULL, NULL, NULL, "{\"type\": \"Whitespace\"}", NULL);
    BAD(j, "unsupported pre_tokenizer");
    free(j);
    j = make_json(NULL, NULL, NULL, NULL, "\"continuing_subword_prefix\": \"##\", ");
    BAD(j, "continuing_subword_prefix");
    free(j);
    j = make_json(NULL, NULL, NULL, NULL, NULL);
    m = strstr(j, "<|endoftext|>");
    memcpy(m, "<|notthe|end|", 13);
    BAD(j, "no end-of-text added token");
    free(j);
    ksa_bpe *b = (ksa_bpe *)1;
    dt_expect_error(ksa_bpe_open_file(&b, "/nonexistent/tokenizer.json"), KSA_EIO,
                    "/nonexistent/tokenizer.json");
    assert_null(b);
}

/* What a model reads text with (ckpt_tok.h): the byte tokenizer for "byte" with a vocabulary
 * of at least 257; for "bpe-<hex>" the tokenizer.json given, which must be that tokenizer and
 * fit the vocabulary; any other name, or a BPE name without its file, is refused. */
static void a_model_opens_the_tokenizer_it_was_trained_on(void **state)
{
    (void)state;
    ksa_tok *t = (ksa_tok *)1;
    assert_int_equal(ksa_tok_for_model(&t, "byte", NULL, 0, 257, "model m"), KSA_OK);
    assert_null(ksa_tok_bpe(t));
    assert_int_equal(ksa_tok_eot(t), KSA_TOKENIZER_EOT);
    ksa_tok_close(t);
    dt_expect_error(ksa_tok_for_model(&t, "byte", NULL, 0, 256, "model m"), KSA_EINVAL, "257");
    assert_null(t);
    dt_expect_error(ksa_tok_for_model(&t, "unknown", NULL, 0, 300, "model m"), KSA_EINVAL,
                    "model m was trained on ids of the 'unknown' tokenizer");
    assert_null(t);

    const char *const m[] = {"a b", NULL};
    char *json = make_json(m, NULL, NULL, NULL, NULL);
    size_t n = strlen(json);
    char name[KSA_BPE_NAME_LEN + 1];
    snprintf(name, sizeof name, "bpe-%016llx", (unsigned long long)XXH3_64bits(json, n));
    /* 256 bytes, 1 merge, 3 added tokens: ids 0..259 */
    assert_int_equal(ksa_tok_for_model(&t, name, (const unsigned char *)json, n, 260, "model m"),
                     KSA_OK);
    assert_non_null(ksa_tok_bpe(t));
    assert_string_equal(ksa_tok_name(t), name);
    assert_int_equal(ksa_tok_eot(t), 257);
    ksa_tok_close(t);
    dt_expect_error(ksa_tok_for_model(&t, name, (const unsigned char *)json, n, 259, "model m"),
                    KSA_EINVAL, "model m has vocab_size 259, but its tokenizer");
    assert_null(t);
    dt_expect_error(ksa_tok_for_model(&t, name, NULL, 0, 260, "model m"), KSA_EINVAL,
                    "holds no /tokenizer/tokenizer.json");
    assert_null(t);
    name[5] = name[5] == '0' ? '1' : '0'; /* another file's name */
    dt_expect_error(ksa_tok_for_model(&t, name, (const unsigned char *)json, n, 260, "model m"),
                    KSA_EINVAL, "but its tokenizer.json is 'bpe-");
    assert_null(t);
    free(json);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(merges_apply_lowest_rank_first_and_leftmost_among_equals),
        T(words_are_split_by_the_regex_and_merged_within_a_word_only),
        T(added_tokens_match_the_longest_and_are_not_merged_into_words),
        T(invalid_utf8_becomes_one_replacement_per_maximal_invalid_subpart),
        T(nfc_composes_when_the_file_asks_and_only_then),
        T(the_identity_is_bpe_and_the_xxh3_of_the_file_bytes),
        T(the_byte_tokenizer_behind_the_interface_is_unchanged),
        T(a_megabyte_run_of_one_character_encodes_fast_and_round_trips),
        T(unsupported_or_broken_files_are_refused_naming_the_file_and_the_problem),
        T(a_model_opens_the_tokenizer_it_was_trained_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
