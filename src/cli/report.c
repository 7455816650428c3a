/* report.c - the one error printer of the `ksa` command, and MPI around a command. */
#include <stdarg.h>
#include <stdio.h>

#include "cli/commands.h"
#include "dist/dist.h"

/* One line "[rank R] ksa COMMAND: message\n", written with a single call: the ranks of a job
 * share stderr, and a line written in pieces would interleave with another rank's. */
static void print_line(const char *command, const char *fmt, va_list ap)
{
    char prefix[64] = "", msg[4096];
    if (ksa_dist_size() > 1)
        snprintf(prefix, sizeof prefix, "[rank %d] ", ksa_dist_rank());
    vsnprintf(msg, sizeof msg, fmt, ap);
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

int ksa_cli_run_on_ranks(const char *command, int (*run)(int argc, char **argv), int argc,
                         char **argv)
{
    if (ksa_dist_init(&argc, &argv) != KSA_OK)
        return ksa_cli_error(command, 1);
    /* only rank 0 prints results; errors come from every rank */
    if (ksa_dist_rank() != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "[rank %d] cannot silence stdout\n", ksa_dist_rank());
    int rc = run(argc, argv);
    fflush(stdout);
    ksa_dist_finalize();
    return rc;
}
