/* pretraining_naive.c — BERT's pretraining heads and losses, written the way the formulas read
 * (pretraining.h states them).
 *
 * Dimension legend:
 *   n < N  token row (N = B*T)       v < V  vocabulary entry (a column of the logits)
 *   e < E  model feature             b < B  sequence, t < T its tokens (t = 0 is [CLS])
 *
 * Layout, row-major: logits[n][v], hidden[n][e] (or hidden[b][t][e]), W[out][in] as nn.Linear
 * stores it. All offsets are size_t.
 *
 * Cross-entropy is computed the textbook way: a full log-softmax of the row, then the entry at
 * the label is picked. The log-softmax subtracts the row maximum first:
 *
 *   log softmax(z)_v = (z_v - m) - log sum_u exp(z_u - m),      m = max_u z_u
 *
 * which is the same number for every m, but with m the maximum the largest exponent is exp(0) = 1:
 * nothing overflows, however large the logits (float32's exp overflows above 88.72).
 */
#include "pretraining.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layernorm.h"
#include "matmul.h"
#include "tensor.h"

static const char WHO[] = "pretraining_naive";   /* names us in an out-of-memory message */

float gelu_erf(float x)
{
    const float inv_sqrt2 = 0.70710678118654752440f;   /* 1/sqrt(2) (M_SQRT1_2 is not C11) */
    return 0.5f * x * (1.0f + erff(x * inv_sqrt2));
}

size_t mlm_count_selected(const int64_t *labels, size_t N)
{
    size_t S = 0;
    for (size_t n = 0; n < N; n++)
        S += labels[n] != TFM_IGNORE_INDEX;
    return S;
}

void cross_entropy_naive(float *loss, float *token_loss, const float *logits,
                         const int64_t *labels, size_t N, size_t V)
{
    float *logp = tfm_xcalloc(V, sizeof *logp, WHO);   /* one row of log-probabilities */
    double sum = 0.0;                          /* sum of l_n over the kept rows */
    size_t count = 0;                          /* S, the kept rows */

    for (size_t n = 0; n < N; n++) {
        const float *z = logits + n * V;

        /* log softmax(z) = (z - m) - log sum exp(z - m) */
        float m = -INFINITY;
        for (size_t v = 0; v < V; v++)
            m = fmaxf(m, z[v]);
        double sumexp = 0.0;   /* in double: a float running sum of 30522 terms drifts by
                                  3e-6 relative, more than PyTorch's blocked sum (2e-8) */
        for (size_t v = 0; v < V; v++)
            sumexp += expf(z[v] - m);
        const float logsumexp = (float)log(sumexp);
        for (size_t v = 0; v < V; v++)
            logp[v] = (z[v] - m) - logsumexp;

        /* l_n = -log p(y_n); an ignored row contributes nothing, not even a NaN it may hold */
        const int64_t y = labels[n];
        const float l = (y == TFM_IGNORE_INDEX) ? 0.0f : -logp[y];
        if (token_loss)
            token_loss[n] = l;
        if (y == TFM_IGNORE_INDEX)
            continue;
        sum += l;
        count += 1;
    }

    /* The mean, summed in double so its rounding does not grow with S. S = 0: 0/0 = NaN. */
    loss[0] = (float)(sum / (double)count);
    free(logp);
}

/* t = LayerNorm(GELU(W_t h + b_t)) for M rows of h: the MLM head's transform. */
static void mlm_transform(float *t, const float *h, const MlmHead *p, size_t M, size_t E)
{
    float *a = tfm_xcalloc(M * E, sizeof *a, WHO);
    linear_naive(a, h, p->dense_w, p->dense_b, M, E, E);   /* a = W_t h + b_t */
    for (size_t i = 0; i < M * E; i++)
        a[i] = gelu_erf(a[i]);                              /* a = GELU(a) */
    layernorm_forward_naive(t, NULL, NULL, a, p->ln_gamma, p->ln_beta, p->ln_eps, M, E);
    free(a);
}

void mlm_forward_naive(float *loss, float *masked_logits, const float *hidden,
                       const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V)
{
    float *t = tfm_xcalloc(N * E, sizeof *t, WHO);
    float *z = tfm_xcalloc(N * V, sizeof *z, WHO);

    mlm_transform(t, hidden, head, N, E);                           /* t = transform(h), [N, E] */
    linear_naive(z, t, head->decoder_w, head->decoder_b, N, E, V);  /* z = W_emb t + b, [N, V] */
    cross_entropy_naive(loss, NULL, z, labels, N, V);               /* ignores y = -100 rows */

    /* The scores of the labelled rows, in row order: prediction_scores[labels != -100]. */
    if (masked_logits) {
        size_t s = 0;
        for (size_t n = 0; n < N; n++)
            if (labels[n] != TFM_IGNORE_INDEX)
                memcpy(masked_logits + (s++) * V, z + n * V, V * sizeof *z);
    }
    free(t);
    free(z);
}

void nsp_forward_naive(float *loss, float *logits, float *pooled_out, const float *hidden,
                       const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E)
{
    float *cls = tfm_xcalloc(B * E, sizeof *cls, WHO);
    float *pooled = pooled_out ? pooled_out : tfm_xcalloc(B * E, sizeof *pooled, WHO);

    for (size_t b = 0; b < B; b++)                    /* h[b, 0]: the [CLS] token's state */
        memcpy(cls + b * E, hidden + b * T * E, E * sizeof *cls);
    linear_naive(pooled, cls, head->pooler_w, head->pooler_b, B, E, E);   /* W_p h + b_p */
    for (size_t i = 0; i < B * E; i++)
        pooled[i] = tanhf(pooled[i]);                                      /* p = tanh(.) */
    linear_naive(logits, pooled, head->cls_w, head->cls_b, B, E, 2);      /* s = W_s p + b_s */
    cross_entropy_naive(loss, NULL, logits, labels, B, 2);

    free(cls);
    if (!pooled_out)
        free(pooled);
}
