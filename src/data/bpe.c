/* bpe.c - byte-level BPE from a tokenizer.json: see bpe.h. cJSON parses the file, PCRE2
 * runs the split regex, utf8proc does NFC, XXH3-64 (libxxhash) names the tokenizer.      */
#include "data/bpe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "data/path.h"

#define HOLE UINT32_MAX        /* tok_len of an id that no token has */
#define MAX_ID (1 << 24)       /* ids are below it: vocabularies are far smaller */
#define CACHE_MAX_WORD 64      /* longer words are not cached */
#define CACHE_SLOTS (1u << 16) /* per encoder; emptied when half full */

/* GPT-2's pre-tokenizer regex, used by ByteLevel{use_regex: true}. */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* The case-insensitive group of the Qwen2/GPT-4 regexes, spelt out the way the reference
 * (transformers.js, which JavaScript's RegExp forces to) does: Unicode caseless matching may
 * also take U+017F (long s) for 's' (PCRE2 does with PCRE2_UCP), the reference never does. */
static const char ci_group[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
static const char ci_group_spelled[] = "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

typedef struct {
    uint64_t key; /* left << 32 | right, of ids; 0 with rank < 0: empty */
    int32_t rank, merged;
} merge_slot;

typedef struct {
    const unsigned char *s; /* borrowed from the owner's blob */
    uint32_t len;
    int32_t id;
} added_token;

struct ksa_bpe {
    char *what;                      /* the file, for messages */
    char name[KSA_BPE_NAME_LEN + 1]; /* "bpe-<hex>" */
    unsigned char *json;             /* copy of the file's bytes */
    size_t json_n;
    size_t V;
    int32_t eot;
    unsigned char *blob; /* every token's bytes */
    size_t blob_n, blob_cap;
    uint32_t *tok_off, *tok_len; /* [V]; tok_len HOLE: no token */
    unsigned char *special;      /* [V]: an added token marked special */
    int32_t byte_id[256];
    merge_slot *merges; /* open addressing, [merge_mask + 1] */
    size_t merge_mask;
    added_token *added;
    size_t n_added;
    unsigned char added_first[256]; /* some added token starts with this byte */
    int nfc;
    pcre2_code *re;
};

typedef struct {
    int32_t rank, pos, left, right;
} heap_entry;

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, ids_n; /* key_len 0: empty */
} cache_slot;

struct ksa_bpe_encoder {
    const ksa_bpe *b;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    unsigned char *clean; /* text with invalid UTF-8 replaced */
    size_t clean_cap;
    int32_t *sym, *next, *prev; /* [sym_cap]: the symbols of the word being merged */
    size_t sym_cap;
    heap_entry *heap;
    size_t heap_n, heap_cap;
    cache_slot *slots; /* [CACHE_SLOTS] */
    size_t slots_used;
    unsigned char *keys; /* cached words' bytes */
    size_t keys_n, keys_cap;
    ksa_ids cached; /* cached words' ids */
};

/* ---- small helpers ------------------------------------------------------------------ */

/* p grown to hold at least need elements of elem bytes (contents kept). */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = ksa_alloc(c * elem);
    if (p && *cap)
        memcpy(q, p, *cap * elem);
    ksa_free(p);
    *cap = c;
    return q;
}

void ksa_ids_push(ksa_ids *ids, int32_t id)
{
    if (ids->n == ids->cap)
        ids->v = grow(ids->v, &ids->cap, ids->n + 1, sizeof *ids->v);
    ids->v[ids->n++] = id;
}

void ksa_ids_reserve(ksa_ids *ids, size_t more)
{
    ids->v = grow(ids->v, &ids->cap, ids->n + more, sizeof *ids->v);
}

void ksa_ids_free(ksa_ids *ids)
{
    ksa_free(ids->v);
    memset(ids, 0, sizeof *ids);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* One UTF-8 character of s[0..n) (valid, from cJSON) into *cp; returns its length, 0 on a
 * malformed one. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t v = len == 1 ? c : c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

/* GPT-2's bytes_to_unicode, inverted: code point -> byte, or -1. [324] */
static void byte_alphabet(int *cp_to_byte, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cp_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        cp_to_byte[printable ? b : 256 + extra++] = b;
    }
}

/* ---- loading -------------------------------------------------------------------------- */

