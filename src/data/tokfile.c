/* tokfile.c - memory-mapped token files: detection, validation at open, reads. See tokfile.h. */
#include "tokfile.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/path.h"

static const char *const dtype_names[] = {
    [KSA_DTYPE_AUTO] = "auto", [KSA_DTYPE_UINT16] = "uint16", [KSA_DTYPE_UINT32] = "uint32"};

const char *ksa_tokfile_dtype_name(ksa_dtype dtype)
{
    return (dtype >= KSA_DTYPE_AUTO && dtype <= KSA_DTYPE_UINT32) ? dtype_names[dtype] : "?";
}

size_t ksa_tokfile_dtype_bytes(ksa_dtype dtype)
{
    KSA_ASSERT(dtype == KSA_DTYPE_UINT16 || dtype == KSA_DTYPE_UINT32, "dtype %d has no size",
               (int)dtype);
    return dtype == KSA_DTYPE_UINT16 ? 2 : 4;
}

ksa_status ksa_tokfile_parse_dtype(const char *s, ksa_dtype *dtype)
{
    if (!strcmp(s, "uint16"))
        *dtype = KSA_DTYPE_UINT16;
    else if (!strcmp(s, "uint32"))
        *dtype = KSA_DTYPE_UINT32;
    else
        return ksa_fail(KSA_EINVAL, "unknown dtype '%.40s' (known: uint16, uint32)", s);
    return KSA_OK;
}

/* Reads the dtype word of <path>.meta into *dtype; *dtype stays KSA_DTYPE_AUTO if there is
 * no .meta file. Its first line holds the word (the byte tokenizer's files: nothing else, no
 * newline); further lines ("tokenizer bpe-...", written with a BPE tokenizer) are notes for
 * people, not read.                                                                       */
static ksa_status read_meta(const char *path, ksa_dtype *dtype)
{
    char *meta = ksa_path_concat(path, ".meta");
    ksa_status st = KSA_OK;
    if (!ksa_path_is_file(meta))
        goto done;
    FILE *fp = fopen(meta, "rb");
    if (!fp) {
        st = ksa_fail(KSA_EIO, "cannot open '%s': %s", meta, strerror(errno));
        goto done;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        st = ksa_fail(KSA_EIO, "cannot read '%s'", meta);
        goto done;
    }
    buf[n] = 0;
    char *eol = memchr(buf, '\n', n);
    if (eol && eol[1]) /* notes follow the first line */
        n = (size_t)(eol - buf), buf[n] = 0;
    int has_nul = strlen(buf) != n;
    char *word = buf;
    while (*word && isspace((unsigned char)*word))
        word++;
    size_t len = strlen(word);
    while (len && isspace((unsigned char)word[len - 1]))
        word[--len] = 0;
    if (has_nul || ksa_tokfile_parse_dtype(word, dtype) != KSA_OK)
        st = ksa_fail(KSA_EFORMAT,
                      "'%s' holds '%.40s', an unknown dtype: it should hold just 'uint16' or "
                      "'uint32' (the dtype of the headerless token file '%s')",
                      meta, word, path);
done:
    ksa_free(meta);
    return st;
}

/* The name in <path>.tokenizer into out ("unknown" when there is no such file): its first
 * word, printable ASCII characters up to whitespace or the end, at most cap - 1 of them
 * (the rest of the file is not read). Anything else (no word, a NUL or control byte in the
 * word or right after it, a longer word) is an error: it would be recorded in checkpoints
 * as the data's tokenizer and compared with other names.                                 */
static ksa_status read_tokenizer_name(const char *path, char *out, size_t cap)
{
    char *side = ksa_path_concat(path, ".tokenizer");
    ksa_status st = KSA_OK;
    snprintf(out, cap, "unknown");
    if (!ksa_path_is_file(side))
        goto done;
    FILE *fp = fopen(side, "rb");
    if (!fp) {
        st = ksa_fail(KSA_EIO, "cannot open '%s': %s", side, strerror(errno));
        goto done;
    }
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf, fp);
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        st = ksa_fail(KSA_EIO, "cannot read '%s'", side);
        goto done;
    }
    size_t start = 0, end;
    while (start < n && isspace((unsigned char)buf[start]))
        start++;
    for (end = start; end < n && isgraph((unsigned char)buf[end]); end++)
        ;
    int cut = end == n && n == sizeof buf; /* the word may go on past what was read */
    if (end == start || end - start >= cap || cut ||
        (end < n && !isspace((unsigned char)buf[end]))) {
        st = ksa_fail(KSA_EFORMAT,
                      "'%s' does not hold a tokenizer name (one word of at most %zu printable "
                      "ASCII characters, such as 'byte'; the tokenizer of the token file '%s')",
                      side, cap - 1, path);
        goto done;
    }
    snprintf(out, cap, "%.*s", (int)(end - start), buf + start);
