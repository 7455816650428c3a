/* trainer.c - the training step (see trainer.h). */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "dist/context.h"
#include "dist/dist.h"
#include "data/path.h"
#include "data/tok.h"
#include "data/tokenizer.h"
#include "model/layout.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/loss_guard.h"

_Static_assert(KSA_CKPT_MAX_LOSS_WINDOW == KSA_LOSS_GUARD_MAX_WINDOW,
               "a checkpoint holds the whole window of the loss guard");

ksa_status ksa_train_data_open(const ksa_train_config *c, size_t V, ksa_loader *ld,
                               ksa_val_reader *val, int *has_val, char *tokenizer, size_t cap,
                               int32_t *eot)
{
    *has_val = 0;
    /* a BPE tokenizer's vocabulary against V, before the ids are (with a clearer message) */
    if (c->data[0])
        KSA_TRY(ksa_tok_check_data(c->data, V, eot));
    if (c->val_data[0])
        KSA_TRY(ksa_tok_check_data(c->val_data, V, NULL));
    ksa_loader_options lo = {.seq_len = (size_t)c->seq_len,
                             .global_batch = (size_t)c->global_batch,
                             .vocab_size = V,
                             .seed = (uint64_t)(c->data_seed >= 0 ? c->data_seed : c->seed),
                             .dtype = KSA_DTYPE_AUTO};
    if (c->dtype[0])
        KSA_TRY(ksa_tokfile_parse_dtype(c->dtype, &lo.dtype));
    if (c->data[0])
        KSA_TRY(ksa_loader_open_file(ld, c->data, &lo));
    else
        KSA_TRY(ksa_loader_open_mixture(ld, c->data_mix, &lo));
    ksa_status st = ksa_loader_tokenizer(ld, tokenizer, cap);
    for (size_t i = 0; ld->is_mixture && i < ld->n_sources && st == KSA_OK; i++)
        st = ksa_tok_check_data(ld->sources[i].file.path, V, eot);
    if (st == KSA_OK && c->val_data[0]) {
        st = ksa_val_reader_open(val, c->val_data, lo.dtype, V, (size_t)c->seq_len,
                                 (size_t)c->micro_batch, (size_t)c->eval_batches);
        *has_val = st == KSA_OK;
    }
    const char *vt = *has_val ? val->file.tokenizer : "unknown";
    if (st == KSA_OK && strcmp(vt, "unknown") != 0 && strcmp(tokenizer, "unknown") != 0 &&
        strcmp(vt, tokenizer) != 0)
        st = ksa_fail(KSA_EINVAL,
                      "the validation file '%s' was made by the %s tokenizer, the training data "
                      "by %s",
                      c->val_data, vt, tokenizer);
    if (st != KSA_OK) {
        if (*has_val)
            ksa_val_reader_close(val);
        *has_val = 0;
        ksa_loader_close(ld);
    }
    return st;
}

ksa_status ksa_train_check_tokenizer(const char *path, const char *data_tokenizer, const char *how)
{
    int has_train = 0;
    char ck[64];
    KSA_TRY(ksa_ckpt_has(path, "/train", &has_train));
    if (!has_train)
        return KSA_OK;
    KSA_TRY(ksa_ckpt_read_tokenizer(path, ck, sizeof ck));
    if (!strcmp(ck, "unknown") || !strcmp(data_tokenizer, "unknown") || !strcmp(ck, data_tokenizer))
        return KSA_OK;
    return ksa_fail(KSA_EINVAL,
                    "%s '%s': its model was trained on ids of the tokenizer '%s', but the data "
                    "given was made by '%s': the same ids would stand for other text (prepare "
                    "the data with the model's tokenizer)",
                    how, path, ck, data_tokenizer);
}

/* <data>.tokenizer.json into t->tokenizer_json (ksa_train_data_open checked that it is the
 * tokenizer the data names). */
