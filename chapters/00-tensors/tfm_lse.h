/* tfm_lse.h — the online log-sum-exp of a row, sixteen lanes at a time, for the fast files
 * (log_softmax_fast in functional_fast.c; in chapter 05, cross_entropy_loss_fast and the MLM
 * loss, cross_entropy_fast in pretraining_fast.c).
 *
 *   lse(z) = log sum_c exp(z_c) = M + log S,   M = max_c z_c,   S = sum_c exp(z_c - M)
 *
 * "Online": M is not known before the row has been read, so each lane keeps a running max m and
 * a running sum s = sum exp(z - m) of the values it has seen, and when a block of new values
 * raises the max to m', the old sum is rescaled, s * exp(m - m'), because
 * exp(z - m') = exp(z - m) exp(m - m'). That gives M and S in a single read of the row, where the
 * textbook form reads it twice (the max, then the sum).
 *
 * The values come in blocks of up to TFM_LSE_STEPS steps of TFM_LSE_LANES lanes: step j, lane l
 * is blk[j*stride + l]. A contiguous row uses stride 16, so the 16 lanes are 16 interleaved parts
 * of the row, merged at the end (tfm_lse_merge). Sixteen rows that lie side by side in memory
 * (a reduced dimension that is not the last, stride = inner) use the lanes as sixteen separate
 * rows: lane l's (m[l], s[l]) is then row l's (M, S). Every step is a lane-wise vector operation:
 * no horizontal reduction and no branch per block; the max is taken once per block, not per
 * element, so a block costs one extra exp per lane (the rescale), 1/16 of an exp per value.
 *
 * Special values, as PyTorch: the max skips NaN (a comparison with NaN is false), and a NaN then
 * makes its exp, and the sum, NaN. While a lane's max is still -inf, its values are all -inf and
 * are shifted by 0 instead (exp(-inf) = 0), so a lane that sees only -inf keeps s = 0 and m = -inf
 * instead of exp(-inf - (-inf)) = NaN poisoning values that come later. A +inf value makes the
 * max +inf and exp(inf - inf) = NaN. tfm_lse_value turns a row of only -inf into NaN, PyTorch's
 * log_softmax there (x - max = NaN).
 *
 * Sums: a block's sums are floats (TfmLseBlockSum), the running sums doubles. A block adds at
 * most 16 exps <= 1 per lane, a float sum off by a few 1e-8 relative (at most 15 * 2^-24 =
 * 9e-7); the running sums, over the 120 blocks of a 30522-wide row, add nothing float32 could
 * see. So log S is within ~1e-7 absolute of the truth (9e-7 at worst) on any row, about one
 * float32 ulp of lse once |lse| >= 1. What float block sums give up: a term below half an ulp
 * of its lane's block sum is dropped, so when one logit dominates the row (S = 1 + d, d small),
 * a log-probability -log S near 0, or a loss lse - z_y near 0, is accurate to ~1e-7 absolute
 * but not relative (measured: up to 1.0e-7 on log-probabilities of order -1e-6; any float32
 * sum of the row drops those terms too). Double block sums keep them, but cost two conversions
 * and two adds per 16 values, and gcc 12 then also moves tfm_expf's clamp selects past the
 * conversion, into double: 46 instructions per 16 values in the AVX-512 exp loop instead of
 * 36.5, and 32% more per 30522-wide row under callgrind (an AVX2 build). That loop is where the
 * MLM loss, compute-bound, spends its time: 6.3 ms instead of 4.6 over 512 x 30522 logits on
 * one thread (medians).
 */
#ifndef TFM_LSE_H
#define TFM_LSE_H

#include <math.h>
#include <stddef.h>

#include "tfm_exp.h"

enum { TFM_LSE_LANES = 16, TFM_LSE_STEPS = 16 };

/* The type of a block's sums, chosen once here for every user (see "Sums" above): float keeps
 * the exp loop at one 16-float vector per step; double is the accurate and slower choice. */
typedef float TfmLseBlockSum;

typedef struct {
    float m[TFM_LSE_LANES];    /* running max of the values lane l has seen (-inf: none yet) */
    double s[TFM_LSE_LANES];   /* running sum of exp(value - m[l]) over them */
} TfmLse;

