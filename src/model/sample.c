/* sample.c - text generation (sample.h): with the decoding KV cache (ksa_generate), and by
 * full recompute, the test oracle (ksa_sample_recompute).
 *
 * Both share everything but where the logits come from: the checks of a request, the choice
 * of a token from the logits of the ids that may be generated, and the stop rules. The cached
 * generator prefills every prompt into one decoder, then steps the unfinished sequences
 * together, one token each per step: logits [n_live, V], row i for live[i]. The oracle runs
 * ksa_model_forward on the prefix plus one dummy target (the forward reads T + 1 tokens per
 * row, inputs then targets; the dummy's loss is computed and ignored) and reads row T - 1 of
 * the logits [T, V]; the summary rows of every complete chunk of the prefix are rebuilt by
 * each forward, exactly what training shows a KSA model for a sequence of that length.    */
#include "sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/tok.h"
#include "data/tokenizer.h"

ksa_generate_options ksa_generate_defaults(void)
{
    return (ksa_generate_options){.max_new_tokens = 200,
                                  .temperature = 1.0,
                                  .top_k = 0,
                                  .top_p = 1.0,
                                  .seed = 0,
                                  .stop_ids = NULL,
                                  .n_stop_ids = 0,
                                  .on_token = NULL,
                                  .user = NULL};
}

const char *ksa_stop_reason_name(ksa_stop_reason r)
{
    switch (r) {
    case KSA_STOP_MAX_NEW_TOKENS:
        return "max_new_tokens";
    case KSA_STOP_ID:
        return "stop_id";
    case KSA_STOP_CALLBACK:
        return "callback";
    case KSA_STOP_MAX_POSITION_EMBEDDINGS:
        return "max_position_embeddings";
    }
    return "unknown";
}

/* ---- the request: which ids, which stops, checks --------------------------------------- */
typedef struct {
    size_t V;            /* vocabulary                                              */
    size_t Vs;           /* ids that may be generated: 0 .. Vs-1                    */
    int has_eot;         /* the vocabulary has the tokenizer's end-of-text          */
    int32_t eot[1];      /* its id: the default stop, and an empty prompt           */
    size_t max_pos;      /* max_position_embeddings: tokens a sequence may hold     */
    const int32_t *stop; /* [n_stop] the stop ids in force                          */
    size_t n_stop;
} rules;

/* The tokens prefilled for a prompt of n: an empty prompt is one end-of-text. */
static size_t prompt_tokens(size_t n)
{
    return n ? n : 1;
}

static ksa_status check_request(const ksa_model *m, size_t n_seq, const int32_t *const *prompts,
                                const size_t *prompt_lens, const ksa_generate_options *o, rules *r)
{
    r->V = m->V;
    if (o->tok) { /* its ids, end-of-text among them; ids past its vocabulary are summary ids */
        size_t tv = ksa_tok_vocab_size(o->tok);
        r->eot[0] = ksa_tok_eot(o->tok);
        r->has_eot = (size_t)r->eot[0] < m->V;
        r->Vs = tv < m->V ? tv : m->V;
    } else { /* the byte tokenizer: bytes and end-of-text, or every id of a toy vocabulary */
        r->eot[0] = KSA_TOKENIZER_EOT;
        r->has_eot = m->V > KSA_TOKENIZER_EOT;
        r->Vs = r->has_eot ? KSA_TOKENIZER_EOT + 1 : m->V;
    }
    r->max_pos = (size_t)m->config.max_position_embeddings;
    r->stop = o->stop_ids ? o->stop_ids : r->eot;
    r->n_stop = o->stop_ids ? o->n_stop_ids : (size_t)r->has_eot;
    if (!(o->temperature >= 0) || !isfinite(o->temperature))
        return ksa_fail(KSA_EINVAL, "sampling temperature must be finite and >= 0, got %g",
                        o->temperature);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return ksa_fail(KSA_EINVAL, "top_p must be in (0, 1] (1 = every token), got %g", o->top_p);
    for (size_t i = 0; i < r->n_stop; i++)
        if (r->stop[i] < 0 || (size_t)r->stop[i] >= r->V)
            return ksa_fail(KSA_EINVAL, "stop id %d is outside the vocabulary [0, %zu)",
                            (int)r->stop[i], r->V);
    for (size_t b = 0; b < n_seq; b++) {
        char what[48] = "the prompt";
        if (n_seq > 1)
            snprintf(what, sizeof what, "prompt %zu", b);
        for (size_t i = 0; i < prompt_lens[b]; i++)
            if (prompts[b][i] < 0 || (size_t)prompts[b][i] >= r->V)
                return ksa_fail(KSA_EINVAL,
                                "%s: token %zu has id %d, outside the vocabulary [0, %zu)", what, i,
                                (int)prompts[b][i], r->V);
        if (prompt_lens[b] == 0 && !r->has_eot)
            return ksa_fail(KSA_EINVAL,
                            "%s is empty: an empty prompt starts from end-of-text (id %d), "
                            "which a vocabulary of %zu does not have: give a prompt",
                            what, (int)r->eot[0], r->V);
        if (prompt_tokens(prompt_lens[b]) > r->max_pos)
            return ksa_fail(KSA_EINVAL,
                            "%s has %zu tokens, more than the model's max_position_embeddings "
                            "= %zu",
                            what, prompt_lens[b], r->max_pos);
    }
    return KSA_OK;
}

