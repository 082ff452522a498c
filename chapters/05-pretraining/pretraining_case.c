/* pretraining_case.c — chapter 05's op runner (cases.h). The inputs (under "<prefix>/") select
 * the op; token ids and labels are I64, everything else F32:
 *
 *   mlm-mask   input_ids [B,T], mlm_probability F32 [], special_ids [K], mask_token_id [],
 *              vocab_size [], seed []; optional mask_replace_prob, random_replace_prob F32 []
 *              -> input_ids I64 [B,T] (masked), labels I64 [B,T]            (no golden: see below)
 *   mlm-loss   logits [...,V], labels [...] -> loss [], token_loss [...]
 *   nsp-loss   seq_relationship_logits [B,2], next_sentence_label [B] -> loss []
 *   pretraining-heads
 *              sequence_output [B,T,E], labels [B,T], next_sentence_label [B], and BERT's
 *              parameters under their transformers names (pretraining.h, MlmHead and NspHead)
 *              -> masked_logits [S,V] (prediction_scores[labels != -100]),
 *                 seq_relationship_logits [B,2], mlm_loss [], nsp_loss []
 *
 * Labels must be -100 or in [0, V): PyTorch raises an error on any other value, and so does this
 * runner (a message naming the position), rather than reading outside a row.
 *
 * mlm-mask writes I64 outputs (ids must stay exact integers); it has no golden, because the
 * masking depends on torch's random stream, which tfm does not reproduce. Its tests are
 * statistical (tests/test_05_pretraining.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "pretraining.h"

/* Like op_output, for an I64 output (only mlm-mask has them). They have the shape of input_ids,
 * which case_input has already held to tfm_max_elements(). */
static int64_t *op_output_i64(OpOutputs *o, const char *name, int ndim, const size_t *shape,
                              char *err, size_t errlen)
{
    if (o->n >= TFM_MAX_OUTPUTS) {
        snprintf(err, errlen, "more than %d outputs", TFM_MAX_OUTPUTS);
        return NULL;
    }
    if (tensor_alloc(&o->tensors[o->n], TFM_I64, ndim, shape, err, errlen) != 0)
        return NULL;
    snprintf(o->names[o->n], sizeof o->names[o->n], "%s", name);
    return tensor_i64(&o->tensors[o->n++]);
}

/* A 0-d I64 parameter. */
static int scalar_i64(const GoldenFile *in, const char *prefix, const char *name, int64_t *v,
                      char *err, size_t errlen)
{
    const Tensor *t = case_input(in, prefix, name, TFM_I64, 0, err, errlen);
    if (!t)
        return -1;
    *v = tensor_i64(t)[0];
    return 0;
}

/* An optional 0-d F32 probability in [0, 1]; *v keeps its default when absent. */
static int probability(const GoldenFile *in, const char *prefix, const char *name, int required,
                       double *v, char *err, size_t errlen)
{
    const Tensor *t = required ? case_input(in, prefix, name, TFM_F32, 0, err, errlen)
                               : case_optional(in, prefix, name, TFM_F32, 0, err, errlen);
    if (!t)
        return err[0] ? -1 : 0;
    const float p = tensor_f32(t)[0];
    if (!(p >= 0.0f && p <= 1.0f)) {
        snprintf(err, errlen, "mlm-mask '%s': %s is %g; it must lie in [0, 1]", prefix, name,
                 (double)p);
        return -1;
    }
    *v = p;
    return 0;
}

/* Every label is -100 or a class in [0, V). */
static int check_labels(const char *op, const char *prefix, const char *name,
                        const int64_t *labels, size_t N, size_t V, char *err, size_t errlen)
{
    for (size_t n = 0; n < N; n++) {
        const int64_t y = labels[n];
        if (y != TFM_IGNORE_INDEX && (y < 0 || (uint64_t)y >= V)) {
            snprintf(err, errlen, "%s '%s': %s[%zu] = %lld; a label must be -100 (ignored) or a "
                     "class in [0, %zu)", op, prefix, name, n, (long long)y, V);
            return -1;
        }
    }
    return 0;
}

