/* optim_naive.c — AdamW, the gradient norm and its scaling, one line per formula of optim.h. */
#include "optim.h"

#include <math.h>

void adamw_step_naive(float *p, float *m, float *v, const float *g, double lr, double wd,
                      int64_t t, const AdamWConfig *cfg, size_t n)
{
    /* the scalars, in double, each rounded once to float32 as a Python float becomes one */
    const float decay = (float)(1.0 - lr * wd);
    const float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2;
    const float one_minus_b1 = (float)(1.0 - cfg->beta1), one_minus_b2 = (float)(1.0 - cfg->beta2);
    const double bc1 = 1.0 - pow(cfg->beta1, (double)t);      /* bias corrections */
    const double bc2 = 1.0 - pow(cfg->beta2, (double)t);
    const float step_size = (float)(lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)cfg->eps;
    for (size_t i = 0; i < n; i++) {
        p[i] = p[i] * decay;                                   /* decoupled weight decay */
        m[i] = m[i] * b1 + g[i] * one_minus_b1;                /* first moment */
        v[i] = v[i] * b2 + g[i] * g[i] * one_minus_b2;         /* second moment */
        const float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

double grad_sq_sum_naive(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * (double)g[i];
    return s;
}

void grad_scale_naive(float *g, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] * s;
}

float clip_coefficient(double norm, double max_norm)
{
    const float c = (float)max_norm / ((float)norm + 1e-6f);
    return c < 1.0f ? c : 1.0f;
}

double lr_linear_schedule(double base_lr, int64_t s, int64_t warmup, int64_t steps)
{
    if (s < warmup)
        return base_lr * (double)s / (double)(warmup > 1 ? warmup : 1);
    const double left = (double)(steps - s) / (double)(steps - warmup > 1 ? steps - warmup : 1);
    return base_lr * (left > 0.0 ? left : 0.0);
}
