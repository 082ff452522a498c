/* pretraining_fast.c — the heads and losses of pretraining_naive.c, organized for the machine.
 *
 * Dimension legend (as in pretraining.h): n < N token rows, v < V vocabulary, e < E features,
 * b < B sequences of T tokens, S labelled rows (label != -100).
 *
 * The optimizations, each with what it saves:
 *
 *  F1 gather first. Only the S labelled rows have a loss, so the MLM head gathers those rows of
 *     the hidden states and runs the transform and the decoder on them alone. The decoder,
 *     2*E*V multiply-adds per row (47M at E = 768, V = 30522), is almost all of the head's work:
 *     with BERT's 15% masking S ~ 0.15 N, so the head does 1/0.15 ~ 6.7x less work and writes an
 *     [S, V] score matrix instead of [N, V] (BertForPreTraining scores every position and then
 *     throws 85% of the rows away in the loss).
 *  F2 one pass per row: the log-sum-exp online, lane by lane, chapter 00's tfm_lse_row
 *     (chapters/00-tensors/tfm_lse.h, shared with log_softmax_fast and cross_entropy_loss_fast).
 *     Each of 16 lanes keeps a running max m_l and a running sum s_l = sum exp(z_v - m_l) of the
 *     logits v = l (mod 16); the row is consumed in blocks of 256 logits (1 KiB, in L1 between
 *     its max and its exps), then whole steps of 16 and one -inf padded step for the last V % 16;
 *     a block that raises a lane's max rescales that lane's sum by exp(m_old - m_new). Every step
 *     is a lane-wise vector operation: no horizontal reduction and no branch per block (the form
 *     of chapter 01's O11). The 16 lanes are merged once, at the end of the row. The row is read
 *     from memory once; naive reads it three times (max, sum, log-probabilities) and writes and
 *     reads back a V-float row of log-probabilities, which is never formed here:
 *     l = log S - (z_y - M) needs only the label's logit. (Two earlier versions measured slower
 *     at 512 x 30522: an online pass with one running max per row, which paid a horizontal max,
 *     a horizontal sum and a branch per block of 64 logits, 8.9 ms; and two passes per row, the
 *     max and then the sum from L2 with the next row prefetched, 6.5 ms; this one takes 5.0.)
 *  F3 ignored rows are skipped entirely: not read, not exponentiated (naive computes their
 *     log-softmax and then drops it). With logits given for every position that is 85% of the
 *     exps at BERT's masking rate.
 *  F4 vector arithmetic throughout (in tfm_lse.h): the maxima and the sums are lane-wise; a
 *     block's sums are floats (16 terms <= 1 per lane: one 16-float vector per step), the running
 *     sums doubles (120 blocks in a 30522-wide row), merged in lane order. The exps are tfm_expf
 *     (chapters/00-tensors/tfm_exp.h), branch-free and so vectorized, where libm's expf would be
 *     one scalar call per logit.
 *  F5 OpenMP over rows (schedule static): each row's loss is written by one thread into its own
 *     slot; the mean is then summed in row order, in double, by one thread, exactly as naive
 *     does. So the result is bitwise the same for any thread count.
 *  F6 the linear layers are chapter 00's linear_fast, LayerNorm is chapter 04's layernorm_fast.
 *  F7 no allocation per call: the heads' intermediate rows and the per-row losses are scratch-
 *     arena buffers (chapters/00-tensors/arena.h), one slot each, allocated on the first call
 *     at a shape and reused by every later one (a training loop calls the heads every step).
 *  F8 backward (chapter 07): F1's gather again, so the [S, V] logits and their gradient are the
 *     only vocabulary-wide buffers, S = 15% of N in BERT's masking (naive's are [N, V]); the
 *     steps are the fast backwards of chapters 00, 04 and 05, in the arena (F7).
 *  F9 a training step (chapter 09) takes the loss from the backward's own run of the head
 *     (mlm_forward_backward_fast): the backward must compute the scores anyway, and a forward
 *     before it would compute them a second time, a third of the head's work (the decoder's
 *     [S, E] x [E, V] product is 2 S E V flops, its backward twice that).
 *
 * The NSP head works on B rows of width E; beyond F6 there is nothing in it worth optimizing.
 *
 * Numerics as in naive, without -ffast-math: exp is tfm_expf (within 1.2 ulp of the true
 * exp; libm's expf is within 1 ulp), NaN and inf follow IEEE rules.
 * A row whose logits are all -inf, or that holds a +inf or a NaN, has loss NaN in both variants
 * (and in PyTorch); -inf at the label alone gives +inf.
 */
