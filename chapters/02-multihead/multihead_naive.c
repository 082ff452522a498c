/* multihead_naive.c — multi-head attention, one step of the formula per block.
 *
 *   1. project    Q = query W_q^T + b_q, K = key W_k^T + b_k, V = value W_v^T + b_v   [B, T, E]
 *   2. split      Q[b][t][h*D + d] -> q[b][h][t][d]                                   [B, H, T, D]
 *   3. attend     ctx_h = softmax(q_h k_h^T / sqrt(D) + M) v_h   (chapter 01)        [B, H, Tq, D]
 *   4. concat     ctx[b][t][h*D + d] = ctx_h[b][h][t][d]                               [B, Tq, E]
 *   5. out-proj   out = ctx W_o^T + b_o                                                [B, Tq, E]
 *   6. weights    the probabilities of step 3, per head or averaged over heads
 *
 * Dimension legend (multihead.h):
 *   b < B   batch element        h < H   head         D = E / H  width of one head
 *   t < T   token (Tq queries, Tk keys/values)        d < D   feature within a head
 *   e < E   model feature, e = h*D + d: head h owns the D consecutive columns h*D .. h*D+D-1
 *
 * Row-major throughout; offsets are size_t products of size_t dimensions.
 *
 * Step 2 is the whole difference between one head and H heads: the same three E x E projections
 * are computed either way, but with H heads each query row is cut into H pieces of width D and
 * every piece gets its own softmax over the keys, scaled by 1/sqrt(D) instead of 1/sqrt(E).
 */
#include "multihead.h"

#include <math.h>
#include <stdlib.h>

#include "tensor.h"

#include "attention.h"
#include "matmul.h"

/* Names the function in an out-of-memory message. */
static const char WHO[] = "multihead_forward_naive";

/* x [B, T, E] -> xh [B, H, T, D]: head h of token t is x[b][t][h*D .. h*D+D). */
static void split_heads(float *xh, const float *x, size_t B, size_t H, size_t T, size_t D)
{
    const size_t E = H * D;
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t t = 0; t < T; t++)
                for (size_t d = 0; d < D; d++)
                    xh[((b * H + h) * T + t) * D + d] = x[(b * T + t) * E + h * D + d];
}

/* xh [B, H, T, D] -> x [B, T, E]: the inverse of split_heads, i.e. the concatenation of heads. */
static void merge_heads(float *x, const float *xh, size_t B, size_t H, size_t T, size_t D)
{
    const size_t E = H * D;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t h = 0; h < H; h++)
                for (size_t d = 0; d < D; d++)
                    x[(b * T + t) * E + h * D + d] = xh[((b * H + h) * T + t) * D + d];
}

