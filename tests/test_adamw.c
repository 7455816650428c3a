/* test_adamw.c - AdamW against a direct double transcription of torch.optim.AdamW. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "optim/adamw.h"

static void updates_match_torch_adamw_formula(void **state)
{
    (void)state;
    enum { n = 37, steps = 5 };
    ksa_adamw_hparams hp = {
        .lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    test_rng rng = test_rng_seed(1);
    ksa_real p[n], m[n] = {0}, v[n] = {0}, g[n];
    double pd[n], md[n] = {0}, vd[n] = {0};
    test_fill_uniform(p, n, -1, 1, &rng);
    for (int i = 0; i < n; i++)
        pd[i] = (double)p[i];
    for (long t = 1; t <= steps; t++) {
        test_fill_uniform(g, n, -2, 2, &rng);
        g[3] = 0; /* a zero gradient still decays */
        ksa_adamw_update(p, m, v, g, n, &hp, t);
        for (int i = 0; i < n; i++) { /* torch: p.mul_(1 - lr*wd); then the Adam step */
            pd[i] *= 1 - hp.lr * hp.weight_decay;
            md[i] = hp.beta1 * md[i] + (1 - hp.beta1) * g[i];
            vd[i] = hp.beta2 * vd[i] + (1 - hp.beta2) * (double)g[i] * g[i];
            double mh = md[i] / (1 - pow(hp.beta1, (double)t));
            double denom = sqrt(vd[i] / (1 - pow(hp.beta2, (double)t))) + hp.eps;
            pd[i] -= hp.lr * mh / denom;
        }
    }
    ksa_expect_close(p, pd, n, TEST_FWD_ATOL * 10, TEST_FWD_RTOL * 10, "AdamW parameters");
    ksa_expect_close(m, md, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "AdamW first moment");
    ksa_expect_close(v, vd, n, TEST_FWD_ATOL, TEST_FWD_RTOL, "AdamW second moment");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(updates_match_torch_adamw_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