/* Appends the bytes that the byte-level string s spells to the blob; sets *off, *len. */
static ksa_status add_token_bytes(ksa_bpe *b, const char *s, const int *cp_to_byte, int mapped,
                                  uint32_t *off, uint32_t *len, const char *what)
{
    size_t n = strlen(s);
    b->blob = grow(b->blob, &b->blob_cap, b->blob_n + n, 1);
    *off = (uint32_t)b->blob_n;
    const unsigned char *u = (const unsigned char *)s;
    if (!mapped) {
        memcpy(b->blob + b->blob_n, s, n);
        b->blob_n += n;
    } else {
        for (size_t i = 0; i < n;) {
            uint32_t cp = 0;
            size_t l = utf8_next(u + i, n - i, &cp);
            if (l == 0 || cp >= 324 || cp_to_byte[cp] < 0)
                return ksa_fail(KSA_EFORMAT,
                                "tokenizer '%s': %s '%.60s' has a character outside the "
                                "byte-level alphabet",
                                b->what, what, s);
            b->blob[b->blob_n++] = (unsigned char)cp_to_byte[cp];
            i += l;
        }
    }
    *len = (uint32_t)(b->blob_n - *off);
    return KSA_OK;
}

typedef struct {
    int32_t *slot; /* id per slot, -1 empty */
    size_t mask;
} vocab_index;

static uint64_t bytes_hash(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static int32_t vocab_find(const ksa_bpe *b, const vocab_index *vi, const void *p, size_t n)
{
    for (size_t i = bytes_hash(p, n) & vi->mask;; i = (i + 1) & vi->mask) {
        int32_t id = vi->slot[i];
        if (id < 0)
            return -1;
        if (b->tok_len[id] == n && !memcmp(b->blob + b->tok_off[id], p, n))
            return id;
    }
}

static void vocab_insert(const ksa_bpe *b, vocab_index *vi, int32_t id)
{
    size_t i = bytes_hash(b->blob + b->tok_off[id], b->tok_len[id]) & vi->mask;
    while (vi->slot[i] >= 0)
        i = (i + 1) & vi->mask;
    vi->slot[i] = id;
}

static merge_slot *merge_find(const ksa_bpe *b, uint64_t key)
{
    for (size_t i = mix(key) & b->merge_mask;; i = (i + 1) & b->merge_mask) {
        merge_slot *m = &b->merges[i];
        if (m->rank < 0 || m->key == key)
            return m;
    }
}

static const char *json_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_true(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* A string option that must be absent, null or "". */
static int json_empty_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]);
}

static ksa_status check_model(ksa_bpe *b, const cJSON *model)
{
    const char *type = json_string(model, "type");
    if (!cJSON_IsObject(model))
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s' has no \"model\" object", b->what);
    if (!type || strcmp(type, "BPE") != 0)
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s' is a %s model; ksa reads byte-level BPE tokenizers only",
                        b->what, type ? type : "(untyped)");
    if (!json_empty_string(model, "continuing_subword_prefix") ||
        !json_empty_string(model, "end_of_word_suffix"))
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s': a BPE model with continuing_subword_prefix or "
                        "end_of_word_suffix is not byte-level BPE (not supported)",
                        b->what);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s': BPE dropout is not supported", b->what);
    if (json_true(model, "byte_fallback") || json_true(model, "ignore_merges"))
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s': byte_fallback and ignore_merges are not supported",
                        b->what);
    return KSA_OK;
}

/* The pre-tokenizer into the regex to compile (static or pattern owned by the json). */
static ksa_status check_pre_tokenizer(ksa_bpe *b, const cJSON *pt, const char **regex)
{
    const char *type = json_string(pt, "type");
    const cJSON *split = NULL, *byte_level = NULL;
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        if (cJSON_GetArraySize(list) == 2) {
            split = cJSON_GetArrayItem(list, 0);
            byte_level = cJSON_GetArrayItem(list, 1);
        }
    } else if (type && !strcmp(type, "ByteLevel")) {
        byte_level = pt;
    }
    const char *bl = byte_level ? json_string(byte_level, "type") : NULL;
    const char *sp = split ? json_string(split, "type") : NULL;
    if (!bl || strcmp(bl, "ByteLevel") != 0 || (split && (!sp || strcmp(sp, "Split") != 0)))
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s': unsupported pre_tokenizer (ksa reads Sequence[Split, "
                        "ByteLevel] or ByteLevel, as GPT-2 and Qwen2/Qwen3 have)",
                        b->what);
    if (json_true(byte_level, "add_prefix_space"))
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s': ByteLevel add_prefix_space is not supported",
                        b->what);
    const cJSON *use_regex = cJSON_GetObjectItemCaseSensitive(byte_level, "use_regex");
    int byte_level_regex = !use_regex || cJSON_IsTrue(use_regex);
    if (!split) {
        if (!byte_level_regex)
            return ksa_fail(KSA_EFORMAT,
                            "tokenizer '%s': a ByteLevel pre_tokenizer without a regex and no "
                            "Split is not supported",
                            b->what);
        *regex = gpt2_regex;
        return KSA_OK;
    }
    if (byte_level_regex)
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s': a Split followed by ByteLevel with use_regex true is "
                        "not supported",
                        b->what);
    const char *behavior = json_string(split, "behavior");
    const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const char *re = json_string(pattern, "Regex");
    if (!re)
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s': the Split pre_tokenizer has no pattern.Regex",
                        b->what);
    if (!behavior || strcmp(behavior, "Isolated") != 0 || json_true(split, "invert"))
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s': Split behavior '%s'%s is not supported (only Isolated)",
                        b->what, behavior ? behavior : "(none)",
                        json_true(split, "invert") ? " with invert" : "");
    *regex = re;
    return KSA_OK;
}

