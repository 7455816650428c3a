/* test_ckpt_shards.c - a rank's slice of the flat buffer, parameter by parameter: the
 * mapping to at most three hyperslabs (ksa_ckpt_slice_blocks), checked exhaustively, and
 * reading the moments of a slice (ksa_ckpt_read_moments_slice) against the whole. Runs
 * without MPI; the collective (sharded) write is tested under mpirun by test_ckpt_mpi.    */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "autograd/params.h"
#include "ckpt/ckpt.h"
#include "model/config.h"
#include "train/train_config.h"

/* ---- the scratch folder ----------------------------------------------------------------- */
static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    return test_scratch_make(dir, sizeof dir, "ksa_shards");
}

static int remove_dir(void **state)
{
    (void)state;
    return test_remove_tree(dir);
}

static const char *in_dir(const char *name)
{
    return test_path_in(dir, name);
}

/* ---- parameter tables ---------------------------------------------------------------------- */
typedef struct {
    const char *name;
    int ndim;
    size_t d0, d1;
} spec;

/* Odd shapes so that slices cross rows and parameters; 16-element alignment leaves gaps
 * after most of them. */
static const spec mixed[] = {
    {"model.embed_tokens.weight", 2, 3, 5}, /* 15 + gap 1 */
    {"model.norm.weight", 1, 7, 0},         /* 7 + gap 9 */
    {"col", 2, 4, 1},                       /* [4, 1]: every row is one element */
    {"row", 2, 1, 9},                       /* [1, 9]: one row */
    {"exact", 1, 16, 0},                    /* no gap after it */
    {"wide", 2, 2, 21},                     /* rows longer than the alignment */
    {"q_proj", 2, 5, 3},
    {"one", 1, 1, 0},
};
/* Only 2-D, rows spanning alignment blocks, no gap at all at one place. */
static const spec matrices[] = {
    {"a", 2, 4, 4}, /* exactly 16 */
    {"b", 2, 3, 7},
    {"c", 2, 6, 5},
};
/* Only 1-D. */
static const spec vectors[] = {
    {"x", 1, 5, 0},
    {"y", 1, 33, 0},
    {"z", 1, 2, 0},
};

typedef struct {
    const spec *s;
    size_t n;
} table;

static const table tables[] = {
    {mixed, sizeof mixed / sizeof mixed[0]},
    {matrices, sizeof matrices / sizeof matrices[0]},
    {vectors, sizeof vectors / sizeof vectors[0]},
};
#define N_TABLES (sizeof tables / sizeof tables[0])

static void declare(ksa_params *p, const table *t)
{
    ksa_params_init(p);
    for (size_t i = 0; i < t->n; i++)
        ksa_params_add(p, t->s[i].name, t->s[i].ndim, t->s[i].d0, t->s[i].d1);
    ksa_params_alloc(p);
}

/* ---- the mapping ----------------------------------------------------------------------------- */
/* Checks the blocks of e in [lo, hi) element by element and adds 1 to cover[g] for every
 * buffer element g they hold (cover: [cap]).                                               */
