/* test_tasks.c - the synthetic retrieval tasks (src/data/tasks.c): exact lengths, determinism,
 * and answers that an independent parser of the prompt recovers (the pass key once at its
 * needle and depth, multikey distractors, multivalue order, vartrack by re-simulating the
 * assignments); bad arguments and bad filler files.                                       */
#include "bpeutil.h"
#include "datautil.h"

#include <ctype.h>
#include <math.h>

#include "data/tasks.h"
#include "data/tok.h"
#include "data/tokenizer.h"

/* A filler file with short and long words, UTF-8 of 2 to 4 bytes per character, runs of
 * mixed whitespace and a 100-byte word (cut into pieces of at most 32 bytes). */
static const char filler_text[] =
    "In the beginning God created the heaven\tand the earth.\n\n  And the earth was without "
    "form, and void; Grüße aus Köln, 日本語のテキスト, 🙂🙂🙂 ok. "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaa and darkness was upon the face of the deep.\r\n";

static void open_filler(ksa_task_filler *f, const char *dir, int noise)
{
    if (noise) {
        assert_int_equal(ksa_task_filler_open(f, KSA_TASK_NOISE), KSA_OK);
        return;
    }
    char path[DT_PATH_MAX];
    dt_write_str(dt_join(path, dir, "filler.txt"), filler_text);
    if (ksa_task_filler_open(f, path) != KSA_OK)
        fail_msg("%s", ksa_last_error());
}

static void generate(ksa_task_example *ex, ksa_task_kind task, size_t len, double depth,
                     uint64_t seed, const ksa_task_filler *f)
{
    if (ksa_task_generate(ex, task, len, depth, seed, f, NULL) != KSA_OK)
        fail_msg("%s len %zu depth %g seed %llu: %s", ksa_task_name(task), len, depth,
                 (unsigned long long)seed, ksa_last_error());
}

/* ---- an independent reading of a prompt ----------------------------------------------- */

/* Occurrences of needle in hay. */
static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The digits at s (their count in *n, 0 if none). */
static size_t digits_at(const char *s)
{
    size_t n = 0;
    while (isdigit((unsigned char)s[n]))
        n++;
    return n;
}

static int is_number_of_5_to_7_digits(const char *s, size_t n)
{
    return n >= 5 && n <= 7 && s[0] != '0' && digits_at(s) >= n;
}

/* The question line: what follows the last newline. */
static const char *question_of(const char *prompt)
{
    const char *nl = strrchr(prompt, '\n');
    assert_non_null(nl);
    return nl + 1;
}

/* Filler tokens of the context (byte tokenizer: bytes), from the text alone: the context
 * without its trailing padding, less every needle and its separator (the first piece has
 * none). */
static size_t filler_tokens_of(const ksa_task_example *ex)
{
    size_t context = (size_t)(question_of(ex->prompt) - 1 - ex->prompt);
    while (context > 0 && ex->prompt[context - 1] == ' ')
        context--;
    size_t needles = 0;
    for (size_t i = 0; i < ex->n_needles; i++)
        needles += ex->needles[i].tokens + 1;
    return context + 1 - needles;
}

/* The depth needle sits at the requested fraction of the filler, within one filler piece
 * (a word of at most KSA_TASK_MAX_WORD_BYTES bytes and its separator). */
static void expect_depth(const ksa_task_example *ex)
{
    size_t filler = filler_tokens_of(ex);
    assert_int_equal(filler, ex->filler_tokens);
    size_t before = ex->needles[ex->depth_needle].pos; /* less the needles before it */
    for (size_t i = 0; i < ex->depth_needle; i++)
        before -= ex->needles[i].tokens + 1;
    double want = ex->depth / 100 * (double)filler;
    if (fabs((double)before - want) > KSA_TASK_MAX_WORD_BYTES + 1)
        fail_msg("%s depth %g: the needle is after %zu of %zu filler tokens, wanted %.1f",
                 ksa_task_name(ex->task), ex->depth, before, filler, want);
}

/* Appends separator (unless buf is empty) and s to the string buf of cap bytes. */
static void append(char *buf, size_t cap, const char *separator, const char *s)
{
    size_t at = strlen(buf), sep = at ? strlen(separator) : 0, n = strlen(s);
    assert_true(at + sep + n < cap);
    memcpy(buf + at, separator, sep);
    memcpy(buf + at + sep, s, n + 1);
}

/* ---- lengths ---------------------------------------------------------------------------- */

