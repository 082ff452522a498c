/* matmul_fast.c — the same two products as matmul_naive.c, organised for the memory hierarchy.
 *
 * Dimension legend: M output rows (tokens), K reduced dimension, N output columns.
 *   matmul:  C[M,N] = A[M,K] · B[K,N]
 *   linear:  Y[M,N] = X[M,K] · W[N,K]^T + bias[N]
 * Both are one computation, C = A · B~, that differs only in how B~[k][j] is read: B[k][j] for
 * matmul, W[j][k] for linear. Packing (below) copies B~ into one layout, so everything after the
 * packing step is shared.
 *
 * The main path is the Goto/BLIS structure. Each optimization, and what it saves:
 *
 *  1. Register blocking (the microkernel). An MR x NR = 12 x 32 tile of C lives in 24 of the 32
 *     AVX-512 registers for a whole K block. Per step k it loads 2 vectors of B~ and broadcasts
 *     12 values of A for 24 vector FMAs, so loads stay well below the FMA rate, and C is read and
 *     written once per K block instead of once per k. 24 independent accumulators are enough to
 *     hide the FMA latency on both FMA pipes.
 *  2. Packing. The MR-row slivers of A and the NR-column slivers of B~ are copied into
 *     contiguous, 64-byte aligned, k-major panels, so the microkernel reads both with unit stride
 *     and aligned vector loads whatever the original layout. W is transposed here, once per
 *     block, instead of being read with stride K in the inner loop; with AVX-512 the transpose is
 *     done 16 x 16 in registers, which makes packing W as cheap as copying B (a scalar transpose
 *     made linear 1.4x slower than matmul at M = 64, 2x at M = 12). Panels are zero padded to
 *     full MR / NR, so edge tiles run the same kernel and only their stores are masked.
 *  3. Cache blocking. K is cut into KC-long blocks so that one B~ panel (KC x NR, 32 KiB) stays
 *     in L1 while the microkernel sweeps the A panels of a row block, that MC x KC block of A
 *     stays in L2 while it meets every B~ panel, and the KC x NC block of B~ stays in L3 while
 *     it meets all of M. Without blocking the FMAs would wait on memory.
 *  4. Threads. OpenMP threads split a grid of (MC row block, group of NR panels) tasks and share
 *     the packing of B~. Every element of C is computed by one thread, over k in a fixed order
 *     (KC blocks in increasing k, each summed by the microkernel in increasing k, then added to
 *     C), so the result is bitwise the same for any number of threads. (The direct paths below
 *     split columns among threads, with the same property.)
 *  5. Overheads. Each OpenMP region or barrier costs about a microsecond, so the thread count
 *     grows with the work (WORK_PER_THREAD) and a single thread runs with no OpenMP at all.
 *  6. Direct paths for few rows (M < DIRECT_M, e.g. one token at a time). There the blocked path
 *     computes a mostly padded MR-row tile and packs all of B~ for a handful of rows; plain loops
 *     without packing are 3-6x faster at M = 1: matmul as rows of C updated by rows of B (AXPY
 *     form, vectorized over j), linear as dot products of rows of X with rows of W (both
 *     contiguous in k, vectorized over k). With 5 or more rows the blocked path is faster even
 *     for tiny problems: its fixed cost is about 0.05 us (no allocation: the packed panels live
 *     in the scratch arena, arena.h).
 *  7. Fused epilogue (linear_act_fast): act(. + bias) + residual is applied to each MR x NR tile
 *     right after the microkernel has stored its last K block, while the tile (12 rows of 128
 *     bytes) is still in L1, by the thread that computed it. An unfused activation and residual
 *     would each read and write all of Y again from memory (at M = 1024, N = 3072, 12.6 MB
 *     twice over per pass); here the only extra traffic is the residual's one read. The bias is
 *     the accumulators' starting value, as in linear (FIRST_BIAS), so with no activation and no
 *     residual linear_act_fast is linear_fast, bit for bit, and linear_fast is implemented as
 *     exactly that. GELU is tfm_gelu.h's, the function gelu_fast computes: a fused linear and
 *     linear_fast followed by gelu_fast give the same bits. The direct paths (6.) run the same
 *     epilogue on each 4 x 4 or 1 x 8 block of outputs they have just stored. Measured on one
 *     thread at M = 1024, K = 768, N = 3072 (pre-activations of order 1, best of 25, three
 *     runs): GELU costs 2.6-3.0% over linear_fast (the GELU's own arithmetic), against 9-10%
 *     for linear_fast followed by gelu_fast; ReLU, the tanh form and a residual are within the
 *     noise. (tfm_gelu_erf runs 2-2.7x slower on inputs with 13.2 < |x| < 14.4, where its
 *     exp(-x^2/2) is subnormal; on products whose outputs often land there, e.g. unscaled
 *     uniform [-1, 1) operands at K = 768, the fused GELU measured +11%.)
 *  8. Backward (matmul.h): every gradient is one more product through the same GEMM. dX = dY W
 *     is a matmul (W [N, K] read as B [K, N]), dA = dC B^T a linear (B read as W). dW = dY^T X
 *     and dB = A^T dC read their left operand transposed: pack_a copies its panels from the
 *     columns of dY (trans), which costs nothing extra, since packing copies anyway, and saves
 *     materialising dY^T (M x N floats written and read again). The gradients accumulate
 *     (C += ...: every K block, the first one too, is added onto C), so a weight used twice and
 *     micro-batches sum with no extra pass. dbias is a column sum, vectorized across columns.
 *
 * Accuracy: every output is a float sum (with FMA contraction), within float32 reordering error of
 * PyTorch, which also sums in blocks. matmul_naive.c is the plain formula; the tests hold the two
 * to the classical error bound of float summation.
 */
