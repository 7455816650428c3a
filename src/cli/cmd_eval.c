/* cmd_eval.c - `ksa eval --ckpt F.h5|DIR --data tokens.bin --seq-len L [--batch B] [--offset O]
 * [--by-position] [--progress S] [--json] [--grads-out G.h5]`, or
 * `ksa eval --ckpt F --task NAME --len L [--depths 0,25,...] [--n N] [--seed S] [--filler F]
 * [--batch B] [--json]`: accuracy on a retrieval task (train/task_eval.h, greedy decoding
 * with the KV cache, batched), overall and per depth. Otherwise: the mean next-token loss over
 * B rows in sequential mode (row b = tokens O+b·L ... O+b·L+L inclusive, all B·L targets
 * counted), and optionally the gradient of that mean loss for every parameter (/grads/<name>
 * of an HDF5 file) and the mean loss per bucket of target positions ([0,1), [1,2), [2,4), ...).
 * Without --batch: every full row of the whole file (row b = tokens b·L ... b·L+L, n_rows =
 * floor((N-1)/L), read with ksa_val_reader), with perplexity and bits per byte as well.
 * Rows are processed one at a time (memory of one row); gradients accumulate. A folder as
 * --ckpt means its newest checkpoint.                                                       */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_tok.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "data/loader.h"
#include "dist/context.h"
#include "dist/dist.h"
#include "data/tok.h"
#include "data/tokenizer.h"
#include "data/tokfile.h"
#include "model/decoder.h"
#include "model/layout.h"
#include "train/eval.h"
#include "train/run_dir.h"
#include "train/task_eval.h"
#include "train/trainer.h"
#include "train/train_config.h"
#include "data/taskset.h"

static const char whole_file_help[] =
    "Without --batch, every full row of the file is evaluated (row b = tokens b*L ... b*L+L,\n"
    "floor((N-1)/L) rows of a file of N tokens; the at most L-1 tokens after the last row are\n"
    "never targets), and three numbers are printed:\n"
    "  loss           mean next-token cross-entropy (nats) over all targets\n"
    "  perplexity     exp(loss)\n"
    "  bits per byte  (sum of the target losses in nats) / ln 2 / (target bytes), the bytes\n"
    "                 of the targets' text: one per target id < 256 with the byte tokenizer,\n"
    "                 each token's UTF-8 bytes with a BPE tokenizer (the data's\n"
    "                 .tokenizer.json); end-of-text and special tokens count in the loss but\n"
    "                 have no bytes. Data of another tokenizer than the model's is refused.\n"
    "--by-position adds the mean loss per bucket of target positions in the row (target t,\n"
    "0-based, is token t+1 predicted from tokens 0..t): [0,1), [1,2), [2,4), [4,8), ..., the\n"
    "last ending at L; with the whole file also bits per byte per bucket.\n";

/* The whole-file summary. loss: mean over the n_rows*L targets; n_bytes of them are bytes.
 * JSON: the object is left open (the caller may add "by_position" and closes it). */
static void print_whole_file(double loss, size_t n_rows, size_t L, size_t n_bytes, const char *path,
                             int json, double seconds, const char *grads_out)
{
    size_t n = n_rows * L;
    double ppl = exp(loss), bpb = loss * (double)n / log(2.0) / (double)n_bytes;
    if (json) {
        printf("{\"loss\": %.17g, \"tokens\": %zu, \"perplexity\": %.17g, ", loss, n, ppl);
        if (n_bytes)
            printf("\"bits_per_byte\": %.17g", bpb);
        else /* no byte among the targets: undefined (JSON has no NaN) */
            printf("\"bits_per_byte\": null");
        return;
    }
    printf("loss %.6f, perplexity %.4f, ", loss, ppl);
    if (n_bytes)
        printf("bits per byte %.6f", bpb);
    else
        printf("bits per byte undefined (no byte among the targets)");
    printf(" over %zu tokens (%zu target bytes; the whole of %s: %zu rows of %zu), %.2f s%s%s\n", n,
           n_bytes, path, n_rows, L, seconds, grads_out ? ", gradients written to " : "",
           grads_out ? grads_out : "");
}