/* ECMAScript's \s (WhiteSpace and LineTerminator), the set the reference's regexes use: PCRE2's
 * own \s differs (it takes U+0085 and U+180E, leaves U+FEFF). */
static const char js_space[] = "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}"
                               "\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}";

/* The regex as PCRE2 is given it (ksa_alloc'ed): the reference's spelling of the
 * case-insensitive group (see ci_group), and \s / \S as ECMAScript's set (js_space), in and
 * out of character classes (\S inside a class keeps PCRE2's meaning, ASCII without UCP). */
static char *pcre2_spelling(const char *regex)
{
    size_t n = strlen(regex), cap = 4 * n + 256, o = 0;
    char *out = ksa_alloc(cap + sizeof js_space * (n / 2 + 1) + sizeof ci_group_spelled);
    int in_class = 0;
    for (size_t i = 0; i < n;) {
        if (!in_class && !strncmp(regex + i, ci_group, strlen(ci_group))) {
            memcpy(out + o, ci_group_spelled, strlen(ci_group_spelled));
            o += strlen(ci_group_spelled), i += strlen(ci_group);
        } else if (regex[i] == '\\' && i + 1 < n) {
            char c = regex[i + 1];
            if (c == 's' || (c == 'S' && !in_class)) {
                const char *open = in_class ? "" : c == 's' ? "[" : "[^";
                o += (size_t)sprintf(out + o, "%s%s%s", open, js_space, in_class ? "" : "]");
            } else {
                out[o++] = regex[i], out[o++] = c;
            }
            i += 2;
        } else if (!in_class && regex[i] == '[') {
            out[o++] = regex[i++];
            in_class = 1;
            if (i < n && regex[i] == '^')
                out[o++] = regex[i++];
            if (i < n && regex[i] == ']') /* a leading ] is a literal */
                out[o++] = regex[i++];
        } else {
            if (in_class && regex[i] == ']')
                in_class = 0;
            out[o++] = regex[i++];
        }
    }
    out[o] = 0;
    return out;
}

static ksa_status compile_regex(ksa_bpe *b, const char *regex)
{
    char *owned = pcre2_spelling(regex);
    int err = 0;
    PCRE2_SIZE at = 0; /* in the respelt regex: not shown */
    /* no PCRE2_UCP: \d and \w stay ASCII, as in ECMAScript; \p{..} needs no UCP */
    b->re = pcre2_compile((PCRE2_SPTR)owned, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &at, NULL);
    ksa_free(owned);
    if (!b->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return ksa_fail(KSA_EFORMAT,
                        "tokenizer '%s': PCRE2 cannot compile the pre_tokenizer regex '%.80s': %s",
                        b->what, regex, (const char *)msg);
    }
    pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE); /* without JIT: the interpreter, slower */
    return KSA_OK;
}

static ksa_status check_normalizer(ksa_bpe *b, const cJSON *nm)
{
    if (!nm || cJSON_IsNull(nm))
        return KSA_OK;
    const char *type = json_string(nm, "type");
    if (type && !strcmp(type, "NFC")) {
        b->nfc = 1;
        return KSA_OK;
    }
    return ksa_fail(KSA_EFORMAT,
                    "tokenizer '%s': unsupported normalizer '%s' (ksa reads none or NFC)", b->what,
                    type ? type : "(untyped)");
}

static ksa_status read_vocab(ksa_bpe *b, const cJSON *vocab, const int *cp_to_byte)
{
    if (!cJSON_IsObject(vocab) || !vocab->child)
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s': model.vocab is missing or empty", b->what);
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_ID ||
            v->valuedouble != (double)(int32_t)v->valuedouble)
            return ksa_fail(KSA_EFORMAT,
                            "tokenizer '%s': model.vocab entry '%.60s' has no valid id "
                            "(a whole number in [0, 2^24))",
                            b->what, v->string);
        if ((size_t)v->valueint + 1 > b->V)
            b->V = (size_t)v->valueint + 1;
    }
    return KSA_OK;
}

