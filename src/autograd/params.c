/* params.c - the parameter table and its flat buffers. */
#include "params.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARAM_ALIGN 16 /* elements */

void ksa_params_init(ksa_params *p)
{
    memset(p, 0, sizeof *p);
}

void ksa_params_free(ksa_params *p)
{
    free(p->table);
    ksa_free(p->tensors);
    ksa_free(p->data);
    ksa_free(p->grad);
    memset(p, 0, sizeof *p);
}

size_t ksa_params_add(ksa_params *p, const char *name, int ndim, size_t d0, size_t d1)
{
    KSA_ASSERT(!p->data, "parameter '%s' declared after the buffers were allocated", name);
    KSA_ASSERT(ndim == 1 || ndim == 2, "parameter '%s': rank %d is not 1 or 2", name, ndim);
    KSA_ASSERT(strlen(name) < KSA_PARAM_NAME_MAX, "parameter name too long: '%s'", name);
    KSA_ASSERT(ksa_params_find(p, name) < 0, "parameter '%s' declared twice", name);
    if (p->n == p->capacity) {
        p->capacity = p->capacity ? 2 * p->capacity : 64;
        p->table = realloc(p->table, p->capacity * sizeof *p->table);
        KSA_ASSERT(p->table, "out of memory growing the parameter table to %zu", p->capacity);
    }
    ksa_param *e = &p->table[p->n];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = ndim == 2 ? d1 : 0;
    e->numel = ndim == 2 ? d0 * d1 : d0;
    e->offset = p->numel;
    e->role = ndim == 2 ? KSA_ROLE_LINEAR : KSA_ROLE_NORM;
    e->twin = -1;
    p->numel += (e->numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    return p->n++;
}

void ksa_params_set_role(ksa_params *p, size_t i, ksa_param_role role, int summary, long twin)
{
    KSA_ASSERT(i < p->n, "parameter %zu of %zu", i, p->n);
    ksa_param *e = &p->table[i];
    KSA_ASSERT(twin < (long)i && (twin < 0 || !p->table[twin].summary),
               "parameter '%s': twin %ld must be an earlier shared parameter", e->name, twin);
    e->role = role;
    e->summary = summary;
    e->twin = twin;
}

void ksa_params_pad(ksa_params *p, size_t multiple)
{
    KSA_ASSERT(!p->data, "padding requested after the buffers were allocated");
    KSA_ASSERT(multiple >= 1, "padding multiple must be at least 1");
    p->numel = (p->numel + multiple - 1) / multiple * multiple;
}

/* The views of p's parameters into its data and grad buffers. */
static void make_views(ksa_params *p)
{
    p->tensors = ksa_alloc_zero((p->n ? p->n : 1) * sizeof *p->tensors);
    for (size_t i = 0; i < p->n; i++) {
        const ksa_param *e = &p->table[i];
        ksa_tensor *t = &p->tensors[i];
        t->data = p->data + e->offset;
        t->grad = p->grad + e->offset;
        t->ndim = e->ndim;
        t->shape[0] = e->shape[0];
        t->shape[1] = e->shape[1];
        t->numel = e->numel;
        t->requires_grad = !e->frozen;
    }
}

void ksa_params_alloc(ksa_params *p)
{
    KSA_ASSERT(!p->data, "parameter buffers allocated twice");
    size_t numel = p->numel ? p->numel : PARAM_ALIGN;
    p->data = ksa_alloc_zero(numel * sizeof(ksa_real));
    p->grad = ksa_alloc_zero(numel * sizeof(ksa_real));
    make_views(p);
}

void ksa_params_alloc_sparse(ksa_params *p)
{
    KSA_ASSERT(!p->data, "parameter buffers allocated twice");
    size_t bytes = (p->numel ? p->numel : PARAM_ALIGN) * sizeof(ksa_real);
    p->data = ksa_alloc_sparse_region(bytes);
    p->grad = ksa_alloc_sparse_region(bytes);
    make_views(p);
}

void ksa_params_free_sparse(ksa_params *p)
{
    size_t bytes = (p->numel ? p->numel : PARAM_ALIGN) * sizeof(ksa_real);
    ksa_free_region(p->data, bytes);
    ksa_free_region(p->grad, bytes);
    ksa_free(p->tensors);
    p->data = p->grad = NULL;
    p->tensors = NULL;
}

long ksa_params_find(const ksa_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->table[i].name, name) == 0)
            return (long)i;
    return -1;
}

