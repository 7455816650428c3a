/* lr_schedule.c - constant, cosine and WSD (KSA_SPEC §9.6) learning rates; see the header
 * for the formulas and the shortened WSD decay.                                            */
#include "lr_schedule.h"

#include <math.h>
#include <string.h>

static const char *const kind_names[] = {
    [KSA_LR_CONSTANT] = "constant",
    [KSA_LR_COSINE] = "cosine",
    [KSA_LR_WSD] = "wsd",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == KSA_LR_WSD + 1,
               "every ksa_lr_kind needs a name");
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

ksa_status ksa_lr_schedule_parse_kind(const char *name, ksa_lr_kind *kind)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (ksa_lr_kind)i;
            return KSA_OK;
        }
    return ksa_fail(KSA_EINVAL, "unknown lr_schedule '%s' (known: constant, cosine, wsd)", name);
}

const char *ksa_lr_schedule_kind_name(ksa_lr_kind kind)
{
    return ((unsigned)kind < N_KINDS) ? kind_names[kind] : "unknown";
}

ksa_status ksa_lr_schedule_check(const ksa_lr_schedule *s)
{
    if ((unsigned)s->kind >= N_KINDS)
        return ksa_fail(KSA_EINVAL, "lr_schedule: unknown kind %d", (int)s->kind);
    if (!isfinite(s->lr) || s->lr < 0)
        return ksa_fail(KSA_EINVAL, "lr = %g: expected a finite value >= 0", s->lr);
    if (!isfinite(s->min_lr) || s->min_lr < 0)
        return ksa_fail(KSA_EINVAL, "min_lr = %g: expected a finite value >= 0", s->min_lr);
    if (s->kind != KSA_LR_CONSTANT && s->min_lr > s->lr)
        return ksa_fail(KSA_EINVAL,
                        "min_lr = %g is above lr = %g (lr_schedule = %s decays "
                        "from lr to min_lr)",
                        s->min_lr, s->lr, kind_names[s->kind]);
    if (s->warmup_steps < 0)
        return ksa_fail(KSA_EINVAL, "warmup_steps = %ld: expected >= 0", s->warmup_steps);
    if (s->decay_steps < 0)
        return ksa_fail(KSA_EINVAL, "decay_steps = %ld: expected >= 0", s->decay_steps);
    if (s->steps < 0)
        return ksa_fail(KSA_EINVAL, "steps = %ld: expected >= 0", s->steps);
    return KSA_OK;
}

static long max1(long x)
{
    return x > 1 ? x : 1;
}

/* KSA_SPEC §9.6 with the decay shortened to fit after the warmup (header). */
static double wsd_at(const ksa_lr_schedule *s, long k)
{
    long room = s->steps - s->warmup_steps > 0 ? s->steps - s->warmup_steps : 0;
    long decay = s->decay_steps < room ? s->decay_steps : room;
    long ds = s->steps - decay;
    if (k >= s->steps)
        return s->min_lr;
    if (k < ds)
        return s->lr;
    double t = (double)(k - ds) / (double)max1(decay);
    return s->lr - t * (s->lr - s->min_lr);
}

static double cosine_at(const ksa_lr_schedule *s, long k)
{
    double p = (double)(k - s->warmup_steps) / (double)max1(s->steps - s->warmup_steps);
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1 + cos(M_PI * p));
}

double ksa_lr_at(const ksa_lr_schedule *s, long k)
{
    KSA_ASSERT(k >= 0, "the update index k counts from 0, got %ld", k);
    KSA_ASSERT(s->warmup_steps >= 0 && s->decay_steps >= 0 && s->steps >= 0,
               "unchecked schedule: warmup %ld, decay %ld, steps %ld", s->warmup_steps,
               s->decay_steps, s->steps);
    /* the warmup comes first for every kind (KSA_SPEC §9.6 tests it before k >= total) */
    if (k < s->warmup_steps)
        return s->lr * ((double)k / (double)max1(s->warmup_steps));
    switch (s->kind) {
    case KSA_LR_CONSTANT:
        return s->lr;
    case KSA_LR_COSINE:
        return cosine_at(s, k);
    case KSA_LR_WSD:
        return wsd_at(s, k);
    }
    KSA_ASSERT(0, "unknown lr schedule kind %d", (int)s->kind);
    return 0;
}
