/* safetensors.c - the safetensors reader (mmap, one tensor at a time) and writer
 * (safetensors.h). The JSON header is parsed with cJSON.                                  */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* ---- conversions ------------------------------------------------------------------------ */
uint16_t ksa_f32_to_bf16(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign and a quiet, non-zero payload */
        return (uint16_t)((b >> 16) | 0x0040u);
    /* round to nearest even: add 0x7fff plus the lowest kept bit, then truncate; a carry into
     * the exponent is the correct result (up to inf on overflow) */
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

float ksa_bf16_to_f32(uint16_t h)
{
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

uint16_t ksa_f32_to_f16(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    uint32_t a = b & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep the top of the payload */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 (halfway above 65504, ties to even = up): inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: a subnormal half (or zero), units of 2^-24 */
        uint32_t e = a >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t m = (a & 0x7fffffu) | 0x800000u; /* value = m * 2^(e - 150) */
        uint32_t shift = 126 - e;                 /* 14 .. 24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u)))
            r++; /* 0x400 is the smallest normal: still the right encoding */
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; /* exponent rebiased from 127 to 15 */
    uint32_t out = r >> 13, rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (out & 1u)))
        out++;
    return (uint16_t)(sign | out);
}

float ksa_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, b;
    if (e == 0x1f)
        b = sign | 0x7f800000u | (m << 13);
    else if (e == 0) {
        if (!m)
            b = sign;
        else { /* subnormal m * 2^-24: normalise */
            e = 113;
            while (!(m & 0x400u)) {
                m <<= 1;
                e--;
            }
            b = sign | (e << 23) | ((m & 0x3ffu) << 13);
        }
    } else
        b = sign | ((e + 112) << 23) | (m << 13);
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* ---- dtypes ----------------------------------------------------------------------------- */
static const struct {
    const char *name;
    size_t width;
    ksa_st_dtype dtype;
} dtypes[] = {
    {"F64", 8, KSA_ST_F64},    {"F32", 4, KSA_ST_F32},       {"F16", 2, KSA_ST_F16},
    {"BF16", 2, KSA_ST_BF16},  {"I64", 8, KSA_ST_OTHER},     {"U64", 8, KSA_ST_OTHER},
    {"I32", 4, KSA_ST_OTHER},  {"U32", 4, KSA_ST_OTHER},     {"I16", 2, KSA_ST_OTHER},
    {"U16", 2, KSA_ST_OTHER},  {"I8", 1, KSA_ST_OTHER},      {"U8", 1, KSA_ST_OTHER},
    {"BOOL", 1, KSA_ST_OTHER}, {"F8_E4M3", 1, KSA_ST_OTHER}, {"F8_E5M2", 1, KSA_ST_OTHER},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

size_t ksa_st_dtype_width(const char *name)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (!strcmp(name, dtypes[i].name))
            return dtypes[i].width;
    return 0;
}

static const char *dtype_name(ksa_st_dtype d)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].dtype == d)
            return dtypes[i].name;
    return "?";
}

/* ---- reading ------------------------------------------------------------------------------ */
static void free_tensors(ksa_st_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n = 0;
}

void ksa_st_close(ksa_st_file *f)
{
    free_tensors(f);
    if (f->map)
        munmap((void *)f->map, f->size);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

/* A non-negative integer of JSON (cJSON keeps numbers as double: exact up to 2^53). */
static int json_size(const cJSON *v, size_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d))
        return 0;
    *out = (size_t)d;
    return 1;
}

