/* path.c - see path.h. */
#include "path.h"

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

int ksa_path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
