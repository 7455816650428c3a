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

/* "[64, 32]" into buf; returns buf. */
const char *ksa_h5_format_dims(char *buf, size_t cap, int ndim, const hsize_t *dims);

#endif
