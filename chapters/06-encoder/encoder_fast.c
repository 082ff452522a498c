/* encoder_fast.c — the same feed-forward network and encoder layer as encoder_naive.c, with
 * fewer passes over memory and no allocation.
 *
 *   FF(x)   = act(x W1^T + b1) W2^T + b2                  (legend and layout: naive file)
 *   post-LN:  h = LN1(x + SA(x));   out = LN2(h + FF(h))
 *   pre-LN:   h = x + SA(LN1(x));   out = h + FF(LN2(h))
 *
 * Nearly all the work is in four products, chapter 00's blocked GEMM: the QKV projection, the
 * attention's out-projection and the FFN's two, 2N(4E^2 + 2EI) flops, against 4 B T^2 E in the
 * attention itself (97% and 3% at B = 8, T = 128, E = 768, I = 3072). What this file adds is
 * the plumbing that keeps the rest from costing passes over memory. Each optimization, and what
 * it saves:
 *
 *  E1 fused epilogues in the FFN (linear_act_fast, chapter 00). The first product applies bias
 *     and activation to each tile as it completes, the second adds bias and the residual: the
 *     [N, I] hidden layer is written once and read once, where an unfused activation reads and
 *     writes it again (12.6 MB each way at N = 1024, I = 3072), and the pre-LN residual costs no
 *     pass of its own over [N, E].
 *  E2 post-LN's residual sums inside LayerNorm (add_norm_forward_fast, chapter 04): x + s is
 *     formed row by row in L1 and normalized there, so it never exists as an [N, E] array.
 *  E3 in-place steps and a two-buffer plan. Every intermediate lives in the caller's scratch
 *     ([N, E] for h, [N, I] for hidden) or in out itself, reused as soon as it is dead:
 *       post-LN:  h = SA(x);  h = LN1(x + h) in place;  out = FF(h);  out = LN2(h + out) in place
 *       pre-LN:   out = LN1(x);  h = SA(out);  h = x + h in place;  out = LN2(h);
 *                 out = h + FF(out)  (FF reads its input only in its first product)
 *     N*(E + I) floats in all, against the naive file's N*(3E + I), and nothing allocated, so a
 *     model calls this every layer and step with one buffer. Less memory touched is also less
 *     traffic: each buffer is still in the last-level cache when its next step reads it.
 *  E4 self-attention as ONE projection: src is passed as query, key and value (the same
 *     pointer), which multihead_forward_fast turns into a single [N, E] x [E, 3E] product.
 *  E5 the pre-LN residual x + SA(.) is one vectorized pass, threaded above PAR_MIN elements.
 *     (Fusing it into the out-projection's epilogue would need chapter 02 to take a residual;
 *     the pass is 0.2% of the layer's time at the shape above: 0.19 of about 80 ms on one
 *     thread.)
 *  E6 training (chapter 07). The training forward keeps what the backward reads (encoder.h's
 *     EncoderActs) and so gives up two fusions: the first product writes the pre-activation
 *     (the GELU backward's input) and the activation is a pass of its own; the post-LN residual
 *     sums are kept (LayerNorm's backward reads its input). The backward runs the chapters'
 *     fast backwards in reverse order, its five buffers in the caller's scratch; a residual's
 *     gradient is a copy (or one added pass) where a buffer starts, not a pass of its own.
 *
 * Determinism: every callee is deterministic for a fixed thread count (linear_act_fast and the
 * LayerNorms for any count), and E5 is elementwise.
 */
#include "encoder.h"

#include <string.h>

#include "functional.h"

#include "layernorm.h"
#include "matmul.h"
#include "multihead.h"

/* Below this many elements one thread does the residual sum (E5). */
#define PAR_MIN ((size_t)1 << 15)

void feedforward_forward_fast(float *out,              /* [N, E] */
                              float *hidden,           /* [N, I] */
                              const float *x,          /* [N, E] */
                              const float *residual,   /* [N, E] or NULL */
                              const FfnParams *p, TfmActivation act, size_t N, size_t E,
                              size_t I)
{
    /* E1: hidden = act(x W1^T + b1), then out = hidden W2^T + b2 + residual. x is not read
     * after the first product, so out may be x (encoder.h). */
    linear_act_fast(hidden, x, p->w1, p->b1, NULL, act, N, E, I);
    linear_act_fast(out, hidden, p->w2, p->b2, residual, TFM_ACT_NONE, N, I, E);
}

