/* encoder.h — chapter 06: the feed-forward network and the encoder layer, as
 * torch.nn.TransformerEncoderLayer(d_model=E, nhead=H, dim_feedforward=I, dropout=0,
 * activation='relu' | 'gelu', layer_norm_eps=eps, batch_first=True, norm_first=0 | 1) computes
 * them in eval mode.
 *
 *   FF(x) = act(x W1^T + b1) W2^T + b2               position-wise: each token row on its own
 *   SA(x) = MHA(x, x, x)                             chapter 02, query = key = value, scale
 *                                                    1/sqrt(D), no attention weights returned
 *   LN    = chapter 04's LayerNorm over the last dimension (E), with the given eps
 *
 *   post-LN (norm_first = 0, the original Transformer, BERT):
 *           h   = LN1(x + SA(x))
 *           out = LN2(h + FF(h))
 *   pre-LN  (norm_first = 1, GPT-2 and most models since):
 *           h   = x + SA(LN1(x))
 *           out = h + FF(LN2(h))
 *
 * Dimensions: B batch, T tokens (queries and keys: self-attention), E model width (d_model),
 *             H heads, D = E / H the width of one head (H divides E, E >= 1), I the feed-forward
 *             width (dim_feedforward). N = B*T token rows, for the position-wise parts.
 *
 * Eval mode: dropout is 0 (PyTorch applies none in eval; with dropout = 0 training computes the
 * same function). act is TFM_ACT_RELU or TFM_ACT_GELU (the module's 'relu' | 'gelu'; GELU is the
 * erf form, F.gelu's default); TFM_ACT_GELU_TANH matches a module built with
 * activation=lambda x: F.gelu(x, approximate='tanh'), TFM_ACT_NONE one with the identity.
 *
 * Weights are PyTorch's, in nn.Linear's [out, in] layout (chapter 00), read straight from the
 * module's state_dict: self_attn.in_proj_weight [3E, E], self_attn.in_proj_bias [3E],
 * self_attn.out_proj.weight [E, E], self_attn.out_proj.bias [E], linear1.weight [I, E],
 * linear1.bias [I], linear2.weight [E, I], linear2.bias [E], norm1.weight, norm1.bias,
 * norm2.weight, norm2.bias [E] each. Any bias or LayerNorm affine pointer may be NULL
 * (bias=False, elementwise_affine=False).
 *
 * The mask is chapter 01's AttnMask (attention.h), passed to the self-attention as it is; NULL
 * for none. The module's arguments map as chapter 02 says (multihead.h):
 *   - src_mask, additive float: [T, T] for every sequence and head (stride_b = stride_h = 0) or
 *     [B*H, T, T] (stride_b = H*T*T, stride_h = T*T). A BOOLEAN src_mask means true = "may NOT
 *     attend": pass it as -inf where true, 0 where false. src_mask = the square subsequent
 *     (causal) mask is the same as AttnMask.causal = 1 with no tensor.
 *   - src_key_padding_mask [B, T]: AttnMask.key_padding_mask, 1 = this token is padding, no
 *     query attends to it. Padded tokens are still computed as queries (their rows of out are
 *     whatever the layer makes of them, as in PyTorch).
 *   A query row with every key masked (a sequence made only of padding) has softmax 0/0: NaN in
 *   its attention output, hence in its whole row of out (both orders), as in PyTorch 1.13 on
 *   both of its paths (the math path, and the fused torch._transformer_encoder_layer_fwd it
 *   takes in eval mode under no_grad when there is no src_mask): measured, NaN in every
 *   element of such a sequence, in each.
 *
 * Scratch. encoder_layer_forward_* takes its working memory from the caller: scratch holds
 * encoder_layer_scratch_floats(B, T, E, I) = B*T*(E + I) floats (a model allocates it once, for
 * its largest batch). After the call it holds, in both variants and both orders,
 *   scratch[0 .. N*E)          h       [B, T, E]  the first sublayer's output (above)
 *   scratch[N*E .. N*(E+I))    hidden  [B, T, I]  act(FF's first product), the FFN's input
 *                                                  to its second product (what a backward needs)
 * It is not zeroed before use and overlaps nothing else. The fast layer allocates nothing of its
 * own; its callees (multihead_forward_fast, linear_act_fast) keep their internal buffers in the
 * per-thread arena (arena.h), which allocates only on the first call at a shape.
 *
 * Overlap: out must not overlap src, scratch or any parameter (pre-LN writes LN1(x) into out
 * while x is still needed). In feedforward_forward_*, out may be x itself (x is read only by
 * the first product), but overlaps neither hidden nor residual.
 *
 * Both variants share one signature per op: outputs first, then inputs, then dimensions.
 */
