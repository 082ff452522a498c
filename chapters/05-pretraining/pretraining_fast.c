/* pretraining_fast.c — the heads and losses of pretraining_naive.c, organized for the machine.
 *
 * Dimension legend (as in pretraining.h): n < N token rows, v < V vocabulary, e < E features,
 * b < B sequences of T tokens, S labelled rows (label != -100).
 *
 * The optimizations, each with what it saves:
 *
 *  F1 gather first. Only the S labelled rows have a loss, so the MLM head gathers those rows of
 *     the hidden states and runs the transform and the decoder on them alone. The decoder,
 *     2*E*V multiply-adds per row (47M at E = 768, V = 30522), is almost all of the head's work:
 *     with BERT's 15% masking S ~ 0.15 N, so the head does 1/0.15 ~ 6.7x less work and writes an
 *     [S, V] score matrix instead of [N, V] (BertForPreTraining scores every position and then
 *     throws 85% of the rows away in the loss).
 *  F2 one pass per row: the log-sum-exp is computed online. A running maximum m and a running
 *     sum s = sum exp(z_v - m) are updated block by block (BV logits, in L1): s is rescaled by
 *     exp(m_old - m_new) when a block raises the maximum (s is a double: one addition per block,
 *     and no drift over the 477 blocks of a 30522-wide row). The row is read from memory once,
 *     instead of three times (max, sum of exps, then log-probabilities) plus a V-float
 *     log-probability row written and read back; at V = 30522 a row is 120 KiB, larger than L1
 *     and a good part of L2. The log-probabilities are never formed: l = log s - (z_y - m) needs
 *     only the label's logit.
 *  F3 ignored rows are skipped entirely: not read, not exponentiated (naive computes their
 *     log-softmax and then drops it). With logits given for every position that is 85% of the
 *     exps at BERT's masking rate.
 *  F4 vector reductions: a block's maximum and its sum of exps are `omp simd` reductions, partial
 *     results in independent lanes instead of one chain of dependent scalar operations; the exps
 *     themselves are tfm_expf (chapters/00-tensors/tfm_exp.h), branch-free and so vectorized,
 *     where libm's expf would be one scalar call per logit.
 *  F5 OpenMP over rows (schedule static): each row's loss is written by one thread into its own
 *     slot; the mean is then summed in row order, in double, by one thread, exactly as naive
 *     does. So the result is bitwise the same for any thread count.
 *  F6 the linear layers are chapter 00's linear_fast, LayerNorm is chapter 04's layernorm_fast.
 *
 * The NSP head works on B rows of width E; beyond F6 there is nothing in it worth optimizing.
 *
 * Numerics as in naive, without -ffast-math: exp is tfm_expf (within 1 ulp of the correctly
 * rounded exp, like libm's expf), NaN and inf follow IEEE rules.
 * A row whose logits are all -inf, or that holds a +inf or a NaN, has loss NaN in both variants
 * (and in PyTorch); -inf at the label alone gives +inf.
 */
#include "pretraining.h"
#include "tensor.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layernorm.h"
#include "matmul.h"
#include "tfm_exp.h"

/* Logits per online-softmax block: 256 B, a few cache lines that stay in L1 between the max and
 * the exp pass over them; large enough that the one rescaling exp per block costs < 2%. */
enum { BV = 64 };

static const char WHO[] = "pretraining_fast";   /* names us in an out-of-memory message */

/* -log softmax(z)[y] in one pass over z [V] (F2, F4). */
static float row_loss(const float *restrict z, size_t V, size_t y)
{
    float m = -INFINITY;   /* running max of the blocks seen */
    double s = 0.0;        /* running sum of exp(z_v - m) over those blocks; double, so that
                              V/BV block sums (477 at V = 30522) add without drift */
    for (size_t v0 = 0; v0 < V; v0 += BV) {
        const size_t nv = V - v0 < BV ? V - v0 : BV;
        const float *restrict blk = z + v0;
        /* The starting value of each lane of a max reduction is the compiler's choice (-inf in
         * gcc, -FLT_MAX in clang) and is combined into the result: a block of all -inf would
         * come out of clang as -FLT_MAX. A result that low is redone by a scalar loop (exact). */
        float bm = -INFINITY;
#pragma omp simd reduction(max : bm)
        for (size_t v = 0; v < nv; v++)
            bm = blk[v] > bm ? blk[v] : bm;
        if (bm <= -FLT_MAX) {
            bm = -INFINITY;
            for (size_t v = 0; v < nv; v++)
                bm = blk[v] > bm ? blk[v] : bm;
        }
        /* A NaN is never "greater", so a NaN logit does not enter the max; it reaches s through
         * exp(NaN - m) = NaN below, which is all we need: the row's loss is NaN. */
        const float m_new = bm > m ? bm : m;
        if (m_new == -INFINITY) {
            /* Every logit so far is -inf (or NaN): they add exp(-inf) = 0, and skipping avoids
             * exp(-inf - (-inf)) = NaN for a row that later blocks may still fill. A NaN must
             * still poison the row, as it does in naive and PyTorch. */
            for (size_t v = 0; v < nv; v++)
                if (isnan(blk[v]))
                    s = (double)NAN;
            continue;
        }
        float bs = 0.0f;
#pragma omp simd reduction(+ : bs)
        for (size_t v = 0; v < nv; v++)
            bs += tfm_expf(blk[v] - m_new);
        /* exp(m - m_new) rescales the earlier terms; when m = -inf it is 0 and so is s. */
        s = (m_new == m ? s : s * exp((double)m - m_new)) + bs;
        m = m_new;
    }
    /* log s - (z_y - m): the label's log-probability, negated, in the same order of operations
     * as naive's (z_y - m) - log s. An all -inf row has m = -inf: (-inf) - (-inf) = NaN, as
     * PyTorch's log_softmax gives. */
    return (float)log(s) - (z[y] - m);
}