#include <stdint.h>
#include <string.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "arena.h"
#include "matmul.h"
#include "tfm_gelu.h"

/* Microkernel tile: MR rows x NR columns of C (NR = two 16-float vectors). */
#define MR 12
#define NR 32
/* Cache blocks, in floats. KC*NR*4 B = 32 KiB: a B~ panel in the 48 KiB L1. MC_MAX*KC*4 B =
 * 192 KiB: the A block in the 1 MiB L2. KC*NC*4 B = 4 MiB: the B~ block in L3. (Measured on
 * Zen 5; KC 128..384, MC 96..384 and NC 1024..4096 were all within a few percent.)
 * tests/test_00_tensors.c straddles each of these sizes. */
#define KC 256
#define MC_MAX 192
#define NC 4096
/* Direct loops (no packing) for fewer rows than this. Measured on 768 x 768: at M = 1 they take
 * a third of the blocked path's time, at M = 4 they are even with it (matmul) or 1.5x faster
 * (linear), from M = 7 on the blocked path wins. */
#define DIRECT_M 5
/* One more thread per this many multiply-adds (about 20 us of single-thread work: starting and
 * synchronising a second thread costs about 10 us here). */
#define WORK_PER_THREAD (4.0 * 1024 * 1024)

/* Alignment of the packed panels, in bytes: the arena's (arena.h), one 64-byte line. */
#define ALIGN TFM_ARENA_ALIGN

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t round_up(size_t a, size_t b) { return ceil_div(a, b) * b; }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* Threads for a problem of `work` multiply-adds: at least 1, at most OpenMP's limit. */
static int threads_for(double work)
{
    const int max = omp_get_max_threads();
    const double want = 1.0 + work / WORK_PER_THREAD;
    return want < (double)max ? (int)want : (max > 0 ? max : 1);
}

/* Thread t's share [*lo, *hi) of n items split evenly among nt threads. */
static void share(size_t n, int t, int nt, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)t / (size_t)nt;
    *hi = n * (size_t)(t + 1) / (size_t)nt;
}

static void team_barrier(int nt)
{
    if (nt > 1) {
#pragma omp barrier
    }
}

/* How B~ is read: B~[k][j] = b[k*N + j] (matmul, B row-major [K,N]) or b[j*K + k]
 * (linear, W row-major [N,K], so B~ = W^T). */
typedef enum { B_IS_KN, B_IS_NK } BLayout;

typedef struct {
    float *c;             /* [M, N] */
    const float *a;       /* [M, K], or [K, M] when a_trans */
    const float *b;       /* [K, N] (B_IS_KN) or [N, K] (B_IS_NK) */
    const float *bias;    /* [N] or NULL */
    const float *residual;   /* [M, N] or NULL: the epilogue's addend (7.) */
    TfmActivation act;       /* the epilogue's activation (TFM_ACT_NONE for matmul, linear) */
    BLayout layout;
    int a_trans;          /* 1: A~[i][k] = a[k*M + i] (a backward's dY^T or X^T, 8.) */
    int accumulate;       /* 1: C += A~ B~ (a backward's gradient, 8.), 0: C = A~ B~ */
    size_t M, K, N;
} Gemm;

/* ------------------------------------------------------------------------------------------
 * The epilogue (7.): c = act(c) + residual, the activation on the finished sum x W^T + bias.
 * ReLU as `0 > v ? 0 : v`: a NaN (and -0) passes unchanged, as in torch.relu and in naive.
 */
static inline float relu(float v) { return 0.0f > v ? 0.0f : v; }

/* An mr x nr tile of C, rows ld apart, just stored (so in L1) by the microkernel or a direct
 * path's block; residual has the same layout. The switch is taken once per row, so each loop is
 * straight vector code. */
