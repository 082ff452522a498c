/* optim.h — chapter 09: how a model's parameters move. AdamW, the learning-rate schedule and
 * gradient clipping, each as PyTorch and Hugging Face's Trainer do it.
 *
 * Dimensions: n the number of floats of a parameter block (one tensor, or all of a model's).
 *
 * AdamW (torch.optim.AdamW, Loshchilov & Hutter's decoupled weight decay), at optimizer step
 * t = 1, 2, ... with learning rate lr, for every element of a parameter p and its gradient g:
 *
 *   p  = p (1 - lr wd)                                the decay, apart from the gradient
 *   m  = b1 m + (1 - b1) g                            first moment
 *   v  = b2 v + (1 - b2) g^2                          second moment
 *   p  = p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * in that order, each step rounded to float32 as torch's single-tensor AdamW rounds it (the
 * scalars lr wd, 1 - b1^t and so on are computed in double and rounded once to float, as
 * PyTorch turns a Python float into the tensor's dtype). m and v start at 0. Hugging Face's
 * Trainer gives wd = 0 to biases and LayerNorm weights (the model says which: pretrain.h).
 *
 * The schedule (transformers' get_linear_schedule_with_warmup through torch's LambdaLR): the
 * optimizer step s = 0, 1, ... (t = s + 1 above) uses
 *   lr(s) = base_lr * s / max(1, warmup)                        for s < warmup
 *   lr(s) = base_lr * max(0, (steps - s) / max(1, steps - warmup))   otherwise
 * so with a warm-up the first step moves nothing but the moments (lr(0) = 0), as Hugging
 * Face's does.
 *
 * Clipping (torch.nn.utils.clip_grad_norm_ with max_norm and the 2-norm): the norm of all
 * gradients together, ||g|| = sqrt(sum over every element of g^2); then every gradient is
 * multiplied by min(1, max_norm / (||g|| + 1e-6)). The sum is taken in double here (PyTorch
 * sums each tensor's norm in float32 and then the norms': a relative 1e-7 apart).
 *
 * Every kernel has a naive and a fast variant with one signature. Parameters, moments and
 * gradients are overwritten in place.
 */
#ifndef TFM_OPTIM_H
#define TFM_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double beta1, beta2;     /* 0.9, 0.999 (torch's defaults) */
    double eps;              /* 1e-8 (Hugging Face's adam_epsilon) */
    double weight_decay;     /* 0.01 in BERT's recipe; 0 for biases and LayerNorm weights */
} AdamWConfig;

/* One AdamW update of n elements at optimizer step t (1-based: the bias corrections use it)
 * with learning rate lr and the decay wd (the caller's per-tensor choice). */
void adamw_step_naive(float *p,             /* [n] parameters, updated */
                      float *m,             /* [n] first moments, updated */
                      float *v,             /* [n] second moments, updated */
                      const float *g,       /* [n] gradients */
                      double lr, double wd, int64_t t, const AdamWConfig *cfg, size_t n);
void adamw_step_fast(float *p, float *m, float *v, const float *g, double lr, double wd,
                     int64_t t, const AdamWConfig *cfg, size_t n);

/* sum of g^2 over n elements, in double. */
double grad_sq_sum_naive(const float *g, size_t n);
double grad_sq_sum_fast(const float *g, size_t n);

/* g *= s over n elements (the clipping's scale). */
void grad_scale_naive(float *g, float s, size_t n);
void grad_scale_fast(float *g, float s, size_t n);

/* The clip factor min(1, max_norm / (norm + 1e-6)), in float32 as torch computes it. */
float clip_coefficient(double norm, double max_norm);

/* lr(s) of the linear warm-up and decay above. */
double lr_linear_schedule(double base_lr, int64_t s, int64_t warmup, int64_t steps);

#endif
