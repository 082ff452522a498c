/* ops_04_layernorm.c — how chapter 04's ops bind to their kernels (the table is oracle/ops.c):
 *
 *   layernorm   nn.LayerNorm(normalized_shape): x [..., *S] normalized over the trailing
 *               dimensions S that gamma's shape names (gamma [4, 5] on x [2, 3, 4, 5]: 6 rows
 *               of 20), or, without gamma and beta, over the last normalized_ndim dimensions
 *   add-norm    LN(x + s): post-LN Add & Norm (the original Transformer, BERT)
 *   pre-norm    x + Linear(LN(x)): a pre-LN block with a Linear sublayer (GPT-2)
 *   layernorm-backward   layernorm's gradients (chapter 07): grad_x, grad_gamma, grad_beta
 *
 * The kernels see rows: N = the product of the leading dimensions, E = the product of S.
 * mean and rstd have x's leading dimensions (PyTorch's native_layer_norm keeps S as 1s; the
 * goldens squeeze them). eps is a double in PyTorch's API; its float32 kernel uses it as a
 * float, and so does tfm.
 */
#include <stdio.h>
#include <stdlib.h>

#include "binds.h"
#include "layernorm.h"
#include "tensor.h"

typedef void (*LayerNormFn)(float *out, float *mean, float *rstd, const float *x,
                            const float *gamma, const float *beta, float eps, size_t N, size_t E);
typedef void (*LayerNormBackwardFn)(float *dx, float *dgamma, float *dbeta, const float *dout,
                                    const float *x, const float *mean, const float *rstd,
                                    const float *gamma, size_t N, size_t E);
typedef void (*AddNormBackwardFn)(float *dx, float *ds, float *dgamma, float *dbeta,
                                  const float *dout, const float *x, const float *s,
                                  const float *mean, const float *rstd, const float *gamma,
                                  size_t N, size_t E);
typedef void (*AddNormFn)(float *out, float *mean, float *rstd, const float *x, const float *s,
                          const float *gamma, const float *beta, float eps, size_t N, size_t E);
typedef void (*PreNormFn)(float *out, float *norm, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, const float *w,
                          const float *bias, float eps, size_t N, size_t E);

/* The split of x into rows: k normalized trailing dimensions, N rows of E. */
typedef struct {
    int k;
    size_t N, E;
} Rows;

static int split_rows(OpCall *c, Rows *r, int allow_multi)
{
    const Tensor *x = op_in(c, "x"), *gamma = op_in(c, "gamma"), *beta = op_in(c, "beta");
    char xs[160];
    tfm_shape_str(xs, sizeof xs, x->ndim, x->shape);
    const Tensor *shape_of = gamma ? gamma : beta;   /* both name S when given */
    const TfmParamValue *kp = allow_multi ? op_param(c, "normalized_ndim") : NULL;
    int k = 1;
    if (shape_of)
        k = shape_of->ndim;
    else if (kp && kp->set)
        k = (int)kp->i;
    if (kp && kp->set && kp->i != k)
        return op_fail(c, "normalized_ndim=%lld but gamma/beta have %d dimensions: give one or "
                       "make them agree", (long long)kp->i, k);
    if (!allow_multi && k != 1)
        return op_fail(c, "gamma/beta have %d dimensions; this op normalizes the last one only "
                       "(they must be [E])", k);
    if (x->ndim < k)
        return op_fail(c, "x is %s but the normalized shape has %d dimensions", xs, k);
    if (gamma && beta && !op_same_shape(beta, gamma->ndim, gamma->shape)) {
        char gs[160], bs[160];
        tfm_shape_str(gs, sizeof gs, gamma->ndim, gamma->shape);
        tfm_shape_str(bs, sizeof bs, beta->ndim, beta->shape);
        return op_fail(c, "gamma is %s but beta is %s: both are the normalized shape", gs, bs);
    }
    if (shape_of && !op_same_shape(shape_of, k, x->shape + (x->ndim - k))) {
        char gs[160];
        tfm_shape_str(gs, sizeof gs, shape_of->ndim, shape_of->shape);
        return op_fail(c, "x is %s but %s is %s: it must be x's last %d dimension%s", xs,
                       gamma ? "gamma" : "beta", gs, k, k == 1 ? "" : "s");
    }
    r->k = k;
    r->N = 1;
    r->E = 1;
    for (int d = 0; d < x->ndim; d++)
        *(d < x->ndim - k ? &r->N : &r->E) *= x->shape[d];
    if (r->E == 0)
        return op_fail(c, "x is %s: the normalized width (the product of its last %d "
                       "dimension%s) must be at least 1", xs, k, k == 1 ? "" : "s");
    return 0;
}

