/* tasks.c - synthetic retrieval tasks: see tasks.h for what an example holds. */
#include "tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "data/tokenizer.h"

/* ---- the tokenizer ---------------------------------------------------------------------- */

/* The one place that turns text into ids: writes at most cap ids of text[0..bytes) (ids may
 * be NULL with cap 0) and returns how many the whole text takes, like snprintf. Today the
 * byte tokenizer, one id per byte. A BPE tokenizer goes here; plan_filler adds the counts
 * of pieces, which is exact for bytes only, so with BPE it needs a fix-up pass as well.    */
static size_t tokenize(int32_t *ids, size_t cap, const char *text, size_t bytes)
{
    if (ids)
        ksa_tokenizer_encode(ids, text, bytes < cap ? bytes : cap);
    return bytes;
}

static size_t count_tokens(const char *text)
{
    return tokenize(NULL, 0, text, strlen(text));
}

/* ---- task names --------------------------------------------------------------------------- */

static const char *const task_names[KSA_TASK_COUNT] = {
    [KSA_TASK_PASSKEY] = "passkey",
    [KSA_TASK_NIAH_MULTIKEY] = "niah-multikey",
    [KSA_TASK_NIAH_MULTIVALUE] = "niah-multivalue",
    [KSA_TASK_VARTRACK] = "vartrack",
};

const char *ksa_task_name(ksa_task_kind task)
{
    KSA_ASSERT((unsigned)task < KSA_TASK_COUNT, "task %d", (int)task);
    return task_names[task];
}

ksa_status ksa_task_parse(const char *name, ksa_task_kind *task)
{
    for (int t = 0; t < KSA_TASK_COUNT; t++)
        if (!strcmp(name, task_names[t])) {
            *task = (ksa_task_kind)t;
            return KSA_OK;
        }
    char known[256] = "";
    for (int t = 0; t < KSA_TASK_COUNT; t++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", t ? ", " : "",
                 task_names[t]);
    return ksa_fail(KSA_EINVAL, "unknown task '%s' (known: %s)", name, known);
}

/* ---- filler ------------------------------------------------------------------------------- */

