/* ksa.c - the `ksa` command: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

#include "autograd/core.h"

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        printf("usage: ksa <command> [options]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "ksa: unknown command '%s' (try: ksa help)\n", argv[1]);
    return 2;
}
