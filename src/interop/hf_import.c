/* hf_import.c - Hugging Face folder -> ksa.c checkpoint (hf_import.h). */
#include "hf_import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ckpt/ckpt.h"
#include "data/path.h"
#include "interop/hf_config.h"
#include "interop/safetensors.h"
#include "model/decoder.h"

#define MAX_SHARDS 4096

/* Where each tensor of the folder lives. */
typedef struct {
    ksa_st_file *files; /* owned, n_files open */
    size_t n_files;
    unsigned char **used; /* [n_files][tensors of the file]: 1 once a parameter took it */
} weights;

static void weights_close(weights *w)
{
    for (size_t i = 0; i < w->n_files; i++) {
        ksa_st_close(&w->files[i]);
        free(w->used[i]);
    }
    free(w->files);
    free(w->used);
    memset(w, 0, sizeof *w);
}

static ksa_status add_file(weights *w, const char *path)
{
    ksa_st_file *f = &w->files[w->n_files];
    KSA_TRY(ksa_st_open(f, path));
    w->used[w->n_files] = calloc(f->n ? f->n : 1, 1);
    KSA_ASSERT(w->used[w->n_files], "out of memory");
    w->n_files++;
    return KSA_OK;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Tensor `name` of the folder: *file and *index, or *file = NULL. */
static void find_tensor(const weights *w, const char *name, ksa_st_file **file, size_t *index)
{
    *file = NULL;
    for (size_t i = 0; i < w->n_files; i++) {
        long k = ksa_st_find(&w->files[i], name);
        if (k >= 0) {
            *file = &w->files[i];
            *index = (size_t)k;
            w->used[i][k] = 1;
            return;
        }
    }
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file}};
 * opens every shard it names and checks the map against the shards' headers. */
static ksa_status open_sharded(weights *w, const char *dir, const char *index_path)
{
    char *text;
    size_t len;
    KSA_TRY(ksa_path_read_all(index_path, "shard index", 64u << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    ksa_free(text);
    ksa_status st = KSA_OK;
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root || !cJSON_IsObject(root))
        st = ksa_fail(KSA_EFORMAT, "%s: not a JSON object", index_path);
    else if (!cJSON_IsObject(map))
        st = ksa_fail(KSA_EFORMAT, "%s: no \"weight_map\" object", index_path);
    /* the distinct shard names, in order of first mention */
    const char *names[MAX_SHARDS];
    size_t n = 0;
    for (const cJSON *e = st == KSA_OK ? map->child : NULL; e && st == KSA_OK; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') ||
            !strcmp(e->valuestring, "..")) {
            st = ksa_fail(KSA_EFORMAT, "%s: tensor '%s' maps to no plain file name in the folder",
                          index_path, e->string);
            break;
        }
        size_t k = 0;
        while (k < n && strcmp(names[k], e->valuestring))
            k++;
        if (k == n) {
            if (n == MAX_SHARDS) {
                st = ksa_fail(KSA_EFORMAT, "%s: more than %d shards", index_path, MAX_SHARDS);
                break;
            }
            names[n++] = e->valuestring;
        }
    }
    if (st == KSA_OK && n == 0)
        st = ksa_fail(KSA_EFORMAT, "%s: the weight_map is empty", index_path);
    if (st == KSA_OK) {
        w->files = calloc(n, sizeof *w->files);
        w->used = calloc(n, sizeof *w->used);
        KSA_ASSERT(w->files && w->used, "out of memory for %zu shards", n);
    }
    for (size_t k = 0; k < n && st == KSA_OK; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        if (!file_exists(path))
            st = ksa_fail(KSA_EIO, "%s names shard %s, which is missing", index_path, path);
        else
            st = add_file(w, path);
    }
    /* the map and the headers must agree both ways */
    for (const cJSON *e = st == KSA_OK ? map->child : NULL; e && st == KSA_OK; e = e->next) {
        size_t k = 0;
        while (strcmp(names[k], e->valuestring))
            k++;
        if (ksa_st_find(&w->files[k], e->string) < 0)
            st = ksa_fail(KSA_EFORMAT, "%s: tensor '%s' is mapped to %s/%s, which lacks it",
                          index_path, e->string, dir, names[k]);
    }
    for (size_t k = 0; k < w->n_files && st == KSA_OK; k++)
        for (size_t t = 0; t < w->files[k].n && st == KSA_OK; t++) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(map, w->files[k].tensors[t].name);
            if (!e || strcmp(e->valuestring, names[k]))
                st = ksa_fail(KSA_EFORMAT, "%s: tensor '%s' of %s is not mapped to it", index_path,
                              w->files[k].tensors[t].name, w->files[k].path);
        }
    cJSON_Delete(root);
    return st;
}

