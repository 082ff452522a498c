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

#include "functional.h"
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

/* The pooler on each sequence's first token: cls = h[b, 0], pooled = tanh(W_p cls + b_p). */
static void pool_cls(float *cls, float *pooled, const float *hidden, const NspHead *head,
                     size_t B, size_t T, size_t E)
{
    for (size_t b = 0; b < B; b++)                    /* h[b, 0]: the [CLS] token's state */
        memcpy(cls + b * E, hidden + b * T * E, E * sizeof *cls);
    linear_naive(pooled, cls, head->pooler_w, head->pooler_b, B, E, E);   /* W_p h + b_p */
    for (size_t i = 0; i < B * E; i++)
        pooled[i] = tanhf(pooled[i]);                                      /* p = tanh(.) */
}

void nsp_forward_naive(float *loss, float *logits, float *pooled_out, const float *hidden,
                       const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E)
{
    float *cls = tfm_xcalloc(B * E, sizeof *cls, WHO);
    float *pooled = pooled_out ? pooled_out : tfm_xcalloc(B * E, sizeof *pooled, WHO);

    pool_cls(cls, pooled, hidden, head, B, T, E);
    linear_naive(logits, pooled, head->cls_w, head->cls_b, B, E, 2);      /* s = W_s p + b_s */
    cross_entropy_naive(loss, NULL, logits, labels, B, 2);

    free(cls);
    if (!pooled_out)
        free(pooled);
}

void mlm_backward_naive(float *dhidden, const MlmHeadGrads *g, float dloss, const float *hidden,
                        const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V)
{
    /* the forward again, keeping what each step's backward reads */
    float *u = tfm_xcalloc(6 * N * E + 2 * N + 2 * N * V + 1, sizeof(float), WHO);
    float *a = u + N * E, *t = a + N * E;                       /* [N, E] each */
    float *dt = t + N * E, *da = dt + N * E, *du = da + N * E;  /* [N, E] each, zero */
    float *mean = du + N * E, *rstd = mean + N;                 /* [N] each */
    float *z = rstd + N, *dz = z + N * V;                       /* [N, V] each */
    linear_naive(u, hidden, head->dense_w, head->dense_b, N, E, E);   /* u = W_t h + b_t */
    for (size_t i = 0; i < N * E; i++)
        a[i] = gelu_erf(u[i]);                                          /* a = GELU(u) */
    layernorm_forward_naive(t, mean, rstd, a, head->ln_gamma, head->ln_beta, head->ln_eps, N,
                            E);                                         /* t = LN(a) */
    linear_naive(z, t, head->decoder_w, head->decoder_b, N, E, V);      /* z = W_emb t + b */

    /* and back: the loss is the mean over the labelled rows (F.cross_entropy's default) */
    cross_entropy_backward_naive(dz, NULL, &dloss, z, labels, NULL, NULL, TFM_IGNORE_INDEX,
                                 TFM_REDUCTION_MEAN, 0.0f, N, V, 1);
    linear_backward_naive(dt, g->decoder_w, g->decoder_b, dz, t, head->decoder_w, N, E, V);
    layernorm_backward_naive(da, g->ln_gamma, g->ln_beta, dt, a, mean, rstd, head->ln_gamma, N,
                             E);
    gelu_backward_naive(du, da, u, N * E, TFM_GELU_NONE);
    linear_backward_naive(dhidden, g->dense_w, g->dense_b, du, hidden, head->dense_w, N, E, E);
    free(u);
}

void mlm_forward_backward_naive(float *loss, float *dhidden, const MlmHeadGrads *g, float dloss,
                                const float *hidden, const int64_t *labels, const MlmHead *head,
                                size_t N, size_t E, size_t V)
{
    mlm_forward_naive(loss, NULL, hidden, labels, head, N, E, V);
    mlm_backward_naive(dhidden, g, dloss, hidden, labels, head, N, E, V);
}

void nsp_backward_naive(float *dhidden, const NspHeadGrads *g, float dloss, const float *hidden,
                        const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E)
{
    float *cls = tfm_xcalloc(4 * B * E + 4 * B + 1, sizeof(float), WHO);
    float *pooled = cls + B * E, *dpooled = pooled + B * E, *dcls = dpooled + B * E;
    float *s = dcls + B * E, *ds = s + 2 * B;
    pool_cls(cls, pooled, hidden, head, B, T, E);     /* as the forward */
    linear_naive(s, pooled, head->cls_w, head->cls_b, B, E, 2);

    cross_entropy_backward_naive(ds, NULL, &dloss, s, labels, NULL, NULL, TFM_IGNORE_INDEX,
                                 TFM_REDUCTION_MEAN, 0.0f, B, 2, 1);
    linear_backward_naive(dpooled, g->cls_w, g->cls_b, ds, pooled, head->cls_w, B, E, 2);
    for (size_t i = 0; i < B * E; i++)
        dpooled[i] *= 1.0f - pooled[i] * pooled[i];  /* tanh' = 1 - tanh^2 */
    linear_backward_naive(dcls, g->pooler_w, g->pooler_b, dpooled, cls, head->pooler_w, B, E, E);
    if (dhidden)
        for (size_t b = 0; b < B; b++)
            for (size_t e = 0; e < E; e++)
                dhidden[b * T * E + e] += dcls[b * E + e];
    free(cls);
}
