/* layernorm_fast.c — the same layer normalization as layernorm_naive.c, organized for the machine.
 *
 *   out[n,e] = (x[n,e] - mu_n) * rstd_n * gamma[e] + beta[e]     (legend and layout: naive file)
 *
 * LayerNorm does about 8 flops per element and moves 8 bytes (read x, write out): on large
 * inputs it is bound by memory bandwidth, not arithmetic. The goal is therefore one read of x
 * from memory and one write of out, with float32 arithmetic that is vectorized and still as
 * accurate as the double-precision reference. The optimizations, each with what it saves:
 *
 *  O1 rows stay in L1: the statistics need two reads of a row and the output a third, but a
 *     row is E*4 bytes (3 KiB at E = 768), so only the first read comes from memory; the other
 *     two hit L1. Traffic is that of a single pass: 4 bytes read + 4 written per element.
 *  O2 float32, vectorized (`omp simd` reductions): 8 (AVX2) or 16 (AVX-512) lanes per
 *     instruction and independent partial sums, instead of the naive loop's one chain of
 *     dependent double additions, which runs at one element per add latency (~4 cycles).
 *  O3 accuracy with float32 squares: the corrected two-pass algorithm (Chan, Golub & LeVeque,
 *     1983), with the two plain sums (pass A's and the correction c) kept in double.
 *     Pass A gives m_hi, the float32 nearest the mean. Pass B sums the centred values
 *     d = x - m_hi and d^2; c = sum d is the estimate's own error, so mu = m_hi + m_lo with
 *     m_lo = c / E exactly recovers what the float32 mean lost, and var = sum d^2 / E - m_lo^2
 *     has nothing left to cancel (m_lo is tiny). Pass C writes ((x - m_hi) - m_lo) * rstd,
 *     never forming x - float32(mu): on rows near 1e4, x - m_hi is exact (Sterbenz: the two
 *     are within a factor of 2), so the output keeps all its bits where x - fl(mu) would lose
 *     half a float32 spacing of mu (5e-4 at 1e4).
 *  O4 scaled squares: pass B accumulates (d 2^-a)(d 2^-b), with 2^(a+b) the power of two just
 *     at or above E, which sums to between var/2 and var; so the float32 sum overflows only
 *     when var does (std > 1.8e19), like the reference, and not already when E * var does
 *     (std > 6.7e17 at E = 768) as a plain sum of squares would. Powers of two scale exactly.
 *  O5 the branch on gamma/beta is taken once per call, not per element, so the output loop
 *     is a straight multiply-add the compiler vectorizes (FAST_CFLAGS contracts it to FMA).
 *  O6 OpenMP over rows, schedule(static): rows are independent and equal in cost. Small
 *     problems (below PAR_MIN elements) stay on one thread, where a fork would cost more
 *     than the work.
 *  O7 backward (chapter 07) in two parallel sweeps, so that every sum has one thread and one
 *     order whatever the thread count: dx by rows (O6), each row's two sums in one pass and its
 *     update in a second while the row is in L1 (O1), in double lanes (the reason is at
 *     backward_row); dgamma and dbeta by column blocks of 256,
 *     each thread walking all rows of its block, the 2 KiB of running sums in L1. One pass
 *     could do both, but only with per-thread partial sums of dgamma merged afterwards, whose
 *     order, and so whose bits, would depend on the thread count.
 *
 *  O8 Add & Norm's backward: y = x + s is formed once, in the arena (its statistics are the
 *     forward's), each row of dy once into the thread's [E] row (O7's backward_row) and added
 *     to dx and ds while it is in L1; dgamma and dbeta are O7's column sweep over y.
 *
 * Determinism: each row is computed by one thread, in an order fixed by the code (the vector
 * reductions' lane order is fixed at compile time), so results do not depend on the thread
 * count (tests/test_04_layernorm.c checks 1 vs 3 threads bit for bit).
 */
#include "layernorm.h"
#include "arena.h"

#include <math.h>
#include <string.h>

#include "matmul.h"

/* Below this many elements one thread does the whole job (O6). */
#define PAR_MIN ((size_t)1 << 15)

