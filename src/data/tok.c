/* tok.c - the byte tokenizer and BPE behind one interface: see tok.h. */
#include "data/tok.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "data/path.h"
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

/* The first word of <path>.tokenizer into out ("" when there is none). */
static void sidecar_word(const char *path, char *out, size_t cap)
{
    out[0] = 0;
    char *side = ksa_path_concat(path, ".tokenizer");
    FILE *fp = fopen(side, "rb");
    ksa_free(side);
    if (!fp)
        return;
    char buf[128];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    size_t a = 0, b;
    while (a < n && isspace((unsigned char)buf[a]))
        a++;
    for (b = a; b < n && isgraph((unsigned char)buf[b]); b++)
        ;
    snprintf(out, cap, "%.*s", (int)(b - a), buf + a);
}

ksa_status ksa_tok_open_data(ksa_tok **out, const char *path, size_t V)
{
    char name[64];
    *out = NULL;
    sidecar_word(path, name, sizeof name);
    if (strncmp(name, "bpe-", 4) != 0)
        return KSA_OK;
    char *json = ksa_path_concat(path, ".tokenizer.json");
    ksa_status st = KSA_OK;
    ksa_tok *t = NULL;
    if (!ksa_path_is_file(json))
        st = ksa_fail(KSA_EIO,
                      "the token file '%s' was made by the BPE tokenizer %s, but its copy of "
                      "that tokenizer, '%s', is missing (ksa prepare --tokenizer writes it)",
                      path, name, json);
    else if ((st = ksa_tok_open_file(&t, json)) == KSA_OK) {
        if (strcmp(ksa_tok_name(t), name) != 0)
            st = ksa_fail(KSA_EINVAL,
                          "'%s' is the tokenizer %s, not %s, which its token file '%s' names", json,
                          ksa_tok_name(t), name, path);
        else if (V < ksa_tok_vocab_size(t))
            st = ksa_fail(KSA_EINVAL,
                          "the model's vocab_size %zu is smaller than the vocabulary of the "
                          "tokenizer %s of the data '%s' (%zu ids, '%s'): give vocab_size >= %zu",
                          V, name, path, ksa_tok_vocab_size(t), json, ksa_tok_vocab_size(t));
    }
    ksa_free(json);
    if (st != KSA_OK) {
        ksa_tok_close(t);
        return st;
    }
    *out = t;
    return KSA_OK;
}

ksa_status ksa_tok_check_data(const char *path, size_t V, int32_t *eot)
{
    ksa_tok *t;
    if (eot)
        *eot = KSA_TOKENIZER_EOT;
    KSA_TRY(ksa_tok_open_data(&t, path, V));
    if (t && eot)
        *eot = ksa_tok_eot(t);
    ksa_tok_close(t);
    return KSA_OK;
}

void ksa_tok_text_bytes(const ksa_tok *t, uint32_t *bytes, size_t V)
{
    size_t tv = ksa_tok_vocab_size(t);
    for (size_t i = 0; i < V; i++) {
        int32_t id = (int32_t)i;
        bytes[i] =
            i < tv ? (uint32_t)ksa_tok_decode(t, NULL, 0, &id, 1, KSA_TOKENIZER_SKIP_SPECIAL) : 0;
    }
}