/* One entry of the header into t; errors name the file and the tensor. */
static ksa_status parse_entry(const char *path, const cJSON *item, ksa_st_tensor *t)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return ksa_fail(KSA_EFORMAT, "safetensors %s: tensor '%s' is not a JSON object", path,
                        name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(off))
        return ksa_fail(KSA_EFORMAT,
                        "safetensors %s: tensor '%s' lacks a string dtype, a shape list or a "
                        "data_offsets list",
                        path, name);
    for (const cJSON *k = item->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") &&
            strcmp(k->string, "data_offsets"))
            return ksa_fail(KSA_EFORMAT, "safetensors %s: tensor '%s' has an unknown field '%s'",
                            path, name, k->string);
    size_t width = ksa_st_dtype_width(dt->valuestring);
    if (!width)
        return ksa_fail(KSA_EFORMAT, "safetensors %s: tensor '%s' has unknown dtype '%s'", path,
                        name, dt->valuestring);
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
    t->dtype = KSA_ST_OTHER;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (!strcmp(dtypes[i].name, dt->valuestring))
            t->dtype = dtypes[i].dtype;
    int nd = cJSON_GetArraySize(shape);
    if (nd > KSA_ST_MAX_DIMS)
        return ksa_fail(KSA_EFORMAT, "safetensors %s: tensor '%s' has %d dimensions (at most %d)",
                        path, name, nd, KSA_ST_MAX_DIMS);
    t->ndim = nd;
    t->numel = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        if (!json_size(v, &t->shape[d]) || t->shape[d] > ((size_t)1 << 40))
            return ksa_fail(KSA_EFORMAT,
                            "safetensors %s: tensor '%s': shape entry %d is not a non-negative "
                            "integer",
                            path, name, d);
        if (t->shape[d] && t->numel > ((size_t)1 << 52) / t->shape[d])
            return ksa_fail(KSA_EFORMAT, "safetensors %s: tensor '%s': shape too large", path,
                            name);
        t->numel *= t->shape[d];
    }
    if (cJSON_GetArraySize(off) != 2 || !json_size(off->child, &t->begin) ||
        !json_size(off->child->next, &t->end) || t->end < t->begin)
        return ksa_fail(KSA_EFORMAT,
                        "safetensors %s: tensor '%s': data_offsets is not [begin, end] with "
                        "0 <= begin <= end",
                        path, name);
    if (t->end - t->begin != t->numel * width)
        return ksa_fail(KSA_EFORMAT,
                        "safetensors %s: tensor '%s': data_offsets [%zu, %zu] hold %zu bytes, "
                        "its shape and dtype %s need %zu",
                        path, name, t->begin, t->end, t->end - t->begin, dt->valuestring,
                        t->numel * width);
    t->name = strdup(name);
    if (!t->name)
        return ksa_fail(KSA_ENOMEM, "safetensors %s: out of memory", path);
    return KSA_OK;
}

static int by_begin(const void *a, const void *b)
{
    const ksa_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static ksa_status parse_header(ksa_st_file *f, const char *json, size_t len)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return ksa_fail(KSA_EFORMAT, "safetensors %s: the header is not valid JSON", f->path);
    ksa_status st = KSA_OK;
    for (const char *p = end; p < json + len && st == KSA_OK; p++)
        if (*p != ' ')
            st = ksa_fail(KSA_EFORMAT,
                          "safetensors %s: the header has more than one JSON value (byte %zu)",
                          f->path, (size_t)(p - json) + 8);
    if (st == KSA_OK && !cJSON_IsObject(root))
        st = ksa_fail(KSA_EFORMAT, "safetensors %s: the header is not a JSON object", f->path);
    size_t cap = 0;
    for (const cJSON *it = root && st == KSA_OK ? root->child : NULL; it; it = it->next)
        cap++;
    if (st == KSA_OK && cap) {
        f->tensors = calloc(cap, sizeof *f->tensors);
        if (!f->tensors)
            st =
                ksa_fail(KSA_ENOMEM, "safetensors %s: out of memory for %zu tensors", f->path, cap);
    }
    for (const cJSON *it = st == KSA_OK ? root->child : NULL; it && st == KSA_OK; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it))
                st = ksa_fail(KSA_EFORMAT, "safetensors %s: __metadata__ is not a JSON object",
                              f->path);
            for (const cJSON *m = it->child; m && st == KSA_OK; m = m->next)
                if (!cJSON_IsString(m))
                    st = ksa_fail(KSA_EFORMAT,
                                  "safetensors %s: __metadata__ value '%s' is not a string",
                                  f->path, m->string);
            continue;
        }
        for (size_t j = 0; j < f->n && st == KSA_OK; j++)
            if (!strcmp(f->tensors[j].name, it->string))
                st = ksa_fail(KSA_EFORMAT, "safetensors %s: tensor '%s' appears twice", f->path,
                              it->string);
        if (st == KSA_OK)
            st = parse_entry(f->path, it, &f->tensors[f->n]);
        if (st == KSA_OK)
            f->n++;
    }
    cJSON_Delete(root);
    if (st != KSA_OK)
        return st;
    /* the tensors must tile [0, data bytes): sorted by begin, each starts where the previous
     * ends (a gap is a hole, an earlier start an overlap) and the last ends at the file's end */
    qsort(f->tensors, f->n, sizeof *f->tensors, by_begin);
    size_t data_bytes = f->size - f->data_start, at = 0;
    for (size_t i = 0; i < f->n; i++) {
        const ksa_st_tensor *t = &f->tensors[i];
        if (t->end > data_bytes)
            return ksa_fail(KSA_EFORMAT,
                            "safetensors %s: tensor '%s' ends at data byte %zu, past the end of "
                            "the file (%zu data bytes): truncated?",
                            f->path, t->name, t->end, data_bytes);
        if (t->begin < at)
            return ksa_fail(KSA_EFORMAT,
                            "safetensors %s: tensor '%s' (bytes %zu-%zu) overlaps tensor '%s' "
                            "(ending at %zu)",
                            f->path, t->name, t->begin, t->end, f->tensors[i - 1].name, at);
        if (t->begin > at)
            return ksa_fail(KSA_EFORMAT,
                            "safetensors %s: a hole of %zu bytes before tensor '%s' (data "
                            "bytes %zu-%zu belong to no tensor)",
                            f->path, t->begin - at, t->name, at, t->begin);
        at = t->end;
    }
    if (at != data_bytes)
        return ksa_fail(KSA_EFORMAT,
                        "safetensors %s: %zu bytes after the last tensor belong to no tensor",
                        f->path, data_bytes - at);
    return KSA_OK;
}

