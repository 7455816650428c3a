/* cmd_prepare.c - `ksa prepare`: tokenises text files into train and validation token files.
 * Only the command line lives here; the work (and what goes where) is src/data/prepare.h.   */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

static const char what_it_does[] =
    "Each input is one document followed by an end-of-text token; the last val-fraction of\n"
    "each document's tokens go to P.val.bin. Writes P.bin, P.bin.meta, P.val.bin,\n"
    "P.val.bin.meta (uint16 tokens when vocab-size <= 65536, else uint32). See docs/data.md.\n";

int ksa_cmd_prepare(int argc, char **argv)
{
    const char **inputs = ksa_alloc((size_t)(argc + 1) * sizeof *inputs);
    ksa_prepare_options o;
    ksa_prepare_defaults(&o);
    o.inputs = inputs;
    long vocab_size = (long)o.vocab_size;
    int help = 0;
    const ksa_arg args[] = {
        {"input", KSA_ARG_LIST, inputs, &o.n_inputs, (size_t)argc + 1,
         "text files, one document each (the option may repeat)"},
        {"out", KSA_ARG_STRING, &o.out, NULL, 0,
         "the training token file P.bin (required; its folder is created)"},
        {"val_fraction", KSA_ARG_DOUBLE, &o.val_fraction, NULL, 0,
         "the last fraction of each document that goes to validation (default 0.01)"},
        {"vocab_size", KSA_ARG_LONG, &vocab_size, NULL, 0,
         "vocabulary size, at least 257 (default 257); above 65536 the tokens are uint32"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK) {
        ksa_free(inputs);
        return ksa_cli_error("prepare", 2);
    }
    if (help) {
        ksa_args_usage(stdout, "prepare", args, n_args, 0);
        fputs(what_it_does, stdout);
        ksa_free(inputs);
        return 0;
    }
    o.vocab_size = (size_t)vocab_size;
    ksa_prepare_result r;
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
