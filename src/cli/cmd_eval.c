/* cmd_eval.c - `ksa eval --ckpt F.h5 --data tokens.bin --seq-len L [--batch B] [--offset O]
 * [--json] [--grads-out G.h5]`: the mean next-token loss over B rows in sequential mode
 * (row b = tokens O+b·L ... O+b·L+L inclusive, all B·L targets counted), and optionally the
 * gradient of that mean loss for every parameter (/grads/<name> of an HDF5 file).
 * Without --batch: every full row of the whole file (row b = tokens b·L ... b·L+L, n_rows =
 * floor((N-1)/L), read with ksa_val_reader), with perplexity and bits per byte as well.
 * Rows are processed one at a time (memory of one row); gradients accumulate.         */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "data/loader.h"
#include "dist/dist.h"
#include "data/tokenizer.h"
#include "data/tokfile.h"
#include "model/decoder.h"

static const char whole_file_help[] =
    "Without --batch, every full row of the file is evaluated (row b = tokens b*L ... b*L+L,\n"
    "floor((N-1)/L) rows of a file of N tokens; the at most L-1 tokens after the last row are\n"
    "never targets), and three numbers are printed:\n"
    "  loss           mean next-token cross-entropy (nats) over all targets\n"
    "  perplexity     exp(loss)\n"
    "  bits per byte  (sum of the target losses in nats) / ln 2 / (target bytes), where a\n"
    "                 target byte is a target id < 256 (the byte tokenizer: one token per\n"
    "                 byte); end-of-text targets count in the loss but are not bytes\n";