typedef struct {
    float hi, lo;   /* mu = hi + lo: float32 estimate and its correction (O3) */
    float rstd;     /* 1 / sqrt(var + eps) */
} RowStats;

/* Passes A and B over one row (O1-O4). xr may be the row of out being normalized in place
 * (layernorm.h): it is only read here, and no restrict is claimed for it. */
static RowStats row_stats(const float *xr, size_t E, float eps)
{
    const float fE = (float)E;
    /* O4: 2^-k with 2^k >= E, split as sa * sb (each a power of two, so the scaling is exact). */
    int k = 0;
    while (((size_t)1 << k) < E)
        k++;
    const float sa = ldexpf(1.0f, -(k / 2)), sb = ldexpf(1.0f, -(k - k / 2));

    /* Pass A: sum_e x_e, in double, so that hi is the float32 nearest the mean (within half an
     * ulp). A float32 sum would miss it by up to ~E/2 ulps on long rows, and then every d_e
     * below is that error, q sums E copies of its square, and q's own float32 rounding can
     * exceed the true variance: on 7762 copies of 12345.678f with one an ulp higher, a float32
     * pass A gave rstd 1.8% off (or +inf after the clamp below). With hi this close, d_e is the
     * row's real deviation, exact by Sterbenz, and nothing large cancels in var. Doubles halve
     * the lanes of this one loop; the kernel stays bound by memory (O1). */
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t e = 0; e < E; e++)
        s += (double)xr[e];
    const float hi = (float)(s / (double)E);

    /* Pass B: c = sum_e d_e and q = 2^-k sum_e d_e^2, d_e = x_e - hi. c alone is summed in
     * double: on a row whose mean nearly cancels, c is a small difference of large terms, and
     * in float32 its rounding would depend on the order the compiler sums in (vector lanes or
     * scalar), which moves the mean by ~1e-6 relative (the golden case overflow_2e19); in
     * double every (x_e - hi) is exact and the sum loses nothing that matters. */
    double c = 0.0;
    float q = 0.0f;
#pragma omp simd reduction(+ : c, q)
    for (size_t e = 0; e < E; e++) {
        const float d = xr[e] - hi;
        c += (double)xr[e] - (double)hi;
        q += (d * sa) * (d * sb);
    }
    /* Divisions, and exact power-of-two scalings, not multiplications by a rounded 1/E: on a
     * constant row every d is the same small delta (hi may miss the constant by an ulp), c is
     * E * delta and q is 2^-k E delta^2, both exactly, so lo = delta and the second moment is
     * delta^2, both exactly: var = 0 and every output is exactly beta, at any magnitude (as
     * long as the scaled squares do not underflow, below). */
    const float lo = (float)(c / (double)E);
    float var = q / ldexpf(fE, -k) - lo * lo;
    /* var >= 0 in exact arithmetic (q / (2^-k E) is the second moment about hi, lo^2 the square
     * of the first), but the rounded difference can fall below 0, in two ways (found by
     * experiment): squares that underflow, when the rows' values are near 1e-15 and
     * (d 2^-k/2)^2 lands among the subnormals (a constant row of 38 copies of 0x1.e9651cp-50
     * gives var = -2^-146 before the clamp; tests/test_04_layernorm.c holds it). The clamp
     * keeps such a var at 0: rstd = 1/sqrt(eps), and +inf with eps = 0, as naive gives on a
     * constant row, instead of NaN. A NaN var stays NaN. */
    if (var < 0.0f)
        var = 0.0f;
    const RowStats st = {hi, lo, 1.0f / sqrtf(var + eps)};
    return st;
}

/* Pass C: yr_e = ((x_e - hi) - lo) * rstd * gamma_e + beta_e (O3, O5). yr may be xr (the
 * fused Add & Norm normalizes in place): element e is read before it is written, and no other
 * element is touched, so `omp simd` is valid either way; hence no restrict on these two. */
