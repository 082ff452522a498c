/* multihead_case.c — chapter 02's op runner (cases.h): the op "mha", nn.MultiheadAttention's
 * forward with batch_first=True in eval mode.
 *
 * The inputs (under "<prefix>/"), named as PyTorch names the module's arguments and parameters:
 *
 *   query [B,Tq,E] F32; key [B,Tk,E] F32 (optional: absent means key = query, self-attention);
 *   value [B,Tk,E] F32 (optional: absent means value = key)
 *   in_proj_weight [3E,E], in_proj_bias [3E] (optional), out_proj_weight [E,E],
 *   out_proj_bias [E] (optional), all F32
 *   num_heads I64 [], a divisor of E
 *   key_padding_mask BOOL [B,Tk] (optional), true = this key is padding
 *   attn_mask (optional) [Tq,Tk] or [B*H,Tq,Tk], BOOL (true = may NOT attend, the module's
 *             convention) or F32 (added to the scores)
 *   need_weights, average_attn_weights I64 [] (optional, 0 or 1, default 1 as in PyTorch)
 *     -> attn_output [B,Tq,E]; with need_weights also attn_weights, [B,Tq,Tk] averaged over
 *        heads or [B,H,Tq,Tk] per head
 *
 * An absent key/value is passed as the same pointer as query/key, which is how the fast variant
 * recognizes self-attention (multihead.h). The fast variant, like chapter 01's runner, is held to
 * the goldens on both of chapter 01's paths: attn_weights comes from the call that materializes
 * the probabilities, attn_output from a second call without weights (the streaming path).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "multihead.h"

/* An optional 0-d I64 flag that must be 0 or 1; absent: `dflt`. Returns 0/1, or -1 (err). */
static int read_flag(const GoldenFile *in, const char *prefix, const char *name, int dflt,
                     char *err, size_t errlen)
{
    const Tensor *t = case_optional(in, prefix, name, TFM_I64, 0, err, errlen);
    if (!t)
        return err[0] ? -1 : dflt;
    const int64_t v = tensor_i64(t)[0];
    if (v != 0 && v != 1) {
        snprintf(err, errlen, "mha '%s': %s is %lld; it must be 0 or 1", prefix, name,
                 (long long)v);
        return -1;
    }
    return (int)v;
}

/* Requires t to be [d0, d1] (nd = 2) or [d0] (nd = 1). */
static int check_shape(const Tensor *t, const char *prefix, const char *name, int nd, size_t d0,
                       size_t d1, const char *what, char *err, size_t errlen)
{
    if (t->shape[0] == d0 && (nd == 1 || t->shape[1] == d1))
        return 0;
    char got[96];
    tfm_shape_str(got, sizeof got, t->ndim, t->shape);
    if (nd == 1)
        snprintf(err, errlen, "mha '%s': %s is %s; it must be %s = [%zu]", prefix, name, got,
                 what, d0);
    else
        snprintf(err, errlen, "mha '%s': %s is %s; it must be %s = [%zu, %zu]", prefix, name, got,
                 what, d0, d1);
    return -1;
}

/* key or value: optional [B, Tk, E]; absent returns `dflt` (the same tensor, by pointer). */
static const Tensor *read_kv(const GoldenFile *in, const char *prefix, const char *name,
                             const Tensor *dflt, size_t B, size_t E, char *err, size_t errlen)
{
    const Tensor *t = case_optional(in, prefix, name, TFM_F32, 3, err, errlen);
    if (!t)
        return err[0] ? NULL : dflt;
    if (t->shape[0] != B || t->shape[2] != E) {
        snprintf(err, errlen, "mha '%s': query is [B, Tq, E] with B=%zu E=%zu but %s is "
                 "[%zu, %zu, %zu]: it must be [B, Tk, E] = [%zu, Tk, %zu]", prefix, B, E, name,
                 t->shape[0], t->shape[1], t->shape[2], B, E);
        return NULL;
    }
    return t;
}

/* attn_mask -> an additive F32 mask in *mask (allocated into *owned when it was BOOL). */
static int read_attn_mask(const GoldenFile *in, const char *prefix, AttnMask *mask, float **owned,
                          size_t B, size_t H, size_t Tq, size_t Tk, char *err, size_t errlen)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "/" : "", "attn_mask");
    const Tensor *am = golden_find(in, full);
    if (!am)
        return 0;
    if (am->dtype != TFM_BOOL && am->dtype != TFM_F32) {
        snprintf(err, errlen, "mha '%s': attn_mask is %s; it must be BOOL (true = may not "
                 "attend) or F32 (additive)", prefix, tfm_dtype_name(am->dtype));
        return -1;
    }
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
        snprintf(err, errlen, "mha '%s': attn_mask is %s; with B=%zu H=%zu Tq=%zu Tk=%zu it must "
                 "be [Tq, Tk] = [%zu, %zu] or [B*H, Tq, Tk] = [%zu, %zu, %zu]", prefix, got, B, H,
                 Tq, Tk, Tq, Tk, B * H, Tq, Tk);
        return -1;
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
        snprintf(err, errlen, "mha '%s': out of memory for attn_mask", prefix);
        return -1;
    }
    for (size_t t = 0; t < am->numel; t++)
        keep[t] = !blocked[t];
    attn_mask_from_bool(*owned, keep, am->numel);
    free(keep);
    mask->attn_mask = *owned;
    return 0;
}