#include "pretraining.h"

#include <math.h>
#include <string.h>

#include "arena.h"
#include "functional.h"
#include "layernorm.h"
#include "matmul.h"
#include "tfm_lse.h"

static const char WHO[] = "pretraining_fast";   /* names us in an out-of-memory message */

/* -log softmax(z)[y] over z [V], in one pass over the row (F2, F4). */
static float row_loss(const float *z,         /* [V] */
                      size_t V, size_t y)
{
    /* M = max_v z_v and S = sum_v exp(z_v - M), online (tfm_lse.h). A row of all -inf has
     * M = -inf and S = NaN, and so a NaN loss, as in naive and PyTorch; a +inf or a NaN logit
     * has made S NaN. */
    float M;
    double S;
    tfm_lse_row(z, V, &M, &S);
    /* log S - (z_y - M): the label's log-probability, negated, in the same order of operations
     * as naive's (z_y - M) - log S. */
    return (float)log(S) - (z[y] - M);
}

void cross_entropy_fast(float *loss, float *token_loss, const float *logits,
                        const int64_t *labels, size_t N, size_t V)
{
    /* [N]: the caller's token_loss, or an arena buffer (F7); every entry is written below */
    float *l = token_loss ? token_loss : tfm_arena_get(TFM_SCRATCH_CE_LOSS, N, sizeof *l, WHO);

#pragma omp parallel for schedule(static)   /* F5 */
    for (size_t n = 0; n < N; n++) {
        const int64_t y = labels[n];
        if (y == TFM_IGNORE_INDEX) {
            l[n] = 0.0f;   /* F3: the row is not touched */
            continue;
        }
        l[n] = row_loss(logits + n * V, V, (size_t)y);
    }

    double sum = 0.0;
    size_t count = 0;
    for (size_t n = 0; n < N; n++) {   /* row order, as naive: thread-count independent */
        if (labels[n] == TFM_IGNORE_INDEX)
            continue;
        sum += l[n];
        count += 1;
    }
    loss[0] = (float)(sum / (double)count);   /* S = 0: NaN, as PyTorch */
}

/* F1: the labelled rows of hidden and their labels, in row order. */
static void gather_labelled(float *hs,                 /* [S, E] */
                            int64_t *ys,               /* [S] */
                            const float *hidden,       /* [N, E] */
                            const int64_t *labels,     /* [N] */
                            size_t N, size_t E)
{
    for (size_t n = 0, s = 0; n < N; n++) {
        if (labels[n] == TFM_IGNORE_INDEX)
            continue;
        memcpy(hs + s * E, hidden + n * E, E * sizeof *hs);
        ys[s++] = labels[n];
    }
}

void mlm_forward_fast(float *loss, float *masked_logits, const float *hidden,
                      const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V)
{
    const size_t S = mlm_count_selected(labels, N);
    /* Arena buffers (F7), not zeroed: each is written whole before it is read (hs and ys by the
     * gather of all S labelled rows, a, t and z by the layers). */
    float *hs = tfm_arena_get(TFM_SCRATCH_MLM_HIDDEN, S * E, sizeof *hs, WHO);   /* [S, E] */
    float *a = tfm_arena_get(TFM_SCRATCH_MLM_DENSE, S * E, sizeof *a, WHO);      /* [S, E] */
    float *t = tfm_arena_get(TFM_SCRATCH_MLM_NORM, S * E, sizeof *t, WHO);       /* [S, E] */
    float *z = masked_logits ? masked_logits                                     /* [S, V] */
                             : tfm_arena_get(TFM_SCRATCH_MLM_LOGITS, S * V, sizeof *z, WHO);
    int64_t *ys = tfm_arena_get(TFM_SCRATCH_MLM_LABELS, S, sizeof *ys, WHO);     /* [S] */

    gather_labelled(hs, ys, hidden, labels, N, E);   /* F1: then the head on S rows, not N */
    linear_fast(a, hs, head->dense_w, head->dense_b, S, E, E);   /* F6 */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < S * E; i++)
        a[i] = gelu_erf(a[i]);
    layernorm_forward_fast(t, NULL, NULL, a, head->ln_gamma, head->ln_beta, head->ln_eps, S, E);
    linear_fast(z, t, head->decoder_w, head->decoder_b, S, E, V);
    cross_entropy_fast(loss, NULL, z, ys, S, V);   /* every row labelled: none skipped */
}