static ksa_status fill_vocab(ksa_bpe *b, const cJSON *vocab, const int *cp_to_byte)
{
    for (const cJSON *v = vocab->child; v; v = v->next) {
        int32_t id = v->valueint;
        if (b->tok_len[id] != HOLE)
            return ksa_fail(KSA_EFORMAT, "tokenizer '%s': model.vocab gives the id %d twice",
                            b->what, (int)id);
        KSA_TRY(add_token_bytes(b, v->string, cp_to_byte, 1, &b->tok_off[id], &b->tok_len[id],
                                "model.vocab entry"));
        if (b->tok_len[id] == 0)
            return ksa_fail(KSA_EFORMAT, "tokenizer '%s': model.vocab has an empty token (id %d)",
                            b->what, (int)id);
    }
    return KSA_OK;
}

static ksa_status read_added(ksa_bpe *b, const cJSON *added, const int *cp_to_byte)
{
    if (!added || cJSON_IsNull(added))
        return KSA_OK;
    if (!cJSON_IsArray(added))
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s': added_tokens is not a list", b->what);
    size_t n = (size_t)cJSON_GetArraySize(added);
    b->added = ksa_alloc_zero((n ? n : 1) * sizeof *b->added);
    size_t i = 0;
    for (const cJSON *t = added->child; t; t = t->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        const char *content = json_string(t, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_ID ||
            id->valuedouble != (double)(int32_t)id->valuedouble || !content || !content[0])
            return ksa_fail(KSA_EFORMAT,
                            "tokenizer '%s': added_tokens[%zu] lacks an id (a whole number in "
                            "[0, 2^24)) or a content",
                            b->what, i);
        if (json_true(t, "lstrip") || json_true(t, "rstrip") || json_true(t, "single_word"))
            return ksa_fail(KSA_EFORMAT,
                            "tokenizer '%s': added token '%.40s' has lstrip, rstrip or "
                            "single_word set (not supported)",
                            b->what, content);
        if ((size_t)id->valueint + 1 > b->V)
            b->V = (size_t)id->valueint + 1;
    }
    return KSA_OK;
}

static ksa_status fill_added(ksa_bpe *b, const cJSON *added, const int *cp_to_byte)
{
    if (!b->added)
        return KSA_OK;
    for (const cJSON *t = added->child; t; t = t->next) {
        int32_t id = cJSON_GetObjectItemCaseSensitive(t, "id")->valueint;
        const char *content = json_string(t, "content");
        /* as the reference does: an added token's id is its, whatever the vocab said */
        KSA_TRY(add_token_bytes(b, content, cp_to_byte, 0, &b->tok_off[id], &b->tok_len[id],
                                "added token"));
        b->special[id] = (unsigned char)json_true(t, "special");
        b->added[b->n_added++] = (added_token){.len = b->tok_len[id], .id = id};
    }
    for (size_t i = 0; i < b->n_added; i++) {
        b->added[i].s = b->blob + b->tok_off[b->added[i].id];
        b->added_first[b->added[i].s[0]] = 1;
    }
    return KSA_OK;
}

