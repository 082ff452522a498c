/* ops_06_encoder.c — how chapter 06's ops bind to their kernels (the table is oracle/ops.c):
 *
 *   feedforward     linear2(act(linear1(x))), nn.TransformerEncoderLayer's feed-forward half
 *   encoder-layer   nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0,
 *                   activation, layer_norm_eps, batch_first=True, norm_first) called as a whole:
 *                   layer(src, src_mask, src_key_padding_mask), its parameters under the
 *                   module's own state_dict names, so `layer.state_dict()` saved next to `src`
 *                   is a valid input
 *
 *   encoder-layer-backward   its gradients (chapter 07): grad_src, grad_<parameter>
 *
 *   bert            Hugging Face BertModel(input_ids, attention_mask, token_type_ids) forward:
 *                   last_hidden_state, pooler_output, and on request attentions and
 *                   hidden_states; the model from a Hugging Face directory (--model DIR)
 *
 * Masks follow the module: src_mask [T, T] is BOOL (1 = may not attend, becomes -inf) or F32
 * (added to the scores); src_key_padding_mask [B, T] is 1 where a key is padding. A query row
 * whose keys are all masked gives NaN, as PyTorch's softmax does (chapter 01).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert_model.h"
#include "binds.h"
#include "encoder.h"
#include "positional.h"

typedef void (*FfnFn)(float *out, float *hidden, const float *x, const float *residual,
                      const FfnParams *p, TfmActivation act, size_t N, size_t E, size_t I);
typedef void (*EncoderLayerFn)(float *out, float *probs, float *scratch, const float *src,
                               const AttnMask *mask,
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

typedef void (*FfnTrainFn)(float *out, float *pre, float *hid, const float *x,
                           const float *residual, const FfnParams *p, TfmActivation act, size_t N,
                           size_t E, size_t I);
typedef void (*FfnBackwardFn)(float *dx, const FfnGrads *g, float *scratch, const float *dout,
                              const float *x, const float *pre, const float *hid,
                              const FfnParams *p, TfmActivation act, size_t N, size_t E,
                              size_t I);
static float *grad_of(OpCall *c, const char *name, int *failed);

/* feedforward-backward (chapter 07): the training forward of the same variant keeps pre and
 * hid, then the backward; grad_x and grad_<parameter> for each given. */
int bind_feedforward_backward(OpCall *c)
{
    const Tensor *x = op_in(c, "x");
    const size_t E = x->shape[x->ndim - 1];
    size_t N = 1, I;
    for (int d = 0; d < x->ndim - 1; d++)
        N *= x->shape[d];
    FfnParams p;
    if (ffn_params(c, &p, E, &I))
        return -1;
    const float *dout = op_grad_in(c, "grad_out", "out", x->ndim, x->shape);
    int failed = dout == NULL;
    float *dx = failed ? NULL : op_output(c, "grad_x", x->ndim, x->shape);
    failed = failed || dx == NULL;
    FfnGrads g;
    g.w1 = grad_of(c, "linear1.weight", &failed);
    g.b1 = grad_of(c, "linear1.bias", &failed);
    g.w2 = grad_of(c, "linear2.weight", &failed);
    g.b2 = grad_of(c, "linear2.bias", &failed);
    if (failed)
        return -1;
    /* pre, hid [N, I], out [N, E], the backward's scratch */
    float *buf = malloc((2 * N * I + N * E + feedforward_backward_scratch_floats(N, I)) *
                        sizeof(float) + 1);
    if (!buf)
        return op_fail(c, "out of memory for the [%zu, %zu] activations", N, I);
    float *pre = buf, *hid = pre + N * I, *out = hid + N * I, *scratch = out + N * E;
    const FfnTrainFn forward = c->variant == TFM_FAST ? feedforward_forward_train_fast
                                                      : feedforward_forward_train_naive;
    const TfmActivation act = activation(c);
    forward(out, pre, hid, tensor_f32(x), NULL, &p, act, N, E, I);
    KERNEL(c, FfnBackwardFn)(dx, &g, scratch, dout, tensor_f32(x), pre, hid, &p, act, N, E, I);
    free(buf);
    return 0;
}