static void epilogue(float *restrict c,                 /* [mr, ld], nr columns used */
                     const float *restrict residual,    /* [mr, ld] or NULL */
                     size_t ld, size_t mr, size_t nr, TfmActivation act)
{
    for (size_t i = 0; i < mr; ++i) {
        float *restrict ci = c + i * ld;
        switch (act) {
        case TFM_ACT_RELU:
#pragma omp simd
            for (size_t j = 0; j < nr; ++j)
                ci[j] = relu(ci[j]);
            break;
        case TFM_ACT_GELU:
#pragma omp simd
            for (size_t j = 0; j < nr; ++j)
                ci[j] = tfm_gelu_erf(ci[j]);
            break;
        case TFM_ACT_GELU_TANH:
#pragma omp simd
            for (size_t j = 0; j < nr; ++j)
                ci[j] = tfm_gelu_tanh(ci[j]);
            break;
        case TFM_ACT_NONE:
            break;
        }
        if (residual) {
            const float *restrict ri = residual + i * ld;
#pragma omp simd
            for (size_t j = 0; j < nr; ++j)
                ci[j] = ci[j] + ri[j];
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Packing. Rows i0..i0+mr of A over k0..k0+kc become ap[k*MR + i]; columns j0..j0+nr of B~
 * become bp[k*NR + j]. Rows/columns past mr/nr are zero.
 */
static void pack_a(float *restrict ap,          /* [kc, MR] */
                   const float *restrict a,      /* [M, lda], or [K, lda] when trans */
                   size_t lda, int trans, size_t i0, size_t mr, size_t k0, size_t kc)
{
    if (trans) {   /* A~[i][k] = a[k][i]: row k of a holds the panel's k-th column, contiguous */
        for (size_t k = 0; k < kc; ++k) {
            const float *restrict src = a + (k0 + k) * lda + i0;
            for (size_t i = 0; i < MR; ++i)
                ap[k * MR + i] = i < mr ? src[i] : 0.0f;
        }
        return;
    }
    for (size_t i = 0; i < mr; ++i) {
        const float *src = a + (i0 + i) * lda + k0;
        for (size_t k = 0; k < kc; ++k)
            ap[k * MR + i] = src[k];
    }
    for (size_t i = mr; i < MR; ++i)
        for (size_t k = 0; k < kc; ++k)
            ap[k * MR + i] = 0.0f;
}

#if defined(__AVX512F__)
/* The transpose of a 16 x 16 block in registers: r[j] holds W[j][k..k+16) on entry and
 * B~[k + j][0..16) = W[0..16)[k + j] on return: 64 shuffles for 256 elements, against a scalar
 * load and store per element.
 *   stages 1-2 transpose the 4 x 4 blocks inside each 128-bit lane (unpack, shuffle_ps);
 *   stages 3-4 move the 128-bit lanes into place (shuffle_f32x4). */
static void transpose16(__m512 r[16])           /* [16, 16] */
{
    __m512 u[16];
    for (int g = 0; g < 4; ++g) {              /* rows 4g..4g+3 */
        const __m512 t0 = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
        const __m512 t1 = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
        const __m512 t2 = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
        const __m512 t3 = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
        /* u[4g + c], lane q: rows 4g..4g+3 of column 4q + c */
        u[4 * g + 0] = _mm512_shuffle_ps(t0, t2, 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t0, t2, 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
        const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);       /* lanes 0, 2 */
        const __m512 y0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);       /* lanes 1, 3 */
        const __m512 x1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(x0, x1, 0x88);        /* column c      */
        r[4 + c] = _mm512_shuffle_f32x4(y0, y1, 0x88);    /* column 4 + c  */
        r[8 + c] = _mm512_shuffle_f32x4(x0, x1, 0xDD);    /* column 8 + c  */
        r[12 + c] = _mm512_shuffle_f32x4(y0, y1, 0xDD);   /* column 12 + c */
    }
}

/* bp[k*NR + j] = W[j0 + j][k0 + k], 16 x 16 blocks at a time; rows past nr are zero, the k tail
 * is loaded with a lane mask (no read past the end of a row). */
static void pack_b_nk(float *restrict bp,        /* [kc, NR] */
                      const float *restrict w,    /* [N, K] */
                      size_t K, size_t k0, size_t kc, size_t j0, size_t nr)
{
    for (size_t k = 0; k < kc; k += 16) {
        const size_t kn = min_sz(16, kc - k);
        const __mmask16 mask = (__mmask16)((1u << kn) - 1u);
        for (size_t h = 0; h < NR; h += 16) {
            __m512 r[16];
            for (size_t j = 0; j < 16; ++j)
                r[j] = h + j < nr ? _mm512_maskz_loadu_ps(mask, w + (j0 + h + j) * K + k0 + k)
                                  : _mm512_setzero_ps();
            transpose16(r);
            for (size_t l = 0; l < kn; ++l)
                _mm512_store_ps(bp + (k + l) * NR + h, r[l]);
        }
    }
}
#else
static void pack_b_nk(float *restrict bp,        /* [kc, NR] */
                      const float *restrict w,    /* [N, K] */
                      size_t K, size_t k0, size_t kc, size_t j0, size_t nr)
{
    for (size_t j = 0; j < nr; ++j) {   /* reads W with unit stride, writes with stride NR */
        const float *src = w + (j0 + j) * K + k0;
        for (size_t k = 0; k < kc; ++k)
            bp[k * NR + j] = src[k];
    }
    for (size_t j = nr; j < NR; ++j)
        for (size_t k = 0; k < kc; ++k)
            bp[k * NR + j] = 0.0f;
}
#endif

static void pack_b(float *restrict bp,           /* [kc, NR] */
                   const Gemm *g, size_t k0, size_t kc, size_t j0, size_t nr)
{
    if (g->layout == B_IS_NK) {
        pack_b_nk(bp, g->b, g->K, k0, kc, j0, nr);
        return;
    }
    /* B[k][j0..j0+nr) is contiguous: a row copy per k (fixed-length, so vector moves, when the
     * panel is full). */
    for (size_t k = 0; k < kc; ++k) {
        const float *restrict src = g->b + (k0 + k) * g->N + j0;
        float *restrict dst = bp + k * NR;
        if (nr == NR) {
            for (size_t j = 0; j < NR; ++j)
                dst[j] = src[j];
        } else {
            for (size_t j = 0; j < NR; ++j)
                dst[j] = j < nr ? src[j] : 0.0f;
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * The microkernel: the MR x NR tile c[i*ldc + j], i < mr, j < nr, over one K block,
 *     acc[i][j] = start[j] + sum_{k<kc} ap[k][i] * bp[k][j]     (in increasing k)
 * with start = bias on the first K block of a linear, 0 otherwise; then c = acc on the first
 * K block, c = c + acc on later ones. An edge tile (mr < MR or nr < NR) computes the zero padding
 * of its panels like any other row or column, and stores only the part of C that exists.
 */
enum { FIRST_ZERO, FIRST_BIAS, ACCUMULATE };

#if defined(__AVX512F__)
static void kernel(size_t kc,
                   const float *restrict ap,     /* [kc, MR] */
                   const float *restrict bp,     /* [kc, NR] */
                   float *restrict c,            /* [mr, ldc], nr columns used */
                   size_t ldc, size_t mr, size_t nr, int mode,
                   const float *restrict bias)   /* [nr] (FIRST_BIAS only) */
{
    /* Column edges by lane masks: masked-out lanes are neither loaded (no fault past the end of
     * a row) nor stored. */
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF
                         : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u)
                                   : (__mmask16)0;
    /* Prefetching the C tile now lets its cache misses (rows ldc apart, often in the same cache
     * set when N is a power of two) overlap the k loop instead of stalling the update at the
     * end. */
    for (size_t i = 0; i < mr; ++i) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + nr - 1), _MM_HINT_T0);
    }
    const __m512 init0 = mode == FIRST_BIAS ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    const __m512 init1 =
        mode == FIRST_BIAS ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    __m512 acc[MR][2];
    for (int i = 0; i < MR; ++i) {
        acc[i][0] = init0;
        acc[i][1] = init1;
    }
    for (size_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(bp + k * NR);        /* B~[k][0..16)  */
        const __m512 b1 = _mm512_load_ps(bp + k * NR + 16);   /* B~[k][16..32) */
        for (int i = 0; i < MR; ++i) {
            const __m512 ai = _mm512_set1_ps(ap[k * MR + (size_t)i]);   /* A[i][k] */
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < MR; ++i) {
        if ((size_t)i >= mr)
            break;
        float *ci = c + (size_t)i * ldc;
        if (mode == ACCUMULATE) {
            acc[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc[i][0]);
            acc[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc[i][1]);
        }
        _mm512_mask_storeu_ps(ci, m0, acc[i][0]);
        _mm512_mask_storeu_ps(ci + 16, m1, acc[i][1]);
    }
}
#else
/* Portable path: the same tile as a fixed-size array. With MR and NR compile-time constants the
 * compiler can keep it in vector registers and turn the j loop into vector FMAs. */
static void kernel_full(size_t kc,
                        const float *restrict ap,     /* [kc, MR] */
                        const float *restrict bp,     /* [kc, NR] */
                        float *restrict c,            /* [MR, ldc] */
                        size_t ldc, int mode,
                        const float *restrict bias)   /* [NR] (FIRST_BIAS only) */
{
    float acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            acc[i][j] = mode == FIRST_BIAS ? bias[j] : 0.0f;
    for (size_t k = 0; k < kc; ++k) {
        const float *restrict bk = bp + k * NR;
        for (int i = 0; i < MR; ++i) {
            const float ai = ap[k * MR + (size_t)i];
#pragma omp simd
            for (int j = 0; j < NR; ++j)
                acc[i][j] += ai * bk[j];
        }
    }
    for (int i = 0; i < MR; ++i) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < NR; ++j)
            ci[j] = mode == ACCUMULATE ? ci[j] + acc[i][j] : acc[i][j];
    }
}

