/* cmd_export.c - `ksa export --ckpt F.h5 --hf DIR [--dtype bf16|f16|f32]
 * [--max-shard-size 5GB]`: a ksa.c checkpoint as a Hugging Face model folder
 * (docs/interop.md).                                                                     */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "train/run_dir.h"
#include "model/decoder.h"
#include "ckpt/ckpt.h"
#include "core/core.h"
#include "interop/hf_export.h"

/* "5GB" (1000^3), "500MiB" (1024^2), "123" bytes; 0 on a bad size. */
/* A model in the middle of annealing (KSA_SPEC §5.5) blends its summary rows' own and shared
 * projections with the coefficient of its step; a Hugging Face model runs its summary
 * projections alone (mix_coeff 1, the only value the importer takes back): refused rather
 * than exported as another model. */
static ksa_status refuse_mid_anneal(const char *ckpt)
{
    ksa_model_config cfg;
    ksa_model m;
    KSA_TRY(ksa_ckpt_read_config(ckpt, &cfg));
    KSA_TRY(ksa_model_declare(&m, &cfg));
    long step;
    ksa_status st = ksa_run_checkpoint_mix(ckpt, &m, &step);
    if (st == KSA_OK && m.summary_mix != 1)
        st = ksa_fail(KSA_EINVAL,
                      "%s anneals its summary projections (summary_mix_qkv) and runs with summary "
                      "mix %.4f at step %ld; a Hugging Face model would run them at 1 (its "
                      "mix_coeff): export a checkpoint from before the annealing, or train on "
                      "with summary_independent_qkv = false once it reaches 0",
                      ckpt, m.summary_mix, step);
    ksa_model_free(&m);
    return st;
}

static size_t parse_size(const char *s)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0))
        return 0;
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KB", 1e3},
                 {"MB", 1e6},
                 {"GB", 1e9},
                 {"TB", 1e12},
                 {"KIB", 1024.0},
                 {"MIB", 1048576.0},
                 {"GIB", 1073741824.0},
                 {"TIB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].unit))
            return v * units[i].scale < 1 ? 0 : (size_t)(v * units[i].scale);
    return 0;
}

int ksa_cmd_export(int argc, char **argv)
{
    const char *ckpt = NULL, *dir = NULL, *dtype_name = "f32", *shard = "5GB";
    int help = 0;
    const ksa_arg args[] = {
        {"ckpt", KSA_ARG_STRING, &ckpt, NULL, 0, "checkpoint to export (required)"},
        {"hf", KSA_ARG_STRING, &dir, NULL, 0, "folder to write (created if missing; required)"},
        {"dtype", KSA_ARG_STRING, &dtype_name, NULL, 0,
         "f32 (default: exact), bf16 or f16 (rounded to nearest even)"},
        {"max_shard_size", KSA_ARG_STRING, &shard, NULL, 0,
         "largest safetensors file before the weights are sharded: 5GB (default), 500MB, 2GiB"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK)
        return ksa_cli_error("export", 2);
    if (help) {
        ksa_args_usage(stdout, "export", args, n_args, 0);
        return 0;
    }
    if (!ckpt || !dir)
        return ksa_cli_errorf("export", 2, "--ckpt FILE and --hf DIR are required");
    ksa_st_dtype dtype;
    if (!strcmp(dtype_name, "f32"))
        dtype = KSA_ST_F32;
    else if (!strcmp(dtype_name, "bf16"))
        dtype = KSA_ST_BF16;
    else if (!strcmp(dtype_name, "f16"))
        dtype = KSA_ST_F16;
    else
        return ksa_cli_errorf("export", 2, "--dtype %s: expected f32, bf16 or f16", dtype_name);
    size_t max_shard = parse_size(shard);
    if (!max_shard)
        return ksa_cli_errorf(
            "export", 2, "--max-shard-size %s: expected a size such as 5GB, 500MB or 2GiB", shard);
    if (refuse_mid_anneal(ckpt) != KSA_OK)
        return ksa_cli_error("export", 2);
    double t0 = ksa_now();
    ksa_hf_export_info info;
    if (ksa_hf_export(ckpt, dir, dtype, max_shard, &info) != KSA_OK)
        return ksa_cli_error("export", 1);
    printf("wrote %s: config.json, %zu tensors (%s, %.1f MiB) in %s%s%s; %.2f s\n", dir,
           info.n_tensors, dtype_name, (double)info.bytes / (1 << 20),
           info.n_shards == 1 ? "model.safetensors" : "shards with model.safetensors.index.json",
           info.merged_summary ? ", summary rows merged into embed_tokens" : "",
           info.tokenizer_json ? ", tokenizer.json" : "", ksa_now() - t0);
    return 0;
}
