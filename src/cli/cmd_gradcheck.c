/* cmd_gradcheck.c - `ksa gradcheck --config X [--params all|NAME...]`: central finite
 * differences of the whole model's loss against its backward, in the float64 build (the
 * float32 `ksa` runs `ksa64` from its own folder). Prints per parameter max|numeric| and
 * max|analytic - numeric|, and exits 1 when any tensor's difference exceeds
 * --atol + --rtol · max|numeric| (model/gradcheck.h explains both parts).               */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/decoder.h"
#include "model/gradcheck.h"

#ifndef KSA_REAL_DOUBLE
/* The float32 build hands the whole command to bin/ksa64 beside it. */
static int run_float64_build(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 8);
    if (n <= 0)
        return ksa_cli_errorf("gradcheck", 1, "cannot find this executable's folder");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    strcpy(slash + 1, "ksa64");
    char **args = calloc((size_t)argc + 3, sizeof *args);
    args[0] = self;
    args[1] = "gradcheck";
    for (int i = 0; i < argc; i++)
        args[i + 2] = argv[i];
    execv(self, args);
    ksa_cli_errorf("gradcheck", 1, "cannot run the float64 build '%s' (build it with make)", self);
    free(args);
    return 1;
}
#endif

#ifdef KSA_REAL_DOUBLE
/* The table of results, one line per checked tensor; returns 1 if any failed. */
static int print_results(const ksa_gradcheck_result *res, size_t n, double atol, double rtol)
{
    printf("a tensor passes when max|analytic - numeric| <= atol + rtol * max|numeric|, "
           "atol %.3g, rtol %.3g\n",
           atol, rtol);
    printf("%-56s %8s %11s %11s %11s %11s\n", "parameter", "elements", "max|num|", "max|diff|",
           "atol", "rtol*max|num|");
    int failed = 0;
    size_t worst = n; /* the tensor nearest to (or furthest beyond) its bound */
    double worst_ratio = -1;
    for (size_t i = 0; i < n; i++) {
        const ksa_gradcheck_result *r = &res[i];
        if (!r->checked)
            continue;
        int bad = !ksa_gradcheck_passes(r, atol, rtol);
        failed |= bad;
        double bound = ksa_gradcheck_bound(r, atol, rtol);
        double ratio = bad ? INFINITY : (bound > 0 ? r->max_abs_diff / bound : 0);
        if (ratio > worst_ratio)
            worst_ratio = ratio, worst = i;
        printf("%-56s %8zu %11.4g %11.4g %11.4g %11.4g%s\n", r->name, r->numel, r->max_abs_numeric,
               r->max_abs_diff, atol, rtol * r->max_abs_numeric, bad ? "  FAIL" : "");
    }
    if (worst < n)
        printf("closest to its bound: %s, max|diff| %.4g vs %.4g (atol %.3g + rtol*max|num| "
               "%.3g): %s\n",
               res[worst].name, res[worst].max_abs_diff,
               ksa_gradcheck_bound(&res[worst], atol, rtol), atol,
               rtol * res[worst].max_abs_numeric, failed ? "FAILED" : "ok");
    return failed;
}

/* select[i] = 1 for the named parameters (NULL: all, when names are none or "all"). Returns
 * 0, or 2 after printing the error for an unknown name. */
static int select_params(const ksa_model *m, const char *const *names, size_t n_names, int **select)
{
    *select = NULL;
    if (!n_names || (n_names == 1 && !strcmp(names[0], "all")))
        return 0;
    *select = calloc(m->params.n, sizeof **select);
    KSA_ASSERT(*select, "out of memory for %zu flags", m->params.n);
    for (size_t i = 0; i < n_names; i++) {
        long k = ksa_params_find(&m->params, names[i]);
        if (k < 0) {
            free(*select);
            *select = NULL;
            return ksa_cli_errorf("gradcheck", 2, "the model has no parameter '%s'", names[i]);
        }
        (*select)[k] = 1;
    }
    return 0;
}
#endif

int ksa_cmd_gradcheck(int argc, char **argv)
{
#ifndef KSA_REAL_DOUBLE
    return run_float64_build(argc, argv);
#else
    ksa_model_config cfg;
    ksa_model_config_defaults(&cfg);
    const char *param_names[256];
    size_t n_names = 0;
    long seq_len = 13, batch = 2, seed = 1;
    double rtol = KSA_GRADCHECK_RTOL, atol = KSA_GRADCHECK_ATOL;
    int help = 0;
    const ksa_arg args[] = {
        {"params", KSA_ARG_LIST, param_names, &n_names, 256, "all (default) or parameter names"},
        {"seq_len", KSA_ARG_LONG, &seq_len, NULL, 0, "text tokens per row (default 13)"},
        {"batch", KSA_ARG_LONG, &batch, NULL, 0, "rows (default 2)"},
        {"seed", KSA_ARG_LONG, &seed, NULL, 0, "weights and tokens (default 1)"},
        {"rtol", KSA_ARG_DOUBLE, &rtol, NULL, 0,
         "relative part of the accepted error, times max|numeric| (default 1e-5)"},
        {"atol", KSA_ARG_DOUBLE, &atol, NULL, 0,
         "absolute part of the accepted error (default 1e-8, the finite-difference floor)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    const char *config_path;
    if (ksa_args_parse(argc, argv, args, n_args, &cfg, &config_path) != KSA_OK)
        return ksa_cli_error("gradcheck", 2);
    if (help) {
        ksa_args_usage(stdout, "gradcheck", args, n_args, KSA_USAGE_MODEL_KEYS);
        return 0;
    }
    if (seq_len < 1 || batch < 1)
        return ksa_cli_errorf("gradcheck", 2, "--seq-len and --batch must be at least 1");
    if (!(rtol >= 0) || !(atol >= 0))
        return ksa_cli_errorf("gradcheck", 2, "--rtol and --atol must be >= 0, got %g and %g", rtol,
                              atol);
    ksa_model m;
    if (ksa_model_init(&m, &cfg) != KSA_OK)
        return ksa_cli_error("gradcheck", 2);
    int *select;
    if (select_params(&m, param_names, n_names, &select) != 0) {
        ksa_model_free(&m);
        return 2;
    }
    size_t T = (size_t)seq_len, B = (size_t)batch;
    int32_t *tokens = ksa_gradcheck_setup(&m, (uint64_t)seed, B, T);
    printf("gradcheck (%s): %s, %zu parameters in %zu tensors, %zu rows of %zu tokens\n",
           KSA_REAL_NAME, config_path ? config_path : "built-in defaults",
           ksa_params_count(&m.params), m.params.n, B, T);
    ksa_model_layout_print(&m.layout, stdout);
    ksa_gradcheck_result *res = calloc(m.params.n, sizeof *res);
    KSA_ASSERT(res, "out of memory for %zu results", m.params.n);
    ksa_gradcheck_run(&m, tokens, B, T, select, res);
    int failed = print_results(res, m.params.n, atol, rtol);
    free(res);
    free(select);
    ksa_free(tokens);
    ksa_model_free(&m);
    return failed ? 1 : 0;
#endif
}
