/* test_ckpt_mpi.c - checkpoints written collectively by N ranks, each holding only its
 * slice of the AdamW moments (DESIGN.md §5-6), and read back slice by slice on M ranks.
 *
 * A normal cmocka program that calls MPI_Init itself: `make test` runs it as a one-rank
 * singleton, tests/test_ckpt_mpi.sh runs it again under `mpirun -np 2` and `-np 4`. Every
 * rank runs every test; checks are counted per rank and summed over the ranks before any
 * assertion, so all ranks pass or fail together (none is left alone in a collective).
 *
 * KSA_CKPT_MPI_DIR=FOLDER keeps the files there: a run on N ranks writes FOLDER/npN.h5 and
 * then reads back every FOLDER/npK.h5 present (written by earlier runs on K ranks) on its
 * own N ranks, printing `read npK.h5 on N ranks: ok` from rank 0 for each. Without it
 * the files go to a scratch folder that is removed at the end.                          */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#include "autograd/params.h"
#include "ckpt/ckpt.h"
#include "model/config.h"
#include "train/train_config.h"

static int rank, n_ranks;
static char dir[512];
static int keep_files; /* KSA_CKPT_MPI_DIR given */

static const char *in_dir(const char *name)
{
    static char buf[4][1024];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

static int make_dir(void **state)
{
    (void)state;
    const char *given = getenv("KSA_CKPT_MPI_DIR");
    keep_files = given && given[0];
    if (keep_files)
        snprintf(dir, sizeof dir, "%s", given);
    else if (rank == 0) {
        snprintf(dir, sizeof dir, "/tmp/ksa_ckpt_mpi_XXXXXX");
        if (!mkdtemp(dir))
            dir[0] = '\0';
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    return dir[0] ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    MPI_Barrier(MPI_COMM_WORLD);
    if (keep_files || rank != 0)
        return 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(in_dir(e->d_name));
    }
    if (d)
        closedir(d);
    return rmdir(dir);
}

/* Sum of a per-rank count over the ranks. */
static long total(long n)
{
    long sum = 0;
    MPI_Allreduce(&n, &sum, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    return sum;
}

/* Fails on every rank if any rank reported a problem (each printed its own first one). */
static void expect_no_errors(long errors, const char *what)
{
    long all = total(errors);
    if (all)
        fail_msg("%s: %ld mismatches over %d ranks (see the [rank r] lines)", what, all, n_ranks);
}

/* ---- the parameter table and the values -------------------------------------------------- *
 * 224 elements, the last parameter ending at the very end. Slices start in the middle of
 * parameters and rows: with 4 ranks the buffer is cut at 56 (huge, row 3, column 7), 112
 * (huge, row 8, column 8) and 168 (the 1-D norm), so rank 1 writes three hyperslabs of
 * huge; with 2 ranks at 112; with 3 at 75 (huge) and 150 (norm), the last slice running 1
 * element past the buffer (padding).                                                      */
typedef struct {
    const char *name;
    int ndim;
    size_t d0, d1;
} spec;

static const spec table[] = {
    {"model.embed_tokens.weight", 2, 3, 5}, /* [0, 15) + gap */
    {"huge", 2, 9, 11},                     /* [16, 115) + gap */
    {"model.norm.weight", 1, 45, 0},        /* [128, 173) + gap */
    {"col", 2, 5, 1},                       /* [176, 181) + gap */
    {"wide", 2, 2, 16},                     /* [192, 224) */
};

static void declare(ksa_params *p)
{
    ksa_params_init(p);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        ksa_params_add(p, table[i].name, table[i].ndim, table[i].d0, table[i].d1);
    ksa_params_alloc(p);
}

/* The value every dataset must hold at buffer element g, exact in float32. */
enum { PARAMS, EXP_AVG, EXP_AVG_SQ };
static double expected(int what, size_t g)
{
    switch (what) {
    case PARAMS:
        return -(double)(g + 1);
    case EXP_AVG:
        return (double)(g + 1);
    default:
        return 0.5 * (double)(g + 1);
    }
}

/* This rank's slice when the buffer is padded to a multiple of the rank count. */
static void my_slice(const ksa_params *p, size_t *lo, size_t *hi)
{
    size_t N = (size_t)n_ranks, s = (p->numel + N - 1) / N;
    *lo = (size_t)rank * s;
    *hi = *lo + s;
}

static void tiny_config(ksa_model_config *c)
{
    /* one key and its value per line */
    /* clang-format off */
    const char *kv[] = {"vocab_size", "40",
                        "hidden_size", "8",
                        "num_hidden_layers", "2",
                        "num_attention_heads", "2",
                        "num_key_value_heads", "1",
                        "head_dim", "4",
                        "intermediate_size", "12",
                        "max_position_embeddings", "4096"};
    /* clang-format on */
    ksa_model_config_defaults(c);
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

/* ---- reading a file without this code's readers ------------------------------------------ */
/* Mismatches of dataset `name` (all of it, read with the serial driver) against `what`. */
static long check_dataset(hid_t file, const char *group, const ksa_param *e, int what,
                          const char *path)
{
    char name[256];
    snprintf(name, sizeof name, "%s/%s", group, e->name);
    float *x = malloc(e->numel * sizeof *x);
    assert_non_null(x);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        fprintf(stderr, "[rank %d] %s: cannot read %s\n", rank, path, name);
        free(x);
        return 1;
    }
    H5Dclose(d);
    long bad = 0;
    size_t C = e->ndim == 2 ? e->shape[1] : e->numel;
    for (size_t j = 0; j < e->numel; j++)
        if (x[j] != (float)expected(what, e->offset + j) && bad++ == 0)
            fprintf(stderr, "[rank %d] %s %s element (%zu, %zu) is %g, expected %g\n", rank, path,
                    name, j / C, j % C, (double)x[j], expected(what, e->offset + j));
    free(x);
    return bad;
}

/* Every parameter and both moments hold expected() at every element (any rank may call). */
static long check_file(const char *path, const ksa_params *p, int with_moments)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "[rank %d] cannot open %s\n", rank, path);
        return 1;
    }
    long bad = 0;
    for (size_t i = 0; i < p->n; i++) {
        bad += check_dataset(f, "/params", &p->table[i], PARAMS, path);
        if (with_moments) {
            bad += check_dataset(f, "/optim/exp_avg", &p->table[i], EXP_AVG, path);
            bad += check_dataset(f, "/optim/exp_avg_sq", &p->table[i], EXP_AVG_SQ, path);
        }
    }
    H5Fclose(f);
    return bad;
}

