/* safetensors.h - reading and writing safetensors files (Hugging Face's weight format).
 *
 * A file is: 8 bytes, little-endian unsigned N (the header's length); N bytes of UTF-8 JSON,
 * an object mapping each tensor's name to {"dtype": "F32", "shape": [d0, ...],
 * "data_offsets": [begin, end]} plus an optional "__metadata__" object of string values
 * (possibly padded with trailing spaces); then the raw data. Offsets are relative to the end
 * of the header; every tensor's bytes are little-endian and row-major, end - begin is the
 * element count times the dtype's width, and the tensors tile the data exactly: no holes,
 * no overlaps, nothing after the last one. The reader checks all of it against the file's
 * size before it trusts an offset (errors name the file and the tensor).
 *
 * The reader maps the file (mmap) and converts one tensor at a time to float32, then drops
 * that tensor's pages (madvise): importing a model never holds more than one tensor of the
 * file in memory beyond the float32 copy it builds (docs/interop.md, "Memory").           */
#ifndef KSA_INTEROP_SAFETENSORS_H
#define KSA_INTEROP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define KSA_ST_MAX_HEADER (100u << 20) /* header bytes accepted (the format's own limit) */
#define KSA_ST_MAX_DIMS 8

/* The dtypes of the format. Only the floating-point ones convert to float32. */
typedef enum {
    KSA_ST_F64,
    KSA_ST_F32,
    KSA_ST_F16,
    KSA_ST_BF16,
    KSA_ST_OTHER, /* a valid safetensors dtype that holds no floats we convert (I64, U8...) */
} ksa_st_dtype;

typedef struct {
    char *name; /* owned */
    ksa_st_dtype dtype;
    char dtype_name[16]; /* as in the header: "BF16" */
    int ndim;
    size_t shape[KSA_ST_MAX_DIMS];
    size_t numel;
    size_t begin, end; /* bytes, relative to the start of the data */
} ksa_st_tensor;

typedef struct {
    char *path; /* owned */
    int fd;
    const unsigned char *map; /* the whole file, read-only (NULL for an empty mapping) */
    size_t size;              /* bytes of the file */
    size_t data_start;        /* 8 + header length */
    ksa_st_tensor *tensors;   /* owned, sorted by begin */
    size_t n;
} ksa_st_file;

/* Opens and maps path, parses and checks its header. Errors name the file. */
ksa_status ksa_st_open(ksa_st_file *f, const char *path);
void ksa_st_close(ksa_st_file *f);

/* Index of the tensor called name, or -1. */
long ksa_st_find(const ksa_st_file *f, const char *name);

/* Elements [first, first + n) of tensor i (row-major) converted to float32 into out[n] (F32
 * copied, F16 and BF16 widened exactly, F64 rounded to nearest); other dtypes are an error
 * naming the tensor. Those pages of the mapping are released afterwards.                 */
ksa_status ksa_st_read_f32(ksa_st_file *f, size_t i, size_t first, size_t n, float *out);

/* The width in bytes of a dtype name of the format ("BF16" -> 2), 0 if it is not one. */
size_t ksa_st_dtype_width(const char *name);

/* ---- conversions (round to nearest, ties to even; NaN stays NaN, inf stays inf) -------- */
uint16_t ksa_f32_to_bf16(float x);
float ksa_bf16_to_f32(uint16_t h);
uint16_t ksa_f32_to_f16(float x); /* subnormal halves as needed, overflow to inf */
float ksa_f16_to_f32(uint16_t h);

/* ---- writing ------------------------------------------------------------------------- */
typedef struct {
    const char *name;   /* borrowed */
    ksa_st_dtype dtype; /* F32, F16 or BF16 */
    int ndim;
    size_t shape[2];
} ksa_st_entry;

/* Supplies tensor i's values as float32 into out[numel] (the writer converts them). */
typedef ksa_status (*ksa_st_source)(void *ctx, size_t i, float *out);

/* Writes a safetensors file of the n entries, in order, their values from source, the header
 * padded with spaces to a multiple of 8 bytes, with "__metadata__": {"format": "pt"}. The
 * file is written to path exactly (callers choose a temporary name and rename). One tensor
 * at a time is held in memory. */
ksa_status ksa_st_write(const char *path, const ksa_st_entry *e, size_t n, ksa_st_source source,
                        void *ctx);

/* The bytes a tensor of this entry takes in a file. */
size_t ksa_st_entry_bytes(const ksa_st_entry *e);

#endif
