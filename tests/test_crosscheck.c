/* test_crosscheck.c - the C model against the independent PyTorch implementation
 * (scripts/torch_reference.py): every fixture (tests/refs, files ending in .h5) is a
 * checkpoint plus /inputs/tokens [nseq, L+1] (int32), /outputs/loss (float64 scalar),
 * /outputs/logits [nseq*L, V] and /grads/<param name> (float32), computed by torch in
 * float64. The model
 * is loaded from the fixture, run forward and backward, and compared:
 *   loss within 1e-5 relative; logits within 1e-4·max|logit| (float32 build); for every parameter
 *   max|Δgrad| <= 2e-3·max|grad| (float32 build), 1e-6·max|grad| (float64 build);
 *   gradients that are zero in the reference must be exactly zero here.
 * Each fixture runs with 1, 2 and 3 threads (the attention backward sums per-thread dK/dV
 * partials; 3 splits the work unevenly): every run must match the reference, and the
 * gradients of 2 and 3 threads must match those of 1 thread within THREAD_RTOL·max|grad|.
 * A fixture of an annealing model (summary_mix_qkv) has a root attribute summary_mix, the
 * coefficient of KSA_SPEC §5.5 its outputs were computed with; the model runs with it.
 * KSA_REFS_DIR overrides the folder (make crosscheck regenerates fixtures elsewhere).    */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "ckpt/ckpt.h"
#include "model/decoder.h"

#ifdef KSA_REAL_DOUBLE
#define GRAD_RTOL 1e-6
#define LOGIT_RTOL 1e-6 /* the fixture stores logits as float32 */
#define LOSS_RTOL 1e-12
#define THREAD_RTOL 1e-12
#else
#define THREAD_RTOL 1e-5
#define GRAD_RTOL 2e-3
#define LOGIT_RTOL 1e-4
#define LOSS_RTOL 1e-5
#endif

/* Reads a whole dataset as `type` into a malloc'ed buffer; NULL if absent. */
static void *read_dataset(hid_t f, const char *name, hid_t type, size_t elem, size_t *n,
                          size_t dims_out[2])
{
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0)
        return NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[4] = {1, 1, 1, 1};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    size_t count = 1;
    for (int i = 0; i < nd; i++)
        count *= dims[i];
    if (dims_out) {
        dims_out[0] = nd > 0 ? dims[0] : 1;
        dims_out[1] = nd > 1 ? dims[1] : 1;
    }
    void *buf = malloc(count * elem + 1);
    assert_true(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    *n = count;
    return buf;
}

/* Runs the fixture with `threads` threads, compares with the reference and returns a copy of
 * the gradient (all parameters, flat). */
