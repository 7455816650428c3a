/* cmd_inspect.c - `ksa inspect --config X [--seq-len L] [--micro-batch B] [--KEY VALUE ...]`:
 * the resolved configuration, layer kinds, parameter count and the memory one training step
 * needs per rank (rows of seq_len tokens, micro_batch rows per forward: the training keys
 * of the configuration, as `ksa train` would use them; under mpirun, for that rank count).
 * `ksa inspect FILE.h5`: what a checkpoint holds, from its metadata alone (ckpt_info.h). */
#include <stdio.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_info.h"
#include "ckpt/verify.h"
#include "data/path.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "dist/context.h"
#include "dist/dist.h"
#include "autograd/blas.h"
#include "model/decoder.h"
#include "model/layout.h"
#include "train/train_config.h"
#include "train/trainer.h"

/* "  0.003 GiB" above 1 GiB, else in MiB */
static const char *size_text(char *buf, size_t cap, size_t bytes)
{
    double gib = (double)bytes / (double)(1ull << 30);
    if (gib >= 1)
        snprintf(buf, cap, "%9.3f GiB", gib);
    else
        snprintf(buf, cap, "%9.3f MiB", (double)bytes / (double)(1ull << 20));
    return buf;
}

/* The resident memory of this program before a step: code, libraries, the OpenMP threads
 * and OpenBLAS's buffers, which a first multiplication brings up (parameters, data and the
 * step's memory come on top; the plan is printed before they are allocated). */
static size_t program_bytes(void)
{
    enum { n = 512 };
    ksa_real *x = ksa_alloc_zero(3 * n * n * sizeof *x);
    ksa_gemm(0, 1, n, n, n, 1, x, n, x + n * n, n, 0, x + 2 * n * n, n);
    size_t bytes = ksa_resident_bytes();
    ksa_free(x);
    return bytes > 3 * n * n * sizeof *x ? bytes - 3 * n * n * sizeof *x : bytes;
}

double ksa_print_memory_plan(const ksa_model *m, size_t micro_batch, size_t seq_len, int n_ranks,
                             FILE *f)
{
    char block[96] = "";
    if (m->cp && m->cp->P > 1) { /* a rank computes its block of every row */
        snprintf(block, sizeof block, ", context parallelism: blocks of %zu of the %zu tokens",
                 ksa_cp_block_len(m->cp), seq_len);
        seq_len = ksa_cp_block_len(m->cp);
    }
    size_t numel = m->params.numel;
    /* the optimizer's elements: every parameter's, or the trained ones' in a buffer of their
     * own (16-element aligned, padded for the ranks: train/trainer.h) when some are frozen */
    size_t opt_numel = numel, trained_elements;
    size_t n_trained = ksa_params_n_trainable(&m->params, &trained_elements);
    if (n_trained < m->params.n) {
        opt_numel = 0;
        for (size_t i = 0; i < m->params.n; i++)
            if (!m->params.table[i].frozen)
                opt_numel += (m->params.table[i].numel + 15) / 16 * 16;
        size_t pad = 16 * (size_t)n_ranks;
        opt_numel = (opt_numel + pad - 1) / pad * pad;
    }
    size_t slice = opt_numel / (size_t)n_ranks;
    size_t per_param = numel * sizeof(ksa_real), moments = 2 * slice * sizeof(ksa_real);
    double estimate = ksa_model_step_bytes_estimate(m, micro_batch, seq_len);
    if (estimate > KSA_PLANNABLE_BYTES) {
        fprintf(f,
                "# memory of one training step per rank (micro-batch of %zu x %zu tokens): about "
                "%.3g TiB of activations, too large to plan\n",
                micro_batch, seq_len, estimate / 0x1p40);
        return estimate;
    }
    size_t grads = ksa_model_grad_bytes(m, micro_batch, seq_len);
    size_t arena = ksa_model_arena_bytes(m, micro_batch, seq_len) - grads;
    ksa_step_memory used = ksa_model_plan(m, micro_batch, seq_len, 1);
    /* parameters and gradients, the moments and the summed gradient slice, and with frozen
     * parameters the trained ones' own values and gradients (train/trainer.h) */
    size_t own = n_trained < m->params.n ? 2 * opt_numel * sizeof(ksa_real) : 0;
    size_t state = 2 * per_param + moments + moments / 2 + own, program = program_bytes();
    char a[32], b[32], c[32], d[32];
    fprintf(
        f,
        "# memory of one training step per rank (%d rank%s; micro-batch of %zu x %zu tokens%s):\n",
        n_ranks, n_ranks > 1 ? "s" : "", micro_batch, seq_len, block);
    fprintf(f, "  parameters         %s  (all %zu elements on every rank)\n",
            size_text(a, sizeof a, per_param), numel);
    fprintf(f, "  gradients          %s  (all %zu elements on every rank)\n",
            size_text(b, sizeof b, per_param), numel);
    if (n_trained < m->params.n)
        fprintf(f,
                "  AdamW moments      %s  (per rank: 2 x %zu elements, 1/%d of the %zu trained "
                "elements; %zu of %zu parameters frozen)\n",
                size_text(c, sizeof c, moments), slice, n_ranks, trained_elements,
                m->params.n - n_trained, m->params.n);
    else
        fprintf(f,
                "  AdamW moments      %s  (per rank: 2 x %zu elements, 1/%d of the parameters)\n",
                size_text(c, sizeof c, moments), slice, n_ranks);
    fprintf(f,
            "  summed gradients   %s  (per rank: its slice of the gradients summed over ranks)\n",
            size_text(c, sizeof c, moments / 2));
    fprintf(f, "  activations arena  %s  (per rank: one micro-batch%s; %s reserved)\n",
            size_text(d, sizeof d, used.arena_peak), m->recompute ? ", layers recomputed" : "",
            size_text(a, sizeof a, arena));
    fprintf(f, "  activation grads   %s  (each freed once dead: at most %s alive; %s reserved)\n",
            size_text(d, sizeof d, used.grads_high_water), size_text(b, sizeof b, used.grads_peak),
            size_text(c, sizeof c, grads));
    fprintf(f, "  program            %s  (resident now: code, libraries, threads, BLAS buffers)\n",
            size_text(a, sizeof a, program));
    size_t expected = program + state + used.arena_peak + used.grads_high_water;
    fprintf(f, "  total per rank     %s  (expected peak; %s reserved)\n",
            size_text(a, sizeof a, expected),
            size_text(b, sizeof b, program + state + arena + grads));
    return (double)expected;
}

