/* args.c - options and configuration overrides of the subcommands. */
#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One command-line word split: "--seq-len=512" -> name "seq_len", value "512". */
typedef struct {
    char name[128];    /* dashes after the first two made '_' */
    const char *value; /* after '=', or NULL when the word has no '=' */
} option_word;

/* 0 if arg is not an option ("--" and a name, or -h). */
static int split_option(const char *arg, option_word *w)
{
    if (!strcmp(arg, "-h"))
        arg = "--help";
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=')
        return 0;
    const char *eq = strchr(arg + 2, '=');
    size_t len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
    snprintf(w->name, sizeof w->name, "%.*s", (int)len, arg + 2);
    for (char *p = w->name; *p; p++)
        if (*p == '-')
            *p = '_';
    w->value = eq ? eq + 1 : NULL;
    return 1;
}

/* "seq_len" -> "seq-len", as an option is written */
static const char *dashed(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s", name);
    for (char *p = buf; *p; p++)
        if (*p == '_')
            *p = '-';
    return buf;
}

static ksa_status set_arg(const ksa_arg *a, const char *value)
{
    char name[128];
    dashed(name, sizeof name, a->name);
    char *end = NULL;
    errno = 0;
    switch (a->kind) {
    case KSA_ARG_STRING:
        *(const char **)a->dst = value;
        return KSA_OK;
    case KSA_ARG_LONG: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 0)
            return ksa_fail(KSA_EINVAL, "--%s: '%s' is not a non-negative integer", name, value);
        *(long *)a->dst = v;
        return KSA_OK;
    }
    case KSA_ARG_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end)
            return ksa_fail(KSA_EINVAL, "--%s: '%s' is not a number", name, value);
        *(double *)a->dst = v;
        return KSA_OK;
    }
    default:
        return ksa_fail(KSA_EINVAL, "--%s: unexpected value '%s'", name, value);
    }
}

static ksa_status add_list_value(const ksa_arg *a, const char *value)
{
    char name[128];
    if (*a->list_n == a->list_cap)
        return ksa_fail(KSA_EINVAL, "--%s takes at most %zu values",
                        dashed(name, sizeof name, a->name), a->list_cap);
    ((const char **)a->dst)[(*a->list_n)++] = value;
    return KSA_OK;
}

/* " (did you mean ...?)" for an unknown name: the command's options, and with a model
 * configuration both key tables; as_option: names written as options. */
static const char *suggestion(const char *unknown, const ksa_arg *args, size_t n_args,
                              int with_keys, int as_option, char *buf, size_t cap)
{
    ksa_suggest s;
    ksa_suggest_init(&s, unknown);
    for (size_t k = 0; k < n_args; k++)
        ksa_suggest_add(&s, args[k].name);
    if (with_keys) {
        size_t n;
        const ksa_config_key *keys = ksa_model_config_keys(&n);
        for (size_t k = 0; k < n; k++)
            ksa_suggest_add(&s, keys[k].name);
        keys = ksa_train_config_keys(&n);
        for (size_t k = 0; k < n; k++)
            ksa_suggest_add(&s, keys[k].name);
    }
    return ksa_suggest_text(&s, as_option, buf, cap);
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
    char hint[512];
    return ksa_fail(KSA_EINVAL, "%s: unknown configuration key '%s'%s", origin, key,
                    suggestion(key, NULL, 0, 1, 0, hint, sizeof hint));
}

ksa_status ksa_args_parse(int argc, char **argv, const ksa_arg *args, size_t n_args,
                          ksa_model_config *cfg, const char **config_path)
{
    ksa_train_config ignored;
    ksa_train_config_defaults(&ignored);
    return ksa_args_parse_train(argc, argv, args, n_args, cfg, &ignored, config_path);
}

/* name is a boolean model or training key */
static int is_bool_key(const char *name)
{
    size_t n_train, n_model;
    const ksa_config_key *train = ksa_train_config_keys(&n_train);
    const ksa_config_key *model = ksa_model_config_keys(&n_model);
    const ksa_config_key *k = ksa_config_key_find(train, n_train, name);
    if (!k)
        k = ksa_config_key_find(model, n_model, name);
    return k && k->kind == KSA_KEY_BOOL;
}

