/* cmd_task.c - `ksa task`: writes examples of a synthetic retrieval task as a token file and
 * a JSONL file. Only the command line lives here; the examples are src/data/tasks.h, the
 * files src/data/taskset.h.                                                              */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/taskset.h"

static const char what_it_does[] =
    "Writes N examples of a retrieval task, each exactly --len tokens: the prompt (filler\n"
    "text with needles, then the question), the answer and an end-of-text. Tasks: passkey,\n"
    "niah-multikey, niah-multivalue, vartrack. Depth: where the (first) target needle sits,\n"
    "in percent of the filler; example i takes depth i mod the list's length. Writes P.bin\n"
    "(+ .meta, .tokenizer, with --tokenizer .tokenizer.json: a token file like ksa\n"
    "prepare's) and P.jsonl (one object per example: prompt, answer, needle positions).\n"
    "See docs/evaluation.md.\n";

int ksa_cmd_task(int argc, char **argv)
{
    ksa_taskset_options o;
    ksa_taskset_defaults(&o);
    const char *task = NULL, *depths = NULL;
    long len = 0, n = 0, seed = (long)o.seed, vocab_size = 0;
    int help = 0;
    const ksa_arg args[] = {
        {"task", KSA_ARG_STRING, &task, NULL, 0,
         "passkey | niah-multikey | niah-multivalue | vartrack (required)"},
        {"len", KSA_ARG_LONG, &len, NULL, 0,
         "tokens per example: prompt + answer + end-of-text (required)"},
        {"n", KSA_ARG_LONG, &n, NULL, 0, "number of examples, at least 1 (required)"},
        {"depths", KSA_ARG_STRING, &depths, NULL, 0,
         "needle depths in percent of the filler, cycled over the examples (default "
         "0,25,50,75,100)"},
        {"seed", KSA_ARG_LONG, &seed, NULL, 0,
         "the set's seed; example i gets its own, recorded in P.jsonl (default 1)"},
        {"filler", KSA_ARG_STRING, &o.filler, NULL, 0,
         "a UTF-8 text file, or noise (default " KSA_TASKSET_DEFAULT_FILLER ")"},
        {"out", KSA_ARG_STRING, &o.out, NULL, 0, "prefix P of P.bin and P.jsonl (required)"},
        {"tokenizer", KSA_ARG_STRING, &o.tokenizer, NULL, 0,
         "a byte-level BPE tokenizer.json to spell the examples with (default: bytes)"},
        {"vocab_size", KSA_ARG_LONG, &vocab_size, NULL, 0,
         "vocabulary size, at least the tokenizer's (default: the tokenizer's, 257 for "
         "bytes); above 65536 the tokens are uint32"},
        {"overwrite", KSA_ARG_FLAG, &o.overwrite, NULL, 0,
         "replace existing output files instead of refusing"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK)
        return ksa_cli_error("task", 2);
    if (help) {
        ksa_args_usage(stdout, "task", args, n_args, 0);
        fputs(what_it_does, stdout);
        return 0;
    }
    if (!task)
        return ksa_cli_errorf("task", 2,
                              "--task NAME is required (passkey, niah-multikey, niah-multivalue, "
                              "vartrack)");
    if (!len)
        return ksa_cli_errorf("task", 2, "--len L is required (tokens per example)");
    if (ksa_task_parse(task, &o.task) != KSA_OK)
        return ksa_cli_error("task", 2);
    double *parsed = NULL;
    if (depths) {
        if (ksa_task_parse_depths(depths, &parsed, &o.n_depths) != KSA_OK)
            return ksa_cli_error("task", 2);
        o.depths = parsed;
    }
    o.len = (size_t)len;
    o.n = (size_t)n;
    o.seed = (uint64_t)seed;
    if (vocab_size < 0)
        return ksa_cli_errorf("task", 2, "--vocab-size %ld is negative", vocab_size);
    o.vocab_size = (size_t)vocab_size;
    ksa_taskset_result r;
    ksa_status st = ksa_taskset_write(&o, &r);
    ksa_free(parsed);
    if (st != KSA_OK) /* nothing was left behind */
        return ksa_cli_error("task", 1);
    printf("ksa task: %zu %s example%s of %zu tokens (seed %llu, filler %s) -> '%s' (%zu "
           "tokens, %s",
           o.n, ksa_task_name(o.task), o.n == 1 ? "" : "s", o.len, (unsigned long long)o.seed,
           o.filler, r.bin_path, r.n_tokens, ksa_tokfile_dtype_name(r.dtype));
    if (o.tokenizer) /* the byte tokenizer's line stays as it was */
        printf(", tokenizer %s, vocab_size %zu", r.tokenizer, r.vocab_size);
    printf("), '%s'; %.2f s\n", r.jsonl_path, r.seconds);
    ksa_taskset_result_free(&r);
    return 0;
}