void encoder_layer_forward_fast(float *out,                  /* [B, T, E] */
                                float *probs,                /* [B, H, T, T] or NULL */
                                float *scratch,              /* [B*T*(E + I)] */
                                const float *src,            /* [B, T, E] */
                                const AttnMask *mask,        /* or NULL */
                                const EncoderLayerParams *p,
                                TfmActivation act, int norm_first, float eps,
                                size_t B, size_t T, size_t E, size_t H, size_t I)
{
    const size_t N = B * T;
    float *h = scratch;                  /* [N, E] */
    float *hidden = scratch + N * E;     /* [N, I] */

    if (!norm_first) {
        /* E4: h = SA(x), one projection for q, k and v */
        multihead_forward_fast(h, probs, src, src, src, &p->self_attn, mask, 0, B, H, T, T, E);
        /* E2: h = LN1(x + h), in place (add_norm allows out == s) */
        add_norm_forward_fast(h, NULL, NULL, src, h, p->norm1_w, p->norm1_b, eps, N, E);
        /* E1: out = FF(h) */
        feedforward_forward_fast(out, hidden, h, NULL, &p->ffn, act, N, E, I);
        /* E2: out = LN2(h + out), in place */
        add_norm_forward_fast(out, NULL, NULL, h, out, p->norm2_w, p->norm2_b, eps, N, E);
    } else {
        /* E3: out holds LN1(x) until the attention has read it */
        layernorm_forward_fast(out, NULL, NULL, src, p->norm1_w, p->norm1_b, eps, N, E);
        multihead_forward_fast(h, probs, out, out, out, &p->self_attn, mask, 0, B, H, T, T,
                               E);   /* E4: h = SA(LN1(x)) */
        /* E5: h = x + h */
        const size_t n = N * E;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++)
            h[i] = src[i] + h[i];
        /* out = LN2(h), then out = h + FF(out): E1 adds the residual in the second product */
        layernorm_forward_fast(out, NULL, NULL, h, p->norm2_w, p->norm2_b, eps, N, E);
        feedforward_forward_fast(out, hidden, out, h, &p->ffn, act, N, E, I);
    }
}

/* ---- Training (E6, encoder.h). */

/* hid = act(pre) and d_pre += d_hid act'(pre), vectorized, threads over elements. */
static void activate(float *hid, const float *pre, TfmActivation act, size_t n)
{
    if (act == TFM_ACT_GELU || act == TFM_ACT_GELU_TANH) {
        gelu_fast(hid, pre, n, act == TFM_ACT_GELU ? TFM_GELU_NONE : TFM_GELU_TANH);
        return;
    }
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        hid[i] = act == TFM_ACT_RELU ? (0.0f > pre[i] ? 0.0f : pre[i]) : pre[i];
}

static void activate_backward(float *d_pre, const float *d_hid, const float *pre,
                              TfmActivation act, size_t n)
{
    if (act == TFM_ACT_GELU || act == TFM_ACT_GELU_TANH) {
        gelu_backward_fast(d_pre, d_hid, pre, n,
                           act == TFM_ACT_GELU ? TFM_GELU_NONE : TFM_GELU_TANH);
        return;
    }
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        d_pre[i] += act == TFM_ACT_RELU ? (pre[i] > 0.0f ? d_hid[i] : 0.0f) : d_hid[i];
}

/* y = a + b, or y += a, elementwise (E5's pass). */
static void add(float *y, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] = b ? a[i] + b[i] : y[i] + a[i];
}

void feedforward_forward_train_fast(float *out, float *pre, float *hid, const float *x,
                                    const float *residual, const FfnParams *p,
                                    TfmActivation act, size_t N, size_t E, size_t I)
{
    linear_fast(pre, x, p->w1, p->b1, N, E, I);
    activate(hid, pre, act, N * I);
    /* the residual in the second product's epilogue (E1) */
    linear_act_fast(out, hid, p->w2, p->b2, residual, TFM_ACT_NONE, N, I, E);
}

void feedforward_backward_fast(float *dx, const FfnGrads *g, float *scratch, const float *dout,
                               const float *x, const float *pre, const float *hid,
                               const FfnParams *p, TfmActivation act, size_t N, size_t E,
                               size_t I)
{
    float *d_hid = scratch, *d_pre = scratch + N * I;           /* [N, I] each */
    memset(scratch, 0, 2 * N * I * sizeof(float));              /* the backwards add */
    linear_backward_fast(d_hid, g->w2, g->b2, dout, hid, p->w2, N, I, E);
    activate_backward(d_pre, d_hid, pre, act, N * I);
    linear_backward_fast(dx, g->w1, g->b1, d_pre, x, p->w1, N, E, I);
}

