/* pretrain.c — BertForPreTraining's parameter block, its initialization and one training step
 * (pretrain.h), shared by both variants: the variant picks the kernels of chapters 05-07 and
 * optim_*.c, the steps are the same. */
#include "pretrain.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "tensor.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ------------------------------------------------------------------ the table */

typedef struct {
    BertPretrainLayout *lay;
    size_t at;          /* floats so far */
} TableBuilder;

static void add(TableBuilder *tb, int decay, size_t rows, size_t cols, const char *fmt, ...)
{
    BertPretrainTensor *t = &tb->lay->tensors[tb->lay->n_tensors++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->offset = tb->at;
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols ? cols : 1;
    t->decay = decay;
    tb->at += rows * (cols ? cols : 1);
}

/* Hugging Face's names, in block order. decay: 1 for weight matrices and embedding tables. */
int bert_pretrain_layout(BertPretrainLayout *lay, const BertConfig *cfg, char *err,
                         size_t errlen)
{
    const size_t E = cfg->hidden_size, I = cfg->intermediate_size, L = cfg->num_hidden_layers;
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    lay->tensors = calloc(5 + 16 * L + 2 + 7, sizeof *lay->tensors);
    if (!lay->tensors) {
        snprintf(err, errlen, "out of memory for the parameter table");
        return -1;
    }
    TableBuilder tb = {lay, 0};
    add(&tb, 1, cfg->vocab_size, E, "bert.embeddings.word_embeddings.weight");
    add(&tb, 1, cfg->max_position_embeddings, E, "bert.embeddings.position_embeddings.weight");
    add(&tb, 1, cfg->type_vocab_size, E, "bert.embeddings.token_type_embeddings.weight");
    add(&tb, 0, E, 0, "bert.embeddings.LayerNorm.weight");
    add(&tb, 0, E, 0, "bert.embeddings.LayerNorm.bias");
    for (size_t l = 0; l < L; l++) {
        /* query, key, value: three [E, E] blocks in a row = the packed [3E, E] in-projection;
         * their biases likewise */
        static const char *const QKV[3] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++)
            add(&tb, 1, E, E, "bert.encoder.layer.%zu.attention.self.%s.weight", l, QKV[j]);
        for (int j = 0; j < 3; j++)
            add(&tb, 0, E, 0, "bert.encoder.layer.%zu.attention.self.%s.bias", l, QKV[j]);
        add(&tb, 1, E, E, "bert.encoder.layer.%zu.attention.output.dense.weight", l);
        add(&tb, 0, E, 0, "bert.encoder.layer.%zu.attention.output.dense.bias", l);
        add(&tb, 0, E, 0, "bert.encoder.layer.%zu.attention.output.LayerNorm.weight", l);
        add(&tb, 0, E, 0, "bert.encoder.layer.%zu.attention.output.LayerNorm.bias", l);
        add(&tb, 1, I, E, "bert.encoder.layer.%zu.intermediate.dense.weight", l);
        add(&tb, 0, I, 0, "bert.encoder.layer.%zu.intermediate.dense.bias", l);
        add(&tb, 1, E, I, "bert.encoder.layer.%zu.output.dense.weight", l);
        add(&tb, 0, E, 0, "bert.encoder.layer.%zu.output.dense.bias", l);
        add(&tb, 0, E, 0, "bert.encoder.layer.%zu.output.LayerNorm.weight", l);
        add(&tb, 0, E, 0, "bert.encoder.layer.%zu.output.LayerNorm.bias", l);
    }
    add(&tb, 1, E, E, "bert.pooler.dense.weight");
    add(&tb, 0, E, 0, "bert.pooler.dense.bias");
    add(&tb, 1, E, E, "cls.predictions.transform.dense.weight");
    add(&tb, 0, E, 0, "cls.predictions.transform.dense.bias");
    add(&tb, 0, E, 0, "cls.predictions.transform.LayerNorm.weight");
    add(&tb, 0, E, 0, "cls.predictions.transform.LayerNorm.bias");
    add(&tb, 0, cfg->vocab_size, 0, "cls.predictions.bias");
    add(&tb, 1, 2, E, "cls.seq_relationship.weight");
    add(&tb, 0, 2, 0, "cls.seq_relationship.bias");
    lay->n_params = tb.at;
    return 0;
}

