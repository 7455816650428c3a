/* args.h - command-line parsing shared by the subcommands.
 *
 * `--config FILE` is applied first wherever it appears (file < command line); every other
 * `--name value` (or `--name=value`) is either one of the command's own options or a
 * configuration key (`--a-b` means `--a_b`; `-h` means `--help`); anything else is an
 * error naming it and the nearest known names ("did you mean --seq-len?").
 *
 * Not getopt_long: it accepts any unambiguous abbreviation (`--warm` for --warmup-steps,
 * so adding a key could break a command line and a typo could set the wrong key), cannot
 * take several values after one option (--input a.txt b.txt), and would need every name
 * twice (`-` and `_`) and two runs over argv with its global state for --config.       */
#ifndef KSA_CLI_ARGS_H
#define KSA_CLI_ARGS_H

#include "model/config.h"
#include "train/train_config.h"

typedef enum {
    KSA_ARG_STRING, /* const char *  */
    KSA_ARG_LONG,   /* long, >= 0    */
    KSA_ARG_DOUBLE, /* double        */
    KSA_ARG_FLAG,   /* int, no value */
    KSA_ARG_LIST    /* one or more values up to the next --option: const char **, count;
                     * the option may repeat, its values add up */
} ksa_arg_kind;

typedef struct {
    const char *name; /* without dashes, underscores: "seq_len" matches --seq-len */
    ksa_arg_kind kind;
    void *dst;      /* per kind above; LIST: const char ** array of capacity list_cap */
    size_t *list_n; /* LIST: number of values stored (start it at 0) */
    size_t list_cap;
    const char *help;
} ksa_arg;

/* Parses argv (after the command name). cfg may be NULL for commands without a model
 * configuration; config_path receives the --config value (may be NULL). Training keys in
 * the file or on the command line are accepted and ignored (a configuration file holds
 * both kinds).                                                                          */
ksa_status ksa_args_parse(int argc, char **argv, const ksa_arg *args, size_t n_args,
                          ksa_model_config *cfg, const char **config_path);

/* The same, keeping the training keys in *train. */
ksa_status ksa_args_parse_train(int argc, char **argv, const ksa_arg *args, size_t n_args,
                                ksa_model_config *cfg, ksa_train_config *train,
                                const char **config_path);

/* Which configuration keys a command's --help lists, with their defaults. */
enum {
    KSA_USAGE_MODEL_KEYS = 1,  /* every model key */
    KSA_USAGE_TRAIN_KEYS = 2,  /* every training key */
    KSA_USAGE_MEMORY_KEYS = 4, /* the training keys that size a step: seq_len, micro_batch */
};

/* Prints the options of a command (and --config FILE when it takes keys), then the keys
 * `keys` asks for: name, kind of value, default and description, one per line.      */
void ksa_args_usage(FILE *f, const char *command, const ksa_arg *args, size_t n_args,
                    unsigned keys);

#endif