#ifndef TFM_ENCODER_H
#define TFM_ENCODER_H

#include <stddef.h>

#include "attention.h"
#include "matmul.h"
#include "multihead.h"

/* The position-wise feed-forward network: linear1, activation, linear2 (nn.TransformerEncoder-
 * Layer's linear1 / linear2, or BERT's intermediate / output dense layers). */
typedef struct {
    const float *w1;   /* [I, E] linear1.weight */
    const float *b1;   /* [I] linear1.bias, or NULL */
    const float *w2;   /* [E, I] linear2.weight */
    const float *b2;   /* [E] linear2.bias, or NULL */
} FfnParams;

/* out = act(x W1^T + b1) W2^T + b2 (+ residual), hidden = act(x W1^T + b1).
 * Naive: linear_naive, the activation elementwise, linear_naive, the residual, one step each.
 * Fast: two linear_act_fast, bias and activation fused into the first product's epilogue, bias
 * and residual into the second's. */
void feedforward_forward_naive(float *out,              /* [N, E] */
                               float *hidden,           /* [N, I] act(x W1^T + b1), kept */
                               const float *x,          /* [N, E] */
                               const float *residual,   /* [N, E] or NULL: added to out */
                               const FfnParams *p,
                               TfmActivation act, size_t N, size_t E, size_t I);
void feedforward_forward_fast(float *out, float *hidden, const float *x, const float *residual,
                              const FfnParams *p, TfmActivation act, size_t N, size_t E,
                              size_t I);

/* The FFN's parameter gradients, FfnParams's layout, each accumulated into (matmul.h); a NULL
 * bias gradient is not computed (give NULL where the bias is NULL). */
typedef struct {
    float *w1;   /* [I, E] */
    float *b1;   /* [I] or NULL */
    float *w2;   /* [E, I] */
    float *b2;   /* [E] or NULL */
} FfnGrads;

/* The training forward: out as feedforward_forward_*, keeping what the backward reads, pre =
 * x W1^T + b1 (act's input) and hid = act(pre). The fast one puts the activation in a pass of
 * its own, since the fused epilogue would not keep pre (E6 in encoder_fast.c). */
void feedforward_forward_train_naive(float *out,              /* [N, E] */
                                     float *pre,              /* [N, I] written */
                                     float *hid,              /* [N, I] written */
                                     const float *x,          /* [N, E] */
                                     const float *residual,   /* [N, E] or NULL */
                                     const FfnParams *p, TfmActivation act, size_t N, size_t E,
                                     size_t I);
void feedforward_forward_train_fast(float *out, float *pre, float *hid, const float *x,
                                    const float *residual, const FfnParams *p,
                                    TfmActivation act, size_t N, size_t E, size_t I);

/* Scratch of the FFN's backward: 2*N*I floats, not zeroed, overlapping nothing. */
size_t feedforward_backward_scratch_floats(size_t N, size_t I);

/* The FFN's backward, from the training forward's pre and hid:
 *   d_hid = dout W2                 dW2 += dout^T hid       db2 += sum over rows of dout
 *   d_pre = d_hid * act'(pre)       elementwise (ReLU: 1 where pre > 0, else 0, as torch's)
 *   dx   += d_pre W1                dW1 += d_pre^T x        db1 += sum over rows of d_pre
 * A residual added to out passes dout on to its source unchanged: the caller adds that. dx may
 * be NULL. */
