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

/* y = act(x), elementwise, as feedforward_forward_naive applies it. */
static void activate(float *y, const float *x, TfmActivation act, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = act == TFM_ACT_RELU ? (x[i] < 0.0f ? 0.0f : x[i]) : x[i];
    if (act == TFM_ACT_GELU || act == TFM_ACT_GELU_TANH)
        gelu_naive(y, x, n, act == TFM_ACT_GELU ? TFM_GELU_NONE : TFM_GELU_TANH);
}

/* d_pre += d_hid * act'(pre). ReLU's derivative is 1 where pre > 0 and 0 elsewhere, 0 at 0 as
 * torch.relu's backward (its threshold_backward passes the gradient only where x > 0). */
static void activate_backward(float *d_pre, const float *d_hid, const float *pre,
                              TfmActivation act, size_t n)
{
    if (act == TFM_ACT_GELU || act == TFM_ACT_GELU_TANH) {
        gelu_backward_naive(d_pre, d_hid, pre, n,
                            act == TFM_ACT_GELU ? TFM_GELU_NONE : TFM_GELU_TANH);
        return;
    }
    for (size_t i = 0; i < n; i++)
        d_pre[i] += act == TFM_ACT_RELU ? (pre[i] > 0.0f ? d_hid[i] : 0.0f) : d_hid[i];
}

void feedforward_forward_train_naive(float *out, float *pre, float *hid, const float *x,
                                     const float *residual, const FfnParams *p,
                                     TfmActivation act, size_t N, size_t E, size_t I)
{
    linear_naive(pre, x, p->w1, p->b1, N, E, I);                /* pre = x W1^T + b1 */
    activate(hid, pre, act, N * I);                             /* hid = act(pre) */
    linear_naive(out, hid, p->w2, p->b2, N, I, E);              /* out = hid W2^T + b2 */
    if (residual)
        for (size_t i = 0; i < N * E; i++)
            out[i] = residual[i] + out[i];
}

size_t feedforward_backward_scratch_floats(size_t N, size_t I) { return 2 * N * I; }

