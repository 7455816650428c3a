/* loader.c - the deterministic sharded loader: see loader.h for what a batch is. */
#include "loader.h"

#include <math.h>
#include <string.h>

#include "data/mixture.h"
#include "core/rng.h"
#include "data/path.h"

/* ---- counter-based randomness ---------------------------------------------------------- */

/* A hash of a triple; each step is a bijection, so for a fixed prefix different last
 * arguments never collide. The constants keep (0, 0, 0) away from mix64's fixed point 0. */
static uint64_t hash3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = ksa_mix64(a + 0x9E3779B97F4A7C15ull);
    h = ksa_mix64(h ^ (b + 0x243F6A8885A308D3ull));
    return ksa_mix64(h ^ (c + 0x13198A2E03707344ull));
}

/* Domain tags, so the permutation keys and the mixture draws are unrelated streams. */
enum { TAG_PERMUTATION = 1, TAG_SOURCE = 2, TAG_WINDOW = 3 };

#define FEISTEL_ROUNDS 4

/* perm_key(x): a pseudo-random permutation of [0, n) for each key, computed per element.
 * A balanced Feistel network on 2h-bit integers, 4^h the smallest even power of two >= n
 * (so 4^h < 4n), is a bijection of [0, 4^h); "cycle walking" re-applies it until the value
 * falls in [0, n), which restricts it to a bijection of [0, n) and takes < 4 tries on
 * average. Round r maps (l, r) -> (r, l ^ F(r)), F a keyed mix64 truncated to h bits.    */
static uint64_t permute(uint64_t x, uint64_t n, uint64_t key)
{
    KSA_ASSERT(x < n, "permute: %llu is outside [0, %llu)", (unsigned long long)x,
               (unsigned long long)n);
    if (n == 1)
        return 0;
    unsigned bits = 64u - (unsigned)__builtin_clzll(n - 1); /* n - 1 fits in `bits` bits */
    unsigned h = (bits + 1) / 2;
    uint64_t mask = h == 64 ? ~0ull : (1ull << h) - 1;
    uint64_t round_key[FEISTEL_ROUNDS];
    for (int i = 0; i < FEISTEL_ROUNDS; i++)
        round_key[i] = ksa_mix64(key + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
    do {
        uint64_t l = x >> h, r = x & mask;
        for (int i = 0; i < FEISTEL_ROUNDS; i++) {
            uint64_t t = l ^ (ksa_mix64(r ^ round_key[i]) & mask);
            l = r;
            r = t;
        }
        x = (l << h) | r;
    } while (x >= n);
    return x;
}

/* floor(u·n) for a 64-bit uniform u: a uniform integer in [0, n) (bias < n / 2^64). */
static uint64_t below(uint64_t u, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)u * n) >> 64);
}

/* ---- opening ---------------------------------------------------------------------------- */

static ksa_status check_options(const ksa_loader_options *o)
{
    if (o->seq_len == 0 || o->global_batch == 0)
        return ksa_fail(KSA_EINVAL,
                        "loader: seq_len (%zu) and the global batch (%zu rows) "
                        "must be positive",
                        o->seq_len, o->global_batch);
    return KSA_OK;
}

/* Opens src->file and counts its windows; fewer than one is an error. */
static ksa_status open_source(ksa_loader_source *src, const char *path, const char *name,
                              const ksa_loader_options *o)
{
    KSA_TRY(ksa_tokfile_open(&src->file, path, o->dtype, o->vocab_size));
    size_t N = src->file.n_tokens;
    if (N < o->seq_len + 1) {
        ksa_tokfile_close(&src->file);
        return ksa_fail(KSA_EFORMAT,
                        "token file '%s' has %zu tokens, fewer than one training row of "
                        "seq_len + 1 = %zu tokens (seq_len %zu)",
                        path, N, o->seq_len + 1, o->seq_len);
    }
    src->n_windows = (N - 1) / o->seq_len;
    src->name = ksa_path_concat(name, "");
    return KSA_OK;
}

static void init_loader(ksa_loader *ld, size_t n_sources, const ksa_loader_options *o)
{
    memset(ld, 0, sizeof *ld);
    ld->sources = ksa_alloc_zero(n_sources * sizeof *ld->sources);
    ld->seq_len = o->seq_len;
    ld->global_batch = o->global_batch;
    ld->seed = o->seed;
}

