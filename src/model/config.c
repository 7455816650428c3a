/* config.c - model configuration keys, files, patterns, validation (KSA_SPEC §1, §4). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the keys ------------------------------------------------------------------------- *
 * Defaults: the training reference's for the summary keys (KSA_SPEC §1.1) except the
 * position-id types, where the released origin / last_chunk_slice_right pair is the
 * project default (KSA_SPEC §12 item 14); a small backbone for the others.               */
#define KEY(name, kind, def, help) KSA_KEY(ksa_model_config, name, kind, def, help)
static const ksa_config_key model_keys[] = {
    KEY(vocab_size, KSA_KEY_INT, "257",
        "V, token ids 0 .. V-1; the byte tokenizer needs at least 257"),
    KEY(hidden_size, KSA_KEY_INT, "256", "D, the width of the residual stream"),
    KEY(num_hidden_layers, KSA_KEY_INT, "4", "layers (at most 1024)"),
    KEY(num_attention_heads, KSA_KEY_INT, "4",
        "Hq, query heads: a multiple of num_key_value_heads"),
    KEY(num_key_value_heads, KSA_KEY_INT, "4",
        "Hkv, key and value heads (grouped-query attention)"),
    KEY(head_dim, KSA_KEY_INT, "64", "dh, even (RoPE rotates halves)"),
    KEY(intermediate_size, KSA_KEY_INT, "768", "I, the SwiGLU width"),
    KEY(rope_theta, KSA_KEY_FLOAT, "10000", "RoPE base"),
    KEY(rms_norm_eps, KSA_KEY_FLOAT, "1e-6",
        "eps of every RMSNorm but q/k_norm_summary (fixed at 1e-6)"),
    KEY(max_position_embeddings, KSA_KEY_INT, "131072",
        "the longest position the model is meant for"),
    KEY(tie_word_embeddings, KSA_KEY_BOOL, "false", "the LM head reuses model.embed_tokens"),
    KEY(use_summary_attention, KSA_KEY_BOOL, "false",
        "KSA on (with summary_chunk_size and summary_token_num > 0)"),
    KEY(summary_chunk_size, KSA_KEY_INT, "0", "C, text tokens per chunk"),
    KEY(summary_token_num, KSA_KEY_INT, "0", "S, summary tokens after every complete chunk"),
    KEY(summary_sliding_chunk_num, KSA_KEY_STRING, "0",
        "W, chunks seen in full: an integer, or a list / pattern per layer"),
    KEY(summary_layer_freq, KSA_KEY_STRING, "0",
        "summary layers: 0 all, N every N-th, or a 0/1 list / pattern per layer"),
    KEY(summary_independent_parameters, KSA_KEY_BOOL, "false",
        "summary rows embed with their own summary_embedding [S, D]"),
    KEY(summary_independent_qkv, KSA_KEY_BOOL, "",
        "summary rows use q/k/v_proj_summary (unset: as the key above)"), /* empty: follows the
                                                                             previous key */
    KEY(summary_independent_attention_layernorm, KSA_KEY_BOOL, "false",
        "summary rows use input_layernorm_summary"),
    KEY(summary_independent_qk_norm, KSA_KEY_BOOL, "false",
        "summary rows use q/k_norm_summary (needs independent q/k/v)"),
    KEY(summary_mix_qkv, KSA_KEY_BOOL, "false",
        "anneal the summary rows' q/k/v from the summary to the shared projections"),
    KEY(summary_mix_start_iter, KSA_KEY_INT, "0",
        "annealing: the last optimizer step with the summary projections alone (m = 1)"),
    KEY(summary_mix_end_iter, KSA_KEY_INT, "0",
        "annealing: from this step on the shared projections alone (m = 0)"),
    KEY(summary_chunk_position_ids_type, KSA_KEY_STRING, "origin",
        "text positions: origin (t) or inner_chunk (t mod C)"),
    KEY(summary_token_position_ids_type, KSA_KEY_STRING, "last_chunk_slice_right",
        "summary positions: zeros, last_chunk_slice_right or _left"),
    KEY(summary_token_begin, KSA_KEY_INT, "",
        "shared summary parameters: summary token j is embedded as token begin + j"), /* empty:
                                                                                         unset */
    KEY(layer_sliding_window, KSA_KEY_INT, "0",
        "causal layers: each token sees itself and the N tokens before it (SWA); 0 = all"),
    KEY(sliding_chunk_attention, KSA_KEY_BOOL, "false",
        "summary layers without summary tokens: own chunk + W chunks of text (SCA)"),
};
#undef KEY
#define N_KEYS (sizeof model_keys / sizeof model_keys[0])

