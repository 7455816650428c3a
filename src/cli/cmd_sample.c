/* cmd_sample.c - `ksa sample --ckpt F.h5|DIR [--prompt TEXT | --prompt-file F]
 * [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--greedy]
 * [--json] [--threads N]`: text from a checkpoint, generated with the decoding KV cache
 * (model/sample.h: prefill the prompt once, then one decode step per token).
 *
 * Text mode streams: stdout gets the prompt, then each generated token's byte as soon as it
 * is chosen (flushed), and nothing else (end-of-text is never printed; generation stops
 * there); the statistics go to stderr, so `ksa sample ... > out.txt` holds the text alone.
 * --json: one JSON object on stdout at the end instead (ids, text, stop reason, statistics).
 * A folder as --ckpt means its newest checkpoint (named on stderr).                        */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "ckpt/ckpt_tok.h"
#include "data/path.h"
#include "data/tok.h"
#include "model/decoder.h"
#include "model/sample.h"
#include "train/run_dir.h"
#include "train/train_config.h"

/* ---- JSON --------------------------------------------------------------------------------- */
/* Length of the valid UTF-8 sequence starting at s[0..n) (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 if none starts there. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        lo = s[0] == 0xE0 ? 0xA0 : 0x80; /* overlong */
        hi = s[0] == 0xED ? 0x9F : 0xBF; /* surrogates */
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        lo = s[0] == 0xF0 ? 0x90 : 0x80; /* overlong */
        hi = s[0] == 0xF4 ? 0x8F : 0xBF; /* above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* s[0..n) as a JSON string: valid UTF-8 as it is; quote, backslash, control bytes (and DEL)
 * escaped; a byte that is not part of valid UTF-8 as \u00XX, the code point of its value. */
static void print_json_string(FILE *f, const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_sequence(s + i, n - i);
        if (len > 1) {
            fwrite(s + i, 1, len, f);
            i += len;
            continue;
        }
        unsigned char c = s[i++];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (len == 0 || c < 0x20 || c == 0x7F)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void print_json_ids(FILE *f, const char *name, const int32_t *ids, size_t n)
{
    fprintf(f, "\"%s\": [", name);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? ", " : "", (int)ids[i]);
    fputc(']', f);
}

static double per_second(size_t n, double seconds)
{
    return seconds > 0 ? (double)n / seconds : 0;
}

/* One object: prompt and generated ids and text, why generation stopped, the options and
 * the statistics of ksa_generate. */
static void print_json(FILE *f, const int32_t *prompt_ids, size_t n_prompt, const char *prompt,
                       size_t prompt_len, const ksa_generated *g, const ksa_generate_options *o,
                       const ksa_generate_stats *s, double seconds)
{
    fputc('{', f);
    print_json_ids(f, "prompt_ids", prompt_ids, n_prompt);
    fputs(", ", f);
    print_json_ids(f, "generated_ids", g->ids, g->n);
    fputs(", \"prompt\": ", f);
    print_json_string(f, prompt, prompt_len);
    size_t len = ksa_tok_decode(o->tok, NULL, 0, g->ids, g->n, 0);
    char *text = ksa_alloc(len + 1);
    ksa_tok_decode(o->tok, text, len, g->ids, g->n, 0);
    fputs(", \"text\": ", f);
    print_json_string(f, text, len);
    ksa_free(text);
    fprintf(f, ", \"stop_reason\": \"%s\", \"stop_id\": ", ksa_stop_reason_name(g->stop));
    if (g->stop == KSA_STOP_ID)
        fprintf(f, "%d", (int)g->stop_id);
    else
        fputs("null", f);
    fprintf(f,
            ", \"options\": {\"max_new_tokens\": %zu, \"temperature\": %.17g, \"top_k\": %zu, "
            "\"top_p\": %.17g, \"seed\": %llu}",
            o->max_new_tokens, o->temperature, o->top_k, o->top_p, (unsigned long long)o->seed);
    fprintf(f,
            ", \"stats\": {\"prompt_tokens\": %zu, \"generated_tokens\": %zu, "
            "\"prefill_seconds\": %.9g, \"decode_steps\": %zu, \"decode_tokens\": %zu, "
            "\"decode_seconds\": %.9g, \"decode_tokens_per_s\": %.9g, "
            "\"cache_allocated_bytes\": %zu, \"cache_live_bytes\": %zu, "
            "\"causal_cache_bytes\": %zu, \"max_position_embeddings\": %zu, \"seconds\": %.9g}",
            s->prompt_tokens, s->generated_tokens, s->prefill_seconds, s->decode_steps,
            s->decode_tokens, s->decode_seconds, per_second(s->decode_tokens, s->decode_seconds),
            s->memory.allocated_bytes, s->memory.live_bytes, s->memory.causal_bytes,
            s->max_positions, seconds);
    fputs("}\n", f);
}

