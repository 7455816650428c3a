/* tasks.c - synthetic retrieval tasks: see tasks.h for what an example holds. */
#include "tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "data/tok.h"
#include "data/tokenizer.h"

/* ---- the tokenizer ---------------------------------------------------------------------- */

/* The one place that turns text into ids. tok NULL is the byte tokenizer (one id per byte);
 * a BPE tokenizer encodes through enc. An encoding failure (BPE only: PCRE2 gave up) is
 * kept in st, which the caller checks; counts are then 0.                                 */
typedef struct {
    const ksa_tok *tok;   /* borrowed; NULL: bytes */
    ksa_tok_encoder *enc; /* owned; BPE only */
    ksa_status st;        /* the first failure */
} coder;

static void encode_text(coder *cd, const char *text, size_t bytes, ksa_ids *ids)
{
    if (!cd->tok) {
        ksa_ids_reserve(ids, bytes);
        ksa_tokenizer_encode(ids->v + ids->n, text, bytes);
        ids->n += bytes;
        return;
    }
    ksa_status st = ksa_tok_encode(cd->enc, text, bytes, ids);
    if (st != KSA_OK && cd->st == KSA_OK)
        cd->st = st;
}

static size_t count_bytes(coder *cd, const char *text, size_t bytes)
{
    if (!cd || !cd->tok)
        return bytes;
    ksa_ids ids = {0};
    encode_text(cd, text, bytes, &ids);
    size_t n = ids.n;
    ksa_ids_free(&ids);
    return n;
}

static size_t count_tokens(coder *cd, const char *text)
{
    return count_bytes(cd, text, strlen(text));
}

