/* verify.c - reading a checkpoint whole, in a forked child, before trusting it (verify.h).
 *
 * The child opens the file with its own copy of the HDF5 library state, visits every object,
 * reads every attribute and every dataset (in blocks of rows, so memory stays bounded) and
 * compares each dataset with its `checksum` attribute. It reports through a pipe: nothing and
 * exit status 0 when the file is sound, the error text and status 1 when it is not. The parent
 * waits for it with a time limit; a child killed by a signal (a crash inside HDF5) or one that
 * does not finish (HDF5 looping on damaged metadata) is reported as a damaged file.          */
#include "verify.h"
#include "h5util.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"

uint64_t ksa_ckpt_checksum_floats(const float *x, size_t n, uint64_t first_index)
{
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        sum += ksa_ckpt_checksum_term(first_index + i, x[i]);
    return sum;
}

uint64_t ksa_ckpt_checksum_bytes(const unsigned char *b, size_t n, uint64_t first_index)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ksa_ckpt_checksum_byte_term(first_index + i, b[i]);
    return sum;
}

/* The file holds float32: a double is checksummed as the float32 the file stores (HDF5's
 * conversion, like this cast, rounds to nearest).                                          */
uint64_t ksa_ckpt_checksum_doubles(const double *x, size_t n, uint64_t first_index)
{
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        sum += ksa_ckpt_checksum_term(first_index + i, (float)x[i]);
    return sum;
}

/* ---- the walk (in the child) ------------------------------------------------------------ */
#define ATTR_VALUES_READ 4096    /* attributes with more values are opened, not decoded */
#define BLOCK_ELEMENTS (1 << 22) /* 16 MiB of float32 per read */

typedef struct {
    const char *path;
    int needs_checksums; /* a ksa checkpoint of format_version >= 2 */
    int read_data;       /* read every dataset's values against its checksum */
    ksa_status st;
    char where[512]; /* the object being read, for attribute messages */
} walker;

static herr_t read_one_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    walker *w = data;
    ksa_h5_attr a;
    w->st = ksa_h5_attr_read(w->path, loc, w->where, name, ATTR_VALUES_READ, &a);
    if (w->st == KSA_OK)
        ksa_h5_attr_free(&a);
    return w->st == KSA_OK ? 0 : -1;
}

