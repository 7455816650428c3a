/* test_loader.c - the deterministic sharded loader: rows are windows, batches are a pure
 * function of (seed, step), each window once per epoch, rank slicing, mixture proportions,
 * sequential evaluation, the validation reader, and files too short for one row.
 *
 * Test files hold token i = base + i (uint32), so a row's first token tells its source
 * and window.                                                                             */
#include "datautil.h"

#include <math.h>
#include <signal.h>
#include <sys/wait.h>

#include "data/loader.h"

#define VOCAB (1u << 24)
#define SOURCE_BASE 1000000u /* source k of a mixture holds k·SOURCE_BASE + i */

static char *make_file(char *p, const char *dir, const char *name, size_t n, uint32_t base)
{
    uint32_t *ids = malloc(n * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = base + (uint32_t)i;
    dt_write_tokens(dt_join(p, dir, name), ids, n, 4, "uint32");
    free(ids);
    return p;
}

static ksa_loader_options options(size_t L, size_t G, uint64_t seed)
{
    ksa_loader_options o = {.seq_len = L,
                            .global_batch = G,
                            .vocab_size = VOCAB,
                            .seed = seed,
                            .dtype = KSA_DTYPE_AUTO};
    return o;
}

/* Global batch `step` as seen by one rank (malloc'ed, [G, L+1]). */
static int32_t *global_batch(const ksa_loader *ld, uint64_t step)
{
    size_t G = ld->global_batch, L = ld->seq_len;
    int32_t *t = malloc(G * (L + 1) * sizeof *t);
    assert_non_null(t);
    ksa_loader_batch_at(ld, t, step, 0, 1);
    return t;
}

/* Checks row = tokens w·L ... w·L+L of source k, returns w (and k through *k if given). */
static size_t window_of_row(const ksa_loader *ld, const int32_t *row, size_t *k)
{
    size_t L = ld->seq_len, src = (size_t)row[0] / SOURCE_BASE, s = (size_t)row[0] % SOURCE_BASE;
    assert_true(src < ld->n_sources);
    assert_int_equal(s % L, 0);
    size_t w = s / L;
    assert_true(w < ld->sources[src].n_windows);
    for (size_t j = 0; j <= L; j++)
        assert_int_equal(row[j], row[0] + (int32_t)j);
    if (k)
        *k = src;
    return w;
}

static void rows_are_seq_len_plus_one_tokens_starting_at_window_starts(void **state)
{
    char p[DT_PATH_MAX];
    enum { L = 8, G = 6 };
    ksa_loader ld;
    ksa_loader_options o = options(L, G, 1);
    make_file(p, *state, "a.bin", 20 * L + 1 + 5, 0); /* 20 windows; 5 tokens never start one */
    assert_int_equal(ksa_loader_open_file(&ld, p, &o), KSA_OK);
    assert_int_equal(ld.sources[0].n_windows, 20);
    for (uint64_t step = 0; step < 10; step++) {
        int32_t *t = global_batch(&ld, step);
        for (size_t b = 0; b < G; b++) {
            size_t w = window_of_row(&ld, t + b * (L + 1), NULL);
            assert_int_equal(w, ksa_loader_locate(&ld, step, b).window);
        }
        free(t);
    }
    ksa_loader_close(&ld);
    make_file(p, *state, "exact.bin", 3 * L + 1, 0); /* the last token is reachable */
    assert_int_equal(ksa_loader_open_file(&ld, p, &o), KSA_OK);
    assert_int_equal(ld.sources[0].n_windows, 3);
    ksa_loader_close(&ld);
}

static void the_same_seed_and_step_give_the_same_batch_and_others_differ(void **state)
{
    char p[DT_PATH_MAX];
    enum { L = 4, G = 8 };
    ksa_loader a, b, c;
    ksa_loader_options o = options(L, G, 42), o2 = options(L, G, 43);
    make_file(p, *state, "a.bin", 1000, 0);
    assert_int_equal(ksa_loader_open_file(&a, p, &o), KSA_OK);
    assert_int_equal(ksa_loader_open_file(&b, p, &o), KSA_OK); /* a resumed run */
    assert_int_equal(ksa_loader_open_file(&c, p, &o2), KSA_OK);
    size_t bytes = G * (L + 1) * sizeof(int32_t);
    int32_t *a7 = global_batch(&a, 7), *a8 = global_batch(&a, 8), *a3 = global_batch(&a, 3);
    int32_t *b7 = global_batch(&b, 7), *c7 = global_batch(&c, 7), *a7again = global_batch(&a, 7);
    assert_memory_equal(a7, b7, bytes);      /* fresh loader, same step: same rows */
    assert_memory_equal(a7, a7again, bytes); /* nothing read in between matters */
    assert_memory_not_equal(a7, a8, bytes);
    assert_memory_not_equal(a7, a3, bytes);
    assert_memory_not_equal(a7, c7, bytes); /* another seed */
    free(a7), free(a8), free(a3), free(b7), free(c7), free(a7again);
    ksa_loader_close(&a), ksa_loader_close(&b), ksa_loader_close(&c);
}

static void every_window_is_used_once_per_epoch_in_an_order_per_epoch(void **state)
{
    char p[DT_PATH_MAX];
    enum { L = 3, G = 5, W = 37, EPOCHS = 4 }; /* epochs end in the middle of a step */
    ksa_loader ld;
    ksa_loader_options o = options(L, G, 7);
    make_file(p, *state, "a.bin", W * L + 1 + 2, 0);
    assert_int_equal(ksa_loader_open_file(&ld, p, &o), KSA_OK);
    assert_int_equal(ld.sources[0].n_windows, W);
    size_t order[EPOCHS][W];
    size_t n_steps = (EPOCHS * W + G - 1) / G;
    for (uint64_t step = 0; step < n_steps; step++) {
        int32_t *t = global_batch(&ld, step);
        for (size_t b = 0; b < G; b++) {
            size_t g = step * G + b;
            if (g >= EPOCHS * W)
                break;
            order[g / W][g % W] = window_of_row(&ld, t + b * (L + 1), NULL);
            assert_int_equal(ksa_loader_locate(&ld, step, b).epoch, g / W);
        }
        free(t);
    }
    for (size_t e = 0; e < EPOCHS; e++) {
        int seen[W] = {0};
        size_t in_place = 0;
        for (size_t i = 0; i < W; i++) {
            seen[order[e][i]]++;
            in_place += order[e][i] == i;
        }
        for (size_t w = 0; w < W; w++)
            assert_int_equal(seen[w], 1);
        assert_true(in_place < W / 2); /* shuffled, not the file order */
        for (size_t f = 0; f < e; f++)
            assert_memory_not_equal(order[e], order[f], sizeof order[e]);
    }
    ksa_loader_close(&ld);
}

static void the_permutation_is_a_bijection_for_any_number_of_windows(void **state)
{
    char p[DT_PATH_MAX];
    enum { L = 2 };
    size_t sizes[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 64, 65, 100, 257, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t W = sizes[k];
        ksa_loader ld;
        ksa_loader_options o = options(L, 1, 1234 + k);
        make_file(p, *state, "perm.bin", W * L + 1, 0);
        assert_int_equal(ksa_loader_open_file(&ld, p, &o), KSA_OK);
        assert_int_equal(ld.sources[0].n_windows, W);
        unsigned char *seen = calloc(W, 1);
        assert_non_null(seen);
        for (uint64_t g = W; g < 2 * W; g++) { /* epoch 1: rows W .. 2W-1 */
            ksa_loader_row r = ksa_loader_locate(&ld, g, 0);
            assert_int_equal(r.epoch, 1);
            assert_true(r.window < W);
            assert_int_equal(seen[r.window]++, 0);
        }
        free(seen);
        ksa_loader_close(&ld);
    }
}

/* The rows of n_ranks ranks, interleaved back (row g from rank g mod n_ranks), must be the
 * global batch, and ksa_loader_rank_rows must name them.                                   */
static void expect_ranks_rebuild_the_global_batch(const ksa_loader *ld, uint64_t step)
{
    size_t G = ld->global_batch, R = ld->seq_len + 1;
    int32_t *whole = global_batch(ld, step);
    int32_t *mine = malloc(G * R * sizeof *mine);
    size_t *rows = malloc(G * sizeof *rows);
    assert_non_null(mine);
    assert_non_null(rows);
    for (int n_ranks = 1; n_ranks <= 3; n_ranks++) {
        size_t total = 0;
        for (int rank = 0; rank < n_ranks; rank++) {
            size_t n = ksa_loader_rank_rows(G, rank, n_ranks, rows);
            assert_int_equal(n, ksa_loader_rank_rows(G, rank, n_ranks, NULL));
            ksa_loader_batch_at(ld, mine, step, rank, n_ranks);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(rows[i], (size_t)rank + i * (size_t)n_ranks);
                assert_memory_equal(mine + i * R, whole + rows[i] * R, R * sizeof *mine);
            }
            total += n;
        }
        assert_int_equal(total, G); /* every row of the global batch, none twice */
    }
    free(whole), free(mine), free(rows);
}