void feedforward_backward_naive(float *dx,             /* [N, E] or NULL, += */
                                const FfnGrads *g,     /* += */
                                float *scratch,        /* [feedforward_backward_scratch_floats] */
                                const float *dout,     /* [N, E] */
                                const float *x,        /* [N, E] the forward's input */
                                const float *pre,      /* [N, I] the training forward's */
                                const float *hid,      /* [N, I] the training forward's */
                                const FfnParams *p, TfmActivation act, size_t N, size_t E,
                                size_t I);
void feedforward_backward_fast(float *dx, const FfnGrads *g, float *scratch, const float *dout,
                               const float *x, const float *pre, const float *hid,
                               const FfnParams *p, TfmActivation act, size_t N, size_t E,
                               size_t I);

typedef struct {
    MhaParams self_attn;    /* in_proj_weight [3E, E], in_proj_bias [3E] or NULL,
                               out_proj_weight [E, E], out_proj_bias [E] or NULL */
    FfnParams ffn;          /* w1 [I, E], b1 [I], w2 [E, I], b2 [E] */
    const float *norm1_w;   /* [E] norm1.weight, or NULL */
    const float *norm1_b;   /* [E] norm1.bias, or NULL */
    const float *norm2_w;   /* [E] norm2.weight, or NULL */
    const float *norm2_b;   /* [E] norm2.bias, or NULL */
} EncoderLayerParams;

/* Floats of scratch that encoder_layer_forward_* needs: B*T*(E + I). */
size_t encoder_layer_scratch_floats(size_t B, size_t T, size_t E, size_t I);

/* One encoder layer, post-LN (norm_first = 0) or pre-LN (norm_first = 1), formulas above.
 * probs, when not NULL, receives the self-attention's probabilities per head (what
 * output_attentions returns); the fast variant then takes chapter 01's materializing path.
 * Naive: one step per line with the naive kernels of chapters 02 and 04 and
 * feedforward_forward_naive (it also allocates the intermediates it names). Fast: the fast
 * kernels, with the residual of each post-LN sublayer fused into its LayerNorm
 * (add_norm_forward_fast) and the pre-LN FFN's residual into its second product. */
void encoder_layer_forward_naive(float *out,                  /* [B, T, E] */
                                 float *probs,                /* [B, H, T, T] or NULL */
                                 float *scratch,              /* [encoder_layer_scratch_floats] */
                                 const float *src,            /* [B, T, E] */
                                 const AttnMask *mask,        /* or NULL */
                                 const EncoderLayerParams *p,
                                 TfmActivation act, int norm_first, float eps,
                                 size_t B, size_t T, size_t E, size_t H, size_t I);
void encoder_layer_forward_fast(float *out, float *probs, float *scratch, const float *src,
                                const AttnMask *mask, const EncoderLayerParams *p,
                                TfmActivation act, int norm_first, float eps, size_t B, size_t T,
                                size_t E, size_t H, size_t I);

/* ---- For training (chapter 07): the layer with its activations kept, and its backward.
 *
 * EncoderActs, sized by encoder_acts_floats and laid out by encoder_acts_init in one block the
 * caller allocates (once per model, llm.c-style), holds what the backward reads. The same
 * fields serve both orders; N = B*T:
 *                  post-LN (norm_first = 0)          pre-LN (norm_first = 1)
 *   attn           self-attention's MhaActs          the same
 *   x1   [N, E]    x + SA(x): LN1's input            LN1(x): the attention's input
 *   mean1, rstd1   LN1's statistics [N]              the same (of x)
 *   n2   [N, E]    h + FF(h): LN2's input            h = x + SA(LN1(x)): LN2's input
 *   mean2, rstd2   LN2's statistics [N]              the same
 *   ffn_in [N, E]  h = LN1(x1): the FFN's input      LN2(h): the FFN's input
 *   pre  [N, I]    ffn_in W1^T + b1                  the same
 *   hid  [N, I]    act(pre): linear2's input         the same
 * The training forward computes what encoder_layer_forward_* computes (the same function, to
 * rounding: it keeps pre and applies the activation in a pass of its own). */
