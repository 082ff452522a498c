/* ops_05_pretraining.c — how chapter 05's ops bind to their kernels (the table is
 * oracle/ops.c). Token ids and labels are I64, everything else F32:
 *
 *   mlm-mask            what DataCollatorForLanguageModeling does to a batch of ids (no golden:
 *                       the masking follows tfm's generator, not torch's; tests are statistical)
 *   mlm-loss            the masked-LM cross-entropy of logits [..., V] against labels [...]
 *   nsp-loss            the next-sentence cross-entropy of [B, 2] logits
 *   pretraining-heads   BertForPreTraining's two heads and both losses from sequence_output
 *   cross-entropy       F.cross_entropy with its weight, ignore_index, reduction and
 *                       label_smoothing, class indices or class probabilities as targets
 *
 * Labels must be -100 or in [0, V): PyTorch raises an error on any other value, and so does tfm
 * (a message naming the position), rather than reading outside a row.
 */
#include <stdio.h>

#include "binds.h"
#include "pretraining.h"

typedef void (*MaskFn)(int64_t *masked, int64_t *labels, const int64_t *ids,
                       const MlmMaskConfig *cfg, size_t N);
typedef void (*CrossEntropyFn)(float *loss, float *token_loss, const float *logits,
                               const int64_t *labels, size_t N, size_t V);
typedef void (*MlmFn)(float *loss, float *masked_logits, const float *hidden,
                      const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V);

int bind_check_labels(OpCall *c, const char *name, const int64_t *labels, size_t N, size_t V)
{
    for (size_t n = 0; n < N; n++) {
        const int64_t y = labels[n];
        if (y != TFM_IGNORE_INDEX && (y < 0 || (uint64_t)y >= V))
            return op_fail(c, "%s[%zu] = %lld; a label must be -100 (ignored) or a class in "
                           "[0, %zu)", name, n, (long long)y, V);
    }
    return 0;
}

/* ---------------------------------------------------------------- mlm-mask */

int bind_mlm_mask(OpCall *c)
{
    MlmMaskConfig cfg = {
        .mlm_probability = op_float(c, "mlm_probability"),
        .mask_replace_prob = op_float(c, "mask_replace_prob"),
        .random_replace_prob = op_float(c, "random_replace_prob"),
    };
    if (cfg.mask_replace_prob + cfg.random_replace_prob > 1.0)
        return op_fail(c, "mask_replace_prob + random_replace_prob = %g; the two shares of the "
                       "selected tokens must add up to at most 1",
                       cfg.mask_replace_prob + cfg.random_replace_prob);
    const Tensor *ids = op_in(c, "input_ids"), *special = op_in(c, "special_ids");
    const int64_t mask_id = op_int(c, "mask_token_id"), vocab = op_int(c, "vocab_size");
    if (mask_id >= vocab)
        return op_fail(c, "vocab_size %lld, mask_token_id %lld; mask_token_id must lie in "
                       "[0, vocab_size)", (long long)vocab, (long long)mask_id);
    const int64_t *x = tensor_i64(ids);
    for (size_t n = 0; n < ids->numel; n++)
        if (x[n] < 0 || x[n] >= vocab)
            return op_fail(c, "input_ids[%zu] = %lld is outside the vocabulary [0, %lld)", n,
                           (long long)x[n], (long long)vocab);
    cfg.mask_token_id = mask_id;
    cfg.vocab_size = (size_t)vocab;
    cfg.special_ids = tensor_i64(special);
    cfg.n_special = special->numel;
    cfg.seed = (uint64_t)op_int(c, "seed");

    int64_t *masked = op_output_i64(c, "input_ids", ids->ndim, ids->shape);
    int64_t *labels = masked ? op_output_i64(c, "labels", ids->ndim, ids->shape) : NULL;
    if (!labels)
        return -1;
    KERNEL(c, MaskFn)(masked, labels, x, &cfg, ids->numel);
    return 0;
}

/* ---------------------------------------------------------------- mlm-loss, nsp-loss */

/* Cross-entropy of logits [..., V] against labels [...]: mlm-loss (any V), nsp-loss (V = 2). */
static int loss(OpCall *c, const char *lname, const char *yname, int nsp)
{
    const Tensor *z = op_in(c, lname), *y = op_in(c, yname);
    char zs[160], ys[160];
    tfm_shape_str(zs, sizeof zs, z->ndim, z->shape);
    tfm_shape_str(ys, sizeof ys, y->ndim, y->shape);
    if (nsp && z->shape[1] != 2)
        return op_fail(c, "%s is %s; it must be [B, 2]", lname, zs);
    const size_t V = z->shape[z->ndim - 1];
    if (!op_same_shape(y, z->ndim - 1, z->shape))
        return op_fail(c, "%s is %s but %s is %s: %s must be %s without its last dimension",
                       lname, zs, yname, ys, yname, lname);
    const size_t N = y->numel;
    if (V == 0 && N > 0)
        return op_fail(c, "%s is %s: no classes", lname, zs);
    if (bind_check_labels(c, yname, tensor_i64(y), N, V))
        return -1;
    float *l = op_output(c, "loss", 0, NULL);
    float *token_loss = NULL;
    if (!l || (!nsp && !(token_loss = op_output(c, "token_loss", y->ndim, y->shape))))
        return -1;
    KERNEL(c, CrossEntropyFn)(l, token_loss, tensor_f32(z), tensor_i64(y), N, V);
    return 0;
}