static void ranks_take_interleaved_rows_of_the_same_global_batch(void **state)
{
    char p[DT_PATH_MAX], q[DT_PATH_MAX], list[DT_PATH_MAX];
    enum { L = 5, G = 7 }; /* 7 rows: not a multiple of 2 or 3 */
    ksa_loader ld;
    ksa_loader_options o = options(L, G, 3);
    make_file(p, *state, "a.bin", 500, 0);
    assert_int_equal(ksa_loader_open_file(&ld, p, &o), KSA_OK);
    for (uint64_t step = 0; step < 30; step += 7)
        expect_ranks_rebuild_the_global_batch(&ld, step);
    ksa_loader_close(&ld);

    make_file(q, *state, "b.bin", 300, SOURCE_BASE);
    char text[3 * DT_PATH_MAX];
    snprintf(text, sizeof text, "one 1 %s\ntwo 2 %s\n", p, q);
    dt_write_str(dt_join(list, *state, "mix.txt"), text);
    assert_int_equal(ksa_loader_open_mixture(&ld, list, &o), KSA_OK);
    for (uint64_t step = 0; step < 30; step += 7)
        expect_ranks_rebuild_the_global_batch(&ld, step);
    ksa_loader_close(&ld);
}

static void mixture_rows_follow_the_weights_and_windows_are_uniform(void **state)
{
    const char *dir = *state;
    char p[DT_PATH_MAX], list[DT_PATH_MAX];
    enum { L = 4, G = 100, STEPS = 200, K = 3, W2 = 10 };
    const double weight[K] = {1, 2, 5}; /* sum 8: not normalised on purpose */
    make_file(p, dir, "s0.bin", 50 * L + 1, 0 * SOURCE_BASE);
    make_file(p, dir, "s1.bin", 7 * L + 1, 1 * SOURCE_BASE);
    make_file(p, dir, "s2.bin", W2 * L + 3, 2 * SOURCE_BASE);
    dt_write_str(dt_join(list, dir, "mix.txt"), "a 1 s0\nb 2 s1.bin\n5 s2\n");
    ksa_loader ld;
    ksa_loader_options o = options(L, G, 99);
    assert_int_equal(ksa_loader_open_mixture(&ld, list, &o), KSA_OK);
    assert_int_equal(ld.n_sources, K);
    assert_int_equal(ld.is_mixture, 1);
    size_t count[K] = {0}, windows[W2] = {0}, n = (size_t)G * STEPS;
    for (uint64_t step = 0; step < STEPS; step++) {
        int32_t *t = global_batch(&ld, step);
        for (size_t b = 0; b < G; b++) {
            size_t k, w = window_of_row(&ld, t + b * (L + 1), &k);
            ksa_loader_row r = ksa_loader_locate(&ld, step, b);
            assert_int_equal(r.source, k);
            assert_int_equal(r.window, w);
            count[k]++;
            if (k == 2)
                windows[w]++;
        }
        free(t);
    }
    for (size_t k = 0; k < K; k++) { /* binomial counts within 3 standard deviations */
        double pk = weight[k] / 8.0, mean = (double)n * pk, sd = sqrt(mean * (1 - pk));
        if (fabs((double)count[k] - mean) > 3 * sd) {
            print_error("source %zu: %zu of %zu rows, expected %.0f +- %.0f\n", k, count[k], n,
                        mean, 3 * sd);
            fail();
        }
        assert_true(fabs(ld.sources[k].weight - pk) < 1e-12);
    }
    FILE *log = tmpfile(); /* the run log names every source with its share */
    assert_non_null(log);
    ksa_loader_print(&ld, log);
    char text[1024] = {0};
    rewind(log);
    assert_true(fread(text, 1, sizeof text - 1, log) > 0);
    fclose(log);
    assert_non_null(strstr(text, "mixture (per-row draws), 3 sources, seq_len 4"));
    assert_non_null(strstr(text, "10 windows, weight 0.6250"));
    double chi2 = 0, e = (double)count[2] / W2; /* windows of source 2: uniform */
    for (size_t w = 0; w < W2; w++)
        chi2 += ((double)windows[w] - e) * ((double)windows[w] - e) / e;
    if (chi2 > 27.88) { /* chi-square, 9 degrees of freedom, p = 0.001 */
        print_error("windows of source 2 are not uniform: chi2 = %.1f\n", chi2);
        fail();
    }
    ksa_loader_close(&ld);
}

