/* ckpt.c - HDF5 checkpoints, CHECKPOINT_FORMAT.md version 1 (layout and types there).
 *
 * Every HDF5 call is checked; HDF5's automatic error printing is switched off at each entry
 * point and failures are reported through ksa_fail with the file, the object and the
 * innermost message of HDF5's error stack. Memory of the parameters is ksa_real (float or
 * double), the file is always float32: HDF5 converts on write and read.
 *
 * Parallel writing (DESIGN.md §5-6). Under MPI a file is created with the MPI-IO driver and
 * every rank makes the same sequence of collective calls: H5Fcreate, every group,
 * attribute and dataset creation (with the same values), one collective H5Dwrite per
 * dataset, H5Fclose. In each H5Dwrite a rank selects only its part: the elements of the
 * dataset's parameter inside its range [lo, hi) of the flat buffer, as at most three
 * hyperslabs (ksa_ckpt_slice_blocks), or nothing. After every such step the ranks compare
 * their status (agree), so that they all go on or all give up together. Readers open files
 * independently with the default driver and read the hyperslabs of a slice the same way. */
#include "ckpt.h"
#include "h5util.h"
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#include <xxhash.h>

#include "dist/dist.h"

#ifdef KSA_REAL_DOUBLE
#define REAL_MEM_TYPE H5T_NATIVE_DOUBLE
#else
#define REAL_MEM_TYPE H5T_NATIVE_FLOAT
#endif
#define FILE_REAL_TYPE H5T_IEEE_F32LE /* every dataset in the file, whatever ksa_real is */
#define FILE_INT_TYPE H5T_STD_I64LE   /* integer and boolean attributes */
#define FILE_FLOAT_TYPE H5T_IEEE_F64LE

/* Longest attribute text we read: what the key setters take (ksa_config_key_set: 4095
 * characters), so that every key a checkpoint was written with reads back, a /train path
 * of up to KSA_PATH_STR - 1 characters included; each setter checks its own field size. */
#define VALUE_MAX 4096

/* Errors, closing ids and shapes: h5util.h. */

static void param_dims(const ksa_param *e, hsize_t dims[2])
{
    dims[0] = e->shape[0];
    dims[1] = e->ndim == 2 ? e->shape[1] : 0;
}

/* ---- a slice of the flat buffer, parameter by parameter ------------------------------------ *
 * Parameter e holds elements [e->offset, e->offset + e->numel) of the flat buffer and is seen
 * as a matrix [R, C] of its own elements (a weight [out, in]: C = in; a 1-D parameter: R = 1,
 * C = n). The part of a slice [lo, hi) inside e is a run [i0, i1) of e's elements, from
 * (r0, c0) to just before (r1, c1) with r = i / C, c = i % C. In row-major order it is
 *   a partial first row   row r0, columns c0 .. C-1      if c0 > 0 and the run leaves row r0,
 *   whole rows            rows r0' .. r1-1, all columns  r0' = r0, or r0 + 1 after the above,
 *   a partial last row    row r1, columns 0 .. c1-1      if c1 > 0,
 * or one piece of a single row when the run starts and ends in row r0. Elements of the
 * slice outside every parameter (alignment gaps, padding) belong to no block.
 *
 * Example: e = [4, 6] at offset 32 (elements 32 .. 55), slice [37, 51): i0 = 5, i1 = 19, so
 * (r0, c0) = (0, 5) and (r1, c1) = (3, 1):
 *   {row 0, col 5, 1 x 1, first 0}  {rows 1-2, col 0, 2 x 6, first 1}  {row 3, col 0, 1 x 1,
 *   first 13}: 1 + 12 + 1 = 14 = 51 - 37 elements, slice indices 0 .. 13 in order.
 * Slice [16, 40) (it starts in the gap before e): i0 = 0, i1 = 8: {row 0, 1 x 6, first 16}
 * {row 1, col 0, 1 x 2, first 22}. Slice [56, 64): nothing of e, 0 blocks.                 */
size_t ksa_ckpt_slice_blocks(const ksa_param *e, size_t lo, size_t hi,
                             ksa_ckpt_block blocks[KSA_CKPT_MAX_BLOCKS])
{
    size_t end = e->offset + e->numel;
    size_t a = lo > e->offset ? lo : e->offset, b = hi < end ? hi : end;
    if (a >= b)
        return 0;
    size_t C = e->ndim == 2 ? e->shape[1] : e->numel; /* > 0: e has elements */
    size_t i0 = a - e->offset, i1 = b - e->offset;
    size_t r0 = i0 / C, c0 = i0 % C, r1 = i1 / C, c1 = i1 % C;
    size_t n = 0, first = a - lo;
    if (r0 == r1) { /* within one row, c0 < c1 */
        blocks[n++] =
            (ksa_ckpt_block){.row = r0, .col = c0, .rows = 1, .cols = c1 - c0, .first = first};
        return n;
    }
    if (c0 > 0) {
        blocks[n++] =
            (ksa_ckpt_block){.row = r0, .col = c0, .rows = 1, .cols = C - c0, .first = first};
        first += C - c0;
        r0++;
    }
    if (r1 > r0) {
        blocks[n++] =
            (ksa_ckpt_block){.row = r0, .col = 0, .rows = r1 - r0, .cols = C, .first = first};
        first += (r1 - r0) * C;
    }
    if (c1 > 0)
        blocks[n++] = (ksa_ckpt_block){.row = r1, .col = 0, .rows = 1, .cols = c1, .first = first};
    return n;
}

/* Selects in `space` (a dataspace of e's shape) the elements of e inside [lo, hi) of the flat
 * buffer, and makes *mem a 1-D memory dataspace of the matching run of the slice array,
 * which starts at index *first and holds *count elements. When the slice holds nothing of e,
 * both select nothing (*count = 0): a rank still joins a collective transfer that way.     */
static ksa_status select_slice(const char *path, const char *gname, const ksa_param *e, size_t lo,
                               size_t hi, hid_t space, hid_t *mem, size_t *first, size_t *count)
{
    ksa_ckpt_block b[KSA_CKPT_MAX_BLOCKS];
    size_t nb = ksa_ckpt_slice_blocks(e, lo, hi, b);
    herr_t rc = nb ? 0 : H5Sselect_none(space);
    *first = nb ? b[0].first : 0;
    *count = 0;
    for (size_t k = 0; k < nb && rc >= 0; k++) {
        hsize_t start[2] = {b[k].row, b[k].col}, extent[2] = {b[k].rows, b[k].cols};
        if (e->ndim == 1)
            start[0] = b[k].col, extent[0] = b[k].cols;
        rc = H5Sselect_hyperslab(space, k ? H5S_SELECT_OR : H5S_SELECT_SET, start, NULL, extent,
                                 NULL);
        *count += b[k].rows * b[k].cols;
    }
    hsize_t n = *count ? *count : 1;
    *mem = rc < 0 ? -1 : H5Screate_simple(1, &n, NULL);
    if (*mem >= 0 && !*count && H5Sselect_none(*mem) < 0) {
        H5Sclose(*mem);
        *mem = -1;
    }
    if (*mem < 0)
        return ksa_h5_fail_h5(KSA_EIO, path,
                              "cannot select elements [%zu, %zu) of the buffer in /%s/%s", lo, hi,
                              gname, e->name);
    return KSA_OK;
}

/* ---- MPI: ranks and agreement (src/dist) ------------------------------------------------- */
/* After every step of a collective write (called by all ranks): if any rank failed, every rank
 * returns an error (ksa_dist_agree), so all of them go on to the next collective call or
 * together to writer_abort. A failing rank keeps its own message; the others name the first
 * failing rank. */
static ksa_status agree(const char *path, ksa_status st)
{
    int failed_rank;
    ksa_status all = ksa_dist_agree(st, &failed_rank);
    if (all == KSA_OK || st != KSA_OK)
        return all;
    if (failed_rank < 0) /* the agreement itself failed */
        return ksa_fail(all, "checkpoint %s: %s", path, ksa_last_error());
    return ksa_fail(all, "checkpoint %s: not written because rank %d failed (its message says why)",
                    path, failed_rank);
}

/* ---- opening files --------------------------------------------------------------------- */
/* Writers only. Under MPI (ksa train initialises it) files are created with the MPI-IO
 * driver on MPI_COMM_WORLD and datasets written collectively, so that each rank writes its
 * own part of every logical dataset; with one rank that is simply the whole tensor.
 * Without MPI (tests, tools) the default driver is used.                               */
static hid_t file_access_plist(const char *path, ksa_status *st)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        *st = ksa_h5_fail_h5(KSA_EIO, path, "cannot create a file-access property list");
    else if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0) {
        *st = ksa_h5_fail_h5(KSA_EIO, path, "cannot select HDF5 1.10's file format");
        H5Pclose(fapl);
        fapl = -1;
    } else if (ksa_dist_active() && H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL) < 0) {
        *st = ksa_h5_fail_h5(KSA_EIO, path, "cannot select the MPI-IO driver");
        H5Pclose(fapl);
        fapl = -1;
    }
    return fapl;
}

