/* prepare.c - `ksa prepare`: see prepare.h for the split and the files written. */
#include "prepare.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "data/path.h"
#include "data/staged.h"
#include "data/tokenizer.h"

#define CHUNK_BYTES ((size_t)4 << 20) /* input read per fread */

void ksa_prepare_defaults(ksa_prepare_options *o)
{
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.01;
    o->seed = KSA_PREPARE_DEFAULT_SEED;
    o->vocab_size = KSA_TOKENIZER_MIN_VOCAB;
    o->progress = stderr;
    o->progress_every = 1.0;
}

int ksa_prepare_goes_to_validation(uint64_t seed, size_t doc, double val_fraction)
{
    uint64_t h = ksa_mix64(ksa_mix64(seed + 0x9E3779B97F4A7C15ull) ^ (uint64_t)doc);
    return (double)(h >> 11) * 0x1.0p-53 < val_fraction;
}

char *ksa_prepare_val_path(const char *out)
{
    size_t n = strlen(out);
    if (n < 4 || strcmp(out + n - 4, ".bin") != 0)
        return ksa_path_concat(out, ".val");
    char *s = ksa_alloc(n + 5);
    memcpy(s, out, n - 4);
    memcpy(s + n - 4, ".val.bin", 9);
    return s;
}

/* Everything is checked before a file is created. sizes: [n_inputs] bytes of each input. */
static ksa_status check_inputs(const ksa_prepare_options *o, size_t *sizes)
{
    if (o->n_inputs == 0)
        return ksa_fail(KSA_EINVAL, "no input files (give --input a.txt [b.txt ...])");
    if (!o->out || !o->out[0])
        return ksa_fail(KSA_EINVAL, "no output file (give --out P.bin)");
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return ksa_fail(KSA_EINVAL, "--val-fraction %g is outside [0, 1)", o->val_fraction);
    KSA_TRY(ksa_tokenizer_check_vocab(o->vocab_size));
    for (size_t i = 0; i < o->n_inputs; i++) {
        struct stat st;
        if (stat(o->inputs[i], &st) != 0)
            return ksa_fail(KSA_EIO, "cannot read input '%s': %s", o->inputs[i], strerror(errno));
        if (!S_ISREG(st.st_mode))
            return ksa_fail(KSA_EIO, "input '%s' is not a regular file", o->inputs[i]);
        if (access(o->inputs[i], R_OK) != 0)
            return ksa_fail(KSA_EIO, "cannot read input '%s': %s", o->inputs[i], strerror(errno));
        sizes[i] = (size_t)st.st_size;
    }
    return KSA_OK;
}

/* With val_fraction > 0 each file must get at least one whole document. sizes: [n_inputs]. */
static ksa_status check_split(const ksa_prepare_options *o, const size_t *sizes)
{
    if (o->val_fraction == 0)
        return KSA_OK; /* asked for no validation file: everything trains */
    size_t n_val = 0, val_tokens = 0, tokens = 0;
    for (size_t i = 0; i < o->n_inputs; i++) {
        tokens += sizes[i] + 1;
        if (ksa_prepare_goes_to_validation(o->seed, i, o->val_fraction))
            n_val++, val_tokens += sizes[i] + 1;
    }
    if (n_val > 0 && n_val < o->n_inputs)
        return KSA_OK;
    return ksa_fail(KSA_EINVAL,
                    "too few documents for a document-level split: --val-fraction %g with "
                    "--seed %llu puts %zu of the %zu document%s (%zu of %zu tokens) in the "
                    "validation file and %zu in the training file, and each needs at least one "
                    "whole document (each input file is one document); give more, smaller "
                    "documents, another --seed, or --val-fraction 0 and a validation file of "
                    "your own",
                    o->val_fraction, (unsigned long long)o->seed, n_val, o->n_inputs,
                    o->n_inputs == 1 ? "" : "s", val_tokens, tokens, o->n_inputs - n_val);
}

/* A small text file (the .meta and .tokenizer sidecars), staged like the token files. */
static ksa_status write_text_tmp(ksa_staged_file *f, const char *path, const char *text)
{
    KSA_TRY(ksa_staged_open(f, path));
    KSA_TRY(ksa_staged_write(f, text, strlen(text)));
    return ksa_staged_close(f);
}

typedef struct {
    const ksa_prepare_options *o;
    ksa_dtype dtype;
    unsigned char *bytes; /* [CHUNK_BYTES] */
    int32_t *ids;         /* [CHUNK_BYTES] */
    void *narrow;         /* [CHUNK_BYTES] uint32 */
    size_t done, total;   /* input bytes processed / overall, for progress */
    double t0, last_report;
} prepare_state;

static void report_progress(prepare_state *s)
{
    const ksa_prepare_options *o = s->o;
    double now = ksa_now();
    if (!o->progress || now - s->last_report < o->progress_every)
        return;
    s->last_report = now;
    double mib = 1.0 / (1 << 20), secs = now - s->t0;
    fprintf(o->progress, "prepare: %.1f of %.1f MiB (%.0f%%), %.1f MB/s\n", s->done * mib,
            s->total * mib, s->total ? 100.0 * (double)s->done / (double)s->total : 100.0,
            secs > 0 ? 1e-6 * (double)s->done / secs : 0.0);
    fflush(o->progress);
}

