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

/* ---- Backward (functional.h). The row sums are in double, as the forwards'. */

/* softmax: dL/dx_c = sum_c' dy_c' dp_c'/dx_c = sum_c' dy_c' p_c' (delta_cc' - p_c)
 *                  = p_c (dy_c - sum_c' dy_c' p_c'). */
void softmax_backward_naive(float *dx, const float *dy, const float *y, size_t outer, size_t C,
                            size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        for (size_t i = 0; i < inner; i++) {
            const size_t row = o * C * inner + i;
            double dot = 0.0;                      /* sum_c dy_c p_c */
            for (size_t c = 0; c < C; c++)
                dot += (double)dy[row + c * inner] * (double)y[row + c * inner];
            for (size_t c = 0; c < C; c++) {       /* p_c (dy_c - dot) */
                const size_t e = row + c * inner;
                dx[e] += (float)((double)y[e] * ((double)dy[e] - dot));
            }
        }
    }
}

/* log_softmax: y_c = x_c - log sum exp, so dy_c'/dx_c = delta_cc' - p_c and
 * dL/dx_c = dy_c - p_c sum_c' dy_c', p_c = exp(y_c). */
void log_softmax_backward_naive(float *dx, const float *dy, const float *y, size_t outer,
                                size_t C, size_t inner)
{
    for (size_t o = 0; o < outer; o++) {
        for (size_t i = 0; i < inner; i++) {
            const size_t row = o * C * inner + i;
            double sum = 0.0;                      /* sum_c dy_c */
            for (size_t c = 0; c < C; c++)
                sum += dy[row + c * inner];
            for (size_t c = 0; c < C; c++) {       /* dy_c - exp(y_c) sum */
                const size_t e = row + c * inner;
                dx[e] += (float)((double)dy[e] - (double)expf(y[e]) * sum);
            }
        }
    }
}

/* GELU: d/dx [x Phi(x)] = Phi(x) + x phi(x); for the tanh form, with t = tanh u,
 * d/dx [x/2 (1 + t)] = 1/2 (1 + t) + x/2 sech^2(u) du/dx.
 * sech^2 u is written 1 / cosh^2 u, not 1 - t^2: for |u| above about 3, t^2 rounds to within a
 * float32 spacing of 1 and 1 - t^2 keeps almost none of its digits (at x = -4 the derivative,
 * about -1e-3, would be off by 3e-6; PyTorch's float32 backward is, which is why chapter 07's
 * tanh-form goldens hold tfm to the float64 truth). */
void gelu_backward_naive(float *dx, const float *dy, const float *x, size_t n,
                         TfmGeluApprox approximate)
{
    const float inv_sqrt2 = 0.70710678118654752440f;
    const float inv_sqrt_2pi = 0.39894228040143267794f;
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    const float kappa = 0.044715f;

    for (size_t j = 0; j < n; j++) {
        const float v = x[j];
        float d;
        if (approximate == TFM_GELU_NONE) {
            const float cdf = 0.5f * (1.0f + erff(v * inv_sqrt2));     /* Phi(x) */
            const float pdf = inv_sqrt_2pi * expf(-0.5f * v * v);      /* phi(x) */
            d = cdf + v * pdf;
        } else {
            const float u = sqrt_2_over_pi * (v + kappa * (v * v * v));
            const float sech = 1.0f / coshf(u);                        /* 0 once cosh overflows */
            const float du = sqrt_2_over_pi * (1.0f + 3.0f * kappa * (v * v));
            d = 0.5f * (1.0f + tanhf(u)) + 0.5f * v * (sech * sech) * du;
        }
        dx[j] += dy[j] * d;
    }
}