typedef struct {
    MhaActs attn;
    float *x1, *n2, *ffn_in;        /* [N, E] each */
    float *mean1, *rstd1;           /* [N] each */
    float *mean2, *rstd2;           /* [N] each */
    float *pre, *hid;               /* [N, I] each */
} EncoderActs;

size_t encoder_acts_floats(size_t B, size_t T, size_t E, size_t H, size_t I);
/* Points acts's fields into buf [encoder_acts_floats(...)]. */
void encoder_acts_init(EncoderActs *acts, float *buf, size_t B, size_t T, size_t E, size_t H,
                       size_t I);

/* The parameters' gradients, EncoderLayerParams's layout, each accumulated into (matmul.h); a
 * NULL bias or LayerNorm gradient is not computed (give NULL where the parameter is NULL). */
typedef struct {
    MhaGrads self_attn;
    FfnGrads ffn;                   /* w1 [I, E], b1 [I], w2 [E, I], b2 [E] */
    float *norm1_w, *norm1_b;       /* [E] each */
    float *norm2_w, *norm2_b;       /* [E] each */
} EncoderLayerGrads;

void encoder_layer_forward_train_naive(float *out,                 /* [B, T, E] */
                                       const EncoderActs *acts,    /* written */
                                       const float *src,           /* [B, T, E] */
                                       const AttnMask *mask, const EncoderLayerParams *p,
                                       TfmActivation act, int norm_first, float eps, size_t B,
                                       size_t T, size_t E, size_t H, size_t I);
void encoder_layer_forward_train_fast(float *out, const EncoderActs *acts, const float *src,
                                      const AttnMask *mask, const EncoderLayerParams *p,
                                      TfmActivation act, int norm_first, float eps, size_t B,
                                      size_t T, size_t E, size_t H, size_t I);

/* Scratch of the backward: B*T*(3E + 2I) floats (the FFN's backward's among them), not
 * zeroed, overlapping nothing. */
size_t encoder_layer_backward_scratch_floats(size_t B, size_t T, size_t E, size_t I);

/* The backward, sublayer by sublayer in reverse (post-LN):
 *   out = LN2(n2)            d_n2 = LN2's backward of dout           (dgamma2, dbeta2)
 *   n2 = h + FF(h)           d_h = d_n2 + FF's backward of d_n2      (dW2, db2, dW1, db1)
 *   h = LN1(x1)              d_x1 = LN1's backward of d_h            (dgamma1, dbeta1)
 *   x1 = x + SA(x)           dx += d_x1 + SA's backward of d_x1      (the attention's)
 * and pre-LN the same steps with the residuals around the norms instead:
 *   out = n2 + FF(LN2(n2))   d_n2 = dout + LN2's backward of FF's backward of dout
 *   n2 = x + SA(LN1(x))      dx += d_n2 + LN1's backward of SA's backward of d_n2.
 * dsrc may be NULL. */
void encoder_layer_backward_naive(float *dsrc,                  /* [B, T, E] or NULL, += */
                                  const EncoderLayerGrads *g,   /* += */
                                  float *scratch,  /* [encoder_layer_backward_scratch_floats] */
                                  const float *dout,            /* [B, T, E] */
                                  const float *src,             /* [B, T, E] */
                                  const EncoderActs *acts,      /* the training forward's */
                                  const AttnMask *mask, const EncoderLayerParams *p,
                                  TfmActivation act, int norm_first, size_t B, size_t T,
                                  size_t E, size_t H, size_t I);
void encoder_layer_backward_fast(float *dsrc, const EncoderLayerGrads *g, float *scratch,
                                 const float *dout, const float *src, const EncoderActs *acts,
                                 const AttnMask *mask, const EncoderLayerParams *p,
                                 TfmActivation act, int norm_first, size_t B, size_t T, size_t E,
                                 size_t H, size_t I);

#endif