static void check_blocks(const ksa_param *e, size_t lo, size_t hi, unsigned *cover, size_t cap)
{
    ksa_ckpt_block b[KSA_CKPT_MAX_BLOCKS + 1];
    memset(b, 0xa5, sizeof b);
    size_t nb = ksa_ckpt_slice_blocks(e, lo, hi, b);
    size_t R = e->ndim == 2 ? e->shape[0] : 1, C = e->ndim == 2 ? e->shape[1] : e->shape[0];
    size_t a = lo > e->offset ? lo : e->offset;
    size_t z = hi < e->offset + e->numel ? hi : e->offset + e->numel;
    size_t want = z > a ? z - a : 0, got = 0;
    if (nb > KSA_CKPT_MAX_BLOCKS || (want == 0) != (nb == 0))
        fail_msg("%s, slice [%zu, %zu): %zu blocks for %zu elements", e->name, lo, hi, nb, want);
    if (e->ndim == 1 && nb > 1)
        fail_msg("%s (1-D), slice [%zu, %zu): %zu blocks", e->name, lo, hi, nb);
    for (size_t k = 0; k < nb; k++) {
        const ksa_ckpt_block *q = &b[k];
        if (q->rows < 1 || q->cols < 1 || q->row + q->rows > R || q->col + q->cols > C ||
            (q->rows > 1 && (q->col != 0 || q->cols != C)))
            fail_msg("%s [%zu, %zu], slice [%zu, %zu): block %zu is rows %zu+%zu, cols %zu+%zu",
                     e->name, R, C, lo, hi, k, q->row, q->rows, q->col, q->cols);
        if (q->first != (k ? b[k - 1].first + b[k - 1].rows * b[k - 1].cols : a - lo))
            fail_msg("%s, slice [%zu, %zu): block %zu starts at slice index %zu", e->name, lo, hi,
                     k, q->first);
        for (size_t r = 0; r < q->rows; r++)
            for (size_t c = 0; c < q->cols; c++) {
                size_t g = e->offset + (q->row + r) * C + q->col + c; /* buffer element */
                size_t i = q->first + r * q->cols + c;                /* slice index */
                if (g != lo + i || g < a || g >= z)
                    fail_msg("%s, slice [%zu, %zu): block %zu puts element %zu at slice index "
                             "%zu (element %zu)",
                             e->name, lo, hi, k, g, i, lo + i);
                assert_true(g < cap);
                cover[g]++;
            }
        got += q->rows * q->cols;
    }
    if (got != want)
        fail_msg("%s, slice [%zu, %zu): blocks hold %zu elements, the slice %zu", e->name, lo, hi,
                 got, want);
}

static void the_documented_example_gives_its_three_blocks(void **state)
{
    (void)state;
    ksa_param e = {.name = "q_proj", .offset = 32, .numel = 24, .ndim = 2, .shape = {4, 6}};
    ksa_ckpt_block b[KSA_CKPT_MAX_BLOCKS];
    assert_int_equal(ksa_ckpt_slice_blocks(&e, 37, 51, b), 3);
    size_t want[3][5] = {{0, 5, 1, 1, 0}, {1, 0, 2, 6, 1}, {3, 0, 1, 1, 13}};
    for (int k = 0; k < 3; k++) {
        size_t got[5] = {b[k].row, b[k].col, b[k].rows, b[k].cols, b[k].first};
        for (int j = 0; j < 5; j++)
            assert_int_equal(got[j], want[k][j]);
    }
    assert_int_equal(ksa_ckpt_slice_blocks(&e, 16, 40, b), 2);
    assert_int_equal(b[0].first, 16);
    assert_int_equal(b[0].cols, 6);
    assert_int_equal(b[1].row, 1);
    assert_int_equal(b[1].cols, 2);
    assert_int_equal(ksa_ckpt_slice_blocks(&e, 56, 64, b), 0);
    assert_int_equal(ksa_ckpt_slice_blocks(&e, 0, 32, b), 0);
    assert_int_equal(ksa_ckpt_slice_blocks(&e, 40, 40, b), 0);
    assert_int_equal(ksa_ckpt_slice_blocks(&e, 0, 100, b), 1); /* all of it: whole rows */
    assert_int_equal(b[0].rows, 4);
    assert_int_equal(b[0].first, 32);
}

/* Every slice [lo, hi) of every table, out to beyond the buffer (padding). */
static void every_slice_maps_each_of_its_elements_to_its_place(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TABLES; t++) {
        ksa_params p;
        declare(&p, &tables[t]);
        size_t end = p.numel + 20;
        unsigned *cover = calloc(end, sizeof *cover);
        assert_non_null(cover);
        for (size_t lo = 0; lo <= end; lo++)
            for (size_t hi = lo; hi <= end; hi++)
                for (size_t i = 0; i < p.n; i++)
                    check_blocks(&p.table[i], lo, hi, cover, end);
        free(cover);
        ksa_params_free(&p);
    }
}

