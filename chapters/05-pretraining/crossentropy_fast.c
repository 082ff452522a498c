/* crossentropy_fast.c — torch.nn.functional.cross_entropy of crossentropy_naive.c, organized for
 * the machine.
 *
 * Dimension legend (as in pretraining.h): n < N batch, c < C classes, i < inner the positions
 * after the class dimension; input (n, c, i) at (n*C + c)*inner + i, target (n, i) at n*inner + i.
 * A "row" is the C logits of one element (n, i).
 *
 * No loss term needs the log-probabilities of every class, only their log-sum-exp and a few sums
 * of the row, because log p_c = z_c - lse with lse = log sum_c exp(z_c):
 *
 *   nll    = -w[y] log p_y             = w[y] (lse - z_y)
 *   smooth = -sum_c w[c] log p_c       = W lse - sum_c w[c] z_c,       W = sum_c w[c]
 *   probs  = -sum_c w[c] y'_c log p_c  = A lse - sum_c w[c] y'_c z_c,  A = sum_c w[c] y'_c
 *
 * The sums are taken in double, where each term's rounding (w z, a product of two floats, is even
 * exact) is ~1e-16 relative, and lse = M + log S in double: M is a logit, exact, and log S is
 * within ~1e-7 absolute of the truth however large the logits (tfm_lse.h: S's 16-term block
 * sums are floats). Subtracting sum w z from W lse, or sum w y' z from A lse, then loses nothing
 * float32 could see, even with logits of 1e4, where the difference is ~1e4 times smaller than
 * its terms; only a loss near 0 (lse - z_y for a label that takes almost all the probability)
 * keeps that ~1e-7 as an absolute, not a relative, error. The optimizations, each with what it
 * saves:
 *
 *  C1 one pass per row: the online log-sum-exp (chapters/00-tensors/tfm_lse.h) gives the row's
 *     max and sum together, and the sums above are taken from the same block while it is in
 *     L1: the row is read from memory once. Naive reads it three times for the log-softmax,
 *     writes and reads back C log-probabilities per row, and then reads those once more for the
 *     smoothing sum.
 *  C2 vectorized: every step is a 16-lane operation (float lanes for the max, the exps and their
 *     block sums, two 8-lane double vectors for the sums above); the exps are tfm_expf,
 *     branch-free, where naive calls libm's scalar expf once per logit. Only the extra sums a
 *     call needs are taken: none for plain class indices, sum w z with smoothing, A and sum
 *     w y' z with probabilities.
 *  C3 ignored elements are skipped: not read, not exponentiated (naive computes their log-softmax
 *     and then drops it).
 *  C4 rows that are not contiguous (inner > 1): the rows of sixteen adjacent i are the sixteen
 *     lanes (one 64-byte line per class per step), each lane its own online log-sum-exp; the
 *     last inner % 16 rows of each n are gathered into a -inf padded block (and a 0 padded one
 *     for the probabilities), per block of 16 classes.
 *  C5 OpenMP over slices of rows (schedule static, no team below PAR_MIN logits). The reduction is
 *     deterministic, and the same for any thread count: the rows are cut into SLICES fixed
 *     slices (independent of the thread count); each slice sums its rows in order, in double,
 *     into its own slot, and the slots are added in slice order by one thread. No allocation:
 *     the slots live on the stack, and reduction = none writes each row's loss straight to out.
 *
 *  C6 backward (chapter 07): every row writes its own gradient row, so rows run in parallel
 *     with no reduction at all (the mean's divisor is summed first, once). A contiguous row is
 *     read twice: tfm_lse_row's one-pass (M, S), then one vectorized pass that writes
 *     p_c = exp(z_c - M) / S, scaled, into the gradient (g a / S folded into one factor).
 *     Ignored rows are not read (C3). Rows that are not contiguous (inner > 1) take a plain
 *     strided loop per row: correct, not tuned (no model of tfm's has such a loss).
 *
 * Measured on one thread (AMD EPYC, AVX-512), mean over [4096 x 30522] logits: 652 ms naive,
 * 42 ms fast (12 GB/s of logits: the row is read once); with weights and label smoothing
 * 762 / 76 ms; probability targets [1024 x 30522] 193 / 13.1 ms. (The fast times are from a
 * later run, with tfm_lse.h's float block sums: medians; the same run gave 54-57, 83-88 and
 * 18-20 ms for the double block sums they replaced.)
 *
 * Numerics as in naive, without -ffast-math: NaN and inf follow IEEE rules, which give PyTorch's
 * values (a row of only -inf, or holding +inf or NaN, has loss NaN; -inf at the label gives +inf;
 * with smoothing, any -inf logit of nonzero weight gives +inf; with probabilities a 0 target at a
 * -inf logit gives 0 * inf = NaN, as PyTorch's 0 * log p does).
 */