static int is_stop(const rules *r, int32_t id)
{
    for (size_t i = 0; i < r->n_stop; i++)
        if (r->stop[i] == id)
            return 1;
    return 0;
}

/* The generator of sequence b (sample.h). */
static ksa_rng sequence_rng(uint64_t seed, size_t b)
{
    return ksa_rng_at(b == 0 ? seed : ksa_mix64(seed + (uint64_t)b));
}

/* ---- choosing one token ----------------------------------------------------------------- */
typedef struct {
    double logit; /* then its unnormalised probability exp((logit - max) / temperature) */
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
 * over the top_k largest (0 = all), cut to the top_p nucleus, consuming one uniform of *rng.
 * position: the tokens before this one (for the message of a non-finite logit).          */
static ksa_status choose_token(int32_t *id, const ksa_real *logits, size_t Vs,
                               const ksa_generate_options *o, ksa_rng *rng, candidate *cand,
                               size_t position)
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
    if (o->temperature == 0) {
        *id = (int32_t)best;
        return KSA_OK;
    }
    size_t k = o->top_k == 0 || o->top_k > Vs ? Vs : o->top_k;
    for (size_t v = 0; v < Vs; v++)
        cand[v] = (candidate){.logit = (double)logits[v], .id = (int32_t)v};
    if (k < Vs || o->top_p < 1) /* both keep the likeliest first */
        qsort(cand, Vs, sizeof *cand, by_logit_desc);
    /* (l - max) / temperature <= 0: no overflow however small the temperature */
    double top = (double)logits[best], sum = 0;
    for (size_t i = 0; i < k; i++) {
        cand[i].logit = exp((cand[i].logit - top) / o->temperature);
        sum += cand[i].logit;
    }
    if (o->top_p < 1) { /* the nucleus: the first n whose mass reaches top_p of the k's */
        double need = o->top_p * sum, acc = 0;
        size_t n = 0;
        while (n < k && !(acc >= need))
            acc += cand[n++].logit;
        k = n;
        sum = acc; /* the same additions in the same order as the draw's below */
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

/* ---- stop rules ------------------------------------------------------------------------- */
/* A sequence with nothing to generate: max_new_tokens 0, or a prompt that fills the
 * positions. Returns 1 when it starts (prefill and a first token). */
static int starts(const rules *r, const ksa_generate_options *o, size_t n_prompt, ksa_generated *g)
{
    g->n = 0;
    g->stop_id = -1;
    g->stop = KSA_STOP_MAX_NEW_TOKENS;
    if (o->max_new_tokens == 0)
        return 0;
    if (prompt_tokens(n_prompt) >= r->max_pos) {
        g->stop = KSA_STOP_MAX_POSITION_EMBEDDINGS;
        return 0;
    }
    return 1;
}

/* Token id was chosen for sequence b, which holds T tokens (prompt + generated) before it.
 * Emits it unless it is a stop id; returns 1 when the sequence goes on (id must be fed). */
static int accept_token(const rules *r, const ksa_generate_options *o, size_t b, int32_t id,
                        size_t T, ksa_generated *g)
{
    if (is_stop(r, id)) {
        g->stop = KSA_STOP_ID;
        g->stop_id = id;
        return 0;
    }
    g->ids[g->n++] = id;
    if (o->on_token && o->on_token(o->user, b, id))
        g->stop = KSA_STOP_CALLBACK;
    else if (g->n == o->max_new_tokens)
        g->stop = KSA_STOP_MAX_NEW_TOKENS;
    else if (T + 1 == r->max_pos)
        g->stop = KSA_STOP_MAX_POSITION_EMBEDDINGS;
    else
        return 1;
    return 0;
}

/* ---- with the KV cache ------------------------------------------------------------------ */
/* ksa_generate once the request is checked: the sequences b with held[b] > 0 (their prompt
 * tokens) start; `longest` is the longest of their prompts. Fills out and s. */
static ksa_status generate_started(ksa_model *m, size_t n_seq, const int32_t *const *prompts,
                                   const size_t *prompt_lens, const ksa_generate_options *o,
                                   const rules *r, size_t longest, size_t *held, ksa_generated *out,
                                   ksa_generate_stats *s)
{
    /* the last token is never fed, so this is one more than needed: room, not a limit */
    size_t T_max = longest + o->max_new_tokens;
    if (T_max > r->max_pos || T_max < longest) /* (< : a huge max_new_tokens wrapped) */
        T_max = r->max_pos;
    ksa_decoder d;
    KSA_TRY(ksa_decoder_init(&d, m, n_seq, T_max, 0));
    size_t V = m->V;
    ksa_real *logits = ksa_alloc(n_seq * V * sizeof *logits); /* [n_live, V] */
    size_t *live = ksa_alloc(n_seq * sizeof *live);           /* [n_live] sequences going */
    int32_t *next = ksa_alloc(n_seq * sizeof *next);          /* [n_live] tokens to feed  */
    ksa_rng *rng = ksa_alloc(n_seq * sizeof *rng);
    candidate *cand = ksa_alloc(r->Vs * sizeof *cand);
    ksa_status st = KSA_OK;
    size_t n_live = 0;

    /* prefill each prompt, then choose its first token */
    for (size_t b = 0; b < n_seq && st == KSA_OK; b++) {
        if (held[b] == 0)
            continue;
        rng[b] = sequence_rng(o->seed, b);
        double t0 = ksa_now();
        st = ksa_decoder_prefill(&d, b, prompt_lens[b] ? prompts[b] : r->eot, held[b], logits);
        s->prefill_seconds += ksa_now() - t0;
        s->prompt_tokens += held[b];
        int32_t id = 0;
        if (st == KSA_OK)
            st = choose_token(&id, logits, r->Vs, o, &rng[b], cand, held[b]);
        if (st == KSA_OK && accept_token(r, o, b, id, held[b], &out[b])) {
            live[n_live] = b;
            next[n_live++] = id;
        }
    }
    /* then one step for every live sequence at a time; live[] stays in increasing order */
    while (n_live > 0 && st == KSA_OK) {
        double t0 = ksa_now();
        st = ksa_decoder_step(&d, n_live, live, next, logits);
        s->decode_seconds += ksa_now() - t0;
        if (st != KSA_OK)
            break;
        s->decode_steps++;
        s->decode_tokens += n_live;
        size_t still = 0;
        for (size_t i = 0; i < n_live && st == KSA_OK; i++) {
            size_t b = live[i];
            held[b]++;
            int32_t id = 0;
            st = choose_token(&id, logits + i * V, r->Vs, o, &rng[b], cand, held[b]);
            if (st == KSA_OK && accept_token(r, o, b, id, held[b], &out[b])) {
                live[still] = b; /* still <= i: overwrites entries already read */
                next[still++] = id;
            }
        }
        n_live = still;
    }
    s->memory = ksa_decoder_memory_of(&d);
    ksa_free(cand), ksa_free(rng), ksa_free(next), ksa_free(live), ksa_free(logits);
    ksa_decoder_free(&d);
    return st;
}

ksa_status ksa_generate(ksa_model *m, size_t n_seq, const int32_t *const *prompts,
                        const size_t *prompt_lens, const ksa_generate_options *o,
                        ksa_generated *out, ksa_generate_stats *stats)
{
    ksa_generate_stats unused;
    ksa_generate_stats *s = stats ? stats : &unused;
    memset(s, 0, sizeof *s);
    s->max_positions = (size_t)m->config.max_position_embeddings;
    for (size_t b = 0; b < n_seq; b++)
        out[b].n = 0, out[b].stop = KSA_STOP_MAX_NEW_TOKENS, out[b].stop_id = -1;
    rules r;
    KSA_TRY(check_request(m, n_seq, prompts, prompt_lens, o, &r));
    size_t *held = ksa_alloc_zero((n_seq ? n_seq : 1) * sizeof *held); /* tokens; 0: idle */
    size_t longest = 0, n_started = 0;
    for (size_t b = 0; b < n_seq; b++)
        if (starts(&r, o, prompt_lens[b], &out[b])) {
            held[b] = prompt_tokens(prompt_lens[b]);
            longest = held[b] > longest ? held[b] : longest;
            n_started++;
        }
    ksa_status st = KSA_OK;
    if (n_started > 0)
        st = generate_started(m, n_seq, prompts, prompt_lens, o, &r, longest, held, out, s);
    for (size_t b = 0; b < n_seq; b++) {
        s->generated_tokens += out[b].n;
        s->context_stops += out[b].stop == KSA_STOP_MAX_POSITION_EMBEDDINGS;
    }
    ksa_free(held);
    return st;
}

/* ---- the text front end ----------------------------------------------------------------- */
typedef struct {
    FILE *f;
    const ksa_generate_options *o; /* the caller's, for its callback */
    int write_errno;               /* set when a write failed (errno, or -1 without one) */
} text_sink;

static int write_token(void *user, size_t seq, int32_t id)
{
    text_sink *s = user;
    char small[64]; /* a byte, a marker "<|special_N|>", most BPE tokens */
    size_t len = s->o->tok ? ksa_tok_decode(s->o->tok, small, sizeof small, &id, 1, 0)
                           : ksa_tokenizer_decode(small, sizeof small, &id, 1, 0);
    char *text = small;
    if (len > sizeof small) { /* a long token (an added token's content) */
        text = ksa_alloc(len);
        ksa_tok_decode(s->o->tok, text, len, &id, 1, 0);
    }
    errno = 0;
    int failed = fwrite(text, 1, len, s->f) != len || fflush(s->f) != 0;
    if (text != small)
        ksa_free(text);
    if (failed) {
        s->write_errno = errno ? errno : -1;
        return 1;
    }
    return s->o->on_token ? s->o->on_token(s->o->user, seq, id) : 0;
}

static ksa_status write_failed(int err)
{
    return ksa_fail(KSA_EIO, "cannot write the sample: %s",
                    err > 0 ? strerror(err) : "write error");
}

ksa_status ksa_sample_text(ksa_model *m, const char *prompt, size_t prompt_len,
                           const ksa_generate_options *o, FILE *f, ksa_generated *result,
                           ksa_generate_stats *stats)
{
    int32_t *ids = NULL;
    size_t n_ids = prompt_len;
    ksa_status st = KSA_OK;
    if (o->tok) {
        ksa_ids enc = {0};
        ksa_tok_encoder *e = ksa_tok_encoder_new(o->tok);
        st = ksa_tok_encode(e, prompt, prompt_len, &enc);
        ksa_tok_encoder_free(e);
        if (st != KSA_OK) {
            ksa_ids_free(&enc);
            return st;
        }
        ids = enc.v, n_ids = enc.n; /* ksa_ids_free frees with ksa_free */
    } else {
        ids = ksa_alloc((prompt_len ? prompt_len : 1) * sizeof *ids);
        ksa_tokenizer_encode(ids, prompt, prompt_len);
    }
    const int32_t *const prompts[1] = {ids};
    rules r;
    st = check_request(m, 1, prompts, &n_ids, o, &r);
    if (st != KSA_OK) { /* before anything is written */
        ksa_free(ids);
        return st;
    }
    errno = 0;
    if ((prompt_len && fwrite(prompt, 1, prompt_len, f) != prompt_len) || fflush(f) != 0) {
        st = write_failed(errno);
        ksa_free(ids);
        return st;
    }
    text_sink sink = {.f = f, .o = o, .write_errno = 0};
    ksa_generate_options streamed = *o;
    streamed.on_token = write_token;
    streamed.user = &sink;
    ksa_generated gen = {.ids = result && result->ids ? result->ids : NULL};
    if (!gen.ids) /* a sequence holds at most max_pos tokens: fewer may be asked for */
        gen.ids = ksa_alloc((o->max_new_tokens < r.max_pos ? o->max_new_tokens + 1 : r.max_pos) *
                            sizeof *gen.ids);
    st = ksa_generate(m, 1, prompts, &n_ids, &streamed, &gen, stats);
    if (st == KSA_OK && sink.write_errno)
        st = write_failed(sink.write_errno);
    if (result)
        *result = (ksa_generated){
            .ids = result->ids, .n = gen.n, .stop = gen.stop, .stop_id = gen.stop_id};
    if (!(result && result->ids))
        ksa_free(gen.ids);
    ksa_free(ids);
    return st;
}

/* ---- by full recompute: the test oracle ------------------------------------------------- */
ksa_status ksa_sample_recompute(ksa_model *m, const int32_t *prompt, size_t n_prompt,
                                const ksa_generate_options *o, ksa_generated *out)
{
    const int32_t *const prompts[1] = {prompt};
    rules r;
    out->n = 0, out->stop = KSA_STOP_MAX_NEW_TOKENS, out->stop_id = -1;
    KSA_TRY(check_request(m, 1, prompts, &n_prompt, o, &r));
    if (!starts(&r, o, n_prompt, out))
        return KSA_OK;

    size_t V = m->V, n0 = prompt_tokens(n_prompt);
    size_t T_max = n0 + o->max_new_tokens - 1; /* the last token comes from a prefix this long */
    if (T_max > r.max_pos - 1 || T_max < n0)
        T_max = r.max_pos - 1;
    int32_t *tokens = ksa_alloc((T_max + 1) * sizeof *tokens); /* [T_max inputs + 1 target] */
    candidate *cand = ksa_alloc(r.Vs * sizeof *cand);
    if (n_prompt)
        memcpy(tokens, prompt, n_prompt * sizeof *tokens);
    else
        tokens[0] = r.eot[0];
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(m, 1, T_max));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    tp.recording = 0;

    ksa_rng rng = sequence_rng(o->seed, 0);
    ksa_status st = KSA_OK;
    size_t T = n0;
    for (;;) {
        ksa_tape_reset(&tp);
        tokens[T] = 0; /* dummy target */
        ksa_tensor *logits;
        ksa_model_forward(m, &tp, tokens, 1, T, 1.0, NULL, &logits);
        int32_t id = 0;
        st = choose_token(&id, logits->data + (T - 1) * V, r.Vs, o, &rng, cand, T);
        if (st != KSA_OK || !accept_token(&r, o, 0, id, T, out))
            break;
        tokens[T++] = id;
    }
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ksa_free(cand);
    ksa_free(tokens);
    return st;
}
