/* positional_case.c — chapter 03's op runner (cases.h): the ops "pe" and "embeddings".
 *
 * The inputs (under "<prefix>/") select the op:
 *
 *   positions I64 [T], d_model I64 []                          -> out [T, E] (E = d_model)
 *       the sinusoidal table at those positions, each a whole number in 0..2^24.
 *
 *   input_ids I64 [B,T], word_emb F32 [V,E], pos_emb F32 [P,E],
 *   type_emb F32 [G,E] (optional), position_ids I64 [B,T] (optional, default 0..T-1),
 *   token_type_ids I64 [B,T] (optional, default 0; needs type_emb) -> out [B,T,E]
 *       BERT's embedding sum (word + type) + pos, before its LayerNorm.
 *
 * Every id is checked against its table before anything runs; the first one outside is named
 * with its index and value.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cases.h"
#include "positional.h"

/* The largest position the op takes. Both variants compute the angle p w in double, whose
 * rounding is about p * 2^-53: 2e-9 at 2^24, far below float32's 6e-8, so the table stays
 * correct to float32 rounding up to here (and 2^24 positions is beyond any context length). */
#define PE_MAX_POSITION ((int64_t)1 << 24)

static int run_pe(OpOutputs *res, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen)
{
    const Tensor *pos = case_input(in, prefix, "positions", TFM_I64, 1, err, errlen);
    if (!pos)
        return -1;
    const Tensor *dm = case_input(in, prefix, "d_model", TFM_I64, 0, err, errlen);
    if (!dm)
        return -1;
    const int64_t d_model = tensor_i64(dm)[0];
    if (d_model < 1) {
        snprintf(err, errlen, "pe '%s': d_model is %lld; it must be at least 1", prefix,
                 (long long)d_model);
        return -1;
    }
    const size_t T = pos->shape[0], E = (size_t)d_model;
    const int64_t *p = tensor_i64(pos);
    for (size_t t = 0; t < T; t++) {
        if (p[t] < 0 || p[t] > PE_MAX_POSITION) {
            snprintf(err, errlen, "pe '%s': positions[%zu] is %lld; positions must lie in "
                     "0..%lld (2^24)", prefix, t, (long long)p[t], (long long)PE_MAX_POSITION);
            return -1;
        }
    }
    const size_t shape[2] = {T, E};
    float *out = op_output(res, "out", 2, shape, err, errlen);
    if (!out)
        return -1;
    if (variant == TFM_FAST)
        pe_sinusoidal_fast(out, p, T, E);
    else
        pe_sinusoidal_naive(out, p, T, E);
    return 0;
}

/* An optional [B, T] I64 id tensor; returns 0 (with *ids NULL if absent) or -1. */
static int optional_ids(const int64_t **ids, const GoldenFile *in, const char *prefix,
                        const char *name, size_t B, size_t T, char *err, size_t errlen)
{
    *ids = NULL;
    const Tensor *x = case_optional(in, prefix, name, TFM_I64, 2, err, errlen);
    if (!x)
        return err[0] ? -1 : 0;
    if (x->shape[0] != B || x->shape[1] != T) {
        snprintf(err, errlen, "embeddings '%s': input_ids is [%zu, %zu] but %s is [%zu, %zu]: "
                 "it must be [B, T] = [%zu, %zu]", prefix, B, T, name, x->shape[0], x->shape[1],
                 B, T);
        return -1;
    }
    *ids = tensor_i64(x);
    return 0;
}

static int run_embeddings(OpOutputs *res, const GoldenFile *in, const char *prefix,
                          TfmVariant variant, char *err, size_t errlen)
{
    const Tensor *word = case_input(in, prefix, "word_emb", TFM_F32, 2, err, errlen);
    if (!word)
        return -1;
    const Tensor *ids = case_input(in, prefix, "input_ids", TFM_I64, 2, err, errlen);
    if (!ids)
        return -1;
    const Tensor *pos = case_input(in, prefix, "pos_emb", TFM_F32, 2, err, errlen);
    if (!pos)
        return -1;
    const Tensor *type = case_optional(in, prefix, "type_emb", TFM_F32, 2, err, errlen);
    if (!type && err[0])
        return -1;
    const size_t B = ids->shape[0], T = ids->shape[1];
    const size_t V = word->shape[0], E = word->shape[1], P = pos->shape[0];
    const size_t G = type ? type->shape[0] : 0;
    if (pos->shape[1] != E || (type && type->shape[1] != E)) {
        snprintf(err, errlen, "embeddings '%s': word_emb is [%zu, %zu], pos_emb [%zu, %zu]%s: "
                 "every table must have E = %zu columns", prefix, V, E, P, pos->shape[1],
                 type ? " and type_emb has another width" : "", E);
        return -1;
    }
    const int64_t *position_ids, *token_type_ids;
    if (optional_ids(&position_ids, in, prefix, "position_ids", B, T, err, errlen) != 0 ||
        optional_ids(&token_type_ids, in, prefix, "token_type_ids", B, T, err, errlen) != 0)
        return -1;
    if (token_type_ids && !type) {
        snprintf(err, errlen, "embeddings '%s': token_type_ids is given but type_emb is not",
                 prefix);
        return -1;
    }
    EmbBadId bad;
    if (embeddings_check_ids(&bad, tensor_i64(ids), position_ids, token_type_ids, B, T, V, P,
                             G) != 0) {
        char what[256];
        embeddings_bad_id_str(what, sizeof what, &bad, T);
        snprintf(err, errlen, "embeddings '%s': %s", prefix, what);
        return -1;
    }
    const size_t shape[3] = {B, T, E};
    float *out = op_output(res, "out", 3, shape, err, errlen);
    if (!out)
        return -1;
    const float *type_emb = type ? tensor_f32(type) : NULL;
    const int rc = (variant == TFM_FAST ? embeddings_forward_fast : embeddings_forward_naive)(
        out, &bad, tensor_i64(ids), position_ids, token_type_ids, tensor_f32(word),
        tensor_f32(pos), type_emb, B, T, E, V, P, G);
    if (rc != 0) {   /* checked above; kept so that a kernel and runner disagreement is loud */
        snprintf(err, errlen, "embeddings '%s': the kernel rejected an id the runner accepted",
                 prefix);
        return -1;
    }
    return 0;
}

int positional_run(OpOutputs *res, const GoldenFile *in, const char *prefix, TfmVariant variant,
                   char *err, size_t errlen)
{
    if (case_optional(in, prefix, "input_ids", TFM_I64, -1, err, errlen))
        return run_embeddings(res, in, prefix, variant, err, errlen);
    if (err[0])   /* "input_ids" is present, but not I64 */
        return -1;
    return run_pe(res, in, prefix, variant, err, errlen);
}