void multihead_forward_naive(float *out, float *weights, const float *query, const float *key,
                             const float *value, const MhaParams *p, const AttnMask *mask,
                             int average_weights, size_t B, size_t H, size_t Tq, size_t Tk,
                             size_t E)
{
    const size_t D = E / H;
    const float *w_q = p->in_proj_weight;            /* rows 0 .. E-1 of in_proj_weight */
    const float *w_k = p->in_proj_weight + E * E;    /* rows E .. 2E-1 */
    const float *w_v = p->in_proj_weight + 2 * E * E;
    const float *b_q = p->in_proj_bias;              /* entries 0 .. E-1 of in_proj_bias */
    const float *b_k = p->in_proj_bias ? p->in_proj_bias + E : NULL;
    const float *b_v = p->in_proj_bias ? p->in_proj_bias + 2 * E : NULL;

    float *Q = tfm_xcalloc(B * Tq * E, sizeof(float), WHO);      /* [B, Tq, E] */
    float *K = tfm_xcalloc(B * Tk * E, sizeof(float), WHO);      /* [B, Tk, E] */
    float *V = tfm_xcalloc(B * Tk * E, sizeof(float), WHO);      /* [B, Tk, E] */
    float *qh = tfm_xcalloc(B * Tq * E, sizeof(float), WHO);     /* [B, H, Tq, D] */
    float *kh = tfm_xcalloc(B * Tk * E, sizeof(float), WHO);     /* [B, H, Tk, D] */
    float *vh = tfm_xcalloc(B * Tk * E, sizeof(float), WHO);     /* [B, H, Tk, D] */
    float *ctxh = tfm_xcalloc(B * Tq * E, sizeof(float), WHO);   /* [B, H, Tq, D] */
    float *ctx = tfm_xcalloc(B * Tq * E, sizeof(float), WHO);    /* [B, Tq, E] */
    /* [B, H, Tq, Tk]: the per-head probabilities. Written straight into weights when the caller
     * wants them per head, into scratch when they are to be averaged. */
    float *probs = NULL;
    if (weights)
        probs = average_weights ? tfm_xcalloc(B * H * Tq * Tk, sizeof(float), WHO) : weights;

    /* 1. Project: [B*T, E] x [E, E]^T + bias, three times (chapter 00's linear). */
    linear_naive(Q, query, w_q, b_q, B * Tq, E, E);
    linear_naive(K, key, w_k, b_k, B * Tk, E, E);
    linear_naive(V, value, w_v, b_v, B * Tk, E, E);

    /* 2. Split: each head gets its own D columns, as a contiguous [B, H, T, D] block. */
    split_heads(qh, Q, B, H, Tq, D);
    split_heads(kh, K, B, H, Tk, D);
    split_heads(vh, V, B, H, Tk, D);

    /* 3. Attend: chapter 01, every (b, h) on its own, scaled by 1/sqrt(D) (the head's width). */
    attention_forward_naive(ctxh, probs, qh, kh, vh, mask, 1.0f / sqrtf((float)D), B, H, Tq, Tk,
                            D, D);

    /* 4. Concatenate the heads back into [B, Tq, E]. */
    merge_heads(ctx, ctxh, B, H, Tq, D);

    /* 5. Output projection. */
    linear_naive(out, ctx, p->out_proj_weight, p->out_proj_bias, B * Tq, E, E);

    /* 6. Averaged weights: w[b][i][j] = (sum_h p[b][h][i][j]) / H, summed over h in order and
     *    divided at the end, as PyTorch's attn_output_weights.sum(dim=1) / num_heads. A fully
     *    masked row is NaN in every head, so its average is NaN too. */
    if (weights && average_weights) {
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < Tq; i++)
                for (size_t j = 0; j < Tk; j++) {
                    float sum = 0.0f;
                    for (size_t h = 0; h < H; h++)
                        sum += probs[((b * H + h) * Tq + i) * Tk + j];
                    weights[(b * Tq + i) * Tk + j] = sum / (float)H;
                }
        free(probs);
    }

    free(Q);
    free(K);
    free(V);
    free(qh);
    free(kh);
    free(vh);
    free(ctxh);
    free(ctx);
}

/* ---- Training (multihead.h): self-attention with its activations saved, and its backward. */

/* Columns [c0, c0 + E) of the rows of x [B, T, ld] -> xh [B, H, T, D], and back. */
static void split_cols(float *xh, const float *x, size_t ld, size_t c0, size_t B, size_t H,
                       size_t T, size_t D)
{
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t t = 0; t < T; t++)
                for (size_t d = 0; d < D; d++)
                    xh[((b * H + h) * T + t) * D + d] = x[(b * T + t) * ld + c0 + h * D + d];
}

static void merge_cols(float *x, size_t ld, size_t c0, const float *xh, size_t B, size_t H,
                       size_t T, size_t D)
{
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t t = 0; t < T; t++)
                for (size_t d = 0; d < D; d++)
                    x[(b * T + t) * ld + c0 + h * D + d] = xh[((b * H + h) * T + t) * D + d];
}

