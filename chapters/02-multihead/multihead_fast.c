/* multihead_fast.c — the same multi-head attention as multihead_naive.c, without its copies.
 *
 *   out = concat_h [softmax(Q_h K_h^T / sqrt(D) + M) V_h] W_o^T + b_o   (legend: multihead_naive.c)
 *
 * The optimizations, each with what it saves:
 *
 *  F1 shared projections. Inputs passed as the same pointer are projected by ONE product over
 *     the consecutive rows of in_proj_weight they use: query == key == value (self-attention)
 *     is a single [n*T, E] x [E, 3E] linear_fast (n sequences, F6) into a packed [n, T, 3E]
 *     buffer; key == value (cross-attention over an encoder's output) a single [n*Tk, E] x
 *     [E, 2E]. The input is read and packed once instead of three (or two) times, and one wide
 *     product keeps the GEMM's cache blocks fuller than three narrow ones. Equality is by pointer, on purpose: comparing
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
 *  F6 batch chunks. The batch is processed a few whole sequences at a time, about CHUNK_ROWS
 *     token rows per chunk, each chunk running the whole pass (projections, heads, output
 *     projection) before the next. The scratch (projections, heads) is then the size of one
 *     chunk, not of the batch: at B = 8, T = 512, E = 768 it is 12.6 MB instead of 50 MB. That
 *     matters twice. The projections of a chunk are still in the last-level cache when the
 *     heads read them. And glibc serves blocks above 32 MiB with fresh pages from the kernel on
 *     every call, each page faulted in on first touch; a chunk's blocks come from the heap and
 *     are reused. At that shape, on one thread, the pass went from about 260 ms to 160 ms. (The
 *     chunk's buffers are now scratch-arena slots, arena.h, kept from one call to the next, so a
 *     loop of calls at one shape allocates, and faults in, nothing after the first.) Short
 *     sequences are grouped up to CHUNK_ROWS rows per chunk, so the products stay large enough
 *     to block well.
 *  F7 training (chapter 07), self-attention: the forward is F1 + F2 with attention's training
 *     forward (lse saved) into the caller's MhaActs; the backward is three steps with no head
 *     copies either: the out-projection's backward into d_ctx, attention's strided backward
 *     reading q, k, v, ctx and d_ctx in place and writing d_qkv in the packed layout, and one
 *     linear backward over all 3E columns, whose dx = d_qkv W_in sums the three paths in one
 *     product. d_ctx and d_qkv are arena slots.
 *
 * Determinism: linear_fast and attention_forward_fast_strided are deterministic for a fixed
 * thread count, and F4 sums heads in increasing h for every element, on one thread.
 */
#include "multihead.h"

#include <math.h>
#include <string.h>

#include "arena.h"
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

/* F6: batch elements are processed in chunks of about CHUNK_ROWS token rows. */
enum { CHUNK_ROWS = 1024 };

/* One chunk: batch elements b0 .. b0+nb-1 of every operand, the whole forward pass. Scratch:
 * qkv [nb, Tq+2Tk, E] (the projections), ctx [nb, Tq, E] (the heads), probs [nb, H, Tq, Tk]
 * (when the weights are averaged). */
static void forward_chunk(float *out, float *weights, const float *query, const float *key,
                          const float *value, const MhaParams *p, const AttnMask *mask,
                          int average_weights, size_t b0, size_t nb, size_t H, size_t Tq,
                          size_t Tk, size_t E, float *qkv, float *ctx, float *probs)
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
    float *next = qkv;   /* every group's rows, back to back */
    for (size_t r = 0; r < 3;) {
        size_t n = 1;
        while (r + n < 3 && in[r + n] == in[r] && T[r + n] == T[r])
            n++;
        linear_fast(next, in[r] + b0 * T[r] * E, p->in_proj_weight + r * E * E,
                    p->in_proj_bias ? p->in_proj_bias + r * E : NULL, nb * T[r], E, n * E);
        for (size_t m = 0; m < n; m++) {
            proj[r + m] = next + m * E;
            ld[r + m] = n * E;
        }
        next += nb * T[r] * n * E;
        r += n;
    }

    /* The chunk's part of the masks: its batch rows of the additive mask (a stride of 0
     * broadcasts, and stays put) and of the key padding mask. */
    AttnMask m = {0};
    if (mask) {
        m = *mask;
        if (m.attn_mask)
            m.attn_mask += b0 * m.stride_b;
        if (m.key_padding_mask)
            m.key_padding_mask += b0 * Tk;
    }

    /* F2, F3: head h of row t of a role is proj + (b*T + t)*ld + h*D. */
    const AttnLayout layout = {
        .q = {Tq * ld[0], D, ld[0]},
        .k = {Tk * ld[1], D, ld[1]},
        .v = {Tk * ld[2], D, ld[2]},
        .out = {Tq * E, D, E},
    };
    /* [nb, H, Tq, Tk]: the per-head probabilities, in the caller's weights unless averaged */
    float *pr = weights ? (average_weights ? probs : weights + b0 * H * Tq * Tk) : NULL;
    attention_forward_fast_strided(ctx, pr, proj[0], proj[1], proj[2], mask ? &m : NULL,
                                   1.0f / sqrtf((float)D), &layout, nb, H, Tq, Tk, D, D);

    linear_fast(out + b0 * Tq * E, ctx, p->out_proj_weight, p->out_proj_bias, nb * Tq, E,
                E);   /* F5 */

    if (weights && average_weights)
        average_heads(weights + b0 * Tq * Tk, probs, nb, H, Tq, Tk);
}

