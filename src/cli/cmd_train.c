/* cmd_train.c - `ksa train --config X [--key value ...] [--dry-run] [--sample N]`, `ksa train
 * --resume DIR|FILE [--steps N ...]`, `ksa train --init-from FILE ...`: parses the command
 * line, prints the resolved configuration, layer kinds, parameter count and memory plan, and
 * hands the run to src/train (train/run.h: progress, validation, log, checkpoints, MFU);
 * optionally prints a sample of text from the trained model.                            */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/ckpt.h"
#include "ckpt/init_from.h"
#include "core/rng.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "ckpt/ckpt_tok.h"
#include "data/tokenizer.h"
#include "dist/context.h"
#include "dist/dist.h"
#include "model/decoder.h"
#include "model/layout.h"
#include "model/sample.h"
#include "train/run.h"
#include "train/run_dir.h"
#include "train/trainer.h"

static int train_main(int argc, char **argv);

/* MPI is up for the whole run: checkpoints are written with MPI-IO (parallel HDF5); only
 * rank 0 prints progress and writes logs. */
int ksa_cmd_train(int argc, char **argv)
{
    return ksa_cli_run_on_ranks("train", train_main, argc, argv, 1);
}

/* What the command line asks for, after --config and --resume are applied. */
typedef struct {
    ksa_model_config mc;
    ksa_train_config tc;
    int dry_run, help, verbose, overwrite, allow_schedule_change, remeasure_peak;
    long sample_tokens;
    const char *prompt, *resume, *init_from, *summary_init, *config_path;
    ksa_summary_init how;
    char resume_path[KSA_PATH_STR + 32]; /* "" unless --resume */
    ksa_ckpt_progress resumed;           /* the --resume checkpoint's progress and stamps */
    ksa_run_owner owner;                 /* the run's id (ksa_run_new_id, or the resumed one) */
} train_cli;

