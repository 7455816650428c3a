/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "ckpt/verify.h"
#include "model/config.h"

test_rng test_rng_seed(uint64_t seed)
{
    return ksa_rng_at(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
}

double test_rng_uniform(test_rng *r)
{
    return ksa_rng_uniform(r);
}

double test_rng_normal(test_rng *r)
{
    return ksa_rng_normal(r);
}

void test_fill_uniform(ksa_real *x, size_t n, double lo, double hi, test_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (ksa_real)(lo + (hi - lo) * test_rng_uniform(r));
}

void test_fill_uniform_d(double *x, size_t n, double lo, double hi, test_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * test_rng_uniform(r);
}

double *test_to_double(const ksa_real *x, size_t n)
{
    double *y = malloc((n ? n : 1) * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++)
        y[i] = (double)x[i];
    return y;
}

void test_from_double(ksa_real *y, const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (ksa_real)x[i];
}

/* |a - b| <= atol + rtol * scale on every element, scale = |b| or (sym) max(|a|, |b|); on
 * failure prints what, how many elements fail, the worst one and its bound, and fails. */
static void expect_close(const double *a, const double *b, size_t n, double atol, double rtol,
                         int sym, const char *what)
{
    size_t worst = 0, n_bad = 0;
    double worst_excess = -INFINITY, worst_bound = 0;
    for (size_t i = 0; i < n; i++) {
        double scale = sym ? fmax(fabs(a[i]), fabs(b[i])) : fabs(b[i]);
        double bound = atol + rtol * scale;
        double diff = fabs(a[i] - b[i]);
        if (!(diff <= bound))
            n_bad++;
        double excess = isnan(diff) ? INFINITY : diff - bound;
        if (excess > worst_excess) {
            worst_excess = excess;
            worst = i;
            worst_bound = bound;
        }
    }
    if (n_bad == 0)
        return;
    print_error("%s: %zu of %zu elements out of tolerance; worst at [%zu]: got %.12g, want "
                "%.12g, |diff| %.3g > bound %.3g\n",
                what, n_bad, n, worst, a[worst], b[worst], fabs(a[worst] - b[worst]), worst_bound);
    fail();
}

void ksa_expect_close_dd(const double *got, const double *want, size_t n, double atol, double rtol,
                         const char *what)
{
    expect_close(got, want, n, atol, rtol, 0, what);
}

void ksa_expect_close(const ksa_real *got, const double *want, size_t n, double atol, double rtol,
                      const char *what)
{
    double *g = test_to_double(got, n);
    ksa_expect_close_dd(g, want, n, atol, rtol, what);
    free(g);
}

void ksa_expect_close_sym(const double *a, const double *b, size_t n, double atol, double rtol,
                          const char *what)
{
    expect_close(a, b, n, atol, rtol, 1, what);
}

void test_fd_grad(test_loss_fn f, void *ctx, ksa_real *x, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) {
        ksa_real saved = x[i];
        double h = 1e-6 * fmax(1.0, fabs((double)saved));
        x[i] = (ksa_real)((double)saved + h);
        double hp = (double)x[i] - (double)saved;
        double fp = f(ctx);
        x[i] = (ksa_real)((double)saved - h);
        double hm = (double)saved - (double)x[i];
        double fm = f(ctx);
        x[i] = saved;
        out[i] = (fp - fm) / (hp + hm);
    }
}

void test_fd_grad_d(test_loss_fn f, void *ctx, double *x, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) {
        double saved = x[i];
        double h = 1e-6 * fmax(1.0, fabs(saved));
        x[i] = saved + h;
        double fp = f(ctx);
        x[i] = saved - h;
        double fm = f(ctx);
        x[i] = saved;
        out[i] = (fp - fm) / (2 * h);
    }
}

double test_dot(const ksa_real *y, const double *c, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)y[i] * c[i];
    return s;
}

double test_dot_dd(const double *y, const double *c, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += y[i] * c[i];
    return s;
}

int test_scratch_make(char *dir, size_t cap, const char *prefix)
{
    snprintf(dir, cap, "/tmp/%s_XXXXXX", prefix);
    return mkdtemp(dir) ? 0 : -1;
}

int test_remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return remove(path);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        rc |= test_remove_tree(sub);
    }
    closedir(d);
    return rc | rmdir(path);
}

const char *test_path_in(const char *dir, const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

void test_expect_abort(void (*fn)(const void *arg), const void *arg, const char *needle)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        omp_set_num_threads(1);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn(arg);
        _exit(0); /* reached only if nothing aborted */
    }
    close(fds[1]);
    char msg[4096];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof msg - 1 && (got = read(fds[0], msg + len, sizeof msg - 1 - len)) > 0)
        len += (size_t)got;
    msg[len] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT))
        fail_msg("child did not abort (status 0x%x), stderr: %s", status, msg);
    if (!strstr(msg, needle))
        fail_msg("abort message lacks '%s': %s", needle, msg);
}

/* ---- a small model --------------------------------------------------------------------- */
void test_config_small(ksa_model_config *c)
{
    ksa_model_config_defaults(c);
    /* clang-format off */
    const char *kv[] = {"vocab_size", "257",
                        "hidden_size", "16",
                        "intermediate_size", "24",
                        "num_hidden_layers", "2",
                        "num_attention_heads", "4",
                        "num_key_value_heads", "2",
                        "head_dim", "4",
                        "use_summary_attention", "true",
                        "summary_chunk_size", "4",
                        "summary_token_num", "1",
                        "summary_sliding_chunk_num", "2",
                        "summary_layer_freq", "[1,0]",
                        "summary_independent_parameters", "true"};
    /* clang-format on */
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

/* ---- editing checkpoints ------------------------------------------------------------ */
int test_h5_write_checksum(long long dset_id)
{
    hid_t dset = (hid_t)dset_id, space = H5Dget_space(dset), aspace = -1, attr = -1;
    hssize_t n = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    float *x = n >= 0 ? malloc(((size_t)n ? (size_t)n : 1) * sizeof *x) : NULL;
    int rc = -1;
    if (x && (!n || H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0)) {
        uint64_t sum = ksa_ckpt_checksum_floats(x, (size_t)n, 0);
        if (H5Aexists(dset, "checksum") > 0)
            H5Adelete(dset, "checksum");
        aspace = H5Screate(H5S_SCALAR);
        attr = aspace < 0
                   ? -1
                   : H5Acreate2(dset, "checksum", H5T_STD_U64LE, aspace, H5P_DEFAULT, H5P_DEFAULT);
        rc = attr >= 0 && H5Awrite(attr, H5T_NATIVE_UINT64, &sum) >= 0 ? 0 : -1;
    }
    if (attr >= 0)
        H5Aclose(attr);
    if (aspace >= 0)
        H5Sclose(aspace);
    if (space >= 0)
        H5Sclose(space);
    free(x);
    return rc;
}
