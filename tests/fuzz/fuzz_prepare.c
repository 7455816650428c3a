/* fuzz_prepare.c - `ksa prepare`'s text input (data/prepare.c): documents of any bytes into
 * token files, split by whole documents, read back with the token-file reader.
 *
 * Input: flags (a byte: bits 0-1 the number of documents - 1, bit 2 a vocabulary over 65536,
 * so uint32 ids), the validation fraction (a byte: percent, mod 100), the seed (a byte), then
 * the documents: each but the last after a 2-byte length (mod the bytes left + 1), the last
 * taking the rest.
 * Properties: every outcome is a status; when prepare succeeds, the training and validation
 * files hold exactly the documents that ksa_prepare_goes_to_validation sends there, in
 * order, each as its bytes and an end-of-text.                                           */
#include <stdlib.h>
#include <string.h>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "fuzzutil.h"

enum { MAX_DOCS = 4 };

/* The file at path holds the documents with to_val == want, each its bytes and end-of-text
 * (an empty or absent file when there are none). */
static void check_file(const char *path, size_t vocab, const uint8_t **doc, const size_t *len,
                       const int *to_val, size_t n_docs, int want)
{
    size_t expected = 0;
    for (size_t d = 0; d < n_docs; d++)
        expected += to_val[d] == want ? len[d] + 1 : 0;
    if (expected == 0)
        return; /* written empty: the token-file reader refuses empty files */
    ksa_tokfile f;
    fuzz_check(ksa_tokfile_open(&f, path, KSA_DTYPE_AUTO, vocab) == KSA_OK, "%s", ksa_last_error());
    fuzz_check(f.n_tokens == expected, "%s: %zu tokens, expected %zu", path, f.n_tokens, expected);
    fuzz_check(!strcmp(f.tokenizer, KSA_TOKENIZER_NAME), "tokenizer '%s'", f.tokenizer);
    size_t t = 0;
    for (size_t d = 0; d < n_docs; d++) {
        if (to_val[d] != want)
            continue;
        for (size_t i = 0; i < len[d]; i++, t++)
            fuzz_check(ksa_tokfile_get(&f, t) == doc[d][i], "%s token %zu", path, t);
        fuzz_check(ksa_tokfile_get(&f, t) == KSA_TOKENIZER_EOT, "%s token %zu", path, t);
        t++;
    }
    ksa_tokfile_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    unsigned flags = fuzz_byte(&in);
    size_t n_docs = 1 + (flags & 3);
    ksa_prepare_options o;
    ksa_prepare_defaults(&o);
    o.vocab_size = flags & 4 ? 70000 : KSA_TOKENIZER_MIN_VOCAB;
    o.val_fraction = (fuzz_byte(&in) % 100) / 100.0;
    o.seed = fuzz_byte(&in);
    o.progress = NULL;

    const uint8_t *doc[MAX_DOCS];
    size_t len[MAX_DOCS];
    int to_val[MAX_DOCS];
    char names[MAX_DOCS][512];
    const char *inputs[MAX_DOCS];
    for (size_t d = 0; d < n_docs; d++) {
        size_t n = in.n;
        if (d + 1 < n_docs) {
            n = fuzz_u16(&in); /* a statement of its own: in.n is read after the bytes */
            n %= in.n + 1;
        }
        doc[d] = in.p;
        len[d] = n;
        in.p += n, in.n -= n;
        char name[32];
        snprintf(name, sizeof name, "doc%zu.txt", d);
        inputs[d] = fuzz_path(names[d], sizeof names[d], name);
        fuzz_write_file(inputs[d], doc[d], len[d]);
        to_val[d] = ksa_prepare_goes_to_validation(o.seed, d, o.val_fraction);
    }
    char out[512];
    o.inputs = inputs;
    o.n_inputs = n_docs;
    o.out = fuzz_path(out, sizeof out, "prepared.bin");
    ksa_prepare_result r;
    if (ksa_prepare_run(&o, &r) != KSA_OK)
        return 0;
    fuzz_check(r.n_train + r.n_val == r.n_bytes + n_docs, "%zu + %zu tokens of %zu bytes",
               r.n_train, r.n_val, r.n_bytes);
    check_file(o.out, o.vocab_size, doc, len, to_val, n_docs, 0);
    char *val = ksa_prepare_val_path(o.out);
    check_file(val, o.vocab_size, doc, len, to_val, n_docs, 1);
    ksa_free(val);
    return 0;
}