/* out with x's shape, then (pre-norm) norm, then mean and rstd with x's leading dimensions. */
static int outputs(OpCall *c, const Rows *r, int with_norm, float **out, float **norm,
                   float **mean, float **rstd)
{
    const Tensor *x = op_in(c, "x");
    *out = op_output(c, "out", x->ndim, x->shape);
    if (!*out || (with_norm && !(*norm = op_output(c, "norm", x->ndim, x->shape))))
        return -1;
    *mean = op_output(c, "mean", x->ndim - r->k, x->shape);
    *rstd = *mean ? op_output(c, "rstd", x->ndim - r->k, x->shape) : NULL;
    return *rstd ? 0 : -1;
}

static const float *f32_or_null(const Tensor *t) { return t ? tensor_f32(t) : NULL; }

int bind_layernorm(OpCall *c)
{
    Rows r;
    float *out, *norm = NULL, *mean, *rstd;
    if (split_rows(c, &r, 1) || outputs(c, &r, 0, &out, &norm, &mean, &rstd))
        return -1;
    KERNEL(c, LayerNormFn)(out, mean, rstd, tensor_f32(op_in(c, "x")),
                           f32_or_null(op_in(c, "gamma")), f32_or_null(op_in(c, "beta")),
                           (float)op_float(c, "eps"), r.N, r.E);
    return 0;
}

/* Add & Norm's x and s: the residual x + s needs equal shapes. */
static int residual_shapes(OpCall *c, const Tensor *x, const Tensor *s)
{
    if (op_same_shape(s, x->ndim, x->shape))
        return 0;
    char xs[160], ss[160];
    tfm_shape_str(xs, sizeof xs, x->ndim, x->shape);
    tfm_shape_str(ss, sizeof ss, s->ndim, s->shape);
    return op_fail(c, "x is %s but s is %s: the residual x + s needs equal shapes", xs, ss);
}

int bind_add_norm(OpCall *c)
{
    const Tensor *x = op_in(c, "x"), *s = op_in(c, "s");
    if (residual_shapes(c, x, s))
        return -1;
    Rows r;
    float *out, *norm = NULL, *mean, *rstd;
    if (split_rows(c, &r, 1) || outputs(c, &r, 0, &out, &norm, &mean, &rstd))
        return -1;
    KERNEL(c, AddNormFn)(out, mean, rstd, tensor_f32(x), tensor_f32(s),
                         f32_or_null(op_in(c, "gamma")), f32_or_null(op_in(c, "beta")),
                         (float)op_float(c, "eps"), r.N, r.E);
    return 0;
}

int bind_pre_norm(OpCall *c)
{
    Rows r;
    if (split_rows(c, &r, 0))
        return -1;
    const Tensor *w = op_in(c, "w"), *bias = op_in(c, "bias");
    const size_t E = r.E;
    if (w->shape[0] != E || w->shape[1] != E)
        return op_fail(c, "x has width E = %zu but w is [%zu, %zu]: the sublayer must map E to "
                       "E for the residual, w must be [%zu, %zu]", E, w->shape[0], w->shape[1],
                       E, E);
    if (bias && bias->shape[0] != E)
        return op_fail(c, "w is [%zu, %zu] but bias is [%zu]: it must be [%zu]", E, E,
                       bias->shape[0], E);
    float *out, *norm, *mean, *rstd;
    if (outputs(c, &r, 1, &out, &norm, &mean, &rstd))
        return -1;
    KERNEL(c, PreNormFn)(out, norm, mean, rstd, tensor_f32(op_in(c, "x")),
                         f32_or_null(op_in(c, "gamma")), f32_or_null(op_in(c, "beta")),
                         tensor_f32(w), f32_or_null(bias), (float)op_float(c, "eps"), r.N, E);
    return 0;
}

