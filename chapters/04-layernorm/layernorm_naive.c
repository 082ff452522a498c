/* layernorm_naive.c — layer normalization, written the way the formula reads (two passes).
 *
 *   mu_n     = (1/E) sum_e x[n,e]                                   first pass: the mean
 *   var_n    = (1/E) sum_e (x[n,e] - mu_n)^2                        second pass: biased variance
 *   rstd_n   = 1 / sqrt(var_n + eps)
 *   out[n,e] = (x[n,e] - mu_n) * rstd_n * gamma[e] + beta[e]
 *
 * Dimension legend (same letters as layernorm.h):
 *   n < N   row (a token: every leading dimension of the tensor flattened, B*T)
 *   e < E   feature within the row, the normalized dimension (d_model)
 *
 * Memory layout, row-major: x[n][e], out[n][e]; mean[n], rstd[n]; gamma[e], beta[e].
 * All offsets are size_t (see tensor.h).
 *
 * Precision. The inputs and outputs are float32; the two sums are accumulated in double, so the
 * reference's only sizeable error is the final rounding to float32, whatever the row holds. With
 * float32 sums the mean of a row of 768 values near 1e4 would carry an absolute error of about
 * 1e-3 (the running sum reaches 7.7e6, where float32's spacing is 0.5), and every normalized
 * value would inherit it. The centring x - mu also uses the double mu: rounding mu to float32
 * first would cost half a float32 spacing of mu (5e-4 at mu = 1e4) in every output.
 * The variance is then rounded to float32, because it is a float32 statistic of a float32 layer:
 * beyond FLT_MAX it becomes +inf, rstd = 1/sqrt(inf) = 0 and out = beta (layernorm.h).
 */
#include "layernorm.h"

#include <math.h>
#include <stdlib.h>

#include "matmul.h"
#include "tensor.h"

void layernorm_forward_naive(float *out, float *mean, float *rstd, const float *x,
                             const float *gamma, const float *beta, float eps, size_t N, size_t E)
{
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * E;   /* row n: xr[e] = x[n][e] */
        float *yr = out + n * E;

        /* mu = (1/E) sum_e x_e */
        double sum = 0.0;
        for (size_t e = 0; e < E; e++)
            sum += xr[e];
        const double mu = sum / (double)E;

        /* var = (1/E) sum_e (x_e - mu)^2: biased (divides by E, as nn.LayerNorm does), and
         * centred before squaring, so no large terms cancel (compare the one-pass form below). */
        double sq = 0.0;
        for (size_t e = 0; e < E; e++) {
            const double d = (double)xr[e] - mu;
            sq += d * d;
        }
        const float var = (float)(sq / (double)E);

        /* rstd = 1 / sqrt(var + eps): eps inside the root. A constant row has var = 0 and
         * rstd = 1/sqrt(eps) (316.2 at eps = 1e-5, 1e6 at BERT's 1e-12). */
        const double r = 1.0 / sqrt((double)var + (double)eps);

        /* out_e = x_hat_e * gamma_e + beta_e,  x_hat_e = (x_e - mu) * rstd */
        for (size_t e = 0; e < E; e++) {
            const float xhat = (float)(((double)xr[e] - mu) * r);
            const float g = gamma ? gamma[e] : 1.0f;
            const float b = beta ? beta[e] : 0.0f;
            yr[e] = xhat * g + b;
        }
        if (mean)
            mean[n] = (float)mu;
        if (rstd)
            rstd[n] = (float)r;
    }
}

/* The one-pass textbook shortcut, var = E[x^2] - E[x]^2, with float32 sums: one read of the row
 * instead of two, and wrong whenever |mu| >> std. Both E[x^2] and E[x]^2 are about mu^2, and
 * float32 keeps only 24 bits of each: at mu = 1e4 that is a spacing of 8 in numbers near 1e8,
 * while the variance to recover is about 1. The difference is noise, often negative (rstd NaN).
 * tests/test_04_layernorm.c pins the failure; layernorm.h marks this as a counter-example. */
void layernorm_forward_onepass_unsafe(float *out, float *mean, float *rstd, const float *x,
                                      const float *gamma, const float *beta, float eps,
                                      size_t N, size_t E)
{
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * E;
        float *yr = out + n * E;
        float s1 = 0.0f, s2 = 0.0f;   /* sum_e x_e, sum_e x_e^2 in one pass */
        for (size_t e = 0; e < E; e++) {
            s1 += xr[e];
            s2 += xr[e] * xr[e];
        }
        const float mu = s1 / (float)E;
        const float var = s2 / (float)E - mu * mu;   /* E[x^2] - E[x]^2: the cancellation */
        const float r = 1.0f / sqrtf(var + eps);
        for (size_t e = 0; e < E; e++) {
            const float g = gamma ? gamma[e] : 1.0f;
            const float b = beta ? beta[e] : 0.0f;
            yr[e] = (xr[e] - mu) * r * g + b;
        }
        if (mean)
            mean[n] = mu;
        if (rstd)
            rstd[n] = r;
    }
}

