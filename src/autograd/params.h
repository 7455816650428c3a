/* params.h - all parameters in one flat buffer, gradients in a second of the same layout.
 *
 * A table built once from the configuration maps names to slices (STYLE.md §4). Offsets
 * are rounded up to 16 elements (64 bytes for float), so every parameter starts aligned.
 * This makes the gradient reduce-scatter one call, AdamW one loop and a checkpoint a walk
 * over the table.                                                                           */
#ifndef KSA_AUTOGRAD_PARAMS_H
#define KSA_AUTOGRAD_PARAMS_H

#include "tensor.h"

#define KSA_PARAM_NAME_MAX 96

/* What a parameter is, set where the model declares it, so that initialisation, FLOP counts
 * and --init-from never match name strings. */
typedef enum {
    KSA_ROLE_LINEAR = 0, /* a linear layer's weight [out, in] (the default of a 2-D parameter) */
    KSA_ROLE_NORM,       /* an RMSNorm weight [n] (the default of a 1-D parameter) */
    KSA_ROLE_EMBEDDING,  /* a lookup table [rows, D] */
    KSA_ROLE_LM_HEAD,    /* the untied output head [V, D] */
} ksa_param_role;

typedef struct {
    char name[KSA_PARAM_NAME_MAX]; /* "model.layers.3.self_attn.q_proj.weight" */
    size_t offset;                 /* same offset into data and grad */
    size_t numel;
    int ndim; /* 2: linear weight [out, in]; 1: norm weight [D] */
    size_t shape[2];
    ksa_param_role role;
    int summary; /* 1: a summary-only parameter (KSA_SPEC §5), used by summary rows only */
    long twin;   /* summary parameters: the index of the shared parameter they stand in for
                  * (q_proj_summary -> q_proj), -1 when there is none (summary_embedding);
                  * -1 for every other parameter */
    int frozen;  /* 1: not trained (ksa_params_select_trainable): its view needs no gradient,
                  * so no op computes one, and the trainer keeps no optimizer state for it */
} ksa_param;

typedef struct {
    ksa_param *table;    /* owned, n entries */
    ksa_tensor *tensors; /* owned, n views (data + grad) once allocated */
    size_t n, capacity;
    size_t numel;   /* elements of data and grad, padding included */
    ksa_real *data; /* owned, 64-byte aligned */
    ksa_real *grad; /* owned, same layout */
} ksa_params;

void ksa_params_init(ksa_params *p);
void ksa_params_free(ksa_params *p);

/* Declares a parameter (before ksa_params_alloc); returns its index. d1 is ignored when
 * ndim == 1; the role is LINEAR for ndim 2 and NORM for ndim 1 until ksa_params_set_role. Names
 * must be unique and shorter than KSA_PARAM_NAME_MAX.                   */
size_t ksa_params_add(ksa_params *p, const char *name, int ndim, size_t d0, size_t d1);

/* Sets what parameter i is (ksa_params_add gives LINEAR or NORM by rank, not summary, no
 * twin). A twin must be declared before and must not itself be a summary parameter.      */
void ksa_params_set_role(ksa_params *p, size_t i, ksa_param_role role, int summary, long twin);

/* Rounds the buffer length up to a multiple of `multiple` (before ksa_params_alloc), so that
 * N ranks can own equal contiguous slices of it (DESIGN.md §5). The padding is zero. */
void ksa_params_pad(ksa_params *p, size_t multiple);

/* Allocates data (zeroed) and grad (zeroed) and builds the tensor views. */
void ksa_params_alloc(ksa_params *p);
/* The same in sparse regions (ksa_alloc_sparse_region), for a sizing run that writes
 * nothing into them; ksa_params_free_sparse gives them back (the table stays).          */
void ksa_params_alloc_sparse(ksa_params *p);
void ksa_params_free_sparse(ksa_params *p);

/* Index of the parameter called name, or -1. */
long ksa_params_find(const ksa_params *p, const char *name);

/* View of parameter i: data and grad point into the flat buffers, requires_grad = 1. */
ksa_tensor *ksa_params_tensor(const ksa_params *p, size_t i);

/* Zeroes the gradients of the parameters that are not frozen (all of grad when none is). */
void ksa_params_zero_grad(ksa_params *p);

/* ---- frozen parameters (training keys trainable and frozen, docs/training.md) ------------ *
 * A parameter is trained when its name matches a pattern of `trainable` (a comma-separated
 * list of fnmatch(3) globs; "" matches every name) and none of `frozen` (the same; "" matches
 * none). Spaces around the commas are ignored.                                              */
int ksa_params_name_trainable(const char *name, const char *trainable, const char *frozen);
/* Marks every parameter of p trained or frozen by the lists (their views too, when
 * allocated: requires_grad = !frozen). KSA_EINVAL naming the problem when a pattern of either
 * list matches no parameter (a typo would silently train or freeze something else) or when no
 * parameter is left to train; p is then unchanged.                                         */
ksa_status ksa_params_select_trainable(ksa_params *p, const char *trainable, const char *frozen);
/* Parameters not frozen, and their elements (padding excluded). */
size_t ksa_params_n_trainable(const ksa_params *p, size_t *elements);

/* Elements that belong to parameters (padding excluded). */
size_t ksa_params_count(const ksa_params *p);

#endif
