/* functional_fast.c — softmax, log_softmax and GELU of functional_naive.c, organized for the
 * machine.
 *
 * Dimension legend (functional.h): o < outer, c < C the reduced dimension, i < inner; element
 * (o, c, i) at (o*C + c)*inner + i; the row of (o, i) is its C elements, inner apart. n elements
 * for GELU.
 *
 * The optimizations, each with what it saves:
 *
 *  F1 vectorizable exp. The exps are tfm_expf (tfm_exp.h): branch-free, so a loop of them
 *     becomes 16-lane AVX-512 code; libm's expf, which naive calls, is one scalar call per
 *     element. Every inner loop is a lane-wise `omp simd` loop over 16 values.
 *  F2 softmax in three passes over a row that stays in L1 (a 1024-wide row is 4 KiB): max,
 *     then exp(x - m) stored into out and summed, then out / s in place. Only the first pass
 *     reads the row from memory and only the last writes it, and the exp is computed once per
 *     element, where naive computes it twice. An online max (F3) would fold the max pass into
 *     the sum but not save the exps: the stored exps would then be relative to a max that was
 *     still growing and would need a rescaling pass of their own, or a second exp each; the max
 *     pass, one compare per element, is the cheaper of the two.
 *  F3 log_softmax with an online log-sum-exp (tfm_lse.h): one pass gives the row's max and sum
 *     together, each value exponentiated once (plus 1/16 of an exp per value for the rescaling),
 *     then one pass writes (x - M) - log S: two passes over the row where naive makes three.
 *  F4 rows that are not contiguous (inner > 1, a reduced dimension that is not the last): the
 *     rows of sixteen adjacent i are processed together as the sixteen lanes, so every step
 *     reads one contiguous 64-byte line (x[o, c, i0..i0+16)) and the per-row max and sum are
 *     lane-wise. Naive walks one row at a time with stride inner: every element sits on its own
 *     cache line, of which it uses one float (the next rows find the line again only if it is
 *     still in cache). The last inner % 16 rows of each o go one at a time.
 *  F5 OpenMP over rows (inner = 1) or over groups of sixteen rows (F4), schedule(static): rows
 *     are independent and equal in cost. Below PAR_MIN elements one thread does all of it, where
 *     starting a team would cost more than the work.
 *  F6 running sums in double (as naive): lane-wise, merged in lane order. A float running sum
 *     would drift by ~1e-6 over a 30522-wide row. softmax converts each exp, one instruction per
 *     8 values; log_softmax's online sum (tfm_lse.h) adds a block of 16 steps in float, 16 terms
 *     <= 1 per lane, and only the block's sums in double, so that its exp loop stays one float
 *     vector wide (tfm_lse.h says what that costs in accuracy: ~1e-7 absolute on log S).
 *  F7 GELU 'none' without erf: x Phi(x) from two polynomials and one tfm_expf per element
 *     (tfm_gelu_erf, tfm_gelu.h), branch-free and without naive's 1 + erf cancellation; 'tanh'
 *     as x / (1 + exp(-2u)), the same function as x/2 (1 + tanh u) with one tfm_expf and no
 *     tanhf. Both vectorize; libm's erff and tanhf are scalar calls.
 *  F8 backward (chapter 07): softmax's and log_softmax's in two passes over a row (its sum
 *     sum_c dy_c y_c, or sum_c dy_c, in double lanes as F6; then the update of dx), rows laid
 *     out as the forward's, contiguous or sixteen at a time as lanes (F4), threads as F5. GELU's
 *     derivative is tfm_gelu.h's, vectorized like F7 (no erff, expf or tanhf calls).
 *
 * Measured on one thread (AMD EPYC, AVX-512): softmax [4096 x 1024] 31.7 ms naive, 2.7 ms fast;
 * log_softmax 20.8 / 2.0 ms; the same along the middle dimension of [64 x 1024 x 64] 31.8 / 2.7
 * and 25.5 / 2.8 ms; GELU of 4M floats 58 / 2.7 ms ('none') and 83 / 1.7 ms ('tanh'). (The two
 * fast log_softmax times are from a later run, with tfm_lse.h's float block sums: medians; the
 * same run gave 2.3-2.9 and 2.6-3.9 ms for the double block sums they replaced.)
 *
 * Determinism: every output element is computed by one thread, in an order fixed by the code, so
 * results are the same bits for any thread count.
 * In place (out == x) is allowed, as in naive: no pass reads an element after another element's
 * output has overwritten it, so `omp simd` is valid either way (and there is no restrict on them).
 * Numerics without -ffast-math: NaN and inf follow IEEE rules and give PyTorch's results
 * (functional.h lists them).
 */
#include "functional.h"

#include <math.h>