/* Edge tiles run the full kernel on a padded copy; only the mr x nr part is written back. */
static void kernel(size_t kc,
                   const float *ap,              /* [kc, MR] */
                   const float *bp,              /* [kc, NR] */
                   float *c,                     /* [mr, ldc], nr columns used */
                   size_t ldc, size_t mr, size_t nr, int mode,
                   const float *bias)            /* [nr] (FIRST_BIAS only) */
{
    if (mr == MR && nr == NR) {
        kernel_full(kc, ap, bp, c, ldc, mode, bias);
        return;
    }
    float tile[MR * NR];
    float bias_pad[NR] = {0};
    if (mode == ACCUMULATE)
        for (size_t i = 0; i < mr; ++i)
            memcpy(tile + i * NR, c + i * ldc, nr * sizeof(float));
    if (mode == FIRST_BIAS)
        memcpy(bias_pad, bias, nr * sizeof(float));
    kernel_full(kc, ap, bp, tile, NR, mode, bias_pad);
    for (size_t i = 0; i < mr; ++i)
        memcpy(c + i * ldc, tile + i * NR, nr * sizeof(float));
}
#endif

/* ------------------------------------------------------------------------------------------
 * The blocked driver. Loops, outside in:
 *   jc    over N in NC-column blocks       B~ block KC x NC, packed by all threads together
 *   pc    over K in KC blocks              in increasing k: this fixes the order of every sum
 *   task  over (row block, panel group)    statically split among threads
 *     jr  over the NR panels of the group  one B~ panel KC x NR, reused from L1
 *     ir  over the MR panels of the block  the A block MC x KC, packed per task, reused from L2
 */
