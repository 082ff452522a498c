/* crossentropy_naive.c — torch.nn.functional.cross_entropy, written the way PyTorch defines it:
 * the log-softmax over the classes, then the negative log-likelihood of the target (class
 * indices, with weights, ignore_index and label smoothing) or the cross-entropy against target
 * probabilities (pretraining.h states every formula).
 *
 * Dimension legend:
 *   n < N      batch element                 c < C  class (dimension 1 of the input)
 *   i < inner  position in the dimensions after the classes, flattened (1 for an [N, C] input)
 *   input element (n, c, i) at (n*C + c)*inner + i; target element (n, i) at n*inner + i.
 * All offsets are size_t.
 *
 * For each n the log-probabilities of the [C, inner] slab input[n] are computed first, with
 * chapter 00's log_softmax_naive (row max subtracted, sum in double), into one buffer of C*inner
 * floats; every loss term then reads them, log p[c, i] at c*inner + i. PyTorch does the same:
 * cross_entropy is nll_loss(log_softmax(input)), and the label-smoothing term sums the same
 * log-probabilities.
 *
 * Sums are accumulated in double, per element (the smoothing and probability sums over c) and
 * over elements (the mean and the sum). A float running sum over the N*inner losses of a batch
 * (16384 tokens of a BERT batch) can drift by up to N*inner float roundings, and its rounding
 * would depend on the order of the terms; in double, the order's effect stays far below float32's
 * spacing, so the one rounding that shows is the final one to float, and naive, fast (which sums
 * in another order) and PyTorch (which sums pairwise in float) agree to within that rounding.
 * The mean's divisor is summed the same way.
 */
#include "pretraining.h"

#include <math.h>
#include <stdlib.h>

#include "functional.h"
#include "tensor.h"

static const char WHO[] = "crossentropy_naive";   /* names us in an out-of-memory message */

void cross_entropy_loss_naive(float *out,              /* [1] for mean/sum, [N, inner] for none */
                              const float *input,      /* [N, C, inner] logits, classes on dim 1 */
                              const int64_t *target,   /* [N, inner] class indices, or NULL */
                              const float *target_probs, /* [N, C, inner] probabilities, or NULL */
                              const float *weight,     /* [C] or NULL */
                              int64_t ignore_index, TfmReduction reduction, float label_smoothing,
                              size_t N, size_t C, size_t inner)
{
    const double eps = (double)label_smoothing;
    if (C == 0 && target && eps > 0.0) {
        /* No classes, so every element is ignored (the caller checks), but PyTorch's smoothing
         * path still multiplies the masked zeros by eps / C = inf: NaN everywhere. */
        const size_t count = reduction == TFM_REDUCTION_NONE ? N * inner : 1;
        for (size_t e = 0; e < count; e++)
            out[e] = NAN;
        return;
    }
    float *logp = tfm_xcalloc(C * inner, sizeof *logp, WHO);   /* log p of input[n], [C, inner] */
    double loss_sum = 0.0;      /* sum of l over the elements */
    double divisor = 0.0;       /* the mean's: sum of w[y] (indices) or N*inner (probabilities) */

    for (size_t n = 0; n < N; n++) {
        log_softmax_naive(logp, input + n * C * inner, 1, C, inner);   /* log p[n, :, :] */

        for (size_t i = 0; i < inner; i++) {
            double l = 0.0;   /* an ignored element contributes 0 and is left out of the mean */
            if (target && target[n * inner + i] != ignore_index) {
                const int64_t y = target[n * inner + i];
                const double w_y = weight ? (double)weight[y] : 1.0;
                const double nll = -w_y * (double)logp[(size_t)y * inner + i];   /* -w[y] log p_y */
                l = nll;
                /* PyTorch takes the smoothing path only when eps > 0; with eps = 0 it never
                 * forms the smoothing sum, which is +inf when a logit is -inf (and 0 * inf is
                 * NaN). */
                if (eps > 0.0) {
                    double smooth = 0.0;                    /* -sum_c w[c] log p_c */
                    for (size_t c = 0; c < C; c++) {
                        const double w_c = weight ? (double)weight[c] : 1.0;
                        smooth -= w_c * (double)logp[c * inner + i];
                    }
                    l = (1.0 - eps) * nll + (eps / (double)C) * smooth;
                }
                divisor += w_y;
            } else if (!target) {
                for (size_t c = 0; c < C; c++) {            /* -sum_c w[c] y'_c log p_c */
                    const double w_c = weight ? (double)weight[c] : 1.0;
                    const double y_c = (double)target_probs[(n * C + c) * inner + i];
                    const double y_s = eps > 0.0 ? (1.0 - eps) * y_c + eps / (double)C : y_c;
                    l -= w_c * y_s * (double)logp[c * inner + i];
                }
                divisor += 1.0;
            }
            if (reduction == TFM_REDUCTION_NONE)
                out[n * inner + i] = (float)l;
            loss_sum += l;
        }
    }

    if (reduction == TFM_REDUCTION_SUM) {
        out[0] = (float)loss_sum;
    } else if (reduction == TFM_REDUCTION_MEAN) {
        /* 0/0 = NaN when every element is ignored (or their weights are all 0), as PyTorch. With
         * probabilities PyTorch returns NaN for an empty input, which C = 0 also is. */
        const int empty_probs = !target && N * C * inner == 0;
        out[0] = empty_probs ? NAN : (float)(loss_sum / divisor);
    }
    free(logp);
}