static ksa_status open_weights(weights *w, const char *dir)
{
    memset(w, 0, sizeof *w);
    char index_path[4096], single[4096];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    ksa_status st;
    if (file_exists(index_path))
        st = open_sharded(w, dir, index_path);
    else if (file_exists(single)) {
        w->files = calloc(1, sizeof *w->files);
        w->used = calloc(1, sizeof *w->used);
        KSA_ASSERT(w->files && w->used, "out of memory");
        st = add_file(w, single);
    } else
        st = ksa_fail(KSA_EIO,
                      "%s holds neither model.safetensors nor "
                      "model.safetensors.index.json",
                      dir);
    if (st != KSA_OK)
        weights_close(w);
    return st;
}

ksa_status ksa_hf_tokenizer_eot(const char *path, const unsigned char *json, size_t len,
                                int *eot_id)
{
    *eot_id = -1;
    cJSON *root = cJSON_ParseWithLength((const char *)json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ksa_fail(KSA_EFORMAT, "%s: not a JSON object (a tokenizer.json is one)", path);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *t = cJSON_IsArray(added) ? added->child : NULL; t; t = t->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (cJSON_IsString(content) && !strcmp(content->valuestring, "<|endoftext|>") &&
            cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 2147483647.0)
            *eot_id = (int)id->valuedouble;
    }
    cJSON_Delete(root);
    return KSA_OK;
}

static ksa_status read_whole(const char *path, unsigned char **bytes, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        if (f)
            fclose(f);
        return ksa_fail(KSA_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    *len = (size_t)sb.st_size;
    *bytes = malloc(*len ? *len : 1);
    KSA_ASSERT(*bytes, "out of memory for %s (%zu bytes)", path, *len);
    size_t got = fread(*bytes, 1, *len, f);
    fclose(f);
    if (got != *len) {
        free(*bytes);
        *bytes = NULL;
        return ksa_fail(KSA_EIO, "cannot read %s", path);
    }
    return KSA_OK;
}

/* Reads elements [first, first + n) of a tensor into dst[n] (ksa_real). In the float64 build
 * the floats are read into the upper half of dst's bytes and widened from the front: entry
 * k is written (bytes 8k .. 8k+8) only after floats 0 .. k were read (bytes 4n + 4k ..). */
static ksa_status read_into(ksa_st_file *f, size_t t, size_t first, size_t n, ksa_real *dst)
{
#ifdef KSA_REAL_DOUBLE
    float *tmp = (float *)dst + n;
    KSA_TRY(ksa_st_read_f32(f, t, first, n, tmp));
    for (size_t k = 0; k < n; k++)
        dst[k] = (double)tmp[k];
    return KSA_OK;
#else
    return ksa_st_read_f32(f, t, first, n, dst);
#endif
}

static void shape_text(char *out, size_t cap, int ndim, const size_t *shape)
{
    size_t at = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(out + at, cap - at, "%s%zu", d ? ", " : "", shape[d]);
    if (at < cap)
        snprintf(out + at, cap - at, "]");
}

/* The tensor of the folder for parameter e, with rows_in_file rows (e's rows plus the extra
 * merged rows), checked; *file = NULL when absent. */
static ksa_status take_tensor(weights *w, const char *name, int ndim, const size_t *shape,
                              ksa_st_file **file, size_t *index)
{
    find_tensor(w, name, file, index);
    if (!*file)
        return ksa_fail(KSA_EFORMAT, "the weights lack tensor '%s'", name);
    const ksa_st_tensor *t = &(*file)->tensors[*index];
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        char got[128], want[128];
        shape_text(got, sizeof got, t->ndim, t->shape);
        shape_text(want, sizeof want, ndim, shape);
        return ksa_fail(KSA_EFORMAT, "%s: tensor '%s' has shape %s, the configuration needs %s",
                        (*file)->path, name, got, want);
    }
    if (t->dtype == KSA_ST_OTHER)
        return ksa_fail(KSA_EFORMAT,
                        "%s: tensor '%s' has dtype %s; only F32, F16, BF16 and F64 weights are "
                        "read",
                        (*file)->path, name, t->dtype_name);
    return KSA_OK;
}