/* The pooler on each sequence's token 0: cls = h[b, 0], pooled = tanh(W_p cls + b_p). */
static void pool_cls(float *cls,                 /* [B, E] */
                     float *pooled,              /* [B, E] */
                     const float *hidden,        /* [B, T, E] */
                     const NspHead *head, size_t B, size_t T, size_t E)
{
    for (size_t b = 0; b < B; b++)
        memcpy(cls + b * E, hidden + b * T * E, E * sizeof *cls);
    linear_fast(pooled, cls, head->pooler_w, head->pooler_b, B, E, E);
    for (size_t i = 0; i < B * E; i++)
        pooled[i] = tanhf(pooled[i]);
}

void nsp_forward_fast(float *loss, float *logits, float *pooled_out, const float *hidden,
                      const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E)
{
    /* [B, E] each, arena buffers (F7) written whole before they are read */
    float *cls = tfm_arena_get(TFM_SCRATCH_NSP_CLS, B * E, sizeof *cls, WHO);
    float *pooled = pooled_out ? pooled_out
                               : tfm_arena_get(TFM_SCRATCH_NSP_POOLED, B * E, sizeof *pooled, WHO);
    pool_cls(cls, pooled, hidden, head, B, T, E);
    linear_fast(logits, pooled, head->cls_w, head->cls_b, B, E, 2);
    cross_entropy_fast(loss, NULL, logits, labels, B, 2);
}

/* The backward, and with loss given the loss too, from the one run of the head (F9). */
static void mlm_train_fast(float *loss, float *dhidden, const MlmHeadGrads *g, float dloss,
                           const float *hidden, const int64_t *labels, const MlmHead *head,
                           size_t N, size_t E, size_t V)
{
    const size_t S = mlm_count_selected(labels, N);
    if (S == 0) {   /* no labelled row: nothing reaches anything; the loss is 0/0 */
        if (loss)
            *loss = NAN;
        return;
    }
    /* F8: the S labelled rows gathered, the head run on them only; the forward's arena
     * buffers plus the backward's, each written whole before it is read. */
    float *hs = tfm_arena_get(TFM_SCRATCH_MLM_HIDDEN, S * E, sizeof *hs, WHO);   /* [S, E] */
    float *u = tfm_arena_get(TFM_SCRATCH_MLM_PRE, S * E, sizeof *u, WHO);        /* [S, E] */
    float *a = tfm_arena_get(TFM_SCRATCH_MLM_DENSE, S * E, sizeof *a, WHO);      /* [S, E] */
    float *t = tfm_arena_get(TFM_SCRATCH_MLM_NORM, S * E, sizeof *t, WHO);       /* [S, E] */
    float *z = tfm_arena_get(TFM_SCRATCH_MLM_LOGITS, S * V, sizeof *z, WHO);     /* [S, V] */
    float *dz = tfm_arena_get(TFM_SCRATCH_MLM_DLOGITS, S * V, sizeof *dz, WHO);  /* [S, V] */
    float *d = tfm_arena_get(TFM_SCRATCH_MLM_DROWS, 3 * S * E + 2 * S, sizeof *d, WHO);
    float *dt = d, *du = d + S * E, *dh = d + 2 * S * E;                         /* [S, E] */
    float *mean = d + 3 * S * E, *rstd = mean + S;                               /* [S] */
    int64_t *ys = tfm_arena_get(TFM_SCRATCH_MLM_LABELS, S, sizeof *ys, WHO);     /* [S] */
    gather_labelled(hs, ys, hidden, labels, N, E);
    linear_fast(u, hs, head->dense_w, head->dense_b, S, E, E);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < S * E; i++)
        a[i] = gelu_erf(u[i]);
    layernorm_forward_fast(t, mean, rstd, a, head->ln_gamma, head->ln_beta, head->ln_eps, S, E);
    linear_fast(z, t, head->decoder_w, head->decoder_b, S, E, V);
    if (loss)
        cross_entropy_fast(loss, NULL, z, ys, S, V);

    memset(dz, 0, S * V * sizeof *dz);
    memset(d, 0, 3 * S * E * sizeof *d);
    cross_entropy_backward_fast(dz, NULL, &dloss, z, ys, NULL, NULL, TFM_IGNORE_INDEX,
                                TFM_REDUCTION_MEAN, 0.0f, S, V, 1);
    linear_backward_fast(dt, g->decoder_w, g->decoder_b, dz, t, head->decoder_w, S, E, V);
    /* da: LayerNorm's backward into du's buffer, then GELU's into dt's (dt is spent) */
    layernorm_backward_fast(du, g->ln_gamma, g->ln_beta, dt, a, mean, rstd, head->ln_gamma, S,
                            E);
    memset(dt, 0, S * E * sizeof *dt);
    gelu_backward_fast(dt, du, u, S * E, TFM_GELU_NONE);
    linear_backward_fast(dhidden ? dh : NULL, g->dense_w, g->dense_b, dt, hs, head->dense_w, S,
                         E, E);
    if (dhidden)   /* back to the rows they came from */
        for (size_t n = 0, s = 0; n < N; n++) {
            if (labels[n] == TFM_IGNORE_INDEX)
                continue;
            const float *restrict src = dh + (s++) * E;
            float *restrict dst = dhidden + n * E;
#pragma omp simd
            for (size_t e = 0; e < E; e++)
                dst[e] += src[e];
        }
}

