/* test_ckpt_damage.c - a damaged checkpoint is refused, never crashes or hangs a reader and is
 * never accepted with changed content (CHECKPOINT_FORMAT.md, Integrity).
 *
 * A training checkpoint (model, moments, /train, /tokenizer) is written, read back whole as
 * the reference, then damaged one byte at a time: 500 seeded mutants in the float32 build
 * (100 in float64, whose reading differs only in the memory type), each a copy with one byte
 * at a random offset XORed with a random non-zero value. Every reader a resume uses runs on
 * each mutant in a child process with a time limit; the mutant must be refused with one line
 * naming the file, or read back identical to the reference (a byte no object uses). A crash,
 * a hang or a changed value fails the test. The tally (refused by what, accepted unchanged)
 * is printed: docs/reliability.md quotes it.                                              */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "ckpt/verify.h"
#include "model/decoder.h"
#include "train/train_config.h"

static char dir[64];

static int make_dir(void **state)
{
    (void)state;
    return test_scratch_make(dir, sizeof dir, "ksa_damage");
}

static int remove_dir(void **state)
{
    (void)state;
    return test_remove_tree(dir);
}

/* ---- everything a resume reads, as bytes ------------------------------------------------- */
typedef struct {
    char *text; /* configuration, training keys, progress, tokenizer (malloc'ed) */
    size_t text_len;
    ksa_real *params, *exp_avg, *exp_avg_sq; /* [numel] each */
    size_t numel;
} content;

static ksa_status set_train_key(void *ctx, const char *key, const char *value, const char *origin)
{
    return ksa_train_config_set(ctx, key, value, origin, NULL);
}

/* Reads the checkpoint the way `ksa train --resume` and `ksa eval` do; KSA_OK and *c filled,
 * or the first reader's error. */
static ksa_status read_content(const char *path, content *c)
{
    memset(c, 0, sizeof *c);
    ksa_model_config mc;
    KSA_TRY(ksa_ckpt_read_config(path, &mc));
    ksa_train_config tc;
    ksa_train_config_defaults(&tc);
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_ckpt_progress pr;
    KSA_TRY(ksa_ckpt_read_train(path, keys, n_keys, set_train_key, &tc, &pr));
    char tokenizer[64];
    KSA_TRY(ksa_ckpt_read_tokenizer(path, tokenizer, sizeof tokenizer));
    ksa_model m;
    KSA_TRY(ksa_model_declare(&m, &mc));
    ksa_params_alloc(&m.params);
    c->numel = m.params.numel;
    c->exp_avg = malloc(c->numel * sizeof(ksa_real));
    c->exp_avg_sq = malloc(c->numel * sizeof(ksa_real));
    assert_true(c->exp_avg && c->exp_avg_sq);
    ksa_status st = ksa_ckpt_read_params(path, &m.params, 0);
    if (st == KSA_OK)
        st = ksa_ckpt_read_moments(path, &m.params, c->exp_avg, c->exp_avg_sq);
    if (st == KSA_OK) {
        c->params = malloc(c->numel * sizeof(ksa_real));
        assert_non_null(c->params);
        memcpy(c->params, m.params.data, c->numel * sizeof(ksa_real));
        FILE *f = open_memstream(&c->text, &c->text_len);
        assert_non_null(f);
        ksa_model_config_write(&mc, f);
        ksa_train_config_write(&tc, f);
        fprintf(f, "%ld %llu %s|%s|%s %.17g %s\n", pr.step, pr.tokens_seen, pr.run_id,
                pr.data_identity, pr.val_data_identity, pr.val_loss, tokenizer);
        fclose(f);
    }
    ksa_model_free(&m);
    return st;
}

static int same_content(const content *a, const content *b)
{
    size_t bytes = a->numel * sizeof(ksa_real);
    return a->text_len == b->text_len && !memcmp(a->text, b->text, a->text_len) &&
           a->numel == b->numel && !memcmp(a->params, b->params, bytes) &&
           !memcmp(a->exp_avg, b->exp_avg, bytes) && !memcmp(a->exp_avg_sq, b->exp_avg_sq, bytes);
}

static void free_content(content *c)
{
    free(c->text), free(c->params), free(c->exp_avg), free(c->exp_avg_sq);
}

