/* cmd_tokenize.c - `ksa tokenize`: a text file through a tokenizer (ids, one per line), ids
 * back to text (--decode), or what a tokenizer is (--info). The reference check of the BPE
 * tokenizer (tests/test_bpe.sh) and people comparing tokenizers use it.                     */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "data/tok.h"
#include "data/tokenizer.h"

static const char what_it_does[] =
    "Encodes the input file (its bytes; invalid UTF-8 becomes U+FFFD with a BPE tokenizer)\n"
    "and prints the ids, one per line. --decode reads whitespace-separated ids from the input\n"
    "and writes their text. --info prints the tokenizer's name, vocab_size and end-of-text id.\n"
    "--tokenizer is a tokenizer.json (byte-level BPE) or 'byte' (the default). See docs/data.md.\n";

/* The whole file into *buf (ksa_alloc'ed), its length into *n. */
static ksa_status read_all(const char *path, char **buf, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ksa_fail(KSA_EIO, "cannot open input '%s': %s", path, strerror(errno));
    size_t cap = 1 << 20;
    *buf = ksa_alloc(cap + 1);
    *n = 0;
    size_t got;
    while ((got = fread(*buf + *n, 1, cap - *n, fp)) > 0) {
        *n += got;
        if (*n == cap) {
            char *b = ksa_alloc(2 * cap + 1);
            memcpy(b, *buf, *n);
            ksa_free(*buf);
            *buf = b, cap *= 2;
        }
    }
    int err = ferror(fp);
    fclose(fp);
    (*buf)[*n] = 0;
    if (err) {
        ksa_free(*buf);
        *buf = NULL;
        return ksa_fail(KSA_EIO, "cannot read input '%s'", path);
    }
    return KSA_OK;
}

static int run(ksa_tok *t, const char *input, int decode, int skip_special)
{
    char *text = NULL;
    size_t n = 0;
    if (read_all(input, &text, &n) != KSA_OK)
        return ksa_cli_error("tokenize", 1);
    ksa_ids ids = {0};
    int rc = 0;
    if (decode) {
        char *p = text, *end;
        for (;;) {
            while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
                p++;
            if (!*p)
                break;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > INT32_MAX) {
                rc = ksa_cli_errorf("tokenize", 1, "'%s' holds '%.20s' where an id should be",
                                    input, p);
                break;
            }
            ksa_ids_push(&ids, (int32_t)v);
            p = end;
        }
        if (!rc) {
            size_t len = ksa_tok_decode(t, NULL, 0, ids.v, ids.n,
                                        skip_special ? KSA_TOKENIZER_SKIP_SPECIAL : 0);
            char *out = ksa_alloc(len + 1);
            ksa_tok_decode(t, out, len, ids.v, ids.n,
                           skip_special ? KSA_TOKENIZER_SKIP_SPECIAL : 0);
            fwrite(out, 1, len, stdout);
            ksa_free(out);
        }
    } else {
        ksa_tok_encoder *e = ksa_tok_encoder_new(t);
        if (ksa_tok_encode(e, text, n, &ids) != KSA_OK)
            rc = ksa_cli_error("tokenize", 1);
        ksa_tok_encoder_free(e);
        for (size_t i = 0; i < ids.n && !rc; i++)
            printf("%d\n", (int)ids.v[i]);
    }
    ksa_ids_free(&ids);
    ksa_free(text);
    if (!rc && fflush(stdout) != 0)
        rc = ksa_cli_errorf("tokenize", 1, "cannot write the output: %s", strerror(errno));
    return rc;
}

int ksa_cmd_tokenize(int argc, char **argv)
{
    const char *tokenizer = "byte", *input = NULL;
    int decode = 0, info = 0, skip_special = 0, help = 0;
    const ksa_arg args[] = {
        {"tokenizer", KSA_ARG_STRING, &tokenizer, NULL, 0,
         "a tokenizer.json (byte-level BPE), or 'byte' (default)"},
        {"input", KSA_ARG_STRING, &input, NULL, 0, "the text (or, with --decode, ids) to read"},
        {"decode", KSA_ARG_FLAG, &decode, NULL, 0, "ids in, text out"},
        {"skip_special", KSA_ARG_FLAG, &skip_special, NULL, 0,
         "with --decode: leave special tokens out"},
        {"info", KSA_ARG_FLAG, &info, NULL, 0, "print name, vocab_size and end-of-text id"},
        {"help", KSA_ARG_FLAG, &help, NULL, 0, "this text"},
    };
    size_t n_args = sizeof args / sizeof args[0];
    if (ksa_args_parse(argc, argv, args, n_args, NULL, NULL) != KSA_OK)
        return ksa_cli_error("tokenize", 2);
    if (help) {
        ksa_args_usage(stdout, "tokenize", args, n_args, 0);
        fputs(what_it_does, stdout);
        return 0;
    }
    if (!info && !input)
        return ksa_cli_errorf("tokenize", 2, "no input (give --input FILE)");
    ksa_tok *t = NULL;
    if (!strcmp(tokenizer, "byte"))
        t = ksa_tok_byte();
    else if (ksa_tok_open_file(&t, tokenizer) != KSA_OK)
        return ksa_cli_error("tokenize", 1);
    int rc = 0;
    if (info)
        printf("name %s\nvocab_size %zu\neot_id %d\n", ksa_tok_name(t), ksa_tok_vocab_size(t),
               (int)ksa_tok_eot(t));
    else
        rc = run(t, input, decode, skip_special);
    ksa_tok_close(t);
    return rc;
}
