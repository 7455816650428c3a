/* init_from.h - loading a checkpoint's parameters into a model of a different configuration:
 * fine-tuning (`ksa train --init-from FILE`) and continual pre-training of a plain causal
 * checkpoint into summary attention (KSA_SPEC §9.1, "Initialising a KSA model from a causal
 * checkpoint"; issue #7). Parameters only: no optimizer state, step or data position.      */
#ifndef KSA_CKPT_INIT_FROM_H
#define KSA_CKPT_INIT_FROM_H

#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "model/decoder.h"

/* What becomes of the summary-only parameters the checkpoint lacks. */
typedef enum {
    KSA_INIT_SUMMARY_COPY,   /* default, KSA_SPEC §9.1: q/k/v_proj_summary <- q/k/v_proj,
                              * input_layernorm_summary <- input_layernorm, q/k_norm_summary
                              * <- q/k_norm (copies of the loaded shared weights, so at step 0
                              * summary rows are processed like text rows); summary_embedding
                              * ~ N(0, 0.02^2) drawn from the seed                            */
    KSA_INIT_SUMMARY_SCRATCH /* keep the model's values (from-scratch init, KSA_SPEC §9.7)  */
} ksa_summary_init;

/* Loads the parameters of checkpoint `path` into m (allocated and already initialised, e.g.
 * by ksa_model_init_weights), whose configuration may differ from the file's /config:
 *   - a parameter the file's /config declares and m has, with the same shape: loaded;
 *   - a different shape, or a different value of a key that fixes shapes (hidden_size,
 *     num_hidden_layers, vocab_size, num_attention_heads, num_key_value_heads, head_dim,
 *     intermediate_size; summary_token_num for summary_embedding): KSA_EINVAL naming the
 *     parameter, both shapes and the key ("model.layers.0.self_attn.q_proj.weight: the
 *     checkpoint has [64, 32], the configuration needs [64, 64] (hidden_size: ...)");
 *   - summary-only parameters the file lacks: created as `how` says (see above);
 *   - lm_head.weight when the file ties its head and m does not: a copy of the loaded
 *     model.embed_tokens.weight; when m ties its head and the file does not: ignored;
 *   - any other parameter of m the file lacks: KSA_EFORMAT naming it;
 *   - parameters in the file that m lacks (a KSA checkpoint into a causal model): ignored.
 * The file is validated first (format, /config, and every dataset its /config declares:
 * present, floating point, the declared shape), then compared with m; only then is
 * anything read into m. So every refusal (wrong file, bad file, shapes, missing parameters)
 * leaves m unchanged; only an I/O failure while reading the data itself, after all checks
 * passed, can leave m partly loaded (treat m as undefined after any error then).
 * report (may be NULL) gets, on success, a header; then per kind (loaded, created as copies,
 * created by drawing, kept, ignored) the count and the first three names ("  loaded from the
 * checkpoint   300: a, b, c, ..."; a copy as "name <- source"), or with list_all one line per
 * parameter
 * ("<name> [shape]: loaded | created (copy of X) | created (N(0, 0.02^2)) | kept
 * (from-scratch init) | ignored", with a reason after "; " where useful); and a count line
 * ("init-from FILE: N loaded, N created, N kept, N ignored").                             */
ksa_status ksa_ckpt_init_from(const char *path, ksa_model *m, ksa_summary_init how, uint64_t seed,
                              FILE *report, int list_all);

#endif
