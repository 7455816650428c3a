/* config.h - the model configuration: `key = value` files, command-line overrides, the
 * pattern language of per-layer values, validation, and the resolved per-layer layout.
 *
 * Key names are those of KSA_SPEC.md §1 / the HF template, and of the /config attributes of
 * a checkpoint (CHECKPOINT_FORMAT.md). Precedence: built-in default < configuration file <
 * command line. An unknown key is an error naming it.                                      */
#ifndef KSA_MODEL_CONFIG_H
#define KSA_MODEL_CONFIG_H

#include <stdio.h>

#include "core/core.h"
#include "core/settings.h"

#define KSA_MAX_LAYERS 1024
/* The largest sizes a configuration may ask for (docs/configs.md, "Limits"). */
#define KSA_MAX_VOCAB (1L << 24)     /* vocab_size: token ids fit an int32 with room */
#define KSA_MAX_WIDTH (1L << 16)     /* hidden_size (intermediate_size: 4x) */
#define KSA_MAX_HEADS 1024L          /* query and key/value heads, head_dim */
#define KSA_MAX_POSITIONS (1L << 24) /* max_position_embeddings, seq_len, C, W, windows */

typedef enum { KSA_POS_ORIGIN, KSA_POS_INNER_CHUNK } ksa_chunk_pos_type;
typedef enum {
    KSA_POS_ZEROS,
    KSA_POS_LAST_CHUNK_SLICE_RIGHT,
    KSA_POS_LAST_CHUNK_SLICE_LEFT
} ksa_summary_pos_type;

typedef struct {
    /* backbone */
    long vocab_size, hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads;
    long head_dim, intermediate_size, max_position_embeddings;
    double rope_theta, rms_norm_eps;
    long tie_word_embeddings; /* bool */
    /* summary attention (ignored when use_summary_attention is false) */
    long use_summary_attention;                        /* bool */
    long summary_chunk_size, summary_token_num;        /* C, S */
    char summary_sliding_chunk_num[KSA_CONFIG_STR];    /* int or pattern, as given (unquoted) */
    char summary_layer_freq[KSA_CONFIG_STR];           /* 0, N, or 0/1 pattern */
    long summary_independent_parameters;               /* bool */
    long summary_independent_qkv;                      /* bool, -1 = unset: follows the previous */
    long summary_independent_attention_layernorm;      /* bool */
    long summary_independent_qk_norm;                  /* bool */
    long summary_mix_qkv;                              /* bool: anneal (KSA_SPEC §5.5) */
    long summary_mix_start_iter, summary_mix_end_iter; /* the annealing window, steps >= 0 */
    char summary_chunk_position_ids_type[KSA_CONFIG_STR]; /* origin | inner_chunk */
    char summary_token_position_ids_type[KSA_CONFIG_STR]; /* zeros | last_chunk_slice_... */
    long summary_token_begin;                             /* -1 = unset (needed only when shared) */
    /* attention variants (docs/configs.md "Attention variants") */
    long layer_sliding_window;    /* causal layers: window of N tokens before a query, 0 = off */
    long sliding_chunk_attention; /* bool: summary layers without summary tokens (S = 0)     */
} ksa_model_config;

/* What the configuration means, layer by layer (ksa_model_config_resolve). */
typedef struct {
    int ksa; /* chunked layers: use_summary_attention, C > 0, and S > 0 or sliding chunks  */
    int sca; /* sliding_chunk_attention: the summary layers have no summary tokens (S = 0) */
    size_t C, S;
    size_t sliding_window;     /* causal layers: a query sees itself and the N tokens before it
                                  (0: every earlier token)                                    */
    int independent_embedding; /* summary_embedding [S, D] instead of token ids begin + j */
    int independent_qkv, independent_norm, independent_qk_norm;
    int mix_qkv; /* summary_mix_qkv (needs independent_qkv): summary rows blend in the shared
                    q/k/v with the coefficient of ksa_summary_mix_coeff */
    ksa_chunk_pos_type chunk_pos;
    ksa_summary_pos_type summary_pos;
    size_t n_layers;
    int is_summary[KSA_MAX_LAYERS]; /* 1: summary (or sliding-chunk) layer, 0: causal layer */
    size_t window[KSA_MAX_LAYERS];  /* W of summary layers, in chunks */
} ksa_model_layout;

void ksa_model_config_defaults(ksa_model_config *c);

/* Sets one key from its text value (quotes around the value are stripped). Returns
 * KSA_EINVAL naming the key and the value when the key is unknown or the value bad;
 * `origin` ("configs/tiny.conf:12", "command line") is quoted in the message.        */
ksa_status ksa_model_config_set(ksa_model_config *c, const char *key, const char *value,
                                const char *origin);

/* 1 if `key` is a model configuration key. */
int ksa_model_config_has_key(const char *key);

/* Reads `key = value` lines (# comments, blank lines) and sets each key. */
ksa_status ksa_model_config_load(ksa_model_config *c, const char *path);

/* Checks every constraint and derives the per-layer layout. */
ksa_status ksa_model_config_resolve(const ksa_model_config *c, ksa_model_layout *out);

/* The mixing coefficient m of optimizer step `it` (1-based: the first step of a fresh run is
 * it = 1; the global count, steps of a resumed checkpoint included), KSA_SPEC §5.5: 1 without
 * summary_mix_qkv; else with e = max(start + 1, end): 1 for it <= start, 0 for it >= e,
 * 1 - (it - start) / (e - start) between. Summary rows use m·(own q/k/v) + (1-m)·(shared).  */
double ksa_summary_mix_coeff(const ksa_model_config *c, long it);

/* Writes every key as `key = value` (loadable again). */
void ksa_model_config_write(const ksa_model_config *c, FILE *f);

/* One line per layer group: kinds and windows, e.g. "layers 0-2: summary W=128". */
void ksa_model_layout_print(const ksa_model_layout *l, FILE *f);

/* The key table of ksa_model_config (core/settings.h), for generic readers and writers
 * (checkpoint /config attributes). */
const ksa_config_key *ksa_model_config_keys(size_t *n);

/* ---- the pattern language of KSA_SPEC §1.3 ------------------------------------------- *
 *   expr := term ('+' term)* ; term := factor ('*' INT)* | INT '*' factor ;
 *   factor := '[' INT (',' INT)* ']' | '(' expr ')'    ; or a plain INT
 * Writes up to `cap` values, sets *n; errors name the text and the position.            */
ksa_status ksa_pattern_expand(const char *text, long *values, size_t cap, size_t *n);

#endif