/* The layer's sizes, parameters and mask, checked: what the forward and the backward share.
 * *additive is a BOOL src_mask as 0 / -inf, for the caller to free. */
typedef struct {
    size_t B, T, E, H, I;
    EncoderLayerParams p;
    AttnMask mask;
    int any_mask;
} LayerCall;

static int layer_setup(OpCall *c, LayerCall *l, float **additive_out)
{
    *additive_out = NULL;
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
    *l = (LayerCall){B, T, E, H, I, p, mask, kpm || am};
    *additive_out = additive;
    return 0;
}

int bind_encoder_layer(OpCall *c)
{
    LayerCall l;
    float *additive;
    if (layer_setup(c, &l, &additive))
        return -1;
    const Tensor *src = op_in(c, "src");
    float *out = op_output(c, "out", 3, src->shape);
    float *scratch =
        out ? malloc(encoder_layer_scratch_floats(l.B, l.T, l.E, l.I) * sizeof(float) + 1) : NULL;
    if (!scratch) {
        free(additive);
        return out ? op_fail(c, "out of memory for the layer's scratch") : -1;
    }
    KERNEL(c, EncoderLayerFn)(out, NULL, scratch, tensor_f32(src), l.any_mask ? &l.mask : NULL,
                              &l.p, activation(c), (int)op_int(c, "norm_first"),
                              (float)op_float(c, "layer_norm_eps"), l.B, l.T, l.E, l.H, l.I);
    free(scratch);
    free(additive);
    return 0;
}

typedef void (*EncoderTrainFn)(float *out, const EncoderActs *acts, const float *src,
                               const AttnMask *mask, const EncoderLayerParams *p,
                               TfmActivation act, int norm_first, float eps, size_t B, size_t T,
                               size_t E, size_t H, size_t I);
typedef void (*EncoderBackwardFn)(float *dsrc, const EncoderLayerGrads *g, float *scratch,
                                  const float *dout, const float *src, const EncoderActs *acts,
                                  const AttnMask *mask, const EncoderLayerParams *p,
                                  TfmActivation act, int norm_first, size_t B, size_t T,
                                  size_t E, size_t H, size_t I);

/* grad_<name> for a parameter that was given (else NULL, and nothing is asked for). */
static float *grad_of(OpCall *c, const char *name, int *failed)
{
    const Tensor *t = op_in(c, name);
    if (!t || *failed)
        return NULL;
    char gname[64];
    snprintf(gname, sizeof gname, "grad_%s", name);
    float *g = op_output(c, gname, t->ndim, t->shape);
    *failed = g == NULL;
    return g;
}

/* encoder-layer-backward (chapter 07): the training forward of the same variant keeps the
 * activations (scratch), then the backward; grad_src and grad_<parameter> for each given. */
