/* ops_02_multihead.c — how chapter 02's op binds to its kernels (the table is oracle/ops.c):
 *
 *   mha   nn.MultiheadAttention's forward, batch_first=True, in eval mode, with the module's
 *         argument and parameter names
 *   mha-backward   its gradients for self-attention (chapter 07)
 *
 * An absent key/value is passed as the same pointer as query/key, which is how the fast variant
 * recognizes self-attention (multihead.h). The fast variant, like chapter 01's, is held to the
 * goldens on both of chapter 01's paths: attn_weights comes from the call that materializes
 * the probabilities, attn_output from a second call without weights (the streaming path).
 */
#include <stdio.h>
#include <stdlib.h>

#include "binds.h"
#include "multihead.h"
#include "tensor.h"

typedef void (*MhaFn)(float *out, float *weights, const float *query, const float *key,
                      const float *value, const MhaParams *p, const AttnMask *mask,
                      int average_weights, size_t B, size_t H, size_t Tq, size_t Tk, size_t E);

/* Requires t to be [d0, d1] (nd = 2) or [d0] (nd = 1). */
static int check_shape(OpCall *c, const Tensor *t, const char *name, int nd, size_t d0,
                       size_t d1, const char *what)
{
    if (t->shape[0] == d0 && (nd == 1 || t->shape[1] == d1))
        return 0;
    char got[96];
    tfm_shape_str(got, sizeof got, t->ndim, t->shape);
    if (nd == 1)
        return op_fail(c, "%s is %s; it must be %s = [%zu]", name, got, what, d0);
    return op_fail(c, "%s is %s; it must be %s = [%zu, %zu]", name, got, what, d0, d1);
}

/* key or value: [B, Tk, E] when given. */
static int check_kv(OpCall *c, const Tensor *t, const char *name, size_t B, size_t E)
{
    if (t->shape[0] == B && t->shape[2] == E)
        return 0;
    return op_fail(c, "query is [B, Tq, E] with B=%zu E=%zu but %s is [%zu, %zu, %zu]: it must "
                   "be [B, Tk, E] = [%zu, Tk, %zu]", B, E, name, t->shape[0], t->shape[1],
                   t->shape[2], B, E);
}

/* attn_mask -> an additive F32 mask in *mask (allocated into *owned when it was BOOL). */
static int read_attn_mask(OpCall *c, AttnMask *mask, float **owned, size_t B, size_t H,
                          size_t Tq, size_t Tk)
{
    const Tensor *am = op_in(c, "attn_mask");
    if (!am)
        return 0;
    const size_t plane = Tq * Tk;
    const size_t *s = am->shape;
    if (am->ndim == 2 && s[0] == Tq && s[1] == Tk) {
        mask->stride_b = mask->stride_h = 0;   /* one [Tq, Tk] for every batch and head */
    } else if (am->ndim == 3 && s[0] == B * H && s[1] == Tq && s[2] == Tk) {
        mask->stride_b = H * plane;            /* [B*H, Tq, Tk]: plane b*H + h */
        mask->stride_h = plane;
    } else {
        char got[96];
        tfm_shape_str(got, sizeof got, am->ndim, s);
        return op_fail(c, "attn_mask is %s; with B=%zu H=%zu Tq=%zu Tk=%zu it must be [Tq, Tk] "
                       "= [%zu, %zu] or [B*H, Tq, Tk] = [%zu, %zu, %zu]", got, B, H, Tq, Tk, Tq,
                       Tk, B * H, Tq, Tk);
    }
    if (am->dtype == TFM_F32) {
        mask->attn_mask = tensor_f32(am);
        return 0;
    }
    /* BOOL: nn.MultiheadAttention's true means "blocked", chapter 01's helper takes "keep". */
    const uint8_t *blocked = tensor_bool(am);
    uint8_t *keep = malloc(am->numel + 1);
    *owned = malloc(am->numel * sizeof **owned + 1);
    if (!keep || !*owned) {
        free(keep);
        return op_fail(c, "out of memory for attn_mask");
    }
    for (size_t t = 0; t < am->numel; t++)
        keep[t] = !blocked[t];
    attn_mask_from_bool(*owned, keep, am->numel);
    free(keep);
    mask->attn_mask = *owned;
    return 0;
}

/* num_heads, a positive divisor of E: what the forward and the backward share. */
static int mha_heads(OpCall *c, size_t E, size_t *H)
{
    const int64_t h64 = op_int(c, "num_heads");
    if (E % (uint64_t)h64 != 0)
        return op_fail(c, "num_heads is %lld; it must be a positive divisor of E = %zu",
                       (long long)h64, E);
    *H = (size_t)h64;
    return 0;
}