/* The mean's divisor, as the forward sums it: sum of w[y] over the elements not ignored (class
 * indices), N*inner (probabilities). */
static double mean_divisor(const int64_t *target, const float *weight, int64_t ignore_index,
                           size_t N, size_t inner)
{
    if (!target)
        return (double)(N * inner);
    double divisor = 0.0;
    for (size_t e = 0; e < N * inner; e++)
        if (target[e] != ignore_index)
            divisor += weight ? (double)weight[target[e]] : 1.0;
    return divisor;
}

void cross_entropy_backward_naive(float *dinput, float *dtarget, const float *dout,
                                  const float *input, const int64_t *target,
                                  const float *target_probs, const float *weight,
                                  int64_t ignore_index, TfmReduction reduction,
                                  float label_smoothing, size_t N, size_t C, size_t inner)
{
    const double eps = (double)label_smoothing;
    const double keep = 1.0 - eps, spread = C ? eps / (double)C : 0.0;   /* y' = keep y + spread */
    double W = 0.0;                                                      /* sum_c w[c] */
    for (size_t c = 0; c < C; c++)
        W += weight ? (double)weight[c] : 1.0;
    const double g_all = reduction == TFM_REDUCTION_MEAN
                             ? (double)dout[0] / mean_divisor(target, weight, ignore_index, N,
                                                              inner)
                             : (double)dout[0];
    float *p = tfm_xcalloc(2 * C * inner + 1, sizeof *p, WHO);   /* p and log p of input[n] */
    float *logp = p + C * inner;

    for (size_t n = 0; n < N; n++) {
        softmax_naive(p, input + n * C * inner, 1, C, inner);         /* p[c, i] */
        log_softmax_naive(logp, input + n * C * inner, 1, C, inner);
        for (size_t i = 0; i < inner; i++) {
            const double g = reduction == TFM_REDUCTION_NONE ? (double)dout[n * inner + i] : g_all;
            const size_t at = n * C * inner + i;                    /* element (n, 0, i) */
            if (target) {
                const int64_t y = target[n * inner + i];
                if (y == ignore_index)
                    continue;
                const double w_y = weight ? (double)weight[y] : 1.0;
                /* d/dz_c of keep w_y (-log p_y) + spread sum_k w_k (-log p_k), with
                 * d(-log p_k)/dz_c = p_c - [c = k] */
                for (size_t c = 0; c < C && dinput; c++) {
                    const double w_c = weight ? (double)weight[c] : 1.0;
                    double d = (double)p[c * inner + i] * (keep * w_y + spread * W);
                    d -= spread * w_c;
                    if ((int64_t)c == y)
                        d -= keep * w_y;
                    dinput[at + c * inner] += (float)(g * d);
                }
            } else {
                double A = 0.0;                                     /* sum_c w[c] y'_c */
                for (size_t c = 0; c < C; c++)
                    A += (weight ? (double)weight[c] : 1.0) *
                         (keep * (double)target_probs[at + c * inner] + spread);
                for (size_t c = 0; c < C; c++) {
                    const double w_c = weight ? (double)weight[c] : 1.0;
                    const double y_c = keep * (double)target_probs[at + c * inner] + spread;
                    if (dinput)
                        dinput[at + c * inner] +=
                            (float)(g * ((double)p[c * inner + i] * A - w_c * y_c));
                    if (dtarget)   /* dl/dy_c = -keep w_c log p_c */
                        dtarget[at + c * inner] +=
                            (float)(-g * keep * w_c * (double)logp[c * inner + i]);
                }
            }
        }
    }
    free(p);
}
