/* attention_case.c — chapter 01's op runner (cases.h): scaled dot-product attention, and the
 * erratum case of article 000 §3.1.
 *
 * The inputs (under "<prefix>/") select what runs:
 *
 *   q [B,H,Tq,Dk], k [B,H,Tk,Dk], v [B,H,Tk,Dv]            F32
 *   attn_mask (optional) F32 [Tq,Tk] (shared by every batch and head), [B*H,Tq,Tk]
 *             (nn.MultiheadAttention's layout) or [B,H,Tq,Tk]; additive, 0 / -inf / bias
 *   key_padding_mask (optional) BOOL [B,Tk], 1 = this key is padding
 *   is_causal (optional) I64 [], 0 or 1
 *     -> out [B,H,Tq,Dv], probs [B,H,Tq,Tk]
 *
 *   x [n,d], w_q, w_k, w_v, w_o [d,d] (F32, right-multiplied: Q = X W_q)
 *     -> out [n,d] = (A V) W_o, A = softmax(Q K^T / sqrt(d)), V = X W_v
 *
 * The naive variant produces out and probs from one call with probs requested. The fast variant
 * has two code paths, and each is held to a golden: probs comes from the path that materializes
 * the probabilities, out from the streaming (online-softmax) path that never does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"
#include "cases.h"
#include "matmul.h"

/* The erratum case: Q, K, V projected from x, attention, then the output projection W_o. */
static int run_errata(OpOutputs *res, const GoldenFile *in, const char *prefix, const Tensor *x,
                      TfmVariant variant, char *err, size_t errlen)
{
    static const char *const wname[4] = {"w_q", "w_k", "w_v", "w_o"};
    const Tensor *w[4];
    const size_t n = x->shape[0], d = x->shape[1];
    for (int t = 0; t < 4; t++) {
        w[t] = case_input(in, prefix, wname[t], TFM_F32, 2, err, errlen);
        if (!w[t])
            return -1;
        if (w[t]->shape[0] != d || w[t]->shape[1] != d) {
            snprintf(err, errlen, "attention erratum '%s': x is [%zu, %zu] but %s is [%zu, %zu]: "
                     "it must be [d, d] = [%zu, %zu]", prefix, n, d, wname[t], w[t]->shape[0],
                     w[t]->shape[1], d, d);
            return -1;
        }
    }
    const size_t shape[2] = {n, d};
    float *out = op_output(res, "out", 2, shape, err, errlen);
    if (!out)
        return -1;
    float *buf = malloc(4 * n * d * sizeof *buf + 1);   /* + 1: never malloc(0) */
    if (!buf) {
        snprintf(err, errlen, "attention erratum '%s': out of memory", prefix);
        return -1;
    }
    float *Q = buf, *K = Q + n * d, *V = K + n * d, *AV = V + n * d;
    void (*mm)(float *, const float *, const float *, size_t, size_t, size_t) =
        variant == TFM_FAST ? matmul_fast : matmul_naive;
    const float *X = tensor_f32(x);
    mm(Q, X, tensor_f32(w[0]), n, d, d);   /* Q = X W_q */
    mm(K, X, tensor_f32(w[1]), n, d, d);   /* K = X W_k */
    mm(V, X, tensor_f32(w[2]), n, d, d);   /* V = X W_v */
    /* AV = softmax(Q K^T / sqrt(d)) V, one batch, one head */
    if (variant == TFM_FAST)
        attention_forward_fast(AV, NULL, Q, K, V, NULL, 0.0f, 1, 1, n, n, d, d);
    else
        attention_forward_naive(AV, NULL, Q, K, V, NULL, 0.0f, 1, 1, n, n, d, d);
    mm(out, AV, tensor_f32(w[3]), n, d, d);   /* out = (A V) W_o */
    free(buf);
    return 0;
}