void bert_pretrain_layout_free(BertPretrainLayout *lay)
{
    free(lay->tensors);
    memset(lay, 0, sizeof *lay);
}

const BertPretrainTensor *bert_pretrain_find(const BertPretrainLayout *lay, const char *name)
{
    for (size_t i = 0; i < lay->n_tensors; i++)
        if (strcmp(lay->tensors[i].name, name) == 0)
            return &lay->tensors[i];
    return NULL;
}

/* ------------------------------------------------------------------ views */

/* Where each tensor sits in the table (add()'s order): five embedding tensors, then 16 per
 * layer, then the pooler's two and the heads' seven. A layer's 16: q k v weights (together
 * in_proj_weight, at QW), q k v biases (in_proj_bias, at QB), out dense w b, LN1 w b,
 * intermediate w b, output w b, LN2 w b. */
enum { WORD, POS, TYPE, ELN_W, ELN_B, LAYER0 };
enum { QW = 0, QB = 3, OW = 6, OB, N1W, N1B, IW, IB, O2W, O2B, N2W, N2B, PER_LAYER };
enum { POOL_W, POOL_B, T_W, T_B, T_LN_W, T_LN_B, DEC_B, S_W, S_B };   /* after the layers */

/* Tensor k of the table in block; layer(l, j) and tail(j) name the other two groups. */
static float *at(float *block, const BertPretrainLayout *lay, size_t k)
{
    return block + lay->tensors[k].offset;
}
#define LAYER(l, j) at(block, lay, LAYER0 + (l) * PER_LAYER + (j))
#define TAIL(j) at(block, lay, LAYER0 + lay->cfg.num_hidden_layers * PER_LAYER + (j))

void bert_pretrain_views(BertPretrainViews *v, EncoderLayerParams *layers, float *block,
                         const BertPretrainLayout *lay)
{
    for (size_t l = 0; l < lay->cfg.num_hidden_layers; l++) {
        const EncoderLayerParams p = {
            .self_attn = {LAYER(l, QW), LAYER(l, QB), LAYER(l, OW), LAYER(l, OB)},
            .ffn = {LAYER(l, IW), LAYER(l, IB), LAYER(l, O2W), LAYER(l, O2B)},
            .norm1_w = LAYER(l, N1W), .norm1_b = LAYER(l, N1B),
            .norm2_w = LAYER(l, N2W), .norm2_b = LAYER(l, N2B),
        };
        layers[l] = p;
    }
    float *word = at(block, lay, WORD);
    const BertWeights w = {word, at(block, lay, POS), at(block, lay, TYPE),
                           at(block, lay, ELN_W), at(block, lay, ELN_B), layers, TAIL(POOL_W),
                           TAIL(POOL_B)};
    const MlmHead mlm = {TAIL(T_W), TAIL(T_B), TAIL(T_LN_W), TAIL(T_LN_B), word, TAIL(DEC_B),
                         lay->cfg.layer_norm_eps};
    const NspHead nsp = {TAIL(POOL_W), TAIL(POOL_B), TAIL(S_W), TAIL(S_B)};
    v->bert = w, v->layers = layers, v->mlm = mlm, v->nsp = nsp;
}

