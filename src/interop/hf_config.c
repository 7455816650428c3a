/* hf_config.c - config.json <-> ksa_model_config (hf_config.h), with cJSON. */
#include "hf_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/path.h"

/* The training reference's spellings (KSA_SPEC §0, its model_config_*.json). */
static const struct {
    const char *alias, *key;
} aliases[] = {
    {"embed_dim", "hidden_size"},
    {"num_layers", "num_hidden_layers"},
    {"num_heads", "num_attention_heads"},
    {"num_kv_heads", "num_key_value_heads"},
    {"intermediate_dim", "intermediate_size"},
    {"max_seq_len", "max_position_embeddings"},
    {"rope_base", "rope_theta"},
    {"norm_eps", "rms_norm_eps"},
};
#define N_ALIASES (sizeof aliases / sizeof aliases[0])

/* Keys that describe the file or the training run, not the model's function. */
static const char *const informational[] = {"architectures",
                                            "auto_map",
                                            "model_type",
                                            "torch_dtype",
                                            "dtype",
                                            "transformers_version",
                                            "use_cache",
                                            "initializer_range",
                                            "attention_dropout",
                                            "attn_dropout",
                                            "max_window_layers",
                                            "bos_token_id",
                                            "pad_token_id",
                                            "__class__",
                                            "model_class",
                                            "attention_function",
                                            "summary_attention_mode",
                                            "enable_summary_distill_attention",
                                            "summary_distill_attention_norm",
                                            "summary_mix_start_iter",
                                            "summary_mix_end_iter",
                                            "truncate_predict_nums",
                                            "sliding_window",
                                            "layer_types",
                                            "_name_or_path"};
#define N_INFORMATIONAL (sizeof informational / sizeof informational[0])

/* Always required (no default a reader could guess); with summary attention on, more. */
static const char *const required[] = {
    "vocab_size",          "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim",    "intermediate_size"};
static const char *const required_ksa[] = {"summary_chunk_size", "summary_token_num",
                                           "summary_chunk_position_ids_type",
                                           "summary_token_position_ids_type"};

static const char *canonical(const char *key)
{
    for (size_t i = 0; i < N_ALIASES; i++)
        if (!strcmp(key, aliases[i].alias))
            return aliases[i].key;
    return key;
}

static const char *alias_of(const char *key)
{
    for (size_t i = 0; i < N_ALIASES; i++)
        if (!strcmp(key, aliases[i].key))
            return aliases[i].alias;
    return NULL;
}

static int is_informational(const char *key)
{
    for (size_t i = 0; i < N_INFORMATIONAL; i++)
        if (!strcmp(key, informational[i]))
            return 1;
    return 0;
}

/* A JSON value as the text a configuration file would hold; 0 if it has no such form. */
static int value_text(const cJSON *v, char *out, size_t cap)
{
    if (cJSON_IsBool(v))
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            snprintf(out, cap, "%.0f", d);
        else
            snprintf(out, cap, "%.17g", d);
    } else if (cJSON_IsString(v))
        snprintf(out, cap, "%s", v->valuestring);
    else if (cJSON_IsArray(v)) { /* a per-layer list: the pattern language reads "[a,b,...]" */
        size_t at = (size_t)snprintf(out, cap, "[");
        for (const cJSON *e = v->child; e; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
                fabs(e->valuedouble) > 2147483647.0 || at >= cap)
                return 0;
            at += (size_t)snprintf(out + at, cap - at, "%s%.0f", e == v->child ? "" : ",",
                                   e->valuedouble);
        }
        if (at + 2 > cap)
            return 0;
        snprintf(out + at, cap - at, "]");
    } else
        return 0;
    return 1;
}

