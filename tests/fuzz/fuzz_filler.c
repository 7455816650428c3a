/* fuzz_filler.c - the filler text of `ksa task` and `ksa eval --task` (data/tasks.c: UTF-8
 * checks, words cut at character boundaries) and the examples built from it, with the
 * --depths list parser.
 *
 * Input: the task (a byte, mod 4), the depth (a byte, mod 101), extra length (2 bytes, mod
 * 4096: the example is the task's minimum length plus this), the seed (a byte), the --depths
 * text (a length byte, at most 64 bytes), then the filler file's bytes.
 * Properties: every outcome is a status; an example from a filler that opened has exactly
 * the length asked, ids below 257 ending in end-of-text, and needles inside its prompt. */
#include <stdlib.h>
#include <string.h>

#include "data/tasks.h"
#include "data/tokenizer.h"
#include "fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    ksa_task_kind task = (ksa_task_kind)(fuzz_byte(&in) % KSA_TASK_COUNT);
    double depth = fuzz_byte(&in) % 101;
    size_t extra = fuzz_u16(&in) % 4096;
    uint64_t seed = fuzz_byte(&in);
    size_t depths_len;
    const uint8_t *depths_text = fuzz_piece(&in, 64, &depths_len);

    char text[65];
    memcpy(text, depths_text, depths_len);
    text[depths_len] = '\0';
    double *depths;
    size_t n_depths;
    if (ksa_task_parse_depths(text, &depths, &n_depths) == KSA_OK) {
        fuzz_check(n_depths >= 1, "no depths from '%s'", text);
        ksa_free(depths);
    }

    char path[512];
    fuzz_path(path, sizeof path, "filler.txt");
    fuzz_write_file(path, in.p, in.n);
    ksa_task_filler f;
    if (ksa_task_filler_open(&f, path) != KSA_OK)
        return 0;
    fuzz_check(f.n_words >= 1, "a filler without words");
    for (size_t w = 0; w < f.n_words; w++)
        fuzz_check(f.bytes[w] >= 1 && f.bytes[w] <= KSA_TASK_MAX_WORD_BYTES, "word %zu: %u bytes",
                   w, (unsigned)f.bytes[w]);
    size_t len = ksa_task_min_len(task) + extra;
    ksa_task_example ex;
    ksa_status st = ksa_task_generate(&ex, task, len, depth, seed, &f, NULL);
    fuzz_check(st == KSA_OK, "%s", ksa_last_error());
    fuzz_check(ex.len == len && ex.prompt_tokens + ex.answer_tokens + 1 == len,
               "%zu + %zu + 1 tokens for a length of %zu", ex.prompt_tokens, ex.answer_tokens, len);
    for (size_t i = 0; i < len; i++)
        fuzz_check(ex.ids[i] >= 0 && ex.ids[i] < KSA_TOKENIZER_MIN_VOCAB, "id %d at %zu",
                   (int)ex.ids[i], i);
    fuzz_check(ex.ids[len - 1] == KSA_TOKENIZER_EOT, "no end-of-text");
    for (size_t i = 0; i < ex.n_needles; i++)
        fuzz_check(ex.needles[i].pos + ex.needles[i].tokens <= ex.prompt_tokens,
                   "needle %zu at %zu + %zu, prompt %zu", i, ex.needles[i].pos,
                   ex.needles[i].tokens, ex.prompt_tokens);
    ksa_task_example_free(&ex);
    ksa_task_filler_free(&f);
    return 0;
}
