/* pretraining.h — chapter 05: BERT's pretraining heads and losses (masked LM and next-sentence
 * prediction), and the masking that makes the MLM labels.
 *
 * Dimensions: B batch, T tokens per sequence, N = B*T token rows, E model width, V vocabulary,
 *             S selected (labelled) rows, those whose label is not -100. Labels are int64.
 *
 * Cross-entropy with ignore_index = -100 (torch.nn.functional.cross_entropy's defaults):
 *
 *   l_n  = logsumexp_v z[n,v] - z[n, y_n]              for every row with y_n != -100
 *   loss = (1/S) sum_{n: y_n != -100} l_n              S = 0: 0/0 = NaN, as PyTorch returns
 *
 * The MLM head (transformers' BertLMPredictionHead), per token row h [E]:
 *
 *   t = LayerNorm(GELU(W_t h + b_t); gamma, beta, eps = 1e-12)      the "transform", [E]
 *   z = W_emb t + b_dec                                              [V] prediction scores
 *
 * GELU is the exact, erf form: GELU(x) = x/2 (1 + erf(x/sqrt 2)). W_emb [V, E] is the
 * word-embedding matrix itself (weight tying), b_dec [V] the head's own bias. mlm_loss is the
 * cross-entropy of z over the rows labelled by the masking.
 *
 * The NSP head (BertPooler + cls.seq_relationship), per sequence b, from its first ([CLS]) token:
 *
 *   p = tanh(W_p h[b,0] + b_p)          pooled output [E]
 *   s = W_s p + b_s                     [2] logits; label 0 = "B follows A", 1 = "B is random"
 *
 * nsp_loss = cross-entropy of s over the batch; BertForPreTraining's loss = mlm_loss + nsp_loss.
 *
 * Every function has a naive and a fast variant with one signature; outputs are overwritten.
 * Labels must be -100 or lie in [0, V) (the runner checks; PyTorch raises an error otherwise).
 */
#ifndef TFM_PRETRAINING_H
#define TFM_PRETRAINING_H

#include <stddef.h>
#include <stdint.h>

#define TFM_IGNORE_INDEX (-100)

/* ---------------------------------------------------------------- cross-entropy */

/* loss[0] = mean over rows with labels[n] != -100 of -log softmax(logits[n])[labels[n]]; NaN if
 * there are none. token_loss (optional) gets each row's term, 0 at ignored rows (PyTorch's
 * reduction='none'). */
void cross_entropy_naive(float *loss,              /* [1] */
                         float *token_loss,        /* [N] or NULL */
                         const float *logits,      /* [N, V] */
                         const int64_t *labels,    /* [N], -100 or in [0, V) */
                         size_t N, size_t V);
void cross_entropy_fast(float *loss, float *token_loss, const float *logits,
                        const int64_t *labels, size_t N, size_t V);

/* Number of rows with labels[n] != -100: S, the row count of mlm_forward's masked_logits. */
size_t mlm_count_selected(const int64_t *labels, size_t N);

/* ---------------------------------------------------------------- the heads */

/* BERT's parameter names are given for each field (transformers' BertForPreTraining). */
typedef struct {
    const float *dense_w;    /* [E, E] cls.predictions.transform.dense.weight */
    const float *dense_b;    /* [E]    cls.predictions.transform.dense.bias */
    const float *ln_gamma;   /* [E]    cls.predictions.transform.LayerNorm.weight */
    const float *ln_beta;    /* [E]    cls.predictions.transform.LayerNorm.bias */
    const float *decoder_w;  /* [V, E] bert.embeddings.word_embeddings.weight (tied decoder) */
    const float *decoder_b;  /* [V]    cls.predictions.bias */
    float ln_eps;            /* 1e-12 in BERT */
} MlmHead;

typedef struct {
    const float *pooler_w;   /* [E, E] bert.pooler.dense.weight */
    const float *pooler_b;   /* [E]    bert.pooler.dense.bias */
    const float *cls_w;      /* [2, E] cls.seq_relationship.weight */
    const float *cls_b;      /* [2]    cls.seq_relationship.bias */
} NspHead;

