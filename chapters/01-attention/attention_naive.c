/* attention_naive.c — scaled dot-product attention, written the way the formula reads.
 *
 *   S = scale * Q K^T + M            scores,        [Tq, Tk] per (b, h)
 *   P = softmax(S) along keys        probabilities, [Tq, Tk]
 *   out = P V                        [Tq, Dv]
 *
 * Dimension legend (same letters as attention.h):
 *   b < B   batch element          h < H   head
 *   i < Tq  query token (a row)    j < Tk  key/value token (a column of S)
 *   d < Dk  query/key feature      e < Dv  value feature
 *
 * Memory layout, row-major:  q[b][h][i][d], k[b][h][j][d], v[b][h][j][e], out[b][h][i][e],
 * probs[b][h][i][j]. All offsets are size_t (see tensor.h).
 *
 * The softmax subtracts the row maximum before exponentiating: softmax is invariant under
 * shifting a row by a constant, and with the shift the largest exponent is exp(0) = 1, so no
 * exp() overflows however large the logits are (PyTorch does the same).
 */
#include "attention.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>

void attn_mask_from_bool(float *dst, const uint8_t *keep, size_t n)
{
    /* exp(-inf) = 0: a removed key gets probability exactly 0, whatever the other scores. */
    for (size_t t = 0; t < n; t++)
        dst[t] = keep[t] ? 0.0f : -INFINITY;
}

/* The forward, with the log-sum-exp of each row saved when lse is not NULL (for the backward). */
static void attend(float *out, float *probs, float *lse, const float *q, const float *k,
                   const float *v, const AttnMask *mask, float scale,
                   size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    /* One [Tq, Tk] scratch for the scores, reused by every (b, h). When the caller asks for
     * probs we compute in place there instead and need no scratch at all. */
    float *scratch = NULL;
    if (probs == NULL)
        scratch = tfm_xcalloc(Tq * Tk, sizeof *scratch, "attention_forward_naive");

    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < H; h++) {
            const size_t bh = b * H + h;
            const float *Q = q + bh * Tq * Dk;   /* Q[i][d] = Q[i*Dk + d] */
            const float *K = k + bh * Tk * Dk;   /* K[j][d] = K[j*Dk + d] */
            const float *V = v + bh * Tk * Dv;   /* V[j][e] = V[j*Dv + e] */
            float *O = out + bh * Tq * Dv;       /* O[i][e] = O[i*Dv + e] */
            float *P = probs ? probs + bh * Tq * Tk : scratch;   /* P[i][j] = P[i*Tk + j] */
            const float *am = NULL;              /* this (b, h)'s [Tq, Tk] additive mask */
            if (mask && mask->attn_mask)
                am = mask->attn_mask + b * mask->stride_b + h * mask->stride_h;
            const uint8_t *pad = (mask && mask->key_padding_mask)
                                     ? mask->key_padding_mask + b * Tk : NULL;
            const int causal = mask ? mask->causal : 0;

            for (size_t i = 0; i < Tq; i++) {
                float *s = P + i * Tk;   /* row i of S, overwritten by row i of P below */

                /* s_j = scale * (q_i . k_j) + M_ij */
                for (size_t j = 0; j < Tk; j++) {
                    float dot = 0.0f;
                    for (size_t d = 0; d < Dk; d++)
                        dot += Q[i * Dk + d] * K[j * Dk + d];
                    float sij = scale * dot;
                    if (am)
                        sij += am[i * Tk + j];
                    if (pad && pad[j])
                        sij = -INFINITY;            /* padding key: never attended */
                    if (causal && j > i)
                        sij = -INFINITY;            /* the future: never attended */
                    s[j] = sij;
                }

                /* p_j = exp(s_j - max_j s_j) / sum_j' exp(s_j' - max s).
                 *
                 * Fully masked row: every s_j is -inf, so the max is -inf and s_j - max is
                 * (-inf) - (-inf) = NaN; exp(NaN) = NaN, the sum is NaN, every p_j is NaN, and
                 * so is every out element below (NaN * v_j). That is exactly PyTorch's math
                 * softmax (it subtracts the max the same way), so no special case is needed:
                 * IEEE arithmetic produces the NaN by itself, and the row says "no valid key"
                 * instead of silently averaging nothing into zeros. */
                float mx = -INFINITY;
                for (size_t j = 0; j < Tk; j++)
                    if (s[j] > mx)
                        mx = s[j];
                float sum = 0.0f;
                for (size_t j = 0; j < Tk; j++) {
                    s[j] = expf(s[j] - mx);
                    sum += s[j];
                }
                for (size_t j = 0; j < Tk; j++)
                    s[j] = s[j] / sum;
                if (lse) {   /* log sum_j exp(s_j) = mx + log sum_j exp(s_j - mx), in two parts */
                    lse[2 * (bh * Tq + i)] = mx;
                    lse[2 * (bh * Tq + i) + 1] = mx == -INFINITY ? -INFINITY : logf(sum);
                }

                /* out_i = sum_j p_j v_j */
                for (size_t e = 0; e < Dv; e++) {
                    float acc = 0.0f;
                    for (size_t j = 0; j < Tk; j++)
                        acc += s[j] * V[j * Dv + e];
                    O[i * Dv + e] = acc;
                }
            }
        }
    }
    free(scratch);
}