void mlm_backward_fast(float *dhidden, const MlmHeadGrads *g, float dloss, const float *hidden,
                       const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V)
{
    mlm_train_fast(NULL, dhidden, g, dloss, hidden, labels, head, N, E, V);
}

void mlm_forward_backward_fast(float *loss, float *dhidden, const MlmHeadGrads *g, float dloss,
                               const float *hidden, const int64_t *labels, const MlmHead *head,
                               size_t N, size_t E, size_t V)
{
    mlm_train_fast(loss, dhidden, g, dloss, hidden, labels, head, N, E, V);
}

void nsp_backward_fast(float *dhidden, const NspHeadGrads *g, float dloss, const float *hidden,
                       const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E)
{
    /* B rows of E: small next to the MLM head; the same steps as naive, on the fast kernels,
     * in arena buffers */
    float *cls = tfm_arena_get(TFM_SCRATCH_NSP_CLS, B * E, sizeof *cls, WHO);        /* [B, E] */
    float *pooled = tfm_arena_get(TFM_SCRATCH_NSP_POOLED, B * E, sizeof *pooled, WHO);
    float *d = tfm_arena_get(TFM_SCRATCH_NSP_D, 2 * B * E + 4 * B, sizeof *d, WHO);
    float *dpooled = d, *dcls = d + B * E, *s = d + 2 * B * E, *ds = s + 2 * B;
    pool_cls(cls, pooled, hidden, head, B, T, E);
    linear_fast(s, pooled, head->cls_w, head->cls_b, B, E, 2);

    memset(d, 0, 2 * B * E * sizeof *d);
    memset(ds, 0, 2 * B * sizeof *ds);
    cross_entropy_backward_fast(ds, NULL, &dloss, s, labels, NULL, NULL, TFM_IGNORE_INDEX,
                                TFM_REDUCTION_MEAN, 0.0f, B, 2, 1);
    linear_backward_fast(dpooled, g->cls_w, g->cls_b, ds, pooled, head->cls_w, B, E, 2);
    for (size_t i = 0; i < B * E; i++)
        dpooled[i] *= 1.0f - pooled[i] * pooled[i];
    linear_backward_fast(dhidden ? dcls : NULL, g->pooler_w, g->pooler_b, dpooled, cls,
                         head->pooler_w, B, E, E);
    if (dhidden)
        for (size_t b = 0; b < B; b++)
            for (size_t e = 0; e < E; e++)
                dhidden[b * T * E + e] += dcls[b * E + e];
}