/* ids = bytes of prompt, bytes of answer, end-of-text; nothing else special */
static void expect_well_formed(const ksa_task_example *ex, size_t len)
{
    assert_int_equal(ex->len, len);
    assert_int_equal(ex->prompt_tokens + ex->answer_tokens + 1, len);
    assert_int_equal(strlen(ex->prompt), ex->prompt_tokens);
    assert_int_equal(strlen(ex->answer), ex->answer_tokens);
    for (size_t i = 0; i < ex->prompt_tokens; i++)
        assert_int_equal(ex->ids[i], (unsigned char)ex->prompt[i]);
    for (size_t i = 0; i < ex->answer_tokens; i++)
        assert_int_equal(ex->ids[ex->prompt_tokens + i], (unsigned char)ex->answer[i]);
    assert_int_equal(ex->ids[len - 1], KSA_TOKENIZER_EOT);
    for (size_t i = 0; i < ex->n_needles; i++) /* needles inside the context, in order */
        assert_true(ex->needles[i].pos + ex->needles[i].tokens <
                    (size_t)(question_of(ex->prompt) - ex->prompt));
    for (size_t i = 1; i < ex->n_needles; i++)
        assert_true(ex->needles[i].pos > ex->needles[i - 1].pos + ex->needles[i - 1].tokens);
    /* the padding before the question line is shorter than one filler piece */
    const char *q = question_of(ex->prompt) - 1;
    size_t pad = 0;
    while (q - pad > ex->prompt && q[-(long)pad - 1] == ' ')
        pad++;
    assert_true(pad <= KSA_TASK_MAX_WORD_BYTES);
}

static void every_task_fills_exactly_len_tokens(void **state)
{
    static const double depths[] = {0, 12.5, 50, 99, 100};
    size_t n_checked = 0;
    for (int noise = 0; noise < 2; noise++) {
        ksa_task_filler f;
        open_filler(&f, *state, noise);
        for (int t = 0; t < KSA_TASK_COUNT; t++) {
            size_t min = ksa_task_min_len((ksa_task_kind)t);
            size_t lens[] = {min,      min + 1,  min + 2,  min + 3, min + 7, min + 31,
                             min + 33, min + 34, min + 97, 257,     1000,    4099};
            for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
                for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++)
                    for (uint64_t seed = 1; seed <= 7; seed++) {
                        if (lens[l] < min)
                            continue;
                        ksa_task_example ex;
                        generate(&ex, (ksa_task_kind)t, lens[l], depths[d], seed * 7919, &f);
                        expect_well_formed(&ex, lens[l]);
                        expect_depth(&ex);
                        ksa_task_example_free(&ex);
                        n_checked++;
                    }
        }
        ksa_task_filler_free(&f);
    }
    assert_true(n_checked > 3000);
}

/* ---- determinism ------------------------------------------------------------------------ */

static int same_example(const ksa_task_example *a, const ksa_task_example *b)
{
    return a->len == b->len && !strcmp(a->prompt, b->prompt) && !strcmp(a->answer, b->answer) &&
           !memcmp(a->ids, b->ids, a->len * sizeof *a->ids) && a->n_needles == b->n_needles &&
           !memcmp(a->needles, b->needles, a->n_needles * sizeof *a->needles);
}

static void examples_are_a_pure_function_of_their_inputs(void **state)
{
    ksa_task_filler f, g;
    open_filler(&f, *state, 0);
    open_filler(&g, *state, 0); /* opened again: nothing depends on the filler's address */
    for (int t = 0; t < KSA_TASK_COUNT; t++) {
        ksa_task_example a, b, c, d;
        generate(&a, (ksa_task_kind)t, 700, 40, 11, &f);
        generate(&b, (ksa_task_kind)t, 700, 40, 11, &g);
        assert_true(same_example(&a, &b));
        generate(&c, (ksa_task_kind)t, 700, 40, 12, &f); /* another seed */
        assert_false(!strcmp(a.prompt, c.prompt));
        assert_false(!strcmp(a.answer, c.answer));
        /* another task with the same seed is another example */
        generate(&d, (ksa_task_kind)((t + 1) % KSA_TASK_COUNT), 700, 40, 11, &f);
        assert_false(!strcmp(a.prompt, d.prompt));
        ksa_task_example_free(&a), ksa_task_example_free(&b);
        ksa_task_example_free(&c), ksa_task_example_free(&d);
    }
    ksa_task_filler_free(&f), ksa_task_filler_free(&g);
}

static void example_seeds_differ_and_fit_json_numbers(void **state)
{
    uint64_t seen[64];
    for (size_t i = 0; i < 64; i++) {
        seen[i] = ksa_task_example_seed(1, i);
        assert_true(seen[i] < (1ull << 53));
        for (size_t j = 0; j < i; j++)
            assert_true(seen[i] != seen[j]);
        assert_true(ksa_task_example_seed(2, i) != seen[i]); /* neighbouring sets share none */
        assert_true(ksa_task_example_seed(2, i) != ksa_task_example_seed(1, i + 1));
    }
}

