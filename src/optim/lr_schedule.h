/* lr_schedule.h - learning rate of the k-th optimizer update (k = 0, 1, ..., steps - 1).
 *
 * All three kinds share a linear warmup: lr * k / max(1, warmup_steps) for k < warmup_steps,
 * so with warmup the very first update uses learning rate 0 (KSA_SPEC §9.6).
 *
 *   constant  lr after the warmup (min_lr and decay_steps unused).
 *   cosine    min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * p)),
 *             p = (k - warmup) / max(1, steps - warmup) clamped to [0, 1]: lr right after the
 *             warmup, min_lr from k = steps on (decay_steps unused).
 *   wsd       warmup-stable-decay, exactly KSA_SPEC §9.6: lr * f(k) with r = min_lr / lr,
 *             ds = steps - decay,
 *                 f(k) = k / max(1, warmup)                      if k < warmup
 *                      = r                                       if k >= steps
 *                      = 1                                       if k < ds
 *                      = 1 - (k - ds) / max(1, decay) * (1 - r)  otherwise,
 *             so the last update of a run (k = steps - 1) is slightly above min_lr.
 *             When warmup_steps + decay_steps > steps, the decay is shortened to
 *             decay = max(0, steps - warmup_steps): the decay always ends at `steps` and never
 *             overlaps the warmup (with decay 0 the rate stays at lr up to the last update).
 *             Computed as lr - t * (lr - min_lr) without forming r, so lr = 0 is no special
 *             case and k >= steps gives min_lr exactly.
 *
 * `steps` is the total number of optimizer updates of the run, counted from the run's step
 * 0 also after a resume (the schedule is a function of k alone, so a resumed run continues
 * on the same curve).                                                                       */
#ifndef KSA_OPTIM_LR_SCHEDULE_H
#define KSA_OPTIM_LR_SCHEDULE_H

#include "core/core.h"

typedef enum { KSA_LR_CONSTANT, KSA_LR_COSINE, KSA_LR_WSD } ksa_lr_kind;

typedef struct {
    ksa_lr_kind kind;
    double lr, min_lr; /* peak and final learning rate (configuration keys lr, min_lr) */
    long warmup_steps; /* updates of linear warmup from 0 */
    long decay_steps;  /* wsd: updates of linear decay at the end of the run */
    long steps;        /* total updates of the run */
} ksa_lr_schedule;

/* "constant" | "cosine" | "wsd" (exact spelling); anything else is KSA_EINVAL with a message
 * naming the bad value and the known ones.                                                 */
ksa_status ksa_lr_schedule_parse_kind(const char *name, ksa_lr_kind *kind);
const char *ksa_lr_schedule_kind_name(ksa_lr_kind kind); /* "unknown" outside the enum */

/* KSA_EINVAL naming the configuration key when a field is out of range: lr, min_lr finite
 * and >= 0; min_lr <= lr for cosine and wsd; warmup_steps, decay_steps, steps >= 0.      */
ksa_status ksa_lr_schedule_check(const ksa_lr_schedule *s);

/* Learning rate of the k-th optimizer update, k >= 0 (0-based). s must pass the check. */
double ksa_lr_at(const ksa_lr_schedule *s, long k);

#endif
