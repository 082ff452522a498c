/* attention_fast.c — the same attention as attention_naive.c, organized for the machine.
 *
 *   out = softmax(scale * Q K^T + M) V        (legend and layout: attention_naive.c)
 *
 * Work is split into independent tasks (b, h, query block of BQ rows); inside a task the keys are
 * visited in tiles of BK. The optimizations, each with what it saves:
 *
 *  O1 query blocking: BQ query rows share every K/V tile while it is in L1, so K and V are read
 *     from memory Tq/BQ times per (b, h) instead of Tq times.
 *  O2 register blocking of the scores: four query rows against one key per pass over Dk, so each
 *     k_j element loaded feeds four FMAs; and four keys per pass over Dv in P V, so each
 *     accumulator element is loaded and stored once per four keys instead of once per key.
 *  O3 unit-stride, restrict-qualified inner loops over Dk and Dv with `omp simd`: the compiler
 *     emits full-width vector FMAs (FAST_CFLAGS contracts a*b+c into one FMA).
 *  O4 online softmax (probs == NULL): a running max m and sum l per row and an accumulator that
 *     is rescaled by exp(m_old - m_new) when the max grows. Only one BQ x BK score tile exists per
 *     thread, never the Tq x Tk matrix: memory traffic O(Tq*Tk) -> 0, and the scores never leave
 *     L1.
 *  O5 causal tile skipping: key tiles lying entirely above the diagonal (every j > every i of the
 *     block) are not computed at all, and inside the diagonal tile each row stops at j = i. That
 *     halves the work of causal attention (Tq*Tk/2 instead of Tq*Tk dot products and exps).
 *  O6 one reciprocal per row: normalization multiplies by 1/l instead of dividing Tk (or Dv) times.
 *  O7 OpenMP over the (b, h, query block) tasks, schedule(static, 1): tasks are handed out
 *     round-robin, which also balances causal attention, whose later query blocks see more keys.
 *
 * Determinism: every output element is computed by exactly one thread, in an order fixed by the
 * code (no atomics, no cross-thread reduction), so results do not depend on scheduling, and not
 * even on the thread count. No -ffast-math: NaN/inf follow IEEE rules, exp is libm's expf.
 */
#include "attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tile sizes. BQ x BK scores (8 KiB) plus a BK x Dk tile of K and a BK x Dv tile of V (16 KiB each
 * at D = 64) fit together in a 48 KiB L1; BQ is a multiple of the 4-row register block. */
enum { BQ = 32, BK = 64 };

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "attention_forward_fast: out of memory (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* Keys row i may see: all Tk, or with the causal mask j <= i, i.e. the first min(Tk, i+1). */
static size_t row_keys(size_t i, size_t Tk, int causal)
{
    return causal ? min_sz(Tk, i + 1) : Tk;
}

/* Score tile: S[r*lds + c] = scale * (q_{i0+r} . k_{j0+c}) + M_{i0+r, j0+c}, r < nr, c < nc.
 * Q points at row i0 of this (b, h)'s queries, K at row j0 of its keys; am (or NULL) at the
 * (i0, j0) element of its [Tq, Tk] additive mask; pad (or NULL) at key j0's padding flag. */
