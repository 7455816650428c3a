/* taskset.c - `ksa task`'s files: see taskset.h. JSON through cJSON (Debian's libcjson). */
#include "taskset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/path.h"
#include "data/staged.h"
#include "data/tok.h"
#include "data/tokenizer.h"

static const double default_depths[] = {0, 25, 50, 75, 100};

void ksa_taskset_defaults(ksa_taskset_options *o)
{
    memset(o, 0, sizeof *o);
    o->task = KSA_TASK_PASSKEY;
    o->depths = default_depths;
    o->n_depths = sizeof default_depths / sizeof default_depths[0];
    o->seed = 1;
    o->filler = KSA_TASKSET_DEFAULT_FILLER;
}

/* Everything but the tokenizer, the filler and the outputs. */
static ksa_status check_options(const ksa_taskset_options *o)
{
    if (!o->out || !o->out[0])
        return ksa_fail(KSA_EINVAL, "no output prefix (give --out P: writes P.bin and P.jsonl)");
    if (o->n < 1)
        return ksa_fail(KSA_EINVAL, "--n %zu: the number of examples must be at least 1", o->n);
    size_t min_len = ksa_task_min_len(o->task);
    if (o->len < min_len)
        return ksa_fail(KSA_EINVAL,
                        "--len %zu is too short for %s: it needs at least %zu tokens (the "
                        "needles, the question, the answer and the end-of-text)",
                        o->len, ksa_task_name(o->task), min_len);
    if (o->len > (size_t)INT32_MAX)
        return ksa_fail(KSA_EINVAL, "--len %zu is over %d tokens", o->len, INT32_MAX);
    if (o->n_depths < 1)
        return ksa_fail(KSA_EINVAL, "no depths (give --depths 0,50,100: percent of the filler)");
    for (size_t i = 0; i < o->n_depths; i++)
        if (!(o->depths[i] >= 0 && o->depths[i] <= 100))
            return ksa_fail(KSA_EINVAL, "depth %g is outside [0, 100] (percent of the filler)",
                            o->depths[i]);
    return KSA_OK;
}

/* The vocabulary: the tokenizer's, or one given that holds it. */
static ksa_status check_vocab(const ksa_taskset_options *o, const ksa_tok *tok, size_t *vocab_size)
{
    *vocab_size = o->vocab_size ? o->vocab_size : ksa_tok_vocab_size(tok);
    if (!ksa_tok_bpe(tok))
        return ksa_tokenizer_check_vocab(*vocab_size);
    if (*vocab_size < ksa_tok_vocab_size(tok) || *vocab_size > (size_t)INT32_MAX)
        return ksa_fail(KSA_EINVAL,
                        "--vocab-size %zu does not fit the tokenizer '%s' (%s), whose ids go up "
                        "to %zu: give at least %zu, or leave it out",
                        *vocab_size, o->tokenizer, ksa_tok_name(tok), ksa_tok_vocab_size(tok) - 1,
                        ksa_tok_vocab_size(tok));
    return KSA_OK;
}

/* The example's ids in dtype; every id must be below vocab_size (the tokenizer can spell the
 * task in this vocabulary). narrow: scratch of len · 4 bytes. */
static ksa_status write_ids(ksa_staged_file *f, const ksa_task_example *ex, size_t index,
                            size_t vocab_size, ksa_dtype dtype, void *narrow)
{
    for (size_t i = 0; i < ex->len; i++)
        if ((size_t)ex->ids[i] >= vocab_size)
            return ksa_fail(KSA_EINVAL,
                            "example %zu: token %zu is id %d, not below vocab_size %zu: this "
                            "vocabulary cannot spell the task",
                            index, i, (int)ex->ids[i], vocab_size);
    return ksa_staged_write_ids(f, ex->ids, ex->len, dtype, narrow);
}

/* An integer as its exact digits: cJSON keeps numbers as doubles and prints 15 digits. */
static int add_integer(cJSON *o, const char *name, uint64_t v)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    return cJSON_AddRawToObject(o, name, digits) != NULL;
}

/* {"task", "len", "depth", "seed", "filler", "prompt", "answer", "prompt_tokens",
 *  "answer_tokens", "needles": [{"pos", "tokens", "target"}], "depth_needle"} */