/* Copies the next n bytes of fp (input path) to out as tokens. */
static ksa_status copy_tokens(prepare_state *s, FILE *fp, const char *path, size_t n,
                              ksa_staged_file *out)
{
    while (n > 0) {
        size_t want = n < CHUNK_BYTES ? n : CHUNK_BYTES;
        size_t got = fread(s->bytes, 1, want, fp);
        if (got != want)
            return ksa_fail(KSA_EIO, "cannot read input '%s'%s", path,
                            ferror(fp) ? "" : " (it became shorter while being read)");
        ksa_tokenizer_encode(s->ids, s->bytes, got);
        KSA_TRY(ksa_staged_write_ids(out, s->ids, got, s->dtype, s->narrow));
        n -= got;
        s->done += got;
        report_progress(s);
    }
    return KSA_OK;
}

/* One document (path, n bytes): its bytes, then end-of-text, all to `to`. */
static ksa_status prepare_document(prepare_state *s, const char *path, size_t n,
                                   ksa_staged_file *to)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ksa_fail(KSA_EIO, "cannot open input '%s': %s", path, strerror(errno));
    const int32_t eot = KSA_TOKENIZER_EOT;
    ksa_status st = copy_tokens(s, fp, path, n, to);
    if (st == KSA_OK)
        st = ksa_staged_write_ids(to, &eot, 1, s->dtype, s->narrow);
    if (st == KSA_OK && fgetc(fp) != EOF)
        st = ksa_fail(KSA_EIO, "input '%s' grew while being read", path);
    fclose(fp);
    return st;
}

ksa_status ksa_prepare_run(const ksa_prepare_options *o, ksa_prepare_result *r)
{
    memset(r, 0, sizeof *r);
    size_t *sizes = ksa_alloc((o->n_inputs ? o->n_inputs : 1) * sizeof *sizes);
    ksa_status st = check_inputs(o, sizes);
    if (st == KSA_OK)
        st = check_split(o, sizes);
    if (st == KSA_OK)
        st = ksa_path_make_parent(o->out, "the output folder");
    if (st != KSA_OK) {
        ksa_free(sizes);
        return st;
    }
    prepare_state s = {.o = o, .t0 = ksa_now()};
    s.last_report = s.t0;
    s.dtype = o->vocab_size <= 65536 ? KSA_DTYPE_UINT16 : KSA_DTYPE_UINT32;
    for (size_t i = 0; i < o->n_inputs; i++)
        s.total += sizes[i];
    s.bytes = ksa_alloc(CHUNK_BYTES);
    s.ids = ksa_alloc(CHUNK_BYTES * sizeof *s.ids);
    s.narrow = ksa_alloc(CHUNK_BYTES * sizeof(uint32_t));

    char *val_path = ksa_prepare_val_path(o->out);
    char *train_meta = ksa_path_concat(o->out, ".meta");
    char *val_meta = ksa_path_concat(val_path, ".meta");
    char *train_tok = ksa_path_concat(o->out, ".tokenizer");
    char *val_tok = ksa_path_concat(val_path, ".tokenizer");
    /* train, val, train meta, val meta, train tokenizer, val tokenizer */
    ksa_staged_file files[6] = {{0}};
    ksa_staged_file *train = &files[0], *val = &files[1];
    st = ksa_staged_open(train, o->out);
    if (st == KSA_OK)
        st = ksa_staged_open(val, val_path);
    size_t n_val_docs = 0;
    for (size_t i = 0; i < o->n_inputs && st == KSA_OK; i++) {
        int to_val = ksa_prepare_goes_to_validation(o->seed, i, o->val_fraction);
        n_val_docs += (size_t)to_val;
        st = prepare_document(&s, o->inputs[i], sizes[i], to_val ? val : train);
    }
    if (st == KSA_OK)
        st = ksa_staged_close(train);
    if (st == KSA_OK)
        st = ksa_staged_close(val);
    const char *dtype_name = ksa_tokfile_dtype_name(s.dtype);
    if (st == KSA_OK)
        st = write_text_tmp(&files[2], train_meta, dtype_name);
    if (st == KSA_OK)
        st = write_text_tmp(&files[3], val_meta, dtype_name);
    if (st == KSA_OK)
        st = write_text_tmp(&files[4], train_tok, KSA_TOKENIZER_NAME);
    if (st == KSA_OK)
        st = write_text_tmp(&files[5], val_tok, KSA_TOKENIZER_NAME);
    /* the training file last: once the new P.bin is in place, so are the others */
    const int rename_order[6] = {1, 3, 5, 2, 4, 0};
    if (st == KSA_OK)
        st = ksa_staged_commit(files, rename_order, 6);
    if (st == KSA_OK) {
        r->n_files = o->n_inputs;
        r->n_bytes = s.total;
        r->n_train = train->n_tokens;
        r->n_val = val->n_tokens;
        r->n_val_docs = n_val_docs;
        r->n_train_docs = o->n_inputs - n_val_docs;
        r->dtype = s.dtype;
        r->seconds = ksa_now() - s.t0;
    }
    ksa_staged_release(files, 6, st != KSA_OK);
    ksa_free(val_path), ksa_free(train_meta), ksa_free(val_meta);
    ksa_free(train_tok), ksa_free(val_tok);
    ksa_free(s.bytes), ksa_free(s.ids), ksa_free(s.narrow), ksa_free(sizes);
    return st;
}
