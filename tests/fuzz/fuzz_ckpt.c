/* fuzz_ckpt.c - the checkpoint readers (src/ckpt, HDF5 1.10): what `ksa eval`, `ksa sample`,
 * `ksa inspect`, `ksa train --resume` and `--init-from` read of a file.
 *
 * Input: the file's bytes (seeds: checkpoints written by `ksa init` and `ksa train`, made by
 * tests/fuzz/make_ckpt_seeds.sh). Read with:
 *   ksa_ckpt_read_config, then one of these, by the input's size mod 4 (each opens the file
 *   again, the slow part):
 *   0  when the model has at most MAX_PARAMS elements, the parameters (ksa_ckpt_read_params)
 *      and the AdamW moments (ksa_ckpt_read_moments);
 *   1  ksa_ckpt_init_from into a model of the file's configuration or a neighbouring one
 *      (tied or untied head, summary attention off: by size / 4 mod 3), when small;
 *   2  /train through the training keys (ksa_train_config_read_checkpoint), validated; the
 *      tokenizer and the run id;
 *   3  ksa_ckpt_info_print (`ksa inspect FILE`) and ksa_ckpt_has.
 * Properties: every outcome is a status (no abort, no overflow, no leak). HDF5 itself is
 * not built with sanitizers: a crash inside libhdf5 on a corrupted file is HDF5's
 * (docs/reliability.md lists the ones found).                                           */
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "ckpt/ckpt_info.h"
#include "ckpt/init_from.h"
#include "fuzzutil.h"
#include "model/decoder.h"
#include "train/train_config.h"

#define MAX_PARAMS ((size_t)4 << 20) /* elements of a model the harness allocates */

/* The configuration init-from loads into: the file's, or a neighbour of it. */
static ksa_model_config target_config(const ksa_model_config *file_cfg, size_t variant)
{
    ksa_model_config c = *file_cfg;
    if (variant == 1)
        c.tie_word_embeddings = !c.tie_word_embeddings;
    if (variant == 2)
        c.use_summary_attention = 0;
    ksa_model_layout layout;
    if (ksa_model_config_resolve(&c, &layout) != KSA_OK)
        c = *file_cfg;
    return c;
}

/* Declares the model of cfg and allocates it when it is small; 0 (nothing to free) if not. */
static int small_model(ksa_model *m, const ksa_model_config *cfg)
{
    if (ksa_model_declare(m, cfg) != KSA_OK) {
        ksa_model_free(m);
        return 0;
    }
    if (m->params.numel > MAX_PARAMS) {
        ksa_model_free(m);
        return 0;
    }
    ksa_params_alloc(&m->params);
    return 1;
}

/* `ksa eval` / `ksa sample` / resume: the parameters, then the AdamW moments. */
static void read_model(const char *path, const ksa_model_config *cfg)
{
    ksa_model m;
    if (!small_model(&m, cfg))
        return;
    ksa_params *p = &m.params;
    ksa_ckpt_read_params(path, p, 0);
    ksa_real *m1 = ksa_alloc(p->numel * sizeof *m1), *m2 = ksa_alloc(p->numel * sizeof *m2);
    ksa_ckpt_read_moments(path, p, m1, m2);
    ksa_free(m1);
    ksa_free(m2);
    ksa_model_free(&m);
}

/* `ksa train --init-from`: into the file's configuration or a neighbour. */
static void init_from(const char *path, const ksa_model_config *cfg, size_t variant)
{
    ksa_model m;
    ksa_model_config target = target_config(cfg, variant);
    if (!small_model(&m, &target))
        return;
    ksa_ckpt_init_from(path, &m, variant ? KSA_INIT_SUMMARY_COPY : KSA_INIT_SUMMARY_SCRATCH, 1,
                       fuzz_devnull(), (int)(variant & 1));
    ksa_model_free(&m);
}

/* `ksa train --resume`: /train through the training keys, validated; the stamps. */
static void read_training(const char *path, const ksa_model_config *cfg)
{
    ksa_train_config tc;
    ksa_ckpt_progress pr;
    if (ksa_train_config_read_checkpoint(path, &tc, &pr) == KSA_OK) {
        fuzz_check(pr.step >= 0, "step %ld", pr.step);
        if (ksa_train_config_validate(&tc, 1) == KSA_OK && cfg)
            ksa_train_config_check_model(&tc, cfg);
    }
    char text[KSA_CKPT_STAMP];
    ksa_ckpt_read_tokenizer(path, text, sizeof text);
    ksa_ckpt_read_run_id(path, text, sizeof text);
}

/* `ksa inspect FILE`. */
static void inspect(const char *path)
{
    size_t n_keys;
    const ksa_config_key *keys = ksa_train_config_keys(&n_keys);
    ksa_ckpt_info_print(path, keys, n_keys, fuzz_devnull());
    int found;
    ksa_ckpt_has(path, "/optim/exp_avg", &found);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_path(path, sizeof path, "checkpoint.h5");
    fuzz_write_file(path, data, size);
    ksa_model_config cfg;
    int have_config = ksa_ckpt_read_config(path, &cfg) == KSA_OK;
    switch (size % 4) { /* one reader per input: opening a file costs more than reading it */
    case 0:
        if (have_config)
            read_model(path, &cfg);
        break;
    case 1:
        if (have_config)
            init_from(path, &cfg, size / 4 % 3);
        break;
    case 2:
        read_training(path, have_config ? &cfg : NULL);
        break;
    default:
        inspect(path);
    }
    return 0;
}
