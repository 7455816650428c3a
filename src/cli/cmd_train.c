/* cmd_train.c - `ksa train --config X [--key value ...] [--dry-run] [--sample N]`: prints
 * the resolved configuration, layer kinds, parameter count and memory plan, then trains:
 * one progress line per step (step/total, loss, lr, grad norm, tokens/s, MFU, elapsed,
 * ETA), validation loss every eval_every steps, a JSONL log with --log, and optionally a
 * sample of text from the trained model. MFU = ksa_model_step_flops / step time / peak,
 * the peak being peak_gflops or a measured sgemm (cached per thread count).            */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autograd/blas.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "model/decoder.h"
#include "model/sample.h"
#include "optim/trainer.h"

/* Peak GFLOP/s of this machine for `threads` threads: measured once (a 2048^3 sgemm) and
 * kept in $XDG_CACHE_HOME/ksa (or ~/.cache/ksa), so later runs start at once. */
static double machine_peak_gflops(int threads)
{
    char dir[1024] = "", path[1100] = "";
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0])
        snprintf(dir, sizeof dir, "%s/ksa", xdg);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.cache/ksa", home);
    if (dir[0]) {
        snprintf(path, sizeof path, "%s/sgemm_peak_%s_%dthreads", dir, KSA_REAL_NAME, threads);
        FILE *f = fopen(path, "r");
        double v = 0;
        if (f) {
            int ok = fscanf(f, "%lf", &v) == 1 && v > 0;
            fclose(f);
            if (ok)
                return v;
        }
    }
    double v = ksa_blas_measure_gflops(2048, 3);
    if (dir[0]) { /* best effort: a read-only home only costs the measurement next time */
        char parent[1024];
        snprintf(parent, sizeof parent, "%s", dir);
        char *slash = strrchr(parent, '/');
        if (slash) {
            *slash = '\0';
            mkdir(parent, 0755);
        }
        mkdir(dir, 0755);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%.6g\n", v);
            fclose(f);
        }
    }
    return v;
}

static void format_duration(char *buf, size_t cap, double seconds)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