/* The ZeRO layout: the buffer padded to a multiple of N, N equal slices. Over the ranks every
 * parameter element is covered exactly once and no gap or padding element ever.         */
static void the_slices_of_1_to_7_ranks_cover_every_parameter_element_once(void **state)
{
    (void)state;
    size_t cuts = 0; /* slices that start or end inside a parameter */
    for (size_t t = 0; t < N_TABLES; t++) {
        ksa_params p;
        declare(&p, &tables[t]);
        for (size_t N = 1; N <= 7; N++) {
            size_t padded = (p.numel + N - 1) / N * N, s = padded / N;
            unsigned *cover = calloc(padded, sizeof *cover);
            assert_non_null(cover);
            size_t pieces = 0;
            for (size_t r = 0; r < N; r++)
                for (size_t i = 0; i < p.n; i++) {
                    check_blocks(&p.table[i], r * s, (r + 1) * s, cover, padded);
                    ksa_ckpt_block b[KSA_CKPT_MAX_BLOCKS];
                    pieces += ksa_ckpt_slice_blocks(&p.table[i], r * s, (r + 1) * s, b);
                }
            unsigned char *in_param = calloc(padded, 1);
            assert_non_null(in_param);
            for (size_t i = 0; i < p.n; i++)
                memset(in_param + p.table[i].offset, 1, p.table[i].numel);
            for (size_t g = 0; g < padded; g++)
                if (cover[g] != in_param[g])
                    fail_msg("table %zu, %zu ranks: element %zu (%s) is covered %u times", t, N, g,
                             in_param[g] ? "a parameter's" : "a gap", cover[g]);
            cuts += pieces - p.n;
            free(in_param);
            free(cover);
        }
        ksa_params_free(&p);
    }
    assert_true(cuts > 20); /* the slices really cut through parameters and rows */
}

/* ---- reading slices -------------------------------------------------------------------------- */
#define TINY                                                                                       \
    "vocab_size", "40", "hidden_size", "8", "num_hidden_layers", "2", "num_attention_heads", "2",  \
        "num_key_value_heads", "1", "head_dim", "4", "intermediate_size", "12",                    \
        "max_position_embeddings", "4096"

static void tiny_config(ksa_model_config *c)
{
    ksa_model_config_defaults(c);
    const char *kv[] = {TINY};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i += 2)
        if (ksa_model_config_set(c, kv[i], kv[i + 1], "test") != KSA_OK)
            fail_msg("%s", ksa_last_error());
}

/* Moments with distinct values at every element (gaps included: they must never appear). */
static ksa_real *pattern(size_t n, double scale)
{
    ksa_real *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    for (size_t g = 0; g < n; g++)
        x[g] = (ksa_real)(scale * (double)(g + 1));
    return x;
}

static void write_training(const char *path, const ksa_params *p, const ksa_real *m,
                           const ksa_real *v, size_t lo, size_t hi)
{
    ksa_model_config c;
    tiny_config(&c);
    ksa_train_config tc;
    ksa_train_config_defaults(&tc);
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_ckpt_train_state ts = {.train_keys = keys,
                               .n_train_keys = n_keys,
                               .train = &tc,
                               .adamw = {tc.beta1, tc.beta2, tc.adam_eps, tc.weight_decay},
                               .step = 3,
                               .tokens_seen = 96,
                               .world_size = 1,
                               .slice_lo = lo,
                               .slice_hi = hi,
                               .exp_avg = m,
                               .exp_avg_sq = v};
    if (ksa_ckpt_write_training(path, &c, p, 0, &ts) != KSA_OK)
        fail_msg("%s", ksa_last_error());
}