/* Links and attributes of a group (or of the root group: a file-creation list is a group-
 * creation list too) stay in its object header, which HDF5 checksums, instead of moving
 * to "dense" storage beyond 8 of them. plist: H5P_FILE_CREATE or H5P_GROUP_CREATE.        */
static hid_t compact_group_plist(hid_t cls)
{
    hid_t plist = H5Pcreate(cls);
    if (plist >= 0 && (H5Pset_link_phase_change(plist, 65535, 65535) < 0 ||
                       H5Pset_attr_phase_change(plist, 65535, 65535) < 0)) {
        H5Pclose(plist);
        plist = -1;
    }
    return plist;
}

/* Creates group `name` of loc with compact_group_plist; errors name it. */
static hid_t create_group(const char *path, hid_t loc, const char *name, ksa_status *st)
{
    hid_t gcpl = compact_group_plist(H5P_GROUP_CREATE), group = -1;
    if (gcpl >= 0)
        group = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (group < 0)
        *st = ksa_h5_fail_h5(KSA_EIO, path, "cannot create group /%s", name);
    ksa_h5_close(gcpl, NULL, "", "");
    return group;
}

/* Collective transfers under MPI-IO, the default otherwise. */
static hid_t transfer_plist(void)
{
    if (!ksa_dist_active())
        return H5P_DEFAULT;
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0) {
        H5Pclose(dxpl);
        return -1;
    }
    return dxpl;
}

/* Opens any HDF5 file read-only, once it has been read whole without fault (verify.h);
 * errors say whether it is missing, unreadable, not HDF5 or damaged. Always the default
 * driver: reading is independent, any rank may read alone.                                 */
static ksa_status open_hdf5(const char *path, int read_data, hid_t *file)
{
    ksa_h5_quiet();
    return ksa_ckpt_open_verified(path, read_data, file); /* checked first: verify.h */
}

/* ---- writing: <path>.tmp, flush, close, fsync, rename ------------------------------------ *
 * Under MPI every function here is called by all ranks at the same point (after agree), and
 * the file system work (fsync, rename, unlink) is rank 0's.                                */
typedef struct {
    const char *path; /* final name, borrowed */
    char *tmp;        /* "<path>.tmp", owned */
    hid_t file;
} ckpt_writer;

/* A full disk. HDF5's MPI-IO driver reports a short write without errno ("file write
 * failed"), so the reason is read from the file system (name_full_disk). And HDF5 still has
 * metadata to write when it closes the file; if that fails, HDF5 1.10 frees the file but
 * keeps its id, and shutting the library down (H5close, exit, MPI_Finalize) crashes on that
 * id (retrying H5Fclose, or H5Idec_ref, crash the same way). So a failed write is closed
 * only after its .tmp has been emptied (truncate gives its blocks back: it is deleted
 * anyway). A close that fails all the same (the disk was full before the save began; or
 * the last metadata flush failed, after which HDF5 1.10 fails every close of the file) is
 * remembered, and the program ends without shutting HDF5 down (ksa_ckpt_hdf5_unusable). */
static int hdf5_unusable; /* 1 once closing a file being written failed on this rank */

int ksa_ckpt_hdf5_unusable(void)
{
    return hdf5_unusable;
}

/* Appends "No space left on device" to the error being reported when the file system of tmp
 * has less than 1 MiB free for this user (root may use the blocks reserved for it). */
