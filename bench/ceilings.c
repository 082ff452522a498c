/* ceilings.c — what this machine can do at best, measured in the same run as the ops:
 * the FP32 FMA peak, STREAM-style memory bandwidth, and the two-core probe.
 *
 * FMA peak. A core retires at most (FMA units) x (lanes) fused multiply-adds per cycle, each
 * two flops, but only if enough independent FMAs are in flight to cover the FMA latency:
 * latency 4 x 2 units = 8 chains at least. The kernel runs 16 (AVX-512, 32 registers) or 12
 * (AVX2, 16 registers) independent chains a = a*m + c, which converge to a fixed point near 1
 * (no overflow, no denormals, no data from memory). A compute-bound op's "fraction of the
 * ceiling" is its GFLOP/s over this number; no real kernel reaches 100%, since it also loads.
 *
 * Bandwidth. Copy a[i] = b[i] and triad a[i] = b[i] + s*c[i] as STREAM defines them, on arrays
 * far larger than any cache, counting each array read or written once (the write-allocate read
 * of `a` is not counted, as in STREAM). Plain stores, as the ops' own loops do: this file is
 * compiled with -fno-tree-loop-distribute-patterns (mk/bench.mk) so that gcc does not turn the
 * copy loop into a memcpy call, whose non-temporal stores would measure a ceiling no plain loop
 * can reach. A memory-bound op's fraction of the ceiling is its GB/s over copy's.
 *
 * Every ceiling is the best sample, not the median: it is a limit, and a kernel's fraction of it
 * must not look better because the machine was busy while the ceiling was measured.
 */
#include "bench.h"

#include <omp.h>
#include <stdlib.h>

#if defined(__AVX512F__)
#include <immintrin.h>
static const char KERNEL[] = "avx512f, 16 chains";
enum { FLOPS_PER_ITER = 16 * 16 * 2 };   /* chains x lanes x (mul + add) */

static float fma_loop(size_t iters, float seed)
{
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    /* Sixteen different starting values: equal ones would let the compiler see sixteen
     * identical chains and keep one (common subexpressions), timing latency, not throughput. */
    const __m512 d = _mm512_set1_ps(1e-3f);
    __m512 a0 = _mm512_set1_ps(seed), a1 = _mm512_add_ps(a0, d), a2 = _mm512_add_ps(a1, d),
           a3 = _mm512_add_ps(a2, d), a4 = _mm512_add_ps(a3, d), a5 = _mm512_add_ps(a4, d),
           a6 = _mm512_add_ps(a5, d), a7 = _mm512_add_ps(a6, d), a8 = _mm512_add_ps(a7, d),
           a9 = _mm512_add_ps(a8, d), a10 = _mm512_add_ps(a9, d), a11 = _mm512_add_ps(a10, d),
           a12 = _mm512_add_ps(a11, d), a13 = _mm512_add_ps(a12, d), a14 = _mm512_add_ps(a13, d),
           a15 = _mm512_add_ps(a14, d);
    for (size_t i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c);   a1 = _mm512_fmadd_ps(a1, m, c);
        a2 = _mm512_fmadd_ps(a2, m, c);   a3 = _mm512_fmadd_ps(a3, m, c);
        a4 = _mm512_fmadd_ps(a4, m, c);   a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c);   a7 = _mm512_fmadd_ps(a7, m, c);
        a8 = _mm512_fmadd_ps(a8, m, c);   a9 = _mm512_fmadd_ps(a9, m, c);
        a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
        a12 = _mm512_fmadd_ps(a12, m, c); a13 = _mm512_fmadd_ps(a13, m, c);
        a14 = _mm512_fmadd_ps(a14, m, c); a15 = _mm512_fmadd_ps(a15, m, c);
    }
    a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                       _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    a8 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15)));
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a8));
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static const char KERNEL[] = "avx2+fma, 12 chains";
enum { FLOPS_PER_ITER = 12 * 8 * 2 };

static float fma_loop(size_t iters, float seed)
{
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    /* different starting values, so that the compiler cannot merge identical chains */
    const __m256 d = _mm256_set1_ps(1e-3f);
    __m256 a0 = _mm256_set1_ps(seed), a1 = _mm256_add_ps(a0, d), a2 = _mm256_add_ps(a1, d),
           a3 = _mm256_add_ps(a2, d), a4 = _mm256_add_ps(a3, d), a5 = _mm256_add_ps(a4, d),
           a6 = _mm256_add_ps(a5, d), a7 = _mm256_add_ps(a6, d), a8 = _mm256_add_ps(a7, d),
           a9 = _mm256_add_ps(a8, d), a10 = _mm256_add_ps(a9, d), a11 = _mm256_add_ps(a10, d);
    for (size_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c);   a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);   a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);   a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);   a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);   a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
    }
    a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                       _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    a0 = _mm256_add_ps(a0, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, a0);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}
#else
/* Portable: independent multiply-add chains in an array the compiler may vectorize. Under
 * -std=c11 a*m + c stays a multiply and an add (no contraction), so this measures a mul+add
 * peak, about half an FMA machine's: the kernel's name says so in every report. */
static const char KERNEL[] = "portable mul+add, 32 chains";
enum { CHAINS = 32, FLOPS_PER_ITER = CHAINS * 2 };

static float fma_loop(size_t iters, float seed)
{
    float a[CHAINS];
    for (int r = 0; r < CHAINS; r++) a[r] = seed + 1e-3f * (float)r;   /* distinct: no merging */
    for (size_t i = 0; i < iters; i++)
        for (int r = 0; r < CHAINS; r++) a[r] = a[r] * 0.9999999f + 1e-7f;
    float s = 0.0f;
    for (int r = 0; r < CHAINS; r++) s += a[r];
    return s;
}
#endif