int bind_mlm_loss(OpCall *c) { return loss(c, "logits", "labels", 0); }

int bind_nsp_loss(OpCall *c)
{
    return loss(c, "seq_relationship_logits", "next_sentence_label", 1);
}

/* ---------------------------------------------------------------- pretraining-heads */

/* A head parameter under its BERT name, with the shape E and V imply (1-d or 2-d). */
static const float *head_param(OpCall *c, const char *name, int ndim, size_t d0, size_t d1)
{
    const Tensor *t = op_in(c, name);
    const size_t want[2] = {d0, d1};
    if (!op_same_shape(t, ndim, want)) {
        char got[96], exp[96];
        tfm_shape_str(got, sizeof got, t->ndim, t->shape);
        tfm_shape_str(exp, sizeof exp, ndim, want);
        op_fail(c, "%s is %s; with the shapes of sequence_output and the word embeddings it "
                "must be %s", name, got, exp);
        return NULL;
    }
    return tensor_f32(t);
}

/* The heads' sizes, parameters and labels, checked: what the forward and the backward share. */
typedef struct {
    size_t B, T, E, V;
    MlmHead mh;
    NspHead nh;
    const int64_t *labels, *nsp_labels;
} HeadsCall;

static int heads_setup(OpCall *c, HeadsCall *hc)
{
    const Tensor *h = op_in(c, "sequence_output");
    const size_t B = h->shape[0], T = h->shape[1], E = h->shape[2];
    const Tensor *emb = op_in(c, "bert.embeddings.word_embeddings.weight");
    const size_t V = emb->shape[0];
    if (emb->shape[1] != E)
        return op_fail(c, "sequence_output is [%zu, %zu, %zu] but "
                       "bert.embeddings.word_embeddings.weight is [%zu, %zu]: it must be [V, E] "
                       "= [V, %zu]", B, T, E, emb->shape[0], emb->shape[1], E);
    if (T == 0 && B > 0)
        return op_fail(c, "sequence_output has no tokens (T = 0): the NSP head reads token 0");
    MlmHead mh = {.decoder_w = tensor_f32(emb), .ln_eps = 1e-12f};
    NspHead nh = {NULL, NULL, NULL, NULL};
    if (!(mh.dense_w = head_param(c, "cls.predictions.transform.dense.weight", 2, E, E)) ||
        !(mh.dense_b = head_param(c, "cls.predictions.transform.dense.bias", 1, E, 0)) ||
        !(mh.ln_gamma = head_param(c, "cls.predictions.transform.LayerNorm.weight", 1, E, 0)) ||
        !(mh.ln_beta = head_param(c, "cls.predictions.transform.LayerNorm.bias", 1, E, 0)) ||
        !(mh.decoder_b = head_param(c, "cls.predictions.bias", 1, V, 0)) ||
        !(nh.pooler_w = head_param(c, "bert.pooler.dense.weight", 2, E, E)) ||
        !(nh.pooler_b = head_param(c, "bert.pooler.dense.bias", 1, E, 0)) ||
        !(nh.cls_w = head_param(c, "cls.seq_relationship.weight", 2, 2, E)) ||
        !(nh.cls_b = head_param(c, "cls.seq_relationship.bias", 1, 2, 0)))
        return -1;

    const Tensor *y = op_in(c, "labels"), *ns = op_in(c, "next_sentence_label");
    if (y->shape[0] != B || y->shape[1] != T || ns->shape[0] != B)
        return op_fail(c, "sequence_output is [%zu, %zu, %zu], labels [%zu, %zu], "
                       "next_sentence_label [%zu]: they must be [B, T, E], [B, T] and [B]", B, T,
                       E, y->shape[0], y->shape[1], ns->shape[0]);
    const int64_t *labels = tensor_i64(y);
    if (bind_check_labels(c, "labels", labels, B * T, V) ||
        bind_check_labels(c, "next_sentence_label", tensor_i64(ns), B, 2))
        return -1;
    *hc = (HeadsCall){B, T, E, V, mh, nh, labels, tensor_i64(ns)};
    return 0;
}