static void row_output(float *yr, const float *xr, RowStats st,
                       const float *restrict gamma, const float *restrict beta, size_t E)
{
    const float hi = st.hi, lo = st.lo, r = st.rstd;
    if (gamma && beta) {
#pragma omp simd
        for (size_t e = 0; e < E; e++)
            yr[e] = ((xr[e] - hi) - lo) * r * gamma[e] + beta[e];
    } else if (!gamma && !beta) {
#pragma omp simd
        for (size_t e = 0; e < E; e++)
            yr[e] = ((xr[e] - hi) - lo) * r;
    } else {   /* one of the two (nn.LayerNorm(bias=False) in newer PyTorch): rare, plain */
        for (size_t e = 0; e < E; e++)
            yr[e] = ((xr[e] - hi) - lo) * r * (gamma ? gamma[e] : 1.0f) + (beta ? beta[e] : 0.0f);
    }
}

void layernorm_forward_fast(float *out, float *mean, float *rstd, const float *x,
                            const float *gamma, const float *beta, float eps, size_t N, size_t E)
{
#pragma omp parallel for schedule(static) if (N * E >= PAR_MIN)   /* O6 */
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * E;
        const RowStats st = row_stats(xr, E, eps);
        row_output(out + n * E, xr, st, gamma, beta, E);
        if (mean)
            mean[n] = st.hi + st.lo;
        if (rstd)
            rstd[n] = st.rstd;
    }
}

/* Post-LN Add & Norm, fused: the sum h = x + s is written straight into out's row (still in L1)
 * and normalized there in place, so h never exists as an [N, E] array: x and s are read once
 * and out written once, against the unfused add-then-normalize's extra write and read of h. */
void add_norm_forward_fast(float *out, float *mean, float *rstd, const float *x, const float *s,
                           const float *gamma, const float *beta, float eps, size_t N, size_t E)
{
#pragma omp parallel for schedule(static) if (N * E >= PAR_MIN)   /* O6 */
    for (size_t n = 0; n < N; n++) {
        /* No restrict: out may be x or s (layernorm.h). Element e is read before it is
         * written and no other element is touched, so `omp simd` holds either way. */
        const float *xr = x + n * E, *sr = s + n * E;
        float *hr = out + n * E;
#pragma omp simd
        for (size_t e = 0; e < E; e++)
            hr[e] = xr[e] + sr[e];
        const RowStats st = row_stats(hr, E, eps);
        row_output(hr, hr, st, gamma, beta, E);   /* in place */
        if (mean)
            mean[n] = st.hi + st.lo;
        if (rstd)
            rstd[n] = st.rstd;
    }
}

void pre_norm_linear_forward_fast(float *out, float *norm, float *mean, float *rstd,
                                  const float *x, const float *gamma, const float *beta,
                                  const float *w, const float *bias, float eps, size_t N,
                                  size_t E)
{
    layernorm_forward_fast(norm, mean, rstd, x, gamma, beta, eps, N, E);
    linear_fast(out, norm, w, bias, N, E, E);   /* chapter 00's blocked GEMM does the work */
#pragma omp parallel for simd schedule(static) if (N * E >= PAR_MIN)
    for (size_t i = 0; i < N * E; i++)
        out[i] += x[i];
}

/* ------------------------------------------------------------------------------------------
 * Backward (O7). x_hat is recomputed from the saved mean and rstd, as PyTorch's backward does.
 */
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* One row's dx, in double as naive's: g = dout gamma is formed exactly (a product of two floats
 * fits a double) in both passes, so g - mean(g) cancels exactly where it should (E = 1, a
 * constant g): in float, with FMA contraction, the second pass's product would carry the
 * rounding the first pass's did not, and rstd (316 at eps = 1e-5) would magnify it. */