void add_norm_forward_naive(float *out, float *mean, float *rstd, const float *x, const float *s,
                            const float *gamma, const float *beta, float eps, size_t N, size_t E)
{
    /* h = x + s, the residual connection; then out = LN(h). */
    float *h = tfm_xcalloc(N * E, sizeof(float), "add_norm_forward_naive");
    for (size_t i = 0; i < N * E; i++)
        h[i] = x[i] + s[i];
    layernorm_forward_naive(out, mean, rstd, h, gamma, beta, eps, N, E);
    free(h);
}

void pre_norm_linear_forward_naive(float *out, float *norm, float *mean, float *rstd,
                                   const float *x, const float *gamma, const float *beta,
                                   const float *w, const float *bias, float eps, size_t N,
                                   size_t E)
{
    layernorm_forward_naive(norm, mean, rstd, x, gamma, beta, eps, N, E);   /* norm = LN(x) */
    linear_naive(out, norm, w, bias, N, E, E);                              /* sublayer(norm) */
    for (size_t i = 0; i < N * E; i++)
        out[i] = x[i] + out[i];                                             /* x + sublayer */
}

/* ---- Backward (layernorm.h). out = gamma x_hat + beta with x_hat = (x - mu) rstd, so with
 * g = dout * gamma (dL/dx_hat):
 *   dL/dx_e = sum_e' g_e' dx_hat_e'/dx_e,
 *   dx_hat_e'/dx_e = rstd (delta_ee' - 1/E - x_hat_e x_hat_e' / E)
 * (the mean's share is -1/E; rstd's, through var, is -x_hat_e x_hat_e' / E), which gives
 *   dL/dx_e = rstd (g_e - mean(g) - x_hat_e mean(g x_hat)).
 * The row sums are in double, as the forward's. */
void layernorm_backward_naive(float *dx, float *dgamma, float *dbeta, const float *dout,
                              const float *x, const float *mean, const float *rstd,
                              const float *gamma, size_t N, size_t E)
{
    for (size_t n = 0; n < N; n++) {
        const float *xr = x + n * E, *dr = dout + n * E;
        const double mu = mean[n], r = rstd[n];

        double sg = 0.0, sgx = 0.0;                        /* sum_e g_e, sum_e g_e x_hat_e */
        for (size_t e = 0; e < E; e++) {
            const double xhat = ((double)xr[e] - mu) * r;
            const double g = (double)dr[e] * (gamma ? gamma[e] : 1.0f);
            sg += g;
            sgx += g * xhat;
            if (dgamma)
                dgamma[e] += (float)((double)dr[e] * xhat);  /* dgamma_e += dout_e x_hat_e */
            if (dbeta)
                dbeta[e] += dr[e];                           /* dbeta_e += dout_e */
        }
        if (!dx)
            continue;
        const double mg = sg / (double)E, mgx = sgx / (double)E;
        for (size_t e = 0; e < E; e++) {                   /* rstd (g - mean g - x_hat mean g x_hat) */
            const double xhat = ((double)xr[e] - mu) * r;
            const double g = (double)dr[e] * (gamma ? gamma[e] : 1.0f);
            dx[n * E + e] += (float)(r * (g - mg - xhat * mgx));
        }
    }
}

void add_norm_backward_naive(float *dx, float *ds, float *dgamma, float *dbeta,
                             const float *dout, const float *x, const float *s,
                             const float *mean, const float *rstd, const float *gamma, size_t N,
                             size_t E)
{
    const size_t n = N * E;
    float *y = tfm_xcalloc(2 * n + 1, sizeof(float), "add_norm_backward_naive");
    float *dy = y + n;                                   /* zero: the backward adds */
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] + s[i];                              /* y = x + s, LN's input */
    layernorm_backward_naive(dy, dgamma, dbeta, dout, y, mean, rstd, gamma, N, E);
    for (size_t i = 0; i < n; i++) {                     /* d(x + s)/dx = d(x + s)/ds = 1 */
        if (dx)
            dx[i] += dy[i];
        if (ds)
            ds[i] += dy[i];
    }
    free(y);
}