/* got[i] holds element lo + i of want (an exact float32 value) or 0 outside parameters. */
static void expect_slice(const ksa_real *got, const ksa_real *want, const ksa_params *p, size_t lo,
                         size_t hi, const char *what)
{
    for (size_t g = lo; g < hi; g++) {
        int in = 0;
        for (size_t i = 0; i < p->n && !in; i++)
            in = g >= p->table[i].offset && g < p->table[i].offset + p->table[i].numel;
        ksa_real w = in ? want[g] : 0;
        if (got[g - lo] != w)
            fail_msg("%s, slice [%zu, %zu): element %zu is %g, expected %g", what, lo, hi, g,
                     (double)got[g - lo], (double)w);
    }
}

/* A slice as a caller holds it: exactly hi - lo elements (ASan sees any overrun). */
static void read_slice(const char *path, const ksa_params *p, size_t lo, size_t hi, ksa_real **m,
                       ksa_real **v)
{
    size_t n = hi > lo ? hi - lo : 1;
    *m = malloc(n * sizeof **m);
    *v = malloc(n * sizeof **v);
    assert_true(*m && *v);
    for (size_t i = 0; i < n; i++) /* not what the reader must leave there */
        (*m)[i] = (*v)[i] = -7;
    if (ksa_ckpt_read_moments_slice(path, p, lo, hi, *m, *v) != KSA_OK)
        fail_msg("[%zu, %zu): %s", lo, hi, ksa_last_error());
}

static void slices_read_back_as_parts_of_the_whole(void **state)
{
    (void)state;
    for (size_t t = 0; t < N_TABLES; t++) {
        ksa_params p;
        declare(&p, &tables[t]);
        ksa_real *m = pattern(p.numel, 0.5), *v = pattern(p.numel, -0.25);
        const char *path = in_dir("whole.h5");
        write_training(path, &p, m, v, 0, 0); /* zero-initialised: the whole buffer */
        ksa_real *wm = malloc(p.numel * sizeof *wm), *wv = malloc(p.numel * sizeof *wv);
        assert_true(wm && wv);
        if (ksa_ckpt_read_moments(path, &p, wm, wv) != KSA_OK)
            fail_msg("%s", ksa_last_error());
        expect_slice(wm, m, &p, 0, p.numel, "exp_avg, whole");
        expect_slice(wv, v, &p, 0, p.numel, "exp_avg_sq, whole");
        for (size_t N = 1; N <= 5; N++) {
            size_t padded = (p.numel + N - 1) / N * N, s = padded / N;
            for (size_t r = 0; r < N; r++) {
                ksa_real *sm, *sv;
                size_t lo = r * s, hi = lo + s;
                read_slice(path, &p, lo, hi, &sm, &sv);
                /* the part of read_moments, and 0 in the padding beyond the buffer */
                for (size_t g = lo; g < hi; g++)
                    if (sm[g - lo] != (g < p.numel ? wm[g] : 0) ||
                        sv[g - lo] != (g < p.numel ? wv[g] : 0))
                        fail_msg("table %zu, rank %zu of %zu: element %zu is %g/%g, the whole "
                                 "read has %g/%g",
                                 t, r, N, g, (double)sm[g - lo], (double)sv[g - lo],
                                 g < p.numel ? (double)wm[g] : 0.0,
                                 g < p.numel ? (double)wv[g] : 0.0);
                free(sm);
                free(sv);
            }
        }
        /* arbitrary slices, empty ones included */
        test_rng rng = test_rng_seed(7 + t);
        for (int k = 0; k < 40; k++) {
            size_t lo = (size_t)(test_rng_uniform(&rng) * (double)(p.numel + 1));
            size_t hi = lo + (size_t)(test_rng_uniform(&rng) * (double)(p.numel + 8 - lo));
            ksa_real *sm, *sv;
            read_slice(path, &p, lo, hi, &sm, &sv);
            size_t top = hi < p.numel ? hi : p.numel;
            if (top > lo) {
                expect_slice(sm, m, &p, lo, top, "exp_avg");
                expect_slice(sv, v, &p, lo, top, "exp_avg_sq");
            }
            for (size_t g = top > lo ? top : lo; g < hi; g++)
                assert_true(sm[g - lo] == 0 && sv[g - lo] == 0);
            free(sm);
            free(sv);
        }
        free(wm);
        free(wv);
        free(m);
        free(v);
        ksa_params_free(&p);
    }
}

