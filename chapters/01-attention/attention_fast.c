/* attention_fast.c — the same attention as attention_naive.c, organized for the machine.
 *
 *   out = softmax(scale * Q K^T + M) V        (legend and layout: attention_naive.c)
 *
 * Work is split into independent tasks (b, h, query block of BQ rows); inside a task the keys are
 * visited in tiles of BK. The optimizations, each with what it saves:
 *
 *  O1 query blocking: the BQ rows of a block share every K/V tile while it is in cache, so K and
 *     V are streamed from memory Tq/BQ times per (b, h) instead of Tq times.
 *  O2 register blocking (score_tile, pv_tile): the score tile is computed as a small matrix
 *     product from a transposed K tile, four query rows at a time, so each K load feeds four
 *     FMAs and no dot product ends in a horizontal sum across vector lanes; P V keeps a 4-row x
 *     16-column block of accumulators in registers over all keys of the tile, so each V load
 *     feeds four FMAs and the accumulators are loaded and stored once per tile, not per key.
 *  O3 unit-stride, restrict-qualified inner loops (over keys in Kt, over Dv in V) marked
 *     `omp simd`: full-width vector FMAs (FAST_CFLAGS contracts a*b+c into one FMA).
 *  O4 online softmax (probs == NULL): a running max m and sum l per row and an accumulator that
 *     is rescaled by exp(m_old - m_new) when the max grows. Only one score tile (BQ x BKS) exists
 *     per thread, never the Tq x Tk matrix: no Tq*Tk memory traffic at all, and out is written once.
 *  O5 causal tile skipping: key tiles lying entirely above the diagonal (every j > every i of the
 *     block) are neither computed nor exponentiated, and inside the diagonal tile each row's exps
 *     stop at j = i. That halves causal attention (about Tq*Tk/2 scores and exps, not Tq*Tk).
 *  O6 one reciprocal per row: normalization multiplies by 1/l instead of dividing Tk (or Dv) times.
 *  O7 vectorized exponentials: tfm_expf (chapters/00-tensors/tfm_exp.h) is branch-free, so a
 *     whole score row is exponentiated 16 lanes at a time (libm's expf is one scalar call per
 *     score); the sum is then a separate vector reduction in a fixed lane order.
 *  O8 OpenMP over the (b, h, query block) tasks, schedule(static, 1): tasks are handed out
 *     round-robin, which also balances causal attention, whose later query blocks see more keys.
 *  O9 strided operands (attention_forward_fast_strided): every row of Q, K, V and out is found
 *     through its own (batch, head, token) strides, so a caller whose heads are interleaved in
 *     one [B, T, H*D] buffer (chapter 02) needs no transpose into [B, H, T, D] and back: that
 *     saves a copy of each of Q, K and V, and one of out, per call. Inner loops still run over the
 *     contiguous feature dimension.
 * O10 transposed tiles in the streaming path (score_tile_t, pv_tile_t): the block's queries are
 *     transposed once per task into Qt [Dk, BQ] and the score tile is stored by keys, St [BKS,
 *     BQ]. A vector then holds 16 query rows of one key, so SK = 8 keys x BQ rows of
 *     accumulators stay in registers, each Qt (or probability) load feeds 8 FMAs and each K (or
 *     V) entry is one broadcast. The earlier row-major tiles transposed K once per tile and task
 *     and reloaded each V vector for every row it served; loads, not FMAs, bounded them.
 *  O11 vertical online softmax: with St stored by keys, the running max, the exps, the sums and
 *     the rescale of all BQ rows are lane-wise vector operations (lane r is row r), with no
 *     horizontal reduction and no per-row branch.
 * O12 the training forward (attention_forward_lse_fast) is the streaming path, which already
 *     holds each row's running max m and sum l: saving lse's parts, m and log l, costs one log
 *     per row.
 * O13 backward, FlashAttention-2's scheme (attention.h): one task per (b, h). For each block of
 *     BQ queries, its rows of Q and dO are transposed once (pack_queries, as in O10) and its
 *     D_i = dO_i . out_i computed; then for each key block of BK keys it can see (O5 skips the
 *     rest when causal) the score tile is recomputed by key (score_tile_t) and exponentiated
 *     against the saved lse into P^T, dP^T = V dO^T is the same tile product, dS^T = scale P^T
 *     (dP^T - D) is a vertical pass, and the three products follow: dQ^T += K^T dS^T into the
 *     block's [Dk, BQ] accumulator (pv_tile_t), dV += P^T dO and dK += dS^T Q (madd_tile, O14),
 *     whose key-major tiles are already laid out as those products want them: nothing is
 *     transposed per tile. No [Tq, Tk] buffer exists: per thread, two BK x BQ tiles on the stack
 *     and three [D, BQ] tiles (arena), O(T D) in all. Each task owns its dq, dk, dv rows, so
 *     there are no atomics and the bits do not depend on the thread count; the price is that
 *     B*H tasks must keep the threads busy (BERT's B*H is 8 * 12).
 * O14 dV and dK (madd_tile): MT_M key rows x MT_N feature columns of accumulators stay in
 *     registers over the block's BQ queries, and each vector load of dO (or Q) feeds MT_M FMAs.
 *     With pv_tile (four rows x PV_E columns, reloaded every call) the whole backward took 1.2x
 *     as long (Xeon, T = 512, 8-float vectors).
 *
 * Determinism: every output element is computed by exactly one thread, in an order fixed by the
 * code (no atomics, no cross-thread reduction), so results do not depend on scheduling, and not
 * even on the thread count (tests/test_01_attention.c checks 1 vs 3 threads bit for bit).
 * No -ffast-math: NaN/inf follow IEEE rules. exp is tfm_expf (chapters/00-tensors/tfm_exp.h):
 * glibc's expf is a scalar call (its vector variant is only selected under -ffast-math), and at
 * D = 64 those calls were about a third of the time; tfm_expf is the same function within 1.2
 * ulp, written so that the loop over a score row vectorizes (O7).
 *
 * Scratch: each thread's tiles that do not fit on its stack (Qt and the accumulator, or the
 * transposed key tile) are its buffers in the scratch arena (chapters/00-tensors/arena.h),
 * allocated on the first call at a shape and reused by every later one.
 */
