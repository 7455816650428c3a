/* cmd_prepare.c - `ksa prepare`: tokenises text files into train and validation token files.
 * Only the command line lives here; the work (and what goes where) is src/data/prepare.h.   */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

static const char usage[] =
    "usage: ksa prepare --input a.txt [b.txt ...] --out P.bin [--val-fraction 0.01]\n"
    "                   [--vocab-size 257]\n"
    "Each input is one document followed by an end-of-text token; the last val-fraction of\n"
    "each document's tokens go to P.val.bin. Writes P.bin, P.bin.meta, P.val.bin,\n"
    "P.val.bin.meta (uint16 tokens when vocab-size <= 65536, else uint32). See docs/data.md.\n";

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
    printf("ksa prepare: %zu file%s, %zu bytes -> '%s' %zu tokens (train), '%s' %zu tokens "
           "(validation); %s, vocab_size %zu, end-of-text id %d; %.2f s\n",
           r.n_files, r.n_files == 1 ? "" : "s", r.n_bytes, o.out, r.n_train, val_path, r.n_val,
           ksa_tokfile_dtype_name(r.dtype), o.vocab_size, KSA_TOKENIZER_EOT, r.seconds);
    ksa_free(val_path);
    ksa_free(inputs);
    return 0;
}