int bind_encoder_layer_backward(OpCall *c)
{
    LayerCall l;
    float *additive;
    if (layer_setup(c, &l, &additive))
        return -1;
    const Tensor *src = op_in(c, "src");
    const float *dout = op_grad_in(c, "grad_out", "out", 3, src->shape);
    int failed = dout == NULL;
    float *dsrc = failed ? NULL : op_output(c, "grad_src", 3, src->shape);
    failed = failed || dsrc == NULL;
    EncoderLayerGrads g;
    g.self_attn.in_proj_weight = grad_of(c, "self_attn.in_proj_weight", &failed);
    g.self_attn.in_proj_bias = grad_of(c, "self_attn.in_proj_bias", &failed);
    g.self_attn.out_proj_weight = grad_of(c, "self_attn.out_proj.weight", &failed);
    g.self_attn.out_proj_bias = grad_of(c, "self_attn.out_proj.bias", &failed);
    g.ffn.w1 = grad_of(c, "linear1.weight", &failed);
    g.ffn.b1 = grad_of(c, "linear1.bias", &failed);
    g.ffn.w2 = grad_of(c, "linear2.weight", &failed);
    g.ffn.b2 = grad_of(c, "linear2.bias", &failed);
    g.norm1_w = grad_of(c, "norm1.weight", &failed);
    g.norm1_b = grad_of(c, "norm1.bias", &failed);
    g.norm2_w = grad_of(c, "norm2.weight", &failed);
    g.norm2_b = grad_of(c, "norm2.bias", &failed);
    const size_t acts_n = encoder_acts_floats(l.B, l.T, l.E, l.H, l.I);
    const size_t n = l.B * l.T * l.E;
    float *buf = failed ? NULL
                        : malloc((acts_n + n + encoder_layer_backward_scratch_floats(
                                                   l.B, l.T, l.E, l.I)) * sizeof(float) + 1);
    if (!buf) {
        free(additive);
        return failed ? -1 : op_fail(c, "out of memory for the layer's activations");
    }
    EncoderActs acts;
    encoder_acts_init(&acts, buf, l.B, l.T, l.E, l.H, l.I);
    float *out = buf + acts_n, *scratch = out + n;
    const EncoderTrainFn forward = c->variant == TFM_FAST ? encoder_layer_forward_train_fast
                                                          : encoder_layer_forward_train_naive;
    const AttnMask *mask = l.any_mask ? &l.mask : NULL;
    const TfmActivation act = activation(c);
    const int norm_first = (int)op_int(c, "norm_first");
    forward(out, &acts, tensor_f32(src), mask, &l.p, act, norm_first,
            (float)op_float(c, "layer_norm_eps"), l.B, l.T, l.E, l.H, l.I);
    KERNEL(c, EncoderBackwardFn)(dsrc, &g, scratch, dout, tensor_f32(src), &acts, mask, &l.p,
                                 act, norm_first, l.B, l.T, l.E, l.H, l.I);
    free(buf);
    free(additive);
    return 0;
}

/* ---- bert ---------------------------------------------------------------------------------- */

typedef void (*BertFn)(BertActs *acts, const int64_t *input_ids, const int64_t *attention_mask,
                       const int64_t *token_type_ids, const BertWeights *w,
                       const BertConfig *cfg);

/* The batch a bert op reads, checked against the model's config: attention_mask and
 * token_type_ids shaped as input_ids, every id inside its table, and the mask as I64 0 / 1
 * (whatever dtype the file held) in *mask, NULL without one; the caller frees it. */
static int bert_batch(OpCall *c, const BertConfig *cfg, int64_t **mask)
{
    const Tensor *ids = op_in(c, "input_ids"), *am = op_in(c, "attention_mask");
    const Tensor *tt = op_in(c, "token_type_ids");
    const size_t B = ids->shape[0], T = ids->shape[1], want[2] = {B, T};
    *mask = NULL;
    if ((am && !op_same_shape(am, 2, want)) || (tt && !op_same_shape(tt, 2, want)))
        return op_fail(c, "input_ids is [%zu, %zu]; attention_mask and token_type_ids must be too",
                       B, T);
    EmbBadId bad;
    if (embeddings_check_ids(&bad, tensor_i64(ids), NULL, tt ? tensor_i64(tt) : NULL, B, T,
                             cfg->vocab_size, cfg->max_position_embeddings,
                             cfg->type_vocab_size) != 0) {
        char what[256];
        embeddings_bad_id_str(what, sizeof what, &bad, T);
        return op_fail(c, "%s (the config's vocab_size, max_position_embeddings, "
                       "type_vocab_size)", what);
    }
    if (!am)
        return 0;
    if (!(*mask = malloc(B * T * sizeof **mask + 1)))
        return op_fail(c, "out of memory");
    for (size_t i = 0; i < B * T; i++) {
        (*mask)[i] = am->dtype == TFM_BOOL ? tensor_bool(am)[i] : tensor_i64(am)[i];
        if ((*mask)[i] != 0 && (*mask)[i] != 1) {
            op_fail(c, "attention_mask[%zu] is %lld; it must be 1 (attend) or 0 (padding)", i,
                    (long long)(*mask)[i]);
            free(*mask);
            *mask = NULL;
            return -1;
        }
    }
    return 0;
}