/* ---- answers an independent parser recovers ------------------------------------------- */

static void the_pass_key_appears_once_at_its_needle_and_depth(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 0);
    for (uint64_t seed = 1; seed <= 60; seed++) {
        ksa_task_example ex;
        double depth = (double)(seed * 37 % 101);
        generate(&ex, KSA_TASK_PASSKEY, 300 + 13 * seed, depth, seed, &f);
        assert_string_equal(question_of(ex.prompt), "What is the pass key? The pass key is ");
        size_t n = strlen(ex.answer);
        assert_true(is_number_of_5_to_7_digits(ex.answer, n));
        assert_int_equal(digits_at(ex.answer), n);
        assert_int_equal(count_occurrences(ex.prompt, ex.answer), 1);
        const char *at = strstr(ex.prompt, ex.answer);
        assert_int_equal(ex.n_needles, 1);
        assert_true(ex.needles[0].target);
        const char *lead = "The pass key is ";
        assert_int_equal((size_t)(at - ex.prompt), ex.needles[0].pos + strlen(lead));
        assert_memory_equal(ex.prompt + ex.needles[0].pos, lead, strlen(lead));
        assert_false(isdigit((unsigned char)at[n])); /* the whole number, not a prefix */
        assert_int_equal(ex.needles[0].tokens, strlen(lead) + n + 1); /* and its "." */
        expect_depth(&ex);
        ksa_task_example_free(&ex);
    }
    ksa_task_filler_free(&f);
}

/* The needles "<lead>KEY is N." of a prompt, in order: keys, values and positions. */
typedef struct {
    char key[32], value[16];
    size_t pos;
} kv_needle;

static size_t parse_kv_needles(const char *prompt, const char *lead, kv_needle *out, size_t cap)
{
    size_t n = 0;
    const char *end_of_context = question_of(prompt);
    for (const char *p = strstr(prompt, lead); p && p < end_of_context; p = strstr(p + 1, lead)) {
        assert_true(n < cap);
        const char *k = p + strlen(lead), *is = strstr(k, " is ");
        assert_non_null(is);
        assert_true(is - k < 32);
        snprintf(out[n].key, sizeof out[n].key, "%.*s", (int)(is - k), k);
        size_t digits = digits_at(is + 4);
        assert_true(is_number_of_5_to_7_digits(is + 4, digits));
        assert_int_equal(is[4 + digits], '.');
        snprintf(out[n].value, sizeof out[n].value, "%.*s", (int)digits, is + 4);
        out[n].pos = (size_t)(p - prompt);
        n++;
    }
    return n;
}

/* The key of "...for KEY? ..." in the question. */
static void asked_key(const char *question, const char *lead, char *key, size_t cap)
{
    assert_memory_equal(question, lead, strlen(lead));
    const char *k = question + strlen(lead), *q = strchr(k, '?');
    assert_non_null(q);
    snprintf(key, cap, "%.*s", (int)(q - k), k);
}

static void multikey_distractors_differ_from_the_asked_key_in_one_syllable(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 0);
    for (uint64_t seed = 1; seed <= 60; seed++) {
        ksa_task_example ex;
        generate(&ex, KSA_TASK_NIAH_MULTIKEY, 400 + seed, (double)(seed % 5) * 25, seed, &f);
        char key[32], tail[128];
        asked_key(question_of(ex.prompt), "What is the number for ", key, sizeof key);
        snprintf(tail, sizeof tail, "What is the number for %s? The number for %s is ", key, key);
        assert_string_equal(question_of(ex.prompt), tail);
        kv_needle nd[8];
        size_t n = parse_kv_needles(ex.prompt, "The number for ", nd, 8);
        assert_int_equal(n, 4);
        assert_int_equal(ex.n_needles, n);
        size_t asked = 0;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(nd[i].pos, ex.needles[i].pos);
            int is_asked = !strcmp(nd[i].key, key);
            assert_int_equal(ex.needles[i].target, is_asked);
            asked += (size_t)is_asked;
            if (is_asked) {
                assert_string_equal(nd[i].value, ex.answer);
                assert_int_equal(ex.depth_needle, i);
                continue;
            }
            /* a distractor: as long, one of the 3 two-letter syllables differs */
            assert_int_equal(strlen(nd[i].key), strlen(key));
            size_t differing = 0;
            for (size_t s = 0; s < strlen(key); s += 2)
                differing += memcmp(nd[i].key + s, key + s, 2) != 0;
            assert_int_equal(differing, 1);
            assert_string_not_equal(nd[i].value, ex.answer);
            for (size_t j = 0; j < i; j++)
                assert_string_not_equal(nd[i].key, nd[j].key);
        }
        assert_int_equal(asked, 1);
        expect_depth(&ex);
        ksa_task_example_free(&ex);
    }
    ksa_task_filler_free(&f);
}