/* Keys whose only accepted value is what ksa.c computes; anything else is refused. */
static ksa_status check_fixed(const char *path, const cJSON *v)
{
    const char *k = v->string;
    const char *why = NULL;
    if ((!strcmp(k, "attention_bias") || !strcmp(k, "q_proj_bias") || !strcmp(k, "k_proj_bias") ||
         !strcmp(k, "v_proj_bias") || !strcmp(k, "mlp_bias")) &&
        !cJSON_IsFalse(v) && !cJSON_IsNull(v))
        why = "ksa.c models have no biases";
    else if ((!strcmp(k, "q_norm") || !strcmp(k, "k_norm")) && !cJSON_IsTrue(v))
        why = "ksa.c models always have q/k head norms";
    else if ((!strcmp(k, "hidden_act") || !strcmp(k, "hidden_activation")) &&
             !(cJSON_IsString(v) && !strcmp(v->valuestring, "silu")))
        why = "ksa.c's MLP is SwiGLU (silu)";
    else if (!strcmp(k, "rope_scaling") && !cJSON_IsNull(v))
        why = "ksa.c has no RoPE scaling";
    else if (!strcmp(k, "use_sliding_window") && !cJSON_IsFalse(v))
        why = "Qwen's sliding window is not supported (ksa.c's is layer_sliding_window)";
    else if (!strcmp(k, "mix_coeff") && !(cJSON_IsNumber(v) && v->valuedouble == 1.0))
        why = "ksa.c has no fixed summary mixing coefficient (only 1)";
    else if (!strcmp(k, "summary_mix_qkv") && !cJSON_IsFalse(v))
        why = "summary q/k/v annealing is not supported";
    if (!why)
        return KSA_OK;
    char text[256];
    char *printed = cJSON_PrintUnformatted(v);
    snprintf(text, sizeof text, "%s", printed ? printed : "?");
    free(printed);
    return ksa_fail(KSA_EINVAL, "config %s: %s = %s is not supported: %s", path, k, text, why);
}

static int is_fixed(const char *k)
{
    static const char *const fixed[] = {"attention_bias", "q_proj_bias",        "k_proj_bias",
                                        "v_proj_bias",    "mlp_bias",           "q_norm",
                                        "k_norm",         "hidden_act",         "hidden_activation",
                                        "rope_scaling",   "use_sliding_window", "mix_coeff",
                                        "summary_mix_qkv"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(k, fixed[i]))
            return 1;
    return 0;
}

