/* cmd_gradcheck.c - `ksa gradcheck --config X [--params all|NAME...] [--sample N]`: central
 * finite differences of the whole model's loss against its backward, in the float64 build
 * (the float32 `ksa` runs `ksa64` from its own folder). Prints per parameter max|numeric|
 * and max|analytic - numeric|, and exits 1 when any tensor's difference exceeds
 * --atol + --rtol · max|numeric| (model/gradcheck.h explains both parts). Progress lines
 * go to stderr every --progress seconds.                                                 */
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
    printf("%-56s %8s %8s %11s %11s %11s %11s\n", "parameter", "elements", "checked", "max|num|",
           "max|diff|", "atol", "rtol*max|num|");
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
        printf("%-56s %8zu %8zu %11.4g %11.4g %11.4g %11.4g%s\n", r->name, r->numel, r->n_checked,
               r->max_abs_numeric, r->max_abs_diff, atol, rtol * r->max_abs_numeric,
               bad ? "  FAIL" : "");
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

/* The largest window W (chunks) of the summary layers; 0 without summary attention. */
static size_t largest_window(const ksa_model_layout *l)
{
    size_t W = 0;
    for (size_t i = 0; i < l->n_layers; i++)
        if (l->is_summary[i] && l->window[i] > W)
            W = l->window[i];
    return W;
}

/* The default row length. With summary attention, W + 2 chunks and a 1-token tail chunk,
 * T = C·(W + 2) + 1 (more chunks while T < 13): the tokens of the last two chunks see the
 * oldest chunk only through its summary tokens (KSA_SPEC §3.1), in every summary layer, so
 * the summary path is checked. Without it, 13 (not a multiple of small chunk sizes). */
static size_t default_seq_len(const ksa_model_layout *l)
{
    if (!l->ksa)
        return 13;
    size_t chunks = largest_window(l) + 2;
    while (l->C * chunks + 1 < 13)
        chunks++;
    return l->C * chunks + 1;
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
    long seq_len = -1, batch = 2, seed = 1, sample = 0;
    double rtol = KSA_GRADCHECK_RTOL, atol = KSA_GRADCHECK_ATOL, progress = 5;
    int help = 0;
    const ksa_arg args[] = {
        {"params", KSA_ARG_LIST, param_names, &n_names, 256, "all (default) or parameter names"},
        {"seq_len", KSA_ARG_LONG, &seq_len, NULL, 0,
         "text tokens per row (default: C*(W+2)+1 with summary attention, W the largest "
         "window, so that old chunks are seen through summary tokens only; else 13)"},
        {"batch", KSA_ARG_LONG, &batch, NULL, 0, "rows (default 2)"},
        {"seed", KSA_ARG_LONG, &seed, NULL, 0, "weights, tokens and the sample (default 1)"},
        {"sample", KSA_ARG_LONG, &sample, NULL, 0,
         "check N elements per tensor, drawn at random (default: every element)"},
        {"progress", KSA_ARG_DOUBLE, &progress, NULL, 0,
         "seconds between progress lines on stderr (default 5; 0: none)"},
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
    if (seq_len == 0 || batch < 1)
        return ksa_cli_errorf("gradcheck", 2, "--seq-len and --batch must be at least 1");
    if (!(rtol >= 0) || !(atol >= 0))
        return ksa_cli_errorf("gradcheck", 2, "--rtol and --atol must be >= 0, got %g and %g", rtol,
                              atol);
    if (!(progress >= 0))
        return ksa_cli_errorf("gradcheck", 2, "--progress must be >= 0 seconds, got %g", progress);
    ksa_model m;
    if (ksa_model_init(&m, &cfg) != KSA_OK)
        return ksa_cli_error("gradcheck", 2);
    int *select;
    if (select_params(&m, param_names, n_names, &select) != 0) {
        ksa_model_free(&m);
        return 2;
    }
    size_t T = seq_len > 0 ? (size_t)seq_len : default_seq_len(&m.layout), B = (size_t)batch;
    int32_t *tokens = ksa_gradcheck_setup(&m, (uint64_t)seed, B, T);
    printf("gradcheck (%s): %s, %zu parameters in %zu tensors, %zu rows of %zu tokens",
           KSA_REAL_NAME, config_path ? config_path : "built-in defaults",
           ksa_params_count(&m.params), m.params.n, B, T);
    if (m.layout.ksa)
        printf(" (C = %zu, largest window W = %zu chunks, C*W = %zu)", m.layout.C,
               largest_window(&m.layout), m.layout.C * largest_window(&m.layout));
    if (sample > 0)
        printf("\nelements checked: %ld per tensor (all of a smaller one), drawn with seed %ld\n",
               sample, seed);
    else
        printf("\nelements checked: all\n");
    ksa_model_layout_print(&m.layout, stdout);
    ksa_gradcheck_result *res = calloc(m.params.n, sizeof *res);
    KSA_ASSERT(res, "out of memory for %zu results", m.params.n);
    ksa_gradcheck_options opt = {.select = select,
                                 .sample = (size_t)sample,
                                 .sample_seed = (uint64_t)seed,
                                 .progress = progress > 0 ? stderr : NULL,
                                 .progress_every = progress};
    fflush(stdout);
    ksa_gradcheck_run(&m, tokens, B, T, &opt, res);
    int failed = print_results(res, m.params.n, atol, rtol);
    free(res);
    free(select);
    ksa_free(tokens);
    ksa_model_free(&m);
    return failed ? 1 : 0;
#endif
}