/* The MLM head and its loss. masked_logits (optional) receives the prediction scores of the S
 * labelled rows, in row order: PyTorch's prediction_scores[labels != -100]. Naive scores all N
 * rows, as BertForPreTraining does, and picks; fast gathers the S rows first and scores only
 * them. S = 0 gives loss NaN and writes no logits. */
void mlm_forward_naive(float *loss,                /* [1] */
                       float *masked_logits,       /* [S, V] or NULL */
                       const float *hidden,        /* [N, E] the encoder's last hidden states */
                       const int64_t *labels,      /* [N] */
                       const MlmHead *head, size_t N, size_t E, size_t V);
void mlm_forward_fast(float *loss, float *masked_logits, const float *hidden,
                      const int64_t *labels, const MlmHead *head, size_t N, size_t E, size_t V);

/* The NSP head and its loss, from token 0 of each sequence. pooled may be NULL. */
void nsp_forward_naive(float *loss,                /* [1] */
                       float *logits,              /* [B, 2] seq_relationship_logits */
                       float *pooled,              /* [B, E] or NULL */
                       const float *hidden,        /* [B, T, E] */
                       const int64_t *labels,      /* [B], 0, 1 or -100 */
                       const NspHead *head, size_t B, size_t T, size_t E);
void nsp_forward_fast(float *loss, float *logits, float *pooled, const float *hidden,
                      const int64_t *labels, const NspHead *head, size_t B, size_t T, size_t E);

/* ---- The heads' backward (chapter 07). Gradients of the parameters, MlmHead's and NspHead's
 * layouts; each accumulates (matmul.h), a NULL one is not computed. */
typedef struct {
    float *dense_w, *dense_b;    /* [E, E], [E] */
    float *ln_gamma, *ln_beta;   /* [E], [E] */
    float *decoder_w;            /* [V, E]: the word embeddings' gradient. The decoder is tied
                                    to them, so a model passes the same buffer its embedding
                                    lookup scatters into, and the two paths add (as autograd
                                    sums the uses of one parameter) */
    float *decoder_b;            /* [V] */
} MlmHeadGrads;

typedef struct {
    float *pooler_w, *pooler_b;  /* [E, E], [E] */
    float *cls_w, *cls_b;        /* [2, E], [2] */
} NspHeadGrads;

/* d mlm_loss / d everything, times dloss (the upstream gradient of the loss, 1 for
 * loss.backward()), from the forward's inputs (the head is run again):
 *   dz  = dloss (softmax(z) - onehot(y)) / S      on labelled rows, 0 on the others
 *   db_dec += sum dz,  dW_emb += dz^T t,  dt = dz W_emb
 *   LayerNorm's backward (dgamma, dbeta), GELU's, then dense's (dW_t, db_t) into dhidden.
 * Rows with label -100 get no gradient; S = 0 (the loss is NaN) gives none at all. Naive runs
 * the head on all N rows, as its forward; fast on the S labelled ones. */
void mlm_backward_naive(float *dhidden,            /* [N, E] or NULL, += */
                        const MlmHeadGrads *g,     /* += */
                        float dloss,
                        const float *hidden,       /* [N, E] */
                        const int64_t *labels,     /* [N] */
                        const MlmHead *head, size_t N, size_t E, size_t V);
void mlm_backward_fast(float *dhidden, const MlmHeadGrads *g, float dloss, const float *hidden,
                       const int64_t *labels, const MlmHead *head, size_t N, size_t E,
                       size_t V);

/* A training step's MLM head: the loss as mlm_forward_* computes it and the gradients as
 * mlm_backward_* accumulates them. Naive calls the two; fast runs the head once for both (the
 * backward needs the scores the loss is made of), where the two calls would run it twice. */
void mlm_forward_backward_naive(float *loss,              /* [1] */
                                float *dhidden,           /* [N, E] or NULL, += */
                                const MlmHeadGrads *g,    /* += */
                                float dloss, const float *hidden, const int64_t *labels,
                                const MlmHead *head, size_t N, size_t E, size_t V);