/* Each rank's slice of the moments in the file, read with ksa_ckpt_read_moments_slice. */
static long check_my_slice(const char *path, const ksa_params *p)
{
    size_t lo, hi;
    my_slice(p, &lo, &hi);
    ksa_real *m = malloc((hi - lo) * sizeof *m), *v = malloc((hi - lo) * sizeof *v);
    assert_true(m && v);
    if (ksa_ckpt_read_moments_slice(path, p, lo, hi, m, v) != KSA_OK) {
        fprintf(stderr, "[rank %d] %s\n", rank, ksa_last_error());
        free(m), free(v);
        return 1;
    }
    long bad = 0;
    for (size_t g = lo; g < hi; g++) {
        int in = 0;
        for (size_t i = 0; i < p->n && !in; i++)
            in = g >= p->table[i].offset && g < p->table[i].offset + p->table[i].numel;
        double wm = in ? (double)(float)expected(EXP_AVG, g) : 0;
        double wv = in ? (double)(float)expected(EXP_AVG_SQ, g) : 0;
        if (((double)m[g - lo] != wm || (double)v[g - lo] != wv) && bad++ == 0)
            fprintf(stderr, "[rank %d] %s: slice [%zu, %zu) element %zu is %g/%g, expected %g/%g\n",
                    rank, path, lo, hi, g, (double)m[g - lo], (double)v[g - lo], wm, wv);
    }
    free(m), free(v);
    return bad;
}

/* ---- writing --------------------------------------------------------------------------------- */
typedef struct {
    ksa_params p;
    ksa_model_config cfg;
    ksa_train_config tc;
    ksa_real *m, *v; /* this rank's slice only */
    ksa_ckpt_train_state ts;
} sharded_run;

/* The state of a run on n_ranks: each rank holds its slice of the moments, and (to show that
 * it writes only its own range of /params too) the right parameter values only there.    */