static void name_full_disk(const char *tmp)
{
    struct statvfs fs;
    if (statvfs(tmp, &fs) != 0)
        return;
    double room = (double)(geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * (double)fs.f_frsize;
    if (room < 1048576.0)
        (void)ksa_fail(KSA_EIO, "%s: %s (%.0f KiB free)", ksa_last_error(), strerror(ENOSPC),
                       room / 1024);
}

/* All ranks, after they agreed that the write failed: nothing remains under either name. */
static void writer_abort(ckpt_writer *w)
{
    if (w->file >= 0) {
        name_full_disk(w->tmp);
        ksa_dist_barrier(); /* every rank has looked before rank 0 gives the room back */
        if (ksa_dist_rank() == 0 && truncate(w->tmp, 0) != 0 && errno != ENOENT)
            fprintf(stderr, "[rank %d] warning: cannot empty '%s': %s\n", ksa_log_rank, w->tmp,
                    strerror(errno));
        ksa_dist_barrier();        /* the room is there before any rank's close writes */
        if (H5Fclose(w->file) < 0) /* the error being reported is the first one */
            hdf5_unusable = 1;
    }
    w->file = -1;
    if (ksa_dist_rank() == 0 && unlink(w->tmp) != 0 && errno != ENOENT)
        fprintf(stderr, "[rank %d] warning: cannot remove '%s': %s\n", ksa_log_rank, w->tmp,
                strerror(errno));
    free(w->tmp);
    w->tmp = NULL;
    ksa_dist_barrier(); /* no rank returns while the .tmp may still be there */
}

/* Test-only fault hook (docs/checkpoints.md): KSA_TEST_FAULT=skip_room_check lets a save
 * begin whatever the free space, so that tests can fill the disk during the write itself. */
static int room_check_skipped(void)
{
    const char *f = getenv("KSA_TEST_FAULT");
    return f && !strcmp(f, "skip_room_check");
}

/* Rank 0, before the file is created: the folder of path has room for value_bytes of
 * datasets plus HDF5's metadata (2 % and 4 MiB is far above what a checkpoint's object
 * headers, B-trees and attributes take). A disk that fills during HDF5's collective metadata
 * flush can leave MPI-IO ranks waiting on each other, so a save that cannot fit does not
 * begin; the previous checkpoints stay as they are. A folder statvfs cannot read is not
 * checked here (the write itself reports what goes wrong).                              */
static ksa_status check_room(const char *path, double value_bytes)
{
    if (ksa_dist_rank() != 0 || room_check_skipped())
        return KSA_OK;
    char *copy = strdup(path);
    KSA_ASSERT(copy, "out of memory copying a file name");
    struct statvfs fs;
    int rc = statvfs(dirname(copy), &fs);
    free(copy);
    if (rc != 0)
        return KSA_OK;
    double room = (double)(geteuid() == 0 ? fs.f_bfree : fs.f_bavail) * (double)fs.f_frsize;
    double need = value_bytes * 1.02 + 4.0 * 1048576.0;
    if (room >= need)
        return KSA_OK;
    return ksa_h5_fail_at(KSA_EIO, path,
                          "not written: %s (it needs about %.1f MiB, the disk has %.1f MiB "
                          "free); the previous checkpoints are kept",
                          strerror(ENOSPC), need / 1048576.0, room / 1048576.0);
}

static ksa_status writer_open(ckpt_writer *w, const char *path, double value_bytes)
{
    ksa_h5_quiet();
    w->path = path;
    w->file = -1;
    size_t n = strlen(path);
    w->tmp = malloc(n + sizeof ".tmp");
    KSA_ASSERT(w->tmp, "out of memory for a file name of %zu bytes", n);
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", sizeof ".tmp");
    ksa_status st = agree(path, check_room(path, value_bytes));
    if (st != KSA_OK) {
        free(w->tmp);
        w->tmp = NULL;
        return st;
    }
    hid_t fapl = file_access_plist(path, &st), fcpl = compact_group_plist(H5P_FILE_CREATE);
    if (fcpl < 0 && st == KSA_OK)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot create a file-creation property list");
    st = agree(path, st); /* H5Fcreate is collective: all ranks or none */
    if (st == KSA_OK) {
        errno = 0;
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
        if (w->file < 0 && errno) /* the usual case (no folder, no permission): say it plainly */
            st = ksa_h5_fail_at(KSA_EIO, path, "cannot create '%s': %s", w->tmp, strerror(errno));
        else if (w->file < 0)
            st = ksa_h5_fail_h5(KSA_EIO, path, "cannot create '%s'", w->tmp);
        H5Eclear2(H5E_DEFAULT);
    }
    ksa_h5_close(fapl, &st, path, "the file-access property list");
    ksa_h5_close(fcpl, &st, path, "the file-creation property list");
    st = agree(path, st);
    if (st != KSA_OK)
        writer_abort(w);
    return st;
}

/* The parent folder's entry for the renamed file reaches the disk too. Best effort: some
 * file systems refuse fsync on folders, and the checkpoint is already complete in place.  */
static void sync_parent_folder(const char *path)
{
    char *copy = strdup(path);
    KSA_ASSERT(copy, "out of memory copying a file name");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

/* Rank 0, once every rank's part is in the closed file: fsync and rename into place. */
static ksa_status writer_install(ckpt_writer *w)
{
    ksa_status st = KSA_OK;
    int fd = open(w->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0)
        st = ksa_h5_fail_at(KSA_EIO, w->path, "cannot sync '%s' to disk: %s", w->tmp,
                            strerror(errno));
    if (fd >= 0)
        close(fd);
    /* Test-only fault hook (docs/checkpoints.md): KSA_TEST_FAULT=kill_before_rename:TEXT
     * kills the process with SIGKILL when the complete .tmp of a checkpoint whose path
     * contains TEXT is about to be renamed: the crash a save must survive.              */
    const char *fault = getenv("KSA_TEST_FAULT");
    if (st == KSA_OK && fault && !strncmp(fault, "kill_before_rename:", 19) &&
        strstr(w->path, fault + 19))
        raise(SIGKILL);
    if (st == KSA_OK && rename(w->tmp, w->path) != 0)
        st = ksa_h5_fail_at(KSA_EIO, w->path, "cannot rename '%s' into place: %s", w->tmp,
                            strerror(errno));
    if (st == KSA_OK)
        sync_parent_folder(w->path);
    return st;
}

/* Finishes a write (all ranks): on any failure nothing remains under either name. */
static ksa_status writer_commit(ckpt_writer *w)
{
    ksa_status st = KSA_OK;
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, w->path, "cannot flush '%s'", w->tmp);
    herr_t rc = H5Fclose(w->file); /* collective: every rank's data is in the file after it */
    w->file = -1;
    if (rc < 0) /* HDF5 1.10 fails every close after a failed flush, whatever the room */
        hdf5_unusable = 1;
    if (rc < 0 && st == KSA_OK)
        st = ksa_h5_fail_h5(KSA_EIO, w->path, "cannot close '%s'", w->tmp);
    if (st != KSA_OK)
        name_full_disk(w->tmp);
    st = agree(w->path, st);
    if (st == KSA_OK && ksa_dist_rank() == 0)
        st = writer_install(w);
    st = agree(w->path, st); /* also the barrier: no rank returns before the file is in place */
    if (st != KSA_OK) {
        writer_abort(w);
        return st;
    }
    free(w->tmp);
    w->tmp = NULL;
    return KSA_OK;
}

/* ---- writing attributes and datasets ----------------------------------------------------- */
/* One attribute of n values: a scalar dataspace for n = 0 (CHECKPOINT_FORMAT.md, Types), else
 * one dimension of n. `where` names the object in messages: "root", "/config", "/train". */
static ksa_status write_attr_n(const char *path, hid_t loc, const char *where, const char *name,
                               hid_t file_type, hid_t mem_type, const void *value, size_t n)
{
    ksa_status st = KSA_OK;
    hsize_t dims[1] = {n};
    hid_t space = n ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR), attr = -1;
    if (space < 0 ||
        (attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(attr, mem_type, value) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot write %s attribute '%s'", where, name);
    ksa_h5_close(attr, &st, path, name);
    ksa_h5_close(space, &st, path, "a dataspace");
    return st;
}

static ksa_status write_attr(const char *path, hid_t loc, const char *where, const char *name,
                             hid_t file_type, hid_t mem_type, const void *value)
{
    return write_attr_n(path, loc, where, name, file_type, mem_type, value, 0);
}

static ksa_status write_attr_int(const char *path, hid_t loc, const char *where, const char *name,
                                 long long v)
{
    return write_attr(path, loc, where, name, FILE_INT_TYPE, H5T_NATIVE_LLONG, &v);
}

static ksa_status write_attr_double(const char *path, hid_t loc, const char *where,
                                    const char *name, double v)
{
    return write_attr(path, loc, where, name, FILE_FLOAT_TYPE, H5T_NATIVE_DOUBLE, &v);
}

/* float64 [n], n >= 1 (a one-dimensional attribute: h5py reads a numpy array). */
static ksa_status write_attr_doubles(const char *path, hid_t loc, const char *where,
                                     const char *name, const double *v, size_t n)
{
    return write_attr_n(path, loc, where, name, FILE_FLOAT_TYPE, H5T_NATIVE_DOUBLE, v, n);
}

/* Fixed-length UTF-8, NUL-padded, as long as the text (1 byte for ""): stored in the
 * checksummed object header, not in HDF5's unchecked global heap as variable-length strings
 * are. h5py reads it as bytes. */
static ksa_status write_attr_string(const char *path, hid_t loc, const char *where,
                                    const char *name, const char *s)
{
    ksa_status st = KSA_OK;
    size_t len = strlen(s);
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0 || H5Tset_size(type, len ? len : 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLPAD) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot make a string type for %s attribute '%s'", where,
                            name);
    else
        st = write_attr(path, loc, where, name, type, type, len ? s : "");
    ksa_h5_close(type, &st, path, "a string type");
    return st;
}

/* What this rank writes of every dataset: the elements [lo, hi) of the flat buffer, from an
 * array that holds element g at data[g - origin] (origin 0 for p->data and p->grad, the
 * slice's start for the moments of a slice).                                               */
typedef struct {
    const ksa_real *data;
    size_t origin;
    size_t lo, hi;
} rank_part;

/* Test-only fault hook (docs/checkpoints.md): KSA_TEST_FAULT=ckpt_error:RANK makes rank RANK
 * fail just before its collective write of the first /optim/exp_avg_sq dataset, where the
 * other ranks are about to enter that collective: every rank must still return an error. */
static int injected_write_error(const char *gname)
{
    const char *f = getenv("KSA_TEST_FAULT");
    int rank;
    return f && !strncmp(f, "ckpt_error:", 11) && sscanf(f + 11, "%d", &rank) == 1 &&
           rank == ksa_dist_rank() && !strcmp(gname, "optim/exp_avg_sq");
}

/* The `checksum` attribute of dataset /gname/<e->name> (verify.h), collective: each rank sums
 * the terms of the elements it wrote, the ranks gather their partial sums and all write the
 * same total.                                                                              */
static ksa_status write_checksum(const char *path, hid_t dset, const char *gname,
                                 const ksa_param *e, const rank_part *part)
{
    size_t end = e->offset + e->numel;
    size_t a = part->lo > e->offset ? part->lo : e->offset, b = part->hi < end ? part->hi : end;
    uint64_t mine = 0;
    if (a < b)
#ifdef KSA_REAL_DOUBLE
        mine = ksa_ckpt_checksum_doubles(part->data + (a - part->origin), b - a, a - e->offset);
#else
        mine = ksa_ckpt_checksum_floats(part->data + (a - part->origin), b - a, a - e->offset);
#endif
    int N = ksa_dist_size();
    uint64_t *all = malloc((size_t)N * sizeof *all), sum = 0;
    KSA_ASSERT(all, "out of memory for the checksums of %d ranks", N);
    ksa_status st = ksa_dist_allgather_u64(&mine, 1, all);
    for (int r = 0; r < N; r++)
        sum += all[r];
    free(all);
    if (st != KSA_OK)
        return ksa_fail(st, "checkpoint %s: the checksum of /%s/%s: %s", path, gname, e->name,
                        ksa_last_error());
    char where[300];
    snprintf(where, sizeof where, "/%s/%s", gname, e->name);
    return write_attr(path, dset, where, "checksum", H5T_STD_U64LE, H5T_NATIVE_UINT64, &sum);
}

/* Dataset /gname/<e->name> (all ranks create it) and this rank's part of it (one collective
 * write under MPI, where a rank holding nothing of e selects nothing), with its checksum. */
static ksa_status write_tensor(const char *path, hid_t group, const char *gname, const ksa_param *e,
                               const rank_part *part)
{
    static const ksa_real nothing = 0; /* a valid buffer for an empty selection */
    ksa_status st = KSA_OK;
    hsize_t dims[2];
    param_dims(e, dims);
    hid_t space = H5Screate_simple(e->ndim, dims, NULL), dcpl = -1, dset = -1, mem = -1;
    hid_t dxpl = H5P_DEFAULT;
    /* no fill value: every element is written below (once), a fill would write it twice */
    if (space < 0 || (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0 ||
        (dset = H5Dcreate2(group, e->name, FILE_REAL_TYPE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) <
            0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot create dataset /%s/%s", gname, e->name);
    size_t first = 0, count = 0;
    if (st == KSA_OK)
        st = select_slice(path, gname, e, part->lo, part->hi, space, &mem, &first, &count);
    if (st == KSA_OK && (dxpl = transfer_plist()) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot make a transfer property list for /%s/%s", gname,
                            e->name);
    if (st == KSA_OK && injected_write_error(gname))
        st = ksa_h5_fail_at(KSA_EIO, path, "/%s/%s: write error injected by KSA_TEST_FAULT", gname,
                            e->name);
    st = agree(path, st); /* every rank enters the collective write, or none does */
    if (st == KSA_OK &&
        H5Dwrite(dset, REAL_MEM_TYPE, mem, space, dxpl,
                 count ? part->data + (part->lo + first - part->origin) : &nothing) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot write dataset /%s/%s", gname, e->name);
    st = agree(path, st);
    if (st == KSA_OK)
        st = write_checksum(path, dset, gname, e, part);
    if (dxpl != H5P_DEFAULT)
        ksa_h5_close(dxpl, &st, path, "a transfer property list");
    ksa_h5_close(mem, &st, path, "a dataspace");
    ksa_h5_close(dset, &st, path, e->name);
    ksa_h5_close(dcpl, &st, path, "a dataset-creation property list");
    ksa_h5_close(space, &st, path, "a dataspace");
    return agree(path, st);
}

/* Group /gname with one dataset per parameter; part comes from p->data, p->grad or the
 * moments (all of the buffer's layout).                                                    */
static ksa_status write_tensors(const char *path, hid_t file, const char *gname,
                                const ksa_params *p, const rank_part *part)
{
    ksa_status st = KSA_OK;
    hid_t group = create_group(path, file, gname, &st);
    st = agree(path, st);
    for (size_t i = 0; i < p->n && st == KSA_OK; i++)
        st = write_tensor(path, group, gname, &p->table[i], part);
    ksa_h5_close(group, &st, path, gname);
    return agree(path, st);
}

/* ---- who writes what ----------------------------------------------------------------------- */
/* The range [lo, hi) of the flat buffer this rank writes, in /params, /grads and the moments;
 * the moment arrays it holds start at element origin.                                      */
typedef struct {
    size_t lo, hi, origin;
} write_plan;

/* The even split of n elements: rank r of N writes [r·s, (r+1)·s) ∩ [0, n), s = ceil(n/N). */
static void even_share(size_t n, write_plan *wp)
{
    size_t N = (size_t)ksa_dist_size(), s = (n + N - 1) / N;
    wp->lo = (size_t)ksa_dist_rank() * s;
    wp->lo = wp->lo < n ? wp->lo : n;
    wp->hi = n - wp->lo < s ? n : wp->lo + s;
}

static int by_start(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Without optimizer slices (ts NULL) or when every rank holds the whole buffer, the buffer is
 * split evenly. Otherwise each rank writes its own slice: the ranks' slices (gathered: one
 * collective) must tile the buffer, else a slice would be written twice or not at all.    */
static ksa_status plan_write(const char *path, const ksa_params *p, const ksa_ckpt_train_state *ts,
                             write_plan *wp)
{
    memset(wp, 0, sizeof *wp);
    even_share(p->numel, wp);
    if (!ts)
        return KSA_OK;
    size_t lo = ts->slice_lo, hi = ts->slice_hi;
    if (lo == 0 && hi == 0)
        hi = p->numel; /* a zero-initialised struct: the whole buffer */
    KSA_ASSERT(lo <= hi, "checkpoint %s: optimizer slice [%zu, %zu) ends before it starts", path,
               lo, hi);
    KSA_ASSERT(lo == hi || (ts->exp_avg && ts->exp_avg_sq),
               "checkpoint %s: optimizer slice [%zu, %zu) without moment arrays", path, lo, hi);
    int N = ksa_dist_size();
    uint64_t mine[2] = {lo, hi}, *all = malloc(2 * (size_t)N * sizeof *all);
    KSA_ASSERT(all, "out of memory for the slices of %d ranks", N);
    if (ksa_dist_allgather_u64(mine, 2, all) != KSA_OK) {
        free(all);
        return ksa_fail(KSA_EMPI, "checkpoint %s: the optimizer slices: %s", path,
                        ksa_last_error());
    }
    int all_whole = 1;
    for (int r = 0; r < N; r++)
        all_whole &= all[2 * r] == 0 && all[2 * r + 1] >= p->numel;
    if (!all_whole) { /* every rank sees the same slices, so all agree on the verdict */
        qsort(all, (size_t)N, sizeof mine, by_start);
        uint64_t next = 0;
        for (int r = 0; r < N; r++) {
            if (all[2 * r] == all[2 * r + 1])
                continue; /* an empty slice */
            KSA_ASSERT(all[2 * r] == next,
                       "checkpoint %s: the ranks' optimizer slices do not tile the buffer of "
                       "%zu elements: one is [%llu, %llu), the next expected start is %llu",
                       path, p->numel, (unsigned long long)all[2 * r],
                       (unsigned long long)all[2 * r + 1], (unsigned long long)next);
            next = all[2 * r + 1];
        }
        KSA_ASSERT(next >= p->numel,
                   "checkpoint %s: the ranks' optimizer slices end at %llu, the buffer has %zu "
                   "elements",
                   path, (unsigned long long)next, p->numel);
        wp->lo = lo;
        wp->hi = hi;
    }
    free(all);
    wp->origin = lo;
    return KSA_OK;
}

/* The pattern keys hold either an integer or a pattern (KSA_SPEC §1.3). */
static int is_pattern_key(const char *name)
{
    return !strcmp(name, "summary_sliding_chunk_num") || !strcmp(name, "summary_layer_freq");
}

/* 1 if s is a canonical decimal integer ("0", "16"; not "016" or "+1"), stored in *v. */
static int plain_integer(const char *s, long long *v)
{
    if (!s[0] || (s[0] == '0' && s[1]))
        return 0;
    for (const char *c = s; *c; c++)
        if (*c < '0' || *c > '9')
            return 0;
    errno = 0;
    *v = strtoll(s, NULL, 10);
    return errno == 0;
}

/* One attribute per key of the table, so a key added to config.c is written without a
 * change here. Unset optional keys (-1) are left out, except summary_independent_qkv, which
 * is written resolved so that other tools need not know the rule that it follows
 * summary_independent_parameters. summary_token_begin is written exactly when the model
 * uses it (summary attention on, summary tokens embedded as rows of model.embed_tokens;
 * CHECKPOINT_FORMAT.md), as scripts/torch_reference.py does; resolve has checked it is set. */
static ksa_status write_config(const char *path, hid_t file, const ksa_model_config *cfg,
                               const ksa_model_layout *layout)
{
    int token_begin_used = layout->ksa && !layout->independent_embedding;
    ksa_status made = KSA_OK;
    hid_t group = create_group(path, file, "config", &made);
    if (group < 0)
        return made;
    size_t n;
    const ksa_config_key *keys = ksa_model_config_keys(&n);
    ksa_status st = KSA_OK;
    for (size_t i = 0; i < n && st == KSA_OK; i++) {
        const ksa_config_key *k = &keys[i];
        const char *field = (const char *)cfg + k->offset;
        long long iv;
        switch (k->kind) {
        case KSA_KEY_INT:
        case KSA_KEY_BOOL:
            iv = *(const long *)field;
            if (iv < 0 && !strcmp(k->name, "summary_independent_qkv"))
                iv = cfg->summary_independent_parameters;
            if (iv < 0) /* unset optional key */
                break;
            if (!strcmp(k->name, "summary_token_begin") && !token_begin_used)
                break;
            if (k->kind == KSA_KEY_BOOL)
                iv = iv != 0;
            st = write_attr_int(path, group, "/config", k->name, iv);
            break;
        case KSA_KEY_FLOAT:
            st = write_attr_double(path, group, "/config", k->name, *(const double *)field);
            break;
        case KSA_KEY_STRING:
            if (is_pattern_key(k->name) && plain_integer(field, &iv))
                st = write_attr_int(path, group, "/config", k->name, iv);
            else
                st = write_attr_string(path, group, "/config", k->name, field);
            break;
        }
    }
    ksa_h5_close(group, &st, path, "/config");
    return st;
}

void ksa_ckpt_tokenizer_identity(const unsigned char *json, size_t len,
                                 char id[KSA_CKPT_TOKENIZER_ID])
{
    snprintf(id, KSA_CKPT_TOKENIZER_ID, "bpe-%016llx", (unsigned long long)XXH3_64bits(json, len));
}

/* /tokenizer/tokenizer.json: uint8 [len] and its checksum (verify.h). Collective under MPI:
 * every rank creates the dataset, rank 0 writes all of it and the others select nothing. */
static ksa_status write_tokenizer_json(const char *path, hid_t group, const unsigned char *json,
                                       size_t len)
{
    static const unsigned char nothing = 0;
    ksa_status st = KSA_OK;
    hsize_t dims[1] = {len};
    hid_t space = H5Screate_simple(1, dims, NULL), mem = -1, dset = -1, dxpl = H5P_DEFAULT;
    int writer = ksa_dist_rank() == 0 && len > 0;
    if (space < 0 || (mem = H5Screate_simple(1, dims, NULL)) < 0 ||
        (dset = H5Dcreate2(group, "tokenizer.json", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT,
                           H5P_DEFAULT)) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot create dataset /tokenizer/tokenizer.json");
    if (st == KSA_OK && !writer && (H5Sselect_none(space) < 0 || H5Sselect_none(mem) < 0))
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot select /tokenizer/tokenizer.json");
    if (st == KSA_OK && (dxpl = transfer_plist()) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot make a transfer property list");
    st = agree(path, st);
    if (st == KSA_OK &&
        H5Dwrite(dset, H5T_NATIVE_UCHAR, mem, space, dxpl, writer ? json : &nothing) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot write dataset /tokenizer/tokenizer.json");
    st = agree(path, st);
    uint64_t sum = ksa_ckpt_checksum_bytes(json, len, 0); /* every rank holds all the bytes */
    if (st == KSA_OK)
        st = write_attr(path, dset, "/tokenizer/tokenizer.json", "checksum", H5T_STD_U64LE,
                        H5T_NATIVE_UINT64, &sum);
    if (dxpl != H5P_DEFAULT)
        ksa_h5_close(dxpl, &st, path, "a transfer property list");
    ksa_h5_close(dset, &st, path, "/tokenizer/tokenizer.json");
    ksa_h5_close(mem, &st, path, "a dataspace");
    ksa_h5_close(space, &st, path, "a dataspace");
    return agree(path, st);
}

static ksa_status write_tokenizer(const char *path, hid_t file, const ksa_ckpt_tokenizer *tok)
{
    ksa_status made = KSA_OK;
    hid_t group = create_group(path, file, "tokenizer", &made);
    if (group < 0)
        return made;
    char id[KSA_CKPT_TOKENIZER_ID];
    const char *type = tok->type ? tok->type : "byte";
    if (tok->json) {
        ksa_ckpt_tokenizer_identity(tok->json, tok->json_len, id);
        KSA_ASSERT(!tok->type || !strcmp(tok->type, id),
                   "checkpoint %s: tokenizer type '%s' is not the identity '%s' of its json", path,
                   tok->type, id);
        type = id;
    }
    ksa_status st = write_attr_string(path, group, "/tokenizer", "type", type);
    if (st == KSA_OK && tok->eot_id >= 0)
        st = write_attr_int(path, group, "/tokenizer", "eot_id", tok->eot_id);
    if (tok->json)
        st = write_tokenizer_json(path, group, tok->json, st == KSA_OK ? tok->json_len : 0);
    ksa_h5_close(group, &st, path, "/tokenizer");
    return st;
}

static ksa_status write_train_state(const char *path, hid_t file, const ksa_ckpt_train_state *ts,
                                    const ksa_params *p, const write_plan *wp);

static ksa_status write_checkpoint(const char *path, const ksa_model_config *cfg,
                                   const ksa_params *p, const ksa_ckpt_tokenizer *tok,
                                   const ksa_ckpt_train_state *ts)
{
    /* a reader must be able to rebuild the model from /config alone: refuse what it would
     * refuse, before any file exists                                                      */
    KSA_ASSERT(p->data, "checkpoint %s: parameter buffers are not allocated", path);
    ksa_model_layout layout;
    if (ksa_model_config_resolve(cfg, &layout) != KSA_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", ksa_last_error());
        return ksa_h5_fail_at(KSA_EINVAL, path, "refusing to write an invalid configuration: %s",
                              why);
    }
    /* the moments' layout: the parameters' own, or the trained parameters' (frozen ones) */
    const ksa_params *mp = ts && ts->moments_of ? ts->moments_of : p;
    write_plan wp, wp_moments;
    KSA_TRY(plan_write(path, mp, ts, &wp_moments));
    if (mp == p)
        wp = wp_moments;
    else
        KSA_TRY(plan_write(path, p, NULL, &wp)); /* the parameters split evenly */
    /* every dataset is float32 in the file: the parameters, and with a training state the
     * two AdamW moments                                                                    */
    double value_bytes = (double)p->numel * 4.0 + (ts && ts->exp_avg ? 8.0 * (double)mp->numel : 0);
    ckpt_writer w;
    KSA_TRY(writer_open(&w, path, value_bytes));
    /* under MPI: after each step every rank knows whether all succeeded (agree) */
    ksa_status st = write_attr_string(path, w.file, "root", "format", KSA_CKPT_FORMAT);
    if (st == KSA_OK)
        st = write_attr_int(path, w.file, "root", "format_version",
                            tok->json ? KSA_CKPT_FORMAT_VERSION : KSA_CKPT_FORMAT_VERSION_PLAIN);
    st = agree(path, st);
    if (st == KSA_OK)
        st = agree(path, write_config(path, w.file, cfg, &layout));
    if (st == KSA_OK) {
        rank_part params = {p->data, 0, wp.lo, wp.hi};
        st = write_tensors(path, w.file, "params", p, &params);
    }
    if (st == KSA_OK)
        st = agree(path, write_tokenizer(path, w.file, tok));
    if (st == KSA_OK && ts)
        st = write_train_state(path, w.file, ts, mp, &wp_moments);
    if (st != KSA_OK) {
        writer_abort(&w);
        return st;
    }
    return writer_commit(&w);
}

ksa_status ksa_ckpt_write_model(const char *path, const ksa_model_config *cfg, const ksa_params *p,
                                int eot_id)
{
    ksa_ckpt_tokenizer tok = {.type = "byte", .eot_id = eot_id};
    return write_checkpoint(path, cfg, p, &tok, NULL);
}

ksa_status ksa_ckpt_write_model_tokenizer(const char *path, const ksa_model_config *cfg,
                                          const ksa_params *p, const ksa_ckpt_tokenizer *tok)
{
    ksa_ckpt_tokenizer byte = {.type = "byte", .eot_id = -1};
    return write_checkpoint(path, cfg, p, tok ? tok : &byte, NULL);
}

ksa_status ksa_ckpt_write_training(const char *path, const ksa_model_config *cfg,
                                   const ksa_params *p, int eot_id, const ksa_ckpt_train_state *ts)
{
    ksa_ckpt_tokenizer tok = {.type = ts->tokenizer,
                              .eot_id = eot_id,
                              .json = ts->tokenizer_json,
                              .json_len = ts->tokenizer_json_len};
    return write_checkpoint(path, cfg, p, &tok, ts);
}

/* "dir/x" -> "<cwd>/dir/x" (paths of /train are absolute: a resume works from anywhere) */
/* /optim (AdamW hyperparameters and moments) and /train (step, tokens, every training key). */
static ksa_status write_train_state(const char *path, hid_t file, const ksa_ckpt_train_state *ts,
                                    const ksa_params *p, const write_plan *wp)
{
    const ksa_ckpt_adamw *a = &ts->adamw;
    ksa_status st = KSA_OK;
    hid_t optim = create_group(path, file, "optim", &st);
    if (optim < 0)
        return agree(path, st);
    st = write_attr_string(path, optim, "/optim", "type", "adamw");
    if (st == KSA_OK)
        st = write_attr_double(path, optim, "/optim", "beta1", a->beta1);
    if (st == KSA_OK)
        st = write_attr_double(path, optim, "/optim", "beta2", a->beta2);
    if (st == KSA_OK)
        st = write_attr_double(path, optim, "/optim", "eps", a->eps);
    if (st == KSA_OK)
        st = write_attr_double(path, optim, "/optim", "weight_decay", a->weight_decay);
    ksa_h5_close(optim, &st, path, "/optim");
    st = agree(path, st);
    rank_part m = {ts->exp_avg, wp->origin, wp->lo, wp->hi};
    rank_part v = {ts->exp_avg_sq, wp->origin, wp->lo, wp->hi};
    if (st == KSA_OK)
        st = write_tensors(path, file, "optim/exp_avg", p, &m);
    if (st == KSA_OK)
        st = write_tensors(path, file, "optim/exp_avg_sq", p, &v);
    if (st != KSA_OK)
        return st;

    hid_t train = create_group(path, file, "train", &st);
    if (train < 0)
        return agree(path, st);
    st = write_attr_int(path, train, "/train", "step", ts->step);
    if (st == KSA_OK)
        st = write_attr_int(path, train, "/train", "tokens_seen", (long long)ts->tokens_seen);
    if (st == KSA_OK)
        st = write_attr_int(path, train, "/train", "world_size", ts->world_size);
    if (st == KSA_OK) /* the loader is step-addressed: (seed, step) is its whole state */
        st = write_attr_string(path, train, "/train", "data_order", "step-addressed (seed, step)");
    const char *stamp_names[] = {"run_id", "data_identity", "val_data_identity"};
    const char *stamps[] = {ts->run_id, ts->data_identity, ts->val_data_identity};
    for (int i = 0; i < 3 && st == KSA_OK; i++)
        if (stamps[i] && stamps[i][0])
            st = write_attr_string(path, train, "/train", stamp_names[i], stamps[i]);
    if (st == KSA_OK && !isnan(ts->val_loss))
        st = write_attr_double(path, train, "/train", "val_loss", ts->val_loss);
    /* the loss-spike guard's state: what a resume needs to judge the next steps alike */
    if (st == KSA_OK && ts->n_loss_window > 0)
        st = write_attr_doubles(path, train, "/train", "loss_window", ts->loss_window,
                                ts->n_loss_window);
    if (st == KSA_OK)
        st = write_attr_int(path, train, "/train", "loss_high_steps", ts->loss_high_steps);
    if (st == KSA_OK)
        st = write_attr_int(path, train, "/train", "skipped_steps", ts->skipped_steps);
    for (size_t i = 0; i < ts->n_train_keys && st == KSA_OK; i++) {
        const ksa_config_key *k = &ts->train_keys[i];
        const char *field = (const char *)ts->train + k->offset;
        switch (k->kind) {
        case KSA_KEY_INT:
        case KSA_KEY_BOOL: /* -1: an unset optional key, not written (read back as unset) */
            if (*(const long *)field >= 0)
                st = write_attr_int(path, train, "/train", k->name, *(const long *)field);
            break;
        case KSA_KEY_FLOAT:
            st = write_attr_double(path, train, "/train", k->name, *(const double *)field);
            break;
        case KSA_KEY_STRING:
            st = write_attr_string(path, train, "/train", k->name, field);
            break;
        }
    }
    ksa_h5_close(train, &st, path, "/train");
    return agree(path, st);
}

ksa_status ksa_ckpt_write_grads(const char *path, const ksa_params *p)
{
    KSA_ASSERT(p->grad, "checkpoint %s: parameter buffers are not allocated", path);
    write_plan wp;
    KSA_TRY(plan_write(path, p, NULL, &wp));
    ckpt_writer w;
    KSA_TRY(writer_open(&w, path, (double)p->numel * 4.0));
    rank_part grads = {p->grad, 0, wp.lo, wp.hi};
    ksa_status st = write_tensors(path, w.file, "grads", p, &grads);
    if (st != KSA_OK) {
        writer_abort(&w);
        return st;
    }
    return writer_commit(&w);
}

/* ---- reading attributes ------------------------------------------------------------------ */
typedef enum { VALUE_INT, VALUE_FLOAT, VALUE_STRING } value_kind;

/* Reads one attribute holding a single value (scalar or one-element dataspace) as text: an
 * integer of any width or sign, a boolean enum, a float of any width (the shortest text that
 * reads back in its precision), or a string of at most cap - 1 characters. */
static ksa_status read_attr_text(const char *path, hid_t loc, const char *where, const char *name,
                                 char *out, size_t cap, value_kind *kind)
{
    ksa_h5_attr a;
    KSA_TRY(ksa_h5_attr_read(path, loc, where, name, 1, &a));
    ksa_status st = KSA_OK;
    if (!a.scalar_like)
        st = ksa_h5_fail_at(KSA_EFORMAT, path, "%s attribute '%s' holds %zu values, expected one",
                            where, name, a.n);
    else if (a.kind == KSA_H5_OTHER)
        st = ksa_h5_fail_at(
            KSA_EFORMAT, path,
            "%s attribute '%s' has HDF5 type class %d; expected an integer, a float or "
            "a string",
            where, name, a.type_class);
    else if (a.kind == KSA_H5_STRING && strlen(a.s[0]) >= cap)
        st = ksa_h5_fail_at(KSA_EFORMAT, path,
                            "%s attribute '%s' holds %zu characters, at most %zu "
                            "are supported",
                            where, name, strlen(a.s[0]), cap - 1);
    if (st != KSA_OK) {
        ksa_h5_attr_free(&a);
        return st;
    }
    switch (a.kind) {
    case KSA_H5_INT:
        *kind = VALUE_INT;
        snprintf(out, cap, "%lld", a.i[0]);
        break;
    case KSA_H5_UINT:
        *kind = VALUE_INT;
        snprintf(out, cap, "%llu", a.u[0]);
        break;
    case KSA_H5_FLOAT:
        *kind = VALUE_FLOAT;
        ksa_h5_format_real(out, cap, a.f[0], a.single);
        break;
    default:
        *kind = VALUE_STRING;
        snprintf(out, cap, "%s", a.s[0]);
    }
    ksa_h5_attr_free(&a);
    return KSA_OK;
}

/* ---- reading: format, /config, /params ----------------------------------------------------- */
static ksa_status require_root_attr(const char *path, hid_t file, const char *name)
{
    htri_t has = H5Aexists(file, name);
    if (has < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot look up root attribute '%s'", name);
    if (!has)
        return ksa_h5_fail_at(KSA_EFORMAT, path, "no root attribute '%s': not a ksa checkpoint",
                              name);
    return KSA_OK;
}

static ksa_status check_format(const char *path, hid_t file)
{
    char text[VALUE_MAX];
    value_kind kind;
    KSA_TRY(require_root_attr(path, file, "format"));
    KSA_TRY(read_attr_text(path, file, "root", "format", text, sizeof text, &kind));
    if (kind != VALUE_STRING || strcmp(text, KSA_CKPT_FORMAT) != 0)
        return ksa_h5_fail_at(KSA_EFORMAT, path,
                              "root attribute format is '%s', expected '%s': not a "
                              "ksa checkpoint",
                              text, KSA_CKPT_FORMAT);
    KSA_TRY(require_root_attr(path, file, "format_version"));
    KSA_TRY(read_attr_text(path, file, "root", "format_version", text, sizeof text, &kind));
    char *end;
    errno = 0;
    long long version = strtoll(text, &end, 10);
    if (kind == VALUE_STRING || errno || *end)
        return ksa_h5_fail_at(KSA_EFORMAT, path,
                              "root attribute format_version is '%s', expected an "
                              "integer",
                              text);
    if (version > KSA_CKPT_FORMAT_VERSION)
        return ksa_h5_fail_at(KSA_EFORMAT, path,
                              "format_version %lld is newer than this program "
                              "reads (%d); use a newer ksa",
                              version, KSA_CKPT_FORMAT_VERSION);
    if (version < 1)
        return ksa_h5_fail_at(KSA_EFORMAT, path, "format_version %lld is not a valid version",
                              version);
    return KSA_OK;
}

/* read_data: the caller reads dataset values (verify.h), not only attributes and shapes. */
static ksa_status open_checkpoint(const char *path, int read_data, hid_t *file)
{
    KSA_TRY(open_hdf5(path, read_data, file));
    ksa_status st = check_format(path, *file);
    if (st != KSA_OK) {
        H5Fclose(*file);
        *file = -1;
    }
    return st;
}

typedef struct {
    const char *path;
    ksa_model_config *cfg;
    const ksa_config_key *keys;
    size_t n_keys;
    unsigned char *seen; /* [n_keys] */
    ksa_status st;
} config_reader;

static herr_t apply_config_attr(hid_t group, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    config_reader *r = data;
    size_t i = 0;
    while (i < r->n_keys && strcmp(r->keys[i].name, name) != 0)
        i++;
    if (i == r->n_keys) { /* other tools may store more (CHECKPOINT_FORMAT.md) */
        fprintf(stderr, "warning: %s: /config attribute '%s' is not a known key; ignored\n",
                r->path, name);
        return 0;
    }
    char text[VALUE_MAX], origin[512];
    value_kind kind;
    r->st = read_attr_text(r->path, group, "/config", name, text, sizeof text, &kind);
    if (r->st != KSA_OK)
        return -1;
    snprintf(origin, sizeof origin, "checkpoint %s: /config attribute '%s'", r->path, name);
    r->st = ksa_model_config_set(r->cfg, name, text, origin);
    if (r->st != KSA_OK)
        return -1;
    r->seen[i] = 1;
    return 0;
}

/* Keys a file may lack: the documented optional ones, and every summary_* key of a model
 * without summary attention (they are ignored then).                                       */
static int key_may_be_missing(const char *name, const ksa_model_config *cfg)
{
    if (!strcmp(name, "summary_independent_qk_norm") || !strcmp(name, "summary_token_begin") ||
        !strcmp(name, "layer_sliding_window") || !strcmp(name, "sliding_chunk_attention") ||
        !strncmp(name, "summary_mix_", 12))
        return 1; /* the attention variants and annealing came later: absent = off */
    return !cfg->use_summary_attention && !strncmp(name, "summary_", 8);
}

ksa_status ksa_ckpt_read_config(const char *path, ksa_model_config *cfg)
{
    hid_t file, group = -1;
    KSA_TRY(open_checkpoint(path, 0, &file));
    ksa_model_config_defaults(cfg);
    config_reader r = {.path = path, .cfg = cfg, .st = KSA_OK};
    r.keys = ksa_model_config_keys(&r.n_keys);
    r.seen = calloc(r.n_keys, 1);
    KSA_ASSERT(r.seen, "out of memory");
    ksa_status st = ksa_h5_open_group(path, file, "/config", 1, &group);
    if (st == KSA_OK &&
        H5Aiterate2(group, H5_INDEX_NAME, H5_ITER_INC, NULL, apply_config_attr, &r) < 0)
        st = r.st != KSA_OK ? r.st
                            : ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list /config attributes");
    for (size_t i = 0; i < r.n_keys && st == KSA_OK; i++)
        if (!r.seen[i] && !key_may_be_missing(r.keys[i].name, cfg))
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "/config lacks the attribute '%s' (defaults differ "
                                "between tools, so it cannot be assumed)",
                                r.keys[i].name);
    if (st == KSA_OK) {
        ksa_model_layout layout;
        if (ksa_model_config_resolve(cfg, &layout) != KSA_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", ksa_last_error());
            st = ksa_h5_fail_at(KSA_EFORMAT, path, "/config is not a valid model: %s", why);
        }
    }
    free(r.seen);
    ksa_h5_close(group, &st, path, "/config");
    ksa_h5_close(file, &st, path, "the file");
    return st;
}

/* Checks /gname/<e->name> (present, e's shape, floats) and reads the elements of e inside
 * [lo, hi) of the flat buffer, element g into base[g - lo] (independent I/O).              */
static ksa_status read_tensor(const char *path, hid_t group, const char *gname, const ksa_param *e,
                              ksa_real *base, size_t lo, size_t hi)
{
    char want[64], got[128];
    hsize_t want_dims[2], dims[H5S_MAX_RANK];
    param_dims(e, want_dims);
    ksa_h5_format_dims(want, sizeof want, e->ndim, want_dims);
    htri_t has = H5Lexists(group, e->name, H5P_DEFAULT);
    if (has < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot look up %s/%s", gname, e->name);
    if (!has)
        return ksa_h5_fail_at(KSA_EFORMAT, path, "%s/%s is missing (the configuration needs %s)",
                              gname, e->name, want);
    ksa_status st = KSA_OK;
    hid_t dset = H5Dopen2(group, e->name, H5P_DEFAULT), space = -1, type = -1, mem = -1;
    int ndim = -1;
    if (dset < 0 || (space = H5Dget_space(dset)) < 0 || (type = H5Dget_type(dset)) < 0 ||
        (ndim = H5Sget_simple_extent_ndims(space)) < 0 ||
        H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot open dataset %s/%s", gname, e->name);
        goto done;
    }
    int same = ndim == e->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = dims[d] == want_dims[d];
    if (!same) {
        st = ksa_h5_fail_at(KSA_EFORMAT, path, "%s/%s has shape %s, the configuration needs %s",
                            gname, e->name, ksa_h5_format_dims(got, sizeof got, ndim, dims), want);
        goto done;
    }
    if (!ksa_h5_is_real(type)) {
        st = ksa_h5_fail_at(KSA_EFORMAT, path,
                            "%s/%s does not hold floating-point numbers of " KSA_H5_REAL_SIZES
                            " (HDF5 type class %d, %zu bytes)",
                            gname, e->name, (int)H5Tget_class(type), H5Tget_size(type));
        goto done;
    }
    size_t first, count;
    st = select_slice(path, gname + 1, e, lo, hi, space, &mem, &first, &count); /* "params" */
    if (st == KSA_OK && count &&
        H5Dread(dset, REAL_MEM_TYPE, mem, space, H5P_DEFAULT, base + first) < 0)
        st = ksa_h5_fail_h5(KSA_EIO, path, "cannot read dataset %s/%s", gname, e->name);
done:
    ksa_h5_close(mem, &st, path, "a dataspace");
    ksa_h5_close(type, &st, path, e->name);
    ksa_h5_close(space, &st, path, e->name);
    ksa_h5_close(dset, &st, path, e->name);
    return st;
}

/* Objects in /params that the table does not have. */
static ksa_status check_extra(const char *path, hid_t group, const ksa_params *p)
{
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0)
        return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list /params");
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len =
            H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (len < 0)
            return ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list /params");
        char *name = malloc((size_t)len + 1);
        KSA_ASSERT(name, "out of memory for a name of %zd bytes", len);
        ksa_status st = KSA_OK;
        if (H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)len + 1,
                               H5P_DEFAULT) < 0)
            st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list /params");
        else if (ksa_params_find(p, name) < 0)
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "/params/%s is not a parameter of the configuration", name);
        free(name);
        if (st != KSA_OK)
            return st;
    }
    return KSA_OK;
}

ksa_status ksa_ckpt_read_params(const char *path, ksa_params *p, int allow_extra)
{
    KSA_ASSERT(p->data, "checkpoint %s: parameter buffers are not allocated", path);
    hid_t file, group = -1;
    KSA_TRY(open_checkpoint(path, 1, &file));
    ksa_status st = ksa_h5_open_group(path, file, "/params", 1, &group);
    for (size_t i = 0; i < p->n && st == KSA_OK; i++)
        st = read_tensor(path, group, "/params", &p->table[i], p->data, 0, p->numel);
    if (st == KSA_OK && !allow_extra)
        st = check_extra(path, group, p);
    ksa_h5_close(group, &st, path, "/params");
    ksa_h5_close(file, &st, path, "the file");
    return st;
}

/* ---- inspection ----------------------------------------------------------------------------- */
ksa_status ksa_ckpt_has(const char *path, const char *object, int *found)
{
    *found = 0;
    if (object[0] != '/')
        return ksa_fail(KSA_EINVAL, "checkpoint %s: object name '%s' is not absolute", path,
                        object);
    hid_t file;
    KSA_TRY(open_hdf5(path, 0, &file));
    char *buf = strdup(object);
    KSA_ASSERT(buf, "out of memory");
    ksa_status st = KSA_OK;
    int present = 1;
    /* one component at a time: H5Lexists needs every parent to exist and be a group */
    for (char *s = buf + 1; *s && present && st == KSA_OK;) {
        char *slash = strchr(s, '/');
        if (slash)
            *slash = '\0';
        htri_t has = H5Lexists(file, buf, H5P_DEFAULT);
        if (has < 0)
            st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot look up '%s'", buf);
        present = has > 0;
        if (present && slash && st == KSA_OK) {
            hid_t obj = H5Oopen(file, buf, H5P_DEFAULT);
            if (obj < 0)
                st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot open '%s'", buf);
            else
                present = H5Iget_type(obj) == H5I_GROUP;
            ksa_h5_close(obj, &st, path, buf);
        }
        if (!slash)
            break;
        *slash = '/';
        s = slash + 1;
    }
    *found = st == KSA_OK && present;
    free(buf);
    ksa_h5_close(file, &st, path, "the file");
    return st;
}

/* ---- training state: /train and /optim ---------------------------------------------------- */
typedef struct {
    const char *path;
    const ksa_config_key *keys;
    size_t n_keys;
    ksa_config_setter set;
    void *ctx;
    ksa_ckpt_progress *pr;
    int have_step, have_tokens;
    ksa_status st;
} train_reader;

/* /train loss_window: at most KSA_CKPT_MAX_LOSS_WINDOW finite numbers. */
static ksa_status read_loss_window(const char *path, hid_t group, ksa_ckpt_progress *pr)
{
    ksa_h5_attr a;
    KSA_TRY(ksa_h5_attr_read(path, group, "/train", "loss_window", KSA_CKPT_MAX_LOSS_WINDOW, &a));
    ksa_status st = KSA_OK;
    if (a.kind != KSA_H5_FLOAT || a.n_read != a.n)
        st = ksa_h5_fail_at(KSA_EFORMAT, path,
                            "/train attribute loss_window holds %zu values; expected at most %d "
                            "floats",
                            a.n, KSA_CKPT_MAX_LOSS_WINDOW);
    for (size_t i = 0; i < a.n_read && st == KSA_OK; i++)
        if (!isfinite(a.f[i]))
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "/train attribute loss_window[%zu] is %g, expected a finite loss",
                                i, a.f[i]);
    if (st == KSA_OK) {
        memcpy(pr->loss_window, a.f, a.n * sizeof *a.f);
        pr->n_loss_window = a.n;
    }
    ksa_h5_attr_free(&a);
    return st;
}

static herr_t apply_train_attr(hid_t group, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    train_reader *r = data;
    char text[VALUE_MAX], origin[512];
    value_kind kind;
    if (!strcmp(name, "loss_window")) {
        r->st = read_loss_window(r->path, group, r->pr);
        return r->st == KSA_OK ? 0 : -1;
    }
    r->st = read_attr_text(r->path, group, "/train", name, text, sizeof text, &kind);
    if (r->st != KSA_OK)
        return -1;
    int guard_count = !strcmp(name, "loss_high_steps") || !strcmp(name, "skipped_steps");
    if (!strcmp(name, "step") || !strcmp(name, "tokens_seen") || guard_count) {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (kind != VALUE_INT || errno || *end || v < 0) {
            r->st = ksa_h5_fail_at(KSA_EFORMAT, r->path,
                                   "/train attribute %s is '%s', expected a "
                                   "non-negative integer",
                                   name, text);
            return -1;
        }
        if (!strcmp(name, "step"))
            r->pr->step = (long)v, r->have_step = 1;
        else if (!strcmp(name, "loss_high_steps"))
            r->pr->loss_high_steps = (long)v;
        else if (!strcmp(name, "skipped_steps"))
            r->pr->skipped_steps = (long)v;
        else
            r->pr->tokens_seen = (unsigned long long)v, r->have_tokens = 1;
        return 0;
    }
    char *stamp = !strcmp(name, "run_id")              ? r->pr->run_id
                  : !strcmp(name, "data_identity")     ? r->pr->data_identity
                  : !strcmp(name, "val_data_identity") ? r->pr->val_data_identity
                                                       : NULL;
    if (stamp) {
        snprintf(stamp, KSA_CKPT_STAMP, "%.*s", KSA_CKPT_STAMP - 1, text);
        return 0;
    }
    if (!strcmp(name, "val_loss")) {
        char *end;
        r->pr->val_loss = strtod(text, &end);
        if (kind == VALUE_STRING || *end) {
            r->st = ksa_h5_fail_at(KSA_EFORMAT, r->path,
                                   "/train attribute val_loss is '%s', expected a number", text);
            return -1;
        }
        return 0;
    }
    if (!strcmp(name, "world_size") || !strcmp(name, "data_order"))
        return 0; /* informational */
    if (!ksa_config_key_find(r->keys, r->n_keys, name)) {
        fprintf(stderr, "warning: %s: /train attribute '%s' is not a known key; ignored\n", r->path,
                name);
        return 0;
    }
    snprintf(origin, sizeof origin, "checkpoint %s: /train attribute '%s'", r->path, name);
    r->st = r->set(r->ctx, name, text, origin);
    return r->st == KSA_OK ? 0 : -1;
}

ksa_status ksa_ckpt_read_train(const char *path, const ksa_config_key *keys, size_t n_keys,
                               ksa_config_setter set, void *ctx, ksa_ckpt_progress *pr)
{
    hid_t file, group = -1;
    memset(pr, 0, sizeof *pr);
    pr->val_loss = NAN;
    KSA_TRY(open_checkpoint(path, 0, &file));
    train_reader r = {.path = path,
                      .keys = keys,
                      .n_keys = n_keys,
                      .set = set,
                      .ctx = ctx,
                      .pr = pr,
                      .st = KSA_OK};
    ksa_status st = ksa_h5_open_group(path, file, "/train", 1, &group);
    if (st != KSA_OK)
        st = ksa_h5_fail_at(KSA_EFORMAT, path,
                            "no /train group: a model-only checkpoint cannot be "
                            "resumed (use --init-from to start a run from it)");
    if (st == KSA_OK &&
        H5Aiterate2(group, H5_INDEX_NAME, H5_ITER_INC, NULL, apply_train_attr, &r) < 0)
        st = r.st != KSA_OK ? r.st
                            : ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot list /train attributes");
    if (st == KSA_OK && (!r.have_step || !r.have_tokens))
        st = ksa_h5_fail_at(KSA_EFORMAT, path, "/train lacks the attribute '%s'",
                            r.have_step ? "tokens_seen" : "step");
    if (st == KSA_OK && pr->skipped_steps > pr->step)
        st = ksa_h5_fail_at(KSA_EFORMAT, path,
                            "/train skipped_steps = %ld exceeds step = %ld (the updates applied "
                            "would be negative)",
                            pr->skipped_steps, pr->step);
    ksa_h5_close(group, &st, path, "/train");
    ksa_h5_close(file, &st, path, "the file");
    return st;
}

/* Attribute `name` of `group` as text into out, or fallback when the attribute (or, unless
 * required, the group) is absent. */
static ksa_status read_optional_text(const char *path, const char *group_name, int required,
                                     const char *name, const char *fallback, char *out, size_t cap)
{
    hid_t file, group = -1;
    snprintf(out, cap, "%s", fallback);
    KSA_TRY(open_checkpoint(path, 0, &file));
    ksa_status st = ksa_h5_open_group(path, file, group_name, required, &group);
    if (st == KSA_OK && group >= 0 && H5Aexists(group, name) > 0) {
        char text[VALUE_MAX];
        value_kind kind;
        st = read_attr_text(path, group, group_name, name, text, sizeof text, &kind);
        if (st == KSA_OK)
            snprintf(out, cap, "%s", text);
    }
    ksa_h5_close(group, &st, path, group_name);
    ksa_h5_close(file, &st, path, "the file");
    return st;
}

ksa_status ksa_ckpt_read_tokenizer(const char *path, char *type, size_t cap)
{
    return read_optional_text(path, "/tokenizer", 0, "type", "byte", type, cap);
}

ksa_status ksa_ckpt_read_eot_id(const char *path, int *eot_id)
{
    char text[64], *end;
    KSA_TRY(read_optional_text(path, "/tokenizer", 0, "eot_id", "-1", text, sizeof text));
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < -1 || v > INT32_MAX)
        return ksa_h5_fail_at(KSA_EFORMAT, path, "/tokenizer attribute eot_id is '%s'", text);
    *eot_id = (int)v;
    return KSA_OK;
}

ksa_status ksa_ckpt_read_tokenizer_json(const char *path, unsigned char **bytes, size_t *len)
{
    *bytes = NULL;
    *len = 0;
    hid_t file, group = -1, dset = -1, space = -1, type = -1;
    KSA_TRY(open_checkpoint(path, 0, &file)); /* metadata verified, the bytes checked below */
    ksa_status st = ksa_h5_open_group(path, file, "/tokenizer", 0, &group);
    htri_t has = group >= 0 ? H5Lexists(group, "tokenizer.json", H5P_DEFAULT) : 0;
    if (st == KSA_OK && has < 0)
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot look up /tokenizer/tokenizer.json");
    if (st != KSA_OK || has <= 0)
        goto out;
    hsize_t dims[1] = {0};
    if ((dset = H5Dopen2(group, "tokenizer.json", H5P_DEFAULT)) < 0 ||
        (space = H5Dget_space(dset)) < 0 || (type = H5Dget_type(dset)) < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot open /tokenizer/tokenizer.json");
        goto out;
    }
    if (H5Sget_simple_extent_ndims(space) != 1 || H5Tget_class(type) != H5T_INTEGER ||
        H5Tget_size(type) != 1 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = ksa_h5_fail_at(KSA_EFORMAT, path,
                            "/tokenizer/tokenizer.json is not a one-dimensional byte dataset");
        goto out;
    }
    *len = (size_t)dims[0];
    *bytes = malloc(*len ? *len : 1);
    if (!*bytes) {
        st = ksa_h5_fail_at(KSA_ENOMEM, path, "out of memory for a tokenizer.json of %zu bytes",
                            *len);
        goto out;
    }
    if (*len && H5Dread(dset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, *bytes) < 0) {
        st = ksa_h5_fail_h5(KSA_EFORMAT, path, "cannot read /tokenizer/tokenizer.json");
        goto out;
    }
    if (H5Aexists(dset, "checksum") > 0) {
        ksa_h5_attr a;
        st = ksa_h5_attr_read(path, dset, "/tokenizer/tokenizer.json", "checksum", 1, &a);
        if (st == KSA_OK) {
            uint64_t want = a.kind == KSA_H5_UINT && a.n_read == 1 ? (uint64_t)a.u[0]
                            : a.kind == KSA_H5_INT && a.n_read == 1
                                ? (uint64_t)a.i[0]
                                : ~ksa_ckpt_checksum_bytes(*bytes, *len, 0);
            if (want != ksa_ckpt_checksum_bytes(*bytes, *len, 0))
                st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                    "damaged: dataset /tokenizer/tokenizer.json does not match "
                                    "its checksum");
            ksa_h5_attr_free(&a);
        }
    }
    char type_text[VALUE_MAX], id[KSA_CKPT_TOKENIZER_ID];
    value_kind kind;
    if (st == KSA_OK && H5Aexists(group, "type") > 0 &&
        (st = read_attr_text(path, group, "/tokenizer", "type", type_text, sizeof type_text,
                             &kind)) == KSA_OK) {
        ksa_ckpt_tokenizer_identity(*bytes, *len, id);
        if (strcmp(type_text, id))
            st = ksa_h5_fail_at(KSA_EFORMAT, path,
                                "/tokenizer type '%s' is not the identity of its tokenizer.json "
                                "(%s)",
                                type_text, id);
    }
out:
    ksa_h5_close(type, &st, path, "a type");
    ksa_h5_close(space, &st, path, "a dataspace");
    ksa_h5_close(dset, &st, path, "/tokenizer/tokenizer.json");
    ksa_h5_close(group, &st, path, "/tokenizer");
    ksa_h5_close(file, &st, path, "the file");
    if (st != KSA_OK) {
        free(*bytes);
        *bytes = NULL;
        *len = 0;
    }
    return st;
}

ksa_status ksa_ckpt_read_run_id(const char *path, char *id, size_t cap)
{
    return read_optional_text(path, "/train", 1, "run_id", "", id, cap);
}

ksa_status ksa_ckpt_read_moments(const char *path, const ksa_params *p, ksa_real *exp_avg,
                                 ksa_real *exp_avg_sq)
{
    return ksa_ckpt_read_moments_slice(path, p, 0, p->numel, exp_avg, exp_avg_sq);
}

ksa_status ksa_ckpt_read_moments_slice(const char *path, const ksa_params *p, size_t lo, size_t hi,
                                       ksa_real *exp_avg, ksa_real *exp_avg_sq)
{
    KSA_ASSERT(lo <= hi, "checkpoint %s: slice [%zu, %zu) ends before it starts", path, lo, hi);
    if (hi > lo) { /* elements of no parameter stay 0 */
        memset(exp_avg, 0, (hi - lo) * sizeof *exp_avg);
        memset(exp_avg_sq, 0, (hi - lo) * sizeof *exp_avg_sq);
    }
    hid_t file, optim;
    KSA_TRY(open_checkpoint(path, 1, &file));
    ksa_status st =
        ksa_h5_open_group(path, file, "/optim", 1, &optim); /* H5Lexists needs the parent */
    ksa_h5_close(optim, &st, path, "/optim");
    const char *names[2] = {"/optim/exp_avg", "/optim/exp_avg_sq"};
    ksa_real *dst[2] = {exp_avg, exp_avg_sq};
    for (int k = 0; k < 2 && st == KSA_OK; k++) {
        hid_t group;
        st = ksa_h5_open_group(path, file, names[k], 1, &group);
        for (size_t i = 0; i < p->n && st == KSA_OK; i++)
            st = read_tensor(path, group, names[k], &p->table[i], dst[k], lo, hi);
        if (group >= 0)
            ksa_h5_close(group, &st, path, names[k]);
    }
    ksa_h5_close(file, &st, path, "the file");
    return st;
}