static cJSON *example_json(const ksa_task_example *ex, const char *filler)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *needles = cJSON_CreateArray();
    int ok = o && needles;
    ok = ok && cJSON_AddStringToObject(o, "task", ksa_task_name(ex->task));
    ok = ok && add_integer(o, "len", ex->len);
    ok = ok && cJSON_AddNumberToObject(o, "depth", ex->depth);
    ok = ok && add_integer(o, "seed", ex->seed);
    ok = ok && cJSON_AddStringToObject(o, "filler", filler);
    ok = ok && cJSON_AddStringToObject(o, "prompt", ex->prompt);
    ok = ok && cJSON_AddStringToObject(o, "answer", ex->answer);
    ok = ok && add_integer(o, "prompt_tokens", ex->prompt_tokens);
    ok = ok && add_integer(o, "answer_tokens", ex->answer_tokens);
    for (size_t i = 0; ok && i < ex->n_needles; i++) {
        cJSON *nd = cJSON_CreateObject();
        ok = nd && cJSON_AddItemToArray(needles, nd);
        ok = ok && add_integer(nd, "pos", ex->needles[i].pos);
        ok = ok && add_integer(nd, "tokens", ex->needles[i].tokens);
        ok = ok && cJSON_AddBoolToObject(nd, "target", ex->needles[i].target);
        if (!nd)
            break;
    }
    ok = ok && cJSON_AddItemToObject(o, "needles", needles);
    if (ok)
        needles = NULL; /* owned by o now */
    ok = ok && add_integer(o, "depth_needle", ex->depth_needle);
    cJSON_Delete(needles);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static ksa_status write_json_line(ksa_staged_file *f, const ksa_task_example *ex, size_t index,
                                  const char *filler)
{
    cJSON *o = example_json(ex, filler);
    char *line = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!line)
        return ksa_fail(KSA_ENOMEM, "out of memory writing example %zu as JSON", index);
    ksa_status st = ksa_staged_write(f, line, strlen(line));
    if (st == KSA_OK)
        st = ksa_staged_write(f, "\n", 1);
    cJSON_free(line);
    return st;
}

/* The examples into files[0] (tokens) and files[1] (JSONL). */
static ksa_status write_examples(const ksa_taskset_options *o, const ksa_task_filler *filler,
                                 const ksa_tok *tok, size_t vocab_size, ksa_dtype dtype,
                                 ksa_staged_file *bin, ksa_staged_file *jsonl)
{
    void *narrow = ksa_alloc(o->len * sizeof(uint32_t));
    ksa_status st = KSA_OK;
    for (size_t i = 0; i < o->n && st == KSA_OK; i++) {
        ksa_task_example ex;
        st = ksa_task_generate(&ex, o->task, o->len, o->depths[i % o->n_depths],
                               ksa_task_example_seed(o->seed, i), filler, tok);
        if (st != KSA_OK)
            break;
        st = write_ids(bin, &ex, i, vocab_size, dtype, narrow);
        if (st == KSA_OK)
            st = write_json_line(jsonl, &ex, i, filler->name);
        ksa_task_example_free(&ex);
    }
    ksa_free(narrow);
    return st;
}

enum { BIN, JSONL, META, TOKENIZER, TOKENIZER_JSON, N_FILES };

/* "P" for out "P" or "P.bin" (ksa_alloc'ed). */
static char *prefix_of(const char *out)
{
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".bin"))
        n -= 4;
    char *p = ksa_alloc(n + 1);
    memcpy(p, out, n);
    p[n] = '\0';
    return p;
}