#include "pretraining.h"

#include <math.h>

#include "tfm_exp.h"
#include "tfm_lse.h"

enum { LANES = TFM_LSE_LANES, STEPS = TFM_LSE_STEPS, BLOCK = TFM_LSE_LANES * TFM_LSE_STEPS };
/* C5: fixed reduction slices; 256 keep the imbalance between threads small for any team size
 * up to a few dozen threads, and their partial sums take 4 KiB of stack. */
enum { SLICES = 256 };
/* Below this many logits one thread does the whole job (C5). */
#define PAR_MIN ((size_t)1 << 15)

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* The call's constants, shared by every row. */
typedef struct {
    const float *input;        /* [N, C, inner] */
    const int64_t *target;     /* [N, inner] or NULL */
    const float *probs;        /* [N, C, inner] or NULL */
    const float *weight;       /* [C] or NULL */
    int64_t ignore_index;
    int smoothing;             /* index targets with eps > 0: the smoothing sum is needed */
    double keep, spread;       /* y' = keep y + spread: 1 - eps and eps / C (1 and 0 if eps = 0) */
    double wsum;               /* W = sum_c w[c] (C without weights) */
    size_t C, inner;
} Ce;

/* Per-lane sums of the extra terms (C1, C2): wz[l] += w[c] z_c (smoothing), or a[l] += w[c] y'_c
 * and b[l] += w[c] y'_c z_c (probabilities). */
typedef struct {
    double wz[LANES], a[LANES], b[LANES];
} Sums;

/* Along a contiguous row: `steps` steps of LANES classes, step j, lane l is class
 * c0 + j*LANES + l, at z[j*LANES + l] (and y[j*LANES + l]). */
static void sums_row(Sums *restrict acc, const Ce *ce,
                     const float *restrict z,        /* [steps * LANES] */
                     const float *restrict y,        /* [steps * LANES] or NULL */
                     size_t steps, size_t c0)
{
    const float *w = ce->weight;
    const double keep = ce->keep, spread = ce->spread;
    for (size_t j = 0; j < steps; j++) {
        const float *zj = z + j * LANES;
        const size_t cj = c0 + j * LANES;
        if (ce->smoothing && w) {
#pragma omp simd
            for (size_t l = 0; l < LANES; l++)
                acc->wz[l] += (double)w[cj + l] * (double)zj[l];
        } else if (ce->smoothing) {
#pragma omp simd
            for (size_t l = 0; l < LANES; l++)
                acc->wz[l] += (double)zj[l];
        }
        if (y) {
            const float *yj = y + j * LANES;
#pragma omp simd
            for (size_t l = 0; l < LANES; l++) {
                const double wc = w ? (double)w[cj + l] : 1.0;
                const double wy = wc * (keep * (double)yj[l] + spread);     /* w[c] y'_c */
                acc->a[l] += wy;
                acc->b[l] += wy * (double)zj[l];
            }
        }
    }
}

/* Across LANES rows side by side: `steps` classes c0 + j, class c0 + j of lane l at
 * z[j*stride + l] (and y[j*stride + l]). */
static void sums_lanes(Sums *restrict acc, const Ce *ce,
                       const float *restrict z,      /* [steps, stride] */
                       const float *restrict y,      /* [steps, stride] or NULL */
                       size_t stride, size_t steps, size_t c0)
{
    const float *w = ce->weight;
    const double keep = ce->keep, spread = ce->spread;
    for (size_t j = 0; j < steps; j++) {
        const float *zj = z + j * stride;
        const double wc = w ? (double)w[c0 + j] : 1.0;                     /* one class per step */
        if (ce->smoothing) {
#pragma omp simd
            for (size_t l = 0; l < LANES; l++)
                acc->wz[l] += wc * (double)zj[l];
        }
        if (y) {
            const float *yj = y + j * stride;
#pragma omp simd
            for (size_t l = 0; l < LANES; l++) {
                const double wy = wc * (keep * (double)yj[l] + spread);
                acc->a[l] += wy;
                acc->b[l] += wy * (double)zj[l];
            }
        }
    }
}

