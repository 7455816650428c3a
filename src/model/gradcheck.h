/* gradcheck.h - finite-difference check of the whole model's gradients (float64 build).
 *
 * For each selected parameter, every element is perturbed by ±h, h = 1e-6·max(1, |w|), the
 * loss recomputed without recording, and the central difference compared with the
 * backward's gradient: error = max|analytic − numeric| / max|numeric| (max|analytic| when
 * every numeric value is 0, so a structurally zero gradient must come out exactly 0).    */
#ifndef KSA_MODEL_GRADCHECK_H
#define KSA_MODEL_GRADCHECK_H

#include "model/decoder.h"

typedef struct {
    char name[KSA_PARAM_NAME_MAX];
    size_t numel;
    double max_abs_numeric, max_abs_diff, error;
} ksa_gradcheck_result;

/* Checks the parameters whose index has select[i] != 0 (select NULL: all) on the batch
 * tokens [nseq, T+1]. results: one per parameter of the table (unselected ones get
 * error = -1). Returns the largest error. The model's grads hold the analytic gradient
 * afterwards; its parameters are restored exactly.                                      */
double ksa_gradcheck_run(ksa_model *m, const int32_t *tokens, size_t nseq, size_t T,
                         const int *select, ksa_gradcheck_result *results);

#endif