static void files_shorter_than_one_row_are_refused(void **state)
{
    char p[DT_PATH_MAX], list[DT_PATH_MAX];
    enum { L = 16 };
    ksa_loader ld;
    ksa_loader_options o = options(L, 2, 1);
    make_file(p, *state, "short.bin", L, 0); /* needs L + 1 */
    dt_expect_error(ksa_loader_open_file(&ld, p, &o), KSA_EFORMAT, p, "has 16 tokens",
                    "seq_len + 1 = 17", "seq_len 16");
    assert_null(ld.sources);
    make_file(p, *state, "one.bin", L + 1, 0);
    assert_int_equal(ksa_loader_open_file(&ld, p, &o), KSA_OK);
    assert_int_equal(ld.sources[0].n_windows, 1);
    ksa_loader_close(&ld);

    make_file(p, *state, "short2.bin", 3, 0);
    dt_write_str(dt_join(list, *state, "mix.txt"), "ok 1 one.bin\n\nshort 1 short2.bin\n");
    dt_expect_error(ksa_loader_open_mixture(&ld, list, &o), KSA_EFORMAT, "short2.bin",
                    "has 3 tokens", "mix.txt", "line 3");
    dt_write_str(list, "ok 1 one.bin\nshort 0 short2.bin\n");
    dt_expect_error(ksa_loader_open_mixture(&ld, list, &o), KSA_EFORMAT, "line 2",
                    "not a positive number");
    dt_expect_error(ksa_loader_open_file(&ld, dt_join(p, *state, "none.bin"), &o), KSA_EIO,
                    "none.bin");
    ksa_loader_options zero = options(0, 2, 1);
    dt_expect_error(ksa_loader_open_file(&ld, p, &zero), KSA_EINVAL, "seq_len (0)");
}

