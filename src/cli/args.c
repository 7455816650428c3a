/* args.c - options and configuration overrides of the subcommands. */
#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* "--seq-len" -> "seq_len"; NULL if arg is not an option. */
static const char *option_name(const char *arg, char *buf, size_t cap)
{
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return NULL;
    snprintf(buf, cap, "%s", arg + 2);
    for (char *p = buf; *p; p++)
        if (*p == '-')
            *p = '_';
    return buf;
}

static ksa_status set_arg(const ksa_arg *a, const char *value)
{
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case KSA_ARG_STRING:
        *(const char **)a->dst = value;
        return KSA_OK;
    case KSA_ARG_LONG: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 0)
            return ksa_fail(KSA_EINVAL, "--%s: '%s' is not a non-negative integer", a->name, value);
        *(long *)a->dst = v;
        return KSA_OK;
    }
    case KSA_ARG_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end)
            return ksa_fail(KSA_EINVAL, "--%s: '%s' is not a number", a->name, value);
        *(double *)a->dst = v;
        return KSA_OK;
    }
    default:
        return ksa_fail(KSA_EINVAL, "--%s: unexpected value '%s'", a->name, value);
    }
}

typedef struct {
    ksa_model_config *model;
    ksa_train_config *train;
    const char *path;
} file_ctx;

static ksa_status set_file_key(void *ctx, const char *key, const char *value, const char *origin)
{
    file_ctx *fc = ctx;
    if (ksa_model_config_has_key(key))
        return ksa_model_config_set(fc->model, key, value, origin);
    if (ksa_train_config_has_key(key))
        return ksa_train_config_set(fc->train, key, value, origin, fc->path);
    return ksa_fail(KSA_EINVAL, "%s: unknown configuration key '%s'", origin, key);
}

ksa_status ksa_args_parse(int argc, char **argv, const ksa_arg *args, size_t n_args,
                          ksa_model_config *cfg, const char **config_path)
{
    ksa_train_config ignored;
    ksa_train_config_defaults(&ignored);
    return ksa_args_parse_train(argc, argv, args, n_args, cfg, &ignored, config_path);
}

ksa_status ksa_args_parse_train(int argc, char **argv, const ksa_arg *args, size_t n_args,
                                ksa_model_config *cfg, ksa_train_config *train,
                                const char **config_path)
{
    char name[128];
    if (config_path)
        *config_path = NULL;
    for (int i = 0; i < argc; i++) { /* the configuration file first */
        if (strcmp(argv[i], "--config") != 0)
            continue;
        if (i + 1 >= argc)
            return ksa_fail(KSA_EINVAL, "--config needs a file name");
        if (!cfg)
            return ksa_fail(KSA_EINVAL, "this command takes no --config");
        file_ctx fc = {cfg, train, argv[i + 1]};
        KSA_TRY(ksa_config_file_read(argv[i + 1], set_file_key, &fc));
        if (config_path)
            *config_path = argv[i + 1];
    }
    for (int i = 0; i < argc; i++) {
        const char *opt = option_name(argv[i], name, sizeof name);
        if (!opt)
            return ksa_fail(KSA_EINVAL, "unexpected argument '%s' (options start with --)",
                            argv[i]);
        if (!strcmp(opt, "config")) {
            i++;
            continue;
        }
        const ksa_arg *a = NULL;
        for (size_t k = 0; k < n_args && !a; k++)
            if (!strcmp(args[k].name, opt))
                a = &args[k];
        if (a && a->kind == KSA_ARG_FLAG) {
            *(int *)a->dst = 1;
            continue;
        }
        if (a && a->kind == KSA_ARG_LIST) {
            size_t n = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (n == a->list_cap)
                    return ksa_fail(KSA_EINVAL, "--%s takes at most %zu values", a->name,
                                    a->list_cap);
                ((const char **)a->dst)[n++] = argv[++i];
            }
            if (n == 0)
                return ksa_fail(KSA_EINVAL, "--%s needs at least one value", a->name);
            *a->list_n = n;
            continue;
        }
        if (i + 1 >= argc)
            return ksa_fail(KSA_EINVAL, "%s needs a value", argv[i]);
        const char *value = argv[++i];
        if (a) {
            KSA_TRY(set_arg(a, value));
        } else if (cfg && ksa_model_config_has_key(opt)) {
            KSA_TRY(ksa_model_config_set(cfg, opt, value, "command line"));
        } else if (cfg && ksa_train_config_has_key(opt)) {
            KSA_TRY(ksa_train_config_set(train, opt, value, "command line", NULL));
        } else {
            return ksa_fail(KSA_EINVAL, "unknown option or configuration key '%s'", argv[i - 1]);
        }
    }
    return KSA_OK;
}

void ksa_args_usage(FILE *f, const char *command, const ksa_arg *args, size_t n_args)
{
    fprintf(f, "usage: ksa %s [options] [--config FILE] [--<config key> value ...]\n", command);
    for (size_t k = 0; k < n_args; k++) {
        char name[128];
        snprintf(name, sizeof name, "%s", args[k].name);
        for (char *p = name; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  --%-16s %s\n", name, args[k].help);
    }
}