static ksa_status read_tokenizer_json(ksa_trainer *t, const char *data)
{
    char *path = ksa_path_concat(data, ".tokenizer.json"), *json;
    ksa_status st = ksa_path_read_all(path, "tokenizer", 0, &json, &t->tokenizer_json_len);
    t->tokenizer_json = (unsigned char *)json;
    ksa_free(path);
    return st;
}

ksa_status ksa_train_select_trainable(const ksa_train_config *c, ksa_model *m)
{
    if (c->distill) {
        size_t n_summary = 0;
        for (size_t i = 0; i < m->layout.n_layers; i++)
            n_summary += (size_t)(m->layout.ksa && m->layout.is_summary[i]);
        if (!n_summary)
            return ksa_fail(KSA_EINVAL, "distill compares the summary layers of a KSA model with "
                                        "its causal teacher, but this model has none");
        int has = 0;
        for (size_t i = 0; i < m->params.n; i++)
            has |= m->params.table[i].summary;
        if (!has && !c->trainable[0] && !c->frozen[0])
            return ksa_fail(KSA_EINVAL,
                            "distill trains only the summary parameters by default (KSA_SPEC "
                            "9.2), but the model has none (summary_independent_parameters = "
                            "false): say what trains with --trainable or --frozen");
    }
    return ksa_params_select_trainable(&m->params, ksa_train_config_trainable(c), c->frozen);
}

/* Copies between the model's buffers and the optimizer's own (no-ops when they are the
 * same): the values or gradients of every trained parameter. */
static void to_optimizer(ksa_trainer *t, int grads)
{
    if (t->opt == &t->model->params)
        return;
    const ksa_params *p = &t->model->params;
    for (size_t k = 0; k < t->opt->n; k++) {
        const ksa_param *o = &t->opt->table[k], *e = &p->table[t->opt_map[k]];
        memcpy((grads ? t->opt->grad : t->opt->data) + o->offset,
               (grads ? p->grad : p->data) + e->offset, e->numel * sizeof(ksa_real));
    }
}

static void values_to_model(ksa_trainer *t)
{
    if (t->opt == &t->model->params)
        return;
    ksa_params *p = &t->model->params;
    for (size_t k = 0; k < t->opt->n; k++) {
        const ksa_param *o = &t->opt->table[k], *e = &p->table[t->opt_map[k]];
        memcpy(p->data + e->offset, t->opt->data + o->offset, e->numel * sizeof(ksa_real));
    }
}

/* The optimizer's table (trainer.h, opt): the model's when nothing is frozen, else the
 * trained parameters' own (their values copied in), padded so that the ranks own equal
 * slices of it. */
static void optimizer_params(ksa_trainer *t, ksa_model *m)
{
    const ksa_params *p = &m->params;
    if (ksa_params_n_trainable(p, NULL) == p->n) {
        t->opt = &m->params;
        return;
    }
    ksa_params_init(&t->own_opt);
    t->opt_map = ksa_alloc_zero(p->n * sizeof *t->opt_map);
    for (size_t i = 0; i < p->n; i++) {
        const ksa_param *e = &p->table[i];
        if (e->frozen)
            continue;
        size_t k = ksa_params_add(&t->own_opt, e->name, e->ndim, e->shape[0], e->shape[1]);
        t->own_opt.table[k].role = e->role;
        t->own_opt.table[k].summary = e->summary;
        t->opt_map[k] = i;
    }
    ksa_params_pad(&t->own_opt, 16 * (size_t)t->n_ranks);
    ksa_params_alloc(&t->own_opt);
    t->opt = &t->own_opt;
    to_optimizer(t, 0);
}

