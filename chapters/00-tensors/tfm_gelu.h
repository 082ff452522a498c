/* tfm_gelu.h — GELU of one float32, both of PyTorch's forms, for the fast files: gelu_fast
 * (functional_fast.c) and the fused GEMM epilogue of linear_act_fast (matmul_fast.c) call these
 * two functions, so the GELU a fused linear applies is, bit for bit, the one gelu_fast computes.
 *
 *   tfm_gelu_erf:   GELU(x) = x Phi(x) = x/2 (1 + erf(x / sqrt 2))     (approximate='none')
 *   tfm_gelu_tanh:  GELU(x) ~ x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   ('tanh')
 *
 * Written as straight-line code (selects, no branches, no libm calls but fmaf and fabsf, which
 * become instructions), so a loop of them under `omp simd` becomes vector code. Include it only
 * from files built with the fast flags (FAST_CFLAGS): where the compiler contracts a * b + c into
 * an FMA changes the last bit, so two files share these bits only when they share those flags.
 *
 * 'none': GELU(x) = x Phi(x), Phi the standard normal CDF, in two pieces, both computed for every
 * element and one selected (a blend, not a branch, in the vector loop):
 *
 *   -0.5 < x < 1.5:  Phi(x) = 1/2 + x R(x^2),  GELU(x) = x (1/2 + x R(x^2)),
 *                    R(y) = (Phi(sqrt y) - 1/2) / sqrt y, a degree-6 polynomial in y = x^2;
 *   elsewhere:       q = Phi(-a) = erfc(a / sqrt 2) / 2 for a = |x|, written
 *                    q = t Q(t) exp(-a^2/2),  t = 1 / (1 + a/4),
 *                    Q(t) = q exp(a^2/2) / t, smooth and between 0.126 and 0.394 for a in
 *                    [0.5, 15]: a degree-9 polynomial in s = t - 0.5497;
 *                    then GELU(x) = x q for x < 0 and x (1 - q) for x > 0.
 * (The central piece stops at -0.5 because below it 1/2 + x R cancels: at x = -1.5 the sum is a
 * seventh of its terms.)
 *
 * Each polynomial is the Chebyshev interpolant of its function (from double-precision erf and
 * erfc), relative error at most 2.9e-9 (R) and 1.5e-9 (Q), a few hundredths of a float32 ulp.
 * The rest is float32 rounding, kept small in three places:
 *   - exp(-a^2/2) as exp(-hi/2) (1 - lo/2), where hi + lo = a^2 exactly (lo = fma(a, a, -hi)):
 *     rounding a^2 alone would put a relative error of a^2/2 * 6e-8 on q (3e-6 at a = 10);
 *   - t to twice float32 precision, t + delta: tQ(t) moves 2.9 times as much as t does, so the
 *     two roundings in 1/(1 + a/4) would cost up to 3 ulps of q; delta recovers both (the exact
 *     error of the sum, d_lo, and the exact residual of the division, fma(-t, d, 1)) for about
 *     ten flops;
 *   - no 1 + erf: for x < 0 the result is x q, which keeps full relative accuracy as far as
 *     float32 goes (naive's 1 + erff cancels for x < -3, and so does PyTorch's).
 * Measured against double erfc on every 11th float in [-15, 15]: at most 1.7 ulp for x > -0.5,
 * 5.6 ulp (3.5e-7 relative) below.
 * For a >= 14.4 exp(-hi/2) underflows to 0, and q with it (true GELU is below 2e-45 there);
 * clamping a to 15 keeps hi finite for huge |x|, and a NaN passes the clamp, so the result is
 * NaN. x = +inf gives inf (1 - q = 1), x = -inf gives -inf * 0 = NaN, PyTorch's value.
 *
 * 'tanh': 1 + tanh(u) = 2 / (1 + exp(-2u)), so GELU_tanh(x) = x / (1 + exp(-2u)), the logistic
 * form: no cancellation and no tanhf. For 2u < -88.7 the exp overflows and the result is -0
 * where the true one is below 3e-39 |x|; x = -inf gives -inf / inf = NaN, again PyTorch's value.
 */
#ifndef TFM_GELU_H
#define TFM_GELU_H

#include <math.h>

#include "tfm_exp.h"

/* R(x^2), with Phi(x) = 1/2 + x R(x^2): the central piece, -0.5 < x < 1.5. */
static inline float tfm_phi_central_r(float x)
{
    /* R(y), coefficients of y^6 down to y^0. */
    static const float R[7] = {
        4.129777258e-07f, -8.728008718e-06f, 1.143812951e-04f, -1.186518053e-03f,
        9.973257251e-03f, -6.649033820e-02f, 3.989422794e-01f,
    };
    const float y = x * x;
    float r = R[0];
    for (int k = 1; k < 7; k++)
        r = r * y + R[k];
    return r;
}

/* The tail piece for a = min(|x|, 15): q = Phi(-a) = tq * e_hi, the factor exp(-a^2/2) kept
 * apart (e_hi = exp(-hi/2), and exp(-a^2/2) = e_hi (1 - lo/2) to float32 precision), so that a
 * caller multiplies it in last. */