const ksa_config_key *ksa_model_config_keys(size_t *n)
{
    *n = N_KEYS;
    return model_keys;
}

int ksa_model_config_has_key(const char *key)
{
    return ksa_config_key_find(model_keys, N_KEYS, key) != NULL;
}

/* ---- the pattern language ------------------------------------------------------------- */
typedef struct {
    const char *text, *p;
    long *out;
    size_t cap, n;
    ksa_status st;
} pattern_parser;

static void skip_space(pattern_parser *ps)
{
    while (isspace((unsigned char)*ps->p))
        ps->p++;
}

static ksa_status pattern_error(pattern_parser *ps, const char *what)
{
    if (ps->st == KSA_OK)
        ps->st = ksa_fail(KSA_EINVAL, "pattern '%s': %s at position %zu", ps->text, what,
                          (size_t)(ps->p - ps->text));
    return ps->st;
}

static int parse_int(pattern_parser *ps, long *v)
{
    skip_space(ps);
    if (!isdigit((unsigned char)*ps->p)) {
        pattern_error(ps, "expected a non-negative integer");
        return 0;
    }
    errno = 0;
    char *end;
    *v = strtol(ps->p, &end, 10);
    if (errno || *v > INT_MAX) {
        pattern_error(ps, "integer out of range");
        return 0;
    }
    ps->p = end;
    return 1;
}

static int push_value(pattern_parser *ps, long v)
{
    if (ps->n >= ps->cap) {
        pattern_error(ps, "list longer than the supported number of layers");
        return 0;
    }
    ps->out[ps->n++] = v;
    return 1;
}

/* Repeats out[start, n) so that it appears `times` times in total. */
static int repeat_tail(pattern_parser *ps, size_t start, long times)
{
    size_t len = ps->n - start;
    if (times < 1)
        return pattern_error(ps, "repetition count must be at least 1"), 0;
    for (long t = 1; t < times; t++)
        for (size_t i = 0; i < len; i++)
            if (!push_value(ps, ps->out[start + i]))
                return 0;
    return 1;
}

static int parse_expr(pattern_parser *ps);

static int parse_factor(pattern_parser *ps)
{
    skip_space(ps);
    if (*ps->p == '[') {
        ps->p++;
        do {
            long v;
            if (!parse_int(ps, &v) || !push_value(ps, v))
                return 0;
            skip_space(ps);
        } while (*ps->p == ',' && ps->p++);
        if (*ps->p != ']')
            return pattern_error(ps, "expected ']'"), 0;
        ps->p++;
        return 1;
    }
    if (*ps->p == '(') {
        ps->p++;
        if (!parse_expr(ps))
            return 0;
        skip_space(ps);
        if (*ps->p != ')')
            return pattern_error(ps, "expected ')'"), 0;
        ps->p++;
        return 1;
    }
    return pattern_error(ps, "expected '[' or '('"), 0;
}

static int parse_term(pattern_parser *ps)
{
    size_t start = ps->n;
    skip_space(ps);
    if (isdigit((unsigned char)*ps->p)) { /* INT '*' factor */
        long times;
        if (!parse_int(ps, &times))
            return 0;
        skip_space(ps);
        if (*ps->p != '*')
            return pattern_error(ps, "expected '*' after a repetition count"), 0;
        ps->p++;
        if (!parse_factor(ps) || !repeat_tail(ps, start, times))
            return 0;
    } else if (!parse_factor(ps)) {
        return 0;
    }
    for (;;) {
        skip_space(ps);
        if (*ps->p != '*')
            return 1;
        ps->p++;
        long times;
        if (!parse_int(ps, &times) || !repeat_tail(ps, start, times))
            return 0;
    }
}

static int parse_expr(pattern_parser *ps)
{
    if (!parse_term(ps))
        return 0;
    for (;;) {
        skip_space(ps);
        if (*ps->p != '+')
            return 1;
        ps->p++;
        if (!parse_term(ps))
            return 0;
    }
}

ksa_status ksa_pattern_expand(const char *text, long *values, size_t cap, size_t *n)
{
    pattern_parser ps = {.text = text, .p = text, .out = values, .cap = cap, .st = KSA_OK};
    skip_space(&ps);
    if (isdigit((unsigned char)*ps.p)) { /* a plain integer, or INT '*' factor */
        const char *save = ps.p;
        long v;
        if (!parse_int(&ps, &v))
            return ps.st;
        skip_space(&ps);
        if (*ps.p == '\0') {
            if (!push_value(&ps, v))
                return ps.st;
            *n = ps.n;
            return KSA_OK;
        }
        ps.p = save;
    }
    if (*ps.p == '\0')
        return pattern_error(&ps, "empty value");
    if (!parse_expr(&ps))
        return ps.st;
    skip_space(&ps);
    if (*ps.p != '\0')
        return pattern_error(&ps, "unexpected character");
    *n = ps.n;
    return KSA_OK;
}