/* The value of the option in argv[*i]: after its '=', else the next word (*i moves on). */
static ksa_status take_value(int argc, char **argv, int *i, const option_word *w,
                             const char **value)
{
    if (w->value) {
        *value = w->value;
        return KSA_OK;
    }
    if (*i + 1 >= argc)
        return ksa_fail(KSA_EINVAL, "%s needs a value", argv[*i]);
    /* `--out --dry-run` is a forgotten value, not a folder called --dry-run */
    if (!strncmp(argv[*i + 1], "--", 2))
        return ksa_fail(KSA_EINVAL,
                        "%s needs a value, got the option '%s' (a value that starts with -- is "
                        "written %s=VALUE)",
                        argv[*i], argv[*i + 1], argv[*i]);
    *value = argv[++*i];
    return KSA_OK;
}

ksa_status ksa_args_parse_train(int argc, char **argv, const ksa_arg *args, size_t n_args,
                                ksa_model_config *cfg, ksa_train_config *train,
                                const char **config_path)
{
    option_word w;
    if (config_path)
        *config_path = NULL;
    for (int i = 0; i < argc; i++) { /* the configuration file first */
        if (!split_option(argv[i], &w) || strcmp(w.name, "config") != 0)
            continue;
        const char *path = NULL;
        KSA_TRY(take_value(argc, argv, &i, &w, &path));
        if (!cfg)
            return ksa_fail(KSA_EINVAL, "this command takes no --config");
        file_ctx fc = {cfg, train, path};
        KSA_TRY(ksa_config_file_read(path, set_file_key, &fc));
        if (config_path)
            *config_path = path;
    }
    for (int i = 0; i < argc; i++) {
        if (!split_option(argv[i], &w))
            return ksa_fail(KSA_EINVAL, "unexpected argument '%s' (options start with --)",
                            argv[i]);
        const char *value = NULL;
        if (!strcmp(w.name, "config")) {
            KSA_TRY(take_value(argc, argv, &i, &w, &value)); /* read above */
            continue;
        }
        const ksa_arg *a = NULL;
        for (size_t k = 0; k < n_args && !a; k++)
            if (!strcmp(args[k].name, w.name))
                a = &args[k];
        if (a && a->kind == KSA_ARG_FLAG) {
            if (w.value)
                return ksa_fail(KSA_EINVAL, "%.*s takes no value (got '%s')",
                                (int)(w.value - 1 - argv[i]), argv[i], w.value);
            *(int *)a->dst = 1;
            continue;
        }
        if (a && a->kind == KSA_ARG_LIST) {
            size_t before = *a->list_n;
            if (w.value)
                KSA_TRY(add_list_value(a, w.value));
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                KSA_TRY(add_list_value(a, argv[++i]));
            if (*a->list_n == before)
                return ksa_fail(KSA_EINVAL, "%s needs at least one value", argv[i]);
            continue;
        }
        if (!a &&
            !(cfg && (ksa_model_config_has_key(w.name) || ksa_train_config_has_key(w.name)))) {
            char hint[512];
            const char *eq = strchr(argv[i], '=');
            int len = eq ? (int)(eq - argv[i]) : (int)strlen(argv[i]);
            return ksa_fail(KSA_EINVAL, "unknown option%s '%.*s'%s",
                            cfg ? " or configuration key" : "", len, argv[i],
                            suggestion(w.name, args, n_args, cfg != NULL, 1, hint, sizeof hint));
        }
        if (!a && !w.value && is_bool_key(w.name) &&
            (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2)))
            value = "true"; /* a boolean key alone: `--save-best` is `--save-best true` */
        else
            KSA_TRY(take_value(argc, argv, &i, &w, &value));
        if (a)
            KSA_TRY(set_arg(a, value));
        else if (ksa_model_config_has_key(w.name))
            KSA_TRY(ksa_model_config_set(cfg, w.name, value, "command line"));
        else
            KSA_TRY(ksa_train_config_set(train, w.name, value, "command line", NULL));
    }
    return KSA_OK;
}

