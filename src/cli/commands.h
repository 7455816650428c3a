/* commands.h - the subcommands of `ksa`; each takes the arguments after its name. */
#ifndef KSA_CLI_COMMANDS_H
#define KSA_CLI_COMMANDS_H

#include <stdio.h>

#include "model/decoder.h"

int ksa_cmd_eval(int argc, char **argv);
int ksa_cmd_export(int argc, char **argv);
int ksa_cmd_gradcheck(int argc, char **argv);
int ksa_cmd_import(int argc, char **argv);
int ksa_cmd_init(int argc, char **argv);
int ksa_cmd_inspect(int argc, char **argv);
int ksa_cmd_prepare(int argc, char **argv);
int ksa_cmd_sample(int argc, char **argv);
int ksa_cmd_task(int argc, char **argv);
int ksa_cmd_tokenize(int argc, char **argv);

int ksa_cmd_train(int argc, char **argv);

/* Errors of the commands, on stderr: "ksa COMMAND: message". Under ksa_cli_run_on_ranks with
 * several MPI ranks they are printed when the command returns: once if every rank has the
 * same, else by each rank that has them, prefixed "[rank R] " (report.c). Both return
 * exit_code: `return ksa_cli_error("eval", 2);`. ksa_cli_error prints the last error
 * (ksa_last_error), ksa_cli_errorf a message of its own.                                  */
int ksa_cli_error(const char *command, int exit_code);
int ksa_cli_errorf(const char *command, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs run(argc, argv) with MPI up (a singleton without mpirun) and stdout silenced on the
 * ranks other than 0, then reports its errors as above; returns its exit code. agreed: the
 * command agrees every failure with the other ranks (ksa_dist_agree after each step that
 * can fail on one rank alone), so a failure that was not agreed (ksa_dist_failure_agreed:
 * a path missed, a later failure) ends the job at once after its message: another rank may
 * be waiting for this one in a collective. Otherwise a rank with errors waits a while for
 * the others before it ends the job (report.c). */
int ksa_cli_run_on_ranks(const char *command, int (*run)(int argc, char **argv), int argc,
                         char **argv, int agreed);

/* After a command: if HDF5 failed to close a checkpoint it was writing (ksa_ckpt_hdf5_unusable;
 * under MPI on any rank, collective), ends the process at once with _exit(exit_code, or 1),
 * stdio flushed, without shutting HDF5 or MPI down, which would crash; otherwise returns. */
void ksa_cli_end_if_hdf5_unusable(int exit_code);

/* The memory one training step needs on each of n_ranks ranks: parameters and gradients
 * (whole on every rank), the rank's slice of the AdamW moments (m's buffer is padded for
 * n_ranks, as ksa_model_init_for_ranks does), the activation arena and gradient pool of one
 * micro-batch (a sizing run: ksa_model_plan) and the program itself. Returns the expected
 * peak per rank in bytes (above KSA_PLANNABLE_BYTES: an estimate, not planned).          */
double ksa_print_memory_plan(const ksa_model *m, size_t micro_batch, size_t seq_len, int n_ranks,
                             FILE *f);

#endif