#include "attention.h"
#include "arena.h"
#include "tfm_exp.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Tile sizes. At D = 64 a task's working set is the BQ x BK scores (8 KiB), the transposed K tile
 * and the V tile (16 KiB each), BQ rows of Q and of the accumulator (8 KiB each): L1 plus a little
 * L2. Measured on Zen 5 at B=1 H=8 T=2048 D=64, one thread, over BQ 16..64 x BK 32..128: this
 * choice is within 15% of the best (BQ 64, BK 128), every BK = 32 is about 30% slower (more
 * rescales and loop overhead per key). BQ is a multiple of the 4-row register block, and small
 * enough to leave many tasks for the threads when sequences are short. BK is the key tile of the
 * path that stores probs; the streaming path (O10) takes BKS = 128 keys per tile, a 16 KiB St,
 * which halves its per-tile overhead (the rescale of the accumulator) against BKS = 64. */
enum { BQ = 32, BK = 64, BKS = 128 };

static const char WHO[] = "attention_forward_fast";   /* names us in an out-of-memory message */

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* Keys row i may see: all Tk, or with the causal mask j <= i, i.e. the first min(Tk, i+1). */
static size_t row_keys(size_t i, size_t Tk, int causal)
{
    return causal ? min_sz(Tk, i + 1) : Tk;
}

/* Score tile: S[r*lds + c] = scale * (q_{i0+r} . k_{j0+c}) + M_{i0+r, j0+c}, r < nr, c < nc.
 * Q points at row i0 of this (b, h)'s queries, K at row j0 of its keys, ldq and ldk their row
 * strides (O9); am (or NULL) at the (i0, j0) element of its [Tq, Tk] additive mask; pad (or
 * NULL) at key j0's padding flag.
 * Kt is the thread's [Dk, BK] scratch.
 *
 * O2: the tile is a small matrix product S = Q K^T. Written as nc separate dot products it would
 * end every one with a horizontal sum across vector lanes; instead K's tile is transposed once
 * into Kt[d][c] (cost BK*Dk, shared by all nr rows) and each score row is built as
 * s[0..BK) += q[d] * Kt[d][0..BK), a unit-stride vector FMA over keys. Four query rows run
 * together, so their four BK-wide accumulators stay in registers and each Kt load feeds four
 * FMAs. Each score is still summed over d in order 0, 1, ..., Dk-1, like the naive dot. */