/* Hugging Face BertModel(input_ids, attention_mask, token_type_ids): the model from --model DIR
 * or from the golden case itself; attention_mask I64 or BOOL, 1 = attend. */
int bind_bert(OpCall *c)
{
    const Tensor *ids = op_in(c, "input_ids"), *tt = op_in(c, "token_type_ids");
    const size_t B = ids->shape[0], T = ids->shape[1];
    TfmBert m;
    char msg[TFM_ERR_LEN];
    if (tfm_bert_from_tensors(&m, c->model->weights, c->model->prefix, c->model->config_json,
                              msg, sizeof msg) != 0)
        return op_fail(c, "%s", msg);
    const BertConfig *cfg = &m.cfg;
    const size_t E = cfg->hidden_size, L = cfg->num_hidden_layers, H = cfg->num_attention_heads;
    int rc = -1;
    int64_t *mask = NULL;
    float *block = NULL;
    if (bert_batch(c, cfg, &mask))
        goto done;
    const int attentions = (int)op_int(c, "output_attentions");
    const int hidden_states = (int)op_int(c, "output_hidden_states");
    const size_t sh[3] = {B, T, E}, sp[2] = {B, E}, sa[5] = {L, B, H, T, T};
    const size_t shs[4] = {L + 1, B, T, E};
    float *last = op_output(c, "last_hidden_state", 3, sh);
    float *pooled = last ? op_output(c, "pooler_output", 2, sp) : NULL;
    float *att = pooled && attentions ? op_output(c, "attentions", 5, sa) : NULL;
    float *hs = pooled && hidden_states ? op_output(c, "hidden_states", 4, shs) : NULL;
    if (!pooled || (attentions && !att) || (hidden_states && !hs))
        goto done;
    /* The activations of one forward: one block, sized once from the config, B and T. */
    if (!(block = malloc(bert_acts_floats(cfg, B, T, attentions) * sizeof(float)))) {
        op_fail(c, "out of memory for the activations of a [%zu, %zu] batch", B, T);
        goto done;
    }
    BertActs acts;
    bert_acts_init(&acts, block, cfg, B, T, attentions);
    KERNEL(c, BertFn)(&acts, tensor_i64(ids), mask, tt ? tensor_i64(tt) : NULL, &m.w, cfg);
    const size_t BTE = B * T * E;
    memcpy(last, acts.hidden + L * BTE, BTE * sizeof(float));
    memcpy(pooled, acts.pooled, B * E * sizeof(float));
    if (att)
        memcpy(att, acts.probs, L * B * H * T * T * sizeof(float));
    if (hs)
        memcpy(hs, acts.hidden, (L + 1) * BTE * sizeof(float));
    rc = 0;
done:
    free(block);
    free(mask);
    tfm_bert_free(&m);
    return rc;
}

typedef void (*BertBackwardFn)(const BertGrads *g, float *scratch, const float *dlast,
                               const float *dpooled, const int64_t *input_ids,
                               const int64_t *token_type_ids, const BertTrainActs *acts,
                               const BertWeights *w, const BertConfig *cfg);

/* bert-backward's outputs: BertModel's parameter names (the loader takes them with or without
 * "bert."), each layer's stacked over a first dimension of L, as hidden_states and attentions
 * are; q, k and v apart, as Hugging Face holds them (tfm packs them into in_proj). */