done:
    ksa_free(side);
    return st;
}

/* Checks the llm.c header of a mapped file and sets the token count. */
static ksa_status check_llmc_header(ksa_tokfile *f)
{
    const size_t header_bytes = KSA_LLMC_HEADER_INTS * sizeof(int32_t);
    int32_t h[3] = {0, 0, 0};
    memcpy(h, f->map, f->map_bytes < sizeof h ? f->map_bytes : sizeof h);
    if (f->map_bytes < sizeof h[0] || h[0] != KSA_LLMC_MAGIC)
        return ksa_fail(KSA_EFORMAT,
                        "token file '%s': no dtype given (no '%s.meta' file, no --dtype) and it "
                        "is not an llm.c file (it does not start with the magic number %d; "
                        "found %d). Write 'uint16' or 'uint32' into '%s.meta' or pass --dtype.",
                        f->path, f->path, KSA_LLMC_MAGIC, (int)h[0], f->path);
    if (f->map_bytes < header_bytes)
        return ksa_fail(KSA_EFORMAT,
                        "llm.c token file '%s' has %zu bytes, less than its %zu-byte header",
                        f->path, f->map_bytes, header_bytes);
    if (h[1] != KSA_LLMC_VERSION)
        return ksa_fail(KSA_EFORMAT,
                        "llm.c token file '%s' has header version %d; only version %d "
                        "(uint16 tokens) is supported",
                        f->path, (int)h[1], KSA_LLMC_VERSION);
    size_t data_bytes = f->map_bytes - header_bytes;
    if (h[2] <= 0 || (size_t)h[2] * 2 != data_bytes)
        return ksa_fail(KSA_EFORMAT,
                        "llm.c token file '%s': its header says %d tokens (%lld bytes after the "
                        "header) but the file has %zu bytes after the header",
                        f->path, (int)h[2], 2LL * h[2], data_bytes);
    f->format = KSA_TOKFILE_LLMC;
    f->dtype = KSA_DTYPE_UINT16;
    f->tokens = f->map + header_bytes;
    f->n_tokens = (size_t)h[2];
    return KSA_OK;
}

/* Index of the first id >= vocab_size, or n if none. Blocks are screened by their maximum
 * (a loop the compiler vectorises); only a block holding a bad id is searched in order.   */
#define SCAN_BLOCK 65536
#define DEFINE_FIRST_BAD(name, type)                                                               \
    static size_t name(const type *t, size_t n, uint64_t vocab_size)                               \
    {                                                                                              \
        for (size_t b = 0; b < n; b += SCAN_BLOCK) {                                               \
            size_t e = n - b < SCAN_BLOCK ? n : b + SCAN_BLOCK;                                    \
            type m = 0;                                                                            \
            for (size_t i = b; i < e; i++)                                                         \
                m = t[i] > m ? t[i] : m;                                                           \
            if ((uint64_t)m < vocab_size)                                                          \
                continue;                                                                          \
            for (size_t i = b; i < e; i++)                                                         \
                if ((uint64_t)t[i] >= vocab_size)                                                  \
                    return i;                                                                      \
        }                                                                                          \
        return n;                                                                                  \
    }
DEFINE_FIRST_BAD(first_bad_u16, uint16_t)
DEFINE_FIRST_BAD(first_bad_u32, uint32_t)

static ksa_status check_vocab(const ksa_tokfile *f, size_t vocab_size)
{
    const void *t = f->tokens;
    size_t bad = f->dtype == KSA_DTYPE_UINT16 ? first_bad_u16(t, f->n_tokens, vocab_size)
                                              : first_bad_u32(t, f->n_tokens, vocab_size);
    if (bad == f->n_tokens)
        return KSA_OK;
    return ksa_fail(KSA_EFORMAT,
                    "token file '%s': token %zu (byte offset %zu) is %u, not below vocab_size "
                    "%zu (first bad token; %s, %zu tokens)",
                    f->path, bad,
                    (size_t)(f->tokens - f->map) + bad * ksa_tokfile_dtype_bytes(f->dtype),
                    (unsigned)ksa_tokfile_get(f, bad), vocab_size, ksa_tokfile_dtype_name(f->dtype),
                    f->n_tokens);
}