ksa_status ksa_trainer_init(ksa_trainer *t, ksa_model *m, const ksa_train_config *c,
                            const char *run_id)
{
    memset(t, 0, sizeof *t);
    snprintf(t->run_id, sizeof t->run_id, "%s", run_id ? run_id : "");
    t->model = m;
    t->cfg = c;
    t->rank = ksa_dist_rank();
    t->n_ranks = ksa_dist_size();
    KSA_TRY(ksa_train_config_validate(c, t->n_ranks));
    KSA_ASSERT(m->params.numel % (size_t)t->n_ranks == 0,
               "parameter buffer of %zu elements is not padded for %d ranks "
               "(ksa_model_init_for_ranks)",
               m->params.numel, t->n_ranks);
    KSA_TRY(ksa_train_data_open(c, m->V, &t->loader, &t->val, &t->has_val, t->tokenizer,
                                sizeof t->tokenizer, &t->eot_id));
    if (!strncmp(t->tokenizer, "bpe-", 4))
        KSA_TRY(read_tokenizer_json(t, c->data[0] ? c->data : t->loader.sources[0].file.path));
    if (t->has_val)
        ksa_tokfile_identity(&t->val.file, t->val_data_identity, sizeof t->val_data_identity);
    ksa_loader_identity(&t->loader, t->data_identity, sizeof t->data_identity);
    KSA_TRY(ksa_train_config_schedule(c, &t->schedule));
    KSA_TRY(ksa_train_select_trainable(c, m));
    m->distill = c->distill != 0;
    optimizer_params(t, m);
    size_t slice = t->opt->numel / (size_t)t->n_ranks;
    t->slice_lo = (size_t)t->rank * slice;
    t->slice_hi = t->slice_lo + slice;
    t->exp_avg = ksa_alloc_zero(slice * sizeof(ksa_real));
    t->exp_avg_sq = ksa_alloc_zero(slice * sizeof(ksa_real));
    t->grad_slice = ksa_alloc_zero(slice * sizeof(ksa_real));
    m->recompute = c->recompute != 0;
    t->dp_rank = t->rank, t->dp_size = t->n_ranks;
    t->block_t0 = 0, t->block_len = (size_t)c->seq_len;
    if (c->context_parallel > 1) {
        const ksa_cp *cp = m->cp;
        KSA_ASSERT(cp && cp->P == c->context_parallel && cp->L == (size_t)c->seq_len,
                   "context_parallel = %ld without its grid in the model (ksa_cp_init)",
                   c->context_parallel);
        t->dp_rank = cp->group, t->dp_size = cp->n_groups;
        t->block_t0 = ksa_cp_block_start(cp), t->block_len = ksa_cp_block_len(cp);
    }
    ksa_model_tape_init(m, (size_t)c->micro_batch, t->block_len, 1, &t->arena, &t->grads, &t->tape);
    size_t rows = (size_t)c->global_batch / (size_t)t->dp_size;
    t->tokens = ksa_alloc(rows * (t->block_len + 1) * sizeof(int32_t));
    return KSA_OK;
}

void ksa_trainer_free(ksa_trainer *t)
{
    ksa_loader_close(&t->loader);
    if (t->has_val)
        ksa_val_reader_close(&t->val);
    ksa_free(t->exp_avg);
    ksa_free(t->exp_avg_sq);
    ksa_free(t->grad_slice);
    ksa_model_tape_free(&t->arena, &t->grads, &t->tape);
    ksa_free(t->tokens);
    ksa_free(t->tokenizer_json);
    if (t->opt == &t->own_opt)
        ksa_params_free(&t->own_opt);
    ksa_free(t->opt_map);
    memset(t, 0, sizeof *t);
}

/* The parameter holding flat element i, or NULL for padding between parameters. */
static const ksa_param *param_at(const ksa_params *p, size_t i)
{
    for (size_t k = 0; k < p->n; k++)
        if (i >= p->table[k].offset && i < p->table[k].offset + p->table[k].numel)
            return &p->table[k];
    return NULL;
}

/* Test-only fault hooks (docs/mpi.md, docs/training.md): KSA_TEST_FAULT=KIND:RANK:STEP or
 * KIND:RANK:FIRST:LAST acts on that rank at that (1-based) step or steps. step_error makes the
 * rank fail, step_nan puts a NaN into its gradient, nan_moment a NaN into the first element
 * of its slice of exp_avg_sq before the update (as a corrupt optimizer state would),
 * loss_spike multiplies its share of the loss by 100 (as a bad batch would). */
