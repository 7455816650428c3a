/* ckpt.h - HDF5 checkpoints (CHECKPOINT_FORMAT.md, version 1). This module is the only code
 * that knows HDF5 object names: root attributes `format`/`format_version`, `/config` (one
 * attribute per model key), `/params/<dotted name>` (float32, [out, in] or [n]), `/tokenizer`.
 *
 * Writers build `<path>.tmp` in the same folder, flush, close, fsync and rename() it into
 * place: a failed or interrupted save never leaves a file under the final name and never
 * damages the previous one. Readers check `format` and `format_version` first, then every
 * shape against the configuration; errors name the file and the dataset or attribute.
 * Training state (/optim, /train) and parallel (MPI-IO) writing come with later issues.     */
#ifndef KSA_CKPT_CKPT_H
#define KSA_CKPT_CKPT_H

#include "autograd/core.h"
#include "autograd/params.h"
#include "model/config.h"
#include "optim/train_config.h"

#define KSA_CKPT_FORMAT "ksa-checkpoint"
#define KSA_CKPT_FORMAT_VERSION 1

/* Writes a model checkpoint: root attributes, /config (every key, defaults included; the
 * configuration must pass ksa_model_config_resolve), /params from p->data (always float32 in
 * the file, whatever ksa_real is) and /tokenizer (type "byte", eot_id; eot_id < 0 = no
 * end-of-text token, the attribute is then left out). p must be allocated.                */
ksa_status ksa_ckpt_write_model(const char *path, const ksa_model_config *cfg, const ksa_params *p,
                                int eot_id);

/* Reads /config into cfg: built-in defaults, then every attribute named like a model key
 * (any integer or float width, fixed- or variable-length strings, scalar or one-element
 * dataspaces, h5py booleans). Unknown attributes are reported on stderr and ignored; a
 * missing required key is an error (defaults differ between tools); the optional
 * summary_independent_qk_norm (absent = 0) and summary_token_begin may be missing, and so
 * may every summary_* key when use_summary_attention is false. The result is validated
 * with ksa_model_config_resolve.                                                          */
ksa_status ksa_ckpt_read_config(const char *path, ksa_model_config *cfg);

/* Reads /params/<name> into p->data for every parameter of the table (declared from the
 * configuration and allocated by the caller). A missing dataset or one whose shape differs
 * from the table's is an error naming it and both shapes; so is a dataset in /params that
 * the table lacks, unless allow_extra (e.g. fine-tuning into a smaller layout).            */
ksa_status ksa_ckpt_read_params(const char *path, ksa_params *p, int allow_extra);

/* Writes p->grad as /grads/<name> float32 datasets with the parameters' shapes (for
 * `ksa eval --grads-out`); same tmp + rename discipline, no other content.               */
ksa_status ksa_ckpt_write_grads(const char *path, const ksa_params *p);

/* *found = 1 if the HDF5 file at path holds an object (group or dataset) at `object`, an
 * absolute path such as "/params/model.norm.weight"; 0 otherwise. Any HDF5 file.         */
ksa_status ksa_ckpt_has(const char *path, const char *object, int *found);

/* ---- training checkpoints: the model plus /optim and /train ------------------------- */
typedef struct {
    const ksa_train_config *train;  /* every training key; paths are stored absolute */
    long step;                      /* optimizer steps completed */
    unsigned long long tokens_seen; /* text tokens of those steps */
    int world_size;                 /* ranks of the run (informational) */
    const ksa_real *exp_avg;        /* AdamW moments, the parameter buffer's layout */
    const ksa_real *exp_avg_sq;
} ksa_ckpt_train_state;

/* A model checkpoint plus /optim (type, beta1, beta2, eps, weight_decay; exp_avg/<name>,
 * exp_avg_sq/<name>) and /train (step, tokens_seen, world_size, every training key). */
ksa_status ksa_ckpt_write_training(const char *path, const ksa_model_config *cfg,
                                   const ksa_params *p, int eot_id,
                                   const ksa_ckpt_train_state *ts);
/* /train into tc (starting from the defaults), step and tokens_seen. */
ksa_status ksa_ckpt_read_train(const char *path, ksa_train_config *tc, long *step,
                               unsigned long long *tokens_seen);
/* /optim/exp_avg and /optim/exp_avg_sq into buffers of the parameter buffer's layout. */
ksa_status ksa_ckpt_read_moments(const char *path, const ksa_params *p, ksa_real *exp_avg,
                                 ksa_real *exp_avg_sq);

#endif
