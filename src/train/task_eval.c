/* task_eval.c - retrieval-task accuracy by greedy decoding with the KV cache (task_eval.h). */
#include "task_eval.h"

#include <stdio.h>
#include <string.h>

#include "data/tokenizer.h"

static ksa_status check_options(const ksa_model *m, const ksa_task_eval_options *o)
{
    if (o->n == 0)
        return ksa_fail(KSA_EINVAL, "task evaluation: --n must be at least 1");
    if (o->batch == 0)
        return ksa_fail(KSA_EINVAL, "task evaluation: --batch must be at least 1");
    if (o->n_depths == 0)
        return ksa_fail(KSA_EINVAL, "task evaluation: no depth given");
    for (size_t i = 0; i < o->n_depths; i++)
        if (!(o->depths[i] >= 0 && o->depths[i] <= 100))
            return ksa_fail(KSA_EINVAL, "task evaluation: depth %g is outside [0, 100] (percent)",
                            o->depths[i]);
    size_t min_len = ksa_task_min_len(o->task);
    if (o->len < min_len)
        return ksa_fail(KSA_EINVAL,
                        "task evaluation: --len %zu cannot hold a %s example (its needles, "
                        "question, answer and end-of-text need at least %zu tokens)",
                        o->len, ksa_task_name(o->task), min_len);
    size_t max_pos = (size_t)m->config.max_position_embeddings;
    if (o->len > max_pos)
        return ksa_fail(KSA_EINVAL,
                        "task evaluation: --len %zu exceeds the model's max_position_embeddings "
                        "%zu",
                        o->len, max_pos);
    size_t need = o->tok ? ksa_tok_vocab_size(o->tok) : KSA_TOKENIZER_MIN_VOCAB;
    if (m->V < need)
        return ksa_fail(KSA_EINVAL,
                        "task evaluation: the tasks are spelled in the ids of the tokenizer %s, "
                        "which a vocabulary of %zu ids does not hold (need at least %zu)",
                        o->tok ? ksa_tok_name(o->tok) : KSA_TOKENIZER_NAME, m->V, need);
    return KSA_OK;
}

/* The text of ids, with bytes outside printable ASCII escaped, end-of-text as <eot>, cut to
 * fit buf. */
static void describe(char *buf, size_t cap, const ksa_tok *tok, const int32_t *ids, size_t n)
{
    size_t k = 0;
    int32_t eot = tok ? ksa_tok_eot(tok) : KSA_TOKENIZER_EOT;
    for (size_t i = 0; i < n && k + 8 < cap; i++) {
        if (ids[i] == eot) {
            k += (size_t)snprintf(buf + k, cap - k, "<eot>");
            continue;
        }
        unsigned char text[64];
        size_t len = tok ? ksa_tok_decode(tok, (char *)text, sizeof text, ids + i, 1, 0)
                         : ksa_tokenizer_decode((char *)text, sizeof text, ids + i, 1, 0);
        for (size_t j = 0; j < len && j < sizeof text && k + 8 < cap; j++) {
            unsigned c = text[j];
            if (c >= 32 && c < 127 && c != '\\')
                buf[k++] = (char)c;
            else
                k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
        }
    }
    buf[k < cap ? k : cap - 1] = 0;
}

ksa_status ksa_task_eval(ksa_model *m, const ksa_task_eval_options *o, ksa_task_eval_result *r)
{
    memset(r, 0, sizeof *r);
    KSA_TRY(check_options(m, o));
    r->n_depths = o->n_depths;
    r->by_depth = ksa_alloc_zero(o->n_depths * sizeof *r->by_depth);
    for (size_t d = 0; d < o->n_depths; d++)
        r->by_depth[d].depth = o->depths[d];
    r->first_wrong = o->n;

    size_t B = o->batch < o->n ? o->batch : o->n;
    ksa_task_example *ex = ksa_alloc_zero(B * sizeof *ex);
    const int32_t **prompts = ksa_alloc(B * sizeof *prompts);
    size_t *lens = ksa_alloc(B * sizeof *lens);
    ksa_generated *out = ksa_alloc_zero(B * sizeof *out);
    int32_t *ids = ksa_alloc(B * o->len * sizeof *ids); /* answers are shorter than len */
    const int32_t stop[] = {o->tok ? ksa_tok_eot(o->tok) : KSA_TOKENIZER_EOT};
    ksa_generate_options g = ksa_generate_defaults();
    g.temperature = 0;
    g.stop_ids = stop;
    g.n_stop_ids = 1;
    ksa_status st = KSA_OK;
    double t_last = ksa_now();
    for (size_t i0 = 0; i0 < o->n && st == KSA_OK; i0 += B) {
        size_t nb = o->n - i0 < B ? o->n - i0 : B, longest_answer = 0;
        for (size_t b = 0; b < nb && st == KSA_OK; b++) {
            size_t i = i0 + b;
            st = ksa_task_generate(&ex[b], o->task, o->len, o->depths[i % o->n_depths],
                                   ksa_task_example_seed(o->seed, i), o->filler, o->tok);
            if (st != KSA_OK)
                break;
            prompts[b] = ex[b].ids;
            lens[b] = ex[b].prompt_tokens;
            out[b].ids = ids + b * o->len;
            if (ex[b].answer_tokens > longest_answer)
                longest_answer = ex[b].answer_tokens;
        }
        ksa_generate_stats stats;
        g.max_new_tokens = longest_answer;
        if (st == KSA_OK)
            st = ksa_generate(m, nb, prompts, lens, &g, out, &stats);
        for (size_t b = 0; b < nb && st == KSA_OK; b++) {
            size_t i = i0 + b, a = ex[b].answer_tokens;
            int correct = out[b].n >= a &&
                          !memcmp(out[b].ids, ex[b].ids + ex[b].prompt_tokens, a * sizeof(int32_t));
            ksa_task_depth_result *dr = &r->by_depth[i % o->n_depths];
            dr->n++, r->n++;
            dr->correct += (size_t)correct, r->correct += (size_t)correct;
            if (!correct && r->first_wrong == o->n) {
                r->first_wrong = i;
                describe(r->first_wrong_output, sizeof r->first_wrong_output, o->tok, out[b].ids,
                         out[b].n < a ? out[b].n : a);
            }
        }
        if (st == KSA_OK) {
            r->prefill_seconds += stats.prefill_seconds;
            r->decode_seconds += stats.decode_seconds;
            r->prompt_tokens += stats.prompt_tokens;
            r->decode_tokens += stats.decode_tokens;
            if (i0 == 0)
                r->cache = stats.memory;
        }
        for (size_t b = 0; b < nb; b++)
            ksa_task_example_free(&ex[b]);
        if (o->progress_seconds > 0 && ksa_now() - t_last >= o->progress_seconds) {
            fprintf(stderr, "ksa eval: %s, %zu/%zu examples, accuracy so far %.3f\n",
                    ksa_task_name(o->task), r->n, o->n, (double)r->correct / (double)r->n);
            t_last = ksa_now();
        }
    }
    ksa_free(ids), ksa_free(out), ksa_free(lens), ksa_free(prompts), ksa_free(ex);
    if (st != KSA_OK)
        ksa_task_eval_result_free(r);
    return st;
}

void ksa_task_eval_result_free(ksa_task_eval_result *r)
{
    ksa_free(r->by_depth);
    memset(r, 0, sizeof *r);
}
