/* rng.h — tfm's one random-number generator: splitmix64 (Steele, Lea, Flood 2014).
 *
 * Its n-th output is a pure function of (seed, n), so any draw can be computed directly, in any
 * order, by any thread: a parallel loop that gives element i draw i fills an array the same way
 * for every thread count (chapter 05's MLM masking, bench/'s inputs). Sequential callers (the
 * test suites' TuRng) can take the same draws one after another from a state instead.
 */
#ifndef TFM_RNG_H
#define TFM_RNG_H

#include <stdint.h>

/* Output n (counted from 0) of the generator started at seed. */
uint64_t tfm_rng_at(uint64_t seed, uint64_t n);
/* The n-th draw as a double uniform in [0, 1): its top 53 bits times 2^-53. */
double tfm_rng_uniform_at(uint64_t seed, uint64_t n);

/* The same draws as a stream: *state holds the seed to begin with, and the k-th call (from 0)
 * returns tfm_rng_at(seed, k), or tfm_rng_uniform_at(seed, k). */
uint64_t tfm_rng_next(uint64_t *state);
double tfm_rng_uniform_next(uint64_t *state);

#endif