/* The dataset's stored checksum: *has = 0 when it has none. */
static ksa_status stored_checksum(walker *w, hid_t dset, const char *name, int *has, uint64_t *sum)
{
    *has = 0;
    htri_t exists = H5Aexists(dset, "checksum");
    if (exists < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot look up %s's checksum", name);
    if (!exists)
        return KSA_OK;
    ksa_h5_attr a;
    KSA_TRY(ksa_h5_attr_read(w->path, dset, name, "checksum", 1, &a));
    ksa_status st = KSA_OK;
    if (!a.scalar_like || a.n_read != 1 || (a.kind != KSA_H5_UINT && a.kind != KSA_H5_INT))
        st = ksa_h5_fail_at(KSA_EFORMAT, w->path,
                            "damaged: %s's checksum is not one 64-bit unsigned integer", name);
    else
        *sum = a.kind == KSA_H5_UINT ? (uint64_t)a.u[0] : (uint64_t)a.i[0];
    *has = st == KSA_OK;
    ksa_h5_attr_free(&a);
    return st;
}

/* A one-dimensional dataset of bytes read whole (a tokenizer.json: megabytes) against its
 * checksum. */
static ksa_status check_byte_dataset(walker *w, hid_t dset, const char *name, int ndim,
                                     const hsize_t *dims, uint64_t want)
{
    if (ndim != 1)
        return ksa_h5_fail_at(KSA_EFORMAT, w->path,
                              "damaged: byte dataset %s has %d dimensions, expected 1", name, ndim);
    size_t n = (size_t)dims[0];
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf)
        return ksa_h5_fail_at(KSA_ENOMEM, w->path, "out of memory reading %s (%zu bytes)", name, n);
    ksa_status st = KSA_OK;
    if (n && H5Dread(dset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot read dataset %s", name);
    uint64_t sum = st == KSA_OK ? ksa_ckpt_checksum_bytes(buf, n, 0) : 0;
    free(buf);
    if (st == KSA_OK && sum != want)
        st = ksa_h5_fail_at(KSA_EFORMAT, w->path,
                            "damaged: dataset %s does not match its checksum (stored %016llx, "
                            "read %016llx)",
                            name, (unsigned long long)want, (unsigned long long)sum);
    return st;
}

/* Reads dataset `name` whole, as float32, in blocks of rows, and compares its checksum. */
static ksa_status check_dataset(walker *w, hid_t dset, const char *name)
{
    /* reading a float of another width would make HDF5's conversion misbehave (a 4 GiB
     * "float"); metadata readers name it themselves */
    hid_t ftype = H5Dget_type(dset);
    if (ftype < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot read the type of %s", name);
    H5T_class_t cls = H5Tget_class(ftype);
    size_t width = H5Tget_size(ftype);
    H5Tclose(ftype);
    if (w->read_data && cls == H5T_FLOAT && width != 2 && width != 4 && width != 8)
        return ksa_h5_fail_at(KSA_EFORMAT, w->path,
                              "%s does not hold floating-point numbers of 2, 4 or 8 bytes (HDF5 "
                              "type class %d, %zu bytes)",
                              name, (int)cls, width);
    int has = 0;
    uint64_t want = 0;
    KSA_TRY(stored_checksum(w, dset, name, &has, &want));
    if (!has && w->needs_checksums)
        return ksa_h5_fail_at(KSA_EFORMAT, w->path, "damaged: dataset %s has no checksum", name);
    ksa_status st = KSA_OK;
    hid_t space = H5Dget_space(dset), type = H5Dget_type(dset), mem = -1;
    hsize_t dims[H5S_MAX_RANK];
    int ndim = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (type < 0 || ndim < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot read the shape of %s", name);
        goto done;
    }
    if (!w->read_data)
        goto done; /* its shape and type were read: metadata only */
    if (H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1 && has)
        goto done_bytes; /* /tokenizer/tokenizer.json: a checksum over its bytes */
    if (H5Tget_class(type) != H5T_FLOAT) {
        if (has) /* checksums are of float32 and uint8 datasets only */
            st = ksa_h5_fail_at(KSA_EFORMAT, w->path,
                                "damaged: dataset %s has a checksum but no floating-point type",
                                name);
        goto done; /* another tool's dataset: not ours to check */
    }
    /* rows of the first dimension; a scalar is one row of one element */
    hsize_t rows = ndim ? dims[0] : 1, row_elements = 1;
    for (int d = 1; d < ndim; d++)
        row_elements *= dims[d];
    if (rows == 0 || row_elements == 0)
        goto done; /* nothing stored: an empty sum */
    hsize_t block_rows = BLOCK_ELEMENTS / row_elements ? BLOCK_ELEMENTS / row_elements : 1;
    if (block_rows > rows)
        block_rows = rows;
    float *buf = malloc(block_rows * row_elements * sizeof *buf);
    if (!buf) {
        st = ksa_h5_fail_at(KSA_ENOMEM, w->path, "out of memory reading %s", name);
        goto done;
    }
    uint64_t sum = 0;
    hsize_t first_bad = HSIZE_UNDEF; /* the first non-finite element */
    float bad_value = 0;
    for (hsize_t r = 0; r < rows && st == KSA_OK; r += block_rows) {
        hsize_t k = rows - r < block_rows ? rows - r : block_rows, n = k * row_elements;
        hsize_t start[H5S_MAX_RANK] = {r}, count[H5S_MAX_RANK] = {k};
        for (int d = 1; d < ndim; d++)
            count[d] = dims[d];
        mem = H5Screate_simple(1, &n, NULL);
        if (mem < 0 ||
            (ndim && H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) < 0) ||
            H5Dread(dset, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, buf) < 0)
            st = ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot read dataset %s", name);
        else /* serial: OpenMP's threads do not survive the fork of this process */
            for (hsize_t i = 0; i < n; i++) {
                sum += ksa_ckpt_checksum_term(r * row_elements + i, buf[i]);
                if (!isfinite(buf[i]) && first_bad == HSIZE_UNDEF)
                    first_bad = r * row_elements + i, bad_value = buf[i];
            }
        ksa_h5_close(mem, NULL, "", "");
        mem = -1;
    }
    free(buf);
    if (st == KSA_OK && has && sum != want)
        st = ksa_h5_fail_at(KSA_EFORMAT, w->path,
                            "damaged: dataset %s does not match its checksum (stored %016llx, "
                            "read %016llx)",
                            name, (unsigned long long)want, (unsigned long long)sum);
    /* values a model or its optimizer would load: never trained on, never evaluated */
    int loaded = !strncmp(name, "/params/", 8) || !strncmp(name, "/optim/", 7);
    if (st == KSA_OK && loaded && first_bad != HSIZE_UNDEF) {
        char at[64];
        if (ndim == 2)
            snprintf(at, sizeof at, "[%llu, %llu]", (unsigned long long)(first_bad / row_elements),
                     (unsigned long long)(first_bad % row_elements));
        else
            snprintf(at, sizeof at, "%llu", (unsigned long long)first_bad);
        st = ksa_h5_fail_at(KSA_EFORMAT, w->path,
                            "dataset %s holds a non-finite value (%g) at element %s: the run had "
                            "diverged when it was saved; use an earlier checkpoint",
                            name, (double)bad_value, at);
    }
done:
    ksa_h5_close(mem, NULL, "", "");
    ksa_h5_close(type, NULL, "", "");
    ksa_h5_close(space, NULL, "", "");
    return st;
done_bytes:
    ksa_h5_close(type, NULL, "", "");
    ksa_h5_close(space, NULL, "", "");
    return check_byte_dataset(w, dset, name, ndim, dims, want);
}

#define MAX_DEPTH 8 /* groups within groups; ours go 2 deep (/optim/exp_avg) */

static ksa_status walk_group(walker *w, hid_t group, const char *prefix, int depth);

/* One object: its attributes, then its datasets' values or its group's members. `name` is
 * its absolute path ("" for the root group). */
static ksa_status walk_object(walker *w, hid_t obj, const char *name, int depth)
{
    snprintf(w->where, sizeof w->where, "%s", name[0] ? name : "root");
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_BASIC) < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot read what %s is", w->where);
    w->st = KSA_OK;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, read_one_attr, w) < 0)
        return w->st != KSA_OK
                   ? w->st
                   : ksa_h5_fail_h5(KSA_EFORMAT, w->path,
                                    "damaged: cannot list the attributes of %s", w->where);
    if (info.type == H5O_TYPE_DATASET)
        return check_dataset(w, obj, name);
    if (info.type == H5O_TYPE_GROUP)
        return walk_group(w, obj, name, depth + 1);
    return KSA_OK;
}

