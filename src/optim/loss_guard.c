/* loss_guard.c - the running median of recent losses and the spike rule (loss_guard.h). */
#include "loss_guard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ksa_loss_median(const double *x, size_t n)
{
    KSA_ASSERT(n <= KSA_LOSS_GUARD_MAX_WINDOW, "median of %zu values, at most %d", n,
               KSA_LOSS_GUARD_MAX_WINDOW);
    if (n == 0)
        return NAN;
    double sorted[KSA_LOSS_GUARD_MAX_WINDOW];
    memcpy(sorted, x, n * sizeof *x);
    qsort(sorted, n, sizeof *sorted, compare_doubles); /* a few hundred values once a step */
    return n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

ksa_loss_verdict ksa_loss_guard_judge(ksa_loss_guard *g, double loss, double factor, long steps,
                                      long window, double *median)
{
    KSA_ASSERT(window >= 1 && window <= KSA_LOSS_GUARD_MAX_WINDOW && steps >= 1,
               "loss guard: window %ld, steps %ld", window, steps);
    size_t w = (size_t)window;
    /* a smaller window than the stored one (changed on resume): its newest losses */
    if (g->n > w) {
        memmove(g->recent, g->recent + (g->n - w), w * sizeof *g->recent);
        g->n = w;
    }
    *median = factor > 0 ? ksa_loss_median(g->recent, g->n) : NAN;
    if (!isnan(*median) && loss > factor * *median) {
        g->high_steps++;
        return g->high_steps >= steps ? KSA_LOSS_SPIKE : KSA_LOSS_HIGH;
    }
    g->high_steps = 0;
    if (g->n == w) { /* full: the oldest leaves */
        memmove(g->recent, g->recent + 1, (w - 1) * sizeof *g->recent);
        g->n--;
    }
    g->recent[g->n++] = loss;
    return KSA_LOSS_NORMAL;
}
