/* rng.h - the project's one seeded random-number generator: splitmix64 (Steele, Lea, Flood,
 * "Fast splittable pseudorandom number generators", 2014). Every draw is a pure function of
 * the state, so a stream is reproduced exactly from its seed on any machine and rank count.
 * Used by initialisation, --init-from, sampling, gradcheck and the tests.                  */
#ifndef KSA_CORE_RNG_H
#define KSA_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} ksa_rng;

/* A stream starting from `state` as given (no mixing: callers derive states, e.g. from a
 * seed and a parameter index, however they need). */
static inline ksa_rng ksa_rng_at(uint64_t state)
{
    ksa_rng r = {state};
    return r;
}

/* splitmix64's finaliser: a bijection of 64-bit integers that mixes every input bit (also the
 * counter-based hash of the data loader). */
static inline uint64_t ksa_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t ksa_rng_next(ksa_rng *r);       /* the next 64 random bits */
double ksa_rng_uniform(ksa_rng *r);      /* [0, 1), multiples of 2^-53 */
double ksa_rng_uniform_open(ksa_rng *r); /* (0, 1): (k + 0.5)·2^-53, safe under log() */
double ksa_rng_normal(ksa_rng *r);       /* N(0, 1), Box-Muller on two open uniforms */

/* FNV-1a of a string: a stream per name (e.g. a parameter's), independent of table order. */
uint64_t ksa_hash_string(const char *s);

#endif
