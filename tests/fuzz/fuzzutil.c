/* fuzzutil.c - see fuzzutil.h. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH and FTW_PHYS */
#include "fuzzutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static FILE *report; /* fd 2 as it was at the start (libFuzzer's -close_fd_mask=2 closes it) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    int fd = dup(2);
    report = fd >= 0 ? fdopen(fd, "w") : NULL;
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    if (dir[0])
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
    if (dir[0])
        return dir;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ksa-fuzz-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", dir, strerror(errno));
        abort();
    }
    atexit(remove_dir);
    return dir;
}

char *fuzz_path(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", fuzz_dir(), name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "fuzz: path of '%s' too long\n", name);
        abort();
    }
    return out;
}

void fuzz_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

FILE *fuzz_devnull(void)
{
    static FILE *f;
    if (!f && !(f = fopen("/dev/null", "w"))) {
        fprintf(stderr, "fuzz: cannot open /dev/null: %s\n", strerror(errno));
        abort();
    }
    return f;
}

void fuzz_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    FILE *out = report ? report : stderr;
    va_list ap;
    va_start(ap, fmt);
    fprintf(out, "%s:%d: property failed: %s: ", file, line, expr);
    vfprintf(out, fmt, ap);
    fputc('\n', out);
    fflush(out);
    va_end(ap);
    abort();
}

uint8_t fuzz_byte(fuzz_input *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

uint16_t fuzz_u16(fuzz_input *in)
{
    uint16_t lo = fuzz_byte(in);
    return (uint16_t)(lo | fuzz_byte(in) << 8);
}

uint32_t fuzz_u32(fuzz_input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)fuzz_byte(in) << (8 * i);
    return v;
}

const uint8_t *fuzz_piece(fuzz_input *in, size_t max, size_t *len)
{
    size_t want = fuzz_byte(in) % (max + 1);
    *len = want < in->n ? want : in->n;
    const uint8_t *p = in->p;
    in->p += *len;
    in->n -= *len;
    return p;
}