static void multivalue_answers_list_the_values_in_order_of_appearance(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 1);
    size_t not_drawing_order = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        ksa_task_example ex;
        generate(&ex, KSA_TASK_NIAH_MULTIVALUE, 350 + 3 * seed, (double)(seed % 3) * 30, seed, &f);
        char key[32];
        asked_key(question_of(ex.prompt), "What are all the numbers for ", key, sizeof key);
        kv_needle nd[8];
        size_t n = parse_kv_needles(ex.prompt, "One number for ", nd, 8);
        assert_int_equal(n, 4);
        char want[128] = "";
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(nd[i].key, key);
            assert_int_equal(nd[i].pos, ex.needles[i].pos);
            assert_true(ex.needles[i].target);
            for (size_t j = 0; j < i; j++)
                assert_string_not_equal(nd[i].value, nd[j].value);
            append(want, sizeof want, ", ", nd[i].value);
            not_drawing_order += i > 0 && strcmp(nd[i].value, nd[i - 1].value) < 0;
        }
        assert_string_equal(ex.answer, want);
        assert_int_equal(ex.depth_needle, 0); /* the first value is the one depth places */
        expect_depth(&ex);
        ksa_task_example_free(&ex);
    }
    assert_true(not_drawing_order > 0); /* the answer is not simply sorted */
    ksa_task_filler_free(&f);
}

/* Re-simulates "VAR X = N." and "VAR Y = VAR X." in order of appearance. */
static void vartrack_answers_are_the_variables_holding_the_asked_value(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 0);
    for (uint64_t seed = 1; seed <= 60; seed++) {
        ksa_task_example ex;
        generate(&ex, KSA_TASK_VARTRACK, 500 + 7 * seed, (double)(seed % 4) * 33, seed, &f);
        const char *q = question_of(ex.prompt), *lead = "Which variables are equal to ";
        assert_memory_equal(q, lead, strlen(lead));
        char asked[16];
        size_t digits = digits_at(q + strlen(lead));
        assert_true(is_number_of_5_to_7_digits(q + strlen(lead), digits));
        snprintf(asked, sizeof asked, "%.*s", (int)digits, q + strlen(lead));
        assert_string_equal(q + strlen(lead) + digits, "? They are ");

        char name[16][8], value[16][16];
        size_t n = 0, n_other = 0;
        char want[128] = "";
        /* each statement from "VAR " to its ".", the search going on after it */
        for (const char *p = strstr(ex.prompt, "VAR "); p && p < q; p = strstr(p, "VAR ")) {
            assert_true(n < 16);
            int used = 0;
            assert_int_equal(sscanf(p, "VAR %7[A-Z] = %n", name[n], &used), 1);
            assert_true(used > 0);
            const char *r = p + used;
            if (!strncmp(r, "VAR ", 4)) {
                char rhs[8];
                assert_int_equal(sscanf(r, "VAR %7[A-Z]", rhs), 1);
                size_t j = 0;
                while (j < n && strcmp(name[j], rhs) != 0)
                    j++;
                assert_true(j < n); /* copies a variable assigned before */
                memcpy(value[n], value[j], sizeof value[n]);
            } else {
                size_t d = digits_at(r);
                assert_true(is_number_of_5_to_7_digits(r, d));
                snprintf(value[n], sizeof value[n], "%.*s", (int)d, r);
            }
            assert_non_null(strchr(r, '.'));
            assert_int_equal((size_t)(p - ex.prompt), ex.needles[n].pos);
            assert_int_equal((size_t)(strchr(r, '.') + 1 - p), ex.needles[n].tokens);
            for (size_t j = 0; j < n; j++)
                assert_string_not_equal(name[n], name[j]);
            int holds = !strcmp(value[n], asked);
            assert_int_equal(ex.needles[n].target, holds);
            if (holds)
                append(want, sizeof want, ", ", name[n]);
            else
                n_other++;
            n++;
            p = strchr(r, '.') + 1;
        }
        assert_int_equal(n, ex.n_needles);
        assert_int_equal(n, 8);
        assert_int_equal(n_other, 4); /* a second chain, of another value */
        assert_string_equal(ex.answer, want);
        expect_depth(&ex);
        ksa_task_example_free(&ex);
    }
    ksa_task_filler_free(&f);
}

