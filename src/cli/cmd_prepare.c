/* cmd_prepare.c - `ksa prepare`: tokenises text files into train and validation token files.
 * Only the command line lives here; the work (and what goes where) is src/data/prepare.h.   */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

static const char usage[] =
    "usage: ksa prepare --input a.txt [b.txt ...] --out P.bin [--val-fraction 0.01]\n"
    "                   [--seed 1] [--vocab-size 257]\n"
    "Each input is one document followed by an end-of-text token. Whole documents go to\n"
    "P.val.bin, each with probability val-fraction, picked by a hash of (seed, its index);\n"
    "the others to P.bin, both in command-line order. With val-fraction > 0, a split that\n"
    "leaves either file without a document is an error. Writes P.bin, P.bin.meta,\n"
    "P.val.bin, P.val.bin.meta (uint16 tokens when vocab-size <= 65536, else uint32).\n"
    "See docs/data.md.\n";

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

int ksa_cmd_prepare(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
    const char **inputs = ksa_alloc((size_t)(argc + 1) * sizeof *inputs);
    ksa_prepare_options o;
    ksa_prepare_result r;
    if (ksa_prepare_parse_args(&o, inputs, argc, argv) != KSA_OK) {
        ksa_cli_error("prepare", 2);
        fputs(usage, stderr);
        ksa_free(inputs);
        return 1;
    }
    if (ksa_prepare_run(&o, &r) != KSA_OK) { /* nothing was written under a final name */
        ksa_cli_error("prepare", 0);
        ksa_free(inputs);
        return 1;
    }
    char *val_path = ksa_prepare_val_path(o.out);
    printf("ksa prepare: %zu file%s, %zu bytes -> '%s' %zu document%s, %zu tokens (train), "
           "'%s' %zu document%s, %zu tokens (validation; val-fraction %g, seed %llu); %s, "
           "vocab_size %zu, end-of-text id %d; %.2f s\n",
           r.n_files, plural(r.n_files), r.n_bytes, o.out, r.n_train_docs, plural(r.n_train_docs),
           r.n_train, val_path, r.n_val_docs, plural(r.n_val_docs), r.n_val, o.val_fraction,
           (unsigned long long)o.seed, ksa_tokfile_dtype_name(r.dtype), o.vocab_size,
           KSA_TOKENIZER_EOT, r.seconds);
    ksa_free(val_path);
    ksa_free(inputs);
    return 0;
}
