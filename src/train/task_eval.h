/* task_eval.h - accuracy of a model on a retrieval task (data/tasks.h): greedy decoding of
 * the answers with the KV cache (model/sample.h, batched), exact match.
 *
 * The examples are those `ksa task` writes for the same (task, len, n, depths, seed, filler):
 * example i has depth depths[i mod n_depths] and seed ksa_task_example_seed(seed, i). The
 * model is prompted with the example's prompt and decodes greedily at most answer_tokens
 * tokens (an end-of-text ends it earlier); the example is correct when those tokens are
 * exactly the answer's ids (encode(answer), which is what follows the prompt in the files of
 * `ksa task`). The tokenizer is the model's (a checkpoint's: ckpt/ckpt_tok.h).             */
#ifndef KSA_TRAIN_TASK_EVAL_H
#define KSA_TRAIN_TASK_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "data/tasks.h"
#include "model/decoder.h"
#include "model/sample.h"

typedef struct {
    ksa_task_kind task;
    size_t len;           /* tokens per example (prompt + answer + end-of-text) */
    size_t n;             /* examples, depths cycled */
    const double *depths; /* borrowed, [n_depths] */
    size_t n_depths;
    uint64_t seed;
    const ksa_task_filler *filler; /* borrowed */
    const ksa_tok *tok;            /* borrowed: the model's tokenizer; NULL: bytes */
    size_t batch;                  /* examples decoded together (>= 1)                 */
    double progress_seconds;       /* a progress line on stderr at most this often; 0: none */
} ksa_task_eval_options;

typedef struct {
    double depth;
    size_t n, correct;
} ksa_task_depth_result;

typedef struct {
    size_t n, correct;
    ksa_task_depth_result *by_depth; /* owned, [n_depths], in the order of the options */
    size_t n_depths;
    double prefill_seconds, decode_seconds;
    size_t prompt_tokens, decode_tokens;
    ksa_decoder_memory cache;    /* of the first batch, at its end: the largest (all prompts
                                    have the same length)                                */
    size_t first_wrong;          /* index of the first wrong example, or n: none         */
    char first_wrong_output[96]; /* what the model wrote there (escaped, cut)          */
} ksa_task_eval_result;

/* Checks the options (KSA_EINVAL: n or batch 0, a depth outside [0, 100], len below the
 * task's minimum or above max_position_embeddings, a vocabulary without the tokenizer's
 * ids), then evaluates. Free r with ksa_task_eval_result_free.              */
ksa_status ksa_task_eval(ksa_model *m, const ksa_task_eval_options *o, ksa_task_eval_result *r);
void ksa_task_eval_result_free(ksa_task_eval_result *r);

#endif
