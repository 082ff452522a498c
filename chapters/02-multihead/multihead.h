/* multihead.h — chapter 02: multi-head attention, as torch.nn.MultiheadAttention computes it
 * (batch_first=True, bias=True, eval mode: no dropout).
 *
 *   Q = query W_q^T + b_q,   K = key W_k^T + b_k,   V = value W_v^T + b_v          [B, T, E]
 *   head_h = softmax(Q_h K_h^T / sqrt(D) + M) V_h,   Q_h = columns h*D .. h*D+D-1 of Q
 *   out = concat(head_0, ..., head_{H-1}) W_o^T + b_o                             [B, Tq, E]
 *
 * Dimensions: B batch, H heads, Tq query tokens, Tk key/value tokens, E model width (embed_dim),
 *             D = E / H the width of one head (H must divide E).
 *
 * Parameters use nn.MultiheadAttention's layout: in_proj_weight [3E, E] stacks W_q, W_k, W_v
 * (rows 0..E-1, E..2E-1, 2E..3E-1), in_proj_bias [3E] stacks b_q, b_k, b_v, and out_proj is an
 * nn.Linear(E, E). Every weight is [out, in] and applied as x W^T, like chapter 00's linear.
 *
 * The mask M is chapter 01's AttnMask, with PyTorch's nn.MultiheadAttention arguments mapped as:
 *   - attn_mask [Tq,Tk] (strides 0: every batch and head) or [B*H,Tq,Tk] (stride_b = H*Tq*Tk,
 *     stride_h = Tq*Tk), additive. nn.MultiheadAttention's BOOLEAN attn_mask means true = "may
 *     NOT attend" — the opposite of F.scaled_dot_product_attention's — so true becomes -inf.
 *   - key_padding_mask [B,Tk], 1 = padding: AttnMask.key_padding_mask as it is. (PyTorch merges it
 *     into attn_mask by logical_or for a boolean attn_mask, by masked_fill(-inf) for a float one;
 *     both are "score = -inf", which is what chapter 01 does.)
 *   - causal (not an argument of torch 1.13's module; PyTorch users pass the triu mask instead):
 *     AttnMask.causal, the same thing without a mask tensor.
 * A query row with every key masked is NaN in out and weights, as in PyTorch 1.13.
 *
 * weights (need_weights=True) are the softmax probabilities: averaged over heads [B, Tq, Tk]
 * when average_weights (PyTorch: sum over heads, then / H), else per head [B, H, Tq, Tk].
 * weights may be NULL (need_weights=False).
 */
#ifndef TFM_MULTIHEAD_H
#define TFM_MULTIHEAD_H

#include <stddef.h>

#include "attention.h"

typedef struct {
    const float *in_proj_weight;   /* [3E, E]: W_q; W_k; W_v */
    const float *in_proj_bias;     /* [3E]: b_q; b_k; b_v, or NULL (bias=False) */
    const float *out_proj_weight;  /* [E, E] */
    const float *out_proj_bias;    /* [E] or NULL */
} MhaParams;

/* Naive: three projections, heads copied out into [B, H, T, D], chapter 01's naive attention,
 * heads copied back (the concatenation), the output projection. mask may be NULL.
 * key == value == query is self-attention; any pointers work, equal or not. */
void multihead_forward_naive(float *out,            /* [B, Tq, E] */
                             float *weights,        /* [B, Tq, Tk] or [B, H, Tq, Tk], or NULL */
                             const float *query,    /* [B, Tq, E] */
                             const float *key,      /* [B, Tk, E] */
                             const float *value,    /* [B, Tk, E] */
                             const MhaParams *p,
                             const AttnMask *mask,  /* or NULL */
                             int average_weights,   /* 1: weights [B,Tq,Tk]; 0: [B,H,Tq,Tk] */
                             size_t B, size_t H, size_t Tq, size_t Tk, size_t E);

/* Fast: same contract. Inputs passed as the SAME pointer share one projection: query == key ==
 * value (self-attention) is one [B*T, E] x [E, 3E] product over the packed in_proj_weight, and
 * key == value (cross-attention over an encoder's memory) one [B*Tk, E] x [E, 2E]. */
void multihead_forward_fast(float *out, float *weights, const float *query, const float *key,
                            const float *value, const MhaParams *p, const AttnMask *mask,
                            int average_weights, size_t B, size_t H, size_t Tq, size_t Tk,
                            size_t E);

/* ---- For training (chapter 07): self-attention (query = key = value = x, the encoder's case),
 * with what the backward needs saved in MhaActs. The projections are packed as PyTorch computes
 * self-attention's: one F.linear(x, in_proj_weight, in_proj_bias), row t holding q_t | k_t | v_t.
 * T = Tq = Tk. */
typedef struct {
    float *qkv;    /* [B, T, 3E] the packed projections */
    float *ctx;    /* [B, T, E] the heads' outputs, concatenated: the out-projection's input */
    float *lse;    /* [B, H, T, 2] attention's log-sum-exp per query row, in two parts
                      (attention.h) */
} MhaActs;