#include "tfm_exp.h"
#include "tfm_gelu.h"
#include "tfm_lse.h"

/* Below this many elements one thread does the whole job (F5). */
#define PAR_MIN ((size_t)1 << 15)

enum { LANES = TFM_LSE_LANES };

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------------------------
 * Contiguous rows (inner = 1).
 */

/* max_c x_c over a contiguous row, lane-wise (F1); NaN is skipped, as fmaxf does in naive. */
static float row_max(const float *x,                /* [C] */
                     size_t C)
{
    float ml[LANES];
    for (size_t l = 0; l < LANES; l++)
        ml[l] = -INFINITY;
    size_t c = 0;
    for (; c + LANES <= C; c += LANES)
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            ml[l] = x[c + l] > ml[l] ? x[c + l] : ml[l];
    float m = -INFINITY;
    for (size_t l = 0; l < LANES; l++)
        m = ml[l] > m ? ml[l] : m;
    for (; c < C; c++)
        m = x[c] > m ? x[c] : m;
    return m;
}

/* F2: p_c = exp(x_c - m) / s over one contiguous row. */
static void softmax_row(float *out,                 /* [C] */
                        const float *x,             /* [C] */
                        size_t C)
{
    const float m = row_max(x, C);                          /* pass 1: m = max_c x_c */

    double sl[LANES];                                       /* pass 2: e_c = exp(x_c - m), */
    for (size_t l = 0; l < LANES; l++)                      /* stored, and s = sum_c e_c */
        sl[l] = 0.0;
    size_t c = 0;
    for (; c + LANES <= C; c += LANES)
#pragma omp simd
        for (size_t l = 0; l < LANES; l++) {
            const float e = tfm_expf(x[c + l] - m);
            out[c + l] = e;
            sl[l] += (double)e;
        }
    double s = 0.0;
    for (size_t l = 0; l < LANES; l++)
        s += sl[l];
    for (; c < C; c++) {
        const float e = tfm_expf(x[c] - m);
        out[c] = e;
        s += (double)e;
    }

    const float sf = (float)s;                              /* pass 3: p_c = e_c / s */
#pragma omp simd
    for (size_t k = 0; k < C; k++)
        out[k] = out[k] / sf;
}

/* F3: log p_c = (x_c - M) - log S over one contiguous row. */
static void log_softmax_row(float *out,             /* [C] */
                            const float *x,         /* [C] */
                            size_t C)
{
    float M;
    double S;
    tfm_lse_row(x, C, &M, &S);                              /* pass 1: M and S online */
    const float log_s = (float)log(S);
#pragma omp simd
    for (size_t c = 0; c < C; c++)                          /* pass 2 */
        out[c] = (x[c] - M) - log_s;
}

/* ------------------------------------------------------------------------------------------
 * Rows inner apart (inner > 1): sixteen rows side by side as the lanes (F4). x and out point at
 * element (o, 0, i0); lane l is row (o, i0 + l), its element c at c*inner + l.
 */

static void softmax_lanes(float *out,               /* [C, inner], lanes i0..i0+16 */
                          const float *x,           /* [C, inner], lanes i0..i0+16 */
                          size_t C, size_t inner)
{
    float m[LANES];
    double s[LANES];
    float sf[LANES];
    for (size_t l = 0; l < LANES; l++) {
        m[l] = -INFINITY;
        s[l] = 0.0;
    }
    for (size_t c = 0; c < C; c++)                          /* pass 1: m_l = max_c */
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            m[l] = x[c * inner + l] > m[l] ? x[c * inner + l] : m[l];
    for (size_t c = 0; c < C; c++)                          /* pass 2: e = exp(x - m_l) */
#pragma omp simd
        for (size_t l = 0; l < LANES; l++) {
            const float e = tfm_expf(x[c * inner + l] - m[l]);
            out[c * inner + l] = e;
            s[l] += (double)e;
        }
#pragma omp simd
    for (size_t l = 0; l < LANES; l++)
        sf[l] = (float)s[l];
    for (size_t c = 0; c < C; c++)                          /* pass 3: p = e / s_l */
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            out[c * inner + l] = out[c * inner + l] / sf[l];
}

static void log_softmax_lanes(float *out,           /* [C, inner], lanes i0..i0+16 */
                              const float *x,       /* [C, inner], lanes i0..i0+16 */
                              size_t C, size_t inner)
{
    TfmLse st;                                              /* pass 1: per lane M and S */
    tfm_lse_init(&st);
    for (size_t c = 0; c < C; c += TFM_LSE_STEPS)
        tfm_lse_update(&st, x + c * inner, inner, min_sz(TFM_LSE_STEPS, C - c));
    float log_s[LANES];
#pragma omp simd
    for (size_t l = 0; l < LANES; l++)
        log_s[l] = (float)log(st.s[l]);
    for (size_t c = 0; c < C; c++)                          /* pass 2 */
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            out[c * inner + l] = (x[c * inner + l] - st.m[l]) - log_s[l];
}