/* ---- --help ---------------------------------------------------------------------------- */

static const char *arg_value_name(ksa_arg_kind kind)
{
    switch (kind) {
    case KSA_ARG_STRING:
        return "TEXT";
    case KSA_ARG_LONG:
        return "N";
    case KSA_ARG_DOUBLE:
        return "X";
    case KSA_ARG_LIST:
        return "TEXT...";
    default:
        return "";
    }
}

static const char *key_value_name(ksa_key_kind kind)
{
    switch (kind) {
    case KSA_KEY_INT:
        return "N";
    case KSA_KEY_FLOAT:
        return "X";
    case KSA_KEY_BOOL:
        return "true|false";
    default:
        return "TEXT";
    }
}

/* One line per key: "  --name VALUE   default   description"; an empty default as "". */
static void print_key(FILE *f, const ksa_config_key *k, const void *defaults)
{
    char name[160], value[KSA_CONFIG_STR + 64];
    dashed(name, sizeof name, k->name);
    char left[200];
    snprintf(left, sizeof left, "--%s %s", name, key_value_name(k->kind));
    ksa_config_key_format(k, defaults, value, sizeof value);
    fprintf(f, "  %-42s %-10s %s\n", left, value[0] ? value : "\"\"", k->help ? k->help : "");
}

void ksa_args_usage(FILE *f, const char *command, const ksa_arg *args, size_t n_args, unsigned keys)
{
    fprintf(f, "usage: ksa %s [options]%s\n", command,
            keys ? " [--config FILE] [--KEY VALUE ...]" : "");
    fprintf(f, "options (--name VALUE or --name=VALUE; --a-b and --a_b are the same):\n");
    char name[160], left[200];
    if (keys)
        fprintf(f, "  %-28s %s\n", "--config FILE",
                "configuration file of `key = value` lines, applied first (docs/configs.md)");
    for (size_t k = 0; k < n_args; k++) {
        dashed(name, sizeof name, args[k].name);
        snprintf(left, sizeof left, "--%s %s", name, arg_value_name(args[k].kind));
        fprintf(f, "  %-28s %s\n", left, args[k].help);
    }
    size_t n;
    const ksa_config_key *table;
    if (keys & KSA_USAGE_MODEL_KEYS) {
        ksa_model_config mc;
        ksa_model_config_defaults(&mc);
        table = ksa_model_config_keys(&n);
        fprintf(f, "%-44s %-10s %s\n", "model keys (docs/configs.md):", "default", "meaning");
        for (size_t k = 0; k < n; k++)
            print_key(f, &table[k], &mc);
    }
    ksa_train_config tc;
    ksa_train_config_defaults(&tc);
    table = ksa_train_config_keys(&n);
    if (keys & (KSA_USAGE_TRAIN_KEYS | KSA_USAGE_MEMORY_KEYS)) {
        fprintf(f, "%-44s %-10s %s\n", "training keys (docs/training.md):", "default", "meaning");
        for (size_t k = 0; k < n; k++)
            if ((keys & KSA_USAGE_TRAIN_KEYS) || !strcmp(table[k].name, "seq_len") ||
                !strcmp(table[k].name, "micro_batch") || !strcmp(table[k].name, "recompute") ||
                !strcmp(table[k].name, "context_parallel") || !strcmp(table[k].name, "trainable") ||
                !strcmp(table[k].name, "frozen"))
                print_key(f, &table[k], &tc);
    }
    if ((keys & KSA_USAGE_MODEL_KEYS) && !(keys & KSA_USAGE_TRAIN_KEYS))
        fprintf(f,
                "%s training keys of a configuration file or the command line are accepted "
                "and ignored\n",
                keys & KSA_USAGE_MEMORY_KEYS ? "the other" : "the");
}
