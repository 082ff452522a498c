/* positional_fast.c — the same encodings as positional_naive.c, organized for the machine.
 *
 *   PE[p, 2i] = sin(p w_i),  PE[p, 2i+1] = cos(p w_i),  w_i = 10000^(-2i/E)
 *   out[b, t, :] = (word_emb[input_ids[b,t]] + type_emb[token_type_ids[b,t]])
 *                  + pos_emb[position_ids[b,t]]
 *
 * Legend and layout: positional_naive.c (t row, p its position, j column, i pair, b batch).
 *
 * Sinusoidal table. The naive version calls pow and sin or cos for every element: about
 * 2 T E libm calls, which is all of its time. The optimizations, each with what it saves:
 *
 *  O1 frequencies once: w_i = 10000^(-2i/E) for the ceil(E/2) pairs, before any row: T E pow
 *     calls become E/2, and the angle is a multiplication p * w_i, not a division.
 *  O2 angle-addition recurrence across rows: with the row step d = p' - p,
 *         sin(p' w) = sin(p w) cos(d w) + cos(p w) sin(d w)
 *         cos(p' w) = cos(p w) cos(d w) - sin(p w) sin(d w),
 *     so a row costs 4 multiplications and 2 additions per pair, given the previous row and the
 *     rotation (cos(d w), sin(d w)), instead of a sin and a cos. The loop over pairs is unit
 *     stride and branch free: it vectorizes (`omp simd`, FMA under FAST_CFLAGS).
 *  O3 periodic re-anchoring: the rows are cut into blocks of R = PE_ANCHOR_EVERY; the first row
 *     of a block is computed exactly (sin and cos of p w_i), and so is the rotation, once per
 *     block. That bounds how far rounding can drift (below), and makes the blocks independent.
 *     A row whose step differs from the block's (positions that are not an arithmetic
 *     progression) is anchored too, so any positions are handled exactly; a table of
 *     consecutive or evenly strided positions costs 4 libm calls per pair every R rows, i.e.
 *     2/R of the naive count (1/32 at R = 64).
 *  O4 OpenMP over blocks, schedule(static): each block is computed by one thread from its own
 *     anchor, so the table does not depend on the thread count, bit for bit.
 *  O5 no allocation per call: the frequencies and each thread's state are scratch-arena
 *     buffers (chapters/00-tensors/arena.h), allocated on the first call at a width and reused.
 *
 * Accuracy of the recurrence. The state (sin, cos of each pair) is carried in double and only
 * the stored value is rounded to float32. Each step adds a few double roundings (~1e-16) and
 * the rounded rotation turns the phase by at most ~1e-16 too much or too little, so after the
 * R - 1 steps of a block the state is within ~1e-14 of the exact values: invisible next to
 * float32's own rounding (3e-8), so the table is as accurate as the naive one (moving the
 * anchors changes no bit of it). With the rotation rounded to float32 instead, each step turns
 * by a slightly wrong angle and the errors add up: measured 1.9e-6 after fewer than 64 steps,
 * 60 times float32's rounding; the anchors would have to come every row or two.
 *
 * Embeddings. A gather and two additions per element, bound by memory traffic, so the gains are
 * modest and come from doing each thing once: the ids are validated in one pass before any work
 * (no bounds test inside the loops), the three rows are summed in one fused, `omp simd` pass
 * with restrict pointers (one store per element), and the B T rows are split over threads. The
 * addition order is the naive one, (word + type) + pos, so the result is the same bit for bit.
 *
 * Embeddings, backward (chapter 07): a scatter-add, where two tokens with the same id add into
 * the same row. Threads own blocks of EMB_COLS columns of every table and each walks all tokens
 * in order: no atomics, no per-thread copies of a 30522-row table to merge, and every element
 * sums its tokens in the naive order, so the result is naive's bit for bit on any thread
 * count. Within a block, the token's three row slices are one `omp simd` pass.
 */
#include "positional.h"
#include "arena.h"

#include <math.h>

/* Stores one row from the double state: sin in even columns, cos in odd ones, and for odd E
 * the last column's sin alone. */
static void store_row(float *restrict row, const double *restrict s, const double *restrict c,
                      size_t E)
{
    const size_t half = E / 2;
#pragma omp simd
    for (size_t i = 0; i < half; i++) {
        row[2 * i] = (float)s[i];
        row[2 * i + 1] = (float)c[i];
    }
    if (E % 2)
        row[E - 1] = (float)s[half];
}

/* s_i = sin(p w_i), c_i = cos(p w_i), exactly (up to libm's double rounding). */
static void anchor(double *restrict s, double *restrict c, const double *restrict w, size_t npair,
                   double p)
{
    for (size_t i = 0; i < npair; i++) {
        const double a = p * w[i];
        s[i] = sin(a);
        c[i] = cos(a);
    }
}

/* Position of row t: positions[t], or t itself when positions is NULL. */
static inline int64_t pos_at(const int64_t *positions, size_t t)
{
    return positions ? positions[t] : (int64_t)t;
}

