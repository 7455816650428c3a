/* ckpt.h - HDF5 checkpoints (CHECKPOINT_FORMAT.md, version 1). This module is the only code
 * that knows HDF5 object names: root attributes `format`/`format_version`, `/config` (one
 * attribute per model key), `/params/<dotted name>` (float32, [out, in] or [n]), `/tokenizer`.
 *
 * Writers build `<path>.tmp` in the same folder, flush, close, fsync and rename() it into
 * place: a failed or interrupted save never leaves a file under the final name and never
 * damages the previous one. Readers check `format` and `format_version` first, then every
 * shape against the configuration; errors name the file and the dataset or attribute.
 *
 * Under MPI (MPI initialised and not finalised; a singleton counts) every writer is
 * COLLECTIVE: all ranks of MPI_COMM_WORLD call it with the same arguments (the same path,
 * configuration, parameter values and training keys; only the optimizer slices differ).
 * The file is written with the MPI-IO driver, each rank writing its own part of every
 * dataset; the ranks compare their status after every step, so an error on any rank
 * makes every rank return an error (no rank is left waiting in a collective) and leaves
 * no file behind. Readers are independent: any rank may call them alone (default driver). */
#ifndef KSA_CKPT_CKPT_H
#define KSA_CKPT_CKPT_H

#include "core/core.h"
#include "autograd/params.h"
#include "model/config.h"
#include "core/settings.h"

#define KSA_CKPT_FORMAT "ksa-checkpoint"
/* The newest version written and read (older ones are read too): 3 is written only by a file
 * holding /tokenizer/tokenizer.json, so that a reader of version 2 refuses it rather than
 * miss the tokenizer; every other file is written as version 2 (CHECKPOINT_FORMAT.md). */
#define KSA_CKPT_FORMAT_VERSION 3
#define KSA_CKPT_FORMAT_VERSION_PLAIN 2 /* a file without tokenizer.json */

/* The /tokenizer group of a checkpoint. A Hugging Face tokenizer is stored whole: its
 * tokenizer.json bytes, verbatim, as the uint8 dataset /tokenizer/tokenizer.json, and the
 * type is then its identity word "bpe-" + 16 lowercase hex digits of XXH3-64 of those bytes
 * (ksa_ckpt_tokenizer_identity). */
typedef struct {
    const char *type;          /* NULL: "byte"; with json: NULL or its identity word */
    int eot_id;                /* < 0: no end-of-text token (the attribute is left out) */
    const unsigned char *json; /* [json_len] tokenizer.json, or NULL: none */
    size_t json_len;
} ksa_ckpt_tokenizer;

#define KSA_CKPT_TOKENIZER_ID 24 /* "bpe-" + 16 hex digits + '\0', with room */
/* "bpe-<16 lowercase hex digits of XXH3_64bits(json, len)>" into id. */
void ksa_ckpt_tokenizer_identity(const unsigned char *json, size_t len,
                                 char id[KSA_CKPT_TOKENIZER_ID]);

/* Writes a model checkpoint: root attributes, /config (every key, defaults included; the
 * configuration must pass ksa_model_config_resolve), /params from p->data (always float32 in
 * the file, whatever ksa_real is) and /tokenizer (type "byte", eot_id; eot_id < 0 = no
 * end-of-text token, the attribute is then left out). p must be allocated.                */
ksa_status ksa_ckpt_write_model(const char *path, const ksa_model_config *cfg, const ksa_params *p,
                                int eot_id);
/* The same with any /tokenizer (tok NULL: the byte tokenizer, no end-of-text). A type that
 * disagrees with the identity of tok->json is a bug. Collective under MPI like the others. */
ksa_status ksa_ckpt_write_model_tokenizer(const char *path, const ksa_model_config *cfg,
                                          const ksa_params *p, const ksa_ckpt_tokenizer *tok);

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

/* 1 once HDF5 failed to close a file this process was writing (a writer first empties its
 * failed .tmp to make room for the close; this is a disk full before the save began, or a
 * failed last metadata flush). HDF5 1.10 then keeps the id of a file it has freed, and
 * shutting the library down (H5close, exit, MPI_Finalize) would crash: the process must end
 * with _exit (ksa_cli_end_if_hdf5_unusable). The writer's error is reported as usual.     */
int ksa_ckpt_hdf5_unusable(void);

