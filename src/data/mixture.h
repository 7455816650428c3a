/* mixture.h - a mixture list: several token files with sampling weights (KSA_SPEC §10.3).
 *
 * One source per line, fields separated by spaces or tabs:
 *     name weight path        or        weight path
 * Blank lines and comments (from a field starting with '#' to the end of the line) are
 * skipped. `weight` is a positive finite number; weights need not sum to one (the loader
 * normalises them). `path` is resolved against the mixture file's folder unless absolute,
 * and may omit its `.bin`: it is tried as written, then with ".bin" appended. Anything else
 * (a bad or non-positive weight, a missing token file, a wrong number of fields) is an error
 * naming the mixture file and the line number and quoting the line. Unlike KSA's reader,
 * a weight <= 0 is an error rather than a silently dropped line.                          */
#ifndef KSA_DATA_MIXTURE_H
#define KSA_DATA_MIXTURE_H

#include <stddef.h>

#include "core/core.h"

typedef struct {
    char *name;    /* owned: the line's name, or its path as written when it has none */
    double weight; /* as written: > 0, not normalised */
    char *path;    /* owned: an existing file, resolved and with .bin appended if needed */
    size_t line;   /* 1-based line number in the mixture file, for messages */
} ksa_mixture_source;

typedef struct {
    char *list_path;             /* owned copy of the mixture file's path */
    ksa_mixture_source *sources; /* owned, n of them, in file order */
    size_t n;
} ksa_mixture;

/* Reads and checks the mixture file list_path (at least one source). On failure *m is left
 * empty (nothing to free).                                                                */
ksa_status ksa_mixture_read(ksa_mixture *m, const char *list_path);
void ksa_mixture_free(ksa_mixture *m);

#endif