/* ---- setting keys --------------------------------------------------------------------- */
static const char *const chunk_pos_names[] = {"origin", "inner_chunk"};
static const char *const summary_pos_names[] = {"zeros", "last_chunk_slice_right",
                                                "last_chunk_slice_left"};

static int find_name(const char *v, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v, names[i]))
            return (int)i;
    return -1;
}

ksa_status ksa_model_config_set(ksa_model_config *c, const char *key, const char *value,
                                const char *origin)
{
    const ksa_config_key *k = ksa_config_key_find(model_keys, N_KEYS, key);
    if (!k)
        return ksa_fail(KSA_EINVAL, "%s: unknown configuration key '%s'", origin, key);
    if (k->kind != KSA_KEY_STRING)
        return ksa_config_key_set(k, c, value, origin);
    /* strings of the model: check them before storing */
    ksa_model_config scratch_cfg;
    KSA_TRY(ksa_config_key_set(k, &scratch_cfg, value, origin));
    const char *v = (const char *)&scratch_cfg + k->offset;
    if (!strcmp(key, "summary_chunk_position_ids_type") && find_name(v, chunk_pos_names, 2) < 0)
        return ksa_fail(KSA_EINVAL, "%s: %s = '%s' (expected origin or inner_chunk)", origin, key,
                        v);
    if (!strcmp(key, "summary_token_position_ids_type") && find_name(v, summary_pos_names, 3) < 0)
        return ksa_fail(KSA_EINVAL,
                        "%s: %s = '%s' (expected zeros, last_chunk_slice_right or "
                        "last_chunk_slice_left)",
                        origin, key, v);
    if (!strcmp(key, "summary_sliding_chunk_num") || !strcmp(key, "summary_layer_freq")) {
        static long scratch[KSA_MAX_LAYERS];
        size_t n;
        if (ksa_pattern_expand(v, scratch, KSA_MAX_LAYERS, &n) != KSA_OK)
            return ksa_fail(KSA_EINVAL, "%s: %s: %s", origin, key, ksa_last_error());
    }
    strcpy((char *)c + k->offset, v);
    return KSA_OK;
}

void ksa_model_config_defaults(ksa_model_config *c)
{
    memset(c, 0, sizeof *c);
    c->summary_independent_qkv = -1;
    c->summary_token_begin = -1;
    for (size_t i = 0; i < N_KEYS; i++)
        if (model_keys[i].default_value[0]) {
            ksa_status st =
                ksa_model_config_set(c, model_keys[i].name, model_keys[i].default_value, "default");
            KSA_ASSERT(st == KSA_OK, "bad built-in default: %s", ksa_last_error());
        }
}

static ksa_status set_model_key(void *ctx, const char *key, const char *value, const char *origin)
{
    return ksa_model_config_set(ctx, key, value, origin);
}

ksa_status ksa_model_config_load(ksa_model_config *c, const char *path)
{
    return ksa_config_file_read(path, set_model_key, c);
}

/* ---- validation and the per-layer layout ---------------------------------------------- */
static ksa_status expand_per_layer(const char *key, const char *text, size_t n_layers, long *values,
                                   int *is_plain_int)
{
    size_t n;
    KSA_TRY(ksa_pattern_expand(text, values, KSA_MAX_LAYERS, &n));
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    *is_plain_int = isdigit((unsigned char)*p) && n == 1 && !strpbrk(text, "[(*");
    if (*is_plain_int) {
        for (size_t i = 1; i < n_layers; i++)
            values[i] = values[0];
        return KSA_OK;
    }
    if (n != n_layers)
        return ksa_fail(KSA_EINVAL, "%s = '%s' gives %zu values, num_hidden_layers is %zu", key,
                        text, n, n_layers);
    return KSA_OK;
}