ksa_status ksa_loader_open_file(ksa_loader *ld, const char *path, const ksa_loader_options *o)
{
    KSA_TRY(check_options(o));
    init_loader(ld, 1, o);
    ksa_status st = open_source(&ld->sources[0], path, path, o);
    if (st != KSA_OK) {
        ksa_loader_close(ld);
        return st;
    }
    ld->n_sources = 1;
    ld->sources[0].weight = ld->sources[0].cum = 1.0;
    return KSA_OK;
}

ksa_status ksa_loader_open_mixture(ksa_loader *ld, const char *list_path,
                                   const ksa_loader_options *o)
{
    KSA_TRY(check_options(o));
    ksa_mixture mix;
    KSA_TRY(ksa_mixture_read(&mix, list_path));
    init_loader(ld, mix.n, o);
    ld->is_mixture = 1;
    ksa_status st = KSA_OK;
    double total = 0;
    for (size_t i = 0; i < mix.n && st == KSA_OK; i++) {
        st = open_source(&ld->sources[i], mix.sources[i].path, mix.sources[i].name, o);
        if (st == KSA_OK)
            ld->n_sources++;
        total += mix.sources[i].weight;
    }
    if (st != KSA_OK) {
        char why[768]; /* name the mixture line as well as the file's own problem */
        snprintf(why, sizeof why, "%s", ksa_last_error());
        size_t i = ld->n_sources;
        st = ksa_fail(st, "%s (mixture file '%s' line %zu)", why, list_path, mix.sources[i].line);
        ksa_loader_close(ld);
        ksa_mixture_free(&mix);
        return st;
    }
    if (!isfinite(total)) {
        ksa_loader_close(ld);
        ksa_mixture_free(&mix);
        return ksa_fail(KSA_EINVAL, "mixture file '%s': the weights sum to %g", list_path, total);
    }
    double cum = 0;
    for (size_t i = 0; i < ld->n_sources; i++) {
        ld->sources[i].weight = mix.sources[i].weight / total;
        cum += ld->sources[i].weight;
        ld->sources[i].cum = cum;
    }
    ld->sources[ld->n_sources - 1].cum = 1.0; /* rounding must not leave a gap below 1 */
    ksa_mixture_free(&mix);
    return KSA_OK;
}

void ksa_loader_close(ksa_loader *ld)
{
    for (size_t i = 0; i < ld->n_sources; i++) {
        ksa_tokfile_close(&ld->sources[i].file);
        ksa_free(ld->sources[i].name);
    }
    ksa_free(ld->sources);
    memset(ld, 0, sizeof *ld);
}

void ksa_loader_print(const ksa_loader *ld, FILE *out)
{
    fprintf(out, "data: %s, %zu source%s, seq_len %zu, %zu rows per step, seed %llu\n",
            ld->is_mixture ? "mixture (per-row draws)" : "one file (epochs of permutations)",
            ld->n_sources, ld->n_sources == 1 ? "" : "s", ld->seq_len, ld->global_batch,
            (unsigned long long)ld->seed);
    for (size_t i = 0; i < ld->n_sources; i++) {
        const ksa_loader_source *s = &ld->sources[i];
        /* a source without a name of its own is named by its path: print that once */
        if (strcmp(s->name, s->file.path) != 0)
            fprintf(out, "  %-20s %s", s->name, s->file.path);
        else
            fprintf(out, "  %s", s->file.path);
        fprintf(out, ": %zu tokens (%s, %s), %zu windows, weight %.4f\n", s->file.n_tokens,
                ksa_tokfile_dtype_name(s->file.dtype),
                s->file.format == KSA_TOKFILE_LLMC ? "llm.c" : "headerless", s->n_windows,
                s->weight);
    }
}

/* ---- batches ---------------------------------------------------------------------------- */

