/* encoder_naive.c — the feed-forward network and the encoder layer, one step of the formula
 * per line.
 *
 *   FF(x)   = act(x W1^T + b1) W2^T + b2
 *   post-LN:  h = LN1(x + SA(x));   out = LN2(h + FF(h))
 *   pre-LN:   h = x + SA(LN1(x));   out = h + FF(LN2(h))
 *
 * Dimension legend (encoder.h):
 *   b < B   batch element        t < T   token        n < N = B*T   token row
 *   e < E   model feature        H heads, D = E / H   i < I   feed-forward feature
 *
 * Row-major throughout: a [B, T, E] tensor is N = B*T rows of E, so the position-wise steps
 * (the FFN, the LayerNorms, the residual sums) see it as [N, E]. Offsets are size_t.
 *
 * Every step is a naive kernel of an earlier chapter: multihead_forward_naive (02),
 * layernorm_forward_naive and add_norm_forward_naive (04), linear_naive and gelu_naive (00).
 * The intermediates get their own names and arrays; only h and hidden live in the caller's
 * scratch, where encoder.h says they are left.
 */
#include "encoder.h"

#include <stdlib.h>

#include "functional.h"
#include "layernorm.h"
#include "matmul.h"
#include "multihead.h"
#include "tensor.h"

/* Names the function in an out-of-memory message. */
static const char WHO[] = "encoder_layer_forward_naive";

void feedforward_forward_naive(float *out, float *hidden, const float *x, const float *residual,
                               const FfnParams *p, TfmActivation act, size_t N, size_t E,
                               size_t I)
{
    linear_naive(hidden, x, p->w1, p->b1, N, E, I);             /* hidden = x W1^T + b1 */

    /* hidden = act(hidden), elementwise. ReLU keeps a NaN (v < 0 is false for it), as
     * torch.relu does; GELU is chapter 00's, in place. */
    if (act == TFM_ACT_RELU)
        for (size_t i = 0; i < N * I; i++)
            hidden[i] = hidden[i] < 0.0f ? 0.0f : hidden[i];    /* max(v, 0) */
    else if (act == TFM_ACT_GELU)
        gelu_naive(hidden, hidden, N * I, TFM_GELU_NONE);       /* v Phi(v) */
    else if (act == TFM_ACT_GELU_TANH)
        gelu_naive(hidden, hidden, N * I, TFM_GELU_TANH);

    linear_naive(out, hidden, p->w2, p->b2, N, I, E);           /* out = hidden W2^T + b2 */

    if (residual)
        for (size_t i = 0; i < N * E; i++)
            out[i] = residual[i] + out[i];                      /* out = x + FF(x) */
}

size_t encoder_layer_scratch_floats(size_t B, size_t T, size_t E, size_t I)
{
    return B * T * (E + I);   /* h [N, E], then hidden [N, I] */
}

void encoder_layer_forward_naive(float *out, float *probs, float *scratch, const float *src,
                                 const AttnMask *mask, const EncoderLayerParams *p,
                                 TfmActivation act, int norm_first, float eps, size_t B, size_t T,
                                 size_t E, size_t H, size_t I)
{
    const size_t N = B * T;
    float *h = scratch;                                         /* [N, E] */
    float *hidden = scratch + N * E;                            /* [N, I] */
    float *sa = tfm_xcalloc(N * E, sizeof(float), WHO);         /* [N, E] SA(.) */

    if (!norm_first) {
        float *ff = tfm_xcalloc(N * E, sizeof(float), WHO);     /* [N, E] FF(h) */
        /* sa = SA(x): query = key = value = x; need_weights off (weights NULL). */
        multihead_forward_naive(sa, probs, src, src, src, &p->self_attn, mask, 0, B, H, T, T, E);
        add_norm_forward_naive(h, NULL, NULL, src, sa, p->norm1_w, p->norm1_b, eps, N,
                               E);                              /* h = LN1(x + sa) */
        feedforward_forward_naive(ff, hidden, h, NULL, &p->ffn, act, N, E, I);   /* FF(h) */
        add_norm_forward_naive(out, NULL, NULL, h, ff, p->norm2_w, p->norm2_b, eps, N,
                               E);                              /* out = LN2(h + ff) */
        free(ff);
    } else {
        float *ln = tfm_xcalloc(N * E, sizeof(float), WHO);     /* [N, E] LN1(x), then LN2(h) */
        layernorm_forward_naive(ln, NULL, NULL, src, p->norm1_w, p->norm1_b, eps, N,
                                E);                             /* ln = LN1(x) */
        multihead_forward_naive(sa, probs, ln, ln, ln, &p->self_attn, mask, 0, B, H, T, T,
                                E);                             /* sa = SA(ln) */
        for (size_t i = 0; i < N * E; i++)
            h[i] = src[i] + sa[i];                              /* h = x + sa */
        layernorm_forward_naive(ln, NULL, NULL, h, p->norm2_w, p->norm2_b, eps, N,
                                E);                             /* ln = LN2(h) */
        feedforward_forward_naive(out, hidden, ln, h, &p->ffn, act, N, E,
                                  I);                           /* out = h + FF(ln) */
        free(ln);
    }
    free(sa);
}
