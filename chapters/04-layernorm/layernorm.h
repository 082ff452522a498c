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

#endif