/* Text mode: the statistics on stderr, after a newline (stdout ends where the sample ends). */
static void print_stats(FILE *f, const ksa_generated *g, const ksa_generate_options *o,
                        const ksa_generate_stats *s, double seconds)
{
    fprintf(f,
            "\nksa sample: at most %zu new tokens, temperature %g, top-k %zu, top-p %g, "
            "seed %llu: %zu generated, stop: %s",
            o->max_new_tokens, o->temperature, o->top_k, o->top_p, (unsigned long long)o->seed,
            g->n, ksa_stop_reason_name(g->stop));
    if (g->stop == KSA_STOP_ID)
        fprintf(f, " (id %d)", (int)g->stop_id);
    fprintf(f,
            "\nksa sample: prompt %zu tokens, prefill %.3f s; decode %zu tokens in %.3f s, "
            "%.1f tokens/s; %.2f s in all\n",
            s->prompt_tokens, s->prefill_seconds, s->decode_tokens, s->decode_seconds,
            per_second(s->decode_tokens, s->decode_seconds), seconds);
    fprintf(f,
            "ksa sample: KV cache %zu bytes allocated, %zu live; a causal cache would hold %zu "
            "bytes\n",
            s->memory.allocated_bytes, s->memory.live_bytes, s->memory.causal_bytes);
    if (g->stop == KSA_STOP_MAX_POSITION_EMBEDDINGS)
        fprintf(f,
                "ksa sample: stopped at max_position_embeddings = %zu tokens (prompt + "
                "generated), the model's context\n",
                s->max_positions);
}