ksa_status ksa_hf_config_read(const char *path, ksa_model_config *cfg, ksa_hf_extra *extra)
{
    ksa_model_config_defaults(cfg);
    extra->eos_token_id = -1;
    extra->tokenizer[0] = '\0';
    /* the Qwen3 defaults of transformers for what ksa.c defaults differently */
    KSA_TRY(ksa_model_config_set(cfg, "max_position_embeddings", "32768", "default"));
    char *text = NULL;
    size_t len = 0;
    KSA_TRY(ksa_path_read_all(path, "config", 64u << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    ksa_status st = KSA_OK;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        st = ksa_fail(KSA_EFORMAT, "config %s: not valid JSON (near byte %zu)", path,
                      at && at >= text && at <= text + len ? (size_t)(at - text) : (size_t)0);
    } else if (!cJSON_IsObject(root))
        st = ksa_fail(KSA_EFORMAT, "config %s: not a JSON object", path);
    size_t n_keys;
    const ksa_config_key *keys = ksa_model_config_keys(&n_keys);
    const cJSON **seen = calloc(n_keys, sizeof *seen); /* the value each model key came from */
    KSA_ASSERT(seen, "out of memory");
    for (const cJSON *v = st == KSA_OK ? root->child : NULL; v && st == KSA_OK; v = v->next) {
        const char *key = canonical(v->string);
        if (ksa_model_config_has_key(key)) {
            size_t ki = 0;
            while (strcmp(keys[ki].name, key))
                ki++;
            if (seen[ki] && !cJSON_Compare(seen[ki], v, 1)) {
                char *a = cJSON_PrintUnformatted(seen[ki]), *b = cJSON_PrintUnformatted(v);
                st = ksa_fail(KSA_EINVAL, "config %s: inconsistent keys: %s = %s but %s = %s", path,
                              seen[ki]->string, a ? a : "?", v->string, b ? b : "?");
                free(a);
                free(b);
                break;
            }
            seen[ki] = v;
            if (cJSON_IsNull(v)) /* null: unset (summary_independent_qkv), else the default */
                continue;
            char value[4096];
            if (!value_text(v, value, sizeof value)) {
                st = ksa_fail(KSA_EINVAL,
                              "config %s: %s must be a number, a boolean, a string or a list of "
                              "integers",
                              path, v->string);
                break;
            }
            st = ksa_model_config_set(cfg, key, value, path);
        } else if (is_fixed(key))
            st = check_fixed(path, v);
        else if (!strcmp(key, "eos_token_id")) {
            const cJSON *id = cJSON_IsArray(v) ? v->child : v; /* a list: the first */
            if (cJSON_IsNumber(id) && id->valuedouble >= 0)
                extra->eos_token_id = (long)id->valuedouble;
        } else if (!strcmp(key, "ksa_tokenizer")) {
            if (cJSON_IsString(v))
                snprintf(extra->tokenizer, sizeof extra->tokenizer, "%s", v->valuestring);
        } else if (!is_informational(key))
            fprintf(stderr, "config %s: ignoring unknown key '%s'\n", path, v->string);
    }
    /* required keys: those that have no default a reader could guess */
    int ksa = st == KSA_OK && cfg->use_summary_attention == 1;
    for (size_t r = 0; st == KSA_OK && r < sizeof required / sizeof required[0] + 4; r++) {
        const char *need = r < sizeof required / sizeof required[0]
                               ? required[r]
                               : required_ksa[r - sizeof required / sizeof required[0]];
        if (r >= sizeof required / sizeof required[0] && !ksa)
            break;
        size_t ki = 0;
        while (strcmp(keys[ki].name, need))
            ki++;
        if (!seen[ki] || cJSON_IsNull(seen[ki])) {
            const char *alias = alias_of(need);
            char also[96] = "";
            if (alias)
                snprintf(also, sizeof also, " (or '%s')", alias);
            st = ksa_fail(KSA_EINVAL, "config %s: missing key '%s'%s", path, need, also);
        }
    }
    free(seen);
    cJSON_Delete(root);
    ksa_free(text);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------ */
static int plain_integer(const char *s)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

ksa_status ksa_hf_config_write(const char *path, const ksa_model_config *cfg, long merged_vocab,
                               const char *torch_dtype, long eos_token_id, const char *tokenizer)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen3ForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", "qwen3");
    cJSON_AddBoolToObject(root, "attention_bias", 0);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddNullToObject(root, "rope_scaling");
    cJSON_AddBoolToObject(root, "use_sliding_window", 0);
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype);
    size_t n_keys;
    const ksa_config_key *keys = ksa_model_config_keys(&n_keys);
    for (size_t i = 0; i < n_keys; i++) {
        const ksa_config_key *k = &keys[i];
        const void *field = (const char *)cfg + k->offset;
        switch (k->kind) {
        case KSA_KEY_INT: {
            long v = *(const long *)field;
            if (!strcmp(k->name, "vocab_size") && merged_vocab > 0)
                v = merged_vocab;
            if (!strcmp(k->name, "summary_token_begin") && merged_vocab > 0)
                v = cfg->vocab_size; /* KSA_SPEC §7.3: the merged rows start at V */
            if (v >= 0)
                cJSON_AddNumberToObject(root, k->name, (double)v);
            break;
        }
        case KSA_KEY_BOOL: {
            long v = *(const long *)field;
            if (v >= 0)
                cJSON_AddBoolToObject(root, k->name, v != 0);
            break;
        }
        case KSA_KEY_FLOAT:
            cJSON_AddNumberToObject(root, k->name, *(const double *)field);
            break;
        case KSA_KEY_STRING:
            if (plain_integer((const char *)field))
                cJSON_AddNumberToObject(root, k->name, strtod((const char *)field, NULL));
            else
                cJSON_AddStringToObject(root, k->name, (const char *)field);
            break;
        }
    }
    if (eos_token_id >= 0)
        cJSON_AddNumberToObject(root, "eos_token_id", (double)eos_token_id);
    if (tokenizer)
        cJSON_AddStringToObject(root, "ksa_tokenizer", tokenizer);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    KSA_ASSERT(text, "out of memory printing %s", path);
    FILE *f = fopen(path, "wb");
    ksa_status st = KSA_OK;
    if (!f)
        st = ksa_fail(KSA_EIO, "cannot create %s: %s", path, strerror(errno));
    else {
        size_t n = strlen(text);
        if (fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF)
            st = ksa_fail(KSA_EIO, "cannot write %s: %s", path, strerror(errno));
        if (fclose(f) != 0 && st == KSA_OK)
            st = ksa_fail(KSA_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    free(text);
    return st;
}
