/* attention.h — chapter 01: scaled dot-product attention.
 *
 *   out = softmax(Q K^T * scale + M) V
 *
 * scale is used exactly as given, by every variant: there is no in-band default. PyTorch's
 * default (F.scaled_dot_product_attention with scale=None, nn.MultiheadAttention) is
 * 1/sqrt(Dk), which the caller passes itself: 1.0f / sqrtf((float)Dk). (With Dk = 0 that is
 * inf, and inf * 0 = NaN scores; PyTorch scales q before the product and gets scores of 0, so
 * a caller matching it at Dk = 0 passes any finite scale.)
 *
 * Dimensions: B batch, H heads, Tq query tokens, Tk key/value tokens, Dk query/key width,
 *             Dv value width. Q is [B,H,Tq,Dk], K is [B,H,Tk,Dk], V is [B,H,Tk,Dv], out is
 *             [B,H,Tq,Dv], probs (the softmax, optional) is [B,H,Tq,Tk].
 *
 * The mask M is the sum of up to three parts, as PyTorch builds it:
 *   - attn_mask: an additive float mask (0 keeps, -inf removes, any other value biases). A boolean
 *     mask where true means "may attend" (F.scaled_dot_product_attention's convention) becomes
 *     0 / -inf with attn_mask_from_bool(). Its strides let one [Tq,Tk] mask serve every batch and
 *     head (stride 0) or give each its own ([B,H,Tq,Tk] or the [B*H,Tq,Tk] of nn.MultiheadAttention).
 *   - key_padding_mask: [B,Tk] bytes, 1 means "this key is padding, ignore it"
 *     (nn.MultiheadAttention's convention).
 *   - causal: query i may attend to key j only when j <= i (top-left aligned, as PyTorch's
 *     is_causal does, also when Tq != Tk).
 *
 * A query row whose keys are all masked has softmax 0/0: PyTorch's math yields NaN for that row,
 * in out and probs, and so do both tfm variants (book.md, chapter 01, "fully masked rows").
 */
#ifndef TFM_ATTENTION_H
#define TFM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const float *attn_mask;         /* additive, element (b,h,i,j) at
                                       b*stride_b + h*stride_h + i*Tk + j; NULL for none */
    size_t stride_b, stride_h;      /* attn_mask strides over batch and head (0 broadcasts) */
    const uint8_t *key_padding_mask; /* [B, Tk], 1 = ignore this key; NULL for none */
    int causal;                     /* 1: mask keys j > i */
} AttnMask;

/* Naive: materializes the [Tq,Tk] scores of each (b,h), exactly as the formula reads.
 * probs may be NULL. mask may be NULL (no mask). scale multiplies Q K^T as given (above). */
void attention_forward_naive(float *out,           /* [B, H, Tq, Dv] */
                             float *probs,         /* [B, H, Tq, Tk] or NULL */
                             const float *q,       /* [B, H, Tq, Dk] */
                             const float *k,       /* [B, H, Tk, Dk] */
                             const float *v,       /* [B, H, Tk, Dv] */
                             const AttnMask *mask, /* or NULL */
                             float scale,
                             size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv);

/* Fast: same contract. With probs == NULL it never holds more than one tile of scores per
 * thread (online softmax over key tiles); with probs != NULL it writes them as naive does.
 * Its per-thread tiles are scratch-arena buffers (arena.h): after the first call at a shape it
 * allocates nothing. */
void attention_forward_fast(float *out, float *probs, const float *q, const float *k,
                            const float *v, const AttnMask *mask, float scale,
                            size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv);

/* Where the rows of an operand live, for callers whose Q, K, V or out are views into a larger
 * buffer (chapter 02 reads the heads of Q, K and V in place from one packed [B, T, 3E]
 * projection and writes out straight into [B, T, E]). Element (b, h, t, d) of the operand is at
 * b*batch + h*head + t*token + d: the feature dimension d is always contiguous. */
typedef struct {
    size_t batch, head, token;   /* element strides; contiguous [B,H,T,D] is {H*T*D, T*D, D} */
} AttnStride;

typedef struct {
    AttnStride q, k, v, out;
} AttnLayout;

/* Fast, with q, k, v and out laid out as `layout` says (probs, when given, stays a contiguous
 * [B, H, Tq, Tk]). attention_forward_fast is this with every operand contiguous. out must not
 * overlap q, k or v. */
void attention_forward_fast_strided(float *out, float *probs, const float *q, const float *k,
                                    const float *v, const AttnMask *mask, float scale,
                                    const AttnLayout *layout, size_t B, size_t H, size_t Tq,
                                    size_t Tk, size_t Dk, size_t Dv);