static inline float tfm_phi_tail(float x, float *e_hi, float *lo_out)
{
    /* Q(t), coefficients of s^9 down to s^0, s = t - 0.5497. */
    static const float Q[10] = {
        2.296178643e-02f,  1.888820793e-02f, -4.581601801e-02f, -7.270099380e-02f,
        4.107767268e-02f,  2.542843320e-01f,  4.224136561e-01f,  4.464074516e-01f,
        3.453145175e-01f,  2.049310731e-01f,
    };
    float a = fabsf(x);                                     /* a = |x| */
    a = a > 15.0f ? 15.0f : a;
    const float b = 0.25f * a;                              /* exact */
    const float d = 1.0f + b;
    const float t = 1.0f / d;
    const float bb = d - 1.0f;
    const float d_lo = (1.0f - (d - bb)) + (b - bb);        /* d + d_lo = 1 + a/4 exactly */
    const float rr = fmaf(-t, d, 1.0f);                     /* 1 - t d exactly */
    const float delta = t * (rr - d_lo * t);                /* 1 / (1 + a/4) = t + delta */
    const float s = (t - 0.5497000217f) + delta;
    float qp = Q[0];
    for (int k = 1; k < 10; k++)
        qp = qp * s + Q[k];                                 /* Q(t) */
    const float hi = a * a;
    const float lo = fmaf(a, a, -hi);                       /* a^2 = hi + lo exactly */
    const float qc = qp - (0.5f * lo) * qp;                 /* Q(t) exp(-lo/2) */
    *e_hi = tfm_expf(-0.5f * hi);                           /* exp(-hi/2) */
    *lo_out = lo;
    return fmaf(t, qc, delta * qc);                         /* (t + delta) Q(t) exp(-lo/2) */
}

static inline float tfm_gelu_erf(float x)
{
    const float central = x * fmaf(x, tfm_phi_central_r(x), 0.5f);   /* x (1/2 + x R(x^2)) */
    float e_hi, lo;
    const float tq = tfm_phi_tail(x, &e_hi, &lo);
    const float tail = x < 0.0f ? (x * tq) * e_hi           /* x q, the tiny factor last */
                                : x * (1.0f - tq * e_hi);   /* x (1 - q) */

    return (x > -0.5f && x < 1.5f) ? central : tail;
}

/* d GELU / dx for the erf form (chapter 07): Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi),
 * from the same two pieces: Phi from the central polynomial or the tail's q, and phi from the
 * tail's split exp(-hi/2) (1 - lo/2), accurate for every x (for |x| < 1.5 too: the tail piece is
 * computed for every element anyway). x = +inf gives 1 + inf * 0 = NaN, PyTorch's value. */
static inline float tfm_gelu_erf_grad(float x)
{
    const float inv_sqrt_2pi = 0.39894228040143267794f;
    float e_hi, lo;
    const float tq = tfm_phi_tail(x, &e_hi, &lo);
    const float q = tq * e_hi;                              /* Phi(-|x|) */
    const float cdf = (x > -0.5f && x < 1.5f) ? fmaf(x, tfm_phi_central_r(x), 0.5f)
                      : x < 0.0f              ? q
                                              : 1.0f - q;
    const float pdf = (inv_sqrt_2pi * e_hi) * (1.0f - 0.5f * lo);   /* phi(x) */
    return fmaf(x, pdf, cdf);
}

static inline float tfm_gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    const float kappa = 0.044715f;
    const float u = sqrt_2_over_pi * (x + kappa * (x * x * x));
    return x / (1.0f + tfm_expf(-2.0f * u));
}

/* d GELU_tanh / dx (chapter 07). With e = exp(-2u) and sigma = 1 / (1 + e) = (1 + tanh u) / 2,
 * GELU_tanh = x sigma and sech^2 u = 1 - tanh^2 u = 4 e / (1 + e)^2, so
 *   d/dx = sigma + x * 2 e sigma^2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2),
 * with no 1 - tanh^2 (or 1 - sigma) to cancel, and e sigma^2 formed as (e sigma) sigma, so
 * that 2e never overflows. e = inf (2u < -88.7) gives sigma = 0 and inf * 0 = NaN, so that term
 * is taken as 0 there (the true one is below 1e-37 |x|). */
static inline float tfm_gelu_tanh_grad(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    const float kappa = 0.044715f;
    const float u = sqrt_2_over_pi * (x + kappa * (x * x * x));
    const float e = tfm_expf(-2.0f * u);
    const float sig = 1.0f / (1.0f + e);
    const float du = sqrt_2_over_pi * (1.0f + 3.0f * kappa * (x * x));
    const float es = e < INFINITY ? e * sig : 0.0f;        /* e / (1 + e), at most 1 */
    const float sech2_half = 2.0f * es * sig;               /* sech^2(u) / 2 */
    return sig + x * sech2_half * du;
}

#endif
