/* ch00_matmul.c — chapter 00's benchmark cases: matmul and linear, naive, fast and OpenBLAS.
 *
 * Dimensions (matmul.h): M output rows, K the reduced dimension, N output columns.
 *   matmul: C[M,N] = A[M,K] B[K,N]          linear: Y[M,N] = X[M,K] W[N,K]^T + bias[N]
 *
 * OpenBLAS's cblas_sgemm is the reference: what a tuned BLAS gets from this machine on the same
 * shape and thread count. linear is gemm with W transposed (CblasTrans) on top of the bias,
 * copied into Y first, which is how PyTorch's addmm does it too.
 *
 * Naive on big shapes: naive's row i depends only on row i of A (or X), so naive computes rows
 * 0..Mn-1 only, Mn chosen to fit the flop budget, and those rows of fast's result are checked.
 */
#include "bench.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"

/* OpenBLAS's own extensions (declared by its cblas.h; repeated so that a netlib cblas.h
 * selected by update-alternatives still compiles against libopenblas). */
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);

typedef struct {
    size_t M, K, N;
    size_t Mn;          /* rows naive computes */
    float *a;           /* [M, K] A, or X for linear */
    float *b;           /* [K, N] B, or W [N, K] for linear */
    float *bias;        /* [N] linear only */
    float *out;         /* [M, N] fast's and OpenBLAS's output */
    float *naive_out;   /* [Mn, N] */
} MatmulState;

void bench_openblas_threads(int n) { openblas_set_num_threads(n); }
const char *bench_openblas_core(void) { return openblas_get_corename(); }

void bench_matmul_teardown(void *state)
{
    MatmulState *s = state;
    if (!s) return;
    free(s->a);
    free(s->b);
    free(s->bias);
    free(s->out);
    free(s->naive_out);
    free(s);
}

static int setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget, int linear,
                 char *err, size_t errlen)
{
    MatmulState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->M = c->dims[0];
    s->K = c->dims[1];
    s->N = c->dims[2];
    const double row_flops = 2.0 * (double)s->K * (double)s->N;
    s->Mn = s->M;
    if ((double)s->M * row_flops > budget) {
        s->Mn = (size_t)(budget / row_flops);
        if (s->Mn < 1) s->Mn = 1;
        snprintf(in->naive_note, sizeof in->naive_note, "naive: %zu of %zu rows, x%.1f", s->Mn,
                 s->M, (double)s->M / (double)s->Mn);
    }
    s->a = bench_alloc(s->M * s->K);
    s->b = bench_alloc(s->K * s->N);
    s->bias = linear ? bench_alloc(s->N) : NULL;
    s->out = bench_alloc(s->M * s->N);
    s->naive_out = bench_alloc(s->Mn * s->N);
    if (!s->a || !s->b || (linear && !s->bias) || !s->out || !s->naive_out) goto oom;
    bench_fill_uniform(s->a, s->M * s->K, seed, 1.0f);
    bench_fill_uniform(s->b, s->K * s->N, seed + 1, 1.0f);
    if (linear) bench_fill_uniform(s->bias, s->N, seed + 2, 1.0f);

    in->out = s->out;                 /* fast's first Mn rows are contiguous */
    in->naive_out = s->naive_out;
    in->n_check = s->Mn * s->N;
    in->ndim = 2;
    in->shape[0] = s->Mn;
    in->shape[1] = s->N;
    in->naive_share = (double)s->Mn / (double)s->M;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

int bench_matmul_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                       char *err, size_t errlen)
{
    return setup(in, c, seed, budget, 0, err, errlen);
}

int bench_linear_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                       char *err, size_t errlen)
{
    return setup(in, c, seed, budget, 1, err, errlen);
}

void bench_matmul_naive(void *state)
{
    MatmulState *s = state;
    matmul_naive(s->naive_out, s->a, s->b, s->Mn, s->K, s->N);
}

void bench_matmul_fast(void *state)
{
    MatmulState *s = state;
    matmul_fast(s->out, s->a, s->b, s->M, s->K, s->N);
}

void bench_matmul_openblas(void *state)
{
    MatmulState *s = state;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f,
                s->a, (int)s->K, s->b, (int)s->N, 0.0f, s->out, (int)s->N);
}

void bench_linear_naive(void *state)
{
    MatmulState *s = state;
    linear_naive(s->naive_out, s->a, s->b, s->bias, s->Mn, s->K, s->N);
}

void bench_linear_fast(void *state)
{
    MatmulState *s = state;
    linear_fast(s->out, s->a, s->b, s->bias, s->M, s->K, s->N);
}

void bench_linear_openblas(void *state)
{
    MatmulState *s = state;
    for (size_t i = 0; i < s->M; i++) memcpy(s->out + i * s->N, s->bias, s->N * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f,
                s->a, (int)s->K, s->b, (int)s->K, 1.0f, s->out, (int)s->N);
}
