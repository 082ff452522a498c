/* matmul_fast.c — the same two products as matmul_naive.c, organised for the memory hierarchy.
 *
 * Dimension legend: M output rows (tokens), K reduced dimension, N output columns.
 *   matmul:  C[M,N] = A[M,K] · B[K,N]
 *   linear:  Y[M,N] = X[M,K] · W[N,K]^T + bias[N]
 * Both are one computation, C = A · B~, that differs only in how B~[k][j] is read: B[k][j] for
 * matmul, W[j][k] for linear. Packing (below) copies B~ into one layout, so everything after the
 * packing step is shared.
 *
 * The structure is the Goto/BLIS one. Each optimization, and what it saves:
 *
 *  1. Register blocking (the microkernel). An MR x NR tile of C lives in registers for the whole
 *     of a K block: per step k it loads NR values of B~ and MR values of A and performs MR*NR
 *     multiply-adds, so each load feeds MR (or NR) FMAs instead of one, and C is read and written
 *     once per K block rather than once per k. With AVX-512, MR x NR = 12 x 32 is 24 zmm
 *     accumulators out of 32: enough independent FMA chains to cover the FMA latency on both FMA
 *     pipes.
 *  2. Packing. The MR-row slivers of A and the NR-column slivers of B~ are copied into contiguous,
 *     64-byte aligned, k-major panels, so that the microkernel reads both with unit stride and
 *     aligned vector loads, whatever the original strides were (W is read transposed here, once,
 *     instead of in the inner loop). Panels are zero padded to full MR / NR, so the kernel never
 *     branches on edges.
 *  3. Cache blocking. K is cut into KC-long blocks so that one B~ panel (KC x NR) stays in L1
 *     while the kernel sweeps all the A panels of a block, an MC x KC block of A stays in L2
 *     while it is reused against every B~ panel, and the KC x NC block of B~ stays in L3 (or L2)
 *     while it is reused against all of M. Without blocking every FMA would wait on main memory.
 *  4. Threads. OpenMP threads split the grid of (MC row block, group of NR panels) tasks; every
 *     element of C is computed by exactly one thread, over k in the same fixed order (KC blocks in
 *     increasing k, the kernel's k loop inside each), so the result is bitwise the same for any
 *     number of threads and any schedule.
 *  5. Small problems skip all of this (see SMALL_WORK): below that size, allocating and packing
 *     cost more than they save, and a direct loop that vectorizes over j is faster.
 *
 * Accuracy: every output is a float sum in increasing k (with FMA contraction), within float32
 * reordering error of PyTorch. For linear the bias is the starting value of the sum, as in
 * matmul_naive.c and in PyTorch's addmm.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "matmul.h"

/* Microkernel tile: MR rows x NR columns of C. NR is two 16-float vectors. */
#ifndef MR
#define MR 12
#endif
#define NR 32
/* Cache blocks (floats). KC*NR*4 = 32 KiB: one B~ panel in the 48 KiB L1 (with room for the A
 * panel being streamed). MC_MAX*KC*4 <= 384 KiB: the A block in a 1 MiB L2. KC*NC*4 = 4 MiB:
 * the B~ block in L3. */
#ifndef KC
#define KC 256
#endif
#ifndef MC_MAX
#define MC_MAX 192
#endif
#ifndef NC
#define NC 4096
#endif
/* Below this many multiply-adds (M*K*N), the direct loops win over packing. */
#ifndef SMALL_WORK
#define SMALL_WORK (64u * 64u * 64u)
#endif

#define ALIGN 64

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t round_up(size_t a, size_t b) { return ceil_div(a, b) * b; }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

static float *alloc_floats(size_t n)
{
    /* aligned_alloc needs a size that is a multiple of the alignment. */
    size_t bytes = round_up(n * sizeof(float), ALIGN);
    return aligned_alloc(ALIGN, bytes ? bytes : ALIGN);
}

/* How B~ is read: B~[k][j] = b[k*ldb + j] (matmul, B row-major [K,N]) or b[j*ldb + k]
 * (linear, W row-major [N,K], i.e. B~ = W^T). */