/* The loss of one row from its log-sum-exp, its label's logit and weight, and its sums. */
static double row_loss(const Ce *ce, double lse, double z_y, double w_y, double wz, double a,
                       double b)
{
    if (ce->probs)
        return a * lse - b;                                   /* -sum w y' (z - lse) */
    const double nll = w_y * (lse - z_y);                     /* -w[y] log p_y */
    if (!ce->smoothing)
        return nll;
    const double smooth = ce->wsum * lse - wz;                /* -sum w log p */
    return ce->keep * nll + ce->spread * smooth;
}

/* ------------------------------------------------------------------------------------------
 * A contiguous row (inner = 1): row n, its lanes 16 interleaved parts of it, merged at the end.
 * Adds its loss to *loss_sum and its mean divisor to *divisor; stores the loss if out_none.
 */
static void contiguous_row(const Ce *ce, size_t n,
                           float *out_none,          /* [N] or NULL */
                           double *loss_sum, double *divisor)
{
    const size_t C = ce->C;
    double w_y = 1.0;
    int64_t y = -1;
    if (ce->target) {
        y = ce->target[n];
        if (y == ce->ignore_index) {                 /* C3: the row is not touched */
            if (out_none)
                out_none[n] = 0.0f;
            return;
        }
        w_y = ce->weight ? (double)ce->weight[y] : 1.0;
    }
    const float *z = ce->input + n * C;
    const float *yp = ce->probs ? ce->probs + n * C : NULL;
    const int extra = ce->smoothing || yp;

    TfmLse st;
    tfm_lse_init(&st);
    Sums acc = {{0}, {0}, {0}};
    size_t c = 0;
    for (; c + BLOCK <= C; c += BLOCK) {             /* C1: whole blocks */
        tfm_lse_update(&st, z + c, LANES, STEPS);
        if (extra)
            sums_row(&acc, ce, z + c, yp ? yp + c : NULL, STEPS, c);
    }
    const size_t steps = (C - c) / LANES;            /* then whole steps */
    if (steps > 0) {
        tfm_lse_update(&st, z + c, LANES, steps);
        if (extra)
            sums_row(&acc, ce, z + c, yp ? yp + c : NULL, steps, c);
        c += steps * LANES;
    }
    float M;
    double S;
    if (c < C) {                                     /* the last C % 16 logits, padded */
        float pad[LANES];
        for (size_t l = 0; l < LANES; l++)
            pad[l] = c + l < C ? z[c + l] : -INFINITY;
        tfm_lse_update(&st, pad, LANES, 1);
    }
    tfm_lse_merge(&st, &M, &S);

    double wz = 0.0, a = 0.0, b = 0.0;               /* lanes merged in lane order, then the tail */
    for (size_t l = 0; l < LANES; l++) {
        wz += acc.wz[l];
        a += acc.a[l];
        b += acc.b[l];
    }
    for (; c < C; c++) {
        const double wc = ce->weight ? (double)ce->weight[c] : 1.0;
        if (ce->smoothing)
            wz += wc * (double)z[c];
        if (yp) {
            const double wy = wc * (ce->keep * (double)yp[c] + ce->spread);
            a += wy;
            b += wy * (double)z[c];
        }
    }

    const double lse = tfm_lse_value(M, S);
    const double z_y = ce->target ? (double)z[y] : 0.0;
    const double l = row_loss(ce, lse, z_y, w_y, wz, a, b);
    if (out_none)
        out_none[n] = (float)l;
    *loss_sum += l;
    *divisor += w_y;
}

/* ------------------------------------------------------------------------------------------
 * Sixteen rows side by side (inner > 1, C4): rows (n, i0 + l), l < nl (nl < 16 for the last
 * group of an n, gathered into padded blocks).
 */