void feedforward_backward_naive(float *dx, const FfnGrads *g, float *scratch, const float *dout,
                                const float *x, const float *pre, const float *hid,
                                const FfnParams *p, TfmActivation act, size_t N, size_t E,
                                size_t I)
{
    float *d_hid = scratch, *d_pre = scratch + N * I;           /* [N, I] each */
    for (size_t i = 0; i < 2 * N * I; i++)
        scratch[i] = 0.0f;                                      /* the backwards add */
    linear_backward_naive(d_hid, g->w2, g->b2, dout, hid, p->w2, N, I, E);
    activate_backward(d_pre, d_hid, pre, act, N * I);
    linear_backward_naive(dx, g->w1, g->b1, d_pre, x, p->w1, N, E, I);
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

/* ---- Training (encoder.h): the layer with its activations kept, and its backward. */

size_t encoder_acts_floats(size_t B, size_t T, size_t E, size_t H, size_t I)
{
    const size_t N = B * T;
    /* qkv, ctx, lse; x1, n2, ffn_in; four statistics; pre, hid */
    return 3 * N * E + N * E + attention_lse_floats(B, H, T) + 3 * N * E + 4 * N + 2 * N * I;
}

void encoder_acts_init(EncoderActs *a, float *buf, size_t B, size_t T, size_t E, size_t H,
                       size_t I)
{
    const size_t N = B * T;
    a->attn.qkv = buf;
    a->attn.ctx = a->attn.qkv + 3 * N * E;
    a->attn.lse = a->attn.ctx + N * E;
    a->x1 = a->attn.lse + attention_lse_floats(B, H, T);
    a->n2 = a->x1 + N * E;
    a->ffn_in = a->n2 + N * E;
    a->mean1 = a->ffn_in + N * E;
    a->rstd1 = a->mean1 + N;
    a->mean2 = a->rstd1 + N;
    a->rstd2 = a->mean2 + N;
    a->pre = a->rstd2 + N;
    a->hid = a->pre + N * I;
}

size_t encoder_layer_backward_scratch_floats(size_t B, size_t T, size_t E, size_t I)
{
    return B * T * (3 * E + 2 * I);   /* d_n2, d_ffn_in, d_x1 [N, E]; d_hid, d_pre [N, I] */
}

void encoder_layer_forward_train_naive(float *out, const EncoderActs *a, const float *src,
                                       const AttnMask *mask, const EncoderLayerParams *p,
                                       TfmActivation act, int norm_first, float eps, size_t B,
                                       size_t T, size_t E, size_t H, size_t I)
{
    const size_t N = B * T;
    float *sa = tfm_xcalloc(N * E, sizeof(float), "encoder_layer_forward_train_naive");
    if (!norm_first) {
        multihead_self_forward_train_naive(sa, &a->attn, src, &p->self_attn, mask, B, H, T, E);
        for (size_t i = 0; i < N * E; i++)
            a->x1[i] = src[i] + sa[i];                                  /* x1 = x + SA(x) */
        layernorm_forward_naive(a->ffn_in, a->mean1, a->rstd1, a->x1, p->norm1_w, p->norm1_b,
                                eps, N, E);                             /* h = LN1(x1) */
        feedforward_forward_train_naive(a->n2, a->pre, a->hid, a->ffn_in, a->ffn_in, &p->ffn,
                                        act, N, E, I);                  /* n2 = h + FF(h) */
        layernorm_forward_naive(out, a->mean2, a->rstd2, a->n2, p->norm2_w, p->norm2_b, eps, N,
                                E);                                     /* out = LN2(n2) */
    } else {
        layernorm_forward_naive(a->x1, a->mean1, a->rstd1, src, p->norm1_w, p->norm1_b, eps, N,
                                E);                                     /* x1 = LN1(x) */
        multihead_self_forward_train_naive(sa, &a->attn, a->x1, &p->self_attn, mask, B, H, T,
                                           E);
        for (size_t i = 0; i < N * E; i++)
            a->n2[i] = src[i] + sa[i];                                  /* h = x + SA(x1) */
        layernorm_forward_naive(a->ffn_in, a->mean2, a->rstd2, a->n2, p->norm2_w, p->norm2_b,
                                eps, N, E);                             /* LN2(h) */
        feedforward_forward_train_naive(out, a->pre, a->hid, a->ffn_in, a->n2, &p->ffn, act, N,
                                        E, I);                          /* out = h + FF(LN2(h)) */
    }
    free(sa);
}

void encoder_layer_backward_naive(float *dsrc, const EncoderLayerGrads *g, float *scratch,
                                  const float *dout, const float *src, const EncoderActs *a,
                                  const AttnMask *mask, const EncoderLayerParams *p,
                                  TfmActivation act, int norm_first, size_t B, size_t T,
                                  size_t E, size_t H, size_t I)
{
    const size_t N = B * T, nE = N * E;
    float *d_n2 = scratch, *d_fin = d_n2 + nE, *d_x1 = d_fin + nE;   /* [N, E] each */
    float *ffn_scratch = d_x1 + nE;                                   /* [2 N I] */
    for (size_t i = 0; i < 3 * nE; i++)
        scratch[i] = 0.0f;                                            /* the backwards add */

    if (!norm_first) {
        /* out = LN2(n2) */
        layernorm_backward_naive(d_n2, g->norm2_w, g->norm2_b, dout, a->n2, a->mean2, a->rstd2,
                                 p->norm2_w, N, E);
        /* n2 = h + FF(h): the residual passes d_n2 to h, FF's backward adds its path */
        for (size_t i = 0; i < nE; i++)
            d_fin[i] = d_n2[i];
        feedforward_backward_naive(d_fin, &g->ffn, ffn_scratch, d_n2, a->ffn_in, a->pre, a->hid,
                                   &p->ffn, act, N, E, I);
        /* h = LN1(x1) */
        layernorm_backward_naive(d_x1, g->norm1_w, g->norm1_b, d_fin, a->x1, a->mean1, a->rstd1,
                                 p->norm1_w, N, E);
        /* x1 = x + SA(x): the residual, then the attention's path */
        if (dsrc)
            for (size_t i = 0; i < nE; i++)
                dsrc[i] += d_x1[i];
        multihead_self_backward_naive(dsrc, &g->self_attn, d_x1, src, &p->self_attn, &a->attn,
                                      mask, B, H, T, E);
    } else {
        /* out = n2 + FF(LN2(n2)) */
        for (size_t i = 0; i < nE; i++)
            d_n2[i] = dout[i];
        feedforward_backward_naive(d_fin, &g->ffn, ffn_scratch, dout, a->ffn_in, a->pre, a->hid,
                                   &p->ffn, act, N, E, I);
        layernorm_backward_naive(d_n2, g->norm2_w, g->norm2_b, d_fin, a->n2, a->mean2, a->rstd2,
                                 p->norm2_w, N, E);
        /* n2 = x + SA(LN1(x)) */
        if (dsrc)
            for (size_t i = 0; i < nE; i++)
                dsrc[i] += d_n2[i];
        multihead_self_backward_naive(d_x1, &g->self_attn, d_n2, a->x1, &p->self_attn, &a->attn,
                                      mask, B, H, T, E);
        layernorm_backward_naive(dsrc, g->norm1_w, g->norm1_b, d_x1, src, a->mean1, a->rstd1,
                                 p->norm1_w, N, E);
    }
}
