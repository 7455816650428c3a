/* test_run_dir.c - the folder of a run (src/train/run_dir.h): checkpoint names, the listing in
 * step order, --resume of a file or a folder, mkdir -p, and the resume rules. */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "model/decoder.h"
#include "train/run_dir.h"

static void touch(const char *dir, const char *name)
{
    int fd = open(test_path_in(dir, name), O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
}

/* dir/name: a sound checkpoint of a small model (--resume DIR checks its candidates whole). */
static void checkpoint(const char *dir, const char *name)
{
    ksa_model_config c;
    ksa_model_config_defaults(&c);
    const char *kv[] = {
        "vocab_size",        "257", "hidden_size",         "8", "intermediate_size",   "16",
        "num_hidden_layers", "1",   "num_attention_heads", "2", "num_key_value_heads", "1",
        "head_dim",          "4"};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i += 2)
        assert_int_equal(ksa_model_config_set(&c, kv[i], kv[i + 1], "test"), KSA_OK);
    ksa_model m;
    assert_int_equal(ksa_model_init(&m, &c), KSA_OK);
    ksa_model_init_weights(&m, 1);
    if (ksa_ckpt_write_model(test_path_in(dir, name), &c, &m.params, 256) != KSA_OK)
        fail_msg("%s", ksa_last_error());
    ksa_model_free(&m);
}

/* Only step_%08d.h5 names count: not .tmp files, other widths or other names. */
static void checkpoint_names_give_their_step(void **state)
{
    (void)state;
    assert_int_equal(ksa_run_checkpoint_step("step_00000012.h5"), 12);
    assert_int_equal(ksa_run_checkpoint_step("step_00000000.h5"), 0);
    assert_int_equal(ksa_run_checkpoint_step("step_00000012.h5.tmp"), -1);
    assert_int_equal(ksa_run_checkpoint_step("step_0000012.h5"), -1);
    assert_int_equal(ksa_run_checkpoint_step("step_00000012.h6"), -1);
    assert_int_equal(ksa_run_checkpoint_step("run.jsonl"), -1);
}

/* The listing is in step order whatever the directory order; a folder resumes from its
 * newest sound checkpoint (a damaged newer one is passed over), a file from itself; an empty
 * folder is an error naming it. */
static void a_folder_resumes_from_its_newest_checkpoint(void **state)
{
    (void)state;
    char dir[256];
    assert_int_equal(test_scratch_make(dir, sizeof dir, "ksa_run_dir"), 0);
    checkpoint(dir, "step_00000020.h5");
    checkpoint(dir, "step_00000003.h5");
    touch(dir, "step_00000100.h5.tmp");
    checkpoint(dir, "step_00000007.h5");
    long steps[8];
    assert_int_equal(ksa_run_list_checkpoints(dir, steps, 8), 3);
    assert_int_equal(steps[0], 3);
    assert_int_equal(steps[1], 7);
    assert_int_equal(steps[2], 20);
    char path[1024];
    assert_int_equal(ksa_run_resolve_resume(dir, path, sizeof path), KSA_OK);
    assert_string_equal(path, test_path_in(dir, "step_00000020.h5"));
    touch(dir, "step_00000030.h5"); /* empty: not even HDF5 */
    assert_int_equal(ksa_run_resolve_resume(dir, path, sizeof path), KSA_OK);
    assert_string_equal(path, test_path_in(dir, "step_00000020.h5"));
    assert_int_equal(
        ksa_run_resolve_resume(test_path_in(dir, "step_00000003.h5"), path, sizeof path), KSA_OK);
    assert_string_equal(path, test_path_in(dir, "step_00000003.h5"));
    const char *empty = test_path_in(dir, "empty");
    assert_int_equal(ksa_run_make_folder(test_path_in(dir, "empty/a/b")), KSA_OK);
    struct stat sb;
    assert_int_equal(stat(test_path_in(dir, "empty/a/b"), &sb), 0);
    assert_int_equal(ksa_run_resolve_resume(empty, path, sizeof path), KSA_EIO);
    assert_non_null(strstr(ksa_last_error(), "holds no step_*.h5 checkpoint"));
    assert_int_equal(ksa_run_resolve_resume(test_path_in(dir, "nope"), path, sizeof path), KSA_EIO);
    assert_int_equal(test_remove_tree(dir), 0);
}

/* ksa_run_check_resume after `steps` completed, with or without recorded data identities. */
static ksa_status check_resume(const ksa_model_config *mc2, const ksa_model_config *mc,
                               const ksa_train_config *tc2, const ksa_train_config *tc, long steps,
                               int identities, int allow_schedule_change)
{
    ksa_ckpt_progress pr = {.step = steps};
    if (identities) {
        snprintf(pr.data_identity, sizeof pr.data_identity, "xxh3-64 1, 2 bytes");
        snprintf(pr.val_data_identity, sizeof pr.val_data_identity, "xxh3-64 3, 4 bytes");
    }
    FILE *null = fopen("/dev/null", "w");
    ksa_status st =
        ksa_run_check_resume("c.h5", mc2, mc, tc2, tc, &pr, allow_schedule_change, null);
    fclose(null);
    return st;
}

