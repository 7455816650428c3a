/* ckpt_tok.c - a checkpoint's tokenizer (ckpt_tok.h). */
#include "ckpt_tok.h"

#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "data/tokenizer.h"

ksa_status ksa_tok_for_model(ksa_tok **out, const char *type, const unsigned char *json, size_t n,
                             size_t V, const char *what)
{
    *out = NULL;
    if (strncmp(type, "bpe-", 4) != 0) {
        KSA_TRY(ksa_tokenizer_check_name(type, what));
        KSA_TRY(ksa_tokenizer_check_vocab(V));
        *out = ksa_tok_byte();
        return KSA_OK;
    }
    if (!json)
        return ksa_fail(KSA_EINVAL,
                        "%s was trained on ids of the tokenizer '%s', but holds no "
                        "/tokenizer/tokenizer.json to encode and decode text with",
                        what, type);
    char where[512];
    snprintf(where, sizeof where, "the tokenizer.json of %s", what);
    ksa_tok *t;
    KSA_TRY(ksa_tok_open_memory(&t, json, n, where));
    ksa_status st = KSA_OK;
    if (strcmp(ksa_tok_name(t), type) != 0)
        st = ksa_fail(KSA_EINVAL, "%s names its tokenizer '%s', but its tokenizer.json is '%s'",
                      what, type, ksa_tok_name(t));
    else if (ksa_tok_vocab_size(t) > V)
        st = ksa_fail(KSA_EINVAL,
                      "%s has vocab_size %zu, but its tokenizer '%s' has ids up to %zu: "
                      "the model cannot read them",
                      what, V, type, ksa_tok_vocab_size(t) - 1);
    if (st != KSA_OK) {
        ksa_tok_close(t);
        return st;
    }
    *out = t;
    return KSA_OK;
}

ksa_status ksa_ckpt_open_tok(ksa_tok **out, const char *path, size_t V)
{
    *out = NULL;
    char type[64], what[512];
    KSA_TRY(ksa_ckpt_read_tokenizer(path, type, sizeof type));
    snprintf(what, sizeof what, "checkpoint '%s'", path);
    unsigned char *json = NULL;
    size_t n = 0;
    if (!strncmp(type, "bpe-", 4))
        KSA_TRY(ksa_ckpt_read_tokenizer_json(path, &json, &n));
    ksa_status st = ksa_tok_for_model(out, type, json, n, V, what);
    free(json);
    return st;
}