void mlm_forward_backward_fast(float *loss, float *dhidden, const MlmHeadGrads *g, float dloss,
                               const float *hidden, const int64_t *labels, const MlmHead *head,
                               size_t N, size_t E, size_t V);

/* d nsp_loss, times dloss: the cross-entropy's gradient, seq_relationship's, tanh's
 * (1 - p^2) and the pooler's, into row 0 of each sequence of dhidden (only those rows). */
void nsp_backward_naive(float *dhidden,            /* [B, T, E] or NULL, += */
                        const NspHeadGrads *g,     /* += */
                        float dloss,
                        const float *hidden,       /* [B, T, E] */
                        const int64_t *labels,     /* [B] */
                        const NspHead *head, size_t B, size_t T, size_t E);
void nsp_backward_fast(float *dhidden, const NspHeadGrads *g, float dloss, const float *hidden,
                       const int64_t *labels, const NspHead *head, size_t B, size_t T,
                       size_t E);

/* GELU, erf form (torch.nn.functional.gelu's default): x/2 (1 + erf(x / sqrt 2)). */
float gelu_erf(float x);

/* ---------------------------------------------------------------- masking (pretraining_mask.c) */

typedef struct {
    double mlm_probability;      /* 0.15: chance that a non-special token is selected */
    double mask_replace_prob;    /* 0.8: chance that a selected token becomes [MASK] */
    double random_replace_prob;  /* 0.1: chance that a selected token becomes a random id */
    int64_t mask_token_id;       /* [MASK]: 103 in bert-base-uncased */
    size_t vocab_size;           /* V: random ids are drawn uniformly from [0, V) */
    const int64_t *special_ids;  /* [n_special] ids never selected: [CLS], [SEP], [PAD], ... */
    size_t n_special;
    uint64_t seed;               /* of tfm's generator (rng.h) */
} MlmMaskConfig;

/* What DataCollatorForLanguageModeling does to a batch: each token whose id is not special is
 * selected with probability mlm_probability; a selected token becomes mask_token_id with
 * probability mask_replace_prob, else a uniformly random id with probability
 * random_replace_prob / (1 - mask_replace_prob), else stays; labels hold the original id at the
 * selected positions and -100 elsewhere. Deterministic in cfg->seed; token n uses draws
 * 4n..4n+3 of tfm's generator (tfm_rng_at(cfg->seed, .), chapters/00-tensors/rng.h), so the
 * result depends on neither the thread count nor on how the rows are batched. masked may equal
 * ids (in place). */
void mlm_mask(int64_t *masked,            /* [N] */
              int64_t *labels,            /* [N] */
              const int64_t *ids,         /* [N] */
              const MlmMaskConfig *cfg, size_t N);

/* ---------------------------------------------------------------- F.cross_entropy
 * (torch.nn.functional.cross_entropy; crossentropy_naive.c, crossentropy_fast.c)
 *
 * Dimensions: N batch, C classes, inner = product of the dimensions after the class dimension
 *             (d1*d2*... for an [N, C, d1, d2, ...] input, 1 for [N, C]). input element (n, c, i)
 *             at (n*C + c)*inner + i; a target element (n, i) at n*inner + i. PyTorch's input [C]
 *             with no batch is N = 1, inner = 1 and a 0-d output (the caller's mapping).
 *
 * With log p[n,c,i] = log_softmax over c of input (the row max subtracted), per element (n, i):
 *
 * Class indices (target, y = target[n,i]), weight w [C] (all 1 when NULL), smoothing eps:
 *   nll    = -w[y] log p[n,y,i]
 *   smooth = -sum_c w[c] log p[n,c,i]                       (only when eps > 0)
 *   l      = (1 - eps) nll + (eps / C) smooth,  and l = 0 where y == ignore_index
 *   mean   = sum l / sum_{(n,i) not ignored} w[y]     (0/0 = NaN when all are ignored, or their
 *                                                       weights are all 0: PyTorch's value)
 *   sum    = sum l;   none: out[n,i] = l.
 *   y must be ignore_index or in [0, C); the caller checks (PyTorch raises an error otherwise).
 *
 * Class probabilities (target_probs [N, C, inner], y' = (1 - eps) y + eps / C when eps > 0):
 *   l      = -sum_c w[c] y'[n,c,i] log p[n,c,i]             (no ignore_index)
 *   mean   = sum l / (N * inner)   (not by the weights; NaN when the input is empty, C = 0 too)
 *   sum    = sum l;   none: out[n,i] = l.
 *
 * C = 0 (no classes; every index must then be ignore_index): losses 0 and mean NaN, except that
 * class indices with eps > 0 give NaN everywhere (PyTorch multiplies the masked zeros by
 * eps / C = inf). label_smoothing is a float here; PyTorch's is a double (0.1f is 1.5e-9 off).
 *
 * Exactly one of target / target_probs is non-NULL. label_smoothing in [0, 1] (the caller
 * checks). Sums are accumulated in double. Outputs are overwritten.
 */
