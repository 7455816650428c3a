/* h5util.c - see h5util.h. */
#include "h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int ksa_h5_is_real(hid_t type)
{
    size_t size = H5Tget_size(type);
    return H5Tget_class(type) == H5T_FLOAT && (size == 2 || size == 4 || size == 8);
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

ksa_status ksa_h5_open_group(const char *path, hid_t file, const char *name, int required,
                             hid_t *group)
{
    *group = -1;
    htri_t has = H5Lexists(file, name, H5P_DEFAULT);
    if (has < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot look up %s", name);
    if (!has)
        return required ? ksa_h5_fail_at(KSA_EFORMAT, path, "no %s group", name) : KSA_OK;
    hid_t obj = H5Oopen(file, name, H5P_DEFAULT);
    if (obj < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot open %s", name);
    if (H5Iget_type(obj) != H5I_GROUP) {
        ksa_h5_close(obj, NULL, "", "");
        return ksa_h5_fail_at(KSA_EFORMAT, path, "%s is not a group", name);
    }
    *group = obj;
    return KSA_OK;
}

/* ---- attribute values ----------------------------------------------------------------------- */
void ksa_h5_format_real(char *out, size_t cap, double x, int single)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        double y = strtod(out, NULL);
        if (single ? (float)y == (float)x : y == x)
            return;
    }
}

/* Integers as long long (unsigned: unsigned long long); enums do not convert to integers:
 * read in the native enum type, then convert its base type (at most 8 bytes an element). */
static herr_t read_integers(hid_t attr, hid_t ftype, ksa_h5_attr *a)
{
    size_t n = a->n_read;
    if (a->kind == KSA_H5_UINT) {
        a->u = calloc(n, sizeof *a->u);
        KSA_ASSERT(a->u, "out of memory for %zu values", n);
        return H5Aread(attr, H5T_NATIVE_ULLONG, a->u);
    }
    a->i = calloc(n, sizeof *a->i);
    KSA_ASSERT(a->i, "out of memory for %zu values", n);
    if (a->type_class == H5T_INTEGER)
        return H5Aread(attr, H5T_NATIVE_LLONG, a->i);
    hid_t mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND), base = -1;
    herr_t rc = 0;
    if (mtype < 0 || (base = H5Tget_super(mtype)) < 0 || H5Tget_size(mtype) > 8 ||
        H5Aread(attr, mtype, a->i) < 0 ||
        H5Tconvert(base, H5T_NATIVE_LLONG, n, a->i, NULL, H5P_DEFAULT) < 0)
        rc = -1;
    ksa_h5_close(base, NULL, "", "");
    ksa_h5_close(mtype, NULL, "", "");
    return rc;
}

/* Variable- or fixed-length strings; a fixed-length one, NUL- or space-padded, loses its
 * padding in the conversion to a NUL-terminated type one byte longer. */
static herr_t read_strings(hid_t attr, hid_t ftype, hid_t space, ksa_h5_attr *a)
{
    size_t n = a->n_read;
    htri_t var = H5Tis_variable_str(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);
    size_t fsize = H5Tget_size(ftype);
    hid_t mtype = H5Tcopy(H5T_C_S1);
    herr_t rc = -1;
    a->s = calloc(n, sizeof *a->s);
    KSA_ASSERT(a->s, "out of memory for %zu strings", n);
    if (var < 0 || cset < 0 || fsize == 0 || mtype < 0 || H5Tset_cset(mtype, cset) < 0) {
        ksa_h5_close(mtype, NULL, "", "");
        return -1;
    }
    if (var) {
        char **v = calloc(n, sizeof *v);
        KSA_ASSERT(v, "out of memory for %zu strings", n);
        if (H5Tset_size(mtype, H5T_VARIABLE) >= 0 && (rc = H5Aread(attr, mtype, v)) >= 0) {
            for (size_t k = 0; k < n; k++) {
                a->s[k] = strdup(v[k] ? v[k] : "");
                KSA_ASSERT(a->s[k], "out of memory copying a string attribute");
            }
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, v);
        }
        free(v);
    } else {
        char *buf = calloc(n, fsize + 1);
        KSA_ASSERT(buf, "out of memory for %zu strings of %zu bytes", n, fsize);
        if (H5Tset_size(mtype, fsize + 1) >= 0 && H5Tset_strpad(mtype, H5T_STR_NULLTERM) >= 0 &&
            (rc = H5Aread(attr, mtype, buf)) >= 0)
            for (size_t k = 0; k < n; k++) {
                a->s[k] = strdup(buf + k * (fsize + 1));
                KSA_ASSERT(a->s[k], "out of memory copying a string attribute");
            }
        free(buf);
    }
    ksa_h5_close(mtype, NULL, "", "");
    return rc;
}