static int same_shape(const Tensor *a, const size_t *shape, int ndim)
{
    if (a->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (a->shape[d] != shape[d])
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- mlm-mask */

static int run_mask(OpOutputs *res, const GoldenFile *in, const char *prefix, char *err,
                    size_t errlen)
{
    MlmMaskConfig cfg = {0.15, 0.8, 0.1, 0, 0, NULL, 0, 0};
    if (probability(in, prefix, "mlm_probability", 1, &cfg.mlm_probability, err, errlen) ||
        probability(in, prefix, "mask_replace_prob", 0, &cfg.mask_replace_prob, err, errlen) ||
        probability(in, prefix, "random_replace_prob", 0, &cfg.random_replace_prob, err, errlen))
        return -1;
    if (cfg.mask_replace_prob + cfg.random_replace_prob > 1.0) {
        snprintf(err, errlen, "mlm-mask '%s': mask_replace_prob + random_replace_prob = %g; "
                 "the two shares of the selected tokens must add up to at most 1", prefix,
                 cfg.mask_replace_prob + cfg.random_replace_prob);
        return -1;
    }
    const Tensor *ids = case_input(in, prefix, "input_ids", TFM_I64, -1, err, errlen);
    if (!ids)
        return -1;
    if (ids->ndim < 1) {
        snprintf(err, errlen, "mlm-mask '%s': input_ids is 0-d; it must be [T] or [B, T]",
                 prefix);
        return -1;
    }
    const Tensor *special = case_input(in, prefix, "special_ids", TFM_I64, 1, err, errlen);
    if (!special)
        return -1;
    int64_t mask_id, vocab, seed;
    if (scalar_i64(in, prefix, "mask_token_id", &mask_id, err, errlen) ||
        scalar_i64(in, prefix, "vocab_size", &vocab, err, errlen) ||
        scalar_i64(in, prefix, "seed", &seed, err, errlen))
        return -1;
    if (vocab < 1 || mask_id < 0 || mask_id >= vocab) {
        snprintf(err, errlen, "mlm-mask '%s': vocab_size %lld, mask_token_id %lld; need "
                 "vocab_size >= 1 and mask_token_id in [0, vocab_size)", prefix,
                 (long long)vocab, (long long)mask_id);
        return -1;
    }
    const int64_t *x = tensor_i64(ids);
    for (size_t n = 0; n < ids->numel; n++) {
        if (x[n] < 0 || x[n] >= vocab) {
            snprintf(err, errlen, "mlm-mask '%s': input_ids[%zu] = %lld is outside the "
                     "vocabulary [0, %lld)", prefix, n, (long long)x[n], (long long)vocab);
            return -1;
        }
    }
    cfg.mask_token_id = mask_id;
    cfg.vocab_size = (size_t)vocab;
    cfg.special_ids = tensor_i64(special);
    cfg.n_special = special->numel;
    cfg.seed = (uint64_t)seed;

    int64_t *masked = op_output_i64(res, "input_ids", ids->ndim, ids->shape, err, errlen);
    if (!masked)
        return -1;
    int64_t *labels = op_output_i64(res, "labels", ids->ndim, ids->shape, err, errlen);
    if (!labels)
        return -1;
    mlm_mask(masked, labels, x, &cfg, ids->numel);
    return 0;
}

/* ---------------------------------------------------------------- mlm-loss, nsp-loss */

/* Cross-entropy of logits [..., V] against labels [...]: mlm-loss (any V) and nsp-loss (V = 2). */
static int run_loss(OpOutputs *res, const GoldenFile *in, const char *prefix, const char *op,
                    const char *lname, const char *yname, int nsp, TfmVariant variant, char *err,
                    size_t errlen)
{
    const Tensor *z = case_input(in, prefix, lname, TFM_F32, nsp ? 2 : -1, err, errlen);
    if (!z)
        return -1;
    const Tensor *y = case_input(in, prefix, yname, TFM_I64, -1, err, errlen);
    if (!y)
        return -1;
    char zs[96], ys[96];
    tfm_shape_str(zs, sizeof zs, z->ndim, z->shape);
    tfm_shape_str(ys, sizeof ys, y->ndim, y->shape);
    if (z->ndim < 1 || (nsp && z->shape[1] != 2)) {
        snprintf(err, errlen, "%s '%s': %s is %s; it must be %s", op, prefix, lname, zs,
                 nsp ? "[B, 2]" : "[..., V] (at least 1-d)");
        return -1;
    }
    const size_t V = z->shape[z->ndim - 1];
    if (!same_shape(y, z->shape, z->ndim - 1)) {
        snprintf(err, errlen, "%s '%s': %s is %s but %s is %s: %s must be %s without its last "
                 "dimension", op, prefix, lname, zs, yname, ys, yname, lname);
        return -1;
    }
    const size_t N = y->numel;
    if (V == 0 && N > 0) {
        snprintf(err, errlen, "%s '%s': %s is %s: no classes", op, prefix, lname, zs);
        return -1;
    }
    if (check_labels(op, prefix, yname, tensor_i64(y), N, V, err, errlen))
        return -1;

    float *loss = op_output(res, "loss", 0, NULL, err, errlen);
    if (!loss)
        return -1;
    float *token_loss = NULL;
    if (!nsp && !(token_loss = op_output(res, "token_loss", y->ndim, y->shape, err, errlen)))
        return -1;
    if (variant == TFM_FAST)
        cross_entropy_fast(loss, token_loss, tensor_f32(z), tensor_i64(y), N, V);
    else
        cross_entropy_naive(loss, token_loss, tensor_f32(z), tensor_i64(y), N, V);
    return 0;
}

/* ---------------------------------------------------------------- pretraining-heads */

/* A parameter under its BERT name with the given shape (up to 2-d). */
static const float *param(const GoldenFile *in, const char *prefix, const char *name, int ndim,
                          size_t d0, size_t d1, char *err, size_t errlen)
{
    const Tensor *t = case_input(in, prefix, name, TFM_F32, ndim, err, errlen);
    if (!t)
        return NULL;
    const size_t want[2] = {d0, d1};
    if (!same_shape(t, want, ndim)) {
        char got[96], exp[96];
        tfm_shape_str(got, sizeof got, t->ndim, t->shape);
        tfm_shape_str(exp, sizeof exp, ndim, want);
        snprintf(err, errlen, "pretraining-heads '%s': %s is %s; with the shapes of "
                 "sequence_output and the word embeddings it must be %s", prefix, name, got, exp);
        return NULL;
    }
    return tensor_f32(t);
}

static int run_heads(OpOutputs *res, const GoldenFile *in, const char *prefix, const Tensor *h,
                     TfmVariant variant, char *err, size_t errlen)
{
    const size_t B = h->shape[0], T = h->shape[1], E = h->shape[2];
    const Tensor *emb = case_input(in, prefix, "bert.embeddings.word_embeddings.weight", TFM_F32,
                                   2, err, errlen);
    if (!emb)
        return -1;
    const size_t V = emb->shape[0];
    if (emb->shape[1] != E) {
        snprintf(err, errlen, "pretraining-heads '%s': sequence_output is [%zu, %zu, %zu] but "
                 "bert.embeddings.word_embeddings.weight is [%zu, %zu]: it must be [V, E] = "
                 "[V, %zu]", prefix, B, T, E, emb->shape[0], emb->shape[1], E);
        return -1;
    }
    if (T == 0 && B > 0) {
        snprintf(err, errlen, "pretraining-heads '%s': sequence_output has no tokens (T = 0): "
                 "the NSP head reads token 0", prefix);
        return -1;
    }
    MlmHead mh = {NULL, NULL, NULL, NULL, tensor_f32(emb), NULL, 1e-12f};
    NspHead nh = {NULL, NULL, NULL, NULL};
    /* Each parameter under its BERT name, with the shape E and V imply. */
#define PARAM(dst, name, nd, d0, d1)                                           \
    do {                                                                       \
        if (!((dst) = param(in, prefix, name, nd, d0, d1, err, errlen)))       \
            return -1;                                                         \
    } while (0)
    PARAM(mh.dense_w, "cls.predictions.transform.dense.weight", 2, E, E);
    PARAM(mh.dense_b, "cls.predictions.transform.dense.bias", 1, E, 0);
    PARAM(mh.ln_gamma, "cls.predictions.transform.LayerNorm.weight", 1, E, 0);
    PARAM(mh.ln_beta, "cls.predictions.transform.LayerNorm.bias", 1, E, 0);
    PARAM(mh.decoder_b, "cls.predictions.bias", 1, V, 0);
    PARAM(nh.pooler_w, "bert.pooler.dense.weight", 2, E, E);
    PARAM(nh.pooler_b, "bert.pooler.dense.bias", 1, E, 0);
    PARAM(nh.cls_w, "cls.seq_relationship.weight", 2, 2, E);
    PARAM(nh.cls_b, "cls.seq_relationship.bias", 1, 2, 0);
#undef PARAM

    const Tensor *y = case_input(in, prefix, "labels", TFM_I64, 2, err, errlen);
    if (!y)
        return -1;
    const Tensor *ns = case_input(in, prefix, "next_sentence_label", TFM_I64, 1, err, errlen);
    if (!ns)
        return -1;
    if (y->shape[0] != B || y->shape[1] != T || ns->shape[0] != B) {
        snprintf(err, errlen, "pretraining-heads '%s': sequence_output is [%zu, %zu, %zu], labels "
                 "[%zu, %zu], next_sentence_label [%zu]: they must be [B, T, E], [B, T] and [B]",
                 prefix, B, T, E, y->shape[0], y->shape[1], ns->shape[0]);
        return -1;
    }
    const int64_t *labels = tensor_i64(y);
    if (check_labels("pretraining-heads", prefix, "labels", labels, B * T, V, err, errlen) ||
        check_labels("pretraining-heads", prefix, "next_sentence_label", tensor_i64(ns), B, 2,
                     err, errlen))
        return -1;

    const size_t S = mlm_count_selected(labels, B * T);
    const size_t zshape[2] = {S, V}, sshape[2] = {B, 2};
    float *masked_logits = op_output(res, "masked_logits", 2, zshape, err, errlen);
    float *nsp_logits = masked_logits ? op_output(res, "seq_relationship_logits", 2, sshape, err,
                                                  errlen) : NULL;
    float *mlm_loss = nsp_logits ? op_output(res, "mlm_loss", 0, NULL, err, errlen) : NULL;
    float *nsp_loss = mlm_loss ? op_output(res, "nsp_loss", 0, NULL, err, errlen) : NULL;
    if (!nsp_loss)
        return -1;
    /* BertForPreTraining's total loss is mlm_loss + nsp_loss (one float addition); the four
     * outputs are what `tfm check` compares, the sum is checked in tests/test_05_pretraining.c. */
    const float *H = tensor_f32(h);
    if (variant == TFM_FAST) {
        mlm_forward_fast(mlm_loss, masked_logits, H, labels, &mh, B * T, E, V);
        nsp_forward_fast(nsp_loss, nsp_logits, NULL, H, tensor_i64(ns), &nh, B, T, E);
    } else {
        mlm_forward_naive(mlm_loss, masked_logits, H, labels, &mh, B * T, E, V);
        nsp_forward_naive(nsp_loss, nsp_logits, NULL, H, tensor_i64(ns), &nh, B, T, E);
    }
    return 0;
}

int pretraining_run(OpOutputs *res, const GoldenFile *in, const char *prefix, TfmVariant variant,
                    char *err, size_t errlen)
{
    const Tensor *t;
    if ((t = case_optional(in, prefix, "input_ids", TFM_I64, -1, err, errlen)))
        return run_mask(res, in, prefix, err, errlen);
    if (err[0])
        return -1;
    /* Before seq_relationship_logits: a heads case holds PyTorch's seq_relationship_logits as
     * an expected output. */
    if ((t = case_optional(in, prefix, "sequence_output", TFM_F32, 3, err, errlen)))
        return run_heads(res, in, prefix, t, variant, err, errlen);
    if (err[0])
        return -1;
    if ((t = case_optional(in, prefix, "logits", TFM_F32, -1, err, errlen)))
        return run_loss(res, in, prefix, "mlm-loss", "logits", "labels", 0, variant, err, errlen);
    if (err[0])
        return -1;
    if ((t = case_optional(in, prefix, "seq_relationship_logits", TFM_F32, -1, err, errlen)))
        return run_loss(res, in, prefix, "nsp-loss", "seq_relationship_logits",
                        "next_sentence_label", 1, variant, err, errlen);
    if (err[0])
        return -1;
    snprintf(err, errlen, "pretraining '%s': none of the inputs that select an op is there "
             "(input_ids, sequence_output, logits, seq_relationship_logits)", prefix);
    return -1;
}