/* The projections' weights and biases (the biases optional), checked against E. */
static int mha_params(OpCall *c, size_t E, MhaParams *p)
{
    const Tensor *w_in = op_in(c, "in_proj_weight"), *w_out = op_in(c, "out_proj_weight");
    const Tensor *b_in = op_in(c, "in_proj_bias"), *b_out = op_in(c, "out_proj_bias");
    if (check_shape(c, w_in, "in_proj_weight", 2, 3 * E, E, "[3E, E]") ||
        check_shape(c, w_out, "out_proj_weight", 2, E, E, "[E, E]") ||
        (b_in && check_shape(c, b_in, "in_proj_bias", 1, 3 * E, 0, "[3E]")) ||
        (b_out && check_shape(c, b_out, "out_proj_bias", 1, E, 0, "[E]")))
        return -1;
    *p = (MhaParams){.in_proj_weight = tensor_f32(w_in),
                     .in_proj_bias = b_in ? tensor_f32(b_in) : NULL,
                     .out_proj_weight = tensor_f32(w_out),
                     .out_proj_bias = b_out ? tensor_f32(b_out) : NULL};
    return 0;
}

/* nn.MultiheadAttention's query, key, value: key absent is the query, value absent is the key.
 * Checks E > 0 and the shapes; sets *key and *value to the tensors that stand for them. */
static int mha_qkv(OpCall *c, const Tensor *query, const Tensor **key, const Tensor **value)
{
    const size_t B = query->shape[0], Tq = query->shape[1], E = query->shape[2];
    if (E == 0)
        return op_fail(c, "query is [%zu, %zu, 0]; the model width E must be > 0", B, Tq);
    const Tensor *k = op_in(c, "key"), *v = op_in(c, "value");
    if (k && check_kv(c, k, "key", B, E))
        return -1;
    if (v && check_kv(c, v, "value", B, E))
        return -1;
    *key = k ? k : query;
    *value = v ? v : *key;
    if ((*value)->shape[1] != (*key)->shape[1])
        return op_fail(c, "key has Tk = %zu tokens but value has %zu", (*key)->shape[1],
                       (*value)->shape[1]);
    return 0;
}

int bind_mha(OpCall *c)
{
    const Tensor *query = op_in(c, "query"), *key, *value;
    if (mha_qkv(c, query, &key, &value))
        return -1;
    const size_t B = query->shape[0], Tq = query->shape[1], E = query->shape[2];
    const size_t Tk = key->shape[1];

    size_t H = 0;
    if (mha_heads(c, E, &H))
        return -1;

    MhaParams p;
    if (mha_params(c, E, &p))
        return -1;
    const int need_weights = (int)op_int(c, "need_weights");
    const int average = (int)op_int(c, "average_attn_weights");

    AttnMask mask = {NULL, 0, 0, NULL, 0};
    const Tensor *kpm = op_in(c, "key_padding_mask");
    if (kpm) {
        if (check_shape(c, kpm, "key_padding_mask", 2, B, Tk, "[B, Tk]"))
            return -1;
        mask.key_padding_mask = tensor_bool(kpm);
    }
    float *owned_mask = NULL;   /* the additive form of a BOOL attn_mask */
    if (read_attn_mask(c, &mask, &owned_mask, B, H, Tq, Tk) != 0) {
        free(owned_mask);
        return -1;
    }

    const size_t oshape[3] = {B, Tq, E};
    const size_t wshape_avg[3] = {B, Tq, Tk}, wshape_heads[4] = {B, H, Tq, Tk};
    float *out = op_output(c, "attn_output", 3, oshape);
    float *weights = NULL;
    if (out && need_weights)
        weights = average ? op_output(c, "attn_weights", 3, wshape_avg)
                          : op_output(c, "attn_weights", 4, wshape_heads);
    if (!out || (need_weights && !weights)) {
        free(owned_mask);
        return -1;
    }

    const float *Q = tensor_f32(query), *K = tensor_f32(key), *V = tensor_f32(value);
    const MhaFn mha = KERNEL(c, MhaFn);
    if (c->variant == TFM_FAST && weights) {
        /* The materializing path; its attn_output is tested against naive's. */
        float *scratch = malloc(B * Tq * E * sizeof *scratch + 1);
        if (!scratch) {
            free(owned_mask);
            return op_fail(c, "out of memory");
        }
        mha(scratch, weights, Q, K, V, &p, &mask, average, B, H, Tq, Tk, E);
        free(scratch);
        mha(out, NULL, Q, K, V, &p, &mask, average, B, H, Tq, Tk, E);
    } else {
        mha(out, weights, Q, K, V, &p, &mask, average, B, H, Tq, Tk, E);
    }
    free(owned_mask);
    return 0;
}

