/* cmd_prepare.c - `ksa prepare`: tokenises text files into train and validation token files.
 * Only the command line lives here; the work (and what goes where) is src/data/prepare.h.   */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

static const char what_it_does[] =
    "Each input is one document followed by an end-of-text token. Whole documents go to\n"
    "P.val.bin, each with probability val-fraction, picked by a hash of (seed, its index);\n"
    "the others to P.bin, both in command-line order. With val-fraction > 0, a split that\n"
    "leaves either file without a document is an error. Writes P.bin, P.bin.meta,\n"
    "P.bin.tokenizer and the same for P.val.bin (uint16 tokens when vocab-size <= 65536,\n"
    "else uint32). With --tokenizer PATH/tokenizer.json (byte-level BPE, as Qwen2/Qwen3's)\n"
    "the documents are its ids, end-of-text is its own, the work runs on all threads, and\n"
    "P.bin.tokenizer.json (and P.val.bin.tokenizer.json) hold a copy of the tokenizer.\n"
    "See docs/data.md.\n";

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

int ksa_cmd_prepare(int argc, char **argv)
{
    const char **inputs = ksa_alloc((size_t)(argc + 1) * sizeof *inputs);
    ksa_prepare_options o;
    ksa_prepare_defaults(&o);
    o.inputs = inputs;
    long vocab_size = 0, seed = (long)o.seed; /* vocab_size 0: the tokenizer's */
    int help = 0;
    const ksa_arg args[] = {
        {"input", KSA_ARG_LIST, inputs, &o.n_inputs, (size_t)argc + 1,
         "text files, one document each (the option may repeat)"},
        {"out", KSA_ARG_STRING, &o.out, NULL, 0,
         "the training token file P.bin (required; its folder is created)"},
        {"val_fraction", KSA_ARG_DOUBLE, &o.val_fraction, NULL, 0,
         "the expected fraction of documents that go whole to validation (default 0.01)"},
        {"seed", KSA_ARG_LONG, &seed, NULL, 0,
         "picks which documents go to validation (default 1)"},
        {"vocab_size", KSA_ARG_LONG, &vocab_size, NULL, 0,
         "vocabulary size, at least the tokenizer's (default: the tokenizer's, 257 for "
         "bytes); above 65536 the tokens are uint32"},
        {"tokenizer", KSA_ARG_STRING, &o.tokenizer, NULL, 0,
         "a tokenizer.json (byte-level BPE); default: the byte tokenizer"},
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
    o.seed = (uint64_t)seed;
    ksa_prepare_result r;
    if (ksa_prepare_run(&o, &r) != KSA_OK) { /* nothing was written under a final name */
        ksa_cli_error("prepare", 0);
        ksa_free(inputs);
        return 1;
    }
    char *val_path = ksa_prepare_val_path(o.out);
    printf("ksa prepare: %zu file%s, %zu bytes -> '%s' %zu document%s, %zu tokens (train), "
           "'%s' %zu document%s, %zu tokens (validation; val-fraction %g, seed %llu); %s, "
           "tokenizer %s, vocab_size %zu, end-of-text id %d; %.2f s\n",
           r.n_files, plural(r.n_files), r.n_bytes, o.out, r.n_train_docs, plural(r.n_train_docs),
           r.n_train, val_path, r.n_val_docs, plural(r.n_val_docs), r.n_val, o.val_fraction,
           (unsigned long long)o.seed, ksa_tokfile_dtype_name(r.dtype), r.tokenizer, r.vocab_size,
           (int)r.eot, r.seconds);
    ksa_free(val_path);
    ksa_free(inputs);
    return 0;
}
