/* h5util.c - see h5util.h. */
#include "h5util.h"

#include <stdio.h>

static herr_t grab_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    if (n == 0 && e->desc) /* walking upward, entry 0 is the most specific error */
        snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

ksa_status ksa_h5_vfail(ksa_status code, const char *path, int h5, const char *fmt, va_list ap)
{
    char msg[768], reason[256] = "";
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (h5) {
        H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, grab_innermost, reason);
        H5Eclear2(H5E_DEFAULT);
    }
    if (reason[0])
        return ksa_fail(code, "checkpoint %s: %s (HDF5: %s)", path, msg, reason);
    return ksa_fail(code, "checkpoint %s: %s", path, msg);
}

ksa_status ksa_h5_fail(ksa_status code, const char *path, int h5, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ksa_status st = ksa_h5_vfail(code, path, h5, fmt, ap);
    va_end(ap);
    return st;
}

ksa_status ksa_h5_fail_h5(ksa_status code, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ksa_status st = ksa_h5_vfail(code, path, 1, fmt, ap);
    va_end(ap);
    return st;
}

ksa_status ksa_h5_fail_at(ksa_status code, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ksa_status st = ksa_h5_vfail(code, path, 0, fmt, ap);
    va_end(ap);
    return st;
}

void ksa_h5_close(hid_t id, ksa_status *st, const char *path, const char *what)
{
    if (id < 0)
        return;
    herr_t rc;
    switch (H5Iget_type(id)) {
    case H5I_FILE:
        rc = H5Fclose(id);
        break;
    case H5I_GROUP:
        rc = H5Gclose(id);
        break;
    case H5I_DATATYPE:
        rc = H5Tclose(id);
        break;
    case H5I_DATASPACE:
        rc = H5Sclose(id);
        break;
    case H5I_DATASET:
        rc = H5Dclose(id);
        break;
    case H5I_ATTR:
        rc = H5Aclose(id);
        break;
    case H5I_GENPROP_LST:
        rc = H5Pclose(id);
        break;
    default:
        rc = H5Idec_ref(id) < 0 ? -1 : 0;
        break;
    }
    if (rc < 0 && st && *st == KSA_OK)
        *st = ksa_h5_fail(KSA_EIO, path, 1, "cannot close %s", what);
}

void ksa_h5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

const char *ksa_h5_format_dims(char *buf, size_t cap, int ndim, const hsize_t *dims)
{
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%llu", i ? ", " : "",
                                (unsigned long long)dims[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
    return buf;
}