void bert_pretrain_grad_views(BertPretrainGradViews *v, EncoderLayerGrads *layers, float *block,
                              const BertPretrainLayout *lay)
{
    for (size_t l = 0; l < lay->cfg.num_hidden_layers; l++) {
        const EncoderLayerGrads g = {
            .self_attn = {LAYER(l, QW), LAYER(l, QB), LAYER(l, OW), LAYER(l, OB)},
            .ffn = {LAYER(l, IW), LAYER(l, IB), LAYER(l, O2W), LAYER(l, O2B)},
            .norm1_w = LAYER(l, N1W), .norm1_b = LAYER(l, N1B),
            .norm2_w = LAYER(l, N2W), .norm2_b = LAYER(l, N2B),
        };
        layers[l] = g;
    }
    float *word = at(block, lay, WORD);
    /* the pooler's gradient comes through the NSP head (nsp_backward_*), which owns the
     * pooler's path; BertGrads' pooler entries stay NULL so bert_backward_* adds nothing */
    const BertGrads g = {word, at(block, lay, POS), at(block, lay, TYPE), at(block, lay, ELN_W),
                         at(block, lay, ELN_B), layers, NULL, NULL};
    const MlmHeadGrads mlm = {TAIL(T_W), TAIL(T_B), TAIL(T_LN_W), TAIL(T_LN_B), word,
                              TAIL(DEC_B)};
    const NspHeadGrads nsp = {TAIL(POOL_W), TAIL(POOL_B), TAIL(S_W), TAIL(S_B)};
    v->bert = g, v->layers = layers, v->mlm = mlm, v->nsp = nsp;
}
#undef LAYER
#undef TAIL

/* ------------------------------------------------------------------ initialization */

