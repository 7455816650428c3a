/* fuzz_mixture.c - mixture lists (data/mixture.c) and the loader that opens every source of
 * one (data/loader.c: weights, per-row draws, identity, tokenizer names).
 *
 * Input: the mixture file, written to <dir>/lists/mix.txt. Beside it, made once, are token
 * files a line may name (relative paths are read against lists/, ".bin" may be left out):
 *   ../data/a.bin    uint16, 200 ids, .meta, tokenizer "byte"
 *   ../data/b.bin    llm.c header, 100 ids, no sidecars
 *   ../data/c.bin    uint32, 50 ids, .meta, tokenizer "other"
 *   ../data/short.bin, ../data/bad.bin, ../data/nometa.bin: 3 ids (shorter than a row), an
 *   id of 300 (above vocab_size 257), no .meta and no llm.c header
 * Properties: every outcome is a status; a list that reads has at least one source, each an
 * existing file with a positive finite weight; the loader's rows hold ids below 257.     */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <math.h>

#include "data/identity.h"
#include "data/loader.h"
#include "data/mixture.h"
#include "data/path.h"
#include "fuzzutil.h"

enum { VOCAB = 257, SEQ_LEN = 8, ROWS = 4 };

static void write_ids(const char *name, const uint32_t *ids, size_t n, int bytes, const char *meta,
                      const char *tokenizer)
{
    char path[512], side[600];
    fuzz_path(path, sizeof path, name);
    unsigned char *buf = malloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < bytes; b++)
            buf[i * bytes + b] = (unsigned char)(ids[i] >> (8 * b));
    fuzz_write_file(path, buf, n * bytes);
    free(buf);
    if (meta) {
        snprintf(side, sizeof side, "%s.meta", path);
        fuzz_write_file(side, meta, strlen(meta));
    }
    if (tokenizer) {
        snprintf(side, sizeof side, "%s.tokenizer", path);
        fuzz_write_file(side, tokenizer, strlen(tokenizer));
    }
}

static void make_sources(void)
{
    char path[512];
    mkdir(fuzz_path(path, sizeof path, "data"), 0700);
    mkdir(fuzz_path(path, sizeof path, "lists"), 0700);
    uint32_t ids[300];
    for (size_t i = 0; i < 300; i++)
        ids[i] = (uint32_t)(i * 7 % VOCAB);
    write_ids("data/a.bin", ids, 200, 2, "uint16", "byte");
    write_ids("data/c.bin", ids, 50, 4, "uint32", "other");
    write_ids("data/short.bin", ids, 3, 2, "uint16", NULL);
    write_ids("data/nometa.bin", ids, 64, 2, NULL, NULL);
    uint32_t bad[40];
    memcpy(bad, ids, sizeof bad);
    bad[17] = 300;
    write_ids("data/bad.bin", bad, 40, 2, "uint16\n", NULL);
    /* llm.c: 256 int32 (magic, version, count, zeros), then uint16 ids */
    uint32_t llmc[256 + 50] = {20240520, 1, 100};
    for (size_t i = 0; i < 50; i++)
        llmc[256 + i] = ids[2 * i] | ids[2 * i + 1] << 16;
    fuzz_write_file(fuzz_path(path, sizeof path, "data/b.bin"), llmc, sizeof llmc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        make_sources();
        ready = 1;
    }
    char list[512];
    fuzz_path(list, sizeof list, "lists/mix.txt");
    fuzz_write_file(list, data, size);

    ksa_mixture m;
    if (ksa_mixture_read(&m, list) == KSA_OK) {
        fuzz_check(m.n >= 1, "a mixture without sources");
        for (size_t i = 0; i < m.n; i++) {
            fuzz_check(ksa_path_is_file(m.sources[i].path), "source %zu: '%s' is no file", i,
                       m.sources[i].path);
            fuzz_check(m.sources[i].weight > 0 && isfinite(m.sources[i].weight),
                       "source %zu: weight %g", i, m.sources[i].weight);
        }
        ksa_mixture_free(&m);
    }

    ksa_loader_options o = {.seq_len = SEQ_LEN, .global_batch = ROWS, .vocab_size = VOCAB};
    ksa_loader ld;
    if (ksa_loader_open_mixture(&ld, list, &o) == KSA_OK) {
        double total = 0;
        for (size_t i = 0; i < ld.n_sources; i++) {
            fuzz_check(ld.sources[i].weight >= 0 && ld.sources[i].n_windows >= 1,
                       "source %zu: weight %g, %zu windows", i, ld.sources[i].weight,
                       ld.sources[i].n_windows);
            total += ld.sources[i].weight;
        }
        fuzz_check(fabs(total - 1) < 1e-9, "the weights sum to %.17g", total);
        int32_t tokens[ROWS * (SEQ_LEN + 1)];
        for (uint64_t step = 0; step < 4; step++) {
            ksa_loader_batch_at(&ld, tokens, step, 0, 1);
            for (size_t i = 0; i < ROWS * (SEQ_LEN + 1); i++)
                fuzz_check(tokens[i] >= 0 && tokens[i] < VOCAB, "token %d", (int)tokens[i]);
        }
        char name[32], identity[KSA_IDENTITY_STR];
        ksa_loader_tokenizer(&ld, name, sizeof name);
        ksa_loader_identity(&ld, identity, sizeof identity);
        ksa_loader_print(&ld, fuzz_devnull());
        ksa_loader_close(&ld);
    }
    return 0;
}