/* [0, numel) and the zero-initialised [0, 0) are the same: the whole buffer. */
static void the_whole_buffer_can_be_given_as_0_numel_or_left_zero(void **state)
{
    (void)state;
    ksa_params p;
    declare(&p, &tables[0]);
    ksa_real *m = pattern(p.numel, 2), *v = pattern(p.numel, 3);
    write_training(in_dir("a.h5"), &p, m, v, 0, p.numel);
    write_training(in_dir("b.h5"), &p, m, v, 0, 0);
    ksa_real *am, *av, *bm, *bv;
    read_slice(in_dir("a.h5"), &p, 0, p.numel, &am, &av);
    read_slice(in_dir("b.h5"), &p, 0, p.numel, &bm, &bv);
    expect_slice(am, m, &p, 0, p.numel, "exp_avg, [0, numel)");
    expect_slice(av, v, &p, 0, p.numel, "exp_avg_sq, [0, numel)");
    assert_memory_equal(am, bm, p.numel * sizeof *am);
    assert_memory_equal(av, bv, p.numel * sizeof *av);
    free(am), free(av), free(bm), free(bv), free(m), free(v);
    ksa_params_free(&p);
}

/* Every dataset's shape is checked, even one the slice holds nothing of. */
static void a_moment_of_another_shape_is_named_by_every_slice(void **state)
{
    (void)state;
    ksa_params p;
    declare(&p, &tables[0]);
    ksa_real *m = pattern(p.numel, 1), *v = pattern(p.numel, 1);
    const char *path = in_dir("bad.h5");
    write_training(path, &p, m, v, 0, 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "/optim/exp_avg_sq/q_proj", H5P_DEFAULT) >= 0);
    hsize_t dims[2] = {3, 5};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/optim/exp_avg_sq/q_proj", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0 && test_h5_write_checksum(d) == 0); /* wrong in no other way */
    H5Dclose(d), H5Sclose(sp), H5Fclose(f);
    ksa_real one[2];
    ksa_status st = ksa_ckpt_read_moments_slice(path, &p, 0, 2, one, one); /* far from q_proj */
    assert_int_equal(st, KSA_EFORMAT);
    if (!strstr(ksa_last_error(), "/optim/exp_avg_sq/q_proj has shape [3, 5], the configuration "
                                  "needs [5, 3]"))
        fail_msg("message: %s", ksa_last_error());
    /* a model-only checkpoint has no moments */
    ksa_model_config c;
    tiny_config(&c);
    const char *model = in_dir("model.h5");
    if (ksa_ckpt_write_model(model, &c, &p, 0) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    assert_int_equal(ksa_ckpt_read_moments_slice(model, &p, 0, 2, one, one), KSA_EFORMAT);
    if (!strstr(ksa_last_error(), "no /optim group"))
        fail_msg("message: %s", ksa_last_error());
    free(m), free(v);
    ksa_params_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_documented_example_gives_its_three_blocks),
        cmocka_unit_test(every_slice_maps_each_of_its_elements_to_its_place),
        cmocka_unit_test(the_slices_of_1_to_7_ranks_cover_every_parameter_element_once),
        cmocka_unit_test(slices_read_back_as_parts_of_the_whole),
        cmocka_unit_test(the_whole_buffer_can_be_given_as_0_numel_or_left_zero),
        cmocka_unit_test(a_moment_of_another_shape_is_named_by_every_slice),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