typedef struct {
    size_t mc, mb;        /* rows per row block, number of row blocks */
    size_t ns;            /* panel groups per row block (> 1 only when mb < threads) */
    float *bpack;         /* [NC / NR][kc, NR]: the B~ block, shared */
    float *apacks;        /* [threads][a_len]: each [mc / MR][kc, MR], one A block per thread */
    size_t a_len;
} Plan;

static void gemm_thread(const Gemm *g, const Plan *pl, int t, int nt)
{
    const size_t M = g->M, K = g->K, N = g->N;
    float *apack = pl->apacks + (size_t)t * pl->a_len;
    for (size_t jc = 0; jc < N; jc += NC) {
        const size_t nc = min_sz(NC, N - jc);
        const size_t np = ceil_div(nc, NR);
        for (size_t pc = 0; pc < K; pc += KC) {
            const size_t kc = min_sz(KC, K - pc);
            const int mode = pc > 0 || g->accumulate ? ACCUMULATE
                             : g->bias               ? FIRST_BIAS
                                                     : FIRST_ZERO;
            /* 7.: the epilogue runs on the tiles of the last K block, which complete the sums */
            const int last = pc + kc == K;
            const int epi = last && (g->act != TFM_ACT_NONE || g->residual != NULL);
            size_t lo, hi;

            share(np, t, nt, &lo, &hi);
            for (size_t p = lo; p < hi; ++p)
                pack_b(pl->bpack + p * kc * NR, g, pc, kc, jc + p * NR, min_sz(NR, nc - p * NR));
            team_barrier(nt);   /* B~ is complete before anyone reads it */

            size_t packed_ib = SIZE_MAX;
            share(pl->mb * pl->ns, t, nt, &lo, &hi);
            for (size_t task = lo; task < hi; ++task) {
                const size_t ib = task / pl->ns, js = task % pl->ns;
                const size_t i0 = ib * pl->mc, mcur = min_sz(pl->mc, M - i0);
                if (ib != packed_ib) {   /* consecutive tasks of one row block share its A */
                    for (size_t ir = 0; ir < mcur; ir += MR)
                        pack_a(apack + ir * kc, g->a, g->a_trans ? M : K, g->a_trans, i0 + ir,
                               min_sz(MR, mcur - ir), pc, kc);
                    packed_ib = ib;
                }
                for (size_t p = js * np / pl->ns; p < (js + 1) * np / pl->ns; ++p) {
                    const size_t j0 = jc + p * NR, nr = min_sz(NR, N - j0);
                    const float *bp = pl->bpack + p * kc * NR;
                    const float *bias = g->bias ? g->bias + j0 : NULL;
                    for (size_t ir = 0; ir < mcur; ir += MR) {
                        const size_t off = (i0 + ir) * N + j0, mr = min_sz(MR, mcur - ir);
                        kernel(kc, apack + ir * kc, bp, g->c + off, N, mr, nr, mode, bias);
                        if (epi)
                            epilogue(g->c + off, g->residual ? g->residual + off : NULL, N, mr,
                                     nr, g->act);
                    }
                }
            }
            team_barrier(nt);   /* nobody repacks B~ while it is still being read */
        }
    }
}

static void gemm_blocked(const Gemm *g)
{
    const size_t M = g->M, K = g->K, N = g->N;
    const int nt = threads_for((double)M * (double)K * (double)N);
    const size_t nthreads = (size_t)nt;

    Plan pl;
    /* Row blocks: a multiple of the thread count when M allows, so that no thread idles at the
     * end; MC a multiple of MR, so only the last block has a ragged edge. */
    pl.mb = round_up(ceil_div(M, MC_MAX), nthreads);
    pl.mc = round_up(ceil_div(M, pl.mb), MR);
    pl.mb = ceil_div(M, pl.mc);
    /* Fewer row blocks than threads (small M): each row block's panels are split as well. */
    pl.ns = pl.mb >= nthreads ? 1 : ceil_div(nthreads, pl.mb);
    const size_t kc_max = min_sz(KC, K);
    pl.a_len = round_up(pl.mc * kc_max, ALIGN / sizeof(float));   /* keeps each block aligned */
    const size_t b_len = round_up(kc_max * min_sz(NC, round_up(N, NR)), ALIGN / sizeof(float));
    /* The packed panels: the calling thread's arena slot, grown only for a larger problem, so a
     * loop of products allocates nothing after its first call. Allocating and freeing them per
     * call would cost more than small products do (glibc trims freed blocks of this size back
     * off the heap top, and every call would page-fault its buffers in again). At most KC*NC +
     * threads*MC*KC floats (4 MiB + 192 KiB per thread). */
    pl.bpack = tfm_arena_get(TFM_SCRATCH_MATMUL_PACK, b_len + pl.a_len * nthreads, sizeof(float),
                             g->accumulate          ? "a backward's gemm"
                             : g->layout == B_IS_KN ? "matmul_fast"
                             : g->act != TFM_ACT_NONE || g->residual != NULL ? "linear_act_fast"
                                                                             : "linear_fast");
    pl.apacks = pl.bpack + b_len;

    if (nt == 1) {
        gemm_thread(g, &pl, 0, 1);
    } else {
#pragma omp parallel num_threads(nt)
        gemm_thread(g, &pl, omp_get_thread_num(), omp_get_num_threads());
    }
}