static ksa_status read_merges(ksa_bpe *b, const cJSON *merges, const vocab_index *vi,
                              const int *cp_to_byte)
{
    if (!cJSON_IsArray(merges))
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s': model.merges is missing or not a list",
                        b->what);
    size_t n = (size_t)cJSON_GetArraySize(merges), cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    b->merges = ksa_alloc(cap * sizeof *b->merges);
    for (size_t i = 0; i < cap; i++)
        b->merges[i] = (merge_slot){.key = 0, .rank = -1};
    b->merge_mask = cap - 1;
    unsigned char *buf = NULL;
    size_t buf_cap = 0;
    ksa_status st = KSA_OK;
    size_t rank = 0;
    for (const cJSON *m = merges->child; m && st == KSA_OK; m = m->next, rank++) {
        const char *parts[2] = {NULL, NULL};
        char *joined = NULL;
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                size_t l = (size_t)(sp - m->valuestring);
                joined = ksa_alloc(strlen(m->valuestring) + 1);
                memcpy(joined, m->valuestring, strlen(m->valuestring) + 1);
                joined[l] = 0;
                parts[0] = joined, parts[1] = joined + l + 1;
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
            parts[0] = cJSON_GetArrayItem(m, 0)->valuestring;
            parts[1] = cJSON_GetArrayItem(m, 1)->valuestring;
        }
        int32_t ids[2] = {-1, -1};
        for (int k = 0; k < 2 && parts[0] && parts[1] && parts[k][0]; k++) {
            size_t len = strlen(parts[k]);
            buf = grow(buf, &buf_cap, len, 1);
            size_t bl = 0;
            for (size_t j = 0; j < len;) {
                uint32_t cp = 0;
                size_t l = utf8_next((const unsigned char *)parts[k] + j, len - j, &cp);
                if (l == 0 || cp >= 324 || cp_to_byte[cp] < 0) {
                    bl = 0;
                    break;
                }
                buf[bl++] = (unsigned char)cp_to_byte[cp];
                j += l;
            }
            ids[k] = bl ? vocab_find(b, vi, buf, bl) : -1;
        }
        if (ids[0] < 0 || ids[1] < 0) {
            st = ksa_fail(KSA_EFORMAT,
                          "tokenizer '%s': model.merges[%zu] is not a pair of tokens of the "
                          "vocab (\"a b\" or [\"a\", \"b\"])",
                          b->what, rank);
        } else {
            size_t l0 = b->tok_len[ids[0]], l1 = b->tok_len[ids[1]];
            buf = grow(buf, &buf_cap, l0 + l1, 1);
            memcpy(buf, b->blob + b->tok_off[ids[0]], l0);
            memcpy(buf + l0, b->blob + b->tok_off[ids[1]], l1);
            int32_t merged = vocab_find(b, vi, buf, l0 + l1);
            if (merged < 0)
                st = ksa_fail(KSA_EFORMAT,
                              "tokenizer '%s': model.merges[%zu] makes a token that is not in "
                              "the vocab",
                              b->what, rank);
            uint64_t key = (uint64_t)(uint32_t)ids[0] << 32 | (uint32_t)ids[1];
            merge_slot *s = merge_find(b, key);
            /* a pair listed twice keeps its last rank, as a map built from the list does */
            *s = (merge_slot){.key = key, .rank = (int32_t)rank, .merged = merged};
        }
        ksa_free(joined);
    }
    ksa_free(buf);
    return st;
}

