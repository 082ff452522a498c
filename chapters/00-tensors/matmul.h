/* matmul.h — chapter 00: matrix multiplication in the two layouts the Transformer uses.
 *
 * Dimensions: M rows of the output (tokens, B*T), K the reduced dimension (input width),
 *             N columns of the output (output width).
 *
 *   matmul:  C[M,N] = A[M,K] · B[K,N]                      (torch.matmul)
 *   linear:  Y[M,N] = X[M,K] · W[N,K]^T + bias[N]          (torch.nn.functional.linear;
 *                                                           W is stored [out, in] as nn.Linear does)
 *   linear_act:                                            (a linear with its epilogue fused)
 *            Y[M,N] = act(X[M,K] · W[N,K]^T + bias[N]) + residual[M,N]
 *            act: none, ReLU (max(v, 0), NaN kept), GELU as functional.h's gelu, erf form
 *            (F.gelu's default, approximate='none') or tanh form (approximate='tanh').
 *            PyTorch's feed-forward block is exactly this twice: linear2(act(linear1(x))) + x.
 *
 * Both variants share one signature per op: outputs first, then inputs, then dimensions.
 * `bias` and `residual` may be NULL. Outputs are overwritten, never accumulated into. y overlaps
 * none of the inputs (the fast GEMM writes partial sums into y before it reads residual).
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

/* The activation a linear_act applies to x W^T + bias, before the residual is added. */
typedef enum {
    TFM_ACT_NONE,        /* identity: linear_act is linear (+ residual) */
    TFM_ACT_RELU,        /* max(v, 0); a NaN stays NaN, as torch.relu */
    TFM_ACT_GELU,        /* x Phi(x), the erf form (F.gelu, approximate='none') */
    TFM_ACT_GELU_TANH    /* the tanh form (F.gelu, approximate='tanh') */
} TfmActivation;

/* Naive: linear_naive, then the activation (gelu_naive for GELU), then the residual, one pass
 * each. Fast: one GEMM whose epilogue applies bias, activation and residual to each tile while
 * it is still in L1 (its GELU is gelu_fast's, tfm_gelu.h); with TFM_ACT_NONE and no residual it
 * is linear_fast, bit for bit. */
void linear_act_naive(float *y,                    /* [M, N] */
                      const float *x,              /* [M, K] */
                      const float *w,              /* [N, K] */
                      const float *bias,           /* [N] or NULL */
                      const float *residual,       /* [M, N] or NULL: added after act */
                      TfmActivation act, size_t M, size_t K, size_t N);
void linear_act_fast(float *y, const float *x, const float *w, const float *bias,
                     const float *residual, TfmActivation act, size_t M, size_t K, size_t N);

/* ---- Backward (chapter 07). With dC = dL/dC, the gradient of a loss L flowing into the output:
 *
 *   matmul:  dA[M,K] = dC · B^T        dA[i][k] = sum_j dC[i][j] B[k][j]
 *            dB[K,N] = A^T · dC        dB[k][j] = sum_i A[i][k] dC[i][j]
 *   linear:  dX[M,K] = dY · W          dX[i][k] = sum_j dY[i][j] W[j][k]
 *            dW[N,K] = dY^T · X        dW[j][k] = sum_i dY[i][j] X[i][k]
 *            dbias[N] = sum_i dY[i][:]
 *
 * Every backward in tfm ACCUMULATES into its gradient buffers (grad += ...), as PyTorch's
 * .grad and llm.c do, and never overwrites them: a weight read twice (the MLM decoder tied to the
 * word embeddings), a tensor that feeds a residual and a sublayer, a batch dimension broadcast
 * by matmul, micro-batches of one optimizer step all sum their gradients for free. The caller
 * zeroes the buffers once per step. A NULL gradient is not wanted and not computed. Gradients
 * overlap none of the inputs. */
void matmul_backward_naive(float *da,              /* [M, K] or NULL: += dC B^T */
                           float *db,              /* [K, N] or NULL: += A^T dC */
                           const float *dc,        /* [M, N] */
                           const float *a,         /* [M, K] */
                           const float *b,         /* [K, N] */
                           size_t M, size_t K, size_t N);
void matmul_backward_fast(float *da, float *db, const float *dc, const float *a, const float *b,
                          size_t M, size_t K, size_t N);

void linear_backward_naive(float *dx,              /* [M, K] or NULL: += dY W */
                           float *dw,              /* [N, K] or NULL: += dY^T X */
                           float *dbias,           /* [N] or NULL: += column sums of dY */
                           const float *dy,        /* [M, N] */
                           const float *x,         /* [M, K] */
                           const float *w,         /* [N, K] */
                           size_t M, size_t K, size_t N);
void linear_backward_fast(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                          const float *w, size_t M, size_t K, size_t N);

#endif
