/* train_config.c - training keys: table, defaults, paths, validation. */
#include "train_config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "data/path.h"
#include "optim/loss_guard.h"
#include "optim/lr_schedule.h"

#define KEY(name, kind, def, help) KSA_KEY(ksa_train_config, name, kind, def, help)
static const ksa_config_key train_keys[] = {
    KEY(data, KSA_KEY_STRING, "", "token file (or data_mix: exactly one of the two)"),
    KEY(data_mix, KSA_KEY_STRING, "", "mixture list of token files with weights (docs/data.md)"),
    KEY(val_data, KSA_KEY_STRING, "", "validation token file (\"\": none)"),
    KEY(dtype, KSA_KEY_STRING, "", "uint16 or uint32, for headerless token files without .meta"),
    KEY(seq_len, KSA_KEY_INT, "1024", "text tokens per row (a row is seq_len + 1 tokens)"),
    KEY(global_batch, KSA_KEY_INT, "8", "rows per optimizer step, all ranks together"),
    KEY(micro_batch, KSA_KEY_INT, "1",
        "rows per forward and backward (accumulated up to global_batch)"),
    KEY(steps, KSA_KEY_INT, "1000", "optimizer steps of the run"),
    KEY(lr, KSA_KEY_FLOAT, "4e-4", "peak learning rate"),
    KEY(min_lr, KSA_KEY_FLOAT, "1e-7", "final learning rate of the schedule"),
    KEY(lr_schedule, KSA_KEY_STRING, "wsd", "constant, cosine or wsd"),
    KEY(warmup_steps, KSA_KEY_INT, "1000", "steps of linear warmup"),
    KEY(decay_steps, KSA_KEY_INT, "1000", "steps of the WSD decay"),
    KEY(weight_decay, KSA_KEY_FLOAT, "0.01", "AdamW decoupled weight decay"),
    KEY(beta1, KSA_KEY_FLOAT, "0.9", "AdamW beta1"),
    KEY(beta2, KSA_KEY_FLOAT, "0.95", "AdamW beta2"),
    KEY(adam_eps, KSA_KEY_FLOAT, "1e-8", "AdamW epsilon"),
    KEY(clip_value, KSA_KEY_FLOAT, "1.0",
        "element-wise gradient clipping to [-clip_value, clip_value] (0: off)"),
    KEY(clip_norm, KSA_KEY_FLOAT, "0",
        "global gradient-norm clipping after value clipping (0: off)"),
    KEY(loss_spike_factor, KSA_KEY_FLOAT, "3",
        "a loss above this x the median of the recent normal losses is high (0: guard off)"),
    KEY(loss_spike_steps, KSA_KEY_INT, "1",
        "consecutive high losses before loss_spike_action is taken"),
    KEY(loss_spike_window, KSA_KEY_INT, "20", "recent normal losses the median is taken over"),
    KEY(loss_spike_action, KSA_KEY_STRING, "stop",
        "stop (the run, before the update) or skip (the step's update)"),
    KEY(seed, KSA_KEY_INT, "42", "initialisation and data order"),
    KEY(data_seed, KSA_KEY_INT, "", /* empty: unset (-1) */
        "the data order's seed (unset: seed; a fine-tune derives its own)"),
    KEY(eval_every, KSA_KEY_INT, "100", "validation every N steps (0: only after the last step)"),
    KEY(eval_batches, KSA_KEY_INT, "8",
        "validation rows (the whole file when it holds fewer, else spread over it)"),
    KEY(log, KSA_KEY_STRING, "", "JSONL log file, one line per step (\"\": none)"),
    KEY(out, KSA_KEY_STRING, "", "checkpoint folder (\"\": no checkpoints)"),
    KEY(save_every, KSA_KEY_INT, "0", "checkpoint every N steps (0: only after the last step)"),
    KEY(keep, KSA_KEY_INT, "0", "keep the newest K of the run's checkpoints (0: all)"),
    KEY(save_best, KSA_KEY_BOOL, "0",
        "keep out/best.h5, the checkpoint of the lowest validation loss so far"),
    KEY(threads, KSA_KEY_INT, "0",
        "threads per rank (0: OMP_NUM_THREADS, else the host's cores / its ranks)"),
    KEY(peak_gflops, KSA_KEY_FLOAT, "0",
        "MFU denominator in GFLOP/s (0: the measured and cached GEMM peak of a rank's threads, "
        "times the ranks)"),
    KEY(recompute, KSA_KEY_BOOL, "0",
        "activation recomputation: keep each layer's input only, re-run the layer in the "
        "backward (less memory, ~1/3 more compute; same results)"),
    KEY(trainable, KSA_KEY_STRING, "",
        "comma-separated globs of the parameters to train (\"\": all), e.g. "
        "'*_summary*,summary_embedding*'"),
    KEY(frozen, KSA_KEY_STRING, "",
        "comma-separated globs of parameters kept as they are: no gradient, no optimizer state"),
    KEY(distill, KSA_KEY_BOOL, "0",
        "attention distillation (KSA_SPEC 9.2): the same weights as a plain causal model are the "
        "teacher; only the summary parameters train unless trainable / frozen say otherwise"),
    KEY(distill_lm_weight, KSA_KEY_FLOAT, "1", "distillation: weight of the cross-entropy"),
    KEY(distill_attn_weight, KSA_KEY_FLOAT, "5",
        "distillation: weight of the clamped squared error of the summary layers' attention "
        "outputs"),
    KEY(distill_kl_weight, KSA_KEY_FLOAT, "5",
        "distillation: weight of KL(teacher || student) of the logits"),
    KEY(distill_cos_weight, KSA_KEY_FLOAT, "0",
        "distillation: weight of the cosine distance of the attention outputs"),
    KEY(distill_clamp, KSA_KEY_FLOAT, "0.1",
        "distillation: squared errors above this give no gradient (min(e^2, clamp))"),
    KEY(distill_attn_norm, KSA_KEY_BOOL, "0",
        "distillation: divide each attention-output row by its RMS before comparing"),
    KEY(context_parallel, KSA_KEY_INT, "1",
        "ranks per context group: each sequence is split into this many blocks of whole chunks, "
        "one per rank of the group; it must divide the ranks (docs/mpi.md)"),
    KEY(watchdog_factor, KSA_KEY_FLOAT, "10",
        "under mpirun, a rank waiting in a collective for more than this x the median step "
        "(at least 10 s) ends the job, naming the ranks that did not arrive (0: off)"),
    KEY(watchdog_seconds, KSA_KEY_FLOAT, "0",
        "the same for a wait of more than this many seconds, from the first step on (0: off)"),
};
#undef KEY
#define N_KEYS (sizeof train_keys / sizeof train_keys[0])