/* ------------------------------------------------------------------------------------------
 * Direct paths: no packing, no scratch memory. Threads split the output columns.
 */

/* matmul, columns [j0, j1) of C: C[i][:] = sum_k A[i][k] B[k][:], four rows of C at a time so
 * each row of B is loaded once per four rows. Each element is one float sum in increasing k. */
static void matmul_direct_cols(float *restrict c,         /* [M, N], columns [j0, j1) */
                               const float *restrict a,   /* [M, K] */
                               const float *restrict b,   /* [K, N] */
                               int accumulate,            /* 1: C += A B */
                               size_t M, size_t K, size_t N, size_t j0, size_t j1)
{
    for (size_t i0 = 0; i0 < M; i0 += 4) {
        const size_t mi = min_sz(4, M - i0);
        for (size_t i = i0; i < i0 + mi && !accumulate; ++i)
            for (size_t j = j0; j < j1; ++j)
                c[i * N + j] = 0.0f;
        for (size_t k = 0; k < K; ++k) {
            const float *restrict bk = b + k * N;
            for (size_t i = i0; i < i0 + mi; ++i) {
                const float aik = a[i * K + k];
                float *restrict ci = c + i * N;
#pragma omp simd
                for (size_t j = j0; j < j1; ++j)
                    ci[j] += aik * bk[j];
            }
        }
    }
}

/* linear by dot products: Y[i][j] = bias[j] + dot(X[i][:], W[j][:]), both rows contiguous in k.
 * Each dot product is kept as LANES partial sums (lane l sums k = l, l + LANES, ...: one vector
 * register's worth), reduced pairwise at the end. A block of RI rows of X times RJ rows of W
 * keeps its RI*RJ accumulators in registers and loads each row chunk once for RJ (or RI) FMAs;
 * rows past M or j_end repeat the last real row and their results are dropped, so the block
 * sizes stay compile-time constants. */
#define LANES 16

static float reduce_lanes(float *v)             /* [LANES] */
{
    for (size_t h = LANES / 2; h > 0; h /= 2)
        for (size_t l = 0; l < h; ++l)
            v[l] += v[l + h];
    return v[0];
}

/* 4 rows of X x 4 rows of W: 16 accumulators, 8 loads per 16 FMAs. */
static void dot_4x4(float *restrict y,            /* [M, N] */
                    const float *restrict x,      /* [M, K] */
                    const float *restrict w,      /* [N, K] */
                    const float *restrict bias,   /* [N] or NULL */
                    const float *restrict residual,   /* [M, N] or NULL */
                    TfmActivation act, int accumulate,
                    size_t M, size_t K, size_t N, size_t i0, size_t j0, size_t j_end)
{
    const float *xr[4], *wr[4];
    for (size_t r = 0; r < 4; ++r) {
        xr[r] = x + min_sz(i0 + r, M - 1) * K;
        wr[r] = w + min_sz(j0 + r, j_end - 1) * K;
    }
    float acc[4][4][LANES] = {{{0}}};
    size_t k = 0;
    for (; k + LANES <= K; k += LANES)
        for (size_t r = 0; r < 4; ++r)
            for (size_t s = 0; s < 4; ++s)
#pragma omp simd
                for (size_t l = 0; l < LANES; ++l)
                    acc[r][s][l] += xr[r][k + l] * wr[s][k + l];
    for (size_t l = 0; k + l < K; ++l)   /* the K % LANES tail */
        for (size_t r = 0; r < 4; ++r)
            for (size_t s = 0; s < 4; ++s)
                acc[r][s][l] += xr[r][k + l] * wr[s][k + l];
    for (size_t r = 0; r < 4 && i0 + r < M; ++r)
        for (size_t s = 0; s < 4 && j0 + s < j_end; ++s) {
            const float d = reduce_lanes(acc[r][s]);
            float *yo = y + (i0 + r) * N + j0 + s;
            *yo = accumulate ? *yo + d : bias ? bias[j0 + s] + d : d;
        }
    if (act != TFM_ACT_NONE || residual)   /* 7.: the block just stored */
        epilogue(y + i0 * N + j0, residual ? residual + i0 * N + j0 : NULL, N, min_sz(4, M - i0),
                 min_sz(4, j_end - j0), act);
}

/* 1 row of X x 8 rows of W, for the M % 4 leftover rows (and M = 1, one token): 8 independent
 * accumulators still cover the FMA latency. */