static void sharded_init(sharded_run *r)
{
    declare(&r->p);
    tiny_config(&r->cfg);
    ksa_train_config_defaults(&r->tc);
    size_t lo, hi;
    my_slice(&r->p, &lo, &hi);
    r->m = malloc((hi - lo) * sizeof *r->m);
    r->v = malloc((hi - lo) * sizeof *r->v);
    assert_true(r->m && r->v);
    for (size_t g = lo; g < hi; g++) { /* gaps and padding too: they must never be written */
        r->m[g - lo] = (ksa_real)expected(EXP_AVG, g);
        r->v[g - lo] = (ksa_real)expected(EXP_AVG_SQ, g);
    }
    for (size_t g = 0; g < r->p.numel; g++)
        r->p.data[g] = g >= lo && g < hi ? (ksa_real)expected(PARAMS, g) : 1000 + rank;
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    r->ts = (ksa_ckpt_train_state){
        .train_keys = keys,
        .n_train_keys = n_keys,
        .train = &r->tc,
        .adamw = {r->tc.beta1, r->tc.beta2, r->tc.adam_eps, r->tc.weight_decay},
        .step = 5,
        .tokens_seen = 640,
        .world_size = n_ranks,
        .slice_lo = lo,
        .slice_hi = hi,
        .exp_avg = r->m,
        .exp_avg_sq = r->v};
}

static void sharded_free(sharded_run *r)
{
    free(r->m);
    free(r->v);
    ksa_params_free(&r->p);
}

static ksa_status sharded_write(sharded_run *r, const char *path)
{
    return ksa_ckpt_write_training(path, &r->cfg, &r->p, 0, &r->ts);
}

