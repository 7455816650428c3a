/* layout.h - the two streams of a batch and their position ids (KSA_SPEC §2, DESIGN.md §2).
 *
 * A batch of nseq sequences of T text tokens is stored as one buffer of rows:
 *   rows [0, nseq*T)                 text rows, sequence-major (row s*T + t is t_t of seq s)
 *   rows [nseq*T, nseq*T + nseq*NS)  summary rows, sequence-major (row nseq*T + s*NS + c*S + j
 *                                    is s_c.j of sequence s), NS = floor(T/C)*S
 * Summary rows exist only for complete chunks (KSA_SPEC §2.3).                            */
#ifndef KSA_MODEL_LAYOUT_H
#define KSA_MODEL_LAYOUT_H

#include "model/config.h"

/* Summary rows per sequence: floor(T/C)*S, 0 when summary attention is off. */
size_t ksa_layout_summary_rows(const ksa_model_layout *l, size_t T);

/* Context parallelism splits rows into blocks of whole multiples of this (dist/context.h):
 * the chunk size C of a chunked model, 1 otherwise. */
size_t ksa_layout_block_unit(const ksa_model_layout *l);

/* Position ids of every row of the two-stream buffer (KSA_SPEC §2.4, with the correct chunk
 * start a = c*C): pos [nseq*T + nseq*NS]. Text: origin -> t, inner_chunk -> t mod C
 * (always t without summary attention). Summary s_c.j with a = c*C, len = C:
 *   zeros -> 0;  right -> max(a, a + ((j+1)*len) div S - 1);  left -> max(a, a + (j*len) div S - 1)
 */
/* The position id of text token t_t, and of summary token s_c.j (chunk start a = c*C). */
int32_t ksa_layout_text_position(const ksa_model_layout *l, size_t t);
int32_t ksa_layout_summary_position(const ksa_model_layout *l, size_t c, size_t j);

void ksa_layout_positions(int32_t *pos, const ksa_model_layout *l, size_t nseq, size_t T);
/* The same for a block of every sequence, text rows [t0, t0 + T) (t0 a multiple of C) and the
 * summary rows of its complete chunks: the whole sequence's positions (context parallelism). */
void ksa_layout_block_positions(int32_t *pos, const ksa_model_layout *l, size_t nseq, size_t t0,
                                size_t T);

#endif