static ksa_status find_eot(ksa_bpe *b)
{
    static const char *const names[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        for (size_t i = 0; i < b->n_added; i++)
            if (b->added[i].len == strlen(names[k]) &&
                !memcmp(b->added[i].s, names[k], b->added[i].len)) {
                b->eot = b->added[i].id;
                return KSA_OK;
            }
    return ksa_fail(KSA_EFORMAT,
                    "tokenizer '%s' has no end-of-text added token (<|endoftext|>, "
                    "<|end_of_text|>, </s> or <eos>)",
                    b->what);
}

static ksa_status load(ksa_bpe *b)
{
    cJSON *root = cJSON_ParseWithLength((const char *)b->json, b->json_n);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= (const char *)b->json && at <= (const char *)b->json + b->json_n
                         ? (size_t)(at - (const char *)b->json)
                         : 0;
        return ksa_fail(KSA_EFORMAT, "tokenizer '%s' is not valid JSON (near byte %zu)", b->what,
                        off);
    }
    int cp_to_byte[324];
    byte_alphabet(cp_to_byte, 324);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const char *regex = NULL;
    ksa_status st = check_model(b, model);
    if (st == KSA_OK)
        st = check_normalizer(b, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (st == KSA_OK)
        st =
            check_pre_tokenizer(b, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &regex);
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *dt = json_string(decoder, "type");
    if (st == KSA_OK && decoder && !cJSON_IsNull(decoder) && (!dt || strcmp(dt, "ByteLevel") != 0))
        st = ksa_fail(KSA_EFORMAT, "tokenizer '%s': unsupported decoder '%s' (only ByteLevel)",
                      b->what, dt ? dt : "(untyped)");
    if (st == KSA_OK)
        st = read_vocab(b, vocab, cp_to_byte);
    if (st == KSA_OK)
        st = read_added(b, added, cp_to_byte);
    vocab_index vi = {0};
    if (st == KSA_OK) {
        b->tok_off = ksa_alloc_zero(b->V * sizeof *b->tok_off);
        b->tok_len = ksa_alloc(b->V * sizeof *b->tok_len);
        b->special = ksa_alloc_zero(b->V);
        for (size_t i = 0; i < b->V; i++)
            b->tok_len[i] = HOLE;
        st = fill_vocab(b, vocab, cp_to_byte);
    }
    if (st == KSA_OK) {
        size_t cap = 16;
        while (cap < 2 * b->V)
            cap *= 2;
        vi.slot = ksa_alloc(cap * sizeof *vi.slot);
        vi.mask = cap - 1;
        for (size_t i = 0; i < cap; i++)
            vi.slot[i] = -1;
        for (size_t id = 0; id < b->V; id++)
            if (b->tok_len[id] != HOLE)
                vocab_insert(b, &vi, (int32_t)id);
        for (int c = 0; c < 256 && st == KSA_OK; c++) {
            unsigned char byte = (unsigned char)c;
            b->byte_id[c] = vocab_find(b, &vi, &byte, 1);
            if (b->byte_id[c] < 0)
                st = ksa_fail(KSA_EFORMAT,
                              "tokenizer '%s': model.vocab lacks the token of byte 0x%02x (a "
                              "byte-level vocab holds all 256)",
                              b->what, c);
        }
    }
    if (st == KSA_OK)
        st = read_merges(b, cJSON_GetObjectItemCaseSensitive(model, "merges"), &vi, cp_to_byte);
    if (st == KSA_OK)
        st = fill_added(b, added, cp_to_byte);
    if (st == KSA_OK)
        st = find_eot(b);
    if (st == KSA_OK)
        st = compile_regex(b, regex);
    ksa_free(vi.slot);
    cJSON_Delete(root);
    return st;
}

ksa_status ksa_bpe_open_memory(ksa_bpe **out, const void *json, size_t n, const char *what)
{
    *out = NULL;
    ksa_bpe *b = ksa_alloc_zero(sizeof *b);
    b->what = ksa_alloc(strlen(what) + 1);
    memcpy(b->what, what, strlen(what) + 1);
    b->json = ksa_alloc(n ? n : 1);
    memcpy(b->json, json, n);
    b->json_n = n;
    snprintf(b->name, sizeof b->name, "bpe-%016llx", (unsigned long long)XXH3_64bits(json, n));
    b->eot = -1;
    ksa_status st = load(b);
    if (st != KSA_OK) {
        ksa_bpe_close(b);
        return st;
    }
    *out = b;
    return KSA_OK;
}

ksa_status ksa_bpe_open_file(ksa_bpe **out, const char *path)
{
    *out = NULL;
    char *json;
    size_t n;
    KSA_TRY(ksa_path_read_all(path, "tokenizer", 0, &json, &n));
    ksa_status st = ksa_bpe_open_memory(out, json, n, path);
    ksa_free(json);
    return st;
}

void ksa_bpe_close(ksa_bpe *b)
{
    if (!b)
        return;
    pcre2_code_free(b->re);
    ksa_free(b->what), ksa_free(b->json), ksa_free(b->blob);
    ksa_free(b->tok_off), ksa_free(b->tok_len), ksa_free(b->special);
    ksa_free(b->merges), ksa_free(b->added);
    ksa_free(b);
}

const char *ksa_bpe_name(const ksa_bpe *b)
{
    return b->name;
}

size_t ksa_bpe_vocab_size(const ksa_bpe *b)
{
    return b->V;
}

int32_t ksa_bpe_eot(const ksa_bpe *b)
{
    return b->eot;
}

const void *ksa_bpe_json(const ksa_bpe *b, size_t *n)
{
    *n = b->json_n;
    return b->json;
}

/* ---- encoding ------------------------------------------------------------------------- */

ksa_bpe_encoder *ksa_bpe_encoder_new(const ksa_bpe *b)
{
    ksa_bpe_encoder *e = ksa_alloc_zero(sizeof *e);
    e->b = b;
    e->md = pcre2_match_data_create_from_pattern(b->re, NULL);
    e->mctx = pcre2_match_context_create(NULL);
    e->jit_stack = pcre2_jit_stack_create(32 << 10, 64 << 20, NULL);
    KSA_ASSERT(e->md && e->mctx && e->jit_stack, "out of memory for PCRE2 match data");
    pcre2_jit_stack_assign(e->mctx, NULL, e->jit_stack);
    e->slots = ksa_alloc_zero(CACHE_SLOTS * sizeof *e->slots);
    return e;
}

void ksa_bpe_encoder_free(ksa_bpe_encoder *e)
{
    if (!e)
        return;
    pcre2_match_data_free(e->md);
    pcre2_match_context_free(e->mctx);
    pcre2_jit_stack_free(e->jit_stack);
    ksa_free(e->clean), ksa_free(e->sym), ksa_free(e->next), ksa_free(e->prev);
    ksa_free(e->heap), ksa_free(e->slots), ksa_free(e->keys);
    ksa_ids_free(&e->cached);
    ksa_free(e);
}

static int heap_less(const heap_entry *a, const heap_entry *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push_pair(ksa_bpe_encoder *e, int32_t pos)
{
    int32_t q = e->next[pos];
    if (q < 0)
        return;
    const merge_slot *m =
        merge_find(e->b, (uint64_t)(uint32_t)e->sym[pos] << 32 | (uint32_t)e->sym[q]);
    if (m->rank < 0)
        return;
    e->heap = grow(e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap);
    heap_entry x = {m->rank, pos, e->sym[pos], e->sym[q]};
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&x, &e->heap[p]))
            break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = x;
}