static int injected_fault(const char *kind, int rank, long step)
{
    const char *f = getenv("KSA_TEST_FAULT");
    size_t n = strlen(kind);
    int r;
    long first, last;
    if (!f || strncmp(f, kind, n) || f[n] != ':')
        return 0;
    int got = sscanf(f + n + 1, "%d:%ld:%ld", &r, &first, &last);
    if (got == 2)
        last = first;
    return got >= 2 && r == rank && first <= step && step <= last;
}

/* The loss-spike guard's verdict on this step's (global) loss, into stats; a spike that is
 * not skipped is the run's stop, as an error that says what to change. */
static ksa_status guard_loss(ksa_trainer *t, long step1, double loss, ksa_step_stats *stats)
{
    const ksa_train_config *c = t->cfg;
    double median;
    ksa_loss_verdict v = ksa_loss_guard_judge(&t->guard, loss, c->loss_spike_factor,
                                              c->loss_spike_steps, c->loss_spike_window, &median);
    long high = t->guard.high_steps;
    stats->loss_median = median;
    stats->high_steps = high;
    stats->skipped = 0;
    stats->guard_note[0] = '\0';
    if (v == KSA_LOSS_NORMAL)
        return KSA_OK;
    char why[160];
    snprintf(why, sizeof why, "loss above %g x median %.4f, %ld step%s in a row",
             c->loss_spike_factor, median, high, high > 1 ? "s" : "");
    /* a skipped step changes nothing: a loss that stays high for a window of skipped steps
     * comes from the parameters themselves, and skipping more would not help */
    long skipped_in_a_row = high - c->loss_spike_steps + 1;
    int skip = v == KSA_LOSS_SPIKE && !strcmp(c->loss_spike_action, "skip") &&
               skipped_in_a_row <= c->loss_spike_window;
    if (v == KSA_LOSS_HIGH || skip) {
        stats->skipped = skip;
        snprintf(stats->guard_note, sizeof stats->guard_note, "%s (loss_spike_steps %ld)", why,
                 c->loss_spike_steps);
        return KSA_OK;
    }
    char what[200];
    if (!strcmp(c->loss_spike_action, "skip"))
        snprintf(what, sizeof what,
                 "and skipping the last %ld steps (loss_spike_window) did not bring it down: the "
                 "parameters themselves have diverged",
                 c->loss_spike_window);
    else
        snprintf(what, sizeof what, "(loss_spike_steps = %ld, loss_spike_action = stop)",
                 c->loss_spike_steps);
    /* the first high loss came from the parameters after step step1 - high; those after the
     * step before still gave a normal loss */
    long good = step1 - high - 1;
    char start[160];
    if (good >= 1)
        snprintf(start, sizeof start,
                 "a checkpoint of step %ld or earlier holds parameters whose loss was still "
                 "normal: start from it",
                 good);
    else
        snprintf(start, sizeof start, "no checkpoint holds better parameters: start again");
    return ksa_fail(KSA_ENUMERIC,
                    "step %ld: the loss diverges: %.6g is above %g x %.6g, the median of the "
                    "last %zu normal losses, for %ld step%s in a row %s. The run stops before "
                    "this step's update and saves nothing. The high losses came from the "
                    "parameters after step %ld; %s with a lower learning rate (ksa train "
                    "--init-from CKPT --lr ...), or resume with other guard keys: "
                    "--loss-spike-factor K (0: off), --loss-spike-steps M, --loss-spike-window "
                    "W, --loss-spike-action skip (docs/training.md, \"Divergence\")",
                    step1, loss, c->loss_spike_factor, median, t->guard.n, high,
                    high > 1 ? "s" : "", what, step1 - high, start);
}