static inline void tfm_lse_init(TfmLse *st)
{
    for (size_t l = 0; l < TFM_LSE_LANES; l++) {
        st->m[l] = -INFINITY;
        st->s[l] = 0.0;
    }
}

/* Adds one block: `steps` (<= TFM_LSE_STEPS) steps of TFM_LSE_LANES values each, step j at
 * blk + j*stride. */
static inline void tfm_lse_update(TfmLse *restrict st,
                                  const float *restrict blk,   /* [steps, stride], lanes 0..15 */
                                  size_t stride, size_t steps)
{
    float mb[TFM_LSE_LANES], shift[TFM_LSE_LANES];
    TfmLseBlockSum sb[TFM_LSE_LANES];
#pragma omp simd
    for (size_t l = 0; l < TFM_LSE_LANES; l++)
        mb[l] = st->m[l];
    for (size_t j = 0; j < steps; j++)                  /* m' = max(m, block max) */
#pragma omp simd
        for (size_t l = 0; l < TFM_LSE_LANES; l++)
            mb[l] = blk[j * stride + l] > mb[l] ? blk[j * stride + l] : mb[l];
#pragma omp simd
    for (size_t l = 0; l < TFM_LSE_LANES; l++) {
        shift[l] = mb[l] == -INFINITY ? 0.0f : mb[l];
        sb[l] = 0;
    }
    for (size_t j = 0; j < steps; j++)                  /* the block's sum exp(z - m') */
#pragma omp simd
        for (size_t l = 0; l < TFM_LSE_LANES; l++)
            sb[l] += (TfmLseBlockSum)tfm_expf(blk[j * stride + l] - shift[l]);
    /* s' = s exp(m - m') + block sum; exp(m - m') is exactly 1 when the block did not raise the
     * max (and 0 when m = -inf < m', where s is 0 anyway). */
#pragma omp simd
    for (size_t l = 0; l < TFM_LSE_LANES; l++) {
        const float alpha = mb[l] == st->m[l] ? 1.0f : tfm_expf(st->m[l] - mb[l]);
        st->s[l] = st->s[l] * (double)alpha + (double)sb[l];
        st->m[l] = mb[l];
    }
}

/* A contiguous row's lanes merged, in lane order: M = max_l m[l], S = sum_l s[l] exp(m[l] - M).
 * A lane that saw only -inf has s[l] = 0 and adds 0 (exp(-inf) = 0); if every lane did, M = -inf
 * and S = NaN. */
static inline void tfm_lse_merge(const TfmLse *st, float *M, double *S)
{
    float mx = -INFINITY;
    for (size_t l = 0; l < TFM_LSE_LANES; l++)
        mx = st->m[l] > mx ? st->m[l] : mx;
    double sum = 0.0;
    for (size_t l = 0; l < TFM_LSE_LANES; l++)
        sum += st->s[l] * exp((double)st->m[l] - (double)mx);
    *M = mx;
    *S = sum;
}

/* lse = M + log S in double; NaN for a row of only -inf (M = -inf), as PyTorch. */
static inline double tfm_lse_value(float M, double S)
{
    return M == -INFINITY ? (double)NAN : (double)M + log(S);
}

/* The online log-sum-exp of a contiguous row z [C]: its (M, S), in one read of the row. The last
 * C % 16 values go through a -inf padded step (exp(-inf) adds 0). */
static inline void tfm_lse_row(const float *z,                /* [C] */
                               size_t C, float *M, double *S)
{
    TfmLse st;
    tfm_lse_init(&st);
    const size_t block = (size_t)TFM_LSE_LANES * TFM_LSE_STEPS;
    size_t c = 0;
    for (; c + block <= C; c += block)
        tfm_lse_update(&st, z + c, TFM_LSE_LANES, TFM_LSE_STEPS);
    const size_t steps = (C - c) / TFM_LSE_LANES;
    if (steps > 0) {
        tfm_lse_update(&st, z + c, TFM_LSE_LANES, steps);
        c += steps * TFM_LSE_LANES;
    }
    if (c < C) {
        float pad[TFM_LSE_LANES];
        for (size_t l = 0; l < TFM_LSE_LANES; l++)
            pad[l] = c + l < C ? z[c + l] : -INFINITY;
        tfm_lse_update(&st, pad, TFM_LSE_LANES, 1);
    }
    tfm_lse_merge(&st, M, S);
}

#endif