ksa_status ksa_st_open(ksa_st_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path)
        return ksa_fail(KSA_ENOMEM, "out of memory");
    ksa_status st = KSA_OK;
    struct stat sb;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0 || fstat(f->fd, &sb) != 0) {
        st = ksa_fail(KSA_EIO, "cannot open safetensors file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = ksa_fail(KSA_EIO, "cannot open safetensors file %s: not a regular file", path);
        goto out;
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        st = ksa_fail(KSA_EFORMAT,
                      "safetensors %s: %zu bytes, shorter than the 8-byte header length: "
                      "truncated?",
                      path, f->size);
        goto out;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = ksa_fail(KSA_EIO, "cannot map safetensors file %s: %s", path, strerror(errno));
        goto out;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) /* little-endian whatever the host */
        n = (n << 8) | f->map[i];
    if (n > f->size - 8) {
        st = ksa_fail(KSA_EFORMAT,
                      "safetensors %s: the header length %llu is larger than the file "
                      "(%zu bytes): truncated or not a safetensors file",
                      path, (unsigned long long)n, f->size);
        goto out;
    }
    if (n > KSA_ST_MAX_HEADER) {
        st =
            ksa_fail(KSA_EFORMAT, "safetensors %s: the header length %llu is above the limit of %u",
                     path, (unsigned long long)n, KSA_ST_MAX_HEADER);
        goto out;
    }
    if (n < 2 || f->map[8] != '{') {
        st = ksa_fail(KSA_EFORMAT, "safetensors %s: the header does not start with '{'", path);
        goto out;
    }
    f->data_start = 8 + (size_t)n;
    st = parse_header(f, (const char *)f->map + 8, (size_t)n);
out:
    if (st != KSA_OK)
        ksa_st_close(f);
    return st;
}

long ksa_st_find(const ksa_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name))
            return (long)i;
    return -1;
}

ksa_status ksa_st_read_f32(ksa_st_file *f, size_t i, size_t first, size_t n, float *out)
{
    const ksa_st_tensor *t = &f->tensors[i];
    KSA_ASSERT(first <= t->numel && n <= t->numel - first,
               "elements %zu + %zu of tensor '%s' of %zu elements", first, n, t->name, t->numel);
    size_t width = ksa_st_dtype_width(t->dtype_name);
    const unsigned char *src = f->map + f->data_start + t->begin + first * width;
    switch (t->dtype) {
    case KSA_ST_F32:
        memcpy(out, src, n * 4); /* little-endian host (x86-64, aarch64) */
        break;
    case KSA_ST_F64:
        for (size_t k = 0; k < n; k++) {
            double d;
            memcpy(&d, src + 8 * k, 8);
            out[k] = (float)d;
        }
        break;
    case KSA_ST_F16:
    case KSA_ST_BF16:
        for (size_t k = 0; k < n; k++) {
            uint16_t h = (uint16_t)(src[2 * k] | (src[2 * k + 1] << 8));
            out[k] = t->dtype == KSA_ST_F16 ? ksa_f16_to_f32(h) : ksa_bf16_to_f32(h);
        }
        break;
    default:
        return ksa_fail(KSA_EFORMAT,
                        "safetensors %s: tensor '%s' has dtype %s; only F32, F16, BF16 and F64 "
                        "weights are read",
                        f->path, t->name, t->dtype_name);
    }
    /* give the tensor's pages back: the mapping never holds more than the tensor being read */
    long page = sysconf(_SC_PAGESIZE);
    size_t lo = (f->data_start + t->begin + first * width) / (size_t)page * (size_t)page;
    size_t hi = f->data_start + t->begin + (first + n) * width;
    if (hi > lo)
        madvise((void *)(f->map + lo), hi - lo, MADV_DONTNEED);
    return KSA_OK;
}

