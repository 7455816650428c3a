/* tensor.h - a tensor is a view: data pointer, shape, optional gradient. It owns nothing.
 *
 * Activation tensors (and their struct) live in the step arena; parameter tensors are views
 * into the flat parameter and gradient buffers (params.h). The gradient of an activation is
 * created lazily, zeroed, the first time backward adds into it (ksa_tensor_grad), so paths
 * that need no gradient cost nothing. A row-range view (ksa_tensor_rows) resolves its
 * gradient through its base tensor, so gradients of a view land in the base's buffer.     */
#ifndef KSA_AUTOGRAD_TENSOR_H
#define KSA_AUTOGRAD_TENSOR_H

#include "arena.h"

#define KSA_MAX_DIMS 4

typedef struct ksa_tensor {
    ksa_real *data;          /* borrowed */
    ksa_real *grad;          /* borrowed; NULL until created (activations) */
    struct ksa_tensor *base; /* non-NULL for a view: grad = base grad + base_offset */
    size_t base_offset;      /* elements */
    size_t shape[KSA_MAX_DIMS];
    int ndim;
    size_t numel;
    int requires_grad; /* gradient flows into this tensor during backward */
    size_t producer;   /* 1 + index of the first tape node whose output is this tensor (or
                        * a view of it); 0: none (a leaf). Set on the root only. */
} ksa_tensor;

/* New activation with uninitialised data, from the arena. */
ksa_tensor *ksa_tensor_new(ksa_arena *a, int ndim, const size_t *shape);
ksa_tensor *ksa_tensor_1d(ksa_arena *a, size_t d0);
ksa_tensor *ksa_tensor_2d(ksa_arena *a, size_t d0, size_t d1);
ksa_tensor *ksa_tensor_3d(ksa_arena *a, size_t d0, size_t d1, size_t d2);
ksa_tensor *ksa_tensor_like(ksa_arena *a, const ksa_tensor *t);

/* A new tensor over t's data with its own gradient (not a view): an op that overwrites its
 * input in place returns one, so that input and output gradients stay apart. */
ksa_tensor *ksa_tensor_alias(ksa_arena *a, ksa_tensor *t);

/* Rows [row0, row0 + nrows) of t (first dimension), sharing data and gradient. */
ksa_tensor *ksa_tensor_rows(ksa_arena *a, ksa_tensor *t, size_t row0, size_t nrows);

/* The same data seen with another shape of equal numel, sharing the gradient. */
ksa_tensor *ksa_tensor_reshape(ksa_arena *a, ksa_tensor *t, int ndim, const size_t *shape);

/* The tensor that owns t's data and gradient (t itself unless t is a view), and t's offset
 * into it in elements. */
ksa_tensor *ksa_tensor_root(const ksa_tensor *t, size_t *offset);

/* Gradient buffer of t, created zeroed in the arena on first use; NULL if !requires_grad. */
ksa_real *ksa_tensor_grad(ksa_arena *a, ksa_tensor *t);
/* Gradient buffer of t if it exists already (no allocation), else NULL. */
ksa_real *ksa_tensor_grad_if_any(const ksa_tensor *t);

size_t ksa_rows(const ksa_tensor *t); /* numel / last dimension */
size_t ksa_cols(const ksa_tensor *t); /* last dimension */

#endif
