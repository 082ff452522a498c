/* pretrain.h — chapter 09: BertForPreTraining as a thing that learns. Its parameters in one
 * block, their gradients and AdamW's moments in blocks of the same layout, and one training
 * step: forward, both losses, backward, clipping, AdamW.
 *
 * Dimensions: B batch, T tokens, N = B*T, E hidden_size, H heads, I intermediate_size,
 *             L layers, V vocab_size, P max_position_embeddings, G type_vocab_size,
 *             n_params the floats of the parameter block.
 *
 * The model (Hugging Face's BertForPreTraining; chapters 05, 06, 07):
 *   h        = BertModel(input_ids, attention_mask, token_type_ids)     [B, T, E]
 *   mlm_loss = cross-entropy of the MLM head's scores (decoder tied to the word embeddings)
 *              over the positions whose label is not -100
 *   nsp_loss = cross-entropy of the NSP head's two logits, from the pooled [CLS]
 *   loss     = mlm_loss + nsp_loss
 *
 * One block, llm.c's scheme: every parameter lives in `params`, a tensor at a fixed offset,
 * in the order of the table BertPretrainTensor lists (pretrain.c builds it from the config).
 * The table names each tensor by its Hugging Face key, so a checkpoint is the table written
 * out and read back, and a model directory is carried to PyTorch unchanged. Each layer's query,
 * key and value weights are consecutive [E, E] blocks, which together are chapter 02's packed
 * in-projection [3E, E]: no packing step, no copy. The gradient block and AdamW's two moment
 * blocks have the same layout, so the optimizer, the clipping and a checkpoint walk flat
 * arrays. The tied MLM decoder has no entry of its own: it is the word embeddings, and its
 * gradient is added into theirs (chapter 07).
 *
 * Dropout is not implemented: the step computes the model with dropout 0 (Hugging Face's eval
 * function, and its training function at hidden_dropout_prob = attention_probs_dropout_prob
 * = 0).
 */
#ifndef TFM_PRETRAIN_H
#define TFM_PRETRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "bert.h"
#include "optim.h"
#include "pretraining.h"

#define TFM_PRETRAIN_NAME 64

typedef struct {
    char name[TFM_PRETRAIN_NAME];   /* Hugging Face's key: "bert.embeddings.word_embeddings.weight" */
    size_t offset;                  /* into the block, in floats */
    int ndim;                       /* 1 or 2 */
    size_t shape[2];
    int decay;                      /* 1: AdamW's weight decay applies (Hugging Face's Trainer
                                       exempts biases and LayerNorm weights: 0) */
} BertPretrainTensor;

/* The model's parameter table and, pointing into one block, the views the kernels take. */
typedef struct {
    BertConfig cfg;
    size_t n_tensors;
    BertPretrainTensor *tensors;    /* [n_tensors], block order */
    size_t n_params;                /* floats in the block */
} BertPretrainLayout;

/* Views of one block (parameters; or, through BertPretrainGradViews, gradients). */
typedef struct {
    BertWeights bert;
    EncoderLayerParams *layers;     /* [L] */
    MlmHead mlm;
    NspHead nsp;
} BertPretrainViews;

typedef struct {
    BertGrads bert;
    EncoderLayerGrads *layers;      /* [L] */
    MlmHeadGrads mlm;
    NspHeadGrads nsp;
} BertPretrainGradViews;

/* The table for a config. Returns 0, or -1 with a message (no memory). */
int bert_pretrain_layout(BertPretrainLayout *lay, const BertConfig *cfg, char *err,
                         size_t errlen);
void bert_pretrain_layout_free(BertPretrainLayout *lay);
/* The table entry called `name`, or NULL. */
const BertPretrainTensor *bert_pretrain_find(const BertPretrainLayout *lay, const char *name);

/* Points the views into a block of lay->n_params floats; layers is the caller's array [L]. */
void bert_pretrain_views(BertPretrainViews *v, EncoderLayerParams *layers, float *block,
                         const BertPretrainLayout *lay);
void bert_pretrain_grad_views(BertPretrainGradViews *v, EncoderLayerGrads *layers, float *block,
                              const BertPretrainLayout *lay);

/* Hugging Face's _init_weights, from tfm's generator: every Linear and Embedding weight
 * N(0, 0.02^2) (Box-Muller on draws of tfm_rng_uniform_at(seed, .), tensor by tensor in block
 * order), the pad_token_id row of the word embeddings 0, every bias 0, every LayerNorm weight
 * 1 and bias 0, cls.predictions.bias 0. */
void bert_pretrain_init(float *params,           /* [n_params] */
                        const BertPretrainLayout *lay, double std, uint64_t seed);

/* ---- One training run's working memory, allocated once for a batch shape (B, T): the
 * training activations, the backward's scratch, d h_L, the gradient block, the moments. */