const char *ksa_train_config_trainable(const ksa_train_config *c)
{
    return c->distill && !c->trainable[0] && !c->frozen[0] ? "*summary*" : c->trainable;
}

const ksa_config_key *ksa_train_config_keys(size_t *n)
{
    *n = N_KEYS;
    return train_keys;
}

int ksa_train_config_has_key(const char *key)
{
    return ksa_config_key_find(train_keys, N_KEYS, key) != NULL;
}

static int is_path_key(const char *key)
{
    return !strcmp(key, "data") || !strcmp(key, "data_mix") || !strcmp(key, "val_data") ||
           !strcmp(key, "log") || !strcmp(key, "out");
}

ksa_status ksa_train_config_set(ksa_train_config *c, const char *key, const char *value,
                                const char *origin, const char *base_file)
{
    const ksa_config_key *k = ksa_config_key_find(train_keys, N_KEYS, key);
    if (!k)
        return ksa_fail(KSA_EINVAL, "%s: unknown configuration key '%s'", origin, key);
    KSA_TRY(ksa_config_key_set(k, c, value, origin));
    char *field = (char *)c + k->offset;
    if (is_path_key(key) && base_file && field[0]) {
        char *resolved = ksa_path_resolve(base_file, field);
        if (strlen(resolved) >= k->str_cap) {
            ksa_free(resolved);
            return ksa_fail(KSA_EINVAL, "%s: %s: resolved path too long", origin, key);
        }
        strcpy(field, resolved);
        ksa_free(resolved);
    }
    ksa_lr_kind kind;
    if (!strcmp(key, "lr_schedule") && ksa_lr_schedule_parse_kind(field, &kind) != KSA_OK)
        return ksa_fail(KSA_EINVAL, "%s: lr_schedule = '%s' (expected constant, cosine or wsd)",
                        origin, field);
    if (!strcmp(key, "loss_spike_action") && strcmp(field, "stop") && strcmp(field, "skip"))
        return ksa_fail(KSA_EINVAL, "%s: loss_spike_action = '%s' (expected stop or skip)", origin,
                        field);
    if (!strcmp(key, "dtype") && field[0] && strcmp(field, "uint16") && strcmp(field, "uint32"))
        return ksa_fail(KSA_EINVAL, "%s: dtype = '%s' (expected uint16 or uint32)", origin, field);
    /* the command line's data source replaces the file's other one */
    if (!base_file && !strcmp(key, "data") && field[0])
        c->data_mix[0] = '\0';
    if (!base_file && !strcmp(key, "data_mix") && field[0])
        c->data[0] = '\0';
    return KSA_OK;
}