static void lane_rows(const Ce *ce, size_t n, size_t i0, size_t nl,
                      float *out_none,               /* [N, inner] or NULL */
                      double *loss_sum, double *divisor)
{
    const size_t C = ce->C, inner = ce->inner;
    double w_y[LANES];
    int64_t y[LANES];
    int live = 0;                                    /* lanes whose row is not ignored */
    for (size_t l = 0; l < LANES; l++) {
        w_y[l] = 1.0;
        y[l] = -1;
        if (l < nl && ce->target) {
            y[l] = ce->target[n * inner + i0 + l];
            if (y[l] == ce->ignore_index)
                continue;
            w_y[l] = ce->weight ? (double)ce->weight[y[l]] : 1.0;
        }
        live |= l < nl;
    }
    if (!live) {                                     /* C3: every row ignored */
        if (out_none)
            for (size_t l = 0; l < nl; l++)
                out_none[n * inner + i0 + l] = 0.0f;
        return;
    }

    const float *z0 = ce->input + n * C * inner + i0;                /* (n, 0, i0) */
    const float *y0 = ce->probs ? ce->probs + n * C * inner + i0 : NULL;
    const int extra = ce->smoothing || y0;
    TfmLse st;
    tfm_lse_init(&st);
    Sums acc = {{0}, {0}, {0}};
    float zb[STEPS * LANES], yb[STEPS * LANES];     /* padded copies for a partial group */
    for (size_t c = 0; c < C; c += STEPS) {
        const size_t steps = min_sz(STEPS, C - c);
        const float *zp = z0 + c * inner, *yq = y0 ? y0 + c * inner : NULL;
        size_t stride = inner;
        if (nl < LANES) {
            for (size_t j = 0; j < steps; j++)
                for (size_t l = 0; l < LANES; l++) {
                    zb[j * LANES + l] = l < nl ? zp[j * inner + l] : -INFINITY;
                    if (yq)
                        yb[j * LANES + l] = l < nl ? yq[j * inner + l] : 0.0f;
                }
            zp = zb;
            yq = yq ? yb : NULL;
            stride = LANES;
        }
        tfm_lse_update(&st, zp, stride, steps);
        if (extra)
            sums_lanes(&acc, ce, zp, yq, stride, steps, c);
    }

    for (size_t l = 0; l < nl; l++) {                /* lane order: the rows' order */
        const size_t e = n * inner + i0 + l;         /* element (n, i0 + l) */
        if (ce->target && y[l] == ce->ignore_index) {
            if (out_none)
                out_none[e] = 0.0f;
            continue;
        }
        const double lse = tfm_lse_value(st.m[l], st.s[l]);
        const double z_y = ce->target ? (double)z0[(size_t)y[l] * inner + l] : 0.0;
        const double loss = row_loss(ce, lse, z_y, w_y[l], acc.wz[l], acc.a[l], acc.b[l]);
        if (out_none)
            out_none[e] = (float)loss;
        *loss_sum += loss;
        *divisor += w_y[l];
    }
}

