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
 *
 * Determinism: every callee is deterministic for a fixed thread count (linear_act_fast and the
 * LayerNorms for any count), and E5 is elementwise.
 */
#include "encoder.h"

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
