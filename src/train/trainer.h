/* trainer.h - one optimizer step at a time: data, micro-batches, clipping, AdamW.
 *
 * The step is a pure function of (parameters, moments, step number, loss guard): the loader
 * is step-addressed (data/loader.h), so the trainer's whole state is the model, the AdamW
 * moments, `step` and the loss-spike guard's state. Per step, on the global batch of G rows
 * of L + 1 tokens:
 *   1. zero the gradients; for each micro-batch of `micro_batch` rows: forward, backward,
 *      with the loss scaled by 1/(G·L) (the targets of the whole global batch), so that the
 *      accumulated gradient is that of the mean loss whatever the micro-batch size;
 *   2. stop on a non-finite loss, gradient or gradient norm, naming the step and the first
 *      parameter whose gradient is not finite;
 *   3. clip each gradient element to [-clip_value, clip_value]; grad_norm = the global L2
 *      norm after that;
 *   4. the loss-spike guard judges the global loss (optim/loss_guard.h): a spike stops the
 *      run (an error naming step, loss and median), or with loss_spike_action = skip drops
 *      the gradients: no update, the step counter moves on (steps 5 and 6 do not run);
 *   5. if clip_norm > 0 and grad_norm > clip_norm, scale to clip_norm;
 *   6. AdamW with the schedule's learning rate of this (0-based) step, decay on every
 *      parameter (KSA_SPEC §9.5: one group, norms and embeddings included), update count
 *      step + 1 - skipped steps; its fused finite check stops the run when a parameter or
 *      moment became non-finite, naming step and parameter, on every rank at the same step
 *      and before the new values reach another rank or any checkpoint.                  */
#ifndef KSA_TRAIN_TRAINER_H
#define KSA_TRAIN_TRAINER_H

#include "autograd/tape.h"
#include "ckpt/ckpt.h"
#include "data/identity.h"
#include "data/loader.h"
#include "model/decoder.h"
#include "optim/loss_guard.h"
#include "optim/lr_schedule.h"
#include "train/train_config.h"

typedef struct {
    ksa_model *model;            /* borrowed */
    const ksa_train_config *cfg; /* borrowed */
    ksa_loader loader;           /* owned */
    ksa_val_reader val;          /* owned when has_val */
    int has_val;
    ksa_lr_schedule schedule;
    int rank, n_ranks; /* this process among the ranks of the run */
    /* data parallelism runs over the context groups (dist/context.h; without context
     * parallelism each rank is a group of one): this rank's group among dp_size, and the
     * block of every row it computes, tokens [block_t0, block_t0 + block_len]           */
    int dp_rank, dp_size;
    size_t block_t0, block_len;
    /* The parameters the optimizer updates (training keys trainable / frozen): the model's
     * own table and buffers when none is frozen (opt = &model->params); otherwise own_opt, a
     * table of the trained parameters alone with flat buffers of their own (copies of their
     * values and gradients, opt_map[i] = their index in the model), so that the moments,
     * the reduce-scatter and the allgather cover them only. Their values are copied in by
     * ksa_trainer_init and ksa_trainer_resume (the optimizer's copy then leads: each update
     * is written back into the model), so set the model's values before those.          */
    ksa_params *opt;
    ksa_params own_opt;
    size_t *opt_map;
    size_t slice_lo, slice_hi;      /* the part of opt's flat buffer this rank owns (ZeRO) */
    ksa_real *exp_avg, *exp_avg_sq; /* owned AdamW moments of the slice only */
    ksa_real *grad_slice;           /* owned: the summed gradient of the slice */
    ksa_arena arena;                /* owned: one micro-batch forward + backward */
    ksa_grad_pool grads;            /* owned: its activation gradients, freed when dead */
    ksa_tape tape;
    int32_t *tokens;      /* owned: [global_batch / dp_size, block_len + 1] */
    ksa_loss_guard guard; /* the loss-spike guard's state (saved in checkpoints) */
    long step;            /* optimizer steps completed (skipped ones included) */
    size_t tokens_seen;   /* text tokens of completed steps */
    /* stamps written into every checkpoint (data/identity.h; run_dir.h for the run id) */
    char run_id[KSA_CKPT_STAMP];
    char data_identity[KSA_IDENTITY_STR], val_data_identity[KSA_IDENTITY_STR];
    char tokenizer[32]; /* of the training data: /tokenizer type of the checkpoints */
    int32_t eot_id;     /* its end-of-text id: /tokenizer eot_id of the checkpoints */
    /* a BPE tokenizer's tokenizer.json (the data's <file>.tokenizer.json, checked against the
     * name), stored in the checkpoints as /tokenizer/tokenizer.json; NULL for bytes */
    unsigned char *tokenizer_json;
    size_t tokenizer_json_len;
} ksa_trainer;

typedef struct {
    double loss;      /* mean over the global batch's targets */
    double lr;        /* learning rate used by this step */
    double grad_norm; /* after value clipping, before norm clipping */
    size_t tokens;    /* text tokens of this step */
    double seconds;   /* wall time of this step */
    /* the annealing coefficient m this step used (KSA_SPEC §5.5; NaN: the model does not
     * anneal, summary_mix_qkv off) */
    double summary_mix;
    /* the loss-spike guard: consecutive high losses up to this one (0: normal), the median
     * the loss was compared with (NaN: not judged), whether the update was skipped, and why
     * the loss is high ("": a normal step) */
    long high_steps;
    double loss_median;
    int skipped;
    char guard_note[200];
    /* with distill: loss is the weighted sum of these terms, each the mean over the global
     * batch (decoder.h, ksa_distill): cross-entropy, attention, KL, cosine */
    int distill;
    double ce, attn, kl, cos;
} ksa_step_stats;

