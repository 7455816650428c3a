/* eval.c - the loss of a model over the rows of a token file, on any number of ranks. */
#include "train/eval.h"

#include <string.h>

#include "data/tokenizer.h"
#include "dist/dist.h"

ksa_status ksa_eval_rows_open(ksa_eval_rows *r, const char *data, ksa_dtype dtype, size_t V,
                              size_t L, long batch, size_t offset)
{
    memset(r, 0, sizeof *r);
    r->data = data;
    r->whole = batch < 0;
    r->L = L;
    if (r->whole) {
        KSA_TRY(ksa_val_reader_open(&r->vr, data, dtype, V, r->L, 1, 0));
        r->have_reader = 1;
        r->B = r->vr.n_rows;
        r->tokens = ksa_alloc((r->L + 1) * sizeof *r->tokens);
        return KSA_OK;
    }
    KSA_TRY(ksa_tokfile_open(&r->tf, data, dtype, V));
    r->have_file = 1;
    r->B = (size_t)batch;
    r->tokens = ksa_alloc(r->B * (r->L + 1) * sizeof *r->tokens);
    return ksa_loader_read_sequential(&r->tf, r->tokens, offset, r->B, r->L);
}

/* Row b (rows are asked for in order). */
static const int32_t *rows_get(ksa_eval_rows *r, size_t b)
{
    if (!r->whole)
        return r->tokens + b * (r->L + 1);
    size_t got = ksa_val_reader_next(&r->vr, r->tokens);
    KSA_ASSERT(got == 1, "row %zu of the %zu of '%s'", b, r->B, r->data);
    return r->tokens;
}

void ksa_eval_rows_close(ksa_eval_rows *r)
{
    ksa_free(r->tokens);
    if (r->have_file)
        ksa_tokfile_close(&r->tf);
    if (r->have_reader)
        ksa_val_reader_close(&r->vr);
}

/* The mean loss over the B·L targets (summed over the ranks: row b is rank b mod N's), the
 * number of targets that are bytes, and with grads the gradient of the mean loss in
 * m->params.grad (summed over the ranks as well). */
ksa_status ksa_eval_loss(ksa_model *m, ksa_eval_rows *rows, int grads, double *loss,
                         size_t *n_bytes)
{
    size_t L = rows->L, B = rows->B;
    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(m, 1, L));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(m));
    tp.recording = grads;
    ksa_params_zero_grad(&m->params);
    double sums[2] = {0, 0}; /* loss, targets that are bytes (ids < 256; not end-of-text) */
    int rank = ksa_dist_rank(), n_ranks = ksa_dist_size();
    for (size_t b = 0; b < B; b++) {
        const int32_t *row = rows_get(rows, b);
        if (b % (size_t)n_ranks != (size_t)rank)
            continue;
        for (size_t t = 1; t <= L; t++)
            sums[1] += row[t] < KSA_TOKENIZER_EOT;
        ksa_tape_reset(&tp);
        double part;
        ksa_tensor *l = ksa_model_forward(m, &tp, row, 1, L, (double)(B * L), &part, NULL);
        if (grads)
            ksa_tape_backward(&tp, l);
        sums[0] += part;
    }
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    KSA_TRY(ksa_dist_sum(sums, 2));
    *loss = sums[0];
    *n_bytes = (size_t)sums[1];
    if (grads)
        KSA_TRY(ksa_dist_sum_reals(m->params.grad, m->params.numel));
    return KSA_OK;
}