/* Bits per byte of a bucket: its summed loss in bits over its byte targets (< 0: none). */
/* Annealing: the coefficient the checkpoint's model runs with (ksa_run_checkpoint_mix). */
static void print_summary_mix(FILE *f, const ksa_model *m, long step)
{
    if (step < 0)
        fprintf(f, "# summary mix %.4f (no /train: step 0 of the annealing)\n", m->summary_mix);
    else
        fprintf(f, "# summary mix %.4f (the annealing coefficient of step %ld)\n", m->summary_mix,
                step);
}

static double bucket_bits_per_byte(const ksa_eval_bucket *b)
{
    return b->n_bytes ? b->loss * (double)b->targets / log(2.0) / (double)b->n_bytes : -1;
}

/* The position buckets: a table after the overall line, or a "by_position" member of the
 * open JSON object. with_bpb: bits per byte too (the whole-file mode). */
static void print_by_position(const ksa_eval_result *r, int json, int with_bpb)
{
    if (json) {
        printf(", \"by_position\": [");
        for (size_t k = 0; k < r->n_buckets; k++) {
            const ksa_eval_bucket *b = &r->bucket[k];
            printf("%s{\"from\": %zu, \"to\": %zu, \"targets\": %zu, \"loss\": %.17g",
                   k ? ", " : "", b->from, b->to, b->targets, b->loss);
            if (with_bpb && b->n_bytes)
                printf(", \"bits_per_byte\": %.17g", bucket_bits_per_byte(b));
            else if (with_bpb)
                printf(", \"bits_per_byte\": null");
            printf("}");
        }
        printf("]");
        return;
    }
    printf("by target position in the row:\n%-24s %12s %10s%s\n", "positions", "targets", "loss",
           with_bpb ? "  bits per byte" : "");
    for (size_t k = 0; k < r->n_buckets; k++) {
        const ksa_eval_bucket *b = &r->bucket[k];
        char range[64];
        snprintf(range, sizeof range, "[%zu, %zu)", b->from, b->to);
        printf("%-24s %12zu %10.6f", range, b->targets, b->loss);
        if (with_bpb && b->n_bytes)
            printf("  %13.6f", bucket_bits_per_byte(b));
        else if (with_bpb)
            printf("  %13s", "-");
        printf("\n");
    }
}

static int eval_main(int argc, char **argv);

/* Under mpirun the rows are split over the ranks (row b on rank b mod N): same result. */
int ksa_cmd_eval(int argc, char **argv)
{
    return ksa_cli_run_on_ranks("eval", eval_main, argc, argv, 0);
}

typedef struct {
    const char *ckpt, *data, *grads_out, *dtype_name;
    long seq_len, batch, offset, threads; /* batch, offset -1: not given */
    long context_parallel;                /* ranks per context group (1: none) */
    double progress;                      /* seconds between progress lines, 0: none */
    int json, help, by_position;
    ksa_dtype dtype;
    /* --task mode */
    const char *task, *depths, *filler;
    long len, n, seed;
} eval_options;

static const char task_help[] =
    "With --task, the accuracy on a retrieval task (docs/evaluation.md): the examples of\n"
    "`ksa task --task NAME --len L --n N --depths D --seed S --filler F` (example i at depth\n"
    "i mod the list's length), each prompt decoded greedily with the KV cache, --batch of\n"
    "them together (default 8); an example is correct when the first answer-length tokens\n"
    "are exactly the answer. Prints the accuracy per depth and overall (--json: one object\n"
    "{\"task\", \"len\", \"n\", \"correct\", \"accuracy\", \"by_depth\": [...], ...}).\n"
    "Use a --seed that differs from the one of the training examples.\n";