/* The inner % 16 rows left over at the end of each o, one row at a time, element c at
 * c*inner: the formula as naive writes it, with tfm_expf. */
static void softmax_one(float *out,                 /* [C] at stride inner */
                        const float *x,             /* [C] at stride inner */
                        size_t C, size_t inner)
{
    float m = -INFINITY;
    for (size_t c = 0; c < C; c++)
        m = x[c * inner] > m ? x[c * inner] : m;
    double s = 0.0;
    for (size_t c = 0; c < C; c++) {
        const float e = tfm_expf(x[c * inner] - m);
        out[c * inner] = e;
        s += (double)e;
    }
    const float sf = (float)s;
    for (size_t c = 0; c < C; c++)
        out[c * inner] = out[c * inner] / sf;
}

static void log_softmax_one(float *out,             /* [C] at stride inner */
                            const float *x,         /* [C] at stride inner */
                            size_t C, size_t inner)
{
    float m = -INFINITY;
    for (size_t c = 0; c < C; c++)
        m = x[c * inner] > m ? x[c * inner] : m;
    double s = 0.0;
    for (size_t c = 0; c < C; c++)
        s += (double)tfm_expf(x[c * inner] - m);
    /* s >= 1 (the max contributes exp(0)) unless the row is NaN; C = 0 never gets here. */
    /* cppcheck-suppress invalidFunctionArg */
    const float log_s = (float)log(s);
    for (size_t c = 0; c < C; c++)
        out[c * inner] = (x[c * inner] - m) - log_s;
}

/* ------------------------------------------------------------------------------------------
 * The drivers: F5 over rows or groups of rows.
 */

typedef void (*RowFn)(float *out, const float *x, size_t C);
typedef void (*LanesFn)(float *out, const float *x, size_t C, size_t inner);

static void along_dim(float *out,                   /* [outer, C, inner] */
                      const float *x,               /* [outer, C, inner] */
                      size_t outer, size_t C, size_t inner, RowFn row, LanesFn lanes, LanesFn one)
{
    if (outer == 0 || C == 0 || inner == 0)
        return;
    const size_t total = outer * C * inner;
    if (inner == 1) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (size_t o = 0; o < outer; o++)
            row(out + o * C, x + o * C, C);
        return;
    }
    /* Task t = (o, g): group g of LANES rows of o, or, for the last group when inner % LANES
     * is not 0, those leftover rows one by one. */
    const size_t groups = (inner + LANES - 1) / LANES;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (size_t t = 0; t < outer * groups; t++) {
        const size_t o = t / groups, i0 = (t % groups) * LANES;
        const size_t base = o * C * inner + i0;            /* element (o, 0, i0) */
        if (i0 + LANES <= inner) {
            lanes(out + base, x + base, C, inner);
        } else {
            for (size_t i = 0; i0 + i < inner; i++)
                one(out + base + i, x + base + i, C, inner);
        }
    }
}

void softmax_fast(float *out,                       /* [outer, C, inner] */
                  const float *x,                   /* [outer, C, inner] */
                  size_t outer, size_t C, size_t inner)
{
    along_dim(out, x, outer, C, inner, softmax_row, softmax_lanes, softmax_one);
}

void log_softmax_fast(float *out,                   /* [outer, C, inner] */
                      const float *x,               /* [outer, C, inner] */
                      size_t outer, size_t C, size_t inner)
{
    along_dim(out, x, outer, C, inner, log_softmax_row, log_softmax_lanes, log_softmax_one);
}

/* ------------------------------------------------------------------------------------------
 * GELU (F7): tfm_gelu_erf and tfm_gelu_tanh, in tfm_gelu.h (their derivation and accuracy are
 * there), shared with linear_act_fast's fused epilogue (matmul_fast.c) so the two never differ.
 */
void gelu_fast(float *out,                          /* [n] */
               const float *x,                      /* [n] */
               size_t n, TfmGeluApprox approximate)
{
    /* The branch on the form is taken once per call, so each loop is straight-line vector code
     * (the select inside tfm_gelu_erf becomes a blend). */
    if (approximate == TFM_GELU_NONE) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t j = 0; j < n; j++)
            out[j] = tfm_gelu_erf(x[j]);
    } else {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t j = 0; j < n; j++)
            out[j] = tfm_gelu_tanh(x[j]);
    }
}

