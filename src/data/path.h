/* path.h - paths named inside a file (a mixture or configuration file) are relative to that
 * file's folder, not to the current directory, so a dataset folder can be moved as a whole. */
#ifndef KSA_DATA_PATH_H
#define KSA_DATA_PATH_H

#include "core/core.h"

/* `path` as seen from the current directory when it was written inside the file `base_file`:
 * unchanged if absolute or if base_file has no folder part, else "<folder of base_file>/path".
 * Returns a string from ksa_alloc (free with ksa_free).                                     */
char *ksa_path_resolve(const char *base_file, const char *path);

/* A new string "<a><b>" from ksa_alloc (free with ksa_free). */
char *ksa_path_concat(const char *a, const char *b);

/* The whole of the file at path into *bytes (ksa_alloc; a NUL follows the last byte, not
 * counted in *n). Read in blocks, so a pipe (`<(cmd)`) works as well as a regular file.
 * max_bytes > 0: a longer file is KSA_EFORMAT. Errors name the file as "<what> '<path>'"
 * ("cannot read prompt file 'p.txt': No such file or directory"); *bytes is then NULL.   */
ksa_status ksa_path_read_all(const char *path, const char *what, size_t max_bytes, char **bytes,
                             size_t *n);

/* 1 if path names an existing regular file (symlinks followed), else 0. */
int ksa_path_is_file(const char *path);

/* Creates the folder dir and its parents (mkdir -p); `what` names it in the error
 * ("the checkpoint folder"). */
ksa_status ksa_path_make_dirs(const char *dir, const char *what);

/* Creates the folder that will hold the file `path` (nothing when path has no folder part). */
ksa_status ksa_path_make_parent(const char *path, const char *what);

#endif
