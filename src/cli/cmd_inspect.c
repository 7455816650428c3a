/* cmd_inspect.c - `ksa inspect --config X [--seq-len L] [--micro-batch B]`: the resolved
 * configuration, layer kinds, parameter count and the memory one training step needs.
 * `ksa inspect FILE.h5`: what a checkpoint holds, from its metadata alone (ckpt_info.h). */
#include <stdio.h>
#include <string.h>

#include "ckpt/ckpt_info.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "model/decoder.h"
#include "train/train_config.h"

static double gib(size_t bytes)
{
    return (double)bytes / (double)(1ull << 30);
}

void ksa_print_memory_plan(const ksa_model *m, size_t micro_batch, size_t seq_len, FILE *f)
{
    size_t per_param = m->params.numel * sizeof(float);
    size_t arena = ksa_model_arena_bytes(m, micro_batch, seq_len);
    fprintf(f, "# memory of one training step, %zu x %zu tokens, one rank:\n", micro_batch,
            seq_len);
    fprintf(f, "  parameters         %8.3f GiB\n", gib(per_param));
    fprintf(f, "  gradients          %8.3f GiB\n", gib(per_param));
    fprintf(f, "  AdamW moments      %8.3f GiB  (divided by the rank count under MPI)\n",
            gib(2 * per_param));
    fprintf(f, "  activations arena  %8.3f GiB\n", gib(arena));
    fprintf(f, "  total              %8.3f GiB\n", gib(4 * per_param + arena));
}

/* `ksa inspect FILE`: exit 0, 1 when the file is refused (nothing but the error printed) or
 * its training state is incomplete (printed with the problems marked).                   */
static int inspect_checkpoint(const char *path)
{
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_status st = ksa_ckpt_info_print(path, keys, n_keys, stdout);
    fflush(stdout);
    if (st != KSA_OK)
        return ksa_cli_error("inspect", 1);
    return 0;
}

int ksa_cmd_inspect(int argc, char **argv)
{
    if (argc >= 1 && strncmp(argv[0], "--", 2) != 0) { /* a file, not an option */
        if (argc > 1) {
            return ksa_cli_errorf("inspect", 2,
                                  "a checkpoint takes no options ('%s' after %s); "
                                  "usage: ksa inspect FILE.h5",
                                  argv[1], argv[0]);
        }
        return inspect_checkpoint(argv[0]);
    }
    ksa_model_config cfg;
    ksa_model_config_defaults(&cfg);
    long seq_len = 2048, micro_batch = 1;
    int help = 0;
    const ksa_arg args[] = {
        {"seq_len", KSA_ARG_LONG, &seq_len, NULL, 0, "text tokens per row (default 2048)"},
        {"micro_batch", KSA_ARG_LONG, &micro_batch, NULL, 0, "rows per forward (default 1)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    const char *config_path;
    if (ksa_args_parse(argc, argv, args, n_args, &cfg, &config_path) != KSA_OK)
        return ksa_cli_error("inspect", 2);
    if (help) {
        ksa_args_usage(stdout, "inspect", args, n_args);
        printf("   or: ksa inspect FILE.h5\n"
               "  a checkpoint's format, configuration, layers, parameters with shapes, "
               "tokenizer,\n  optimizer and training state, from its metadata alone (fast "
               "on any size)\n");
        return 0;
    }
    if (seq_len < 1 || micro_batch < 1)
        return ksa_cli_errorf("inspect", 2, "--seq-len and --micro-batch must be at least 1");
    ksa_model m;
    if (ksa_model_declare(&m, &cfg) != KSA_OK)
        return ksa_cli_error("inspect", 2);
    printf("# configuration: %s\n", config_path ? config_path : "built-in defaults");
    ksa_model_config_write(&cfg, stdout);
    printf("\n# layers\n");
    ksa_model_layout_print(&m.layout, stdout);
    size_t n = ksa_params_count(&m.params);
    printf("\n# parameters: %zu (%.3f M) in %zu tensors\n", n, (double)n / 1e6, m.params.n);
    ksa_print_memory_plan(&m, (size_t)micro_batch, (size_t)seq_len, stdout);
    ksa_model_free(&m);
    return 0;
}
