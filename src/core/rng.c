/* rng.c - splitmix64 and the draws built on it. */
#include "core/rng.h"

#include <math.h>

uint64_t ksa_rng_next(ksa_rng *r)
{
    return ksa_mix64(r->state += 0x9E3779B97F4A7C15ull);
}

double ksa_rng_uniform(ksa_rng *r)
{
    return (double)(ksa_rng_next(r) >> 11) * 0x1.0p-53;
}

double ksa_rng_uniform_open(ksa_rng *r)
{
    return ((double)(ksa_rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

double ksa_rng_normal(ksa_rng *r)
{
    double u1 = ksa_rng_uniform_open(r), u2 = ksa_rng_uniform_open(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t ksa_hash_string(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}
