/* fuzz_bpe.c - the byte-level BPE tokenizer (data/bpe.c): a tokenizer.json of any bytes
 * (cJSON, the checks of each part, PCRE2 compiling its regex), then any text through it
 * (invalid UTF-8, added tokens, NFC, the split, the merges) and back.
 *
 * Input: the tokenizer.json's length (2 bytes, mod the bytes left + 1), its bytes, then the
 * text (the rest).
 * Properties: every outcome is a status; an open tokenizer's name is "bpe-" and 16 hex
 * digits, its end-of-text id below its vocabulary size; every id of the text is below the
 * vocabulary size; decoding gives the same length with and without a buffer, and valid UTF-8
 * (invalid input bytes become U+FFFD, and merges only join what the text held).           */
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "fuzzutil.h"

/* Whether s[0..n) is valid UTF-8 (no surrogates, nothing above U+10FFFF, no overlongs). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80                 ? 1
                     : c >= 0xC2 && c <= 0xDF ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
        if (len == 0 || len > n - i)
            return 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
        for (size_t k = 1; k < len; k++, lo = 0x80, hi = 0xBF)
            if (s[i + k] < lo || s[i + k] > hi)
                return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    size_t json_n = fuzz_u16(&in) % (in.n + 1);
    const uint8_t *json = in.p;
    in.p += json_n, in.n -= json_n;
    ksa_bpe *b = NULL;
    if (ksa_bpe_open_memory(&b, json, json_n, "fuzz.json") != KSA_OK) {
        fuzz_check(b == NULL, "a failed open left a tokenizer");
        return 0;
    }
    const char *name = ksa_bpe_name(b);
    fuzz_check(strlen(name) == KSA_BPE_NAME_LEN && !strncmp(name, "bpe-", 4), "name '%s'", name);
    size_t V = ksa_bpe_vocab_size(b);
    fuzz_check(V >= 256 && ksa_bpe_eot(b) >= 0 && (size_t)ksa_bpe_eot(b) < V,
               "vocab_size %zu, eot %d", V, (int)ksa_bpe_eot(b));
    ksa_bpe_encoder *e = ksa_bpe_encoder_new(b);
    ksa_ids ids = {0};
    for (int pass = 0; pass < 2; pass++) { /* the second from the word cache */
        ids.n = 0;
        if (ksa_bpe_encode(e, in.p, in.n, &ids) != KSA_OK)
            break;
        for (size_t i = 0; i < ids.n; i++)
            fuzz_check(ids.v[i] >= 0 && (size_t)ids.v[i] < V, "id %zu is %d of %zu", i,
                       (int)ids.v[i], V);
        size_t n = ksa_bpe_decode(b, NULL, 0, ids.v, ids.n, 0);
        char *text = malloc(n + 1);
        fuzz_check(text != NULL, "out of memory");
        fuzz_check(ksa_bpe_decode(b, text, n, ids.v, ids.n, 0) == n, "decode lengths differ");
        /* added tokens are the file's own strings: only the rest must be valid UTF-8 */
        size_t plain = ksa_bpe_decode(b, NULL, 0, ids.v, ids.n, 1);
        if (plain == n)
            fuzz_check(valid_utf8((const unsigned char *)text, n),
                       "decoded text of %zu bytes is not valid UTF-8", n);
        free(text);
    }
    ksa_ids_free(&ids);
    ksa_bpe_encoder_free(e);
    ksa_bpe_close(b);
    return 0;
}
