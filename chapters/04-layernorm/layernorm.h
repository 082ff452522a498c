/* layernorm.h — chapter 04: layer normalization, as torch.nn.LayerNorm computes it.
 *
 *   mu_n     = (1/E) sum_e x[n,e]
 *   var_n    = (1/E) sum_e (x[n,e] - mu_n)^2            biased: divides by E, not E-1
 *   rstd_n   = 1 / sqrt(var_n + eps)                    eps inside the square root
 *   out[n,e] = (x[n,e] - mu_n) * rstd_n * gamma[e] + beta[e]
 *
 * Dimensions: N rows (every leading dimension flattened: B*T), E the normalized width.
 * gamma and beta may be NULL (elementwise_affine=False). mean and rstd, [N] each, may be NULL;
 * they are what a backward pass needs.
 *
 * In place: out may be x itself (layernorm_forward_*), or x or s itself (add_norm_forward_*),
 * in both variants; a partial overlap is not allowed. In pre_norm_linear_forward_*, out and
 * norm overlap neither x nor each other. mean, rstd, gamma and beta never overlap out.
 *
 * Both variants return float32 statistics: a row whose variance exceeds FLT_MAX (std above
 * about 1.8e19) has var = +inf, rstd = 0 and out = beta, as PyTorch's float32 kernel does
 * (which already overflows earlier, see book.md chapter 04). E >= 1.
 */
#ifndef TFM_LAYERNORM_H
#define TFM_LAYERNORM_H

#include <stddef.h>

void layernorm_forward_naive(float *out,          /* [N, E] */
                             float *mean,         /* [N] or NULL */
                             float *rstd,         /* [N] or NULL */
                             const float *x,      /* [N, E] */
                             const float *gamma,  /* [E] or NULL */
                             const float *beta,   /* [E] or NULL */
                             float eps, size_t N, size_t E);
void layernorm_forward_fast(float *out, float *mean, float *rstd, const float *x,
                            const float *gamma, const float *beta, float eps, size_t N, size_t E);

/* Add & Norm, post-LN (the original Transformer, BERT): the sublayer's output s is added to its
 * input x, then the sum is normalized. s is given (it is whatever the sublayer computed from x).
 *
 *   out = LN(x + s);  mean, rstd are those of the rows of x + s
 */
void add_norm_forward_naive(float *out,           /* [N, E] */
                            float *mean,          /* [N] or NULL */
                            float *rstd,          /* [N] or NULL */
                            const float *x,       /* [N, E] the sublayer's input, the residual */
                            const float *s,       /* [N, E] the sublayer's output */
                            const float *gamma,   /* [E] or NULL */
                            const float *beta,    /* [E] or NULL */
                            float eps, size_t N, size_t E);
void add_norm_forward_fast(float *out, float *mean, float *rstd, const float *x, const float *s,
                           const float *gamma, const float *beta, float eps, size_t N, size_t E);

/* Pre-LN (GPT-2): the sublayer sees the normalized input and the residual bypasses the norm.
 * Here the sublayer is one Linear layer (chapter 00), so the whole block can be checked:
 *
 *   norm = LN(x);  out = x + norm W^T + bias
 */
void pre_norm_linear_forward_naive(float *out,          /* [N, E] */
                                   float *norm,         /* [N, E] LN(x), the sublayer's input */
                                   float *mean,         /* [N] or NULL */
                                   float *rstd,         /* [N] or NULL */
                                   const float *x,      /* [N, E] */
                                   const float *gamma,  /* [E] or NULL */
                                   const float *beta,   /* [E] or NULL */
                                   const float *w,      /* [E, E] nn.Linear layout [out, in] */
                                   const float *bias,   /* [E] or NULL */
                                   float eps, size_t N, size_t E);
void pre_norm_linear_forward_fast(float *out, float *norm, float *mean, float *rstd,
                                  const float *x, const float *gamma, const float *beta,
                                  const float *w, const float *bias, float eps, size_t N,
                                  size_t E);

/* ---- Backward (chapter 07). With g = dout * gamma and x_hat = (x - mean) * rstd, the mean and
 * rstd the forward saved:
 *
 *   dx[n,e]   += rstd_n (g[n,e] - mean_e' g[n,e'] - x_hat[n,e] mean_e' (g[n,e'] x_hat[n,e']))
 *   dgamma[e] += sum_n dout[n,e] x_hat[n,e]
 *   dbeta[e]  += sum_n dout[n,e]
 *
 * The three terms of dx: the direct path through x_hat, and the paths through the mean and
 * through rstd, each of which every element of the row feeds. Like every tfm backward it
 * accumulates (matmul.h): the buffers are added to, never overwritten; a NULL one is not
 * computed. gamma NULL is gamma = 1. Post-LN's Add & Norm sends the same dx to both its inputs;
 * pre-LN's residual adds dout to dx beside the sublayer's path (chapter 06's encoder layer). */
void layernorm_backward_naive(float *dx,             /* [N, E] or NULL, += */
                              float *dgamma,         /* [E] or NULL, += */
                              float *dbeta,          /* [E] or NULL, += */
                              const float *dout,     /* [N, E] */
                              const float *x,        /* [N, E] the forward's input */
                              const float *mean,     /* [N] the forward's statistics */
                              const float *rstd,     /* [N] */
                              const float *gamma,    /* [E] or NULL */
                              size_t N, size_t E);
void layernorm_backward_fast(float *dx, float *dgamma, float *dbeta, const float *dout,
                             const float *x, const float *mean, const float *rstd,
                             const float *gamma, size_t N, size_t E);

/* Add & Norm's backward: out = LN(y), y = x + s, so dy is LayerNorm's backward at y and each
 * addend receives all of it: dx += dy, ds += dy (dgamma, dbeta as above). x and s are the
 * forward's inputs, mean and rstd its statistics (those of y). Any of dx, ds, dgamma, dbeta
 * may be NULL. The naive one forms y and dy in buffers of its own and calls the LayerNorm
 * backward; the fast one forms y in the arena and each row of dy once (O8). */
void add_norm_backward_naive(float *dx,            /* [N, E] or NULL, += */
                             float *ds,            /* [N, E] or NULL, += */
                             float *dgamma,        /* [E] or NULL, += */
                             float *dbeta,         /* [E] or NULL, += */
                             const float *dout,    /* [N, E] */
                             const float *x,       /* [N, E] the residual */
                             const float *s,       /* [N, E] the sublayer's output */
                             const float *mean,    /* [N] the forward's statistics */
                             const float *rstd,    /* [N] */
                             const float *gamma,   /* [E] or NULL */
                             size_t N, size_t E);
void add_norm_backward_fast(float *dx, float *ds, float *dgamma, float *dbeta,
                            const float *dout, const float *x, const float *s,
                            const float *mean, const float *rstd, const float *gamma, size_t N,
                            size_t E);

/* COUNTER-EXAMPLE, do not use: the one-pass variance var = E[x^2] - E[x]^2 in float32. Both
 * terms are about mu^2; when |mu| >> std their difference cancels catastrophically (book.md,
 * chapter 04). Kept so that tests/test_04_layernorm.c can pin its failure with numbers. */
void layernorm_forward_onepass_unsafe(float *out, float *mean, float *rstd, const float *x,
                                      const float *gamma, const float *beta, float eps,
                                      size_t N, size_t E);

#endif