void encoder_layer_forward_train_fast(float *out, const EncoderActs *a, const float *src,
                                      const AttnMask *mask, const EncoderLayerParams *p,
                                      TfmActivation act, int norm_first, float eps, size_t B,
                                      size_t T, size_t E, size_t H, size_t I)
{
    const size_t N = B * T;
    if (!norm_first) {
        multihead_self_forward_train_fast(a->x1, &a->attn, src, &p->self_attn, mask, B, H, T, E);
        add(a->x1, src, a->x1, N * E);                                   /* x1 = x + SA(x) */
        layernorm_forward_fast(a->ffn_in, a->mean1, a->rstd1, a->x1, p->norm1_w, p->norm1_b,
                               eps, N, E);                               /* h = LN1(x1) */
        feedforward_forward_train_fast(a->n2, a->pre, a->hid, a->ffn_in, a->ffn_in, &p->ffn, act,
                                       N, E, I);                         /* n2 = h + FF(h) */
        layernorm_forward_fast(out, a->mean2, a->rstd2, a->n2, p->norm2_w, p->norm2_b, eps, N,
                               E);
    } else {
        layernorm_forward_fast(a->x1, a->mean1, a->rstd1, src, p->norm1_w, p->norm1_b, eps, N,
                               E);                                       /* x1 = LN1(x) */
        multihead_self_forward_train_fast(a->n2, &a->attn, a->x1, &p->self_attn, mask, B, H, T,
                                          E);
        add(a->n2, src, a->n2, N * E);                                   /* h = x + SA(x1) */
        layernorm_forward_fast(a->ffn_in, a->mean2, a->rstd2, a->n2, p->norm2_w, p->norm2_b,
                               eps, N, E);
        feedforward_forward_train_fast(out, a->pre, a->hid, a->ffn_in, a->n2, &p->ffn, act, N, E,
                                       I);                               /* h + FF(LN2(h)) */
    }
}

void encoder_layer_backward_fast(float *dsrc, const EncoderLayerGrads *g, float *scratch,
                                 const float *dout, const float *src, const EncoderActs *a,
                                 const AttnMask *mask, const EncoderLayerParams *p,
                                 TfmActivation act, int norm_first, size_t B, size_t T, size_t E,
                                 size_t H, size_t I)
{
    const size_t N = B * T, nE = N * E;
    float *d_n2 = scratch, *d_fin = d_n2 + nE, *d_x1 = d_fin + nE;   /* [N, E] each */
    float *ffn_scratch = d_x1 + nE;                                   /* [2 N I] */
    /* The buffers a backward adds into start at 0; the two that begin as a residual's copy
     * are written whole instead. */
    memset(d_x1, 0, nE * sizeof(float));

    if (!norm_first) {
        memset(d_n2, 0, nE * sizeof(float));
        layernorm_backward_fast(d_n2, g->norm2_w, g->norm2_b, dout, a->n2, a->mean2, a->rstd2,
                                p->norm2_w, N, E);
        memcpy(d_fin, d_n2, nE * sizeof(float));                         /* the residual */
        feedforward_backward_fast(d_fin, &g->ffn, ffn_scratch, d_n2, a->ffn_in, a->pre, a->hid,
                                  &p->ffn, act, N, E, I);
        layernorm_backward_fast(d_x1, g->norm1_w, g->norm1_b, d_fin, a->x1, a->mean1, a->rstd1,
                                p->norm1_w, N, E);
        if (dsrc)
            add(dsrc, d_x1, NULL, nE);                                   /* the residual */
        multihead_self_backward_fast(dsrc, &g->self_attn, d_x1, src, &p->self_attn, &a->attn,
                                     mask, B, H, T, E);
    } else {
        memcpy(d_n2, dout, nE * sizeof(float));                          /* the residual */
        memset(d_fin, 0, nE * sizeof(float));
        feedforward_backward_fast(d_fin, &g->ffn, ffn_scratch, dout, a->ffn_in, a->pre, a->hid,
                                  &p->ffn, act, N, E, I);
        layernorm_backward_fast(d_n2, g->norm2_w, g->norm2_b, d_fin, a->n2, a->mean2, a->rstd2,
                                p->norm2_w, N, E);
        if (dsrc)
            add(dsrc, d_n2, NULL, nE);
        multihead_self_backward_fast(d_x1, &g->self_attn, d_n2, a->x1, &p->self_attn, &a->attn,
                                     mask, B, H, T, E);
        layernorm_backward_fast(dsrc, g->norm1_w, g->norm1_b, d_x1, src, a->mean1, a->rstd1,
                                p->norm1_w, N, E);
    }
}
