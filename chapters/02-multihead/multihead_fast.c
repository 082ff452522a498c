/* multihead_fast.c — the same multi-head attention as multihead_naive.c, without its copies.
 *
 *   out = concat_h [softmax(Q_h K_h^T / sqrt(D) + M) V_h] W_o^T + b_o   (legend: multihead_naive.c)
 *
 * The optimizations, each with what it saves:
 *
 *  F1 shared projections. Inputs passed as the same pointer are projected by ONE product over
 *     the consecutive rows of in_proj_weight they use: query == key == value (self-attention)
 *     is a single [B*T, E] x [E, 3E] linear_fast into a packed [B, T, 3E] buffer, key == value
 *     (cross-attention over an encoder's output) a single [B*Tk, E] x [E, 2E]. The input is read
 *     and packed once instead of three (or two) times, and one wide product keeps the GEMM's
 *     cache blocks fuller than three narrow ones. Equality is by pointer, on purpose: comparing
 *     contents would cost a pass over the inputs, and equal pointers are how a caller says
 *     "self-attention" (PyTorch's fast path tests the same thing: query is key is value).
 *  F2 no head transposes. Head h of token t is the D columns h*D .. h*D+D-1 of the projection's
 *     row t, so chapter 01's strided entry point reads Q_h, K_h, V_h in place (row stride 3E,
 *     E or 2E) and writes each head's context straight into its columns of the concatenated
 *     [B, Tq, E] (row stride E). The naive split and merge copies (3 + 1 passes over [B, T, E],
 *     read and written) are gone.
 *  F3 heads in parallel: chapter 01's fast kernel runs its (b, h, query block) tasks on all
 *     threads; without need_weights it streams (online softmax) and never materializes a
 *     [Tq, Tk] score matrix.
 *  F4 the head average in one vectorized pass per query row, rows split over threads.
 *  F5 both projections are chapter 00's blocked, vectorized, threaded linear_fast.
 *
 * Determinism: linear_fast and attention_forward_fast_strided are deterministic for a fixed
 * thread count, and F4 sums heads in increasing h for every element, on one thread.
 */
#include "multihead.h"

#include <stdio.h>
#include <stdlib.h>

#include "tensor.h"

#include "attention.h"
#include "matmul.h"

/* Names the function in an out-of-memory message. */
static const char WHO[] = "multihead_forward_fast";

/* F4: w[b][i][:] = (sum_h probs[b][h][i][:]) / H, h in increasing order (as naive does). */
static void average_heads(float *w, const float *probs, size_t B, size_t H, size_t Tq, size_t Tk)
{
    const long long rows = (long long)(B * Tq);
#pragma omp parallel for schedule(static)
    for (long long r = 0; r < rows; r++) {
        const size_t b = (size_t)r / Tq, i = (size_t)r % Tq;
        float *restrict wr = w + (size_t)r * Tk;
        const float *restrict p0 = probs + (b * H * Tq + i) * Tk;   /* head 0, row i */
#pragma omp simd
        for (size_t j = 0; j < Tk; j++)
            wr[j] = p0[j];
        for (size_t h = 1; h < H; h++) {
            const float *restrict ph = p0 + h * Tq * Tk;
#pragma omp simd
            for (size_t j = 0; j < Tk; j++)
                wr[j] += ph[j];
        }
#pragma omp simd
        for (size_t j = 0; j < Tk; j++)
            wr[j] = wr[j] / (float)H;
    }
}

void multihead_forward_fast(float *out, float *weights, const float *query, const float *key,
                            const float *value, const MhaParams *p, const AttnMask *mask,
                            int average_weights, size_t B, size_t H, size_t Tq, size_t Tk,
                            size_t E)
{
    const size_t D = E / H;

    /* F1: roles 0, 1, 2 (query, key, value) use rows role*E .. role*E+E-1 of in_proj_weight.
     * Consecutive roles with the same input pointer (and length) form one group, projected by one
     * linear_fast into a buffer whose rows are n*E wide for a group of n roles; role r's columns
     * start at proj[r] and its rows are ld[r] apart. */
    const float *in[3] = {query, key, value};
    const size_t T[3] = {Tq, Tk, Tk};
    const float *proj[3];
    size_t ld[3];
    /* every group's buffer, back to back */
    float *qkv = tfm_xcalloc(B * (Tq + 2 * Tk) * E, sizeof(float), WHO);
    float *next = qkv;
    for (size_t r = 0; r < 3;) {
        size_t n = 1;
        while (r + n < 3 && in[r + n] == in[r] && T[r + n] == T[r])
            n++;
        linear_fast(next, in[r], p->in_proj_weight + r * E * E,
                    p->in_proj_bias ? p->in_proj_bias + r * E : NULL, B * T[r], E, n * E);
        for (size_t m = 0; m < n; m++) {
            proj[r + m] = next + m * E;
            ld[r + m] = n * E;
        }
        next += B * T[r] * n * E;
        r += n;
    }

    /* F2, F3: head h of row t of a role is proj + (b*T + t)*ld + h*D. */
    /* [B, Tq, E]: the heads, concatenated */
    float *ctx = tfm_xcalloc(B * Tq * E, sizeof(float), WHO);
    const AttnLayout layout = {
        .q = {Tq * ld[0], D, ld[0]},
        .k = {Tk * ld[1], D, ld[1]},
        .v = {Tk * ld[2], D, ld[2]},
        .out = {Tq * E, D, E},
    };
    float *probs = NULL;   /* [B, H, Tq, Tk] */
    if (weights)
        probs = average_weights ? tfm_xcalloc(B * H * Tq * Tk, sizeof(float), WHO) : weights;
    attention_forward_fast_strided(ctx, probs, proj[0], proj[1], proj[2], mask, 0.0f, &layout,
                                   B, H, Tq, Tk, D, D);

    linear_fast(out, ctx, p->out_proj_weight, p->out_proj_bias, B * Tq, E, E);   /* F5 */

    if (weights && average_weights) {
        average_heads(weights, probs, B, H, Tq, Tk);
        free(probs);
    }
    free(ctx);
    free(qkv);
}