ksa_status ksa_tokfile_open(ksa_tokfile *f, const char *path, ksa_dtype dtype, size_t vocab_size)
{
    KSA_ASSERT(vocab_size >= 1 && vocab_size <= (size_t)INT32_MAX + 1,
               "vocab_size %zu: token ids must fit int32", vocab_size);
    memset(f, 0, sizeof *f);
    f->path = ksa_path_concat(path, "");
    ksa_status st = KSA_OK;
    /* non-blocking: opening a FIFO for reading would wait for a writer forever; the check
     * below refuses it (and anything else that is not a regular file) at once */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        st = ksa_fail(KSA_EIO, "cannot open token file '%s': %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = ksa_fail(KSA_EIO, "token file '%s' is not a regular file", path);
        goto fail;
    }
    if (sb.st_size == 0) {
        st = ksa_fail(KSA_EFORMAT, "token file '%s' is empty", path);
        goto fail;
    }
    ksa_dtype meta = KSA_DTYPE_AUTO;
    if ((st = read_meta(path, &meta)) != KSA_OK ||
        (st = read_tokenizer_name(path, f->tokenizer, sizeof f->tokenizer)) != KSA_OK)
        goto fail;
    if (dtype != KSA_DTYPE_AUTO && meta != KSA_DTYPE_AUTO && dtype != meta) {
        st = ksa_fail(KSA_EINVAL, "token file '%s': dtype %s was given but '%s.meta' says %s", path,
                      ksa_tokfile_dtype_name(dtype), path, ksa_tokfile_dtype_name(meta));
        goto fail;
    }
    if (dtype == KSA_DTYPE_AUTO)
        dtype = meta;

    f->map_bytes = (size_t)sb.st_size;
    void *map = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        st = ksa_fail(KSA_EIO, "cannot map token file '%s' (%zu bytes): %s", path, f->map_bytes,
                      strerror(errno));
        goto fail;
    }
    f->map = map;
    close(fd);
    fd = -1;

    if (dtype == KSA_DTYPE_AUTO) {
        if ((st = check_llmc_header(f)) != KSA_OK)
            goto fail;
    } else {
        size_t size = ksa_tokfile_dtype_bytes(dtype);
        if (f->map_bytes % size != 0) {
            st = ksa_fail(KSA_EFORMAT,
                          "token file '%s' has %zu bytes, not a multiple of %zu as %s tokens "
                          "need (wrong dtype, or a truncated file?)",
                          path, f->map_bytes, size, ksa_tokfile_dtype_name(dtype));
            goto fail;
        }
        f->format = KSA_TOKFILE_HEADERLESS;
        f->dtype = dtype;
        f->tokens = f->map;
        f->n_tokens = f->map_bytes / size;
    }
    if ((st = check_vocab(f, vocab_size)) != KSA_OK)
        goto fail;
    return KSA_OK;

fail:
    if (fd >= 0)
        close(fd);
    ksa_tokfile_close(f);
    return st;
}

void ksa_tokfile_close(ksa_tokfile *f)
{
    if (f->map)
        munmap((void *)f->map, f->map_bytes);
    ksa_free(f->path);
    memset(f, 0, sizeof *f);
}

void ksa_tokfile_read(const ksa_tokfile *f, int32_t *out, size_t start, size_t n)
{
    KSA_ASSERT(start <= f->n_tokens && n <= f->n_tokens - start,
               "tokens [%zu, %zu) of '%s', which holds %zu", start, start + n, f->path,
               f->n_tokens);
    if (f->dtype == KSA_DTYPE_UINT16) {
        const uint16_t *t = (const uint16_t *)(const void *)f->tokens + start;
        for (size_t j = 0; j < n; j++)
            out[j] = t[j];
    } else {
        const uint32_t *t = (const uint32_t *)(const void *)f->tokens + start;
        for (size_t j = 0; j < n; j++) /* ids < vocab_size <= INT32_MAX, checked at open */
            out[j] = (int32_t)t[j];
    }
}