/* *found = 1 if the HDF5 file at path holds an object (group or dataset) at `object`, an
 * absolute path such as "/params/model.norm.weight"; 0 otherwise. Any HDF5 file.         */
ksa_status ksa_ckpt_has(const char *path, const char *object, int *found);

/* ---- training checkpoints: the model plus /optim and /train ------------------------- */
#define KSA_CKPT_STAMP 128 /* capacity of a stamp string read back */
/* The AdamW hyperparameters written as /optim attributes. */
typedef struct {
    double beta1, beta2, eps, weight_decay;
} ksa_ckpt_adamw;

typedef struct {
    /* The training settings, one /train attribute per key of the table, written as they are
     * (the caller stores paths absolute): train_keys[0..n_train_keys) describe train. */
    const ksa_config_key *train_keys;
    size_t n_train_keys;
    const void *train;
    ksa_ckpt_adamw adamw;           /* /optim attributes */
    long step;                      /* optimizer steps completed */
    unsigned long long tokens_seen; /* text tokens of those steps */
    int world_size;                 /* ranks of the run (informational) */
    /* The run's stamps (NULL or "": not written): its id, the identity of its training and
     * validation data (data/identity.h), and the validation loss this checkpoint was saved
     * for (NaN: not written; best.h5 of --save-best). */
    const char *run_id, *data_identity, *val_data_identity;
    double val_loss;
    const char *tokenizer; /* /tokenizer type: the data's tokenizer (NULL: "byte") */
    /* its tokenizer.json (NULL: none), stored as /tokenizer/tokenizer.json; tokenizer must
     * then be NULL or its identity word */
    const unsigned char *tokenizer_json;
    size_t tokenizer_json_len;
    /* The loss-spike guard's state (optim/loss_guard.h): its recent normal losses, oldest
     * first (n_loss_window = 0: none, not written), the consecutive high steps up to this
     * one, and the steps of the run whose update was skipped. */
    const double *loss_window; /* [n_loss_window], at most KSA_CKPT_MAX_LOSS_WINDOW */
    size_t n_loss_window;
    long loss_high_steps, skipped_steps;
    /* The AdamW moments this rank holds: elements [slice_lo, slice_hi) of the flat
     * parameter buffer (DESIGN.md §5), the moments of element slice_lo + i at index i, so
     * arrays of slice_hi - slice_lo elements; slice_hi may pass p->numel (padding). The
     * whole buffer is slice_lo = 0, slice_hi = p->numel, and so is slice_lo = slice_hi = 0
     * (a zero-initialised struct). With several ranks the slices must tile the buffer
     * (sorted by start, each starting where the previous one ends, from 0 to at least
     * p->numel; empty slices allowed), or every rank must hold the whole buffer; anything
     * else is a bug and aborts on every rank.                                            */
    size_t slice_lo, slice_hi;
    const ksa_real *exp_avg;    /* [slice_hi - slice_lo] */
    const ksa_real *exp_avg_sq; /* [slice_hi - slice_lo] */
    /* The layout the moments and their slices refer to when it is not the parameters' own
     * (NULL): the table of the trained parameters alone, with offsets of its own, when some
     * are frozen (training keys trainable / frozen). /optim then holds datasets for its
     * parameters only; the parameters are written split evenly between the ranks.        */
    const ksa_params *moments_of;
} ksa_ckpt_train_state;

/* A model checkpoint plus /optim (type, beta1, beta2, eps, weight_decay; exp_avg/<name>,
 * exp_avg_sq/<name> with each parameter's full shape) and /train (step, tokens_seen,
 * world_size, the guard's state, every training key). Collective under MPI: each rank writes the
 * moments of its slice, and the parameters of the same range of the buffer (so every element of
 * every dataset is written exactly once; when every rank holds the whole buffer, the
 * buffer is split evenly between the ranks instead).                                      */
ksa_status ksa_ckpt_write_training(const char *path, const ksa_model_config *cfg,
                                   const ksa_params *p, int eot_id, const ksa_ckpt_train_state *ts);
/* What /train says of the run beyond its keys. Stamps missing from older files read as ""
 * (and val_loss as NaN); so does the guard's state as none (an empty window, 0, 0). */
