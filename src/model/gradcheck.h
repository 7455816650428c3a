/* gradcheck.h - finite-difference check of the whole model's gradients (float64 build).
 *
 * For each selected parameter, every element is perturbed by ±h, h = 1e-6·max(1, |w|), the
 * loss recomputed without recording, and the central difference compared with the
 * backward's gradient. A tensor passes when
 *     max|analytic − numeric| <= atol + rtol · max|numeric|
 * rtol catches wrong gradients of any size; atol is the floor of the central difference
 * itself (the rounding of two float64 losses divided by 2h: ~1e-10 to 1e-9 for losses of a
 * few nats and h = 1e-6), without which a correct tensor with tiny gradients fails. A
 * structurally zero gradient (every numeric value 0) must come out within atol of 0.     */
#ifndef KSA_MODEL_GRADCHECK_H
#define KSA_MODEL_GRADCHECK_H

#include <stdio.h>

#include "model/decoder.h"

/* Defaults of `ksa gradcheck` (docs/model.md). Bugs give relative errors of 1e-3 and more;
 * a correct model 1e-9 to 1e-6 of max|numeric|, or ~1e-9 absolute where gradients are tiny. */
#define KSA_GRADCHECK_RTOL 1e-5
#define KSA_GRADCHECK_ATOL 1e-8

typedef struct {
    char name[KSA_PARAM_NAME_MAX];
    size_t numel;
    int checked;      /* 0: not selected, the numbers below are 0 */
    size_t n_checked; /* elements perturbed: numel, or the sample */
    double max_abs_numeric, max_abs_analytic, max_abs_diff; /* over those elements */
} ksa_gradcheck_result;

/* What ksa_gradcheck_run checks and reports (NULL: every element of every parameter, no
 * progress lines). */
typedef struct {
    const int *select; /* select[i] != 0: check parameter i; NULL: all */
    size_t sample;     /* elements per tensor, drawn without repetition (0 or >= numel:
                        * all); which ones depends on sample_seed and the name only */
    uint64_t sample_seed;
    FILE *progress; /* a line "gradcheck: i/n elements ..." at most every
                     * progress_every seconds (NULL: none) */
    double progress_every;
} ksa_gradcheck_options;

/* Initialises m's weights (KSA_SPEC §9.7 from `seed`, then every norm weight moved off 1 by
 * U(-0.15, 0.15), so that a mix-up between two norms, e.g. q_norm and q_norm_summary,
 * changes the loss) and returns nseq rows of T + 1 random token ids (malloc'ed).         */
int32_t *ksa_gradcheck_setup(ksa_model *m, uint64_t seed, size_t nseq, size_t T);

/* Checks the parameters and elements opt asks for on the batch tokens [nseq, T+1]. results:
 * one per parameter of the table. The model's grads hold the analytic gradient afterwards;
 * its parameters are restored exactly.                                                   */
void ksa_gradcheck_run(ksa_model *m, const int32_t *tokens, size_t nseq, size_t T,
                       const ksa_gradcheck_options *opt, ksa_gradcheck_result *results);

/* atol + rtol · max|numeric|: the largest max|analytic − numeric| r may have. */
double ksa_gradcheck_bound(const ksa_gradcheck_result *r, double atol, double rtol);

/* 1 if r was checked and max|analytic − numeric| <= its bound (NaN fails). */
int ksa_gradcheck_passes(const ksa_gradcheck_result *r, double atol, double rtol);

#endif