typedef enum { B_ROWS_K, B_ROWS_N } BLayout;

typedef struct {
    float *c;
    const float *a, *b, *bias;
    BLayout layout;
    size_t M, K, N;
} Gemm;

/* ------------------------------------------------------------------------------------------
 * Packing. A panel of A (rows i0..i0+mr, k0..k0+kc) becomes ap[k*MR + i]; a panel of B~
 * (k0..k0+kc, columns j0..j0+nr) becomes bp[k*NR + j]. Rows/columns past mr/nr are zero.
 */
static void pack_a(float *restrict ap, const float *restrict a, size_t lda, size_t i0, size_t mr,
                   size_t k0, size_t kc)
{
    for (size_t i = 0; i < mr; ++i) {
        const float *src = a + (i0 + i) * lda + k0;
        for (size_t k = 0; k < kc; ++k)
            ap[k * MR + i] = src[k];
    }
    for (size_t i = mr; i < MR; ++i)
        for (size_t k = 0; k < kc; ++k)
            ap[k * MR + i] = 0.0f;
}

static void pack_b(float *restrict bp, const Gemm *g, size_t k0, size_t kc, size_t j0, size_t nr)
{
    if (g->layout == B_ROWS_K) {
        /* B[k][j0..j0+nr) is contiguous: copy row by row. */
        for (size_t k = 0; k < kc; ++k) {
            const float *src = g->b + (k0 + k) * g->N + j0;
            float *dst = bp + k * NR;
            size_t j = 0;
            for (; j < nr; ++j)
                dst[j] = src[j];
            for (; j < NR; ++j)
                dst[j] = 0.0f;
        }
    } else {
        /* W[j][k0..k0+kc) is contiguous: a transposing copy, reading W with unit stride. */
        for (size_t j = 0; j < nr; ++j) {
            const float *src = g->b + (j0 + j) * g->K + k0;
            for (size_t k = 0; k < kc; ++k)
                bp[k * NR + j] = src[k];
        }
        for (size_t j = nr; j < NR; ++j)
            for (size_t k = 0; k < kc; ++k)
                bp[k * NR + j] = 0.0f;
    }
}

/* ------------------------------------------------------------------------------------------
 * The microkernel: the full MR x NR tile c[i*ldc + j] over one K block.
 *   start == START_ZERO:  tile  = sum_{k<kc} ap[k][i] * bp[k][j]
 *   start == START_BIAS:  tile  = bias[j] + sum ...           (first K block of a linear)
 *   start == START_C:     tile  = tile + sum ...              (later K blocks)
 * In every case the accumulator starts at the value and the terms are added in increasing k,
 * so across K blocks the sum is one running float sum in k order.
 */
enum { START_ZERO, START_BIAS, START_C };

#if defined(__AVX512F__)
static void kernel(size_t kc, const float *restrict ap, const float *restrict bp,
                   float *restrict c, size_t ldc, int start, const float *restrict bias)
{
    /* Prefetching the C tile now lets its cache misses (rows ldc apart, often in the same cache
     * set when N is a power of two) overlap the k loop instead of stalling the final update. */
    for (int i = 0; i < MR; ++i) {
        _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)i * ldc + 16), _MM_HINT_T0);
    }
    __m512 acc[MR][2];
    const __m512 init0 = start == START_BIAS ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 init1 = start == START_BIAS ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
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
        float *ci = c + (size_t)i * ldc;
        if (start == START_C) {
            acc[i][0] = _mm512_add_ps(_mm512_loadu_ps(ci), acc[i][0]);
            acc[i][1] = _mm512_add_ps(_mm512_loadu_ps(ci + 16), acc[i][1]);
        }
        _mm512_storeu_ps(ci, acc[i][0]);
        _mm512_storeu_ps(ci + 16, acc[i][1]);
    }
}
#else
/* Portable path: the same tile as a fixed-size array. With MR and NR compile-time constants the
 * compiler can keep it in vector registers and turn the j loop into vector FMAs. */