static ksa_real *check_fixture(const char *path, int threads)
{
    ksa_threads_set(threads);
    ksa_model_config cfg;
    if (ksa_ckpt_read_config(path, &cfg) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_model m;
    if (ksa_model_init(&m, &cfg) != KSA_OK)
        fail_msg("%s: %s", path, ksa_last_error());
    if (ksa_ckpt_read_params(path, &m.params, 0) != KSA_OK)
        fail_msg("%s", ksa_last_error());

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    /* a fixture of an annealing model holds the coefficient its outputs were computed with */
    if (H5Aexists(f, "summary_mix") > 0) {
        hid_t a = H5Aopen(f, "summary_mix", H5P_DEFAULT);
        double mix = 1;
        assert_true(a >= 0 && H5Aread(a, H5T_NATIVE_DOUBLE, &mix) >= 0);
        H5Aclose(a);
        m.summary_mix = mix;
    }
    size_t n_tok, tok_dims[2], n;
    int32_t *tokens = read_dataset(f, "/inputs/tokens", H5T_NATIVE_INT32, 4, &n_tok, tok_dims);
    assert_non_null(tokens);
    double *loss_ref = read_dataset(f, "/outputs/loss", H5T_NATIVE_DOUBLE, 8, &n, NULL);
    assert_non_null(loss_ref);
    size_t nseq = tok_dims[0], T = tok_dims[1] - 1;

    ksa_arena arena;
    ksa_arena_init(&arena, ksa_model_arena_bytes(&m, nseq, T));
    ksa_tape tp;
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(&m));
    double loss;
    ksa_tensor *logits;
    ksa_tensor *l = ksa_model_forward(&m, &tp, tokens, nseq, T, (double)(nseq * T), &loss, &logits);
    ksa_tape_backward(&tp, l);
    char what[512];
    snprintf(what, sizeof what, "%s, %d threads: loss", path, threads);
    ksa_expect_close_dd(&loss, loss_ref, 1, 0, LOSS_RTOL, what);

    double *logits_ref = read_dataset(f, "/outputs/logits", H5T_NATIVE_DOUBLE, 8, &n, NULL);
    assert_non_null(logits_ref);
    assert_int_equal(n, logits->numel);
    double max_logit = 0;
    for (size_t i = 0; i < n; i++)
        max_logit = fmax(max_logit, fabs(logits_ref[i]));
    snprintf(what, sizeof what, "%s, %d threads: logits", path, threads);
    ksa_expect_close(logits->data, logits_ref, n, LOGIT_RTOL * max_logit, 0, what);

    for (size_t i = 0; i < m.params.n; i++) {
        const ksa_param *e = &m.params.table[i];
        char name[256];
        snprintf(name, sizeof name, "/grads/%s", e->name);
        double *g = read_dataset(f, name, H5T_NATIVE_DOUBLE, 8, &n, NULL);
        if (!g)
            fail_msg("%s: no %s", path, name);
        assert_int_equal(n, e->numel);
        const ksa_real *mine = m.params.grad + e->offset;
        double max_g = 0, max_diff = 0;
        for (size_t j = 0; j < n; j++) {
            max_g = fmax(max_g, fabs(g[j]));
            max_diff = fmax(max_diff, fabs((double)mine[j] - g[j]));
        }
        if (max_g == 0) { /* structurally zero: must be exactly zero here too */
            for (size_t j = 0; j < n; j++)
                if (mine[j] != 0)
                    fail_msg("%s, %d threads: %s is zero in the reference, %g here at %zu", path,
                             threads, e->name, (double)mine[j], j);
        } else if (!(max_diff <= GRAD_RTOL * max_g)) {
            fail_msg("%s, %d threads: %s max|diff| %.3g > %.1g * max|grad| %.3g", path, threads,
                     e->name, max_diff, GRAD_RTOL, max_g);
        }
        free(g);
    }
    H5Fclose(f);
    free(tokens), free(loss_ref), free(logits_ref);
    ksa_real *grad = malloc(m.params.numel * sizeof *grad);
    memcpy(grad, m.params.grad, m.params.numel * sizeof *grad);
    ksa_tape_free(&tp);
    ksa_arena_free(&arena);
    ksa_model_free(&m);
    return grad;
}

/* The fixture with 1, 2 and 3 threads: each against the reference, and 2 and 3 against 1. */
static void check_fixture_on_thread_counts(const char *path)
{
    int saved_threads = ksa_threads_get();
    ksa_real *one = check_fixture(path, 1);
    ksa_model_config cfg;
    assert_int_equal(ksa_ckpt_read_config(path, &cfg), KSA_OK);
    ksa_model m;
    assert_int_equal(ksa_model_init(&m, &cfg), KSA_OK);
    for (int threads = 2; threads <= 3; threads++) {
        ksa_real *g = check_fixture(path, threads);
        for (size_t i = 0; i < m.params.n; i++) {
            const ksa_param *e = &m.params.table[i];
            double max_g = 0, max_diff = 0;
            for (size_t j = e->offset; j < e->offset + e->numel; j++) {
                max_g = fmax(max_g, fabs((double)one[j]));
                max_diff = fmax(max_diff, fabs((double)g[j] - (double)one[j]));
            }
            if (!(max_diff <= THREAD_RTOL * max_g))
                fail_msg("%s: %s with %d threads differs from 1 thread by %.3g (max|grad| %.3g)",
                         path, e->name, threads, max_diff, max_g);
        }
        free(g);
    }
    ksa_model_free(&m);
    free(one);
    ksa_threads_set(saved_threads);
}

static void model_matches_the_pytorch_reference_on_every_fixture(void **state)
{
    (void)state;
    const char *dir = getenv("KSA_REFS_DIR") ? getenv("KSA_REFS_DIR") : "tests/refs";
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open the fixture folder '%s'", dir);
    struct dirent *ent;
    int n_files = 0;
    while ((ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len < 4 || strcmp(ent->d_name + len - 3, ".h5") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        check_fixture_on_thread_counts(path);
        n_files++;
    }
    closedir(d);
    printf("compared %d fixtures of %s\n", n_files, dir);
    assert_true(n_files >= 7);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_matches_the_pytorch_reference_on_every_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