static void score_tile(float *restrict S, size_t lds, const float *restrict Q,
                       const float *restrict K, size_t nr, size_t nc, size_t Dk, float scale,
                       const float *restrict am, size_t Tk, const uint8_t *restrict pad,
                       int causal, size_t i0, size_t j0)
{
    size_t r = 0;
    for (; r + 4 <= nr; r += 4) {   /* O2: rows r..r+3 share each load of k_j */
        const float *restrict q0 = Q + r * Dk, *restrict q1 = q0 + Dk;
        const float *restrict q2 = q1 + Dk, *restrict q3 = q2 + Dk;
        for (size_t c = 0; c < nc; c++) {
            const float *restrict kc = K + c * Dk;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
            for (size_t d = 0; d < Dk; d++) {
                const float kd = kc[d];
                s0 += q0[d] * kd;
                s1 += q1[d] * kd;
                s2 += q2[d] * kd;
                s3 += q3[d] * kd;
            }
            S[r * lds + c] = scale * s0;
            S[(r + 1) * lds + c] = scale * s1;
            S[(r + 2) * lds + c] = scale * s2;
            S[(r + 3) * lds + c] = scale * s3;
        }
    }
    for (; r < nr; r++) {
        const float *restrict qr = Q + r * Dk;
        for (size_t c = 0; c < nc; c++) {
            const float *restrict kc = K + c * Dk;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (size_t d = 0; d < Dk; d++)
                s += qr[d] * kc[d];
            S[r * lds + c] = scale * s;
        }
    }

    /* + M: the additive mask, then -inf for padding keys and for the future (j > i). */
    for (r = 0; r < nr; r++) {
        float *restrict srow = S + r * lds;
        if (am) {
            const float *restrict mrow = am + r * Tk;
#pragma omp simd
            for (size_t c = 0; c < nc; c++)
                srow[c] += mrow[c];
        }
        if (pad) {
            for (size_t c = 0; c < nc; c++)
                if (pad[c])
                    srow[c] = -INFINITY;
        }
        if (causal) {
            const size_t i = i0 + r;
            for (size_t c = (i + 1 > j0 ? i + 1 - j0 : 0); c < nc; c++)
                srow[c] = -INFINITY;
        }
    }
}

static float row_max(const float *restrict x, size_t n)
{
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (size_t c = 0; c < n; c++)
        m = x[c] > m ? x[c] : m;
    return m;
}

/* x[c] = exp(x[c] - shift) in place; returns the sum. */
static float exp_shift_sum(float *restrict x, size_t n, float shift)
{
    float sum = 0.0f;
    for (size_t c = 0; c < n; c++) {
        x[c] = expf(x[c] - shift);
        sum += x[c];
    }
    return sum;
}

/* acc[e] += sum_c p[c] * V[c][e] over c < n (V row stride Dv); O2: four keys per pass. */
static void accumulate_pv(float *restrict acc, const float *restrict p, const float *restrict V,
                          size_t n, size_t Dv)
{
    size_t c = 0;
    for (; c + 4 <= n; c += 4) {
        const float p0 = p[c], p1 = p[c + 1], p2 = p[c + 2], p3 = p[c + 3];
        const float *restrict v0 = V + c * Dv, *restrict v1 = v0 + Dv;
        const float *restrict v2 = v1 + Dv, *restrict v3 = v2 + Dv;
#pragma omp simd
        for (size_t e = 0; e < Dv; e++)
            acc[e] = acc[e] + p0 * v0[e] + p1 * v1[e] + p2 * v2[e] + p3 * v3[e];
    }
    for (; c < n; c++) {
        const float pc = p[c];
        const float *restrict vc = V + c * Dv;
#pragma omp simd
        for (size_t e = 0; e < Dv; e++)
            acc[e] += pc * vc[e];
    }
}

static void fill(float *x, size_t n, float value)
{
    for (size_t t = 0; t < n; t++)
        x[t] = value;
}