typedef void (*MhaTrainFn)(float *out, const MhaCrossActs *acts, const float *query,
                           const float *key, const float *value, const MhaParams *p,
                           const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                           size_t E);
typedef void (*MhaBackwardFn)(float *dquery, float *dkey, float *dvalue, const MhaGrads *g,
                              const float *dout, const float *query, const float *key,
                              const float *value, const MhaParams *p, const MhaCrossActs *acts,
                              const AttnMask *mask, size_t B, size_t H, size_t Tq, size_t Tk,
                              size_t E);

/* A tensor that stands for two (or three) of query, key and value gets the sum of their gradients
 * in its grad_ output, as autograd gives it. */
int bind_mha_backward(OpCall *c)
{
    const Tensor *query = op_in(c, "query"), *key, *value;
    if (mha_qkv(c, query, &key, &value))
        return -1;
    const Tensor *key_t = op_in(c, "key"), *value_t = op_in(c, "value");   /* given, or NULL */
    const size_t B = query->shape[0], Tq = query->shape[1], E = query->shape[2];
    const size_t Tk = key->shape[1];
    size_t H = 0;
    if (mha_heads(c, E, &H))
        return -1;
    MhaParams p;
    if (mha_params(c, E, &p))
        return -1;
    const Tensor *w_in = op_in(c, "in_proj_weight"), *w_out = op_in(c, "out_proj_weight");
    const Tensor *b_in = op_in(c, "in_proj_bias"), *b_out = op_in(c, "out_proj_bias");
    AttnMask mask = {NULL, 0, 0, NULL, 0};
    const Tensor *kpm = op_in(c, "key_padding_mask");
    if (kpm) {
        if (check_shape(c, kpm, "key_padding_mask", 2, B, Tk, "[B, Tk]"))
            return -1;
        mask.key_padding_mask = tensor_bool(kpm);
    }
    float *owned = NULL;
    if (read_attn_mask(c, &mask, &owned, B, H, Tq, Tk))
        return -1;

    const float *dout = op_grad_in(c, "grad_attn_output", "attn_output", 3, query->shape);
    float *dq = dout ? op_output(c, "grad_query", 3, query->shape) : NULL;
    float *dk = dq && key_t ? op_output(c, "grad_key", 3, key_t->shape) : dq;
    float *dv = dk && value_t ? op_output(c, "grad_value", 3, value_t->shape) : dk;
    const MhaGrads g = {
        .in_proj_weight = dv ? op_output(c, "grad_in_proj_weight", 2, w_in->shape) : NULL,
        .in_proj_bias = dv && b_in ? op_output(c, "grad_in_proj_bias", 1, b_in->shape) : NULL,
        .out_proj_weight = dv ? op_output(c, "grad_out_proj_weight", 2, w_out->shape) : NULL,
        .out_proj_bias = dv && b_out ? op_output(c, "grad_out_proj_bias", 1, b_out->shape)
                                     : NULL};
    if (!dq || !dk || !dv || !g.in_proj_weight || !g.out_proj_weight || (b_in && !g.in_proj_bias) ||
        (b_out && !g.out_proj_bias)) {
        free(owned);
        return -1;
    }
    const size_t nq = B * Tq * E, nk = B * Tk * E;
    float *buf = malloc((2 * nq + 2 * nk + attention_lse_floats(B, H, Tq)) * sizeof *buf + 1);
    if (!buf) {
        free(owned);
        return op_fail(c, "out of memory");
    }
    const MhaCrossActs acts = {buf, buf + nq, buf + nq + nk, buf + nq + 2 * nk,
                               buf + 2 * nq + 2 * nk};
    float *out = tfm_xcalloc(nq, sizeof *out, c->op->name);
    const MhaTrainFn forward = c->variant == TFM_FAST ? multihead_forward_train_fast
                                                      : multihead_forward_train_naive;
    const float *xq = tensor_f32(query), *xk = tensor_f32(key), *xv = tensor_f32(value);
    forward(out, &acts, xq, xk, xv, &p, &mask, B, H, Tq, Tk, E);
    KERNEL(c, MhaBackwardFn)(dq, dk, dv, &g, dout, xq, xk, xv, &p, &acts, &mask, B, H, Tq, Tk, E);
    free(out);
    free(buf);
    free(owned);
    return 0;
}
