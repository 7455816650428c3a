/* path.c - see path.h. */
#include "path.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"

char *ksa_path_concat(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = ksa_alloc(na + nb + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
    return s;
}

char *ksa_path_resolve(const char *base_file, const char *path)
{
    const char *slash = strrchr(base_file, '/');
    if (path[0] == '/' || !slash)
        return ksa_path_concat(path, "");
    size_t nd = (size_t)(slash - base_file) + 1; /* folder with its trailing '/' */
    size_t np = strlen(path);
    char *s = ksa_alloc(nd + np + 1);
    memcpy(s, base_file, nd);
    memcpy(s + nd, path, np + 1);
    return s;
}

ksa_status ksa_path_read_all(const char *path, const char *what, size_t max_bytes, char **bytes,
                             size_t *n)
{
    *bytes = NULL;
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ksa_fail(KSA_EIO, "cannot read %s '%s': %s", what, path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = ksa_alloc(cap);
    ksa_status st = KSA_OK;
    for (;;) {
        if (len + 1 == cap) { /* double: copy into a new buffer (no realloc in this code base) */
            char *bigger = ksa_alloc(2 * cap);
            memcpy(bigger, buf, len);
            ksa_free(buf);
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, fp);
        len += got;
        if (max_bytes && len > max_bytes) {
            st = ksa_fail(KSA_EFORMAT, "%s '%s' is larger than %zu bytes", what, path, max_bytes);
            break;
        }
        if (got == 0)
            break;
    }
    int failed = ferror(fp), err = errno;
    fclose(fp);
    if (st == KSA_OK && failed)
        st = ksa_fail(KSA_EIO, "cannot read %s '%s': %s", what, path,
                      err ? strerror(err) : "read error");
    if (st != KSA_OK) {
        ksa_free(buf);
        return st;
    }
    buf[len] = '\0';
    *bytes = buf;
    *n = len;
    return KSA_OK;
}

int ksa_path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

ksa_status ksa_path_make_dirs(const char *dir, const char *what)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return ksa_fail(KSA_EINVAL, "%s '%s': path too long", what, dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755); /* an error shows at the last level */
            *p = '/';
        }
    struct stat sb;
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ksa_fail(KSA_EIO, "cannot create %s '%s': %s", what, dir, strerror(errno));
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ksa_fail(KSA_EIO, "%s '%s' is not a folder", what, dir);
    return KSA_OK;
}

ksa_status ksa_path_make_parent(const char *path, const char *what)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return KSA_OK;
    char buf[4096];
    snprintf(buf, sizeof buf, "%.*s", (int)(slash - path), path);
    return ksa_path_make_dirs(buf, what);
}