/* Depth 0 puts the needle first, depth 100 last before the padding and the question. */
static void depth_0_and_100_are_the_ends_of_the_filler(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 0);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        ksa_task_example ex;
        generate(&ex, KSA_TASK_PASSKEY, 600, 0, seed, &f);
        assert_int_equal(ex.needles[0].pos, 0);
        ksa_task_example_free(&ex);
        generate(&ex, KSA_TASK_PASSKEY, 600, 100, seed, &f);
        size_t end = ex.needles[0].pos + ex.needles[0].tokens;
        while (ex.prompt[end] == ' ')
            end++;
        assert_int_equal(ex.prompt[end], '\n');
        ksa_task_example_free(&ex);
    }
    ksa_task_filler_free(&f);
}

/* The filler is the file's words from a seed-chosen one on, each separated by one space;
 * noise is RULER's sentences from the first word. */
static void the_filler_is_the_files_words_from_a_seed_chosen_one(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 0);
    assert_int_equal(f.n_words, 37); /* 33 words and the 100-byte one in 4 pieces */
    for (size_t w = 0; w < f.n_words; w++)
        assert_true(f.bytes[w] >= 1 && f.bytes[w] <= KSA_TASK_MAX_WORD_BYTES);
    size_t starts[8];
    for (uint64_t seed = 0; seed < 8; seed++) {
        ksa_task_example ex;
        generate(&ex, KSA_TASK_PASSKEY, 2000, 100, seed, &f);
        /* the context begins with some word of the file */
        size_t w = 0;
        while (w < f.n_words &&
               (memcmp(ex.prompt, f.text + f.word[w], f.bytes[w]) || ex.prompt[f.bytes[w]] != ' '))
            w++;
        assert_true(w < f.n_words);
        starts[seed] = w;
        ksa_task_example_free(&ex);
    }
    size_t distinct = 0;
    for (size_t i = 0; i < 8; i++) {
        size_t j = 0;
        while (j < i && starts[j] != starts[i])
            j++;
        distinct += j == i;
    }
    assert_true(distinct >= 3);
    ksa_task_filler_free(&f);

    open_filler(&f, *state, 1);
    ksa_task_example ex;
    generate(&ex, KSA_TASK_PASSKEY, 400, 100, 5, &f);
    const char *noise = "The grass is green. The sky is blue. The sun is yellow. Here we go. "
                        "There and back again. The grass is green.";
    assert_memory_equal(ex.prompt, noise, strlen(noise));
    ksa_task_example_free(&ex);
    ksa_task_filler_free(&f);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void expect_failure(ksa_status st, ksa_status code, const char *needle)
{
    assert_int_equal(st, code);
    if (!strstr(ksa_last_error(), needle))
        fail_msg("error '%s' lacks '%s'", ksa_last_error(), needle);
}

static void bad_arguments_are_errors_that_name_the_problem(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 1);
    ksa_task_example ex;
    for (int t = 0; t < KSA_TASK_COUNT; t++) {
        size_t min = ksa_task_min_len((ksa_task_kind)t);
        char msg[64];
        snprintf(msg, sizeof msg, "needs at least %zu tokens", min);
        expect_failure(ksa_task_generate(&ex, (ksa_task_kind)t, min - 1, 50, 1, &f, NULL),
                       KSA_EINVAL, msg);
        assert_null(ex.prompt); /* left empty */
        expect_failure(ksa_task_generate(&ex, (ksa_task_kind)t, 0, 50, 1, &f, NULL), KSA_EINVAL,
                       msg);
    }
    expect_failure(ksa_task_generate(&ex, KSA_TASK_PASSKEY, 500, -1, 1, &f, NULL), KSA_EINVAL,
                   "depth -1 is outside [0, 100]");
    expect_failure(ksa_task_generate(&ex, KSA_TASK_PASSKEY, 500, 100.5, 1, &f, NULL), KSA_EINVAL,
                   "depth 100.5 is outside [0, 100]");
    expect_failure(ksa_task_generate(&ex, KSA_TASK_PASSKEY, 500, NAN, 1, &f, NULL), KSA_EINVAL,
                   "is outside [0, 100]");
    ksa_task_filler_free(&f);

    ksa_task_kind task = KSA_TASK_VARTRACK;
    expect_failure(ksa_task_parse("niah", &task), KSA_EINVAL,
                   "unknown task 'niah' (known: passkey, niah-multikey, niah-multivalue, "
                   "vartrack)");
    assert_int_equal(task, KSA_TASK_VARTRACK);
    for (int t = 0; t < KSA_TASK_COUNT; t++) {
        assert_int_equal(ksa_task_parse(ksa_task_name((ksa_task_kind)t), &task), KSA_OK);
        assert_int_equal(task, t);
    }
}