void multihead_self_forward_train_naive(float *out, const MhaActs *acts, const float *x,
                                        const MhaParams *p, const AttnMask *mask, size_t B,
                                        size_t H, size_t T, size_t E)
{
    const size_t D = E / H, n = B * T * E;
    /* 1. qkv = x W_in^T + b_in, one product as PyTorch projects self-attention */
    linear_naive(acts->qkv, x, p->in_proj_weight, p->in_proj_bias, B * T, E, 3 * E);
    float *heads = tfm_xcalloc(4 * n, sizeof(float), "multihead_self_forward_train_naive");
    float *qh = heads, *kh = qh + n, *vh = kh + n, *ctxh = vh + n;   /* [B, H, T, D] each */
    split_cols(qh, acts->qkv, 3 * E, 0, B, H, T, D);                  /* 2. split */
    split_cols(kh, acts->qkv, 3 * E, E, B, H, T, D);
    split_cols(vh, acts->qkv, 3 * E, 2 * E, B, H, T, D);
    attention_forward_lse_naive(ctxh, acts->lse, qh, kh, vh, mask, 1.0f / sqrtf((float)D), B, H,
                                T, T, D, D);                          /* 3. attend */
    merge_cols(acts->ctx, E, 0, ctxh, B, H, T, D);                    /* 4. concat */
    linear_naive(out, acts->ctx, p->out_proj_weight, p->out_proj_bias, B * T, E, E);   /* 5. */
    free(heads);
}

void multihead_self_backward_naive(float *dx, const MhaGrads *g, const float *dout,
                                   const float *x, const MhaParams *p, const MhaActs *acts,
                                   const AttnMask *mask, size_t B, size_t H, size_t T, size_t E)
{
    const size_t D = E / H, n = B * T * E;
    float *buf = tfm_xcalloc(12 * n, sizeof(float), "multihead_self_backward_naive");
    float *dctx = buf, *dqkv = dctx + n;                      /* [B, T, E], [B, T, 3E] */
    float *qh = dqkv + 3 * n, *kh = qh + n, *vh = kh + n;     /* [B, H, T, D] each */
    float *ctxh = vh + n, *dctxh = ctxh + n;
    float *dqh = dctxh + n, *dkh = dqh + n, *dvh = dkh + n;

    /* 5. out = ctx W_o^T + b_o */
    linear_backward_naive(dctx, g->out_proj_weight, g->out_proj_bias, dout, acts->ctx,
                          p->out_proj_weight, B * T, E, E);
    /* 4.-2. the heads: split what the forward saved, attention's backward, merge */
    split_cols(qh, acts->qkv, 3 * E, 0, B, H, T, D);
    split_cols(kh, acts->qkv, 3 * E, E, B, H, T, D);
    split_cols(vh, acts->qkv, 3 * E, 2 * E, B, H, T, D);
    split_cols(ctxh, acts->ctx, E, 0, B, H, T, D);
    split_cols(dctxh, dctx, E, 0, B, H, T, D);
    attention_backward_naive(dqh, dkh, dvh, dctxh, qh, kh, vh, ctxh, acts->lse, mask,
                             1.0f / sqrtf((float)D), B, H, T, T, D, D);
    merge_cols(dqkv, 3 * E, 0, dqh, B, H, T, D);
    merge_cols(dqkv, 3 * E, E, dkh, B, H, T, D);
    merge_cols(dqkv, 3 * E, 2 * E, dvh, B, H, T, D);
    /* 1. qkv = x W_in^T + b_in: dx = dqkv W_in sums the q, k and v paths */
    linear_backward_naive(dx, g->in_proj_weight, g->in_proj_bias, dqkv, x, p->in_proj_weight,
                          B * T, E, 3 * E);
    free(buf);
}

/* The projection of block j (0 q, 1 k, 2 v) of the packed parameters and of their gradients. */
static const float *w_block(const MhaParams *p, size_t j, size_t E)
{
    return p->in_proj_weight + j * E * E;                    /* [E, E] */
}
static const float *b_block(const MhaParams *p, size_t j, size_t E)
{
    return p->in_proj_bias ? p->in_proj_bias + j * E : NULL; /* [E] */
}