/* Parses argv into o; returns 0, or the exit code after printing the error. */
static int parse_eval_args(int argc, char **argv, eval_options *o)
{
    *o = (eval_options){.batch = -1,
                        .offset = -1,
                        .context_parallel = 1,
                        .progress = 10,
                        .dtype = KSA_DTYPE_AUTO,
                        .len = -1,
                        .n = -1,
                        .seed = 1000,
                        .filler = KSA_TASKSET_DEFAULT_FILLER};
    const ksa_arg args[] = {
        {"ckpt", KSA_ARG_STRING, &o->ckpt, NULL, 0,
         "checkpoint to evaluate, or a run folder: its newest step_*.h5 (required)"},
        {"data", KSA_ARG_STRING, &o->data, NULL, 0, "token file (required)"},
        {"seq_len", KSA_ARG_LONG, &o->seq_len, NULL, 0, "text tokens per row (required)"},
        {"batch", KSA_ARG_LONG, &o->batch, NULL, 0,
         "rows (default: every full row of the whole file, see below)"},
        {"offset", KSA_ARG_LONG, &o->offset, NULL, 0,
         "first token of row 0 (default 0; only with --batch)"},
        {"dtype", KSA_ARG_STRING, &o->dtype_name, NULL, 0,
         "uint16|uint32 for a headerless file without .meta"},
        {"grads_out", KSA_ARG_STRING, &o->grads_out, NULL, 0, "write d(mean loss)/d(param) here"},
        {"by_position", KSA_ARG_FLAG, &o->by_position, NULL, 0,
         "also the mean loss per bucket of target positions [0,1), [1,2), [2,4), ..."},
        {"progress", KSA_ARG_DOUBLE, &o->progress, NULL, 0,
         "seconds between progress lines on stderr (default 10; 0: none)"},
        {"task", KSA_ARG_STRING, &o->task, NULL, 0,
         "a retrieval task: passkey, niah-multikey, niah-multivalue, vartrack (see below)"},
        {"len", KSA_ARG_LONG, &o->len, NULL, 0, "--task: tokens per example (required)"},
        {"depths", KSA_ARG_STRING, &o->depths, NULL, 0,
         "--task: needle depths in percent, cycled (default 0,25,50,75,100)"},
        {"n", KSA_ARG_LONG, &o->n, NULL, 0, "--task: examples (default 10 per depth)"},
        {"seed", KSA_ARG_LONG, &o->seed, NULL, 0, "--task: seed of the examples (default 1000)"},
        {"filler", KSA_ARG_STRING, &o->filler, NULL, 0,
         "--task: a UTF-8 text file, or noise (default " KSA_TASKSET_DEFAULT_FILLER ")"},
        {"json", KSA_ARG_FLAG, &o->json, NULL, 0,
         "print {\"loss\": ..., \"tokens\": ...} (whole file: also perplexity, bits_per_byte; "
         "--by-position: by_position)"},
        {"threads", KSA_ARG_LONG, &o->threads, NULL, 0, "threads (default: OMP_NUM_THREADS)"},
        {"context_parallel", KSA_ARG_LONG, &o->context_parallel, NULL, 0,
         "ranks per context group: each row split into this many blocks over the ranks of a "
         "group (docs/mpi.md; default 1)"},
        {"help", KSA_ARG_FLAG, &o->help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK)
        return ksa_cli_error("eval", 2);
    if (o->help) {
        ksa_args_usage(stdout, "eval", args, n_args, 0);
        fputs(whole_file_help, stdout);
        fputs(task_help, stdout);
        return 0;
    }
    if (o->task) {
        if (!o->ckpt || o->len < 1)
            return ksa_cli_errorf("eval", 2, "--task needs --ckpt and --len (>= 1)");
        if (o->data || o->seq_len || o->offset >= 0 || o->grads_out || o->by_position ||
            o->context_parallel != 1)
            return ksa_cli_errorf("eval", 2,
                                  "--task evaluates generated examples: --data, --seq-len, "
                                  "--offset, --grads-out, --by-position and --context-parallel "
                                  "do not apply");
        if (o->n == 0 || o->n < -1 || o->batch == 0 || o->batch < -1)
            return ksa_cli_errorf("eval", 2, "--n and --batch must be at least 1");
        if (o->seed < 0)
            return ksa_cli_errorf("eval", 2, "--seed must be >= 0, got %ld", o->seed);
        if (!(o->progress >= 0))
            return ksa_cli_errorf("eval", 2, "--progress must be >= 0 seconds (0: none), got %g",
                                  o->progress);
        return 0;
    }
    if (o->len >= 0 || o->depths || o->n >= 0)
        return ksa_cli_errorf("eval", 2, "--len, --depths and --n belong to --task");
    if (!o->ckpt || !o->data || o->seq_len < 1 || o->batch == 0)
        return ksa_cli_errorf("eval", 2,
                              "--ckpt, --data and --seq-len (>= 1) are required; "
                              "--batch must be at least 1");
    if (o->batch < 0 && o->offset >= 0)
        return ksa_cli_errorf("eval", 2,
                              "--offset needs --batch (without --batch the whole file is "
                              "evaluated from token 0)");
    if (!(o->progress >= 0))
        return ksa_cli_errorf("eval", 2, "--progress must be >= 0 seconds (0: none), got %g",
                              o->progress);
    if (o->offset < 0)
        o->offset = 0;
    if (o->dtype_name && ksa_tokfile_parse_dtype(o->dtype_name, &o->dtype) != KSA_OK)
        return ksa_cli_errorf("eval", 2, "--dtype: %s", ksa_last_error());
    return 0;
}

/* `ksa eval --task`: one process (the examples are few; decoding is not split over ranks). */
static int task_main(const eval_options *o)
{
    if (ksa_dist_size() > 1)
        return ksa_cli_errorf("eval", 2, "--task runs as one process, not under mpirun");
    ksa_task_kind task;
    if (ksa_task_parse(o->task, &task) != KSA_OK)
        return ksa_cli_error("eval", 2);
    double default_depths[] = {0, 25, 50, 75, 100}, *depths = default_depths;
    size_t n_depths = 5;
    if (o->depths && ksa_task_parse_depths(o->depths, &depths, &n_depths) != KSA_OK)
        return ksa_cli_error("eval", 2);
    int rc = 1, have_model = 0, have_filler = 0;
    double t0 = ksa_now();
    char ckpt[KSA_PATH_STR + 32];
    ksa_tok *tok = NULL;
    ksa_model_config cfg;
    ksa_model m;
    ksa_task_filler filler;
    ksa_task_eval_result r = {0};
    FILE *info = o->json ? stderr : stdout;
    if (ksa_run_newest_checkpoint(o->ckpt, ckpt, sizeof ckpt) != KSA_OK)
        goto fail;
    if (strcmp(ckpt, o->ckpt) != 0)
        fprintf(info, "# checkpoint %s (the newest in %s)\n", ckpt, o->ckpt);
    /* the model's tokenizer (its /tokenizer: bytes, or a BPE tokenizer.json it holds) spells
     * the examples; one of another kind, or an unknown one, is refused */
    if (ksa_ckpt_read_config(ckpt, &cfg) != KSA_OK || ksa_model_init(&m, &cfg) != KSA_OK)
        goto fail;
    have_model = 1;
    long mix_step;
    if (ksa_ckpt_open_tok(&tok, ckpt, m.V) != KSA_OK ||
        ksa_ckpt_read_params(ckpt, &m.params, 0) != KSA_OK ||
        ksa_run_checkpoint_mix(ckpt, &m, &mix_step) != KSA_OK ||
        ksa_task_filler_open(&filler, o->filler) != KSA_OK)
        goto fail;
    have_filler = 1;
    ksa_model_layout_print(&m.layout, info);
    if (m.layout.mix_qkv)
        print_summary_mix(info, &m, mix_step);
    if (ksa_tok_bpe(tok))
        fprintf(info, "# tokenizer %s (vocabulary %zu, end-of-text %d), from the checkpoint\n",
                ksa_tok_name(tok), ksa_tok_vocab_size(tok), (int)ksa_tok_eot(tok));
    ksa_task_eval_options eo = {.task = task,
                                .len = (size_t)o->len,
                                .n = o->n > 0 ? (size_t)o->n : 10 * n_depths,
                                .depths = depths,
                                .n_depths = n_depths,
                                .seed = (uint64_t)o->seed,
                                .filler = &filler,
                                .tok = tok,
                                .batch = o->batch > 0 ? (size_t)o->batch : 8,
                                .progress_seconds = o->progress};
    if (ksa_task_eval(&m, &eo, &r) != KSA_OK)
        goto fail;
    double seconds = ksa_now() - t0, acc = (double)r.correct / (double)r.n;
    double decode_tps = r.decode_seconds > 0 ? (double)r.decode_tokens / r.decode_seconds : 0;
    size_t per_batch = eo.batch < eo.n ? eo.batch : eo.n; /* sequences of the measured cache */
    if (o->json) {
        printf("{\"task\": \"%s\", \"len\": %ld, \"n\": %zu, \"correct\": %zu, "
               "\"accuracy\": %.17g, \"by_depth\": [",
               ksa_task_name(task), o->len, r.n, r.correct, acc);
        for (size_t d = 0; d < r.n_depths; d++) {
            const ksa_task_depth_result *dr = &r.by_depth[d];
            printf("%s{\"depth\": %.17g, \"n\": %zu, \"correct\": %zu, \"accuracy\": %.17g}",
                   d ? ", " : "", dr->depth, dr->n, dr->correct,
                   dr->n ? (double)dr->correct / (double)dr->n : 0.0);
        }
        printf("], \"seed\": %ld, \"prefill_seconds\": %.17g, \"decode_tokens_per_s\": %.17g, "
               "\"kv_cache_bytes_per_sequence\": %zu, \"causal_cache_bytes_per_sequence\": %zu, "
               "\"seconds\": %.17g}\n",
               o->seed, r.prefill_seconds, decode_tps, r.cache.live_bytes / per_batch,
               r.cache.causal_bytes / per_batch, seconds);
    } else {
        printf("%s, %ld tokens per example, seed %ld:\n%-10s %6s %8s %9s\n", ksa_task_name(task),
               o->len, o->seed, "depth", "n", "correct", "accuracy");
        for (size_t d = 0; d < r.n_depths; d++) {
            const ksa_task_depth_result *dr = &r.by_depth[d];
            printf("%-10g %6zu %8zu %9.3f\n", dr->depth, dr->n, dr->correct,
                   dr->n ? (double)dr->correct / (double)dr->n : 0.0);
        }
        printf("%-10s %6zu %8zu %9.3f\n", "all", r.n, r.correct, acc);
        if (r.first_wrong < r.n)
            printf("first wrong: example %zu, the model wrote \"%s\"\n", r.first_wrong,
                   r.first_wrong_output);
        printf("prefill %.2f s for %zu prompt tokens, decode %.0f tokens/s, KV cache %.2f MB "
               "per sequence (causal: %.2f MB), %.2f s\n",
               r.prefill_seconds, r.prompt_tokens, decode_tps,
               (double)(r.cache.live_bytes / per_batch) / 1e6,
               (double)(r.cache.causal_bytes / per_batch) / 1e6, seconds);
    }
    rc = 0;
    goto done;
fail:
    ksa_cli_error("eval", 1);
done:
    ksa_task_eval_result_free(&r);
    if (have_filler)
        ksa_task_filler_free(&filler);
    if (have_model)
        ksa_model_free(&m);
    ksa_tok_close(tok);
    if (depths != default_depths)
        ksa_free(depths);
    return rc;
}

/* The data's tokenizer (data_name, as its token file names it; *tok: its BPE tokenizer,
 * NULL for bytes or unknown) must be the model's: a trained checkpoint's /tokenizer, or an
 * imported model's BPE tokenizer. */
static ksa_status check_data_tokenizer(const char *ckpt, const char *data, const char *data_name,
                                       size_t V, ksa_tok **tok)
{
    *tok = NULL;
    char model_name[64];
    KSA_TRY(ksa_tok_open_data(tok, data, V));
    ksa_status st = ksa_ckpt_read_tokenizer(ckpt, model_name, sizeof model_name);
    int has_train = 0;
    if (st == KSA_OK)
        st = ksa_ckpt_has(ckpt, "/train", &has_train);
    int known = strcmp(model_name, "unknown") != 0 && strcmp(data_name, "unknown") != 0;
    if (st == KSA_OK && known && (has_train || !strncmp(model_name, "bpe-", 4)) &&
        strcmp(model_name, data_name) != 0)
        st = ksa_fail(KSA_EINVAL,
                      "checkpoint '%s': its model reads ids of the tokenizer '%s', but the data "
                      "'%s' was made by '%s': the same ids stand for other text",
                      ckpt, model_name, data, data_name);
    if (st != KSA_OK) {
        ksa_tok_close(*tok);
        *tok = NULL;
    }
    return st;
}

static int eval_main(int argc, char **argv)
{
    eval_options o;
    int rc = parse_eval_args(argc, argv, &o);
    if (rc != 0 || o.help)
        return rc;
    if (o.task) {
        if (o.threads > 0)
            ksa_threads_set((int)o.threads);
        return task_main(&o);
    }
    if (o.threads > 0)
        ksa_threads_set((int)o.threads);
    double t0 = ksa_now();
    char ckpt[KSA_PATH_STR + 32];
    if (ksa_run_newest_checkpoint(o.ckpt, ckpt, sizeof ckpt) != KSA_OK)
        return ksa_cli_error("eval", 1);
    FILE *info = o.json ? stderr : stdout; /* JSON mode: stdout is one line */
    int rank0 = ksa_dist_rank() == 0;
    if (rank0 && strcmp(ckpt, o.ckpt) != 0)
        fprintf(info, "# checkpoint %s (the newest in %s)\n", ckpt, o.ckpt);
    ksa_model_config cfg;
    ksa_model m;
    if (ksa_ckpt_read_config(ckpt, &cfg) != KSA_OK)
        return ksa_cli_error("eval", 1);
    if (o.seq_len > cfg.max_position_embeddings) /* as the reference implementation refuses */
        return ksa_cli_errorf("eval", 2,
                              "--seq-len %ld exceeds max_position_embeddings = %ld of %s (the "
                              "longest position the model is meant for)",
                              o.seq_len, cfg.max_position_embeddings, ckpt);
    if (ksa_model_init(&m, &cfg) != KSA_OK)
        return ksa_cli_error("eval", 1);
    ksa_cp cp = {0}; /* the context-parallel grid (collective), every rank checked the same */
    if (o.context_parallel != 1) {
        size_t unit = ksa_layout_block_unit(&m.layout); /* ksa_cp_init checks the grid */
        if (ksa_cp_check_messages((size_t)o.seq_len, unit, m.layout.S, 1, m.Hkv * m.dh) != KSA_OK ||
            ksa_cp_init(&cp, (int)o.context_parallel, (size_t)o.seq_len, unit) != KSA_OK) {
            ksa_model_free(&m);
            return ksa_cli_error("eval", 2);
        }
        m.cp = &cp;
    }
    if (rank0)
        ksa_model_layout_print(&m.layout, info);
    ksa_eval_rows rows = {0};
    ksa_eval_result res;
    ksa_eval_options eo = {
        .grads = o.grads_out != NULL, .by_position = o.by_position, .progress_seconds = o.progress};
    ksa_tok *data_tok = NULL;
    uint32_t *text_bytes = NULL;
    rc = 1;
    long mix_step;
    if (ksa_ckpt_read_params(ckpt, &m.params, 0) != KSA_OK ||
        ksa_run_checkpoint_mix(ckpt, &m, &mix_step) != KSA_OK ||
        ksa_eval_rows_open(&rows, o.data, o.dtype, m.V, (size_t)o.seq_len, o.batch,
                           (size_t)o.offset) != KSA_OK ||
        check_data_tokenizer(ckpt, o.data, rows.whole ? rows.vr.file.tokenizer : rows.tf.tokenizer,
                             m.V, &data_tok) != KSA_OK) {
        ksa_cli_error("eval", 1);
        goto done;
    }
    if (data_tok) { /* bits per byte counts the bytes of each target's text */
        text_bytes = ksa_alloc(m.V * sizeof *text_bytes);
        ksa_tok_text_bytes(data_tok, text_bytes, m.V);
        eo.text_bytes = text_bytes;
    }
    if (rank0 && m.layout.mix_qkv)
        print_summary_mix(info, &m, mix_step);
    if (ksa_eval_loss(&m, &rows, &eo, &res) != KSA_OK ||
        (o.grads_out && ksa_ckpt_write_grads(o.grads_out, &m.params) != KSA_OK)) {
        ksa_cli_error("eval", 1);
        goto done;
    }
    size_t B = rows.B, L = rows.L;
    if (rows.whole)
        print_whole_file(res.loss, B, L, res.n_bytes, o.data, o.json, ksa_now() - t0, o.grads_out);
    else if (o.json)
        printf("{\"loss\": %.17g, \"tokens\": %zu", res.loss, B * L);
    else
        printf("loss %.6f over %zu tokens (%zu rows of %zu from token %ld of %s), %.2f s%s%s\n",
               res.loss, B * L, B, L, o.offset, o.data, ksa_now() - t0,
               o.grads_out ? ", gradients written to " : "", o.grads_out ? o.grads_out : "");
    if (o.by_position)
        print_by_position(&res, o.json, rows.whole);
    if (o.json)
        printf("}\n");
    rc = 0;
done:
    ksa_eval_rows_close(&rows);
    ksa_cp_free(&cp);
    ksa_model_free(&m);
    ksa_tok_close(data_tok);
    ksa_free(text_bytes);
    return rc;
}
