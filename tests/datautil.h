/* datautil.h - helpers for the data tests (test_tokenizer, test_tokfile, test_mixture,
 * test_loader, test_prepare): a temporary folder per test, writing small files, and
 * checking an error status and its message. Header-only (static inline) because the
 * Makefile links each test program with testutil.c alone.                                */
#ifndef KSA_TESTS_DATAUTIL_H
#define KSA_TESTS_DATAUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define DT_PATH_MAX 512

/* cmocka setup / teardown: *state becomes a fresh folder "/tmp/ksa_data_XXXXXX" (malloc'ed),
 * removed with everything in it afterwards.                                               */
static inline int dt_setup_dir(void **state)
{
    char *dir = malloc(DT_PATH_MAX);
    if (!dir)
        return -1;
    snprintf(dir, DT_PATH_MAX, "/tmp/ksa_data_XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static inline int dt_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return -1;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char child[DT_PATH_MAX];
            int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            if (n > 0 && n < DT_PATH_MAX)
                dt_remove_tree(child);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

static inline int dt_teardown_dir(void **state)
{
    int rc = dt_remove_tree((const char *)*state);
    free(*state);
    return rc;
}

/* out = dir "/" name (out: DT_PATH_MAX bytes) */
static inline char *dt_join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, DT_PATH_MAX, "%s/%s", dir, name);
    assert_true(n > 0 && n < DT_PATH_MAX);
    return out;
}

static inline void dt_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static inline void dt_write_str(const char *path, const char *s)
{
    dt_write(path, s, strlen(s));
}

/* A headerless token file of n ids in dtype 2 (uint16) or 4 (uint32) bytes, and, if meta
 * is not NULL, its .meta file holding meta.                                               */
static inline void dt_write_tokens(const char *path, const uint32_t *ids, size_t n, int bytes,
                                   const char *meta)
{
    unsigned char *buf = malloc(n * (size_t)bytes + 1);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < bytes; b++) /* little-endian, whatever the host */
            buf[i * (size_t)bytes + (size_t)b] = (unsigned char)(ids[i] >> (8 * b));
    dt_write(path, buf, n * (size_t)bytes);
    free(buf);
    if (meta) {
        char mp[DT_PATH_MAX];
        int len = snprintf(mp, sizeof mp, "%s.meta", path);
        assert_true(len > 0 && len < DT_PATH_MAX);
        dt_write_str(mp, meta);
    }
}

/* The whole file (malloc'ed); *n = its size. */
static inline unsigned char *dt_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static inline int dt_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in folder dir (not counting . and ..). */
static inline size_t dt_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* st must be the error code `want` and ksa_last_error() must contain every needle (a
 * NULL-terminated list); prints the message otherwise.                                    */
static inline void dt_expect_error_(ksa_status st, ksa_status want, const char *const *needles)
{
    if (st != want) {
        print_error("expected status '%s', got '%s'; message: %s\n", ksa_status_name(want),
                    ksa_status_name(st), ksa_last_error());
        fail();
    }
    for (const char *const *n = needles; *n; n++)
        if (!strstr(ksa_last_error(), *n)) {
            print_error("message \"%s\" does not contain \"%s\"\n", ksa_last_error(), *n);
            fail();
        }
}
#define dt_expect_error(st, want, ...)                                                             \
    do {                                                                                           \
        const char *const dt_needles_[] = {__VA_ARGS__, NULL};                                     \
        dt_expect_error_((st), (want), dt_needles_);                                               \
    } while (0)

#endif