static void sequential_rows_share_one_token_and_need_the_whole_span(void **state)
{
    char p[DT_PATH_MAX];
    enum { L = 4, O = 5, B = 3 };
    ksa_tokfile f;
    make_file(p, *state, "seq.bin", O + B * L + 1, 0); /* exactly long enough */
    assert_int_equal(ksa_tokfile_open(&f, p, KSA_DTYPE_AUTO, VOCAB), KSA_OK);
    int32_t t[B * (L + 1)];
    assert_int_equal(ksa_loader_read_sequential(&f, t, O, B, L), KSA_OK);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j <= L; j++)
            assert_int_equal(t[b * (L + 1) + j], O + b * L + j);
    dt_expect_error(ksa_loader_read_sequential(&f, t, O + 1, B, L), KSA_EFORMAT, p, "has 18 tokens",
                    "3 sequential rows of seq_len 4", "offset 6 need 19");
    dt_expect_error(ksa_loader_read_sequential(&f, t, 100, 1, L), KSA_EFORMAT, "offset 100");
    dt_expect_error(ksa_loader_read_sequential(&f, t, 0, SIZE_MAX / 2, L), KSA_EFORMAT, p);
    ksa_tokfile_close(&f);
}

static void the_validation_reader_walks_the_whole_file(void **state)
{
    char p[DT_PATH_MAX];
    enum { L = 6, NSEQ = 4, ROWS = 10 };
    ksa_val_reader vr;
    make_file(p, *state, "val.bin", ROWS * L + 1 + 4, 0); /* 4 tokens left over */
    assert_int_equal(ksa_val_reader_open(&vr, p, KSA_DTYPE_AUTO, VOCAB, L, NSEQ, 0), KSA_OK);
    assert_int_equal(vr.n_rows, ROWS);
    assert_int_equal(vr.n_chosen, ROWS);
    int32_t t[NSEQ * (L + 1)];
    size_t want_rows[] = {4, 4, 2, 0}, row = 0;
    for (int pass = 0; pass < 2; pass++, row = 0) {
        for (size_t k = 0; k < 4; k++) {
            size_t n = ksa_val_reader_next(&vr, t);
            assert_int_equal(n, want_rows[k]);
            for (size_t b = 0; b < n; b++, row++)
                for (size_t j = 0; j <= L; j++)
                    assert_int_equal(t[b * (L + 1) + j], row * L + j);
        }
        assert_int_equal(row, ROWS);
        ksa_val_reader_rewind(&vr);
    }
    ksa_val_reader_close(&vr);
    make_file(p, *state, "tiny.bin", L, 0);
    dt_expect_error(ksa_val_reader_open(&vr, p, KSA_DTYPE_AUTO, VOCAB, L, NSEQ, 0), KSA_EFORMAT, p,
                    "has 6 tokens", "seq_len 6");
}

