/* layout.c - row counts and position ids of the two streams (KSA_SPEC §2.3-§2.4). */
#include "layout.h"

size_t ksa_layout_summary_rows(const ksa_model_layout *l, size_t T)
{
    return l->ksa ? (T / l->C) * l->S : 0;
}

size_t ksa_layout_block_unit(const ksa_model_layout *l)
{
    return l->ksa ? l->C : 1;
}

int32_t ksa_layout_text_position(const ksa_model_layout *l, size_t t)
{
    return (int32_t)(l->ksa && l->chunk_pos == KSA_POS_INNER_CHUNK ? t % l->C : t);
}

int32_t ksa_layout_summary_position(const ksa_model_layout *l, size_t c, size_t j)
{
    size_t C = l->C, S = l->S, a = c * C;
    long p = 0;
    if (l->summary_pos == KSA_POS_LAST_CHUNK_SLICE_RIGHT)
        p = (long)(a + ((j + 1) * C) / S) - 1;
    else if (l->summary_pos == KSA_POS_LAST_CHUNK_SLICE_LEFT)
        p = (long)(a + (j * C) / S) - 1;
    if (l->summary_pos != KSA_POS_ZEROS && p < (long)a)
        p = (long)a;
    return (int32_t)p;
}

void ksa_layout_positions(int32_t *pos, const ksa_model_layout *l, size_t nseq, size_t T)
{
    ksa_layout_block_positions(pos, l, nseq, 0, T);
}

void ksa_layout_block_positions(int32_t *pos, const ksa_model_layout *l, size_t nseq, size_t t0,
                                size_t T)
{
    size_t NS = ksa_layout_summary_rows(l, T), c0 = l->ksa ? t0 / l->C : 0;
    KSA_ASSERT(!l->ksa || t0 % l->C == 0, "a block starting at %zu is not whole chunks of %zu", t0,
               l->C);
    for (size_t s = 0; s < nseq; s++)
        for (size_t t = 0; t < T; t++)
            pos[s * T + t] = ksa_layout_text_position(l, t0 + t);
    int32_t *sum = pos + nseq * T;
    for (size_t s = 0; s < nseq; s++)
        for (size_t r = 0; r < NS; r++)
            sum[s * NS + r] = ksa_layout_summary_position(l, c0 + r / l->S, r % l->S);
}
