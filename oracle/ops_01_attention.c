/* ops_01_attention.c — how chapter 01's ops bind to their kernels (the table is oracle/ops.c):
 *
 *   attention        softmax(q k^T * scale + M) v with PyTorch's three kinds of mask
 *   self-attention   article 000 §3.1's single head from x: Q = X W_q, K = X W_k, V = X W_v,
 *                    out = (softmax(Q K^T / sqrt(d)) V) W_o  (right-multiplied weights)
 *   attention-backward   attention's grad_q, grad_k, grad_v (chapter 07)
 *
 * The fast variant has two code paths and each is held to a golden: probs comes from the path
 * that materializes the probabilities, out from the streaming (online-softmax) path that never
 * does. Its other out goes to scratch; tests/test_01_attention.c holds it to naive's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"
#include "binds.h"
#include "matmul.h"

typedef void (*AttentionFn)(float *out, float *probs, const float *q, const float *k,
                            const float *v, const AttnMask *mask, float scale, size_t B,
                            size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv);
typedef void (*MatmulFn)(float *c, const float *a, const float *b, size_t M, size_t K,
                         size_t N);

/* PyTorch's default scale. With Dk = 0 the dot products are empty (0) and 1/sqrt(0) would make
 * them 0 * inf = NaN; PyTorch scales q before the product and gets scores of 0, i.e. uniform
 * probabilities and a zero output, which any finite scale gives (tests/test_oracle.c). */
static float default_scale(size_t Dk) { return Dk ? 1.0f / sqrtf((float)Dk) : 1.0f; }

/* The sizes, the mask and the scale of an attention call, checked: what the forward and the
 * backward share. */
typedef struct {
    size_t B, H, Tq, Tk, Dk, Dv;
    AttnMask mask;
    float scale;
} AttnCall;

static int attention_setup(OpCall *c, AttnCall *a)
{
    const Tensor *q = op_in(c, "q"), *k = op_in(c, "k"), *v = op_in(c, "v");
    const size_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], Dk = q->shape[3];
    const size_t Tk = k->shape[2], Dv = v->shape[3];
    if (k->shape[0] != B || k->shape[1] != H || k->shape[3] != Dk)
        return op_fail(c, "q is [B,H,Tq,Dk] = [%zu, %zu, %zu, %zu] but k is [%zu, %zu, %zu, "
                       "%zu]: k must be [B,H,Tk,Dk] = [%zu, %zu, Tk, %zu]", B, H, Tq, Dk,
                       k->shape[0], k->shape[1], k->shape[2], k->shape[3], B, H, Dk);
    if (v->shape[0] != B || v->shape[1] != H || v->shape[2] != Tk)
        return op_fail(c, "k is [B,H,Tk,Dk] = [%zu, %zu, %zu, %zu] but v is [%zu, %zu, %zu, "
                       "%zu]: v must be [B,H,Tk,Dv] = [%zu, %zu, %zu, Dv]", B, H, Tk, Dk,
                       v->shape[0], v->shape[1], v->shape[2], v->shape[3], B, H, Tk);

    AttnMask mask = {NULL, 0, 0, NULL, 0};
    const Tensor *am = op_in(c, "attn_mask");
    if (am) {
        const size_t *s = am->shape;
        const size_t plane = Tq * Tk;   /* one [Tq, Tk] mask */
        if (am->ndim == 2 && s[0] == Tq && s[1] == Tk) {
            mask.stride_b = 0;          /* the same mask for every batch and head */
            mask.stride_h = 0;
        } else if (am->ndim == 3 && s[0] == B * H && s[1] == Tq && s[2] == Tk) {
            mask.stride_b = H * plane;  /* [B*H, Tq, Tk]: row b*H + h */
            mask.stride_h = plane;
        } else if (am->ndim == 4 && s[0] == B && s[1] == H && s[2] == Tq && s[3] == Tk) {
            mask.stride_b = H * plane;
            mask.stride_h = plane;
        } else {
            char got[96];
            tfm_shape_str(got, sizeof got, am->ndim, s);
            return op_fail(c, "attn_mask is %s; with B=%zu H=%zu Tq=%zu Tk=%zu it must be "
                           "[%zu, %zu], [%zu, %zu, %zu] or [%zu, %zu, %zu, %zu]", got, B, H, Tq,
                           Tk, Tq, Tk, B * H, Tq, Tk, B, H, Tq, Tk);
        }
        mask.attn_mask = tensor_f32(am);
    }
    const Tensor *kpm = op_in(c, "key_padding_mask");
    if (kpm) {
        if (kpm->shape[0] != B || kpm->shape[1] != Tk)
            return op_fail(c, "key_padding_mask is [%zu, %zu]; it must be [B, Tk] = [%zu, %zu]",
                           kpm->shape[0], kpm->shape[1], B, Tk);
        mask.key_padding_mask = tensor_bool(kpm);
    }
    mask.causal = (int)op_int(c, "is_causal");
    const TfmParamValue *sp = op_param(c, "scale");
    const float scale = sp->set ? (float)sp->f : default_scale(Dk);

    *a = (AttnCall){B, H, Tq, Tk, Dk, Dv, mask, scale};
    return 0;
}