ksa_status ksa_h5_attr_read(const char *path, hid_t loc, const char *where, const char *name,
                            size_t max_values, ksa_h5_attr *a)
{
    memset(a, 0, sizeof *a);
    ksa_status st = KSA_OK;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT), space = -1, ftype = -1;
    if (attr < 0 || (space = H5Aget_space(attr)) < 0 || (ftype = H5Aget_type(attr)) < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot open %s attribute '%s'", where, name);
        goto done;
    }
    H5S_class_t sclass = H5Sget_simple_extent_type(space);
    hssize_t npoints = H5Sget_simple_extent_npoints(space);
    if (sclass == H5S_NO_CLASS || npoints < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot read the dataspace of %s attribute '%s'",
                            where, name);
        goto done;
    }
    a->n = sclass == H5S_NULL ? 0 : (size_t)npoints;
    a->scalar_like = sclass == H5S_SCALAR || (sclass == H5S_SIMPLE && a->n == 1);
    a->array = sclass == H5S_SIMPLE && a->n != 1;
    a->type_class = (int)H5Tget_class(ftype);
    switch (a->type_class) {
    case H5T_INTEGER:
        a->kind = H5Tget_sign(ftype) == H5T_SGN_NONE ? KSA_H5_UINT : KSA_H5_INT;
        break;
    case H5T_ENUM:
        a->kind = KSA_H5_INT;
        break;
    case H5T_FLOAT:
        a->kind = KSA_H5_FLOAT;
        a->single = H5Tget_size(ftype) <= 4;
        break;
    case H5T_STRING:
        a->kind = KSA_H5_STRING;
        break;
    default:
        a->kind = KSA_H5_OTHER;
    }
    a->n_read = a->kind == KSA_H5_OTHER || a->n > max_values ? 0 : a->n;
    if (a->n_read == 0)
        goto done;
    herr_t rc;
    if (a->kind == KSA_H5_FLOAT) {
        a->f = calloc(a->n_read, sizeof *a->f);
        KSA_ASSERT(a->f, "out of memory for %zu values", a->n_read);
        rc = H5Aread(attr, H5T_NATIVE_DOUBLE, a->f);
    } else if (a->kind == KSA_H5_STRING) {
        rc = read_strings(attr, ftype, space, a);
    } else {
        rc = read_integers(attr, ftype, a);
    }
    if (rc < 0)
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot read %s attribute '%s'", where, name);
done:
    ksa_h5_close(ftype, &st, path, name);
    ksa_h5_close(space, &st, path, name);
    ksa_h5_close(attr, &st, path, name);
    if (st != KSA_OK)
        ksa_h5_attr_free(a);
    return st;
}

void ksa_h5_attr_free(ksa_h5_attr *a)
{
    for (size_t k = 0; a->s && k < a->n_read; k++)
        free(a->s[k]);
    free(a->s), free(a->i), free(a->u), free(a->f);
    a->s = NULL, a->i = NULL, a->u = NULL, a->f = NULL;
}
