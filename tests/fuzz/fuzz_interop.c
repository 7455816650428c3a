/* fuzz_interop.c - the readers of Hugging Face files (src/interop): a safetensors file
 * (safetensors.c: header length, JSON header, offsets, dtypes) read tensor by tensor, and a
 * config.json (hf_config.c) resolved into a model configuration.
 *
 * Input: a flags byte (bit 0: the bytes are a config.json, else a safetensors file), then
 * the file's bytes.
 * Properties: every outcome is a status; an opened file's tensors lie inside it, tile its
 * data in order, and each one's bytes are its element count times its dtype's width; every
 * float tensor converts, in two halves as well as whole, to the same float32 bits.     */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "interop/hf_config.h"
#include "interop/safetensors.h"

static void read_safetensors(const char *path)
{
    ksa_st_file f;
    if (ksa_st_open(&f, path) != KSA_OK)
        return;
    size_t at = 0;
    for (size_t i = 0; i < f.n; i++) {
        const ksa_st_tensor *t = &f.tensors[i];
        fuzz_check(t->begin == at && t->end >= t->begin, "tensor %zu at %zu, expected %zu", i,
                   t->begin, at);
        fuzz_check(t->end - t->begin == t->numel * ksa_st_dtype_width(t->dtype_name),
                   "tensor %zu: %zu bytes for %zu elements of %s", i, t->end - t->begin, t->numel,
                   t->dtype_name);
        fuzz_check(ksa_st_find(&f, t->name) == (long)i, "tensor %zu not found by name", i);
        at = t->end;
        if (t->dtype == KSA_ST_OTHER || t->numel > (1u << 20))
            continue;
        float *whole = malloc((t->numel ? t->numel : 1) * sizeof *whole);
        float *parts = malloc((t->numel ? t->numel : 1) * sizeof *parts);
        fuzz_check(whole && parts, "out of memory");
        size_t half = t->numel / 2;
        fuzz_check(ksa_st_read_f32(&f, i, 0, t->numel, whole) == KSA_OK, "%s", ksa_last_error());
        fuzz_check(ksa_st_read_f32(&f, i, 0, half, parts) == KSA_OK, "%s", ksa_last_error());
        fuzz_check(ksa_st_read_f32(&f, i, half, t->numel - half, parts + half) == KSA_OK, "%s",
                   ksa_last_error());
        fuzz_check(!memcmp(whole, parts, t->numel * sizeof *whole), "tensor %zu differs", i);
        free(whole);
        free(parts);
    }
    fuzz_check(f.data_start + at == f.size, "data ends at %zu of %zu", f.data_start + at, f.size);
    ksa_st_close(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    unsigned flags = fuzz_byte(&in);
    char path[512];
    if (flags & 1) {
        fuzz_path(path, sizeof path, "config.json");
        fuzz_write_file(path, in.p, in.n);
        ksa_model_config cfg;
        ksa_hf_extra extra;
        FILE *saved = stderr; /* unknown keys are reported there */
        stderr = fuzz_devnull();
        if (ksa_hf_config_read(path, &cfg, &extra) == KSA_OK) {
            ksa_model_layout layout;
            (void)ksa_model_config_resolve(&cfg, &layout);
        }
        stderr = saved;
    } else {
        fuzz_path(path, sizeof path, "model.safetensors");
        fuzz_write_file(path, in.p, in.n);
        read_safetensors(path);
    }
    return 0;
}
