/* rng.c — splitmix64, tfm's one random-number generator (rng.h).
 *
 * splitmix64 (G. Steele, D. Lea, C. Flood, "Fast splittable pseudorandom number generators",
 * OOPSLA 2014; the constants are those of java.util.SplittableRandom). The state advances by a
 * fixed odd constant GAMMA, so the state after n+1 steps is seed + (n+1)*GAMMA and output n is
 * the mixing function of that: any draw can be computed directly. It passes BigCrush. */
#include "rng.h"

static const uint64_t GAMMA = 0x9e3779b97f4a7c15ULL;   /* 2^64 / golden ratio, made odd */

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A draw's top 53 bits (a double's mantissa) times 2^-53: uniform in [0, 1), never 1. */
static double unit_interval(uint64_t draw) { return (double)(draw >> 11) * 0x1.0p-53; }

uint64_t tfm_rng_at(uint64_t seed, uint64_t n)
{
    return mix(seed + (n + 1) * GAMMA);   /* wraps modulo 2^64, as intended */
}

double tfm_rng_uniform_at(uint64_t seed, uint64_t n) { return unit_interval(tfm_rng_at(seed, n)); }

uint64_t tfm_rng_next(uint64_t *state) { return mix(*state += GAMMA); }

double tfm_rng_uniform_next(uint64_t *state) { return unit_interval(tfm_rng_next(state)); }