static void chosen_rows_are_spread_evenly_over_the_file(void **state)
{
    /* floor(i·n_rows / n_chosen): row 0 first, distinct, increasing, the last near the end */
    const size_t three_of_ten[] = {0, 3, 6}, four_of_ten[] = {0, 2, 5, 7};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(ksa_loader_spread_row(i, 3, 10), three_of_ten[i]);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ksa_loader_spread_row(i, 4, 10), four_of_ten[i]);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(ksa_loader_spread_row(i, 10, 10), i); /* all rows: the identity */
    size_t big = SIZE_MAX / 2;                                 /* i·n_rows needs 128 bits */
    assert_int_equal(ksa_loader_spread_row(2, 3, big), big / 3 * 2);
    assert_int_equal(ksa_loader_spread_row(999, 1000, 1001), 999);

    char p[DT_PATH_MAX];
    enum { L = 5, NSEQ = 2, ROWS = 10 };
    ksa_val_reader vr;
    make_file(p, *state, "val.bin", ROWS * L + 1 + 3, 0);
    assert_int_equal(ksa_val_reader_open(&vr, p, KSA_DTYPE_AUTO, VOCAB, L, NSEQ, 3), KSA_OK);
    assert_int_equal(vr.n_rows, ROWS);
    assert_int_equal(vr.n_chosen, 3);
    assert_int_equal(ksa_val_reader_n_batches(&vr), 2);
    int32_t t[NSEQ * (L + 1)];
    const size_t batch_rows[2] = {2, 1};
    for (int pass = 0; pass < 2; pass++) { /* the same rows every time, in any batch order */
        for (size_t k = 2; k-- > 0;) {
            assert_int_equal(ksa_val_reader_batch(&vr, k, t), batch_rows[k]);
            for (size_t b = 0; b < batch_rows[k]; b++)
                for (size_t j = 0; j <= L; j++)
                    assert_int_equal(t[b * (L + 1) + j], three_of_ten[k * NSEQ + b] * L + j);
        }
    }
    size_t row = 0; /* next() serves the same batches in order */
    while (ksa_val_reader_next(&vr, t) > 0)
        row++;
    assert_int_equal(row, 2);
    FILE *log = tmpfile();
    assert_non_null(log);
    ksa_val_reader_print(&vr, log);
    ksa_val_reader_close(&vr);
    /* asking for as many rows as the file holds, or more, gives the whole file */
    for (size_t max_rows = ROWS; max_rows <= ROWS + 5; max_rows += 5) {
        assert_int_equal(ksa_val_reader_open(&vr, p, KSA_DTYPE_AUTO, VOCAB, L, NSEQ, max_rows),
                         KSA_OK);
        assert_int_equal(vr.n_chosen, ROWS);
        assert_int_equal(ksa_val_reader_n_batches(&vr), ROWS / NSEQ);
        assert_int_equal(ksa_val_reader_batch(&vr, 4, t), 2);
        assert_int_equal(t[0], 8 * L);
        assert_int_equal(t[L + 1], 9 * L);
        ksa_val_reader_print(&vr, log);
        ksa_val_reader_close(&vr);
    }
    char line[2][DT_PATH_MAX + 128];
    rewind(log);
    assert_non_null(fgets(line[0], sizeof line[0], log));
    assert_non_null(fgets(line[1], sizeof line[1], log));
    fclose(log);
    assert_non_null(strstr(line[0], "3 of 10 rows of"));
    assert_non_null(strstr(line[0], "spread evenly"));
    assert_non_null(strstr(line[1], "all 10 rows of"));
    assert_non_null(strstr(line[1], p));
}