/* ---- the reference checkpoint -------------------------------------------------------------- */
static void write_reference(const char *path)
{
    ksa_model_config mc;
    test_config_small(&mc);
    ksa_model m;
    if (ksa_model_init(&m, &mc) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_model_init_weights(&m, 5);
    size_t n = m.params.numel;
    ksa_real *ma = malloc(n * sizeof *ma), *va = malloc(n * sizeof *va);
    assert_true(ma && va);
    test_rng r = test_rng_seed(9);
    for (size_t i = 0; i < n; i++) {
        ma[i] = (ksa_real)(test_rng_uniform(&r) - 0.5) * 1e-2f;
        va[i] = (ksa_real)test_rng_uniform(&r) * 1e-4f;
    }
    ksa_train_config tc;
    ksa_train_config_defaults(&tc);
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_ckpt_train_state ts = {.train_keys = keys,
                               .n_train_keys = n_keys,
                               .train = &tc,
                               .adamw = {0.9, 0.95, 1e-8, 0.1},
                               .step = 12,
                               .tokens_seen = 12 * 256,
                               .world_size = 1,
                               .run_id = "0123456789abcdef",
                               .data_identity = "xxh3-64 0011223344556677, 1000 bytes",
                               .val_loss = 2.5,
                               .exp_avg = ma,
                               .exp_avg_sq = va};
    if (ksa_ckpt_write_training(path, &mc, &m.params, 256, &ts) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    free(ma), free(va);
    ksa_model_free(&m);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ---- one mutant, in a child ---------------------------------------------------------------- */
enum {
    REFUSED_CHECKSUM = 10,
    REFUSED_CRASH,
    REFUSED_HANG,
    REFUSED_OTHER,
    ACCEPTED_SAME,
    ACCEPTED_CHANGED,
    BAD_MESSAGE,
    N_OUTCOMES
};
static const char *outcome_names[N_OUTCOMES] = {
    [REFUSED_CHECKSUM] = "refused: a dataset does not match its checksum",
    [REFUSED_CRASH] = "refused: HDF5 crashed in the checking process",
    [REFUSED_HANG] = "refused: HDF5 did not finish in the checking process",
    [REFUSED_OTHER] = "refused: HDF5 or a reader found the damage",
    [ACCEPTED_SAME] = "accepted, content identical",
    [ACCEPTED_CHANGED] = "ACCEPTED WITH CHANGED CONTENT",
    [BAD_MESSAGE] = "REFUSED WITHOUT ONE LINE NAMING THE FILE",
};

static int classify(const char *path, const content *ref)
{
    content got;
    ksa_status st = read_content(path, &got);
    if (st == KSA_OK) {
        int same = same_content(&got, ref);
        free_content(&got);
        return same ? ACCEPTED_SAME : ACCEPTED_CHANGED;
    }
    free_content(&got);
    const char *msg = ksa_last_error();
    if (strchr(msg, '\n') || !strstr(msg, path)) {
        fprintf(stderr, "bad message for %s: %s\n", path, msg);
        return BAD_MESSAGE;
    }
    if (strstr(msg, "does not match its checksum"))
        return REFUSED_CHECKSUM;
    if (strstr(msg, "crashed HDF5"))
        return REFUSED_CRASH;
    if (strstr(msg, "did not finish"))
        return REFUSED_HANG;
    return REFUSED_OTHER;
}

static void damaged_bytes_are_refused_or_harmless(void **state)
{
    (void)state;
#ifdef KSA_REAL_DOUBLE
    const int n_mutants = 100;
#else
    const int n_mutants = 500;
#endif
    char ref_path[128], path[128];
    snprintf(ref_path, sizeof ref_path, "%s/reference.h5", dir);
    write_reference(ref_path);
    content ref;
    if (read_content(ref_path, &ref) != KSA_OK)
        fail_msg("the undamaged checkpoint: %s", ksa_last_error());
    size_t size;
    unsigned char *good = slurp(ref_path, &size), *bad = malloc(size);
    assert_non_null(bad);
    int tally[N_OUTCOMES] = {0};
    test_rng r = test_rng_seed(20261205);
    for (int k = 0; k < n_mutants; k++) {
        size_t at = (size_t)(test_rng_uniform(&r) * (double)size);
        unsigned char flip = (unsigned char)(1 + (int)(test_rng_uniform(&r) * 255));
        memcpy(bad, good, size);
        bad[at] ^= flip;
        snprintf(path, sizeof path, "%s/mutant_%03d.h5", dir, k);
        spit(path, bad, size);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(300); /* the readers' own limit is 60 s: a hang here is a failure */
            _exit(classify(path, &ref));
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) < REFUSED_CHECKSUM ||
            WEXITSTATUS(status) >= N_OUTCOMES)
            fail_msg("mutant %d (byte %zu ^ 0x%02x): the reader %s %d", k, at, flip,
                     WIFSIGNALED(status) ? "died of signal" : "exited with",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        int outcome = WEXITSTATUS(status);
        tally[outcome]++;
        if (outcome == ACCEPTED_CHANGED || outcome == BAD_MESSAGE)
            fail_msg("mutant %d (byte %zu of %zu ^ 0x%02x): %s", k, at, size, flip,
                     outcome_names[outcome]);
        unlink(path);
    }
    print_message("%d one-byte mutants of a %zu-byte training checkpoint:\n", n_mutants, size);
    for (int o = REFUSED_CHECKSUM; o < N_OUTCOMES; o++)
        print_message("  %4d  %s\n", tally[o], outcome_names[o]);
    free(good), free(bad);
    free_content(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(damaged_bytes_are_refused_or_harmless),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