/* A resumed run may change only steps, out, log, save_every, keep, save_best, eval_every,
 * threads, recompute, context_parallel, the loss-spike guard's keys and the watchdog keys (and the
 * data paths when the data's identity is recorded), and must have steps left. */
static void resume_rules_name_the_key_that_differs(void **state)
{
    (void)state;
    ksa_model_config mc, mc2;
    ksa_model_config_defaults(&mc);
    mc2 = mc;
    ksa_train_config tc, tc2;
    ksa_train_config_defaults(&tc);
    snprintf(tc.lr_schedule, sizeof tc.lr_schedule, "constant");
    tc2 = tc;
    tc2.steps = tc.steps + 5, tc2.keep = 3, tc2.threads = 1, tc2.save_best = 1;
    tc2.loss_spike_factor = 5, tc2.loss_spike_steps = 2, tc2.loss_spike_window = 10;
    snprintf(tc2.loss_spike_action, sizeof tc2.loss_spike_action, "skip");
    tc2.watchdog_factor = 0, tc2.watchdog_seconds = 30, tc2.context_parallel = 4;
    assert_int_equal(check_resume(&mc2, &mc, &tc2, &tc, 7, 0, 0), KSA_OK);
    tc2.lr = tc.lr * 2;
    assert_int_equal(check_resume(&mc2, &mc, &tc2, &tc, 7, 0, 0), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "training key 'lr' differs"));
    tc2.lr = tc.lr;
    mc2.hidden_size = mc.hidden_size + 8;
    assert_int_equal(check_resume(&mc2, &mc, &tc2, &tc, 7, 0, 0), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "model key 'hidden_size' differs"));
    mc2 = mc;
    assert_int_equal(check_resume(&mc2, &mc, &tc2, &tc, tc2.steps, 0, 0), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "leaves nothing to do"));
    assert_true(ksa_run_may_change_on_resume("eval_every"));
    assert_true(ksa_run_may_change_on_resume("watchdog_factor"));
    assert_true(ksa_run_may_change_on_resume("watchdog_seconds"));
    assert_false(ksa_run_may_change_on_resume("seed"));
    /* data that moved: only when the checkpoint can tell it is the same data */
    snprintf(tc2.data, sizeof tc2.data, "/elsewhere/train.bin");
    snprintf(tc2.val_data, sizeof tc2.val_data, "/elsewhere/val.bin");
    assert_int_equal(check_resume(&mc2, &mc, &tc2, &tc, 7, 1, 0), KSA_OK);
    assert_int_equal(check_resume(&mc2, &mc, &tc2, &tc, 7, 0, 0), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "training key 'data' differs"));
}

/* A new `steps` that changes the learning rate of a remaining update needs
 * allow_schedule_change; one that changes nothing (constant, or steps before the decay of a
 * longer run are untouched only if the curve is) does not. */
static void a_new_steps_that_reshapes_the_schedule_is_refused(void **state)
{
    (void)state;
    ksa_model_config mc;
    ksa_model_config_defaults(&mc);
    ksa_train_config tc, tc2;
    ksa_train_config_defaults(&tc);
    snprintf(tc.lr_schedule, sizeof tc.lr_schedule, "wsd");
    tc.steps = 200, tc.warmup_steps = 10, tc.decay_steps = 100, tc.lr = 1e-3, tc.min_lr = 1e-4;
    tc2 = tc;
    tc2.steps = 400; /* the decay moves from 100-199 to 300-399 */
    assert_int_equal(check_resume(&mc, &mc, &tc2, &tc, 150, 0, 0), KSA_EINVAL);
    assert_non_null(strstr(ksa_last_error(), "--allow-schedule-change"));
    assert_non_null(strstr(ksa_last_error(), "step 151"));
    assert_int_equal(check_resume(&mc, &mc, &tc2, &tc, 150, 0, 1), KSA_OK);
    /* extending a finished run: the old schedule would continue at min_lr, the new decays
     * from lr again */
    assert_int_equal(check_resume(&mc, &mc, &tc2, &tc, 200, 0, 0), KSA_EINVAL);
    /* a constant schedule is the same curve for any length */
    snprintf(tc.lr_schedule, sizeof tc.lr_schedule, "constant");
    tc2 = tc;
    tc2.steps = 400;
    assert_int_equal(check_resume(&mc, &mc, &tc2, &tc, 150, 0, 0), KSA_OK);
    /* shortening a cosine run changes every remaining rate */
    snprintf(tc.lr_schedule, sizeof tc.lr_schedule, "cosine");
    tc2 = tc;
    tc2.steps = 180;
    assert_int_equal(check_resume(&mc, &mc, &tc2, &tc, 150, 0, 0), KSA_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(checkpoint_names_give_their_step),
        cmocka_unit_test(a_folder_resumes_from_its_newest_checkpoint),
        cmocka_unit_test(resume_rules_name_the_key_that_differs),
        cmocka_unit_test(a_new_steps_that_reshapes_the_schedule_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