/* Opens the training data of c (one file or a mixture) into ld and, when c names one, the
 * validation file into val (*has_val = 1), for a vocabulary of V: every check of the loader
 * (files exist, hold a row of seq_len + 1 tokens, every id below V), and the tokenizer that
 * made the data (ksa_loader_tokenizer) into tokenizer[cap]; a validation file made by
 * another known tokenizer is an error. On error nothing is left open. */
ksa_status ksa_train_data_open(const ksa_train_config *c, size_t V, ksa_loader *ld,
                               ksa_val_reader *val, int *has_val, char *tokenizer, size_t cap,
                               int32_t *eot);

/* The model of the checkpoint at path (how: "--resume" or "--init-from") was trained on ids of
 * the tokenizer its /tokenizer names; data_tokenizer (the data's, ksa_loader_tokenizer) must
 * be that one when both are known (neither is "unknown"), else KSA_EINVAL naming both: the
 * same ids would stand for other text. A checkpoint without /train (ksa init's) names a
 * tokenizer it was never trained on and passes. */
ksa_status ksa_train_check_tokenizer(const char *path, const char *data_tokenizer, const char *how);

/* Marks the parameters of m that c trains (ksa_train_config_trainable, c->frozen) and checks
 * that distill has what it needs: summary layers, and with the default selection summary
 * parameters. KSA_EINVAL naming the problem. */
ksa_status ksa_train_select_trainable(const ksa_train_config *c, ksa_model *m);

/* Opens the data (and records its identity); run_id: the run's id (run_dir.h). With
 * c->context_parallel > 1, m->cp must hold the grid of that P for c->seq_len (ksa_cp_init):
 * each rank then reads and computes only its block of its group's rows.                  */
ksa_status ksa_trainer_init(ksa_trainer *t, ksa_model *m, const ksa_train_config *c,
                            const char *run_id);
void ksa_trainer_free(ksa_trainer *t);
/* Collective under MPI. A failure is every rank's: each check runs on sums all ranks share. */
ksa_status ksa_trainer_step(ksa_trainer *t, ksa_step_stats *stats);
/* Writes a training checkpoint of the current state (model, moments, step, keys, stamps);
 * val_loss: the validation loss it is saved for (NaN: none). */
ksa_status ksa_trainer_save(const ksa_trainer *t, const char *path, double val_loss);
/* Continues from a training checkpoint: parameters, AdamW moments, step, tokens seen and
 * the loss-spike guard's state.
 * The model and the training keys must already be those of the checkpoint, except the
 * paths of the data, which may have moved: the data's identity must be the one the
 * checkpoint records (a checkpoint without one keeps its paths, ksa_run_check_resume). */
ksa_status ksa_trainer_resume(ksa_trainer *t, const char *path);

/* Mean loss over the validation rows (no gradients): the whole file when it holds at most
 * eval_batches rows, else eval_batches rows spread evenly over it (ksa_val_reader); batch b
 * of micro_batch rows runs on rank b mod N and the sums are reduced, so any rank count
 * gives the same value. Collective under MPI.                                           */
ksa_status ksa_trainer_validate(ksa_trainer *t, double *val_loss);

/* Model FLOPs of one step of G rows of T text tokens, the MFU numerator: what the model's
 * matmuls compute, row by row, at 2 FLOPs per multiply-add and forward + backward = 3 x
 * forward (the backward's two products per matmul: input and weight gradients):
 *
 *   G · [ 6 · ( Σ_layers rows_l · (q + k + v + o + gate + up + down weights of layer l)
 *               + T · V · D )                                          LM head, tied or not
 *       + 12 · head_dim · Hq · Σ_layers pairs_l ]
 *
 * rows_l: T + floor(T/C)·S in a summary layer (both streams; a summary row goes through the
 *   summary twins of q/k/v when the layer has them, same shapes, and the shared o_proj and
 *   MLP), T in a causal layer (a KSA model's bypass layers, and every layer of a plain causal
 *   or SWA model) and under SCA (S = 0: no summary rows). The LM head runs on text rows.
 *   GQA: k and v weights are Hkv·head_dim x D, q's Hq·head_dim x D.
 * pairs_l: the visible (query, key) pairs of one sequence, counted exactly: summary layer
 *   (KSA_SPEC §3.5, text and summary queries, a partial tail chunk without summaries; SCA the
 *   same with S = 0), SWA (layer_sliding_window = N) min(t, N) + 1 for query t, causal
 *   T(T+1)/2. Per pair and head: QKᵀ and PV, 4·head_dim forward and 8·head_dim backward.
 * Not counted: embedding lookups (not matmuls), norms, RoPE, softmax, the loss, and
 * recomputation (the attention backward recomputes QKᵀ).                                */
double ksa_model_step_flops(const ksa_model *m, size_t G, size_t T);

#endif