#define KSA_CKPT_MAX_LOSS_WINDOW 1000
typedef struct {
    long step;                      /* optimizer steps completed */
    unsigned long long tokens_seen; /* text tokens of those steps */
    char run_id[KSA_CKPT_STAMP];
    char data_identity[KSA_CKPT_STAMP], val_data_identity[KSA_CKPT_STAMP];
    double val_loss;
    double loss_window[KSA_CKPT_MAX_LOSS_WINDOW]; /* [n_loss_window] finite, oldest first */
    size_t n_loss_window;
    long loss_high_steps, skipped_steps; /* skipped_steps <= step */
} ksa_ckpt_progress;

/* Reads /train: the progress and stamps, and hands every attribute named like a key of
 * keys[0..n_keys) to set(ctx, key, value as text, origin). world_size and data_order are
 * informational; other attributes are reported on stderr and ignored. A model-only file (no
 * /train) or a missing step / tokens_seen is an error.                                   */
ksa_status ksa_ckpt_read_train(const char *path, const ksa_config_key *keys, size_t n_keys,
                               ksa_config_setter set, void *ctx, ksa_ckpt_progress *pr);
/* The /tokenizer type of a checkpoint into type: "byte" when the file has no /tokenizer or
 * no type (CHECKPOINT_FORMAT: readers then assume the byte tokenizer). */
ksa_status ksa_ckpt_read_tokenizer(const char *path, char *type, size_t cap);
/* The /tokenizer eot_id of a checkpoint into *eot_id (-1 when the file has none). */
ksa_status ksa_ckpt_read_eot_id(const char *path, int *eot_id);
/* /tokenizer/tokenizer.json: *bytes (malloc'ed, the caller frees it) and *len, or *bytes =
 * NULL and *len = 0 when the file has none. The bytes are checked against the dataset's
 * checksum and the type's identity word; a mismatch is an error naming the file.       */
ksa_status ksa_ckpt_read_tokenizer_json(const char *path, unsigned char **bytes, size_t *len);
/* The /train run_id of a checkpoint into id ("" when the file has none); an unreadable file
 * or one without /train is an error. Serial (any rank, no collective).                   */
ksa_status ksa_ckpt_read_run_id(const char *path, char *id, size_t cap);
/* /optim/exp_avg and /optim/exp_avg_sq into buffers of the parameter buffer's layout
 * ([p->numel]; padding elements are set to 0). Same as the slice [0, p->numel).          */
ksa_status ksa_ckpt_read_moments(const char *path, const ksa_params *p, ksa_real *exp_avg,
                                 ksa_real *exp_avg_sq);
/* The moments of elements [lo, hi) of the flat buffer only, whatever the number of ranks
 * that wrote the file: exp_avg[i], exp_avg_sq[i] (arrays of hi - lo) receive element
 * lo + i; elements that belong to no parameter (gaps, padding, beyond p->numel) are set
 * to 0; lo == hi reads nothing. Every dataset's shape is checked, but only the hyperslabs
 * of the slice are read: no rank needs memory for the whole optimizer state. Independent
 * (not collective): each rank reads its own slice with the default driver.               */
ksa_status ksa_ckpt_read_moments_slice(const char *path, const ksa_params *p, size_t lo, size_t hi,
                                       ksa_real *exp_avg, ksa_real *exp_avg_sq);

/* ---- a slice of the flat buffer, parameter by parameter ------------------------------ */
/* A rectangle of one parameter seen as a matrix [rows, cols] of its own elements: a linear
 * weight [out, in] is [out, in], a 1-D parameter of n elements is [1, n].                 */
typedef struct {
    size_t row, col;   /* first element: row, column */
    size_t rows, cols; /* extent, both >= 1 */
    size_t first;      /* its first element is element lo + first of the buffer (the slice
                        * array's index first) */
} ksa_ckpt_block;

#define KSA_CKPT_MAX_BLOCKS 3

/* The elements of parameter e that lie in [lo, hi) of the flat buffer, as at most three
 * blocks in row-major order (a partial first row, whole rows, a partial last row; one
 * block for a 1-D parameter). Returns their number, 0 when the slice holds nothing of e.
 * Together they are one contiguous run of the slice array: block k + 1 starts where block
 * k ends, from blocks[0].first (see ckpt.c for an example).                               */
size_t ksa_ckpt_slice_blocks(const ksa_param *e, size_t lo, size_t hi,
                             ksa_ckpt_block blocks[KSA_CKPT_MAX_BLOCKS]);

#endif