/* Tokens of sep + text[0..bytes) (a piece with the separator before it). */
static size_t count_joined(coder *cd, char sep, const char *text, size_t bytes)
{
    char buf[160]; /* a needle or question (< 128 bytes) or a filler word (<= 32) */
    KSA_ASSERT(bytes < sizeof buf, "piece of %zu bytes", bytes);
    buf[0] = sep;
    memcpy(buf + 1, text, bytes);
    return count_bytes(cd, buf, bytes + 1);
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

/* Tokens of everything but the filler, as pieces: the first needle, each further needle with
 * its separating space, "\n" + question, the answer and end-of-text. Exact for the byte
 * tokenizer; an estimate for BPE (ksa_task_generate then measures the whole example).     */
static size_t fixed_tokens(coder *cd, const task_content *c)
{
    size_t n =
        count_joined(cd, '\n', c->question, strlen(c->question)) + count_tokens(cd, c->answer) + 1;
    for (size_t i = 0; i < c->n_needles; i++)
        n += i ? count_joined(cd, ' ', c->needle[i], strlen(c->needle[i]))
               : count_tokens(cd, c->needle[i]);
    return n;
}

/* Measured in bytes for every tokenizer: a byte-level tokenizer never spells this ASCII text
 * in more tokens than bytes, so the minimum holds for BPE as well. */
size_t ksa_task_min_len(ksa_task_kind task)
{
    task_content c;
    draw_content(&c, task, 0.0, NULL);
    return fixed_tokens(NULL, &c);
}

/* ---- the filler's share and the assembly -------------------------------------------------- */

static const char *word_text(const ksa_task_filler *f, size_t w)
{
    return f->text + f->word[w % f->n_words];
}

static size_t word_bytes(const ksa_task_filler *f, size_t w)
{
    return f->bytes[w % f->n_words];
}

/* The filler tokens of a word: those of " " + word encoded alone (bytes: bytes + 1). */
static size_t word_cost(coder *cd, const ksa_task_filler *f, size_t w)
{
    return count_joined(cd, ' ', word_text(f, w), word_bytes(f, w));
}

/* How many words from stream index `first` on fit in budget tokens, by word_cost. */
static size_t words_fitting(coder *cd, const ksa_task_filler *f, size_t first, size_t budget)
{
    size_t n = 0, tokens = 0;
    for (;;) {
        size_t cost = word_cost(cd, f, first + n);
        if (tokens + cost > budget || cd->st != KSA_OK)
            return n;
        tokens += cost;
        n++;
    }
}

/* One attempt at an example: n filler words from `first`, then pad spaces before the
 * question's newline. */
typedef struct {
    char *text;   /* owned, [cap + 1]: the prompt */
    size_t bytes; /* used */
    size_t cap;
    size_t pieces; /* context pieces so far: a separator goes before every one but the first */
    size_t needle_at[KSA_TASK_MAX_NEEDLES], needle_end[KSA_TASK_MAX_NEEDLES]; /* bytes */
    size_t needle_of[KSA_TASK_MAX_NEEDLES]; /* needle of content c at each place */
    size_t filler_tokens;                   /* sum of word_cost over the n words */
    size_t boundaries;                      /* separators of the context (pieces - 1) */
    size_t wide_from; /* pieces from this one on have two spaces before them */
    ksa_ids ids;      /* prompt, answer, end-of-text */
    size_t prompt_tokens, answer_tokens;
} attempt;

static void put(attempt *a, const char *s, size_t n)
{
    KSA_ASSERT(a->bytes + n <= a->cap, "prompt of %zu bytes planned, %zu written", a->cap,
               a->bytes + n);
    memcpy(a->text + a->bytes, s, n);
    a->bytes += n;
}

/* A new context piece begins: a separator, unless it is the first; two spaces from piece
 * wide_from on. */
static void start_piece(attempt *a)
{
    if (a->pieces && a->pieces >= a->wide_from)
        put(a, " ", 1);
    if (a->pieces++)
        put(a, " ", 1);
}

/* Builds the prompt of n words from `first`, `pad` spaces before the question's newline
 * and the last `wide` separators of the context two spaces instead of one, and encodes it and
 * the answer. The needles go at the word boundaries nearest to their fractions of the filler
 * tokens. Sets a->boundaries to the number of separators (the most `wide` can be).          */
static void build(attempt *a, coder *cd, const task_content *c, const ksa_task_filler *f,
                  size_t first, size_t n, size_t pad, size_t wide)
{
    size_t cost_n = 0, bytes_n = 0;
    for (size_t w = 0; w < n; w++)
        cost_n += word_cost(cd, f, first + w), bytes_n += word_bytes(f, first + w) + 1;
    size_t k = c->n_needles, order[KSA_TASK_MAX_NEEDLES], goal[KSA_TASK_MAX_NEEDLES];
    /* needles in order of appearance: by the filler token they go at, then drawing order */
    for (size_t i = 0; i < k; i++) {
        goal[i] = (size_t)llround(c->at[i] * (double)cost_n);
        size_t j = i;
        while (j > 0 && goal[order[j - 1]] > goal[i]) /* insertion sort: stable */
            order[j] = order[j - 1], j--;
        order[j] = i;
    }
    size_t needle_bytes = 0;
    for (size_t i = 0; i < k; i++)
        needle_bytes += strlen(c->needle[i]) + 1;
    size_t cap = bytes_n + needle_bytes + pad + wide + 1 + strlen(c->question);
    if (cap > a->cap) {
        ksa_free(a->text);
        a->text = ksa_alloc(cap + 1);
        a->cap = cap;
    }
    a->boundaries = n + k - 1; /* k >= 1 */
    KSA_ASSERT(wide <= a->boundaries, "%zu wide separators of %zu", wide, a->boundaries);
    a->bytes = 0;
    a->pieces = 0;
    a->wide_from = n + k - wide; /* the piece whose separator is the first wide one */
    size_t at = 0, next = 0;     /* filler tokens before the current word boundary; next needle */
    for (size_t w = 0; w <= n; w++) {
        /* at the boundary before word w: place the needles nearer to it than to the next */
        size_t cost = w < n ? word_cost(cd, f, first + w) : 0;
        while (next < k && (w == n || 2 * goal[order[next]] <= 2 * at + cost)) {
            size_t i = order[next];
            start_piece(a);
            a->needle_of[next] = i;
            a->needle_at[next] = a->bytes;
            put(a, c->needle[i], strlen(c->needle[i]));
            a->needle_end[next] = a->bytes;
            next++;
        }
        if (w < n) {
            start_piece(a);
            put(a, word_text(f, first + w), word_bytes(f, first + w));
            at += cost;
        }
    }
    for (size_t i = 0; i < pad; i++)
        put(a, " ", 1);
    put(a, "\n", 1);
    put(a, c->question, strlen(c->question));
    a->text[a->bytes] = '\0';
    a->filler_tokens = cost_n;
    a->ids.n = 0;
    encode_text(cd, a->text, a->bytes, &a->ids);
    a->prompt_tokens = a->ids.n;
    encode_text(cd, c->answer, strlen(c->answer), &a->ids);
    a->answer_tokens = a->ids.n - a->prompt_tokens;
}

/* Tokens of the attempt: prompt, answer, end-of-text. */
static size_t total_tokens(const attempt *a)
{
    return a->prompt_tokens + a->answer_tokens + 1;
}

/* The needles' first tokens and token counts: the tokens holding their first and last bytes
 * (bytes: the byte offsets). KSA_EFORMAT if the prompt's tokens do not spell its bytes (a
 * BPE tokenizer's normalization changed the text).                                         */
static ksa_status locate_needles(const attempt *a, const ksa_tok *tok, size_t k,
                                 ksa_task_example *ex, const char *filler)
{
    if (!tok) {
        for (size_t j = 0; j < k; j++) {
            ex->needles[j].pos = a->needle_at[j];
            ex->needles[j].tokens = a->needle_end[j] - a->needle_at[j];
        }
        return KSA_OK;
    }
    size_t byte = 0, j = 0, end_j = 0; /* bytes before token t; next needle to start / end */
    for (size_t t = 0; t < a->prompt_tokens; t++) {
        size_t len = ksa_tok_decode(tok, NULL, 0, a->ids.v + t, 1, 0);
        for (; j < k && a->needle_at[j] < byte + len; j++)
            ex->needles[j].pos = t;
        for (; end_j < k && a->needle_end[end_j] <= byte + len; end_j++)
            ex->needles[end_j].tokens = t + 1 - ex->needles[end_j].pos;
        byte += len;
    }
    if (byte != a->bytes || j != k || end_j != k)
        return ksa_fail(KSA_EFORMAT,
                        "the tokenizer %s does not spell the prompt's bytes back (%zu bytes "
                        "from its tokens, %zu in the text): its normalization (NFC) changes "
                        "the filler '%s'; give a filler in NFC",
                        ksa_tok_name(tok), byte, a->bytes, filler);
    return KSA_OK;
}

#define MAX_GROW_PASSES 64 /* BPE: rounds of adding words by their estimated cost */
#define MAX_DROPPED 16     /* BPE: words dropped from the end while looking for a fit */
#define MAX_WIDEN_PASSES 8 /* BPE: rounds of correcting the number of wide separators */
#define MAX_PAD 64         /* BPE: spaces tried before the question's newline */

/* a, built with `pad` and no wide separator and shorter than len: widens the last separators
 * by the gap, corrected by what the encoding says. Returns 1 with a of exactly len tokens. */
static int widen(attempt *a, coder *cd, const task_content *c, const ksa_task_filler *f,
                 size_t first, size_t n, size_t pad, size_t len)
{
    size_t wide = len - total_tokens(a), boundaries = a->boundaries;
    for (int pass = 0; pass < MAX_WIDEN_PASSES && wide > 0 && wide <= boundaries; pass++) {
        build(a, cd, c, f, first, n, pad, wide);
        size_t total = total_tokens(a);
        if (cd->st != KSA_OK)
            return 1; /* the caller returns the failure */
        if (total == len)
            return 1;
        if (total < len)
            wide += len - total;
        else
            wide -= total - len < wide ? total - len : wide;
    }
    return 0;
}

/* Finds the example of exactly len tokens, leaving it built in a. First the most words that
 * fit by their word_cost. Bytes: that plan is exact, and the rest of the budget is spaces
 * before the question's newline. BPE: words are added by their cost while the encoded
 * example is shorter, dropped from the end while it is longer; the gap left (fewer tokens
 * than a word) is closed by widening that many of the last separators to two spaces (the
 * second space is a token of its own: " ", " word"), corrected a few times by what the
 * encoding says; if the separators cannot take it, with 1 to MAX_PAD spaces before the
 * newline as well; if that fails too, one more word is dropped and all is tried again.    */
static ksa_status fit(attempt *a, coder *cd, const task_content *c, const ksa_task_filler *f,
                      size_t first, size_t len, size_t fixed, ksa_task_kind task, uint64_t seed)
{
    size_t n = words_fitting(cd, f, first, len - fixed);
    build(a, cd, c, f, first, n, 0, 0);
    if (!cd->tok) {
        KSA_ASSERT(total_tokens(a) <= len, "byte plan of %zu tokens for %zu", total_tokens(a), len);
        if (total_tokens(a) < len)
            build(a, cd, c, f, first, n, len - total_tokens(a), 0);
        KSA_ASSERT(total_tokens(a) == len, "byte plan of %zu tokens for %zu", total_tokens(a), len);
        return KSA_OK;
    }
    for (int pass = 0; pass < MAX_GROW_PASSES && total_tokens(a) < len; pass++) {
        size_t more = words_fitting(cd, f, first + n, len - total_tokens(a));
        if (more == 0 || cd->st != KSA_OK)
            break;
        n += more;
        build(a, cd, c, f, first, n, 0, 0);
    }
    while (total_tokens(a) > len && n > 0 && cd->st == KSA_OK)
        build(a, cd, c, f, first, --n, 0, 0);
    for (size_t dropped = 0; dropped <= MAX_DROPPED && cd->st == KSA_OK; dropped++) {
        if (dropped > 0) {
            if (n == 0)
                break;
            build(a, cd, c, f, first, --n, 0, 0);
        }
        if (total_tokens(a) == len)
            return KSA_OK;
        if (total_tokens(a) > len)
            continue;
        if (widen(a, cd, c, f, first, n, 0, len))
            return cd->st;
        /* the gap is larger than the separators can take: spaces before the newline too */
        for (size_t pad = 1; pad <= MAX_PAD && cd->st == KSA_OK; pad++) {
            build(a, cd, c, f, first, n, pad, 0);
            if (total_tokens(a) == len)
                return cd->st;
            if (total_tokens(a) < len && widen(a, cd, c, f, first, n, pad, len))
                return cd->st;
        }
        build(a, cd, c, f, first, n, 0, 0); /* as it was, for the next drop */
    }
    if (cd->st != KSA_OK)
        return cd->st;
    return ksa_fail(KSA_EINVAL,
                    "cannot make the %s example of seed %llu exactly %zu tokens long with the "
                    "tokenizer %s: no number of filler words and of double spaces between them "
                    "gives that length (try another --len or --filler)",
                    ksa_task_name(task), (unsigned long long)seed, len, ksa_tok_name(cd->tok));
}

ksa_status ksa_task_generate(ksa_task_example *ex, ksa_task_kind task, size_t len, double depth,
                             uint64_t seed, const ksa_task_filler *filler, const ksa_tok *tok)
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
    if (tok && !ksa_tok_bpe(tok))
        tok = NULL; /* the byte tokenizer through tok.h: the same as NULL */

    ksa_rng r = ksa_rng_at(ksa_mix64(seed) ^ ksa_hash_string(ksa_task_name(task)));
    size_t first_word = filler->is_noise ? 0 : (size_t)draw_below(&r, filler->n_words);
    task_content c;
    draw_content(&c, task, depth / 100, &r);
    coder cd = {.tok = tok, .enc = tok ? ksa_tok_encoder_new(tok) : NULL, .st = KSA_OK};
    size_t fixed = fixed_tokens(&cd, &c);
    KSA_ASSERT(tok || fixed <= len, "%s content of %zu tokens, longer than its minimum %zu",
               ksa_task_name(task), fixed, min_len);
    attempt a = {0};
    ksa_status st =
        fit(&a, &cd, &c, filler, first_word, len, fixed < len ? fixed : len, task, seed);
    if (st == KSA_OK)
        st = locate_needles(&a, tok, c.n_needles, ex, filler->name);
    ksa_tok_encoder_free(cd.enc);
    if (st != KSA_OK) {
        ksa_free(a.text);
        ksa_ids_free(&a.ids);
        memset(ex, 0, sizeof *ex);
        return st;
    }
    for (size_t j = 0; j < c.n_needles; j++) {
        ex->needles[j].target = c.target[a.needle_of[j]];
        if (a.needle_of[j] == 0)
            ex->depth_needle = j;
    }
    ex->task = task;
    ex->len = len;
    ex->depth = depth;
    ex->seed = seed;
    ex->prompt = a.text;
    size_t answer_bytes = strlen(c.answer);
    ex->answer = ksa_alloc(answer_bytes + 1);
    memcpy(ex->answer, c.answer, answer_bytes + 1);
    ex->n_needles = c.n_needles;
    ex->filler_tokens = a.filler_tokens;
    ex->prompt_tokens = a.prompt_tokens;
    ex->answer_tokens = a.answer_tokens;
    KSA_ASSERT(total_tokens(&a) == len, "%s example of %zu + %zu + 1 tokens, fitted to %zu",
               ksa_task_name(task), a.prompt_tokens, a.answer_tokens, len);
    ex->ids = ksa_alloc(len * sizeof *ex->ids);
    memcpy(ex->ids, a.ids.v, (len - 1) * sizeof *ex->ids);
    ex->ids[len - 1] = tok ? ksa_tok_eot(tok) : KSA_TOKENIZER_EOT;
    ksa_ids_free(&a.ids);
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