/* The whole-file summary. loss: mean over the n_rows*L targets; n_bytes of them are bytes. */
static void print_whole_file(double loss, size_t n_rows, size_t L, size_t n_bytes, const char *path,
                             int json, double seconds, const char *grads_out)
{
    size_t n = n_rows * L;
    double ppl = exp(loss), bpb = loss * (double)n / log(2.0) / (double)n_bytes;
    if (json) {
        printf("{\"loss\": %.17g, \"tokens\": %zu, \"perplexity\": %.17g, ", loss, n, ppl);
        if (n_bytes)
            printf("\"bits_per_byte\": %.17g}\n", bpb);
        else /* no byte among the targets: undefined (JSON has no NaN) */
            printf("\"bits_per_byte\": null}\n");
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

static int eval_main(int argc, char **argv);

/* Under mpirun the rows are split over the ranks (row b on rank b mod N): same result. */
int ksa_cmd_eval(int argc, char **argv)
{
    if (ksa_dist_init(&argc, &argv) != KSA_OK) {
        fprintf(stderr, "ksa eval: %s\n", ksa_last_error());
        return 1;
    }
    if (ksa_dist_rank() != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "[rank %d] cannot silence stdout\n", ksa_dist_rank());
    int rc = eval_main(argc, argv);
    fflush(stdout);
    ksa_dist_finalize();
    return rc;
}

static int eval_main(int argc, char **argv)
{
    const char *ckpt = NULL, *data = NULL, *grads_out = NULL, *dtype_name = NULL;
    long seq_len = 0, batch = -1, offset = -1, threads = 0; /* -1: not given */
    int json = 0, help = 0;
    const ksa_arg args[] = {
        {"ckpt", KSA_ARG_STRING, &ckpt, NULL, 0, "checkpoint to evaluate (required)"},
        {"data", KSA_ARG_STRING, &data, NULL, 0, "token file (required)"},
        {"seq_len", KSA_ARG_LONG, &seq_len, NULL, 0, "text tokens per row (required)"},
        {"batch", KSA_ARG_LONG, &batch, NULL, 0,
         "rows (default: every full row of the whole file, see below)"},
        {"offset", KSA_ARG_LONG, &offset, NULL, 0,
         "first token of row 0 (default 0; only with --batch)"},
        {"dtype", KSA_ARG_STRING, &dtype_name, NULL, 0,
         "uint16|uint32 for a headerless file without .meta"},
        {"grads_out", KSA_ARG_STRING, &grads_out, NULL, 0, "write d(mean loss)/d(param) here"},
        {"json", KSA_ARG_FLAG, &json, NULL, 0,
         "print {\"loss\": ..., \"tokens\": ...} (whole file: also perplexity, bits_per_byte)"},
        {"threads", KSA_ARG_LONG, &threads, NULL, 0, "threads (default: OMP_NUM_THREADS)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK) {
        fprintf(stderr, "ksa eval: %s\n", ksa_last_error());
        return 2;
    }
    if (help) {
        ksa_args_usage(stdout, "eval", args, n_args);
        fputs(whole_file_help, stdout);
        return 0;
    }
    if (!ckpt || !data || seq_len < 1 || batch == 0) {
        fprintf(stderr, "ksa eval: --ckpt, --data and --seq-len (>= 1) are required; "
                        "--batch must be at least 1\n");
        return 2;
    }
    int whole = batch < 0;
    if (whole && offset >= 0) {
        fprintf(stderr, "ksa eval: --offset needs --batch (without --batch the whole file is "
                        "evaluated from token 0)\n");
        return 2;
    }
    if (offset < 0)
        offset = 0;
    if (threads > 0)
        ksa_threads_set((int)threads);
    ksa_dtype dtype = KSA_DTYPE_AUTO;
    if (dtype_name && ksa_tokfile_parse_dtype(dtype_name, &dtype) != KSA_OK) {
        fprintf(stderr, "ksa eval: --dtype: %s\n", ksa_last_error());
        return 2;
    }

    double t0 = ksa_now();
    ksa_model_config cfg;
    ksa_model m;
    ksa_tokfile tf;
    ksa_val_reader vr;
    int have_model = 0, have_file = 0, have_reader = 0, rc = 1;
    int32_t *tokens = NULL;
    ksa_arena arena = {0};
    ksa_tape tp = {0};
    size_t L = (size_t)seq_len, B = whole ? 0 : (size_t)batch;
    if (ksa_ckpt_read_config(ckpt, &cfg) != KSA_OK || ksa_model_init(&m, &cfg) != KSA_OK)
        goto fail;
    have_model = 1;
    if (ksa_dist_rank() == 0) /* JSON mode: stdout is one line */
        ksa_model_layout_print(&m.layout, json ? stderr : stdout);
    if (ksa_ckpt_read_params(ckpt, &m.params, 0) != KSA_OK)
        goto fail;
    if (whole) { /* one row at a time from the validation reader */
        if (ksa_val_reader_open(&vr, data, dtype, m.V, L, 1) != KSA_OK)
            goto fail;
        have_reader = 1;
        B = vr.n_rows;
        tokens = ksa_alloc((L + 1) * sizeof *tokens);
    } else {
        if (ksa_tokfile_open(&tf, data, dtype, m.V) != KSA_OK)
            goto fail;
        have_file = 1;
        tokens = ksa_alloc(B * (L + 1) * sizeof *tokens);
        if (ksa_loader_read_sequential(&tf, tokens, (size_t)offset, B, L) != KSA_OK)
            goto fail;
    }

    ksa_arena_init(&arena, ksa_model_arena_bytes(&m, 1, L));
    ksa_tape_init(&tp, &arena, ksa_model_tape_nodes(&m));
    tp.recording = grads_out != NULL;
    ksa_params_zero_grad(&m.params);
    double total = 0;
    size_t n_bytes = 0; /* targets that are bytes (ids < 256; end-of-text is not one) */
    int rank = ksa_dist_rank(), n_ranks = ksa_dist_size();
    for (size_t b = 0; b < B; b++) {
        const int32_t *row = tokens + (whole ? 0 : b * (L + 1));
        if (whole) {
            size_t got = ksa_val_reader_next(&vr, tokens);
            KSA_ASSERT(got == 1, "row %zu of the %zu of '%s'", b, B, data);
        }
        if (b % (size_t)n_ranks != (size_t)rank) /* under MPI, row b is rank b mod N's */
            continue;
        for (size_t t = 1; t <= L; t++)
            n_bytes += row[t] < KSA_TOKENIZER_EOT;
        ksa_tape_reset(&tp);
        double part;
        ksa_tensor *loss = ksa_model_forward(&m, &tp, row, 1, L, (double)(B * L), &part, NULL);
        if (grads_out)
            ksa_tape_backward(&tp, loss);
        total += part;
    }
    double sums[2] = {total, (double)n_bytes};
    if (ksa_dist_sum(sums, 2) != KSA_OK)
        goto fail;
    total = sums[0];
    n_bytes = (size_t)sums[1];
    if (grads_out && (ksa_dist_sum_reals(m.params.grad, m.params.numel) != KSA_OK ||
                      ksa_ckpt_write_grads(grads_out, &m.params) != KSA_OK))
        goto fail;
    if (whole)
        print_whole_file(total, B, L, n_bytes, data, json, ksa_now() - t0, grads_out);
    else if (json)
        printf("{\"loss\": %.17g, \"tokens\": %zu}\n", total, B * L);
    else
        printf("loss %.6f over %zu tokens (%zu rows of %zu from token %ld of %s), %.2f s%s%s\n",
               total, B * L, B, L, offset, data, ksa_now() - t0,
               grads_out ? ", gradients written to " : "", grads_out ? grads_out : "");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "[rank %d] ksa eval: %s\n", ksa_dist_rank(), ksa_last_error());
done:
    if (tp.nodes)
        ksa_tape_free(&tp);
    if (arena.base)
        ksa_arena_free(&arena);
    ksa_free(tokens);
    if (have_file)
        ksa_tokfile_close(&tf);
    if (have_reader)
        ksa_val_reader_close(&vr);
    if (have_model)
        ksa_model_free(&m);
    return rc;
}