enum { BERT_LAYER_GRADS = 16 };
static const char *const LAYER_GRAD_NAMES[BERT_LAYER_GRADS] = {
    "grad_encoder.layer.attention.self.query.weight",
    "grad_encoder.layer.attention.self.query.bias",
    "grad_encoder.layer.attention.self.key.weight",
    "grad_encoder.layer.attention.self.key.bias",
    "grad_encoder.layer.attention.self.value.weight",
    "grad_encoder.layer.attention.self.value.bias",
    "grad_encoder.layer.attention.output.dense.weight",
    "grad_encoder.layer.attention.output.dense.bias",
    "grad_encoder.layer.attention.output.LayerNorm.weight",
    "grad_encoder.layer.attention.output.LayerNorm.bias",
    "grad_encoder.layer.intermediate.dense.weight",
    "grad_encoder.layer.intermediate.dense.bias",
    "grad_encoder.layer.output.dense.weight",
    "grad_encoder.layer.output.dense.bias",
    "grad_encoder.layer.output.LayerNorm.weight",
    "grad_encoder.layer.output.LayerNorm.bias"};

/* Layer gradient k (LAYER_GRAD_NAMES' order) in tfm's packed layout, and its shape (one or
 * two dimensions in d). q, k, v are row blocks 0, 1, 2 of in_proj's. */
static const float *layer_grad(const EncoderLayerGrads *g, int k, size_t E, size_t I, int *nd,
                               size_t d[2])
{
    const float *const src[BERT_LAYER_GRADS] = {
        g->self_attn.in_proj_weight,         g->self_attn.in_proj_bias,
        g->self_attn.in_proj_weight + E * E, g->self_attn.in_proj_bias + E,
        g->self_attn.in_proj_weight + 2 * E * E, g->self_attn.in_proj_bias + 2 * E,
        g->self_attn.out_proj_weight,        g->self_attn.out_proj_bias,
        g->norm1_w,                          g->norm1_b,
        g->ffn.w1,                           g->ffn.b1,
        g->ffn.w2,                           g->ffn.b2,
        g->norm2_w,                          g->norm2_b};
    const size_t rows = k == 10 || k == 11 ? I : E;   /* intermediate.dense [I, E], bias [I] */
    const size_t cols = k == 12 ? I : E;        /* output.dense is [E, I] */
    const int matrix = k % 2 == 0 && k != 8 && k != 14;   /* a weight, not a LayerNorm's */
    *nd = matrix ? 2 : 1;
    d[0] = rows;
    d[1] = cols;
    return src[k];
}

/* bert-backward (chapter 07): the training forward of the same variant, then the backward from
 * grad_last_hidden_state and grad_pooler_output (either may be absent: zero), into a gradient
 * for every parameter of the model. */
