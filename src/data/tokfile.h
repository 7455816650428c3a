/* tokfile.h - token files, memory-mapped read-only (docs/data.md has the formats).
 *
 * Two formats:
 *   headerless  raw little-endian uint16 or uint32 ids (KSA's `<prefix>.bin`); the dtype comes
 *               from the sibling `<file>.meta` (a text file holding just "uint16" or "uint32",
 *               surrounding whitespace allowed) or from an explicit dtype (`--dtype`);
 *   llm.c       a header of 256 little-endian int32 (magic 20240520, version 1, token count,
 *               the rest unused) followed by that many uint16 ids.
 * Detection: a .meta file or an explicit dtype means headerless; otherwise the file must
 * start with the llm.c magic; otherwise ksa_tokfile_open fails saying so.
 *
 * Everything is checked at open, once, so that reading later cannot fail: size, header,
 * and every id (< vocab_size; the whole file is scanned). All problems are KSA_EIO /
 * KSA_EFORMAT / KSA_EINVAL statuses whose message names the file.                          */
#ifndef KSA_DATA_TOKFILE_H
#define KSA_DATA_TOKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token files are little-endian and read in place: ksa.c needs a little-endian host"
#endif

typedef enum {
    KSA_DTYPE_AUTO = 0, /* not given: from <file>.meta, else the llm.c header */
    KSA_DTYPE_UINT16,
    KSA_DTYPE_UINT32,
} ksa_dtype;

typedef enum { KSA_TOKFILE_HEADERLESS, KSA_TOKFILE_LLMC } ksa_tokfile_format;

#define KSA_LLMC_MAGIC 20240520
#define KSA_LLMC_VERSION 1
#define KSA_LLMC_HEADER_INTS 256

typedef struct {
    char *path; /* owned copy of the path it was opened with */
    ksa_tokfile_format format;
    ksa_dtype dtype; /* UINT16 or UINT32 (llm.c files: UINT16) */
    size_t n_tokens;
    const unsigned char *map; /* owned read-only mapping of the whole file */
    size_t map_bytes;
    const unsigned char *tokens; /* borrowed: map + header bytes; n_tokens ids of dtype */
    /* The tokenizer that made the ids: the first word of the sibling <file>.tokenizer
     * (`ksa prepare` writes "byte"), or "unknown" without one (llm.c headers do not say). */
    char tokenizer[32];
} ksa_tokfile;

/* "uint16" / "uint32" -> dtype; anything else is KSA_EINVAL naming the known ones. */
ksa_status ksa_tokfile_parse_dtype(const char *s, ksa_dtype *dtype);
const char *ksa_tokfile_dtype_name(ksa_dtype dtype);
size_t ksa_tokfile_dtype_bytes(ksa_dtype dtype);

/* Opens and validates path. dtype: KSA_DTYPE_AUTO, or the dtype of a headerless file (when
 * a .meta file exists too it must agree). 1 <= vocab_size <= 2^31: every id must be below it; the
 * first offending id is reported with its token index and byte offset. On failure *f is
 * left closed (nothing to free).                                                          */
ksa_status ksa_tokfile_open(ksa_tokfile *f, const char *path, ksa_dtype dtype, size_t vocab_size);
void ksa_tokfile_close(ksa_tokfile *f);

/* Token i (i < n_tokens). */
static inline uint32_t ksa_tokfile_get(const ksa_tokfile *f, size_t i)
{
    KSA_ASSERT(i < f->n_tokens, "token %zu of '%s', which holds %zu", i, f->path, f->n_tokens);
    if (f->dtype == KSA_DTYPE_UINT16)
        return ((const uint16_t *)(const void *)f->tokens)[i];
    return ((const uint32_t *)(const void *)f->tokens)[i];
}

/* out[j] = token start + j for j < n (start + n <= n_tokens).   out: [n] */
void ksa_tokfile_read(const ksa_tokfile *f, int32_t *out, size_t start, size_t n);

#endif