typedef enum { TFM_REDUCTION_NONE, TFM_REDUCTION_MEAN, TFM_REDUCTION_SUM } TfmReduction;

void cross_entropy_loss_naive(float *out,              /* [1] for mean/sum, [N, inner] for none */
                              const float *input,      /* [N, C, inner] logits, classes on dim 1 */
                              const int64_t *target,   /* [N, inner] class indices, or NULL */
                              const float *target_probs, /* [N, C, inner] probabilities, or NULL */
                              const float *weight,     /* [C] or NULL */
                              int64_t ignore_index, TfmReduction reduction, float label_smoothing,
                              size_t N, size_t C, size_t inner);
void cross_entropy_loss_fast(float *out,               /* [1] for mean/sum, [N, inner] for none */
                             const float *input,       /* [N, C, inner] logits, classes on dim 1 */
                             const int64_t *target,    /* [N, inner] class indices, or NULL */
                             const float *target_probs, /* [N, C, inner] probabilities, or NULL */
                             const float *weight,      /* [C] or NULL */
                             int64_t ignore_index, TfmReduction reduction, float label_smoothing,
                             size_t N, size_t C, size_t inner);

/* The backward (chapter 07). With p = softmax over c of input, per element (n, i) not ignored,
 * and g its share of the upstream gradient (dout[n,i] for none, dout[0] for sum, dout[0] / the
 * mean's divisor for mean):
 *
 * Class indices, W = sum_c w[c]:
 *   dinput[n,c,i] += g (p_c ((1 - eps) w[y] + (eps / C) W)
 *                       - (1 - eps) w[y] [c = y] - (eps / C) w[c])
 * Class probabilities, y' as above, A = sum_c w[c] y'_c:
 *   dinput[n,c,i] += g (p_c A - w[c] y'_c)
 *   dtarget[n,c,i] += -g (1 - eps) w[c] log p_c       (the targets are an input too)
 * Ignored elements get nothing. The weights are constants: PyTorch implements no derivative for
 * nll_loss's weight. Both buffers accumulate (matmul.h); either may be NULL (dtarget is only
 * for probabilities). */
void cross_entropy_backward_naive(float *dinput,        /* [N, C, inner] or NULL, += */
                                  float *dtarget,       /* [N, C, inner] or NULL, += */
                                  const float *dout,    /* [1] for mean/sum, [N, inner] none */
                                  const float *input,   /* [N, C, inner] the forward's logits */
                                  const int64_t *target, const float *target_probs,
                                  const float *weight, int64_t ignore_index,
                                  TfmReduction reduction, float label_smoothing, size_t N,
                                  size_t C, size_t inner);
void cross_entropy_backward_fast(float *dinput, float *dtarget, const float *dout,
                                 const float *input, const int64_t *target,
                                 const float *target_probs, const float *weight,
                                 int64_t ignore_index, TfmReduction reduction,
                                 float label_smoothing, size_t N, size_t C, size_t inner);

#endif