static void kernel(size_t kc, const float *restrict ap, const float *restrict bp,
                   float *restrict c, size_t ldc, int start, const float *restrict bias)
{
    float acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            acc[i][j] = start == START_BIAS ? bias[j] : 0.0f;
    for (size_t k = 0; k < kc; ++k) {
        const float *restrict bk = bp + k * NR;
        for (int i = 0; i < MR; ++i) {
            const float ai = ap[k * MR + (size_t)i];
#pragma omp simd
            for (int j = 0; j < NR; ++j)
                acc[i][j] += ai * bk[j];
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            c[(size_t)i * ldc + (size_t)j] =
                start == START_C ? c[(size_t)i * ldc + (size_t)j] + acc[i][j] : acc[i][j];
}
#endif

/* An edge tile (mr < MR or nr < NR): run the full kernel on a padded copy, then write back only
 * the mr x nr part that exists. The padding rows/columns compute zeros and are discarded. */
static void kernel_edge(size_t kc, const float *ap, const float *bp, float *c, size_t ldc,
                        size_t mr, size_t nr, int start, const float *bias)
{
    _Alignas(ALIGN) float tile[MR * NR];
    float bias_pad[NR] = {0};
    if (start == START_C)
        for (size_t i = 0; i < mr; ++i)
            memcpy(tile + i * NR, c + i * ldc, nr * sizeof(float));
    if (start == START_BIAS)
        memcpy(bias_pad, bias, nr * sizeof(float));
    kernel(kc, ap, bp, tile, NR, start, bias_pad);
    for (size_t i = 0; i < mr; ++i)
        memcpy(c + i * ldc, tile + i * NR, nr * sizeof(float));
}

/* ------------------------------------------------------------------------------------------
 * The blocked driver. Loops, outside in:
 *   jc  over N in NC-column blocks        B~ block KC x NC shared by all threads (L3)
 *   pc  over K in KC blocks               (sequential: fixes the order of each sum)
 *   task over (MC row block, NR-panel group): one thread each
 *     jr  over NR panels of its group      B~ panel KC x NR (L1)
 *       ir  over MR panels of its row block  A block MC x KC, packed per task (L2)
 */
static void gemm_blocked(const Gemm *g)
{
    const size_t M = g->M, K = g->K, N = g->N;
    const int nt = omp_get_max_threads();
    const size_t nthreads = nt > 0 ? (size_t)nt : 1;

    /* Row blocks: a multiple of the thread count when M allows, so no thread sits idle at the
     * end; MC a multiple of MR so only the last block has an edge. */
    size_t mb = round_up(ceil_div(M, MC_MAX), nthreads);
    size_t mc = round_up(ceil_div(M, mb), MR);
    mb = ceil_div(M, mc);
    /* Fewer row blocks than threads (small M): split each NC block's panels among threads. */
    const size_t ns = mb >= nthreads ? 1 : ceil_div(nthreads, mb);

    const size_t nc_max = min_sz(NC, round_up(N, NR));
    const size_t kc_max = min_sz(KC, K);
    const size_t a_len = round_up(mc * kc_max, ALIGN / sizeof(float)); /* keeps each aligned */
    float *bpack = alloc_floats(kc_max * nc_max);
    float *apacks = alloc_floats(a_len * nthreads);             /* one A block per thread */
    if (!bpack || !apacks)
        abort();

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *apack = apacks + (size_t)omp_get_thread_num() * a_len;
        for (size_t jc = 0; jc < N; jc += NC) {
            const size_t nc = min_sz(NC, N - jc);
            const size_t np = ceil_div(nc, NR);
            for (size_t pc = 0; pc < K; pc += KC) {
                const size_t kc = min_sz(KC, K - pc);
                const int start = pc > 0 ? START_C : g->bias ? START_BIAS : START_ZERO;

#pragma omp for schedule(static)
                for (size_t p = 0; p < np; ++p)
                    pack_b(bpack + p * kc * NR, g, pc, kc, jc + p * NR, min_sz(NR, nc - p * NR));
                /* implicit barrier: B~ is complete before anyone reads it */

                size_t packed_ib = SIZE_MAX;
#pragma omp for schedule(static)
                for (size_t t = 0; t < mb * ns; ++t) {
                    const size_t ib = t / ns, js = t % ns;
                    const size_t i0 = ib * mc, mcur = min_sz(mc, M - i0);
                    if (ib != packed_ib) {
                        for (size_t ir = 0; ir < mcur; ir += MR)
                            pack_a(apack + ir * kc, g->a, K, i0 + ir, min_sz(MR, mcur - ir), pc,
                                   kc);
                        packed_ib = ib;
                    }
                    for (size_t p = js * np / ns; p < (js + 1) * np / ns; ++p) {
                        const size_t j0 = jc + p * NR, nr = min_sz(NR, N - j0);
                        const float *bp = bpack + p * kc * NR;
                        const float *bias = g->bias ? g->bias + j0 : NULL;
                        for (size_t ir = 0; ir < mcur; ir += MR) {
                            const size_t mr = min_sz(MR, mcur - ir);
                            float *c = g->c + (i0 + ir) * N + j0;
                            if (mr == MR && nr == NR)
                                kernel(kc, apack + ir * kc, bp, c, N, start, bias);
                            else
                                kernel_edge(kc, apack + ir * kc, bp, c, N, mr, nr, start, bias);
                        }
                    }
                }
                /* implicit barrier: nobody repacks B~ while it is still being read */
            }
        }
    }
    free(apacks);
    free(bpack);
}

/* ------------------------------------------------------------------------------------------
 * Small problems: direct loops, no allocation, no threads.
 */
static void matmul_small(float *restrict c, const float *restrict a, const float *restrict b,
                         size_t M, size_t K, size_t N)
{
    /* Row i of C as a running vector: c_i = sum_k A[i][k] * B[k][:], vectorized over j,
     * each element still summed in increasing k. */
    for (size_t i = 0; i < M; ++i) {
        float *restrict ci = c + i * N;
        for (size_t j = 0; j < N; ++j)
            ci[j] = 0.0f;
        for (size_t k = 0; k < K; ++k) {
            const float aik = a[i * K + k];
            const float *restrict bk = b + k * N;
#pragma omp simd
            for (size_t j = 0; j < N; ++j)
                ci[j] += aik * bk[j];
        }
    }
}

static void linear_small(float *restrict y, const float *restrict x, const float *restrict w,
                         const float *restrict bias, size_t M, size_t K, size_t N)
{
    /* Same shape of loop as matmul_small: y_i = bias + sum_k X[i][k] * W[:][k], reading W down a
     * column (stride K); at these sizes all of W is in L1 anyway. */
    for (size_t i = 0; i < M; ++i) {
        float *restrict yi = y + i * N;
        for (size_t j = 0; j < N; ++j)
            yi[j] = bias ? bias[j] : 0.0f;
        for (size_t k = 0; k < K; ++k) {
            const float xik = x[i * K + k];
#pragma omp simd
            for (size_t j = 0; j < N; ++j)
                yi[j] += xik * w[j * K + k];
        }
    }
}

void matmul_fast(float *c, const float *a, const float *b, size_t M, size_t K, size_t N)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        memset(c, 0, M * N * sizeof(float));
        return;
    }
    if ((double)M * (double)K * (double)N <= (double)SMALL_WORK) {
        matmul_small(c, a, b, M, K, N);
        return;
    }
    const Gemm g = {c, a, b, NULL, B_ROWS_K, M, K, N};
    gemm_blocked(&g);
}

void linear_fast(float *y, const float *x, const float *w, const float *bias,
                 size_t M, size_t K, size_t N)
{
    if (M == 0 || N == 0)
        return;
    if (K == 0) {
        for (size_t i = 0; i < M; ++i)
            for (size_t j = 0; j < N; ++j)
                y[i * N + j] = bias ? bias[j] : 0.0f;
        return;
    }
    if ((double)M * (double)K * (double)N <= (double)SMALL_WORK) {
        linear_small(y, x, w, bias, M, K, N);
        return;
    }
    const Gemm g = {y, x, w, bias, B_ROWS_N, M, K, N};
    gemm_blocked(&g);
}