/* The AdamW update left element i of this rank's slice not finite: what it holds. */
static ksa_status nonfinite_update(const ksa_trainer *t, long step1, size_t i, double lr)
{
    const ksa_params *p = t->opt;
    const ksa_param *e = param_at(p, t->slice_lo + i);
    double pv = (double)p->data[t->slice_lo + i], mv = (double)t->exp_avg[i],
           vv = (double)t->exp_avg_sq[i];
    return ksa_fail(KSA_ENUMERIC,
                    "step %ld: non-finite value after the AdamW update in %s (element %zu): "
                    "parameter %g, exp_avg %g, exp_avg_sq %g (gradient %g, lr %g); the run stops "
                    "before any checkpoint of this step is written",
                    step1, e ? e->name : "(padding)", e ? t->slice_lo + i - e->offset : 0, pv, mv,
                    vv, (double)t->grad_slice[i], lr);
}

ksa_status ksa_trainer_step(ksa_trainer *t, ksa_step_stats *stats)
{
    const ksa_train_config *c = t->cfg;
    ksa_model *m = t->model;
    double t0 = ksa_now();
    size_t G = (size_t)c->global_batch, mb = (size_t)c->micro_batch, L = (size_t)c->seq_len;
    size_t rows = G / (size_t)t->dp_size, T = t->block_len;
    ksa_loader_block_at(&t->loader, t->tokens, (uint64_t)t->step, t->dp_rank, t->dp_size,
                        t->block_t0, T);
    ksa_params_zero_grad(&m->params);
    /* annealing (KSA_SPEC §5.5): the coefficient of this step, it = step + 1 counted over the
     * whole run (a resumed one continues the schedule from the checkpoint's step) */
    m->summary_mix = ksa_summary_mix_coeff(&m->config, t->step + 1);
    stats->summary_mix = m->layout.mix_qkv ? m->summary_mix : NAN;
    double loss = 0, norm = (double)(G * L), terms[4] = {0}; /* distill: ce, attn, kl, cos */
    for (size_t r = 0; r < rows; r += mb) {
        ksa_tape_reset(&t->tape);
        double part;
        ksa_tensor *l;
        if (c->distill) {
            ksa_distill d = {.lm_weight = c->distill_lm_weight,
                             .attn_weight = c->distill_attn_weight,
                             .kl_weight = c->distill_kl_weight,
                             .cos_weight = c->distill_cos_weight,
                             .clamp = c->distill_clamp,
                             .rms_norm = c->distill_attn_norm != 0};
            l = ksa_model_forward_distill(m, &t->tape, t->tokens + r * (T + 1), mb, T, norm, &d);
            part = d.lm_weight * d.ce + d.attn_weight * d.attn + d.kl_weight * d.kl +
                   d.cos_weight * d.cos;
            terms[0] += d.ce, terms[1] += d.attn, terms[2] += d.kl, terms[3] += d.cos;
        } else {
            l = ksa_model_forward(m, &t->tape, t->tokens + r * (T + 1), mb, T, norm, &part, NULL);
        }
        ksa_tape_backward(&t->tape, l);
        loss += part;
    }
    long step1 = t->step + 1;
    int local_error = injected_fault("step_error", t->rank, step1);
    if (injected_fault("step_nan", t->rank, step1))
        m->params.grad[0] = (ksa_real)NAN;
    if (injected_fault("loss_spike", t->rank, step1))
        loss *= 100;

    size_t s = t->slice_hi - t->slice_lo;
    to_optimizer(t, 1);
    KSA_TRY(ksa_dist_reduce_scatter(t->opt->grad, t->grad_slice, s));
    size_t bad = ksa_first_nonfinite(t->grad_slice, s);
    ksa_clip_values(t->grad_slice, s, c->clip_value);
    double sums[8] = {loss,     ksa_sum_squares(t->grad_slice, s),
                      bad < s,  local_error,
                      terms[0], terms[1],
                      terms[2], terms[3]};
    KSA_TRY(ksa_dist_sum(sums, c->distill ? 8 : 4));
    loss = sums[0];
    stats->distill = c->distill != 0;
    stats->ce = sums[4], stats->attn = sums[5], stats->kl = sums[6], stats->cos = sums[7];
    if (sums[3] > 0) {
        if (local_error)
            return ksa_fail(KSA_EINVAL, "step %ld: fault injected by KSA_TEST_FAULT", step1);
        return ksa_fail(KSA_EINVAL, "step %ld: stopped because another rank failed", step1);
    }
    if (sums[2] > 0 || !isfinite(loss) || !isfinite(sums[1])) {
        if (bad < s) {
            const ksa_param *e = param_at(t->opt, t->slice_lo + bad);
            return ksa_fail(KSA_ENUMERIC,
                            "step %ld: non-finite gradient %g in %s (element %zu); loss %g", step1,
                            (double)t->grad_slice[bad], e ? e->name : "(padding)",
                            e ? t->slice_lo + bad - e->offset : 0, loss);
        }
        return ksa_fail(KSA_ENUMERIC,
                        "step %ld: the loss is %g, the gradient norm %g, or another rank's "
                        "gradient is not finite",
                        step1, loss, sqrt(sums[1]));
    }
    double grad_norm = sqrt(sums[1]);
    double lr = ksa_lr_at(&t->schedule, t->step);
    /* every rank judges the same global loss: all skip, or all stop, at the same step */
    KSA_TRY(guard_loss(t, step1, loss, stats));
    if (stats->skipped) {
        /* the gradients are dropped: parameters, moments and the AdamW update count stay;
         * the step counter (so the data position and the schedule) moves on */
        t->guard.skipped++;
    } else {
        double factor = ksa_clip_norm_factor(grad_norm, c->clip_norm);
        if (factor != 1)
            ksa_scale(t->grad_slice, s, factor);
        ksa_adamw_hparams hp = {.lr = lr,
                                .beta1 = c->beta1,
                                .beta2 = c->beta2,
                                .eps = c->adam_eps,
                                .weight_decay = c->weight_decay};
        if (injected_fault("nan_moment", t->rank, step1) && s > 0)
            t->exp_avg_sq[0] = (ksa_real)NAN;
        /* the update count: the steps whose update was applied, this one included */
        size_t bad_new = ksa_adamw_update(t->opt->data + t->slice_lo, t->exp_avg, t->exp_avg_sq,
                                          t->grad_slice, s, &hp, t->step + 1 - t->guard.skipped);
        /* before the allgather: no rank receives a non-finite slice, every rank stops here */
        int failed_rank;
        ksa_status st = bad_new < s ? nonfinite_update(t, step1, bad_new, lr) : KSA_OK;
        st = ksa_dist_agree(st, &failed_rank);
        if (st != KSA_OK && failed_rank >= 0)
            return ksa_fail(st,
                            "step %ld: rank %d found a parameter or moment that is not finite "
                            "after the AdamW update (its message names it); the run stops before "
                            "any checkpoint of this step is written",
                            step1, failed_rank);
        KSA_TRY(st);
        KSA_TRY(ksa_dist_allgather(t->opt->data, s));
        values_to_model(t);
    }
    t->step++;
    t->tokens_seen += G * L;
    stats->loss = loss;
    stats->lr = lr;
    stats->grad_norm = grad_norm;
    stats->tokens = G * L;
    stats->seconds = ksa_now() - t0;
    return KSA_OK;
}