/* RULER's noise haystack: repeated from its first word. */
static const char noise_text[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Length of the UTF-8 character starting at s[0] (at most n bytes), or 0 if it is not one
 * (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF, cut short). */
static size_t utf8_char_bytes(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min, cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        len = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        len = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* The text must be UTF-8 without NUL bytes: prompts are C strings and JSON text. */
static ksa_status check_text(const char *path, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (s[i] == 0)
            return ksa_fail(KSA_EFORMAT,
                            "filler file '%s' holds a NUL byte at offset %zu: "
                            "it must be UTF-8 text",
                            path, i);
        size_t len = utf8_char_bytes(s + i, n - i);
        if (!len)
            return ksa_fail(KSA_EFORMAT, "filler file '%s' is not UTF-8 text (byte offset %zu)",
                            path, i);
        i += len;
    }
    return KSA_OK;
}

/* Splits f->text[0..n) into words, cutting those over KSA_TASK_MAX_WORD_BYTES at
 * character boundaries. With word == NULL only counts them.                             */
static size_t split_words(const char *text, size_t n, size_t *word, uint8_t *bytes)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n_words = 0;
    for (size_t i = 0; i < n;) {
        if (is_space(s[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < n && !is_space(s[i])) {
            size_t len = utf8_char_bytes(s + i, n - i);
            len = len ? len : 1; /* checked text has none; keep going on other bytes */
            if (i + len - start > KSA_TASK_MAX_WORD_BYTES)
                break; /* the piece is full: the rest of the word starts the next one */
            i += len;
        }
        if (word) {
            word[n_words] = start;
            bytes[n_words] = (uint8_t)(i - start);
        }
        n_words++;
    }
    return n_words;
}

static ksa_status read_file(const char *path, char **text, size_t *n)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return ksa_fail(KSA_EIO, "cannot read filler file '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ksa_fail(KSA_EIO, "filler file '%s' is not a regular file", path);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ksa_fail(KSA_EIO, "cannot read filler file '%s': %s", path, strerror(errno));
    *n = (size_t)st.st_size;
    *text = ksa_alloc(*n + 1);
    size_t got = fread(*text, 1, *n, fp);
    int bad = got != *n || ferror(fp);
    fclose(fp);
    if (bad) {
        ksa_free(*text);
        *text = NULL;
        return ksa_fail(KSA_EIO, "cannot read filler file '%s' (%zu of %zu bytes read)", path, got,
                        *n);
    }
    (*text)[*n] = '\0';
    return KSA_OK;
}

ksa_status ksa_task_filler_open(ksa_task_filler *f, const char *spec)
{
    memset(f, 0, sizeof *f);
    char *text = NULL;
    size_t n = 0;
    int is_noise = !strcmp(spec, KSA_TASK_NOISE);
    if (is_noise) {
        n = sizeof noise_text - 1;
        text = ksa_alloc(n + 1);
        memcpy(text, noise_text, n + 1);
    } else {
        KSA_TRY(read_file(spec, &text, &n));
        ksa_status st = check_text(spec, (const unsigned char *)text, n);
        if (st != KSA_OK) {
            ksa_free(text);
            return st;
        }
    }
    size_t n_words = split_words(text, n, NULL, NULL);
    if (n_words == 0) {
        ksa_free(text);
        return ksa_fail(KSA_EFORMAT,
                        "filler file '%s' holds no words (it is empty or all "
                        "whitespace)",
                        spec);
    }
    f->word = ksa_alloc(n_words * sizeof *f->word);
    f->bytes = ksa_alloc(n_words * sizeof *f->bytes);
    split_words(text, n, f->word, f->bytes);
    f->n_words = n_words;
    f->text = text;
    f->is_noise = is_noise;
    size_t name_len = strlen(spec);
    f->name = ksa_alloc(name_len + 1);
    memcpy(f->name, spec, name_len + 1);
    return KSA_OK;
}

void ksa_task_filler_free(ksa_task_filler *f)
{
    ksa_free(f->name), ksa_free(f->text), ksa_free(f->word), ksa_free(f->bytes);
    memset(f, 0, sizeof *f);
}

/* ---- drawing an example's content --------------------------------------------------------- *
 * With rng == NULL every draw gives the longest text of its kind (7-digit numbers), which
 * is what ksa_task_min_len measures; keys and names have fixed lengths.                    */

#define TEXT_CAP 128  /* bytes of a needle, question or answer, with the NUL */
#define VALUE_CAP 8   /* 7 digits and the NUL */
#define KEY_LETTERS 6 /* 3 syllables of consonant + vowel */
#define NAME_LETTERS 4

typedef struct {
    char needle[KSA_TASK_MAX_NEEDLES][TEXT_CAP];
    double at[KSA_TASK_MAX_NEEDLES]; /* where in the filler: a fraction in [0, 1] */
    int target[KSA_TASK_MAX_NEEDLES];
    size_t n_needles; /* needle 0 is the one `depth` places */
    char question[TEXT_CAP];
    char answer[TEXT_CAP];
} task_content;

static uint64_t draw_below(ksa_rng *r, uint64_t n)
{
    return r ? ksa_rng_next(r) % n : 0; /* bias below 2^-50 for the small n used here */
}

static double draw_unit(ksa_rng *r)
{
    return r ? ksa_rng_uniform(r) : 0.0;
}

/* A number of 5 to 7 digits (first not 0) unlike the n_used in used. */
static void draw_value(char *out, ksa_rng *r, char used[][VALUE_CAP], size_t n_used)
{
    for (;;) {
        size_t digits = r ? 5 + (size_t)draw_below(r, 3) : 7;
        for (size_t i = 0; i < digits; i++)
            out[i] = r ? (char)((i ? '0' : '1') + draw_below(r, i ? 10 : 9)) : '9';
        out[digits] = '\0';
        size_t k = 0;
        while (k < n_used && strcmp(out, used[k]) != 0)
            k++;
        if (k == n_used || !r)
            return;
    }
}

static const char consonants[] = "bdfgklmnprstvz";
static const char vowels[] = "aeiou";

static void draw_syllable(char *out, ksa_rng *r)
{
    out[0] = consonants[draw_below(r, sizeof consonants - 1)];
    out[1] = vowels[draw_below(r, sizeof vowels - 1)];
}

/* A key: 3 syllables ("tavori"). */
static void draw_key(char *out, ksa_rng *r)
{
    for (int s = 0; s < KEY_LETTERS / 2; s++)
        draw_syllable(out + 2 * s, r);
    out[KEY_LETTERS] = '\0';
}

/* A distractor key: `key` with one syllable replaced, unlike the n_used keys in used (the
 * asked key among them). */
static void draw_similar_key(char *out, const char *key, ksa_rng *r, char used[][KEY_LETTERS + 1],
                             size_t n_used)
{
    for (;;) {
        memcpy(out, key, KEY_LETTERS + 1);
        size_t s = (size_t)draw_below(r, KEY_LETTERS / 2);
        draw_syllable(out + 2 * s, r);
        size_t k = 0;
        while (k < n_used && strcmp(out, used[k]) != 0)
            k++;
        if (k == n_used || !r)
            return;
    }
}

/* A variable name of 4 capitals unlike the n_used in used. */
static void draw_name(char *out, ksa_rng *r, char used[][NAME_LETTERS + 1], size_t n_used)
{
    for (;;) {
        for (int i = 0; i < NAME_LETTERS; i++)
            out[i] = (char)('A' + draw_below(r, 26));
        out[NAME_LETTERS] = '\0';
        size_t k = 0;
        while (k < n_used && strcmp(out, used[k]) != 0)
            k++;
        if (k == n_used || !r)
            return;
    }
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* n fractions at[0] = first, at[1..n) drawn in [first, 1] and sorted: the first of a group
 * of needles that must keep their order (values in order of appearance, a chain). */
static void draw_after(double *at, size_t n, double first, ksa_rng *r)
{
    at[0] = first;
    for (size_t i = 1; i < n; i++)
        at[i] = first + (1 - first) * draw_unit(r);
    qsort(at + 1, n - 1, sizeof *at, compare_doubles);
}

#define MULTI_NEEDLES 4 /* multikey: the asked key and 3 distractors; multivalue: 4 values */
#define CHAINS 2
#define CHAIN_VARS 4 /* a value and 3 copies */

static void draw_passkey(task_content *c, double at, ksa_rng *r)
{
    char v[1][VALUE_CAP];
    draw_value(v[0], r, v, 0);
    snprintf(c->needle[0], TEXT_CAP, "The pass key is %s.", v[0]);
    c->at[0] = at;
    c->target[0] = 1;
    c->n_needles = 1;
    snprintf(c->question, TEXT_CAP, "What is the pass key? The pass key is ");
    snprintf(c->answer, TEXT_CAP, "%s", v[0]);
}

static void draw_multikey(task_content *c, double at, ksa_rng *r)
{
    char key[MULTI_NEEDLES][KEY_LETTERS + 1], value[MULTI_NEEDLES][VALUE_CAP];
    draw_key(key[0], r);
    for (size_t i = 0; i < MULTI_NEEDLES; i++) {
        if (i > 0)
            draw_similar_key(key[i], key[0], r, key, i);
        draw_value(value[i], r, value, i);
        snprintf(c->needle[i], TEXT_CAP, "The number for %s is %s.", key[i], value[i]);
        c->at[i] = i ? draw_unit(r) : at;
        c->target[i] = i == 0;
    }
    c->n_needles = MULTI_NEEDLES;
    snprintf(c->question, TEXT_CAP, "What is the number for %s? The number for %s is ", key[0],
             key[0]);
    snprintf(c->answer, TEXT_CAP, "%s", value[0]);
}

static void draw_multivalue(task_content *c, double at, ksa_rng *r)
{
    char key[KEY_LETTERS + 1], value[MULTI_NEEDLES][VALUE_CAP];
    draw_key(key, r);
    draw_after(c->at, MULTI_NEEDLES, at, r);
    c->answer[0] = '\0';
    for (size_t i = 0; i < MULTI_NEEDLES; i++) {
        draw_value(value[i], r, value, i);
        snprintf(c->needle[i], TEXT_CAP, "One number for %s is %s.", key, value[i]);
        c->target[i] = 1;
        snprintf(c->answer + strlen(c->answer), TEXT_CAP - strlen(c->answer), "%s%s", i ? ", " : "",
                 value[i]);
    }
    c->n_needles = MULTI_NEEDLES;
    snprintf(c->question, TEXT_CAP, "What are all the numbers for %s? The numbers for %s are ", key,
             key);
}

/* Chain 0 is asked for: it starts at `at`; chain 1 anywhere. Each chain's copies come after
 * its value (draw_after), so its names appear in chain order. */
static void draw_vartrack(task_content *c, double at, ksa_rng *r)
{
    char name[CHAINS * CHAIN_VARS][NAME_LETTERS + 1], value[CHAINS][VALUE_CAP];
    c->answer[0] = '\0';
    for (size_t ch = 0; ch < CHAINS; ch++) {
        draw_value(value[ch], r, value, ch);
        draw_after(c->at + ch * CHAIN_VARS, CHAIN_VARS, ch ? draw_unit(r) : at, r);
        for (size_t v = 0; v < CHAIN_VARS; v++) {
            size_t i = ch * CHAIN_VARS + v;
            draw_name(name[i], r, name, i);
            if (v == 0)
                snprintf(c->needle[i], TEXT_CAP, "VAR %s = %s.", name[i], value[ch]);
            else
                snprintf(c->needle[i], TEXT_CAP, "VAR %s = VAR %s.", name[i], name[i - 1]);
            c->target[i] = ch == 0;
            if (ch == 0)
                snprintf(c->answer + strlen(c->answer), TEXT_CAP - strlen(c->answer), "%s%s",
                         v ? ", " : "", name[i]);
        }
    }
    c->n_needles = CHAINS * CHAIN_VARS;
    snprintf(c->question, TEXT_CAP, "Which variables are equal to %s? They are ", value[0]);
}

/* at: the depth as a fraction; r NULL: the longest content (see above). */
static void draw_content(task_content *c, ksa_task_kind task, double at, ksa_rng *r)
{
    memset(c, 0, sizeof *c);
    switch (task) {
    case KSA_TASK_PASSKEY:
        draw_passkey(c, at, r);
        break;
    case KSA_TASK_NIAH_MULTIKEY:
        draw_multikey(c, at, r);
        break;
    case KSA_TASK_NIAH_MULTIVALUE:
        draw_multivalue(c, at, r);
        break;
    case KSA_TASK_VARTRACK:
        draw_vartrack(c, at, r);
        break;
    default:
        KSA_ASSERT(0, "task %d", (int)task);
    }
}

/* Tokens of everything but the filler: the needles joined by separators, "\n" + question,
 * the answer and end-of-text. */
static size_t fixed_tokens(const task_content *c)
{
    size_t sep = count_tokens(" "),
           n = count_tokens("\n") + count_tokens(c->question) + count_tokens(c->answer) + 1;
    for (size_t i = 0; i < c->n_needles; i++)
        n += count_tokens(c->needle[i]) + (i ? sep : 0);
    return n;
}

size_t ksa_task_min_len(ksa_task_kind task)
{
    task_content c;
    draw_content(&c, task, 0.0, NULL);
    return fixed_tokens(&c);
}

/* ---- the filler's share and the assembly -------------------------------------------------- */

/* The filler: n words of the stream from `first` on, then padding. Each word costs its
 * tokens plus one separator; the needles' separators are in fixed_tokens.                */
typedef struct {
    size_t first;  /* stream index of the first word */
    size_t n;      /* words used */
    size_t tokens; /* sum over them of tokens(word) + separator */
    size_t bytes;  /* the same in bytes */
    size_t pad;    /* spaces before the question line: the rest of the budget */
} filler_plan;

static const char *word_text(const ksa_task_filler *f, size_t w)
{
    return f->text + f->word[w % f->n_words];
}

static size_t word_bytes(const ksa_task_filler *f, size_t w)
{
    return f->bytes[w % f->n_words];
}

static size_t word_cost(const ksa_task_filler *f, size_t w, size_t sep)
{
    return tokenize(NULL, 0, word_text(f, w), word_bytes(f, w)) + sep;
}

/* As many words as fit in budget tokens; the rest becomes padding. */
static filler_plan plan_filler(const ksa_task_filler *f, size_t first, size_t budget)
{
    size_t sep = count_tokens(" ");
    filler_plan p = {.first = first};
    for (;;) {
        size_t cost = word_cost(f, first + p.n, sep);
        if (p.tokens + cost > budget)
            break;
        p.tokens += cost;
        p.bytes += word_bytes(f, first + p.n) + 1;
        p.n++;
    }
    p.pad = (budget - p.tokens) / sep;
    return p;
}

/* Appends bytes to the prompt being built. */
typedef struct {
    char *text;   /* [cap + 1] */
    size_t bytes; /* used */
    size_t cap;
    size_t tokens; /* counted so far */
    int pieces;    /* context pieces so far: a separator goes before every one but the first */
} builder;

static void put(builder *b, const char *s, size_t n)
{
    KSA_ASSERT(b->bytes + n <= b->cap, "prompt of %zu bytes planned, %zu written", b->cap,
               b->bytes + n);
    memcpy(b->text + b->bytes, s, n);
    b->bytes += n;
    b->tokens += tokenize(NULL, 0, s, n);
}

/* A new context piece begins: a separator, unless it is the first. */
static void start_piece(builder *b)
{
    if (b->pieces++)
        put(b, " ", 1);
}

ksa_status ksa_task_generate(ksa_task_example *ex, ksa_task_kind task, size_t len, double depth,
                             uint64_t seed, const ksa_task_filler *filler)
{
    memset(ex, 0, sizeof *ex);
    KSA_ASSERT((unsigned)task < KSA_TASK_COUNT, "task %d", (int)task);
    if (!(depth >= 0 && depth <= 100))
        return ksa_fail(KSA_EINVAL, "depth %g is outside [0, 100] (percent of the filler)", depth);
    size_t min_len = ksa_task_min_len(task);
    if (len < min_len)
        return ksa_fail(KSA_EINVAL,
                        "length %zu is too short for %s: it needs at least %zu tokens (the "
                        "needles, the question, the answer and the end-of-text)",
                        len, ksa_task_name(task), min_len);

    ksa_rng r = ksa_rng_at(ksa_mix64(seed) ^ ksa_hash_string(ksa_task_name(task)));
    size_t first_word = filler->is_noise ? 0 : (size_t)draw_below(&r, filler->n_words);
    task_content c;
    draw_content(&c, task, depth / 100, &r);
    size_t fixed = fixed_tokens(&c);
    KSA_ASSERT(fixed <= len, "%s content of %zu tokens, longer than its minimum %zu",
               ksa_task_name(task), fixed, min_len);
    filler_plan p = plan_filler(filler, first_word, len - fixed);

    /* needles in order of appearance: by the filler token they go at, then drawing order */
    size_t k = c.n_needles, order[KSA_TASK_MAX_NEEDLES], goal[KSA_TASK_MAX_NEEDLES];
    for (size_t i = 0; i < k; i++) {
        goal[i] = (size_t)llround(c.at[i] * (double)p.tokens);
        size_t j = i;
        while (j > 0 && goal[order[j - 1]] > goal[i]) /* insertion sort: stable */
            order[j] = order[j - 1], j--;
        order[j] = i;
    }

    size_t needle_bytes = 0;
    for (size_t i = 0; i < k; i++)
        needle_bytes += strlen(c.needle[i]) + 1;
    builder b = {.cap = p.bytes + needle_bytes + p.pad + 1 + strlen(c.question)};
    b.text = ksa_alloc(b.cap + 1);
    size_t at = 0, next = 0; /* filler tokens before the current word boundary; next needle */
    for (size_t w = 0; w <= p.n; w++) {
        /* at the boundary before word w: place the needles nearer to it than to the next */
        size_t cost = w < p.n ? word_cost(filler, p.first + w, count_tokens(" ")) : 0;
        while (next < k && (w == p.n || 2 * goal[order[next]] <= 2 * at + cost)) {
            size_t i = order[next];
            start_piece(&b);
            ksa_task_needle *nd = &ex->needles[next];
            nd->pos = b.tokens;
            nd->tokens = count_tokens(c.needle[i]);
            nd->target = c.target[i];
            if (i == 0)
                ex->depth_needle = next;
            put(&b, c.needle[i], strlen(c.needle[i]));
            next++;
        }
        if (w < p.n) {
            start_piece(&b);
            put(&b, word_text(filler, p.first + w), word_bytes(filler, p.first + w));
            at += cost;
        }
    }
    for (size_t i = 0; i < p.pad; i++)
        put(&b, " ", 1);
    put(&b, "\n", 1);
    put(&b, c.question, strlen(c.question));
    b.text[b.bytes] = '\0';

    ex->task = task;
    ex->len = len;
    ex->depth = depth;
    ex->seed = seed;
    ex->prompt = b.text;
    size_t answer_bytes = strlen(c.answer);
    ex->answer = ksa_alloc(answer_bytes + 1);
    memcpy(ex->answer, c.answer, answer_bytes + 1);
    ex->n_needles = k;
    ex->filler_tokens = p.tokens;
    ex->ids = ksa_alloc(len * sizeof *ex->ids);
    ex->prompt_tokens = tokenize(ex->ids, len, b.text, b.bytes);
    KSA_ASSERT(ex->prompt_tokens < len, "prompt of %zu tokens for a length of %zu",
               ex->prompt_tokens, len);
    ex->answer_tokens =
        tokenize(ex->ids + ex->prompt_tokens, len - ex->prompt_tokens, ex->answer, answer_bytes);
    KSA_ASSERT(ex->prompt_tokens + ex->answer_tokens + 1 == len,
               "%s example of %zu + %zu + 1 tokens, planned as %zu (counts of pieces must add "
               "up: tasks.c, tokenize)",
               ksa_task_name(task), ex->prompt_tokens, ex->answer_tokens, len);
    ex->ids[len - 1] = KSA_TOKENIZER_EOT;
    return KSA_OK;
}

void ksa_task_example_free(ksa_task_example *ex)
{
    ksa_free(ex->prompt), ksa_free(ex->answer), ksa_free(ex->ids);
    memset(ex, 0, sizeof *ex);
}

uint64_t ksa_task_example_seed(uint64_t seed, size_t i)
{
    return ksa_mix64(ksa_mix64(seed + 0x9E3779B97F4A7C15ull) ^ (uint64_t)i) >> 11;
}

/* ---- depth lists -------------------------------------------------------------------- */
ksa_status ksa_task_parse_depths(const char *text, double **depths, size_t *n)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    double *d = ksa_alloc(cap * sizeof *d);
    size_t count = 0;
    for (const char *p = text;; p++) {
        const char *end_of_entry = strchr(p, ',');
        size_t len = end_of_entry ? (size_t)(end_of_entry - p) : strlen(p);
        char entry[64];
        snprintf(entry, sizeof entry, "%.*s", (int)len, p);
        char *end;
        errno = 0;
        double v = strtod(entry, &end);
        if (len == 0 || len >= sizeof entry || errno || end == entry || *end) {
            ksa_free(d);
            return ksa_fail(KSA_EINVAL,
                            "--depths: '%.*s' is not a number (give percentages "
                            "separated by commas: 0,25,50,75,100)",
                            (int)len, p);
        }
        d[count++] = v;
        if (!end_of_entry)
            break;
        p = end_of_entry;
    }
    *depths = d;
    *n = count;
    return KSA_OK;
}
