/* h5util.h - small helpers shared by the HDF5 code of src/ckpt (checkpoints, init-from,
 * inspect): error messages that name the file and carry HDF5's own reason, closing any
 * kind of id, quieting HDF5's automatic error printing, formatting shapes.               */
#ifndef KSA_CKPT_H5UTIL_H
#define KSA_CKPT_H5UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include <hdf5.h>

#include "core/core.h"

/* Records "checkpoint <path>: <message>", with the innermost message of HDF5's error stack
 * appended when h5 is set (the stack of the call that just failed), and returns code.   */
ksa_status ksa_h5_vfail(ksa_status code, const char *path, int h5, const char *fmt, va_list ap);
ksa_status ksa_h5_fail(ksa_status code, const char *path, int h5, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* After a failed H5* call (HDF5's reason appended). */
ksa_status ksa_h5_fail_h5(ksa_status code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* For content that was read but is wrong, or a failed system call (no HDF5 reason). */
ksa_status ksa_h5_fail_at(ksa_status code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Closes any open HDF5 id (id < 0: nothing); a failure becomes *st unless an error is
 * already recorded there (st may be NULL: failures are then ignored).               */
void ksa_h5_close(hid_t id, ksa_status *st, const char *path, const char *what);

/* Switches HDF5's automatic error printing off: errors are reported by ksa_h5_fail. */
void ksa_h5_quiet(void);

/* Opens the group at the absolute path `name` ("/optim/exp_avg"): *group = -1 and KSA_OK when
 * it does not exist and is not required; "no NAME group" when it is; an error when the object
 * is not a group. The caller closes *group (ksa_h5_close). */
ksa_status ksa_h5_open_group(const char *path, hid_t file, const char *name, int required,
                             hid_t *group);

/* ---- attribute values: the one reader of src/ckpt ---------------------------------------- */
typedef enum { KSA_H5_INT, KSA_H5_UINT, KSA_H5_FLOAT, KSA_H5_STRING, KSA_H5_OTHER } ksa_h5_kind;

/* The values of one attribute, decoded: integers of any width (INT signed, UINT unsigned) and
 * enums such as h5py's booleans (INT), floats of any width (as double), fixed-length (NUL- or
 * space-padded) and variable-length strings (as NUL-terminated text). */
typedef struct {
    ksa_h5_kind kind;
    int type_class;        /* the HDF5 type class (what OTHER is) */
    int single;            /* FLOAT stored in 4 bytes or fewer */
    int scalar_like;       /* a scalar, or a simple dataspace of exactly one element */
    int array;             /* a simple dataspace of n != 1 elements */
    size_t n;              /* values stored (0: a null dataspace) */
    size_t n_read;         /* values decoded below: n, or 0 when n > max_values or kind is OTHER */
    long long *i;          /* INT   [n_read] */
    unsigned long long *u; /* UINT  [n_read] */
    double *f;             /* FLOAT [n_read] */
    char **s;              /* STRING [n_read], each malloc'ed */
} ksa_h5_attr;

/* Reads attribute `name` of loc (`where` names loc in messages, e.g. "/train"), decoding at
 * most max_values values. Errors name the file, where and the attribute. */
ksa_status ksa_h5_attr_read(const char *path, hid_t loc, const char *where, const char *name,
                            size_t max_values, ksa_h5_attr *a);
void ksa_h5_attr_free(ksa_h5_attr *a);

/* The shortest decimal text that reads back as x in the stored precision (single: float32),
 * so a float32 1e-5 is "1e-05", not "9.9999997473787516e-06". */
void ksa_h5_format_real(char *out, size_t cap, double x, int single);

/* 1 if a dataset of this type holds numbers the readers load: floating point of 2, 4 or 8
 * bytes (float16 and bfloat16, float32, float64). HDF5 converts a float of any size, but a
 * damaged file's float of 4 GiB would have it allocate conversion buffers of that many bytes
 * an element. */
int ksa_h5_is_real(hid_t type);
#define KSA_H5_REAL_SIZES "2, 4 or 8 bytes"

/* "[64, 32]" into buf; returns buf. */
const char *ksa_h5_format_dims(char *buf, size_t cap, int ndim, const hsize_t *dims);

#endif