int ksa_cmd_train(int argc, char **argv)
{
    ksa_model_config mc;
    ksa_train_config tc;
    ksa_model_config_defaults(&mc);
    ksa_train_config_defaults(&tc);
    int dry_run = 0, help = 0;
    long sample_tokens = 0;
    const char *prompt = "";
    const ksa_arg args[] = {
        {"dry_run", KSA_ARG_FLAG, &dry_run, NULL, 0, "print the plan and exit"},
        {"sample", KSA_ARG_LONG, &sample_tokens, NULL, 0, "after training, print N sampled tokens"},
        {"prompt", KSA_ARG_STRING, &prompt, NULL, 0, "the sample's prompt (default: empty)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    const char *config_path;
    if (ksa_args_parse_train(argc, argv, args, n_args, &mc, &tc, &config_path) != KSA_OK) {
        fprintf(stderr, "ksa train: %s\n", ksa_last_error());
        return 2;
    }
    if (help) {
        ksa_args_usage(stdout, "train", args, n_args);
        printf("configuration keys: see docs/configs.md and docs/training.md\n");
        return 0;
    }
    if (tc.threads > 0)
        ksa_threads_set((int)tc.threads);
    ksa_model m;
    if (ksa_model_init(&m, &mc) != KSA_OK || ksa_train_config_validate(&tc, 1) != KSA_OK) {
        fprintf(stderr, "ksa train: %s\n", ksa_last_error());
        return 2;
    }
    printf("# ksa train (%s build, %d threads), configuration %s\n", KSA_REAL_NAME,
           ksa_threads_get(), config_path ? config_path : "(built-in defaults)");
    ksa_model_config_write(&mc, stdout);
    ksa_train_config_write(&tc, stdout);
    printf("# layers\n");
    ksa_model_layout_print(&m.layout, stdout);
    printf("# parameters: %zu (%.3f M)\n", ksa_params_count(&m.params),
           (double)ksa_params_count(&m.params) / 1e6);
    ksa_print_memory_plan(&m, (size_t)tc.micro_batch, (size_t)tc.seq_len, stdout);
    double step_flops = ksa_model_step_flops(&m, (size_t)tc.global_batch, (size_t)tc.seq_len);
    printf("# model FLOPs per step: %.4g (6 x dense parameters x rows + 12 x head_dim x heads "
           "x visible pairs)\n",
           step_flops);
    if (dry_run) {
        ksa_model_free(&m);
        return 0;
    }

    int rc = 1;
    FILE *log = NULL;
    ksa_trainer t;
    ksa_model_init_weights(&m, (uint64_t)tc.seed);
    if (ksa_trainer_init(&t, &m, &tc) != KSA_OK) {
        fprintf(stderr, "ksa train: %s\n", ksa_last_error());
        ksa_model_free(&m);
        return 1;
    }
    ksa_loader_print(&t.loader, stdout);
    if (tc.log[0] && !(log = fopen(tc.log, "w"))) {
        fprintf(stderr, "ksa train: cannot open log '%s': %s\n", tc.log, strerror(errno));
        goto done;
    }
    double peak = tc.peak_gflops > 0 ? tc.peak_gflops : machine_peak_gflops(ksa_threads_get());
    printf("# MFU against a peak of %.1f GFLOP/s (%s)\n", peak,
           tc.peak_gflops > 0 ? "peak_gflops" : "measured sgemm");
    fflush(stdout);

    double t_start = ksa_now(), first5 = 0, last5[5] = {0};
    long n_first = 0;
    for (long s = 0; s < tc.steps; s++) {
        ksa_step_stats st;
        if (ksa_trainer_step(&t, &st) != KSA_OK) {
            fprintf(stderr, "ksa train: %s\n", ksa_last_error());
            goto done;
        }
        long step = t.step; /* 1-based number of the step just completed */
        if (n_first < 5)
            first5 += st.loss, n_first++;
        last5[(step - 1) % 5] = st.loss;
        double elapsed = ksa_now() - t_start;
        double tok_s = (double)st.tokens / st.seconds;
        double mfu = step_flops / st.seconds / (peak * 1e9);
        double eta = elapsed / (double)step * (double)(tc.steps - step);
        char el[32], et[32];
        format_duration(el, sizeof el, elapsed);
        format_duration(et, sizeof et, eta);
        int do_val = t.has_val && ((tc.eval_every > 0 && step % tc.eval_every == 0) ||
                                   step == tc.steps);
        double val_loss = 0;
        if (do_val && ksa_trainer_validate(&t, &val_loss) != KSA_OK) {
            fprintf(stderr, "ksa train: %s\n", ksa_last_error());
            goto done;
        }
        printf("step %*ld/%ld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | MFU "
               "%.1f%% | %s elapsed | ETA %s",
               (int)snprintf(NULL, 0, "%ld", tc.steps), step, tc.steps, st.loss, st.lr,
               st.grad_norm, tok_s, 100 * mfu, el, et);
        if (do_val)
            printf(" | val loss %.4f", val_loss);
        printf("\n");
        fflush(stdout);
        if (log) {
            fprintf(log,
                    "{\"step\": %ld, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                    "\"tokens_per_s\": %.9g, \"tokens\": %zu, \"mfu\": %.9g, \"elapsed\": %.9g",
                    step, st.loss, st.lr, st.grad_norm, tok_s, t.tokens_seen, mfu, elapsed);
            if (do_val)
                fprintf(log, ", \"val_loss\": %.9g", val_loss);
            fprintf(log, "}\n");
            fflush(log);
        }
    }
    if (tc.steps >= 10) {
        double l5 = 0;
        for (int i = 0; i < 5; i++)
            l5 += last5[i];
        printf("# mean loss of the first 5 steps %.4f, of the last 5 steps %.4f\n",
               first5 / 5, l5 / 5);
    }
    if (sample_tokens > 0) {
        printf("# sample (%ld tokens, temperature 0.8, top-k 40):\n", sample_tokens);
        fflush(stdout);
        if (ksa_sample_text(&m, prompt, (size_t)sample_tokens, 0.8, 40, (uint64_t)tc.seed,
                            stdout) != KSA_OK) {
            fprintf(stderr, "ksa train: %s\n", ksa_last_error());
            goto done;
        }
        printf("\n");
    }
    rc = 0;
done:
    if (log)
        fclose(log);
    ksa_trainer_free(&t);
    ksa_model_free(&m);
    return rc;
}