ksa_status ksa_hf_import(const char *dir, const char *out, ksa_hf_import_info *info)
{
    memset(info, 0, sizeof *info);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ksa_model_config cfg;
    ksa_hf_extra extra;
    KSA_TRY(ksa_hf_config_read(path, &cfg, &extra));
    ksa_model_layout layout;
    if (ksa_model_config_resolve(&cfg, &layout) != KSA_OK)
        return ksa_fail(KSA_EINVAL, "config %s: %s", path, ksa_last_error());
    weights w;
    KSA_TRY(open_weights(&w, dir));
    info->n_files = w.n_files;
    /* the exported form (KSA_SPEC §7.3): summary rows below embed_tokens */
    size_t S = layout.S;
    ksa_st_file *f;
    size_t t;
    ksa_status st = KSA_OK;
    find_tensor(&w, "summary_embedding.weight", &f, &t);
    if (f)
        w.used[f - w.files][t] = 0; /* taken again below, as a parameter */
    int merged = layout.independent_embedding && !f;
    if (merged) {
        long V = cfg.vocab_size - (long)S;
        if (V < 1)
            st = ksa_fail(KSA_EINVAL,
                          "config %s: vocab_size %ld cannot hold the %zu merged summary rows "
                          "(KSA_SPEC §7.3)",
                          path, cfg.vocab_size, S);
        else if (cfg.summary_token_begin >= 0 && cfg.summary_token_begin != V)
            st = ksa_fail(KSA_EINVAL,
                          "config %s: inconsistent keys: vocab_size %ld with %zu summary rows "
                          "merged into embed_tokens puts them at %ld, but summary_token_begin = "
                          "%ld",
                          path, cfg.vocab_size, S, V, cfg.summary_token_begin);
        else {
            cfg.vocab_size = V;
            cfg.summary_token_begin = -1; /* unused with independent summary parameters */
        }
    }
    ksa_model m;
    int have_model = 0;
    if (st == KSA_OK && (st = ksa_model_declare(&m, &cfg)) != KSA_OK)
        st = ksa_fail(st, "config %s: %s", path, ksa_last_error());
    size_t bytes = 0;
    if (st == KSA_OK) {
        have_model = 1;
        bytes = (m.params.numel ? m.params.numel : 16) * sizeof(ksa_real);
        m.params.data = ksa_alloc_sparse_region(bytes); /* zero pages, touched as written */
    }
    for (size_t i = 0; st == KSA_OK && i < m.params.n; i++) {
        const ksa_param *e = &m.params.table[i];
        size_t shape[2] = {e->shape[0], e->shape[1]}, extra_rows = 0;
        int is_embed = (long)i == m.embed_tokens, is_head = (long)i == m.lm_head;
        if (merged && (is_embed || is_head))
            extra_rows = S;
        if ((long)i == m.summary_embedding && merged)
            continue; /* read with embed_tokens */
        shape[0] += extra_rows;
        st = take_tensor(&w, e->name, e->ndim, shape, &f, &t);
        if (st != KSA_OK)
            break;
        info->n_tensors++;
        st = read_into(f, t, 0, e->numel, m.params.data + e->offset);
        if (st == KSA_OK && merged && is_embed) {
            const ksa_param *se = &m.params.table[m.summary_embedding];
            st = read_into(f, t, e->numel, se->numel, m.params.data + se->offset);
        }
        if (st == KSA_OK && merged && is_head) { /* the padding rows: zero when exported */
            size_t D = e->shape[1];
            float row;
            int nonzero = 0;
            for (size_t k = 0; k < S * D && st == KSA_OK && !nonzero; k++) {
                st = ksa_st_read_f32(f, t, e->numel + k, 1, &row);
                nonzero = row != 0;
            }
            if (nonzero)
                fprintf(stderr,
                        "%s: the last %zu rows of lm_head.weight (summary ids) are not zero; "
                        "dropped (KSA_SPEC §7.3)\n",
                        f->path, S);
        }
    }
    /* every tensor must have been used */
    for (size_t k = 0; st == KSA_OK && k < w.n_files; k++)
        for (size_t j = 0; st == KSA_OK && j < w.files[k].n; j++)
            if (!w.used[k][j])
                st = ksa_fail(KSA_EFORMAT,
                              "%s: tensor '%s' is not a parameter of the model config.json "
                              "describes",
                              w.files[k].path, w.files[k].tensors[j].name);
    /* the tokenizer */
    unsigned char *json = NULL;
    size_t json_len = 0;
    ksa_ckpt_tokenizer tok = {.type = "unknown", .eot_id = -1};
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (st == KSA_OK && file_exists(path)) {
        st = read_whole(path, &json, &json_len);
        if (st == KSA_OK)
            st = ksa_hf_tokenizer_eot(path, json, json_len, &tok.eot_id);
        tok.type = NULL;
        tok.json = json;
        tok.json_len = json_len;
    } else if (extra.tokenizer[0]) { /* written by ksa export for a model without a json */
        tok.type = extra.tokenizer;
        tok.eot_id = (int)extra.eos_token_id;
    }
    if (st == KSA_OK && tok.eot_id >= cfg.vocab_size)
        st = ksa_fail(KSA_EFORMAT, "%s: end-of-text id %d is not below vocab_size %ld", dir,
                      tok.eot_id, cfg.vocab_size);
    if (st == KSA_OK)
        st = ksa_ckpt_write_model_tokenizer(out, &cfg, &m.params, &tok);
    if (st == KSA_OK) {
        info->n_params = ksa_params_count(&m.params);
        info->merged_summary = merged;
        info->eot_id = tok.eot_id;
        if (json)
            ksa_ckpt_tokenizer_identity(json, json_len, info->tokenizer);
        else
            snprintf(info->tokenizer, sizeof info->tokenizer, "%s", tok.type);
        info->peak_rss = ksa_proc_status_bytes("VmHWM");
    }
    free(json);
    if (have_model) {
        ksa_free_region(m.params.data, bytes);
        m.params.data = NULL;
        ksa_model_free(&m);
    }
    weights_close(&w);
    return st;
}
