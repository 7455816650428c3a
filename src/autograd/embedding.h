/* embedding.h - row lookup in a table [V, D] by integer ids (model.embed_tokens and
 * summary_embedding, KSA_SPEC §5.1 and §6.2 step 2).                                      */
#ifndef KSA_AUTOGRAD_EMBEDDING_H
#define KSA_AUTOGRAD_EMBEDDING_H

#include "tape.h"

/* out: [N, D], table: [V, D], ids: [N] with 0 <= ids[n] < V (aborts otherwise). */
void ksa_embedding_forward(ksa_real *out, const ksa_real *table, const int32_t *ids, size_t N,
                           size_t V, size_t D);
/* Adds row n of dout into row ids[n] of dtable (repeated ids sum); dtable may be NULL.
 * Bit-identical for any thread count.                                                     */
void ksa_embedding_backward(ksa_real *dtable, const ksa_real *dout, const int32_t *ids, size_t N,
                            size_t V, size_t D);

/* out [N, D] = table[ids[n], :] for a table [V, D]. ids (N of them, caller-owned) are
 * copied into the tape's arena when a node is recorded, so the caller may reuse its
 * buffer as soon as this returns.                                                         */
ksa_tensor *ksa_op_embedding(ksa_tape *tp, ksa_tensor *table, const int32_t *ids, size_t N);

#endif