/* probs == NULL: online softmax (O4) over key tiles, one BQ x BK score tile per thread. */
static void forward_streaming(float *out, const float *q, const float *k, const float *v,
                              const AttnMask *mask, float scale, size_t B, size_t H, size_t Tq,
                              size_t Tk, size_t Dk, size_t Dv)
{
    const size_t nqb = (Tq + BQ - 1) / BQ;
    const int causal = mask ? mask->causal : 0;

#pragma omp parallel
    {
        _Alignas(64) float S[BQ * BK];   /* the only scores that ever exist */
        float m[BQ], l[BQ];              /* running max and running sum per row */
        float *acc = xmalloc((size_t)BQ * Dv * sizeof *acc);   /* unnormalized sum p_j v_j */

#pragma omp for collapse(3) schedule(static, 1)
        for (size_t b = 0; b < B; b++) {
            for (size_t h = 0; h < H; h++) {
                for (size_t qb = 0; qb < nqb; qb++) {
                    const size_t bh = b * H + h;
                    const size_t i0 = qb * BQ, nr = min_sz(BQ, Tq - i0);
                    const float *Q = q + (bh * Tq + i0) * Dk;
                    const float *K = k + bh * Tk * Dk;
                    const float *V = v + bh * Tk * Dv;
                    const float *am = (mask && mask->attn_mask)
                        ? mask->attn_mask + b * mask->stride_b + h * mask->stride_h + i0 * Tk
                        : NULL;
                    const uint8_t *pad = (mask && mask->key_padding_mask)
                        ? mask->key_padding_mask + b * Tk : NULL;
                    /* O5: keys j >= i0 + nr are in the future of every row of the block. */
                    const size_t jend = causal ? min_sz(Tk, i0 + nr) : Tk;

                    for (size_t r = 0; r < nr; r++) {
                        m[r] = -INFINITY;
                        l[r] = 0.0f;
                    }
                    memset(acc, 0, nr * Dv * sizeof *acc);

                    for (size_t j0 = 0; j0 < jend; j0 += BK) {
                        const size_t nc = min_sz(BK, jend - j0);
                        score_tile(S, BK, Q, K + j0 * Dk, nr, nc, Dk, scale,
                                   am ? am + j0 : NULL, Tk, pad ? pad + j0 : NULL, causal, i0, j0);

                        for (size_t r = 0; r < nr; r++) {
                            const size_t kr = row_keys(i0 + r, Tk, causal);
                            if (kr <= j0)
                                continue;   /* O5: this row's keys ended before the tile */
                            const size_t ncr = min_sz(nc, kr - j0);
                            float *restrict srow = S + r * BK;

                            /* m_new = max(m_old, max_c s_c). If it is still -inf, every score
                             * so far is -inf: the tile adds nothing, and skipping it avoids
                             * exp(-inf - (-inf)) = NaN, which would poison a row that a later
                             * tile may still fill. */
                            const float m_new = fmaxf(m[r], row_max(srow, ncr));
                            if (m_new == -INFINITY)
                                continue;
                            const float psum = exp_shift_sum(srow, ncr, m_new);
                            float *restrict a = acc + r * Dv;
                            if (m_new != m[r]) {
                                /* Rescale: earlier terms were exp(s - m_old); now they must be
                                 * exp(s - m_new) = exp(s - m_old) * exp(m_old - m_new). When
                                 * m_old = -inf, alpha = exp(-inf) = 0 and l, acc are 0 anyway. */
                                const float alpha = expf(m[r] - m_new);
                                l[r] *= alpha;
#pragma omp simd
                                for (size_t e = 0; e < Dv; e++)
                                    a[e] *= alpha;
                                m[r] = m_new;
                            }
                            l[r] += psum;
                            accumulate_pv(a, srow, V + j0 * Dv, ncr, Dv);
                        }
                    }

                    /* out_i = acc_i / l_i. l = 0 only if no key had a finite score (a tile with
                     * a finite max contributes exp(0) = 1): the fully masked row, which PyTorch
                     * returns as NaN (softmax of all -inf), and so do we. */
                    for (size_t r = 0; r < nr; r++) {
                        float *restrict o = out + (bh * Tq + i0 + r) * Dv;
                        const float *restrict a = acc + r * Dv;
                        if (l[r] == 0.0f) {
                            fill(o, Dv, NAN);
                            continue;
                        }
                        const float inv = 1.0f / l[r];   /* O6 */
#pragma omp simd
                        for (size_t e = 0; e < Dv; e++)
                            o[e] = a[e] * inv;
                    }
                }
            }
        }
        free(acc);
    }
}

/* probs != NULL: the caller wants the [Tq, Tk] probabilities, so they are materialized (in
 * probs itself, no scratch): scores by tiles, a vectorized softmax per row, then P V by tiles. */
