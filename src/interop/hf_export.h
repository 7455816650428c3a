/* hf_export.h - a ksa.c checkpoint as a Hugging Face model folder (docs/interop.md): the
 * inverse of hf_import.h.
 *
 * Writes DIR/config.json (hf_config.h), the weights as model.safetensors or, above
 * max_shard_bytes, as model-0000K-of-0000N.safetensors shards with model.safetensors.index.json,
 * and DIR/tokenizer.json when the checkpoint holds one (byte-identical). With
 * summary_independent_parameters the summary embedding is merged below embed_tokens and an
 * untied lm_head padded with S zero rows (KSA_SPEC §7.3). Every file is written under a
 * temporary name and renamed once all are complete; an error leaves none of them behind.
 * DIR is created when missing. Memory: the float32 parameters and one tensor's converted
 * values.                                                                                 */
#ifndef KSA_INTEROP_HF_EXPORT_H
#define KSA_INTEROP_HF_EXPORT_H

#include <stddef.h>

#include "core/core.h"
#include "interop/safetensors.h"

typedef struct {
    size_t n_shards, n_tensors;
    size_t bytes;       /* of tensor data, all shards */
    int merged_summary; /* summary rows merged into embed_tokens */
    int tokenizer_json; /* tokenizer.json written */
} ksa_hf_export_info;

/* dtype: KSA_ST_F32, KSA_ST_F16 or KSA_ST_BF16; max_shard_bytes 0: one file. */
ksa_status ksa_hf_export(const char *ckpt, const char *dir, ksa_st_dtype dtype,
                         size_t max_shard_bytes, ksa_hf_export_info *info);

#endif