typedef struct {
    walker *w;
    const char *prefix;
    int depth;
} group_walk;

static herr_t walk_link(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    group_walk *g = data;
    walker *w = g->w;
    char full[512];
    snprintf(full, sizeof full, "%s/%s", g->prefix, name);
    if (info->type != H5L_TYPE_HARD)
        return 0; /* soft and external links: nothing of ours, nothing stored here */
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) {
        w->st = ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot open %s", full);
        return -1;
    }
    ksa_status st = walk_object(w, obj, full, g->depth);
    ksa_h5_close(obj, NULL, "", "");
    w->st = st;
    return st == KSA_OK ? 0 : -1;
}

static ksa_status walk_group(walker *w, hid_t group, const char *prefix, int depth)
{
    if (depth > MAX_DEPTH)
        return ksa_h5_fail_at(KSA_EFORMAT, w->path,
                              "damaged: groups nested deeper than %d at %s (a loop of links?)",
                              MAX_DEPTH, prefix);
    group_walk g = {w, prefix, depth};
    w->st = KSA_OK;
    if (H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, NULL, walk_link, &g) < 0)
        return w->st != KSA_OK
                   ? w->st
                   : ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot list the members of %s",
                                    prefix[0] ? prefix : "the root group");
    return KSA_OK;
}

