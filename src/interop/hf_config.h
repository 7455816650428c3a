/* hf_config.h - a Hugging Face config.json as a ksa model configuration, and back.
 *
 * Reading accepts the Qwen3 keys of transformers (hidden_size, num_hidden_layers, ...), the
 * KSA keys of KSA_SPEC §1 (summary_*, values as JSON numbers, booleans, lists or pattern
 * strings, §1.3) and the training reference's spellings (embed_dim, num_layers, num_heads,
 * num_kv_heads, intermediate_dim, max_seq_len, rope_base, norm_eps). Every value goes through
 * the configuration's own setter (model/config.h), so checks and pattern parsing are those
 * of a configuration file. Errors name the file and the key: a missing required key, two
 * spellings of one key with different values, a value ksa.c cannot represent (biases,
 * another activation, RoPE scaling, Qwen's sliding window, mix_coeff != 1). Keys that only
 * describe the file (architectures, torch_dtype, ...) are accepted; any other key is
 * reported on stderr and ignored.                                                       */
#ifndef KSA_INTEROP_HF_CONFIG_H
#define KSA_INTEROP_HF_CONFIG_H

#include "core/core.h"
#include "model/config.h"

/* What config.json says beyond the model configuration. */
typedef struct {
    long eos_token_id;   /* -1: absent */
    char tokenizer[128]; /* "ksa_tokenizer" (written by ksa export), "" when absent */
} ksa_hf_extra;

/* Reads path (a config.json) into cfg (built-in defaults first, then every key). vocab_size
 * is config.json's: with summary rows merged into embed_tokens (KSA_SPEC §7.3) it counts them
 * too, which the importer corrects once it has seen the weights. */
ksa_status ksa_hf_config_read(const char *path, ksa_model_config *cfg, ksa_hf_extra *extra);

/* Writes cfg as a config.json at path (exactly that name: the caller renames). merged_vocab >
 * 0: the summary embedding is merged below embed_tokens, vocab_size is written as
 * merged_vocab (V + S) and summary_token_begin as V (KSA_SPEC §7.3). torch_dtype names the
 * weights' dtype ("bfloat16"); eos_token_id < 0 is left out; tokenizer (NULL: none) is
 * written as "ksa_tokenizer". */
ksa_status ksa_hf_config_write(const char *path, const ksa_model_config *cfg, long merged_vocab,
                               const char *torch_dtype, long eos_token_id, const char *tokenizer);

#endif