/* Collective under MPI: every rank writes its own slice of the moments (CHECKPOINT_FORMAT:
 * the datasets keep the parameters' full shapes whatever the rank count). */
ksa_status ksa_trainer_save(const ksa_trainer *t, const char *path, double val_loss)
{
    ksa_train_config stored = *t->cfg;
    ksa_train_config_absolute_paths(&stored);
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    const ksa_train_config *c = t->cfg;
    ksa_ckpt_train_state ts = {.train_keys = keys,
                               .n_train_keys = n_keys,
                               .train = &stored,
                               .adamw = {c->beta1, c->beta2, c->adam_eps, c->weight_decay},
                               .step = t->step,
                               .tokens_seen = t->tokens_seen,
                               .world_size = t->n_ranks,
                               .run_id = t->run_id,
                               .data_identity = t->data_identity,
                               .val_data_identity = t->val_data_identity,
                               .val_loss = val_loss,
                               .tokenizer = t->tokenizer,
                               .tokenizer_json = t->tokenizer_json,
                               .tokenizer_json_len = t->tokenizer_json_len,
                               .slice_lo = t->slice_lo,
                               .slice_hi = t->slice_hi,
                               .exp_avg = t->exp_avg,
                               .exp_avg_sq = t->exp_avg_sq,
                               .moments_of = t->opt == &t->model->params ? NULL : t->opt,
                               .loss_window = t->guard.recent,
                               .n_loss_window = t->guard.n,
                               .loss_high_steps = t->guard.high_steps,
                               .skipped_steps = t->guard.skipped};
    return ksa_ckpt_write_training(path, &t->model->config, &t->model->params, t->eot_id, &ts);
}

