/* tape.c - node storage and the reverse replay. */
#include "tape.h"

#include <string.h>

void ksa_tape_init(ksa_tape *tp, ksa_arena *arena, size_t max_nodes)
{
    tp->arena = arena;
    tp->nodes = ksa_alloc(max_nodes * sizeof *tp->nodes);
    tp->n = 0;
    tp->capacity = max_nodes;
    tp->recording = 1;
    tp->plan_only = 0;
    tp->grads = NULL;
}

void ksa_tape_free(ksa_tape *tp)
{
    ksa_free(tp->nodes);
    tp->nodes = NULL;
    tp->n = tp->capacity = 0;
}

void ksa_tape_reset(ksa_tape *tp)
{
    tp->n = 0;
    ksa_arena_reset(tp->arena);
    if (tp->grads)
        ksa_grad_pool_reset(tp->grads);
}

void ksa_tape_use_grad_pool(ksa_tape *tp, ksa_grad_pool *p)
{
    tp->grads = p;
}

void ksa_tape_init_nested(ksa_tape *sub, ksa_tape *tp, size_t max_nodes)
{
    sub->arena = tp->arena;
    sub->grads = tp->grads;
    sub->nodes = ksa_arena_alloc(tp->arena, max_nodes * sizeof *sub->nodes);
    sub->n = 0;
    sub->capacity = max_nodes;
    sub->recording = 1;
    sub->plan_only = tp->plan_only;
}

void ksa_tape_seed_borrowed(ksa_tape *tp, ksa_tensor *t, ksa_real *grad)
{
    (void)tp;
    KSA_ASSERT(!t->base && t->requires_grad, "a borrowed gradient seeds a recorded tensor");
    t->grad = grad;
    t->producer = 0; /* seen as a leaf: replay keeps its gradient */
}

void ksa_tape_drop_grad(ksa_tape *tp, ksa_tensor *t)
{
    size_t offset;
    ksa_tensor *root = ksa_tensor_root(t, &offset);
    if (tp->grads && root->grad && ksa_grad_pool_owns(tp->grads, root->grad))
        ksa_grad_pool_release(tp->grads, root->grad);
    root->grad = NULL;
}

int ksa_tape_wants(const ksa_tape *tp, int n, ksa_tensor *const *inputs)
{
    if (!tp->recording)
        return 0;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad)
            return 1;
    return 0;
}

ksa_node *ksa_tape_record(ksa_tape *tp, ksa_backward_fn backward, const char *op, ksa_tensor *out,
                          int n_in, ksa_tensor *const *in, size_t ctx_bytes)
{
    KSA_ASSERT(n_in >= 0 && n_in <= KSA_NODE_MAX_IN, "%s: %d inputs", op, n_in);
    if (!ksa_tape_wants(tp, n_in, in))
        return NULL;
    KSA_ASSERT(tp->n < tp->capacity, "tape full: %zu nodes (recording %s)", tp->capacity, op);
    ksa_node *nd = &tp->nodes[tp->n++];
    memset(nd, 0, sizeof *nd);
    nd->backward = backward;
    nd->op = op;
    for (int i = 0; i < n_in; i++)
        nd->in[i] = in[i];
    nd->out = out;
    out->requires_grad = 1;
    size_t offset;
    ksa_tensor *root = ksa_tensor_root(out, &offset);
    root->requires_grad = 1; /* out may be a row range of root: root's consumers see it */
    if (!root->producer)
        root->producer = tp->n; /* 1 + this node's index */
    if (ctx_bytes) {
        nd->ctx = ksa_arena_alloc(tp->arena, ctx_bytes);
        memset(nd->ctx, 0, ctx_bytes);
    }
    return nd;
}

ksa_real *ksa_tape_grad(ksa_tape *tp, ksa_tensor *t)
{
    if (!t || !t->requires_grad)
        return NULL;
    KSA_ASSERT(tp->grads || !tp->plan_only, "a sizing run takes its gradients from a pool");
    if (!tp->grads)
        return ksa_tensor_grad(tp->arena, t);
    size_t offset;
    ksa_tensor *root = ksa_tensor_root(t, &offset);
    if (!root->grad)
        root->grad = tp->plan_only ? ksa_grad_pool_alloc(tp->grads, root->numel)
                                   : ksa_grad_pool_zeros(tp->grads, root->numel);
    return root->grad + offset;
}

void ksa_tape_backward(ksa_tape *tp, ksa_tensor *loss)
{
    KSA_ASSERT(loss->numel == 1, "backward needs a one-element loss, got %zu elements",
               loss->numel);
    KSA_ASSERT(loss->requires_grad, "backward from a loss that needs no gradient");
    ksa_real *dloss = ksa_tape_grad(tp, loss);
    if (!tp->plan_only)
        dloss[0] += 1;
    ksa_tape_replay(tp);
}

void ksa_tape_replay(ksa_tape *tp)
{
    for (size_t i = tp->n; i-- > 0;) {
        const ksa_node *nd = &tp->nodes[i];
        if (!ksa_tensor_grad_if_any(nd->out))
            continue; /* nothing flowed into this output */
        nd->backward(tp, nd);
        size_t offset;
        ksa_tensor *root = ksa_tensor_root(nd->out, &offset);
        if (tp->grads && root->producer == i + 1 && ksa_grad_pool_owns(tp->grads, root->grad)) {
            ksa_grad_pool_release(tp->grads, root->grad); /* every consumer has added in */
            root->grad = NULL;
        }
    }
}
