/* identity.h - what a run's data is, wherever it lies: the size in bytes and the XXH3-64
 * hash (libxxhash) of every byte of its token files. A checkpoint records the identity of
 * its training and validation data, so that a resume may name files that moved, but not
 * files whose content changed (docs/checkpoints.md, "Resuming").                        */
#ifndef KSA_DATA_IDENTITY_H
#define KSA_DATA_IDENTITY_H

#include <stddef.h>

#include "data/loader.h"
#include "data/tokfile.h"

#define KSA_IDENTITY_STR 96

/* "xxh3-64 0123456789abcdef, 123456 bytes": the whole mapped file. */
void ksa_tokfile_identity(const ksa_tokfile *f, char *out, size_t cap);

/* One file: its identity. A mixture: "mixture of N files, xxh3-64 H, B bytes", H the hash
 * of each source's weight and identity in the list's order, B the total size. */
void ksa_loader_identity(const ksa_loader *ld, char *out, size_t cap);

#endif