static void dot_1x8(float *restrict y,            /* [M, N] */
                    const float *restrict x,      /* [M, K] */
                    const float *restrict w,      /* [N, K] */
                    const float *restrict bias,   /* [N] or NULL */
                    const float *restrict residual,   /* [M, N] or NULL */
                    TfmActivation act, int accumulate,
                    size_t K, size_t N, size_t i, size_t j0, size_t j_end)
{
    const float *xi = x + i * K, *wr[8];
    for (size_t s = 0; s < 8; ++s)
        wr[s] = w + min_sz(j0 + s, j_end - 1) * K;
    float acc[8][LANES] = {{0}};
    size_t k = 0;
    for (; k + LANES <= K; k += LANES)
        for (size_t s = 0; s < 8; ++s)
#pragma omp simd
            for (size_t l = 0; l < LANES; ++l)
                acc[s][l] += xi[k + l] * wr[s][k + l];
    for (size_t l = 0; k + l < K; ++l)
        for (size_t s = 0; s < 8; ++s)
            acc[s][l] += xi[k + l] * wr[s][k + l];
    for (size_t s = 0; s < 8 && j0 + s < j_end; ++s) {
        const float d = reduce_lanes(acc[s]);
        float *yo = y + i * N + j0 + s;
        *yo = accumulate ? *yo + d : bias ? bias[j0 + s] + d : d;
    }
    if (act != TFM_ACT_NONE || residual)   /* 7. */
        epilogue(y + i * N + j0, residual ? residual + i * N + j0 : NULL, N, 1,
                 min_sz(8, j_end - j0), act);
}

static void linear_direct_cols(float *y,                  /* [M, N], columns [j0, j1) */
                               const float *x,            /* [M, K] */
                               const float *w,            /* [N, K] */
                               const float *bias,         /* [N] or NULL */
                               const float *residual,     /* [M, N] or NULL */
                               TfmActivation act, int accumulate,
                               size_t M, size_t K, size_t N, size_t j0, size_t j1)
{
    const size_t m4 = M - M % 4;
    for (size_t j = j0; j < j1; j += 4)   /* four rows of W, reused from L1 across all of X */
        for (size_t i = 0; i < m4; i += 4)
            dot_4x4(y, x, w, bias, residual, act, accumulate, M, K, N, i, j, j1);
    for (size_t i = m4; i < M; ++i)
        for (size_t j = j0; j < j1; j += 8)
            dot_1x8(y, x, w, bias, residual, act, accumulate, K, N, i, j, j1);
}

/* The direct paths' threads: thread t takes the columns [lo, hi), cut at multiples of 16 (one
 * 64-byte line of a row of C for matmul, so no two threads write one cache line). */
static void direct_cols(float *c,                 /* [M, N] */
                        const float *a,           /* [M, K] */
                        const float *b,           /* [K, N] (matmul) or [N, K] (linear) */
                        const float *bias,        /* [N] or NULL */
                        const float *residual,    /* [M, N] or NULL (linear only) */
                        TfmActivation act,        /* linear only */
                        int accumulate,           /* 1: C += the product (8.) */
                        size_t M, size_t K, size_t N, int linear, int t, int nt)
{
    size_t lo, hi;
    share(ceil_div(N, 16), t, nt, &lo, &hi);
    lo = min_sz(lo * 16, N);
    hi = min_sz(hi * 16, N);
    if (lo >= hi)
        return;
    if (linear)
        linear_direct_cols(c, a, b, bias, residual, act, accumulate, M, K, N, lo, hi);
    else
        matmul_direct_cols(c, a, b, accumulate, M, K, N, lo, hi);
}

static void direct(float *c,                      /* [M, N] */
                   const float *a,                /* [M, K] */
                   const float *b,                /* [K, N] (matmul) or [N, K] (linear) */
                   const float *bias,             /* [N] or NULL */
                   const float *residual,         /* [M, N] or NULL (linear only) */
                   TfmActivation act,             /* linear only */
                   int accumulate,                /* 1: C += the product (8.) */
                   size_t M, size_t K, size_t N, int linear)
{
    int nt = threads_for((double)M * (double)K * (double)N);
    if ((size_t)nt > ceil_div(N, 16))
        nt = (int)ceil_div(N, 16);
    if (nt == 1) {
        direct_cols(c, a, b, bias, residual, act, accumulate, M, K, N, linear, 0, 1);
    } else {
#pragma omp parallel num_threads(nt)
        direct_cols(c, a, b, bias, residual, act, accumulate, M, K, N, linear,
                    omp_get_thread_num(), omp_get_num_threads());
    }
}

void matmul_fast(float *c,                         /* [M, N] */
                 const float *a,                   /* [M, K] */
                 const float *b,                   /* [K, N] */
                 size_t M, size_t K, size_t N)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {   /* an empty sum */
        memset(c, 0, M * N * sizeof(float));
        return;
    }
    if (M < DIRECT_M) {
        direct(c, a, b, NULL, NULL, TFM_ACT_NONE, 0, M, K, N, 0);
        return;
    }
    const Gemm g = {c, a, b, NULL, NULL, TFM_ACT_NONE, B_IS_KN, 0, 0, M, K, N};
    gemm_blocked(&g);
}