/* The backbone keys: sizes, divisibility, RoPE, eps. */
static ksa_status check_backbone(const ksa_model_config *c)
{
    /* The bounds keep every size product of the model and its plan within 64 bits (a
     * parameter count is at most ~2^45 elements) and far above any released model. */
    struct {
        const char *name;
        long value, max;
    } sizes[] = {
        {"vocab_size", c->vocab_size, KSA_MAX_VOCAB},
        {"hidden_size", c->hidden_size, KSA_MAX_WIDTH},
        {"num_hidden_layers", c->num_hidden_layers, KSA_MAX_LAYERS},
        {"num_attention_heads", c->num_attention_heads, KSA_MAX_HEADS},
        {"num_key_value_heads", c->num_key_value_heads, KSA_MAX_HEADS},
        {"head_dim", c->head_dim, KSA_MAX_HEADS},
        {"intermediate_size", c->intermediate_size, KSA_MAX_WIDTH * 4},
        {"max_position_embeddings", c->max_position_embeddings, KSA_MAX_POSITIONS},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i].value < 1)
            return ksa_fail(KSA_EINVAL, "%s must be at least 1, got %ld", sizes[i].name,
                            sizes[i].value);
        if (sizes[i].value > sizes[i].max)
            return ksa_fail(KSA_EINVAL, "%s = %ld exceeds the supported %ld", sizes[i].name,
                            sizes[i].value, sizes[i].max);
    }
    if (c->num_attention_heads % c->num_key_value_heads)
        return ksa_fail(KSA_EINVAL,
                        "num_attention_heads = %ld is not divisible by num_key_value_heads = %ld",
                        c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim % 2)
        return ksa_fail(KSA_EINVAL, "head_dim = %ld must be even (RoPE rotates halves)",
                        c->head_dim);
    if (!(c->rope_theta > 0))
        return ksa_fail(KSA_EINVAL, "rope_theta = %g must be positive", c->rope_theta);
    if (!(c->rms_norm_eps > 0))
        return ksa_fail(KSA_EINVAL, "rms_norm_eps = %g must be positive", c->rms_norm_eps);
    return KSA_OK;
}

/* Per layer: the window W (summary_sliding_chunk_num) and summary or bypass
 * (summary_layer_freq: 0, N, or a 0/1 list). */
static ksa_status resolve_layers(const ksa_model_config *c, ksa_model_layout *out)
{
    static long values[KSA_MAX_LAYERS];
    size_t L = out->n_layers;
    int plain;
    KSA_TRY(expand_per_layer("summary_sliding_chunk_num", c->summary_sliding_chunk_num, L, values,
                             &plain));
    for (size_t i = 0; i < L; i++) {
        if (values[i] > KSA_MAX_POSITIONS)
            return ksa_fail(KSA_EINVAL,
                            "summary_sliding_chunk_num = '%s': layer %zu's window %ld exceeds the "
                            "supported %ld chunks",
                            c->summary_sliding_chunk_num, i, values[i], KSA_MAX_POSITIONS);
        out->window[i] = (size_t)values[i];
    }
    KSA_TRY(expand_per_layer("summary_layer_freq", c->summary_layer_freq, L, values, &plain));
    for (size_t i = 0; i < L; i++) {
        if (plain) /* 0: every layer; N: layer i iff i mod N == 0 (KSA_SPEC §4.1) */
            out->is_summary[i] = values[0] == 0 || i % (size_t)values[0] == 0;
        else if (values[i] == 0 || values[i] == 1)
            out->is_summary[i] = (int)values[i];
        else
            return ksa_fail(KSA_EINVAL,
                            "summary_layer_freq = '%s': entry %zu is %ld, a list holds only 0 "
                            "(bypass) and 1 (summary)",
                            c->summary_layer_freq, i, values[i]);
    }
    return KSA_OK;
}