ksa_loader_row ksa_loader_locate(const ksa_loader *ld, uint64_t step, size_t row)
{
    KSA_ASSERT(row < ld->global_batch, "row %zu of a global batch of %zu", row, ld->global_batch);
    ksa_loader_row r = {0, 0, 0};
    if (!ld->is_mixture) {
        KSA_ASSERT(step <= (UINT64_MAX - row) / ld->global_batch, "step %llu overflows",
                   (unsigned long long)step);
        uint64_t g = step * ld->global_batch + row, n = ld->sources[0].n_windows;
        r.epoch = g / n;
        r.window = (size_t)permute(g % n, n, hash3(ld->seed, r.epoch, TAG_PERMUTATION));
        return r;
    }
    uint64_t h = hash3(ld->seed, step, row);
    double u = (double)(ksa_mix64(h ^ TAG_SOURCE) >> 11) * 0x1.0p-53; /* uniform in [0, 1) */
    while (r.source + 1 < ld->n_sources && u >= ld->sources[r.source].cum)
        r.source++;
    r.window = (size_t)below(ksa_mix64(h ^ TAG_WINDOW), ld->sources[r.source].n_windows);
    return r;
}

size_t ksa_loader_rank_rows(size_t global_batch, int rank, int n_ranks, size_t *rows)
{
    KSA_ASSERT(n_ranks >= 1 && rank >= 0 && rank < n_ranks, "rank %d of %d", rank, n_ranks);
    size_t count = 0;
    for (size_t g = (size_t)rank; g < global_batch; g += (size_t)n_ranks) {
        if (rows)
            rows[count] = g;
        count++;
    }
    return count;
}

void ksa_loader_batch_at(const ksa_loader *ld, int32_t *tokens, uint64_t step, int rank,
                         int n_ranks)
{
    ksa_loader_block_at(ld, tokens, step, rank, n_ranks, 0, ld->seq_len);
}

void ksa_loader_block_at(const ksa_loader *ld, int32_t *tokens, uint64_t step, int rank,
                         int n_ranks, size_t t0, size_t T)
{
    size_t L = ld->seq_len, b = 0;
    KSA_ASSERT(n_ranks >= 1 && rank >= 0 && rank < n_ranks, "rank %d of %d", rank, n_ranks);
    KSA_ASSERT(T >= 1 && t0 + T <= L, "block [%zu, %zu) of a row of %zu", t0, t0 + T, L);
    for (size_t g = (size_t)rank; g < ld->global_batch; g += (size_t)n_ranks, b++) {
        ksa_loader_row r = ksa_loader_locate(ld, step, g);
        ksa_tokfile_read(&ld->sources[r.source].file, tokens + b * (T + 1), r.window * L + t0,
                         T + 1);
    }
}

ksa_status ksa_loader_check_sequential(const ksa_tokfile *f, size_t offset, size_t nseq,
                                       size_t seq_len)
{
    size_t L = seq_len, N = f->n_tokens;
    KSA_ASSERT(L >= 1, "seq_len must be positive");
    if (offset >= N || nseq > (N - 1 - offset) / L) /* offset + nseq·L + 1 > N, no overflow */
        return ksa_fail(KSA_EFORMAT,
                        "token file '%s' has %zu tokens; %zu sequential rows of seq_len %zu "
                        "from offset %zu need %.0f",
                        f->path, N, nseq, L, offset, (double)offset + (double)nseq * (double)L + 1);
    return KSA_OK;
}

ksa_status ksa_loader_read_sequential(const ksa_tokfile *f, int32_t *tokens, size_t offset,
                                      size_t nseq, size_t seq_len)
{
    size_t L = seq_len;
    KSA_TRY(ksa_loader_check_sequential(f, offset, nseq, seq_len));
    for (size_t b = 0; b < nseq; b++)
        ksa_tokfile_read(f, tokens + b * (L + 1), offset + b * L, L + 1);
    return KSA_OK;
}

/* ---- validation reader ------------------------------------------------------------------ */

size_t ksa_loader_spread_row(size_t i, size_t n_chosen, size_t n_rows)
{
    KSA_ASSERT(i < n_chosen && n_chosen <= n_rows, "chosen row %zu of %zu from %zu rows", i,
               n_chosen, n_rows);
    return (size_t)(((unsigned __int128)i * n_rows) / n_chosen);
}