/* The minimum is exact: the longest content (7-digit numbers) fits at min_len; so all do. */
static void the_minimum_length_holds_the_longest_content(void **state)
{
    ksa_task_filler f;
    open_filler(&f, *state, 1);
    /* passkey: "The pass key is 1234567." "\n" question, answer, end-of-text */
    size_t want = strlen("The pass key is 1234567.") + 1 +
                  strlen("What is the pass key? The pass key is ") + 7 + 1;
    assert_int_equal(ksa_task_min_len(KSA_TASK_PASSKEY), want);
    for (int t = 0; t < KSA_TASK_COUNT; t++) {
        size_t min = ksa_task_min_len((ksa_task_kind)t), shortest = SIZE_MAX;
        for (uint64_t seed = 1; seed <= 200; seed++) {
            ksa_task_example ex;
            generate(&ex, (ksa_task_kind)t, min, 50, seed, &f);
            size_t content = ex.prompt_tokens + ex.answer_tokens + 1 - ex.filler_tokens;
            shortest = content < shortest ? content : shortest;
            ksa_task_example_free(&ex);
        }
        assert_true(shortest < min); /* shorter numbers leave room for filler or padding */
    }
    ksa_task_filler_free(&f);
}

static void bad_filler_files_are_refused_naming_the_file(void **state)
{
    const char *dir = *state;
    char path[DT_PATH_MAX], msg[DT_PATH_MAX + 64];
    ksa_task_filler f;
    dt_join(path, dir, "missing.txt");
    snprintf(msg, sizeof msg, "cannot read filler file '%s'", path);
    expect_failure(ksa_task_filler_open(&f, path), KSA_EIO, msg);
    assert_null(f.text);
    snprintf(msg, sizeof msg, "filler file '%s' is not a regular file", dir);
    expect_failure(ksa_task_filler_open(&f, dir), KSA_EIO, msg);

    dt_write_str(dt_join(path, dir, "empty.txt"), "");
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT, "holds no words");
    dt_write_str(dt_join(path, dir, "blank.txt"), " \n\t\r\n  ");
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT, "holds no words");
    dt_write_str(dt_join(path, dir, "latin1.txt"), "Gr\xfc\xdf"
                                                   "e");
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT,
                   "is not UTF-8 text (byte offset 2)");
    dt_write_str(dt_join(path, dir, "overlong.txt"), "ab \xc0\xaf");
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT, "(byte offset 3)");
    dt_write_str(dt_join(path, dir, "surrogate.txt"), "\xed\xa0\x80");
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT, "(byte offset 0)");
    dt_write_str(dt_join(path, dir, "cut.txt"), "abc \xe6\x97");
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT, "(byte offset 4)");
    dt_write(dt_join(path, dir, "nul.txt"), "ab\0cd", 5);
    expect_failure(ksa_task_filler_open(&f, path), KSA_EFORMAT, "NUL byte at offset 2");
    /* a file named like the noise filler is reached by another spelling */
    dt_write_str(dt_join(path, dir, "noise"), "just words");
    assert_int_equal(ksa_task_filler_open(&f, path), KSA_OK);
    assert_false(f.is_noise);
    assert_int_equal(f.n_words, 2);
    ksa_task_filler_free(&f);
}

/* ---- a BPE tokenizer -------------------------------------------------------------------- *
 * A small byte-level BPE (bpe.h) made here, with Qwen's pre-tokenizer and merges across the
 * places where pieces of an example meet (a separator into the next word, ".\n", runs of
 * spaces), so that the counts of pieces do not add up and ksa_task_generate has to fit the
 * whole example. tests/test_task.sh checks the real Qwen3 tokenizer against its reference. */

/* Merges "a b" in plain text (' ' inside a side is written '_', newline '~'). */
static const char *const test_merges[][2] = {
    {"_", "T"},  {"h", "e"},   {"_T", "he"}, {"_", "t"},   {"_t", "he"},    {"_", "a"},
    {"n", "d"},  {"_a", "nd"}, {".", "~"},   {"_", "_"},   {"__", "__"},    {"i", "s"},
    {"_", "is"}, {"_", "i"},   {"_", "s"},   {"_s", "ky"}, {"k", "y"},      {"9", "9"},
    {"e", "r"},  {"_", "V"},   {"A", "R"},   {"_V", "AR"}, {"V", "AR"},     {"_", "="},
    {"o", "r"},  {"_", "n"},   {"_n", "um"}, {"u", "m"},   {"_num", "ber"}, {"b", "er"},
};

/* The side's bytes in the byte-level alphabet, appended to out. */
static void append_side(char *out, const char *side)
{
    for (const char *p = side; *p; p++)
        bpe_byte_char(*p == '_' ? ' ' : *p == '~' ? '\n' : (unsigned char)*p, out + strlen(out));
}

