/* hf_export.c - ksa.c checkpoint -> Hugging Face folder (hf_export.h). */
#include "hf_export.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "interop/hf_config.h"
#include "model/decoder.h"

typedef struct {
    const ksa_model *m;
    const long *param; /* [n entries]: the parameter of each entry */
    size_t S;          /* merged summary rows (0: none) */
} source_ctx;

/* Entry i's values: its parameter, then for a merged embed_tokens the summary embedding
 * and for a merged lm_head S zero rows. */
static ksa_status fill(void *ctx, size_t i, float *out)
{
    const source_ctx *c = ctx;
    const ksa_params *p = &c->m->params;
    const ksa_param *e = &p->table[c->param[i]];
    for (size_t k = 0; k < e->numel; k++)
        out[k] = (float)p->data[e->offset + k];
    if (c->S && c->param[i] == c->m->embed_tokens) {
        const ksa_param *se = &p->table[c->m->summary_embedding];
        for (size_t k = 0; k < se->numel; k++)
            out[e->numel + k] = (float)p->data[se->offset + k];
    } else if (c->S && c->param[i] == c->m->lm_head)
        memset(out + e->numel, 0, c->S * e->shape[1] * sizeof *out);
    return KSA_OK;
}

/* The files being written: temporary names, renamed together at the end. */
typedef struct {
    char (*tmp)[4096], (*final)[4096]; /* [cap] each, owned */
    size_t n, cap;
} file_set;

static const char *add_file(file_set *fs, const char *dir, const char *name)
{
    KSA_ASSERT(fs->n < fs->cap, "more files than planned (%zu)", fs->cap);
    snprintf(fs->final[fs->n], sizeof fs->final[0], "%s/%s", dir, name);
    snprintf(fs->tmp[fs->n], sizeof fs->tmp[0], "%s/%s.tmp", dir, name);
    return fs->tmp[fs->n++];
}

static ksa_status write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return ksa_fail(KSA_EIO, "cannot create %s: %s", path, strerror(errno));
    ksa_status st = KSA_OK;
    if (fwrite(b, 1, n, f) != n || fflush(f) != 0 || fsync(fileno(f)) != 0)
        st = ksa_fail(KSA_EIO, "cannot write %s: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == KSA_OK)
        st = ksa_fail(KSA_EIO, "cannot write %s: %s", path, strerror(errno));
    return st;
}

static ksa_status write_index(const char *path, const ksa_st_entry *e, size_t n,
                              const size_t *shard_of, size_t n_shards, size_t total)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", shard_of[i] + 1, n_shards);
        cJSON_AddStringToObject(map, e[i].name, name);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    KSA_ASSERT(text, "out of memory");
    ksa_status st = write_bytes(path, (const unsigned char *)text, strlen(text));
    free(text);
    return st;
}

static const char *torch_dtype(ksa_st_dtype d)
{
    return d == KSA_ST_BF16 ? "bfloat16" : d == KSA_ST_F16 ? "float16" : "float32";
}

/* Shards of an earlier export into dir that this one did not write, as save_pretrained
 * does: model-NNNNN-of-MMMMM.safetensors with MMMMM != n_shards (this export's shards were
 * all replaced; n_shards = 1 wrote none). Only names of exactly that form are touched.  */
static void remove_stale_shards(const char *dir, size_t n_shards)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *ent; (ent = readdir(d)) != NULL;) {
        unsigned k, of;
        char tail[2];
        if (strlen(ent->d_name) != strlen("model-00001-of-00001.safetensors") ||
            sscanf(ent->d_name, "model-%5u-of-%5u.safetensor%1s", &k, &of, tail) != 3 ||
            strcmp(ent->d_name + strlen(ent->d_name) - 12, ".safetensors") != 0)
            continue;
        if (n_shards > 1 && of == n_shards)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
}

