/* cmd_import.c - `ksa import --hf DIR --out F.h5`: a Hugging Face model folder (config.json,
 * safetensors weights, tokenizer.json) as a ksa.c checkpoint (docs/interop.md).          */
#include <stdio.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/core.h"
#include "interop/hf_import.h"

int ksa_cmd_import(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    int help = 0;
    const ksa_arg args[] = {
        {"hf", KSA_ARG_STRING, &dir, NULL, 0,
         "Hugging Face folder: config.json, model.safetensors or shards + index (required)"},
        {"out", KSA_ARG_STRING, &out, NULL, 0, "checkpoint to write (required)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK)
        return ksa_cli_error("import", 2);
    if (help) {
        ksa_args_usage(stdout, "import", args, n_args, 0);
        return 0;
    }
    if (!dir || !out)
        return ksa_cli_errorf("import", 2, "--hf DIR and --out FILE are required");
    double t0 = ksa_now();
    ksa_hf_import_info info;
    if (ksa_hf_import(dir, out, &info) != KSA_OK)
        return ksa_cli_error("import", 1);
    printf("wrote %s: %zu parameters from %zu tensors in %zu safetensors file%s%s; tokenizer %s, "
           "eot_id %d; peak memory %.1f MiB (parameters %.1f MiB as float32); %.2f s\n",
           out, info.n_params, info.n_tensors, info.n_files, info.n_files == 1 ? "" : "s",
           info.merged_summary ? " (summary rows split off embed_tokens)" : "", info.tokenizer,
           info.eot_id, (double)info.peak_rss / (1 << 20), (double)info.n_params * 4 / (1 << 20),
           ksa_now() - t0);
    return 0;
}