static char *test_tokenizer_json(size_t *n)
{
    size_t cap = 1 << 16, n_merges = sizeof test_merges / sizeof test_merges[0];
    char *j = calloc(cap, 1);
    assert_non_null(j);
    strcat(j, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": ");
    sprintf(j + strlen(j), "%zu", 256 + n_merges);
    strcat(j, ", \"content\": \"<|endoftext|>\", \"special\": true}], \"normalizer\": {\"type\": "
              "\"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
              "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"" QWEN_REGEX "\"}, "
              "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
              "\"add_prefix_space\": false, \"use_regex\": false}]}, \"decoder\": {\"type\": "
              "\"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int c = 0; c < 256; c++) {
        strcat(j, "\"");
        bpe_byte_char(c, j + strlen(j));
        sprintf(j + strlen(j), "\": %d, ", c);
    }
    for (size_t i = 0; i < n_merges; i++) {
        strcat(j, "\"");
        append_side(j, test_merges[i][0]);
        append_side(j, test_merges[i][1]);
        sprintf(j + strlen(j), "\": %zu%s", 256 + i, i + 1 < n_merges ? ", " : "");
    }
    strcat(j, "}, \"merges\": [");
    for (size_t i = 0; i < n_merges; i++) {
        strcat(j, i ? ", \"" : "\"");
        append_side(j, test_merges[i][0]);
        strcat(j, " ");
        append_side(j, test_merges[i][1]);
        strcat(j, "\"");
    }
    strcat(j, "]}}");
    assert_true(strlen(j) < cap);
    *n = strlen(j);
    return j;
}

static ksa_tok *open_test_tokenizer(void)
{
    size_t n;
    char *json = test_tokenizer_json(&n);
    ksa_tok *t = NULL;
    if (ksa_tok_open_memory(&t, json, n, "the test tokenizer") != KSA_OK)
        fail_msg("%s", ksa_last_error());
    free(json);
    return t;
}

/* The text of ids[0..n) as a malloc'ed string. */
static char *decoded(const ksa_tok *t, const int32_t *ids, size_t n)
{
    size_t len = ksa_tok_decode(t, NULL, 0, ids, n, 0);
    char *s = malloc(len + 1);
    assert_non_null(s);
    ksa_tok_decode(t, s, len, ids, n, 0);
    s[len] = 0;
    return s;
}

/* Every example of every task, at lengths from the minimum on, with both fillers: exactly len
 * ids that are encode(prompt), encode(answer) and end-of-text; each needle's tokens the
 * fewest that hold it; the same content as the byte tokenizer's example (seed, needles,
 * question, answer); and the byte tokenizer through tok.h gives the byte example itself.   */