int attention_run(OpOutputs *res, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen)
{
    const Tensor *x = case_optional(in, prefix, "x", TFM_F32, 2, err, errlen);
    if (x)
        return run_errata(res, in, prefix, x, variant, err, errlen);
    if (err[0])   /* "x" is present, but not a 2-D F32 tensor */
        return -1;

    const Tensor *q = case_input(in, prefix, "q", TFM_F32, 4, err, errlen);
    if (!q)
        return -1;
    const Tensor *k = case_input(in, prefix, "k", TFM_F32, 4, err, errlen);
    if (!k)
        return -1;
    const Tensor *v = case_input(in, prefix, "v", TFM_F32, 4, err, errlen);
    if (!v)
        return -1;
    const size_t B = q->shape[0], H = q->shape[1], Tq = q->shape[2], Dk = q->shape[3];
    const size_t Tk = k->shape[2], Dv = v->shape[3];
    if (k->shape[0] != B || k->shape[1] != H || k->shape[3] != Dk) {
        snprintf(err, errlen, "attention '%s': q is [B,H,Tq,Dk] = [%zu, %zu, %zu, %zu] but k is "
                 "[%zu, %zu, %zu, %zu]: k must be [B,H,Tk,Dk] = [%zu, %zu, Tk, %zu]", prefix,
                 B, H, Tq, Dk, k->shape[0], k->shape[1], k->shape[2], k->shape[3], B, H, Dk);
        return -1;
    }
    if (v->shape[0] != B || v->shape[1] != H || v->shape[2] != Tk) {
        snprintf(err, errlen, "attention '%s': k is [B,H,Tk,Dk] = [%zu, %zu, %zu, %zu] but v is "
                 "[%zu, %zu, %zu, %zu]: v must be [B,H,Tk,Dv] = [%zu, %zu, %zu, Dv]", prefix,
                 B, H, Tk, Dk, v->shape[0], v->shape[1], v->shape[2], v->shape[3], B, H, Tk);
        return -1;
    }

    AttnMask mask = {NULL, 0, 0, NULL, 0};
    const Tensor *am = case_optional(in, prefix, "attn_mask", TFM_F32, -1, err, errlen);
    if (!am && err[0])
        return -1;
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
            snprintf(err, errlen, "attention '%s': attn_mask is %s; with B=%zu H=%zu Tq=%zu "
                     "Tk=%zu it must be [%zu, %zu], [%zu, %zu, %zu] or [%zu, %zu, %zu, %zu]",
                     prefix, got, B, H, Tq, Tk, Tq, Tk, B * H, Tq, Tk, B, H, Tq, Tk);
            return -1;
        }
        mask.attn_mask = tensor_f32(am);
    }
    const Tensor *kpm = case_optional(in, prefix, "key_padding_mask", TFM_BOOL, 2, err, errlen);
    if (!kpm && err[0])
        return -1;
    if (kpm) {
        if (kpm->shape[0] != B || kpm->shape[1] != Tk) {
            snprintf(err, errlen, "attention '%s': key_padding_mask is [%zu, %zu]; it must be "
                     "[B, Tk] = [%zu, %zu]", prefix, kpm->shape[0], kpm->shape[1], B, Tk);
            return -1;
        }
        mask.key_padding_mask = tensor_bool(kpm);
    }
    const Tensor *causal = case_optional(in, prefix, "is_causal", TFM_I64, 0, err, errlen);
    if (!causal && err[0])
        return -1;
    if (causal) {
        const int64_t c = tensor_i64(causal)[0];
        if (c != 0 && c != 1) {
            snprintf(err, errlen, "attention '%s': is_causal is %lld; it must be 0 or 1", prefix,
                     (long long)c);
            return -1;
        }
        mask.causal = (int)c;
    }

    const size_t oshape[4] = {B, H, Tq, Dv}, pshape[4] = {B, H, Tq, Tk};
    float *out = op_output(res, "out", 4, oshape, err, errlen);
    if (!out)
        return -1;
    float *probs = op_output(res, "probs", 4, pshape, err, errlen);
    if (!probs)
        return -1;
    const float *Q = tensor_f32(q), *K = tensor_f32(k), *V = tensor_f32(v);
    /* 0 asks the kernels for the default 1/sqrt(Dk). With Dk = 0 that is infinite and the empty
     * dot products (0) would become 0 * inf = NaN; PyTorch scales q before the product and
     * gets scores of 0, i.e. uniform probabilities and a zero output. Any finite scale gives
     * exactly that (tests/test_oracle.c, test_run_empty_dims). */
    const float scale = Dk == 0 ? 1.0f : 0.0f;
    if (variant == TFM_NAIVE) {
        attention_forward_naive(out, probs, Q, K, V, &mask, scale, B, H, Tq, Tk, Dk, Dv);
        return 0;
    }
    /* Fast: the probs path (its out goes to a scratch buffer; fast-vs-naive tests in
     * tests/test_01_attention.c hold it to the naive out), then the streaming path for out. */
    float *scratch = malloc(B * H * Tq * Dv * sizeof *scratch + 1);   /* + 1: never malloc(0) */
    if (!scratch) {
        snprintf(err, errlen, "attention '%s': out of memory", prefix);
        return -1;
    }
    attention_forward_fast(scratch, probs, Q, K, V, &mask, scale, B, H, Tq, Tk, Dk, Dv);
    free(scratch);
    attention_forward_fast(out, NULL, Q, K, V, &mask, scale, B, H, Tq, Tk, Dk, Dv);
    return 0;
}