ksa_status ksa_val_reader_open(ksa_val_reader *vr, const char *path, ksa_dtype dtype,
                               size_t vocab_size, size_t seq_len, size_t nseq, size_t max_rows)
{
    memset(vr, 0, sizeof *vr);
    if (seq_len == 0 || nseq == 0)
        return ksa_fail(KSA_EINVAL,
                        "validation reader: seq_len (%zu) and rows per batch (%zu) "
                        "must be positive",
                        seq_len, nseq);
    KSA_TRY(ksa_tokfile_open(&vr->file, path, dtype, vocab_size));
    size_t N = vr->file.n_tokens;
    if (N < seq_len + 1) {
        ksa_tokfile_close(&vr->file);
        return ksa_fail(KSA_EFORMAT,
                        "validation file '%s' has %zu tokens, fewer than one row of seq_len + 1 "
                        "= %zu tokens (seq_len %zu)",
                        path, N, seq_len + 1, seq_len);
    }
    vr->seq_len = seq_len;
    vr->nseq = nseq;
    vr->n_rows = (N - 1) / seq_len;
    vr->n_chosen = max_rows == 0 || max_rows >= vr->n_rows ? vr->n_rows : max_rows;
    return KSA_OK;
}

size_t ksa_val_reader_n_batches(const ksa_val_reader *vr)
{
    return (vr->n_chosen + vr->nseq - 1) / vr->nseq;
}

size_t ksa_val_reader_batch(const ksa_val_reader *vr, size_t k, int32_t *tokens)
{
    return ksa_val_reader_block(vr, k, tokens, 0, vr->seq_len);
}

size_t ksa_val_reader_block(const ksa_val_reader *vr, size_t k, int32_t *tokens, size_t t0,
                            size_t T)
{
    KSA_ASSERT(k < ksa_val_reader_n_batches(vr), "validation batch %zu of %zu", k,
               ksa_val_reader_n_batches(vr));
    size_t first = k * vr->nseq, left = vr->n_chosen - first;
    size_t rows = left < vr->nseq ? left : vr->nseq, L = vr->seq_len;
    KSA_ASSERT(T >= 1 && t0 + T <= L, "block [%zu, %zu) of a row of %zu", t0, t0 + T, L);
    for (size_t b = 0; b < rows; b++) {
        size_t row = ksa_loader_spread_row(first + b, vr->n_chosen, vr->n_rows);
        ksa_tokfile_read(&vr->file, tokens + b * (T + 1), row * L + t0, T + 1);
    }
    return rows;
}

size_t ksa_val_reader_next(ksa_val_reader *vr, int32_t *tokens)
{
    if (vr->next_batch >= ksa_val_reader_n_batches(vr))
        return 0;
    return ksa_val_reader_batch(vr, vr->next_batch++, tokens);
}

void ksa_val_reader_rewind(ksa_val_reader *vr)
{
    vr->next_batch = 0;
}

void ksa_val_reader_print(const ksa_val_reader *vr, FILE *out)
{
    if (vr->n_chosen == vr->n_rows)
        fprintf(out, "# validation: all %zu rows of %s (seq_len %zu)\n", vr->n_rows, vr->file.path,
                vr->seq_len);
    else
        fprintf(out,
                "# validation: %zu of %zu rows of %s (seq_len %zu), spread evenly over the "
                "file\n",
                vr->n_chosen, vr->n_rows, vr->file.path, vr->seq_len);
}

void ksa_val_reader_close(ksa_val_reader *vr)
{
    ksa_tokfile_close(&vr->file);
    memset(vr, 0, sizeof *vr);
}

ksa_status ksa_loader_tokenizer(const ksa_loader *ld, char *out, size_t cap)
{
    const ksa_tokfile *first = &ld->sources[0].file;
    int unknown = 0;
    for (size_t i = 0; i < ld->n_sources; i++) {
        const ksa_tokfile *f = &ld->sources[i].file;
        unknown |= !strcmp(f->tokenizer, "unknown");
        if (strcmp(f->tokenizer, "unknown") != 0 && strcmp(first->tokenizer, "unknown") != 0 &&
            strcmp(f->tokenizer, first->tokenizer) != 0)
            return ksa_fail(KSA_EINVAL,
                            "the sources of a mixture were made by different tokenizers: '%s' "
                            "by %s, '%s' by %s",
                            first->path, first->tokenizer, f->path, f->tokenizer);
    }
    snprintf(out, cap, "%s", unknown ? "unknown" : first->tokenizer);
    return KSA_OK;
}