void cross_entropy_loss_fast(float *out,               /* [1] for mean/sum, [N, inner] for none */
                             const float *input,       /* [N, C, inner] logits, classes on dim 1 */
                             const int64_t *target,    /* [N, inner] class indices, or NULL */
                             const float *target_probs, /* [N, C, inner] probabilities, or NULL */
                             const float *weight,      /* [C] or NULL */
                             int64_t ignore_index, TfmReduction reduction, float label_smoothing,
                             size_t N, size_t C, size_t inner)
{
    const double eps = (double)label_smoothing;
    if (C == 0) {
        /* No classes. Probabilities: each loss is an empty sum, 0, and the mean NaN (an empty
         * input). Class indices: every element is ignored (the caller checks), so 0 and a mean
         * of 0/0 = NaN, except that with eps > 0 PyTorch's smoothing path multiplies the masked
         * zeros by eps / C = inf: NaN everywhere. (Naive gets there by the formula, but for that
         * last case, which it also spells out.) */
        const float l = target && eps > 0.0 ? NAN : 0.0f;
        if (reduction == TFM_REDUCTION_NONE) {
            for (size_t e = 0; e < N * inner; e++)
                out[e] = l;
        } else {
            out[0] = reduction == TFM_REDUCTION_SUM ? l : NAN;
        }
        return;
    }
    Ce ce = {input, target, target ? NULL : target_probs, weight, ignore_index,
             target && eps > 0.0, 1.0, 0.0, 0.0, C, inner};
    if (eps > 0.0) {
        ce.keep = 1.0 - eps;
        ce.spread = eps / (double)C;
    }
    if (ce.smoothing) {
        if (weight) {
            for (size_t c = 0; c < C; c++)
                ce.wsum += (double)weight[c];
        } else {
            ce.wsum = (double)C;
        }
    }

    /* Tasks: one per row (inner = 1) or per group of LANES rows of one n (C4). */
    const size_t groups = inner == 1 ? 1 : (inner + LANES - 1) / LANES;
    const size_t tasks = N * groups;
    float *out_none = reduction == TFM_REDUCTION_NONE ? out : NULL;
    double part_loss[SLICES], part_div[SLICES];

    /* C5: slice k holds tasks [tasks*k/SLICES, tasks*(k+1)/SLICES), summed in task order. */
#pragma omp parallel for schedule(static) if (N * C * inner >= PAR_MIN)
    for (size_t k = 0; k < SLICES; k++) {
        double loss_sum = 0.0, divisor = 0.0;
        for (size_t t = tasks * k / SLICES; t < tasks * (k + 1) / SLICES; t++) {
            if (inner == 1) {
                contiguous_row(&ce, t, out_none, &loss_sum, &divisor);
            } else {
                const size_t n = t / groups, i0 = (t % groups) * LANES;
                lane_rows(&ce, n, i0, min_sz(LANES, inner - i0), out_none, &loss_sum, &divisor);
            }
        }
        part_loss[k] = loss_sum;
        part_div[k] = divisor;
    }
    if (reduction == TFM_REDUCTION_NONE)
        return;

    double loss_sum = 0.0, divisor = 0.0;
    for (size_t k = 0; k < SLICES; k++) {            /* slice order: thread-count independent */
        loss_sum += part_loss[k];
        divisor += part_div[k];
    }
    if (reduction == TFM_REDUCTION_SUM) {
        out[0] = (float)loss_sum;
    } else {
        /* Indices: divisor = sum of w[y] over the rows not ignored (0/0 = NaN if none are);
         * probabilities: N*inner, and NaN for an empty input, C = 0 included (PyTorch). */
        const int empty_probs = !target && N * C * inner == 0;
        out[0] = empty_probs ? NAN : (float)(loss_sum / divisor);
    }
}

/* ------------------------------------------------------------------------------------------
 * Backward (C6). g is the row's share of the upstream gradient; a the row's coefficient of p:
 * keep w[y] + spread W (class indices), A = sum_c w[c] y'_c (probabilities).
 */
static double row_coefficient(const Ce *ce, const float *restrict yp, double w_y, size_t stride)
{
    if (!yp)
        return ce->keep * w_y + ce->spread * ce->wsum;
    double A = 0.0;
#pragma omp simd reduction(+ : A)
    for (size_t c = 0; c < ce->C; c++)
        A += (ce->weight ? (double)ce->weight[c] : 1.0) *
             (ce->keep * (double)yp[c * stride] + ce->spread);
    return A;
}

static void backward_contiguous(const Ce *ce, size_t n, double g,
                                float *restrict dz,   /* [C] row n of dinput, or NULL */
                                float *restrict dt)   /* [C] row n of dtarget, or NULL */
{
    const size_t C = ce->C;
    const float *restrict z = ce->input + n * C, *restrict w = ce->weight;
    const float *restrict yp = ce->probs ? ce->probs + n * C : NULL;
    double w_y = 1.0;
    int64_t y = -1;
    if (ce->target) {
        y = ce->target[n];
        if (y == ce->ignore_index)                   /* C3 */
            return;
        w_y = w ? (double)w[y] : 1.0;
    }
    float M;
    double S;
    tfm_lse_row(z, C, &M, &S);
    const float ga = (float)(g * row_coefficient(ce, yp, w_y, 1) / S);   /* g a / S */
    const float gk = (float)(g * ce->keep), gs = (float)(g * ce->spread);
    if (dz && !yp) {
#pragma omp simd
        for (size_t c = 0; c < C; c++)   /* g (a p_c - spread w_c) */
            dz[c] += tfm_expf(z[c] - M) * ga - gs * (w ? w[c] : 1.0f);
        dz[y] -= (float)(g * ce->keep * w_y);        /* - g keep w[y] at the label */
    } else if (dz) {
#pragma omp simd
        for (size_t c = 0; c < C; c++)   /* g (A p_c - w_c y'_c) */
            dz[c] += tfm_expf(z[c] - M) * ga -
                     (w ? w[c] : 1.0f) * (gk * yp[c] + gs);
    }
    if (dt) {
        const float logS = (float)log(S);
#pragma omp simd
        for (size_t c = 0; c < C; c++)   /* -g keep w_c log p_c, log p_c = (z_c - M) - log S */
            dt[c] -= gk * (w ? w[c] : 1.0f) * ((z[c] - M) - logS);
    }
}

