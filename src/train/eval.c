/* eval.c - the loss of a model over the rows of a token file, on any number of ranks. */
#include "train/eval.h"

#include <stdio.h>
#include <string.h>

#include "data/tokenizer.h"
#include "dist/context.h"
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
    KSA_TRY(ksa_loader_check_sequential(&r->tf, offset, (size_t)batch, L)); /* before the rows */
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

size_t ksa_eval_position_buckets(size_t L, ksa_eval_bucket *buckets)
{
    KSA_ASSERT(L >= 1, "no target position");
    size_t n = 0;
    for (size_t from = 0; from < L; n++) {
        size_t to = from == 0 ? 1 : from > L / 2 ? L : 2 * from; /* no overflow near SIZE_MAX */
        buckets[n] = (ksa_eval_bucket){.from = from, .to = to};
        from = to;
    }
    return n;
}

/* ---- progress on stderr ------------------------------------------------------------------ */
typedef struct {
    double t0, every, next; /* every <= 0: silent */
    size_t B, L;
} eval_progress;

static void format_duration(char *buf, size_t cap, double seconds)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

/* After row b (0-based) of the B: a line when `every` seconds have passed since the last. The
 * ranks go through the rows in step, so rank 0's row is the whole job's. */
static void report_progress(eval_progress *p, size_t b)
{
    double now = ksa_now();
    if (p->every <= 0 || now < p->next || b + 1 >= p->B)
        return;
    p->next = now + p->every;
    double elapsed = now - p->t0, tokens = (double)((b + 1) * p->L);
    double rate = elapsed > 0 ? tokens / elapsed : 0;
    char el[32], eta[32];
    format_duration(el, sizeof el, elapsed);
    format_duration(eta, sizeof eta, rate > 0 ? (double)((p->B - b - 1) * p->L) / rate : 0);
    fprintf(stderr, "ksa eval: rows %zu/%zu | %.0f tok/s | %s elapsed | ETA %s\n", b + 1, p->B,
            rate, el, eta);
    fflush(stderr);
}

/* ---- the loss ------------------------------------------------------------------------------ */
/* The bytes of text a target id stands for (eval.h, text_bytes). */
static double target_bytes(const ksa_eval_options *o, int32_t id)
{
    return o->text_bytes ? (double)o->text_bytes[id] : (double)(id < KSA_TOKENIZER_EOT);
}

/* Every rank evaluates its rows (row b is rank b mod N's) and the sums are reduced: the loss
 * (each row's share of the mean), the byte targets, per bucket its summed loss and byte
 * targets, and with grads the gradient of the mean loss in m->params.grad. */
ksa_status ksa_eval_loss(ksa_model *m, ksa_eval_rows *rows, const ksa_eval_options *o,
                         ksa_eval_result *r)
{
    size_t L = rows->L, B = rows->B;
    memset(r, 0, sizeof *r);
    ksa_eval_bucket *bk = r->bucket;
    size_t nb = o->by_position ? ksa_eval_position_buckets(L, bk) : 0;
    r->n_buckets = nb;
    ksa_arena arena;
    ksa_grad_pool grads;
    ksa_tape tp;
    /* context parallelism: row b is context group b mod n_groups's, each rank of it computing
     * its block of the row, targets [t0, t0 + T) */
    int rank = ksa_dist_rank(), n_ranks = ksa_dist_size();
    size_t t0 = 0, T = L;
    if (m->cp && m->cp->P > 1) {
        KSA_ASSERT(m->cp->L == L, "context-parallel grid of %zu tokens for rows of %zu", m->cp->L,
                   L);
        t0 = ksa_cp_block_start(m->cp), T = ksa_cp_block_len(m->cp);
        rank = m->cp->group, n_ranks = m->cp->n_groups;
    }
    ksa_model_tape_init(m, 1, T, o->grads, &arena, &grads, &tp);
    tp.recording = o->grads;
    ksa_params_zero_grad(&m->params);
    /* sums: [0] the loss, [1] byte targets, then per bucket k: [2 + 2k] the summed loss,
     * [3 + 2k] byte targets */
    double sums[2 + 2 * KSA_EVAL_MAX_BUCKETS] = {0};
    double *target_loss = nb ? ksa_alloc(T * sizeof *target_loss) : NULL; /* [T] */
    eval_progress progress = {.t0 = ksa_now(), .every = o->progress_seconds, .B = B, .L = L};
    progress.next = progress.t0 + progress.every;
    for (size_t b = 0; b < B; b++) {
        const int32_t *row = rows_get(rows, b); /* every row: the whole file's are read in turn */
        if (b % (size_t)n_ranks != (size_t)rank)
            continue;
        for (size_t t = t0 + 1; t <= t0 + T; t++)
            sums[1] += target_bytes(o, row[t]);
        ksa_tape_reset(&tp);
        double part;
        ksa_tensor *l = ksa_model_forward_per_target(m, &tp, row + t0, 1, T, (double)(B * L), &part,
                                                     target_loss);
        if (o->grads)
            ksa_tape_backward(&tp, l);
        sums[0] += part;
        for (size_t k = 0; k < nb; k++) /* the bucket's targets in this block */
            for (size_t t = bk[k].from > t0 ? bk[k].from : t0; t < bk[k].to && t < t0 + T; t++) {
                sums[2 + 2 * k] += target_loss[t - t0];
                sums[3 + 2 * k] += target_bytes(o, row[t + 1]);
            }
        if (rank == 0)
            report_progress(&progress, b);
    }
    ksa_free(target_loss);
    ksa_model_tape_free(&arena, &grads, &tp);
    KSA_TRY(ksa_dist_sum(sums, (int)(2 + 2 * nb)));
    r->loss = sums[0];
    r->n_bytes = (size_t)sums[1];
    for (size_t k = 0; k < nb; k++) {
        bk[k].targets = (bk[k].to - bk[k].from) * B;
        bk[k].loss = sums[2 + 2 * k] / (double)bk[k].targets;
        bk[k].n_bytes = (size_t)sums[3 + 2 * k];
    }
    if (o->grads)
        KSA_TRY(ksa_dist_sum_reals(m->params.grad, m->params.numel));
    return KSA_OK;
}
