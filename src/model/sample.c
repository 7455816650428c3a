/* sample.c - text generation by full recompute (sample.h).
 *
 * Per new token: the prefix plus one dummy target (the forward reads T + 1 tokens per row,
 * inputs then targets; the dummy's loss is computed and ignored) goes through
 * ksa_model_forward on a no-grad tape; row T - 1 of the logits [T, V] scores the next token.
 * The summary rows of every complete chunk of the prefix are rebuilt by each forward, so a
 * KSA model sees exactly what training shows it for a sequence of that length.             */
#include "sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/tokenizer.h"

/* ---- deterministic draws ---------------------------------------------------------------- */
/* ---- choosing one token ----------------------------------------------------------------- */
typedef struct {
    double logit;
    int32_t id;
} candidate;

/* Larger logits first; equal logits: lower ids first (so top-k ties are deterministic). */
static int by_logit_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* logits: [Vs], the scores of the ids that may be generated.   cand: [Vs] scratch.
 * temperature 0: argmax (first maximum); else one draw from softmax(logits / temperature)
 * over the top_k largest (0 = all), consuming one uniform of *rng.                        */
static ksa_status choose_token(int32_t *id, const ksa_real *logits, size_t Vs, double temperature,
                               size_t top_k, ksa_rng *rng, candidate *cand, size_t position)
{
    size_t best = 0;
    for (size_t v = 0; v < Vs; v++) {
        if (!isfinite((double)logits[v]))
            return ksa_fail(KSA_ENUMERIC,
                            "sampling: the logit of id %zu is %g after %zu tokens (the model's "
                            "weights are not finite?)",
                            v, (double)logits[v], position);
        if (logits[v] > logits[best])
            best = v;
    }
    if (temperature == 0) {
        *id = (int32_t)best;
        return KSA_OK;
    }
    size_t k = top_k == 0 || top_k > Vs ? Vs : top_k;
    for (size_t v = 0; v < Vs; v++)
        cand[v] = (candidate){.logit = (double)logits[v], .id = (int32_t)v};
    if (k < Vs)
        qsort(cand, Vs, sizeof *cand, by_logit_desc);
    /* (l - max) / temperature <= 0: no overflow however small the temperature */
    double top = (double)logits[best], sum = 0;
    for (size_t i = 0; i < k; i++) {
        cand[i].logit = exp((cand[i].logit - top) / temperature);
        sum += cand[i].logit;
    }
    double u = ksa_rng_uniform(rng) * sum, acc = 0;
    for (size_t i = 0; i < k; i++) {
        acc += cand[i].logit;
        if (u < acc) {
            *id = cand[i].id;
            return KSA_OK;
        }
    }
    *id = cand[k - 1].id; /* u within rounding of sum */
    return KSA_OK;
}

/* ---- generation ------------------------------------------------------------------------- */
ksa_status ksa_sample(ksa_model *m, const int32_t *prompt, size_t n_prompt, int32_t *out,
                      size_t n_new, double temperature, size_t top_k, uint64_t seed, size_t *n_out)
{
    size_t V = m->V;
    int has_eot = V > KSA_TOKENIZER_EOT;
    size_t Vs = has_eot ? KSA_TOKENIZER_EOT + 1 : V; /* ids that may be generated */
    *n_out = 0;
    if (!(temperature >= 0) || !isfinite(temperature))
        return ksa_fail(KSA_EINVAL, "sampling temperature must be finite and >= 0, got %g",
                        temperature);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || (size_t)prompt[i] >= V)
            return ksa_fail(KSA_EINVAL,
                            "prompt token %zu has id %d, outside the vocabulary [0, %zu)", i,
                            (int)prompt[i], V);
    if (n_prompt == 0 && !has_eot)
        return ksa_fail(KSA_EINVAL,
                        "an empty prompt starts from end-of-text (id %d), which a vocabulary "
                        "of %zu does not have: give a prompt",
                        KSA_TOKENIZER_EOT, V);
    if (n_new == 0)
        return KSA_OK;

    size_t n0 = n_prompt ? n_prompt : 1;
    size_t T_max = n0 + n_new - 1; /* the last token is drawn from a prefix this long */
    int32_t *tokens = ksa_alloc((T_max + 1) * sizeof *tokens); /* [T_max inputs + 1 target] */
    candidate *cand = ksa_alloc(Vs * sizeof *cand);
    if (n_prompt)
        memcpy(tokens, prompt, n_prompt * sizeof *tokens);
    else
        tokens[0] = KSA_TOKENIZER_EOT;
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(m, 1, T_max));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    tp.recording = 0;

    ksa_rng rng = ksa_rng_at(seed);
    ksa_status st = KSA_OK;
    size_t T = n0, n = 0;
    while (n < n_new) {
        ksa_tape_reset(&tp);
        tokens[T] = 0; /* dummy target */
        ksa_tensor *logits;
        ksa_model_forward(m, &tp, tokens, 1, T, 1.0, NULL, &logits);
        int32_t id = 0;
        st = choose_token(&id, logits->data + (T - 1) * V, Vs, temperature, top_k, &rng, cand, T);
        if (st != KSA_OK || (has_eot && id == KSA_TOKENIZER_EOT))
            break;
        out[n++] = id;
        tokens[T++] = id;
    }
    *n_out = n;
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ksa_free(cand);
    ksa_free(tokens);
    return st;
}

ksa_status ksa_sample_text(ksa_model *m, const char *prompt, size_t n_new, double temperature,
                           size_t top_k, uint64_t seed, FILE *out)
{
    size_t n_prompt = prompt ? strlen(prompt) : 0, n_gen = 0;
    int32_t *ids = ksa_alloc((n_prompt + n_new + 1) * sizeof *ids); /* prompt, then sample */
    ksa_tokenizer_encode(ids, prompt, n_prompt);
    ksa_status st =
        ksa_sample(m, ids, n_prompt, ids + n_prompt, n_new, temperature, top_k, seed, &n_gen);
    if (st == KSA_OK) {
        size_t len = ksa_tokenizer_decode(NULL, 0, ids, n_prompt + n_gen, 0);
        char *text = ksa_alloc(len + 1);
        ksa_tokenizer_decode(text, len, ids, n_prompt + n_gen, 0);
        errno = 0;
        if (fwrite(text, 1, len, out) != len || fflush(out) != 0)
            st = ksa_fail(KSA_EIO, "cannot write the sample: %s",
                          errno ? strerror(errno) : "write error");
        ksa_free(text);
    }
    ksa_free(ids);
    return st;
}