/* ---- writing ------------------------------------------------------------------------------ */
static size_t entry_numel(const ksa_st_entry *e)
{
    size_t n = 1;
    for (int d = 0; d < e->ndim; d++)
        n *= e->shape[d];
    return n;
}

size_t ksa_st_entry_bytes(const ksa_st_entry *e)
{
    return entry_numel(e) * ksa_st_dtype_width(dtype_name(e->dtype));
}

static char *make_header(const ksa_st_entry *e, size_t n, size_t *len)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, e[i].name);
        cJSON_AddStringToObject(t, "dtype", dtype_name(e[i].dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e[i].shape[d]));
        size_t bytes = ksa_st_entry_bytes(&e[i]);
        cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + bytes)));
        at += bytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    KSA_ASSERT(text, "out of memory for a safetensors header of %zu tensors", n);
    size_t l = strlen(text), padded = (l + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    KSA_ASSERT(out, "out of memory for a safetensors header of %zu bytes", padded);
    memset(out + l, ' ', padded - l);
    out[padded] = '\0';
    *len = padded;
    return out;
}

ksa_status ksa_st_write(const char *path, const ksa_st_entry *e, size_t n, ksa_st_source source,
                        void *ctx)
{
    size_t hlen, most = 0;
    char *header = make_header(e, n, &hlen);
    for (size_t i = 0; i < n; i++)
        if (entry_numel(&e[i]) > most)
            most = entry_numel(&e[i]);
    float *vals = malloc((most ? most : 1) * sizeof *vals);
    uint16_t *half = malloc((most ? most : 1) * sizeof *half);
    FILE *fp = fopen(path, "wb");
    ksa_status st = KSA_OK;
    if (!vals || !half)
        st = ksa_fail(KSA_ENOMEM, "out of memory writing %s (a tensor of %zu values)", path, most);
    else if (!fp)
        st = ksa_fail(KSA_EIO, "cannot create %s: %s", path, strerror(errno));
    unsigned char len8[8];
    for (int b = 0; b < 8; b++)
        len8[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    if (st == KSA_OK && (fwrite(len8, 1, 8, fp) != 8 || fwrite(header, 1, hlen, fp) != hlen))
        st = ksa_fail(KSA_EIO, "cannot write %s: %s", path, strerror(errno));
    for (size_t i = 0; i < n && st == KSA_OK; i++) {
        size_t k = entry_numel(&e[i]);
        st = source(ctx, i, vals);
        if (st != KSA_OK)
            break;
        size_t wrote;
        if (e[i].dtype == KSA_ST_F32)
            wrote = fwrite(vals, 4, k, fp);
        else {
            for (size_t j = 0; j < k; j++)
                half[j] =
                    e[i].dtype == KSA_ST_BF16 ? ksa_f32_to_bf16(vals[j]) : ksa_f32_to_f16(vals[j]);
            wrote = fwrite(half, 2, k, fp);
        }
        if (wrote != k)
            st = ksa_fail(KSA_EIO, "cannot write %s (tensor '%s'): %s", path, e[i].name,
                          strerror(errno));
    }
    if (fp && fflush(fp) != 0 && st == KSA_OK)
        st = ksa_fail(KSA_EIO, "cannot write %s: %s", path, strerror(errno));
    if (fp && st == KSA_OK && fsync(fileno(fp)) != 0)
        st = ksa_fail(KSA_EIO, "cannot sync %s: %s", path, strerror(errno));
    if (fp && fclose(fp) != 0 && st == KSA_OK)
        st = ksa_fail(KSA_EIO, "cannot close %s: %s", path, strerror(errno));
    free(header);
    free(vals);
    free(half);
    return st;
}