const char *bench_fma_kernel(void) { return KERNEL; }

/* Results go here so that the compiler must compute them. */
static volatile float sink;

/* Aggregate GFLOP/s of `iters` iterations on every thread: from the barrier before the loops to
 * the barrier after the slowest one, so threads that ran one after the other do not count as
 * running together. */
static double fma_run(int threads, size_t iters)
{
    double t0 = 0.0, t1 = 0.0;
#pragma omp parallel num_threads(threads)
    {
#pragma omp barrier
#pragma omp master
        t0 = bench_now();
        float s = fma_loop(iters, 1.0f + 1e-3f * (float)omp_get_thread_num());
#pragma omp barrier
#pragma omp master
        {
            t1 = bench_now();
            sink = s;
        }
    }
    return (double)threads * (double)iters * FLOPS_PER_ITER / (t1 - t0) * 1e-9;
}

static BenchRate rate_stats(double *x, size_t n)
{
    BenchRate r;
    r.samples = n;
    r.median = bench_median(x, n);   /* sorted: */
    r.min = x[0];
    r.max = x[n - 1];
    r.best = r.max;
    return r;
}

BenchRate bench_fma_peak(int threads, int quick)
{
    enum { MAXS = 32 };
    const size_t nsamples = quick ? 5 : 15;
    const double target = quick ? 0.02 : 0.05;   /* seconds per sample */
    /* Calibrate the loop count to `target` seconds on this thread alone (a barrier with a
     * descheduled thread would make a short multi-thread run look slow): double it until one
     * run takes a tenth of the target, then scale. */
    size_t iters = 1u << 12;
    double dt;
    for (;;) {
        const double t0 = bench_now();
        sink = fma_loop(iters, 1.0f);
        dt = bench_now() - t0;
        if (dt >= 0.1 * target) break;
        iters *= 2;
    }
    iters = (size_t)((double)iters * target / dt) + 1;
    double x[MAXS];
    for (size_t i = 0; i < nsamples; i++) x[i] = fma_run(threads, iters);
    return rate_stats(x, nsamples);
}

/* ---- two-core probe ---------------------------------------------------------------------- */

static double peak1 = 0.0;      /* GFLOP/s of one thread */
static size_t probe_iters = 0;  /* about 1 ms at that rate */

void bench_probe_init(double peak1_gflops)
{
    peak1 = peak1_gflops;
    probe_iters = (size_t)(1e-3 * peak1_gflops * 1e9 / FLOPS_PER_ITER) + 1;
}

double bench_probe(int threads)
{
    if (peak1 <= 0.0) return 1.0;
    double worst = 1e300;
    const double t0 = bench_now();
#pragma omp parallel num_threads(threads)
    {
        /* Each thread times its own loop: a thread whose vCPU shares a physical core with
         * another busy one gets about half the FMA throughput while it runs. */
        const double s0 = bench_now();
        float s = fma_loop(probe_iters, 1.0f);
        const double g = (double)probe_iters * FLOPS_PER_ITER / (bench_now() - s0) * 1e-9;
#pragma omp critical
        {
            if (g < worst) worst = g;
            sink = s;
        }
    }
    /* The whole region is timed too: a thread that was not running at all for part of it
     * (its CPU given to another process) makes the region late even if its loop was fast.
     * Waking a sleeping OpenMP worker adds some tens of microseconds to the 1 ms. */
    const double wall = (double)probe_iters * FLOPS_PER_ITER / (bench_now() - t0) * 1e-9;
    return (wall < worst ? wall : worst) / peak1;
}

/* ---- STREAM copy and triad -------------------------------------------------------------- */

static void copy(float *restrict a, const float *restrict b, size_t n, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i];
}

static void triad(float *restrict a, const float *restrict b, const float *restrict c, float s,
                  size_t n, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

void bench_stream(BenchRate *cp, BenchRate *tr, size_t bytes, int threads, int quick)
{
    enum { MAXS = 16 };
    const size_t n = bytes / sizeof(float);
    const size_t nsamples = quick ? 3 : 6;
    float *a = bench_alloc(n), *b = bench_alloc(n), *c = bench_alloc(n);
    cp->best = tr->best = -1.0;
    if (a && b && c) {
        /* First touch by the same threads and schedule as the timed loops: each page is mapped
         * (and, on a NUMA machine, placed) before timing, by the thread that will use it. */
#pragma omp parallel for num_threads(threads) schedule(static)
        for (size_t i = 0; i < n; i++) {
            a[i] = 0.5f;
            b[i] = 1.0f;
            c[i] = 2.0f;
        }
        double xc[MAXS], xt[MAXS];
        copy(a, b, n, threads);   /* warm-up */
        for (size_t s = 0; s < nsamples; s++) {
            double t0 = bench_now();
            copy(a, b, n, threads);
            xc[s] = 2.0 * (double)n * sizeof(float) / (bench_now() - t0) * 1e-9;
            t0 = bench_now();
            triad(a, b, c, 3.0f, n, threads);
            xt[s] = 3.0 * (double)n * sizeof(float) / (bench_now() - t0) * 1e-9;
        }
        sink = a[n / 2];
        *cp = rate_stats(xc, nsamples);
        *tr = rate_stats(xt, nsamples);
    }
    free(a);
    free(b);
    free(c);
}
