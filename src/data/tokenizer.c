/* tokenizer.c - byte-level tokenizer: see tokenizer.h. */
#include "tokenizer.h"

#include <stdio.h>
#include <string.h>

void ksa_tokenizer_encode(int32_t *ids, const void *bytes, size_t n)
{
    const unsigned char *b = bytes;
    for (size_t i = 0; i < n; i++)
        ids[i] = b[i];
}

/* Copies len bytes of s to out + at as far as cap allows; returns at + len. */
static size_t put_bytes(char *out, size_t cap, size_t at, const char *s, size_t len)
{
    if (at < cap)
        memcpy(out + at, s, len < cap - at ? len : cap - at);
    return at + len;
}

size_t ksa_tokenizer_decode(char *out, size_t cap, const int32_t *ids, size_t n, unsigned flags)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        KSA_ASSERT(id >= 0, "decode: token %zu has the negative id %d", i, (int)id);
        if (id < 256) {
            if (at < cap)
                out[at] = (char)(unsigned char)id;
            at++;
        } else if (!(flags & KSA_TOKENIZER_SKIP_SPECIAL)) {
            char marker[32];
            int len = id == KSA_TOKENIZER_EOT
                          ? snprintf(marker, sizeof marker, "%s", KSA_TOKENIZER_EOT_MARKER)
                          : snprintf(marker, sizeof marker, "<|special_%d|>", (int)id);
            at = put_bytes(out, cap, at, marker, (size_t)len);
        }
    }
    return at;
}

ksa_status ksa_tokenizer_check_vocab(size_t vocab_size)
{
    if (vocab_size < KSA_TOKENIZER_MIN_VOCAB)
        return ksa_fail(KSA_EINVAL,
                        "vocab_size %zu is too small for the byte-level tokenizer: it needs at "
                        "least %d (256 bytes + end-of-text)",
                        vocab_size, KSA_TOKENIZER_MIN_VOCAB);
    if (vocab_size > (size_t)INT32_MAX)
        return ksa_fail(KSA_EINVAL, "vocab_size %zu does not fit token ids of int32", vocab_size);
    return KSA_OK;
}

ksa_status ksa_tokenizer_check_name(const char *name, const char *what)
{
    if (!strcmp(name, KSA_TOKENIZER_NAME))
        return KSA_OK;
    return ksa_fail(KSA_EINVAL,
                    "%s was trained on ids of the '%s' tokenizer, but ksa encodes and decodes text "
                    "with the byte tokenizer only: its text would be garbage",
                    what, name);
}