int ksa_cmd_sample(int argc, char **argv)
{
    const char *ckpt = NULL, *prompt = NULL, *prompt_file = NULL;
    long n_tokens = 200, top_k = 40, seed = 42, threads = 0;
    double temperature = 0.8, top_p = 1.0;
    int help = 0, greedy = 0, json = 0;
    const ksa_arg args[] = {
        {"ckpt", KSA_ARG_STRING, &ckpt, NULL, 0,
         "checkpoint to sample from, or a run folder: its newest step_*.h5 (required)"},
        {"prompt", KSA_ARG_STRING, &prompt, NULL, 0,
         "text to continue (default: none, start of a document)"},
        {"prompt_file", KSA_ARG_STRING, &prompt_file, NULL, 0,
         "continue the bytes of this file instead (not with --prompt)"},
        {"max_new_tokens", KSA_ARG_LONG, &n_tokens, NULL, 0,
         "tokens to generate at most (default 200; end-of-text, or the model's "
         "max_position_embeddings, stops earlier)"},
        {"tokens", KSA_ARG_LONG, &n_tokens, NULL, 0, "the same as --max-new-tokens (an alias)"},
        {"temperature", KSA_ARG_DOUBLE, &temperature, NULL, 0,
         "softmax temperature (default 0.8; 0 = greedy)"},
        {"top_k", KSA_ARG_LONG, &top_k, NULL, 0,
         "sample among the K likeliest (default 40; 0 = all)"},
        {"top_p", KSA_ARG_DOUBLE, &top_p, NULL, 0,
         "then among the likeliest whose probability reaches P, in (0, 1] (default 1 = all)"},
        {"seed", KSA_ARG_LONG, &seed, NULL, 0, "random seed (default 42)"},
        {"greedy", KSA_ARG_FLAG, &greedy, NULL, 0,
         "always the likeliest token: temperature 0, whatever --temperature says"},
        {"json", KSA_ARG_FLAG, &json, NULL, 0,
         "print one JSON object at the end (ids, text, stop reason, statistics) instead of "
         "streaming the text"},
        {"threads", KSA_ARG_LONG, &threads, NULL, 0, "threads (default: OMP_NUM_THREADS)"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK)
        return ksa_cli_error("sample", 2);
    if (help) {
        ksa_args_usage(stdout, "sample", args, n_args, 0);
        return 0;
    }
    if (!ckpt)
        return ksa_cli_errorf("sample", 2, "--ckpt FILE|DIR is required");
    if (prompt && prompt_file)
        return ksa_cli_errorf("sample", 2, "give --prompt or --prompt-file, not both");
    if (!(temperature >= 0) || !isfinite(temperature))
        return ksa_cli_errorf(
            "sample", 2, "--temperature must be finite and >= 0 (0 = greedy), got %g", temperature);
    if (!(top_p > 0 && top_p <= 1))
        return ksa_cli_errorf("sample", 2, "--top-p must be in (0, 1] (1 = all), got %g", top_p);
    if (threads > 0)
        ksa_threads_set((int)threads);

    double t0 = ksa_now();
    char *file_text = NULL;
    size_t prompt_len = prompt ? strlen(prompt) : 0;
    if (prompt_file) {
        if (ksa_path_read_all(prompt_file, "prompt file", 0, &file_text, &prompt_len) != KSA_OK)
            return ksa_cli_error("sample", 1);
        prompt = file_text;
    }
    char path[KSA_PATH_STR + 32];
    ksa_model_config cfg;
    ksa_model m;
    int have_model = 0, rc = 1;
    int32_t *prompt_ids = NULL;
    ksa_tok *tok = NULL;
    ksa_generated gen = {.ids = NULL};
    if (ksa_run_newest_checkpoint(ckpt, path, sizeof path) != KSA_OK)
        goto fail;
    if (strcmp(path, ckpt) != 0) /* stderr: stdout holds the text alone */
        fprintf(stderr, "# checkpoint %s (the newest in %s)\n", path, ckpt);
    ckpt = path;
    if (ksa_ckpt_read_config(ckpt, &cfg) != KSA_OK)
        goto fail;
    if (ksa_ckpt_open_tok(&tok, ckpt, (size_t)cfg.vocab_size) != KSA_OK ||
        ksa_model_init(&m, &cfg) != KSA_OK)
        goto fail;
    have_model = 1;
    long mix_step; /* annealing: the coefficient of the checkpoint's last step */
    if (ksa_ckpt_read_params(ckpt, &m.params, 0) != KSA_OK ||
        ksa_run_checkpoint_mix(ckpt, &m, &mix_step) != KSA_OK)
        goto fail;

    ksa_generate_options o = ksa_generate_defaults();
    o.max_new_tokens = (size_t)n_tokens;
    o.temperature = greedy ? 0.0 : temperature;
    o.top_k = (size_t)top_k;
    o.top_p = top_p;
    o.seed = (uint64_t)seed;
    o.tok = tok;
    ksa_generate_stats stats;
    size_t max_pos = (size_t)m.config.max_position_embeddings; /* a sequence's most tokens */
    gen.ids =
        ksa_alloc((o.max_new_tokens < max_pos ? o.max_new_tokens + 1 : max_pos) * sizeof *gen.ids);
    errno = 0;
    if (json) {
        ksa_ids enc = {0};
        ksa_tok_encoder *e = ksa_tok_encoder_new(tok);
        ksa_status est = ksa_tok_encode(e, prompt, prompt_len, &enc);
        ksa_tok_encoder_free(e);
        prompt_ids = enc.v; /* ksa_alloc'ed: freed below */
        if (est != KSA_OK)
            goto fail;
        const int32_t *const prompts[1] = {prompt_ids};
        if (ksa_generate(&m, 1, prompts, &enc.n, &o, &gen, &stats) != KSA_OK)
            goto fail;
        print_json(stdout, prompt_ids, enc.n, prompt, prompt_len, &gen, &o, &stats, ksa_now() - t0);
    } else {
        if (ksa_sample_text(&m, prompt, prompt_len, &o, stdout, &gen, &stats) != KSA_OK)
            goto fail;
        print_stats(stderr, &gen, &o, &stats, ksa_now() - t0);
    }
    /* stdout is line-buffered: a failed write may have happened before this flush */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ksa_fail(KSA_EIO, "cannot write the output: %s", errno ? strerror(errno) : "write error");
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    ksa_cli_error("sample", 0);
done:
    if (have_model)
        ksa_model_free(&m);
    ksa_free(gen.ids);
    ksa_free(prompt_ids);
    ksa_free(file_text);
    ksa_tok_close(tok);
    return rc;
}