/* ------------------------------------------------------------------------------------------
 * Backward (F8): dx += the row's update, given dy and the forward's output y.
 *   softmax:      dx_c += y_c (dy_c - sum_c' dy_c' y_c')
 *   log_softmax:  dx_c += dy_c - exp(y_c) sum_c' dy_c'
 * A row of `lanes` adjacent rows (lanes = LANES: inner > 1, F4) or one row (lanes = 1) with its
 * elements `stride` apart; contiguous rows (inner = 1) have stride 1, lanes 1.
 */
typedef enum { BWD_SOFTMAX, BWD_LOG_SOFTMAX } BwdKind;

/* One contiguous row: its sum in LANES double partial sums, then the update. */
static void bwd_row(float *restrict dx, const float *restrict dy, const float *restrict y,
                    size_t C, BwdKind kind)
{
    double sl[LANES] = {0};
    size_t c = 0;
    for (; c + LANES <= C; c += LANES)
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            sl[l] += kind == BWD_SOFTMAX ? (double)(dy[c + l] * y[c + l]) : (double)dy[c + l];
    double s = 0.0;
    for (size_t l = 0; l < LANES; l++)
        s += sl[l];
    for (; c < C; c++)
        s += kind == BWD_SOFTMAX ? (double)(dy[c] * y[c]) : (double)dy[c];
    const float sf = (float)s;
    if (kind == BWD_SOFTMAX) {
#pragma omp simd
        for (size_t k = 0; k < C; k++)
            dx[k] += y[k] * (dy[k] - sf);
    } else {
#pragma omp simd
        for (size_t k = 0; k < C; k++)
            dx[k] += dy[k] - tfm_expf(y[k]) * sf;
    }
}

/* LANES adjacent rows (F4), or fewer (n < LANES) at the end of an o: element (c, l) at
 * c*inner + l. */
static void bwd_lanes(float *restrict dx, const float *restrict dy, const float *restrict y,
                      size_t C, size_t inner, size_t n, BwdKind kind)
{
    double sl[LANES] = {0};
    for (size_t c = 0; c < C; c++) {
        const size_t e = c * inner;
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            if (l < n)
                sl[l] += kind == BWD_SOFTMAX ? (double)(dy[e + l] * y[e + l]) : (double)dy[e + l];
    }
    float sf[LANES];
    for (size_t l = 0; l < LANES; l++)
        sf[l] = (float)sl[l];
    for (size_t c = 0; c < C; c++) {
        const size_t e = c * inner;
        if (kind == BWD_SOFTMAX) {
#pragma omp simd
            for (size_t l = 0; l < LANES; l++)
                if (l < n)
                    dx[e + l] += y[e + l] * (dy[e + l] - sf[l]);
        } else {
#pragma omp simd
            for (size_t l = 0; l < LANES; l++)
                if (l < n)
                    dx[e + l] += dy[e + l] - tfm_expf(y[e + l]) * sf[l];
        }
    }
}

static void backward_along_dim(float *dx, const float *dy, const float *y, size_t outer,
                               size_t C, size_t inner, BwdKind kind)
{
    if (outer == 0 || C == 0 || inner == 0)
        return;
    const size_t total = outer * C * inner;
    if (inner == 1) {
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
        for (size_t o = 0; o < outer; o++)
            bwd_row(dx + o * C, dy + o * C, y + o * C, C, kind);
        return;
    }
    const size_t groups = (inner + LANES - 1) / LANES;
#pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (size_t t = 0; t < outer * groups; t++) {
        const size_t o = t / groups, i0 = (t % groups) * LANES;
        const size_t base = o * C * inner + i0;
        bwd_lanes(dx + base, dy + base, y + base, C, inner, min_sz(LANES, inner - i0), kind);
    }
}

void softmax_backward_fast(float *dx,               /* [outer, C, inner] += */
                           const float *dy,         /* [outer, C, inner] */
                           const float *y,          /* [outer, C, inner] */
                           size_t outer, size_t C, size_t inner)
{
    backward_along_dim(dx, dy, y, outer, C, inner, BWD_SOFTMAX);
}

void log_softmax_backward_fast(float *dx,           /* [outer, C, inner] += */
                               const float *dy,     /* [outer, C, inner] */
                               const float *y,      /* [outer, C, inner] */
                               size_t outer, size_t C, size_t inner)
{
    backward_along_dim(dx, dy, y, outer, C, inner, BWD_LOG_SOFTMAX);
}

void gelu_backward_fast(float *dx,                  /* [n] += */
                        const float *dy,            /* [n] */
                        const float *x,             /* [n] */
                        size_t n, TfmGeluApprox approximate)
{
    if (approximate == TFM_GELU_NONE) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t j = 0; j < n; j++)
            dx[j] += dy[j] * tfm_gelu_erf_grad(x[j]);
    } else {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t j = 0; j < n; j++)
            dx[j] += dy[j] * tfm_gelu_tanh_grad(x[j]);
    }
}