void multihead_forward_fast(float *out, float *weights, const float *query, const float *key,
                            const float *value, const MhaParams *p, const AttnMask *mask,
                            int average_weights, size_t B, size_t H, size_t Tq, size_t Tk,
                            size_t E)
{
    const size_t rows = Tq > Tk ? Tq : Tk;
    /* batch elements per chunk (rows = 0, an empty sequence: all of them, nothing to compute) */
    size_t nb = rows == 0 ? B : rows >= CHUNK_ROWS ? 1 : CHUNK_ROWS / rows;
    if (nb > B)
        nb = B;
    if (nb == 0)   /* B = 0: nothing to compute, and nothing to allocate */
        return;

    /* The chunk's scratch, in the arena (not zeroed): every element a chunk reads has been
     * written by that chunk first (qkv by the projections, ctx by the heads, which cover all E
     * columns, probs by attention, which writes every [Tq, Tk] entry). Its callees' own
     * scratch (linear_fast's panels, attention's tiles) is in other slots. */
    float *qkv = tfm_arena_get(TFM_SCRATCH_MHA_QKV, nb * (Tq + 2 * Tk) * E, sizeof(float), WHO);
    float *ctx = tfm_arena_get(TFM_SCRATCH_MHA_CTX, nb * Tq * E, sizeof(float), WHO);
    float *probs = weights && average_weights
        ? tfm_arena_get(TFM_SCRATCH_MHA_PROBS, nb * H * Tq * Tk, sizeof(float), WHO) : NULL;
    for (size_t b0 = 0; b0 < B; b0 += nb)
        forward_chunk(out, weights, query, key, value, p, mask, average_weights, b0,
                      B - b0 < nb ? B - b0 : nb, H, Tq, Tk, E, qkv, ctx, probs);
}

/* ---- Training (F7). */

/* Heads of the packed [B, T, 3E] projections and of the [B, T, E] context, in place. */
static AttnLayout packed_layout(size_t T, size_t E, size_t D)
{
    const AttnLayout layout = {
        .q = {T * 3 * E, D, 3 * E},
        .k = {T * 3 * E, D, 3 * E},
        .v = {T * 3 * E, D, 3 * E},
        .out = {T * E, D, E},
    };
    return layout;
}

void multihead_self_forward_train_fast(float *out, const MhaActs *acts, const float *x,
                                       const MhaParams *p, const AttnMask *mask, size_t B,
                                       size_t H, size_t T, size_t E)
{
    const size_t D = E / H;
    linear_fast(acts->qkv, x, p->in_proj_weight, p->in_proj_bias, B * T, E, 3 * E);
    const AttnLayout layout = packed_layout(T, E, D);
    attention_forward_lse_fast_strided(acts->ctx, acts->lse, acts->qkv, acts->qkv + E,
                                       acts->qkv + 2 * E, mask, 1.0f / sqrtf((float)D), &layout,
                                       B, H, T, T, D, D);
    linear_fast(out, acts->ctx, p->out_proj_weight, p->out_proj_bias, B * T, E, E);
}

