/* layernorm_case.c — chapter 04's op runner (cases.h): LayerNorm and the two Add & Norm
 * arrangements.
 *
 * The inputs (under "<prefix>/", F32 unless said) select the op:
 *
 *   x [..., E] (1 to 4 dimensions; the leading ones are the N rows), gamma [E] and beta [E]
 *   (optional: nn.LayerNorm's weight and bias), eps F64 [] (optional, default 1e-5)
 *     -> out [..., E] = LN(x), mean [...], rstd [...]                          op "layernorm"
 *   ... and s [..., E], the sublayer's output
 *     -> out = LN(x + s), mean, rstd of x + s                   op "add-norm"  (post-LN, BERT)
 *   ... or w [E, E] and bias [E] (optional), a Linear sublayer
 *     -> out = x + Linear(LN(x)), norm = LN(x), mean, rstd      op "pre-norm"  (pre-LN, GPT-2)
 *
 * eps is a double in PyTorch's API; its float32 kernel uses it as a float, and so do we.
 */
#include <math.h>
#include <stdio.h>

#include "cases.h"
#include "layernorm.h"

/* gamma or beta: optional, but if present a 1-D F32 tensor of length E. */
static int affine_param(const Tensor **t, const GoldenFile *in, const char *prefix,
                        const char *name, size_t E, char *err, size_t errlen)
{
    *t = case_optional(in, prefix, name, TFM_F32, 1, err, errlen);
    if (!*t)
        return err[0] ? -1 : 0;
    if ((*t)->shape[0] != E) {
        snprintf(err, errlen, "layernorm '%s': x has width E = %zu but %s is [%zu]: it must be "
                 "[%zu]", prefix, E, name, (*t)->shape[0], E);
        return -1;
    }
    return 0;
}

int layernorm_run(OpOutputs *res, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen)
{
    const Tensor *x = case_input(in, prefix, "x", TFM_F32, -1, err, errlen);
    if (!x)
        return -1;
    char xs[96];
    tfm_shape_str(xs, sizeof xs, x->ndim, x->shape);
    if (x->ndim < 1 || x->shape[x->ndim - 1] == 0) {
        snprintf(err, errlen, "layernorm '%s': x is %s; it needs at least one dimension, and "
                 "its last one (the normalized width E) must be at least 1", prefix, xs);
        return -1;
    }
    const size_t E = x->shape[x->ndim - 1], N = x->numel / E;

    const Tensor *gamma, *beta;
    if (affine_param(&gamma, in, prefix, "gamma", E, err, errlen) != 0 ||
        affine_param(&beta, in, prefix, "beta", E, err, errlen) != 0)
        return -1;

    double eps = 1e-5;   /* nn.LayerNorm's default */
    const Tensor *teps = case_optional(in, prefix, "eps", TFM_F64, 0, err, errlen);
    if (!teps && err[0])
        return -1;
    if (teps)
        eps = tensor_f64(teps)[0];
    if (!(eps >= 0.0 && eps <= 1.0)) {   /* also rejects NaN */
        snprintf(err, errlen, "layernorm '%s': eps is %g; it must be in [0, 1] (1e-5 is "
                 "PyTorch's default, 1e-12 BERT's)", prefix, eps);
        return -1;
    }

    const Tensor *s = case_optional(in, prefix, "s", TFM_F32, -1, err, errlen);
    if (!s && err[0])
        return -1;
    const Tensor *w = case_optional(in, prefix, "w", TFM_F32, 2, err, errlen);
    if (!w && err[0])
        return -1;
    if (s && w) {
        snprintf(err, errlen, "layernorm '%s': both s (post-LN add-norm) and w (pre-LN) are "
                 "given; give one", prefix);
        return -1;
    }
    if (s) {
        int same = s->ndim == x->ndim;
        for (int d = 0; same && d < x->ndim; d++)
            same = s->shape[d] == x->shape[d];
        if (!same) {
            char ss[96];
            tfm_shape_str(ss, sizeof ss, s->ndim, s->shape);
            snprintf(err, errlen, "add-norm '%s': x is %s but s is %s: the residual x + s needs "
                     "equal shapes", prefix, xs, ss);
            return -1;
        }
    }
    const Tensor *bias = NULL;
    if (w) {
        if (w->shape[0] != E || w->shape[1] != E) {
            snprintf(err, errlen, "pre-norm '%s': x has width E = %zu but w is [%zu, %zu]: the "
                     "sublayer must map E to E for the residual, w must be [%zu, %zu]", prefix,
                     E, w->shape[0], w->shape[1], E, E);
            return -1;
        }
        bias = case_optional(in, prefix, "bias", TFM_F32, 1, err, errlen);
        if (!bias && err[0])
            return -1;
        if (bias && bias->shape[0] != E) {
            snprintf(err, errlen, "pre-norm '%s': w is [%zu, %zu] but bias is [%zu]: it must be "
                     "[%zu]", prefix, E, E, bias->shape[0], E);
            return -1;
        }
    }

    /* out has x's shape; mean and rstd have x's shape without its last dimension. */
    float *out = op_output(res, "out", x->ndim, x->shape, err, errlen);
    float *norm = NULL;
    if (out && w)
        norm = op_output(res, "norm", x->ndim, x->shape, err, errlen);
    float *mean = (out && (!w || norm)) ? op_output(res, "mean", x->ndim - 1, x->shape, err,
                                                    errlen) : NULL;
    float *rstd = mean ? op_output(res, "rstd", x->ndim - 1, x->shape, err, errlen) : NULL;
    if (!rstd)
        return -1;

    const float *X = tensor_f32(x);
    const float *G = gamma ? tensor_f32(gamma) : NULL, *B = beta ? tensor_f32(beta) : NULL;
    const float fe = (float)eps;
    const int fast = variant == TFM_FAST;
    if (s) {
        (fast ? add_norm_forward_fast : add_norm_forward_naive)(out, mean, rstd, X, tensor_f32(s),
                                                                G, B, fe, N, E);
    } else if (w) {
        const float *bp = bias ? tensor_f32(bias) : NULL;
        (fast ? pre_norm_linear_forward_fast : pre_norm_linear_forward_naive)(
            out, norm, mean, rstd, X, G, B, tensor_f32(w), bp, fe, N, E);
    } else {
        (fast ? layernorm_forward_fast : layernorm_forward_naive)(out, mean, rstd, X, G, B, fe,
                                                                  N, E);
    }
    return 0;
}