void attention_forward_naive(float *out, float *probs, const float *q, const float *k,
                             const float *v, const AttnMask *mask, float scale,
                             size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    attend(out, probs, NULL, q, k, v, mask, scale, B, H, Tq, Tk, Dk, Dv);
}

size_t attention_lse_floats(size_t B, size_t H, size_t Tq) { return 2 * B * H * Tq; }

void attention_forward_lse_naive(float *out, float *lse, const float *q, const float *k,
                                 const float *v, const AttnMask *mask, float scale, size_t B,
                                 size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    attend(out, NULL, lse, q, k, v, mask, scale, B, H, Tq, Tk, Dk, Dv);
}

/* ---- Backward (attention.h), one query row at a time, as the formulas read:
 *
 *   p_j  = exp((s_j - m_i) - log l_i)       row i of P, recomputed from the saved lse
 *   dp_j = dO_i . v_j                       row i of dP = dO V^T
 *   D    = sum_j p_j dp_j                   softmax's backward needs only this row sum
 *   ds_j = p_j (dp_j - D)                   row i of dS
 *   dQ_i += scale sum_j ds_j k_j,   dK_j += scale ds_j q_i,   dV_j += p_j dO_i
 *
 * dK and dV sum their rows' contributions over i in increasing order. `out` is not read here:
 * D is summed from its definition (the fast variant uses dO_i . out_i). */
void attention_backward_naive(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *out, const float *lse,
                              const AttnMask *mask, float scale, size_t B, size_t H, size_t Tq,
                              size_t Tk, size_t Dk, size_t Dv)
{
    (void)out;
    float *p = tfm_xcalloc(2 * Tk, sizeof *p, "attention_backward_naive");   /* [Tk] */
    float *ds = p + Tk;                                                      /* [Tk] */
    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < H; h++) {
            const size_t bh = b * H + h;
            const float *Q = q + bh * Tq * Dk, *K = k + bh * Tk * Dk, *V = v + bh * Tk * Dv;
            const float *dO = dout + bh * Tq * Dv;
            float *dQ = dq ? dq + bh * Tq * Dk : NULL;
            float *dK = dk ? dk + bh * Tk * Dk : NULL;
            float *dV = dv ? dv + bh * Tk * Dv : NULL;
            const float *am = (mask && mask->attn_mask)
                                  ? mask->attn_mask + b * mask->stride_b + h * mask->stride_h
                                  : NULL;
            const uint8_t *pad = (mask && mask->key_padding_mask)
                                     ? mask->key_padding_mask + b * Tk : NULL;
            const int causal = mask ? mask->causal : 0;

            for (size_t i = 0; i < Tq; i++) {
                const float m = lse[2 * (bh * Tq + i)], logl = lse[2 * (bh * Tq + i) + 1];
                float D = 0.0f;
                for (size_t j = 0; j < Tk; j++) {
                    float dot = 0.0f;                       /* s_ij, as the forward */
                    for (size_t d = 0; d < Dk; d++)
                        dot += Q[i * Dk + d] * K[j * Dk + d];
                    float sij = scale * dot;
                    if (am)
                        sij += am[i * Tk + j];
                    if ((pad && pad[j]) || (causal && j > i))
                        sij = -INFINITY;
                    p[j] = expf((sij - m) - logl);          /* p_ij */
                    float dp = 0.0f;                        /* dp_ij = dO_i . v_j */
                    for (size_t e = 0; e < Dv; e++)
                        dp += dO[i * Dv + e] * V[j * Dv + e];
                    ds[j] = dp;
                    D += p[j] * dp;                         /* D = sum_j p_j dp_j */
                }
                for (size_t j = 0; j < Tk; j++)
                    ds[j] = p[j] * (ds[j] - D);             /* ds_j = p_j (dp_j - D) */

                if (dQ)
                    for (size_t d = 0; d < Dk; d++) {       /* dQ_i += scale sum_j ds_j k_j */
                        float acc = 0.0f;
                        for (size_t j = 0; j < Tk; j++)
                            acc += ds[j] * K[j * Dk + d];
                        dQ[i * Dk + d] += scale * acc;
                    }
                for (size_t j = 0; j < Tk; j++) {
                    if (dK)                                 /* dK_j += scale ds_j q_i */
                        for (size_t d = 0; d < Dk; d++)
                            dK[j * Dk + d] += scale * ds[j] * Q[i * Dk + d];
                    if (dV)                                 /* dV_j += p_j dO_i */
                        for (size_t e = 0; e < Dv; e++)
                            dV[j * Dv + e] += p[j] * dO[i * Dv + e];
                }
            }
        }
    }
    free(p);
}