int multihead_run(OpOutputs *res, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen)
{
    const Tensor *query = case_input(in, prefix, "query", TFM_F32, 3, err, errlen);
    if (!query)
        return -1;
    const size_t B = query->shape[0], Tq = query->shape[1], E = query->shape[2];
    if (E == 0) {
        snprintf(err, errlen, "mha '%s': query is [%zu, %zu, 0]; the model width E must be > 0",
                 prefix, B, Tq);
        return -1;
    }
    const Tensor *key = read_kv(in, prefix, "key", query, B, E, err, errlen);
    if (!key)
        return -1;
    const size_t Tk = key->shape[1];
    const Tensor *value = read_kv(in, prefix, "value", key, B, E, err, errlen);
    if (!value)
        return -1;
    if (value->shape[1] != Tk) {
        snprintf(err, errlen, "mha '%s': key has Tk = %zu tokens but value has %zu", prefix, Tk,
                 value->shape[1]);
        return -1;
    }

    const Tensor *num_heads = case_input(in, prefix, "num_heads", TFM_I64, 0, err, errlen);
    if (!num_heads)
        return -1;
    const int64_t h64 = tensor_i64(num_heads)[0];
    if (h64 <= 0 || E % (uint64_t)h64 != 0) {
        snprintf(err, errlen, "mha '%s': num_heads is %lld; it must be a positive divisor of "
                 "E = %zu", prefix, (long long)h64, E);
        return -1;
    }
    const size_t H = (size_t)h64;

    MhaParams p = {NULL, NULL, NULL, NULL};
    const Tensor *w_in = case_input(in, prefix, "in_proj_weight", TFM_F32, 2, err, errlen);
    if (!w_in || check_shape(w_in, prefix, "in_proj_weight", 2, 3 * E, E, "[3E, E]", err, errlen))
        return -1;
    const Tensor *w_out = case_input(in, prefix, "out_proj_weight", TFM_F32, 2, err, errlen);
    if (!w_out || check_shape(w_out, prefix, "out_proj_weight", 2, E, E, "[E, E]", err, errlen))
        return -1;
    const Tensor *b_in = case_optional(in, prefix, "in_proj_bias", TFM_F32, 1, err, errlen);
    if (!b_in && err[0])
        return -1;
    if (b_in && check_shape(b_in, prefix, "in_proj_bias", 1, 3 * E, 0, "[3E]", err, errlen))
        return -1;
    const Tensor *b_out = case_optional(in, prefix, "out_proj_bias", TFM_F32, 1, err, errlen);
    if (!b_out && err[0])
        return -1;
    if (b_out && check_shape(b_out, prefix, "out_proj_bias", 1, E, 0, "[E]", err, errlen))
        return -1;
    p.in_proj_weight = tensor_f32(w_in);
    p.in_proj_bias = b_in ? tensor_f32(b_in) : NULL;
    p.out_proj_weight = tensor_f32(w_out);
    p.out_proj_bias = b_out ? tensor_f32(b_out) : NULL;

    const int need_weights = read_flag(in, prefix, "need_weights", 1, err, errlen);
    if (need_weights < 0)
        return -1;
    const int average = read_flag(in, prefix, "average_attn_weights", 1, err, errlen);
    if (average < 0)
        return -1;

    AttnMask mask = {NULL, 0, 0, NULL, 0};
    const Tensor *kpm = case_optional(in, prefix, "key_padding_mask", TFM_BOOL, 2, err, errlen);
    if (!kpm && err[0])
        return -1;
    if (kpm) {
        if (check_shape(kpm, prefix, "key_padding_mask", 2, B, Tk, "[B, Tk]", err, errlen))
            return -1;
        mask.key_padding_mask = tensor_bool(kpm);
    }
    float *owned_mask = NULL;   /* the additive form of a BOOL attn_mask */
    if (read_attn_mask(in, prefix, &mask, &owned_mask, B, H, Tq, Tk, err, errlen) != 0) {
        free(owned_mask);
        return -1;
    }

    const size_t oshape[3] = {B, Tq, E};
    const size_t wshape_avg[3] = {B, Tq, Tk}, wshape_heads[4] = {B, H, Tq, Tk};
    float *out = op_output(res, "attn_output", 3, oshape, err, errlen);
    float *weights = NULL;
    if (out && need_weights)
        weights = average ? op_output(res, "attn_weights", 3, wshape_avg, err, errlen)
                          : op_output(res, "attn_weights", 4, wshape_heads, err, errlen);
    if (!out || (need_weights && !weights)) {
        free(owned_mask);
        return -1;
    }

    const float *Q = tensor_f32(query), *K = tensor_f32(key), *V = tensor_f32(value);
    if (variant == TFM_NAIVE) {
        multihead_forward_naive(out, weights, Q, K, V, &p, &mask, average, B, H, Tq, Tk, E);
    } else {
        if (weights) {   /* the materializing path; its attn_output is tested against naive's */
            float *scratch = malloc(B * Tq * E * sizeof *scratch + 1);
            if (!scratch) {
                free(owned_mask);
                snprintf(err, errlen, "mha '%s': out of memory", prefix);
                return -1;
            }
            multihead_forward_fast(scratch, weights, Q, K, V, &p, &mask, average, B, H, Tq, Tk,
                                   E);
            free(scratch);
        }
        multihead_forward_fast(out, NULL, Q, K, V, &p, &mask, average, B, H, Tq, Tk, E);
    }
    free(owned_mask);
    return 0;
}