int bind_pretraining_heads(OpCall *c)
{
    HeadsCall hc;
    if (heads_setup(c, &hc))
        return -1;
    const size_t B = hc.B, T = hc.T, E = hc.E, V = hc.V;
    const size_t S = mlm_count_selected(hc.labels, B * T);
    const size_t zshape[2] = {S, V}, sshape[2] = {B, 2};
    float *masked_logits = op_output(c, "masked_logits", 2, zshape);
    float *nsp_logits = masked_logits ? op_output(c, "seq_relationship_logits", 2, sshape) : NULL;
    float *mlm_loss = nsp_logits ? op_output(c, "mlm_loss", 0, NULL) : NULL;
    float *nsp_loss = mlm_loss ? op_output(c, "nsp_loss", 0, NULL) : NULL;
    float *total = nsp_loss ? op_output(c, "loss", 0, NULL) : NULL;
    if (!total)
        return -1;
    /* The table names the MLM head's kernels; the NSP head follows the same variant. */
    const float *H = tensor_f32(op_in(c, "sequence_output"));
    KERNEL(c, MlmFn)(mlm_loss, masked_logits, H, hc.labels, &hc.mh, B * T, E, V);
    (c->variant == TFM_FAST ? nsp_forward_fast : nsp_forward_naive)(
        nsp_loss, nsp_logits, NULL, H, hc.nsp_labels, &hc.nh, B, T, E);
    total[0] = mlm_loss[0] + nsp_loss[0];   /* BertForPreTraining's loss: one float addition */
    return 0;
}

typedef void (*MlmBackwardFn)(float *dhidden, const MlmHeadGrads *g, float dloss,
                              const float *hidden, const int64_t *labels, const MlmHead *head,
                              size_t N, size_t E, size_t V);

/* grad_<name> [shape of name] for a head parameter. */
static float *head_grad(OpCall *c, const char *name)
{
    const Tensor *t = op_in(c, name);
    char gname[96];
    snprintf(gname, sizeof gname, "grad_%s", name);
    return op_output(c, gname, t->ndim, t->shape);
}

/* pretraining-heads-backward (chapter 07): grad_loss reaches both losses (loss = mlm_loss +
 * nsp_loss); grad_sequence_output sums the two heads' paths, and
 * grad_bert.embeddings.word_embeddings.weight is the tied decoder's share of that gradient. */
int bind_pretraining_heads_backward(OpCall *c)
{
    HeadsCall hc;
    if (heads_setup(c, &hc))
        return -1;
    const Tensor *h = op_in(c, "sequence_output");
    const float *dloss = op_grad_in(c, "grad_loss", "loss", 0, NULL);
    float *dh = dloss ? op_output(c, "grad_sequence_output", 3, h->shape) : NULL;
    static const char *const NAMES[10] = {
        "bert.embeddings.word_embeddings.weight", "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias",
        "bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.seq_relationship.weight",
        "cls.seq_relationship.bias"};
    float *g[10];
    for (int k = 0; k < 10; k++)
        if (!dh || !(g[k] = head_grad(c, NAMES[k])))
            return -1;
    const MlmHeadGrads mg = {g[1], g[2], g[3], g[4], g[0], g[5]};
    const NspHeadGrads ng = {g[6], g[7], g[8], g[9]};
    const float *H = tensor_f32(h);
    KERNEL(c, MlmBackwardFn)(dh, &mg, dloss[0], H, hc.labels, &hc.mh, hc.B * hc.T, hc.E, hc.V);
    (c->variant == TFM_FAST ? nsp_backward_fast : nsp_backward_naive)(
        dh, &ng, dloss[0], H, hc.nsp_labels, &hc.nh, hc.B, hc.T, hc.E);
    return 0;
}

/* ---------------------------------------------------------------- cross-entropy */

typedef void (*CrossEntropyLossFn)(float *out, const float *input, const int64_t *target,
                                   const float *target_probs, const float *weight,
                                   int64_t ignore_index, TfmReduction reduction,
                                   float label_smoothing, size_t N, size_t C, size_t inner);

/* F.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing): input [C]
 * (one sample) or [N, C, d1..dk] with the classes on dim 1, as PyTorch; target class indices
 * (I64, input's shape without dim 1) or class probabilities (F32, input's shape). What the
 * forward and the backward share, checked. */
typedef struct {
    const Tensor *x, *t, *w;
    size_t N, C, inner;
    size_t ishape[TFM_MAX_DIMS];   /* the per-element shape: input without dim 1 */
    int ind;                       /* its rank */
    int probs;                     /* target holds probabilities */
    int64_t ignore;
    TfmReduction red;
} CeCall;