ksa_tensor *ksa_params_tensor(const ksa_params *p, size_t i)
{
    KSA_ASSERT(p->tensors && i < p->n, "parameter index %zu of %zu (allocated: %d)", i, p->n,
               p->tensors != NULL);
    return &p->tensors[i];
}

void ksa_params_zero_grad(ksa_params *p)
{
    size_t n_trained = ksa_params_n_trainable(p, NULL);
    if (n_trained == p->n) {
        ksa_zero(p->grad, p->numel * sizeof(ksa_real));
        return;
    }
    for (size_t i = 0; i < p->n; i++) /* frozen parameters' gradients are never written */
        if (!p->table[i].frozen)
            ksa_zero(p->grad + p->table[i].offset, p->table[i].numel * sizeof(ksa_real));
}

/* ---- frozen parameters ---------------------------------------------------------------- */
/* Calls f(pattern) for each pattern of a comma-separated list (spaces around commas dropped)
 * until it returns non-zero; returns that value (0: none did). */
static int each_pattern(const char *list, int (*f)(const char *pattern, void *ctx), void *ctx)
{
    const char *s = list ? list : "";
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - s);
        while (n && s[n - 1] == ' ')
            n--;
        if (n) {
            char pattern[256];
            snprintf(pattern, sizeof pattern, "%.*s", (int)(n < 255 ? n : 255), s);
            int r = f(pattern, ctx);
            if (r)
                return r;
        }
        s = e;
    }
    return 0;
}

static int matches_name(const char *pattern, void *name)
{
    return fnmatch(pattern, name, 0) == 0;
}

static int any_pattern(const char *list, const char *name)
{
    return each_pattern(list, matches_name, (void *)name);
}

int ksa_params_name_trainable(const char *name, const char *trainable, const char *frozen)
{
    int listed = !trainable || !trainable[0] || any_pattern(trainable, name);
    return listed && !any_pattern(frozen, name);
}

typedef struct {
    const ksa_params *p;
    const char *unmatched; /* the first pattern that matches no name */
    char buf[256];
} pattern_check;

static int matches_nothing(const char *pattern, void *ctx)
{
    pattern_check *c = ctx;
    for (size_t i = 0; i < c->p->n; i++)
        if (fnmatch(pattern, c->p->table[i].name, 0) == 0)
            return 0;
    snprintf(c->buf, sizeof c->buf, "%s", pattern);
    c->unmatched = c->buf;
    return 1;
}

ksa_status ksa_params_select_trainable(ksa_params *p, const char *trainable, const char *frozen)
{
    const char *lists[2] = {trainable, frozen}, *keys[2] = {"trainable", "frozen"};
    for (int k = 0; k < 2; k++) {
        pattern_check c = {.p = p};
        if (each_pattern(lists[k], matches_nothing, &c))
            return ksa_fail(KSA_EINVAL,
                            "%s: the pattern '%s' matches no parameter of the model (names as in "
                            "`ksa inspect --config`, e.g. model.layers.0.self_attn.q_proj.weight; "
                            "* and ? are wildcards)",
                            keys[k], c.unmatched);
    }
    size_t n_trained = 0;
    for (size_t i = 0; i < p->n; i++)
        n_trained += (size_t)ksa_params_name_trainable(p->table[i].name, trainable, frozen);
    if (n_trained == 0)
        return ksa_fail(KSA_EINVAL, "trainable = '%s', frozen = '%s' leave no parameter to train",
                        trainable ? trainable : "", frozen ? frozen : "");
    for (size_t i = 0; i < p->n; i++) {
        p->table[i].frozen = !ksa_params_name_trainable(p->table[i].name, trainable, frozen);
        if (p->tensors)
            p->tensors[i].requires_grad = !p->table[i].frozen;
    }
    return KSA_OK;
}

size_t ksa_params_n_trainable(const ksa_params *p, size_t *elements)
{
    size_t n = 0, e = 0;
    for (size_t i = 0; i < p->n; i++)
        if (!p->table[i].frozen)
            n++, e += p->table[i].numel;
    if (elements)
        *elements = e;
    return n;
}

size_t ksa_params_count(const ksa_params *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->table[i].numel;
    return n;
}