/* The data a resume reads must be the data the checkpoint was trained on (its recorded
 * identity; a checkpoint written before identities were recorded has none to compare). */
static ksa_status same_data(const char *ckpt, const char *what, const char *file,
                            const char *recorded, const char *now)
{
    if (!recorded[0] || !strcmp(recorded, now))
        return KSA_OK;
    return ksa_fail(KSA_EINVAL,
                    "--resume: the %s '%s' is not the data %s was trained on (recorded: %s; "
                    "now: %s): give the original files (they may have moved: --data, "
                    "--val-data or --data-mix name their new place)",
                    what, file, ckpt, recorded, now);
}

/* Each rank reads the parameters and only its own slice of the moments: a checkpoint
 * written by N ranks resumes on M. */
ksa_status ksa_trainer_resume(ksa_trainer *t, const char *path)
{
    ksa_train_config stored;
    ksa_ckpt_progress pr;
    KSA_TRY(ksa_train_check_tokenizer(path, t->tokenizer, "--resume"));
    KSA_TRY(ksa_train_config_read_checkpoint(path, &stored, &pr));
    KSA_TRY(same_data(path, "training data", t->cfg->data[0] ? t->cfg->data : t->cfg->data_mix,
                      pr.data_identity, t->data_identity));
    if (t->has_val)
        KSA_TRY(same_data(path, "validation data", t->cfg->val_data, pr.val_data_identity,
                          t->val_data_identity));
    KSA_TRY(ksa_ckpt_read_params(path, &t->model->params, 0));
    to_optimizer(t, 0); /* the trained parameters' values, when the optimizer has its own */
    KSA_TRY(ksa_ckpt_read_moments_slice(path, t->opt, t->slice_lo, t->slice_hi, t->exp_avg,
                                        t->exp_avg_sq));
    t->step = pr.step;
    t->tokens_seen = (size_t)pr.tokens_seen;
    /* the guard's state: the resumed run judges its steps as the uninterrupted one would */
    memcpy(t->guard.recent, pr.loss_window, pr.n_loss_window * sizeof *pr.loss_window);
    t->guard.n = pr.n_loss_window;
    t->guard.high_steps = pr.loss_high_steps;
    t->guard.skipped = pr.skipped_steps;
    return KSA_OK;
}

ksa_status ksa_trainer_validate(ksa_trainer *t, double *val_loss)
{
    KSA_ASSERT(t->has_val, "validation without a validation file");
    size_t L = t->val.seq_len, n_batches = ksa_val_reader_n_batches(&t->val);
    /* every chosen row counts: the sum of token losses over the rows of this rank */
    double sum = 0;
    int recording = t->tape.recording;
    t->tape.recording = 0;
    /* the model of the last completed step: its annealing coefficient (1 before any) */
    t->model->summary_mix = ksa_summary_mix_coeff(&t->model->config, t->step);
    /* batches of micro_batch rows; batch b belongs to context group b mod N (each rank of
     * it computing its block), so the sum over the ranks covers every chosen row once
     * whatever the rank count */
    for (size_t b = (size_t)t->dp_rank; b < n_batches; b += (size_t)t->dp_size) {
        size_t got = ksa_val_reader_block(&t->val, b, t->tokens, t->block_t0, t->block_len);
        ksa_tape_reset(&t->tape);
        double part;
        ksa_model_forward(t->model, &t->tape, t->tokens, got, t->block_len, 1.0, &part, NULL);
        sum += part;
    }
    t->tape.recording = recording;
    KSA_TRY(ksa_dist_sum(&sum, 1));
    *val_loss = sum / (double)(t->val.n_chosen * L);
    return KSA_OK;
}

