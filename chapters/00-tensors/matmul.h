/* matmul.h — chapter 00: matrix multiplication in the two layouts the Transformer uses.
 *
 * Dimensions: M rows of the output (tokens, B*T), K the reduced dimension (input width),
 *             N columns of the output (output width).
 *
 *   matmul:  C[M,N] = A[M,K] · B[K,N]                      (torch.matmul)
 *   linear:  Y[M,N] = X[M,K] · W[N,K]^T + bias[N]          (torch.nn.functional.linear;
 *                                                           W is stored [out, in] as nn.Linear does)
 *
 * Both variants share one signature per op: outputs first, then inputs, then dimensions.
 * `bias` may be NULL. Outputs are overwritten, never accumulated into.
 */
#ifndef TFM_MATMUL_H
#define TFM_MATMUL_H

#include <stddef.h>

void matmul_naive(float *c,                        /* [M, N] */
                  const float *a,                  /* [M, K] */
                  const float *b,                  /* [K, N] */
                  size_t M, size_t K, size_t N);
void matmul_fast(float *c, const float *a, const float *b, size_t M, size_t K, size_t N);

void linear_naive(float *y,                        /* [M, N] */
                  const float *x,                  /* [M, K] */
                  const float *w,                  /* [N, K] */
                  const float *bias,               /* [N] or NULL */
                  size_t M, size_t K, size_t N);
void linear_fast(float *y, const float *x, const float *w, const float *bias,
                 size_t M, size_t K, size_t N);

#endif