void ksa_train_config_defaults(ksa_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->data_seed = -1;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!train_keys[i].default_value[0])
            continue; /* unset */
        ksa_status st =
            ksa_config_key_set(&train_keys[i], c, train_keys[i].default_value, "default");
        KSA_ASSERT(st == KSA_OK, "bad built-in default: %s", ksa_last_error());
    }
}

ksa_status ksa_train_config_validate(const ksa_train_config *c, int n_ranks)
{
    if (c->data[0] && c->data_mix[0])
        return ksa_fail(KSA_EINVAL,
                        "give either data (a token file) or data_mix (a mixture "
                        "list), not both: data = %s, data_mix = %s",
                        c->data, c->data_mix);
    if (!c->data[0] && !c->data_mix[0])
        return ksa_fail(KSA_EINVAL, "no training data: set data = FILE or data_mix = LIST");
    if (c->seq_len < 1 || c->global_batch < 1 || c->micro_batch < 1 || c->steps < 1)
        return ksa_fail(KSA_EINVAL, "seq_len, global_batch, micro_batch and steps must be at "
                                    "least 1");
    /* bounds that keep every product of sizes within 64 bits and every count within an int */
    struct {
        const char *name;
        long value, max;
    } bounded[] = {
        {"seq_len", c->seq_len, KSA_MAX_POSITIONS},
        {"global_batch", c->global_batch, 1L << 24},
        {"micro_batch", c->micro_batch, 1L << 24},
        {"steps", c->steps, 1L << 40},
        {"warmup_steps", c->warmup_steps, 1L << 40},
        {"decay_steps", c->decay_steps, 1L << 40},
        {"eval_every", c->eval_every, 1L << 40},
        {"eval_batches", c->eval_batches, 1L << 24},
        {"save_every", c->save_every, 1L << 40},
        {"keep", c->keep, 1L << 40},
        {"threads", c->threads, 1024},
        {"loss_spike_steps", c->loss_spike_steps, 1L << 40},
        {"loss_spike_window", c->loss_spike_window, KSA_LOSS_GUARD_MAX_WINDOW},
    };
    for (size_t i = 0; i < sizeof bounded / sizeof bounded[0]; i++)
        if (bounded[i].value > bounded[i].max)
            return ksa_fail(KSA_EINVAL, "%s = %ld exceeds the supported %ld", bounded[i].name,
                            bounded[i].value, bounded[i].max);
    if (c->context_parallel < 1 || c->context_parallel > 1L << 20)
        return ksa_fail(KSA_EINVAL, "context_parallel = %ld: it must be at least 1",
                        c->context_parallel);
    if (n_ranks % c->context_parallel)
        return ksa_fail(KSA_EINVAL,
                        "context_parallel = %ld does not divide the %d ranks (they form a grid of "
                        "context groups of %ld ranks)",
                        c->context_parallel, n_ranks, c->context_parallel);
    int groups = n_ranks / (int)c->context_parallel; /* data-parallel ranks */
    if ((c->global_batch / groups) * (c->seq_len + 1) > (1L << 32))
        return ksa_fail(KSA_EINVAL,
                        "global_batch x seq_len = %ld x %ld tokens per step: more than the "
                        "supported 2^32 per rank",
                        c->global_batch, c->seq_len);
    if (c->global_batch % ((long)groups * c->micro_batch)) {
        char by[96]; /* the data-parallel ranks: all of them, or the context groups */
        if (c->context_parallel == 1)
            snprintf(by, sizeof by, "ranks (%d)", n_ranks);
        else
            snprintf(by, sizeof by, "context groups (%d = %d ranks / context_parallel %ld)", groups,
                     n_ranks, c->context_parallel);
        return ksa_fail(KSA_EINVAL,
                        "global_batch = %ld is not a multiple of micro_batch (%ld) x %s",
                        c->global_batch, c->micro_batch, by);
    }
    if (!(c->lr >= 0) || !(c->min_lr >= 0) || c->min_lr > c->lr)
        return ksa_fail(KSA_EINVAL, "need 0 <= min_lr <= lr, got lr = %g, min_lr = %g", c->lr,
                        c->min_lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return ksa_fail(KSA_EINVAL, "beta1 = %g and beta2 = %g must lie in [0, 1)", c->beta1,
                        c->beta2);
    if (!(c->adam_eps > 0))
        return ksa_fail(KSA_EINVAL, "adam_eps = %g must be positive", c->adam_eps);
    if (c->clip_value < 0 || c->clip_norm < 0 || c->weight_decay < 0 || c->peak_gflops < 0)
        return ksa_fail(KSA_EINVAL,
                        "clip_value, clip_norm, weight_decay and peak_gflops must not be negative");
    if (!(c->loss_spike_factor == 0 || c->loss_spike_factor > 1) || c->loss_spike_steps < 1 ||
        c->loss_spike_window < 1)
        return ksa_fail(KSA_EINVAL,
                        "loss_spike_factor = %g must be 0 (off) or above 1, loss_spike_steps = %ld "
                        "and loss_spike_window = %ld at least 1",
                        c->loss_spike_factor, c->loss_spike_steps, c->loss_spike_window);
    if (!(c->watchdog_factor >= 0) || !(c->watchdog_seconds >= 0))
        return ksa_fail(
            KSA_EINVAL,
            "watchdog_factor = %g and watchdog_seconds = %g must not be negative (0: off)",
            c->watchdog_factor, c->watchdog_seconds);
    if (c->distill) {
        double w[4] = {c->distill_lm_weight, c->distill_attn_weight, c->distill_kl_weight,
                       c->distill_cos_weight};
        for (int i = 0; i < 4; i++)
            if (!(w[i] >= 0 && isfinite(w[i])))
                return ksa_fail(KSA_EINVAL, "the distill_*_weight keys must be finite and >= 0");
        if (w[0] + w[1] + w[2] + w[3] <= 0)
            return ksa_fail(KSA_EINVAL, "distill: every distill_*_weight is 0: nothing to learn");
        if (!(c->distill_clamp > 0))
            return ksa_fail(KSA_EINVAL, "distill_clamp = %g must be positive", c->distill_clamp);
        if (c->recompute)
            return ksa_fail(KSA_EINVAL,
                            "distill does not run with recompute yet (the student's attention "
                            "outputs are compared on the tape): drop --recompute");
    }
    if (c->eval_batches < 1 && c->val_data[0])
        return ksa_fail(KSA_EINVAL, "eval_batches must be at least 1");
    if (c->save_best && (!c->val_data[0] || !c->out[0]))
        return ksa_fail(KSA_EINVAL, "save_best needs val_data (the loss it compares) and out (the "
                                    "folder of best.h5)");
    ksa_lr_schedule s;
    return ksa_train_config_schedule(c, &s);
}

ksa_status ksa_train_config_check_model(const ksa_train_config *c, const ksa_model_config *mc)
{
    if (c->seq_len > mc->max_position_embeddings)
        return ksa_fail(KSA_EINVAL,
                        "seq_len = %ld exceeds max_position_embeddings = %ld: the model is not "
                        "meant for positions that far (raise max_position_embeddings to train "
                        "longer rows)",
                        c->seq_len, mc->max_position_embeddings);
    return KSA_OK;
}

ksa_status ksa_train_config_schedule(const ksa_train_config *c, ksa_lr_schedule *s)
{
    ksa_lr_kind kind;
    KSA_TRY(ksa_lr_schedule_parse_kind(c->lr_schedule, &kind));
    *s = (ksa_lr_schedule){.kind = kind,
                           .lr = c->lr,
                           .min_lr = c->min_lr,
                           .warmup_steps = c->warmup_steps,
                           .decay_steps = c->decay_steps,
                           .steps = c->steps};
    return KSA_OK;
}

void ksa_train_config_write(const ksa_train_config *c, FILE *f)
{
    ksa_config_keys_write(train_keys, N_KEYS, c, f);
}

void ksa_train_config_absolute_paths(ksa_train_config *c)
{
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return; /* left relative: a resume then works from this folder only */
    for (size_t i = 0; i < N_KEYS; i++) {
        const ksa_config_key *k = &train_keys[i];
        char *field = (char *)c + k->offset;
        if (!is_path_key(k->name) || field[0] == '/' || field[0] == '\0')
            continue;
        char buf[2 * KSA_PATH_STR];
        int n = snprintf(buf, sizeof buf, "%s/%s", cwd, field);
        if (n > 0 && (size_t)n < k->str_cap)
            memcpy(field, buf, (size_t)n + 1);
    }
}

static ksa_status set_from_checkpoint(void *ctx, const char *key, const char *value,
                                      const char *origin)
{
    return ksa_train_config_set(ctx, key, value, origin, NULL);
}

ksa_status ksa_train_config_read_checkpoint(const char *path, ksa_train_config *c,
                                            ksa_ckpt_progress *pr)
{
    ksa_train_config_defaults(c);
    return ksa_ckpt_read_train(path, train_keys, N_KEYS, set_from_checkpoint, c, pr);
}
