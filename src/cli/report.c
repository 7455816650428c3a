/* report.c - the one error printer of the `ksa` command, and MPI around a command.
 *
 * With several ranks, a command's errors are held until it returns, and the ranks then
 * compare them (ksa_dist_compare_text): an error every rank has, word for word (a bad value
 * on the command line, a missing file), is printed once, by rank 0, without a prefix; other
 * errors are printed by the ranks that have them, each line prefixed "[rank R] ". A rank
 * that failed alone while the others wait in a collective would never see them come: in a
 * command that agrees its failures (ksa train), a failure that was not agreed is printed
 * and ends the job at once; otherwise the rank prints its errors after ERROR_WAIT_SECONDS
 * and ends the job.                                                                    */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "cli/commands.h"
#include "dist/dist.h"

#define ERROR_WAIT_SECONDS 10.0

static int holding;     /* 1 while a command runs on several ranks */
static char held[8192]; /* its error lines, each ending in '\n' */
static size_t held_len; /* bytes used in held */

/* One line "[rank R] ksa COMMAND: message\n", written with a single call: the ranks of a job
 * share stderr, and a line written in pieces would interleave with another rank's. */
static void print_line(const char *command, const char *fmt, va_list ap)
{
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (holding) {
        size_t room = sizeof held - held_len; /* a line that does not fit is cut */
        int n = snprintf(held + held_len, room, "ksa %s: %s\n", command, msg);
        if (n > 0)
            held_len += (size_t)n < room ? (size_t)n : room - 1;
        return;
    }
    char prefix[64] = "";
    if (ksa_dist_size() > 1)
        snprintf(prefix, sizeof prefix, "[rank %d] ", ksa_dist_rank());
    fprintf(stderr, "%sksa %s: %s\n", prefix, command, msg);
}

static void print_formatted(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line(command, fmt, ap);
    va_end(ap);
}

int ksa_cli_error(const char *command, int exit_code)
{
    print_formatted(command, "%s", ksa_last_error());
    return exit_code;
}

int ksa_cli_errorf(const char *command, int exit_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_line(command, fmt, ap);
    va_end(ap);
    return exit_code;
}

/* Writes the held lines to stderr, one call per line, each after prefix. */
static void print_held(const char *prefix)
{
    for (char *line = held; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        fprintf(stderr, "%s%.*s\n", prefix, (int)len, line);
        line += len + (end != NULL);
    }
}

/* After the command: the held errors, once or per rank (see the top of the file). */
static void report_held_errors(const char *command, int rc, int agreed)
{
    holding = 0;
    int n_with_errors, all_same;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "[rank %d] ", ksa_dist_rank());
    if (held[0] && agreed && !ksa_dist_failure_agreed()) { /* (a stop by a signal: no error) */
        print_held(prefix);
        fprintf(stderr,
                "%sksa %s: this rank failed alone (the other ranks were not told); ending the "
                "job\n",
                prefix, command);
        ksa_dist_abort(rc);
    }
    if (ksa_dist_compare_text(held, ERROR_WAIT_SECONDS, &n_with_errors, &all_same) != KSA_OK) {
        print_held(prefix);
        fprintf(stderr, "%sksa %s: %s; ending the job\n", prefix, command, ksa_last_error());
        ksa_dist_abort(rc ? rc : 1);
    }
    if (!held[0])
        return;
    if (!all_same || n_with_errors < ksa_dist_size())
        print_held(prefix);
    else if (ksa_dist_rank() == 0)
        print_held("");
}

void ksa_cli_end_if_hdf5_unusable(int exit_code)
{
    int unusable = ksa_ckpt_hdf5_unusable();
    if (ksa_dist_active()) /* every rank ends the same way: none waits in MPI_Finalize */
        unusable = ksa_dist_any(unusable);
    if (!unusable)
        return;
    if (ksa_dist_rank() == 0)
        fprintf(stderr, "ksa: HDF5 could not close a checkpoint it was writing; ending without "
                        "shutting HDF5 and MPI down (HDF5 1.10 would crash)\n");
    fflush(NULL);
    _exit(exit_code ? exit_code : 1);
}

int ksa_cli_run_on_ranks(const char *command, int (*run)(int argc, char **argv), int argc,
                         char **argv, int agreed)
{
    if (ksa_dist_init(&argc, &argv) != KSA_OK)
        return ksa_cli_error(command, 1);
    /* only rank 0 prints results */
    if (ksa_dist_rank() != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "[rank %d] cannot silence stdout\n", ksa_dist_rank());
    holding = ksa_dist_size() > 1;
    held[0] = '\0';
    held_len = 0;
    int rc = run(argc, argv);
    fflush(stdout);
    if (ksa_dist_size() > 1)
        report_held_errors(command, rc, agreed);
    ksa_cli_end_if_hdf5_unusable(rc);
    ksa_dist_finalize();
    return rc;
}