ksa_status ksa_hf_export(const char *ckpt, const char *dir, ksa_st_dtype dtype,
                         size_t max_shard_bytes, ksa_hf_export_info *info)
{
    memset(info, 0, sizeof *info);
    KSA_ASSERT(dtype == KSA_ST_F32 || dtype == KSA_ST_F16 || dtype == KSA_ST_BF16,
               "export dtype %d", (int)dtype);
    ksa_model_config cfg;
    KSA_TRY(ksa_ckpt_read_config(ckpt, &cfg));
    char type[256];
    int eot = -1;
    unsigned char *json = NULL;
    size_t json_len = 0;
    KSA_TRY(ksa_ckpt_read_tokenizer(ckpt, type, sizeof type));
    KSA_TRY(ksa_ckpt_read_eot_id(ckpt, &eot));
    KSA_TRY(ksa_ckpt_read_tokenizer_json(ckpt, &json, &json_len));
    ksa_model m;
    ksa_status st = ksa_model_declare(&m, &cfg);
    if (st != KSA_OK) {
        free(json);
        return st;
    }
    size_t bytes = (m.params.numel ? m.params.numel : 16) * sizeof(ksa_real);
    m.params.data = ksa_alloc_sparse_region(bytes);
    st = ksa_ckpt_read_params(ckpt, &m.params, 0);
    /* the entries of the safetensors files, in the order of the parameter table */
    size_t S = m.layout.independent_embedding ? m.layout.S : 0;
    ksa_st_entry *e = calloc(m.params.n, sizeof *e);
    long *param = calloc(m.params.n, sizeof *param);
    size_t *shard_of = calloc(m.params.n, sizeof *shard_of);
    KSA_ASSERT(e && param && shard_of, "out of memory");
    size_t n = 0, n_shards = 0, in_shard = 0, total = 0;
    for (size_t i = 0; st == KSA_OK && i < m.params.n; i++) {
        const ksa_param *p = &m.params.table[i];
        if (S && (long)i == m.summary_embedding)
            continue; /* merged below embed_tokens */
        e[n] = (ksa_st_entry){
            .name = p->name, .dtype = dtype, .ndim = p->ndim, .shape = {p->shape[0], p->shape[1]}};
        if (S && ((long)i == m.embed_tokens || (long)i == m.lm_head))
            e[n].shape[0] += S;
        param[n] = (long)i;
        size_t b = ksa_st_entry_bytes(&e[n]);
        if (n == 0 || (max_shard_bytes && in_shard && in_shard + b > max_shard_bytes)) {
            n_shards++;
            in_shard = 0;
        }
        shard_of[n] = n_shards - 1;
        in_shard += b;
        total += b;
        n++;
    }
    file_set fs = {.cap = n_shards + 3}; /* the shards, the index, config and tokenizer */
    fs.tmp = calloc(fs.cap, sizeof *fs.tmp);
    fs.final = calloc(fs.cap, sizeof *fs.final);
    KSA_ASSERT(fs.tmp && fs.final, "out of memory for %zu file names", fs.cap);
    struct stat sb;
    if (st == KSA_OK && stat(dir, &sb) != 0 && mkdir(dir, 0777) != 0)
        st = ksa_fail(KSA_EIO, "cannot create folder %s: %s", dir, strerror(errno));
    else if (st == KSA_OK && stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        st = ksa_fail(KSA_EIO, "%s exists and is not a folder", dir);
    source_ctx ctx = {&m, param, S};
    for (size_t k = 0, first = 0; st == KSA_OK && k < n_shards; k++) {
        size_t last = first;
        while (last < n && shard_of[last] == k)
            last++;
        char name[64];
        if (n_shards == 1)
            snprintf(name, sizeof name, "model.safetensors");
        else
            snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
        source_ctx part = ctx;
        part.param = param + first;
        st = ksa_st_write(add_file(&fs, dir, name), e + first, last - first, fill, &part);
        first = last;
    }
    if (st == KSA_OK && n_shards > 1)
        st = write_index(add_file(&fs, dir, "model.safetensors.index.json"), e, n, shard_of,
                         n_shards, total);
    if (st == KSA_OK)
        st = ksa_hf_config_write(add_file(&fs, dir, "config.json"), &cfg,
                                 S ? cfg.vocab_size + (long)S : 0, torch_dtype(dtype), eot,
                                 json ? NULL : type);
    if (st == KSA_OK && json)
        st = write_bytes(add_file(&fs, dir, "tokenizer.json"), json, json_len);
    for (size_t k = 0; st == KSA_OK && k < fs.n; k++)
        if (rename(fs.tmp[k], fs.final[k]) != 0)
            st = ksa_fail(KSA_EIO, "cannot rename %s to %s: %s", fs.tmp[k], fs.final[k],
                          strerror(errno));
    if (st != KSA_OK)
        for (size_t k = 0; k < fs.n; k++)
            unlink(fs.tmp[k]);
    if (st == KSA_OK) { /* the other layout's file from an earlier export would mislead */
        char stale[4096];
        snprintf(stale, sizeof stale, "%s/%s", dir,
                 n_shards == 1 ? "model.safetensors.index.json" : "model.safetensors");
        unlink(stale);
        remove_stale_shards(dir, n_shards);
        info->n_shards = n_shards;
        info->n_tensors = n;
        info->bytes = total;
        info->merged_summary = S != 0;
        info->tokenizer_json = json != NULL;
    }
    free(fs.tmp);
    free(fs.final);
    free(e);
    free(param);
    free(shard_of);
    free(json);
    ksa_free_region(m.params.data, bytes);
    m.params.data = NULL;
    ksa_model_free(&m);
    return st;
}