typedef struct {
    const BertPretrainLayout *lay;
    size_t B, T;
    float *params;                  /* [n_params] (the caller's) */
    float *grads;                   /* [n_params] */
    float *m, *v;                   /* [n_params] AdamW's moments */
    BertPretrainViews w;
    BertPretrainGradViews g;
    EncoderLayerParams *layer_w;    /* [L] */
    EncoderLayerGrads *layer_g;     /* [L] */
    EncoderActs *layer_acts;        /* [L] */
    BertTrainActs acts;
    float *block;                   /* the activations, scratch and dlast, one allocation */
    float *scratch;                 /* [bert_backward_scratch_floats] */
    float *dlast;                   /* [B, T, E] */
    float *nsp_logits;              /* [B, 2] */
} BertPretrainRun;

/* Allocates the run for params (which it does not own). Returns 0, or -1 with a message. */
int bert_pretrain_run_init(BertPretrainRun *r, const BertPretrainLayout *lay, float *params,
                           size_t B, size_t T, char *err, size_t errlen);
void bert_pretrain_run_free(BertPretrainRun *r);

typedef enum { TFM_PRETRAIN_NAIVE = 0, TFM_PRETRAIN_FAST = 1 } TfmPretrainVariant;

/* Forward and backward of one micro-batch: the losses into *mlm_loss, *nsp_loss, and
 * dloss * d(mlm_loss + nsp_loss) / d params ADDED into r->grads (gradient accumulation: a
 * step over k micro-batches passes dloss = 1/k each). ids must be valid (the caller checks). */
void bert_pretrain_forward_backward(BertPretrainRun *r, TfmPretrainVariant variant,
                                    float *mlm_loss, float *nsp_loss,
                                    const int64_t *input_ids,        /* [B, T] */
                                    const int64_t *attention_mask,   /* [B, T] */
                                    const int64_t *token_type_ids,   /* [B, T] */
                                    const int64_t *labels,           /* [B, T], -100 or an id */
                                    const int64_t *next_sentence_label, /* [B] 0, 1 */
                                    float dloss);

/* The forward alone (evaluation, fill-mask): the losses, the MLM scores of the labelled rows
 * in row order (masked_logits [S, V], S = the labels that are not -100; may be NULL) and the
 * NSP logits in r->nsp_logits [B, 2]. The gradients are not touched. */
void bert_pretrain_forward(BertPretrainRun *r, TfmPretrainVariant variant, float *mlm_loss,
                           float *nsp_loss, float *masked_logits, const int64_t *input_ids,
                           const int64_t *attention_mask, const int64_t *token_type_ids,
                           const int64_t *labels, const int64_t *next_sentence_label);

/* Clips r->grads to max_norm (max_norm <= 0: no clipping) and returns the norm before. */
double bert_pretrain_clip(BertPretrainRun *r, TfmPretrainVariant variant, double max_norm);

/* AdamW on every tensor at step t (1-based) with lr, decay where the table says. */
void bert_pretrain_adamw(BertPretrainRun *r, TfmPretrainVariant variant, double lr, int64_t t,
                         const AdamWConfig *cfg);

/* ---- The optimizer step, as Hugging Face's Trainer takes it. */
typedef struct {
    int64_t steps;            /* optimizer steps in all (the schedule's length) */
    int64_t warmup;           /* steps of linear warm-up */
    int64_t grad_accum;       /* micro-batches per optimizer step (>= 1) */
    double lr;                /* the peak learning rate */
    double max_grad_norm;     /* 1.0; <= 0: no clipping */
    AdamWConfig adamw;
} TrainRecipe;

/* One micro-batch, [B, T] each (next_sentence_label [B]). */
typedef struct {
    const int64_t *input_ids, *attention_mask, *token_type_ids, *labels, *next_sentence_label;
} PretrainBatch;

typedef struct {
    double loss, mlm_loss, nsp_loss;   /* means over the micro-batches */
    double lr;                         /* the learning rate this step used */
    double grad_norm;                  /* the gradients' norm before clipping */
} StepStats;

/* Optimizer step s (0-based): the gradients zeroed, the recipe's grad_accum micro-batches
 * mb[0..grad_accum) forward and backward, each loss scaled by 1/grad_accum; the clipping;
 * AdamW at t = s + 1 with lr = lr_linear_schedule(lr, s, warmup, steps). Returns 0, or -1 when
 * a loss is NaN or infinite (the parameters are then left as they were: AdamW is not run). */
int bert_pretrain_step(BertPretrainRun *r, TfmPretrainVariant variant, const TrainRecipe *rc,
                       int64_t s, const PretrainBatch *mb, StepStats *st);
/* The same step on the naive kernels and on the fast ones: the op table's entry points. */
int bert_pretrain_step_naive(BertPretrainRun *r, const TrainRecipe *rc, int64_t s,
                             const PretrainBatch *mb, StepStats *st);
int bert_pretrain_step_fast(BertPretrainRun *r, const TrainRecipe *rc, int64_t s,
                            const PretrainBatch *mb, StepStats *st);

#endif