/* ---- FLOPs ------------------------------------------------------------------------------ */
/* Visible (query, key) pairs of one sequence of T text tokens in a summary layer with
 * window W (KSA_SPEC §3.1 and §3.5, any T): text query of chunk c, offset o: (o + 1) +
 * C·min(c, W) + S·max(0, c − W) keys; summary query s_c.j of a complete chunk (a partial
 * tail chunk has none): C + j + 1. S = 0 is a sliding-chunk (SCA) layer; C = 1, S = 0,
 * W = N a sliding-window (SWA) layer: query t sees min(t, N) + 1 keys. Summed in closed
 * form over the F complete chunks c = 0 ... F-1 (sum of min(c, W) and of max(0, c - W)) and
 * the tail chunk c = F of T mod C tokens: constant time for any T.                        */
static double summary_layer_pairs(size_t T, size_t C, size_t S, size_t W)
{
    double F = (double)(T / C), tail = (double)(T % C), c = (double)C, s = (double)S;
    double w = (double)W, m = F < w ? F : w;
    double sum_in_window = m * (m - 1) / 2 + (F > w ? (F - w) * w : 0);
    double sum_old = F > w ? (F - w) * (F - w - 1) / 2 : 0;
    double pairs =
        F * (c * (c + 1) / 2 + s * c + s * (s + 1) / 2) + c * (c * sum_in_window + s * sum_old);
    if (tail > 0) /* chunk F: text queries only (a partial chunk has no summary tokens) */
        pairs += tail * (tail + 1) / 2 + tail * (c * m + s * (F > w ? F - w : 0));
    return pairs;
}

/* Multiply-adds of one row through the matrices of layer i: q, k, v, o and the MLP's gate,
 * up and down. A summary row meets the summary twins of q, k, v instead when the layer has
 * them; they have the shapes of the shared ones, so a row costs the same either way.     */
static double layer_row_macs(const ksa_model *m, size_t i)
{
    const ksa_layer_params *lp = &m->layers[i];
    const long matrices[] = {lp->q_proj,    lp->k_proj,  lp->v_proj,   lp->o_proj,
                             lp->gate_proj, lp->up_proj, lp->down_proj};
    double macs = 0;
    for (size_t k = 0; k < sizeof matrices / sizeof matrices[0]; k++)
        macs += (double)m->params.table[matrices[k]].numel;
    return macs;
}

double ksa_model_step_flops(const ksa_model *m, size_t G, size_t T)
{
    const ksa_model_layout *l = &m->layout;
    double text_rows = (double)T, summary_rows = (double)ksa_layout_summary_rows(l, T);
    double macs = 0, pairs = 0; /* of one sequence's forward */
    for (size_t i = 0; i < l->n_layers; i++) {
        if (l->ksa && l->is_summary[i]) { /* both streams (no summary rows under SCA) */
            macs += (text_rows + summary_rows) * layer_row_macs(m, i);
            pairs += summary_layer_pairs(T, l->C, l->S, l->window[i]);
        } else { /* a causal layer: text rows only, summary rows pass through */
            macs += text_rows * layer_row_macs(m, i);
            pairs += l->sliding_window ? summary_layer_pairs(T, 1, 0, l->sliding_window)
                                       : (double)T * (double)(T + 1) / 2;
        }
    }
    macs += text_rows * (double)(m->V * m->D); /* the LM head (tied or not): text rows only */
    return (double)G * (6 * macs + 12.0 * (double)m->dh * (double)m->Hq * pairs);
}
