/* fuzz_config.c - the configuration reader: `key = value` files (core/settings.c) through the
 * setters of the model and training keys (model/config.c, train/train_config.c), read as
 * `ksa train --config FILE --KEY VALUE ...` reads them (cli/args.c), and what consumes the
 * result: validation, the per-layer layout and patterns, the parameter table, the schedule.
 *
 * Input: the configuration file up to the first NUL byte; after it, command-line words
 * separated by NUL bytes (at most MAX_WORDS; a --config word is dropped: the file is the
 * input's own).
 * Properties: every outcome is a status (no abort, no overflow, no leak); a configuration
 * that was read is written (ksa_*_config_write) and read back to the same values; a
 * schedule that validates gives finite rates in [0, lr].                                 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "fuzzutil.h"
#include "model/decoder.h"
#include "optim/lr_schedule.h"

#define MAX_WORDS 16

/* The format has no escapes: a value holding '#' (a comment starts) or a line break (a new
 * line starts) cannot be written so that it reads back. Such values can come from the
 * command line only; the configuration is then not compared. */
static int writable(const char *value)
{
    return !strpbrk(value, "#\n");
}

/* A path comes back as written only if it is absolute (a relative one is read against the
 * file's folder). */
static int comes_back(const ksa_config_key *k, const char *value)
{
    int path = !strcmp(k->name, "data") || !strcmp(k->name, "data_mix") ||
               !strcmp(k->name, "val_data") || !strcmp(k->name, "log") || !strcmp(k->name, "out");
    return !path || value[0] == '/' || value[0] == '\0';
}

/* Writes mc and tc as `key = value` lines and reads them back over the defaults: the same
 * values must come back (tc's paths made absolute first, as a checkpoint stores them). */
static void check_round_trip(const ksa_model_config *mc, const ksa_train_config *given)
{
    ksa_train_config copy = *given, *tc = &copy;
    ksa_train_config_absolute_paths(tc);
    size_t n;
    const ksa_config_key *keys = ksa_train_config_keys(&n);
    for (size_t i = 0; i < n; i++)
        if (keys[i].kind == KSA_KEY_STRING && !writable((const char *)tc + keys[i].offset))
            return;
    char path[512];
    fuzz_path(path, sizeof path, "written.conf");
    FILE *f = fopen(path, "w");
    fuzz_check(f != NULL, "cannot write %s", path);
    ksa_model_config_write(mc, f);
    ksa_train_config_write(tc, f);
    fclose(f);
    ksa_model_config mc2;
    ksa_train_config tc2;
    ksa_model_config_defaults(&mc2);
    ksa_train_config_defaults(&tc2);
    const char *argv[] = {"--config", path};
    ksa_status st = ksa_args_parse_train(2, (char **)argv, NULL, 0, &mc2, &tc2, NULL);
    fuzz_check(st == KSA_OK, "the written configuration does not read back: %s", ksa_last_error());
    keys = ksa_model_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char a[512], b[512];
        ksa_config_key_format(&keys[i], mc, a, sizeof a);
        ksa_config_key_format(&keys[i], &mc2, b, sizeof b);
        fuzz_check(!strcmp(a, b), "model key %s: '%s' written, '%s' read back", keys[i].name, a, b);
    }
    keys = ksa_train_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char a[2 * KSA_PATH_STR], b[2 * KSA_PATH_STR];
        ksa_config_key_format(&keys[i], tc, a, sizeof a);
        ksa_config_key_format(&keys[i], &tc2, b, sizeof b);
        if (keys[i].kind == KSA_KEY_STRING && !comes_back(&keys[i], a))
            continue;
        fuzz_check(!strcmp(a, b), "training key %s: '%s' written, '%s' read back", keys[i].name, a,
                   b);
    }
}

/* The rates of a validated schedule: finite, in [0, lr]. */
static void check_schedule(const ksa_train_config *tc)
{
    ksa_lr_schedule s;
    fuzz_check(ksa_train_config_schedule(tc, &s) == KSA_OK, "%s", ksa_last_error());
    fuzz_check(ksa_lr_schedule_check(&s) == KSA_OK, "validated, yet: %s", ksa_last_error());
    long ks[] = {0, 1, s.warmup_steps, s.steps - s.decay_steps, s.steps - 1, s.steps, s.steps + 1};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        if (ks[i] < 0)
            continue;
        double lr = ksa_lr_at(&s, ks[i]);
        fuzz_check(isfinite(lr) && lr >= 0 && lr <= s.lr * (1 + 1e-12), "lr at %ld is %g, peak %g",
                   ks[i], lr, s.lr);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_path(path, sizeof path, "input.conf");
    const uint8_t *nul = memchr(data, 0, size);
    size_t file_bytes = nul ? (size_t)(nul - data) : size;
    fuzz_write_file(path, data, file_bytes);

    /* the command line: NUL-separated words after the file (copied: they need their NUL) */
    char *words = malloc(size - file_bytes + 1);
    memcpy(words, data + file_bytes, size - file_bytes);
    words[size - file_bytes] = '\0';
    char *argv[2 + MAX_WORDS] = {"--config", path};
    int argc = 2;
    for (size_t i = 1; nul && i < size - file_bytes && argc < 2 + MAX_WORDS;) {
        char *w = words + i;
        size_t len = strnlen(w, size - file_bytes - i);
        if (strncmp(w, "--config", 8) != 0)
            argv[argc++] = w;
        i += len + 1;
    }

    const char *resume = NULL, *inputs[4];
    long sample = 0;
    double temperature = 0;
    int dry_run = 0;
    size_t n_inputs = 0;
    const ksa_arg args[] = {
        {"dry_run", KSA_ARG_FLAG, &dry_run, NULL, 0, "a flag"},
        {"resume", KSA_ARG_STRING, &resume, NULL, 0, "a string"},
        {"sample", KSA_ARG_LONG, &sample, NULL, 0, "a count"},
        {"temperature", KSA_ARG_DOUBLE, &temperature, NULL, 0, "a number"},
        {"input", KSA_ARG_LIST, inputs, &n_inputs, 4, "a list"},
    };
    ksa_model_config mc;
    ksa_train_config tc;
    ksa_model_config_defaults(&mc);
    ksa_train_config_defaults(&tc);
    const char *config_path = NULL;
    ksa_status st = ksa_args_parse_train(argc, argv, args, sizeof args / sizeof args[0], &mc, &tc,
                                         &config_path);
    if (st == KSA_OK) {
        fuzz_check(config_path && !strcmp(config_path, path), "--config not reported");
        check_round_trip(&mc, &tc);
        ksa_model_layout layout;
        if (ksa_model_config_resolve(&mc, &layout) == KSA_OK) {
            ksa_model_layout_print(&layout, fuzz_devnull());
            ksa_model m;
            fuzz_check(ksa_model_declare(&m, &mc) == KSA_OK, "resolved, yet: %s", ksa_last_error());
            fuzz_check(ksa_params_count(&m.params) > 0, "a model without parameters");
            ksa_model_free(&m);
        }
        if (ksa_train_config_validate(&tc, 1) == KSA_OK) {
            check_schedule(&tc);
            ksa_train_config_check_model(&tc, &mc);
        }
    }
    free(words);
    return 0;
}