static char abort_file[DT_PATH_MAX];

static void bad_rank_child(const void *arg)
{
    (void)arg;
    ksa_loader ld;
    ksa_loader_options o = options(2, 4, 1);
    if (ksa_loader_open_file(&ld, abort_file, &o) != KSA_OK)
        _exit(3);
    int32_t t[4 * 3];
    ksa_loader_batch_at(&ld, t, 0, 3, 3);
}

static void read_past_end_child(const void *arg)
{
    (void)arg;
    ksa_tokfile f;
    if (ksa_tokfile_open(&f, abort_file, KSA_DTYPE_AUTO, VOCAB) != KSA_OK)
        _exit(3);
    int32_t t[8];
    ksa_tokfile_read(&f, t, 95, 6);
}

static void misuse_by_the_caller_aborts_with_the_values(void **state)
{
    make_file(abort_file, *state, "a.bin", 100, 0);
    test_expect_abort(bad_rank_child, NULL, "rank 3 of 3");
    test_expect_abort(read_past_end_child, NULL, "tokens [95, 101) of");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(rows_are_seq_len_plus_one_tokens_starting_at_window_starts),
        T(the_same_seed_and_step_give_the_same_batch_and_others_differ),
        T(every_window_is_used_once_per_epoch_in_an_order_per_epoch),
        T(the_permutation_is_a_bijection_for_any_number_of_windows),
        T(ranks_take_interleaved_rows_of_the_same_global_batch),
        T(mixture_rows_follow_the_weights_and_windows_are_uniform),
        T(files_shorter_than_one_row_are_refused),
        T(sequential_rows_share_one_token_and_need_the_whole_span),
        T(the_validation_reader_walks_the_whole_file),
        T(chosen_rows_are_spread_evenly_over_the_file),
        T(misuse_by_the_caller_aborts_with_the_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
