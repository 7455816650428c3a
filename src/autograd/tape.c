/* tape.c - node storage and the reverse replay. */
#include "tape.h"

#include <string.h>

static const char *const op_names[] = {
    [KSA_OP_LINEAR] = "linear",
    [KSA_OP_EMBEDDING] = "embedding",
    [KSA_OP_RMSNORM] = "rmsnorm",
    [KSA_OP_ROPE] = "rope",
    [KSA_OP_SWIGLU] = "swiglu",
    [KSA_OP_ADD] = "add",
    [KSA_OP_XENT] = "cross_entropy",
    [KSA_OP_SUMMARY_ATTN] = "summary_attention",
    [KSA_OP_CAUSAL_ATTN] = "causal_attention",
    [KSA_OP_CONCAT] = "concat_rows",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == KSA_OP_COUNT, "every op needs a name");

const char *ksa_op_name(ksa_op op)
{
    return (op >= 0 && op < KSA_OP_COUNT && op_names[op]) ? op_names[op] : "unknown op";
}

void ksa_tape_init(ksa_tape *tp, ksa_arena *arena, size_t max_nodes)
{
    tp->arena = arena;
    tp->nodes = ksa_alloc(max_nodes * sizeof *tp->nodes);
    tp->n = 0;
    tp->capacity = max_nodes;
    tp->recording = 1;
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

ksa_node *ksa_tape_push(ksa_tape *tp, ksa_backward_fn backward, ksa_op op)
{
    KSA_ASSERT(tp->n < tp->capacity, "tape full: %zu nodes (pushing %s)", tp->capacity,
               ksa_op_name(op));
    ksa_node *nd = &tp->nodes[tp->n++];
    memset(nd, 0, sizeof *nd);
    nd->backward = backward;
    nd->op = op;
    return nd;
}

ksa_real *ksa_tape_grad(ksa_tape *tp, ksa_tensor *t)
{
    return t ? ksa_tensor_grad(tp->arena, t) : NULL;
}

void ksa_tape_backward(ksa_tape *tp, ksa_tensor *loss)
{
    KSA_ASSERT(loss->numel == 1, "backward needs a one-element loss, got %zu elements",
               loss->numel);
    KSA_ASSERT(loss->requires_grad, "backward from a loss that needs no gradient");
    ksa_real *dloss = ksa_tensor_grad(tp->arena, loss);
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
    }
}
