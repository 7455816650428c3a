/* tensor.c - tensor views over arena or parameter memory. */
#include "tensor.h"

#include <string.h>

static ksa_tensor *new_struct(ksa_arena *a, int ndim, const size_t *shape)
{
    KSA_ASSERT(ndim >= 1 && ndim <= KSA_MAX_DIMS, "tensor rank %d outside 1..%d", ndim,
               KSA_MAX_DIMS);
    ksa_tensor *t = ksa_arena_alloc(a, sizeof *t);
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    return t;
}

ksa_tensor *ksa_tensor_new(ksa_arena *a, int ndim, const size_t *shape)
{
    ksa_tensor *t = new_struct(a, ndim, shape);
    t->data = ksa_arena_reals(a, t->numel);
    return t;
}

ksa_tensor *ksa_tensor_1d(ksa_arena *a, size_t d0)
{
    return ksa_tensor_new(a, 1, &d0);
}

ksa_tensor *ksa_tensor_2d(ksa_arena *a, size_t d0, size_t d1)
{
    size_t shape[2] = {d0, d1};
    return ksa_tensor_new(a, 2, shape);
}

ksa_tensor *ksa_tensor_3d(ksa_arena *a, size_t d0, size_t d1, size_t d2)
{
    size_t shape[3] = {d0, d1, d2};
    return ksa_tensor_new(a, 3, shape);
}

ksa_tensor *ksa_tensor_like(ksa_arena *a, const ksa_tensor *t)
{
    return ksa_tensor_new(a, t->ndim, t->shape);
}

ksa_tensor *ksa_tensor_root(const ksa_tensor *t, size_t *offset)
{
    size_t off = 0;
    while (t->base) {
        off += t->base_offset;
        t = t->base;
    }
    *offset = off;
    return (ksa_tensor *)t;
}

static ksa_tensor *make_view(ksa_arena *a, ksa_tensor *t, int ndim, const size_t *shape,
                             size_t offset)
{
    ksa_tensor *v = new_struct(a, ndim, shape);
    v->data = t->data + offset;
    v->requires_grad = t->requires_grad;
    v->base = t;
    v->base_offset = offset;
    return v;
}

ksa_tensor *ksa_tensor_alias(ksa_arena *a, ksa_tensor *t)
{
    ksa_tensor *v = new_struct(a, t->ndim, t->shape);
    v->data = t->data;
    return v;
}

ksa_tensor *ksa_tensor_rows(ksa_arena *a, ksa_tensor *t, size_t row0, size_t nrows)
{
    KSA_ASSERT(row0 + nrows <= t->shape[0], "rows [%zu, %zu) outside a tensor of %zu rows", row0,
               row0 + nrows, t->shape[0]);
    size_t row_numel = t->shape[0] ? t->numel / t->shape[0] : 0;
    size_t shape[KSA_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = nrows;
    return make_view(a, t, t->ndim, shape, row0 * row_numel);
}

ksa_tensor *ksa_tensor_reshape(ksa_arena *a, ksa_tensor *t, int ndim, const size_t *shape)
{
    size_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= shape[i];
    KSA_ASSERT(numel == t->numel, "reshape to %zu elements of a tensor of %zu", numel, t->numel);
    return make_view(a, t, ndim, shape, 0);
}

ksa_real *ksa_tensor_grad(ksa_arena *a, ksa_tensor *t)
{
    if (!t->requires_grad)
        return NULL;
    size_t off;
    ksa_tensor *root = ksa_tensor_root(t, &off);
    if (!root->grad)
        root->grad = ksa_arena_zeros(a, root->numel);
    return root->grad + off;
}

ksa_real *ksa_tensor_grad_if_any(const ksa_tensor *t)
{
    size_t off;
    ksa_tensor *root = ksa_tensor_root(t, &off);
    return root->grad ? root->grad + off : NULL;
}

size_t ksa_cols(const ksa_tensor *t)
{
    return t->shape[t->ndim - 1];
}

size_t ksa_rows(const ksa_tensor *t)
{
    size_t cols = ksa_cols(t);
    return cols ? t->numel / cols : 0;
}