static void score_tile(float *restrict S, size_t lds, const float *restrict Q, size_t ldq,
                       const float *restrict K, size_t ldk, float *restrict Kt, size_t nr,
                       size_t nc, size_t Dk, float scale, const float *restrict am, size_t Tk,
                       const uint8_t *restrict pad, int causal, size_t i0, size_t j0)
{
    for (size_t d = 0; d < Dk; d++) {
        float *restrict kt = Kt + d * BK;
        for (size_t c = 0; c < nc; c++)
            kt[c] = K[c * ldk + d];
        for (size_t c = nc; c < BK; c++)
            kt[c] = 0.0f;   /* a partial tile's unused columns: computed, never stored */
    }

    size_t r = 0;
    for (; r + 4 <= nr; r += 4) {
        const float *restrict q0 = Q + r * ldq, *restrict q1 = q0 + ldq;
        const float *restrict q2 = q1 + ldq, *restrict q3 = q2 + ldq;
        float s0[BK] = {0}, s1[BK] = {0}, s2[BK] = {0}, s3[BK] = {0};
        for (size_t d = 0; d < Dk; d++) {
            const float a0 = q0[d], a1 = q1[d], a2 = q2[d], a3 = q3[d];
            const float *restrict kt = Kt + d * BK;
#pragma omp simd
            for (size_t c = 0; c < BK; c++) {
                s0[c] += a0 * kt[c];
                s1[c] += a1 * kt[c];
                s2[c] += a2 * kt[c];
                s3[c] += a3 * kt[c];
            }
        }
        for (size_t c = 0; c < nc; c++) {
            S[r * lds + c] = scale * s0[c];
            S[(r + 1) * lds + c] = scale * s1[c];
            S[(r + 2) * lds + c] = scale * s2[c];
            S[(r + 3) * lds + c] = scale * s3[c];
        }
    }
    for (; r < nr; r++) {   /* the last nr % 4 rows, one at a time */
        const float *restrict qr = Q + r * ldq;
        float s0[BK] = {0};
        for (size_t d = 0; d < Dk; d++) {
            const float a0 = qr[d];
            const float *restrict kt = Kt + d * BK;
#pragma omp simd
            for (size_t c = 0; c < BK; c++)
                s0[c] += a0 * kt[c];
        }
        for (size_t c = 0; c < nc; c++)
            S[r * lds + c] = scale * s0[c];
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
    /* OpenMP leaves the starting value of each lane of a max reduction to the compiler: gcc
     * starts at -inf, clang at -FLT_MAX, and the starting value is always combined into the
     * result. So a row of all -inf (fully masked) comes out of clang's loop as -FLT_MAX. Any
     * result that low is recomputed with a plain scalar loop, which is exact: a fully masked
     * row must be recognized as -inf, and this costs nothing on rows with a finite score. */
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (size_t c = 0; c < n; c++)
        m = x[c] > m ? x[c] : m;
    if (m <= -FLT_MAX) {
        m = -INFINITY;
        for (size_t c = 0; c < n; c++)
            m = x[c] > m ? x[c] : m;
    }
    return m;
}

/* x[c] = exp(x[c] - shift) in place; returns the sum. O7: the exps are one vectorized loop, the
 * sum a separate vector reduction (in a fixed lane order), not one long chain of dependent
 * scalar additions. */
static float exp_shift_sum(float *restrict x, size_t n, float shift)
{
#pragma omp simd
    for (size_t c = 0; c < n; c++)
        x[c] = tfm_expf(x[c] - shift);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (size_t c = 0; c < n; c++)
        sum += x[c];
    return sum;
}

/* P V tile: A[r*lda + e] += sum_{c < nc} P[r*ldp + c] * V[c*ldv + e], r < nr, e < Dv.
 *
 * O2: four rows and PV_E value columns at a time: 4 x PV_E accumulators live in registers for
 * the whole key loop, and each V load feeds four FMAs, so the loop runs at FMA speed instead of
 * reloading and storing A for every key. Each A element still sums its keys in order c = 0, 1,
 * ... like the naive loop. */
enum { PV_E = 16 };

static void pv_rows4(float *restrict A, size_t lda, const float *restrict P, size_t ldp,
                     const float *restrict V, size_t ldv, size_t nc, size_t e0, size_t ne)
{
    float a0[PV_E], a1[PV_E], a2[PV_E], a3[PV_E];
    for (size_t x = 0; x < ne; x++) {
        a0[x] = A[e0 + x];
        a1[x] = A[lda + e0 + x];
        a2[x] = A[2 * lda + e0 + x];
        a3[x] = A[3 * lda + e0 + x];
    }
    if (ne == PV_E) {
        for (size_t c = 0; c < nc; c++) {
            const float p0 = P[c], p1 = P[ldp + c], p2 = P[2 * ldp + c], p3 = P[3 * ldp + c];
            const float *restrict vc = V + c * ldv + e0;
#pragma omp simd
            for (size_t x = 0; x < PV_E; x++) {
                a0[x] += p0 * vc[x];
                a1[x] += p1 * vc[x];
                a2[x] += p2 * vc[x];
                a3[x] += p3 * vc[x];
            }
        }
    } else {   /* the last Dv % PV_E columns */
        for (size_t c = 0; c < nc; c++) {
            const float p0 = P[c], p1 = P[ldp + c], p2 = P[2 * ldp + c], p3 = P[3 * ldp + c];
            const float *restrict vc = V + c * ldv + e0;
            for (size_t x = 0; x < ne; x++) {
                a0[x] += p0 * vc[x];
                a1[x] += p1 * vc[x];
                a2[x] += p2 * vc[x];
                a3[x] += p3 * vc[x];
            }
        }
    }
    for (size_t x = 0; x < ne; x++) {
        A[e0 + x] = a0[x];
        A[lda + e0 + x] = a1[x];
        A[2 * lda + e0 + x] = a2[x];
        A[3 * lda + e0 + x] = a3[x];
    }
}

static void pv_tile(float *restrict A, size_t lda, const float *restrict P, size_t ldp,
                    const float *restrict V, size_t ldv, size_t nr, size_t nc, size_t Dv)
{
    size_t r = 0;
    for (; r + 4 <= nr; r += 4)
        for (size_t e0 = 0; e0 < Dv; e0 += PV_E)
            pv_rows4(A + r * lda, lda, P + r * ldp, ldp, V, ldv, nc, e0, min_sz(PV_E, Dv - e0));
    for (; r < nr; r++) {   /* the last nr % 4 rows, one at a time */
        float *restrict a = A + r * lda;
        const float *restrict p = P + r * ldp;
        for (size_t c = 0; c < nc; c++) {
            const float pc = p[c];
            const float *restrict vc = V + c * ldv;
#pragma omp simd
            for (size_t e = 0; e < Dv; e++)
                a[e] += pc * vc[e];
        }
    }
}

static void fill(float *x, size_t n, float value)
{
    for (size_t t = 0; t < n; t++)
        x[t] = value;
}

/* Offset of row t of head (b, h) in an operand laid out with strides s (O9). */
static size_t row_at(AttnStride s, size_t b, size_t h, size_t t)
{
    return b * s.batch + h * s.head + t * s.token;
}

/* Streaming score tile, stored by keys: St[c*BQ + r] = scale * (q_{i0+r} . k_{j0+c}) + M, for
 * c < nc and all BQ rows r (rows past the block's nr hold zero queries, so their scores are a
 * harmless 0). Qt is the block's [Dk, BQ] transposed queries (pack_queries), K points at key j0
 * with row stride ldk (O9); am, pad, causal, i0, j0 as for score_tile.
 *
 * O10 transposed score tile: the roles of score_tile are swapped. The queries are transposed
 * once per task (BQ*Dk copies, shared by all Tk keys) instead of transposing K once per tile
 * and task (BK*Dk copies per tile), and each score column is built as
 * s[0..BQ) += k[d] * Qt[d][0..BQ), a unit-stride vector FMA over the block's rows. SK keys run
 * together, so SK x BQ accumulators stay in registers and each Qt load feeds SK FMAs, while
 * k[d] is one broadcast. Storing S by keys also makes every softmax step of the tile a
 * vertical, lane-wise operation across the BQ rows (O11). Each score is still summed over d in
 * order 0, 1, ..., Dk-1. */
enum { SK = 8 };

static void score_tile_t(float *restrict St, const float *restrict Qt, const float *restrict K,
                         size_t ldk, size_t nr, size_t nc, size_t Dk, float scale,
                         const float *restrict am, size_t Tk, const uint8_t *restrict pad,
                         int causal, size_t i0, size_t j0)
{
    size_t c = 0;
    for (; c + SK <= nc; c += SK) {
        float s[SK][BQ];   /* the accumulators: SK * BQ / 16 vector registers */
        for (size_t u = 0; u < SK; u++)
#pragma omp simd
            for (size_t r = 0; r < BQ; r++)
                s[u][r] = 0.0f;
        const float *restrict kc = K + c * ldk;
        for (size_t d = 0; d < Dk; d++) {
            const float *restrict qt = Qt + d * BQ;
            for (size_t u = 0; u < SK; u++) {
                const float kd = kc[u * ldk + d];
#pragma omp simd
                for (size_t r = 0; r < BQ; r++)
                    s[u][r] += kd * qt[r];
            }
        }
        for (size_t u = 0; u < SK; u++)
#pragma omp simd
            for (size_t r = 0; r < BQ; r++)
                St[(c + u) * BQ + r] = scale * s[u][r];
    }
    for (; c < nc; c++) {   /* the last nc % SK keys, one at a time */
        float s0[BQ] = {0};
        const float *restrict kc = K + c * ldk;
        for (size_t d = 0; d < Dk; d++) {
            const float kd = kc[d];
            const float *restrict qt = Qt + d * BQ;
#pragma omp simd
            for (size_t r = 0; r < BQ; r++)
                s0[r] += kd * qt[r];
        }
#pragma omp simd
        for (size_t r = 0; r < BQ; r++)
            St[c * BQ + r] = scale * s0[r];
    }

    /* + M: the additive mask, then -inf for padding keys and for the future (j > i). */
    if (am)
        for (size_t r = 0; r < nr; r++)
            for (c = 0; c < nc; c++)
                St[c * BQ + r] += am[r * Tk + c];
    if (pad)
        for (c = 0; c < nc; c++)
            if (pad[c])
                for (size_t r = 0; r < nr; r++)
                    St[c * BQ + r] = -INFINITY;
    if (causal && j0 + nc > i0 + 1)   /* only a tile that reaches past the block's first row */
        for (c = 0; c < nc; c++)
            for (size_t r = 0; r < nr; r++)
                if (j0 + c > i0 + r)
                    St[c * BQ + r] = -INFINITY;
}

/* Qt[d*BQ + r] = Q[r*ldq + d] for r < nr, zero for the rows a short last block lacks. */
static void pack_queries(float *restrict Qt, const float *restrict Q, size_t ldq, size_t nr,
                         size_t Dk)
{
    for (size_t d = 0; d < Dk; d++)
        for (size_t r = 0; r < BQ; r++)
            Qt[d * BQ + r] = r < nr ? Q[r * ldq + d] : 0.0f;
}

/* Streaming P V, transposed like the scores: At[e*BQ + r] += sum_{c < nc} St[c*BQ + r] *
 * V[c*ldv + e] for all BQ rows and e < Dv. At is the [Dv, BQ] accumulator of the block.
 *
 * O10 for P V: the same register block as score_tile_t, with St's key row in the role of Qt's
 * row and V's entries in the role of k's: SK value columns x BQ rows of accumulators stay in
 * registers over all keys of the tile, each load of probabilities feeds SK FMAs and each V
 * entry is one broadcast. (The row-major pv_tile reloads each V vector for every row it
 * serves, and loads, not FMAs, then bound the loop.) Each At element still sums its keys in
 * order c = 0, 1, ... */
static void pv_tile_t(float *restrict At, const float *restrict St, const float *restrict V,
                      size_t ldv, size_t nc, size_t Dv)
{
    size_t e0 = 0;
    for (; e0 + SK <= Dv; e0 += SK) {
        float a[SK][BQ];
        for (size_t u = 0; u < SK; u++)
#pragma omp simd
            for (size_t r = 0; r < BQ; r++)
                a[u][r] = At[(e0 + u) * BQ + r];
        for (size_t c = 0; c < nc; c++) {
            const float *restrict pc = St + c * BQ;
            const float *restrict vc = V + c * ldv + e0;
            for (size_t u = 0; u < SK; u++) {
                const float ve = vc[u];
#pragma omp simd
                for (size_t r = 0; r < BQ; r++)
                    a[u][r] += ve * pc[r];
            }
        }
        for (size_t u = 0; u < SK; u++)
#pragma omp simd
            for (size_t r = 0; r < BQ; r++)
                At[(e0 + u) * BQ + r] = a[u][r];
    }
    for (; e0 < Dv; e0++) {   /* the last Dv % SK columns, one at a time */
        float *restrict at = At + e0 * BQ;
        for (size_t c = 0; c < nc; c++) {
            const float ve = V[c * ldv + e0];
            const float *restrict pc = St + c * BQ;
#pragma omp simd
            for (size_t r = 0; r < BQ; r++)
                at[r] += ve * pc[r];
        }
    }
}

/* probs == NULL: online softmax (O4) over key tiles, one BQ x BKS score tile per thread. */
static void forward_streaming(float *out, float *lse, const float *q, const float *k,
                              const float *v, const AttnMask *mask, float scale,
                              const AttnLayout *lay, size_t B, size_t H, size_t Tq, size_t Tk,
                              size_t Dk, size_t Dv)
{
    const size_t ldq = lay->q.token, ldk = lay->k.token, ldv = lay->v.token;
    const size_t nqb = (Tq + BQ - 1) / BQ;
    const int causal = mask ? mask->causal : 0;

#pragma omp parallel
    {
        _Alignas(64) float St[BKS * BQ];   /* [BKS, BQ]: the only scores that ever exist */
        _Alignas(64) float m[BQ], l[BQ];   /* running max and running sum per row */
        _Alignas(64) float m_new[BQ], shift[BQ], alpha[BQ], psum[BQ];
        /* This thread's arena buffers, not zeroed: acc is cleared per task below, and Qt is
         * written whole (rows past a short block's nr as zeros) by pack_queries. */
        float *acc = tfm_arena_get(TFM_SCRATCH_ATTN_ACC, Dv * BQ, sizeof *acc, WHO); /* [Dv, BQ] */
        float *Qt = tfm_arena_get(TFM_SCRATCH_ATTN_QT, Dk * BQ, sizeof *Qt, WHO);    /* [Dk, BQ] */

#pragma omp for collapse(3) schedule(static, 1)   /* O8 */
        for (size_t b = 0; b < B; b++) {
            for (size_t h = 0; h < H; h++) {
                for (size_t qb = 0; qb < nqb; qb++) {
                    const size_t i0 = qb * BQ, nr = min_sz(BQ, Tq - i0);
                    const float *K = k + row_at(lay->k, b, h, 0);
                    const float *V = v + row_at(lay->v, b, h, 0);
                    const float *am = (mask && mask->attn_mask)
                        ? mask->attn_mask + b * mask->stride_b + h * mask->stride_h + i0 * Tk
                        : NULL;
                    const uint8_t *pad = (mask && mask->key_padding_mask)
                        ? mask->key_padding_mask + b * Tk : NULL;
                    /* O5: keys j >= i0 + nr are in the future of every row of the block. */
                    const size_t jend = causal ? min_sz(Tk, i0 + nr) : Tk;

                    pack_queries(Qt, q + row_at(lay->q, b, h, i0), ldq, nr, Dk);   /* O10 */
                    for (size_t r = 0; r < BQ; r++) {
                        m[r] = -INFINITY;
                        l[r] = 0.0f;
                    }
                    memset(acc, 0, Dv * BQ * sizeof *acc);

                    for (size_t j0 = 0; j0 < jend; j0 += BKS) {
                        const size_t nc = min_sz(BKS, jend - j0);
                        score_tile_t(St, Qt, K + j0 * ldk, ldk, nr, nc, Dk, scale,
                                     am ? am + j0 : NULL, Tk, pad ? pad + j0 : NULL, causal, i0,
                                     j0);

                        /* O11: the online-softmax update of all BQ rows at once, lane r being
                         * row r. m_new = max(m_old, max_c s_c), a running max down the keys. */
#pragma omp simd
                        for (size_t r = 0; r < BQ; r++)
                            m_new[r] = m[r];
                        for (size_t c = 0; c < nc; c++)
#pragma omp simd
                            for (size_t r = 0; r < BQ; r++)
                                m_new[r] = St[c * BQ + r] > m_new[r] ? St[c * BQ + r] : m_new[r];
                        /* p_c = exp(s_c - m_new). While m_new is still -inf, every score so far
                         * is -inf and the tile adds nothing: shifting by 0 gives exp(-inf) = 0
                         * instead of exp(-inf - (-inf)) = NaN, which would poison a row that a
                         * later tile may still fill. Earlier terms were exp(s - m_old) and must
                         * become exp(s - m_new) = exp(s - m_old) * alpha, alpha =
                         * exp(m_old - m_new); alpha = 1 exactly when the max did not grow (and
                         * when m_old = -inf < m_new, alpha = 0 with l, acc already 0). */
#pragma omp simd
                        for (size_t r = 0; r < BQ; r++) {
                            shift[r] = m_new[r] == -INFINITY ? 0.0f : m_new[r];
                            alpha[r] = m_new[r] == m[r] ? 1.0f : tfm_expf(m[r] - m_new[r]);
                            psum[r] = 0.0f;
                        }
                        /* O7: exponentials and their sums, 16 rows per vector; each row sums
                         * its keys in order c = 0, 1, ... */
                        for (size_t c = 0; c < nc; c++)
#pragma omp simd
                            for (size_t r = 0; r < BQ; r++) {
                                const float p = tfm_expf(St[c * BQ + r] - shift[r]);
                                St[c * BQ + r] = p;
                                psum[r] += p;
                            }
                        /* Rescale (vertical too: a multiply by alpha = 1 is exact). */
                        for (size_t e = 0; e < Dv; e++)
#pragma omp simd
                            for (size_t r = 0; r < BQ; r++)
                                acc[e * BQ + r] *= alpha[r];
#pragma omp simd
                        for (size_t r = 0; r < BQ; r++) {
                            l[r] = l[r] * alpha[r] + psum[r];
                            m[r] = m_new[r];
                        }
                        pv_tile_t(acc, St, V + j0 * ldv, ldv, nc, Dv);   /* acc += P V */
                    }

                    /* out_i = acc_i / l_i. l = 0 only if no key had a finite score (a tile with
                     * a finite max contributes exp(0) = 1): the fully masked row, which PyTorch
                     * returns as NaN (softmax of all -inf), and so do we. */
                    if (lse)   /* O12: m and log l (-inf, -inf for a fully masked row) */
                        for (size_t r = 0; r < nr; r++) {
                            float *restrict st = lse + 2 * ((b * H + h) * Tq + i0 + r);
                            st[0] = m[r];
                            st[1] = l[r] == 0.0f ? -INFINITY : logf(l[r]);
                        }
                    for (size_t r = 0; r < nr; r++) {
                        float *restrict o = out + row_at(lay->out, b, h, i0 + r);
                        if (l[r] == 0.0f) {
                            fill(o, Dv, NAN);
                            continue;
                        }
                        const float inv = 1.0f / l[r];   /* O6 */
                        for (size_t e = 0; e < Dv; e++)
                            o[e] = acc[e * BQ + r] * inv;
                    }
                }
            }
        }
    }
}

/* probs != NULL: the caller wants the [Tq, Tk] probabilities, so they are materialized (in
 * probs itself, no scratch): scores by tiles, a vectorized softmax per row, then P V by tiles. */
static void forward_with_probs(float *out, float *probs, const float *q, const float *k,
                               const float *v, const AttnMask *mask, float scale,
                               const AttnLayout *lay, size_t B, size_t H, size_t Tq, size_t Tk,
                               size_t Dk, size_t Dv)
{
    const size_t ldq = lay->q.token, ldk = lay->k.token, ldv = lay->v.token, ldo = lay->out.token;
    const size_t nqb = (Tq + BQ - 1) / BQ;
    const int causal = mask ? mask->causal : 0;

#pragma omp parallel
    {
        /* [Dk, BK]: this thread's arena buffer, not zeroed; score_tile writes it whole (a short
         * tile's unused columns as zeros) before it reads it. */
        float *Kt = tfm_arena_get(TFM_SCRATCH_ATTN_KT, Dk * BK, sizeof *Kt, WHO);

#pragma omp for collapse(3) schedule(static, 1)   /* O8 */
        for (size_t b = 0; b < B; b++) {
            for (size_t h = 0; h < H; h++) {
                for (size_t qb = 0; qb < nqb; qb++) {
                    const size_t bh = b * H + h;
                    const size_t i0 = qb * BQ, nr = min_sz(BQ, Tq - i0);
                    const float *Q = q + row_at(lay->q, b, h, i0);
                    const float *K = k + row_at(lay->k, b, h, 0);
                    const float *V = v + row_at(lay->v, b, h, 0);
                    float *P = probs + (bh * Tq + i0) * Tk;   /* rows i0.. of this (b, h) */
                    float *O = out + row_at(lay->out, b, h, i0);   /* row r at O + r*ldo */
                    const float *am = (mask && mask->attn_mask)
                        ? mask->attn_mask + b * mask->stride_b + h * mask->stride_h + i0 * Tk
                        : NULL;
                    const uint8_t *pad = (mask && mask->key_padding_mask)
                        ? mask->key_padding_mask + b * Tk : NULL;
                    const size_t jend = causal ? min_sz(Tk, i0 + nr) : Tk;   /* O5 */

                    for (size_t j0 = 0; j0 < jend; j0 += BK)   /* O1, O2 */
                        score_tile(P + j0, Tk, Q, ldq, K + j0 * ldk, ldk, Kt, nr,
                                   min_sz(BK, jend - j0), Dk, scale, am ? am + j0 : NULL, Tk,
                                   pad ? pad + j0 : NULL, causal, i0, j0);

                    for (size_t r = 0; r < nr; r++) {
                        float *restrict prow = P + r * Tk;
                        const size_t kr = row_keys(i0 + r, Tk, causal);
                        const float mx = row_max(prow, kr);
                        if (mx == -INFINITY) {
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

                    /* out = P V over the same key range. A fully masked row's NaN probabilities
                     * make its whole output row NaN by themselves (NaN times any v, and every
                     * row meets at least one key, jend >= 1), as PyTorch's. */
                    for (size_t r = 0; r < nr; r++)
                        fill(O + r * ldo, Dv, 0.0f);
                    for (size_t j0 = 0; j0 < jend; j0 += BK)   /* O1: the V tile serves nr rows */
                        pv_tile(O, ldo, P + j0, Tk, V + j0 * ldv, ldv, nr, min_sz(BK, jend - j0),
                                Dv);
                }
            }
        }
    }
}

/* The forward's entry: probs and lse are each optional (never both: attention.h). */
static void forward(float *out, float *probs, float *lse, const float *q, const float *k,
                    const float *v, const AttnMask *mask, float scale, const AttnLayout *layout,
                    size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    if (Tk == 0) {
        /* No keys at all: softmax over an empty row is empty and P V an empty sum, i.e. zeros
         * (as in naive and PyTorch); this is not the all-masked NaN case. */
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < H; h++)
                for (size_t i = 0; i < Tq; i++)
                    fill(out + row_at(layout->out, b, h, i), Dv, 0.0f);
        if (lse)   /* an empty row: max and log sum both -inf */
            fill(lse, attention_lse_floats(B, H, Tq), -INFINITY);
        return;
    }
    if (probs)
        forward_with_probs(out, probs, q, k, v, mask, scale, layout, B, H, Tq, Tk, Dk, Dv);
    else
        forward_streaming(out, lse, q, k, v, mask, scale, layout, B, H, Tq, Tk, Dk, Dv);
}

void attention_forward_fast_strided(float *out, float *probs, const float *q, const float *k,
                                    const float *v, const AttnMask *mask, float scale,
                                    const AttnLayout *layout, size_t B, size_t H, size_t Tq,
                                    size_t Tk, size_t Dk, size_t Dv)
{
    forward(out, probs, NULL, q, k, v, mask, scale, layout, B, H, Tq, Tk, Dk, Dv);
}

void attention_forward_lse_fast_strided(float *out, float *lse, const float *q, const float *k,
                                        const float *v, const AttnMask *mask, float scale,
                                        const AttnLayout *layout, size_t B, size_t H, size_t Tq,
                                        size_t Tk, size_t Dk, size_t Dv)
{
    forward(out, NULL, lse, q, k, v, mask, scale, layout, B, H, Tq, Tk, Dk, Dv);
}

/* The contiguous [B, H, T, D] layout of attention.h. */
static AttnLayout contiguous(size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    const AttnLayout layout = {
        .q = {H * Tq * Dk, Tq * Dk, Dk},
        .k = {H * Tk * Dk, Tk * Dk, Dk},
        .v = {H * Tk * Dv, Tk * Dv, Dv},
        .out = {H * Tq * Dv, Tq * Dv, Dv},
    };
    return layout;
}

void attention_forward_fast(float *out, float *probs, const float *q, const float *k,
                            const float *v, const AttnMask *mask, float scale,
                            size_t B, size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    const AttnLayout layout = contiguous(H, Tq, Tk, Dk, Dv);
    forward(out, probs, NULL, q, k, v, mask, scale, &layout, B, H, Tq, Tk, Dk, Dv);
}

void attention_forward_lse_fast(float *out, float *lse, const float *q, const float *k,
                                const float *v, const AttnMask *mask, float scale, size_t B,
                                size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    const AttnLayout layout = contiguous(H, Tq, Tk, Dk, Dv);
    forward(out, NULL, lse, q, k, v, mask, scale, &layout, B, H, Tq, Tk, Dk, Dv);
}

/* ------------------------------------------------------------------------------------------
 * Backward (O13).
 */

/* C[u*ldc + x] += sum_{k < kn} A[u*lda + k] * B[k*ldb + x] for u < m, x < n: the backward's
 * dV += P^T dO and dK += dS^T Q, A being the key-major tile (P^T or dS^T, lda = BQ), B the
 * block's rows of dO or Q, C the key block's rows of dV or dK.
 *
 * O14: MT_M rows x MT_N columns of accumulators stay in registers for all kn terms, each B
 * load feeds MT_M FMAs and each A entry is one broadcast. Measured on a Xeon at D = 64 over
 * MT_M x MT_N in {2, 4, 6, 8} x {16, 32, 64}: 4 x 32 and 8 x 16 best, 8 x 32 (all 32 vector
 * registers at 8 floats) a third slower. Each element still sums its terms in order k = 0, 1. */
enum { MT_M = 4, MT_N = 32 };

static void madd_tile(float *restrict C, size_t ldc, const float *restrict A, size_t lda,
                      const float *restrict B, size_t ldb, size_t m, size_t n, size_t kn)
{
    for (size_t x0 = 0; x0 < n; x0 += MT_N) {
        const size_t nx = min_sz(MT_N, n - x0);
        size_t u0 = 0;
        for (; nx == MT_N && u0 + MT_M <= m; u0 += MT_M) {
            float acc[MT_M][MT_N];
            for (size_t u = 0; u < MT_M; u++)
#pragma omp simd
                for (size_t x = 0; x < MT_N; x++)
                    acc[u][x] = C[(u0 + u) * ldc + x0 + x];
            for (size_t k = 0; k < kn; k++) {
                const float *restrict b = B + k * ldb + x0;
                for (size_t u = 0; u < MT_M; u++) {
                    const float a = A[(u0 + u) * lda + k];
#pragma omp simd
                    for (size_t x = 0; x < MT_N; x++)
                        acc[u][x] += a * b[x];
                }
            }
            for (size_t u = 0; u < MT_M; u++)
#pragma omp simd
                for (size_t x = 0; x < MT_N; x++)
                    C[(u0 + u) * ldc + x0 + x] = acc[u][x];
        }
        for (; u0 < m; u0++) {   /* the last m % MT_M rows, or a last chunk narrower than MT_N */
            float *restrict c = C + u0 * ldc + x0;
            for (size_t k = 0; k < kn; k++) {
                const float a = A[u0 * lda + k];
                const float *restrict b = B + k * ldb + x0;
#pragma omp simd
                for (size_t x = 0; x < nx; x++)
                    c[x] += a * b[x];
            }
        }
    }
}

/* One (b, h): its dq, dk, dv rows (each may be NULL), from its operands' rows. Qt, dOt and dQt
 * are the thread's [Dk, BQ], [Dv, BQ] and [Dk, BQ] scratch tiles. */
static void backward_head(float *dQ, float *dK, float *dV, const float *dO, const float *Q,
                          const float *K, const float *V, const float *O,
                          const float *restrict L,   /* [Tq, 2] this head's lse: m, log l */
                          const AttnLayout *lay, const float *am, const uint8_t *pad, int causal,
                          float scale, size_t Tq, size_t Tk, size_t Dk, size_t Dv,
                          float *restrict Qt, float *restrict dOt, float *restrict dQt)
{
    const size_t ldq = lay->q.token, ldk = lay->k.token, ldv = lay->v.token, ldo = lay->out.token;
    _Alignas(64) float Pt[BK * BQ], dSt[BK * BQ];   /* [BK, BQ]: P^T, then dP^T and dS^T */
    _Alignas(64) float Mb[BQ], Gb[BQ], Db[BQ];      /* the block's m, log l, D_i = dO_i . out_i */

    for (size_t i0 = 0; i0 < Tq; i0 += BQ) {
        const size_t nr = min_sz(BQ, Tq - i0);
        /* Rows past a short block: zero queries and dO (pack_queries), m = 0 and log l = +inf,
         * so that their P = exp((0 - 0) - inf) = 0 and dS = 0: they add nothing to dK and dV.
         * A fully masked row (m = -inf) gives NaN probabilities, as PyTorch's softmax does, and
         * they must reach every key: such a block skips no causal tile (O5). */
        int all_rows_live = 1;
        for (size_t r = 0; r < BQ; r++) {
            float d = 0.0f;
            if (r < nr) {
                const float *restrict o = O + (i0 + r) * ldo, *restrict g = dO + (i0 + r) * ldo;
#pragma omp simd reduction(+ : d)
                for (size_t e = 0; e < Dv; e++)
                    d += g[e] * o[e];
                all_rows_live &= L[2 * (i0 + r)] > -INFINITY;
            }
            Mb[r] = r < nr ? L[2 * (i0 + r)] : 0.0f;
            Gb[r] = r < nr ? L[2 * (i0 + r) + 1] : INFINITY;
            Db[r] = d;
        }
        const size_t jend = causal && all_rows_live ? min_sz(Tk, i0 + nr) : Tk;
        pack_queries(Qt, Q + i0 * ldq, ldq, nr, Dk);
        pack_queries(dOt, dO + i0 * ldo, ldo, nr, Dv);
        memset(dQt, 0, Dk * BQ * sizeof *dQt);

        for (size_t j0 = 0; j0 < jend; j0 += BK) {
            const size_t nc = min_sz(BK, jend - j0);
            /* P^T = exp((scale K Q^T + M - m) - log l), lane r being row r (O10, O11) */
            score_tile_t(Pt, Qt, K + j0 * ldk, ldk, nr, nc, Dk, scale,
                         am ? am + i0 * Tk + j0 : NULL, Tk, pad ? pad + j0 : NULL, causal, i0,
                         j0);
            for (size_t c = 0; c < nc; c++)
#pragma omp simd
                for (size_t r = 0; r < BQ; r++)
                    Pt[c * BQ + r] = tfm_expf((Pt[c * BQ + r] - Mb[r]) - Gb[r]);
            /* dP^T = V dO^T: the same tile product, V in the place of K, no mask; then
             * dS^T = scale P^T (dP^T - D), in place */
            score_tile_t(dSt, dOt, V + j0 * ldv, ldv, nr, nc, Dv, 1.0f, NULL, Tk, NULL, 0, i0,
                         j0);
            for (size_t c = 0; c < nc; c++)
#pragma omp simd
                for (size_t r = 0; r < BQ; r++)
                    dSt[c * BQ + r] = scale * (Pt[c * BQ + r] * (dSt[c * BQ + r] - Db[r]));
            if (dQ)   /* dQ^T += K^T dS^T: the forward's P V, dS in the place of P */
                pv_tile_t(dQt, dSt, K + j0 * ldk, ldk, nc, Dk);
            if (dV)   /* dV += P^T dO (O14) */
                madd_tile(dV + j0 * ldv, ldv, Pt, BQ, dO + i0 * ldo, ldo, nc, Dv, nr);
            if (dK)   /* dK += dS^T Q (O14) */
                madd_tile(dK + j0 * ldk, ldk, dSt, BQ, Q + i0 * ldq, ldq, nc, Dk, nr);
        }
        if (dQ)
            for (size_t r = 0; r < nr; r++) {
                float *restrict dq = dQ + (i0 + r) * ldq;
                for (size_t d = 0; d < Dk; d++)
                    dq[d] += dQt[d * BQ + r];
            }
    }
}

void attention_backward_fast_strided(float *dq, float *dk, float *dv, const float *dout,
                                     const float *q, const float *k, const float *v,
                                     const float *out, const float *lse, const AttnMask *mask,
                                     float scale, const AttnLayout *lay, size_t B, size_t H,
                                     size_t Tq, size_t Tk, size_t Dk, size_t Dv)
{
    if (Tq == 0 || Tk == 0)   /* no scores: every gradient is an empty sum */
        return;
    const int causal = mask ? mask->causal : 0;
    const size_t tasks = B * H;
#pragma omp parallel
    {
        static const char who[] = "attention_backward_fast";
        float *Qt = tfm_arena_get(TFM_SCRATCH_ATTN_QT, Dk * BQ, sizeof *Qt, who);     /* [Dk, BQ] */
        float *dOt = tfm_arena_get(TFM_SCRATCH_ATTN_ACC, Dv * BQ, sizeof *dOt, who);  /* [Dv, BQ] */
        float *dQt = tfm_arena_get(TFM_SCRATCH_ATTN_DQT, Dk * BQ, sizeof *dQt, who);  /* [Dk, BQ] */
#pragma omp for schedule(static, 1)
        for (size_t t = 0; t < tasks; t++) {
            const size_t b = t / H, h = t % H;
            const float *am = (mask && mask->attn_mask)
                                  ? mask->attn_mask + b * mask->stride_b + h * mask->stride_h
                                  : NULL;
            const uint8_t *pad = (mask && mask->key_padding_mask)
                                     ? mask->key_padding_mask + b * Tk : NULL;
            backward_head(dq ? dq + row_at(lay->q, b, h, 0) : NULL,
                          dk ? dk + row_at(lay->k, b, h, 0) : NULL,
                          dv ? dv + row_at(lay->v, b, h, 0) : NULL,
                          dout + row_at(lay->out, b, h, 0), q + row_at(lay->q, b, h, 0),
                          k + row_at(lay->k, b, h, 0), v + row_at(lay->v, b, h, 0),
                          out + row_at(lay->out, b, h, 0), lse + 2 * t * Tq, lay, am, pad, causal,
                          scale, Tq, Tk, Dk, Dv, Qt, dOt, dQt);
        }
    }
}

void attention_backward_fast(float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             const AttnMask *mask, float scale, size_t B, size_t H, size_t Tq,
                             size_t Tk, size_t Dk, size_t Dv)
{
    const AttnLayout layout = contiguous(H, Tq, Tk, Dk, Dv);
    attention_backward_fast_strided(dq, dk, dv, dout, q, k, v, out, lse, mask, scale, &layout, B,
                                    H, Tq, Tk, Dk, Dv);
}