/* The parameters' gradients, in MhaParams's layout; each is accumulated into (matmul.h), and a
 * NULL one is not computed. */
typedef struct {
    float *in_proj_weight;    /* [3E, E] */
    float *in_proj_bias;      /* [3E] or NULL */
    float *out_proj_weight;   /* [E, E] */
    float *out_proj_bias;     /* [E] or NULL */
} MhaGrads;

void multihead_self_forward_train_naive(float *out,           /* [B, T, E] */
                                        const MhaActs *acts,  /* written */
                                        const float *x,       /* [B, T, E] */
                                        const MhaParams *p, const AttnMask *mask, size_t B,
                                        size_t H, size_t T, size_t E);
void multihead_self_forward_train_fast(float *out, const MhaActs *acts, const float *x,
                                       const MhaParams *p, const AttnMask *mask, size_t B,
                                       size_t H, size_t T, size_t E);

/* Backward of self-attention, given the forward's acts:
 *   out = ctx W_o^T + b_o            ->  d_ctx, dW_o, db_o       (chapter 00's linear backward)
 *   ctx_h = attention(q_h, k_h, v_h)  ->  d_qkv                   (chapter 01's, per head)
 *   qkv = x W_in^T + b_in            ->  dx, dW_in, db_in        (q, k and v all read x, so
 *                                                                 dx sums the three paths)
 * dx may be NULL. The fast one's d_ctx and d_qkv are scratch-arena buffers. */
void multihead_self_backward_naive(float *dx,                /* [B, T, E] or NULL, += */
                                   const MhaGrads *g,        /* += */
                                   const float *dout,        /* [B, T, E] */
                                   const float *x,           /* [B, T, E] */
                                   const MhaParams *p, const MhaActs *acts,
                                   const AttnMask *mask, size_t B, size_t H, size_t T,
                                   size_t E);
void multihead_self_backward_fast(float *dx, const MhaGrads *g, const float *dout,
                                  const float *x, const MhaParams *p, const MhaActs *acts,
                                  const AttnMask *mask, size_t B, size_t H, size_t T, size_t E);

/* ---- For training, the general case (chapter 07): query [B, Tq, E], key and value [B, Tk, E],
 * as nn.MultiheadAttention(query, key, value) computes it with three projections:
 *   q = query W_q^T + b_q,  k = key W_k^T + b_k,  v = value W_v^T + b_v
 * (W_q; W_k; W_v the row blocks of in_proj_weight, b_q; b_k; b_v of in_proj_bias), then the heads
 * and out_proj as above. A decoder's cross-attention passes the encoder's memory as key and value;
 * self-attention may come this way too (query = key = value), but the encoder uses the packed
 * functions above, which do it in one product. */
typedef struct {
    float *q;      /* [B, Tq, E] the projected queries */
    float *k;      /* [B, Tk, E] the projected keys */
    float *v;      /* [B, Tk, E] the projected values */
    float *ctx;    /* [B, Tq, E] the heads' outputs, concatenated */
    float *lse;    /* [B, H, Tq, 2] attention's log-sum-exp per query row (attention.h) */
} MhaCrossActs;

void multihead_forward_train_naive(float *out,                /* [B, Tq, E] */
                                   const MhaCrossActs *acts,  /* written */
                                   const float *query,        /* [B, Tq, E] */
                                   const float *key,          /* [B, Tk, E] */
                                   const float *value,        /* [B, Tk, E] */
                                   const MhaParams *p, const AttnMask *mask, size_t B,
                                   size_t H, size_t Tq, size_t Tk, size_t E);
void multihead_forward_train_fast(float *out, const MhaCrossActs *acts, const float *query,
                                  const float *key, const float *value, const MhaParams *p,
                                  const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                                  size_t E);

/* Backward of the general case: dquery += the q path, dkey += the k path, dvalue += the v path.
 * The three may be the same buffer (then the paths sum there, as autograd sums them when one
 * tensor is passed twice: a decoder's memory as key and value); any may be NULL. The fast one's
 * d_ctx and d_q, d_k, d_v are scratch-arena buffers. */
void multihead_backward_naive(float *dquery,              /* [B, Tq, E] or NULL, += */
                              float *dkey,                /* [B, Tk, E] or NULL, += */
                              float *dvalue,              /* [B, Tk, E] or NULL, += */
                              const MhaGrads *g,          /* += */
                              const float *dout,          /* [B, Tq, E] */
                              const float *query,         /* [B, Tq, E] */
                              const float *key,           /* [B, Tk, E] */
                              const float *value,         /* [B, Tk, E] */
                              const MhaParams *p, const MhaCrossActs *acts,
                              const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                              size_t E);
void multihead_backward_fast(float *dquery, float *dkey, float *dvalue, const MhaGrads *g,
                             const float *dout, const float *query, const float *key,
                             const float *value, const MhaParams *p, const MhaCrossActs *acts,
                             const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                             size_t E);

#endif
