/* train_config.h - the training keys (issue table; KSA_SPEC §9.5-§9.6 defaults). They live
 * in the same `key = value` files as the model keys and are overridden the same way.
 * Paths named in a configuration file are resolved against that file's folder; on the
 * command line against the current folder. `data` and `data_mix` exclude each other:
 * whichever the command line gives replaces the other from the file.                    */
#ifndef KSA_TRAIN_TRAIN_CONFIG_H
#define KSA_TRAIN_TRAIN_CONFIG_H

#include <stdio.h>

#include "ckpt/ckpt.h"
#include "model/config.h"
#include "core/settings.h"
#include "optim/lr_schedule.h"

#define KSA_PATH_STR 1024

typedef struct {
    char data[KSA_PATH_STR];     /* token file ... */
    char data_mix[KSA_PATH_STR]; /* ... or mixture list (exactly one of the two) */
    char val_data[KSA_PATH_STR]; /* validation token file (optional) */
    char dtype[16];              /* "", uint16, uint32: for headerless files without .meta */
    long seq_len;                /* text tokens per row (a row is seq_len + 1 tokens) */
    long global_batch;           /* rows per optimizer step, all ranks */
    long micro_batch;            /* rows per forward/backward */
    long steps;                  /* optimizer steps of the run */
    double lr, min_lr;
    char lr_schedule[32]; /* constant | cosine | wsd */
    long warmup_steps, decay_steps;
    double weight_decay, beta1, beta2, adam_eps;
    double clip_value; /* element-wise clipping bound (0: off) */
    double clip_norm;  /* global-norm clipping (0: off) */
    /* the loss-spike guard (optim/loss_guard.h): a loss above loss_spike_factor x the median
     * of the last loss_spike_window normal losses, loss_spike_steps times in a row, stops
     * the run or skips the step's update */
    double loss_spike_factor; /* 0: off */
    long loss_spike_steps, loss_spike_window;
    char loss_spike_action[16]; /* stop | skip */
    long seed;
    long data_seed; /* the data order's seed; -1: seed (a fine-tune derives its own) */
    long eval_every, eval_batches; /* validation every N steps (0: only at the end), rows */
    char log[KSA_PATH_STR];        /* JSONL log ("": none) */
    char out[KSA_PATH_STR];        /* checkpoint folder ("": no checkpoints) */
    long save_every;               /* checkpoint every N steps (0: only at the end) */
    long keep;                     /* keep the newest K checkpoints (0: all) */
    long save_best;                /* bool: keep DIR/best.h5, the best validation loss */
    long threads;                  /* 0: OMP_NUM_THREADS / cores */
    double peak_gflops;            /* MFU denominator (0: the measured, cached GEMM peak) */
    long recompute;                /* bool: re-run each layer's forward in the backward */
    long context_parallel;         /* ranks per context group (1: none), dist/context.h */
    char trainable[512];           /* globs of the parameters trained ("": all) ... */
    char frozen[512];              /* ... and of those kept as they are (autograd/params.h) */
    long distill;                  /* bool: attention distillation (KSA_SPEC §9.2) */
    double distill_lm_weight, distill_attn_weight, distill_kl_weight, distill_cos_weight;
    double distill_clamp;    /* the attention term's clamp of squared errors */
    long distill_attn_norm;  /* bool: rows RMS-normalised before the attention term */
    double watchdog_factor;  /* under mpirun, a wait in a collective beyond this x the
                                median step (at least 10 s) ends the job (0: off) */
    double watchdog_seconds; /* ... or beyond this many seconds (0: off) */
} ksa_train_config;

void ksa_train_config_defaults(ksa_train_config *c);
/* The patterns of the trained parameters: c->trainable, or with distill and neither trainable
 * nor frozen given, "*summary*" (only the summary parameters train, KSA_SPEC §9.2). */
const char *ksa_train_config_trainable(const ksa_train_config *c);
int ksa_train_config_has_key(const char *key);
/* base_file: the configuration file the value comes from (paths are resolved against its
 * folder), or NULL for the command line. */
ksa_status ksa_train_config_set(ksa_train_config *c, const char *key, const char *value,
                                const char *origin, const char *base_file);
/* The training keys against the model's: seq_len within max_position_embeddings. */
ksa_status ksa_train_config_check_model(const ksa_train_config *c, const ksa_model_config *mc);
/* The learning-rate schedule the keys describe (KSA_EINVAL for an unknown lr_schedule). */
ksa_status ksa_train_config_schedule(const ksa_train_config *c, ksa_lr_schedule *s);
/* Checks the values that must hold together (data xor data_mix, batch divisibility ...). */
ksa_status ksa_train_config_validate(const ksa_train_config *c, int n_ranks);
void ksa_train_config_write(const ksa_train_config *c, FILE *f);
const ksa_config_key *ksa_train_config_keys(size_t *n);

/* The path keys (data, data_mix, val_data, log, out) made absolute against the current
 * folder, as a checkpoint stores them (CHECKPOINT_FORMAT.md: a resume works from any folder). */
void ksa_train_config_absolute_paths(ksa_train_config *c);

/* A training checkpoint's /train: the training keys (over the defaults), and the run's
 * progress and stamps (steps completed, tokens seen, run id, data identities). */
ksa_status ksa_train_config_read_checkpoint(const char *path, ksa_train_config *c,
                                            ksa_ckpt_progress *pr);

#endif