static void backward_row(float *restrict dxr,        /* [E] += */
                         const float *restrict dr,   /* [E] dout */
                         const float *restrict xr,   /* [E] */
                         float mu, float r,
                         const float *restrict gamma,   /* [E] or NULL */
                         size_t E)
{
    const double mud = mu, rd = r;
    double sg = 0.0, sgx = 0.0;                       /* sum g, sum g x_hat */
#pragma omp simd reduction(+ : sg, sgx)
    for (size_t e = 0; e < E; e++) {
        const double g = (double)dr[e] * (gamma ? (double)gamma[e] : 1.0);
        sg += g;
        sgx += g * (((double)xr[e] - mud) * rd);
    }
    const double mg = sg / (double)E, mgx = sgx / (double)E;
#pragma omp simd
    for (size_t e = 0; e < E; e++) {
        const double g = (double)dr[e] * (gamma ? (double)gamma[e] : 1.0);
        const double xhat = ((double)xr[e] - mud) * rd;
        dxr[e] += (float)(rd * ((g - mg) - xhat * mgx));
    }
}

void layernorm_backward_fast(float *dx,              /* [N, E] or NULL, += */
                             float *dgamma,          /* [E] or NULL, += */
                             float *dbeta,           /* [E] or NULL, += */
                             const float *dout,      /* [N, E] */
                             const float *x,         /* [N, E] */
                             const float *mean,      /* [N] */
                             const float *rstd,      /* [N] */
                             const float *gamma,     /* [E] or NULL */
                             size_t N, size_t E)
{
    const size_t total = N * E;
    if (dx) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (size_t n = 0; n < N; n++)
            backward_row(dx + n * E, dout + n * E, x + n * E, mean[n], rstd[n], gamma, E);
    }
    if (!dgamma && !dbeta)
        return;
    enum { CB = 256 };                                /* columns per block */
    const size_t blocks = (E + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (size_t b = 0; b < blocks; b++) {
        const size_t e0 = b * CB, ne = min_sz(CB, E - e0);
        float sgam[CB] = {0}, sbet[CB] = {0};
        for (size_t n = 0; n < N; n++) {
            const float *restrict dr = dout + n * E + e0, *restrict xr = x + n * E + e0;
            const float mu = mean[n], r = rstd[n];
#pragma omp simd
            for (size_t e = 0; e < ne; e++) {
                sgam[e] += dr[e] * ((xr[e] - mu) * r);
                sbet[e] += dr[e];
            }
        }
        for (size_t e = 0; e < ne; e++) {
            if (dgamma)
                dgamma[e0 + e] += sgam[e];
            if (dbeta)
                dbeta[e0 + e] += sbet[e];
        }
    }
}

void add_norm_backward_fast(float *dx,             /* [N, E] or NULL, += */
                            float *ds,             /* [N, E] or NULL, += */
                            float *dgamma,         /* [E] or NULL, += */
                            float *dbeta,          /* [E] or NULL, += */
                            const float *dout,     /* [N, E] */
                            const float *x,        /* [N, E] */
                            const float *s,        /* [N, E] */
                            const float *mean,     /* [N] */
                            const float *rstd,     /* [N] */
                            const float *gamma,    /* [E] or NULL */
                            size_t N, size_t E)
{
    static const char who[] = "add_norm_backward_fast";
    const size_t total = N * E;
    float *y = tfm_arena_get(TFM_SCRATCH_LN_SUM, total, sizeof *y, who);   /* [N, E] */
#pragma omp parallel if (total >= PAR_MIN)
    {
#pragma omp for simd schedule(static)
        for (size_t i = 0; i < total; i++)
            y[i] = x[i] + s[i];
        if (dx || ds) {
            float *dy = tfm_arena_get(TFM_SCRATCH_LN_DROW, E, sizeof *dy, who);   /* [E] */
#pragma omp for schedule(static)
            for (size_t n = 0; n < N; n++) {
                memset(dy, 0, E * sizeof *dy);
                backward_row(dy, dout + n * E, y + n * E, mean[n], rstd[n], gamma, E);
                if (dx)
#pragma omp simd
                    for (size_t e = 0; e < E; e++)
                        dx[n * E + e] += dy[e];
                if (ds)
#pragma omp simd
                    for (size_t e = 0; e < E; e++)
                        ds[n * E + e] += dy[e];
            }
        }
    }
    layernorm_backward_fast(NULL, dgamma, dbeta, dout, y, mean, rstd, gamma, N, E);
}
