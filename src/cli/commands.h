/* commands.h - the subcommands of `ksa`; each takes the arguments after its name. */
#ifndef KSA_CLI_COMMANDS_H
#define KSA_CLI_COMMANDS_H

#include <stdio.h>

#include "model/decoder.h"

int ksa_cmd_eval(int argc, char **argv);
int ksa_cmd_gradcheck(int argc, char **argv);
int ksa_cmd_init(int argc, char **argv);
int ksa_cmd_inspect(int argc, char **argv);
int ksa_cmd_prepare(int argc, char **argv);
int ksa_cmd_sample(int argc, char **argv);

int ksa_cmd_train(int argc, char **argv);

/* The memory one training step needs (parameters, gradients, moments, arena). */
void ksa_print_memory_plan(const ksa_model *m, size_t micro_batch, size_t seq_len, FILE *f);

#endif