static heap_entry heap_pop(ksa_bpe_encoder *e)
{
    heap_entry top = e->heap[0], x = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!heap_less(&e->heap[c], &x))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n)
        e->heap[i] = x;
    return top;
}

/* The merges of one word w[0..n) (n >= 1): appends its ids. */
static void bpe_word(ksa_bpe_encoder *e, const unsigned char *w, size_t n, ksa_ids *ids)
{
    const ksa_bpe *b = e->b;
    if (n == 1) {
        ksa_ids_push(ids, b->byte_id[w[0]]);
        return;
    }
    if (n > e->sym_cap) {
        ksa_free(e->sym), ksa_free(e->next), ksa_free(e->prev);
        size_t cap = 64;
        while (cap < n)
            cap *= 2;
        e->sym = ksa_alloc(cap * sizeof *e->sym);
        e->next = ksa_alloc(cap * sizeof *e->next);
        e->prev = ksa_alloc(cap * sizeof *e->prev);
        e->sym_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = b->byte_id[w[i]];
        e->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        e->prev[i] = (int32_t)i - 1;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        heap_push_pair(e, (int32_t)i);
    while (e->heap_n) {
        heap_entry h = heap_pop(e);
        int32_t q = e->next[h.pos];
        /* stale: a symbol's id only ever grows into a longer token, so equal ids mean the
         * same pair is still there */
        if (e->sym[h.pos] != h.left || q < 0 || e->sym[q] != h.right)
            continue;
        const merge_slot *m = merge_find(b, (uint64_t)(uint32_t)h.left << 32 | (uint32_t)h.right);
        e->sym[h.pos] = m->merged;
        e->sym[q] = -1;
        e->next[h.pos] = e->next[q];
        if (e->next[q] >= 0)
            e->prev[e->next[q]] = h.pos;
        if (e->prev[h.pos] >= 0)
            heap_push_pair(e, e->prev[h.pos]);
        heap_push_pair(e, h.pos);
    }
    for (int32_t i = 0; i >= 0; i = e->next[i])
        ksa_ids_push(ids, e->sym[i]);
}

/* One pre-tokenized word: from the cache, else merged (and cached when short). */
static void encode_word(ksa_bpe_encoder *e, const unsigned char *w, size_t n, ksa_ids *ids)
{
    if (n > CACHE_MAX_WORD || n == 1) {
        bpe_word(e, w, n, ids);
        return;
    }
    uint64_t h = bytes_hash(w, n);
    size_t i = h & (CACHE_SLOTS - 1);
    for (;; i = (i + 1) & (CACHE_SLOTS - 1)) {
        cache_slot *s = &e->slots[i];
        if (!s->key_len)
            break;
        if (s->hash == h && s->key_len == n && !memcmp(e->keys + s->key_off, w, n)) {
            for (uint32_t k = 0; k < s->ids_n; k++)
                ksa_ids_push(ids, e->cached.v[s->ids_off + k]);
            return;
        }
    }
    size_t before = ids->n;
    bpe_word(e, w, n, ids);
    if (e->slots_used >= CACHE_SLOTS / 2) { /* full: start again */
        memset(e->slots, 0, CACHE_SLOTS * sizeof *e->slots);
        e->slots_used = 0, e->keys_n = 0, e->cached.n = 0;
        for (i = h & (CACHE_SLOTS - 1); e->slots[i].key_len; i = (i + 1) & (CACHE_SLOTS - 1))
            ;
    }
    e->keys = grow(e->keys, &e->keys_cap, e->keys_n + n, 1);
    memcpy(e->keys + e->keys_n, w, n);
    e->slots[i] = (cache_slot){.hash = h,
                               .key_off = (uint32_t)e->keys_n,
                               .key_len = (uint32_t)n,
                               .ids_off = (uint32_t)e->cached.n,
                               .ids_n = (uint32_t)(ids->n - before)};
    e->keys_n += n;
    for (size_t k = before; k < ids->n; k++)
        ksa_ids_push(&e->cached, ids->v[k]);
    e->slots_used++;
}

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 with *bad = how many bytes
 * make the maximal invalid subpart (the WHATWG decoder's one U+FFFD). */
static size_t utf8_valid(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            *bad = k;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

/* text as valid UTF-8: itself, or a copy in e->clean with U+FFFD for invalid bytes. */
static const unsigned char *clean_utf8(ksa_bpe_encoder *e, const unsigned char *s, size_t n,
                                       size_t *out_n)
{
    size_t i = 0, bad = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_valid(s + i, n - i, &bad);
        if (!l)
            break;
        i += l;
    }
    *out_n = n;
    if (i == n)
        return s;
    e->clean = grow(e->clean, &e->clean_cap, i + 3 * (n - i), 1);
    memcpy(e->clean, s, i);
    size_t o = i;
    while (i < n) {
        size_t l = utf8_valid(s + i, n - i, &bad);
        if (l) {
            memcpy(e->clean + o, s + i, l);
            o += l, i += l;
        } else {
            memcpy(e->clean + o, "\xEF\xBF\xBD", 3);
            o += 3, i += bad;
        }
    }
    *out_n = o;
    return e->clean;
}

/* A stretch of text without added tokens: NFC, the split regex, each word's merges. */
static ksa_status encode_stretch(ksa_bpe_encoder *e, const unsigned char *s, size_t n, ksa_ids *ids)
{
    const ksa_bpe *b = e->b;
    unsigned char *nfc = NULL;
    if (b->nfc) {
        /* below U+0300 (lead bytes < 0xCC) every character is NFC and composes with nothing */
        int simple = 1;
        for (size_t i = 0; i < n && simple; i++)
            simple = s[i] < 0xCC;
        if (!simple) {
            utf8proc_ssize_t m =
                utf8proc_map(s, (utf8proc_ssize_t)n, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            KSA_ASSERT(m >= 0, "utf8proc NFC of valid UTF-8 failed: %s", utf8proc_errmsg(m));
            s = nfc, n = (size_t)m;
        }
    }
    ksa_status st = KSA_OK;
    size_t start = 0, last = 0;
    while (start < n) {
        int rc = pcre2_match(b->re, s, n, start, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = ksa_fail(KSA_EINVAL, "tokenizer '%s': PCRE2 failed on a text of %zu bytes: %s",
                          b->what, n, (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > last)
            encode_word(e, s + last, ms - last, ids);
        if (me > ms) {
            encode_word(e, s + ms, me - ms, ids);
            last = start = me;
        } else { /* an empty match: step over one character */
            start = ms + 1;
            while (start < n && (s[start] & 0xC0) == 0x80)
                start++;
        }
    }
    if (st == KSA_OK && last < n)
        encode_word(e, s + last, n - last, ids);
    free(nfc);
    return st;
}

ksa_status ksa_bpe_encode(ksa_bpe_encoder *e, const void *text, size_t n, ksa_ids *ids)
{
    const ksa_bpe *b = e->b;
    const unsigned char *s = clean_utf8(e, text, n, &n);
    size_t from = 0;
    for (size_t i = 0; i < n;) {
        if (!b->added_first[s[i]]) {
            i++;
            continue;
        }
        const added_token *best = NULL;
        for (size_t k = 0; k < b->n_added; k++) {
            const added_token *a = &b->added[k];
            if (a->len <= n - i && (!best || a->len > best->len) && !memcmp(s + i, a->s, a->len))
                best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        if (i > from)
            KSA_TRY(encode_stretch(e, s + from, i - from, ids));
        ksa_ids_push(ids, best->id);
        i += best->len;
        from = i;
    }
    if (n > from)
        KSA_TRY(encode_stretch(e, s + from, n - from, ids));
    return KSA_OK;
}

size_t ksa_bpe_decode(const ksa_bpe *b, char *out, size_t cap, const int32_t *ids, size_t n,
                      int skip_special)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        const char *p;
        size_t len;
        char marker[40];
        if (id >= 0 && (size_t)id < b->V && b->tok_len[id] != HOLE) {
            if (skip_special && b->special[id])
                continue;
            p = (const char *)b->blob + b->tok_off[id];
            len = b->tok_len[id];
        } else {
            len = (size_t)snprintf(marker, sizeof marker, "<|unknown_%d|>", (int)id);
            p = marker;
        }
        if (at < cap)
            memcpy(out + at, p, len < cap - at ? len : cap - at);
        at += len;
    }
    return at;
}
