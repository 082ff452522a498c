/* ops_06_encoder.c — how chapter 06's ops bind to their kernels (the table is oracle/ops.c):
 *
 *   feedforward     linear2(act(linear1(x))), nn.TransformerEncoderLayer's feed-forward half
 *   encoder-layer   nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0,
 *                   activation, layer_norm_eps, batch_first=True, norm_first) called as a whole:
 *                   layer(src, src_mask, src_key_padding_mask), its parameters under the
 *                   module's own state_dict names, so `layer.state_dict()` saved next to `src`
 *                   is a valid input
 *
 * Masks follow the module: src_mask [T, T] is BOOL (1 = may not attend, becomes -inf) or F32
 * (added to the scores); src_key_padding_mask [B, T] is 1 where a key is padding. A query row
 * whose keys are all masked gives NaN, as PyTorch's softmax does (chapter 01).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "binds.h"
#include "encoder.h"

typedef void (*FfnFn)(float *out, float *hidden, const float *x, const float *residual,
                      const FfnParams *p, TfmActivation act, size_t N, size_t E, size_t I);
typedef void (*EncoderLayerFn)(float *out, float *scratch, const float *src, const AttnMask *mask,
                               const EncoderLayerParams *p, TfmActivation act, int norm_first,
                               float eps, size_t B, size_t T, size_t E, size_t H, size_t I);

/* Requires tensor `name` (when given) to be [d0] or [d0, d1]. */
static int want_shape(OpCall *c, const char *name, int nd, size_t d0, size_t d1)
{
    const Tensor *t = op_in(c, name);
    const size_t s[2] = {d0, d1};
    if (!t || op_same_shape(t, nd, s))
        return 0;
    char got[96], want[96];
    tfm_shape_str(got, sizeof got, t->ndim, t->shape);
    tfm_shape_str(want, sizeof want, nd, s);
    return op_fail(c, "%s is %s; it must be %s", name, got, want);
}

static const float *f32(const OpCall *c, const char *name)
{
    const Tensor *t = op_in(c, name);
    return t ? tensor_f32(t) : NULL;
}

/* relu or gelu, the module's two activations (gelu: the exact erf form). */
static TfmActivation activation(const OpCall *c)
{
    return op_word_is(c, "activation", "gelu") ? TFM_ACT_GELU : TFM_ACT_RELU;
}

/* linear1 [I, E] -> I; checks linear1/linear2 weights and biases against E. */
static int ffn_params(OpCall *c, FfnParams *p, size_t E, size_t *I)
{
    const Tensor *w1 = op_in(c, "linear1.weight");
    *I = w1->shape[0];
    if (want_shape(c, "linear1.weight", 2, *I, E) || want_shape(c, "linear1.bias", 1, *I, 0) ||
        want_shape(c, "linear2.weight", 2, E, *I) || want_shape(c, "linear2.bias", 1, E, 0))
        return -1;
    p->w1 = tensor_f32(w1);
    p->b1 = f32(c, "linear1.bias");
    p->w2 = f32(c, "linear2.weight");
    p->b2 = f32(c, "linear2.bias");
    return 0;
}

int bind_feedforward(OpCall *c)
{
    const Tensor *x = op_in(c, "x");
    const size_t E = x->shape[x->ndim - 1];
    size_t N = 1, I;
    for (int d = 0; d < x->ndim - 1; d++)
        N *= x->shape[d];
    FfnParams p;
    if (ffn_params(c, &p, E, &I))
        return -1;
    float *out = op_output(c, "out", x->ndim, x->shape);
    if (!out)
        return -1;
    float *hidden = malloc(N * I * sizeof *hidden + 1);   /* + 1: never malloc(0) */
    if (!hidden)
        return op_fail(c, "out of memory for the [%zu, %zu] hidden layer", N, I);
    KERNEL(c, FfnFn)(out, hidden, tensor_f32(x), NULL, &p, activation(c), N, E, I);
    free(hidden);
    return 0;
}

