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
 *  F2 two passes per row, the second from L2. The log-sum-exp needs the row's maximum m before
 *     its sum s = sum exp(z_v - m); a row is 120 KiB at V = 30522, which stays in L2 (1 MiB per
 *     core on the machines measured) between the two passes, so memory delivers it once. (An
 *     online softmax, one pass with a running max and s rescaled block by block, was the first
 *     version here: per block of 64 logits it needed a horizontal max, a horizontal sum and a
 *     branch, and was slower.) The log-probabilities are never formed, nor written:
 *     l = log s - (z_y - m) needs only the label's logit. Naive reads the row three times (max,
 *     sum, log-probabilities) and writes and reads back a V-float row of log-probabilities.
 *  F3 ignored rows are skipped entirely: not read, not exponentiated (naive computes their
 *     log-softmax and then drops it). With logits given for every position that is 85% of the
 *     exps at BERT's masking rate.
 *  F4 vector reductions: the maximum is an `omp simd` reduction, partial results in independent
 *     lanes instead of one chain of dependent scalar operations; the sum has 16 double lanes
 *     (each lane sums every 16th term, about 1900 at V = 30522, in double, so no drift), added in
 *     lane order at the end. The exps are tfm_expf (chapters/00-tensors/tfm_exp.h), branch-free
 *     and so vectorized, where libm's expf would be one scalar call per logit.
 *  F5 OpenMP over rows (schedule static): each row's loss is written by one thread into its own
 *     slot; the mean is then summed in row order, in double, by one thread, exactly as naive
 *     does. So the result is bitwise the same for any thread count.
 *  F6 the linear layers are chapter 00's linear_fast, LayerNorm is chapter 04's layernorm_fast.
 *  F7 prefetch the next row. Pass 2 is arithmetic on a row already in L2; meanwhile it asks for
 *     the next labelled row, one cache line per 16 logits, so memory works during pass 2 and the
 *     next pass 1 reads from L2. Without it the passes take turns: memory idles during the exps,
 *     the exp units during the reads.
 *
 * The NSP head works on B rows of width E; beyond F6 there is nothing in it worth optimizing.
 *
 * Numerics as in naive, without -ffast-math: exp is tfm_expf (within 1.2 ulp of the true
 * exp; libm's expf is within 1 ulp), NaN and inf follow IEEE rules.
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

/* Independent sums per row in pass 2 (F2): 16 double lanes, two AVX-512 registers. 16 floats
 * are also one 64-byte cache line, the unit of F7's prefetch: one per iteration. */
enum { LANES = 16 };

static const char WHO[] = "pretraining_fast";   /* names us in an out-of-memory message */

/* -log softmax(z)[y] over z [V], in two passes over the row (F2, F4); next [V] is the row this
 * thread reads after this one, or NULL, and is prefetched during pass 2 (F7). */
static float row_loss(const float *restrict z, size_t V, size_t y, const float *next)
{
    /* Pass 1: m = max_v z_v. The starting value of each lane of a max reduction is the
     * compiler's choice (-inf in gcc, -FLT_MAX in clang) and is combined into the result: a row
     * of all -inf would come out of clang as -FLT_MAX. A result that low is redone by a scalar
     * loop (exact). A NaN is never "greater", so it does not enter the max; it reaches the sum
     * through exp(NaN - m) = NaN, which is all we need: the row's loss is NaN. */
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (size_t v = 0; v < V; v++)
        m = z[v] > m ? z[v] : m;
    if (m <= -FLT_MAX) {
        m = -INFINITY;
        for (size_t v = 0; v < V; v++)
            m = z[v] > m ? z[v] : m;
    }

    /* Pass 2: s = sum_v exp(z_v - m), the row now coming from L2. Each exp is at most 1; lane l
     * sums the logits v = l (mod 16) in double, and the lanes are added in order at the end, so
     * the result is fixed by the code, whatever the thread count. m = -inf (every logit -inf)
     * or m = +inf gives NaN terms and a NaN loss, as in naive and PyTorch. */
    double acc[LANES] = {0};
    size_t v0 = 0;
    for (; v0 + LANES <= V; v0 += LANES) {
        if (next)
            __builtin_prefetch(next + v0, 0, 2);   /* F7: read, keep in L2 */
#pragma omp simd
        for (size_t l = 0; l < LANES; l++)
            acc[l] += (double)tfm_expf(z[v0 + l] - m);
    }
    for (size_t l = 0; v0 + l < V; l++)
        acc[l] += (double)tfm_expf(z[v0 + l] - m);
    double s = 0.0;
    for (size_t l = 0; l < LANES; l++)
        s += acc[l];

    /* log s - (z_y - m): the label's log-probability, negated, in the same order of operations
     * as naive's (z_y - m) - log s. */
    return (float)log(s) - (z[y] - m);
}

void cross_entropy_fast(float *loss, float *token_loss, const float *logits,
                        const int64_t *labels, size_t N, size_t V)
{
    float *l = token_loss ? token_loss : tfm_xcalloc(N, sizeof *l, WHO);

#pragma omp parallel for schedule(static)   /* F5 */
    for (size_t n = 0; n < N; n++) {
        const int64_t y = labels[n];
        if (y == TFM_IGNORE_INDEX) {
            l[n] = 0.0f;   /* F3: the row is not touched */
            continue;
        }
        /* F7: the next labelled row (at the end of a thread's share, a row another thread reads:
         * one wasted prefetch per thread) */
        size_t nx = n + 1;
        while (nx < N && labels[nx] == TFM_IGNORE_INDEX)
            nx++;
        l[n] = row_loss(logits + n * V, V, (size_t)y, nx < N ? logits + nx * V : NULL);
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