/* linear (7.): the fused linear with no activation and no residual, so the same code path and
 * the same bits; the epilogue's test costs one branch per tile (or direct block). */
void linear_fast(float *y,                         /* [M, N] */
                 const float *x,                   /* [M, K] */
                 const float *w,                   /* [N, K] */
                 const float *bias,                /* [N] or NULL */
                 size_t M, size_t K, size_t N)
{
    linear_act_fast(y, x, w, bias, NULL, TFM_ACT_NONE, M, K, N);
}

void linear_act_fast(float *y,                     /* [M, N] */
                     const float *x,               /* [M, K] */
                     const float *w,               /* [N, K] */
                     const float *bias,            /* [N] or NULL */
                     const float *residual,        /* [M, N] or NULL */
                     TfmActivation act, size_t M, size_t K, size_t N)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {   /* an empty sum: y = act(bias) + residual */
        for (size_t i = 0; i < M; ++i)
            for (size_t j = 0; j < N; ++j)
                y[i * N + j] = bias ? bias[j] : 0.0f;
        epilogue(y, residual, N, M, N, act);
        return;
    }
    if (M < DIRECT_M) {
        direct(y, x, w, bias, residual, act, 0, M, K, N, 1);
        return;
    }
    const Gemm g = {y, x, w, bias, residual, act, B_IS_NK, 0, 0, M, K, N};
    gemm_blocked(&g);
}

/* ------------------------------------------------------------------------------------------
 * Backward (8.): gradients as products through the blocked GEMM (or the direct paths for few
 * rows), accumulated into C.
 */
static void gemm_accumulate(float *c,             /* [M, N] += A~ B~ */
                            const float *a,       /* [M, K], or [K, M] when a_trans */
                            int a_trans,
                            const float *b,       /* [K, N] (B_IS_KN) or [N, K] (B_IS_NK) */
                            BLayout layout, size_t M, size_t K, size_t N)
{
    if (M == 0 || N == 0 || K == 0)   /* an empty sum adds nothing */
        return;
    if (M < DIRECT_M && !a_trans) {
        direct(c, a, b, NULL, NULL, TFM_ACT_NONE, 1, M, K, N, layout == B_IS_NK);
        return;
    }
    const Gemm g = {c, a, b, NULL, NULL, TFM_ACT_NONE, layout, a_trans, 1, M, K, N};
    gemm_blocked(&g);
}

/* dbias[j] += sum_i dY[i][j], in increasing i: rows of dY are added as vectors, threads take
 * column ranges (so each sum keeps one order whatever the thread count). */
static void column_sums(float *restrict dbias,    /* [N] */
                        const float *restrict dy, /* [M, N] */
                        size_t M, size_t N)
{
    int nt = threads_for((double)M * (double)N / 8.0);
    if ((size_t)nt > ceil_div(N, 16))
        nt = (int)ceil_div(N, 16);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t lo, hi;
        share(ceil_div(N, 16), omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        lo = min_sz(lo * 16, N);
        hi = min_sz(hi * 16, N);
        for (size_t j0 = lo; j0 < hi; j0 += 256) {   /* 1 KiB of sums stays in L1 */
            const size_t j1 = min_sz(j0 + 256, hi);
            float sum[256] = {0};
            for (size_t i = 0; i < M; ++i) {
                const float *restrict row = dy + i * N;
#pragma omp simd
                for (size_t j = j0; j < j1; ++j)
                    sum[j - j0] += row[j];
            }
            for (size_t j = j0; j < j1; ++j)
                dbias[j] += sum[j - j0];
        }
    }
}

void matmul_backward_fast(float *da,               /* [M, K] or NULL */
                          float *db,               /* [K, N] or NULL */
                          const float *dc,         /* [M, N] */
                          const float *a,          /* [M, K] */
                          const float *b,          /* [K, N] */
                          size_t M, size_t K, size_t N)
{
    if (da)   /* dA[M,K] += dC[M,N] B^T: B [K, N] read as a linear's W */
        gemm_accumulate(da, dc, 0, b, B_IS_NK, M, N, K);
    if (db)   /* dB[K,N] += A^T dC: A [M, K] is A~^T */
        gemm_accumulate(db, a, 1, dc, B_IS_KN, K, M, N);
}

void linear_backward_fast(float *dx,               /* [M, K] or NULL */
                          float *dw,               /* [N, K] or NULL */
                          float *dbias,            /* [N] or NULL */
                          const float *dy,         /* [M, N] */
                          const float *x,          /* [M, K] */
                          const float *w,          /* [N, K] */
                          size_t M, size_t K, size_t N)
{
    if (dx)   /* dX[M,K] += dY[M,N] W[N,K]: a matmul */
        gemm_accumulate(dx, dy, 0, w, B_IS_KN, M, N, K);
    if (dw)   /* dW[N,K] += dY^T X: dY [M, N] is A~^T */
        gemm_accumulate(dw, dy, 1, x, B_IS_KN, N, M, K);
    if (dbias && M > 0 && N > 0)
        column_sums(dbias, dy, M, N);
}