/* Whether the file says it is a ksa checkpoint of a version with checksums. */
static ksa_status read_format(walker *w, hid_t file)
{
    ksa_h5_attr fmt, ver;
    htri_t has_format = H5Aexists(file, "format"), has_version = H5Aexists(file, "format_version");
    if (has_format < 0 || has_version < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, w->path, "damaged: cannot read the root attributes");
    if (!has_format || !has_version)
        return KSA_OK; /* not a ksa checkpoint: the readers say so */
    KSA_TRY(ksa_h5_attr_read(w->path, file, "root", "format", 1, &fmt));
    ksa_status st = ksa_h5_attr_read(w->path, file, "root", "format_version", 1, &ver);
    if (st == KSA_OK) {
        int ours =
            fmt.kind == KSA_H5_STRING && fmt.n_read == 1 && !strcmp(fmt.s[0], KSA_CKPT_FORMAT);
        long long v = ver.kind == KSA_H5_INT && ver.n_read == 1    ? ver.i[0]
                      : ver.kind == KSA_H5_UINT && ver.n_read == 1 ? (long long)ver.u[0]
                                                                   : 0;
        w->needs_checksums = ours && v >= 2;
        ksa_h5_attr_free(&ver);
    }
    ksa_h5_attr_free(&fmt);
    return st;
}

/* The whole check, in this process. */
static ksa_status walk_file(const char *path, int read_data)
{
    ksa_h5_quiet();
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "damaged: cannot open the file");
    walker w = {.path = path, .read_data = read_data, .st = KSA_OK};
    ksa_status st = read_format(&w, file);
    if (st == KSA_OK)
        st = walk_object(&w, file, "", 0);
    if (H5Fclose(file) < 0 && st == KSA_OK)
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "damaged: cannot close the file");
    return st;
}

/* ---- the child and the parent ---------------------------------------------------------- */
/* Test-only fault hook (docs/checkpoints.md): KSA_TEST_FAULT=verify_crash makes the checking
 * child die of SIGSEGV, KSA_TEST_FAULT=verify_hang makes it wait forever (and the limit 1 s):
 * what a crash or a loop inside HDF5 would do.                                            */
static int injected(const char *what)
{
    const char *f = getenv("KSA_TEST_FAULT");
    return f && !strcmp(f, what);
}

/* Seconds the child may take: generous for a slow disk (20 MB/s), never under a minute. */
static int time_limit(off_t bytes)
{
    return injected("verify_hang") ? 1 : 60 + (int)(bytes / (20 << 20));
}