int bind_attention(OpCall *c)
{
    AttnCall a;
    if (attention_setup(c, &a) != 0)
        return -1;
    const size_t B = a.B, H = a.H, Tq = a.Tq, Tk = a.Tk, Dk = a.Dk, Dv = a.Dv;
    const AttnMask mask = a.mask;
    const float scale = a.scale;
    const Tensor *q = op_in(c, "q"), *k = op_in(c, "k"), *v = op_in(c, "v");
    const size_t oshape[4] = {B, H, Tq, Dv}, pshape[4] = {B, H, Tq, Tk};
    float *out = op_output(c, "out", 4, oshape);
    float *probs = out ? op_output(c, "probs", 4, pshape) : NULL;
    if (!probs)
        return -1;
    const float *Q = tensor_f32(q), *K = tensor_f32(k), *V = tensor_f32(v);
    const AttentionFn attend = KERNEL(c, AttentionFn);
    if (c->variant == TFM_NAIVE) {
        attend(out, probs, Q, K, V, &mask, scale, B, H, Tq, Tk, Dk, Dv);
        return 0;
    }
    float *scratch = malloc(B * H * Tq * Dv * sizeof *scratch + 1);   /* + 1: never malloc(0) */
    if (!scratch)
        return op_fail(c, "out of memory");
    attend(scratch, probs, Q, K, V, &mask, scale, B, H, Tq, Tk, Dk, Dv);   /* probs path */
    free(scratch);
    attend(out, NULL, Q, K, V, &mask, scale, B, H, Tq, Tk, Dk, Dv);        /* streaming path */
    return 0;
}

typedef void (*AttentionLseFn)(float *out, float *lse, const float *q, const float *k,
                               const float *v, const AttnMask *mask, float scale, size_t B,
                               size_t H, size_t Tq, size_t Tk, size_t Dk, size_t Dv);
typedef void (*AttentionBackwardFn)(float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *lse, const AttnMask *mask,
                                    float scale, size_t B, size_t H, size_t Tq, size_t Tk,
                                    size_t Dk, size_t Dv);

/* attention-backward: the training forward of the same variant gives out and lse (scratch),
 * then the backward. The mask is a constant (attention.h): no grad_attn_mask. */
int bind_attention_backward(OpCall *c)
{
    AttnCall a;
    if (attention_setup(c, &a) != 0)
        return -1;
    const Tensor *q = op_in(c, "q"), *k = op_in(c, "k"), *v = op_in(c, "v");
    const size_t oshape[4] = {a.B, a.H, a.Tq, a.Dv};
    const float *dout = op_grad_in(c, "grad_out", "out", 4, oshape);
    float *dq = dout ? op_output(c, "grad_q", 4, q->shape) : NULL;
    float *dk = dq ? op_output(c, "grad_k", 4, k->shape) : NULL;
    float *dv = dk ? op_output(c, "grad_v", 4, v->shape) : NULL;
    if (!dv)
        return -1;
    const size_t n_out = a.B * a.H * a.Tq * a.Dv, n_lse = attention_lse_floats(a.B, a.H, a.Tq);
    float *out = malloc((n_out + n_lse) * sizeof *out + 1);   /* + 1: never malloc(0) */
    if (!out)
        return op_fail(c, "out of memory");
    float *lse = out + n_out;
    const AttentionLseFn forward =
        c->variant == TFM_FAST ? attention_forward_lse_fast : attention_forward_lse_naive;
    const float *Q = tensor_f32(q), *K = tensor_f32(k), *V = tensor_f32(v);
    forward(out, lse, Q, K, V, &a.mask, a.scale, a.B, a.H, a.Tq, a.Tk, a.Dk, a.Dv);
    KERNEL(c, AttentionBackwardFn)(dq, dk, dv, dout, Q, K, V, out, lse, &a.mask, a.scale, a.B,
                                   a.H, a.Tq, a.Tk, a.Dk, a.Dv);
    free(out);
    return 0;
}

int bind_self_attention(OpCall *c)
{
    static const char *const wname[4] = {"w_q", "w_k", "w_v", "w_o"};
    const Tensor *x = op_in(c, "x");
    const size_t n = x->shape[0], d = x->shape[1];
    const float *W[4];
    for (int t = 0; t < 4; t++) {
        const Tensor *w = op_in(c, wname[t]);
        if (w->shape[0] != d || w->shape[1] != d)
            return op_fail(c, "x is [%zu, %zu] but %s is [%zu, %zu]: it must be [d, d] = [%zu, "
                           "%zu]", n, d, wname[t], w->shape[0], w->shape[1], d, d);
        W[t] = tensor_f32(w);
    }
    const size_t shape[2] = {n, d};
    float *out = op_output(c, "out", 2, shape);
    if (!out)
        return -1;
    float *buf = malloc(4 * n * d * sizeof *buf + 1);   /* + 1: never malloc(0) */
    if (!buf)
        return op_fail(c, "out of memory");
    float *Q = buf, *K = Q + n * d, *V = K + n * d, *AV = V + n * d;
    const int fast = c->variant == TFM_FAST;
    const MatmulFn mm = fast ? matmul_fast : matmul_naive;
    const AttentionFn attend = KERNEL(c, AttentionFn);
    const float *X = tensor_f32(x);
    mm(Q, X, W[0], n, d, d);   /* Q = X W_q */
    mm(K, X, W[1], n, d, d);   /* K = X W_k */
    mm(V, X, W[2], n, d, d);   /* V = X W_v */
    attend(AV, NULL, Q, K, V, NULL, default_scale(d), 1, 1, n, n, d, d);   /* one batch, head */
    mm(out, AV, W[3], n, d, d);   /* out = (A V) W_o */
    free(buf);
    return 0;
}