/* The forward of the same variant gives the statistics the backward reads (scratch). */
int bind_layernorm_backward(OpCall *c)
{
    Rows r;
    if (split_rows(c, &r, 1))
        return -1;
    const Tensor *x = op_in(c, "x"), *gamma = op_in(c, "gamma"), *beta = op_in(c, "beta");
    const float *dout = op_grad_in(c, "grad_out", "out", x->ndim, x->shape);
    float *dx = dout ? op_output(c, "grad_x", x->ndim, x->shape) : NULL;
    float *dg = dx && gamma ? op_output(c, "grad_gamma", gamma->ndim, gamma->shape) : NULL;
    float *db = dx && beta ? op_output(c, "grad_beta", beta->ndim, beta->shape) : NULL;
    if (!dx || (gamma && !dg) || (beta && !db))
        return -1;
    const LayerNormFn forward =
        c->variant == TFM_FAST ? layernorm_forward_fast : layernorm_forward_naive;
    float *y = tfm_xcalloc(x->numel + 2 * r.N, sizeof(float), c->op->name);
    float *mean = y + x->numel, *rstd = mean + r.N;
    const float eps = (float)op_float(c, "eps");
    forward(y, mean, rstd, tensor_f32(x), f32_or_null(gamma), f32_or_null(beta), eps, r.N, r.E);
    KERNEL(c, LayerNormBackwardFn)(dx, dg, db, dout, tensor_f32(x), mean, rstd,
                                   f32_or_null(gamma), r.N, r.E);
    free(y);
    return 0;
}

/* add-norm-backward (chapter 07): the forward of the same variant gives the statistics of
 * x + s, then the backward; grad_x and grad_s are the same tensor, as autograd gives them. */
int bind_add_norm_backward(OpCall *c)
{
    const Tensor *x = op_in(c, "x"), *s = op_in(c, "s");
    if (residual_shapes(c, x, s))
        return -1;
    Rows r;
    if (split_rows(c, &r, 1))
        return -1;
    const Tensor *gamma = op_in(c, "gamma"), *beta = op_in(c, "beta");
    const float *dout = op_grad_in(c, "grad_out", "out", x->ndim, x->shape);
    float *dx = dout ? op_output(c, "grad_x", x->ndim, x->shape) : NULL;
    float *ds = dx ? op_output(c, "grad_s", x->ndim, x->shape) : NULL;
    float *dg = ds && gamma ? op_output(c, "grad_gamma", gamma->ndim, gamma->shape) : NULL;
    float *db = ds && beta ? op_output(c, "grad_beta", beta->ndim, beta->shape) : NULL;
    if (!ds || (gamma && !dg) || (beta && !db))
        return -1;
    const AddNormFn forward =
        c->variant == TFM_FAST ? add_norm_forward_fast : add_norm_forward_naive;
    float *y = tfm_xcalloc(x->numel + 2 * r.N, sizeof(float), c->op->name);
    float *mean = y + x->numel, *rstd = mean + r.N;
    forward(y, mean, rstd, tensor_f32(x), tensor_f32(s), f32_or_null(gamma), f32_or_null(beta),
            (float)op_float(c, "eps"), r.N, r.E);
    KERNEL(c, AddNormBackwardFn)(dx, ds, dg, db, dout, tensor_f32(x), tensor_f32(s), mean, rstd,
                                 f32_or_null(gamma), r.N, r.E);
    free(y);
    return 0;
}
