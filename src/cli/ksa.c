/* ksa.c - the `ksa` command: dispatches to subcommands (src/cli/cmd_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"eval", ksa_cmd_eval, "loss (and gradients) of a checkpoint on rows of a token file"},
    {"import", ksa_cmd_import, "a Hugging Face model folder (safetensors) as a checkpoint"},
    {"export", ksa_cmd_export, "a checkpoint as a Hugging Face model folder (safetensors)"},
    {"init", ksa_cmd_init, "write a freshly initialised model as a checkpoint"},
    {"inspect", ksa_cmd_inspect,
     "show a configuration or a checkpoint: layers, parameters, memory, training state"},
    {"gradcheck", ksa_cmd_gradcheck, "finite-difference check of the model's gradients (float64)"},
    {"train", ksa_cmd_train, "train a model (docs/training.md)"},
    {"prepare", ksa_cmd_prepare, "tokenise text files into train and validation token files"},
    {"tokenize", ksa_cmd_tokenize, "encode a text file with a tokenizer (or decode ids)"},
    {"task", ksa_cmd_task, "write examples of a synthetic long-context retrieval task"},
    {"sample", ksa_cmd_sample, "generate text from a checkpoint (with the summary KV cache)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: ksa <command> [options]   (%s build)\n\ncommands:\n", KSA_REAL_NAME);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

/* Idle OpenMP threads spin for a short while and then sleep, unless the user chose how they
 * wait (OMP_WAIT_POLICY or GOMP_SPINCOUNT). The runtime's default spins for 300 000 rounds
 * (milliseconds) between parallel regions: on a shared or busy host the spinning threads
 * steal the cores the working ones need (2 threads ran 2-6x slower). Sleeping at once
 * (passive) costs a wake-up per region, ~35 % on an idle host. KSA_GOMP_SPINCOUNT is short
 * enough that a spinning thread gives its core back almost at once, long enough to cover
 * the gap between the many short regions of a step (docs/training.md, "Threads"). The
 * OpenMP runtime reads its environment once, when it is loaded (before main), so the
 * process sets it and executes itself again; if that fails it goes on with the runtime's
 * default. */
#define KSA_GOMP_SPINCOUNT "10000" /* rounds of the runtime's busy-wait loop */

static void default_to_short_spinning(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return;
    setenv("GOMP_SPINCOUNT", KSA_GOMP_SPINCOUNT, 1);
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv)
{
    default_to_short_spinning(argv);
    /* line by line even into a file or a pipe: a redirected log shows an error (stderr)
     * after the output printed before it, not above a configuration dump still buffered */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].run(argc - 2, argv + 2);
            ksa_cli_end_if_hdf5_unusable(rc); /* the commands without MPI (ksa init) */
            return rc;
        }
    fprintf(stderr, "ksa: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
