/* tfm_exp.h — exp(x) for float32 that the compiler can vectorize, without -ffast-math.
 *
 * glibc's expf is a scalar call (its vector variant is only chosen under -ffast-math), so a loop
 * of expf runs one element at a time. This is the same function, written so that a loop of it
 * becomes straight-line vector code: no branches, no calls, integer tricks through unions.
 *
 *   exp(x) = 2^n * exp(r),   n = round(x / ln2),  r = x - n*ln2  (|r| <= ln2/2)
 *
 * r is computed in two steps with ln2 split into a high part with few mantissa bits (so n*LN2_HI
 * is exact) and a low correction (Cody and Waite's reduction). exp(r) is its Taylor polynomial
 * to degree 7, evaluated by Horner's rule; 2^n is built in the exponent field, in two factors so
 * that results down in the subnormal range (x < -87.3) are still right. Against float64 exp over
 * every one of the 2.2e9 floats in [-104, 89] the error is at most 0.94 ulp when the compiler
 * fuses the Horner steps into FMAs (as in the fast files, -ffp-contract=fast) and 1.17 ulp when
 * it does not (measured once each, 28 s). tests/test_00_tensors.c checks every 61st of them, at
 * <= 1.2 ulp, and the special values.
 * exp(NaN) = NaN, exp(-inf) = 0, exp(+inf) = +inf, x > 88.72 gives +inf, x < -103.98 gives 0.
 */
#ifndef TFM_EXP_H
#define TFM_EXP_H

#include <stdint.h>

static inline float tfm_expf(float x)
{
    /* Inputs past these limits give inf or 0 anyway; clamping keeps n inside the range where the
     * two exponent factors below are normal floats. Both comparisons are false for a NaN, which
     * passes through unchanged and makes every later float operation NaN, the result included.
     * (Two plain selects: in a vector loop they become compares and blends, no branch.) */
    float xc = x < -105.0f ? -105.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;

    /* n = round(x / ln2): adding 1.5 * 2^23 pushes the fraction bits out of the float, so the sum
     * rounds to an integer (round to nearest even); subtracting it back leaves that integer. The
     * sum's low mantissa bits then hold n itself (plus 2^22), which is where the integer n is
     * taken from: bit operations, defined for any input (a float-to-int conversion of a NaN
     * would be undefined behaviour). */
    const float shifter = 12582912.0f;   /* 1.5 * 2^23, bits 0x4b400000 */
    const float kf = xc * 1.44269504088896341f + shifter;
    const float n = kf - shifter;
    union { float f; uint32_t u; } k = {kf};
    const int32_t ni = (int32_t)(k.u - 0x4b400000u);   /* n, in [-152, 129] */

    /* r = x - n ln2 in two steps: LN2_HI has 8 significant bits, so n * LN2_HI is exact. */
    const float LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    float r = xc - n * LN2_HI;
    r = r - n * LN2_LO;

    /* exp(r) on |r| <= 0.347: Taylor to r^7/7! (the next term is < 6e-9 relative, under half
     * an ulp), evaluated by Horner's rule. */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;

    /* 2^n as two factors 2^n1 * 2^n2, each with a normal exponent, so that a subnormal result
     * is rounded once, in the last multiplication. (For a NaN, ni is meaningless, and so are
     * the factors; p is NaN and so is the product.) */
    const int32_t n1 = ni / 2, n2 = ni - n1;
    union { uint32_t u; float f; } s1, s2;
    s1.u = ((uint32_t)n1 + 127u) << 23;
    s2.u = ((uint32_t)n2 + 127u) << 23;
    return p * s1.f * s2.f;
}

#endif