/* The folder of a file path ("" for "", "." for a bare name, "/" for "/x"). */
static void folder_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!path[0])
        snprintf(dir, cap, "%s", "");
    else if (!slash)
        snprintf(dir, cap, "%s", ".");
    else if (slash == path)
        snprintf(dir, cap, "%s", "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

/* Every start-up step that can fail on one rank alone ends with this, on all ranks: rc is
 * this rank's exit code for the step (0: it went well; else its error is printed). If any
 * rank failed, every rank returns non-zero: a failed rank its own rc, the others 1 after
 * "rank R failed (its message says why)". So no rank goes on into a collective that a
 * failed one will never enter (docs/mpi.md, "One rank fails").                        */
static int agree(int rc)
{
    int failed_rank;
    if (ksa_dist_agree(rc ? KSA_EINVAL : KSA_OK, &failed_rank) == KSA_OK || rc)
        return rc;
    return ksa_cli_error("train", 1);
}

/* Parses argv into c; returns 0, or the exit code after printing the error (or --help). A
 * first parse finds --resume and --config. With --resume, the configuration comes from the
 * checkpoint and the command line is parsed again over it: it may change only a few keys
 * (ksa_run_check_resume against the stored copy). */
static int parse_command_line(int argc, char **argv, train_cli *c)
{
    memset(c, 0, sizeof *c);
    ksa_model_config_defaults(&c->mc);
    ksa_train_config_defaults(&c->tc);
    c->prompt = "";
    c->summary_init = "copy";
    const ksa_arg args[] = {
        {"dry_run", KSA_ARG_FLAG, &c->dry_run, NULL, 0, "print the plan and exit"},
        {"overwrite", KSA_ARG_FLAG, &c->overwrite, NULL, 0,
         "delete another run's checkpoints in --out instead of refusing the folder"},
        {"allow_schedule_change", KSA_ARG_FLAG, &c->allow_schedule_change, NULL, 0,
         "let a --resume with a new --steps reshape the learning-rate schedule"},
        {"remeasure_peak", KSA_ARG_FLAG, &c->remeasure_peak, NULL, 0,
         "measure the GEMM peak (the MFU denominator) again instead of using the cached one"},
        {"resume", KSA_ARG_STRING, &c->resume, NULL, 0,
         "continue the run of a checkpoint (file or folder)"},
        {"init_from", KSA_ARG_STRING, &c->init_from, NULL, 0,
         "start from a checkpoint's parameters (fine-tuning)"},
        {"summary_init", KSA_ARG_STRING, &c->summary_init, NULL, 0,
         "copy (default) | scratch: summary parameters the --init-from checkpoint lacks"},
        {"sample", KSA_ARG_LONG, &c->sample_tokens, NULL, 0,
         "after training, print N sampled tokens"},
        {"prompt", KSA_ARG_STRING, &c->prompt, NULL, 0, "the sample's prompt (default: empty)"},
        {"verbose", KSA_ARG_FLAG, &c->verbose, NULL, 0,
         "with --init-from: one line per parameter, not counts per kind"},
        {"help", KSA_ARG_FLAG, &c->help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse_train(argc, argv, args, n_args, &c->mc, &c->tc, &c->config_path) != KSA_OK)
        return ksa_cli_error("train", 2);
    ksa_model_config stored_mc;
    ksa_train_config stored_tc;
    if (c->resume) {
        if (c->config_path) {
            return ksa_cli_errorf("train", 2,
                                  "--resume takes its configuration from the checkpoint; "
                                  "drop --config");
        }
        if (ksa_run_read_resume(c->resume, c->resume_path, sizeof c->resume_path, &stored_mc,
                                &stored_tc, &c->resumed) != KSA_OK)
            return ksa_cli_error("train", 1);
        c->mc = stored_mc;
        c->tc = stored_tc;
        /* the grid belongs to the launch, not to the run: a resume runs on the ranks it is
         * given, without context parallelism unless the command line asks for it */
        c->tc.context_parallel = 1;
        if (ksa_args_parse_train(argc, argv, args, n_args, &c->mc, &c->tc, &c->config_path) !=
            KSA_OK)
            return ksa_cli_error("train", 2);
    }
    c->how = KSA_INIT_SUMMARY_COPY;
    if (!strcmp(c->summary_init, "scratch"))
        c->how = KSA_INIT_SUMMARY_SCRATCH;
    else if (strcmp(c->summary_init, "copy") != 0)
        return ksa_cli_errorf("train", 2, "--summary-init '%s' (expected copy or scratch)",
                              c->summary_init);
    if (c->init_from && c->resume)
        return ksa_cli_errorf("train", 2,
                              "--init-from starts a new run, --resume continues one: give "
                              "one of them");
    if (c->resume && ksa_run_check_resume(c->resume_path, &c->mc, &stored_mc, &c->tc, &stored_tc,
                                          &c->resumed, c->allow_schedule_change, stdout) != KSA_OK)
        return ksa_cli_error("train", 2);
    if (c->overwrite && c->resume)
        return ksa_cli_errorf("train", 2,
                              "--overwrite is for a new run; a --resume continues its own files");
    if (c->overwrite && c->init_from) {
        char parent[KSA_PATH_STR];
        folder_of(c->init_from, parent, sizeof parent);
        if (ksa_run_same_folder(parent, c->tc.out))
            return ksa_cli_errorf("train", 2,
                                  "--overwrite would delete '%s', the checkpoint --init-from "
                                  "reads: give the fine-tune another --out folder",
                                  c->init_from);
    }
    if (c->help)
        ksa_args_usage(stdout, "train", args, n_args, KSA_USAGE_MODEL_KEYS | KSA_USAGE_TRAIN_KEYS);
    return 0;
}

/* The run's id: a resume keeps the checkpoint's (one written before run ids gets a new id and
 * adopts the unstamped files of its folder); a new run or a fine-tune gets a new one.
 * Collective under MPI. */
static void choose_run_id(train_cli *c)
{
    memset(&c->owner, 0, sizeof c->owner);
    if (c->resume && c->resumed.run_id[0]) {
        snprintf(c->owner.id, sizeof c->owner.id, "%s", c->resumed.run_id);
        return;
    }
    ksa_run_new_id(c->owner.id, sizeof c->owner.id);
    c->owner.adopt_unstamped = c->resume != NULL;
}

/* data_seed, when unset: the seed, except for a fine-tune, whose batches would otherwise
 * repeat its parent run's from the start: a seed derived from the seed and the parent's run
 * id (its path when it has none). Stored in the checkpoints like every key. */
static ksa_status choose_data_seed(train_cli *c)
{
    if (c->tc.data_seed >= 0)
        return KSA_OK;
    if (!c->init_from) {
        c->tc.data_seed = c->tc.seed;
        return KSA_OK;
    }
    char parent[KSA_CKPT_STAMP] = "";
    int has_train = 0;
    KSA_TRY(ksa_ckpt_has(c->init_from, "/train", &has_train));
    if (has_train)
        KSA_TRY(ksa_ckpt_read_run_id(c->init_from, parent, sizeof parent));
    uint64_t h =
        ksa_mix64((uint64_t)c->tc.seed ^ ksa_hash_string(parent[0] ? parent : c->init_from));
    c->tc.data_seed = (long)(h >> 33); /* a non-negative long on every platform */
    return KSA_OK;
}

/* The ranks run the same configuration: the resolved model and training keys (paths made
 * absolute; threads left out, a per-host choice that changes no result) and the options
 * that choose what the command does, compared across ranks (ksa_dist_same_settings). */
static ksa_status check_same_settings(const train_cli *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return ksa_fail(KSA_ENOMEM, "cannot hold the configuration in memory");
    ksa_train_config tc = c->tc;
    ksa_train_config_absolute_paths(&tc);
    tc.threads = 0;
    ksa_model_config_write(&c->mc, f);
    ksa_train_config_write(&tc, f);
    fprintf(f,
            "dry_run = %d\nhelp = %d\noverwrite = %d\nallow_schedule_change = %d\nresume = %s\n"
            "init_from = %s\nsummary_init = %s\nsample = %ld\nprompt = %s\n",
            c->dry_run, c->help, c->overwrite, c->allow_schedule_change, c->resume_path,
            c->init_from ? c->init_from : "", c->summary_init, c->sample_tokens,
            c->prompt ? c->prompt : "");
    fclose(f);
    ksa_status st = ksa_dist_same_settings(text, "configuration");
    free(text);
    return st;
}

/* The configuration, layers, parameters, memory and FLOPs of the run, on stdout. */
/* Prints the plan; returns the expected peak memory per rank (ksa_print_memory_plan). */
static double print_plan(const train_cli *c, const ksa_model *m, int n_ranks, double step_flops)
{
    const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    printf("# ksa train (%s build, %d rank%s x %d threads, OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s), "
           "configuration %s\n",
           KSA_REAL_NAME, n_ranks, n_ranks > 1 ? "s" : "", ksa_threads_get(),
           wait ? wait : "(unset)", spin ? spin : "(unset)",
           c->resume_path[0] ? c->resume_path
           : c->config_path  ? c->config_path
                             : "(built-in defaults)");
    ksa_model_config_write(&c->mc, stdout);
    ksa_train_config_write(&c->tc, stdout);
    printf("# run id %s (%s)\n", c->owner.id,
           c->resume && c->resumed.run_id[0] ? "resumed"
           : c->resume                       ? "new: the checkpoint predates run ids"
           : c->init_from                    ? "new: a fine-tune is a run of its own"
                                             : "new");
    printf("# layers\n");
    ksa_model_layout_print(&m->layout, stdout);
    printf("# parameters: %zu (%.3f M)\n", ksa_params_count(&m->params),
           (double)ksa_params_count(&m->params) / 1e6);
    size_t trained, n_trained = ksa_params_n_trainable(&m->params, &trained);
    if (n_trained < m->params.n) { /* trainable / frozen: say what trains */
        printf("# trained: %zu of %zu tensors, %zu (%.3f M) elements; frozen (no gradient, no "
               "optimizer state):",
               n_trained, m->params.n, trained, (double)trained / 1e6);
        for (size_t i = 0, shown = 0; i < m->params.n; i++)
            if (m->params.table[i].frozen && shown++ < 4)
                printf(" %s", m->params.table[i].name);
        if (m->params.n - n_trained > 4)
            printf(" and %zu more", m->params.n - n_trained - 4);
        printf("\n");
    }
    double need =
        ksa_print_memory_plan(m, (size_t)c->tc.micro_batch, (size_t)c->tc.seq_len, n_ranks, stdout);
    printf("# model FLOPs per step: %.4g (6 x the matmuls' multiply-adds, each layer on the rows "
           "it runs, + 12 x head_dim x query heads x visible pairs; docs/training.md)\n",
           step_flops);
    return need;
}

/* Initialises (or loads) the parameters, trains, samples. Returns the exit code. */
static int train_and_sample(const train_cli *c, ksa_model *m, double step_flops);

/* --sample after the last step: every rank samples (only rank 0's stdout is shown); a
 * failure is agreed like a start-up step's. Returns the exit code. */
static int sample(const train_cli *c, ksa_model *m, const ksa_trainer *t)
{
    ksa_tok *tok = NULL;
    if (agree(ksa_tok_for_model(&tok, t->tokenizer, t->tokenizer_json, t->tokenizer_json_len, m->V,
                                "the model") != KSA_OK
                  ? ksa_cli_error("train", 1)
                  : 0) != 0) {
        ksa_tok_close(tok);
        return 1;
    }
    printf("# sample (%ld tokens, temperature 0.8, top-k 40):\n", c->sample_tokens);
    fflush(stdout);
    ksa_generate_options go = ksa_generate_defaults();
    go.max_new_tokens = (size_t)c->sample_tokens;
    go.temperature = 0.8;
    go.top_k = 40;
    go.seed = (uint64_t)c->tc.seed;
    go.tok = tok;
    int rc = 0;
    struct ksa_cp_s *cp = m->cp; /* every rank samples the whole sequence on its own */
    m->cp = NULL;
    if (ksa_sample_text(m, c->prompt, c->prompt ? strlen(c->prompt) : 0, &go, stdout, NULL, NULL) !=
        KSA_OK)
        rc = ksa_cli_error("train", 1);
    else
        printf("\n");
    m->cp = cp;
    ksa_tok_close(tok);
    return agree(rc) != 0 ? 1 : 0;
}

/* Claims the run's folders (checked before step 1), then trains. */
static int run(const train_cli *c, ksa_model *m, double step_flops)
{
    char dir[KSA_PATH_STR + 32];
    folder_of(c->resume_path, dir, sizeof dir);
    ksa_run_lock lock;
    if (ksa_run_claim_outputs(&c->tc, dir[0] ? dir : NULL, &c->owner, c->overwrite, stdout,
                              &lock) != KSA_OK)
        return ksa_cli_error("train", 1);
    int rc = train_and_sample(c, m, step_flops);
    ksa_run_release(&lock);
    return rc;
}

static int train_and_sample(const train_cli *c, ksa_model *m, double step_flops)
{
    const ksa_train_config *tc = &c->tc;
    ksa_model_init_weights(m, (uint64_t)tc->seed);
    int rc = 0;
    if (c->init_from) { /* parameters only: fresh optimizer, schedule and data */
        printf("# parameters from %s:\n", c->init_from);
        if (ksa_ckpt_init_from(c->init_from, m, c->how, (uint64_t)tc->seed, stdout, c->verbose) !=
            KSA_OK)
            rc = ksa_cli_error("train", 1);
    }
    if ((rc = agree(rc)) != 0)
        return rc;
    ksa_trainer t;
    if (ksa_trainer_init(&t, m, tc, c->owner.id) != KSA_OK)
        rc = ksa_cli_error("train", 1);
    else if (c->init_from &&
             ksa_train_check_tokenizer(c->init_from, t.tokenizer, "--init-from") != KSA_OK) {
        rc = ksa_cli_error("train", 1);
        ksa_trainer_free(&t);
    }
    if (agree(rc) != 0) {
        if (rc == 0) /* another rank failed: this one's trainer is whole */
            ksa_trainer_free(&t);
        return rc ? rc : 1;
    }
    if (c->resume_path[0]) {
        if (ksa_trainer_resume(&t, c->resume_path) != KSA_OK)
            rc = ksa_cli_error("train", 1);
        if ((rc = agree(rc)) != 0) {
            ksa_trainer_free(&t);
            return rc;
        }
        printf("# resumed from %s after step %ld (%zu tokens seen)\n", c->resume_path, t.step,
               t.tokens_seen);
    }
    rc = 1;
    ksa_loader_print(&t.loader, stdout);
    if (t.has_val)
        ksa_val_reader_print(&t.val, stdout);
    printf("# optimizer state on this rank: %.3f MiB (AdamW moments of %zu of %zu elements)\n",
           2.0 * (double)(t.slice_hi - t.slice_lo) * sizeof(ksa_real) / 1048576.0,
           t.slice_hi - t.slice_lo, m->params.numel);
    double peak = ksa_run_peak_gflops(tc, c->remeasure_peak, stdout);
    fflush(stdout);
    ksa_run_end end;
    if (ksa_run_train(&t, tc, &c->owner, step_flops, peak, c->resume_path[0] != '\0', stdout,
                      &end) != KSA_OK)
        goto fail;
    rc = end == KSA_RUN_STOPPED_UNSAVED;
    if (end == KSA_RUN_FINISHED && c->sample_tokens > 0)
        rc = sample(c, m, &t);
    ksa_trainer_free(&t);
    return rc;
fail:
    ksa_cli_error("train", 1);
    ksa_trainer_free(&t);
    return 1;
}

/* --dry-run: the data and validation files open and pass the loader's checks (they exist,
 * hold a row, every id fits the vocabulary); they are described as a run would. */
static int check_data(const ksa_train_config *tc, size_t V)
{
    ksa_loader ld;
    ksa_val_reader val;
    int has_val;
    char tokenizer[32];
    int rc = 0;
    if (ksa_train_data_open(tc, V, &ld, &val, &has_val, tokenizer, sizeof tokenizer, NULL) !=
        KSA_OK)
        rc = ksa_cli_error("train", 1);
    if (agree(rc) != 0) {
        if (rc == 0 && has_val) /* another rank failed: this one's files are open */
            ksa_val_reader_close(&val);
        if (rc == 0)
            ksa_loader_close(&ld);
        return rc ? rc : 1;
    }
    ksa_loader_print(&ld, stdout);
    if (has_val) {
        ksa_val_reader_print(&val, stdout);
        ksa_val_reader_close(&val);
    }
    ksa_loader_close(&ld);
    printf("# tokenizer of the data: %s\n# dry run: the data checks passed; nothing was trained\n",
           tokenizer);
    return 0;
}

/* A step that needs more than this host's memory (shared by the ranks on it) is refused on
 * every rank before anything is allocated. */
static ksa_status refuse_what_cannot_fit(double need_per_rank)
{
    double host = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    int local = ksa_dist_local_size();
    ksa_status st = KSA_OK;
    if (host > 0 && need_per_rank * local > host)
        st = ksa_fail(KSA_ENOMEM,
                      "one training step needs %.2f GiB per rank (x %d rank%s on this host), "
                      "more than its %.2f GiB of memory: shorten seq_len, lower micro_batch, "
                      "add --recompute or spread the batch over more hosts",
                      need_per_rank / 0x1p30, local, local > 1 ? "s" : "", host / 0x1p30);
    int failed_rank;
    return ksa_dist_agree(st, &failed_rank);
}

/* Every step that can fail on one rank alone is agreed (agree): the job ends within
 * moments of the first failure, the failed rank saying why and the others which rank. */
static int train_main(int argc, char **argv)
{
    train_cli c;
    int rc = agree(parse_command_line(argc, argv, &c));
    if (rc != 0)
        return rc;
    if (c.help) /* printed by parse_command_line; every rank was asked, or they differ */
        return check_same_settings(&c) != KSA_OK ? ksa_cli_error("train", 2) : 0;
    int n_ranks = ksa_dist_size();
    if (c.resume && c.tc.data_seed < 0) /* a checkpoint from before data_seed: same order */
        c.tc.data_seed = c.tc.seed;
    if ((rc = agree(choose_data_seed(&c) != KSA_OK ? ksa_cli_error("train", 1) : 0)) != 0)
        return rc;
    if (check_same_settings(&c) != KSA_OK)
        return ksa_cli_error("train", 2);
    choose_run_id(&c);
    /* every bound checked before anything is sized, allocated or looped over */
    ksa_model m;
    int declared = ksa_train_config_validate(&c.tc, n_ranks) == KSA_OK &&
                   ksa_model_declare_for_ranks(&m, &c.mc, n_ranks) == KSA_OK;
    if (!declared || ksa_train_config_check_model(&c.tc, &c.mc) != KSA_OK)
        rc = ksa_cli_error("train", 2);
    if (agree(rc) != 0) {
        if (declared)
            ksa_model_free(&m);
        return rc ? rc : 1;
    }
    if (c.tc.threads > 0) {
        ksa_threads_set((int)c.tc.threads);
    } else if (!getenv("OMP_NUM_THREADS")) { /* the host's cores shared by its ranks */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int per_rank = (int)(cores / ksa_dist_local_size());
        ksa_threads_set(per_rank > 0 ? per_rank : 1);
    }
    /* frozen parameters: before the plan, which sizes the optimizer state of the others */
    if (agree(ksa_train_select_trainable(&c.tc, &m) != KSA_OK ? ksa_cli_error("train", 2) : 0) !=
        0) {
        ksa_model_free(&m);
        return 2;
    }
    /* the context-parallel grid (collective): after the checks, which every rank passed */
    ksa_cp cp = {0};
    if (c.tc.context_parallel > 1) {
        size_t unit = ksa_layout_block_unit(&m.layout);
        ksa_status st =
            ksa_cp_check((int)c.tc.context_parallel, n_ranks, (size_t)c.tc.seq_len, unit);
        if (st == KSA_OK)
            st = ksa_cp_check_messages((size_t)c.tc.seq_len, unit, m.layout.S,
                                       (size_t)c.tc.micro_batch, m.Hkv * m.dh);
        rc = st == KSA_OK ? 0 : ksa_cli_error("train", 2);
        if (agree(rc) != 0) {
            ksa_model_free(&m);
            return rc ? rc : 1;
        }
        if (agree(ksa_cp_init(&cp, (int)c.tc.context_parallel, (size_t)c.tc.seq_len, unit) != KSA_OK
                      ? ksa_cli_error("train", 1)
                      : 0) != 0) {
            ksa_model_free(&m);
            return 1;
        }
        m.cp = &cp;
    }
    m.recompute = c.tc.recompute != 0; /* the plan below sizes what the trainer will use */
    m.distill = c.tc.distill != 0;
    double step_flops = ksa_model_step_flops(&m, (size_t)c.tc.global_batch, (size_t)c.tc.seq_len);
    double need = print_plan(&c, &m, n_ranks, step_flops);
    if (refuse_what_cannot_fit(need) != KSA_OK) {
        ksa_cp_free(&cp);
        ksa_model_free(&m);
        return ksa_cli_error("train", 2);
    }
    if (c.dry_run) {
        rc = check_data(&c.tc, m.V);
    } else {
        ksa_params_alloc(&m.params); /* after the plan, which measures the program without it */
        rc = run(&c, &m, step_flops);
    }
    ksa_cp_free(&cp);
    ksa_model_free(&m);
    return rc;
}
