/* staged.h - output files that appear together or not at all (`ksa prepare`, `ksa task`).
 *
 * Each file is written as "<path>.tmp"; when all are complete they are flushed, fsync'ed,
 * closed and renamed into place in an order the caller chooses (the file that readers look
 * for first goes last, so that once it is there, so are the others). On any failure the
 * .tmp files are removed: nothing half-written stays behind, and an existing file of the
 * same name is untouched until its replacement is complete.                              */
#ifndef KSA_DATA_STAGED_H
#define KSA_DATA_STAGED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "data/tokfile.h"

typedef struct {
    char *path;      /* owned: the final name */
    char *tmp;       /* owned: "<path>.tmp" */
    FILE *fp;        /* open while being written */
    size_t n_tokens; /* ids written by ksa_staged_write_ids */
} ksa_staged_file;

/* Creates "<path>.tmp" for writing (KSA_EIO naming it). f must be zeroed or released. */
ksa_status ksa_staged_open(ksa_staged_file *f, const char *path);
/* Appends n bytes (KSA_EIO naming the file). */
ksa_status ksa_staged_write(ksa_staged_file *f, const void *data, size_t n);
/* Appends ids narrowed to dtype; narrow: scratch of n * 4 bytes. */
ksa_status ksa_staged_write_ids(ksa_staged_file *f, const int32_t *ids, size_t n, ksa_dtype dtype,
                                void *narrow);
/* Flushes, fsyncs and closes the .tmp file (KSA_EIO naming it). */
ksa_status ksa_staged_close(ksa_staged_file *f);
/* Renames files[order[0]], files[order[1]], ... (all closed) to their final names. */
ksa_status ksa_staged_commit(const ksa_staged_file *files, const int *order, size_t n);
/* Closes what is still open, removes the .tmp files if failed, frees the names. */
void ksa_staged_release(ksa_staged_file *files, size_t n, int failed);

#endif