static void a_bpe_tokenizer_spells_examples_of_exactly_len_tokens(void **state)
{
    ksa_tok *t = open_test_tokenizer(), *bytes = ksa_tok_byte();
    ksa_tok_encoder *e = ksa_tok_encoder_new(t);
    size_t fitted_with_merges = 0, n_examples = 0;
    for (int noise = 0; noise < 2; noise++) {
        ksa_task_filler f;
        open_filler(&f, *state, noise);
        for (int task = 0; task < KSA_TASK_COUNT; task++) {
            /* the file's words take up to 32 tokens each here (no merges of 'a', CJK,
             * emoji), more than the separators of a short example can make up: long
             * examples only (the error is below) */
            size_t min = ksa_task_min_len((ksa_task_kind)task);
            const size_t noise_lens[] = {min, min + 1, min + 7, 333, 1024},
                         file_lens[] = {333, 500, 777, 1024, 2048};
            const size_t *lens = noise ? noise_lens : file_lens;
            for (size_t li = 0; li < sizeof noise_lens / sizeof noise_lens[0]; li++)
                for (uint64_t seed = 1; seed <= 6; seed++) {
                    size_t len = lens[li];
                    double depth = (double)(seed * 23 % 101);
                    ksa_task_example ex, by, via;
                    if (ksa_task_generate(&ex, (ksa_task_kind)task, len, depth, seed, &f, t) !=
                        KSA_OK)
                        fail_msg("%s len %zu seed %llu: %s", ksa_task_name(task), len,
                                 (unsigned long long)seed, ksa_last_error());
                    generate(&by, (ksa_task_kind)task, len, depth, seed, &f);
                    assert_int_equal(
                        ksa_task_generate(&via, (ksa_task_kind)task, len, depth, seed, &f, bytes),
                        KSA_OK);
                    assert_string_equal(via.prompt, by.prompt);
                    assert_memory_equal(via.ids, by.ids, len * sizeof *by.ids);
                    n_examples++;
                    /* exactly len: encode(prompt), encode(answer), end-of-text */
                    assert_int_equal(ex.len, len);
                    assert_int_equal(ex.prompt_tokens + ex.answer_tokens + 1, len);
                    assert_int_equal(ex.ids[len - 1], ksa_tok_eot(t));
                    ksa_ids ids = {0};
                    assert_int_equal(ksa_tok_encode(e, ex.prompt, strlen(ex.prompt), &ids), KSA_OK);
                    assert_int_equal(ids.n, ex.prompt_tokens);
                    assert_int_equal(ksa_tok_encode(e, ex.answer, strlen(ex.answer), &ids), KSA_OK);
                    assert_int_equal(ids.n, len - 1);
                    assert_memory_equal(ids.v, ex.ids, (len - 1) * sizeof *ex.ids);
                    ksa_ids_free(&ids);
                    fitted_with_merges += ex.prompt_tokens != strlen(ex.prompt);
                    /* the needles: the same sentences as the byte example's (in an order
                     * that may differ where the byte example's ties broke by drawing order),
                     * each held by exactly its tokens */
                    assert_int_equal(ex.n_needles, by.n_needles);
                    assert_string_equal(ex.answer, by.answer);
                    assert_string_equal(question_of(ex.prompt), question_of(by.prompt));
                    int used[KSA_TASK_MAX_NEEDLES] = {0};
                    for (size_t i = 0; i < ex.n_needles; i++) {
                        const ksa_task_needle *nd = &ex.needles[i];
                        char *all = decoded(t, ex.ids + nd->pos, nd->tokens),
                             *less_first = decoded(t, ex.ids + nd->pos + 1, nd->tokens - 1),
                             *less_last = decoded(t, ex.ids + nd->pos, nd->tokens - 1);
                        size_t j = 0;
                        char sentence[160] = "";
                        for (; j < by.n_needles; j++) {
                            snprintf(sentence, sizeof sentence, "%.*s", (int)by.needles[j].tokens,
                                     by.prompt + by.needles[j].pos);
                            if (!used[j] && strstr(all, sentence))
                                break;
                        }
                        if (j == by.n_needles || strstr(less_first, sentence) ||
                            strstr(less_last, sentence))
                            fail_msg("%s seed %llu: needle %zu is not tokens %zu..%zu ('%s')",
                                     ksa_task_name(task), (unsigned long long)seed, i, nd->pos,
                                     nd->pos + nd->tokens, all);
                        used[j] = 1;
                        assert_int_equal(nd->target, by.needles[j].target);
                        if (i == ex.depth_needle) /* the same sentence placed by the depth */
                            assert_int_equal(j, by.depth_needle);
                        free(all), free(less_first), free(less_last);
                    }
                    ksa_task_example_free(&ex);
                    ksa_task_example_free(&by);
                    ksa_task_example_free(&via);
                }
        }
        ksa_task_filler_free(&f);
    }
    assert_true(fitted_with_merges == n_examples); /* the merges did apply everywhere */
    /* where the next word is longer in tokens than the separators can make up, a clear error:
     * here 4 filler words fit, the next is 32 'a's (32 tokens), the gap is 26 tokens and the
     * context of 4 words and 4 needles has 7 separators (dropping words widens the gap) */
    ksa_task_filler f;
    open_filler(&f, *state, 0);
    ksa_task_example ex;
    expect_failure(ksa_task_generate(&ex, KSA_TASK_NIAH_MULTIKEY, 200, 46, 2, &f, t), KSA_EINVAL,
                   "cannot make the niah-multikey example of seed 2 exactly 200 tokens long "
                   "with the tokenizer bpe-");
    assert_null(ex.prompt);
    ksa_task_filler_free(&f);
    ksa_tok_encoder_free(e);
    ksa_tok_close(t);
    ksa_tok_close(bytes);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, dt_setup_dir, dt_teardown_dir)
    const struct CMUnitTest tests[] = {
        T(every_task_fills_exactly_len_tokens),
        T(examples_are_a_pure_function_of_their_inputs),
        T(example_seeds_differ_and_fit_json_numbers),
        T(the_pass_key_appears_once_at_its_needle_and_depth),
        T(multikey_distractors_differ_from_the_asked_key_in_one_syllable),
        T(multivalue_answers_list_the_values_in_order_of_appearance),
        T(vartrack_answers_are_the_variables_holding_the_asked_value),
        T(depth_0_and_100_are_the_ends_of_the_filler),
        T(the_filler_is_the_files_words_from_a_seed_chosen_one),
        T(bad_arguments_are_errors_that_name_the_problem),
        T(the_minimum_length_holds_the_longest_content),
        T(bad_filler_files_are_refused_naming_the_file),
        T(a_bpe_tokenizer_spells_examples_of_exactly_len_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