/* What `ksa train --resume FILE` checks of a training checkpoint before step 1 beyond its
 * structure: the stored training keys parse and hold together, fit the model, and name data
 * files that exist. The first problem as an error, KSA_OK when a resume would start. */
static ksa_status resume_would_start(const char *path)
{
    ksa_model_config mc;
    ksa_train_config tc;
    ksa_ckpt_progress pr;
    KSA_TRY(ksa_ckpt_read_config(path, &mc));
    KSA_TRY(ksa_train_config_read_checkpoint(path, &tc, &pr));
    KSA_TRY(ksa_train_config_validate(&tc, 1));
    KSA_TRY(ksa_train_config_check_model(&tc, &mc));
    const char *files[] = {tc.data, tc.data_mix, tc.val_data};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i][0] && !ksa_path_is_file(files[i]))
            return ksa_fail(KSA_EIO,
                            "the data file '%s' does not exist (a resume may name its "
                            "new place on the command line)",
                            files[i]);
    return KSA_OK;
}

/* `ksa inspect [--verify] FILE`: exit 0, 1 when the file is refused (nothing but the error
 * printed), its training state is incomplete or would not resume, or (--verify) a dataset's
 * values do not match its checksum or are not finite (printed with the problems marked). */
static int inspect_checkpoint(const char *path, int verify)
{
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_status st = ksa_ckpt_info_print(path, keys, n_keys, stdout);
    fflush(stdout);
    if (st != KSA_OK)
        return ksa_cli_error("inspect", 1);
    int has_train = 0;
    if (ksa_ckpt_has(path, "/train", &has_train) != KSA_OK)
        return ksa_cli_error("inspect", 1);
    if (has_train && resume_would_start(path) != KSA_OK) {
        printf("\n# problems: this run cannot be resumed from this file\nPROBLEM: %s\n",
               ksa_last_error());
        fflush(stdout);
        return ksa_cli_errorf("inspect", 1, "--resume would refuse %s: %s", path, ksa_last_error());
    }
    if (!verify) {
        printf("\n# values: not read (ksa inspect --verify FILE reads every one against its "
               "dataset's checksum)\n");
        return 0;
    }
    if (ksa_ckpt_verify(path, 1) != KSA_OK) {
        printf("\n# problems: the values are damaged or not finite\nPROBLEM: %s\n",
               ksa_last_error());
        fflush(stdout);
        return ksa_cli_errorf("inspect", 1, "%s", ksa_last_error());
    }
    printf("\n# values: every dataset read in full: each matches its checksum (a format_version "
           "1 file has none) and the parameters and moments are finite\n");
    return 0;
}