/* ---- tests ----------------------------------------------------------------------------------- */
static void each_rank_writes_its_slice_into_the_logical_datasets(void **state)
{
    (void)state;
    sharded_run r;
    sharded_init(&r);
    char name[32];
    snprintf(name, sizeof name, "np%d.h5", n_ranks);
    const char *path = in_dir(name);
    ksa_status st = sharded_write(&r, path);
    if (st != KSA_OK)
        fail_msg("%s", ksa_last_error());
    /* every rank returns only once the file is in place */
    assert_int_equal(access(path, F_OK), 0);
    expect_no_errors(check_file(path, &r.p, 1), "the sharded checkpoint");
    ksa_ckpt_progress pr;
    ksa_train_config tc;
    if (ksa_train_config_read_checkpoint(path, &tc, &pr) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    assert_int_equal(pr.step, 5);
    assert_int_equal(pr.tokens_seen, 640);
    sharded_free(&r);
}

/* Files of this and earlier runs (other rank counts), each rank reading only its slice. */
static void files_of_any_rank_count_read_back_slice_by_slice(void **state)
{
    (void)state;
    ksa_params p;
    declare(&p);
    int files = 0;
    for (int k = 1; k <= 16; k++) {
        char name[32];
        snprintf(name, sizeof name, "np%d.h5", k);
        const char *path = in_dir(name);
        int here = access(path, F_OK) == 0, everywhere = 0;
        MPI_Allreduce(&here, &everywhere, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (!everywhere)
            continue;
        expect_no_errors(check_my_slice(path, &p), path);
        if (rank == 0)
            printf("read np%d.h5 on %d ranks: ok\n", k, n_ranks);
        files++;
    }
    fflush(stdout);
    assert_true(files >= 1); /* at least this run's own file */
    ksa_params_free(&p);
}

/* The last rank fails just before its part of the first /optim/exp_avg_sq dataset, while
 * the others are about to enter that collective write: all must return the error, and the
 * checkpoint already under that name must stay as it was, with no .tmp left.           */
static void an_error_on_one_rank_fails_the_save_on_every_rank(void **state)
{
    (void)state;
    sharded_run r;
    sharded_init(&r);
    const char *path = in_dir("fault.h5"), *tmp = in_dir("fault.h5.tmp");
    if (sharded_write(&r, path) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    char fault[32];
    snprintf(fault, sizeof fault, "ckpt_error:%d", n_ranks - 1);
    setenv("KSA_TEST_FAULT", fault, 1);
    r.ts.step = 6; /* a different checkpoint, which must never appear */
    ksa_status st = sharded_write(&r, path);
    unsetenv("KSA_TEST_FAULT");
    long bad = 0;
    if (st == KSA_OK) {
        fprintf(stderr, "[rank %d] the save succeeded despite the fault\n", rank);
        bad++;
    } else {
        const char *want = rank == n_ranks - 1 ? "write error injected by KSA_TEST_FAULT"
                                               : "failed (its message says why)";
        if (!strstr(ksa_last_error(), want) && bad++ == 0)
            fprintf(stderr, "[rank %d] message '%s' lacks '%s'\n", rank, ksa_last_error(), want);
    }
    if (access(tmp, F_OK) == 0 && bad++ == 0)
        fprintf(stderr, "[rank %d] %s is left behind\n", rank, tmp);
    ksa_ckpt_progress pr = {0};
    ksa_train_config tc;
    if ((ksa_train_config_read_checkpoint(path, &tc, &pr) != KSA_OK || pr.step != 5) && bad++ == 0)
        fprintf(stderr, "[rank %d] the previous checkpoint changed (step %ld): %s\n", rank, pr.step,
                ksa_last_error());
    bad += check_my_slice(path, &r.p);
    expect_no_errors(bad, "a save failing on one rank");
    sharded_free(&r);
}

/* When every rank holds the whole buffer (model files, gradient files, a training state not
 * sharded), the ranks split the writing evenly; the file is the same.                   */
static void whole_buffers_are_written_once_by_all_ranks_together(void **state)
{
    (void)state;
    sharded_run r;
    sharded_init(&r);
    size_t n = r.p.numel;
    ksa_real *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
    assert_true(m && v);
    for (size_t g = 0; g < n; g++) {
        r.p.data[g] = (ksa_real)expected(PARAMS, g);
        r.p.grad[g] = (ksa_real)expected(EXP_AVG, g);
        m[g] = (ksa_real)expected(EXP_AVG, g);
        v[g] = (ksa_real)expected(EXP_AVG_SQ, g);
    }
    ksa_ckpt_train_state whole = r.ts;
    whole.slice_lo = whole.slice_hi = 0;
    whole.exp_avg = m;
    whole.exp_avg_sq = v;
    const char *train = in_dir("whole.h5"), *model = in_dir("model.h5"), *grads = in_dir("g.h5");
    if (ksa_ckpt_write_training(train, &r.cfg, &r.p, 0, &whole) != KSA_OK ||
        ksa_ckpt_write_model(model, &r.cfg, &r.p, 0) != KSA_OK ||
        ksa_ckpt_write_grads(grads, &r.p) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    long bad = check_file(train, &r.p, 1) + check_file(model, &r.p, 0);
    hid_t f = H5Fopen(grads, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    for (size_t i = 0; i < r.p.n; i++)
        bad += check_dataset(f, "/grads", &r.p.table[i], EXP_AVG, grads);
    H5Fclose(f);
    expect_no_errors(bad, "files of whole buffers");
    free(m), free(v);
    sharded_free(&r);
}

/* A stored tokenizer.json (/tokenizer/tokenizer.json) in a sharded save: every rank creates
 * the dataset, rank 0 writes its bytes; every rank reads them back whole and verified.  */
static void tokenizer_json_is_written_once_in_a_sharded_save(void **state)
{
    (void)state;
    sharded_run r;
    sharded_init(&r);
    static const unsigned char json[] = "{\"added_tokens\": [{\"id\": 0}], \"model\": {}}";
    r.ts.tokenizer_json = json;
    r.ts.tokenizer_json_len = sizeof json - 1;
    char name[32];
    snprintf(name, sizeof name, "tok_np%d.h5", n_ranks);
    const char *path = in_dir(name);
    if (sharded_write(&r, path) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    unsigned char *got = NULL;
    size_t len = 0;
    if (ksa_ckpt_read_tokenizer_json(path, &got, &len) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    assert_int_equal(len, sizeof json - 1);
    assert_memory_equal(got, json, len);
    free(got);
    char type[64], id[KSA_CKPT_TOKENIZER_ID];
    assert_int_equal(ksa_ckpt_read_tokenizer(path, type, sizeof type), KSA_OK);
    ksa_ckpt_tokenizer_identity(json, sizeof json - 1, id);
    assert_string_equal(type, id);
    expect_no_errors(check_file(path, &r.p, 1), "the sharded checkpoint with a tokenizer");
    sharded_free(&r);
}

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n_ranks);
    ksa_log_rank = rank;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_rank_writes_its_slice_into_the_logical_datasets),
        cmocka_unit_test(files_of_any_rank_count_read_back_slice_by_slice),
        cmocka_unit_test(an_error_on_one_rank_fails_the_save_on_every_rank),
        cmocka_unit_test(whole_buffers_are_written_once_by_all_ranks_together),
        cmocka_unit_test(tokenizer_json_is_written_once_in_a_sharded_save),
    };
    int failed = cmocka_run_group_tests(tests, make_dir, remove_dir);
    MPI_Finalize();
    return failed;
}
