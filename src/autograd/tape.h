/* tape.h - the record of a forward pass, replayed in reverse by backward.
 *
 * Each op computes its forward kernel and, when the tape is recording and an input needs a
 * gradient, appends one node {backward function, inputs, output, saved context}.
 * ksa_tape_backward seeds d(loss) = 1 and calls the nodes' backward functions last to
 * first; a node whose output received no gradient is skipped. Backward functions add into
 * gradients (never overwrite), so a tensor used twice gets the sum.
 *
 * Activation gradients come from the arena, or, with ksa_tape_use_grad_pool, from a pool
 * that gets each one back as soon as the backward of the node that produced its tensor has
 * run (all its consumers have then added into it: they come later on the tape). The
 * gradient of a leaf (a tensor no node produced: inputs, parameters) is kept.             */
#ifndef KSA_AUTOGRAD_TAPE_H
#define KSA_AUTOGRAD_TAPE_H

#include "grad_pool.h"
#include "tensor.h"

#define KSA_NODE_MAX_IN 8

struct ksa_tape;
struct ksa_node;
typedef void (*ksa_backward_fn)(struct ksa_tape *tp, const struct ksa_node *nd);

typedef struct ksa_node {
    ksa_backward_fn backward;
    const char *op;                  /* the op's name, for messages ("rope")             */
    ksa_tensor *in[KSA_NODE_MAX_IN]; /* inputs (borrowed); unused slots NULL             */
    ksa_tensor *out;                 /* output (borrowed)                                */
    void *ctx;                       /* the op's own context struct, in the arena; NULL
                                      * for ops that need none                           */
} ksa_node;

typedef struct ksa_tape {
    ksa_arena *arena;     /* borrowed: activations, saved context (and activation grads
                           * without a pool) */
    ksa_grad_pool *grads; /* borrowed or NULL: activation grads, freed when dead */
    ksa_node *nodes;      /* owned, capacity entries */
    size_t n, capacity;
    int recording; /* 0: no-grad mode (evaluation), ops push nothing */
    int plan_only; /* a sizing run (ksa_model_plan): ops allocate, record and replay as
                    * usual but run no kernel and write no tensor, so the arena's peak and
                    * the pool's high water are those of a real step, found without its
                    * work or its memory. Activation gradients must come from a pool. */
} ksa_tape;

void ksa_tape_init(ksa_tape *tp, ksa_arena *arena, size_t max_nodes);
void ksa_tape_free(ksa_tape *tp);
/* Start of a step: forget the nodes and reset the arena (frees nothing, O(1)). */
void ksa_tape_reset(ksa_tape *tp);

/* Activation gradients from pool p from now on (the trainer's choice; tests of single ops
 * keep them in the arena so that they can read every gradient after backward). The pool is
 * reset with the tape.                                                                   */
void ksa_tape_use_grad_pool(ksa_tape *tp, ksa_grad_pool *p);

/* A tape for re-running part of a forward inside a backward function of tp (activation
 * recomputation): it records into tp's arena and gradient pool, and its max_nodes nodes
 * come from tp's arena, so releasing the arena to a mark taken before this call frees it
 * all. ksa_tape_free must not be called on it. */
void ksa_tape_init_nested(ksa_tape *sub, ksa_tape *tp, size_t max_nodes);

/* Gives t (the output of a node recorded on tp, not a view) the gradient `grad`, which
 * belongs to someone else (the outer tape of a nested one): tp reads and never frees it. */
void ksa_tape_seed_borrowed(ksa_tape *tp, ksa_tensor *t, ksa_real *grad);

/* Gives back t's gradient when the gradient pool holds it (a leaf's gradient, which replay
 * keeps, once its value has been used), and forgets it. */
void ksa_tape_drop_grad(ksa_tape *tp, ksa_tensor *t);

/* 1 if the tape records and any of the n inputs needs a gradient. */
int ksa_tape_wants(const ksa_tape *tp, int n, ksa_tensor *const *inputs);

/* How every op records itself, after its forward kernel: when ksa_tape_wants(n_in, in),
 * marks out as needing a gradient, appends the node {backward, op, in, out} and gives it a
 * zeroed context of ctx_bytes in the arena (nd->ctx; NULL for 0 bytes) for the op to fill;
 * returns the node, or NULL when nothing is recorded. Aborts when the tape is full (a
 * sizing bug). op names the op in messages. */
ksa_node *ksa_tape_record(ksa_tape *tp, ksa_backward_fn backward, const char *op, ksa_tensor *out,
                          int n_in, ksa_tensor *const *in, size_t ctx_bytes);

/* Gradient of t for a backward function to add into; NULL when t needs none. */
ksa_real *ksa_tape_grad(ksa_tape *tp, ksa_tensor *t);

/* d(loss)/d(loss) = 1 for a one-element loss, then ksa_tape_replay. */
void ksa_tape_backward(ksa_tape *tp, ksa_tensor *loss);

/* Every node in reverse order, with whatever output gradients the caller has seeded
 * (tests seed dy = c to check an op against the loss sum(y * c)).                    */
void ksa_tape_replay(ksa_tape *tp);

#endif
