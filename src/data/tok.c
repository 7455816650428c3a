/* tok.c - the byte tokenizer and BPE behind one interface: see tok.h. */
#include "data/tok.h"

#include "data/tokenizer.h"

struct ksa_tok {
    ksa_bpe *bpe; /* NULL: the byte tokenizer */
};

struct ksa_tok_encoder {
    const ksa_tok *t;
    ksa_bpe_encoder *bpe;
};

ksa_tok *ksa_tok_byte(void)
{
    return ksa_alloc_zero(sizeof(ksa_tok));
}

ksa_status ksa_tok_open_file(ksa_tok **out, const char *path)
{
    ksa_bpe *b;
    *out = NULL;
    KSA_TRY(ksa_bpe_open_file(&b, path));
    *out = ksa_alloc_zero(sizeof **out);
    (*out)->bpe = b;
    return KSA_OK;
}

ksa_status ksa_tok_open_memory(ksa_tok **out, const void *json, size_t n, const char *what)
{
    ksa_bpe *b;
    *out = NULL;
    KSA_TRY(ksa_bpe_open_memory(&b, json, n, what));
    *out = ksa_alloc_zero(sizeof **out);
    (*out)->bpe = b;
    return KSA_OK;
}

void ksa_tok_close(ksa_tok *t)
{
    if (!t)
        return;
    ksa_bpe_close(t->bpe);
    ksa_free(t);
}

const char *ksa_tok_name(const ksa_tok *t)
{
    return t->bpe ? ksa_bpe_name(t->bpe) : KSA_TOKENIZER_NAME;
}

size_t ksa_tok_vocab_size(const ksa_tok *t)
{
    return t->bpe ? ksa_bpe_vocab_size(t->bpe) : KSA_TOKENIZER_MIN_VOCAB;
}

int32_t ksa_tok_eot(const ksa_tok *t)
{
    return t->bpe ? ksa_bpe_eot(t->bpe) : KSA_TOKENIZER_EOT;
}

const ksa_bpe *ksa_tok_bpe(const ksa_tok *t)
{
    return t->bpe;
}

ksa_tok_encoder *ksa_tok_encoder_new(const ksa_tok *t)
{
    ksa_tok_encoder *e = ksa_alloc_zero(sizeof *e);
    e->t = t;
    if (t->bpe)
        e->bpe = ksa_bpe_encoder_new(t->bpe);
    return e;
}

void ksa_tok_encoder_free(ksa_tok_encoder *e)
{
    if (!e)
        return;
    ksa_bpe_encoder_free(e->bpe);
    ksa_free(e);
}

ksa_status ksa_tok_encode(ksa_tok_encoder *e, const void *text, size_t n, ksa_ids *ids)
{
    if (e->bpe)
        return ksa_bpe_encode(e->bpe, text, n, ids);
    ksa_ids_reserve(ids, n);
    ksa_tokenizer_encode(ids->v + ids->n, text, n);
    ids->n += n;
    return KSA_OK;
}

size_t ksa_tok_decode(const ksa_tok *t, char *out, size_t cap, const int32_t *ids, size_t n,
                      unsigned flags)
{
    if (t->bpe)
        return ksa_bpe_decode(t->bpe, out, cap, ids, n, (flags & KSA_TOKENIZER_SKIP_SPECIAL) != 0);
    return ksa_tokenizer_decode(out, cap, ids, n, flags);
}
