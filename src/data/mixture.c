/* mixture.c - the mixture list parser: see mixture.h. */
#include "mixture.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/path.h"

enum { MAX_FIELDS = 3 };

/* The whole file as a NUL-terminated string (ksa_alloc); NUL bytes inside are an error. Only a
 * regular file: a folder's size (ext4 reports 2^63 - 1 bytes from SEEK_END) would be asked
 * of the allocator, and opening a FIFO would wait for a writer (hence O_NONBLOCK).        */
static ksa_status read_text(const char *path, char **text)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return ksa_fail(KSA_EIO, "cannot open mixture file '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ksa_fail(KSA_EIO, "mixture file '%s' is not a regular file", path);
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        close(fd);
        return ksa_fail(KSA_EIO, "cannot open mixture file '%s': %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    char *s = ksa_alloc(size + 1);
    size_t got = fread(s, 1, size, fp);
    fclose(fp);
    if (got != size) {
        ksa_free(s);
        return ksa_fail(KSA_EIO, "cannot read mixture file '%s' (%zu of %zu bytes)", path, got,
                        size);
    }
    s[size] = 0;
    if (strlen(s) != size) {
        ksa_free(s);
        return ksa_fail(KSA_EFORMAT, "mixture file '%s' is not a text file (it holds a NUL byte)",
                        path);
    }
    *text = s;
    return KSA_OK;
}

/* Splits line (modified in place) into at most MAX_FIELDS + 1 fields, up to a comment. */
static size_t split_fields(char *line, char **fields)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#')
            return n;
        if (n < MAX_FIELDS + 1)
            fields[n] = p;
        n++;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (*p)
            *p++ = 0;
    }
}

/* Parses one non-blank line into src; `quoted` is the line as written, for messages. */
static ksa_status parse_line(const ksa_mixture *m, size_t line_no, char *line, const char *quoted,
                             ksa_mixture_source *src, int *skip)
{
    char *fields[MAX_FIELDS + 1];
    size_t n = split_fields(line, fields);
    *skip = n == 0;
    if (n == 0)
        return KSA_OK;
    if (n != 2 && n != 3)
        return ksa_fail(KSA_EFORMAT,
                        "mixture file '%s' line %zu: expected 'name weight path' or 'weight "
                        "path', found %zu field%s: \"%.160s\"",
                        m->list_path, line_no, n, n == 1 ? "" : "s", quoted);
    const char *w = fields[n - 2], *p = fields[n - 1];
    char *end = NULL;
    errno = 0;
    double weight = strtod(w, &end);
    if (errno || end == w || *end || !isfinite(weight) || weight <= 0)
        return ksa_fail(KSA_EFORMAT,
                        "mixture file '%s' line %zu: weight '%.40s' is not a positive number: "
                        "\"%.160s\"",
                        m->list_path, line_no, w, quoted);
    char *path = ksa_path_resolve(m->list_path, p);
    if (!ksa_path_is_file(path)) {
        char *with_bin = ksa_path_concat(path, ".bin");
        if (!ksa_path_is_file(with_bin)) {
            ksa_status st = ksa_fail(KSA_EIO,
                                     "mixture file '%s' line %zu: no token file '%s' or '%s': "
                                     "\"%.160s\"",
                                     m->list_path, line_no, path, with_bin, quoted);
            ksa_free(with_bin);
            ksa_free(path);
            return st;
        }
        ksa_free(path);
        path = with_bin;
    }
    src->name = ksa_path_concat(n == 3 ? fields[0] : p, "");
    src->weight = weight;
    src->path = path;
    src->line = line_no;
    return KSA_OK;
}

ksa_status ksa_mixture_read(ksa_mixture *m, const char *list_path)
{
    memset(m, 0, sizeof *m);
    char *text = NULL;
    KSA_TRY(read_text(list_path, &text));
    m->list_path = ksa_path_concat(list_path, "");
    size_t max_lines = 1;
    for (const char *c = text; *c; c++)
        max_lines += *c == '\n';
    m->sources = ksa_alloc_zero(max_lines * sizeof *m->sources);

    ksa_status st = KSA_OK;
    char *line = text;
    for (size_t line_no = 1; line && st == KSA_OK; line_no++) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') /* files written on Windows */
            line[--len] = 0;
        char *quoted = ksa_path_concat(line, "");
        int skip = 0;
        st = parse_line(m, line_no, line, quoted, &m->sources[m->n], &skip);
        if (st == KSA_OK && !skip)
            m->n++;
        ksa_free(quoted);
        line = nl ? nl + 1 : NULL;
    }
    if (st == KSA_OK && m->n == 0)
        st = ksa_fail(KSA_EFORMAT,
                      "mixture file '%s' lists no sources (expected lines "
                      "'name weight path' or 'weight path')",
                      list_path);
    ksa_free(text);
    if (st != KSA_OK)
        ksa_mixture_free(m);
    return st;
}

void ksa_mixture_free(ksa_mixture *m)
{
    for (size_t i = 0; i < m->n; i++) {
        ksa_free(m->sources[i].name);
        ksa_free(m->sources[i].path);
    }
    ksa_free(m->sources);
    ksa_free(m->list_path);
    memset(m, 0, sizeof *m);
}