ksa_status ksa_taskset_write(const ksa_taskset_options *o, ksa_taskset_result *r)
{
    memset(r, 0, sizeof *r);
    double t0 = ksa_now();
    KSA_TRY(check_options(o));
    ksa_tok *tok = NULL;
    if (o->tokenizer)
        KSA_TRY(ksa_tok_open_file(&tok, o->tokenizer));
    else
        tok = ksa_tok_byte();
    size_t vocab_size;
    ksa_status st = check_vocab(o, tok, &vocab_size);
    ksa_task_filler filler = {0};
    if (st == KSA_OK)
        st = ksa_task_filler_open(&filler, o->filler);
    if (st != KSA_OK) {
        ksa_tok_close(tok);
        return st;
    }
    int bpe = ksa_tok_bpe(tok) != NULL;
    const int n_files = bpe ? N_FILES : N_FILES - 1; /* bytes: no tokenizer.json */

    char *prefix = prefix_of(o->out);
    ksa_staged_file files[N_FILES] = {{0}};
    char *paths[N_FILES];
    paths[BIN] = ksa_path_concat(prefix, ".bin");
    paths[JSONL] = ksa_path_concat(prefix, ".jsonl");
    paths[META] = ksa_path_concat(paths[BIN], ".meta");
    paths[TOKENIZER] = ksa_path_concat(paths[BIN], ".tokenizer");
    paths[TOKENIZER_JSON] = ksa_path_concat(paths[BIN], ".tokenizer.json");
    ksa_free(prefix);
    for (int k = 0; k < n_files && st == KSA_OK && !o->overwrite; k++)
        if (access(paths[k], F_OK) == 0)
            st = ksa_fail(KSA_EINVAL,
                          "'%s' exists (give --overwrite to replace it, or another "
                          "--out)",
                          paths[k]);
    if (st == KSA_OK)
        st = ksa_path_make_parent(paths[BIN], "the output folder");

    ksa_dtype dtype = vocab_size <= 65536 ? KSA_DTYPE_UINT16 : KSA_DTYPE_UINT32;
    for (int k = 0; k < n_files && st == KSA_OK; k++)
        st = ksa_staged_open(&files[k], paths[k]);
    if (st == KSA_OK)
        st = write_examples(o, &filler, bpe ? tok : NULL, vocab_size, dtype, &files[BIN],
                            &files[JSONL]);
    /* the dtype first (what readers read); with BPE notes for people after it, as ksa
     * prepare writes them */
    char meta[256];
    const char *name = ksa_tok_name(tok);
    if (bpe)
        snprintf(meta, sizeof meta, "%s\ntokenizer %s\nvocab_size %zu\neot_id %d\n",
                 ksa_tokfile_dtype_name(dtype), name, ksa_tok_vocab_size(tok),
                 (int)ksa_tok_eot(tok));
    else
        snprintf(meta, sizeof meta, "%s", ksa_tokfile_dtype_name(dtype));
    if (st == KSA_OK)
        st = ksa_staged_write(&files[META], meta, strlen(meta));
    if (st == KSA_OK)
        st = ksa_staged_write(&files[TOKENIZER], name, strlen(name));
    if (st == KSA_OK && bpe) {
        size_t json_n;
        const void *json = ksa_bpe_json(ksa_tok_bpe(tok), &json_n);
        st = ksa_staged_write(&files[TOKENIZER_JSON], json, json_n);
    }
    for (int k = 0; k < n_files && st == KSA_OK; k++)
        st = ksa_staged_close(&files[k]);
    /* the token file last: once the new P.bin is in place, so are the others */
    const int rename_order[N_FILES] = {JSONL, META, TOKENIZER, TOKENIZER_JSON, BIN};
    const int rename_order_bytes[N_FILES - 1] = {JSONL, META, TOKENIZER, BIN};
    if (st == KSA_OK)
        st = ksa_staged_commit(files, bpe ? rename_order : rename_order_bytes, (size_t)n_files);
    if (st == KSA_OK) {
        r->bin_path = paths[BIN];
        r->jsonl_path = paths[JSONL];
        paths[BIN] = paths[JSONL] = NULL;
        r->n_tokens = o->n * o->len;
        r->dtype = dtype;
        r->vocab_size = vocab_size;
        snprintf(r->tokenizer, sizeof r->tokenizer, "%s", name);
        r->seconds = ksa_now() - t0;
    }
    ksa_staged_release(files, (size_t)n_files, st != KSA_OK);
    for (int k = 0; k < N_FILES; k++)
        ksa_free(paths[k]);
    ksa_task_filler_free(&filler);
    ksa_tok_close(tok);
    return st;
}

void ksa_taskset_result_free(ksa_taskset_result *r)
{
    ksa_free(r->bin_path), ksa_free(r->jsonl_path);
    memset(r, 0, sizeof *r);
}
