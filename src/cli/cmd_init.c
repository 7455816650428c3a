/* cmd_init.c - `ksa init --config X --out F.h5 [--seed S]`: a freshly initialised model
 * (KSA_SPEC §9.7) written as a checkpoint (parameters only, with the byte tokenizer's
 * end-of-text, so vocab_size >= 257): the starting point for `ksa eval`, tests, benchmarks
 * and other tools.                                                                      */
#include <stdio.h>

#include "ckpt/ckpt.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "data/tokenizer.h"
#include "model/decoder.h"

int ksa_cmd_init(int argc, char **argv)
{
    ksa_model_config cfg;
    ksa_model_config_defaults(&cfg);
    const char *out = NULL;
    long seed = 42;
    int help = 0;
    const ksa_arg args[] = {
        {"out", KSA_ARG_STRING, &out, NULL, 0, "checkpoint to write (required)"},
        {"seed", KSA_ARG_LONG, &seed, NULL, 0, "initialisation seed (default 42)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    const char *config_path;
    if (ksa_args_parse(argc, argv, args, n_args, &cfg, &config_path) != KSA_OK)
        return ksa_cli_error("init", 2);
    if (help) {
        ksa_args_usage(stdout, "init", args, n_args, KSA_USAGE_MODEL_KEYS);
        return 0;
    }
    if (!out)
        return ksa_cli_errorf("init", 2, "--out FILE is required");
    ksa_model m;
    if (ksa_model_init(&m, &cfg) != KSA_OK)
        return ksa_cli_error("init", 2);
    /* the checkpoint names the byte tokenizer, whose end-of-text is id 256 */
    if (ksa_tokenizer_check_vocab(m.V) != KSA_OK) {
        ksa_model_free(&m);
        return ksa_cli_error("init", 2);
    }
    ksa_model_init_weights(&m, (uint64_t)seed);
    ksa_status st = ksa_ckpt_write_model(out, &cfg, &m.params, KSA_TOKENIZER_EOT);
    if (st != KSA_OK)
        ksa_cli_error("init", 0);
    else
        printf("wrote %s: %zu parameters (%s, seed %ld)\n", out, ksa_params_count(&m.params),
               config_path ? config_path : "built-in defaults", seed);
    ksa_model_free(&m);
    return st == KSA_OK ? 0 : 1;
}