ksa_status ksa_model_config_resolve(const ksa_model_config *c, ksa_model_layout *out)
{
    memset(out, 0, sizeof *out);
    KSA_TRY(check_backbone(c));
    size_t L = (size_t)c->num_hidden_layers;
    out->n_layers = L;
    if (c->layer_sliding_window < 0)
        return ksa_fail(KSA_EINVAL, "layer_sliding_window must be >= 0 (0 = no window), got %ld",
                        c->layer_sliding_window);
    if (c->layer_sliding_window > KSA_MAX_POSITIONS || c->summary_chunk_size > KSA_MAX_POSITIONS)
        return ksa_fail(KSA_EINVAL,
                        "layer_sliding_window = %ld and summary_chunk_size = %ld must not exceed "
                        "the supported %ld",
                        c->layer_sliding_window, c->summary_chunk_size, KSA_MAX_POSITIONS);
    if (c->summary_token_num > KSA_MAX_HEADS)
        return ksa_fail(KSA_EINVAL, "summary_token_num = %ld exceeds the supported %ld",
                        c->summary_token_num, KSA_MAX_HEADS);
    out->sliding_window = (size_t)c->layer_sliding_window;
    if (c->sliding_chunk_attention) {
        if (!c->use_summary_attention || c->summary_chunk_size < 1)
            return ksa_fail(KSA_EINVAL, "sliding_chunk_attention needs use_summary_attention = "
                                        "true and summary_chunk_size >= 1");
        if (c->summary_token_num != 0)
            return ksa_fail(KSA_EINVAL,
                            "sliding_chunk_attention inserts no summary tokens: "
                            "summary_token_num must be 0, got %ld",
                            c->summary_token_num);
    }
    out->sca = (int)c->sliding_chunk_attention;
    out->ksa = c->use_summary_attention && c->summary_chunk_size > 0 &&
               (c->summary_token_num > 0 || out->sca);
    if (!out->ksa) /* all summary_* keys are ignored: a plain causal model */
        return KSA_OK;
    out->C = (size_t)c->summary_chunk_size;
    out->S = (size_t)c->summary_token_num;
    out->chunk_pos =
        (ksa_chunk_pos_type)find_name(c->summary_chunk_position_ids_type, chunk_pos_names, 2);
    out->summary_pos =
        (ksa_summary_pos_type)find_name(c->summary_token_position_ids_type, summary_pos_names, 3);
    if (out->sca) /* no summary tokens: no summary parameters either */
        return resolve_layers(c, out);
    out->independent_embedding = (int)c->summary_independent_parameters;
    out->independent_qkv = c->summary_independent_qkv < 0 ? (int)c->summary_independent_parameters
                                                          : (int)c->summary_independent_qkv;
    out->independent_norm = (int)c->summary_independent_attention_layernorm;
    /* q/k_norm_summary exist only beside independent q/k/v (CHECKPOINT_FORMAT.md) */
    out->independent_qk_norm = out->independent_qkv && c->summary_independent_qk_norm;
    if (c->summary_mix_qkv && !out->independent_qkv)
        return ksa_fail(KSA_EINVAL, "summary_mix_qkv = true needs summary_independent_qkv = true: "
                                    "without q/k/v_proj_summary there is nothing to anneal");
    out->mix_qkv = (int)c->summary_mix_qkv;
    if (!out->independent_embedding) {
        if (c->summary_token_begin < 0)
            return ksa_fail(KSA_EINVAL,
                            "summary_token_begin must be set when summary attention uses the "
                            "token embedding (summary_independent_parameters = false)");
        if (c->summary_token_begin > c->vocab_size ||
            c->summary_token_begin + c->summary_token_num > c->vocab_size)
            return ksa_fail(KSA_EINVAL,
                            "summary_token_begin + summary_token_num = %ld + %ld exceeds "
                            "vocab_size = %ld",
                            c->summary_token_begin, c->summary_token_num, c->vocab_size);
    }

    return resolve_layers(c, out);
}

/* ---- the annealing coefficient (KSA_SPEC §5.5) ----------------------------------------- */
double ksa_summary_mix_coeff(const ksa_model_config *c, long it)
{
    if (!c->summary_mix_qkv)
        return 1;
    long start = c->summary_mix_start_iter;
    long end = c->summary_mix_end_iter > start + 1 ? c->summary_mix_end_iter : start + 1;
    if (it <= start)
        return 1;
    if (it >= end)
        return 0;
    return 1 - (double)(it - start) / (double)(end - start);
}

/* ---- printing ------------------------------------------------------------------------- */
void ksa_model_config_write(const ksa_model_config *c, FILE *f)
{
    ksa_config_keys_write(model_keys, N_KEYS, c, f);
}

void ksa_model_layout_print(const ksa_model_layout *l, FILE *f)
{
    char causal[64] = "causal bypass";
    if (l->sliding_window)
        snprintf(causal, sizeof causal, "causal, window %zu tokens", l->sliding_window);
    if (!l->ksa) {
        fprintf(f, "layers 0-%zu: %s (summary attention off)\n", l->n_layers - 1,
                l->sliding_window ? causal : "causal");
        return;
    }
    size_t start = 0;
    for (size_t i = 1; i <= l->n_layers; i++) {
        int same = i < l->n_layers && l->is_summary[i] == l->is_summary[start] &&
                   (!l->is_summary[i] || l->window[i] == l->window[start]);
        if (same)
            continue;
        if (i - 1 == start)
            fprintf(f, "layer %zu: ", start);
        else
            fprintf(f, "layers %zu-%zu: ", start, i - 1);
        if (l->is_summary[start])
            fprintf(f, "%s W=%zu\n", l->sca ? "sliding-chunk" : "summary", l->window[start]);
        else
            fprintf(f, "%s\n", causal);
        start = i;
    }
}
