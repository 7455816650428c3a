/* verify.h - a checkpoint is checked whole before any reader trusts it (CHECKPOINT_FORMAT.md,
 * "Integrity").
 *
 * Files of format_version 2 carry a checksum of every dataset (ksa_ckpt_checksum_add below)
 * and are written with HDF5's newest file-format bounds, whose metadata (superblock, object
 * headers, B-trees, heaps) HDF5 itself checksums; strings are fixed-length (no global heap).
 * So a damaged byte is either in metadata, which HDF5 refuses, or in raw data, which the
 * dataset's checksum refuses, or in no object at all.
 *
 * HDF5 1.10 can still crash or loop on some damaged files. ksa_ckpt_verify therefore reads the
 * file in a forked child: every object, every attribute, every dataset in full against its
 * checksum. A crash or a hang of the child becomes one clear error in the caller; only a file
 * that the child read without fault is opened by the caller's own HDF5. A file verified once
 * is remembered (device, inode, size, modification time) and not read again.             */
#ifndef KSA_CKPT_VERIFY_H
#define KSA_CKPT_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hdf5.h>

#include "core/core.h"
#include "core/rng.h"

/* The checksum of a dataset of n float32 elements x_0 .. x_{n-1} (row-major) is
 *   sum over i of mix64((i << 32) + bits(x_i))  (mod 2^64)
 * with bits(x) the IEEE-754 bit pattern of x as an unsigned 32-bit integer and mix64 the
 * SplitMix64 finaliser (core/rng.h). A sum of independent terms: every rank adds the terms of
 * the elements it writes and the partial sums add up (mod 2^64) to the dataset's; mix64 is a
 * bijection, so a change of any single element always changes the sum.                   */
static inline uint64_t ksa_ckpt_checksum_term(uint64_t index, float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return ksa_mix64((index << 32) + bits);
}

/* A uint8 dataset (/tokenizer/tokenizer.json) is checksummed the same way with bits(x) the
 * byte's value: sum over i of mix64((i << 32) + b_i). */
static inline uint64_t ksa_ckpt_checksum_byte_term(uint64_t index, unsigned char b)
{
    return ksa_mix64((index << 32) + b);
}
uint64_t ksa_ckpt_checksum_bytes(const unsigned char *b, size_t n, uint64_t first_index);

/* The partial checksum of n elements, the first at dataset index first_index. */
uint64_t ksa_ckpt_checksum_floats(const float *x, size_t n, uint64_t first_index);
uint64_t ksa_ckpt_checksum_doubles(const double *x, size_t n, uint64_t first_index);

/* Checks the file at path (in a forked child; see above): every object and attribute, and
 * with read_data every dataset's values against its checksum (without it, only that each
 * dataset of a version-2 file has one: what readers of attributes alone need, fast for any
 * size). KSA_OK, or an error naming the file and what is wrong ("damaged: dataset /params/x
 * does not match its checksum", "damaged: reading it crashed HDF5 (Segmentation fault)"). */
ksa_status ksa_ckpt_verify(const char *path, int read_data);

/* Opens a checkpoint (any HDF5 file) read-only after ksa_ckpt_verify(path, read_data);
 * errors say whether it is missing, not a regular file, not HDF5 or damaged. The caller
 * closes *file.                                                                            */
ksa_status ksa_ckpt_open_verified(const char *path, int read_data, hid_t *file);

#endif