void bert_pretrain_init(float *params, const BertPretrainLayout *lay, double std, uint64_t seed)
{
    uint64_t draw = 0;       /* draws of tfm_rng_uniform_at(seed, .) used so far */
    for (size_t k = 0; k < lay->n_tensors; k++) {
        const BertPretrainTensor *t = &lay->tensors[k];
        float *p = params + t->offset;
        const size_t n = t->shape[0] * t->shape[1];
        if (t->decay) {
            /* a weight matrix or table: N(0, std^2) by Box-Muller, two draws per value */
            for (size_t i = 0; i < n; i++, draw += 2) {
                const double u1 = 1.0 - tfm_rng_uniform_at(seed, draw);   /* (0, 1]: log ok */
                const double u2 = tfm_rng_uniform_at(seed, draw + 1);
                p[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
            }
        } else {
            /* LayerNorm weights 1, every bias (and LayerNorm bias) 0 */
            const size_t len = strlen(t->name);
            const int ln_weight = len > 16 && strcmp(t->name + len - 16, "LayerNorm.weight") == 0;
            for (size_t i = 0; i < n; i++)
                p[i] = ln_weight ? 1.0f : 0.0f;
        }
    }
    /* nn.Embedding(padding_idx): Hugging Face zeroes that row after drawing it */
    const int64_t pad = lay->cfg.pad_token_id;
    if (pad >= 0 && (size_t)pad < lay->cfg.vocab_size)
        memset(params + lay->tensors[0].offset + (size_t)pad * lay->cfg.hidden_size, 0,
               lay->cfg.hidden_size * sizeof(float));
}

/* ------------------------------------------------------------------ the run */

int bert_pretrain_run_init(BertPretrainRun *r, const BertPretrainLayout *lay, float *params,
                           size_t B, size_t T, char *err, size_t errlen)
{
    const BertConfig *cfg = &lay->cfg;
    const size_t L = cfg->num_hidden_layers, E = cfg->hidden_size, n = lay->n_params;
    memset(r, 0, sizeof *r);
    r->lay = lay, r->B = B, r->T = T, r->params = params;
    const size_t acts_n = bert_train_acts_floats(cfg, B, T);
    const size_t scratch_n = bert_backward_scratch_floats(cfg, B, T);
    r->grads = calloc(3 * n, sizeof(float));             /* gradients, m, v */
    r->block = calloc(acts_n + scratch_n + B * T * E + 2 * B, sizeof(float));
    r->layer_w = calloc(L + 1, sizeof *r->layer_w);
    r->layer_g = calloc(L + 1, sizeof *r->layer_g);
    r->layer_acts = calloc(L + 1, sizeof *r->layer_acts);
    if (!r->grads || !r->block || !r->layer_w || !r->layer_g || !r->layer_acts) {
        bert_pretrain_run_free(r);
        snprintf(err, errlen, "out of memory for training at batch [%zu, %zu] (%zu parameters)",
                 B, T, n);
        return -1;
    }
    r->m = r->grads + n;
    r->v = r->m + n;
    bert_train_acts_init(&r->acts, r->layer_acts, r->block, cfg, B, T);
    r->scratch = r->block + acts_n;
    r->dlast = r->scratch + scratch_n;
    r->nsp_logits = r->dlast + B * T * E;
    bert_pretrain_views(&r->w, r->layer_w, params, lay);
    bert_pretrain_grad_views(&r->g, r->layer_g, r->grads, lay);
    return 0;
}

void bert_pretrain_run_free(BertPretrainRun *r)
{
    free(r->grads);
    free(r->block);
    free(r->layer_w);
    free(r->layer_g);
    free(r->layer_acts);
    memset(r, 0, sizeof *r);
}

void bert_pretrain_forward_backward(BertPretrainRun *r, TfmPretrainVariant variant,
                                    float *mlm_loss, float *nsp_loss, const int64_t *input_ids,
                                    const int64_t *attention_mask,
                                    const int64_t *token_type_ids, const int64_t *labels,
                                    const int64_t *next_sentence_label, float dloss)
{
    const BertConfig *cfg = &r->lay->cfg;
    const size_t B = r->B, T = r->T, E = cfg->hidden_size, V = cfg->vocab_size;
    const int fast = variant == TFM_PRETRAIN_FAST;
    /* the encoder, keeping what its backward reads */
    (fast ? bert_forward_train_fast : bert_forward_train_naive)(
        &r->acts, input_ids, attention_mask, token_type_ids, &r->w.bert, cfg);
    const float *last = r->acts.hidden + cfg->num_hidden_layers * B * T * E;   /* h_L */
    /* each head's loss and d loss / d h_L (the MLM decoder's gradient lands in the word
     * embeddings' rows, the NSP head's in the pooler's), then the encoder's backward */
    memset(r->dlast, 0, B * T * E * sizeof(float));
    (fast ? mlm_forward_backward_fast : mlm_forward_backward_naive)(
        mlm_loss, r->dlast, &r->g.mlm, dloss, last, labels, &r->w.mlm, B * T, E, V);
    (fast ? nsp_forward_fast : nsp_forward_naive)(nsp_loss, r->nsp_logits, NULL, last,
                                                  next_sentence_label, &r->w.nsp, B, T, E);
    (fast ? nsp_backward_fast : nsp_backward_naive)(r->dlast, &r->g.nsp, dloss, last,
                                                    next_sentence_label, &r->w.nsp, B, T, E);
    (fast ? bert_backward_fast : bert_backward_naive)(&r->g.bert, r->scratch, r->dlast, NULL,
                                                      input_ids, token_type_ids, &r->acts,
                                                      &r->w.bert, cfg);
}

void bert_pretrain_forward(BertPretrainRun *r, TfmPretrainVariant variant, float *mlm_loss,
                           float *nsp_loss, float *masked_logits, const int64_t *input_ids,
                           const int64_t *attention_mask, const int64_t *token_type_ids,
                           const int64_t *labels, const int64_t *next_sentence_label)
{
    const BertConfig *cfg = &r->lay->cfg;
    const size_t B = r->B, T = r->T, E = cfg->hidden_size, V = cfg->vocab_size;
    const int fast = variant == TFM_PRETRAIN_FAST;
    (fast ? bert_forward_train_fast : bert_forward_train_naive)(
        &r->acts, input_ids, attention_mask, token_type_ids, &r->w.bert, cfg);
    const float *last = r->acts.hidden + cfg->num_hidden_layers * B * T * E;
    (fast ? mlm_forward_fast : mlm_forward_naive)(mlm_loss, masked_logits, last, labels,
                                                  &r->w.mlm, B * T, E, V);
    (fast ? nsp_forward_fast : nsp_forward_naive)(nsp_loss, r->nsp_logits, NULL, last,
                                                  next_sentence_label, &r->w.nsp, B, T, E);
}

double bert_pretrain_clip(BertPretrainRun *r, TfmPretrainVariant variant, double max_norm)
{
    const int fast = variant == TFM_PRETRAIN_FAST;
    const size_t n = r->lay->n_params;
    const double norm = sqrt((fast ? grad_sq_sum_fast : grad_sq_sum_naive)(r->grads, n));
    if (max_norm > 0.0) {
        const float c = clip_coefficient(norm, max_norm);
        if (c < 1.0f)       /* torch multiplies by the clamped 1.0 too: the same numbers */
            (fast ? grad_scale_fast : grad_scale_naive)(r->grads, c, n);
    }
    return norm;
}

void bert_pretrain_adamw(BertPretrainRun *r, TfmPretrainVariant variant, double lr, int64_t t,
                         const AdamWConfig *cfg)
{
    const int fast = variant == TFM_PRETRAIN_FAST;
    for (size_t k = 0; k < r->lay->n_tensors; k++) {
        const BertPretrainTensor *x = &r->lay->tensors[k];
        const size_t o = x->offset, n = x->shape[0] * x->shape[1];
        (fast ? adamw_step_fast : adamw_step_naive)(r->params + o, r->m + o, r->v + o,
                                                    r->grads + o, lr,
                                                    x->decay ? cfg->weight_decay : 0.0, t, cfg,
                                                    n);
    }
}

int bert_pretrain_step(BertPretrainRun *r, TfmPretrainVariant variant, const TrainRecipe *rc,
                       int64_t s, const PretrainBatch *mb, StepStats *st)
{
    memset(r->grads, 0, r->lay->n_params * sizeof(float));
    const float dloss = (float)(1.0 / (double)rc->grad_accum);   /* loss / grad_accum */
    double mlm = 0.0, nsp = 0.0;
    for (int64_t k = 0; k < rc->grad_accum; k++) {
        float lm, ln;
        bert_pretrain_forward_backward(r, variant, &lm, &ln, mb[k].input_ids,
                                       mb[k].attention_mask, mb[k].token_type_ids, mb[k].labels,
                                       mb[k].next_sentence_label, dloss);
        mlm += (double)lm / (double)rc->grad_accum;
        nsp += (double)ln / (double)rc->grad_accum;
    }
    st->mlm_loss = mlm, st->nsp_loss = nsp, st->loss = mlm + nsp;
    st->lr = lr_linear_schedule(rc->lr, s, rc->warmup, rc->steps);
    st->grad_norm = bert_pretrain_clip(r, variant, rc->max_grad_norm);
    if (!isfinite(st->loss) || !isfinite(st->grad_norm))
        return -1;
    bert_pretrain_adamw(r, variant, st->lr, s + 1, &rc->adamw);
    return 0;
}

int bert_pretrain_step_naive(BertPretrainRun *r, const TrainRecipe *rc, int64_t s,
                             const PretrainBatch *mb, StepStats *st)
{
    return bert_pretrain_step(r, TFM_PRETRAIN_NAIVE, rc, s, mb, st);
}

int bert_pretrain_step_fast(BertPretrainRun *r, const TrainRecipe *rc, int64_t s,
                            const PretrainBatch *mb, StepStats *st)
{
    return bert_pretrain_step(r, TFM_PRETRAIN_FAST, rc, s, mb, st);
}