static void forward_with_probs(float *out, float *probs, const float *q, const float *k,
                               const float *v, const AttnMask *mask, float scale, size_t B,
                               size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    const size_t nqb = (Tq + BQ - 1) / BQ;
    const int causal = mask ? mask->causal : 0;

#pragma omp parallel for collapse(3) schedule(static, 1)
    for (size_t b = 0; b < B; b++) {
        for (size_t h = 0; h < H; h++) {
            for (size_t qb = 0; qb < nqb; qb++) {
                const size_t bh = b * H + h;
                const size_t i0 = qb * BQ, nr = min_sz(BQ, Tq - i0);
                const float *Q = q + (bh * Tq + i0) * Dk;
                const float *K = k + bh * Tk * Dk;
                const float *V = v + bh * Tk * Dv;
                float *P = probs + (bh * Tq + i0) * Tk;   /* rows i0.. of this (b, h) */
                float *O = out + (bh * Tq + i0) * Dv;
                const float *am = (mask && mask->attn_mask)
                    ? mask->attn_mask + b * mask->stride_b + h * mask->stride_h + i0 * Tk
                    : NULL;
                const uint8_t *pad = (mask && mask->key_padding_mask)
                    ? mask->key_padding_mask + b * Tk : NULL;
                const size_t jend = causal ? min_sz(Tk, i0 + nr) : Tk;   /* O5 */
                int dead[BQ];   /* 1: fully masked row */

                for (size_t j0 = 0; j0 < jend; j0 += BK)   /* O1, O2 */
                    score_tile(P + j0, Tk, Q, K + j0 * Dk, nr, min_sz(BK, jend - j0), Dk, scale,
                               am ? am + j0 : NULL, Tk, pad ? pad + j0 : NULL, causal, i0, j0);

                for (size_t r = 0; r < nr; r++) {
                    float *restrict prow = P + r * Tk;
                    const size_t kr = row_keys(i0 + r, Tk, causal);
                    const float mx = row_max(prow, kr);
                    dead[r] = (mx == -INFINITY);
                    if (dead[r]) {
                        /* All scores -inf: PyTorch's softmax gives NaN for the whole row. */
                        fill(prow, Tk, NAN);
                        continue;
                    }
                    const float inv = 1.0f / exp_shift_sum(prow, kr, mx);   /* O6 */
#pragma omp simd
                    for (size_t c = 0; c < kr; c++)
                        prow[c] *= inv;
                    fill(prow + kr, Tk - kr, 0.0f);   /* the future: exp(-inf) = 0 */
                }

                memset(O, 0, nr * Dv * sizeof *O);
                for (size_t j0 = 0; j0 < jend; j0 += BK) {   /* O1: the V tile serves nr rows */
                    const size_t nc = min_sz(BK, jend - j0);
                    for (size_t r = 0; r < nr; r++) {
                        const size_t kr = row_keys(i0 + r, Tk, causal);
                        if (dead[r] || kr <= j0)
                            continue;
                        accumulate_pv(O + r * Dv, P + r * Tk + j0, V + j0 * Dv,
                                      min_sz(nc, kr - j0), Dv);
                    }
                }
                for (size_t r = 0; r < nr; r++)
                    if (dead[r])
                        fill(O + r * Dv, Dv, NAN);   /* NaN probabilities give a NaN output */
            }
        }
    }
}

void attention_forward_fast(float *out, float *probs, const float *q, const float *k,
                            const float *v, const AttnMask *mask, float scale,
                            size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    if (scale <= 0.0f)
        scale = 1.0f / sqrtf((float)Dk);
    if (Tk == 0) {
        /* No keys at all: softmax over an empty row is empty and P V an empty sum, i.e. zeros
         * (as in naive and PyTorch); this is not the all-masked NaN case. */
        memset(out, 0, B * H * Tq * Dv * sizeof *out);
        return;
    }
    if (probs)
        forward_with_probs(out, probs, q, k, v, mask, scale, B, H, Tq, Tk, Dk, Dv);
    else
        forward_streaming(out, q, k, v, mask, scale, B, H, Tq, Tk, Dk, Dv);
}
