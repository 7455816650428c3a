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
#include "data/tok.h"
#include "data/tokenizer.h"

#include <ctype.h>
#include <omp.h>

#define CHUNK_BYTES ((size_t)4 << 20) /* input read per fread */
#define WAVE_BYTES                                                                                 \
    ((size_t)32 << 20)                  /* BPE: input encoded per parallel wave (grows if need be) \
                                         */
#define PIECE_BYTES ((size_t)256 << 10) /* BPE: a long document's pieces, about */

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
static ksa_status check_inputs(const ksa_prepare_options *o, size_t *sizes, const ksa_tok *tok,
                               size_t vocab_size)
{
    if (o->n_inputs == 0)
        return ksa_fail(KSA_EINVAL, "no input files (give --input a.txt [b.txt ...])");
    if (!o->out || !o->out[0])
        return ksa_fail(KSA_EINVAL, "no output file (give --out P.bin)");
    if (!(o->val_fraction >= 0 && o->val_fraction < 1))
        return ksa_fail(KSA_EINVAL, "--val-fraction %g is outside [0, 1)", o->val_fraction);
    if (!tok)
        KSA_TRY(ksa_tokenizer_check_vocab(vocab_size));
    else if (vocab_size < ksa_tok_vocab_size(tok) || vocab_size > (size_t)INT32_MAX)
        return ksa_fail(KSA_EINVAL,
                        "--vocab-size %zu does not fit the tokenizer '%s' (%s), whose ids go up "
                        "to %zu: give at least %zu",
                        vocab_size, o->tokenizer, ksa_tok_name(tok), ksa_tok_vocab_size(tok) - 1,
                        ksa_tok_vocab_size(tok));
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
    /* the byte tokenizer's token counts; a BPE tokenizer's are not known yet: bytes */
    size_t n_val = 0, val_tokens = 0, tokens = 0, eot = o->tokenizer ? 0 : 1;
    for (size_t i = 0; i < o->n_inputs; i++) {
        tokens += sizes[i] + eot;
        if (ksa_prepare_goes_to_validation(o->seed, i, o->val_fraction))
            n_val++, val_tokens += sizes[i] + eot;
    }
    if (n_val > 0 && n_val < o->n_inputs)
        return KSA_OK;
    return ksa_fail(KSA_EINVAL,
                    "too few documents for a document-level split: --val-fraction %g with "
                    "--seed %llu puts %zu of the %zu document%s (%zu of %zu %s) in the "
                    "validation file and %zu in the training file, and each needs at least one "
                    "whole document (each input file is one document); give more, smaller "
                    "documents, another --seed, or --val-fraction 0 and a validation file of "
                    "your own",
                    o->val_fraction, (unsigned long long)o->seed, n_val, o->n_inputs,
                    o->n_inputs == 1 ? "" : "s", val_tokens, tokens,
                    o->tokenizer ? "bytes" : "tokens", o->n_inputs - n_val);
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
    const ksa_tok *tok;         /* BPE: the tokenizer; NULL: bytes */
    ksa_tok_encoder **encoders; /* BPE: one per thread */
    int n_encoders;
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

/* ---- BPE: documents in waves, pieces encoded in parallel ------------------------------- */

typedef struct {
    size_t off, len; /* in the wave buffer */
    int to_val, eot; /* destination; end-of-text after it (the last piece of a document) */
    ksa_ids ids;
    ksa_status st;
} piece;

typedef struct {
    unsigned char *buf; /* the wave's input bytes */
    size_t len, cap;
    piece *pieces;
    size_t n_pieces, pieces_cap;
} wave;

/* Whether a piece may start at s[k] (2 <= k): a line that starts with an ASCII letter after
 * a line that ends with a visible ASCII character. The lone "\n" between them is one word
 * (or the end of the punctuation word before it) whichever alternative of the Qwen2/Qwen3 or
 * GPT-2 regex matches it, including at the end of a piece, no word goes on past it, no added
 * token of those tokenizers holds a "\n", and NFC composes nothing across it: cutting
 * there changes no id (tests/test_bpe.sh compares prepared files with whole-text ids). */
static int safe_cut_at(const unsigned char *s, size_t k)
{
    return k >= 2 && s[k - 1] == '\n' && s[k] < 0x80 && isalpha(s[k]) && s[k - 2] < 0x80 &&
           isgraph(s[k - 2]);
}

static void add_piece(wave *w, size_t off, size_t len, int to_val, int eot)
{
    if (w->n_pieces == w->pieces_cap) {
        size_t cap = w->pieces_cap ? 2 * w->pieces_cap : 256;
        piece *p = ksa_alloc_zero(cap * sizeof *p);
        if (w->n_pieces)
            memcpy(p, w->pieces, w->n_pieces * sizeof *p);
        ksa_free(w->pieces);
        w->pieces = p, w->pieces_cap = cap;
    }
    w->pieces[w->n_pieces++] = (piece){.off = off, .len = len, .to_val = to_val, .eot = eot};
}

/* buf[off..off+len) of one document as pieces of about PIECE_BYTES, cut at safe places;
 * eot: the document ends with the last of them. */
static void add_pieces(wave *w, size_t off, size_t len, int to_val, int eot)
{
    size_t end = off + len;
    while (end - off > PIECE_BYTES) {
        size_t k = off + PIECE_BYTES;
        while (k < end && !safe_cut_at(w->buf + off, k - off))
            k++;
        if (k >= end)
            break;
        add_piece(w, off, k - off, to_val, 0);
        off = k;
    }
    if (end > off || eot)
        add_piece(w, off, end - off, to_val, eot);
}

/* Encodes the wave's pieces on all threads, then writes them in order. */
static ksa_status flush_wave(prepare_state *s, wave *w, ksa_staged_file *train,
                             ksa_staged_file *val)
{
    long n = (long)w->n_pieces;
#pragma omp parallel num_threads(s->n_encoders)
    {
        ksa_tok_encoder *e = s->encoders[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
        for (long i = 0; i < n; i++) {
            piece *p = &w->pieces[i];
            p->ids.n = 0;
            p->st = ksa_tok_encode(e, w->buf + p->off, p->len, &p->ids);
        }
    }
    ksa_status st = KSA_OK;
    const int32_t eot = ksa_tok_eot(s->tok);
    for (long i = 0; i < n; i++) {
        piece *p = &w->pieces[i];
        ksa_staged_file *to = p->to_val ? val : train;
        if (st == KSA_OK)
            st = p->st;
        for (size_t at = 0; at < p->ids.n && st == KSA_OK; at += CHUNK_BYTES) {
            size_t m = p->ids.n - at < CHUNK_BYTES ? p->ids.n - at : CHUNK_BYTES;
            st = ksa_staged_write_ids(to, p->ids.v + at, m, s->dtype, s->narrow);
        }
        if (st == KSA_OK && p->eot)
            st = ksa_staged_write_ids(to, &eot, 1, s->dtype, s->narrow);
        s->done += p->len;
        ksa_ids_free(&p->ids);
    }
    w->n_pieces = 0;
    report_progress(s);
    return st;
}

/* Every document through the BPE tokenizer, to train or val by the split rule. */
static ksa_status prepare_bpe(prepare_state *s, const size_t *sizes, ksa_staged_file *train,
                              ksa_staged_file *val, size_t *n_val_docs)
{
    const ksa_prepare_options *o = s->o;
    wave w = {.cap = WAVE_BYTES};
    w.buf = ksa_alloc(w.cap);
    ksa_status st = KSA_OK;
    for (size_t i = 0; i < o->n_inputs && st == KSA_OK; i++) {
        int to_val = ksa_prepare_goes_to_validation(o->seed, i, o->val_fraction);
        *n_val_docs += (size_t)to_val;
        const char *path = o->inputs[i];
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            st = ksa_fail(KSA_EIO, "cannot open input '%s': %s", path, strerror(errno));
            break;
        }
        size_t left = sizes[i], start = w.len; /* this document's bytes in w.buf: start.. */
        while (left > 0 && st == KSA_OK) {
            if (w.len == w.cap) { /* full: encode up to the last safe place of this document */
                size_t k = w.len - 1;
                while (k > start && !safe_cut_at(w.buf + start, k - start))
                    k--;
                if (k == start && start == 0) { /* no place to cut: a longer wave */
                    unsigned char *b = ksa_alloc(2 * w.cap);
                    memcpy(b, w.buf, w.len);
                    ksa_free(w.buf);
                    w.buf = b, w.cap *= 2;
                    continue;
                }
                add_pieces(&w, start, k - start, to_val, 0);
                st = flush_wave(s, &w, train, val);
                memmove(w.buf, w.buf + k, w.len - k);
                w.len -= k, start = 0;
                continue;
            }
            size_t want = left < w.cap - w.len ? left : w.cap - w.len;
            size_t got = fread(w.buf + w.len, 1, want, fp);
            if (got != want)
                st = ksa_fail(KSA_EIO, "cannot read input '%s'%s", path,
                              ferror(fp) ? "" : " (it became shorter while being read)");
            w.len += got, left -= got;
        }
        if (st == KSA_OK && fgetc(fp) != EOF)
            st = ksa_fail(KSA_EIO, "input '%s' grew while being read", path);
        fclose(fp);
        if (st == KSA_OK)
            add_pieces(&w, start, w.len - start, to_val, 1);
        if (st == KSA_OK && w.len >= w.cap / 2) { /* encode what is there */
            st = flush_wave(s, &w, train, val);
            w.len = 0;
        }
    }
    s->last_report = -1e300; /* the last wave's line comes whenever it ends */
    if (st == KSA_OK)
        st = flush_wave(s, &w, train, val);
    for (size_t i = 0; i < w.n_pieces; i++)
        ksa_ids_free(&w.pieces[i].ids);
    ksa_free(w.pieces), ksa_free(w.buf);
    return st;
}

ksa_status ksa_prepare_run(const ksa_prepare_options *o, ksa_prepare_result *r)
{
    memset(r, 0, sizeof *r);
    ksa_tok *tok = NULL;
    if (o->tokenizer)
        KSA_TRY(ksa_tok_open_file(&tok, o->tokenizer));
    size_t vocab_size = o->vocab_size ? o->vocab_size
                        : tok         ? ksa_tok_vocab_size(tok)
                                      : (size_t)KSA_TOKENIZER_MIN_VOCAB;
    size_t *sizes = ksa_alloc((o->n_inputs ? o->n_inputs : 1) * sizeof *sizes);
    ksa_status st = check_inputs(o, sizes, tok, vocab_size);
    if (st == KSA_OK)
        st = check_split(o, sizes);
    if (st == KSA_OK)
        st = ksa_path_make_parent(o->out, "the output folder");
    if (st != KSA_OK) {
        ksa_free(sizes);
        ksa_tok_close(tok);
        return st;
    }
    prepare_state s = {.o = o, .t0 = ksa_now(), .tok = tok};
    s.last_report = s.t0;
    s.dtype = vocab_size <= 65536 ? KSA_DTYPE_UINT16 : KSA_DTYPE_UINT32;
    for (size_t i = 0; i < o->n_inputs; i++)
        s.total += sizes[i];
    s.bytes = ksa_alloc(CHUNK_BYTES);
    s.ids = ksa_alloc(CHUNK_BYTES * sizeof *s.ids);
    s.narrow = ksa_alloc(CHUNK_BYTES * sizeof(uint32_t));
    if (tok) {
        s.n_encoders = omp_get_max_threads();
        s.encoders = ksa_alloc((size_t)s.n_encoders * sizeof *s.encoders);
        for (int t = 0; t < s.n_encoders; t++)
            s.encoders[t] = ksa_tok_encoder_new(tok);
    }

    char *val_path = ksa_prepare_val_path(o->out);
    /* train, val, train meta, val meta, train tokenizer, val tokenizer, and with BPE the
     * train and val tokenizer.json copies */
    char *names[8] = {NULL,
                      NULL,
                      ksa_path_concat(o->out, ".meta"),
                      ksa_path_concat(val_path, ".meta"),
                      ksa_path_concat(o->out, ".tokenizer"),
                      ksa_path_concat(val_path, ".tokenizer"),
                      ksa_path_concat(o->out, ".tokenizer.json"),
                      ksa_path_concat(val_path, ".tokenizer.json")};
    const size_t n_files = tok ? 8 : 6;
    ksa_staged_file files[8] = {{0}};
    ksa_staged_file *train = &files[0], *val = &files[1];
    st = ksa_staged_open(train, o->out);
    if (st == KSA_OK)
        st = ksa_staged_open(val, val_path);
    size_t n_val_docs = 0;
    if (tok && st == KSA_OK)
        st = prepare_bpe(&s, sizes, train, val, &n_val_docs);
    for (size_t i = 0; !tok && i < o->n_inputs && st == KSA_OK; i++) {
        int to_val = ksa_prepare_goes_to_validation(o->seed, i, o->val_fraction);
        n_val_docs += (size_t)to_val;
        st = prepare_document(&s, o->inputs[i], sizes[i], to_val ? val : train);
    }
    if (st == KSA_OK)
        st = ksa_staged_close(train);
    if (st == KSA_OK)
        st = ksa_staged_close(val);
    const char *name = tok ? ksa_tok_name(tok) : KSA_TOKENIZER_NAME;
    int32_t eot = tok ? ksa_tok_eot(tok) : KSA_TOKENIZER_EOT;
    char meta[256];
    if (tok) /* the dtype first (what readers read), then notes for people */
        snprintf(meta, sizeof meta, "%s\ntokenizer %s\nvocab_size %zu\neot_id %d\n",
                 ksa_tokfile_dtype_name(s.dtype), name, ksa_tok_vocab_size(tok), (int)eot);
    else
        snprintf(meta, sizeof meta, "%s", ksa_tokfile_dtype_name(s.dtype));
    for (int k = 2; k < 4 && st == KSA_OK; k++)
        st = write_text_tmp(&files[k], names[k], meta);
    for (int k = 4; k < 6 && st == KSA_OK; k++)
        st = write_text_tmp(&files[k], names[k], name);
    for (int k = 6; k < 8 && tok && st == KSA_OK; k++) {
        size_t json_n;
        const void *json = ksa_bpe_json(ksa_tok_bpe(tok), &json_n);
        st = ksa_staged_open(&files[k], names[k]);
        if (st == KSA_OK)
            st = ksa_staged_write(&files[k], json, json_n);
        if (st == KSA_OK)
            st = ksa_staged_close(&files[k]);
    }
    /* the training file last: once the new P.bin is in place, so are the others */
    const int rename_order[8] = {1, 3, 5, 2, 4, 6, 7, 0};
    const int rename_order_bytes[6] = {1, 3, 5, 2, 4, 0};
    if (st == KSA_OK)
        st = ksa_staged_commit(files, tok ? rename_order : rename_order_bytes, n_files);
    if (st == KSA_OK) {
        r->n_files = o->n_inputs;
        r->n_bytes = s.total;
        r->n_train = train->n_tokens;
        r->n_val = val->n_tokens;
        r->n_val_docs = n_val_docs;
        r->n_train_docs = o->n_inputs - n_val_docs;
        r->dtype = s.dtype;
        r->seconds = ksa_now() - s.t0;
        snprintf(r->tokenizer, sizeof r->tokenizer, "%s", name);
        r->vocab_size = vocab_size;
        r->eot = eot;
    }
    ksa_staged_release(files, n_files, st != KSA_OK);
    ksa_free(val_path);
    for (int k = 2; k < 8; k++)
        ksa_free(names[k]);
    for (int t = 0; t < s.n_encoders; t++)
        ksa_tok_encoder_free(s.encoders[t]);
    ksa_free(s.encoders);
    ksa_tok_close(tok);
    ksa_free(s.bytes), ksa_free(s.ids), ksa_free(s.narrow), ksa_free(sizes);
    return st;
}
