/* ckpt_info.h - what a checkpoint holds, read from its metadata alone (`ksa inspect FILE`).
 *
 * Only attributes, object names, dataspaces and datatypes are read, never a dataset's
 * values, so inspecting a checkpoint of billions of parameters takes milliseconds. The
 * layout is CHECKPOINT_FORMAT.md's: root attributes, /config, /params, and the optional
 * /tokenizer, /optim (AdamW hyper-parameters, /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>)
 * and /train (step, tokens_seen, seed, world_size and the training configuration keys).   */
#ifndef KSA_CKPT_CKPT_INFO_H
#define KSA_CKPT_CKPT_INFO_H

#include <stdio.h>

#include "core/core.h"
#include "core/settings.h"

/* Checks the checkpoint at path and prints, to out:
 *   the file, format and format_version;
 *   every /config attribute as `key = value` (known keys in the order of the configuration
 *   table, then absent ones as comments, then attributes this program ignores), and the
 *   resolved layer kinds;
 *   the parameter count and every parameter (in the model's order) with shape and dtype;
 *   the tokenizer (/tokenizer attributes, or "absent: byte tokenizer assumed");
 *   the optimizer (/optim attributes and whether both moments cover every parameter with
 *   its shape) and the training state (step, tokens_seen, seed, world_size, the schedule,
 *   the data paths, the other training settings in the order of train_keys[0..n_train_keys),
 *   then every other /train attribute), or that they are absent.
 *
 * Errors (message names the file and the object, nothing printed):
 *   KSA_EIO / KSA_EFORMAT for a missing, unreadable, truncated or non-HDF5 file, a file
 *   without the ksa format attributes or with another format_version, an invalid /config
 *   (exactly as ksa_ckpt_read_config), no /params group, a parameter of the configuration
 *   missing from /params or stored with another shape or a non-float type, an object in
 *   /params that is not a parameter of the configuration, or metadata HDF5 cannot read.
 * A training state that is present but inconsistent (a moment missing, extra or with the
 * wrong shape, a required /optim or /train attribute missing, an optimizer type other than
 * adamw) is printed with each problem marked, then reported as KSA_EFORMAT naming the
 * first one: the model can be evaluated, but the run cannot be resumed from this file.   */
ksa_status ksa_ckpt_info_print(const char *path, const ksa_config_key *train_keys,
                               size_t n_train_keys, FILE *out);

#endif
