/* matmul_naive.c — the two products of the Transformer, as the formulas write them.
 *
 * Dimension legend (matmul.h):
 *   M  rows of the output: one per token (B*T in the model)
 *   K  the reduced dimension: the input width
 *   N  columns of the output: the output width
 *
 *   matmul:  C[i][j] = sum_{k<K} A[i][k] * B[k][j]            A [M,K], B [K,N], C [M,N]
 *   linear:  Y[i][j] = bias[j] + sum_{k<K} X[i][k] * W[j][k]  X [M,K], W [N,K], Y [M,N]
 *   linear_act:  Y[i][j] = act(bias[j] + sum_{k<K} X[i][k] * W[j][k]) + R[i][j]   R [M,N]
 *   backward:    the products' gradients (matmul.h), accumulated into the gradient buffers
 *
 * Row-major: element [r][c] of an R x Cols matrix sits at offset r*Cols + c. Offsets are size_t,
 * computed from size_t dimensions, so that M*K never overflows an int.
 *
 * The sum accumulates in float, one term at a time in increasing k: PyTorch's float32 matmul also
 * accumulates in float32 (in its own blocked order), so a double accumulator here would be *more*
 * accurate than the reference we are checked against and would hide how large float32's
 * reordering error really is. The float64 truth in the goldens measures both against the exact sum.
 */
#include "matmul.h"

#include <stdlib.h>

#include "functional.h"
#include "tensor.h"

void matmul_naive(float *c,                        /* [M, N] */
                  const float *a,                  /* [M, K] */
                  const float *b,                  /* [K, N] */
                  size_t M, size_t K, size_t N)
{
    for (size_t i = 0; i < M; ++i) {
        for (size_t j = 0; j < N; ++j) {
            float sum = 0.0f;
            for (size_t k = 0; k < K; ++k)
                sum += a[i * K + k] * b[k * N + j];          /* A[i][k] * B[k][j] */
            c[i * N + j] = sum;
        }
    }
}

/* W is stored [N, K] (nn.Linear's [out_features, in_features]), so X·W^T pairs row i of X with
 * row j of W: both are read with unit stride.
 *
 * The bias is the sum's starting value rather than a final addition. PyTorch's addmm copies the
 * bias into the output and the BLAS gemm adds its partial sums of X·W^T onto it (each block of
 * k summed from zero in registers first): the same terms, in another order of roundings. */
void linear_naive(float *y,                        /* [M, N] */
                  const float *x,                  /* [M, K] */
                  const float *w,                  /* [N, K] */
                  const float *bias,               /* [N] or NULL */
                  size_t M, size_t K, size_t N)
{
    for (size_t i = 0; i < M; ++i) {
        for (size_t j = 0; j < N; ++j) {
            float sum = bias ? bias[j] : 0.0f;
            for (size_t k = 0; k < K; ++k)
                sum += x[i * K + k] * w[j * K + k];          /* X[i][k] * W[j][k] */
            y[i * N + j] = sum;
        }
    }
}

/* The fused layer written unfused: the linear, then the activation over all of Y, then the
 * residual over all of Y, each a pass of its own, as the formula reads. GELU is chapter 00's
 * gelu_naive (in place, which functional.h allows); ReLU is written `v < 0 ? 0 : v` rather than
 * fmaxf(v, 0), which would turn a NaN into 0 where torch.relu keeps it. */
void linear_act_naive(float *y,                    /* [M, N] */
                      const float *x,              /* [M, K] */
                      const float *w,              /* [N, K] */
                      const float *bias,           /* [N] or NULL */
                      const float *residual,       /* [M, N] or NULL */
                      TfmActivation act, size_t M, size_t K, size_t N)
{
    linear_naive(y, x, w, bias, M, K, N);                          /* y = x W^T + bias */
    if (act == TFM_ACT_RELU)
        for (size_t i = 0; i < M * N; ++i)
            y[i] = y[i] < 0.0f ? 0.0f : y[i];                      /* y = max(y, 0) */
    else if (act == TFM_ACT_GELU)
        gelu_naive(y, y, M * N, TFM_GELU_NONE);                    /* y = y Phi(y) */
    else if (act == TFM_ACT_GELU_TANH)
        gelu_naive(y, y, M * N, TFM_GELU_TANH);
    if (residual)
        for (size_t i = 0; i < M * N; ++i)
            y[i] = y[i] + residual[i];                             /* y = act(...) + residual */
}

/* ---- Backward (matmul.h): each gradient is a product of the same kind, accumulated.
 *
 * Every gradient element is summed in float from zero, in increasing order of its reduced
 * index, then added to the buffer once (the fast GEMM adds one such partial sum per K block).
 * Where the formula's reduced index runs down a column (dB = A^T dC, dW = dY^T X, dX = dY W),
 * a whole row of sums is built at once, the reduced index outside: each step adds a row of B,
 * X or W times one scalar, so memory is read along rows. Each element still sees the same
 * operations in the same order, so this is the element-at-a-time formula, bit for bit; read
 * down columns, at BERT's shapes it ran at a fifth of naive's forward speed. */
/* dst[0..width) += sum_{r < n} coef[r * cstride] * rows[r * ld + 0..width), the sums formed in
 * row [width] from zero, term r = 0, 1, ... in order, then added to dst once. */
static void add_row_sums(float *dst, float *row, const float *coef, size_t cstride,
                         const float *rows, size_t ld, size_t n, size_t width)
{
    for (size_t x = 0; x < width; ++x)
        row[x] = 0.0f;
    for (size_t r = 0; r < n; ++r) {
        const float c = coef[r * cstride];
        for (size_t x = 0; x < width; ++x)
            row[x] += c * rows[r * ld + x];
    }
    for (size_t x = 0; x < width; ++x)
        dst[x] += row[x];
}

void matmul_backward_naive(float *da, float *db, const float *dc, const float *a, const float *b,
                           size_t M, size_t K, size_t N)
{
    if (da)   /* dA[i][k] += sum_j dC[i][j] B[k][j]: row i of dC against row k of B */
        for (size_t i = 0; i < M; ++i)
            for (size_t k = 0; k < K; ++k) {
                float sum = 0.0f;
                for (size_t j = 0; j < N; ++j)
                    sum += dc[i * N + j] * b[k * N + j];
                da[i * K + k] += sum;
            }
    if (db) {   /* dB[k][:] += sum_i A[i][k] dC[i][:] */
        float *row = tfm_xcalloc(N + 1, sizeof *row, "matmul_backward_naive");   /* [N] */
        for (size_t k = 0; k < K; ++k)
            add_row_sums(db + k * N, row, a + k, K, dc, N, M, N);
        free(row);
    }
}

void linear_backward_naive(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                           const float *w, size_t M, size_t K, size_t N)
{
    float *row = (dx || dw) ? tfm_xcalloc(K + 1, sizeof *row, "linear_backward_naive") : NULL;
    if (dx)   /* dX[i][:] += sum_j dY[i][j] W[j][:] */
        for (size_t i = 0; i < M; ++i)
            add_row_sums(dx + i * K, row, dy + i * N, 1, w, K, N, K);
    if (dw)   /* dW[j][:] += sum_i dY[i][j] X[i][:] */
        for (size_t j = 0; j < N; ++j)
            add_row_sums(dw + j * K, row, dy + j, N, x, K, M, K);
    free(row);
    if (dbias)   /* dbias[j] += sum_i dY[i][j]: the bias is added to every row */
        for (size_t j = 0; j < N; ++j) {
            float sum = 0.0f;
            for (size_t i = 0; i < M; ++i)
                sum += dy[i * N + j];
            dbias[j] += sum;
        }
}