void multihead_forward_train_naive(float *out, const MhaCrossActs *acts, const float *query,
                                   const float *key, const float *value, const MhaParams *p,
                                   const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                                   size_t E)
{
    const size_t D = E / H, nq = B * Tq * E, nk = B * Tk * E;
    /* 1. the three projections */
    linear_naive(acts->q, query, w_block(p, 0, E), b_block(p, 0, E), B * Tq, E, E);
    linear_naive(acts->k, key, w_block(p, 1, E), b_block(p, 1, E), B * Tk, E, E);
    linear_naive(acts->v, value, w_block(p, 2, E), b_block(p, 2, E), B * Tk, E, E);
    float *heads = tfm_xcalloc(2 * nq + 2 * nk, sizeof(float), "multihead_forward_train_naive");
    float *qh = heads, *ctxh = qh + nq, *kh = ctxh + nq, *vh = kh + nk;
    split_cols(qh, acts->q, E, 0, B, H, Tq, D);                       /* 2. split */
    split_cols(kh, acts->k, E, 0, B, H, Tk, D);
    split_cols(vh, acts->v, E, 0, B, H, Tk, D);
    attention_forward_lse_naive(ctxh, acts->lse, qh, kh, vh, mask, 1.0f / sqrtf((float)D), B, H,
                                Tq, Tk, D, D);                        /* 3. attend */
    merge_cols(acts->ctx, E, 0, ctxh, B, H, Tq, D);                   /* 4. concat */
    linear_naive(out, acts->ctx, p->out_proj_weight, p->out_proj_bias, B * Tq, E, E);   /* 5. */
    free(heads);
}

void multihead_backward_naive(float *dquery, float *dkey, float *dvalue, const MhaGrads *g,
                              const float *dout, const float *query, const float *key,
                              const float *value, const MhaParams *p, const MhaCrossActs *acts,
                              const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                              size_t E)
{
    const size_t D = E / H, nq = B * Tq * E, nk = B * Tk * E;
    float *buf = tfm_xcalloc(6 * nq + 6 * nk, sizeof(float), "multihead_backward_naive");
    float *dctx = buf, *dq = dctx + nq, *qh = dq + nq, *ctxh = qh + nq, *dctxh = ctxh + nq;
    float *dqh = dctxh + nq;                                  /* [B, Tq, E] or [B, H, Tq, D] */
    float *dk = dqh + nq, *dv = dk + nk, *kh = dv + nk, *vh = kh + nk, *dkh = vh + nk,
          *dvh = dkh + nk;                                    /* [B, Tk, E] or [B, H, Tk, D] */

    /* 5. out = ctx W_o^T + b_o */
    linear_backward_naive(dctx, g->out_proj_weight, g->out_proj_bias, dout, acts->ctx,
                          p->out_proj_weight, B * Tq, E, E);
    /* 4.-2. the heads: split what the forward saved, attention's backward, merge */
    split_cols(qh, acts->q, E, 0, B, H, Tq, D);
    split_cols(kh, acts->k, E, 0, B, H, Tk, D);
    split_cols(vh, acts->v, E, 0, B, H, Tk, D);
    split_cols(ctxh, acts->ctx, E, 0, B, H, Tq, D);
    split_cols(dctxh, dctx, E, 0, B, H, Tq, D);
    attention_backward_naive(dqh, dkh, dvh, dctxh, qh, kh, vh, ctxh, acts->lse, mask,
                             1.0f / sqrtf((float)D), B, H, Tq, Tk, D, D);
    merge_cols(dq, E, 0, dqh, B, H, Tq, D);
    merge_cols(dk, E, 0, dkh, B, H, Tk, D);
    merge_cols(dv, E, 0, dvh, B, H, Tk, D);
    /* 1. each projection's backward; a buffer given twice (key = value) collects both paths */
    float *dw = g->in_proj_weight, *db = g->in_proj_bias;
    linear_backward_naive(dquery, dw, db, dq, query, w_block(p, 0, E), B * Tq, E, E);
    linear_backward_naive(dkey, dw ? dw + E * E : NULL, db ? db + E : NULL, dk, key,
                          w_block(p, 1, E), B * Tk, E, E);
    linear_backward_naive(dvalue, dw ? dw + 2 * E * E : NULL, db ? db + 2 * E : NULL, dv, value,
                          w_block(p, 2, E), B * Tk, E, E);
    free(buf);
}