int bind_encoder_layer(OpCall *c)
{
    const Tensor *src = op_in(c, "src");
    const size_t B = src->shape[0], T = src->shape[1], E = src->shape[2];
    const int64_t h64 = op_int(c, "nhead");
    if (E == 0 || E % (uint64_t)h64 != 0)
        return op_fail(c, "nhead is %lld; it must be a positive divisor of d_model = %zu",
                       (long long)h64, E);
    const size_t H = (size_t)h64;
    EncoderLayerParams p;
    size_t I;
    if (want_shape(c, "self_attn.in_proj_weight", 2, 3 * E, E) ||
        want_shape(c, "self_attn.in_proj_bias", 1, 3 * E, 0) ||
        want_shape(c, "self_attn.out_proj.weight", 2, E, E) ||
        want_shape(c, "self_attn.out_proj.bias", 1, E, 0) ||
        want_shape(c, "norm1.weight", 1, E, 0) || want_shape(c, "norm1.bias", 1, E, 0) ||
        want_shape(c, "norm2.weight", 1, E, 0) || want_shape(c, "norm2.bias", 1, E, 0) ||
        ffn_params(c, &p.ffn, E, &I))
        return -1;
    p.self_attn.in_proj_weight = f32(c, "self_attn.in_proj_weight");
    p.self_attn.in_proj_bias = f32(c, "self_attn.in_proj_bias");
    p.self_attn.out_proj_weight = f32(c, "self_attn.out_proj.weight");
    p.self_attn.out_proj_bias = f32(c, "self_attn.out_proj.bias");
    p.norm1_w = f32(c, "norm1.weight");
    p.norm1_b = f32(c, "norm1.bias");
    p.norm2_w = f32(c, "norm2.weight");
    p.norm2_b = f32(c, "norm2.bias");

    AttnMask mask = {NULL, 0, 0, NULL, 0};
    const Tensor *kpm = op_in(c, "src_key_padding_mask"), *am = op_in(c, "src_mask");
    if (kpm) {
        const size_t want[2] = {B, T};
        if (!op_same_shape(kpm, 2, want))
            return op_fail(c, "src_key_padding_mask is [%zu, %zu]; it must be [B, T] = [%zu, %zu]",
                           kpm->shape[0], kpm->shape[1], B, T);
        mask.key_padding_mask = tensor_bool(kpm);
    }
    float *additive = NULL;   /* a BOOL src_mask as 0 / -inf */
    if (am) {
        if (am->shape[0] != T || am->shape[1] != T)
            return op_fail(c, "src_mask is [%zu, %zu]; it must be [T, T] = [%zu, %zu]",
                           am->shape[0], am->shape[1], T, T);
        if (am->dtype == TFM_BOOL) {
            additive = malloc(T * T * sizeof *additive + 1);
            if (!additive)
                return op_fail(c, "out of memory for src_mask");
            for (size_t i = 0; i < T * T; i++)
                additive[i] = tensor_bool(am)[i] ? -INFINITY : 0.0f;   /* 1 = may not attend */
        }
        mask.attn_mask = additive ? additive : tensor_f32(am);   /* stride 0: every (b, h) */
    }
    const int any_mask = kpm || am;

    float *out = op_output(c, "out", 3, src->shape);
    float *scratch = out ? malloc(encoder_layer_scratch_floats(B, T, E, I) * sizeof(float) + 1)
                         : NULL;
    if (!scratch) {
        free(additive);
        return out ? op_fail(c, "out of memory for the layer's scratch") : -1;
    }
    KERNEL(c, EncoderLayerFn)(out, scratch, tensor_f32(src), any_mask ? &mask : NULL, &p,
                              activation(c), (int)op_int(c, "norm_first"),
                              (float)op_float(c, "layer_norm_eps"), B, T, E, H, I);
    free(scratch);
    free(additive);
    return 0;
}
