/* functional_naive.c — softmax, log_softmax and GELU, written the way the formulas read
 * (functional.h states them).
 *
 * Dimension legend (functional.h):
 *   o < outer  the dimensions before the reduced one, flattened
 *   c < C      the reduced dimension (softmax runs over c)
 *   i < inner  the dimensions after it, flattened (1 when reducing the last dimension)
 *   element (o, c, i) at offset (o*C + c)*inner + i; the row of (o, i) is c = 0..C-1, inner apart.
 *   n          elements of an elementwise op
 * All offsets are size_t.
 *
 * Each row is computed in three plain passes, exactly as the formula is written:
 *   m = max_c x_c;   s = sum_c exp(x_c - m);   out_c = exp(x_c - m) / s   (or (x_c - m) - log s).
 * Subtracting the maximum changes no value (the factor exp(-m) cancels) but makes the largest
 * exponent exp(0) = 1, so nothing overflows however large the logits (float32's exp overflows
 * above 88.72). The sum s is accumulated in double: a float running sum over a 30522-wide row
 * drifts by ~3e-6 relative, more than PyTorch's vectorized float sum (eight or sixteen partial
 * sums); in double the only visible rounding is the final one.
 *
 * Special values follow from IEEE arithmetic, as in PyTorch: fmaxf skips NaN, so m is the maximum
 * of the other elements; an all -inf row has m = -inf, x - m = -inf - (-inf) = NaN and every
 * output NaN; a +inf element gives m = +inf and inf - inf = NaN in the sum; a NaN element makes
 * the sum NaN. Either way the whole row is NaN, which is what torch.softmax returns.
 *
 * In place (out == x) is safe: m and s are computed before any output of the row is written, and
 * out_c depends only on x_c, m and s.
 */
#include "functional.h"

#include <math.h>

/* softmax over c of row (o, i):  p_c = exp(x_c - m) / sum_c' exp(x_c' - m). */
void softmax_naive(float *out,                      /* [outer, C, inner] */
                   const float *x,                  /* [outer, C, inner] */
                   size_t outer, size_t C, size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        for (size_t i = 0; i < inner; i++) {
            const size_t row = o * C * inner + i;   /* offset of (o, 0, i); step inner */

            float m = -INFINITY;                   /* m = max_c x_c */
            for (size_t c = 0; c < C; c++)
                m = fmaxf(m, x[row + c * inner]);

            double s = 0.0;                        /* s = sum_c exp(x_c - m) */
            for (size_t c = 0; c < C; c++)
                s += expf(x[row + c * inner] - m);

            for (size_t c = 0; c < C; c++) {       /* p_c = exp(x_c - m) / s */
                const float e = expf(x[row + c * inner] - m);
                out[row + c * inner] = (float)(e / s);
            }
        }
    }
}

/* log_softmax over c of row (o, i):  log p_c = (x_c - m) - log sum_c' exp(x_c' - m).
 * Written as a difference, never as log(p_c): a probability that underflows to 0 would give -inf
 * where the log-probability is a perfectly representable -120. */
void log_softmax_naive(float *out,                  /* [outer, C, inner] */
                       const float *x,              /* [outer, C, inner] */
                       size_t outer, size_t C, size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        for (size_t i = 0; i < inner; i++) {
            const size_t row = o * C * inner + i;

            float m = -INFINITY;                   /* m = max_c x_c */
            for (size_t c = 0; c < C; c++)
                m = fmaxf(m, x[row + c * inner]);

            double s = 0.0;                        /* s = sum_c exp(x_c - m) */
            for (size_t c = 0; c < C; c++)
                s += expf(x[row + c * inner] - m);
            /* s >= 1 (the max contributes exp(0)), or NaN; s = 0 only for C = 0, where log s
             * = -inf is never used (log(0) = -inf under IEEE 754, C11 Annex F). */
            /* cppcheck-suppress invalidFunctionArg */
            const double log_s = log(s);

            for (size_t c = 0; c < C; c++) {       /* log p_c = (x_c - m) - log s */
                const float shifted = x[row + c * inner] - m;
                out[row + c * inner] = (float)((double)shifted - log_s);
            }
        }
    }
}

/* GELU, both of PyTorch's forms, one element at a time in float32 with libm's erff and tanhf.
 *
 * 'none' is the same formula, in the same operations, as chapter 05's gelu_erf (pretraining.h),
 * and so gives the same bits; it is written out here rather than called because chapter 00 comes
 * before chapter 05 and reads nothing of it.
 *
 * Accuracy (measured on every 11th float in [-16, 16] against double erfc): for x >= 0 within
 * 1.7 ulp ('none') and 2.2 ulp ('tanh') of the true value, 4.5e-7 absolute at most. For x below
 * about -3, 1 + erf(x/sqrt 2) (or 1 + tanh u) cancels to a few float32 spacings of 1: the result
 * keeps a small absolute error (at most 8.3e-8) but its relative error grows, 1.2e-5 at x = -3
 * and 100% below x = -5.54, where it rounds to 0. PyTorch's float32 GELU cancels the same way, and
 * its 'none' goes through oneDNN, whose erf is a polynomial accurate to 1.5e-7 absolute: 4.5e-7
 * relative on [0, 3], three times ours. (Its float64 GELU cancels too, below x = -8.)
 * gelu_fast computes x Phi(x) without the cancellation. */
void gelu_naive(float *out,                         /* [n] */
                const float *x,                     /* [n] */
                size_t n, TfmGeluApprox approximate)
{
    const float inv_sqrt2 = 0.70710678118654752440f;    /* 1/sqrt(2) (M_SQRT1_2 is not C11) */
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    const float kappa = 0.044715f;

    for (size_t j = 0; j < n; j++) {
        const float v = x[j];
        if (approximate == TFM_GELU_NONE) {
            out[j] = 0.5f * v * (1.0f + erff(v * inv_sqrt2));          /* x/2 (1 + erf(x/sqrt 2)) */
        } else {
            const float u = sqrt_2_over_pi * (v + kappa * (v * v * v)); /* sqrt(2/pi)(x + k x^3) */
            out[j] = 0.5f * v * (1.0f + tanhf(u));                     /* x/2 (1 + tanh u) */
        }
    }
}