int bind_bert_backward(OpCall *c)
{
    const Tensor *ids = op_in(c, "input_ids"), *tt = op_in(c, "token_type_ids");
    const Tensor *gl = op_in(c, "grad_last_hidden_state"), *gp = op_in(c, "grad_pooler_output");
    const size_t B = ids->shape[0], T = ids->shape[1];
    TfmBert m;
    char msg[TFM_ERR_LEN];
    if (tfm_bert_from_tensors(&m, c->model->weights, c->model->prefix, c->model->config_json,
                              msg, sizeof msg) != 0)
        return op_fail(c, "%s", msg);
    const BertConfig *cfg = &m.cfg;
    const size_t E = cfg->hidden_size, L = cfg->num_hidden_layers, I = cfg->intermediate_size;
    const size_t V = cfg->vocab_size, P = cfg->max_position_embeddings, G = cfg->type_vocab_size;
    int rc = -1;
    int64_t *mask = NULL;
    float *block = NULL;
    EncoderActs *la = NULL;
    EncoderLayerGrads *lg = NULL;
    const size_t sh[3] = {B, T, E}, sp[2] = {B, E};
    if (bert_batch(c, cfg, &mask))
        goto done;
    if (!gl && !gp) {
        op_fail(c, "needs grad_last_hidden_state or grad_pooler_output (or both): the gradient "
                "of the loss with respect to the model's outputs");
        goto done;
    }
    const float *dlast = gl ? op_grad_in(c, "grad_last_hidden_state", "last_hidden_state", 3, sh)
                            : NULL;
    const float *dpooled = gp ? op_grad_in(c, "grad_pooler_output", "pooler_output", 2, sp)
                              : NULL;
    if ((gl && !dlast) || (gp && !dpooled))
        goto done;
    /* the outputs that need no unpacking are written by the backward directly */
    const size_t sv[2] = {V, E}, spos[2] = {P, E}, sg[2] = {G, E}, se[1] = {E}, see[2] = {E, E};
    BertGrads g;
    if (!(g.word_embeddings = op_output(c, "grad_embeddings.word_embeddings.weight", 2, sv)) ||
        !(g.position_embeddings =
              op_output(c, "grad_embeddings.position_embeddings.weight", 2, spos)) ||
        !(g.token_type_embeddings =
              op_output(c, "grad_embeddings.token_type_embeddings.weight", 2, sg)) ||
        !(g.emb_ln_w = op_output(c, "grad_embeddings.LayerNorm.weight", 1, se)) ||
        !(g.emb_ln_b = op_output(c, "grad_embeddings.LayerNorm.bias", 1, se)) ||
        !(g.pooler_w = op_output(c, "grad_pooler.dense.weight", 2, see)) ||
        !(g.pooler_b = op_output(c, "grad_pooler.dense.bias", 1, se)))
        goto done;
    /* one block: the training activations, the backward's scratch, the layers' packed
     * gradients (zero: they accumulate) */
    const size_t per_layer = 4 * E * E + 4 * E + 2 * I * E + I + 5 * E;
    const size_t acts_n = bert_train_acts_floats(cfg, B, T);
    const size_t scratch_n = bert_backward_scratch_floats(cfg, B, T);
    block = calloc(acts_n + scratch_n + L * per_layer + 1, sizeof(float));
    la = malloc(L * sizeof *la + 1);
    lg = malloc(L * sizeof *lg + 1);
    if (!block || !la || !lg) {
        op_fail(c, "out of memory for the activations of a [%zu, %zu] batch", B, T);
        goto done;
    }
    float *next = block + acts_n + scratch_n;
    for (size_t l = 0; l < L; l++) {
        float *q = next + l * per_layer;
        lg[l].self_attn.in_proj_weight = q, q += 3 * E * E;
        lg[l].self_attn.in_proj_bias = q, q += 3 * E;
        lg[l].self_attn.out_proj_weight = q, q += E * E;
        lg[l].self_attn.out_proj_bias = q, q += E;
        lg[l].ffn.w1 = q, q += I * E;
        lg[l].ffn.b1 = q, q += I;
        lg[l].ffn.w2 = q, q += E * I;
        lg[l].ffn.b2 = q, q += E;
        lg[l].norm1_w = q, q += E;
        lg[l].norm1_b = q, q += E;
        lg[l].norm2_w = q, q += E;
        lg[l].norm2_b = q;
    }
    g.layers = lg;
    BertTrainActs acts;
    bert_train_acts_init(&acts, la, block, cfg, B, T);
    const int64_t *types = tt ? tensor_i64(tt) : NULL;
    (c->variant == TFM_FAST ? bert_forward_train_fast : bert_forward_train_naive)(
        &acts, tensor_i64(ids), mask, types, &m.w, cfg);
    KERNEL(c, BertBackwardFn)(&g, block + acts_n, dlast, dpooled, tensor_i64(ids), types, &acts,
                              &m.w, cfg);
    for (int k = 0; k < BERT_LAYER_GRADS; k++) {   /* stacked: [L, ...] */
        int nd;
        size_t d[2];
        layer_grad(&lg[0], k, E, I, &nd, d);
        const size_t shape[3] = {L, d[0], d[1]}, n = nd == 2 ? d[0] * d[1] : d[0];
        float *out = op_output(c, LAYER_GRAD_NAMES[k], nd + 1, shape);
        if (!out)
            goto done;
        for (size_t l = 0; l < L; l++)
            memcpy(out + l * n, layer_grad(&lg[l], k, E, I, &nd, d), n * sizeof(float));
    }
    rc = 0;
done:
    free(block);
    free(la);
    free(lg);
    free(mask);
    tfm_bert_free(&m);
    return rc;
}
