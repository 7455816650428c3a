/* identity.c - data identities (identity.h), hashed with XXH3-64 from libxxhash. */
#include "data/identity.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

void ksa_tokfile_identity(const ksa_tokfile *f, char *out, size_t cap)
{
    XXH64_hash_t h = XXH3_64bits(f->map, f->map_bytes);
    snprintf(out, cap, "xxh3-64 %016llx, %zu bytes", (unsigned long long)h, f->map_bytes);
}

void ksa_loader_identity(const ksa_loader *ld, char *out, size_t cap)
{
    if (!ld->is_mixture) {
        ksa_tokfile_identity(&ld->sources[0].file, out, cap);
        return;
    }
    XXH3_state_t *state = XXH3_createState();
    KSA_ASSERT(state, "out of memory for a hash state");
    XXH3_64bits_reset(state);
    size_t bytes = 0;
    for (size_t i = 0; i < ld->n_sources; i++) {
        char line[KSA_IDENTITY_STR + 32];
        ksa_tokfile_identity(&ld->sources[i].file, line, sizeof line - 24);
        size_t n = strlen(line);
        n += (size_t)snprintf(line + n, sizeof line - n, " weight %.17g\n", ld->sources[i].weight);
        XXH3_64bits_update(state, line, n);
        bytes += ld->sources[i].file.map_bytes;
    }
    XXH64_hash_t h = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    snprintf(out, cap, "mixture of %zu files, xxh3-64 %016llx, %zu bytes", ld->n_sources,
             (unsigned long long)h, bytes);
}