void pe_sinusoidal_fast(float *pe, const int64_t *positions, size_t T, size_t E)
{
    if (T == 0 || E == 0)
        return;
    const size_t npair = (E + 1) / 2;   /* frequencies, the unpaired last column's included */
    /* [npair]: the calling thread's arena buffer (arena.h), written whole here. */
    double *w = tfm_arena_get(TFM_SCRATCH_PE_FREQ, npair, sizeof *w, "pe_sinusoidal_fast");
    for (size_t i = 0; i < npair; i++)  /* O1 */
        w[i] = pow(10000.0, -(double)(2 * i) / (double)E);
    const size_t R = PE_ANCHOR_EVERY;
    const size_t nblocks = (T + R - 1) / R;

#pragma omp parallel
    {
        /* per thread: the state (s, c) of the current row and the block's rotation (rc, rs),
         * [4, npair] in the thread's arena buffer, not zeroed: s and c are set by the block's
         * anchor, rc and rs before the first rotation that reads them */
        double *buf = tfm_arena_get(TFM_SCRATCH_PE_STATE, 4 * npair, sizeof *buf,
                                    "pe_sinusoidal_fast");
        double *s = buf, *c = s + npair, *rc = c + npair, *rs = rc + npair;

#pragma omp for schedule(static)   /* O4 */
        for (size_t blk = 0; blk < nblocks; blk++) {
            const size_t t0 = blk * R, t1 = t0 + R < T ? t0 + R : T;
            anchor(s, c, w, npair, (double)pos_at(positions, t0));   /* O3 */
            store_row(pe + t0 * E, s, c, E);
            int have_step = 0;   /* 1 once (rc, rs) rotates by `step` */
            int64_t step = 0;
            for (size_t t = t0 + 1; t < t1; t++) {
                const int64_t d = pos_at(positions, t) - pos_at(positions, t - 1);
                if (have_step && d != step) {
                    /* the positions changed stride: anchor here, take the next step as new */
                    anchor(s, c, w, npair, (double)pos_at(positions, t));
                    have_step = 0;
                } else {
                    if (!have_step) {
                        for (size_t i = 0; i < npair; i++) {
                            rc[i] = cos((double)d * w[i]);
                            rs[i] = sin((double)d * w[i]);
                        }
                        step = d;
                        have_step = 1;
                    }
                    /* O2: rotate every pair by d w_i */
#pragma omp simd
                    for (size_t i = 0; i < npair; i++) {
                        const double sn = s[i] * rc[i] + c[i] * rs[i];
                        const double cn = c[i] * rc[i] - s[i] * rs[i];
                        s[i] = sn;
                        c[i] = cn;
                    }
                }
                store_row(pe + t * E, s, c, E);
            }
        }
    }
}

int embeddings_forward_fast(float *out, EmbBadId *bad, const int64_t *input_ids,
                            const int64_t *position_ids, const int64_t *token_type_ids,
                            const float *word_emb, const float *pos_emb, const float *type_emb,
                            size_t B, size_t T, size_t E, size_t V, size_t P, size_t G)
{
    if (!type_emb)
        G = 0;
    /* validation hoisted out of the loops: one pass over the ids, none per element */
    if (embeddings_check_ids(bad, input_ids, position_ids, token_type_ids, B, T, V, P, G) != 0)
        return -1;
    const size_t n = B * T;
#pragma omp parallel for schedule(static)
    for (size_t bt = 0; bt < n; bt++) {
        const size_t t = bt % T;
        const float *restrict wr = word_emb + (size_t)input_ids[bt] * E;
        const float *restrict pr = pos_emb + (position_ids ? (size_t)position_ids[bt] : t) * E;
        float *restrict o = out + bt * E;
        if (G > 0) {
            const float *restrict gr =
                type_emb + (token_type_ids ? (size_t)token_type_ids[bt] : 0) * E;
#pragma omp simd
            for (size_t j = 0; j < E; j++)
                o[j] = (wr[j] + gr[j]) + pr[j];
        } else {
#pragma omp simd
            for (size_t j = 0; j < E; j++)
                o[j] = wr[j] + pr[j];
        }
    }
    return 0;
}

/* Columns per thread block of the backward: a few cache lines of each of a token's rows. */
enum { EMB_COLS = 64 };

int embeddings_backward_fast(float *dword, float *dpos, float *dtype, EmbBadId *bad,
                             const float *dout, const int64_t *input_ids,
                             const int64_t *position_ids, const int64_t *token_type_ids,
                             int64_t padding_idx, size_t B, size_t T, size_t E, size_t V,
                             size_t P, size_t G)
{
    if (!dtype)
        G = 0;
    if (embeddings_check_ids(bad, input_ids, position_ids, token_type_ids, B, T, V, P, G) != 0)
        return -1;
    const size_t n = B * T, blocks = (E + EMB_COLS - 1) / EMB_COLS;
#pragma omp parallel for schedule(static) if (n * E >= ((size_t)1 << 15))
    for (size_t blk = 0; blk < blocks; blk++) {
        const size_t j0 = blk * EMB_COLS, nj = E - j0 < EMB_COLS ? E - j0 : EMB_COLS;
        for (size_t bt = 0; bt < n; bt++) {
            const float *restrict d = dout + bt * E + j0;
            if (dword && input_ids[bt] != padding_idx) {
                float *restrict w = dword + (size_t)input_ids[bt] * E + j0;
#pragma omp simd
                for (size_t j = 0; j < nj; j++)
                    w[j] += d[j];
            }
            if (G > 0) {
                const size_t row = token_type_ids ? (size_t)token_type_ids[bt] : 0;
                float *restrict g = dtype + row * E + j0;
#pragma omp simd
                for (size_t j = 0; j < nj; j++)
                    g[j] += d[j];
            }
            if (dpos) {
                const size_t row = position_ids ? (size_t)position_ids[bt] : bt % T;
                float *restrict p = dpos + row * E + j0;
#pragma omp simd
                for (size_t j = 0; j < nj; j++)
                    p[j] += d[j];
            }
        }
    }
    return 0;
}
