/* fuzz_tokfile.c - token files and their sidecars (data/tokfile.c: the headerless and llm.c
 * formats, <file>.meta, <file>.tokenizer), their identity (data/identity.c), and the readers
 * on top: the training loader over one file and the validation reader (data/loader.c).
 *
 * Input: a flags byte (bit 0: write a .meta file, bit 1: a .tokenizer file, bits 2-3: the
 * dtype given as --dtype would give it: 0 none, 1 uint16, 2 uint32), vocab_size (4 bytes,
 * brought into [1, 2^31]), seq_len and rows (a byte each, brought into [1, 64] and [1, 8]),
 * the .meta text and the .tokenizer text (a length byte each, at most 80 bytes), then the
 * token file's bytes.
 * Properties: every outcome is a status; an open file's ids are all below vocab_size, as
 * are the loader's and validation reader's rows, which lie inside the file.              */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/identity.h"
#include "data/loader.h"
#include "fuzzutil.h"

/* Every id of the file, read in pieces: below vocab_size. */
static void check_ids(const ksa_tokfile *f, size_t vocab_size)
{
    int32_t ids[256];
    for (size_t start = 0; start < f->n_tokens; start += 256) {
        size_t n = f->n_tokens - start < 256 ? f->n_tokens - start : 256;
        ksa_tokfile_read(f, ids, start, n);
        for (size_t j = 0; j < n; j++)
            fuzz_check(ids[j] >= 0 && (size_t)ids[j] < vocab_size,
                       "token %zu is %d, vocab_size %zu", start + j, (int)ids[j], vocab_size);
    }
}

static void check_rows(const int32_t *rows, size_t n, size_t vocab_size)
{
    for (size_t i = 0; i < n; i++)
        fuzz_check(rows[i] >= 0 && (size_t)rows[i] < vocab_size, "row token %zu is %d", i,
                   (int)rows[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    unsigned flags = fuzz_byte(&in);
    size_t vocab_size = 1 + fuzz_u32(&in) % ((uint32_t)1 << 31);
    size_t seq_len = 1 + fuzz_byte(&in) % 64, rows = 1 + fuzz_byte(&in) % 8;
    size_t meta_len, tokenizer_len;
    const uint8_t *meta = fuzz_piece(&in, 80, &meta_len);
    const uint8_t *tokenizer = fuzz_piece(&in, 80, &tokenizer_len);
    ksa_dtype dtype = (ksa_dtype)((flags >> 2) % 3);

    char path[512], side[600];
    fuzz_path(path, sizeof path, "tokens.bin");
    fuzz_write_file(path, in.p, in.n);
    snprintf(side, sizeof side, "%s.meta", path);
    if (flags & 1)
        fuzz_write_file(side, meta, meta_len);
    else
        unlink(side);
    snprintf(side, sizeof side, "%s.tokenizer", path);
    if (flags & 2)
        fuzz_write_file(side, tokenizer, tokenizer_len);
    else
        unlink(side);

    ksa_tokfile f;
    if (ksa_tokfile_open(&f, path, dtype, vocab_size) == KSA_OK) {
        fuzz_check(f.n_tokens * ksa_tokfile_dtype_bytes(f.dtype) <= f.map_bytes,
                   "%zu tokens in %zu bytes", f.n_tokens, f.map_bytes);
        check_ids(&f, vocab_size);
        char identity[KSA_IDENTITY_STR];
        ksa_tokfile_identity(&f, identity, sizeof identity);
        fuzz_check(strlen(f.tokenizer) > 0, "no tokenizer name");
        ksa_tokfile_close(&f);
    }

    ksa_loader_options o = {.seq_len = seq_len,
                            .global_batch = rows,
                            .vocab_size = vocab_size,
                            .seed = flags,
                            .dtype = dtype};
    ksa_loader ld;
    int32_t *tokens = malloc(rows * (seq_len + 1) * sizeof *tokens);
    if (ksa_loader_open_file(&ld, path, &o) == KSA_OK) {
        for (uint64_t step = 0; step < 3; step++) {
            ksa_loader_batch_at(&ld, tokens, step, 0, 1);
            check_rows(tokens, rows * (seq_len + 1), vocab_size);
        }
        char name[32], identity[KSA_IDENTITY_STR];
        fuzz_check(ksa_loader_tokenizer(&ld, name, sizeof name) == KSA_OK, "%s", ksa_last_error());
        ksa_loader_identity(&ld, identity, sizeof identity);
        ksa_loader_print(&ld, fuzz_devnull());
        ksa_loader_close(&ld);
    }
    ksa_val_reader vr;
    if (ksa_val_reader_open(&vr, path, dtype, vocab_size, seq_len, rows, flags >> 4) == KSA_OK) {
        size_t served = 0, got;
        while ((got = ksa_val_reader_next(&vr, tokens)) > 0) {
            check_rows(tokens, got * (seq_len + 1), vocab_size);
            served += got;
        }
        fuzz_check(served == vr.n_chosen, "%zu rows served of %zu", served, vr.n_chosen);
        ksa_val_reader_print(&vr, fuzz_devnull());
        ksa_val_reader_close(&vr);
    }
    free(tokens);
    return 0;
}