static int inspect_main(int argc, char **argv);

/* On ranks, so that under mpirun the memory plan is that of the job's rank count. */
int ksa_cmd_inspect(int argc, char **argv)
{
    return ksa_cli_run_on_ranks("inspect", inspect_main, argc, argv, 0);
}

static int inspect_main(int argc, char **argv)
{
    /* a file, not an option; --verify may come before or after it */
    int verify = argc >= 2 && (!strcmp(argv[0], "--verify") || !strcmp(argv[1], "--verify"));
    const char *file = verify && !strcmp(argv[0], "--verify") ? argv[1] : argv[0];
    if (argc >= 1 && strncmp(file, "-", 1) != 0) {
        if (argc > 1 + verify) {
            return ksa_cli_errorf("inspect", 2,
                                  "a checkpoint takes no options but --verify ('%s' after %s); "
                                  "usage: ksa inspect [--verify] FILE.h5",
                                  argv[1 + verify], file);
        }
        return inspect_checkpoint(file, verify);
    }
    ksa_model_config cfg;
    ksa_train_config tc;
    ksa_model_config_defaults(&cfg);
    ksa_train_config_defaults(&tc);
    int help = 0;
    const ksa_arg args[] = {
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    const char *config_path;
    if (ksa_args_parse_train(argc, argv, args, n_args, &cfg, &tc, &config_path) != KSA_OK)
        return ksa_cli_error("inspect", 2);
    if (help) {
        ksa_args_usage(stdout, "inspect", args, n_args,
                       KSA_USAGE_MODEL_KEYS | KSA_USAGE_MEMORY_KEYS);
        printf("   or: ksa inspect [--verify] FILE.h5\n"
               "  a checkpoint's format, configuration, layers, parameters with shapes, "
               "tokenizer,\n  optimizer and training state, from its metadata alone (fast "
               "on any size);\n  with --verify, every value is also read against its "
               "dataset's checksum\n");
        return 0;
    }
    if (tc.seq_len < 1 || tc.micro_batch < 1)
        return ksa_cli_errorf("inspect", 2, "seq_len and micro_batch must be at least 1");
    int n_ranks = ksa_dist_size();
    ksa_model m;
    if (ksa_model_declare_for_ranks(&m, &cfg, n_ranks) != KSA_OK) /* as training pads it */
        return ksa_cli_error("inspect", 2);
    m.recompute = tc.recompute != 0;
    m.distill = tc.distill != 0;
    if (ksa_train_select_trainable(&tc, &m) != KSA_OK) {
        ksa_model_free(&m);
        return ksa_cli_error("inspect", 2);
    }
    ksa_cp cp = {0}; /* the memory of a context-parallel rank: its block of every row */
    if (tc.context_parallel != 1) {
        size_t unit = ksa_layout_block_unit(&m.layout); /* ksa_cp_init checks the grid */
        if (ksa_cp_init(&cp, (int)tc.context_parallel, (size_t)tc.seq_len, unit) != KSA_OK) {
            ksa_model_free(&m);
            return ksa_cli_error("inspect", 2);
        }
        m.cp = &cp;
    }
    printf("# configuration: %s\n", config_path ? config_path : "built-in defaults");
    ksa_model_config_write(&cfg, stdout);
    printf("\n# layers\n");
    ksa_model_layout_print(&m.layout, stdout);
    size_t n = ksa_params_count(&m.params);
    printf("\n# parameters: %zu (%.3f M) in %zu tensors\n", n, (double)n / 1e6, m.params.n);
    ksa_print_memory_plan(&m, (size_t)tc.micro_batch, (size_t)tc.seq_len, n_ranks, stdout);
    ksa_cp_free(&cp);
    ksa_model_free(&m);
    return 0;
}