void cross_entropy_fast(float *loss, float *token_loss, const float *logits,
                        const int64_t *labels, size_t N, size_t V)
{
    float *l = token_loss ? token_loss : tfm_xcalloc(N, sizeof *l, WHO);

#pragma omp parallel for schedule(static)   /* F5 */
    for (size_t n = 0; n < N; n++) {
        const int64_t y = labels[n];
        l[n] = (y == TFM_IGNORE_INDEX) ? 0.0f   /* F3: the row is not touched */
                                       : row_loss(logits + n * V, V, (size_t)y);
    }

    double sum = 0.0;
    size_t count = 0;
    for (size_t n = 0; n < N; n++) {   /* row order, as naive: thread-count independent */
        if (labels[n] == TFM_IGNORE_INDEX)
            continue;
        sum += l[n];
        count += 1;
    }
    loss[0] = (float)(sum / (double)count);   /* S = 0: NaN, as PyTorch */
    if (!token_loss)
        free(l);
}

void mlm_forward_fast(float *loss, float *masked_logits, const float *hidden,
                      const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V)
{
    const size_t S = mlm_count_selected(labels, N);
    float *hs = tfm_xcalloc(S * E, sizeof *hs, WHO);   /* the labelled rows of hidden, [S, E] */
    float *a = tfm_xcalloc(S * E, sizeof *a, WHO);
    float *t = tfm_xcalloc(S * E, sizeof *t, WHO);
    float *z = masked_logits ? masked_logits : tfm_xcalloc(S * V, sizeof *z, WHO);
    int64_t *ys = tfm_xcalloc(S, sizeof *ys, WHO);

    /* F1: gather, then run the head on S rows instead of N. */
    for (size_t n = 0, s = 0; n < N; n++) {
        if (labels[n] == TFM_IGNORE_INDEX)
            continue;
        memcpy(hs + s * E, hidden + n * E, E * sizeof *hs);
        ys[s++] = labels[n];
    }
    linear_fast(a, hs, head->dense_w, head->dense_b, S, E, E);   /* F6 */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < S * E; i++)
        a[i] = gelu_erf(a[i]);
    layernorm_forward_fast(t, NULL, NULL, a, head->ln_gamma, head->ln_beta, head->ln_eps, S, E);
    linear_fast(z, t, head->decoder_w, head->decoder_b, S, E, V);
    cross_entropy_fast(loss, NULL, z, ys, S, V);   /* every row labelled: none skipped */

    free(hs);
    free(a);
    free(t);
    if (!masked_logits)
        free(z);
    free(ys);
}

void nsp_forward_fast(float *loss, float *logits, float *pooled_out, const float *hidden,
                      const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E)
{
    float *cls = tfm_xcalloc(B * E, sizeof *cls, WHO);
    float *pooled = pooled_out ? pooled_out : tfm_xcalloc(B * E, sizeof *pooled, WHO);
    for (size_t b = 0; b < B; b++)
        memcpy(cls + b * E, hidden + b * T * E, E * sizeof *cls);
    linear_fast(pooled, cls, head->pooler_w, head->pooler_b, B, E, E);
    for (size_t i = 0; i < B * E; i++)
        pooled[i] = tanhf(pooled[i]);
    linear_fast(logits, pooled, head->cls_w, head->cls_b, B, E, 2);
    cross_entropy_fast(loss, NULL, logits, labels, B, 2);
    free(cls);
    if (!pooled_out)
        free(pooled);
}