/* Element (n, i) of an input with inner > 1: its row at stride inner. */
static void backward_strided(const Ce *ce, size_t n, size_t i, double g, float *dinput,
                             float *dtarget)
{
    const size_t C = ce->C, inner = ce->inner, at = n * C * inner + i;
    const float *z = ce->input + at, *w = ce->weight;
    const float *yp = ce->probs ? ce->probs + at : NULL;
    double w_y = 1.0;
    int64_t y = -1;
    if (ce->target) {
        y = ce->target[n * inner + i];
        if (y == ce->ignore_index)
            return;
        w_y = w ? (double)w[y] : 1.0;
    }
    float M = -INFINITY;
    for (size_t c = 0; c < C; c++)
        M = z[c * inner] > M ? z[c * inner] : M;
    double S = 0.0;
    for (size_t c = 0; c < C; c++)
        S += (double)tfm_expf(z[c * inner] - M);
    /* S >= 1 (the max's own term), or NaN for a row holding NaN or only -inf */
    /* cppcheck-suppress invalidFunctionArg */
    const double a = row_coefficient(ce, yp, w_y, inner), logS = log(S);
    for (size_t c = 0; c < C; c++) {
        const double w_c = w ? (double)w[c] : 1.0;
        const double p_c = (double)tfm_expf(z[c * inner] - M) / S;
        /* a p_c - w_c y'_c (probabilities); a p_c - spread w_c - keep w[y] [c = y] (indices) */
        double d = a * p_c - w_c * (yp ? ce->keep * (double)yp[c * inner] + ce->spread
                                       : ce->spread);
        if ((int64_t)c == y)
            d -= ce->keep * w_y;
        if (dinput)
            dinput[at + c * inner] += (float)(g * d);
        if (dtarget)
            dtarget[at + c * inner] -=
                (float)(g * ce->keep * w_c * ((double)(z[c * inner] - M) - logS));
    }
}

void cross_entropy_backward_fast(float *dinput,        /* [N, C, inner] or NULL, += */
                                 float *dtarget,       /* [N, C, inner] or NULL, += */
                                 const float *dout,    /* [1] for mean/sum, [N, inner] none */
                                 const float *input, const int64_t *target,
                                 const float *target_probs, const float *weight,
                                 int64_t ignore_index, TfmReduction reduction,
                                 float label_smoothing, size_t N, size_t C, size_t inner)
{
    if (C == 0 || N * inner == 0)   /* no logits: nothing to differentiate */
        return;
    const double eps = (double)label_smoothing;
    Ce ce = {input, target, target ? NULL : target_probs, weight, ignore_index,
             target && eps > 0.0, 1.0 - eps, eps / (double)C, 0.0, C, inner};
    if (weight) {
        for (size_t c = 0; c < C; c++)
            ce.wsum += (double)weight[c];
    } else {
        ce.wsum = (double)C;
    }
    if (target)
        dtarget = NULL;   /* class indices are not differentiable */
    double g_all = (double)dout[0];
    if (reduction == TFM_REDUCTION_MEAN) {
        double divisor = (double)(N * inner);
        if (target) {
            divisor = 0.0;
            for (size_t e = 0; e < N * inner; e++)
                if (target[e] != ignore_index)
                    divisor += weight ? (double)weight[target[e]] : 1.0;
        }
        g_all /= divisor;
    }
    const int none = reduction == TFM_REDUCTION_NONE;
    if (inner == 1) {
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
        for (size_t n = 0; n < N; n++)
            backward_contiguous(&ce, n, none ? (double)dout[n] : g_all,
                                dinput ? dinput + n * C : NULL, dtarget ? dtarget + n * C : NULL);
    } else {
#pragma omp parallel for schedule(static) if (N * C * inner >= PAR_MIN)
        for (size_t n = 0; n < N; n++)
            for (size_t i = 0; i < inner; i++)
                backward_strided(&ce, n, i, none ? (double)dout[n * inner + i] : g_all, dinput,
                                 dtarget);
    }
}