/* ---- For training (chapter 07): the forward that also saves each query row's log-sum-exp,
 *
 *   lse_i = log sum_j exp(s_ij) = m_i + log l_i,   s_ij = scale q_i . k_j + M_ij,
 *   m_i = max_j s_ij,   l_i = sum_j exp(s_ij - m_i),
 *
 * so that a backward can recompute any probability as p_ij = exp((s_ij - m_i) - log l_i)
 * without the forward ever storing the [Tq, Tk] matrix. lse holds the two parts, m_i and
 * log l_i, side by side ([B, H, Tq, 2], attention_lse_floats), not their sum: where the scores
 * are huge, the sum rounds log l away. Hugging Face's fully padded row is that case: every
 * score is finfo(float32).min = -3.4e38, whose float spacing is 2e31, so m + log l = m and
 * exp(s - lse) would give every key probability 1 instead of 1/Tk; (s - m) - log l gives
 * exactly the forward's uniform 1/Tk. A fully masked row (-inf) has m = log l = -inf (and out
 * NaN, as the plain forward). The fast one is the streaming path (attention_forward_fast with
 * probs NULL) plus one log per row. */
size_t attention_lse_floats(size_t B, size_t H, size_t Tq);   /* 2 B H Tq */
void attention_forward_lse_naive(float *out,       /* [B, H, Tq, Dv] */
                                 float *lse,       /* [B, H, Tq, 2]: m_i, log l_i */
                                 const float *q, const float *k, const float *v,
                                 const AttnMask *mask, float scale, size_t B, size_t H,
                                 size_t Tq, size_t Tk, size_t Dk, size_t Dv);
void attention_forward_lse_fast(float *out, float *lse, const float *q, const float *k,
                                const float *v, const AttnMask *mask, float scale, size_t B,
                                size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv);
void attention_forward_lse_fast_strided(float *out, float *lse, const float *q, const float *k,
                                        const float *v, const AttnMask *mask, float scale,
                                        const AttnLayout *layout, size_t B, size_t H, size_t Tq,
                                        size_t Tk, size_t Dk, size_t Dv);

/* ---- Backward (chapter 07). With P = softmax(S), S = scale Q K^T + M, and dO = dL/d out:
 *
 *   dV = P^T dO                          [Tk, Dv]
 *   dP = dO V^T                          [Tq, Tk]
 *   dS = P * (dP - D),  D_i = sum_j P_ij dP_ij  (softmax's backward, row by row; chapter 00)
 *   dQ = scale dS K,    dK = scale dS^T Q
 *
 * D_i also equals dO_i . out_i (sum_j P_ij dO_i . v_j = dO_i . sum_j P_ij v_j), which is how
 * the fast variant gets it without dP's whole row. The saved activations are the forward's out
 * and lse (attention_forward_lse_*); P is recomputed from lse's two parts. Like every tfm backward, dq, dk
 * and dv are accumulated into (matmul.h), and each may be NULL. The mask is a constant: no
 * gradient flows to attn_mask. A fully masked row's NaN probabilities make NaN gradients, as in
 * PyTorch: its dq row, and (through dV = P^T dO, dK = dS^T Q) every dk and dv row of its
 * (b, h). */
void attention_backward_naive(float *dq,           /* [B, H, Tq, Dk] or NULL, += */
                              float *dk,           /* [B, H, Tk, Dk] or NULL, += */
                              float *dv,           /* [B, H, Tk, Dv] or NULL, += */
                              const float *dout,   /* [B, H, Tq, Dv] */
                              const float *q,      /* [B, H, Tq, Dk] */
                              const float *k,      /* [B, H, Tk, Dk] */
                              const float *v,      /* [B, H, Tk, Dv] */
                              const float *out,    /* [B, H, Tq, Dv] the forward's */
                              const float *lse,    /* [B, H, Tq, 2] the forward's */
                              const AttnMask *mask, float scale, size_t B, size_t H, size_t Tq,
                              size_t Tk, size_t Dk, size_t Dv);
/* Fast: FlashAttention-2's scheme. Each (b, h) is one task; its key blocks are visited once,
 * and for each the query blocks that can see it: the score tile is recomputed from Q and K,
 * turned into probabilities with lse, and the four products are done tile by tile. No [Tq, Tk]
 * buffer exists; per thread the scratch is a few tiles and D's Tq floats (arena.h). */
void attention_backward_fast(float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             const AttnMask *mask, float scale, size_t B, size_t H, size_t Tq,
                             size_t Tk, size_t Dk, size_t Dv);
/* The same with the operands laid out as `layout` says: dq and dout as q and out, dk as k, dv
 * as v; lse stays a contiguous [B, H, Tq, 2]. */
void attention_backward_fast_strided(float *dq, float *dk, float *dv, const float *dout,
                                     const float *q, const float *k, const float *v,
                                     const float *out, const float *lse, const AttnMask *mask,
                                     float scale, const AttnLayout *layout, size_t B, size_t H,
                                     size_t Tq, size_t Tk, size_t Dk, size_t Dv);

/* Converts a boolean "may attend" mask (1 keep, 0 remove) of n elements to 0 / -inf. */
void attn_mask_from_bool(float *dst, const uint8_t *keep, size_t n);

#endif