void multihead_self_backward_fast(float *dx, const MhaGrads *g, const float *dout,
                                  const float *x, const MhaParams *p, const MhaActs *acts,
                                  const AttnMask *mask, size_t B, size_t H, size_t T, size_t E)
{
    const size_t D = E / H, n = B * T * E;
    float *dctx = tfm_arena_get(TFM_SCRATCH_MHA_DCTX, n, sizeof(float),
                                "multihead_self_backward_fast");       /* [B, T, E] */
    float *dqkv = tfm_arena_get(TFM_SCRATCH_MHA_DQKV, 3 * n, sizeof(float),
                                "multihead_self_backward_fast");       /* [B, T, 3E] */
    memset(dctx, 0, n * sizeof(float));    /* the backwards accumulate */
    memset(dqkv, 0, 3 * n * sizeof(float));
    linear_backward_fast(dctx, g->out_proj_weight, g->out_proj_bias, dout, acts->ctx,
                         p->out_proj_weight, B * T, E, E);
    const AttnLayout layout = packed_layout(T, E, D);
    attention_backward_fast_strided(dqkv, dqkv + E, dqkv + 2 * E, dctx, acts->qkv, acts->qkv + E,
                                    acts->qkv + 2 * E, acts->ctx, acts->lse, mask,
                                    1.0f / sqrtf((float)D), &layout, B, H, T, T, D, D);
    linear_backward_fast(dx, g->in_proj_weight, g->in_proj_bias, dqkv, x, p->in_proj_weight,
                         B * T, E, 3 * E);
}

/* The general case: q, k and v projected apart (three GEMMs, each [B*T, E] x [E, E]), the heads
 * read in place through strides as above, the backward's scratch from the arena. */
static AttnLayout cross_layout(size_t Tq, size_t Tk, size_t E, size_t D)
{
    const AttnLayout layout = {
        .q = {Tq * E, D, E},
        .k = {Tk * E, D, E},
        .v = {Tk * E, D, E},
        .out = {Tq * E, D, E},
    };
    return layout;
}

void multihead_forward_train_fast(float *out, const MhaCrossActs *acts, const float *query,
                                  const float *key, const float *value, const MhaParams *p,
                                  const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                                  size_t E)
{
    const size_t D = E / H;
    const float *w = p->in_proj_weight, *b = p->in_proj_bias;
    linear_fast(acts->q, query, w, b, B * Tq, E, E);
    linear_fast(acts->k, key, w + E * E, b ? b + E : NULL, B * Tk, E, E);
    linear_fast(acts->v, value, w + 2 * E * E, b ? b + 2 * E : NULL, B * Tk, E, E);
    const AttnLayout layout = cross_layout(Tq, Tk, E, D);
    attention_forward_lse_fast_strided(acts->ctx, acts->lse, acts->q, acts->k, acts->v, mask,
                                       1.0f / sqrtf((float)D), &layout, B, H, Tq, Tk, D, D);
    linear_fast(out, acts->ctx, p->out_proj_weight, p->out_proj_bias, B * Tq, E, E);
}

void multihead_backward_fast(float *dquery, float *dkey, float *dvalue, const MhaGrads *g,
                             const float *dout, const float *query, const float *key,
                             const float *value, const MhaParams *p, const MhaCrossActs *acts,
                             const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                             size_t E)
{
    const size_t D = E / H, nq = B * Tq * E, nk = B * Tk * E;
    float *dctx = tfm_arena_get(TFM_SCRATCH_MHA_DCTX, nq, sizeof(float),
                                "multihead_backward_fast");           /* [B, Tq, E] */
    float *dqkv = tfm_arena_get(TFM_SCRATCH_MHA_DQKV, nq + 2 * nk, sizeof(float),
                                "multihead_backward_fast");           /* dq, dk, dv */
    float *dq = dqkv, *dk = dq + nq, *dv = dk + nk;
    memset(dctx, 0, nq * sizeof(float));    /* the backwards accumulate */
    memset(dqkv, 0, (nq + 2 * nk) * sizeof(float));
    linear_backward_fast(dctx, g->out_proj_weight, g->out_proj_bias, dout, acts->ctx,
                         p->out_proj_weight, B * Tq, E, E);
    const AttnLayout layout = cross_layout(Tq, Tk, E, D);
    attention_backward_fast_strided(dq, dk, dv, dctx, acts->q, acts->k, acts->v, acts->ctx,
                                    acts->lse, mask, 1.0f / sqrtf((float)D), &layout, B, H, Tq,
                                    Tk, D, D);
    const float *w = p->in_proj_weight;
    float *dw = g->in_proj_weight, *db = g->in_proj_bias;
    linear_backward_fast(dquery, dw, db, dq, query, w, B * Tq, E, E);
    linear_backward_fast(dkey, dw ? dw + E * E : NULL, db ? db + E : NULL, dk, key, w + E * E,
                         B * Tk, E, E);
    linear_backward_fast(dvalue, dw ? dw + 2 * E * E : NULL, db ? db + 2 * E : NULL, dv, value,
                         w + 2 * E * E, B * Tk, E, E);
}
