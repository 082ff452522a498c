/* functional.h — chapter 00: torch.nn.functional's row-wise and elementwise building blocks that
 * later chapters use: softmax and log_softmax along one dimension, and GELU.
 *
 * Dimensions: a tensor of any rank, reduced along one dimension `dim`, is viewed as
 *             [outer, C, inner]:  outer = product of the dimensions before dim,
 *                                 C     = the size of dim (the classes, the keys, ...),
 *                                 inner = product of the dimensions after dim (1 for dim = -1).
 *             Element (o, c, i) sits at offset (o*C + c)*inner + i. A row is the C elements of
 *             one (o, i): inner apart in memory, contiguous when inner = 1.
 *             n is the element count of an elementwise op.
 *
 *   softmax:      out[o,c,i] = exp(x[o,c,i] - m) / sum_c' exp(x[o,c',i] - m)
 *   log_softmax:  out[o,c,i] = (x[o,c,i] - m) - log sum_c' exp(x[o,c',i] - m)
 *                 with m = max_c x[o,c,i], the row maximum (torch.softmax / torch.log_softmax):
 *                 the same value for any m, but with the maximum no exp can overflow.
 *   GELU:         none:  GELU(x) = x * Phi(x) = x/2 (1 + erf(x / sqrt 2))
 *                 tanh:  GELU(x) ~ x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *                 (torch.nn.functional.gelu(x, approximate='none' | 'tanh')).
 *
 * PyTorch's special values, which both variants reproduce (checked against torch 1.13):
 *   - a row whose maximum is -inf (every element -inf) gives NaN everywhere in the row (x - m is
 *     -inf - (-inf)); a row holding +inf or NaN gives NaN everywhere in the row; a -inf among
 *     finite values gives probability 0, log-probability -inf;
 *   - C = 0, outer = 0 or inner = 0: nothing is written (an empty output);
 *   - GELU(+inf) = +inf, GELU(-inf) = NaN (-inf * 0, as PyTorch), GELU(NaN) = NaN.
 *
 * In place: out may equal x (every op reads an element before it writes it and writes nothing
 * else of the row before reading all of it); out must not otherwise overlap x.
 * Both variants share one signature per op: outputs first, then inputs, then dimensions.
 */
#ifndef TFM_FUNCTIONAL_H
#define TFM_FUNCTIONAL_H

#include <stddef.h>

void softmax_naive(float *out,                      /* [outer, C, inner] */
                   const float *x,                  /* [outer, C, inner] */
                   size_t outer, size_t C, size_t inner);
void softmax_fast(float *out,                       /* [outer, C, inner] */
                  const float *x,                   /* [outer, C, inner] */
                  size_t outer, size_t C, size_t inner);

void log_softmax_naive(float *out,                  /* [outer, C, inner] */
                       const float *x,              /* [outer, C, inner] */
                       size_t outer, size_t C, size_t inner);
void log_softmax_fast(float *out,                   /* [outer, C, inner] */
                      const float *x,               /* [outer, C, inner] */
                      size_t outer, size_t C, size_t inner);

/* torch.nn.functional.gelu's `approximate`: 'none' (the erf form) or 'tanh'. */
typedef enum { TFM_GELU_NONE, TFM_GELU_TANH } TfmGeluApprox;

void gelu_naive(float *out,                         /* [n] */
                const float *x,                     /* [n] */
                size_t n, TfmGeluApprox approximate);
void gelu_fast(float *out,                          /* [n] */
               const float *x,                      /* [n] */
               size_t n, TfmGeluApprox approximate);

/* ---- Backward (chapter 07). dy = dL/d out is the upstream gradient; dx += dL/dx, accumulated
 * into dx as every tfm backward does (matmul.h), never overwritten. Each takes what the forward
 * saved: softmax and log_softmax their output y, GELU its input x.
 *
 *   softmax:      dx_c += y_c (dy_c - sum_c' dy_c' y_c')       (the Jacobian diag(y) - y y^T)
 *   log_softmax:  dx_c += dy_c - exp(y_c) sum_c' dy_c'         (exp(y) = softmax(x))
 *   GELU none:    dx += dy (Phi(x) + x phi(x)),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
 *   GELU tanh:    dx += dy (1/2 (1 + tanh u) + 1/2 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 k x^2)),
 *                 u = sqrt(2/pi) (x + k x^3), k = 0.044715
 * Rows and elements as the forwards; dx overlaps neither dy nor y (or x). */
void softmax_backward_naive(float *dx,              /* [outer, C, inner] += */
                            const float *dy,        /* [outer, C, inner] */
                            const float *y,         /* [outer, C, inner] softmax's output */
                            size_t outer, size_t C, size_t inner);
void softmax_backward_fast(float *dx, const float *dy, const float *y, size_t outer, size_t C,
                           size_t inner);

void log_softmax_backward_naive(float *dx,          /* [outer, C, inner] += */
                                const float *dy,    /* [outer, C, inner] */
                                const float *y,     /* [outer, C, inner] log_softmax's output */
                                size_t outer, size_t C, size_t inner);
void log_softmax_backward_fast(float *dx, const float *dy, const float *y, size_t outer,
                               size_t C, size_t inner);

void gelu_backward_naive(float *dx,                 /* [n] += */
                         const float *dy,           /* [n] */
                         const float *x,            /* [n] the forward's input */
                         size_t n, TfmGeluApprox approximate);
void gelu_backward_fast(float *dx, const float *dy, const float *x, size_t n,
                        TfmGeluApprox approximate);

#endif
