/* staged.c - output files written as .tmp and renamed into place together (staged.h). */
#include "staged.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "data/path.h"

ksa_status ksa_staged_open(ksa_staged_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->path = ksa_path_concat(path, "");
    f->tmp = ksa_path_concat(path, ".tmp");
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp)
        return ksa_fail(KSA_EIO, "cannot create '%s': %s", f->tmp, strerror(errno));
    return KSA_OK;
}

ksa_status ksa_staged_write(ksa_staged_file *f, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, f->fp) != n)
        return ksa_fail(KSA_EIO, "cannot write '%s': %s", f->tmp, strerror(errno));
    return KSA_OK;
}

ksa_status ksa_staged_write_ids(ksa_staged_file *f, const int32_t *ids, size_t n, ksa_dtype dtype,
                                void *narrow)
{
    if (dtype == KSA_DTYPE_UINT16) {
        uint16_t *t = narrow;
        for (size_t i = 0; i < n; i++)
            t[i] = (uint16_t)ids[i];
    } else {
        uint32_t *t = narrow;
        for (size_t i = 0; i < n; i++)
            t[i] = (uint32_t)ids[i];
    }
    KSA_TRY(ksa_staged_write(f, narrow, n * ksa_tokfile_dtype_bytes(dtype)));
    f->n_tokens += n;
    return KSA_OK;
}

ksa_status ksa_staged_close(ksa_staged_file *f)
{
    int bad = fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0;
    int err = errno;
    bad |= fclose(f->fp) != 0;
    f->fp = NULL;
    if (bad)
        return ksa_fail(KSA_EIO, "cannot write '%s': %s", f->tmp, strerror(err));
    return KSA_OK;
}

ksa_status ksa_staged_commit(const ksa_staged_file *files, const int *order, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const ksa_staged_file *f = &files[order[k]];
        if (rename(f->tmp, f->path) != 0)
            return ksa_fail(KSA_EIO, "cannot rename '%s' to '%s': %s", f->tmp, f->path,
                            strerror(errno));
    }
    return KSA_OK;
}

void ksa_staged_release(ksa_staged_file *files, size_t n, int failed)
{
    for (size_t k = 0; k < n; k++) {
        if (files[k].fp)
            fclose(files[k].fp);
        if (failed && files[k].tmp)
            unlink(files[k].tmp); /* nothing half-written stays behind */
        ksa_free(files[k].tmp), ksa_free(files[k].path);
        memset(&files[k], 0, sizeof files[k]);
    }
}
