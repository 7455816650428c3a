/* hf_import.h - a Hugging Face model folder (config.json, safetensors weights, optionally
 * tokenizer.json) as a ksa.c checkpoint (docs/interop.md).
 *
 * Weights: model.safetensors, or the shards that model.safetensors.index.json names (its
 * "weight_map" must agree with the shards' own headers). Names are those of KSA_SPEC §7.1;
 * a model with summary_independent_parameters whose weights lack summary_embedding.weight
 * is in the exported form of §7.3: its embed_tokens holds the V text rows and then the S
 * summary rows (config.json's vocab_size is V + S, summary_token_begin V), an untied lm_head
 * V + S rows of which the last S are dropped. Every tensor's shape is checked against the
 * configuration, every parameter must be present and every tensor used; F32, F16, BF16 and
 * F64 are converted to float32 (exact but for F64). The file is written with the
 * checkpoint writer (write to .tmp, rename): any error leaves no output file.
 *
 * Memory: the float32 parameters, plus the pages of the one tensor being converted (the
 * shards are mapped, each tensor's pages released after it is read).                    */
#ifndef KSA_INTEROP_HF_IMPORT_H
#define KSA_INTEROP_HF_IMPORT_H

#include <stddef.h>

#include "core/core.h"

typedef struct {
    size_t n_files;     /* safetensors files read */
    size_t n_tensors;   /* tensors read */
    size_t n_params;    /* parameters written (elements) */
    int merged_summary; /* 1: summary rows were split off embed_tokens (KSA_SPEC §7.3) */
    char tokenizer[64]; /* the /tokenizer type written */
    int eot_id;         /* -1: none */
    size_t peak_rss;    /* resident bytes after the checkpoint was written (VmHWM) */
} ksa_hf_import_info;

ksa_status ksa_hf_import(const char *dir, const char *out, ksa_hf_import_info *info);

/* The id of the added token "<|endoftext|>" of a tokenizer.json (bytes, len), or -1 when it
 * has none; an error when the bytes are not a JSON object (path names them). */
ksa_status ksa_hf_tokenizer_eot(const char *path, const unsigned char *json, size_t len,
                                int *eot_id);

#endif
