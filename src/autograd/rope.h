/* rope.h - rotary position embedding, half rotation ("rotate_half", HF/NeoX, not interleaved),
 * KSA_SPEC §6.1. Applied to q and k after the head norms, each row with its own position id
 * (§2.4: text and summary rows alike), every head of a row with the same angles.          */
#ifndef KSA_AUTOGRAD_ROPE_H
#define KSA_AUTOGRAD_ROPE_H

#include "tape.h"

/* x, y: [N, H, dh], dh contiguous; pos: [N]. y may equal x (in place). */
void ksa_rope_forward(ksa_real *y, const ksa_real *x, const int32_t *pos, size_t N, size_t H,
                      size_t dh, double base);
/* Adds into dx (never overwrites); dx may be NULL. dx, dy: [N, H, dh]. */
void ksa_rope_backward(ksa_real *dx, const ksa_real *dy, const int32_t *pos, size_t N, size_t H,
                       size_t dh, double base);

/* cos and sin of the angles of N rows: made once, read by every RoPE op over those rows
 * (the decoder makes one per step for the q and k of all layers). In the arena. */
typedef struct {
    const int32_t *pos;      /* [N], a copy: the caller's buffer need not outlive the step */
    const ksa_real *cs, *sn; /* [N, dh/2]: cos and sin of pos[n] * base^(-2i/dh), in double,
                              * rounded once */
    size_t N, dh;
    double base;
} ksa_rope_table;
/* [N * dh] reals and N positions in arena a (plus alignment). */
const ksa_rope_table *ksa_rope_table_new(ksa_arena *a, const int32_t *pos, size_t N, size_t dh,
                                         double base);
/* The same memory as ksa_rope_table_new, in the same order, left unwritten: what a sizing run
 * (ksa_model_plan) allocates without computing N * dh / 2 cosines and sines.              */
const ksa_rope_table *ksa_rope_table_reserve(ksa_arena *a, size_t N, size_t dh, double base);

/* y = rope(x) with x [N, H*dh] or [N, H, dh] (N = x->shape[0], dh = numel / (N*H)). pos has
 * N entries and is copied into the arena, so the caller's buffer need not outlive the step. */
ksa_tensor *ksa_op_rope(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H, double base);
/* The same, overwriting x's data with y (no second buffer). The backward of RoPE needs no
 * values, so this is exact whenever nothing else reads x after it: x's other consumers and
 * the backward of x's producer (rmsnorm and linear read their inputs, not their outputs).
 * y has its own gradient.                                                               */
ksa_tensor *ksa_op_rope_in_place(ksa_tape *tp, ksa_tensor *x, const int32_t *pos, size_t H,
                                 double base);
/* The same with the angles of the first N rows of a table of x's head_dim (N = x's rows; no
 * cos/sin computed): the decoder's table of all rows serves the text rows, its first ones,
 * of a bypass layer too.                                                                 */
ksa_tensor *ksa_op_rope_table_in_place(ksa_tape *tp, ksa_tensor *x, const ksa_rope_table *table,
                                       size_t H);

#endif