static ksa_status verify_in_child(const char *path, int read_data, off_t bytes)
{
    int fds[2];
    if (pipe(fds) != 0)
        return walk_file(path, read_data);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) { /* no process to spare: check in this one, without the crash guard */
        close(fds[0]);
        close(fds[1]);
        return walk_file(path, read_data);
    }
    if (pid == 0) {
        close(fds[0]);
        /* the parent's handlers are not the child's: a crash must end it (not print MPI's
         * backtrace or jump back into a caller), a stop request must stop it */
        const int reset[] = {SIGSEGV, SIGBUS,  SIGFPE, SIGILL,  SIGABRT,
                             SIGINT,  SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
        for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
            signal(reset[i], SIG_DFL);
        if (injected("verify_crash"))
            raise(SIGSEGV);
        while (injected("verify_hang"))
            pause();
        ksa_status st = walk_file(path, read_data);
        if (st != KSA_OK) {
            const char *msg = ksa_last_error();
            ssize_t off = 0, len = (ssize_t)strlen(msg);
            while (off < len) {
                ssize_t k = write(fds[1], msg + off, (size_t)(len - off));
                if (k <= 0)
                    break;
                off += k;
            }
        }
        _exit((int)st); /* KSA_OK is 0; no atexit handlers: they belong to the parent */
    }
    close(fds[1]);
    char msg[2048];
    size_t got = 0;
    int limit_ms = time_limit(bytes) * 1000, timed_out = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long elapsed = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (elapsed >= limit_ms) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int rc = poll(&pfd, 1, (int)(limit_ms - elapsed));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0) {
            timed_out = rc == 0;
            break;
        }
        char sink[256];
        ssize_t k = read(fds[0], got < sizeof msg - 1 ? msg + got : sink,
                         got < sizeof msg - 1 ? sizeof msg - 1 - got : sizeof sink);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* end of file: the child is done */
        if (got < sizeof msg - 1)
            got += (size_t)k;
    }
    msg[got] = '\0';
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out)
        return ksa_fail(KSA_EFORMAT,
                        "checkpoint %s is damaged: reading it did not finish within %d s "
                        "(HDF5 loops on it)",
                        path, time_limit(bytes));
    if (WIFSIGNALED(status))
        return ksa_fail(KSA_EFORMAT, "checkpoint %s is damaged: reading it crashed HDF5 (%s)", path,
                        strsignal(WTERMSIG(status)));
    if (WIFEXITED(status) && WEXITSTATUS(status) == KSA_OK)
        return KSA_OK;
    ksa_status code = WIFEXITED(status) ? (ksa_status)WEXITSTATUS(status) : KSA_EFORMAT;
    if (got)
        return ksa_fail(code, "%s", msg);
    return ksa_fail(code, "checkpoint %s could not be verified (the checking process failed)",
                    path);
}

/* Files verified in this process, by identity and modification time. */
#define REMEMBERED 16
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int read_data; /* the values were checked too */
} file_stamp;
static file_stamp remembered[REMEMBERED];
static int n_remembered, next_slot;

static int same_stamp(const file_stamp *a, const file_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->read_data >= b->read_data;
}

ksa_status ksa_ckpt_verify(const char *path, int read_data)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ksa_fail(KSA_EIO, "cannot open checkpoint %s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return ksa_fail(KSA_EIO, "cannot open checkpoint %s: not a regular file", path);
    file_stamp s = {sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim, read_data != 0};
    for (int i = 0; i < n_remembered; i++)
        if (same_stamp(&remembered[i], &s))
            return KSA_OK;
    ksa_h5_quiet();
    htri_t is = H5Fis_hdf5(path);
    if (is < 0)
        return ksa_h5_fail_h5(KSA_EIO, path, "cannot read the file");
    if (!is)
        return ksa_fail(KSA_EFORMAT, "checkpoint %s is not an HDF5 file", path);
    const char *how = getenv("KSA_CKPT_VERIFY");
    ksa_status st = how && !strcmp(how, "in-process")
                        ? walk_file(path, read_data)
                        : verify_in_child(path, read_data, sb.st_size);
    if (st == KSA_OK) {
        remembered[next_slot] = s;
        next_slot = (next_slot + 1) % REMEMBERED;
        if (n_remembered < REMEMBERED)
            n_remembered++;
    }
    return st;
}

ksa_status ksa_ckpt_open_verified(const char *path, int read_data, hid_t *file)
{
    *file = -1;
    KSA_TRY(ksa_ckpt_verify(path, read_data));
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0)
        return ksa_h5_fail_h5(KSA_EIO, path, "cannot open the file");
    return KSA_OK;
}