static int ce_setup(OpCall *c, CeCall *ce)
{
    const Tensor *x = op_in(c, "input"), *t = op_in(c, "target"), *w = op_in(c, "weight");
    const int one = x->ndim == 1;   /* [C]: N = 1, no class dimension to skip */
    const size_t N = one ? 1 : x->shape[0], C = one ? x->shape[0] : x->shape[1];
    size_t inner = 1;
    int ind = 0;
    if (!one) {
        ce->ishape[ind++] = N;
        for (int d = 2; d < x->ndim; d++) {
            ce->ishape[ind++] = x->shape[d];
            inner *= x->shape[d];
        }
    }
    char xs[160], ts[160], want[224];
    tfm_shape_str(xs, sizeof xs, x->ndim, x->shape);
    tfm_shape_str(ts, sizeof ts, t->ndim, t->shape);
    const int probs = t->dtype == TFM_F32;
    if (probs ? !op_same_shape(t, x->ndim, x->shape) : !op_same_shape(t, ind, ce->ishape)) {
        if (probs)
            snprintf(want, sizeof want, "%s, input's shape (class probabilities)", xs);
        else
            tfm_shape_str(want, sizeof want, ind, ce->ishape);
        return op_fail(c, "input is %s but target is %s: it must be %s", xs, ts, want);
    }
    if (w && w->shape[0] != C)
        return op_fail(c, "input has C = %zu classes but weight is [%zu]: it must be [%zu]", C,
                       w->shape[0], C);
    const int64_t ignore = op_int(c, "ignore_index");
    if (!probs) {
        const int64_t *y = tensor_i64(t);
        for (size_t i = 0; i < t->numel; i++)
            if (y[i] != ignore && (y[i] < 0 || (uint64_t)y[i] >= C))
                return op_fail(c, "target[%zu] = %lld; a class index must lie in [0, %zu) or be "
                               "ignore_index (%lld)", i, (long long)y[i], C, (long long)ignore);
    }
    ce->x = x, ce->t = t, ce->w = w;
    ce->N = N, ce->C = C, ce->inner = inner, ce->ind = ind, ce->probs = probs;
    ce->ignore = ignore;
    ce->red = op_word_is(c, "reduction", "none")  ? TFM_REDUCTION_NONE
              : op_word_is(c, "reduction", "sum") ? TFM_REDUCTION_SUM
                                                  : TFM_REDUCTION_MEAN;
    return 0;
}

int bind_cross_entropy(OpCall *c)
{
    CeCall ce;
    if (ce_setup(c, &ce))
        return -1;
    float *out = ce.red == TFM_REDUCTION_NONE ? op_output(c, "out", ce.ind, ce.ishape)
                                              : op_output(c, "out", 0, NULL);
    if (!out)
        return -1;
    KERNEL(c, CrossEntropyLossFn)(out, tensor_f32(ce.x), ce.probs ? NULL : tensor_i64(ce.t),
                                  ce.probs ? tensor_f32(ce.t) : NULL,
                                  ce.w ? tensor_f32(ce.w) : NULL, ce.ignore, ce.red,
                                  (float)op_float(c, "label_smoothing"), ce.N, ce.C, ce.inner);
    return 0;
}

typedef void (*CrossEntropyBackwardFn)(float *dinput, float *dtarget, const float *dout,
                                       const float *input, const int64_t *target,
                                       const float *target_probs, const float *weight,
                                       int64_t ignore_index, TfmReduction reduction,
                                       float label_smoothing, size_t N, size_t C, size_t inner);

/* cross-entropy-backward (chapter 07): grad_input, and grad_target for probabilities; grad_out
 * is [] for mean and sum, the per-element shape for none. */
int bind_cross_entropy_backward(OpCall *c)
{
    CeCall ce;
    if (ce_setup(c, &ce))
        return -1;
    const float *dout = ce.red == TFM_REDUCTION_NONE
                            ? op_grad_in(c, "grad_out", "out", ce.ind, ce.ishape)
                            : op_grad_in(c, "grad_out", "out", 0, NULL);
    float *dx = dout ? op_output(c, "grad_input", ce.x->ndim, ce.x->shape) : NULL;
    float *dt = dx && ce.probs ? op_output(c, "grad_target", ce.t->ndim, ce.t->shape) : NULL;
    if (!dx || (ce.probs && !dt))
        return -1;
    KERNEL(c, CrossEntropyBackwardFn)(dx, dt, dout, tensor_f32(ce.x),
                                      ce.probs ? NULL : tensor_i64(ce.t),
                                      ce.probs ? tensor_f32(ce.t) : NULL,
                                      ce.w ? tensor_f32(ce.w) : NULL, ce.ignore, ce.red,
                                      (float)op_float(c, "label_smoothing"), ce.N, ce.C,
                                      ce.inner);
    return 0;
}
